//! `paas-bench soak` (`just soak`): the platform under a steady mixed load for a long time (30
//! minutes by default), with its Redis stopped and started again every few minutes, to see what
//! only time shows: errors that come and go, memory that creeps up, usage that goes uncounted.
//!
//! It starts a mock upstream, a private `redis-server` on a free port (the machine's Redis is
//! never touched) and the platform (release build) on a fresh database, as the benchmark does,
//! then sends at a constant arrival rate:
//!
//! - non-streamed `POST /v1/chat/completions` with an API key,
//! - streamed ones with `stream_options.include_usage`,
//! - dashboard chats (`POST /api/v1/chat/completions`, SSE, the admin's login session,
//!   refreshed as it expires) in sessions of 2–5 turns, with the mock-upstream agent and with a
//!   calculator agent (the built-in mock model, a tool call per turn),
//!
//! and beside them an API-key cycle every few seconds (create, chat, revoke, and the revoked key
//! must get 401 at once) and a Redis blip every few minutes (killed, started again empty a few
//! seconds later). Every answer is checked end to end (see `traffic.rs`); the platform's
//! resident memory and open files are sampled every 10 s. When the load stops, it waits for the
//! usage ledger to settle and compares it, run by run, with the usage the clients were told.
//!
//! It writes `report.json` and `report.md` in `--out`, prints the Markdown, and fails if any
//! error was unexpected, if the ledger differs from what the clients were told, or if memory
//! grows faster than `--max-rss-slope` MiB/hour after warm-up.

mod ledger;
mod redis;
mod summary;
mod traffic;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Fail;
use crate::procs::{Proc, cpu_seconds_of, open_fds, rss_bytes_of, threads};
use crate::report::round3;
use crate::setup::{self, MockShape};
use redis::PrivateRedis;
use summary::Sample;
use traffic::{Ctx, Mixer};

/// The soak's options (`paas-bench soak --help`).
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// How long the load runs, in minutes.
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Chat requests per second (the mix: 40% non-streamed, 30% streamed, 20% dashboard turns,
    /// 10% dashboard turns with a tool call); the API-key cycles come on top.
    #[arg(long, default_value_t = 60.0)]
    pub rate: f64,
    /// Seconds between Redis blips, the first this long after the start (0: no blips).
    #[arg(long, default_value_t = 300)]
    pub blip_every: u64,
    /// Seconds Redis stays down in a blip.
    #[arg(long, default_value_t = 8)]
    pub blip_secs: u64,
    /// Seconds between API-key cycles (create, chat, revoke, check the revoked key).
    #[arg(long, default_value_t = 3)]
    pub key_every: u64,
    /// Seconds between samples of the platform's memory.
    #[arg(long, default_value_t = 10)]
    pub sample_every: u64,
    // At the default 60 requests/s, 10 MiB/hour is 48 bytes a request: less than a per-request
    // leak is likely to be (the histogram samples kept without upkeep were about 80 bytes a
    // request), while a healthy server's trend after warm-up was about 6 MiB/hour even at 150
    // requests/s, and falling.
    /// The memory trend after warm-up judged a leak, in MiB per hour (10 is 48 bytes a request
    /// at 60 requests/s).
    #[arg(long, default_value_t = 10.0)]
    pub max_rss_slope: f64,
    /// Where report.json, report.md and the platform's log are written.
    #[arg(long, default_value = "target/soak")]
    pub out: PathBuf,
    /// Directory holding `agent-paas` and `mock-upstream` (default: this binary's own).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// The upstream: 20 chunks, 20 ms before the first and 5 ms apart, so a call takes about
/// 115 ms and a few runs are always in progress when Redis goes away.
const SHAPE: MockShape = MockShape {
    name: "soak",
    latency_ms: 20,
    chunks: 20,
    chunk_interval_ms: 5,
};

/// How long after a blip's restart its failures still count as expected: the platform's Redis
/// client retries every 2 s at most, and after finding Redis down sends requests straight to
/// the fallbacks for 2 s (docs/operations.md).
const GRACE: Duration = Duration::from_secs(10);

/// Unanswered requests at most; a request due beyond that is not sent, and is an unexpected
/// error (the platform has fallen behind).
const MAX_IN_FLIGHT: usize = 1_000;

/// The shortest load whose memory trend is judged: before 10 minutes, the trend is mostly
/// warm-up (connection pools, allocator arenas and caches filling).
const MEMORY_JUDGED_AFTER: Duration = Duration::from_secs(600);

/// How often the admin's access token (15 minutes) is refreshed.
const REFRESH_EVERY: Duration = Duration::from_secs(600);

pub async fn run(args: SoakArgs) -> Result<(), Fail> {
    if !(args.minutes > 0.0 && args.rate > 0.0) {
        return Err("--minutes and --rate must be positive".into());
    }
    std::fs::create_dir_all(&args.out)?;
    let started_at = chrono::Utc::now();
    let load = Duration::from_secs_f64(args.minutes * 60.0);
    let machine = crate::scenarios::machine();
    let blips = if args.blip_every == 0 {
        "none".to_owned()
    } else {
        format!("every {} s for {} s", args.blip_every, args.blip_secs)
    };
    println!(
        "paas-bench soak: {} s at {} requests/s, Redis blips {blips}, on {}",
        load.as_secs(),
        args.rate,
        machine["summary"].as_str().unwrap_or("?")
    );
    let bin_dir = args.bin_dir.as_deref();
    let database = paas_testing::TestDatabase::new();
    let redis = PrivateRedis::start(args.out.join("redis.log")).await?;
    let mock = setup::start_mock(bin_dir, SHAPE).await?;
    let (mut platform, root) = setup::start_platform(
        bin_dir,
        database.url(),
        &redis.url(),
        &[],
        &args.out.join("platform.log"),
    )
    .await?;
    let tenant = setup::configure_tenant(&root, std::slice::from_ref(&mock)).await?;
    let tool_agent = "soak-calculator";
    setup::call(
        &reqwest::Client::new(),
        reqwest::Method::POST,
        format!("{root}/api/v1/agents"),
        &tenant.access_token,
        json!({"name": tool_agent, "tools": ["calculator"], "max_steps": 4}),
    )
    .await?;
    println!(
        "  platform pid {} on {root}, private Redis on port {}, mock upstream {}",
        platform.pid(),
        redis.port,
        mock.base
    );

    let ctx = Arc::new(Ctx {
        client: crate::load::client(),
        root: root.clone(),
        key: tenant.key.clone(),
        access_token: RwLock::new(tenant.access_token.clone()),
        refresh_token: RwLock::new(tenant.refresh_token.clone()),
        agent: format!("bench-{}", SHAPE.name),
        tool_agent: tool_agent.to_owned(),
        chunks: SHAPE.chunks,
        start: Instant::now(),
        grace: GRACE,
        stats: Mutex::default(),
        blips: Mutex::default(),
        sessions: Mutex::default(),
        tool_sessions: Mutex::default(),
        sessions_started: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        sent: AtomicUsize::new(0),
    });
    let end = ctx.start + load;
    let cpu_before = (
        cpu_seconds_of(platform.pid()),
        cpu_seconds_of(std::process::id()),
    );
    let (stop, stopped) = watch::channel(false);
    let sampler = tokio::spawn(sample(
        Arc::clone(&ctx),
        platform.pid(),
        Duration::from_secs(args.sample_every.max(1)),
        stopped.clone(),
    ));
    let keys = tokio::spawn(key_cycles(
        Arc::clone(&ctx),
        Duration::from_secs(args.key_every.max(1)),
        stopped.clone(),
    ));
    let refresher = tokio::spawn(refreshes(Arc::clone(&ctx), stopped.clone()));
    let blipper = tokio::spawn(blip(
        Arc::clone(&ctx),
        redis,
        args.blip_every,
        Duration::from_secs(args.blip_secs),
        end,
    ));

    let crashed = schedule(&ctx, args.rate, end, &mut platform).await;
    let load_s = ctx.start.elapsed().as_secs_f64().min(load.as_secs_f64());
    let cores = |pid: u32, before: f64| round3((cpu_seconds_of(pid) - before) / load_s.max(1e-9));
    let cpu = json!({"platform": cores(platform.pid(), cpu_before.0),
                     "generator": cores(std::process::id(), cpu_before.1)});
    let _ = stop.send(true);
    println!("  load stopped; waiting for the answers still due");
    let drain = Instant::now() + Duration::from_secs(150);
    while ctx.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < drain {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unanswered = ctx.in_flight.load(Ordering::Relaxed);
    let _ = keys.await;
    let _ = refresher.await;
    let redis = blipper.await??;
    let samples = sampler.await.unwrap_or_default();

    println!("  waiting for the usage ledger to settle");
    let book = ledger::settle(
        database.url().to_owned(),
        tenant.id.clone(),
        Duration::from_secs(120),
    )
    .await?;
    let idle = Sample {
        t_s: round3(ctx.start.elapsed().as_secs_f64()),
        rss_mib: platform.rss_bytes() as f64 / 1_048_576.0,
        fds: open_fds(platform.pid()),
        threads: threads(platform.pid()),
    };
    let alive = platform.check_alive().is_ok() && crashed.is_none();
    let (usage_api, quota_used) = platform_view(&ctx).await;

    let stats = std::mem::take(&mut *ctx.stats.lock().unwrap_or_else(|e| e.into_inner()));
    let (mut usage, ledger_equal) = ledger::compare(&stats.runs, &book);
    usage["usage_api_total_tokens"] = usage_api;
    // The month's counter in Redis is rebuilt from the ledger when Redis comes back empty; what
    // it holds beyond the ledger is set beside the runs in progress when Redis last stopped.
    if let Some(used) = quota_used.as_i64() {
        let ledger_all = usage["ledger_all"]["total_tokens"].as_i64().unwrap_or(0);
        usage["quota_counter_minus_ledger"] = json!(used - ledger_all);
    }
    usage["quota_counter_used"] = quota_used;
    let last_blip = ctx
        .blips
        .lock()
        .ok()
        .and_then(|b| b.last().map(|b| b.down_at));
    if let Some(at) = last_blip {
        let (runs, tokens) = ledger::in_progress_at(&book, at);
        usage["in_progress_when_redis_last_stopped"] = json!({"runs": runs, "tokens": tokens});
    }
    // A trend needs time: shorter runs report it without judging it.
    let judge_memory = load_s >= MEMORY_JUDGED_AFTER.as_secs_f64();
    let (memory, memory_ok) = summary::memory(&samples, load_s, Some(idle), args.max_rss_slope);
    let blip_report = blip_report(&ctx);
    let log = scan_log(&args.out.join("platform.log"));
    let unexpected = stats.unexpected + unanswered as u64;
    let verdict = |check: &str, measured: String, ok: bool| json!({"check": check, "measured": measured, "status": if ok { "pass" } else { "FAIL" }});
    let judged = |check: &str, measured: String, ok: bool, judged: bool| {
        if judged {
            verdict(check, measured, ok)
        } else {
            json!({"check": check, "measured": measured, "status": "not judged"})
        }
    };
    let total_sent: u64 = stats.kinds.values().map(|k| k.sent).sum();
    let verdicts = vec![
        verdict(
            "no unexpected errors",
            format!(
                "{unexpected} unexpected, {} expected (during Redis blips) of {total_sent} requests{}",
                stats.expected,
                if unanswered > 0 {
                    format!(", {unanswered} never answered")
                } else {
                    String::new()
                }
            ),
            unexpected == 0,
        ),
        verdict(
            "usage ledger = usage reported to clients",
            format!(
                "ledger {} tokens, reported {} tokens, difference {} (runs that finished); {} tokens of runs no client saw finish",
                usage["ledger_same_runs"]["total_tokens"],
                usage["reported"]["total_tokens"],
                usage["difference_tokens"],
                usage["unfinished_runs"]["billed"]["total_tokens"],
            ),
            ledger_equal,
        ),
        judged(
            &format!(
                "memory trend ≤ {} MiB/hour after warm-up",
                args.max_rss_slope
            ),
            format!(
                "{} MiB/hour; RSS {} → {} MiB (peak {}){}",
                summary_cell(&memory["slope_mib_per_hour"]),
                memory["start_mib"],
                memory["end_mib"],
                memory["peak_mib"],
                if judge_memory {
                    String::new()
                } else {
                    format!(
                        "; judged on runs of {} minutes or more",
                        MEMORY_JUDGED_AFTER.as_secs() / 60
                    )
                }
            ),
            memory_ok,
            judge_memory,
        ),
        verdict(
            "the platform stayed up",
            crashed.clone().unwrap_or_else(|| {
                if alive {
                    "yes".to_owned()
                } else {
                    "it exited".to_owned()
                }
            }),
            alive,
        ),
    ];
    let passed = verdicts.iter().all(|v| v["status"] != "FAIL");
    let report = json!({
        "meta": {
            "date": started_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            "commit": crate::scenarios::commit(),
            "machine": machine,
            "load_s": round3(load_s),
            "rate": args.rate,
            "mix": traffic::MIX.iter().map(|(k, w)| format!("{k} {}%", w * 5)).collect::<Vec<_>>().join(", "),
            "blips": blips,
            "key_cycle_every_s": args.key_every,
            "grace_after_blip_s": GRACE.as_secs(),
            "upstream": {"latency_ms": SHAPE.latency_ms, "chunks": SHAPE.chunks, "chunk_interval_ms": SHAPE.chunk_interval_ms},
            "duration_s": (chrono::Utc::now() - started_at).num_seconds(),
            "cpu_cores": cpu,
        },
        "passed": passed,
        "verdicts": verdicts,
        "requests": summary::requests(&stats),
        "errors": {
            "expected": stats.expected,
            "unexpected": unexpected,
            "never_answered": unanswered,
            "unexpected_examples": stats.unexpected_examples,
            "expected_examples": stats.expected_examples,
        },
        "blips": blip_report,
        "memory": memory,
        "usage": usage,
        "platform_log": log,
    });
    drop(platform);
    drop(mock);
    drop(redis);
    drop(database);
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let table = summary::markdown(&report);
    std::fs::write(args.out.join("report.md"), &table)?;
    println!("\n{table}");
    println!(
        "Wrote {} and report.md.",
        args.out.join("report.json").display()
    );
    if passed {
        Ok(())
    } else {
        let failed: Vec<&str> = report["verdicts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["status"] == "FAIL")
            .filter_map(|v| v["check"].as_str())
            .collect();
        Err(format!("the soak failed: {}", failed.join("; ")).into())
    }
}

fn summary_cell(value: &Value) -> String {
    if value.is_null() {
        "–".to_owned()
    } else {
        value.to_string()
    }
}

/// Sends the mix at `rate` per second until `end` (open model: each request leaves on schedule,
/// whatever happened to the others). Returns why it stopped early, if the platform exited.
async fn schedule(ctx: &Arc<Ctx>, rate: f64, end: Instant, platform: &mut Proc) -> Option<String> {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut mixer = Mixer::default();
    let mut next_check = Instant::now();
    for i in 0.. {
        let due = ctx.start + interval.mul_f64(i as f64);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due).await;
        if Instant::now() >= next_check {
            if let Err(err) = platform.check_alive() {
                return Some(err.to_string());
            }
            next_check = Instant::now() + Duration::from_secs(1);
        }
        let kind = mixer.next();
        let in_flight = ctx.in_flight.load(Ordering::Relaxed);
        if in_flight >= MAX_IN_FLIGHT {
            ctx.record_skipped(kind, in_flight);
            continue;
        }
        ctx.in_flight.fetch_add(1, Ordering::Relaxed);
        let n = ctx.sent.fetch_add(1, Ordering::Relaxed);
        let ctx = Arc::clone(ctx);
        tokio::spawn(async move {
            let attempt = match kind {
                traffic::COMPLETION => traffic::completion(&ctx, kind, &ctx.key, false, n).await,
                traffic::STREAM => traffic::completion(&ctx, kind, &ctx.key, true, n).await,
                traffic::DASHBOARD => traffic::dashboard(&ctx, false).await,
                _ => traffic::dashboard(&ctx, true).await,
            };
            ctx.record(attempt);
            ctx.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    None
}

/// API-key cycles, one at a time, every `every`.
async fn key_cycles(ctx: Arc<Ctx>, every: Duration, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => return,
        }
        for attempt in traffic::key_cycle(&ctx, n).await {
            ctx.record(attempt);
        }
    }
}

/// Refreshes the admin's session before its access token expires (retrying every 10 s if a
/// refresh fails).
async fn refreshes(ctx: Arc<Ctx>, mut stopped: watch::Receiver<bool>) {
    let mut wait = REFRESH_EVERY;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => return,
        }
        let attempt = traffic::refresh(&ctx).await;
        wait = if attempt.failure.is_some() {
            Duration::from_secs(10)
        } else {
            REFRESH_EVERY
        };
        ctx.record(attempt);
    }
}

/// Stops Redis every `every` seconds for `down`, and starts it again; no blip that would not be
/// over 20 s before the load ends. Gives Redis back, running, at the end.
async fn blip(
    ctx: Arc<Ctx>,
    mut redis: PrivateRedis,
    every: u64,
    down: Duration,
    end: Instant,
) -> Result<PrivateRedis, Fail> {
    if every == 0 {
        return Ok(redis);
    }
    for k in 1u32.. {
        let at = ctx.start + Duration::from_secs(every) * k;
        if at + down + Duration::from_secs(20) > end {
            break;
        }
        tokio::time::sleep_until(at).await;
        ctx.blip_started();
        redis.down();
        println!("  {:>6.1} s: Redis stopped", ctx.elapsed_s(Instant::now()));
        tokio::time::sleep(down).await;
        redis.up().await?;
        ctx.blip_ended();
        println!(
            "  {:>6.1} s: Redis started again (empty)",
            ctx.elapsed_s(Instant::now())
        );
    }
    Ok(redis)
}

/// Samples the platform's memory, open files and threads every `every`, and prints a progress
/// line every minute.
async fn sample(
    ctx: Arc<Ctx>,
    pid: u32,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(every);
    let mut last_print = 0.0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => break,
        }
        let t_s = ctx.elapsed_s(Instant::now());
        let rss = rss_bytes_of(pid) as f64 / 1_048_576.0;
        samples.push(Sample {
            t_s,
            rss_mib: round3(rss),
            fds: open_fds(pid),
            threads: threads(pid),
        });
        if t_s - last_print >= 60.0 {
            last_print = t_s;
            println!(
                "  {t_s:>6.1} s: {} requests sent, {} unexpected errors, {} in flight, RSS {rss:.1} MiB, {} open files",
                ctx.sent.load(Ordering::Relaxed),
                ctx.unexpected(),
                ctx.in_flight.load(Ordering::Relaxed),
                open_fds(pid)
            );
        }
    }
    samples
}

/// Each blip: when, how long, the expected errors it caused and how long after the restart the
/// last of them came.
fn blip_report(ctx: &Ctx) -> Value {
    let blips = ctx.blips.lock().map(|b| b.clone()).unwrap_or_default();
    Value::Array(
        blips
            .iter()
            .map(|b| {
                json!({
                    "down_at_s": ctx.elapsed_s(b.down),
                    "down_for_s": b.up.map(|up| round3((up - b.down).as_secs_f64())),
                    "expected_errors": b.failures,
                    "last_error_after_restart_s": b.up.zip(b.last_failure).map(|(up, last)| {
                        round3(last.saturating_duration_since(up).as_secs_f64())
                    }),
                })
            })
            .collect(),
    )
}

/// What the platform itself says: `GET /api/v1/usage` totals (the ledger, through the API) and
/// the month's token counter (`GET /api/v1/tenant/quota`, from Redis).
async fn platform_view(ctx: &Ctx) -> (Value, Value) {
    let get = |path: &str| {
        ctx.client
            .get(format!("{}{path}", ctx.root))
            .bearer_auth(ctx.token())
            .send()
    };
    let usage = match get("/api/v1/usage").await {
        Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let quota = match get("/api/v1/tenant/quota").await {
        Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    (
        usage["totals"]["total_tokens"].clone(),
        quota["usage"]["tokens_this_month"]["used"].clone(),
    )
}

/// A log line without terminal colours (`ESC [ … m`).
fn without_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// ERROR and WARN lines of the platform's log, and the most frequent ERROR and WARN messages
/// (without their fields, which hold ids).
fn scan_log(path: &std::path::Path) -> Value {
    scan_text(&std::fs::read_to_string(path).unwrap_or_default())
}

fn scan_text(text: &str) -> Value {
    let mut errors = 0u64;
    let mut warnings = 0u64;
    let mut messages: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines() {
        let line = &without_ansi(line);
        let level = if line.contains(" ERROR ") {
            errors += 1;
            "ERROR"
        } else if line.contains(" WARN ") {
            warnings += 1;
            "WARN"
        } else {
            continue;
        };
        let rest = line
            .split_once(level)
            .map_or(line.as_str(), |(_, rest)| rest.trim());
        let message: Vec<&str> = rest
            .split(' ')
            .take_while(|word| !word.contains('='))
            // The Redis client names its connections (`fred-Ab12Cd34Ef:`): one message, one line.
            .map(|word| {
                if word.starts_with("fred-") {
                    "fred-…:"
                } else {
                    word
                }
            })
            .collect();
        *messages
            .entry(format!("{level} {}", message.join(" ")))
            .or_default() += 1;
    }
    let mut examples: Vec<(String, u64)> = messages.into_iter().collect();
    examples.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    json!({
        "errors": errors,
        "warnings": warnings,
        "examples": examples.iter().take(10).map(|(line, count)| json!({"line": line, "count": count})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_grouped_by_level_and_message() {
        let text = "2026-11-26T00:00:00Z \u{1b}[33m WARN\u{1b}[0m paas_quota: cannot settle a run's tokens yet; retrying in the background run=1 tenant=2\n\
                    2026-11-26T00:00:01Z  WARN paas_quota: cannot settle a run's tokens yet; retrying in the background run=3 tenant=2\n\
                    2026-11-26T00:00:02Z  INFO paas_api: started\n\
                    2026-11-26T00:00:03Z ERROR paas_api: usage ledger queue is full\n";
        let log = scan_text(text);
        assert_eq!(log["warnings"], 2);
        assert_eq!(log["errors"], 1);
        assert_eq!(
            log["examples"][0]["line"],
            "WARN paas_quota: cannot settle a run's tokens yet; retrying in the background"
        );
        assert_eq!(log["examples"][0]["count"], 2);
    }
}
