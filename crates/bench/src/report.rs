//! Percentiles, the JSON report (`target/bench/report.json`) and its Markdown table.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::load::Outcome;

/// Percentiles of a set of durations, in milliseconds (nearest rank).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let at = |p: f64| {
            let rank = (p * sorted.len() as f64).ceil() as usize;
            round3(sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3)
        };
        Self {
            count: sorted.len(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }

    /// `self - direct`, percentile by percentile.
    pub fn minus(&self, direct: &Self) -> Value {
        json!({
            "p50_ms": round3(self.p50_ms - direct.p50_ms),
            "p90_ms": round3(self.p90_ms - direct.p90_ms),
            "p99_ms": round3(self.p99_ms - direct.p99_ms),
            "max_ms": round3(self.max_ms - direct.max_ms),
        })
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The figures of one measurement (one target, one round).
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// `direct` or `platform`.
    pub via: &'static str,
    pub round: u32,
    /// Requests per second asked for (open model), or concurrent clients (closed model).
    pub offered: Value,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub error_kinds: Value,
    pub throughput_rps: f64,
    pub latency: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_gap: Option<Latency>,
    /// CPU cores used on average (user + system time / wall time), by process.
    pub cpu_cores: Value,
    /// Highest resident memory while measuring, by process, in MiB.
    pub peak_rss_mib: Value,
}

impl Run {
    pub fn new(via: &'static str, round: u32, offered: Value, outcome: &Outcome) -> Self {
        let requests = outcome.requests();
        let secs = outcome.elapsed.as_secs_f64().max(1e-9);
        Self {
            via,
            round,
            offered,
            requests,
            ok: outcome.ok,
            errors: outcome.errors,
            error_rate: if requests == 0 {
                0.0
            } else {
                outcome.errors as f64 / requests as f64
            },
            error_kinds: json!(outcome.error_kinds),
            throughput_rps: round3(outcome.ok as f64 / secs),
            latency: Latency::of(&outcome.latencies),
            ttft: (!outcome.ttft.is_empty()).then(|| Latency::of(&outcome.ttft)),
            chunk_gap: (!outcome.gaps.is_empty()).then(|| Latency::of(&outcome.gaps)),
            cpu_cores: json!({}),
            peak_rss_mib: json!({}),
        }
    }
}

/// Whether a target was met: `met`, `not met`, or `not judged` (a smoke run).
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    pub status: &'static str,
}

impl Verdict {
    pub fn judge(judged: bool, target: &str, measured: String, met: bool) -> Self {
        Self {
            target: target.to_owned(),
            measured,
            status: match (judged, met) {
                (false, _) => "not judged",
                (true, true) => "met",
                (true, false) => "not met",
            },
        }
    }
}

/// One scenario: its runs, the merged figures of each path and the verdicts.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    pub id: &'static str,
    pub title: String,
    pub runs: Vec<Run>,
    pub summary: Value,
    pub verdicts: Vec<Verdict>,
}

/// Checks that a report has every part a reader (and `just test`) relies on.
pub fn validate(report: &Value) -> Result<(), String> {
    let meta = report.get("meta").ok_or("no meta")?;
    for field in ["date", "commit", "machine", "method", "quick"] {
        meta.get(field).ok_or(format!("meta.{field} missing"))?;
    }
    let scenarios = report
        .get("scenarios")
        .and_then(Value::as_array)
        .ok_or("no scenarios")?;
    if scenarios.is_empty() {
        return Err("no scenario ran".to_owned());
    }
    for scenario in scenarios {
        let id = scenario.get("id").and_then(Value::as_str).ok_or("id")?;
        let runs = scenario
            .get("runs")
            .and_then(Value::as_array)
            .ok_or(format!("{id}: no runs"))?;
        for via in ["direct", "platform"] {
            if !runs.iter().any(|r| r["via"] == via) {
                return Err(format!("{id}: no {via} run"));
            }
        }
        for run in runs {
            for field in [
                "requests",
                "errors",
                "throughput_rps",
                "latency",
                "cpu_cores",
                "peak_rss_mib",
            ] {
                run.get(field)
                    .ok_or(format!("{id}: a run has no {field}"))?;
            }
            if run["requests"].as_u64().unwrap_or(0) == 0 {
                return Err(format!("{id}: a {} run sent no requests", run["via"]));
            }
            if run["latency"]["p50_ms"].as_f64().is_none() {
                return Err(format!("{id}: latency without p50"));
            }
        }
        let verdicts = scenario
            .get("verdicts")
            .and_then(Value::as_array)
            .ok_or(format!("{id}: no verdicts"))?;
        if verdicts.is_empty() {
            return Err(format!("{id}: no verdicts"));
        }
    }
    Ok(())
}

/// The report as a Markdown table, one line per target.
pub fn markdown(report: &Value) -> String {
    let mut out = String::new();
    let meta = &report["meta"];
    let _ = writeln!(
        out,
        "Run {} at commit `{}` on {} ({}).\n",
        meta["date"].as_str().unwrap_or("?"),
        meta["commit"].as_str().unwrap_or("?"),
        meta["machine"]["summary"].as_str().unwrap_or("?"),
        if meta["quick"].as_bool().unwrap_or(false) {
            "smoke run: a few seconds per scenario, targets not judged"
        } else {
            "full run"
        }
    );
    out.push_str("| # | Scenario | Target | Measured | |\n|---|---|---|---|---|\n");
    for scenario in report["scenarios"].as_array().into_iter().flatten() {
        for verdict in scenario["verdicts"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                scenario["id"].as_str().unwrap_or("?"),
                scenario["title"].as_str().unwrap_or("?"),
                verdict["target"].as_str().unwrap_or("?"),
                verdict["measured"].as_str().unwrap_or("?"),
                verdict["status"].as_str().unwrap_or("?"),
            );
        }
    }
    out.push_str("\n| # | Via | Round | Offered | Requests | Errors | Throughput/s | p50 ms | p90 ms | p99 ms | max ms | TTFT p99 ms | Gap p99 ms | CPU cores (server) | Peak RSS MiB (server) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for scenario in report["scenarios"].as_array().into_iter().flatten() {
        for run in scenario["runs"].as_array().into_iter().flatten() {
            let server = if run["via"] == "direct" {
                "mock"
            } else {
                "platform"
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                scenario["id"].as_str().unwrap_or("?"),
                run["via"].as_str().unwrap_or("?"),
                run["round"],
                run["offered"].as_str().unwrap_or("?"),
                run["requests"],
                run["errors"],
                run["throughput_rps"],
                run["latency"]["p50_ms"],
                run["latency"]["p90_ms"],
                run["latency"]["p99_ms"],
                run["latency"]["max_ms"],
                run.get("ttft")
                    .map_or("".to_owned(), |t| t["p99_ms"].to_string()),
                run.get("chunk_gap")
                    .map_or("".to_owned(), |t| t["p99_ms"].to_string()),
                run["cpu_cores"][server],
                run["peak_rss_mib"][server],
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let latency = Latency::of(&samples);
        assert_eq!(latency.count, 100);
        assert_eq!(latency.p50_ms, 50.0);
        assert_eq!(latency.p90_ms, 90.0);
        assert_eq!(latency.p99_ms, 99.0);
        assert_eq!(latency.max_ms, 100.0);
        assert_eq!(Latency::of(&[]), Latency::default());
    }

    #[test]
    fn a_report_without_both_paths_is_refused() {
        let run = |via: &str| {
            json!({"via": via, "requests": 3, "errors": 0, "throughput_rps": 1.0,
                   "latency": {"p50_ms": 1.0}, "cpu_cores": {}, "peak_rss_mib": {}})
        };
        let report = |runs: Vec<Value>| {
            json!({"meta": {"date": "d", "commit": "c", "machine": {}, "method": "m", "quick": true},
                   "scenarios": [{"id": "s1", "runs": runs, "verdicts": [{"target": "t"}]}]})
        };
        assert!(validate(&report(vec![run("direct"), run("platform")])).is_ok());
        assert!(validate(&report(vec![run("direct")])).is_err());
        assert!(validate(&json!({"meta": {}})).is_err());
    }
}
