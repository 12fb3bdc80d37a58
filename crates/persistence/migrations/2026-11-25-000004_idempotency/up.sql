-- Idempotency keys (`Idempotency-Key` on creating POSTs and the chat endpoints), with Stripe's
-- semantics: the first response to a key is kept and replayed to a retry of the same request.
--
-- A key belongs to one user of one tenant (the principal's; an API key acts as its user), so
-- another user sending the same string has a key of their own and can never be handed someone
-- else's response. A row is claimed (`status` NULL) before the request runs — by an
-- `INSERT … ON CONFLICT DO NOTHING` in its own short transaction, so of two concurrent requests
-- only one proceeds — and completed with the response once it has one. A response that may
-- change on retry (5xx, 429) deletes the row instead. Rows are kept 24 hours (`expires_at`); an
-- expired row counts as absent and is deleted by the next claim of its key or by the sweep.
CREATE TABLE idempotency_keys (
    tenant_id         uuid         NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id           uuid         NOT NULL,
    key               varchar(255) NOT NULL,
    -- Which claim holds the row: completing or releasing checks it, so a request whose
    -- abandoned claim was taken over cannot overwrite the new one.
    attempt           uuid         NOT NULL,
    -- The request the key was first used for: method, path and the SHA-256 of the body.
    request_method    varchar(16)  NOT NULL,
    request_path      varchar(512) NOT NULL,
    request_hash      bytea        NOT NULL,
    -- NULL while the first request is in progress.
    status            smallint,
    -- The replayed headers, as [[name, value], …].
    response_headers  jsonb,
    -- The body, encrypted with the master key (responses can hold secrets: a new API key, a
    -- temporary password); NULL for a streamed response, which is rendered again from its run.
    response_body     bytea,
    -- The run a chat response streams, and how to render it again (`{"format": …}`).
    run_id            uuid,
    stream            jsonb,
    created_at        timestamptz  NOT NULL,
    -- A claim still in progress after this belonged to a process that stopped: it may be taken
    -- over.
    locked_until      timestamptz  NOT NULL,
    completed_at      timestamptz,
    expires_at        timestamptz  NOT NULL,
    PRIMARY KEY (tenant_id, user_id, key),
    CONSTRAINT idempotency_keys_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT idempotency_keys_status_check CHECK (status IS NULL OR status BETWEEN 100 AND 599),
    CONSTRAINT idempotency_keys_hash_check CHECK (octet_length(request_hash) = 32)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON idempotency_keys
    USING (tenant_id = paas_current_tenant()) WITH CHECK (tenant_id = paas_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO paas_app;

-- Deletes expired keys across tenants (at most `p_limit`); returns how many. The periodic
-- sweep's only cross-tenant access: it can remove expired rows and nothing else.
CREATE FUNCTION paas_sweep_idempotency_keys(p_now timestamptz, p_limit integer)
    RETURNS integer
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
    WITH expired AS (
        SELECT tenant_id, user_id, key
          FROM public.idempotency_keys
         WHERE expires_at <= p_now
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED),
    deleted AS (
        DELETE FROM public.idempotency_keys k
         USING expired e
         WHERE k.tenant_id = e.tenant_id AND k.user_id = e.user_id AND k.key = e.key
        RETURNING 1)
    SELECT count(*)::integer FROM deleted
$$;
REVOKE ALL ON FUNCTION paas_sweep_idempotency_keys(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paas_sweep_idempotency_keys(timestamptz, integer) TO paas_app;
