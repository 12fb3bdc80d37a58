//! The quota store against a real Redis and PostgreSQL: admission under concurrency,
//! settlement, rebuilding a lost counter from the ledger, month rollover, orphaned
//! reservations, rate limits, and the write-behind ledger.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use fred::prelude::{ClientLike, Config as FredConfig, KeysInterface};
use paas_core::{AgentId, RunId, TenantId, UserId};
use paas_models::{RunSource, RunStatus, UsageRecord};
use paas_persistence::{Db, DbConfig};
use paas_quota::{
    Admission, LedgerConfig, QuotaConfig, Quotas, RateRequest, TokenRequest, UsageWriter,
};
use paas_testing::TestDatabase;

struct Fixture {
    _database: TestDatabase,
    db: Db,
    client: fred::clients::Client,
    prefix: String,
    tenant: TenantId,
    user: UserId,
}

async fn fixture() -> Fixture {
    let database = TestDatabase::new();
    let tenant = TenantId::new();
    let user = UserId::new();
    database
        .owner_connection()
        .batch_execute(&format!(
            "INSERT INTO tenants (id, name, display_name, plan, status) \
             VALUES ('{tenant}', 't{}', 'T', 'free', 'active')",
            tenant.as_uuid().simple()
        ))
        .unwrap();
    let db = Db::new(&DbConfig {
        url: database.url().to_owned(),
        max_connections: 4,
        acquire_timeout: Duration::from_secs(5),
    })
    .unwrap();
    let client = fred::clients::Client::new(
        FredConfig::from_url("redis://127.0.0.1:6379").unwrap(),
        None,
        None,
        None,
    );
    client.init().await.unwrap();
    Fixture {
        _database: database,
        db,
        client,
        prefix: paas_testing::redis_prefix(),
        tenant,
        user,
    }
}

impl Fixture {
    fn quotas(&self, fail_open: bool) -> Quotas {
        Quotas::new(
            self.client.clone(),
            self.db.clone(),
            QuotaConfig {
                prefix: self.prefix.clone(),
                fail_open,
                enforce: true,
            },
        )
    }

    fn record(&self, run: RunId, tokens: i32, at: DateTime<Utc>) -> UsageRecord {
        UsageRecord {
            run_id: run,
            tenant_id: self.tenant,
            user_id: self.user,
            api_key_id: None,
            agent_id: AgentId::new(),
            source: RunSource::Openai,
            provider: "mock".into(),
            model: "mock".into(),
            status: RunStatus::Completed,
            prompt_tokens: tokens / 2,
            completion_tokens: tokens - tokens / 2,
            usage_estimated: false,
            duration_ms: 5,
            started_at: at,
            finished_at: at,
        }
    }

    fn ledger_rows(&self) -> i64 {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query("SELECT count(*)::bigint AS n FROM usage_records")
            .get_result::<Count>(&mut self._database.owner_connection())
            .unwrap()
            .n
    }
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn tokens(run: RunId, amount: u64, limit: i64, started_at: DateTime<Utc>) -> TokenRequest {
    TokenRequest {
        run,
        amount,
        limit,
        started_at,
        max_concurrent: 1_000,
        ttl: Duration::from_secs(600),
    }
}

fn rate(f: &Fixture, per_minute: i64) -> RateRequest {
    RateRequest {
        tenant: f.tenant,
        tenant_per_minute: per_minute,
        key: None,
    }
}

#[tokio::test]
async fn concurrent_admissions_never_reserve_more_than_the_limit() {
    let f = fixture().await;
    let quotas = f.quotas(false);
    let now = Utc::now();
    let attempts = (0..50).map(|_| {
        let quotas = quotas.clone();
        let rate = rate(&f, 100_000);
        async move {
            quotas
                .admit(&rate, &tokens(RunId::new(), 300, 1_000, now))
                .await
                .unwrap()
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    let admitted = results
        .iter()
        .filter(|a| matches!(a, Admission::Admitted { .. }))
        .count();
    assert_eq!(admitted, 3, "3 × 300 fit in 1,000; a fourth would not");
    assert!(results.iter().all(|a| matches!(
        a,
        Admission::Admitted { .. } | Admission::TokensExceeded { .. }
    )));
    let status = quotas.token_status(f.tenant, now).await.unwrap();
    assert_eq!(
        (status.used, status.reserved, status.active_runs),
        (0, 900, 3)
    );
}

#[tokio::test]
async fn settling_gives_back_what_a_run_did_not_use_and_counts_what_it_did() {
    let f = fixture().await;
    let quotas = f.quotas(false);
    let now = Utc::now();
    let run = RunId::new();
    let admitted = quotas
        .admit(&rate(&f, 1_000), &tokens(run, 800, 1_000, now))
        .await
        .unwrap();
    assert!(matches!(
        admitted,
        Admission::Admitted { reserved: true, .. }
    ));
    let blocked = quotas
        .admit(&rate(&f, 1_000), &tokens(RunId::new(), 300, 1_000, now))
        .await
        .unwrap();
    assert!(matches!(
        blocked,
        Admission::TokensExceeded {
            used: 0,
            reserved: 800,
            ..
        }
    ));
    quotas.settle(f.tenant, run, now, 120).await.unwrap();
    let status = quotas.token_status(f.tenant, now).await.unwrap();
    assert_eq!(
        (status.used, status.reserved, status.active_runs),
        (120, 0, 0)
    );
    // Settling twice (a retry) does not give back a reservation it no longer holds.
    let again = quotas
        .admit(&rate(&f, 1_000), &tokens(RunId::new(), 880, 1_000, now))
        .await
        .unwrap();
    assert!(matches!(again, Admission::Admitted { .. }));
}

#[tokio::test]
async fn a_recovered_run_is_settled_once_whoever_settles_it() {
    let f = fixture().await;
    let quotas = f.quotas(false);
    let now = Utc::now();
    // A run whose process died: the sweep settles it with what it is known to have used.
    let orphan = RunId::new();
    quotas
        .admit(&rate(&f, 1_000), &tokens(orphan, 800, 1_000, now))
        .await
        .unwrap();
    assert!(
        quotas
            .settle_held(f.tenant, orphan, now, 120)
            .await
            .unwrap()
    );
    let status = quotas.token_status(f.tenant, now).await.unwrap();
    assert_eq!(
        (status.used, status.reserved, status.active_runs),
        (120, 0, 0)
    );
    // A second sweep (or a retry) finds nothing held and counts nothing.
    assert!(
        !quotas
            .settle_held(f.tenant, orphan, now, 120)
            .await
            .unwrap()
    );
    // A run its owner settled normally is not counted again by a late sweep.
    let settled = RunId::new();
    quotas
        .admit(&rate(&f, 1_000), &tokens(settled, 300, 1_000, now))
        .await
        .unwrap();
    quotas.settle(f.tenant, settled, now, 50).await.unwrap();
    assert!(
        !quotas
            .settle_held(f.tenant, settled, now, 50)
            .await
            .unwrap()
    );
    let status = quotas.token_status(f.tenant, now).await.unwrap();
    assert_eq!(
        (status.used, status.reserved, status.active_runs),
        (170, 0, 0)
    );
}

#[tokio::test]
async fn extending_a_run_reserves_more_only_while_there_is_room() {
    let f = fixture().await;
    let quotas = f.quotas(false);
    let now = Utc::now();
    let run = RunId::new();
    quotas
        .admit(&rate(&f, 1_000), &tokens(run, 400, 1_000, now))
        .await
        .unwrap();
    assert!(
        quotas
            .extend(f.tenant, &tokens(run, 500, 1_000, now))
            .await
            .unwrap()
    );
    assert!(
        !quotas
            .extend(f.tenant, &tokens(run, 200, 1_000, now))
            .await
            .unwrap()
    );
    let status = quotas.token_status(f.tenant, now).await.unwrap();
    assert_eq!(status.reserved, 900, "one run holding both reservations");
}

#[tokio::test]
async fn a_lost_counter_is_rebuilt_from_the_ledger() {
    let f = fixture().await;
    let quotas = f.quotas(false);
    let now = Utc::now();
    let writer = UsageWriter::start(f.db.clone(), LedgerConfig::default());
    writer.record(f.record(RunId::new(), 600, now));
    writer.record(f.record(RunId::new(), 100, now));
    // Last month's usage does not count this month.
    writer.record(f.record(RunId::new(), 5_000, now - chrono::Duration::days(40)));
    writer.shutdown(Duration::from_secs(5)).await;
    assert_eq!(f.ledger_rows(), 3);

    // Redis has never seen this tenant (as after a restart): the first admission rebuilds.
    let denied = quotas
        .admit(&rate(&f, 1_000), &tokens(RunId::new(), 400, 1_000, now))
        .await
        .unwrap();
    assert!(
        matches!(denied, Admission::TokensExceeded { used: 700, .. }),
        "{denied:?}"
    );
    assert_eq!(quotas.token_status(f.tenant, now).await.unwrap().used, 700);
}

#[tokio::test]
async fn months_have_their_own_counters() {
    let f = fixture().await;
    let quotas = f.quotas(false);
    let november = at("2026-11-30T23:59:00Z");
    let december = at("2026-12-01T00:01:00Z");
    let run = RunId::new();
    quotas
        .admit(&rate(&f, 1_000), &tokens(run, 900, 1_000, november))
        .await
        .unwrap();
    quotas.settle(f.tenant, run, november, 900).await.unwrap();
    let full = quotas
        .admit(
            &rate(&f, 1_000),
            &tokens(RunId::new(), 200, 1_000, november),
        )
        .await
        .unwrap();
    assert!(matches!(full, Admission::TokensExceeded { .. }));
    let fresh = quotas
        .admit(
            &rate(&f, 1_000),
            &tokens(RunId::new(), 200, 1_000, december),
        )
        .await
        .unwrap();
    assert!(matches!(fresh, Admission::Admitted { .. }));
    assert_eq!(
        quotas.token_status(f.tenant, november).await.unwrap().used,
        900
    );
    assert_eq!(
        quotas.token_status(f.tenant, december).await.unwrap().used,
        0
    );
}

#[tokio::test]
async fn a_reservation_never_settled_expires_with_its_run() {
    let f = fixture().await;
    let quotas = f.quotas(false);
    let now = Utc::now();
    let mut orphan = tokens(RunId::new(), 900, 1_000, now);
    orphan.ttl = Duration::from_millis(200);
    quotas.admit(&rate(&f, 1_000), &orphan).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let next = quotas
        .admit(&rate(&f, 1_000), &tokens(RunId::new(), 900, 1_000, now))
        .await
        .unwrap();
    assert!(matches!(next, Admission::Admitted { .. }), "{next:?}");
}

#[tokio::test]
async fn runs_in_progress_are_limited() {
    let f = fixture().await;
    let quotas = f.quotas(false);
    let now = Utc::now();
    let mut request = tokens(RunId::new(), 1, 1_000, now);
    request.max_concurrent = 2;
    for _ in 0..2 {
        request.run = RunId::new();
        let admitted = quotas.admit(&rate(&f, 1_000), &request).await.unwrap();
        assert!(matches!(admitted, Admission::Admitted { .. }));
    }
    request.run = RunId::new();
    let third = quotas.admit(&rate(&f, 1_000), &request).await.unwrap();
    assert!(matches!(third, Admission::TooManyRuns { limit: 2, .. }));
}

#[tokio::test]
async fn rate_limits_allow_a_minutes_burst_then_refuse_with_a_retry_time() {
    let f = fixture().await;
    let quotas = f.quotas(false);
    let key = paas_core::ApiKeyId::new();
    let request = RateRequest {
        tenant: f.tenant,
        tenant_per_minute: 100,
        key: Some((key, 3)),
    };
    for remaining in [2, 1, 0] {
        let outcome = quotas.check_rate(&request).await;
        assert!(outcome.refused_by.is_none() && outcome.shared);
        assert_eq!(outcome.window.remaining, remaining);
        assert_eq!(
            outcome.window.limit, 3,
            "the key's window is the tighter one"
        );
    }
    let refused = quotas.check_rate(&request).await;
    assert_eq!(refused.refused_by, Some(paas_quota::RateScope::ApiKey));
    let retry = refused.window.retry_after.unwrap();
    assert!(retry > Duration::from_secs(15) && retry <= Duration::from_secs(20));
    // The tenant's other callers are not held back by this key.
    let other = quotas
        .check_rate(&RateRequest {
            key: None,
            ..request.clone()
        })
        .await;
    assert!(other.refused_by.is_none());
}

#[tokio::test]
async fn without_redis_rates_fall_back_per_process_and_tokens_fail_closed_or_open() {
    let f = fixture().await;
    // Nothing listens on port 1; commands fail fast, as the server's client is configured to.
    let mut builder =
        fred::types::Builder::from_config(FredConfig::from_url("redis://127.0.0.1:1").unwrap());
    builder
        .with_connection_config(|conn| {
            conn.connection_timeout = Duration::from_millis(300);
            conn.max_command_attempts = 1;
        })
        .with_performance_config(|perf| {
            perf.default_command_timeout = Duration::from_millis(300);
        });
    let dead = builder.build().unwrap();
    dead.connect();
    let closed = Quotas::new(
        dead.clone(),
        f.db.clone(),
        QuotaConfig {
            prefix: f.prefix.clone(),
            fail_open: false,
            enforce: true,
        },
    );
    let outcome = closed.check_rate(&rate(&f, 2)).await;
    assert!(!outcome.shared && outcome.refused_by.is_none());
    closed.check_rate(&rate(&f, 2)).await;
    assert!(closed.check_rate(&rate(&f, 2)).await.refused_by.is_some());

    let now = Utc::now();
    // Another tenant, whose per-process window is fresh.
    let fresh = RateRequest {
        tenant: TenantId::new(),
        tenant_per_minute: 1_000,
        key: None,
    };
    let err = closed
        .admit(&fresh, &tokens(RunId::new(), 1, 1_000, now))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.retry_after_secs()),
        ("quota_unavailable", Some(2))
    );
    let open = Quotas::new(
        dead,
        f.db.clone(),
        QuotaConfig {
            prefix: f.prefix.clone(),
            fail_open: true,
            enforce: true,
        },
    );
    let admitted = open
        .admit(&fresh, &tokens(RunId::new(), 1, 1_000, now))
        .await
        .unwrap();
    assert!(matches!(
        admitted,
        Admission::Admitted {
            reserved: false,
            ..
        }
    ));
    // The live client still works for the rest of the fixture.
    let _: Option<String> = f.client.get("nothing").await.unwrap();
}

#[tokio::test]
async fn the_ledger_writes_each_run_once_and_drains_at_shutdown() {
    let f = fixture().await;
    let writer = UsageWriter::start(f.db.clone(), LedgerConfig::default());
    let run = RunId::new();
    let now = Utc::now();
    for i in 0..1_200 {
        writer.record(f.record(RunId::new(), i % 50, now));
    }
    writer.record(f.record(run, 10, now));
    writer.record(f.record(run, 10, now));
    writer.shutdown(Duration::from_secs(10)).await;
    assert_eq!(f.ledger_rows(), 1_201, "a run is billed once");
    assert_eq!(writer.depth(), 0);
}
