DROP FUNCTION IF EXISTS paas_claim_orphaned_runs(integer, integer);
DROP FUNCTION IF EXISTS paas_renew_run_leases(uuid, integer, uuid[], integer[], integer[], integer[], boolean[]);
ALTER TABLE runs DROP COLUMN IF EXISTS lease_until, DROP COLUMN IF EXISTS lease_owner;
