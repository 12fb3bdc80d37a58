//! API keys: users manage their own; admins see and revoke every key in the tenant. A key
//! never carries a scope its owner's role does not allow, and it always expires.

use chrono::{DateTime, Utc};
use paas_auth::{Action, api_key, authorize, mintable_scopes};
use paas_core::{ApiKeyId, Error, Principal, Scope, ScopeSet, UserId};
use paas_models::{ApiKey, AuditAction, validate};
use paas_persistence::{api_keys, audit};
use secrecy::SecretString;
use serde_json::json;

use crate::services::{AuditContext, ClientInfo};
use crate::state::AppState;

/// Which keys to list.
#[derive(Debug, Default)]
pub struct KeyFilter {
    /// Admins may list any user's keys; others only their own.
    pub user_id: Option<UserId>,
    pub include_revoked: bool,
}

/// Whether the caller may see and revoke every key in the tenant, not just their own.
fn manages_all_keys(principal: &Principal) -> bool {
    authorize(principal, Action::ManageAllApiKeys).is_ok()
}

pub async fn list(
    state: &AppState,
    principal: &Principal,
    filter: KeyFilter,
) -> Result<Vec<ApiKey>, Error> {
    let owner = if manages_all_keys(principal) {
        filter.user_id
    } else {
        match filter.user_id {
            Some(other) if other != principal.user_id => {
                return Err(Error::forbidden(
                    "forbidden",
                    "only admins may list other users' keys",
                ));
            }
            _ => Some(principal.user_id),
        }
    };
    let tenant = principal.tenant_id;
    state
        .db
        .tenant_tx(tenant, move |conn| {
            api_keys::list(conn, tenant, owner, filter.include_revoked)
        })
        .await
}

/// When a new key expires.
#[derive(Debug)]
pub enum Expiry {
    Default,
    At(DateTime<Utc>),
    InDays(i64),
}

#[derive(Debug)]
pub struct NewKeyInput {
    pub name: String,
    pub scopes: Vec<String>,
    pub expiry: Expiry,
}

#[derive(Debug)]
pub struct CreatedKey {
    pub key: ApiKey,
    pub secret: SecretString,
}

fn parse_scopes(principal: &Principal, requested: &[String]) -> Result<ScopeSet, Error> {
    if requested.is_empty() {
        return Err(Error::validation("scopes", "give at least one scope"));
    }
    let mut scopes = ScopeSet::empty();
    for name in requested {
        let scope: Scope = name.parse().map_err(|_| {
            let known: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            Error::validation(
                "scopes",
                format!("unknown scope; known scopes are {}", known.join(", ")),
            )
        })?;
        scopes.insert(scope);
    }
    let allowed = mintable_scopes(principal.role);
    if !scopes.is_subset_of(allowed) {
        let excess: Vec<_> = scopes
            .iter()
            .filter(|s| !allowed.contains(*s))
            .map(|s| s.as_str())
            .collect();
        return Err(Error::forbidden(
            "scope_not_allowed",
            format!(
                "the {} role may not grant: {}",
                principal.role,
                excess.join(", ")
            ),
        ));
    }
    Ok(scopes)
}

fn expiry(state: &AppState, expiry: Expiry, now: DateTime<Utc>) -> Result<DateTime<Utc>, Error> {
    let max_days = i64::from(state.config.api_key_max_ttl_days);
    let at = match expiry {
        Expiry::Default => {
            now + chrono::Duration::days(i64::from(state.config.api_key_default_ttl_days))
        }
        Expiry::At(at) => at,
        Expiry::InDays(days) if (1..=max_days).contains(&days) => {
            now + chrono::Duration::days(days)
        }
        Expiry::InDays(_) => {
            return Err(Error::validation(
                "expires_in_days",
                format!("expires_in_days must be from 1 to {max_days}"),
            ));
        }
    };
    if at <= now {
        return Err(Error::validation(
            "expires_at",
            "expires_at must be in the future",
        ));
    }
    if at > now + chrono::Duration::days(max_days) {
        return Err(Error::validation(
            "expires_at",
            format!("keys may live at most {max_days} days"),
        ));
    }
    Ok(at)
}

pub async fn create(
    state: &AppState,
    principal: &Principal,
    input: NewKeyInput,
    client: &ClientInfo,
) -> Result<CreatedKey, Error> {
    let name = validate::display_name("name", &input.name, validate::API_KEY_NAME_MAX)?;
    let scopes = parse_scopes(principal, &input.scopes)?;
    let now = state.clock.now();
    let expires_at = expiry(state, input.expiry, now)?;
    let minted = api_key::mint();
    let ctx = AuditContext::for_principal(principal, client, now);
    let (tenant, owner) = (principal.tenant_id, principal.user_id);
    let (hash, prefix) = (minted.hash, minted.prefix.clone());
    let key = state
        .db
        .tenant_tx(tenant, move |conn| {
            let key = api_keys::insert(
                conn,
                &api_keys::NewApiKey {
                    id: ApiKeyId::new(),
                    tenant_id: tenant,
                    user_id: owner,
                    key_hash: &hash,
                    prefix: &prefix,
                    name: &name,
                    scopes,
                    expires_at,
                    now,
                },
            )?;
            audit::insert(
                conn,
                ctx.event(
                    AuditAction::ApiKeyCreated,
                    Some(("api_key", key.id.to_string())),
                    json!({"name": key.name, "prefix": key.prefix, "scopes": key.scopes, "expires_at": key.expires_at}),
                ),
            )?;
            Ok(key)
        })
        .await?;
    Ok(CreatedKey {
        key,
        secret: minted.secret,
    })
}

/// Revokes a key: the caller's own, or any key in the tenant for an admin. Another user's key
/// looks exactly like a missing one to a non-admin. Revoking twice is not an error.
pub async fn revoke(
    state: &AppState,
    principal: &Principal,
    id: ApiKeyId,
    client: &ClientInfo,
) -> Result<(), Error> {
    let now = state.clock.now();
    let ctx = AuditContext::for_principal(principal, client, now);
    let (tenant, caller, admin) = (
        principal.tenant_id,
        principal.user_id,
        manages_all_keys(principal),
    );
    let result = state
        .db
        .tenant_tx(tenant, move |conn| {
            let key = api_keys::get(conn, tenant, id)?
                .filter(|key| admin || key.user_id == caller)
                .ok_or_else(|| Error::not_found("API key"))?;
            if key.revoked_at.is_none() {
                api_keys::revoke(conn, tenant, id, now)?;
                audit::insert(
                    conn,
                    ctx.event(
                        AuditAction::ApiKeyRevoked,
                        Some(("api_key", id.to_string())),
                        json!({"name": key.name, "prefix": key.prefix, "owner": key.user_id}),
                    ),
                )?;
            }
            Ok(())
        })
        .await;
    state.cache.changed(tenant, result).await
}
