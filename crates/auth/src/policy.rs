//! Who may do what: the role × scope × action matrix.
//!
//! A principal may perform an action when its **role** allows it and, if it authenticated with
//! an **API key**, the key carries the action's scope (the `admin` scope counts as every
//! scope). Some actions need an interactive login and refuse API keys altogether. This table is
//! the single source of truth; `docs/authorization.md` renders it and the tests walk all of it.

use paas_core::{Credential, Error, Principal, Role, Scope, ScopeSet};

/// Everything a route can ask permission for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// See one's own user, role and tenant (`GET /me`, `GET /tenant`).
    ReadProfile,
    /// Change one's own display name or password.
    ManageOwnAccount,
    /// List, create and revoke one's own API keys.
    ManageOwnApiKeys,
    /// List and revoke every API key in the tenant.
    ManageAllApiKeys,
    /// Change the tenant's display name and settings.
    UpdateTenant,
    /// List, create, change and deactivate users.
    ManageUsers,
    /// Read the audit log.
    ReadAuditLog,
    /// List and read agents.
    ReadAgents,
    /// Create, change and delete agents.
    WriteAgents,
    /// Manage the tenant's model provider credentials.
    ManageProviders,
    /// Chat with agents (dashboard chat and the OpenAI-compatible API); follow and cancel one's
    /// runs.
    Chat,
    /// Read one's chat sessions, their messages and runs.
    ReadSessions,
    /// Create, rename and delete one's chat sessions.
    WriteSessions,
    /// See the tenant's plan, limits and current usage (`GET /tenant/quota`), and usage reports
    /// (`GET /usage`: admins see everyone's, others their own).
    ReadUsage,
}

/// What an API key needs for an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRule {
    /// Any valid key.
    AnyKey,
    /// A key with this scope (or `admin`).
    Scope(Scope),
    /// Keys are refused: log in.
    SessionOnly,
}

const ALL_ROLES: &[Role] = &[Role::Admin, Role::User, Role::Viewer];
const ADMINS: &[Role] = &[Role::Admin];
const WRITERS: &[Role] = &[Role::Admin, Role::User];

impl Action {
    pub const ALL: [Action; 14] = [
        Action::ReadProfile,
        Action::ManageOwnAccount,
        Action::ManageOwnApiKeys,
        Action::ManageAllApiKeys,
        Action::UpdateTenant,
        Action::ManageUsers,
        Action::ReadAuditLog,
        Action::ReadAgents,
        Action::WriteAgents,
        Action::ManageProviders,
        Action::Chat,
        Action::ReadSessions,
        Action::WriteSessions,
        Action::ReadUsage,
    ];

    /// The roles allowed, and what a key needs.
    pub const fn rule(self) -> (&'static [Role], KeyRule) {
        match self {
            Action::ReadProfile => (ALL_ROLES, KeyRule::AnyKey),
            Action::ManageOwnAccount => (ALL_ROLES, KeyRule::SessionOnly),
            Action::ManageOwnApiKeys => (ALL_ROLES, KeyRule::Scope(Scope::Admin)),
            Action::ManageAllApiKeys => (ADMINS, KeyRule::Scope(Scope::Admin)),
            Action::UpdateTenant => (ADMINS, KeyRule::Scope(Scope::Admin)),
            Action::ManageUsers => (ADMINS, KeyRule::Scope(Scope::Admin)),
            Action::ReadAuditLog => (ADMINS, KeyRule::Scope(Scope::Admin)),
            Action::ReadAgents => (ALL_ROLES, KeyRule::Scope(Scope::AgentsRead)),
            Action::WriteAgents => (ADMINS, KeyRule::Scope(Scope::AgentsWrite)),
            Action::ManageProviders => (ADMINS, KeyRule::Scope(Scope::Admin)),
            Action::Chat => (WRITERS, KeyRule::Scope(Scope::Chat)),
            Action::ReadSessions => (ALL_ROLES, KeyRule::Scope(Scope::SessionsRead)),
            Action::WriteSessions => (WRITERS, KeyRule::Scope(Scope::SessionsWrite)),
            Action::ReadUsage => (ALL_ROLES, KeyRule::Scope(Scope::UsageRead)),
        }
    }

    const fn describe(self) -> &'static str {
        match self {
            Action::ReadProfile => "read the profile",
            Action::ManageOwnAccount => "change the account",
            Action::ManageOwnApiKeys => "manage API keys",
            Action::ManageAllApiKeys => "manage other users' API keys",
            Action::UpdateTenant => "change tenant settings",
            Action::ManageUsers => "manage users",
            Action::ReadAuditLog => "read the audit log",
            Action::ReadAgents => "read agents",
            Action::WriteAgents => "change agents",
            Action::ManageProviders => "manage model providers",
            Action::Chat => "chat with agents",
            Action::ReadSessions => "read chat sessions",
            Action::WriteSessions => "change chat sessions",
            Action::ReadUsage => "read quotas and usage",
        }
    }
}

/// The scopes a role may put on a key: a key never carries more than its owner's role allows.
pub fn mintable_scopes(role: Role) -> ScopeSet {
    match role {
        Role::Admin => ScopeSet::all(),
        Role::User => [
            Scope::Chat,
            Scope::AgentsRead,
            Scope::SessionsRead,
            Scope::SessionsWrite,
            Scope::UsageRead,
        ]
        .into_iter()
        .collect(),
        Role::Viewer => [Scope::AgentsRead, Scope::SessionsRead, Scope::UsageRead]
            .into_iter()
            .collect(),
    }
}

/// Allows or refuses `action` for `principal`, with a 403 that says why.
pub fn authorize(principal: &Principal, action: Action) -> Result<(), Error> {
    let (roles, key_rule) = action.rule();
    if !roles.contains(&principal.role) {
        return Err(Error::forbidden(
            "forbidden",
            format!("the {} role may not {}", principal.role, action.describe()),
        ));
    }
    match (principal.credential, key_rule) {
        (Credential::Session { .. }, _) | (Credential::ApiKey { .. }, KeyRule::AnyKey) => Ok(()),
        (Credential::ApiKey { scopes, .. }, KeyRule::Scope(scope)) => {
            if scopes.contains(scope) || scopes.contains(Scope::Admin) {
                Ok(())
            } else {
                Err(Error::forbidden(
                    "insufficient_scope",
                    format!(
                        "this API key lacks the `{scope}` scope needed to {}",
                        action.describe()
                    ),
                ))
            }
        }
        (Credential::ApiKey { .. }, KeyRule::SessionOnly) => Err(Error::forbidden(
            "session_required",
            format!("API keys may not {}; log in instead", action.describe()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use paas_core::{ApiKeyId, TenantId, TokenFamilyId, UserId};

    use super::*;

    fn session(role: Role) -> Principal {
        Principal {
            tenant_id: TenantId::new(),
            user_id: UserId::new(),
            role,
            credential: Credential::Session {
                family: TokenFamilyId::new(),
            },
        }
    }

    fn key(role: Role, scopes: &[Scope]) -> Principal {
        Principal {
            credential: Credential::ApiKey {
                id: ApiKeyId::new(),
                scopes: scopes.iter().copied().collect(),
            },
            ..session(role)
        }
    }

    /// The matrix from `docs/authorization.md`, for sessions: (action, admin, user, viewer).
    const SESSION_MATRIX: &[(Action, bool, bool, bool)] = &[
        (Action::ReadProfile, true, true, true),
        (Action::ManageOwnAccount, true, true, true),
        (Action::ManageOwnApiKeys, true, true, true),
        (Action::ManageAllApiKeys, true, false, false),
        (Action::UpdateTenant, true, false, false),
        (Action::ManageUsers, true, false, false),
        (Action::ReadAuditLog, true, false, false),
        (Action::ReadAgents, true, true, true),
        (Action::WriteAgents, true, false, false),
        (Action::ManageProviders, true, false, false),
        (Action::Chat, true, true, false),
        (Action::ReadSessions, true, true, true),
        (Action::WriteSessions, true, true, false),
        (Action::ReadUsage, true, true, true),
    ];

    #[test]
    fn sessions_follow_the_role_matrix() {
        assert_eq!(SESSION_MATRIX.len(), Action::ALL.len());
        for &(action, admin, user, viewer) in SESSION_MATRIX {
            for (role, expected) in [
                (Role::Admin, admin),
                (Role::User, user),
                (Role::Viewer, viewer),
            ] {
                let result = authorize(&session(role), action);
                assert_eq!(result.is_ok(), expected, "{role} {action:?}");
                if let Err(err) = result {
                    assert_eq!(err.code(), "forbidden");
                }
            }
        }
    }

    #[test]
    fn keys_need_both_the_role_and_the_scope() {
        for action in Action::ALL {
            let (roles, rule) = action.rule();
            for role in Role::ALL {
                for scope in Scope::ALL {
                    let allowed = authorize(&key(role, &[scope]), action).is_ok();
                    let expected = roles.contains(&role)
                        && match rule {
                            KeyRule::AnyKey => true,
                            KeyRule::Scope(needed) => scope == needed || scope == Scope::Admin,
                            KeyRule::SessionOnly => false,
                        };
                    assert_eq!(allowed, expected, "{role} {scope} {action:?}");
                }
            }
        }
    }

    #[test]
    fn refusals_say_why() {
        let err = authorize(&key(Role::Admin, &[Scope::Chat]), Action::ManageUsers).unwrap_err();
        assert_eq!(err.code(), "insufficient_scope");
        assert!(err.message().contains("`admin`"));
        let err =
            authorize(&key(Role::Admin, &[Scope::Admin]), Action::ManageOwnAccount).unwrap_err();
        assert_eq!(err.code(), "session_required");
        let err = authorize(&session(Role::Viewer), Action::ManageUsers).unwrap_err();
        assert_eq!(err.message(), "the viewer role may not manage users");
    }

    #[test]
    fn roles_mint_only_what_they_hold() {
        assert_eq!(mintable_scopes(Role::Admin), ScopeSet::all());
        let user = mintable_scopes(Role::User);
        assert!(user.contains(Scope::Chat) && user.contains(Scope::SessionsWrite));
        assert!(!user.contains(Scope::Admin) && !user.contains(Scope::AgentsWrite));
        let viewer = mintable_scopes(Role::Viewer);
        assert!(viewer.is_subset_of(user));
        assert!(!viewer.contains(Scope::Chat) && !viewer.contains(Scope::SessionsWrite));
    }
}
