-- Run ownership leases: prompt, safe recovery of runs whose process died.
--
-- A run row names the process that drives it (`lease_owner`, a random id each process takes at
-- start) and holds a lease until `lease_until` (database time). The owner renews the leases of
-- all its runs in progress in one statement every few seconds, writing their usage so far with
-- them. A run still `running` whose lease has expired belonged to a process that is gone: any
-- replica may claim it — mark it failed (`interrupted`) and bill what it is known to have used —
-- and a claim is atomic, so two replicas never both handle one run and a run whose owner is still
-- renewing is never touched. Rows without a lease (started by a version that predates leases,
-- during a rolling upgrade) keep the old rule: claimed once they started longer ago than any run
-- can last.

ALTER TABLE runs
    ADD COLUMN lease_owner uuid,
    ADD COLUMN lease_until timestamptz;

-- Renews the leases of the runs `p_owner` drives (across tenants) and records their progress
-- (steps and tokens so far, never lowered). Only rows still `running` and still owned by
-- `p_owner` are touched; returns the ids it renewed, so the owner learns of a run it lost.
CREATE FUNCTION paas_renew_run_leases(
        p_owner uuid, p_lease_secs integer, p_ids uuid[], p_steps integer[],
        p_prompt_tokens integer[], p_completion_tokens integer[], p_estimated boolean[])
    RETURNS SETOF uuid
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
    UPDATE public.runs r
       SET lease_until = now() + make_interval(secs => p_lease_secs),
           steps = greatest(r.steps, p.steps),
           prompt_tokens = greatest(r.prompt_tokens, p.prompt_tokens),
           completion_tokens = greatest(r.completion_tokens, p.completion_tokens),
           usage_estimated = r.usage_estimated OR p.estimated
      FROM unnest(p_ids, p_steps, p_prompt_tokens, p_completion_tokens, p_estimated)
               AS p(id, steps, prompt_tokens, completion_tokens, estimated)
     WHERE r.id = p.id AND r.status = 'running' AND r.lease_owner = p_owner
    RETURNING r.id
$$;
REVOKE ALL ON FUNCTION paas_renew_run_leases(uuid, integer, uuid[], integer[], integer[], integer[], boolean[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paas_renew_run_leases(uuid, integer, uuid[], integer[], integer[], integer[], boolean[]) TO paas_app;

-- Claims up to `p_limit` orphaned runs across tenants: `running` with an expired lease, or with
-- no lease and started more than `p_unleased_secs` ago. Each is marked failed (`interrupted`)
-- and gets its usage-ledger row (what the last renewal recorded; a row already there is left
-- alone) in the same statement, so a claimed run is always billed, once. Rows another
-- transaction holds are skipped, not waited for. Returns the claimed runs (for the caller to
-- release their token reservations and end their event streams).
CREATE FUNCTION paas_claim_orphaned_runs(p_unleased_secs integer, p_limit integer)
    RETURNS TABLE (
        tenant_id uuid, id uuid, session_id uuid, user_id uuid, api_key_id uuid, agent_id uuid,
        source varchar, provider varchar, model varchar, steps integer, prompt_tokens integer,
        completion_tokens integer, usage_estimated boolean, started_at timestamptz,
        finished_at timestamptz, lease_owner uuid)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
    WITH orphaned AS (
        SELECT o.id
          FROM public.runs o
         WHERE o.status = 'running'
           AND (o.lease_until < now()
                OR (o.lease_until IS NULL
                    AND o.started_at < now() - make_interval(secs => p_unleased_secs)))
         ORDER BY o.started_at
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED),
    failed AS (
        UPDATE public.runs r
           SET status = 'failed', error_code = 'interrupted',
               error_message = 'the server stopped while this run was in progress',
               finished_at = now()
          FROM orphaned
         WHERE r.id = orphaned.id AND r.status = 'running'
        RETURNING r.tenant_id, r.id, r.session_id, r.user_id, r.api_key_id, r.agent_id, r.source,
                  r.provider, r.model, r.steps, r.prompt_tokens, r.completion_tokens,
                  r.usage_estimated, r.started_at, r.finished_at, r.lease_owner),
    billed AS (
        INSERT INTO public.usage_records
               (run_id, tenant_id, user_id, api_key_id, agent_id, source, provider, model, status,
                prompt_tokens, completion_tokens, usage_estimated, duration_ms, started_at,
                finished_at)
        SELECT f.id, f.tenant_id, f.user_id, f.api_key_id, f.agent_id, f.source, f.provider,
               f.model, 'failed', f.prompt_tokens, f.completion_tokens, f.usage_estimated,
               least(greatest(extract(epoch FROM f.finished_at - f.started_at) * 1000, 0),
                     2147483647)::integer,
               f.started_at, f.finished_at
          FROM failed f
        ON CONFLICT (run_id) DO NOTHING)
    SELECT f.tenant_id, f.id, f.session_id, f.user_id, f.api_key_id, f.agent_id, f.source,
           f.provider, f.model, f.steps, f.prompt_tokens, f.completion_tokens,
           f.usage_estimated, f.started_at, f.finished_at, f.lease_owner
      FROM failed f
$$;
REVOKE ALL ON FUNCTION paas_claim_orphaned_runs(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paas_claim_orphaned_runs(integer, integer) TO paas_app;

-- `paas_fail_orphaned_runs` (migration …_agents_chat) stays for replicas of the previous version
-- during a rolling upgrade; this version no longer calls it.
