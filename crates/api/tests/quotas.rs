//! Plans, quotas, rate limits and metering over HTTP, against real PostgreSQL and Redis:
//! concurrency, replicas, disconnects, rollovers, the operator API and CLI, and isolation.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    OPERATOR_TOKEN, PASSWORD, PrivateRedis, TestApp, expect_error, expect_status, free_port,
    parse_sse,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// An OpenAI-compatible, non-streaming chat.
async fn openai(
    app: &TestApp,
    key: &str,
    model: &str,
    content: &str,
    max_tokens: u32,
) -> reqwest::Response {
    app.request(Method::POST, "/v1/chat/completions")
        .bearer_auth(key)
        .json(&json!({
            "model": model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
        }))
        .send()
        .await
        .unwrap()
}

fn total(usage: &Value) -> i64 {
    usage["total_tokens"].as_i64().unwrap()
}

#[tokio::test]
async fn the_quota_shows_plan_limits_usage_and_resets_for_the_callers_tenant_only() {
    let app = TestApp::new().await;
    let acme = app.signup("acme").await;
    let other = app.signup("other").await;
    app.agent(&acme.admin, json!({"name": "helper"})).await;
    app.chat(
        &acme.admin.access_token,
        json!({"agent": "helper", "message": "hello"}),
    )
    .await;
    app.ledger_rows(1).await;

    let quota = app.quota(&acme.admin).await;
    assert_eq!(quota["plan"], "free");
    assert_eq!(quota["limits"]["max_users"], 5);
    assert_eq!(quota["limits"]["max_tokens_per_month"], 1_000_000);
    assert_eq!(quota["overrides"]["max_users"], Value::Null);
    let usage = &quota["usage"];
    assert_eq!(usage["users"], json!({"used": 1, "limit": 5}));
    assert_eq!(usage["agents"], json!({"used": 1, "limit": 10}));
    assert_eq!(usage["sessions_today"]["used"], 1);
    assert!(
        usage["sessions_today"]["resets_at"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00Z")
    );
    let tokens = &usage["tokens_this_month"];
    let used = tokens["used"].as_i64().unwrap();
    assert!(used > 0);
    assert_eq!(tokens["reserved"], 0);
    assert_eq!(tokens["remaining"].as_i64().unwrap(), 1_000_000 - used);
    assert_eq!(
        used,
        app.count("SELECT sum(prompt_tokens + completion_tokens) FROM usage_records"),
        "the live counter equals the ledger"
    );
    assert_eq!(usage["runs_in_progress"]["used"], 0);

    // Another tenant sees its own, empty, usage.
    let theirs = app.quota(&other.admin).await;
    assert_eq!(theirs["tenant_id"], other.id);
    assert_eq!(theirs["usage"]["tokens_this_month"]["used"], 0);
    assert_eq!(theirs["usage"]["agents"]["used"], 0);
}

#[tokio::test]
async fn fifty_concurrent_chats_never_spend_past_the_quota_and_the_ledger_matches_usage() {
    let app = TestApp::new().await;
    let acme = app.signup("acme").await;
    app.set_quota(
        &acme.id,
        json!({"max_tokens_per_month": 1000, "max_concurrent_runs": 100,
               "requests_per_minute": 100000, "key_requests_per_minute": 100000}),
    )
    .await;
    app.agent(&acme.admin, json!({"name": "helper", "max_tokens": 500}))
        .await;
    let (_, key) = app.with_api_key(&acme.admin, &["chat"]).await;
    let chats = (0..50).map(|_| {
        let (app, key) = (&app, key.clone());
        async move {
            let response = openai(app, &key, "helper", "hello there", 500).await;
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    });
    let results = futures_util::future::join_all(chats).await;
    let mut billed = 0;
    let mut served = 0;
    for (status, body) in &results {
        match *status {
            StatusCode::OK => {
                served += 1;
                billed += total(&body["usage"]);
            }
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(body["error"]["code"], "token_quota_exceeded", "{body}");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("max_tokens_per_month = 1000")
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(served >= 1, "at least one chat fits");
    app.ledger_rows(served).await;
    let ledger = app.count("SELECT sum(prompt_tokens + completion_tokens) FROM usage_records");
    assert_eq!(
        ledger, billed,
        "the ledger equals the usage the provider reported"
    );
    assert!(ledger <= 1000, "committed {ledger} of a 1,000-token quota");
    let quota = app.quota(&acme.admin).await;
    assert_eq!(quota["usage"]["tokens_this_month"]["used"], ledger);
    assert_eq!(quota["usage"]["tokens_this_month"]["reserved"], 0);
}

#[tokio::test]
async fn two_replicas_share_one_rate_limit_and_one_token_budget() {
    let first = TestApp::new().await;
    let second = TestApp::builder().replica_of(&first).start().await;
    let acme = first.signup("acme").await;
    first
        .set_quota(&acme.id, json!({"requests_per_minute": 10}))
        .await;
    let mut statuses = Vec::new();
    for i in 0..12 {
        let app = if i % 2 == 0 { &first } else { &second };
        let response = app
            .get("/api/v1/me", &acme.admin.access_token)
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=7).contains(&retry), "one request frees every 6 s");
            assert_eq!(response.headers()["ratelimit-remaining"], "0");
            assert_eq!(response.headers()["ratelimit-limit"], "10");
            let body = expect_error(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("10 requests per minute")
            );
        } else {
            assert_eq!(response.headers()["ratelimit-limit"], "10");
        }
    }
    let allowed = statuses.iter().filter(|s| s.is_success()).count();
    assert_eq!(allowed, 10, "one limit across both replicas: {statuses:?}");

    // The month's tokens are shared too: spend on one replica, see it on the other (another
    // tenant, since this one has used its requests for a while).
    let beta = first.signup("beta").await;
    first.agent(&beta.admin, json!({"name": "helper"})).await;
    first
        .chat(
            &beta.admin.access_token,
            json!({"agent": "helper", "message": "hi"}),
        )
        .await;
    let seen_by_second = second.quota(&beta.admin).await;
    let seen_by_first = first.quota(&beta.admin).await;
    assert!(
        seen_by_second["usage"]["tokens_this_month"]["used"]
            .as_i64()
            .unwrap()
            > 0
    );
    assert_eq!(
        seen_by_first["usage"]["tokens_this_month"],
        seen_by_second["usage"]["tokens_this_month"]
    );
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_is_still_billed() {
    let app = TestApp::new().await;
    let acme = app.signup("acme").await;
    app.agent(&acme.admin, json!({"name": "helper"})).await;
    let (response, run_id) = app
        .start_chat(
            &acme.admin.access_token,
            json!({"agent": "helper", "message": "[mock:delay_ms=30] [mock:chunks=20] go"}),
        )
        .await;
    drop(response);
    let run = app.finished_run(&acme.admin.access_token, &run_id).await;
    assert_eq!(run["status"], "completed");
    app.ledger_rows(1).await;
    let billed = app.count(&format!(
        "SELECT prompt_tokens + completion_tokens FROM usage_records WHERE run_id = '{run_id}'"
    ));
    let run_tokens = run["usage"]["prompt_tokens"].as_i64().unwrap()
        + run["usage"]["completion_tokens"].as_i64().unwrap();
    assert_eq!(billed, run_tokens);
    assert!(billed > 20);
    let quota = app.quota(&acme.admin).await;
    assert_eq!(quota["usage"]["tokens_this_month"]["used"], billed);
    assert_eq!(quota["usage"]["tokens_this_month"]["reserved"], 0);
}

#[tokio::test]
async fn count_limits_hold_when_creates_race() {
    let app = TestApp::new().await;
    let acme = app.signup("acme").await;
    app.set_quota(&acme.id, json!({"max_agents": 3, "max_users": 2}))
        .await;
    let creates = (0..8).map(|i| {
        let app = &app;
        let token = acme.admin.access_token.clone();
        async move {
            app.post(
                "/api/v1/agents",
                &token,
                json!({"name": format!("agent-{i}")}),
            )
            .send()
            .await
            .unwrap()
        }
    });
    let responses = futures_util::future::join_all(creates).await;
    let mut created = 0;
    for response in responses {
        if response.status() == StatusCode::CREATED {
            created += 1;
        } else {
            let body = expect_error(response, StatusCode::FORBIDDEN, "plan_limit_reached").await;
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("3 agents") && message.contains("max_agents"),
                "{message}"
            );
        }
    }
    assert_eq!(created, 3);
    assert_eq!(app.count("SELECT count(*) FROM agents"), 3);

    let invites = (0..4).map(|i| {
        let app = &app;
        let token = acme.admin.access_token.clone();
        async move {
            app.post(
                "/api/v1/users",
                &token,
                json!({"email": format!("u{i}@acme.test"), "role": "user", "password": PASSWORD}),
            )
            .send()
            .await
            .unwrap()
            .status()
        }
    });
    let statuses = futures_util::future::join_all(invites).await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "the admin holds one of the two seats: {statuses:?}"
    );
    assert_eq!(app.count("SELECT count(*) FROM users"), 2);
}

#[tokio::test]
async fn sessions_per_day_and_tokens_per_month_roll_over_with_the_clock() {
    let clock = Arc::new(paas_core::FixedClock::new(chrono::Utc::now()));
    let app = TestApp::builder().clock(clock.clone()).start().await;
    let acme = app.signup("acme").await;
    app.agent(&acme.admin, json!({"name": "helper", "max_tokens": 60}))
        .await;
    app.set_quota(&acme.id, json!({"max_sessions_per_day": 1}))
        .await;
    let token = &acme.admin.access_token;
    let (headers, _) = app
        .chat(token, json!({"agent": "helper", "message": "first"}))
        .await;
    let session = headers["x-session-id"].to_str().unwrap().to_owned();
    // A new session is refused today; continuing the one there is is not.
    let refused = app
        .post(
            "/api/v1/chat/completions",
            token,
            json!({"agent": "helper", "message": "second"}),
        )
        .send()
        .await
        .unwrap();
    let body = expect_error(refused, StatusCode::FORBIDDEN, "plan_limit_reached").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_sessions_per_day")
    );
    // Creating one without a chat counts the same.
    let created = app
        .post("/api/v1/sessions", token, json!({"agent": "helper"}))
        .send()
        .await
        .unwrap();
    expect_error(created, StatusCode::FORBIDDEN, "plan_limit_reached").await;
    assert_eq!(app.count("SELECT count(*) FROM chat_sessions"), 1);
    app.chat(token, json!({"session_id": session, "message": "more"}))
        .await;
    assert_eq!(
        app.count("SELECT count(*) FROM runs"),
        2,
        "the refused chat left no run"
    );

    clock.advance(chrono::Duration::days(1));
    app.chat(token, json!({"agent": "helper", "message": "a new day"}))
        .await;

    // Spend the month, then cross into the next one.
    app.ledger_rows(3).await;
    let used = app.quota(&acme.admin).await["usage"]["tokens_this_month"]["used"]
        .as_i64()
        .unwrap();
    app.set_quota(
        &acme.id,
        json!({"max_sessions_per_day": 10, "max_tokens_per_month": used + 10}),
    )
    .await;
    let spent = app
        .post(
            "/api/v1/chat/completions",
            token,
            json!({"session_id": session, "message": "again"}),
        )
        .send()
        .await
        .unwrap();
    expect_error(spent, StatusCode::TOO_MANY_REQUESTS, "token_quota_exceeded").await;
    clock.advance(chrono::Duration::days(32));
    let quota = app.quota(&acme.admin).await;
    assert_eq!(
        quota["usage"]["tokens_this_month"]["used"], 0,
        "a new month"
    );
    app.chat(
        token,
        json!({"session_id": session, "message": "next month"}),
    )
    .await;
}

#[tokio::test]
async fn the_operator_api_needs_its_token_and_suspension_takes_effect_at_once() {
    let app = TestApp::new().await;
    let acme = app.signup("acme").await;
    let (_, key) = app.with_api_key(&acme.admin, &["agents:read"]).await;
    let path = format!("/api/v1/admin/tenants/{}", acme.id);

    let anonymous = app.request(Method::GET, &path).send().await.unwrap();
    expect_error(
        anonymous,
        StatusCode::UNAUTHORIZED,
        "invalid_operator_token",
    )
    .await;
    let tenant_admin = app
        .get(&path, &acme.admin.access_token)
        .send()
        .await
        .unwrap();
    expect_error(
        tenant_admin,
        StatusCode::UNAUTHORIZED,
        "invalid_operator_token",
    )
    .await;
    let wrong = app
        .request(Method::GET, &path)
        .bearer_auth(format!("{OPERATOR_TOKEN}x"))
        .send()
        .await
        .unwrap();
    expect_error(wrong, StatusCode::UNAUTHORIZED, "invalid_operator_token").await;

    let listed = expect_status(
        app.operator(Method::GET, "/api/v1/admin/tenants")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == acme.id)
    );

    let changed = expect_status(
        app.operator(Method::PATCH, &path)
            .json(&json!({"plan": "pro"}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(changed["tenant"]["plan"], "pro");
    assert_eq!(changed["quota"]["limits"]["max_users"], 50);
    let bad_plan = app
        .operator(Method::PATCH, &path)
        .json(&json!({"plan": "gold"}))
        .send()
        .await
        .unwrap();
    expect_error(bad_plan, StatusCode::BAD_REQUEST, "invalid_plan").await;
    let negative = app
        .operator(Method::PUT, &format!("{path}/quota"))
        .json(&json!({"max_agents": -1}))
        .send()
        .await
        .unwrap();
    expect_error(negative, StatusCode::BAD_REQUEST, "invalid_max_agents").await;
    let unknown = app
        .operator(
            Method::GET,
            &format!("/api/v1/admin/tenants/{}", uuid::Uuid::new_v4()),
        )
        .send()
        .await
        .unwrap();
    expect_error(unknown, StatusCode::NOT_FOUND, "not_found").await;

    expect_status(
        app.operator(Method::POST, &format!("{path}/suspend"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    for token in [&acme.admin.access_token, &key] {
        let refused = app.get("/api/v1/agents", token).send().await.unwrap();
        expect_error(refused, StatusCode::FORBIDDEN, "tenant_suspended").await;
    }
    let login = app.login("acme", &acme.admin.email, PASSWORD).await;
    expect_error(login, StatusCode::FORBIDDEN, "tenant_suspended").await;
    expect_status(
        app.operator(Method::POST, &format!("{path}/reactivate"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let back = app.get("/api/v1/agents", &key).send().await.unwrap();
    expect_status(back, StatusCode::OK).await;

    let actions = app.count(
        "SELECT count(*) FROM audit_events WHERE action IN \
         ('tenant.plan_changed', 'tenant.suspended', 'tenant.reactivated')",
    );
    assert_eq!(
        actions, 3,
        "the operator's changes are in the tenant's audit log"
    );

    let disabled = TestApp::builder()
        .replica_of(&app)
        .env("PAAS_OPERATOR_TOKEN", "")
        .start()
        .await;
    let off = disabled
        .operator(Method::GET, "/api/v1/admin/tenants")
        .send()
        .await
        .unwrap();
    expect_error(off, StatusCode::FORBIDDEN, "operator_api_disabled").await;
}

#[tokio::test]
async fn usage_reports_group_runs_and_show_each_caller_what_they_may_see() {
    let app = TestApp::new().await;
    let acme = app.signup("acme").await;
    let other = app.signup("other").await;
    app.agent(&acme.admin, json!({"name": "helper"})).await;
    let member = app.with_user(&acme.admin, "user").await;
    app.chat(
        &acme.admin.access_token,
        json!({"agent": "helper", "message": "from the admin"}),
    )
    .await;
    app.chat(
        &member.access_token,
        json!({"agent": "helper", "message": "from a member"}),
    )
    .await;
    let (_, key) = app.with_api_key(&member, &["chat", "usage:read"]).await;
    assert_eq!(
        openai(&app, &key, "helper", "via a key", 100)
            .await
            .status(),
        StatusCode::OK
    );
    app.ledger_rows(3).await;

    let report = |token: String, query: &'static str| {
        let app = &app;
        async move {
            expect_status(
                app.get(&format!("/api/v1/usage{query}"), &token)
                    .send()
                    .await
                    .unwrap(),
                StatusCode::OK,
            )
            .await
        }
    };
    let by_day = report(acme.admin.access_token.clone(), "").await;
    assert_eq!(by_day["scope"], "tenant");
    assert_eq!(by_day["group_by"], "day");
    assert_eq!(by_day["totals"]["runs"], 3);
    let ledger = app.count("SELECT sum(prompt_tokens + completion_tokens) FROM usage_records");
    assert_eq!(by_day["totals"]["total_tokens"], ledger);

    let by_user = report(acme.admin.access_token.clone(), "?group_by=user").await;
    let groups = by_user["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert!(
        groups
            .iter()
            .any(|g| g["label"] == member.email && g["runs"] == 2)
    );

    let by_agent = report(acme.admin.access_token.clone(), "?group_by=agent").await;
    assert_eq!(by_agent["groups"][0]["label"], "helper");
    let by_key = report(acme.admin.access_token.clone(), "?group_by=api_key").await;
    assert!(
        by_key["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["key"] == "none" && g["runs"] == 2)
    );
    let by_model = report(acme.admin.access_token.clone(), "?group_by=model").await;
    assert_eq!(by_model["groups"][0]["key"], "mock");

    // A member sees only their own runs, through a session or a usage:read key.
    let own = report(member.access_token.clone(), "?group_by=user").await;
    assert_eq!(own["scope"], "self");
    assert_eq!(own["totals"]["runs"], 2);
    let own_by_key = report(key.clone(), "").await;
    assert_eq!(own_by_key["totals"]["runs"], 2);
    // Another tenant sees none of it.
    let theirs = report(other.admin.access_token.clone(), "").await;
    assert_eq!(theirs["totals"]["runs"], 0);

    for (query, code) in [
        ("?group_by=tenant", "invalid_group_by"),
        ("?from=yesterday", "invalid_from"),
        ("?from=2026-11-02&to=2026-11-01", "invalid_from"),
        ("?from=2020-01-01&to=2026-01-01", "invalid_from"),
        ("?team=1", "invalid_query"),
    ] {
        let response = app
            .get(&format!("/api/v1/usage{query}"), &acme.admin.access_token)
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::BAD_REQUEST, code).await;
    }
}

/// Chats as `token` until Redis, back after an outage, admits the chat (10 s at most), and
/// checks the answer ended.
async fn chat_once_redis_is_back(app: &TestApp, token: &str) {
    for _ in 0..100 {
        let response = app
            .post(
                "/api/v1/chat/completions",
                token,
                json!({"agent": "helper", "message": "after"}),
            )
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::OK {
            let events = parse_sse(&response.text().await.unwrap());
            assert_eq!(events.last().unwrap().event, "done");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chats do not work again once Redis is back");
}

#[tokio::test]
async fn when_redis_stops_the_server_keeps_serving_and_recovers_when_it_returns() {
    let port = free_port();
    let mut redis = PrivateRedis::start(port);
    redis.wait_ready().await;
    let app = TestApp::builder()
        .env("REDIS_URL", &format!("redis://127.0.0.1:{port}"))
        .start()
        .await;
    let acme = app.signup("acme").await;
    app.agent(&acme.admin, json!({"name": "helper"})).await;
    let token = acme.admin.access_token.clone();
    app.chat(&token, json!({"agent": "helper", "message": "before"}))
        .await;
    app.ledger_rows(1).await;
    let before = app.quota(&acme.admin).await["usage"]["tokens_this_month"]["used"]
        .as_i64()
        .unwrap();

    redis.stop();
    // Reads and logins keep working (rate limits are per process now).
    let me = app.get("/api/v1/me", &token).send().await.unwrap();
    assert!(me.headers().contains_key("ratelimit-limit"));
    expect_status(me, StatusCode::OK).await;
    expect_status(
        app.login("acme", &acme.admin.email, PASSWORD).await,
        StatusCode::OK,
    )
    .await;
    // The quota shows the ledger while the counter is out of reach.
    let quota = app.quota(&acme.admin).await;
    assert_eq!(quota["usage"]["tokens_this_month"]["used"], before);
    // Token quotas fail closed: a clear 503, nothing started.
    let chat = app
        .post(
            "/api/v1/chat/completions",
            &token,
            json!({"agent": "helper", "message": "during"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(chat.headers()["retry-after"], "2");
    expect_error(chat, StatusCode::SERVICE_UNAVAILABLE, "quota_unavailable").await;
    assert_eq!(app.count("SELECT count(*) FROM runs"), 1);

    // Redis comes back empty (it keeps nothing on disk): the counter is rebuilt from the ledger.
    let mut redis = PrivateRedis::start(port);
    redis.wait_ready().await;
    chat_once_redis_is_back(&app, &token).await;
    app.ledger_rows(2).await;
    let quota = app.quota(&acme.admin).await;
    assert_eq!(
        quota["usage"]["tokens_this_month"]["used"],
        app.count("SELECT sum(prompt_tokens + completion_tokens) FROM usage_records"),
        "consistent with the ledger again"
    );
    redis.stop();
}

#[tokio::test]
async fn a_run_finishing_while_redis_is_away_is_counted_once_when_redis_comes_back_empty() {
    let port = free_port();
    let mut redis = PrivateRedis::start(port);
    redis.wait_ready().await;
    let app = TestApp::builder()
        .env("REDIS_URL", &format!("redis://127.0.0.1:{port}"))
        .env("PAAS_MOCK_CHUNK_DELAY_MS", "40")
        .start()
        .await;
    let acme = app.signup("acme").await;
    app.agent(&acme.admin, json!({"name": "helper"})).await;
    let token = acme.admin.access_token.clone();
    let (response, _) = app
        .start_chat(&token, json!({"agent": "helper", "message": "a long one"}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Redis dies mid-answer: the run finishes, its usage goes to the ledger, and settling its
    // tokens in Redis is retried in the background.
    redis.stop();
    let events = parse_sse(&response.text().await.unwrap());
    assert_eq!(events.last().unwrap().event, "done");
    app.ledger_rows(1).await;

    // Redis returns empty: the next admission rebuilds the month's counter from the ledger,
    // which holds the first run; the background retry must not count it a second time.
    let mut redis = PrivateRedis::start(port);
    redis.wait_ready().await;
    chat_once_redis_is_back(&app, &token).await;
    app.ledger_rows(2).await;
    // The background retry runs every 5 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let quota = app.quota(&acme.admin).await;
    assert_eq!(
        quota["usage"]["tokens_this_month"]["used"],
        app.count("SELECT sum(prompt_tokens + completion_tokens) FROM usage_records"),
        "the counter equals the ledger: the first run is counted once"
    );
    redis.stop();
}

#[tokio::test]
async fn done_when_a_small_monthly_quota_runs_out_in_both_apis_and_the_operator_raises_it() {
    let app = TestApp::new().await;
    let acme = app.signup("acme").await;
    app.agent(&acme.admin, json!({"name": "helper", "max_tokens": 200}))
        .await;
    let (_, key) = app.with_api_key(&acme.admin, &["chat", "usage:read"]).await;

    // The operator sets a small monthly budget with the CLI.
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_agent-paas"))
        .args([
            "tenant",
            "set-quota",
            "--tenant",
            "acme",
            "--max-tokens-per-month",
            "600",
        ])
        .env("DATABASE_URL", app.db.url())
        .env("REDIS_URL", "redis://127.0.0.1:6379")
        .env("PAAS_REDIS_PREFIX", &app.redis_prefix)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let shown: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(shown["quota"]["limits"]["max_tokens_per_month"], 600);

    // Chat until it runs out.
    let mut refused = None;
    for _ in 0..20 {
        let response = openai(&app, &key, "helper", "tell me something", 200).await;
        if response.status() != StatusCode::OK {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("the quota ran out");
    assert!(refused.headers().contains_key("retry-after"));
    let body = expect_error(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "token_quota_exceeded",
    )
    .await;
    assert_eq!(
        body["error"]["type"], "rate_limit_error",
        "OpenAI's error shape"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens_per_month = 600")
    );
    let dashboard = app
        .post(
            "/api/v1/chat/completions",
            &acme.admin.access_token,
            json!({"agent": "helper", "message": "and here?"}),
        )
        .send()
        .await
        .unwrap();
    let body = expect_error(
        dashboard,
        StatusCode::TOO_MANY_REQUESTS,
        "token_quota_exceeded",
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("raise it")
    );

    // The usage is in the report.
    let served = app.count("SELECT count(*) FROM runs");
    app.ledger_rows(served).await;
    let usage = expect_status(
        app.get("/api/v1/usage", &key).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(usage["totals"]["runs"], served);
    assert!(usage["totals"]["total_tokens"].as_i64().unwrap() <= 600);

    // The operator raises it; chatting works again.
    app.set_quota(&acme.id, json!({"max_tokens_per_month": 100000}))
        .await;
    let again = openai(&app, &key, "helper", "one more", 200).await;
    expect_status(again, StatusCode::OK).await;
}

#[tokio::test]
async fn chat_requests_that_fail_before_admission_still_count_against_the_rate_limit() {
    let app = TestApp::new().await;
    let acme = app.signup("acme").await;
    app.set_quota(&acme.id, json!({"requests_per_minute": 4}))
        .await;
    let (_, key) = app.with_api_key(&acme.admin, &["chat"]).await;
    let token = &acme.admin.access_token;
    // A bad body, an unknown agent, an unknown model: each answers its own error, and counts.
    let bad_body = app
        .post("/api/v1/chat/completions", token, json!({"message": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_body.headers()["ratelimit-remaining"], "2");
    assert_eq!(bad_body.status(), StatusCode::BAD_REQUEST);
    let unknown = app
        .post(
            "/api/v1/chat/completions",
            token,
            json!({"agent": "ghost", "message": "hi"}),
        )
        .send()
        .await
        .unwrap();
    expect_error(unknown, StatusCode::NOT_FOUND, "not_found").await;
    let unknown_model = openai(&app, &key, "ghost", "hi", 10).await;
    expect_error(unknown_model, StatusCode::NOT_FOUND, "model_not_found").await;
    let refused = openai(&app, &key, "ghost", "hi", 10).await;
    let body = expect_error(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(body["error"]["type"], "rate_limit_error");
}
