//! `Idempotency-Key` on the creating POSTs and both chat endpoints: a retry of the same request
//! gets the first response again and creates nothing more; the key on another request is a 422;
//! a retry while the first still runs is a 409; a streamed chat retry follows the same run; keys
//! belong to one user of one tenant; failures a retry may change are not kept; keys expire.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Session, TestApp, expect_error, expect_status, parse_sse, read_events};
use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

const KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";

/// A POST with `Idempotency-Key: key`.
async fn post_keyed(app: &TestApp, path: &str, token: &str, key: &str, body: &Value) -> Response {
    app.post(path, token, body.clone())
        .header(KEY, key)
        .send()
        .await
        .unwrap()
}

/// Status, headers and body text.
async fn read(response: Response) -> (StatusCode, HeaderMap, String) {
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn replayed(headers: &HeaderMap) -> bool {
    headers.get(REPLAYED).is_some_and(|v| v == "true")
}

async fn setup() -> (TestApp, Session) {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    app.agent(
        &admin,
        json!({"name": "helper", "tools": ["calculator"], "system_prompt": "Be brief."}),
    )
    .await;
    (app, admin)
}

#[tokio::test]
async fn a_retried_create_gets_the_first_response_and_creates_nothing_more() {
    let (app, admin) = setup().await;
    let token = &admin.access_token;
    // Without the header nothing changes, and the table is not touched.
    app.chat(token, json!({"agent": "helper", "message": "hi"}))
        .await;
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys"), 0);

    let cases = [
        (
            "/api/v1/agents",
            json!({"name": "writer", "system_prompt": "Write."}),
            "SELECT count(*) FROM agents",
        ),
        (
            "/api/v1/users",
            json!({"email": "new@acme.test", "role": "user"}),
            "SELECT count(*) FROM users",
        ),
        (
            "/api/v1/api-keys",
            json!({"name": "ci", "scopes": ["chat"]}),
            "SELECT count(*) FROM api_keys",
        ),
        (
            "/api/v1/providers",
            json!({"name": "p", "kind": "openai", "api_key": "sk-test-123456"}),
            "SELECT count(*) FROM providers",
        ),
        (
            "/api/v1/sessions",
            json!({"agent": "helper", "title": "Planning"}),
            "SELECT count(*) FROM chat_sessions",
        ),
    ];
    let mut secrets = Vec::new();
    for (i, (path, body, count)) in cases.iter().enumerate() {
        let before = app.count(count);
        let key = format!("create-{i}");
        let (status, headers, first) = read(post_keyed(&app, path, token, &key, body).await).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {first}");
        let created: Value = serde_json::from_str(&first).unwrap();
        for secret in [&created["key"], &created["temporary_password"]] {
            secrets.extend(secret.as_str().map(str::to_owned));
        }
        assert!(
            !replayed(&headers),
            "{path}: a first answer is not a replay"
        );
        for _ in 0..2 {
            let (again_status, again_headers, again) =
                read(post_keyed(&app, path, token, &key, body).await).await;
            assert_eq!(again_status, StatusCode::CREATED, "{path}");
            assert_eq!(again, first, "{path}: the same body, byte for byte");
            assert!(replayed(&again_headers), "{path}");
            assert_eq!(
                again_headers["content-type"], headers["content-type"],
                "{path}"
            );
        }
        assert_eq!(app.count(count), before + 1, "{path}: created once");
    }
    // The new user's temporary password and the new API key's secret come back on a replay
    // (to their creator only), but are not stored in the clear.
    assert_eq!(secrets.len(), 2);
    for secret in &secrets {
        let stored = app.count(&format!(
            "SELECT count(*) FROM idempotency_keys \
             WHERE position(convert_to('{secret}', 'UTF8') in response_body) > 0"
        ));
        assert_eq!(stored, 0, "kept bodies are encrypted");
    }
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys"), 5);
}

#[tokio::test]
async fn the_same_key_on_another_request_is_a_422_and_changes_nothing() {
    let (app, admin) = setup().await;
    let token = &admin.access_token;
    let first = post_keyed(
        &app,
        "/api/v1/agents",
        token,
        "k1",
        &json!({"name": "writer"}),
    )
    .await;
    let agent = expect_status(first, StatusCode::CREATED).await;
    let agents = app.count("SELECT count(*) FROM agents");

    let other_body = post_keyed(
        &app,
        "/api/v1/agents",
        token,
        "k1",
        &json!({"name": "reader"}),
    )
    .await;
    let body = expect_error(
        other_body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("POST /api/v1/agents")
    );
    let other_path = post_keyed(
        &app,
        "/api/v1/sessions",
        token,
        "k1",
        &json!({"agent": "helper"}),
    )
    .await;
    expect_error(
        other_path,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(app.count("SELECT count(*) FROM agents"), agents);
    assert_eq!(app.count("SELECT count(*) FROM chat_sessions"), 0);
    assert_eq!(
        app.count("SELECT count(*) FROM agents WHERE name = 'reader'"),
        0
    );

    // The first request still replays.
    let again = post_keyed(
        &app,
        "/api/v1/agents",
        token,
        "k1",
        &json!({"name": "writer"}),
    )
    .await;
    assert!(replayed(again.headers()));
    assert_eq!(expect_status(again, StatusCode::CREATED).await, agent);

    // The OpenAI-compatible API answers in OpenAI's shape.
    let (_, api_key) = app.with_api_key(&admin, &["chat"]).await;
    let completion = json!({"model": "helper", "messages": [{"role": "user", "content": "hi"}]});
    let done = post_keyed(&app, "/v1/chat/completions", &api_key, "k2", &completion).await;
    expect_status(done, StatusCode::OK).await;
    let reused = post_keyed(
        &app,
        "/v1/chat/completions",
        &api_key,
        "k2",
        &json!({"model": "helper", "messages": [{"role": "user", "content": "bye"}]}),
    )
    .await;
    let body = expect_status(reused, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    // The first request's run row is written behind its answer; the reused key adds none.
    app.runs_settled().await;
    assert_eq!(app.count("SELECT count(*) FROM runs"), 1);
}

#[tokio::test]
async fn a_duplicate_while_the_first_still_runs_is_a_409_and_only_one_runs() {
    let (app, admin) = setup().await;
    let (_, api_key) = app.with_api_key(&admin, &["chat"]).await;
    let body = json!({"model": "helper", "messages": [{"role": "user", "content": "[mock:delay_ms=20][mock:chunks=40]"}]});
    let first = {
        let (app, api_key, body) = (&app, api_key.clone(), body.clone());
        async move { read(post_keyed(app, "/v1/chat/completions", &api_key, "slow", &body).await).await }
    };
    let duplicate = async {
        // Once the first request's run has started…
        for _ in 0..200 {
            if app.count("SELECT count(*) FROM runs") == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        read(post_keyed(&app, "/v1/chat/completions", &api_key, "slow", &body).await).await
    };
    let ((status, _, first), (dup_status, dup_headers, dup)) =
        futures_util::join!(first, duplicate);
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(dup_status, StatusCode::CONFLICT, "{dup}");
    assert_eq!(dup_headers["retry-after"], "1");
    let dup: Value = serde_json::from_str(&dup).unwrap();
    assert_eq!(dup["error"]["code"], "idempotency_request_in_progress");
    assert_eq!(app.count("SELECT count(*) FROM runs"), 1, "one run");

    // Once it has finished, a retry gets its completion.
    let (again_status, again_headers, again) =
        read(post_keyed(&app, "/v1/chat/completions", &api_key, "slow", &body).await).await;
    assert_eq!(again_status, StatusCode::OK);
    assert!(replayed(&again_headers));
    assert_eq!(again, first);
    assert_eq!(app.count("SELECT count(*) FROM runs"), 1);

    // Many at once on a creating route: exactly one creates; each other one either waits its
    // turn (409) or gets the same answer.
    let token = admin.access_token.clone();
    let creates = (0..8).map(|_| {
        let (app, token) = (&app, token.clone());
        async move {
            read(
                post_keyed(
                    app,
                    "/api/v1/sessions",
                    &token,
                    "burst",
                    &json!({"agent": "helper"}),
                )
                .await,
            )
            .await
        }
    });
    let results = futures_util::future::join_all(creates).await;
    let created: Vec<&String> = results
        .iter()
        .filter(|(status, _, _)| *status == StatusCode::CREATED)
        .map(|(_, _, body)| body)
        .collect();
    assert!(!created.is_empty());
    assert!(
        created.iter().all(|body| *body == created[0]),
        "one session"
    );
    for (status, _, body) in &results {
        assert!(
            *status == StatusCode::CREATED || *status == StatusCode::CONFLICT,
            "{status}: {body}"
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM chat_sessions"), 1);
}

#[tokio::test]
async fn a_streamed_chat_retry_follows_the_same_run_from_its_first_event() {
    let (app, admin) = setup().await;
    let token = &admin.access_token;
    let body = json!({"agent": "helper", "message": "[mock:delay_ms=10][mock:chunks=30]"});

    let first = post_keyed(&app, "/api/v1/chat/completions", token, "turn-1", &body).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert!(!replayed(first.headers()));
    let run_id = first.headers()["x-run-id"].to_str().unwrap().to_owned();
    let session_id = first.headers()["x-session-id"].to_str().unwrap().to_owned();
    // A retry while the run is still going (the first connection is still open) follows it.
    let early = read_events(first, 3).await;
    assert_eq!(early.len(), 3);
    let retry = post_keyed(&app, "/api/v1/chat/completions", token, "turn-1", &body).await;
    let (status, headers, text) = read(retry).await;
    assert_eq!(status, StatusCode::OK);
    assert!(replayed(&headers));
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["x-run-id"], run_id.as_str());
    assert_eq!(headers["x-session-id"], session_id.as_str());
    let events = parse_sse(&text);
    assert_eq!(events[..3], early[..], "from the first event");
    assert_eq!(events.last().unwrap().event, "done");
    assert_eq!(
        events.last().unwrap().data["data"]["run_id"],
        run_id.as_str()
    );

    // And after it has finished: the same events again.
    let (_, headers, text) =
        read(post_keyed(&app, "/api/v1/chat/completions", token, "turn-1", &body).await).await;
    assert_eq!(headers["x-run-id"], run_id.as_str());
    assert_eq!(parse_sse(&text), events);

    assert_eq!(app.count("SELECT count(*) FROM runs"), 1, "one run");
    assert_eq!(
        app.count("SELECT count(*) FROM messages WHERE role = 'user'"),
        1,
        "one user message"
    );
    assert_eq!(app.count("SELECT count(*) FROM chat_sessions"), 1);

    // The OpenAI-compatible stream replays byte for byte.
    let (_, api_key) = app.with_api_key(&admin, &["chat"]).await;
    let body = json!({"model": "helper", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "[mock:reply=Hello there world]"}]});
    let (status, headers, first) =
        read(post_keyed(&app, "/v1/chat/completions", &api_key, "stream-1", &body).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(first.ends_with("data: [DONE]\n\n"), "{first}");
    let (status, again_headers, again) =
        read(post_keyed(&app, "/v1/chat/completions", &api_key, "stream-1", &body).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(replayed(&again_headers));
    assert_eq!(again_headers["x-run-id"], headers["x-run-id"]);
    assert_eq!(again_headers["content-type"], "text/event-stream");
    assert_eq!(again, first);
    // The OpenAI run's row is written behind its answer.
    app.count_reaches("SELECT count(*) FROM runs", 2).await;
    assert_eq!(app.count("SELECT count(*) FROM runs"), 2);
}

#[tokio::test]
async fn keys_belong_to_one_user_of_one_tenant() {
    let app = TestApp::new().await;
    let acme = app.signup("acme").await.admin;
    let globex = app.signup("globex").await.admin;
    let colleague = app.with_user(&acme, "admin").await;
    let body = json!({"name": "deploy", "scopes": ["chat"]});
    let mine = expect_status(
        post_keyed(
            &app,
            "/api/v1/api-keys",
            &acme.access_token,
            "shared",
            &body,
        )
        .await,
        StatusCode::CREATED,
    )
    .await;

    // Another tenant, and another user of the same tenant, with the same key string: each
    // gets a key of their own, never acme's admin's secret.
    for (who, session) in [("globex", &globex), ("colleague", &colleague)] {
        let response = post_keyed(
            &app,
            "/api/v1/api-keys",
            &session.access_token,
            "shared",
            &body,
        )
        .await;
        assert!(!replayed(response.headers()), "{who}");
        let theirs = expect_status(response, StatusCode::CREATED).await;
        assert_ne!(theirs["id"], mine["id"], "{who}");
        assert_ne!(theirs["key"], mine["key"], "{who}");
        let owner = app.count(&format!(
            "SELECT count(*) FROM api_keys WHERE id = '{}' AND user_id = '{}' AND tenant_id = '{}'",
            theirs["id"].as_str().unwrap(),
            session.user_id,
            session.tenant_id
        ));
        assert_eq!(owner, 1, "{who}: created for its caller");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM idempotency_keys WHERE key = 'shared'"),
        3
    );

    // The same user through another credential (an API key) is the same key owner.
    let (_, api_key) = app.with_api_key(&acme, &["admin"]).await;
    let again = post_keyed(&app, "/api/v1/api-keys", &api_key, "shared", &body).await;
    assert!(replayed(again.headers()));
    assert_eq!(expect_status(again, StatusCode::CREATED).await, mine);
}

#[tokio::test]
async fn an_invalid_key_is_a_400_and_nothing_is_created() {
    let (app, admin) = setup().await;
    let token = &admin.access_token;
    let long = "k".repeat(256);
    for bad in ["", "has space", long.as_str()] {
        let response = post_keyed(
            &app,
            "/api/v1/agents",
            token,
            bad,
            &json!({"name": "writer"}),
        )
        .await;
        expect_error(response, StatusCode::BAD_REQUEST, "invalid_idempotency_key").await;
    }
    let non_ascii = app
        .post("/api/v1/agents", token, json!({"name": "writer"}))
        .header(
            KEY,
            reqwest::header::HeaderValue::from_bytes("clé".as_bytes()).unwrap(),
        )
        .send()
        .await
        .unwrap();
    expect_error(
        non_ascii,
        StatusCode::BAD_REQUEST,
        "invalid_idempotency_key",
    )
    .await;
    let twice = app
        .post("/api/v1/agents", token, json!({"name": "writer"}))
        .header(KEY, "a")
        .header(KEY, "b")
        .send()
        .await
        .unwrap();
    expect_error(twice, StatusCode::BAD_REQUEST, "invalid_idempotency_key").await;
    assert_eq!(
        app.count("SELECT count(*) FROM agents WHERE name = 'writer'"),
        0
    );

    // On the OpenAI-compatible API, in OpenAI's shape; no run starts.
    let (_, api_key) = app.with_api_key(&admin, &["chat"]).await;
    let response = post_keyed(
        &app,
        "/v1/chat/completions",
        &api_key,
        "has space",
        &json!({"model": "helper", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let body = expect_status(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["error"]["code"], "invalid_idempotency_key");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    // A body the route refuses is refused as before, and its key is not kept.
    let broken = app
        .request(Method::POST, "/api/v1/agents")
        .bearer_auth(token)
        .header(KEY, "broken")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(broken, StatusCode::BAD_REQUEST, "invalid_json").await;
    let huge = json!({"name": "big", "system_prompt": "x".repeat(1024 * 1024 + 10)});
    let too_big = post_keyed(&app, "/api/v1/agents", token, "huge", &huge).await;
    expect_error(too_big, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys"), 0);
    assert_eq!(app.count("SELECT count(*) FROM runs"), 0);
}

#[tokio::test]
async fn client_errors_are_kept_but_a_refused_or_failed_first_attempt_lets_a_retry_run() {
    let (app, admin) = setup().await;
    let acme = admin.tenant_id.clone();
    let token = &admin.access_token;

    // A 4xx is the answer to that request: kept and replayed.
    let unknown = json!({"agent": "nobody", "message": "hi"});
    let first = post_keyed(&app, "/api/v1/chat/completions", token, "c1", &unknown).await;
    let first = expect_error(first, StatusCode::NOT_FOUND, "not_found").await;
    let again = post_keyed(&app, "/api/v1/chat/completions", token, "c1", &unknown).await;
    assert!(replayed(again.headers()));
    assert_eq!(expect_status(again, StatusCode::NOT_FOUND).await, first);

    // A 429 (the quota refused it) is not kept: once the quota allows it, the retry runs.
    app.set_quota(&acme, json!({"max_tokens_per_month": 1}))
        .await;
    let body = json!({"agent": "helper", "message": "hello"});
    let refused = post_keyed(&app, "/api/v1/chat/completions", token, "c2", &body).await;
    assert!(refused.headers().contains_key("retry-after"));
    expect_error(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "token_quota_exceeded",
    )
    .await;
    assert_eq!(app.count("SELECT count(*) FROM runs"), 0);
    app.set_quota(&acme, json!({"max_tokens_per_month": 1_000_000}))
        .await;
    let retried = post_keyed(&app, "/api/v1/chat/completions", token, "c2", &body).await;
    assert_eq!(retried.status(), StatusCode::OK);
    assert!(!replayed(retried.headers()));
    let events = parse_sse(&retried.text().await.unwrap());
    assert_eq!(events.last().unwrap().data["data"]["status"], "completed");
    assert_eq!(app.count("SELECT count(*) FROM runs"), 1);

    // A 5xx (the provider failed) is not kept either: the retry runs again.
    let (_, api_key) = app.with_api_key(&admin, &["chat"]).await;
    let failing = json!({"model": "helper", "messages": [{"role": "user", "content": "[mock:error=unavailable]"}]});
    for attempt in 1..=2 {
        let response = post_keyed(&app, "/v1/chat/completions", &api_key, "c3", &failing).await;
        assert!(response.status().is_server_error(), "{attempt}");
        assert!(!replayed(response.headers()), "{attempt}");
        // Its run row is written behind the answer.
        app.count_reaches("SELECT count(*) FROM runs", 1 + attempt)
            .await;
        assert_eq!(app.count("SELECT count(*) FROM runs"), 1 + attempt);
    }
    assert_eq!(
        app.count("SELECT count(*) FROM idempotency_keys WHERE key IN ('c2', 'c3')"),
        1,
        "only the successful chat is kept"
    );
}

#[tokio::test]
async fn an_expired_key_behaves_as_new() {
    let (app, admin) = setup().await;
    let token = &admin.access_token;
    let body = json!({"agent": "helper", "title": "Again"});
    let first = expect_status(
        post_keyed(&app, "/api/v1/sessions", token, "old", &body).await,
        StatusCode::CREATED,
    )
    .await;
    let expires = app.count(
        "SELECT extract(epoch FROM expires_at - created_at)::bigint FROM idempotency_keys WHERE key = 'old'",
    );
    assert_eq!(expires, 24 * 3600, "kept 24 hours");

    app.sql("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'");
    let response = post_keyed(&app, "/api/v1/sessions", token, "old", &body).await;
    assert!(!replayed(response.headers()));
    let second = expect_status(response, StatusCode::CREATED).await;
    assert_ne!(second["id"], first["id"]);
    assert_eq!(app.count("SELECT count(*) FROM chat_sessions"), 2);
    assert_eq!(
        app.count("SELECT count(*) FROM idempotency_keys WHERE expires_at > now()"),
        1,
        "the expired row was replaced"
    );

    // The sweep deletes expired keys across tenants.
    app.sql("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'");
    let swept = app
        .state
        .db
        .anonymous_tx(|conn| {
            paas_persistence::idempotency::sweep_expired(conn, chrono::Utc::now(), 100)
        })
        .await
        .unwrap();
    assert_eq!(swept, 1);
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys"), 0);
}

#[tokio::test]
async fn a_retry_on_another_replica_follows_the_run_and_survives_its_events_expiring() {
    use fred::interfaces::KeysInterface;
    let (app, admin) = setup().await;
    let replica = TestApp::builder().replica_of(&app).start().await;
    let token = &admin.access_token;
    let chat = json!({"agent": "helper", "message": "[mock:reply=Hello from the first replica]"});
    let (status, headers, first) =
        read(post_keyed(&app, "/api/v1/chat/completions", token, "r1", &chat).await).await;
    assert_eq!(status, StatusCode::OK);
    let run_id = headers["x-run-id"].to_str().unwrap().to_owned();
    let (_, api_key) = app.with_api_key(&admin, &["chat"]).await;
    let completion = json!({"model": "helper", "stream": true,
        "messages": [{"role": "user", "content": "[mock:reply=Streamed once]"}]});
    let (_, openai_headers, streamed) =
        read(post_keyed(&app, "/v1/chat/completions", &api_key, "r2", &completion).await).await;
    // The run's events reach Redis just behind the stream.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The other replica does not own the runs: it follows them through Redis.
    let (status, again_headers, again) =
        read(post_keyed(&replica, "/api/v1/chat/completions", token, "r1", &chat).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(replayed(&again_headers));
    assert_eq!(parse_sse(&again), parse_sse(&first));
    let (_, _, again) = read(
        post_keyed(
            &replica,
            "/v1/chat/completions",
            &api_key,
            "r2",
            &completion,
        )
        .await,
    )
    .await;
    assert_eq!(again, streamed);

    // Once the events have expired, the dashboard's replay still ends with the stored outcome,
    // and the OpenAI stream with an error rather than hanging or ending silently.
    let openai_run = openai_headers["x-run-id"].to_str().unwrap();
    for run in [run_id.as_str(), openai_run] {
        let key = app.state.redis.key(&format!("run:{run}:events"));
        let _: i64 = app.state.redis.client().del(&key).await.unwrap();
    }
    let (_, _, expired) =
        read(post_keyed(&replica, "/api/v1/chat/completions", token, "r1", &chat).await).await;
    let events = parse_sse(&expired);
    assert_eq!(events.len(), 1, "{expired}");
    assert_eq!(events[0].event, "done");
    assert_eq!(events[0].data["data"]["status"], "completed");
    assert_eq!(events[0].data["data"]["run_id"], run_id.as_str());
    let (status, _, expired) = read(
        post_keyed(
            &replica,
            "/v1/chat/completions",
            &api_key,
            "r2",
            &completion,
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        expired.contains("\"code\":\"events_unavailable\""),
        "{expired}"
    );
    assert!(expired.ends_with("data: [DONE]\n\n"), "{expired}");
    assert_eq!(app.count("SELECT count(*) FROM runs"), 2);
}

#[tokio::test]
async fn a_client_that_gives_up_finds_its_answer_on_retry_and_nothing_runs_twice() {
    let (app, admin) = setup().await;
    let (_, api_key) = app.with_api_key(&admin, &["chat"]).await;
    let body = json!({"model": "helper", "messages": [{"role": "user", "content": "[mock:delay_ms=20][mock:chunks=40]"}]});
    let gave_up = app
        .post("/v1/chat/completions", &api_key, body.clone())
        .header(KEY, "impatient")
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client timed out");
    let mut statuses = Vec::new();
    let answer = loop {
        let (status, headers, text) =
            read(post_keyed(&app, "/v1/chat/completions", &api_key, "impatient", &body).await)
                .await;
        statuses.push(status);
        if status == StatusCode::OK {
            assert!(replayed(&headers), "the first request's answer");
            break text;
        }
        assert_eq!(status, StatusCode::CONFLICT, "{text}");
        assert!(statuses.len() < 100, "the key stays in progress");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(statuses[0], StatusCode::CONFLICT, "still running at first");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(app.count("SELECT count(*) FROM runs"), 1, "one run");
}
