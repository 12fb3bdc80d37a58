//! The `providers` table: a tenant's model provider credentials. The API key is stored
//! encrypted (by the caller, with `PAAS_MASTER_KEY`); this module never sees it in clear.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use paas_core::{ProviderId, TenantId};
use paas_models::Provider;
use uuid::Uuid;

use crate::error::{DbError, parse_stored};
use crate::schema::providers;

#[derive(Queryable, Selectable)]
#[diesel(table_name = providers, check_for_backend(diesel::pg::Pg))]
struct ProviderRow {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    kind: String,
    base_url: Option<String>,
    api_key_last4: Option<String>,
    default_model: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ProviderRow> for Provider {
    type Error = DbError;

    fn try_from(row: ProviderRow) -> Result<Self, DbError> {
        Ok(Provider {
            id: ProviderId::from_uuid(row.id),
            tenant_id: TenantId::from_uuid(row.tenant_id),
            name: row.name,
            kind: parse_stored("providers.kind", &row.kind)?,
            base_url: row.base_url,
            api_key_last4: row.api_key_last4,
            default_model: row.default_model,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A provider to store. `api_key_ciphertext` is already encrypted.
#[derive(Debug)]
pub struct NewProvider<'a> {
    pub id: ProviderId,
    pub tenant_id: TenantId,
    pub name: &'a str,
    pub kind: paas_models::ProviderKind,
    pub base_url: Option<&'a str>,
    pub api_key_ciphertext: Option<&'a [u8]>,
    pub api_key_last4: Option<&'a str>,
    pub default_model: Option<&'a str>,
    pub now: DateTime<Utc>,
}

pub fn insert(conn: &mut PgConnection, new: &NewProvider<'_>) -> Result<Provider, DbError> {
    diesel::insert_into(providers::table)
        .values((
            providers::id.eq(new.id.into_uuid()),
            providers::tenant_id.eq(new.tenant_id.into_uuid()),
            providers::name.eq(new.name),
            providers::kind.eq(new.kind.as_str()),
            providers::base_url.eq(new.base_url),
            providers::api_key_ciphertext.eq(new.api_key_ciphertext),
            providers::api_key_last4.eq(new.api_key_last4),
            providers::default_model.eq(new.default_model),
            providers::created_at.eq(new.now),
            providers::updated_at.eq(new.now),
        ))
        .returning(ProviderRow::as_returning())
        .get_result(conn)?
        .try_into()
}

pub fn get(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: ProviderId,
) -> Result<Option<Provider>, DbError> {
    providers::table
        .filter(providers::tenant_id.eq(tenant.into_uuid()))
        .filter(providers::id.eq(id.into_uuid()))
        .select(ProviderRow::as_select())
        .first(conn)
        .optional()?
        .map(Provider::try_from)
        .transpose()
}

/// A provider and its encrypted API key (if it has one).
pub type ProviderWithSecret = (Provider, Option<Vec<u8>>);

/// A provider with its encrypted key, for building a client.
pub fn get_with_secret(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: ProviderId,
) -> Result<Option<ProviderWithSecret>, DbError> {
    let found = providers::table
        .filter(providers::tenant_id.eq(tenant.into_uuid()))
        .filter(providers::id.eq(id.into_uuid()))
        .select((ProviderRow::as_select(), providers::api_key_ciphertext))
        .first::<(ProviderRow, Option<Vec<u8>>)>(conn)
        .optional()?;
    found
        .map(|(row, secret)| Ok((row.try_into()?, secret)))
        .transpose()
}

pub fn list(conn: &mut PgConnection, tenant: TenantId) -> Result<Vec<Provider>, DbError> {
    providers::table
        .filter(providers::tenant_id.eq(tenant.into_uuid()))
        .select(ProviderRow::as_select())
        .order((providers::name.asc(), providers::id.asc()))
        .load(conn)?
        .into_iter()
        .map(Provider::try_from)
        .collect()
}

/// Changes to a provider; `None` leaves a field as it is, `Some(None)` clears a nullable one.
#[derive(AsChangeset, Debug, Default)]
#[diesel(table_name = providers)]
pub struct ProviderChanges {
    pub name: Option<String>,
    pub base_url: Option<Option<String>>,
    pub api_key_ciphertext: Option<Option<Vec<u8>>>,
    pub api_key_last4: Option<Option<String>>,
    pub default_model: Option<Option<String>>,
}

pub fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: ProviderId,
    changes: &ProviderChanges,
    now: DateTime<Utc>,
) -> Result<Option<Provider>, DbError> {
    diesel::update(
        providers::table
            .filter(providers::tenant_id.eq(tenant.into_uuid()))
            .filter(providers::id.eq(id.into_uuid())),
    )
    .set((changes, providers::updated_at.eq(now)))
    .returning(ProviderRow::as_returning())
    .get_result(conn)
    .optional()?
    .map(Provider::try_from)
    .transpose()
}

/// Deletes a provider; fails with a foreign-key error (mapped to 409 `provider_in_use`) while
/// an agent uses it.
pub fn delete(conn: &mut PgConnection, tenant: TenantId, id: ProviderId) -> Result<bool, DbError> {
    let deleted = diesel::delete(
        providers::table
            .filter(providers::tenant_id.eq(tenant.into_uuid()))
            .filter(providers::id.eq(id.into_uuid())),
    )
    .execute(conn)?;
    Ok(deleted > 0)
}
