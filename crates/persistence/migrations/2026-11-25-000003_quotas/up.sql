-- Plans, quotas and the usage ledger.

-- tenant_quotas now holds per-tenant overrides of the plan's limits (crates/models/src/quota.rs);
-- NULL means "the plan's default". The seeded values were the old defaults, so they become NULL.
-- Token spending moved to Redis counters rebuilt from usage_records.
ALTER TABLE tenant_quotas
    DROP CONSTRAINT tenant_quotas_nonnegative,
    DROP COLUMN current_month_tokens,
    DROP COLUMN reset_date,
    ALTER COLUMN max_users DROP NOT NULL,
    ALTER COLUMN max_users DROP DEFAULT,
    ALTER COLUMN max_agents DROP NOT NULL,
    ALTER COLUMN max_agents DROP DEFAULT,
    ALTER COLUMN max_sessions_per_day DROP NOT NULL,
    ALTER COLUMN max_sessions_per_day DROP DEFAULT,
    ALTER COLUMN max_tokens_per_month DROP NOT NULL,
    ALTER COLUMN max_tokens_per_month DROP DEFAULT,
    ADD COLUMN requests_per_minute integer,
    ADD COLUMN key_requests_per_minute integer,
    ADD COLUMN max_concurrent_runs integer;
UPDATE tenant_quotas
   SET max_users = NULL, max_agents = NULL, max_sessions_per_day = NULL,
       max_tokens_per_month = NULL;
ALTER TABLE tenant_quotas ADD CONSTRAINT tenant_quotas_nonnegative CHECK (
    coalesce(max_users, 0) >= 0 AND coalesce(max_agents, 0) >= 0
    AND coalesce(max_sessions_per_day, 0) >= 0 AND coalesce(max_tokens_per_month, 0) >= 0
    AND coalesce(requests_per_minute, 0) >= 0 AND coalesce(key_requests_per_minute, 0) >= 0
    AND coalesce(max_concurrent_runs, 0) >= 0);
-- Every tenant has its row (the count limits lock it to serialise creates).
INSERT INTO tenant_quotas (tenant_id)
    SELECT id FROM tenants ON CONFLICT (tenant_id) DO NOTHING;

-- Sessions started per tenant per UTC day. Counted when a session is created (deleting one does
-- not give it back), with the limit checked in the same statement, so it cannot be raced.
CREATE TABLE tenant_daily_usage (
    tenant_id  uuid    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day        date    NOT NULL,
    sessions   integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day)
);
ALTER TABLE tenant_daily_usage ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_daily_usage
    USING (tenant_id = paas_current_tenant()) WITH CHECK (tenant_id = paas_current_tenant());
GRANT SELECT, INSERT, UPDATE ON tenant_daily_usage TO paas_app;

-- The usage ledger: one row per finished run, written once (append-only). No foreign keys to
-- users, keys or agents: the ledger outlives them. A run's tokens count in the month it started.
CREATE TABLE usage_records (
    run_id             uuid         PRIMARY KEY,
    tenant_id          uuid         NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id            uuid         NOT NULL,
    api_key_id         uuid,
    agent_id           uuid         NOT NULL,
    source             varchar(16)  NOT NULL,
    provider           varchar(20)  NOT NULL,
    model              varchar(200) NOT NULL,
    status             varchar(16)  NOT NULL,
    prompt_tokens      integer      NOT NULL,
    completion_tokens  integer      NOT NULL,
    usage_estimated    boolean      NOT NULL,
    duration_ms        integer      NOT NULL,
    started_at         timestamptz  NOT NULL,
    finished_at        timestamptz  NOT NULL,
    CONSTRAINT usage_records_tokens_nonnegative
        CHECK (prompt_tokens >= 0 AND completion_tokens >= 0 AND duration_ms >= 0)
);
CREATE INDEX usage_records_tenant_started_idx ON usage_records (tenant_id, started_at);
ALTER TABLE usage_records ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_records
    USING (tenant_id = paas_current_tenant()) WITH CHECK (tenant_id = paas_current_tenant());
GRANT SELECT, INSERT ON usage_records TO paas_app;

-- API-key authentication also reads the tenant's plan and overrides (one round trip per request).
DROP FUNCTION paas_find_api_key(bytea);
CREATE FUNCTION paas_find_api_key(p_hash bytea)
    RETURNS TABLE (
        id uuid, tenant_id uuid, user_id uuid, key_hash bytea, scopes jsonb,
        expires_at timestamptz, revoked_at timestamptz, last_used_at timestamptz,
        user_role varchar, user_status varchar, tenant_status varchar,
        tenant_plan varchar, quota jsonb)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
    SELECT k.id, k.tenant_id, k.user_id, k.key_hash, k.scopes, k.expires_at, k.revoked_at,
           k.last_used_at, u.role, u.status, t.status, t.plan,
           (SELECT to_jsonb(q) FROM public.tenant_quotas q WHERE q.tenant_id = k.tenant_id)
      FROM public.api_keys k
      JOIN public.users u ON u.id = k.user_id AND u.tenant_id = k.tenant_id
      JOIN public.tenants t ON t.id = k.tenant_id
     WHERE k.key_hash = p_hash
$$;
REVOKE ALL ON FUNCTION paas_find_api_key(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paas_find_api_key(bytea) TO paas_app;

-- The platform operator (its API and CLI) acts across tenants. Its transactions run as
-- paas_app like every other (so they work whatever role the server connects as) and say
-- `paas.operator = on`; these policies open exactly what the operator needs: tenants and their
-- overrides (read, change), counts of users, agents and sessions (read), and the tenant's audit
-- log (append). Only `Db::operator_tx` sets the flag.
CREATE FUNCTION paas_operator() RETURNS boolean
    LANGUAGE sql STABLE
AS $$ SELECT coalesce(current_setting('paas.operator', true), '') = 'on' $$;
GRANT EXECUTE ON FUNCTION paas_operator() TO paas_app;
CREATE POLICY operator_access ON tenants USING (paas_operator()) WITH CHECK (paas_operator());
CREATE POLICY operator_access ON tenant_quotas USING (paas_operator()) WITH CHECK (paas_operator());
CREATE POLICY operator_read ON users FOR SELECT USING (paas_operator());
CREATE POLICY operator_read ON agents FOR SELECT USING (paas_operator());
CREATE POLICY operator_read ON tenant_daily_usage FOR SELECT USING (paas_operator());
CREATE POLICY operator_append ON audit_events FOR INSERT WITH CHECK (paas_operator());
