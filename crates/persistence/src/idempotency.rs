//! The `idempotency_keys` table: the first response to each `Idempotency-Key`, per tenant and
//! user, kept for replaying it to retries (migration `…_idempotency`).
//!
//! A key is claimed before its request runs ([`claim`], one short transaction of its own, so two
//! concurrent requests cannot both proceed), then either completed with the response
//! ([`complete`]) or released ([`release`]) for a retry to run anew. This module stores bytes
//! and says nothing about HTTP or encryption: the API layer owns both.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Integer, Timestamptz};
use paas_core::{RunId, TenantId, UserId};
use uuid::Uuid;

use crate::error::DbError;
use crate::schema::idempotency_keys as keys;

/// A claim to take: the key, and the request it is used for.
#[derive(Clone, Copy, Debug)]
pub struct NewClaim<'a> {
    pub tenant: TenantId,
    pub user: UserId,
    pub key: &'a str,
    /// This request's claim id, needed to complete or release it.
    pub attempt: Uuid,
    pub method: &'a str,
    pub path: &'a str,
    /// SHA-256 of the request body.
    pub request_hash: &'a [u8; 32],
    pub now: DateTime<Utc>,
    /// Until when the claim holds while in progress (after that, its process is deemed gone).
    pub locked_until: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A stored response.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredResponse {
    pub status: u16,
    /// `(name, value)` pairs.
    pub headers: Vec<(String, String)>,
    /// The body as the API layer stored it (encrypted); `None` for a streamed response.
    pub body: Option<Vec<u8>>,
    /// The run a streamed response follows, and how to render it again.
    pub run_id: Option<RunId>,
    pub stream: Option<serde_json::Value>,
}

/// What [`claim`] found.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// The key was free (or expired): this request holds it now.
    Claimed,
    /// The key's first request is still in progress.
    InProgress,
    /// The key was first used for another request (method, path or body differ).
    Mismatch { method: String, path: String },
    /// The key's first request has finished: its response.
    Completed(StoredResponse),
}

#[derive(Queryable)]
struct Existing {
    request_method: String,
    request_path: String,
    request_hash: Vec<u8>,
    status: Option<i16>,
    response_headers: Option<serde_json::Value>,
    response_body: Option<Vec<u8>>,
    run_id: Option<Uuid>,
    stream: Option<serde_json::Value>,
}

fn parse_headers(value: Option<serde_json::Value>) -> Result<Vec<(String, String)>, DbError> {
    match value {
        None => Ok(Vec::new()),
        Some(value) => serde_json::from_value(value)
            .map_err(|err| DbError::Corrupt(format!("idempotency_keys.response_headers: {err}"))),
    }
}

/// Claims `new.key` for `new`'s request, or tells why it cannot: in progress, used for another
/// request, or finished (with the response to replay). An expired key, and a claim still in
/// progress past its `locked_until` (its process stopped), count as free.
pub fn claim(conn: &mut PgConnection, new: &NewClaim<'_>) -> Result<Claim, DbError> {
    let this_key = keys::table
        .filter(keys::tenant_id.eq(new.tenant.into_uuid()))
        .filter(keys::user_id.eq(new.user.into_uuid()))
        .filter(keys::key.eq(new.key));
    diesel::delete(
        this_key.filter(
            keys::expires_at
                .le(new.now)
                .or(keys::status.is_null().and(keys::locked_until.le(new.now))),
        ),
    )
    .execute(conn)?;
    // A row deleted between the insert and the read (its request failed and released it) is
    // claimed on the next round.
    for _ in 0..3 {
        let inserted = diesel::insert_into(keys::table)
            .values((
                keys::tenant_id.eq(new.tenant.into_uuid()),
                keys::user_id.eq(new.user.into_uuid()),
                keys::key.eq(new.key),
                keys::attempt.eq(new.attempt),
                keys::request_method.eq(new.method),
                keys::request_path.eq(new.path),
                keys::request_hash.eq(&new.request_hash[..]),
                keys::created_at.eq(new.now),
                keys::locked_until.eq(new.locked_until),
                keys::expires_at.eq(new.expires_at),
            ))
            .on_conflict_do_nothing()
            .execute(conn)?;
        if inserted == 1 {
            return Ok(Claim::Claimed);
        }
        let existing = this_key
            .select((
                keys::request_method,
                keys::request_path,
                keys::request_hash,
                keys::status,
                keys::response_headers,
                keys::response_body,
                keys::run_id,
                keys::stream,
            ))
            .first::<Existing>(conn)
            .optional()?;
        let Some(existing) = existing else { continue };
        if existing.request_method != new.method
            || existing.request_path != new.path
            || existing.request_hash.as_slice() != new.request_hash.as_slice()
        {
            return Ok(Claim::Mismatch {
                method: existing.request_method,
                path: existing.request_path,
            });
        }
        let Some(status) = existing.status else {
            return Ok(Claim::InProgress);
        };
        return Ok(Claim::Completed(StoredResponse {
            status: u16::try_from(status)
                .map_err(|_| DbError::Corrupt(format!("idempotency_keys.status = {status}")))?,
            headers: parse_headers(existing.response_headers)?,
            body: existing.response_body,
            run_id: existing.run_id.map(RunId::from_uuid),
            stream: existing.stream,
        }));
    }
    Ok(Claim::InProgress)
}

/// The claim of one request, to complete or release.
#[derive(Clone, Copy, Debug)]
pub struct Held<'a> {
    pub tenant: TenantId,
    pub user: UserId,
    pub key: &'a str,
    pub attempt: Uuid,
}

/// Stores the response of the request that holds the claim. `false` if the claim is no longer
/// this request's (it was taken over as abandoned).
pub fn complete(
    conn: &mut PgConnection,
    held: &Held<'_>,
    response: &StoredResponse,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let headers = serde_json::to_value(&response.headers)
        .map_err(|err| DbError::Corrupt(format!("response headers: {err}")))?;
    let status = i16::try_from(response.status)
        .map_err(|_| DbError::Corrupt(format!("status {}", response.status)))?;
    let updated = diesel::update(
        keys::table
            .filter(keys::tenant_id.eq(held.tenant.into_uuid()))
            .filter(keys::user_id.eq(held.user.into_uuid()))
            .filter(keys::key.eq(held.key))
            .filter(keys::attempt.eq(held.attempt))
            .filter(keys::status.is_null()),
    )
    .set((
        keys::status.eq(status),
        keys::response_headers.eq(headers),
        keys::response_body.eq(response.body.as_deref()),
        keys::run_id.eq(response.run_id.map(RunId::into_uuid)),
        keys::stream.eq(response.stream.as_ref()),
        keys::completed_at.eq(now),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Gives the key up (its request failed in a way a retry may not): the next request with it
/// runs anew. `false` if the claim was no longer this request's.
pub fn release(conn: &mut PgConnection, held: &Held<'_>) -> Result<bool, DbError> {
    let deleted = diesel::delete(
        keys::table
            .filter(keys::tenant_id.eq(held.tenant.into_uuid()))
            .filter(keys::user_id.eq(held.user.into_uuid()))
            .filter(keys::key.eq(held.key))
            .filter(keys::attempt.eq(held.attempt))
            .filter(keys::status.is_null()),
    )
    .execute(conn)?;
    Ok(deleted == 1)
}

#[derive(QueryableByName)]
struct Swept {
    #[diesel(sql_type = Integer)]
    n: i32,
}

/// Deletes up to `limit` expired keys across tenants (through the `SECURITY DEFINER` function,
/// the sweep's only cross-tenant access); returns how many. Run in an anonymous transaction.
pub fn sweep_expired(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<u32, DbError> {
    let swept = diesel::sql_query("SELECT paas_sweep_idempotency_keys($1, $2) AS n")
        .bind::<Timestamptz, _>(now)
        .bind::<Integer, _>(i32::try_from(limit).unwrap_or(i32::MAX))
        .get_result::<Swept>(conn)?;
    Ok(u32::try_from(swept.n).unwrap_or(0))
}
