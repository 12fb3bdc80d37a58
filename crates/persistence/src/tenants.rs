//! The `tenants` and `tenant_quotas` tables.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Text, Uuid as SqlUuid, Varchar};
use paas_core::TenantId;
use paas_models::{Plan, Tenant, TenantStatus};
use uuid::Uuid;

use crate::error::{DbError, parse_stored};
use crate::schema::{tenant_quotas, tenants};

#[derive(Queryable, Selectable)]
#[diesel(table_name = tenants, check_for_backend(diesel::pg::Pg))]
struct TenantRow {
    id: Uuid,
    name: String,
    display_name: String,
    plan: String,
    status: String,
    settings: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = DbError;

    fn try_from(row: TenantRow) -> Result<Self, DbError> {
        Ok(Tenant {
            id: TenantId::from_uuid(row.id),
            name: row.name,
            display_name: row.display_name,
            plan: parse_stored("tenants.plan", &row.plan)?,
            status: parse_stored("tenants.status", &row.status)?,
            settings: row.settings,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A tenant to create.
#[derive(Debug)]
pub struct NewTenant<'a> {
    pub id: TenantId,
    pub name: &'a str,
    pub display_name: &'a str,
    pub plan: Plan,
    pub now: DateTime<Utc>,
}

/// Inserts the tenant and its quota row (with the schema's defaults). The transaction must be
/// scoped to `new.id`.
pub fn insert(conn: &mut PgConnection, new: &NewTenant<'_>) -> Result<Tenant, DbError> {
    let row = diesel::insert_into(tenants::table)
        .values((
            tenants::id.eq(new.id.into_uuid()),
            tenants::name.eq(new.name),
            tenants::display_name.eq(new.display_name),
            tenants::plan.eq(new.plan.as_str()),
            tenants::status.eq(TenantStatus::Active.as_str()),
            tenants::created_at.eq(new.now),
            tenants::updated_at.eq(new.now),
        ))
        .returning(TenantRow::as_returning())
        .get_result(conn)?;
    diesel::insert_into(tenant_quotas::table)
        .values((
            tenant_quotas::tenant_id.eq(new.id.into_uuid()),
            tenant_quotas::updated_at.eq(new.now),
        ))
        .execute(conn)?;
    row.try_into()
}

pub fn get(conn: &mut PgConnection, id: TenantId) -> Result<Option<Tenant>, DbError> {
    tenants::table
        .find(id.into_uuid())
        .select(TenantRow::as_select())
        .first(conn)
        .optional()?
        .map(Tenant::try_from)
        .transpose()
}

/// Locks the tenant's row until the transaction ends: the mutex for changes that must see a
/// consistent set of the tenant's users (such as "never leave the tenant without an admin").
pub fn lock(conn: &mut PgConnection, id: TenantId) -> Result<(), DbError> {
    tenants::table
        .find(id.into_uuid())
        .select(tenants::id)
        .for_update()
        .first::<Uuid>(conn)?;
    Ok(())
}

/// Changes to a tenant; `None` leaves a field as it is.
#[derive(AsChangeset, Debug, Default)]
#[diesel(table_name = tenants)]
pub struct TenantChanges {
    pub display_name: Option<String>,
    pub settings: Option<serde_json::Value>,
}

pub fn update(
    conn: &mut PgConnection,
    id: TenantId,
    changes: &TenantChanges,
    now: DateTime<Utc>,
) -> Result<Option<Tenant>, DbError> {
    diesel::update(tenants::table.find(id.into_uuid()))
        .set((changes, tenants::updated_at.eq(now)))
        .returning(TenantRow::as_returning())
        .get_result(conn)
        .optional()?
        .map(Tenant::try_from)
        .transpose()
}

#[derive(QueryableByName)]
struct FoundTenant {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Varchar)]
    status: String,
}

/// Finds a tenant by its name across tenants (login names a tenant before the tenant is known).
/// Goes through the `paas_find_tenant` security-definer function, so it works in an anonymous
/// transaction and reveals nothing but the id and status.
pub fn find_by_name(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Option<(TenantId, TenantStatus)>, DbError> {
    let found = diesel::sql_query("SELECT id, status FROM paas_find_tenant($1)")
        .bind::<Text, _>(name)
        .get_result::<FoundTenant>(conn)
        .optional()?;
    found
        .map(|t| {
            Ok((
                TenantId::from_uuid(t.id),
                parse_stored("tenants.status", &t.status)?,
            ))
        })
        .transpose()
}

/// Every tenant, oldest first, `page` at a time (the operator's listing; needs
/// [`Db::operator_tx`](crate::Db::operator_tx)).
pub fn list_all(conn: &mut PgConnection, page: crate::Page) -> Result<Vec<Tenant>, DbError> {
    tenants::table
        .order((tenants::created_at.asc(), tenants::id.asc()))
        .limit(page.limit)
        .offset(page.offset)
        .select(TenantRow::as_select())
        .load(conn)?
        .into_iter()
        .map(Tenant::try_from)
        .collect()
}

/// Suspends or reactivates a tenant; `None` when there is no such tenant.
pub fn set_status(
    conn: &mut PgConnection,
    id: TenantId,
    status: TenantStatus,
    now: DateTime<Utc>,
) -> Result<Option<Tenant>, DbError> {
    diesel::update(tenants::table.find(id.into_uuid()))
        .set((
            tenants::status.eq(status.as_str()),
            tenants::updated_at.eq(now),
        ))
        .returning(TenantRow::as_returning())
        .get_result(conn)
        .optional()?
        .map(Tenant::try_from)
        .transpose()
}
