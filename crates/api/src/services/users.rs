//! Managing a tenant's users (admins only; the handler authorises). A tenant is never left
//! without an active admin: changes that would do so are refused with 409 `last_admin`, and the
//! check runs under a lock on the tenant's row so two concurrent changes cannot both pass it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use paas_core::{Error, Principal, Role, UserId};
use paas_models::{AuditAction, User, UserStatus, validate};
use paas_persistence::{Page, api_keys, audit, quotas, refresh_tokens, tenants, users};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::services::{AuditContext, ClientInfo, quota};
use crate::state::AppState;

pub async fn list(
    state: &AppState,
    principal: &Principal,
    filter: users::UserFilter,
    page: Page,
) -> Result<Vec<User>, Error> {
    let tenant = principal.tenant_id;
    state
        .db
        .tenant_tx(tenant, move |conn| users::list(conn, tenant, &filter, page))
        .await
}

pub async fn get(state: &AppState, principal: &Principal, id: UserId) -> Result<User, Error> {
    let tenant = principal.tenant_id;
    state
        .db
        .tenant_tx(tenant, move |conn| users::get(conn, tenant, id))
        .await?
        .ok_or_else(|| Error::not_found("user"))
}

/// What creating a user asks for.
#[derive(Debug)]
pub struct NewUserInput {
    pub email: String,
    pub role: Role,
    pub display_name: Option<String>,
    /// Without one, a temporary password is generated and returned once.
    pub password: Option<SecretString>,
}

#[derive(Debug)]
pub struct CreatedUser {
    pub user: User,
    pub temporary_password: Option<SecretString>,
}

fn temporary_password() -> SecretString {
    let mut bytes = [0u8; 15];
    rand::fill(&mut bytes);
    SecretString::from(URL_SAFE_NO_PAD.encode(bytes))
}

pub async fn create(
    state: &AppState,
    principal: &Principal,
    input: NewUserInput,
    client: &ClientInfo,
) -> Result<CreatedUser, Error> {
    let email = validate::email(&input.email)?;
    let display_name = match &input.display_name {
        Some(name) => validate::display_name("display_name", name, validate::DISPLAY_NAME_MAX)?,
        None => email.split('@').next().unwrap_or(&email).to_owned(),
    };
    let (password, temporary_password) = match input.password {
        Some(password) => {
            validate::new_password(password.expose_secret())?;
            (password, None)
        }
        None => {
            let generated = temporary_password();
            (generated.clone(), Some(generated))
        }
    };
    let hash = state.passwords.hash(password).await?;
    let now = state.clock.now();
    let ctx = AuditContext::for_principal(principal, client, now);
    let tenant = principal.tenant_id;
    let role = input.role;
    let user = state
        .db
        .tenant_tx(tenant, move |conn| {
            // Locks the quota row: concurrent invites cannot both take the last seat.
            let limits = quotas::lock_limits(conn, tenant)?;
            quota::ensure_below(
                users::count_active(conn, tenant)?,
                limits.max_users,
                "users",
                "max_users",
            )?;
            let user = users::insert(
                conn,
                &users::NewUser {
                    id: UserId::new(),
                    tenant_id: tenant,
                    email: &email,
                    display_name: &display_name,
                    password_hash: &hash,
                    role,
                    now,
                },
            )?;
            audit::insert(
                conn,
                ctx.event(
                    AuditAction::UserCreated,
                    Some(("user", user.id.to_string())),
                    json!({"email": user.email, "role": user.role}),
                ),
            )?;
            Ok(user)
        })
        .await?;
    Ok(CreatedUser {
        user,
        temporary_password,
    })
}

/// Changes an admin may make to a user.
#[derive(Debug, Default)]
pub struct UserUpdate {
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
}

pub async fn update(
    state: &AppState,
    principal: &Principal,
    id: UserId,
    update: UserUpdate,
    client: &ClientInfo,
) -> Result<User, Error> {
    let display_name = update
        .display_name
        .as_deref()
        .map(|name| validate::display_name("display_name", name, validate::DISPLAY_NAME_MAX))
        .transpose()?;
    let now = state.clock.now();
    let ctx = AuditContext::for_principal(principal, client, now);
    let tenant = principal.tenant_id;
    let result = state
        .db
        .tenant_tx(tenant, move |conn| {
            tenants::lock(conn, tenant)?;
            let before = users::get(conn, tenant, id)?.ok_or_else(|| Error::not_found("user"))?;
            let role = update.role.filter(|r| *r != before.role);
            let status = update.status.filter(|s| *s != before.status);
            let loses_admin = before.role == Role::Admin
                && before.status == UserStatus::Active
                && (role.is_some() || status == Some(UserStatus::Deactivated));
            if before.status == UserStatus::Deactivated && status.is_some() {
                // Reactivating takes a seat again.
                let limits = quotas::lock_limits(conn, tenant)?;
                quota::ensure_below(
                    users::count_active(conn, tenant)?,
                    limits.max_users,
                    "users",
                    "max_users",
                )?;
            }
            if loses_admin && users::count_active_admins(conn, tenant)? <= 1 {
                return Err(Error::conflict(
                    "last_admin",
                    "this is the tenant's last active admin; make another user admin first",
                )
                .into());
            }
            let changes = users::UserChanges {
                display_name: display_name.clone(),
                role,
                status,
                ..Default::default()
            };
            let after = users::update(conn, tenant, id, &changes, now)?
                .ok_or_else(|| Error::not_found("user"))?;
            let target = || Some(("user", id.to_string()));
            if let Some(role) = role {
                audit::insert(
                    conn,
                    ctx.event(
                        AuditAction::UserRoleChanged,
                        target(),
                        json!({"from": before.role, "to": role}),
                    ),
                )?;
            }
            match status {
                Some(UserStatus::Deactivated) => {
                    // End every session and key at once, not when tokens expire.
                    refresh_tokens::revoke_all_for_user(conn, tenant, id, now)?;
                    let keys = api_keys::revoke_all_for_user(conn, tenant, id, now)?;
                    audit::insert(
                        conn,
                        ctx.event(
                            AuditAction::UserDeactivated,
                            target(),
                            json!({"api_keys_revoked": keys}),
                        ),
                    )?;
                }
                Some(UserStatus::Active) => {
                    audit::insert(
                        conn,
                        ctx.event(AuditAction::UserReactivated, target(), json!({})),
                    )?;
                }
                None => {}
            }
            if let Some(name) = display_name {
                audit::insert(
                    conn,
                    ctx.event(
                        AuditAction::UserUpdated,
                        target(),
                        json!({"display_name": name}),
                    ),
                )?;
            }
            Ok(after)
        })
        .await;
    state.cache.changed(tenant, result).await
}

/// Deactivates a user (users are never deleted: the audit log and usage keep pointing at them).
pub async fn deactivate(
    state: &AppState,
    principal: &Principal,
    id: UserId,
    client: &ClientInfo,
) -> Result<User, Error> {
    update(
        state,
        principal,
        id,
        UserUpdate {
            status: Some(UserStatus::Deactivated),
            ..Default::default()
        },
        client,
    )
    .await
}
