//! The `users` table.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use paas_core::{Role, TenantId, TokenFamilyId, UserId};
use paas_models::{TenantStatus, User, UserStatus};
use uuid::Uuid;

use crate::Page;
use crate::error::{DbError, parse_stored};
use crate::schema::{refresh_tokens, tenants, users};

#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
struct UserRow {
    id: Uuid,
    tenant_id: Uuid,
    email: String,
    display_name: String,
    role: String,
    status: String,
    last_login_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<UserRow> for User {
    type Error = DbError;

    fn try_from(row: UserRow) -> Result<Self, DbError> {
        Ok(User {
            id: UserId::from_uuid(row.id),
            tenant_id: TenantId::from_uuid(row.tenant_id),
            email: row.email,
            display_name: row.display_name,
            role: parse_stored("users.role", &row.role)?,
            status: parse_stored("users.status", &row.status)?,
            last_login_at: row.last_login_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn convert(row: Option<UserRow>) -> Result<Option<User>, DbError> {
    row.map(User::try_from).transpose()
}

/// A user to create. `password_hash` is a bcrypt hash, never a password.
#[derive(Debug)]
pub struct NewUser<'a> {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
    pub now: DateTime<Utc>,
}

pub fn insert(conn: &mut PgConnection, new: &NewUser<'_>) -> Result<User, DbError> {
    diesel::insert_into(users::table)
        .values((
            users::id.eq(new.id.into_uuid()),
            users::tenant_id.eq(new.tenant_id.into_uuid()),
            users::email.eq(new.email),
            users::display_name.eq(new.display_name),
            users::password_hash.eq(new.password_hash),
            users::role.eq(new.role.as_str()),
            users::status.eq(UserStatus::Active.as_str()),
            users::created_at.eq(new.now),
            users::updated_at.eq(new.now),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)?
        .try_into()
}

pub fn get(conn: &mut PgConnection, tenant: TenantId, id: UserId) -> Result<Option<User>, DbError> {
    convert(
        users::table
            .filter(users::tenant_id.eq(tenant.into_uuid()))
            .filter(users::id.eq(id.into_uuid()))
            .select(UserRow::as_select())
            .first(conn)
            .optional()?,
    )
}

/// A user with their password hash, for login only.
#[derive(Debug)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

pub fn find_credentials(
    conn: &mut PgConnection,
    tenant: TenantId,
    email: &str,
) -> Result<Option<UserCredentials>, DbError> {
    let found = users::table
        .filter(users::tenant_id.eq(tenant.into_uuid()))
        .filter(users::email.eq(email))
        .select((UserRow::as_select(), users::password_hash))
        .first::<(UserRow, String)>(conn)
        .optional()?;
    found
        .map(|(row, password_hash)| {
            Ok(UserCredentials {
                user: row.try_into()?,
                password_hash,
            })
        })
        .transpose()
}

/// Filters for listing users.
#[derive(Debug, Default)]
pub struct UserFilter {
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
}

pub fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    filter: &UserFilter,
    page: Page,
) -> Result<Vec<User>, DbError> {
    let mut query = users::table
        .filter(users::tenant_id.eq(tenant.into_uuid()))
        .select(UserRow::as_select())
        .order((users::created_at.asc(), users::id.asc()))
        .limit(page.limit)
        .offset(page.offset)
        .into_boxed();
    if let Some(role) = filter.role {
        query = query.filter(users::role.eq(role.as_str()));
    }
    if let Some(status) = filter.status {
        query = query.filter(users::status.eq(status.as_str()));
    }
    query.load(conn)?.into_iter().map(User::try_from).collect()
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct UserChanges {
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
    pub password_hash: Option<String>,
    pub last_login_at: Option<DateTime<Utc>>,
}

#[derive(AsChangeset)]
#[diesel(table_name = users)]
struct UserChangeset<'a> {
    display_name: Option<&'a str>,
    role: Option<&'static str>,
    status: Option<&'static str>,
    password_hash: Option<&'a str>,
    last_login_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

pub fn update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: UserId,
    changes: &UserChanges,
    now: DateTime<Utc>,
) -> Result<Option<User>, DbError> {
    let changeset = UserChangeset {
        display_name: changes.display_name.as_deref(),
        role: changes.role.map(Role::as_str),
        status: changes.status.map(UserStatus::as_str),
        password_hash: changes.password_hash.as_deref(),
        last_login_at: changes.last_login_at,
        updated_at: now,
    };
    convert(
        diesel::update(
            users::table
                .filter(users::tenant_id.eq(tenant.into_uuid()))
                .filter(users::id.eq(id.into_uuid())),
        )
        .set(&changeset)
        .returning(UserRow::as_returning())
        .get_result(conn)
        .optional()?,
    )
}

/// Users who hold a seat: every user not deactivated.
pub fn count_active(conn: &mut PgConnection, tenant: TenantId) -> Result<i64, DbError> {
    Ok(users::table
        .filter(users::tenant_id.eq(tenant.into_uuid()))
        .filter(users::status.ne(UserStatus::Deactivated.as_str()))
        .count()
        .get_result(conn)?)
}

pub fn count_active_admins(conn: &mut PgConnection, tenant: TenantId) -> Result<i64, DbError> {
    Ok(users::table
        .filter(users::tenant_id.eq(tenant.into_uuid()))
        .filter(users::role.eq(Role::Admin.as_str()))
        .filter(users::status.eq(UserStatus::Active.as_str()))
        .count()
        .get_result(conn)?)
}

/// What authenticating a session token needs to know, read in one query.
#[derive(Debug)]
pub struct SessionState {
    pub role: Role,
    pub user_status: UserStatus,
    pub tenant_status: TenantStatus,
    /// The login session was revoked (logout, refresh-token reuse, deactivation).
    pub session_revoked: bool,
    /// The tenant's plan and overrides (its limits).
    pub plan: paas_models::TenantPlan,
}

pub fn session_state(
    conn: &mut PgConnection,
    tenant: TenantId,
    user: UserId,
    family: TokenFamilyId,
) -> Result<Option<SessionState>, DbError> {
    let revoked = diesel::dsl::exists(
        refresh_tokens::table
            .filter(refresh_tokens::tenant_id.eq(tenant.into_uuid()))
            .filter(refresh_tokens::family_id.eq(family.into_uuid()))
            .filter(refresh_tokens::revoked_at.is_not_null()),
    );
    let quota = crate::schema::tenant_quotas::table
        .filter(crate::schema::tenant_quotas::tenant_id.eq(tenant.into_uuid()))
        .select(diesel::dsl::sql::<diesel::sql_types::Jsonb>(
            "to_jsonb(tenant_quotas)",
        ))
        .single_value();
    let found = users::table
        .inner_join(tenants::table)
        .filter(users::tenant_id.eq(tenant.into_uuid()))
        .filter(users::id.eq(user.into_uuid()))
        .select((
            users::role,
            users::status,
            tenants::status,
            revoked,
            tenants::plan,
            quota,
        ))
        .first::<(
            String,
            String,
            String,
            bool,
            String,
            Option<serde_json::Value>,
        )>(conn)
        .optional()?;
    found
        .map(
            |(role, user_status, tenant_status, session_revoked, plan, quota)| {
                Ok(SessionState {
                    role: parse_stored("users.role", &role)?,
                    user_status: parse_stored("users.status", &user_status)?,
                    tenant_status: parse_stored("tenants.status", &tenant_status)?,
                    session_revoked,
                    plan: paas_models::TenantPlan {
                        plan: parse_stored("tenants.plan", &plan)?,
                        overrides: crate::quotas::overrides_from_json(quota)?,
                    },
                })
            },
        )
        .transpose()
}
