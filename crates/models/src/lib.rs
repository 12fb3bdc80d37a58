#![doc = include_str!("../README.md")]

pub mod api_key;
pub mod audit;
pub mod tenant;
pub mod user;
pub mod validate;

pub use api_key::ApiKey;
pub use audit::{AuditAction, AuditEvent};
pub use tenant::{Plan, Tenant, TenantStatus};
pub use user::{User, UserStatus};
