//! Request and response bodies of the HTTP API. Requests refuse unknown fields, so a field the
//! caller may not set (`tenant_id`, `id`, `role` where it is not offered) is an error, never
//! silently applied. Secrets in requests are `SecretString`, so they never reach a `Debug` log.

use chrono::{DateTime, Utc};
use paas_core::{ApiKeyId, AuditEventId, Role, Scope, TenantId, UserId};
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

// ---- agents and providers -------------------------------------------------------------------

/// Deserialises a field that may be absent (`None`), `null` (`Some(None)`) or a value.
fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Creating an agent. Only `name` is required: it talks to the mock model by default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentRequest {
    /// Slug, unique in the tenant: the `model` in the OpenAI-compatible API.
    #[schema(example = "support-bot")]
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub system_prompt: Option<String>,
    /// `"mock"` (default), `"platform:openai"`, `"platform:glm"`, `"platform:anthropic"`, or the
    /// id of one of the tenant's providers.
    pub provider_id: Option<paas_models::AgentProvider>,
    /// Defaults to the provider's `default_model` (`mock` for the mock).
    pub model: Option<String>,
    /// 0–2; omit for the provider's default.
    pub temperature: Option<f32>,
    /// Output tokens per run, 1–32768 (default 1024).
    pub max_tokens: Option<u32>,
    /// Built-in tools: `calculator`, `current_time`, `http_fetch`.
    pub tools: Option<Vec<String>>,
    /// Model calls per run, 1–32 (default 8).
    pub max_steps: Option<u32>,
    /// Wall-clock limit per run, 1–600 s (default 120).
    pub timeout_seconds: Option<u32>,
}

/// Changing an agent: every field optional; `temperature: null` clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgentRequest {
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub system_prompt: Option<String>,
    pub provider_id: Option<paas_models::AgentProvider>,
    pub model: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f32>)]
    pub temperature: Option<Option<f32>>,
    pub max_tokens: Option<u32>,
    pub tools: Option<Vec<String>>,
    pub max_steps: Option<u32>,
    pub timeout_seconds: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    pub items: Vec<paas_models::Agent>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProviderRequest {
    #[schema(example = "openai-prod")]
    pub name: String,
    pub kind: paas_models::ProviderKind,
    /// Defaults to the kind's public API root. Loopback and private addresses are refused unless
    /// the operator allows them.
    pub base_url: Option<String>,
    /// Write-only: stored encrypted, never returned (listings show the last four characters).
    #[schema(value_type = Option<String>, format = Password)]
    pub api_key: Option<SecretString>,
    pub default_model: Option<String>,
}

/// Changing a provider: omitted fields stay; an empty string clears `base_url`,
/// `default_model` or `api_key`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProviderRequest {
    pub name: Option<String>,
    pub base_url: Option<String>,
    #[schema(value_type = Option<String>, format = Password)]
    pub api_key: Option<SecretString>,
    pub default_model: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderList {
    pub items: Vec<paas_models::Provider>,
    /// Platform providers the operator configured (usable as `platform:<kind>`).
    pub platform: Vec<String>,
}

// ---- sessions, chat, runs ----------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    /// Agent id or name.
    pub agent: String,
    pub title: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSessionRequest {
    pub title: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListSessionsQuery {
    /// Only sessions whose title contains this text (case-insensitive).
    pub q: Option<String>,
    pub agent_id: Option<paas_core::AgentId>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub items: Vec<paas_models::ChatSession>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1–200, default 50.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    pub items: Vec<paas_models::Message>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `json` (default) or `markdown`.
    pub format: Option<String>,
}

/// A chat turn. The answer streams back as Server-Sent Events.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// Agent id or name (optional when `session_id` is given).
    pub agent: Option<String>,
    /// Alias of `agent`, as the original dashboard client sends it.
    pub agent_type: Option<String>,
    #[schema(example = "What is 12 * (3 + 4)?")]
    pub message: String,
    /// Continue this session; omit to start a new one.
    pub session_id: Option<paas_core::SessionId>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this event id (the `Last-Event-ID` header does the same).
    pub last_event_id: Option<u64>,
}

// Quotas and usage -------------------------------------------------------------------------

/// One counted limit: how much is used and the limit.
#[derive(Debug, Serialize, ToSchema)]
pub struct CountUsage {
    pub used: i64,
    pub limit: i64,
}

/// A limit over a window that resets.
#[derive(Debug, Serialize, ToSchema)]
pub struct WindowUsage {
    pub used: i64,
    pub limit: i64,
    /// When the window starts over (UTC).
    pub resets_at: chrono::DateTime<chrono::Utc>,
}

/// The month's tokens: settled by finished runs, and held by runs in progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenUsage {
    /// Used by finished runs this month.
    pub used: i64,
    /// Reserved by runs in progress (given back, less what they use, when they end).
    pub reserved: i64,
    pub limit: i64,
    /// `limit - used - reserved`, at least 0.
    pub remaining: i64,
    /// The first instant of next month (UTC).
    pub resets_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaUsage {
    pub users: CountUsage,
    pub agents: CountUsage,
    pub sessions_today: WindowUsage,
    pub tokens_this_month: TokenUsage,
    pub runs_in_progress: CountUsage,
}

/// The tenant's plan, its limits (the plan's with the overrides applied), the overrides
/// themselves, and current usage against each limit.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaStatus {
    pub tenant_id: TenantId,
    pub plan: paas_models::Plan,
    pub limits: paas_models::Limits,
    pub overrides: paas_models::QuotaOverrides,
    pub usage: QuotaUsage,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Start (inclusive): RFC 3339 time or `YYYY-MM-DD` (UTC). Default: 30 days before `to`.
    pub from: Option<String>,
    /// End (exclusive): RFC 3339 time or `YYYY-MM-DD` (UTC midnight). Default: now.
    pub to: Option<String>,
    /// `day` (default), `agent`, `model`, `user` or `api_key`.
    pub group_by: Option<String>,
}

/// Usage of one group.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRow {
    /// The day (`YYYY-MM-DD`), agent id, model, user id, or API key id (`none` for runs
    /// started from a login session).
    pub key: String,
    /// Agent name, provider (for models), user email or API key name, when there is one.
    pub label: Option<String>,
    pub runs: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    /// Some of the runs' usage was estimated (the provider did not report it).
    pub estimated: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageTotals {
    pub runs: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
}

/// A usage report over `[from, to)`. Runs count where they started.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
    pub group_by: String,
    /// `tenant` (admins and admin-scoped keys) or `self` (the caller's own runs only).
    pub scope: String,
    pub totals: UsageTotals,
    pub groups: Vec<UsageRow>,
}

// The platform operator ----------------------------------------------------------------------

/// A tenant as the operator sees it: the tenant, its plan's limits and its usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorTenant {
    pub tenant: paas_models::Tenant,
    pub quota: QuotaStatus,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorTenantList {
    pub items: Vec<paas_models::Tenant>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePlanRequest {
    /// `free`, `pro` or `enterprise`.
    pub plan: String,
}

/// Replaces the tenant's overrides: a field given sets it, `null` or absent returns it to the
/// plan's value.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverridesRequest {
    pub max_users: Option<i64>,
    pub max_agents: Option<i64>,
    pub max_sessions_per_day: Option<i64>,
    pub max_tokens_per_month: Option<i64>,
    pub requests_per_minute: Option<i64>,
    pub key_requests_per_minute: Option<i64>,
    pub max_concurrent_runs: Option<i64>,
}
