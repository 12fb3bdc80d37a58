//! The usage ledger as PostgreSQL holds it (`usage_records`, one row per finished run), read
//! once the platform has finished every run and its write-behind queue has drained, and
//! compared run by run with the usage the clients were told.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Bool, Integer, Text, Timestamptz};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use serde_json::{Value, json};

use super::traffic::{RunSeen, Usage};
use crate::Fail;

#[derive(QueryableByName)]
struct Counts {
    #[diesel(sql_type = BigInt)]
    running: i64,
    #[diesel(sql_type = BigInt)]
    runs: i64,
    #[diesel(sql_type = BigInt)]
    ledger: i64,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    run_id: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    prompt_tokens: i32,
    #[diesel(sql_type = Integer)]
    completion_tokens: i32,
    #[diesel(sql_type = Bool)]
    usage_estimated: bool,
    #[diesel(sql_type = Timestamptz)]
    started_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    finished_at: DateTime<Utc>,
}

/// A ledger row.
#[derive(Clone, Debug)]
pub struct Entry {
    pub status: String,
    pub usage: Usage,
    pub estimated: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// The ledger once settled.
#[derive(Debug)]
pub struct Ledger {
    pub entries: HashMap<String, Entry>,
    /// Rows of the `runs` table, and those still `running`.
    pub runs: u64,
    pub running: u64,
    /// How long it took to settle, and whether it did (no run in progress, one ledger row per
    /// run, the same counts twice in a row) within the limit.
    pub waited_s: f64,
    pub settled: bool,
}

fn counts(conn: &mut PgConnection, tenant: &str) -> Result<Counts, Fail> {
    Ok(diesel::sql_query(
        "SELECT (SELECT count(*) FROM runs WHERE tenant_id = $1::uuid AND status = 'running') AS running, \
                (SELECT count(*) FROM runs WHERE tenant_id = $1::uuid) AS runs, \
                (SELECT count(*) FROM usage_records WHERE tenant_id = $1::uuid) AS ledger",
    )
    .bind::<Text, _>(tenant)
    .get_result::<Counts>(conn)?)
}

/// Waits (at most `limit`) until the tenant has no run in progress and a ledger row for every
/// run row, the same counts twice a second apart, then reads every row. Connects as the
/// database's owner, which row-level security does not restrict.
pub async fn settle(url: String, tenant: String, limit: Duration) -> Result<Ledger, Fail> {
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let mut conn = PgConnection::establish(&url)?;
        let mut last = None;
        let mut settled = false;
        let mut now = counts(&mut conn, &tenant)?;
        while started.elapsed() < limit {
            now = counts(&mut conn, &tenant)?;
            let key = (now.running, now.runs, now.ledger);
            // Every run row has its ledger row (a server that writes no run rows for
            // OpenAI-compatible requests, `PAAS_RECORD_OPENAI_RUNS=false`, has more ledger rows).
            if now.running == 0 && now.ledger >= now.runs && last == Some(key) {
                settled = true;
                break;
            }
            last = Some(key);
            std::thread::sleep(Duration::from_secs(1));
        }
        let rows = diesel::sql_query(
            "SELECT run_id::text AS run_id, status::text AS status, prompt_tokens, completion_tokens, \
                    usage_estimated, started_at, finished_at \
               FROM usage_records WHERE tenant_id = $1::uuid",
        )
        .bind::<Text, _>(&tenant)
        .load::<Row>(&mut conn)?;
        let entries = rows
            .into_iter()
            .map(|r| {
                let usage = Usage {
                    prompt: u64::try_from(r.prompt_tokens).unwrap_or(0),
                    completion: u64::try_from(r.completion_tokens).unwrap_or(0),
                };
                (
                    r.run_id,
                    Entry {
                        status: r.status,
                        usage,
                        estimated: r.usage_estimated,
                        started_at: r.started_at,
                        finished_at: r.finished_at,
                    },
                )
            })
            .collect();
        Ok(Ledger {
            entries,
            runs: u64::try_from(now.runs).unwrap_or(0),
            running: u64::try_from(now.running).unwrap_or(0),
            waited_s: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            settled,
        })
    })
    .await?
}

/// Tokens of the runs in progress at `at` (started before, finished after).
pub fn in_progress_at(ledger: &Ledger, at: DateTime<Utc>) -> (u64, u64) {
    ledger
        .entries
        .values()
        .filter(|e| e.started_at < at && e.finished_at > at)
        .fold((0, 0), |(runs, tokens), e| {
            (runs + 1, tokens + e.usage.total())
        })
}

#[derive(Debug, Default, Clone, Copy)]
struct Sum {
    runs: u64,
    prompt: u64,
    completion: u64,
}

impl Sum {
    fn add(&mut self, usage: Usage) {
        self.runs += 1;
        self.prompt += usage.prompt;
        self.completion += usage.completion;
    }

    fn json(self) -> Value {
        json!({"runs": self.runs, "prompt_tokens": self.prompt,
               "completion_tokens": self.completion, "total_tokens": self.prompt + self.completion})
    }
}

/// The comparison. *Reported* is the usage the clients were told at the end of the runs they saw
/// finish; the ledger must hold exactly that for those runs, run by run. Runs the clients saw
/// start but not finish (a cut stream, an error) are billed too but told to no one: their ledger
/// rows are counted apart. A ledger row for a run no client saw start (a refused request that was
/// billed anyway) is an error, and so is a finished run without a row.
pub fn compare(seen: &[RunSeen], ledger: &Ledger) -> (Value, bool) {
    let mut reported = Sum::default();
    let mut ledger_finished = Sum::default();
    let mut unfinished = Sum::default();
    let mut unfinished_missing = 0u64;
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    let mut by_kind: HashMap<&str, (Sum, Sum)> = HashMap::new();
    let mut known = std::collections::HashSet::new();
    for run in seen {
        known.insert(run.id.as_str());
        let entry = ledger.entries.get(&run.id);
        match (run.usage, entry) {
            (Some(told), Some(entry)) => {
                reported.add(told);
                ledger_finished.add(entry.usage);
                let kind = by_kind.entry(run.kind).or_default();
                kind.0.add(told);
                kind.1.add(entry.usage);
                if told != entry.usage {
                    mismatched.push(json!({"run_id": run.id, "kind": run.kind,
                        "told": {"prompt_tokens": told.prompt, "completion_tokens": told.completion},
                        "ledger": {"prompt_tokens": entry.usage.prompt, "completion_tokens": entry.usage.completion,
                                   "status": entry.status}}));
                }
            }
            (Some(told), None) => {
                reported.add(told);
                missing.push(json!({"run_id": run.id, "kind": run.kind,
                    "told": {"prompt_tokens": told.prompt, "completion_tokens": told.completion}}));
            }
            (None, Some(entry)) => unfinished.add(entry.usage),
            (None, None) => unfinished_missing += 1,
        }
    }
    let mut all = Sum::default();
    let mut unknown = Vec::new();
    let mut estimated = 0u64;
    for (id, entry) in &ledger.entries {
        all.add(entry.usage);
        estimated += u64::from(entry.estimated);
        if !known.contains(id.as_str()) {
            unknown.push(json!({"run_id": id, "status": entry.status,
                "prompt_tokens": entry.usage.prompt, "completion_tokens": entry.usage.completion}));
        }
    }
    let equal = reported.prompt == ledger_finished.prompt
        && reported.completion == ledger_finished.completion
        && mismatched.is_empty()
        && missing.is_empty()
        && unknown.is_empty()
        && ledger.settled;
    let mut kinds: Vec<_> = by_kind.into_iter().collect();
    kinds.sort_by_key(|(kind, _)| *kind);
    let kinds: serde_json::Map<String, Value> = kinds
        .into_iter()
        .map(|(kind, (told, billed))| {
            (
                kind.to_owned(),
                json!({"reported": told.json(), "ledger": billed.json()}),
            )
        })
        .collect();
    let difference = (ledger_finished.prompt + ledger_finished.completion) as i128
        - (reported.prompt + reported.completion) as i128;
    let report = json!({
        "equal": equal,
        "reported": reported.json(),
        "ledger_same_runs": ledger_finished.json(),
        "difference_tokens": difference,
        "ledger_all": all.json(),
        "unfinished_runs": {"billed": unfinished.json(), "without_row": unfinished_missing},
        "finished_runs_missing_from_ledger": missing.len(),
        "ledger_rows_for_runs_never_seen": unknown.len(),
        "runs_with_other_usage": mismatched.len(),
        "estimated_rows": estimated,
        "runs_table": {"runs": ledger.runs, "still_running": ledger.running},
        "settled": ledger.settled,
        "waited_s": ledger.waited_s,
        "by_kind": kinds,
        "examples": {
            "missing": missing.iter().take(5).collect::<Vec<_>>(),
            "never_seen": unknown.iter().take(5).collect::<Vec<_>>(),
            "other_usage": mismatched.iter().take(5).collect::<Vec<_>>(),
        },
    });
    (report, equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(prompt: u64, completion: u64) -> Entry {
        Entry {
            status: "completed".to_owned(),
            usage: Usage { prompt, completion },
            estimated: false,
            started_at: Utc::now(),
            finished_at: Utc::now(),
        }
    }

    fn seen(id: &str, usage: Option<(u64, u64)>) -> RunSeen {
        RunSeen {
            id: id.to_owned(),
            kind: "completion",
            usage: usage.map(|(prompt, completion)| Usage { prompt, completion }),
        }
    }

    fn ledger(entries: &[(&str, Entry)]) -> Ledger {
        Ledger {
            entries: entries
                .iter()
                .map(|(id, e)| ((*id).to_owned(), e.clone()))
                .collect(),
            runs: entries.len() as u64,
            running: 0,
            waited_s: 0.0,
            settled: true,
        }
    }

    #[test]
    fn finished_runs_must_match_run_by_run() {
        let book = ledger(&[
            ("a", entry(10, 20)),
            ("b", entry(5, 20)),
            ("c", entry(7, 3)),
        ]);
        // `c` was seen starting but not finishing: billed, told to no one, not a mismatch.
        let (report, equal) = compare(
            &[
                seen("a", Some((10, 20))),
                seen("b", Some((5, 20))),
                seen("c", None),
            ],
            &book,
        );
        assert!(equal, "{report}");
        assert_eq!(report["reported"]["total_tokens"], 55);
        assert_eq!(report["ledger_all"]["total_tokens"], 65);
        assert_eq!(report["unfinished_runs"]["billed"]["total_tokens"], 10);

        let (report, equal) = compare(
            &[seen("a", Some((10, 21))), seen("b", Some((5, 20)))],
            &book,
        );
        assert!(!equal);
        assert_eq!(report["runs_with_other_usage"], 1);
        assert_eq!(report["ledger_rows_for_runs_never_seen"], 1);

        let (report, equal) = compare(&[seen("d", Some((1, 1)))], &ledger(&[]));
        assert!(!equal);
        assert_eq!(report["finished_runs_missing_from_ledger"], 1);
    }
}
