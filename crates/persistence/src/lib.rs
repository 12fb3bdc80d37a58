#![doc = include_str!("../README.md")]

pub mod agents;
pub mod api_keys;
pub mod audit;
mod error;
pub mod idempotency;
pub mod migrations;
mod pool;
pub mod providers;
pub mod quotas;
pub mod refresh_tokens;
pub mod runs;
#[rustfmt::skip]
pub mod schema;
pub mod sessions;
pub mod tenants;
pub mod usage;
pub mod users;

pub use diesel::PgConnection;
pub use error::DbError;
pub use pool::{Db, DbConfig, PoolStatus};

/// Pagination shared by list queries: `limit` rows after skipping `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    pub const MAX_LIMIT: i64 = 200;

    /// Clamps `limit` to 1..=200 and `offset` to ≥ 0.
    pub fn new(limit: Option<i64>, offset: Option<i64>) -> Self {
        Self {
            limit: limit.unwrap_or(50).clamp(1, Self::MAX_LIMIT),
            offset: offset.unwrap_or(0).max(0),
        }
    }
}
