//! The scenarios of the performance issue, each measured direct to the mock and through the
//! platform, and the report they make.

use std::time::Duration;

use serde_json::{Value, json};

use crate::load::{self, Outcome, Target};
use crate::procs::{PeakRss, Proc};
use crate::report::{self, Latency, Run, Scenario, Verdict, round3};
use crate::setup::{self, Mock, MockShape, SLOW, STREAM};
use crate::{Cli, Fail};

/// How hard and how long: the figures, or a few seconds at a low rate (`--quick`).
#[derive(Debug)]
struct Plan {
    quick: bool,
    warmup: Duration,
    s1: Duration,
    s2_rate: f64,
    steady: Duration,
    s3_rates: Vec<f64>,
    s4_single: Duration,
    s4_concurrency: usize,
    s4_many: Duration,
    s5_streams: usize,
    s5_rate: f64,
    s6_rate: f64,
}

impl Plan {
    fn new(cli: &Cli) -> Self {
        if cli.quick {
            Self {
                quick: true,
                warmup: Duration::from_millis(300),
                s1: Duration::from_secs(1),
                s2_rate: 50.0,
                steady: Duration::from_secs(1),
                s3_rates: vec![20.0, 40.0],
                s4_single: Duration::from_secs(1),
                s4_concurrency: 10,
                s4_many: Duration::from_secs(1),
                s5_streams: 50,
                s5_rate: 50.0,
                s6_rate: 50.0,
            }
        } else {
            Self {
                quick: false,
                warmup: Duration::from_secs(3),
                s1: Duration::from_secs(10),
                s2_rate: 1_000.0,
                steady: Duration::from_secs(cli.seconds),
                // From well below the target, so the report says where the platform holds.
                s3_rates: vec![
                    250.0, 500.0, 750.0, 1_000.0, 1_500.0, 2_000.0, 3_000.0, 4_000.0, 5_000.0,
                ],
                s4_single: Duration::from_secs(10),
                s4_concurrency: 1_000,
                s4_many: Duration::from_secs(15),
                s5_streams: cli.streams,
                s5_rate: 1_000.0,
                // Below the knee of s3, so each configuration is measured unsaturated.
                s6_rate: 500.0,
            }
        }
    }
}

/// The processes under test and the two clients.
struct Bench {
    plan: Plan,
    bin_dir: Option<std::path::PathBuf>,
    out: std::path::PathBuf,
    mocks: Vec<Mock>,
    platform: Proc,
    root: String,
    key: String,
    client: reqwest::Client,
}

/// How a measurement loads its target.
#[derive(Clone, Copy, Debug)]
enum Load {
    /// Requests per second, for a time (open model).
    Rate(f64, Duration),
    /// Concurrent clients, for a time (closed model).
    Clients(usize, Duration),
}

impl Load {
    fn offered(self) -> Value {
        match self {
            Load::Rate(rate, _) => json!(format!("{rate} req/s")),
            Load::Clients(n, _) => json!(format!("{n} concurrent")),
        }
    }

    fn warmup(self, warmup: Duration) -> Self {
        match self {
            Load::Rate(rate, _) => Load::Rate(rate, warmup),
            Load::Clients(n, _) => Load::Clients(n, warmup),
        }
    }
}

impl Bench {
    fn mock(&self, shape: MockShape) -> &Mock {
        self.mocks
            .iter()
            .find(|m| m.shape.name == shape.name)
            .unwrap_or(&self.mocks[0])
    }

    fn target(&self, via: &'static str, shape: MockShape, stream: bool) -> Target {
        match via {
            "direct" => Target::new(
                format!("{}/chat/completions", self.mock(shape).base),
                "sk-bench-upstream",
                "mock-gpt",
                stream,
                shape.chunks,
            ),
            _ => Target::new(
                format!("{}/v1/chat/completions", self.root),
                &self.key,
                &format!("bench-{}", shape.name),
                stream,
                shape.chunks,
            ),
        }
    }

    async fn drive(&self, target: &Target, load: Load, max_in_flight: usize) -> Outcome {
        match load {
            Load::Rate(rate, time) => {
                load::open(&self.client, target, rate, time, max_in_flight).await
            }
            Load::Clients(n, time) => load::closed(&self.client, target, n, time).await,
        }
    }

    /// Warms up, then measures one path under `load`, with the CPU and memory of the processes
    /// that served it (and of this generator).
    async fn measure(
        &mut self,
        via: &'static str,
        round: u32,
        shape: MockShape,
        stream: bool,
        load: Load,
    ) -> Result<Run, Fail> {
        let target = self.target(via, shape, stream);
        let max_in_flight = 20_000;
        self.drive(&target, load.warmup(self.plan.warmup), max_in_flight)
            .await;
        let mock_pid = self.mock(shape).proc.pid();
        let platform_pid = self.platform.pid();
        let watched: Vec<(&str, u32)> = if via == "platform" {
            vec![("platform", platform_pid), ("mock", mock_pid)]
        } else {
            vec![("mock", mock_pid)]
        };
        let own = std::process::id();
        let cpu = crate::procs::cpu_seconds_of;
        let before: Vec<f64> = watched.iter().map(|(_, pid)| cpu(*pid)).collect();
        let own_before = cpu(own);
        let peaks: Vec<PeakRss> = watched
            .iter()
            .map(|(_, pid)| PeakRss::start(*pid))
            .collect();
        let outcome = self.drive(&target, load, max_in_flight).await;
        let secs = outcome.elapsed.as_secs_f64().max(1e-9);
        let mut run = Run::new(via, round, load.offered(), &outcome);
        let mut cores = serde_json::Map::new();
        let mut rss = serde_json::Map::new();
        for (((name, pid), before), peak) in watched.iter().zip(before).zip(peaks) {
            cores.insert(
                (*name).to_owned(),
                json!(round3((cpu(*pid) - before) / secs)),
            );
            rss.insert(
                (*name).to_owned(),
                json!(round3(peak.stop() as f64 / 1_048_576.0)),
            );
        }
        cores.insert(
            "generator".to_owned(),
            json!(round3((cpu(own) - own_before) / secs)),
        );
        run.cpu_cores = Value::Object(cores);
        run.peak_rss_mib = Value::Object(rss);
        self.platform.check_alive()?;
        println!(
            "  {via:8} {:>16}: {} ok, {} errors, p50 {} ms, p99 {} ms{}",
            run.offered.as_str().unwrap_or(""),
            run.ok,
            run.errors,
            run.latency.p50_ms,
            run.latency.p99_ms,
            run.ttft
                .map(|t| format!(", TTFT p99 {} ms", t.p99_ms))
                .unwrap_or_default()
        );
        Ok(run)
    }

    /// Direct, platform, direct, platform: each path twice, alternating, so drift in the
    /// machine's load shows in both.
    async fn alternate(
        &mut self,
        shape: MockShape,
        stream: bool,
        load: Load,
    ) -> Result<Vec<Run>, Fail> {
        let mut runs = Vec::new();
        for round in 1..=2 {
            for via in ["direct", "platform"] {
                runs.push(self.measure(via, round, shape, stream, load).await?);
            }
        }
        Ok(runs)
    }
}

/// Latency figures over every run of one path (the two rounds together).
fn merged(runs: &[Run], via: &str, pick: impl Fn(&Run) -> Option<Latency>) -> Latency {
    // Merging percentiles exactly needs the samples; the runs keep only percentiles, so the
    // figure of a path is the mean of its rounds' percentiles, weighted by their counts.
    let chosen: Vec<Latency> = runs
        .iter()
        .filter(|r| r.via == via)
        .filter_map(pick)
        .collect();
    let total: usize = chosen.iter().map(|l| l.count).sum();
    if total == 0 {
        return Latency::default();
    }
    let mean = |f: fn(&Latency) -> f64| {
        round3(chosen.iter().map(|l| f(l) * l.count as f64).sum::<f64>() / total as f64)
    };
    Latency {
        count: total,
        p50_ms: mean(|l| l.p50_ms),
        p90_ms: mean(|l| l.p90_ms),
        p99_ms: mean(|l| l.p99_ms),
        max_ms: chosen.iter().map(|l| l.max_ms).fold(0.0, f64::max),
    }
}

fn errors(runs: &[Run], via: &str) -> (u64, u64) {
    runs.iter()
        .filter(|r| r.via == via)
        .fold((0, 0), |(e, n), r| (e + r.errors, n + r.requests))
}

fn summary(
    runs: &[Run],
    pick: impl Fn(&Run) -> Option<Latency> + Copy,
) -> (Latency, Latency, Value) {
    let direct = merged(runs, "direct", pick);
    let platform = merged(runs, "platform", pick);
    let added = platform.minus(&direct);
    (direct, platform, added)
}

fn ms(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

async fn s1(bench: &mut Bench) -> Result<Scenario, Fail> {
    let judged = !bench.plan.quick;
    let runs = bench
        .alternate(setup::FAST, false, Load::Clients(1, bench.plan.s1))
        .await?;
    let (direct, platform, added) = summary(&runs, |r| Some(r.latency));
    let (errs, _) = errors(&runs, "platform");
    let verdicts = vec![
        Verdict::judge(
            judged,
            "added p50 ≤ 0.5 ms",
            format!("{} ms", added["p50_ms"]),
            ms(&added["p50_ms"]) <= 0.5,
        ),
        Verdict::judge(
            judged,
            "added p99 ≤ 1 ms",
            format!("{} ms", added["p99_ms"]),
            ms(&added["p99_ms"]) <= 1.0 && errs == 0,
        ),
    ];
    Ok(Scenario {
        id: "s1",
        title: "Non-streaming, 1 request at a time".to_owned(),
        summary: json!({"direct": direct, "platform": platform, "added": added}),
        runs,
        verdicts,
    })
}

async fn s2(bench: &mut Bench) -> Result<Scenario, Fail> {
    let judged = !bench.plan.quick;
    let rate = bench.plan.s2_rate;
    let runs = bench
        .alternate(setup::FAST, false, Load::Rate(rate, bench.plan.steady))
        .await?;
    let (direct, platform, added) = summary(&runs, |r| Some(r.latency));
    let (errs, total) = errors(&runs, "platform");
    let verdicts = vec![
        Verdict::judge(
            judged,
            "added p99 ≤ 2 ms",
            format!("{} ms", added["p99_ms"]),
            ms(&added["p99_ms"]) <= 2.0,
        ),
        Verdict::judge(judged, "errors 0", format!("{errs} of {total}"), errs == 0),
    ];
    Ok(Scenario {
        id: "s2",
        title: format!("Non-streaming at a constant {rate} requests/s"),
        summary: json!({"direct": direct, "platform": platform, "added": added}),
        runs,
        verdicts,
    })
}

async fn s3(bench: &mut Bench) -> Result<Scenario, Fail> {
    let judged = !bench.plan.quick;
    let mut runs = Vec::new();
    let mut held: Option<f64> = None;
    let mut steps = Vec::new();
    for rate in bench.plan.s3_rates.clone() {
        let load = Load::Rate(rate, bench.plan.steady);
        let direct = bench.measure("direct", 1, SLOW, false, load).await?;
        let platform = bench.measure("platform", 1, SLOW, false, load).await?;
        let within = platform.latency.p99_ms <= direct.latency.p99_ms + 5.0;
        let clean = platform.error_rate < 0.001;
        steps.push(json!({"rate": rate, "direct_p99_ms": direct.latency.p99_ms,
            "platform_p99_ms": platform.latency.p99_ms, "platform_error_rate": platform.error_rate,
            "direct_error_rate": direct.error_rate, "held": within && clean}));
        // Past the knee the queue only grows: stop once the platform is plainly overloaded.
        let overloaded = platform.error_rate > 0.01 || platform.latency.p99_ms > 1_000.0;
        runs.push(direct);
        runs.push(platform);
        if within && clean {
            held = Some(rate);
        }
        if overloaded {
            break;
        }
    }
    let capacity = held.unwrap_or(0.0);
    let verdicts = vec![Verdict::judge(
        judged,
        "≥ 3,000 requests/s held (errors < 0.1%, p99 within 5 ms of direct)",
        if held.is_some() {
            format!("{capacity} requests/s")
        } else {
            "none of the rates tried".to_owned()
        },
        capacity >= 3_000.0,
    )];
    Ok(Scenario {
        id: "s3",
        title: "Capacity with a 50 ms model".to_owned(),
        summary: json!({"steps": steps, "capacity_rps": capacity}),
        runs,
        verdicts,
    })
}

async fn s4(bench: &mut Bench) -> Result<Scenario, Fail> {
    let judged = !bench.plan.quick;
    let single = bench
        .alternate(STREAM, true, Load::Clients(1, bench.plan.s4_single))
        .await?;
    let n = bench.plan.s4_concurrency;
    let mut many = Vec::new();
    for via in ["direct", "platform"] {
        many.push(
            bench
                .measure(via, 1, STREAM, true, Load::Clients(n, bench.plan.s4_many))
                .await?,
        );
    }
    let (_, _, ttft1) = summary(&single, |r| r.ttft);
    let (_, _, ttft_n) = summary(&many, |r| r.ttft);
    let (_, _, gap1) = summary(&single, |r| r.chunk_gap);
    let (_, _, gap_n) = summary(&many, |r| r.chunk_gap);
    let (errs1, total1) = errors(&single, "platform");
    let (errs_n, total_n) = errors(&many, "platform");
    let verdicts = vec![
        Verdict::judge(
            judged,
            "added TTFT p99 ≤ 1 ms at 1 stream",
            format!("{} ms", ttft1["p99_ms"]),
            ms(&ttft1["p99_ms"]) <= 1.0,
        ),
        Verdict::judge(
            judged,
            &format!("added TTFT p99 ≤ 5 ms at {n} concurrent streams"),
            format!("{} ms", ttft_n["p99_ms"]),
            ms(&ttft_n["p99_ms"]) <= 5.0,
        ),
        Verdict::judge(
            judged,
            "added gap between chunks p99 ≤ 0.1 ms",
            format!(
                "{} ms at 1 stream, {} ms at {n}",
                gap1["p99_ms"], gap_n["p99_ms"]
            ),
            ms(&gap1["p99_ms"]) <= 0.1 && ms(&gap_n["p99_ms"]) <= 0.1,
        ),
        Verdict::judge(
            judged,
            "every chunk delivered (20 per stream, ending in [DONE])",
            format!("{} of {} streams failed", errs1 + errs_n, total1 + total_n),
            errs1 + errs_n == 0,
        ),
    ];
    let mut runs = single;
    runs.extend(many);
    Ok(Scenario {
        id: "s4",
        title: "Streaming: 20 chunks, 10 ms apart".to_owned(),
        summary: json!({"added_ttft_1": ttft1, "added_ttft_n": ttft_n, "added_gap_1": gap1,
            "added_gap_n": gap_n, "concurrency": n}),
        runs,
        verdicts,
    })
}

async fn s5(bench: &mut Bench) -> Result<Scenario, Fail> {
    let judged = !bench.plan.quick;
    let streams = bench.plan.s5_streams;
    let rate = bench.plan.s5_rate;
    // Each stream lasts about 20 s (1 s in a smoke run), longer than it takes to start them all,
    // so all of them are open at once when the last has started.
    let load = Load::Rate(rate, Duration::from_secs_f64(streams as f64 / rate));
    let hold = setup::hold(bench.plan.quick);
    let direct = bench.measure("direct", 1, hold, true, load).await?;
    let settle = Duration::from_secs(if bench.plan.quick { 1 } else { 5 });
    tokio::time::sleep(settle).await;
    let baseline = bench.platform.rss_bytes();
    let platform = bench.measure("platform", 1, hold, true, load).await?;
    tokio::time::sleep(settle).await;
    let after = bench.platform.rss_bytes();
    let peak = ms(&platform.peak_rss_mib["platform"]) * 1_048_576.0;
    let mib = |bytes: f64| round3(bytes / 1_048_576.0);
    let growth = (peak - baseline as f64).max(0.0);
    let per_thousand = growth / (streams as f64 / 1_000.0);
    let left = after as f64 - baseline as f64;
    let verdicts = vec![
        Verdict::judge(
            judged,
            &format!("{streams} concurrent streams without errors"),
            format!("{} errors of {}", platform.errors, platform.requests),
            platform.errors == 0,
        ),
        Verdict::judge(
            judged,
            "memory growth ≤ 50 MB per 1,000 streams",
            format!("{} MiB per 1,000", mib(per_thousand)),
            per_thousand <= 50.0 * 1_000_000.0,
        ),
        Verdict::judge(
            judged,
            "memory back to baseline after (within a fifth of the growth)",
            format!(
                "{} MiB before, {} MiB at peak, {} MiB after",
                mib(baseline as f64),
                mib(peak),
                mib(after as f64)
            ),
            left <= growth / 5.0,
        ),
    ];
    Ok(Scenario {
        id: "s5",
        title: format!("{streams} streams open at once"),
        summary: json!({"streams": streams, "baseline_rss_mib": mib(baseline as f64),
            "peak_rss_mib": mib(peak), "after_rss_mib": mib(after as f64),
            "growth_mib_per_1000": mib(per_thousand)}),
        runs: vec![direct, platform],
        verdicts,
    })
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn machine() -> Value {
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, v)| v.trim())
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| round3(kb / 1_048_576.0));
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let load = read("/proc/loadavg")
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_owned();
    json!({
        "summary": format!("{cpus} CPUs ({model}), {mem_gib} GiB, Linux {kernel}"),
        "cpus": cpus, "cpu_model": model, "memory_gib": mem_gib, "kernel": kernel,
        "load_average_at_start": load,
    })
}

pub fn commit() -> String {
    let out = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = out(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    let dirty =
        out(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head}+changes")
    } else {
        head
    }
}

const METHOD: &str = "Mock upstreams (crates/mock-upstream) and the platform (agent-paas serve, \
release build, RUST_LOG=warn, full path on: API-key auth, rate limits and token reservation in \
one Redis script, run rows in PostgreSQL, settlement and the usage ledger) on this machine, \
sharing its cores with PostgreSQL, Redis and the generator; no pinning. The generator \
(crates/bench) sends OpenAI Chat Completions requests over keep-alive HTTP/1.1 with \
TCP_NODELAY: at a constant arrival rate (open model) or from N concurrent clients (closed \
model), after a warm-up at the same load. Latency is send to last byte; streams are timed to \
the first content chunk (TTFT) and between content chunks. Scenarios 1, 2 and 4 (one stream) run \
direct, platform, direct, platform; a path's percentile is the count-weighted mean of its two \
rounds'; added = platform minus direct.";

/// The configurations of s6: the full path, and without each part whose cost it shows.
const COSTS: &[(&str, &[(&str, &str)])] = &[
    ("full path", &[]),
    ("quotas off", &[("PAAS_QUOTAS", "false")]),
    ("run rows off", &[("PAAS_RECORD_OPENAI_RUNS", "false")]),
    (
        "both off",
        &[
            ("PAAS_QUOTAS", "false"),
            ("PAAS_RECORD_OPENAI_RUNS", "false"),
        ],
    ),
];

/// s6: s1's and a steady rate's figures with Redis-backed quotas (`PAAS_QUOTAS`) and the run
/// rows in PostgreSQL (`PAAS_RECORD_OPENAI_RUNS`) on and off, each configuration a fresh
/// platform on a database of its own. (Authentication, the usage ledger and its write-behind
/// stay on in all of them.)
async fn s6(bench: &mut Bench) -> Result<Scenario, Fail> {
    let one = Load::Clients(1, bench.plan.s1);
    let rate = bench.plan.s6_rate;
    let steady = Load::Rate(rate, bench.plan.steady);
    let direct_one = bench.measure("direct", 1, setup::FAST, false, one).await?;
    let direct_rate = bench
        .measure("direct", 1, setup::FAST, false, steady)
        .await?;
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    let mut runs = vec![direct_one.clone(), direct_rate.clone()];
    for (name, env) in COSTS {
        println!("  {name}");
        // Each configuration, the full path too, is a fresh platform: the one already running
        // carries what the scenarios before did to its heap and pools.
        let own = {
            let database = paas_testing::TestDatabase::new();
            let log = bench
                .out
                .join(format!("platform-{}.log", name.replace(' ', "-")));
            let (platform, root) = setup::start_platform(
                bench.bin_dir.as_deref(),
                database.url(),
                setup::SHARED_REDIS,
                env,
                &log,
            )
            .await?;
            let key = setup::configure(&root, &bench.mocks).await?;
            let saved = (
                std::mem::replace(&mut bench.platform, platform),
                std::mem::replace(&mut bench.root, root),
                std::mem::replace(&mut bench.key, key),
            );
            (database, saved)
        };
        let measured = async {
            let a = bench
                .measure("platform", 1, setup::FAST, false, one)
                .await?;
            let b = bench
                .measure("platform", 1, setup::FAST, false, steady)
                .await?;
            Ok::<_, Fail>((a, b))
        }
        .await;
        let (database, (platform, root, key)) = own;
        drop(std::mem::replace(&mut bench.platform, platform));
        bench.root = root;
        bench.key = key;
        drop(database);
        let (mut a, mut b) = measured?;
        let cores = b.cpu_cores["platform"].as_f64().unwrap_or(f64::NAN);
        let cpu_ms = round3(cores * 1_000.0 / b.throughput_rps.max(1e-9));
        let row = json!({
            "config": name,
            "env": env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "added_p50_ms_1": round3(a.latency.p50_ms - direct_one.latency.p50_ms),
            "added_p99_ms_1": round3(a.latency.p99_ms - direct_one.latency.p99_ms),
            "added_p99_ms_rate": round3(b.latency.p99_ms - direct_rate.latency.p99_ms),
            "errors": a.errors + b.errors,
            "cpu_ms_per_request": cpu_ms,
        });
        verdicts.push(Verdict::judge(
            false,
            &format!("{name}: added at 1 client (p50 / p99), added p99 at {rate} req/s, CPU"),
            format!(
                "{} / {} ms, {} ms, {} ms a request, {} errors",
                row["added_p50_ms_1"],
                row["added_p99_ms_1"],
                row["added_p99_ms_rate"],
                cpu_ms,
                row["errors"]
            ),
            true,
        ));
        a.offered = json!(format!("{name}, {}", a.offered.as_str().unwrap_or("")));
        b.offered = json!(format!("{name}, {}", b.offered.as_str().unwrap_or("")));
        runs.push(a);
        runs.push(b);
        rows.push(row);
    }
    Ok(Scenario {
        id: "s6",
        title: "Quotas and run rows on and off".to_owned(),
        summary: json!({"configs": rows, "rate": rate}),
        runs,
        verdicts,
    })
}

pub async fn run(cli: Cli) -> Result<(), Fail> {
    let plan = Plan::new(&cli);
    let wanted = |id: &str| cli.only.is_empty() || cli.only.iter().any(|s| s == id);
    std::fs::create_dir_all(&cli.out)?;
    let started = chrono::Utc::now();
    let machine = machine();
    println!(
        "paas-bench: {} on {}",
        if plan.quick { "smoke run" } else { "full run" },
        machine["summary"].as_str().unwrap_or("?")
    );
    let database = paas_testing::TestDatabase::new();
    let mut mocks = Vec::new();
    for shape in setup::shapes(cli.quick) {
        mocks.push(setup::start_mock(cli.bin_dir.as_deref(), shape).await?);
    }
    let (platform, root) = setup::start_platform(
        cli.bin_dir.as_deref(),
        database.url(),
        setup::SHARED_REDIS,
        &[],
        &cli.out.join("platform.log"),
    )
    .await?;
    let key = setup::configure(&root, &mocks).await?;
    let mut bench = Bench {
        plan,
        bin_dir: cli.bin_dir.clone(),
        out: cli.out.clone(),
        mocks,
        platform,
        root,
        key,
        client: load::client(),
    };
    let mut scenarios = Vec::new();
    if wanted("s1") {
        println!("s1: non-streaming, 1 request at a time");
        scenarios.push(s1(&mut bench).await?);
    }
    if wanted("s2") {
        println!("s2: non-streaming at a constant rate");
        scenarios.push(s2(&mut bench).await?);
    }
    if wanted("s3") {
        println!("s3: capacity with a 50 ms model");
        scenarios.push(s3(&mut bench).await?);
    }
    if wanted("s4") {
        println!("s4: streaming");
        scenarios.push(s4(&mut bench).await?);
    }
    if wanted("s5") {
        println!("s5: streams held open");
        scenarios.push(s5(&mut bench).await?);
    }
    if wanted("s6") {
        println!("s6: quotas and run rows on and off");
        scenarios.push(s6(&mut bench).await?);
    }
    let report = json!({
        "meta": {
            "date": started.format("%Y-%m-%d %H:%M UTC").to_string(),
            "commit": commit(),
            "machine": machine,
            "method": METHOD,
            "quick": bench.plan.quick,
            "duration_s": (chrono::Utc::now() - started).num_seconds(),
        },
        "scenarios": scenarios,
    });
    drop(bench);
    drop(database);
    let text = serde_json::to_string_pretty(&report)?;
    std::fs::write(cli.out.join("report.json"), &text)?;
    let table = report::markdown(&report);
    std::fs::write(cli.out.join("report.md"), &table)?;
    println!("\n{table}");
    println!(
        "Wrote {} and report.md.",
        cli.out.join("report.json").display()
    );
    report::validate(&report).map_err(|err| format!("the report is not well formed: {err}"))?;
    Ok(())
}
