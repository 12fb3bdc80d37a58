//! Who is calling: [`Principal`], with its [`Role`] and, for API keys, its [`ScopeSet`].
//!
//! What a principal may *do* is decided by `paas-auth`'s policy; this module only names things.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{ApiKeyId, TenantId, TokenFamilyId, UserId};

/// A user's role inside their tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything in the tenant.
    Admin,
    /// Chat, own sessions, own keys, read agents.
    User,
    /// Read-only: no chat, no writes.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::User, Role::Viewer];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string was not a known role or scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
}

impl FromStr for Role {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "role",
                value: s.to_owned(),
            })
    }
}

/// What an API key may be used for. A key can do what both its scopes and its owner's role
/// allow.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Scope {
    #[serde(rename = "chat")]
    Chat,
    #[serde(rename = "agents:read")]
    AgentsRead,
    #[serde(rename = "agents:write")]
    AgentsWrite,
    #[serde(rename = "sessions:read")]
    SessionsRead,
    #[serde(rename = "sessions:write")]
    SessionsWrite,
    #[serde(rename = "usage:read")]
    UsageRead,
    /// Everything the owner's role allows, including tenant administration for admins.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::Chat,
        Scope::AgentsRead,
        Scope::AgentsWrite,
        Scope::SessionsRead,
        Scope::SessionsWrite,
        Scope::UsageRead,
        Scope::Admin,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Chat => "chat",
            Scope::AgentsRead => "agents:read",
            Scope::AgentsWrite => "agents:write",
            Scope::SessionsRead => "sessions:read",
            Scope::SessionsWrite => "sessions:write",
            Scope::UsageRead => "usage:read",
            Scope::Admin => "admin",
        }
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|sc| sc.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "scope",
                value: s.to_owned(),
            })
    }
}

/// A set of scopes, cheap to copy and to test.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(u8);

impl ScopeSet {
    pub const fn empty() -> Self {
        Self(0)
    }

    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    pub const fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Every scope in `self` is also in `other`.
    pub const fn is_subset_of(self, other: ScopeSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    pub fn to_vec(self) -> Vec<Scope> {
        self.iter().collect()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = ScopeSet::empty();
        for scope in iter {
            set.insert(scope);
        }
        set
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Scope::as_str))
            .finish()
    }
}

/// How the principal proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// An access token from a login; `family` identifies the login session.
    Session { family: TokenFamilyId },
    /// An API key, limited to its scopes.
    ApiKey { id: ApiKeyId, scopes: ScopeSet },
}

/// An authenticated caller. Built only by the API's extractor after the credential, the user's
/// status and the tenant's status were checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub role: Role,
    pub credential: Credential,
}

impl Principal {
    pub fn api_key_id(&self) -> Option<ApiKeyId> {
        match self.credential {
            Credential::ApiKey { id, .. } => Some(id),
            Credential::Session { .. } => None,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print_their_wire_names() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
            assert_eq!(
                serde_json::to_string(&scope).unwrap(),
                format!("\"{scope}\"")
            );
        }
        assert!("agents:delete".parse::<Scope>().is_err());
        assert!("ADMIN".parse::<Scope>().is_err());
    }

    #[test]
    fn scope_sets_compare_as_sets() {
        let read: ScopeSet = [Scope::AgentsRead, Scope::SessionsRead]
            .into_iter()
            .collect();
        let more: ScopeSet = [Scope::AgentsRead, Scope::SessionsRead, Scope::Chat]
            .into_iter()
            .collect();
        assert!(read.is_subset_of(more));
        assert!(!more.is_subset_of(read));
        assert!(ScopeSet::empty().is_subset_of(read));
        assert_eq!(
            more.to_vec(),
            vec![Scope::Chat, Scope::AgentsRead, Scope::SessionsRead]
        );
        assert_eq!(ScopeSet::all().iter().count(), Scope::ALL.len());
    }

    #[test]
    fn roles_parse_strictly() {
        assert_eq!("viewer".parse::<Role>().unwrap(), Role::Viewer);
        assert!("Admin".parse::<Role>().is_err());
        assert!("superuser".parse::<Role>().is_err());
    }
}
