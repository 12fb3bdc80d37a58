DROP FUNCTION IF EXISTS paas_find_api_key(bytea);
DROP FUNCTION IF EXISTS paas_find_tenant(text);
DROP TABLE IF EXISTS audit_events;
DROP TABLE IF EXISTS refresh_tokens;
DROP TABLE IF EXISTS tenant_quotas;
DROP TABLE IF EXISTS api_keys;
DROP TABLE IF EXISTS users;
DROP TABLE IF EXISTS tenants;
DROP FUNCTION IF EXISTS paas_current_tenant();
-- The paas_app role is shared by every database in the cluster; it is left in place.
