DROP FUNCTION IF EXISTS paas_fail_orphaned_runs(timestamptz);
DROP TABLE IF EXISTS messages;
DROP TABLE IF EXISTS runs;
DROP TABLE IF EXISTS chat_sessions;
DROP TABLE IF EXISTS agents;
DROP TABLE IF EXISTS providers;
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_tenant_id_id_key;
