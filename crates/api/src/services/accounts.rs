//! Sign-up, login, token refresh and logout, and a user's own account.

use chrono::{DateTime, Utc};
use paas_core::{Error, Principal, RefreshTokenId, Role, TenantId, TokenFamilyId, UserId};
use paas_models::{AuditAction, Plan, Tenant, TenantStatus, User, UserStatus, validate};
use paas_persistence::{PgConnection, audit, refresh_tokens, tenants, users};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::services::authn::ensure_active;
use crate::services::{AuditContext, ClientInfo};
use crate::state::AppState;

/// An access/refresh token pair.
#[derive(Debug)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub access_expires_in: i64,
    pub refresh_expires_in: i64,
}

/// What sign-up asks for.
#[derive(Debug)]
pub struct Signup {
    pub tenant_name: String,
    pub tenant_display_name: Option<String>,
    pub email: String,
    pub password: SecretString,
    pub display_name: Option<String>,
}

#[derive(Debug)]
pub struct SignedUp {
    pub tenant: Tenant,
    pub user: User,
    pub tokens: TokenPair,
}

/// Ids and times for a new login session, chosen before the transaction that stores it.
struct NewSession {
    family: TokenFamilyId,
    refresh_id: RefreshTokenId,
    now: DateTime<Utc>,
}

impl NewSession {
    fn start(now: DateTime<Utc>) -> Self {
        Self {
            family: TokenFamilyId::new(),
            refresh_id: RefreshTokenId::new(),
            now,
        }
    }

    /// Stores the refresh token row (inside the caller's transaction).
    fn store(
        &self,
        conn: &mut PgConnection,
        state_refresh_ttl: chrono::Duration,
        tenant: TenantId,
        user: UserId,
    ) -> Result<(), paas_persistence::DbError> {
        refresh_tokens::insert(
            conn,
            &refresh_tokens::NewRefreshToken {
                id: self.refresh_id,
                tenant_id: tenant,
                user_id: user,
                family_id: self.family,
                expires_at: self.now + state_refresh_ttl,
                now: self.now,
            },
        )
    }

    fn tokens(
        &self,
        state: &AppState,
        tenant: TenantId,
        user: UserId,
        role: Role,
    ) -> Result<TokenPair, Error> {
        let access = state
            .jwt
            .issue_access(tenant, user, role, self.family, self.now)?;
        let refresh =
            state
                .jwt
                .issue_refresh(tenant, user, self.family, self.refresh_id, self.now)?;
        Ok(TokenPair {
            access_token: access.token,
            refresh_token: refresh.token,
            access_expires_in: (access.expires_at - self.now).num_seconds(),
            refresh_expires_in: (refresh.expires_at - self.now).num_seconds(),
        })
    }
}

fn refresh_ttl(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(state.jwt.refresh_ttl()).unwrap_or(chrono::Duration::days(30))
}

/// Default display name: the part of the email before the `@`.
fn default_display_name(email: &str) -> String {
    email
        .split('@')
        .next()
        .unwrap_or(email)
        .chars()
        .take(validate::DISPLAY_NAME_MAX)
        .collect()
}

/// Creates a tenant with its first user as admin, and logs that user in.
pub async fn signup(
    state: &AppState,
    input: Signup,
    client: &ClientInfo,
) -> Result<SignedUp, Error> {
    if !state.config.allow_signup {
        return Err(Error::forbidden(
            "signup_disabled",
            "sign-up is disabled on this server; ask the operator to create your tenant",
        ));
    }
    let tenant_name = validate::tenant_name(&input.tenant_name)?;
    let tenant_display_name = match &input.tenant_display_name {
        Some(name) => validate::display_name(
            "tenant_display_name",
            name,
            validate::TENANT_DISPLAY_NAME_MAX,
        )?,
        None => tenant_name.clone(),
    };
    let email = validate::email(&input.email)?;
    validate::new_password(input.password.expose_secret())?;
    let display_name = match &input.display_name {
        Some(name) => validate::display_name("display_name", name, validate::DISPLAY_NAME_MAX)?,
        None => default_display_name(&email),
    };
    let password_hash = state.passwords.hash(input.password).await?;

    let created = create_tenant(
        state,
        NewTenantInput {
            name: tenant_name,
            display_name: tenant_display_name,
            plan: Plan::Free,
            email,
            display_name_of_admin: display_name,
            password_hash,
        },
        Some(client.clone()),
        true,
    )
    .await?;
    let (tenant, user, session) = created;
    let session = session.ok_or_else(|| Error::internal("sign-up did not start a session"))?;
    let tokens = session.tokens(state, tenant.id, user.id, user.role)?;
    Ok(SignedUp {
        tenant,
        user,
        tokens,
    })
}

/// A tenant and its first admin, as sign-up and the `tenant create` command make them.
#[derive(Debug)]
pub struct NewTenantInput {
    pub name: String,
    pub display_name: String,
    pub plan: Plan,
    pub email: String,
    pub display_name_of_admin: String,
    /// bcrypt hash of the admin's password.
    pub password_hash: String,
}

/// Creates the tenant, its quota row and its admin in one transaction, with audit entries; with
/// `start_session`, also stores a refresh token for the admin.
async fn create_tenant(
    state: &AppState,
    input: NewTenantInput,
    client: Option<ClientInfo>,
    start_session: bool,
) -> Result<(Tenant, User, Option<NewSession>), Error> {
    let tenant_id = TenantId::new();
    let user_id = UserId::new();
    let now = state.clock.now();
    let session = start_session.then(|| NewSession::start(now));
    let ttl = refresh_ttl(state);
    let client = client.unwrap_or_else(|| ClientInfo {
        ip: String::new(),
        user_agent: Some("agent-paas CLI".into()),
    });
    state
        .db
        .tenant_tx(tenant_id, move |conn| {
            let tenant = tenants::insert(
                conn,
                &tenants::NewTenant {
                    id: tenant_id,
                    name: &input.name,
                    display_name: &input.display_name,
                    plan: input.plan,
                    now,
                },
            )?;
            let user = users::insert(
                conn,
                &users::NewUser {
                    id: user_id,
                    tenant_id,
                    email: &input.email,
                    display_name: &input.display_name_of_admin,
                    password_hash: &input.password_hash,
                    role: Role::Admin,
                    now,
                },
            )?;
            let ctx = AuditContext {
                tenant_id,
                actor_user_id: Some(user_id),
                actor_api_key_id: None,
                client,
                now,
            };
            audit::insert(
                conn,
                ctx.event(
                    AuditAction::TenantCreated,
                    Some(("tenant", tenant_id.to_string())),
                    json!({"name": tenant.name, "plan": tenant.plan}),
                ),
            )?;
            audit::insert(
                conn,
                ctx.event(
                    AuditAction::UserCreated,
                    Some(("user", user_id.to_string())),
                    json!({"email": user.email, "role": user.role}),
                ),
            )?;
            let user = match &session {
                Some(session) => {
                    session.store(conn, ttl, tenant_id, user_id)?;
                    users::update(
                        conn,
                        tenant_id,
                        user_id,
                        &users::UserChanges {
                            last_login_at: Some(now),
                            ..Default::default()
                        },
                        now,
                    )?
                    .unwrap_or(user)
                }
                None => user,
            };
            Ok((tenant, user, session))
        })
        .await
}

/// Creates a tenant and its admin without logging in (the `tenant create` command).
pub async fn bootstrap_tenant(
    state: &AppState,
    name: &str,
    email: &str,
    password: SecretString,
    plan: Plan,
) -> Result<(Tenant, User), Error> {
    let name = validate::tenant_name(name)?;
    let email = validate::email(email)?;
    validate::new_password(password.expose_secret())?;
    let password_hash = state.passwords.hash(password).await?;
    let input = NewTenantInput {
        display_name: name.clone(),
        name,
        plan,
        display_name_of_admin: default_display_name(&email),
        email,
        password_hash,
    };
    let (tenant, user, _) = create_tenant(state, input, None, false).await?;
    Ok((tenant, user))
}

/// What login asks for.
#[derive(Debug)]
pub struct Login {
    pub tenant: String,
    pub email: String,
    pub password: SecretString,
}

#[derive(Debug)]
pub struct LoggedIn {
    pub user: User,
    pub tokens: TokenPair,
}

fn invalid_credentials() -> Error {
    Error::unauthenticated(
        "invalid_credentials",
        "the tenant, email or password is wrong",
    )
}

/// What checking a login's credentials found.
struct Checked {
    tenant: Option<(TenantId, TenantStatus)>,
    credentials: Option<users::UserCredentials>,
    matches: bool,
}

/// Looks up the tenant and the user and verifies the password: always one bcrypt verification,
/// against a dummy hash when the tenant or user is unknown.
async fn check_credentials(
    state: &AppState,
    tenant_name: &str,
    email: &str,
    password: SecretString,
) -> Result<Checked, Error> {
    // Malformed names cannot exist; look nothing up but still spend a hash's time.
    let well_formed = validate::tenant_name(tenant_name).is_ok() && validate::email(email).is_ok();
    let tenant = if well_formed {
        let name = tenant_name.to_owned();
        state
            .db
            .anonymous_tx(move |conn| tenants::find_by_name(conn, &name))
            .await?
    } else {
        None
    };
    let credentials = match tenant {
        Some((tenant_id, _)) => {
            let email = email.to_owned();
            state
                .db
                .tenant_tx(tenant_id, move |conn| {
                    users::find_credentials(conn, tenant_id, &email)
                })
                .await?
        }
        None => None,
    };
    let hash = credentials.as_ref().map(|c| c.password_hash.clone());
    let matches = state.passwords.verify(password, hash).await?;
    Ok(Checked {
        tenant,
        credentials,
        matches,
    })
}

/// Checks a password login. Unknown tenants and users take as long as wrong passwords, and all
/// three get the same answer. The attempt is counted by the throttle before the password is
/// checked (so parallel guesses cannot get past the limit) and taken back if it succeeds.
pub async fn login(state: &AppState, input: Login, client: &ClientInfo) -> Result<LoggedIn, Error> {
    let email = input.email.trim().to_lowercase();
    let tenant_name = input.tenant.trim().to_owned();
    let keys = state.login_throttle.keys(&tenant_name, &email, &client.ip);
    let attempt = state.login_throttle.attempt(&keys).await?;

    let checked = match check_credentials(state, &tenant_name, &email, input.password).await {
        Ok(checked) => checked,
        Err(err) => {
            // Not a failed guess: the check itself could not be made.
            state.login_throttle.forgive(attempt).await;
            return Err(err);
        }
    };
    let now = state.clock.now();

    let (tenant_id, tenant_status, user) = match checked {
        Checked {
            tenant: Some((tenant_id, status)),
            credentials: Some(credentials),
            matches: true,
        } => (tenant_id, status, credentials.user),
        Checked {
            tenant,
            credentials,
            ..
        } => {
            // The attempt stays counted: it was a failure.
            if let Some((tenant_id, _)) = tenant {
                let reason = if credentials.is_some() {
                    "wrong_password"
                } else {
                    "unknown_email"
                };
                let actor = credentials.map(|c| c.user.id);
                record_failed_login(state, tenant_id, actor, &email, reason, client, now).await;
            }
            return Err(invalid_credentials());
        }
    };
    if user.status == UserStatus::Deactivated && tenant_status == TenantStatus::Active {
        record_failed_login(
            state,
            tenant_id,
            Some(user.id),
            &email,
            "deactivated",
            client,
            now,
        )
        .await;
    }
    if let Err(err) = ensure_active(tenant_status, user.status) {
        // The password was right: no failed guess to count.
        state.login_throttle.forgive(attempt).await;
        return Err(err);
    }
    state.login_throttle.succeeded(attempt).await;

    let session = NewSession::start(now);
    let ttl = refresh_ttl(state);
    let ctx = AuditContext {
        tenant_id,
        actor_user_id: Some(user.id),
        actor_api_key_id: None,
        client: client.clone(),
        now,
    };
    let user_id = user.id;
    let (user, session) = state
        .db
        .tenant_tx(tenant_id, move |conn| {
            session.store(conn, ttl, tenant_id, user_id)?;
            refresh_tokens::prune_expired(conn, tenant_id, user_id, now)?;
            let user = users::update(
                conn,
                tenant_id,
                user_id,
                &users::UserChanges {
                    last_login_at: Some(now),
                    ..Default::default()
                },
                now,
            )?
            .ok_or_else(invalid_credentials)?;
            audit::insert(
                conn,
                ctx.event(
                    AuditAction::Login,
                    Some(("user", user_id.to_string())),
                    json!({}),
                ),
            )?;
            Ok((user, session))
        })
        .await?;
    let tokens = session.tokens(state, tenant_id, user.id, user.role)?;
    Ok(LoggedIn { user, tokens })
}

async fn record_failed_login(
    state: &AppState,
    tenant_id: TenantId,
    user: Option<UserId>,
    email: &str,
    reason: &'static str,
    client: &ClientInfo,
    now: DateTime<Utc>,
) {
    let ctx = AuditContext {
        tenant_id,
        actor_user_id: user,
        actor_api_key_id: None,
        client: client.clone(),
        now,
    };
    let event = ctx.event(
        AuditAction::LoginFailed,
        user.map(|u| ("user", u.to_string())),
        json!({"email": email, "reason": reason}),
    );
    if let Err(err) = state
        .db
        .tenant_tx(tenant_id, move |conn| audit::insert(conn, event))
        .await
    {
        tracing::warn!(code = err.code(), "could not record a failed login");
    }
}

/// What a refresh decided inside its transaction.
enum RefreshOutcome {
    Rotated(RefreshTokenId, Role),
    Reused,
}

/// Exchanges a refresh token for a new pair. The presented token is spent; presenting a spent
/// token again revokes its whole family (every token from that login) and is refused.
pub async fn refresh(
    state: &AppState,
    refresh_token: &str,
    client: &ClientInfo,
) -> Result<TokenPair, Error> {
    let claims = state.jwt.verify_refresh(refresh_token)?;
    let (tenant, user, family, token_id) = (claims.tid, claims.sub, claims.sid, claims.jti);
    let now = state.clock.now();
    let next_id = RefreshTokenId::new();
    let ttl = refresh_ttl(state);
    let ctx = AuditContext {
        tenant_id: tenant,
        actor_user_id: Some(user),
        actor_api_key_id: None,
        client: client.clone(),
        now,
    };
    let outcome = state
        .db
        .tenant_tx(tenant, move |conn| {
            let invalid =
                || Error::unauthenticated("invalid_token", "the refresh token is invalid");
            let row =
                refresh_tokens::get_for_update(conn, tenant, token_id)?.ok_or_else(invalid)?;
            if row.user_id != user.into_uuid() || row.family_id != family.into_uuid() {
                return Err(invalid().into());
            }
            if row.revoked_at.is_some() {
                return Err(Error::unauthenticated(
                    "session_revoked",
                    "this session has ended; log in again",
                )
                .into());
            }
            if row.used_at.is_some() {
                refresh_tokens::revoke_family(conn, tenant, family, now)?;
                audit::insert(
                    conn,
                    ctx.event(
                        AuditAction::RefreshTokenReused,
                        Some(("user", user.to_string())),
                        json!({"session": family}),
                    ),
                )?;
                return Ok(RefreshOutcome::Reused);
            }
            let state = users::session_state(conn, tenant, user, family)?.ok_or_else(invalid)?;
            ensure_active(state.tenant_status, state.user_status)?;
            refresh_tokens::mark_used(conn, tenant, token_id, now)?;
            refresh_tokens::insert(
                conn,
                &refresh_tokens::NewRefreshToken {
                    id: next_id,
                    tenant_id: tenant,
                    user_id: user,
                    family_id: family,
                    expires_at: now + ttl,
                    now,
                },
            )?;
            Ok(RefreshOutcome::Rotated(next_id, state.role))
        })
        .await?;
    match outcome {
        RefreshOutcome::Reused => Err(Error::unauthenticated(
            "refresh_token_reused",
            "this refresh token was already used; the session has been revoked, log in again",
        )),
        RefreshOutcome::Rotated(refresh_id, role) => NewSession {
            family,
            refresh_id,
            now,
        }
        .tokens(state, tenant, user, role),
    }
}

/// Ends the login session the refresh token belongs to: the refresh token and every access
/// token of that session stop working. An expired token still ends its session (it may be an
/// old, rotated token of a session that is still live); a forged one is refused.
pub async fn logout(
    state: &AppState,
    refresh_token: &str,
    client: &ClientInfo,
) -> Result<(), Error> {
    let claims = state.jwt.verify_refresh_for_logout(refresh_token)?;
    let (tenant, user, family) = (claims.tid, claims.sub, claims.sid);
    let now = state.clock.now();
    let ctx = AuditContext {
        tenant_id: tenant,
        actor_user_id: Some(user),
        actor_api_key_id: None,
        client: client.clone(),
        now,
    };
    state
        .db
        .tenant_tx(tenant, move |conn| {
            if refresh_tokens::revoke_family(conn, tenant, family, now)? > 0 {
                audit::insert(
                    conn,
                    ctx.event(
                        AuditAction::Logout,
                        Some(("user", user.to_string())),
                        json!({}),
                    ),
                )?;
            }
            Ok(())
        })
        .await
}

/// The caller's own user and tenant.
pub async fn me(state: &AppState, principal: &Principal) -> Result<(User, Tenant), Error> {
    let (tenant, user) = (principal.tenant_id, principal.user_id);
    let found = state
        .db
        .tenant_tx(tenant, move |conn| {
            Ok((users::get(conn, tenant, user)?, tenants::get(conn, tenant)?))
        })
        .await?;
    match found {
        (Some(user), Some(tenant)) => Ok((user, tenant)),
        _ => Err(Error::not_found("user")),
    }
}

/// Changes the caller's own display name.
pub async fn update_profile(
    state: &AppState,
    principal: &Principal,
    display_name: &str,
    client: &ClientInfo,
) -> Result<User, Error> {
    let display_name =
        validate::display_name("display_name", display_name, validate::DISPLAY_NAME_MAX)?;
    let now = state.clock.now();
    let ctx = AuditContext::for_principal(principal, client, now);
    let (tenant, user) = (principal.tenant_id, principal.user_id);
    state
        .db
        .tenant_tx(tenant, move |conn| {
            let changes = users::UserChanges {
                display_name: Some(display_name.clone()),
                ..Default::default()
            };
            let updated = users::update(conn, tenant, user, &changes, now)?
                .ok_or_else(|| Error::not_found("user"))?;
            audit::insert(
                conn,
                ctx.event(
                    AuditAction::UserUpdated,
                    Some(("user", user.to_string())),
                    json!({"display_name": display_name}),
                ),
            )?;
            Ok(updated)
        })
        .await
}

/// Changes the caller's password after checking the current one; every other login session of
/// the user is ended. Wrong guesses count against the same throttle as failed logins, so a
/// stolen access token cannot be used to guess the password without limit.
pub async fn change_password(
    state: &AppState,
    principal: &Principal,
    current: SecretString,
    new: SecretString,
    client: &ClientInfo,
) -> Result<(), Error> {
    validate::new_password(new.expose_secret())?;
    let (tenant, user) = (principal.tenant_id, principal.user_id);
    let current_session = match principal.credential {
        paas_core::Credential::Session { family } => Some(family),
        paas_core::Credential::ApiKey { .. } => None,
    };
    let (found_user, found_tenant) = me(state, principal).await?;
    let keys = state
        .login_throttle
        .keys(&found_tenant.name, &found_user.email, &client.ip);
    let attempt = state.login_throttle.attempt(&keys).await?;
    let email = found_user.email.clone();
    let checked = async {
        let stored = state
            .db
            .tenant_tx(tenant, move |conn| {
                users::find_credentials(conn, tenant, &email)
            })
            .await?
            .map(|c| c.password_hash);
        state.passwords.verify(current, stored).await
    }
    .await;
    match checked {
        // A wrong guess stays counted.
        Ok(false) => {
            return Err(Error::bad_request(
                "wrong_password",
                "the current password is wrong",
            ));
        }
        // The right password is no failure (and, unlike a login, does not clear the counter).
        Ok(true) => state.login_throttle.forgive(attempt).await,
        Err(err) => {
            state.login_throttle.forgive(attempt).await;
            return Err(err);
        }
    }
    let hash = state.passwords.hash(new).await?;
    let now = state.clock.now();
    let ctx = AuditContext::for_principal(principal, client, now);
    state
        .db
        .tenant_tx(tenant, move |conn| {
            let changes = users::UserChanges {
                password_hash: Some(hash),
                ..Default::default()
            };
            users::update(conn, tenant, user, &changes, now)?
                .ok_or_else(|| Error::not_found("user"))?;
            let sessions = refresh_tokens::sessions_of_user(conn, tenant, user)?;
            for family in sessions.into_iter().filter(|f| Some(*f) != current_session) {
                refresh_tokens::revoke_family(conn, tenant, family, now)?;
            }
            audit::insert(
                conn,
                ctx.event(
                    AuditAction::PasswordChanged,
                    Some(("user", user.to_string())),
                    json!({}),
                ),
            )?;
            Ok(())
        })
        .await
}
