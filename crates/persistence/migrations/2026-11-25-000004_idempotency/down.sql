DROP FUNCTION IF EXISTS paas_sweep_idempotency_keys(timestamptz, integer);
DROP TABLE IF EXISTS idempotency_keys;
