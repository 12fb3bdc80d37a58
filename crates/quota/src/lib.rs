#![doc = include_str!("../README.md")]

pub mod ledger;
pub mod local;
pub mod period;
mod scripts;
mod store;

use std::time::Duration;

pub use ledger::{LedgerConfig, UsageWriter};
pub use store::{Admission, QuotaConfig, Quotas, TokenRequest, TokenStatus};

/// One rate-limit window as the `RateLimit-*` headers report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateWindow {
    /// Requests per minute.
    pub limit: i64,
    /// Requests left right now.
    pub remaining: i64,
    /// Until the window is full again.
    pub reset: Duration,
    /// Set when the request was refused: when it may be retried.
    pub retry_after: Option<Duration>,
}

impl RateWindow {
    pub(crate) fn denied(limit: i64, retry_after: Duration) -> Self {
        Self {
            limit,
            remaining: 0,
            reset: retry_after,
            retry_after: Some(retry_after),
        }
    }
}

/// Which rate limit a request counts against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateRequest {
    pub tenant: paas_core::TenantId,
    pub tenant_per_minute: i64,
    /// The API key and its limit, when the request came with one.
    pub key: Option<(paas_core::ApiKeyId, i64)>,
}

/// The outcome of the rate-limit check: the window to report (the tighter of the tenant's and
/// the key's), and which limit refused the request, if one did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateOutcome {
    pub window: RateWindow,
    pub refused_by: Option<RateScope>,
    /// False when Redis was unavailable and the per-process limiter decided.
    pub shared: bool,
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateScope {
    Tenant,
    ApiKey,
}

impl RateOutcome {
    /// The tighter of two windows (the tenant's and the key's).
    pub(crate) fn tighter(tenant: RateWindow, key: Option<RateWindow>) -> RateWindow {
        match key {
            Some(key) if key.remaining < tenant.remaining => key,
            _ => tenant,
        }
    }
}
