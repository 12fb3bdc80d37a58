#![doc = include_str!("../README.md")]

pub mod clock;
pub mod error;
pub mod ids;
pub mod principal;

pub use clock::{Clock, FixedClock, SystemClock};
pub use error::{Error, ErrorKind, Result};
pub use ids::{ApiKeyId, AuditEventId, RefreshTokenId, TenantId, TokenFamilyId, UserId};
pub use principal::{Credential, Principal, Role, Scope, ScopeSet};
