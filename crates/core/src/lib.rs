#![doc = include_str!("../README.md")]

pub mod clock;
pub mod error;
pub mod ids;
pub mod principal;

pub use clock::{Clock, FixedClock, SystemClock};
pub use error::{Error, ErrorKind, Result};
pub use ids::{
    AgentId, ApiKeyId, AuditEventId, MessageId, ProviderId, RefreshTokenId, RunId, SessionId,
    TenantId, TokenFamilyId, UserId,
};
pub use principal::{Credential, Principal, Role, Scope, ScopeSet};
