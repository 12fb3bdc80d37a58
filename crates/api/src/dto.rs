//! Request and response bodies of the HTTP API. Requests refuse unknown fields, so a field the
//! caller may not set (`tenant_id`, `id`, `role` where it is not offered) is an error, never
//! silently applied. Secrets in requests are `SecretString`, so they never reach a `Debug` log.

use chrono::{DateTime, Utc};
use paas_core::{ApiKeyId, AuditEventId, Role, Scope, UserId};
use paas_models::{ApiKey, AuditEvent, Tenant, User, UserStatus};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::services::accounts::TokenPair;

// ---- auth ------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// Slug: 3–63 lowercase letters, digits and hyphens.
    #[schema(example = "acme")]
    pub tenant_name: String,
    /// Shown in the dashboard; defaults to `tenant_name`.
    pub tenant_display_name: Option<String>,
    #[schema(example = "ada@acme.example")]
    pub email: String,
    /// 10 characters to 72 bytes.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The tenant's name (slug).
    #[schema(example = "acme")]
    pub tenant: String,
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(value_type = String)]
    pub refresh_token: SecretString,
}

/// An access/refresh token pair.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: i64,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: i64,
}

impl From<TokenPair> for Tokens {
    fn from(pair: TokenPair) -> Self {
        Self {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: "Bearer",
            expires_in: pair.access_expires_in,
            refresh_expires_in: pair.refresh_expires_in,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignupResponse {
    pub tenant: Tenant,
    pub user: User,
    #[serde(flatten)]
    pub tokens: Tokens,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub user: User,
    #[serde(flatten)]
    pub tokens: Tokens,
}

// ---- me --------------------------------------------------------------------------------------

/// How the caller authenticated.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthInfo {
    /// `session` (a login's access token) or `api_key`.
    pub method: &'static str,
    pub api_key_id: Option<ApiKeyId>,
    /// The key's scopes (API keys only).
    pub scopes: Option<Vec<Scope>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub user: User,
    pub role: Role,
    pub tenant: Tenant,
    pub auth: AuthInfo,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    pub display_name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretString,
}

// ---- users -----------------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub email: String,
    pub role: Role,
    pub display_name: Option<String>,
    /// Omit to have a temporary password generated and returned once.
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreateUserResponse {
    pub user: User,
    /// Present only when no password was given: shown this once, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporary_password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    pub display_name: Option<String>,
    pub role: Option<Role>,
    /// `deactivated` ends the user's sessions and revokes their keys; `active` reactivates.
    pub status: Option<UserStatus>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListUsersQuery {
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<User>,
    pub limit: i64,
    pub offset: i64,
}

// ---- API keys --------------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    #[schema(example = "ci pipeline")]
    pub name: String,
    /// Any of `chat`, `agents:read`, `agents:write`, `sessions:read`, `sessions:write`,
    /// `usage:read`, `admin` that the caller's role allows.
    #[schema(example = json!(["chat", "agents:read"]))]
    pub scopes: Vec<String>,
    /// When the key stops working (at most the server's maximum, 365 days by default).
    pub expires_at: Option<DateTime<Utc>>,
    /// Alternative to `expires_at`. Default: the server's default (90 days).
    pub expires_in_days: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreateApiKeyResponse {
    pub id: ApiKeyId,
    /// The secret. Shown this once: store it now.
    pub key: String,
    pub prefix: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListApiKeysQuery {
    /// Admins: only this user's keys. Others may only name themselves.
    pub user_id: Option<UserId>,
    /// Include revoked keys (default false).
    pub include_revoked: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKey>,
}

// ---- tenant and audit ------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantRequest {
    pub display_name: Option<String>,
    /// Replaces the settings object (at most 16 KiB, nested at most 8 deep).
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this action, e.g. `user.role_changed`.
    pub action: Option<String>,
    pub actor_user_id: Option<UserId>,
    /// Only events older than this one (use the previous page's `next_before`).
    pub before: Option<AuditEventId>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditEvent>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    pub next_before: Option<AuditEventId>,
}

// ---- health ----------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: &'static str,
    /// `ok` or `unavailable` per dependency.
    pub postgres: &'static str,
    pub redis: &'static str,
}
