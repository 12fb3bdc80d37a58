//! The audit log: who did what, when, from where.

use chrono::{DateTime, Utc};
use paas_core::{ApiKeyId, AuditEventId, TenantId, UserId};
use serde::{Deserialize, Serialize};

/// Every action the audit log records. The string forms are stable: they are stored and
/// filtered on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum AuditAction {
    #[serde(rename = "tenant.created")]
    TenantCreated,
    #[serde(rename = "tenant.updated")]
    TenantUpdated,
    #[serde(rename = "tenant.plan_changed")]
    TenantPlanChanged,
    #[serde(rename = "tenant.quota_changed")]
    TenantQuotaChanged,
    #[serde(rename = "tenant.suspended")]
    TenantSuspended,
    #[serde(rename = "tenant.reactivated")]
    TenantReactivated,
    #[serde(rename = "auth.login")]
    Login,
    #[serde(rename = "auth.login_failed")]
    LoginFailed,
    #[serde(rename = "auth.logout")]
    Logout,
    #[serde(rename = "auth.refresh_reused")]
    RefreshTokenReused,
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "user.updated")]
    UserUpdated,
    #[serde(rename = "user.role_changed")]
    UserRoleChanged,
    #[serde(rename = "user.deactivated")]
    UserDeactivated,
    #[serde(rename = "user.reactivated")]
    UserReactivated,
    #[serde(rename = "user.password_changed")]
    PasswordChanged,
    #[serde(rename = "api_key.created")]
    ApiKeyCreated,
    #[serde(rename = "api_key.revoked")]
    ApiKeyRevoked,
    #[serde(rename = "provider.created")]
    ProviderCreated,
    #[serde(rename = "provider.updated")]
    ProviderUpdated,
    #[serde(rename = "provider.deleted")]
    ProviderDeleted,
    #[serde(rename = "agent.created")]
    AgentCreated,
    #[serde(rename = "agent.updated")]
    AgentUpdated,
    #[serde(rename = "agent.deleted")]
    AgentDeleted,
}

impl AuditAction {
    pub const ALL: [AuditAction; 24] = [
        AuditAction::TenantCreated,
        AuditAction::TenantUpdated,
        AuditAction::TenantPlanChanged,
        AuditAction::TenantQuotaChanged,
        AuditAction::TenantSuspended,
        AuditAction::TenantReactivated,
        AuditAction::Login,
        AuditAction::LoginFailed,
        AuditAction::Logout,
        AuditAction::RefreshTokenReused,
        AuditAction::UserCreated,
        AuditAction::UserUpdated,
        AuditAction::UserRoleChanged,
        AuditAction::UserDeactivated,
        AuditAction::UserReactivated,
        AuditAction::PasswordChanged,
        AuditAction::ApiKeyCreated,
        AuditAction::ApiKeyRevoked,
        AuditAction::ProviderCreated,
        AuditAction::ProviderUpdated,
        AuditAction::ProviderDeleted,
        AuditAction::AgentCreated,
        AuditAction::AgentUpdated,
        AuditAction::AgentDeleted,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AuditAction::TenantCreated => "tenant.created",
            AuditAction::TenantUpdated => "tenant.updated",
            AuditAction::TenantPlanChanged => "tenant.plan_changed",
            AuditAction::TenantQuotaChanged => "tenant.quota_changed",
            AuditAction::TenantSuspended => "tenant.suspended",
            AuditAction::TenantReactivated => "tenant.reactivated",
            AuditAction::Login => "auth.login",
            AuditAction::LoginFailed => "auth.login_failed",
            AuditAction::Logout => "auth.logout",
            AuditAction::RefreshTokenReused => "auth.refresh_reused",
            AuditAction::UserCreated => "user.created",
            AuditAction::UserUpdated => "user.updated",
            AuditAction::UserRoleChanged => "user.role_changed",
            AuditAction::UserDeactivated => "user.deactivated",
            AuditAction::UserReactivated => "user.reactivated",
            AuditAction::PasswordChanged => "user.password_changed",
            AuditAction::ApiKeyCreated => "api_key.created",
            AuditAction::ApiKeyRevoked => "api_key.revoked",
            AuditAction::ProviderCreated => "provider.created",
            AuditAction::ProviderUpdated => "provider.updated",
            AuditAction::ProviderDeleted => "provider.deleted",
            AuditAction::AgentCreated => "agent.created",
            AuditAction::AgentUpdated => "agent.updated",
            AuditAction::AgentDeleted => "agent.deleted",
        }
    }

    pub fn parse(s: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// One entry in a tenant's audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub id: AuditEventId,
    pub tenant_id: TenantId,
    /// The user who acted, if any (a failed login for an unknown email has none).
    pub actor_user_id: Option<UserId>,
    /// The API key the actor used, if they used one.
    pub actor_api_key_id: Option<ApiKeyId>,
    /// What happened, e.g. `user.role_changed`.
    pub action: String,
    /// The kind of object acted on (`user`, `api_key`, `tenant`).
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// The client address the request came from.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Action-specific facts (for example the old and new role). Never secrets.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_round_trips_and_matches_serde() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
            let json = serde_json::to_string(&action).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", action.as_str()));
        }
        assert_eq!(AuditAction::parse("user.deleted"), None);
    }
}
