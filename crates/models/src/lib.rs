#![doc = include_str!("../README.md")]

pub mod agent;
pub mod api_key;
pub mod audit;
pub mod chat;
pub mod quota;
pub mod tenant;
pub mod user;
pub mod validate;

pub use agent::{Agent, AgentProvider, Provider, ProviderKind};
pub use api_key::ApiKey;
pub use audit::{AuditAction, AuditEvent};
pub use chat::{
    ChatSession, Message, MessageRole, Run, RunSource, RunStatus, RunUsage, ToolCallRecord,
};
pub use quota::{Limits, QuotaOverrides, TenantPlan, UsageRecord};
pub use tenant::{Plan, Tenant, TenantStatus};
pub use user::{User, UserStatus};
