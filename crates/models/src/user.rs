//! A user: a person's account inside one tenant.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use paas_core::{Role, TenantId, UserId};
use serde::{Deserialize, Serialize};

use crate::tenant::UnknownValue;

/// Whether a user may sign in and use their keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    /// Refused at once: no login, no refresh, access tokens and API keys stop working.
    Deactivated,
}

impl UserStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Deactivated => "deactivated",
        }
    }
}

impl FromStr for UserStatus {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(UserStatus::Active),
            "deactivated" => Ok(UserStatus::Deactivated),
            other => Err(UnknownValue(other.to_owned())),
        }
    }
}

/// A user as the API shows it. The password hash never leaves the persistence layer in this
/// type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub status: UserStatus,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
