//! Plans and their limits, and a tenant's overrides of them.
//!
//! | limit                         | free      | pro        | enterprise    |
//! |-------------------------------|-----------|------------|---------------|
//! | `max_users`                   | 5         | 50         | 1,000         |
//! | `max_agents`                  | 10        | 100        | 1,000         |
//! | `max_sessions_per_day`        | 100       | 5,000      | 100,000       |
//! | `max_tokens_per_month`        | 1,000,000 | 50,000,000 | 1,000,000,000 |
//! | `requests_per_minute`         | 600       | 3,000      | 30,000        |
//! | `key_requests_per_minute`     | 300       | 3,000      | 30,000        |
//! | `max_concurrent_runs`         | 5         | 50         | 500           |
//!
//! `requests_per_minute` is per tenant (every authenticated request of its users and keys);
//! `key_requests_per_minute` is per API key, so one busy key cannot starve the others.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::tenant::Plan;

/// The limits a tenant works under: its plan's, with any of its overrides applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Limits {
    pub max_users: i64,
    pub max_agents: i64,
    pub max_sessions_per_day: i64,
    pub max_tokens_per_month: i64,
    pub requests_per_minute: i64,
    pub key_requests_per_minute: i64,
    pub max_concurrent_runs: i64,
}

impl Plan {
    /// The plan's default limits (the table in the module docs).
    pub const fn limits(self) -> Limits {
        match self {
            Plan::Free => Limits {
                max_users: 5,
                max_agents: 10,
                max_sessions_per_day: 100,
                max_tokens_per_month: 1_000_000,
                requests_per_minute: 600,
                key_requests_per_minute: 300,
                max_concurrent_runs: 5,
            },
            Plan::Pro => Limits {
                max_users: 50,
                max_agents: 100,
                max_sessions_per_day: 5_000,
                max_tokens_per_month: 50_000_000,
                requests_per_minute: 3_000,
                key_requests_per_minute: 3_000,
                max_concurrent_runs: 50,
            },
            Plan::Enterprise => Limits {
                max_users: 1_000,
                max_agents: 1_000,
                max_sessions_per_day: 100_000,
                max_tokens_per_month: 1_000_000_000,
                requests_per_minute: 30_000,
                key_requests_per_minute: 30_000,
                max_concurrent_runs: 500,
            },
        }
    }
}

/// A tenant's overrides of its plan's limits; `None` keeps the plan's value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaOverrides {
    pub max_users: Option<i64>,
    pub max_agents: Option<i64>,
    pub max_sessions_per_day: Option<i64>,
    pub max_tokens_per_month: Option<i64>,
    pub requests_per_minute: Option<i64>,
    pub key_requests_per_minute: Option<i64>,
    pub max_concurrent_runs: Option<i64>,
}

/// Largest value an override may take (fits every column; 10^12 tokens a month is beyond any
/// real plan).
pub const MAX_OVERRIDE: i64 = 1_000_000_000_000;

impl QuotaOverrides {
    /// The overrides as (field name, value) pairs, for validation and messages.
    pub fn fields(&self) -> [(&'static str, Option<i64>); 7] {
        [
            ("max_users", self.max_users),
            ("max_agents", self.max_agents),
            ("max_sessions_per_day", self.max_sessions_per_day),
            ("max_tokens_per_month", self.max_tokens_per_month),
            ("requests_per_minute", self.requests_per_minute),
            ("key_requests_per_minute", self.key_requests_per_minute),
            ("max_concurrent_runs", self.max_concurrent_runs),
        ]
    }

    /// The first field outside `0..=MAX_OVERRIDE` (a 32-bit column also caps the count limits).
    pub fn invalid_field(&self) -> Option<(&'static str, i64)> {
        self.fields().into_iter().find_map(|(name, value)| {
            let max = if name == "max_tokens_per_month" {
                MAX_OVERRIDE
            } else {
                i64::from(i32::MAX)
            };
            value.filter(|v| !(0..=max).contains(v)).map(|v| (name, v))
        })
    }
}

impl Limits {
    /// `plan`'s limits with `overrides` applied.
    pub fn resolve(plan: Plan, overrides: &QuotaOverrides) -> Limits {
        let base = plan.limits();
        Limits {
            max_users: overrides.max_users.unwrap_or(base.max_users),
            max_agents: overrides.max_agents.unwrap_or(base.max_agents),
            max_sessions_per_day: overrides
                .max_sessions_per_day
                .unwrap_or(base.max_sessions_per_day),
            max_tokens_per_month: overrides
                .max_tokens_per_month
                .unwrap_or(base.max_tokens_per_month),
            requests_per_minute: overrides
                .requests_per_minute
                .unwrap_or(base.requests_per_minute),
            key_requests_per_minute: overrides
                .key_requests_per_minute
                .unwrap_or(base.key_requests_per_minute),
            max_concurrent_runs: overrides
                .max_concurrent_runs
                .unwrap_or(base.max_concurrent_runs),
        }
    }
}

/// A tenant's plan and overrides, as read with every authenticated request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantPlan {
    pub plan: Plan,
    pub overrides: QuotaOverrides,
}

impl TenantPlan {
    pub fn limits(&self) -> Limits {
        Limits::resolve(self.plan, &self.overrides)
    }
}

/// One row of the usage ledger: what one run used, written once when the run ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRecord {
    pub run_id: paas_core::RunId,
    pub tenant_id: paas_core::TenantId,
    pub user_id: paas_core::UserId,
    pub api_key_id: Option<paas_core::ApiKeyId>,
    pub agent_id: paas_core::AgentId,
    pub source: crate::chat::RunSource,
    pub provider: String,
    pub model: String,
    pub status: crate::chat::RunStatus,
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    pub usage_estimated: bool,
    pub duration_ms: i32,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: chrono::DateTime<chrono::Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_set() {
        let overrides = QuotaOverrides {
            max_tokens_per_month: Some(1_000),
            ..QuotaOverrides::default()
        };
        let limits = Limits::resolve(Plan::Pro, &overrides);
        assert_eq!(limits.max_tokens_per_month, 1_000);
        assert_eq!(limits.max_users, Plan::Pro.limits().max_users);
    }

    #[test]
    fn plans_grow_with_their_price() {
        for (small, large) in [(Plan::Free, Plan::Pro), (Plan::Pro, Plan::Enterprise)] {
            let (a, b) = (small.limits(), large.limits());
            assert!(a.max_users < b.max_users && a.max_tokens_per_month < b.max_tokens_per_month);
            assert!(a.requests_per_minute < b.requests_per_minute);
        }
    }

    #[test]
    fn out_of_range_overrides_are_named() {
        let bad = QuotaOverrides {
            max_agents: Some(-1),
            ..QuotaOverrides::default()
        };
        assert_eq!(bad.invalid_field(), Some(("max_agents", -1)));
        let huge = QuotaOverrides {
            max_users: Some(i64::from(i32::MAX) + 1),
            ..QuotaOverrides::default()
        };
        assert_eq!(huge.invalid_field().map(|f| f.0), Some("max_users"));
        assert_eq!(QuotaOverrides::default().invalid_field(), None);
    }
}
