//! Typed identifiers. Each wraps a UUID (v7, so ids sort by creation time) and is a distinct
//! type, so a `UserId` cannot be passed where a `TenantId` is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            pub const fn into_uuid(self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

typed_id!(
    /// An organisation: the unit of isolation.
    TenantId
);
typed_id!(
    /// A person's account inside one tenant.
    UserId
);
typed_id!(
    /// An API key (the id, never the secret).
    ApiKeyId
);
typed_id!(
    /// One refresh token in a rotation chain.
    RefreshTokenId
);
typed_id!(
    /// A login session: every refresh token rotated from one login shares it.
    TokenFamilyId
);
typed_id!(
    /// An entry in the audit log.
    AuditEventId
);
typed_id!(
    /// A tenant's model provider credentials.
    ProviderId
);
typed_id!(
    /// An agent: a model, a prompt and tools.
    AgentId
);
typed_id!(
    /// A chat session (a conversation with one agent).
    SessionId
);
typed_id!(
    /// One message in a chat session.
    MessageId
);
typed_id!(
    /// One run of an agent (a turn, with its tool calls).
    RunId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_strings_and_json() {
        let id = TenantId::new();
        let parsed: TenantId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert!("not-a-uuid".parse::<UserId>().is_err());
    }

    #[test]
    fn new_ids_sort_by_creation() {
        let a = UserId::new();
        let b = UserId::new();
        assert!(a < b);
    }
}
