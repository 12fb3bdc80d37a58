//! The `refresh_tokens` table: one row per issued refresh token, grouped in families (one per
//! login). A token is spent when it is used; presenting a spent token revokes its family.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use paas_core::{RefreshTokenId, TenantId, TokenFamilyId, UserId};
use uuid::Uuid;

use crate::error::DbError;
use crate::schema::refresh_tokens;

/// A stored refresh token.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = refresh_tokens, check_for_backend(diesel::pg::Pg))]
pub struct RefreshTokenRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug)]
pub struct NewRefreshToken {
    pub id: RefreshTokenId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub family_id: TokenFamilyId,
    pub expires_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

pub fn insert(conn: &mut PgConnection, new: &NewRefreshToken) -> Result<(), DbError> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::id.eq(new.id.into_uuid()),
            refresh_tokens::tenant_id.eq(new.tenant_id.into_uuid()),
            refresh_tokens::user_id.eq(new.user_id.into_uuid()),
            refresh_tokens::family_id.eq(new.family_id.into_uuid()),
            refresh_tokens::expires_at.eq(new.expires_at),
            refresh_tokens::created_at.eq(new.now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Reads a token and locks it until the transaction ends, so two concurrent refreshes with the
/// same token cannot both succeed.
pub fn get_for_update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: RefreshTokenId,
) -> Result<Option<RefreshTokenRow>, DbError> {
    Ok(refresh_tokens::table
        .filter(refresh_tokens::tenant_id.eq(tenant.into_uuid()))
        .filter(refresh_tokens::id.eq(id.into_uuid()))
        .select(RefreshTokenRow::as_select())
        .for_update()
        .first(conn)
        .optional()?)
}

pub fn mark_used(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: RefreshTokenId,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::tenant_id.eq(tenant.into_uuid()))
            .filter(refresh_tokens::id.eq(id.into_uuid())),
    )
    .set(refresh_tokens::used_at.eq(now))
    .execute(conn)?;
    Ok(())
}

/// Revokes every token of a family (a login session). Returns how many were still live.
pub fn revoke_family(
    conn: &mut PgConnection,
    tenant: TenantId,
    family: TokenFamilyId,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::tenant_id.eq(tenant.into_uuid()))
            .filter(refresh_tokens::family_id.eq(family.into_uuid()))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(now))
    .execute(conn)?)
}

/// Revokes every session of a user (deactivation, password change).
pub fn revoke_all_for_user(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::tenant_id.eq(tenant.into_uuid()))
            .filter(refresh_tokens::user_id.eq(user.into_uuid()))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(now))
    .execute(conn)?)
}

/// The user's login sessions that are still live.
pub fn sessions_of_user(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
) -> Result<Vec<TokenFamilyId>, DbError> {
    let families: Vec<Uuid> = refresh_tokens::table
        .filter(refresh_tokens::tenant_id.eq(tenant.into_uuid()))
        .filter(refresh_tokens::user_id.eq(user.into_uuid()))
        .filter(refresh_tokens::revoked_at.is_null())
        .select(refresh_tokens::family_id)
        .distinct()
        .load(conn)?;
    Ok(families.into_iter().map(TokenFamilyId::from_uuid).collect())
}

/// Deletes a user's refresh tokens that expired more than a day ago (they can no longer be
/// used, and every access token of their sessions expired long before). Keeps the table from
/// growing without bound; called at each login.
pub fn prune_expired(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    Ok(diesel::delete(
        refresh_tokens::table
            .filter(refresh_tokens::tenant_id.eq(tenant.into_uuid()))
            .filter(refresh_tokens::user_id.eq(user.into_uuid()))
            .filter(refresh_tokens::expires_at.lt(now - chrono::Duration::days(1))),
    )
    .execute(conn)?)
}
