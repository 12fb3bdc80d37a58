//! PostgreSQL stopped and restarted under load, against a private PostgreSQL server: requests
//! get 503 with `Retry-After` (never a 500, never a hang), nothing is half written, the usage
//! ledger loses nothing, `/readyz` tells, and the pool recovers by itself.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{PrivatePostgres, TestApp, expect_status, parse_sse};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// What one request of the load got.
#[derive(Debug, Clone)]
struct Outcome {
    kind: &'static str,
    status: u16,
    code: Option<String>,
    retry_after: bool,
    /// Tokens the answer reported (chats that answered).
    tokens: i64,
    /// The agent a create asked for.
    agent: Option<String>,
    at: Instant,
    detail: String,
}

/// How long any one request may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(20);

async fn start(pg: &PrivatePostgres) -> (TestApp, String, String) {
    let app = TestApp::builder()
        .env("DATABASE_URL", &pg.url())
        .env("PAAS_DB_ACQUIRE_TIMEOUT_MS", "1000")
        .env("PAAS_DB_MAX_CONNECTIONS", "6")
        .env("PAAS_MOCK_CHUNK_DELAY_MS", "5")
        .start()
        .await;
    let acme = app.signup("acme").await;
    app.set_quota(
        &acme.id,
        json!({
            "max_agents": 100_000, "max_sessions_per_day": 100_000,
            "max_concurrent_runs": 1_000, "requests_per_minute": 1_000_000,
            "key_requests_per_minute": 1_000_000,
        }),
    )
    .await;
    app.agent(&acme.admin, json!({"name": "helper"})).await;
    let (_, key) = app.with_api_key(&acme.admin, &["admin"]).await;
    (app, acme.admin.access_token, key)
}

/// One request of `kind`, the `n`th of its worker.
async fn one(app: &TestApp, token: &str, key: &str, kind: &'static str, n: usize) -> Outcome {
    let mut agent = None;
    let request = match kind {
        "openai" => app
            .request(Method::POST, "/v1/chat/completions")
            .bearer_auth(key)
            .json(&json!({"model": "helper", "messages": [{"role": "user", "content": "hi"}]})),
        "chat" => app.post(
            "/api/v1/chat/completions",
            token,
            json!({"agent": "helper", "message": format!("hello {n}")}),
        ),
        "create" => {
            let name = format!("agent-{}", uuid::Uuid::new_v4().simple());
            agent = Some(name.clone());
            app.post("/api/v1/agents", token, json!({"name": name}))
        }
        _ => app.get("/api/v1/agents", token),
    };
    let sent = tokio::time::timeout(HANG, async {
        let response = request.send().await?;
        let status = response.status();
        let retry_after = response.headers().contains_key("retry-after");
        let text = response.text().await?;
        Ok::<_, reqwest::Error>((status, retry_after, text))
    })
    .await;
    let (status, retry_after, text) = match sent {
        Ok(Ok(sent)) => sent,
        Ok(Err(err)) => (StatusCode::IM_A_TEAPOT, false, format!("transport: {err}")),
        Err(_) => (StatusCode::REQUEST_TIMEOUT, false, "hung".to_owned()),
    };
    let mut outcome = Outcome {
        kind,
        status: status.as_u16(),
        code: None,
        retry_after,
        tokens: 0,
        agent,
        at: Instant::now(),
        detail: text.chars().take(300).collect(),
    };
    if let Ok(body) = serde_json::from_str::<Value>(&text) {
        outcome.code = body["error"]["code"].as_str().map(str::to_owned);
        if kind == "openai" && status == StatusCode::OK {
            outcome.tokens = body["usage"]["total_tokens"].as_i64().unwrap();
        }
    }
    if kind == "chat" && status == StatusCode::OK {
        let events = parse_sse(&text);
        let last = events.last().map(|e| e.event.as_str());
        if last != Some("done") {
            // A stream that did not end properly is reported as its own failure.
            outcome.status = 599;
        }
        for event in &events {
            if event.event == "usage" {
                outcome.tokens += event.data["data"]["total_tokens"].as_i64().unwrap_or(0);
            }
            if event.event == "error" {
                outcome.code = event.data["data"]["code"].as_str().map(str::to_owned);
            }
        }
    }
    outcome
}

/// Runs `workers` loops of requests until `stop` is set.
fn load(
    app: &Arc<TestApp>,
    token: &str,
    key: &str,
    stop: &Arc<AtomicBool>,
    outcomes: &Arc<Mutex<Vec<Outcome>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let kinds = [
        "openai", "openai", "openai", "chat", "chat", "chat", "create", "list",
    ];
    kinds
        .iter()
        .map(|&kind| {
            let (app, token, key) = (Arc::clone(app), token.to_owned(), key.to_owned());
            let (stop, outcomes) = (Arc::clone(stop), Arc::clone(outcomes));
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let outcome = one(&app, &token, &key, kind, n).await;
                    let failed = outcome.status >= 500;
                    outcomes.lock().await.push(outcome);
                    n += 1;
                    if failed {
                        // A client backing off a little, as Retry-After asks.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect()
}

async fn readyz(app: &TestApp) -> StatusCode {
    app.request(Method::GET, "/readyz")
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_under_load_gets_503s_and_the_platform_recovers_by_itself() {
    let pg = PrivatePostgres::start();
    let (app, token, key) = start(&pg).await;
    let app = Arc::new(app);
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let workers = load(&app, &token, &key, &stop, &outcomes);

    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.stop();
    let down = Instant::now();
    // /readyz tells while it is down.
    let mut told = false;
    for _ in 0..50 {
        if readyz(&app).await == StatusCode::SERVICE_UNAVAILABLE {
            told = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(told, "/readyz kept answering 200 with the database down");
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(down.elapsed())).await;
    pg.resume();
    let up = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(readyz(&app).await, StatusCode::OK);

    let outcomes = outcomes.lock().await.clone();
    let mut tally = std::collections::BTreeMap::new();
    for o in &outcomes {
        *tally
            .entry((o.kind, o.status, o.code.clone().unwrap_or_default()))
            .or_insert(0) += 1;
    }
    eprintln!("outcomes: {tally:#?}");
    let bad: Vec<_> = outcomes
        .iter()
        .filter(|o| {
            !(o.status < 300
                || o.status == 503
                    && o.retry_after
                    && o.code.as_deref() == Some("database_unavailable"))
        })
        .map(|o| format!("{} {} {:?}: {}", o.kind, o.status, o.code, o.detail))
        .collect();
    assert!(bad.is_empty(), "answers other than 2xx or a 503: {bad:#?}");
    let refused = outcomes.iter().filter(|o| o.status == 503).count();
    assert!(refused > 0, "no request noticed the outage");
    for kind in ["openai", "chat", "create", "list"] {
        let served = outcomes
            .iter()
            .filter(|o| o.kind == kind && o.status < 300 && o.at > up)
            .count();
        assert!(served > 0, "no {kind} request was served after the restart");
    }
    // The pool recovers by itself: a second after the restart, every request is served.
    let late: Vec<_> = outcomes
        .iter()
        .filter(|o| o.at > up + Duration::from_secs(1) && o.status >= 300)
        .collect();
    assert!(late.is_empty(), "failures after recovery: {late:#?}");

    // Nothing half written: each agent exists exactly when its create answered 201.
    for outcome in outcomes.iter().filter(|o| o.kind == "create") {
        let name = outcome.agent.as_deref().unwrap();
        let rows = pg.count(&format!(
            "SELECT count(*) FROM agents WHERE name = '{name}'"
        ));
        assert_eq!(
            rows,
            i64::from(outcome.status == 201),
            "agent {name}: {outcome:?}"
        );
    }
    // Every answered chat is billed, once: the ledger equals what the answers reported.
    let answered: i64 = outcomes.iter().map(|o| o.tokens).sum();
    let mut billed = 0;
    for _ in 0..100 {
        billed = pg
            .count("SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM usage_records");
        if billed >= answered {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(billed, answered, "ledger vs the usage the answers reported");
    // No run is left running.
    assert_eq!(
        pg.count("SELECT count(*) FROM runs WHERE status = 'running'"),
        0
    );
}

#[tokio::test]
async fn after_a_restart_the_first_requests_are_served_by_fresh_connections() {
    let pg = PrivatePostgres::start();
    let (app, token, _) = start(&pg).await;
    // Fill the pool with connections, then restart the database under them.
    let lists = (0..6).map(|_| app.get("/api/v1/agents", &token).send());
    for response in futures_util::future::join_all(lists).await {
        expect_status(response.unwrap(), StatusCode::OK).await;
    }
    pg.stop();
    pg.resume();
    // Every pooled connection is dead; none of that reaches a client.
    let lists = (0..12).map(|_| app.get("/api/v1/agents", &token).send());
    for response in futures_util::future::join_all(lists).await {
        expect_status(response.unwrap(), StatusCode::OK).await;
    }
    expect_status(
        app.post("/api/v1/agents", &token, json!({"name": "after"}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
}

#[tokio::test]
async fn a_run_that_outlasts_the_outage_window_ends_its_stream_and_is_billed_once() {
    let pg = PrivatePostgres::start();
    let app = TestApp::builder()
        .env("DATABASE_URL", &pg.url())
        .env("PAAS_DB_ACQUIRE_TIMEOUT_MS", "500")
        .env("PAAS_MOCK_CHUNK_DELAY_MS", "50")
        .env("PAAS_RUN_LEASE_SECS", "3")
        .start()
        .await;
    // What `serve` does at start.
    app.state.runs.spawn_orphan_sweep();
    let admin = app.signup("acme").await.admin;
    app.agent(&admin, json!({"name": "helper"})).await;
    let (response, run) = app
        .start_chat(
            &admin.access_token,
            json!({"agent": "helper", "message": "a long answer"}),
        )
        .await;
    let reading = tokio::spawn(tokio::time::timeout(
        Duration::from_secs(60),
        response.text(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The database goes away mid-answer and stays away longer than the run retries its store.
    pg.stop();
    let text = reading.await.unwrap().expect("the stream hung").unwrap();
    let events = parse_sse(&text);
    let done = events.last().unwrap();
    assert_eq!(done.event, "done", "{text}");
    assert_eq!(done.data["data"]["stored"], false, "{text}");
    let usage = events.iter().find(|e| e.event == "usage").unwrap();
    let tokens = usage.data["data"]["total_tokens"].as_i64().unwrap();
    assert!(tokens > 0);

    pg.resume();
    // Once the database is back, the run whose outcome could not be written is swept as
    // interrupted (its lease ran out), and it is billed exactly once, for what it used.
    let mut status = 0;
    for _ in 0..200 {
        status = pg.count(&format!(
            "SELECT count(*) FROM runs WHERE id = '{run}' AND status = 'failed' \
             AND error_code = 'interrupted'"
        ));
        if status == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 1, "the run was not swept as interrupted");
    let mut billed = 0;
    for _ in 0..100 {
        billed = pg.count(&format!(
            "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM usage_records \
             WHERE run_id = '{run}'"
        ));
        if billed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(billed, tokens);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM usage_records WHERE run_id = '{run}'"
        )),
        1
    );
    // Nothing of the turn was half written: the question (stored with the run's start) is
    // there, and nothing of the answer.
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM messages WHERE run_id = '{run}' AND role = 'user'"
        )),
        1
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM messages WHERE run_id = '{run}' AND role <> 'user'"
        )),
        0
    );
}
