-- Agents and chat: provider credentials, agents, chat sessions, messages and runs.
-- Same isolation model as the foundation: tenant_id on every table, row-level security,
-- composite foreign keys so a row can only point at rows of its own tenant.

ALTER TABLE users ADD CONSTRAINT users_tenant_id_id_key UNIQUE (tenant_id, id);

-- A tenant's model provider credentials. The API key is AES-256-GCM encrypted with
-- PAAS_MASTER_KEY (version byte, nonce, ciphertext and tag) and never returned.
CREATE TABLE providers (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid          NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name               varchar(63)   NOT NULL,
    kind               varchar(20)   NOT NULL,
    base_url           varchar(2048),
    api_key_ciphertext bytea,
    api_key_last4      varchar(4),
    default_model      varchar(200),
    created_at         timestamptz   NOT NULL DEFAULT now(),
    updated_at         timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT providers_tenant_name_key UNIQUE (tenant_id, name),
    CONSTRAINT providers_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT providers_kind_check CHECK (kind IN ('openai', 'glm', 'anthropic', 'mock'))
);

-- An agent: what model it talks to, how, and with which tools. `provider_id` names one of the
-- tenant's providers; when it is NULL, `builtin_provider` names the built-in mock or one of the
-- platform's default providers configured from the environment.
CREATE TABLE agents (
    id                uuid PRIMARY KEY,
    tenant_id         uuid          NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name              varchar(63)   NOT NULL,
    display_name      varchar(200)  NOT NULL,
    description       varchar(2000) NOT NULL DEFAULT '',
    system_prompt     text          NOT NULL DEFAULT '',
    provider_id       uuid,
    builtin_provider  varchar(20),
    model             varchar(200)  NOT NULL,
    temperature       real,
    max_tokens        integer       NOT NULL,
    tools             jsonb         NOT NULL DEFAULT '[]'::jsonb,
    max_steps         integer       NOT NULL,
    timeout_seconds   integer       NOT NULL,
    created_at        timestamptz   NOT NULL DEFAULT now(),
    updated_at        timestamptz   NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    CONSTRAINT agents_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT agents_provider_fkey FOREIGN KEY (tenant_id, provider_id)
        REFERENCES providers (tenant_id, id) ON DELETE RESTRICT,
    CONSTRAINT agents_one_provider_check CHECK ((provider_id IS NULL) <> (builtin_provider IS NULL)),
    CONSTRAINT agents_builtin_provider_check
        CHECK (builtin_provider IN ('mock', 'openai', 'glm', 'anthropic')),
    CONSTRAINT agents_tools_check CHECK (jsonb_typeof(tools) = 'array'),
    CONSTRAINT agents_limits_check CHECK (
        max_tokens > 0 AND max_steps > 0 AND timeout_seconds > 0
        AND (temperature IS NULL OR (temperature >= 0 AND temperature <= 2)))
);
-- Names are unique among live agents; a deleted agent's name can be reused.
CREATE UNIQUE INDEX agents_tenant_name_key ON agents (tenant_id, name) WHERE deleted_at IS NULL;

CREATE TABLE chat_sessions (
    id          uuid PRIMARY KEY,
    tenant_id   uuid         NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     uuid         NOT NULL,
    agent_id    uuid         NOT NULL,
    title       varchar(200) NOT NULL DEFAULT '',
    created_at  timestamptz  NOT NULL DEFAULT now(),
    updated_at  timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT chat_sessions_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT chat_sessions_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT chat_sessions_agent_fkey FOREIGN KEY (tenant_id, agent_id)
        REFERENCES agents (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX chat_sessions_user_recent_idx ON chat_sessions (tenant_id, user_id, updated_at DESC, id DESC);

-- A run: one turn of an agent (the tool-calling loop), owned by the server, not the request.
CREATE TABLE runs (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid         NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    session_id         uuid         REFERENCES chat_sessions (id) ON DELETE SET NULL,
    user_id            uuid         NOT NULL,
    api_key_id         uuid,
    agent_id           uuid         NOT NULL,
    source             varchar(16)  NOT NULL,
    status             varchar(16)  NOT NULL,
    provider           varchar(20)  NOT NULL,
    model              varchar(200) NOT NULL,
    steps              integer      NOT NULL DEFAULT 0,
    prompt_tokens      integer      NOT NULL DEFAULT 0,
    completion_tokens  integer      NOT NULL DEFAULT 0,
    usage_estimated    boolean      NOT NULL DEFAULT false,
    error_code         varchar(64),
    error_message      varchar(1000),
    limit_reason       varchar(32),
    started_at         timestamptz  NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    CONSTRAINT runs_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT runs_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT runs_agent_fkey FOREIGN KEY (tenant_id, agent_id)
        REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT runs_source_check CHECK (source IN ('chat', 'openai')),
    CONSTRAINT runs_status_check
        CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'limited'))
);
CREATE INDEX runs_session_idx ON runs (tenant_id, session_id, started_at);
CREATE INDEX runs_running_idx ON runs (status) WHERE status = 'running';

CREATE TABLE messages (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid         NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    session_id         uuid         NOT NULL,
    run_id             uuid,
    role               varchar(16)  NOT NULL,
    content            text         NOT NULL DEFAULT '',
    reasoning          text         NOT NULL DEFAULT '',
    tool_calls         jsonb        NOT NULL DEFAULT '[]'::jsonb,
    tool_call_id       varchar(200),
    tool_name          varchar(64),
    is_error           boolean      NOT NULL DEFAULT false,
    prompt_tokens      integer      NOT NULL DEFAULT 0,
    completion_tokens  integer      NOT NULL DEFAULT 0,
    created_at         timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT messages_session_fkey FOREIGN KEY (tenant_id, session_id)
        REFERENCES chat_sessions (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT messages_role_check CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    CONSTRAINT messages_tool_calls_check CHECK (jsonb_typeof(tool_calls) = 'array')
);
CREATE INDEX messages_session_idx ON messages (tenant_id, session_id, id);

-- Row-level security ------------------------------------------------------------------------

ALTER TABLE providers ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON providers
    USING (tenant_id = paas_current_tenant()) WITH CHECK (tenant_id = paas_current_tenant());
ALTER TABLE agents ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON agents
    USING (tenant_id = paas_current_tenant()) WITH CHECK (tenant_id = paas_current_tenant());
ALTER TABLE chat_sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON chat_sessions
    USING (tenant_id = paas_current_tenant()) WITH CHECK (tenant_id = paas_current_tenant());
ALTER TABLE runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON runs
    USING (tenant_id = paas_current_tenant()) WITH CHECK (tenant_id = paas_current_tenant());
ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON messages
    USING (tenant_id = paas_current_tenant()) WITH CHECK (tenant_id = paas_current_tenant());

GRANT SELECT, INSERT, UPDATE, DELETE ON providers, agents, chat_sessions, runs, messages TO paas_app;

-- Runs left 'running' by a process that died (SIGKILL, crash) are found at start-up across
-- tenants and marked failed. Returns how many.
CREATE FUNCTION paas_fail_orphaned_runs(p_started_before timestamptz)
    RETURNS integer
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
    WITH failed AS (
        UPDATE public.runs
           SET status = 'failed', error_code = 'interrupted',
               error_message = 'the server stopped while this run was in progress',
               finished_at = now()
         WHERE status = 'running' AND started_at < p_started_before
        RETURNING 1)
    SELECT count(*)::integer FROM failed
$$;
REVOKE ALL ON FUNCTION paas_fail_orphaned_runs(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paas_fail_orphaned_runs(timestamptz) TO paas_app;
