//! The quota path's own cost, on this machine's Redis: `just bench` runs it.
//!
//! Measures, after a warm-up, the latency of the calls a request makes on the hot path —
//! `check_rate` (every authenticated request: one Redis round trip) and `admit` (a chat:
//! rate limits + runs in progress + token reservation, one round trip) — and of `settle`
//! (when a run ends, off the request path). Sequential calls give the latency; 16 concurrent
//! callers give the throughput. Writes `target/bench/quota.json` and prints a Markdown table.

// A benchmark reports on stdout and fails loudly.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::connection::SimpleConnection;
use fred::prelude::{ClientLike, Config as FredConfig};
use paas_core::{RunId, TenantId};
use paas_persistence::{Db, DbConfig};
use paas_quota::{QuotaConfig, Quotas, RateRequest, TokenRequest};

const WARMUP: usize = 2_000;
const ITERATIONS: usize = 20_000;

struct Stats {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index].as_secs_f64() * 1e6
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "iterations": self.samples.len(),
            "p50_us": self.pct(0.50),
            "p90_us": self.pct(0.90),
            "p99_us": self.pct(0.99),
            "max_us": self.pct(1.0),
        })
    }
}

async fn measure<F, Fut>(name: &'static str, mut call: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..WARMUP {
        call(i).await;
    }
    let mut samples = Vec::with_capacity(ITERATIONS);
    for i in 0..ITERATIONS {
        let start = Instant::now();
        call(WARMUP + i).await;
        samples.push(start.elapsed());
    }
    Stats { name, samples }
}

fn main() {
    // `cargo test --all-targets` runs benches too (without `--bench`): nothing to measure then.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("quota benchmark: run it with `just bench` (cargo bench)");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let database = paas_testing::TestDatabase::new();
    let tenant = TenantId::new();
    database
        .owner_connection()
        .batch_execute(&format!(
            "INSERT INTO tenants (id, name, display_name, plan, status) \
             VALUES ('{tenant}', 'bench', 'Bench', 'enterprise', 'active')"
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
    // The floor: one bare round trip to the same Redis through the same client.
    let ping_client = client.clone();
    let ping_stats = measure("PING (the round trip alone)", |_| {
        let client = ping_client.clone();
        async move {
            let _: String = client.ping(None).await.unwrap();
        }
    })
    .await;
    let quotas = Quotas::new(
        client,
        db,
        QuotaConfig {
            prefix: paas_testing::redis_prefix(),
            fail_open: false,
            enforce: true,
        },
    );
    let rate = RateRequest {
        tenant,
        tenant_per_minute: i64::from(i32::MAX),
        key: Some((paas_core::ApiKeyId::new(), i64::from(i32::MAX))),
    };
    let now = Utc::now();
    let request = move |run: RunId| TokenRequest {
        run,
        amount: 600,
        limit: i64::MAX / 2,
        started_at: now,
        max_concurrent: 1_000_000,
        ttl: Duration::from_secs(720),
    };

    let rate_stats = measure("check_rate (every request)", |_| {
        let (quotas, rate) = (quotas.clone(), rate.clone());
        async move {
            let outcome = quotas.check_rate(&rate).await;
            assert!(outcome.shared && outcome.refused_by.is_none());
        }
    })
    .await;
    // Each run is admitted (timed) and settled (timed separately) in turn, so the tenant has
    // one run in progress at a time, as a sequential client would.
    let mut admit_samples = Vec::with_capacity(ITERATIONS);
    let mut settle_samples = Vec::with_capacity(ITERATIONS);
    for i in 0..WARMUP + ITERATIONS {
        let run = RunId::new();
        let start = Instant::now();
        let admitted = quotas.admit(&rate, &request(run)).await.unwrap();
        let admit_time = start.elapsed();
        assert!(matches!(admitted, paas_quota::Admission::Admitted { .. }));
        let start = Instant::now();
        quotas.settle(tenant, run, now, 100).await.unwrap();
        if i >= WARMUP {
            admit_samples.push(admit_time);
            settle_samples.push(start.elapsed());
        }
    }
    let admit_stats = Stats {
        name: "admit (a chat: rate + runs + tokens)",
        samples: admit_samples,
    };
    let settle_stats = Stats {
        name: "settle (a run ends; off the request path)",
        samples: settle_samples,
    };

    // Throughput: 16 callers admitting and settling as fast as they can for 3 s.
    let deadline = Instant::now() + Duration::from_secs(3);
    let workers = (0..16).map(|_| {
        let (quotas, rate) = (quotas.clone(), rate.clone());
        tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let run = RunId::new();
                quotas.admit(&rate, &request(run)).await.unwrap();
                quotas.settle(tenant, run, now, 100).await.unwrap();
                done += 1;
            }
            done
        })
    });
    let mut chats = 0;
    for worker in workers {
        chats += worker.await.unwrap();
    }
    let throughput = chats as f64 / 3.0;

    let stats = [ping_stats, rate_stats, admit_stats, settle_stats];
    println!("| call | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|");
    for s in &stats {
        println!(
            "| {} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs |",
            s.name,
            s.pct(0.5),
            s.pct(0.9),
            s.pct(0.99),
            s.pct(1.0)
        );
    }
    println!("\nadmit + settle with 16 concurrent callers: {throughput:.0} chats/s");
    let report = serde_json::json!({
        "benchmark": "quota",
        "date": Utc::now().to_rfc3339(),
        "redis": "127.0.0.1:6379 (loopback)",
        "warmup": WARMUP,
        "calls": stats.iter().map(Stats::json).collect::<Vec<_>>(),
        "admit_settle_per_second_16_callers": throughput,
    });
    let dir = std::env::var("PAAS_BENCH_DIR").unwrap_or_else(|_| "target/bench".to_owned());
    std::fs::create_dir_all(&dir).unwrap();
    let path = format!("{dir}/quota.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("wrote {path}");
}
