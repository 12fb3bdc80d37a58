//! An API key as stored and listed: never the secret, only its prefix.

use chrono::{DateTime, Utc};
use paas_core::{ApiKeyId, Scope, TenantId, UserId};
use serde::{Deserialize, Serialize};

/// An API key's metadata. The secret is shown once at creation and stored only as a hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    /// The user whose role bounds what the key may do.
    pub user_id: UserId,
    pub name: String,
    /// The first characters of the key, enough to recognise it.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl ApiKey {
    /// Usable now: neither revoked nor expired.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}
