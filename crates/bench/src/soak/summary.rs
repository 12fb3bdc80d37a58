//! The soak's report: memory over time, requests by kind, errors, the ledger, the verdicts, as
//! JSON (`report.json`) and Markdown (`report.md`).

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::traffic::{KINDS, Stats};
use crate::report::{Latency, round3};

/// One sample of the platform process.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub rss_mib: f64,
    pub fds: u64,
    pub threads: u64,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let mx = mean(points.iter().map(|p| p.0))?;
    let my = mean(points.iter().map(|p| p.1))?;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Memory over the load: start, peak, end, the first and last windows (5 minutes, or a third of
/// a shorter run), and the trend in MiB per hour after warm-up (the first 5 minutes, or a sixth
/// of a shorter run: allocator pools, connection pools and caches fill then). The trend is
/// judged: `max_slope` MiB/hour.
pub fn memory(
    samples: &[Sample],
    load_s: f64,
    after_idle: Option<Sample>,
    max_slope: f64,
) -> (Value, bool) {
    let window = (load_s / 3.0).min(300.0);
    let warmup = (load_s / 6.0).min(300.0);
    let rss = |s: &Sample| s.rss_mib;
    let first = mean(samples.iter().filter(|s| s.t_s <= window).map(rss));
    let last = mean(samples.iter().filter(|s| s.t_s >= load_s - window).map(rss));
    let hours = |points: Vec<(f64, f64)>| slope(&points);
    let settled: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.t_s >= warmup)
        .map(|s| (s.t_s / 3600.0, s.rss_mib))
        .collect();
    let trend = hours(settled);
    let whole = hours(
        samples
            .iter()
            .map(|s| (s.t_s / 3600.0, s.rss_mib))
            .collect(),
    );
    let fds: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.t_s >= warmup)
        .map(|s| (s.t_s / 3600.0, s.fds as f64))
        .collect();
    let peak = samples.iter().map(rss).fold(0.0, f64::max);
    let ok = trend.is_some_and(|t| t <= max_slope);
    let r = |v: Option<f64>| v.map(round3);
    let report = json!({
        "start_mib": r(samples.first().map(rss)),
        "peak_mib": round3(peak),
        "end_mib": r(samples.last().map(rss)),
        "after_idle_mib": r(after_idle.map(|s| s.rss_mib)),
        "window_s": window.round(),
        "first_window_mean_mib": r(first),
        "last_window_mean_mib": r(last),
        "last_minus_first_mib": r(first.zip(last).map(|(f, l)| l - f)),
        "warmup_s": warmup.round(),
        "slope_mib_per_hour": r(trend),
        "slope_whole_run_mib_per_hour": r(whole),
        "max_slope_mib_per_hour": max_slope,
        "fds": {"start": samples.first().map(|s| s.fds), "end": samples.last().map(|s| s.fds),
                "peak": samples.iter().map(|s| s.fds).max(),
                "after_idle": after_idle.map(|s| s.fds),
                "slope_per_hour": r(slope(&fds))},
        "threads": {"start": samples.first().map(|s| s.threads), "end": samples.last().map(|s| s.threads)},
        "samples": samples,
    });
    (report, ok)
}

/// Requests by kind: sent, ok, expected and unexpected failures by class, latency.
pub fn requests(stats: &Stats) -> Value {
    let mut kinds = serde_json::Map::new();
    for kind in KINDS {
        let Some(s) = stats.kinds.get(kind) else {
            continue;
        };
        let latency = Latency::of(&s.latencies);
        kinds.insert(
            kind.to_owned(),
            json!({"sent": s.sent, "ok": s.ok,
                   "expected_errors": s.expected.values().sum::<u64>(),
                   "unexpected_errors": s.unexpected.values().sum::<u64>(),
                   "expected": s.expected, "unexpected": s.unexpected,
                   "p50_ms": latency.p50_ms, "p99_ms": latency.p99_ms, "max_ms": latency.max_ms}),
        );
    }
    Value::Object(kinds)
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "–".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn classes(map: &Value) -> String {
    let Some(map) = map.as_object().filter(|m| !m.is_empty()) else {
        return String::new();
    };
    map.iter()
        .map(|(class, n)| format!("{n} × {class}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A two-column table of `rows` under a blank line.
fn table(out: &mut String, title: &str, unit: &str, rows: &[(&str, String)]) {
    let _ = writeln!(out, "\n| {title} | {unit} |\n|---|---|");
    for (name, value) in rows {
        let _ = writeln!(out, "| {name} | {} |", escape(value));
    }
}

/// A whole number with its sign: `+12`, `-3`, `+0`.
fn signed(value: &Value) -> String {
    value
        .as_i64()
        .map_or_else(|| cell(value), |n| format!("{n:+}"))
}

/// Markdown for a table cell: no pipes, no line breaks.
fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The report as Markdown: the verdicts, then the figures behind them.
pub fn markdown(report: &Value) -> String {
    let mut out = String::new();
    let meta = &report["meta"];
    let _ = writeln!(
        out,
        "Soak run {} at commit `{}` on {}: {} s of load at {} requests/s ({}), Redis blips {}; the platform used {} CPU cores on average, the generator {}.\n",
        cell(&meta["date"]),
        cell(&meta["commit"]),
        cell(&meta["machine"]["summary"]),
        meta["load_s"],
        meta["rate"],
        cell(&meta["mix"]),
        cell(&meta["blips"]),
        meta["cpu_cores"]["platform"],
        meta["cpu_cores"]["generator"],
    );
    out.push_str("| Check | Measured | |\n|---|---|---|\n");
    for verdict in report["verdicts"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            cell(&verdict["check"]),
            escape(&cell(&verdict["measured"])),
            cell(&verdict["status"])
        );
    }
    out.push_str("\n| Requests | Sent | OK | Expected errors | Unexpected errors | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|\n");
    for (kind, s) in report["requests"].as_object().into_iter().flatten() {
        let expected = classes(&s["expected"]);
        let unexpected = classes(&s["unexpected"]);
        let _ = writeln!(
            out,
            "| {kind} | {} | {} | {}{} | {}{} | {} | {} |",
            s["sent"],
            s["ok"],
            s["expected_errors"],
            if expected.is_empty() {
                String::new()
            } else {
                format!(" ({})", escape(&expected))
            },
            s["unexpected_errors"],
            if unexpected.is_empty() {
                String::new()
            } else {
                format!(" ({})", escape(&unexpected))
            },
            s["p50_ms"],
            s["p99_ms"],
        );
    }
    let errors = &report["errors"];
    for (title, key) in [
        ("Unexpected errors", "unexpected_examples"),
        ("Expected errors", "expected_examples"),
    ] {
        let examples = errors[key].as_array().cloned().unwrap_or_default();
        if examples.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n{title} (examples):\n\n| At s | Kind | Error | Detail |\n|---|---|---|---|"
        );
        for e in examples.iter().take(12) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                e["at_s"],
                cell(&e["kind"]),
                escape(&cell(&e["class"])),
                escape(&cell(&e["detail"]))
            );
        }
    }
    let blips = report["blips"].as_array().cloned().unwrap_or_default();
    if !blips.is_empty() {
        out.push_str("\n| Redis blip | Down at s | Down for s | Expected errors | Last one, s after restart |\n|---|---|---|---|---|\n");
        for (i, b) in blips.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                i + 1,
                b["down_at_s"],
                b["down_for_s"],
                b["expected_errors"],
                cell(&b["last_error_after_restart_s"])
            );
        }
    }
    let m = &report["memory"];
    let memory = [
        ("start", cell(&m["start_mib"])),
        ("peak", cell(&m["peak_mib"])),
        ("end of load", cell(&m["end_mib"])),
        ("after the load, idle", cell(&m["after_idle_mib"])),
        (
            &format!("mean of the first {} s", m["window_s"]),
            cell(&m["first_window_mean_mib"]),
        ),
        (
            &format!("mean of the last {} s", m["window_s"]),
            cell(&m["last_window_mean_mib"]),
        ),
        (
            &format!("trend after {} s of warm-up", m["warmup_s"]),
            format!(
                "{} MiB/hour (limit {})",
                cell(&m["slope_mib_per_hour"]),
                m["max_slope_mib_per_hour"]
            ),
        ),
        (
            "trend over the whole run",
            format!("{} MiB/hour", cell(&m["slope_whole_run_mib_per_hour"])),
        ),
        (
            "open files: start / peak / end / idle",
            ["start", "peak", "end", "after_idle"]
                .map(|k| cell(&m["fds"][k]))
                .join(" / "),
        ),
    ];
    table(&mut out, "Platform memory (RSS)", "MiB", &memory);
    let u = &report["usage"];
    let tokens = |v: &Value| {
        format!(
            "{} runs: {} prompt + {} completion = {}",
            v["runs"], v["prompt_tokens"], v["completion_tokens"], v["total_tokens"]
        )
    };
    let counter = match (
        u.get("quota_counter_minus_ledger"),
        u.get("in_progress_when_redis_last_stopped"),
    ) {
        (Some(d), Some(p)) => format!(
            " (ledger {}; runs in progress when Redis last stopped: {}, {} tokens)",
            signed(d),
            p["runs"],
            p["tokens"]
        ),
        (Some(d), None) => format!(" (ledger {})", signed(d)),
        _ => String::new(),
    };
    let usage = [
        (
            "reported to clients (runs they saw finish)",
            tokens(&u["reported"]),
        ),
        ("ledger, the same runs", tokens(&u["ledger_same_runs"])),
        ("difference", cell(&u["difference_tokens"])),
        ("ledger, every run of the tenant", tokens(&u["ledger_all"])),
        (
            "runs seen starting but not finishing (billed, told to no one)",
            tokens(&u["unfinished_runs"]["billed"]),
        ),
        (
            "finished runs missing from the ledger",
            cell(&u["finished_runs_missing_from_ledger"]),
        ),
        (
            "ledger rows of runs no client saw",
            cell(&u["ledger_rows_for_runs_never_seen"]),
        ),
        (
            "runs billed differently from what their client was told",
            cell(&u["runs_with_other_usage"]),
        ),
        (
            "`GET /api/v1/usage` totals",
            cell(&u["usage_api_total_tokens"]),
        ),
        (
            "month's counter in Redis (`tokens_this_month.used`)",
            format!("{}{counter}", cell(&u["quota_counter_used"])),
        ),
        (
            "ledger settled after the load",
            format!(
                "{} s ({})",
                u["waited_s"],
                if u["settled"] == true {
                    "settled"
                } else {
                    "did not settle"
                }
            ),
        ),
    ];
    table(&mut out, "Usage", "tokens", &usage);
    let log = &report["platform_log"];
    let _ = writeln!(
        out,
        "\nPlatform log: {} ERROR and {} WARN lines.",
        log["errors"], log["warnings"]
    );
    for line in log["examples"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "- `{}` × {}",
            escape(&cell(&line["line"])),
            line["count"]
        );
    }
    out
}
