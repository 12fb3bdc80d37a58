DROP POLICY operator_append ON audit_events;
DROP POLICY operator_read ON tenant_daily_usage;
DROP POLICY operator_read ON agents;
DROP POLICY operator_read ON users;
DROP POLICY operator_access ON tenant_quotas;
DROP POLICY operator_access ON tenants;
DROP FUNCTION paas_operator();

DROP FUNCTION paas_find_api_key(bytea);
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
REVOKE ALL ON FUNCTION paas_find_api_key(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paas_find_api_key(bytea) TO paas_app;

DROP TABLE usage_records;
DROP TABLE tenant_daily_usage;

ALTER TABLE tenant_quotas DROP CONSTRAINT tenant_quotas_nonnegative;
UPDATE tenant_quotas
   SET max_users = coalesce(max_users, 5), max_agents = coalesce(max_agents, 10),
       max_sessions_per_day = coalesce(max_sessions_per_day, 100),
       max_tokens_per_month = coalesce(max_tokens_per_month, 1000000);
ALTER TABLE tenant_quotas
    DROP COLUMN requests_per_minute,
    DROP COLUMN key_requests_per_minute,
    DROP COLUMN max_concurrent_runs,
    ALTER COLUMN max_users SET NOT NULL,
    ALTER COLUMN max_users SET DEFAULT 5,
    ALTER COLUMN max_agents SET NOT NULL,
    ALTER COLUMN max_agents SET DEFAULT 10,
    ALTER COLUMN max_sessions_per_day SET NOT NULL,
    ALTER COLUMN max_sessions_per_day SET DEFAULT 100,
    ALTER COLUMN max_tokens_per_month SET NOT NULL,
    ALTER COLUMN max_tokens_per_month SET DEFAULT 1000000,
    ADD COLUMN current_month_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN reset_date date,
    ADD CONSTRAINT tenant_quotas_nonnegative CHECK (
        max_users >= 0 AND max_agents >= 0 AND max_sessions_per_day >= 0
        AND max_tokens_per_month >= 0 AND current_month_tokens >= 0);
