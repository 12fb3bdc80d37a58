//! The `api_keys` table. Keys are stored as the SHA-256 of the secret; the secret itself is
//! never stored.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bytea, Jsonb, Nullable, Timestamptz, Uuid as SqlUuid, Varchar};
use paas_core::{ApiKeyId, Role, Scope, ScopeSet, TenantId, UserId};
use paas_models::{ApiKey, TenantStatus, UserStatus};
use uuid::Uuid;

use crate::error::{DbError, parse_stored};
use crate::schema::api_keys;

#[derive(Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
struct ApiKeyRow {
    id: Uuid,
    tenant_id: Uuid,
    user_id: Uuid,
    name: String,
    prefix: String,
    scopes: serde_json::Value,
    expires_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

fn parse_scopes(value: &serde_json::Value) -> Result<ScopeSet, DbError> {
    let corrupt = || DbError::Corrupt(format!("api_keys.scopes = {value}"));
    let items = value.as_array().ok_or_else(corrupt)?;
    items
        .iter()
        .map(|item| {
            item.as_str()
                .and_then(|s| s.parse::<Scope>().ok())
                .ok_or_else(corrupt)
        })
        .collect()
}

fn scopes_json(scopes: ScopeSet) -> serde_json::Value {
    serde_json::Value::Array(scopes.iter().map(|s| s.as_str().into()).collect())
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = DbError;

    fn try_from(row: ApiKeyRow) -> Result<Self, DbError> {
        Ok(ApiKey {
            id: ApiKeyId::from_uuid(row.id),
            tenant_id: TenantId::from_uuid(row.tenant_id),
            user_id: UserId::from_uuid(row.user_id),
            name: row.name,
            prefix: row.prefix,
            scopes: parse_scopes(&row.scopes)?.to_vec(),
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
            created_at: row.created_at,
        })
    }
}

/// A key to store. `key_hash` is the SHA-256 of the secret.
#[derive(Debug)]
pub struct NewApiKey<'a> {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub key_hash: &'a [u8],
    pub prefix: &'a str,
    pub name: &'a str,
    pub scopes: ScopeSet,
    pub expires_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

pub fn insert(conn: &mut PgConnection, new: &NewApiKey<'_>) -> Result<ApiKey, DbError> {
    diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(new.id.into_uuid()),
            api_keys::tenant_id.eq(new.tenant_id.into_uuid()),
            api_keys::user_id.eq(new.user_id.into_uuid()),
            api_keys::key_hash.eq(new.key_hash),
            api_keys::prefix.eq(new.prefix),
            api_keys::name.eq(new.name),
            api_keys::scopes.eq(scopes_json(new.scopes)),
            api_keys::expires_at.eq(new.expires_at),
            api_keys::created_at.eq(new.now),
        ))
        .returning(ApiKeyRow::as_returning())
        .get_result(conn)?
        .try_into()
}

pub fn get(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: ApiKeyId,
) -> Result<Option<ApiKey>, DbError> {
    api_keys::table
        .filter(api_keys::tenant_id.eq(tenant.into_uuid()))
        .filter(api_keys::id.eq(id.into_uuid()))
        .select(ApiKeyRow::as_select())
        .first(conn)
        .optional()?
        .map(ApiKey::try_from)
        .transpose()
}

/// The tenant's keys, newest first; only `owner`'s when given; revoked keys only when asked.
pub fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    owner: Option<UserId>,
    include_revoked: bool,
) -> Result<Vec<ApiKey>, DbError> {
    let mut query = api_keys::table
        .filter(api_keys::tenant_id.eq(tenant.into_uuid()))
        .select(ApiKeyRow::as_select())
        .order((api_keys::created_at.desc(), api_keys::id.desc()))
        .into_boxed();
    if let Some(owner) = owner {
        query = query.filter(api_keys::user_id.eq(owner.into_uuid()));
    }
    if !include_revoked {
        query = query.filter(api_keys::revoked_at.is_null());
    }
    query
        .load(conn)?
        .into_iter()
        .map(ApiKey::try_from)
        .collect()
}

/// Marks the key revoked (if it is not already) and returns it.
pub fn revoke(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: ApiKeyId,
    now: DateTime<Utc>,
) -> Result<Option<ApiKey>, DbError> {
    diesel::update(
        api_keys::table
            .filter(api_keys::tenant_id.eq(tenant.into_uuid()))
            .filter(api_keys::id.eq(id.into_uuid()))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(now))
    .execute(conn)?;
    get(conn, tenant, id)
}

/// Revokes every active key a user owns (when the user is deactivated). Returns how many.
pub fn revoke_all_for_user(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        api_keys::table
            .filter(api_keys::tenant_id.eq(tenant.into_uuid()))
            .filter(api_keys::user_id.eq(user.into_uuid()))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(now))
    .execute(conn)?)
}

/// Records a use, at most once a minute per key so a busy key does not write on every request.
pub fn touch(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: ApiKeyId,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let stale = now - chrono::Duration::minutes(1);
    diesel::update(
        api_keys::table
            .filter(api_keys::tenant_id.eq(tenant.into_uuid()))
            .filter(api_keys::id.eq(id.into_uuid()))
            .filter(
                api_keys::last_used_at
                    .is_null()
                    .or(api_keys::last_used_at.lt(stale)),
            ),
    )
    .set(api_keys::last_used_at.eq(now))
    .execute(conn)?;
    Ok(())
}

#[derive(QueryableByName)]
struct KeyLookupRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    tenant_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = Bytea)]
    key_hash: Vec<u8>,
    #[diesel(sql_type = Jsonb)]
    scopes: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    expires_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    revoked_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_used_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Varchar)]
    user_role: String,
    #[diesel(sql_type = Varchar)]
    user_status: String,
    #[diesel(sql_type = Varchar)]
    tenant_status: String,
    #[diesel(sql_type = Varchar)]
    tenant_plan: String,
    #[diesel(sql_type = Nullable<Jsonb>)]
    quota: Option<serde_json::Value>,
}

/// Everything authenticating a key needs: the key, its owner's role and status, and the
/// tenant's status.
#[derive(Debug)]
pub struct KeyLookup {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub key_hash: Vec<u8>,
    pub scopes: ScopeSet,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub owner_role: Role,
    pub owner_status: UserStatus,
    pub tenant_status: TenantStatus,
    /// The tenant's plan and overrides (its limits).
    pub tenant_plan: paas_models::TenantPlan,
}

/// Finds a key by the hash of its secret, across tenants, through the `paas_find_api_key`
/// security-definer function (the tenant is not known until the key is found).
pub fn find_by_hash(conn: &mut PgConnection, hash: &[u8]) -> Result<Option<KeyLookup>, DbError> {
    let row = diesel::sql_query("SELECT * FROM paas_find_api_key($1)")
        .bind::<Bytea, _>(hash)
        .get_result::<KeyLookupRow>(conn)
        .optional()?;
    row.map(|row| {
        Ok(KeyLookup {
            id: ApiKeyId::from_uuid(row.id),
            tenant_id: TenantId::from_uuid(row.tenant_id),
            user_id: UserId::from_uuid(row.user_id),
            key_hash: row.key_hash,
            scopes: parse_scopes(&row.scopes)?,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            last_used_at: row.last_used_at,
            owner_role: parse_stored("users.role", &row.user_role)?,
            owner_status: parse_stored("users.status", &row.user_status)?,
            tenant_status: parse_stored("tenants.status", &row.tenant_status)?,
            tenant_plan: paas_models::TenantPlan {
                plan: parse_stored("tenants.plan", &row.tenant_plan)?,
                overrides: crate::quotas::overrides_from_json(row.quota)?,
            },
        })
    })
    .transpose()
}
