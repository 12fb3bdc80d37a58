//! Authentication: turning a presented credential into a [`Principal`], checking on every
//! request that the user is active, the tenant is not suspended, the login session or key has
//! not been revoked, and the key has not expired — so each of those takes effect at once.

use paas_auth::api_key;
use paas_core::{Credential, Error, Principal, TenantId};
use paas_models::{TenantPlan, TenantStatus, UserStatus};
use paas_persistence::{api_keys, users};

use crate::cache::KeyAuth;
use crate::state::AppState;

/// A credential as presented, before it is checked.
#[derive(Debug)]
pub enum Presented {
    /// A JWT access token.
    AccessToken(String),
    /// An `ap_…` API key.
    ApiKey(String),
}

/// Refuses a suspended tenant or a deactivated user: the one check every way in (access token,
/// API key, login, refresh) makes, with the same answer.
pub(crate) fn ensure_active(tenant: TenantStatus, user: UserStatus) -> Result<(), Error> {
    if tenant == TenantStatus::Suspended {
        return Err(Error::forbidden(
            "tenant_suspended",
            "this tenant is suspended; contact the platform operator",
        ));
    }
    if user == UserStatus::Deactivated {
        return Err(Error::forbidden(
            "user_deactivated",
            "this account is deactivated; ask a tenant admin",
        ));
    }
    Ok(())
}

/// Checks a presented credential. See the module docs.
pub async fn authenticate(
    state: &AppState,
    presented: Presented,
) -> Result<(Principal, TenantPlan), Error> {
    match presented {
        Presented::AccessToken(token) => authenticate_token(state, &token).await,
        Presented::ApiKey(key) => authenticate_key(state, &key).await,
    }
}

async fn authenticate_token(
    state: &AppState,
    token: &str,
) -> Result<(Principal, TenantPlan), Error> {
    let claims = state.jwt.verify_access(token)?;
    let (tenant, user, family) = (claims.tid, claims.sub, claims.sid);
    let found = state
        .db
        .tenant_tx(tenant, move |conn| {
            users::session_state(conn, tenant, user, family)
        })
        .await?;
    let Some(session) = found else {
        return Err(Error::unauthenticated(
            "invalid_token",
            "the token is invalid",
        ));
    };
    ensure_active(session.tenant_status, session.user_status)?;
    if session.session_revoked {
        return Err(Error::unauthenticated(
            "session_revoked",
            "this session has ended (logged out or revoked); log in again",
        ));
    }
    let principal = Principal {
        tenant_id: tenant,
        user_id: user,
        role: session.role,
        credential: Credential::Session { family },
    };
    Ok((principal, session.plan))
}

async fn authenticate_key(state: &AppState, key: &str) -> Result<(Principal, TenantPlan), Error> {
    let invalid = || Error::unauthenticated("invalid_api_key", "the API key is not valid");
    if !api_key::looks_like_key(key) {
        return Err(invalid());
    }
    let hash = api_key::hash(key);
    let now = state.clock.now();
    if let Some(cached) = state.cache.key(&hash)
        && cached.expires_at > now
    {
        if let Some(key) = cached.principal.api_key_id()
            && now - cached.touched_at > chrono::Duration::minutes(1)
        {
            record_key_use(state, cached.principal.tenant_id, key);
            state.cache.touch_key(&hash, now);
        }
        return Ok((cached.principal, cached.plan));
    }
    let stamp = state.cache.stamp();
    let found = state
        .db
        .anonymous_tx(move |conn| api_keys::find_by_hash(conn, &hash))
        .await?;
    let Some(found) = found else {
        return Err(invalid());
    };
    if !api_key::hashes_match(&found.key_hash, &hash) {
        return Err(invalid());
    }
    if found.revoked_at.is_some() {
        return Err(Error::unauthenticated(
            "api_key_revoked",
            "this API key has been revoked",
        ));
    }
    if found.expires_at <= now {
        return Err(Error::unauthenticated(
            "api_key_expired",
            "this API key has expired; create a new one",
        ));
    }
    ensure_active(found.tenant_status, found.owner_status)?;
    let stale = found
        .last_used_at
        .is_none_or(|at| now - at > chrono::Duration::minutes(1));
    if stale {
        record_key_use(state, found.tenant_id, found.id);
    }
    let principal = Principal {
        tenant_id: found.tenant_id,
        user_id: found.user_id,
        role: found.owner_role,
        credential: Credential::ApiKey {
            id: found.id,
            scopes: found.scopes,
        },
    };
    let touched_at = if stale {
        now
    } else {
        found.last_used_at.unwrap_or(now)
    };
    state.cache.put_key(
        stamp,
        hash,
        KeyAuth {
            principal,
            plan: found.tenant_plan,
            expires_at: found.expires_at,
            touched_at,
        },
    );
    Ok((principal, found.tenant_plan))
}

/// Records a key's last use off the request path (at most once a minute per key).
fn record_key_use(state: &AppState, tenant: TenantId, key: paas_core::ApiKeyId) {
    let db = state.db.clone();
    let now = state.clock.now();
    tokio::spawn(async move {
        if let Err(err) = db
            .tenant_tx(tenant, move |conn| api_keys::touch(conn, tenant, key, now))
            .await
        {
            tracing::warn!(code = err.code(), "could not record API key use");
        }
    });
}
