//! The application's use cases. Handlers extract and validate the request's shape, then call
//! one function here; these functions apply the rules, talk to storage through
//! `paas-persistence` (always inside a tenant-scoped transaction) and write the audit log in the
//! same transaction as the change it records.

pub mod accounts;
pub mod agents;
pub mod api_keys;
pub mod audit;
pub mod authn;
pub mod chat;
pub mod operator;
pub mod providers;
pub mod quota;
pub mod sessions;
pub mod tenant;
pub mod usage;
pub mod users;

use chrono::{DateTime, Utc};
use paas_core::{Principal, TenantId, UserId};
use paas_models::AuditAction;
use paas_persistence::audit::NewAuditEvent;

/// Where a request came from, for the audit log and the login throttle.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: Option<String>,
}

/// Who acted, from where, and when: the common part of every audit entry a request writes.
#[derive(Clone, Debug)]
pub struct AuditContext {
    pub tenant_id: TenantId,
    pub actor_user_id: Option<UserId>,
    pub actor_api_key_id: Option<paas_core::ApiKeyId>,
    pub client: ClientInfo,
    pub now: DateTime<Utc>,
}

impl AuditContext {
    pub fn for_principal(principal: &Principal, client: &ClientInfo, now: DateTime<Utc>) -> Self {
        Self {
            tenant_id: principal.tenant_id,
            actor_user_id: Some(principal.user_id),
            actor_api_key_id: principal.api_key_id(),
            client: client.clone(),
            now,
        }
    }

    pub fn event(
        &self,
        action: AuditAction,
        target: Option<(&'static str, String)>,
        details: serde_json::Value,
    ) -> NewAuditEvent {
        let (target_type, target_id) = match target {
            Some((kind, id)) => (Some(kind), Some(id)),
            None => (None, None),
        };
        NewAuditEvent {
            tenant_id: self.tenant_id,
            actor_user_id: self.actor_user_id,
            actor_api_key_id: self.actor_api_key_id,
            action,
            target_type,
            target_id,
            ip: Some(self.client.ip.clone()).filter(|ip| !ip.is_empty()),
            user_agent: self.client.user_agent.clone(),
            details,
            now: self.now,
        }
    }
}
