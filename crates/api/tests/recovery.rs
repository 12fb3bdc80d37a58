//! SIGKILL mid-run: the runs the dead process owned are marked `failed` (`interrupted`) within
//! seconds — by the same process restarted or by any other replica — their tokens are released,
//! what they are known to have used is billed once, and whoever follows their events is told.
//! A run that a live replica is still driving is never touched.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Binary, JWT_SECRET, MASTER_KEY, Sse, count_in as count, parse_sse};
use futures_util::StreamExt;
use paas_testing::TestDatabase;
use serde_json::{Value, json};

/// Short leases so a dead process's runs are recovered within seconds (renewed every second,
/// swept every 1.5 s).
const LEASE_SECS: &str = "3";

/// What replicas of one deployment share: database, Redis prefix, secrets.
struct Deployment {
    db: TestDatabase,
    prefix: String,
}

impl Deployment {
    fn new() -> Self {
        Self {
            db: TestDatabase::new(),
            prefix: paas_testing::redis_prefix(),
        }
    }

    async fn replica(&self) -> Binary {
        Binary::start(
            &self.db,
            &[
                ("PAAS_REDIS_PREFIX", &self.prefix),
                ("PAAS_JWT_SECRET", JWT_SECRET),
                ("PAAS_MASTER_KEY", MASTER_KEY),
                ("PAAS_RUN_LEASE_SECS", LEASE_SECS),
            ],
        )
        .await
    }

    fn count(&self, query: &str) -> i64 {
        count(&self.db, query)
    }

    fn run_status(&self, run: &str) -> (String, Option<String>) {
        let status = ["running", "completed", "failed", "cancelled", "limited"]
            .into_iter()
            .find(|s| {
                self.count(&format!(
                    "SELECT count(*) FROM runs WHERE id = '{run}' AND status = '{s}'"
                )) == 1
            })
            .unwrap()
            .to_owned();
        let interrupted = self.count(&format!(
            "SELECT count(*) FROM runs WHERE id = '{run}' AND error_code = 'interrupted'"
        )) == 1;
        (status, interrupted.then(|| "interrupted".to_owned()))
    }

    /// The interrupted run's tokens are back and its run slot free; what it is known to have
    /// used is counted in the month, and in one `failed` ledger row.
    async fn assert_released_and_billed_once(
        &self,
        server: &Binary,
        token: &str,
        run: &str,
        tokens: i64,
    ) {
        let quota = get_json(server, token, "/api/v1/tenant/quota").await;
        assert_eq!(
            quota["usage"]["tokens_this_month"]["reserved"], 0,
            "{quota}"
        );
        assert_eq!(
            quota["usage"]["tokens_this_month"]["used"], tokens,
            "{quota}"
        );
        assert_eq!(quota["usage"]["runs_in_progress"]["used"], 0, "{quota}");
        assert_eq!(
            self.count(&format!(
                "SELECT count(*) FROM usage_records WHERE run_id = '{run}' AND status = 'failed' \
                 AND prompt_tokens + completion_tokens = {tokens}"
            )),
            1
        );
    }

    /// A replica with a tenant signed up (its admin's token) and an agent `helper` that has
    /// the calculator.
    async fn replica_with_agent(&self) -> (Binary, String) {
        let replica = self.replica().await;
        let token = replica.signup("acme").await;
        let created = client()
            .post(format!("{}/api/v1/agents", replica.base))
            .bearer_auth(&token)
            .json(&json!({"name": "helper", "tools": ["calculator"]}))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "{}", created.status());
        (replica, token)
    }

    /// Waits (at most `limit`) until `query` counts a row, failing with `what` otherwise.
    async fn wait_for_row(&self, query: &str, limit: Duration, what: &str) {
        let deadline = Instant::now() + limit;
        while self.count(query) == 0 {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most `limit`) until the run is no longer `running`.
    async fn ended(&self, run: &str, limit: Duration) -> (String, Option<String>) {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.run_status(run);
            if status.0 != "running" || Instant::now() > deadline {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// An SSE response read incrementally.
struct Events {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    seen: Vec<Sse>,
}

impl Events {
    fn new(response: reqwest::Response) -> Self {
        assert!(response.status().is_success(), "{}", response.status());
        Self {
            stream: response.bytes_stream().boxed(),
            buffer: String::new(),
            seen: Vec::new(),
        }
    }

    /// Reads until an event matches `until` (returned true) or the stream ends (false).
    async fn read_until(&mut self, limit: Duration, until: impl Fn(&Sse) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("no matching event in time; got {:?}", self.seen));
            match chunk {
                Some(Ok(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Some(Err(_)) | None => return false,
            }
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                for event in parse_sse(&block) {
                    let hit = until(&event);
                    self.seen.push(event);
                    if hit {
                        return true;
                    }
                }
            }
        }
    }

    /// Reads to the end of the stream (at most `limit`).
    async fn read_to_end(mut self, limit: Duration) -> Vec<Sse> {
        self.read_until(limit, |_| false).await;
        self.seen
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn start_chat(server: &Binary, token: &str, message: &str) -> (Events, String) {
    let response = client()
        .post(format!("{}/api/v1/chat/completions", server.base))
        .bearer_auth(token)
        .json(&json!({"agent": "helper", "message": message}))
        .send()
        .await
        .unwrap();
    let run = response.headers()["x-run-id"].to_str().unwrap().to_owned();
    (Events::new(response), run)
}

async fn get_json(server: &Binary, token: &str, path: &str) -> Value {
    let response = client()
        .get(format!("{}{path}", server.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

async fn follow(server: &Binary, token: &str, run: &str, after: u64) -> Events {
    let response = client()
        .get(format!("{}/api/v1/runs/{run}/events", server.base))
        .bearer_auth(token)
        .header("Last-Event-ID", after.to_string())
        .send()
        .await
        .unwrap();
    Events::new(response)
}

fn assert_told_interrupted(events: &[Sse]) {
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert!(names.len() >= 2, "{events:?}");
    assert_eq!(&names[names.len() - 2..], ["error", "done"], "{events:?}");
    let error = &events[events.len() - 2];
    assert_eq!(error.data["data"]["code"], "interrupted");
    let done = events.last().unwrap();
    assert_eq!(done.data["data"]["status"], "failed");
    let ids: Vec<u64> = events.iter().map(|e| e.id.unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "ids follow on: {ids:?}"
    );
}

#[tokio::test]
async fn a_run_killed_mid_way_is_failed_released_and_billed_when_the_process_restarts() {
    let deployment = Deployment::new();
    let (mut first, token) = deployment.replica_with_agent().await;
    // Two model calls of about 3 and 6 s (a calculator call, then the answer).
    let (mut events, run) = start_chat(&first, &token, "[mock:delay_ms=400] what is 6 * 7?").await;
    // The first call is done and its usage counted: the next lease renewal records it.
    assert!(
        events
            .read_until(Duration::from_secs(10), |e| e.event == "usage")
            .await
    );
    let known = format!("SELECT count(*) FROM runs WHERE id = '{run}' AND prompt_tokens > 0");
    deployment
        .wait_for_row(
            &known,
            Duration::from_secs(5),
            "the lease renewal records usage so far",
        )
        .await;
    let tokens = deployment.count(&format!(
        "SELECT prompt_tokens + completion_tokens FROM runs WHERE id = '{run}'"
    ));
    assert!(tokens > 0);
    let quota = get_json(&first, &token, "/api/v1/tenant/quota").await;
    assert!(
        quota["usage"]["tokens_this_month"]["reserved"]
            .as_i64()
            .unwrap()
            > 0
    );
    assert_eq!(quota["usage"]["runs_in_progress"]["used"], 1);
    let seen = events.seen.last().unwrap().id.unwrap();

    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    let killed = Instant::now();
    assert_eq!(
        deployment.run_status(&run).0,
        "running",
        "nothing was stored"
    );

    let second = deployment.replica().await;
    // A client resuming on the restarted process (before or after the sweep) is told, not left
    // waiting.
    let resumed = follow(&second, &token, &run, seen).await;
    let status = deployment.ended(&run, Duration::from_secs(15)).await;
    assert_eq!(
        status,
        ("failed".to_owned(), Some("interrupted".to_owned()))
    );
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "recovered within seconds, took {:?}",
        killed.elapsed()
    );
    let resumed = resumed.read_to_end(Duration::from_secs(10)).await;
    assert_told_interrupted(&resumed);
    assert_eq!(resumed[0].id, Some(seen + 1), "resumed after Last-Event-ID");
    // Following it from the start later gets the whole story, and the end.
    let replay = follow(&second, &token, &run, 0)
        .await
        .read_to_end(Duration::from_secs(10))
        .await;
    assert_told_interrupted(&replay);
    assert!(replay.iter().any(|e| e.event == "tool_result"));
    assert_eq!(
        replay.last().unwrap().data["data"]["usage"]["total_tokens"],
        tokens
    );

    // The tokens it held are back; what it is known to have used is counted, once.
    deployment
        .assert_released_and_billed_once(&second, &token, &run, tokens)
        .await;
    assert_eq!(deployment.count("SELECT count(*) FROM usage_records"), 1);
}

#[tokio::test]
async fn an_openai_compatible_run_killed_mid_way_is_recovered_from_its_row_written_behind() {
    let deployment = Deployment::new();
    let (mut first, token) = deployment.replica_with_agent().await;
    let key = first.api_key(&token, &["chat"]).await;
    let response = client()
        .post(format!("{}/v1/chat/completions", first.base))
        .bearer_auth(&key)
        .json(&json!({"model": "helper", "stream": true, "messages": [
            {"role": "user", "content": "[mock:delay_ms=400] what is 6 * 7?"}
        ]}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let run = response.headers()["x-run-id"].to_str().unwrap().to_owned();
    // Its row is written behind it, as `running` once it outlasts the write-behind's linger;
    // then its lease renewals record its usage so far.
    let known = format!(
        "SELECT count(*) FROM runs WHERE id = '{run}' AND status = 'running' \
         AND source = 'openai' AND prompt_tokens > 0"
    );
    deployment
        .wait_for_row(
            &known,
            Duration::from_secs(15),
            "the run's row is written and its lease renewed",
        )
        .await;
    let tokens = deployment.count(&format!(
        "SELECT prompt_tokens + completion_tokens FROM runs WHERE id = '{run}'"
    ));

    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    drop(response);

    let second = deployment.replica().await;
    let status = deployment.ended(&run, Duration::from_secs(15)).await;
    assert_eq!(
        status,
        ("failed".to_owned(), Some("interrupted".to_owned()))
    );
    // Its tokens are released; what it is known to have used is billed, once.
    deployment
        .assert_released_and_billed_once(&second, &token, &run, tokens)
        .await;
}

#[tokio::test]
async fn a_live_replicas_runs_survive_the_sweeps_of_others() {
    let deployment = Deployment::new();
    let live = deployment.replica().await;
    let mut doomed = deployment.replica().await;
    let token = live.signup("acme").await;
    client()
        .post(format!("{}/api/v1/agents", live.base))
        .bearer_auth(&token)
        .json(&json!({"name": "helper"}))
        .send()
        .await
        .unwrap();
    // About 12 s each: four leases long.
    let message = "[mock:delay_ms=200] [mock:chunks=60] go";
    let (mut kept, kept_run) = start_chat(&live, &token, message).await;
    let (mut lost, lost_run) = start_chat(&doomed, &token, message).await;
    assert!(
        kept.read_until(Duration::from_secs(5), |e| e.event == "message")
            .await
    );
    assert!(
        lost.read_until(Duration::from_secs(5), |e| e.event == "message")
            .await
    );
    let started = Instant::now();

    doomed.child.kill().unwrap(); // SIGKILL
    doomed.child.wait().unwrap();
    drop(lost);
    // Its replacement sweeps at start-up and every 1.5 s, as does the live replica.
    let restarted = deployment.replica().await;
    let status = deployment.ended(&lost_run, Duration::from_secs(15)).await;
    assert_eq!(
        status,
        ("failed".to_owned(), Some("interrupted".to_owned()))
    );
    assert_eq!(
        deployment.run_status(&kept_run).0,
        "running",
        "the live replica's run is left alone"
    );

    // It runs to its end, outliving several leases and sweeps, and is stored and billed as
    // usual.
    let kept = kept.read_to_end(Duration::from_secs(30)).await;
    assert!(
        started.elapsed() > Duration::from_secs(6),
        "it outlived two leases"
    );
    let done = kept.last().unwrap();
    assert_eq!(done.event, "done");
    assert_eq!(done.data["data"]["status"], "completed");
    assert_eq!(
        deployment.run_status(&kept_run),
        ("completed".to_owned(), None)
    );
    assert!(
        kept.iter().all(|e| e.event != "error"),
        "no interruption: {kept:?}"
    );
    let billed = |run: &str, status: &str| {
        deployment.count(&format!(
            "SELECT count(*) FROM usage_records WHERE run_id = '{run}' AND status = '{status}'"
        ))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while billed(&kept_run, "completed") == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(billed(&kept_run, "completed"), 1);
    assert_eq!(billed(&lost_run, "failed"), 1);
    let quota = get_json(&restarted, &token, "/api/v1/tenant/quota").await;
    assert_eq!(
        quota["usage"]["tokens_this_month"]["reserved"], 0,
        "{quota}"
    );
    assert_eq!(quota["usage"]["runs_in_progress"]["used"], 0, "{quota}");
    assert_eq!(
        quota["usage"]["tokens_this_month"]["used"],
        deployment.count("SELECT sum(prompt_tokens + completion_tokens) FROM usage_records"),
        "{quota}"
    );
}
