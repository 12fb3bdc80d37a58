-- Foundation: tenants, users, API keys, quotas, refresh tokens, audit log.
--
-- Isolation model
-- ---------------
-- The server never queries as the owner of these tables. Every transaction starts with
--   SELECT set_config('role', 'paas_app', true), set_config('paas.tenant_id', '<uuid>', true)
-- so it runs as `paas_app` (not an owner, not a superuser, no BYPASSRLS) and row-level security
-- limits every tenant-owned table to the tenant named in `paas.tenant_id`. A transaction that
-- forgets to set a tenant sees no rows at all. The few look-ups that must cross tenants before
-- the tenant is known (tenant by name at login, API key by hash) are SECURITY DEFINER
-- functions that return only what authentication needs.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paas_app') THEN
        CREATE ROLE paas_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
END
$$;

-- The role that runs the server (and these migrations) must be able to SET ROLE paas_app.
-- Superusers can anyway; for an ordinary owner role this grant is what makes it possible.
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT paas_app TO %I', current_user);
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO paas_app;

-- The tenant of the current transaction, or NULL when none is set.
CREATE FUNCTION paas_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE
AS $$ SELECT NULLIF(current_setting('paas.tenant_id', true), '')::uuid $$;

CREATE TABLE tenants (
    id            uuid PRIMARY KEY,
    name          varchar(63)  NOT NULL,
    display_name  varchar(200) NOT NULL,
    plan          varchar(20)  NOT NULL DEFAULT 'free',
    status        varchar(20)  NOT NULL DEFAULT 'active',
    settings      jsonb        NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz  NOT NULL DEFAULT now(),
    updated_at    timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT tenants_name_key UNIQUE (name),
    CONSTRAINT tenants_name_check CHECK (name ~ '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$'),
    CONSTRAINT tenants_plan_check CHECK (plan IN ('free', 'pro', 'enterprise')),
    CONSTRAINT tenants_status_check CHECK (status IN ('active', 'suspended')),
    CONSTRAINT tenants_settings_check CHECK (jsonb_typeof(settings) = 'object')
);

CREATE TABLE users (
    id             uuid PRIMARY KEY,
    tenant_id      uuid         NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email          varchar(254) NOT NULL,
    display_name   varchar(100) NOT NULL,
    password_hash  varchar(255) NOT NULL,
    role           varchar(20)  NOT NULL,
    status         varchar(20)  NOT NULL DEFAULT 'active',
    last_login_at  timestamptz,
    created_at     timestamptz  NOT NULL DEFAULT now(),
    updated_at     timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT users_tenant_email_key UNIQUE (tenant_id, email),
    CONSTRAINT users_role_check CHECK (role IN ('admin', 'user', 'viewer')),
    CONSTRAINT users_status_check CHECK (status IN ('active', 'deactivated'))
);

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    tenant_id     uuid         NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id       uuid         NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_hash      bytea        NOT NULL,
    prefix        varchar(16)  NOT NULL,
    name          varchar(100) NOT NULL,
    scopes        jsonb        NOT NULL DEFAULT '[]'::jsonb,
    expires_at    timestamptz  NOT NULL,
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    created_at    timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash),
    CONSTRAINT api_keys_scopes_check CHECK (jsonb_typeof(scopes) = 'array')
);
CREATE INDEX api_keys_tenant_user_idx ON api_keys (tenant_id, user_id, created_at DESC);

-- Limits per tenant, one row created with each tenant. Every tenant starts with these
-- defaults (the free plan's); per-plan limits and their enforcement come with quotas.
CREATE TABLE tenant_quotas (
    tenant_id             uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    max_users             integer NOT NULL DEFAULT 5,
    max_agents            integer NOT NULL DEFAULT 10,
    max_sessions_per_day  integer NOT NULL DEFAULT 100,
    max_tokens_per_month  bigint  NOT NULL DEFAULT 1000000,
    current_month_tokens  bigint  NOT NULL DEFAULT 0,
    reset_date            date,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tenant_quotas_nonnegative CHECK (
        max_users >= 0 AND max_agents >= 0 AND max_sessions_per_day >= 0
        AND max_tokens_per_month >= 0 AND current_month_tokens >= 0)
);

-- One row per refresh token. Tokens rotated from one login share a family; reusing a spent
-- token revokes the whole family.
CREATE TABLE refresh_tokens (
    id           uuid PRIMARY KEY,
    tenant_id    uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id    uuid        NOT NULL,
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (tenant_id, family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (tenant_id, user_id);

-- Append-only: the server may insert and read, never update or delete.
CREATE TABLE audit_events (
    id                uuid PRIMARY KEY,
    tenant_id         uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    actor_user_id     uuid,
    actor_api_key_id  uuid,
    action            varchar(64) NOT NULL,
    target_type       varchar(32),
    target_id         varchar(64),
    ip                varchar(64),
    user_agent        varchar(512),
    details           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now()
);
-- Ids are UUIDv7 (time-ordered), so (tenant_id, id) serves newest-first keyset paging.
CREATE INDEX audit_events_tenant_id_idx ON audit_events (tenant_id, id DESC);

-- Row-level security ------------------------------------------------------------------------

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = paas_current_tenant()) WITH CHECK (id = paas_current_tenant());

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users
    USING (tenant_id = paas_current_tenant()) WITH CHECK (tenant_id = paas_current_tenant());

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = paas_current_tenant()) WITH CHECK (tenant_id = paas_current_tenant());

ALTER TABLE tenant_quotas ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_quotas
    USING (tenant_id = paas_current_tenant()) WITH CHECK (tenant_id = paas_current_tenant());

ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON refresh_tokens
    USING (tenant_id = paas_current_tenant()) WITH CHECK (tenant_id = paas_current_tenant());

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_events
    USING (tenant_id = paas_current_tenant()) WITH CHECK (tenant_id = paas_current_tenant());

GRANT SELECT, INSERT, UPDATE ON tenants TO paas_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON users, api_keys, tenant_quotas, refresh_tokens TO paas_app;
GRANT SELECT, INSERT ON audit_events TO paas_app;

-- Cross-tenant look-ups for authentication ----------------------------------------------------

-- The id and status of the tenant with this name (login names a tenant before it is known).
CREATE FUNCTION paas_find_tenant(p_name text)
    RETURNS TABLE (id uuid, status varchar)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$ SELECT t.id, t.status FROM public.tenants t WHERE t.name = p_name $$;

-- Everything needed to authenticate an API key, found by the SHA-256 of the key.
CREATE FUNCTION paas_find_api_key(p_hash bytea)
    RETURNS TABLE (
        id uuid, tenant_id uuid, user_id uuid, key_hash bytea, scopes jsonb,
        expires_at timestamptz, revoked_at timestamptz, last_used_at timestamptz,
        user_role varchar, user_status varchar, tenant_status varchar)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
    SELECT k.id, k.tenant_id, k.user_id, k.key_hash, k.scopes, k.expires_at, k.revoked_at,
           k.last_used_at, u.role, u.status, t.status
      FROM public.api_keys k
      JOIN public.users u ON u.id = k.user_id AND u.tenant_id = k.tenant_id
      JOIN public.tenants t ON t.id = k.tenant_id
     WHERE k.key_hash = p_hash
$$;

REVOKE ALL ON FUNCTION paas_find_tenant(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION paas_find_api_key(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paas_find_tenant(text) TO paas_app;
GRANT EXECUTE ON FUNCTION paas_find_api_key(bytea) TO paas_app;
GRANT EXECUTE ON FUNCTION paas_current_tenant() TO paas_app;
