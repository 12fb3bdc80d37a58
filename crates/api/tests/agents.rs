//! Agents and provider credentials: CRUD, validation, who may write, tenant isolation,
//! encrypted keys, SSRF-safe base URLs, and a real round trip through an OpenAI-compatible
//! provider (a local fixture server speaking the wire format).

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::{TestApp, answer, expect_error, expect_status};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn agents_are_created_with_sensible_defaults_and_changed() {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    let agent = app.agent(&admin, json!({"name": "support"})).await;
    assert_eq!(agent["provider_id"], "mock");
    assert_eq!(agent["model"], "mock");
    assert_eq!(agent["display_name"], "support");
    assert_eq!(
        (
            agent["max_tokens"].as_u64(),
            agent["max_steps"].as_u64(),
            agent["timeout_seconds"].as_u64()
        ),
        (Some(1024), Some(8), Some(120))
    );
    assert_eq!(agent["tools"], json!([]));
    let id = agent["id"].as_str().unwrap();

    let patched = app
        .patch(
            &format!("/api/v1/agents/{id}"),
            &admin.access_token,
            json!({"temperature": 0.3, "tools": ["calculator"], "system_prompt": "Be kind."}),
        )
        .send()
        .await
        .unwrap();
    let patched = expect_status(patched, StatusCode::OK).await;
    assert!((patched["temperature"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    assert_eq!(patched["tools"], json!(["calculator"]));
    let cleared = app
        .patch(
            &format!("/api/v1/agents/{id}"),
            &admin.access_token,
            json!({"temperature": null}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_status(cleared, StatusCode::OK).await["temperature"],
        Value::Null
    );

    let list = expect_status(
        app.get("/api/v1/agents", &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    let taken = app
        .post(
            "/api/v1/agents",
            &admin.access_token,
            json!({"name": "support"}),
        )
        .send()
        .await
        .unwrap();
    expect_error(taken, StatusCode::CONFLICT, "agent_name_taken").await;
    let deleted = app
        .delete(&format!("/api/v1/agents/{id}"), &admin.access_token)
        .send()
        .await
        .unwrap();
    expect_status(deleted, StatusCode::NO_CONTENT).await;
    expect_error(
        app.get(&format!("/api/v1/agents/{id}"), &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // The name is free again.
    app.agent(&admin, json!({"name": "support"})).await;
    // created, updated twice, deleted, created again.
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE action LIKE 'agent.%'"),
        5
    );
}

#[tokio::test]
async fn bad_agent_fields_are_refused_with_clear_codes() {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    let other = app.signup("globex").await.admin;
    let theirs = app
        .post(
            "/api/v1/providers",
            &other.access_token,
            json!({"name": "p", "kind": "openai", "api_key": "sk-test-123456"}),
        )
        .send()
        .await
        .unwrap();
    let their_provider = expect_status(theirs, StatusCode::CREATED).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (body, code) in [
        (json!({"name": "Bad Name"}), "invalid_name"),
        (json!({"name": "x'; DROP TABLE agents;--"}), "invalid_name"),
        (json!({"name": "a", "tools": ["shell"]}), "invalid_tools"),
        (
            json!({"name": "a", "tools": ["calculator", "calculator"]}),
            "invalid_tools",
        ),
        (
            json!({"name": "a", "temperature": 3.5}),
            "invalid_temperature",
        ),
        (
            json!({"name": "a", "max_tokens": 1_000_000_000u64}),
            "invalid_max_tokens",
        ),
        (json!({"name": "a", "max_tokens": 0}), "invalid_max_tokens"),
        (json!({"name": "a", "max_steps": 100}), "invalid_max_steps"),
        (
            json!({"name": "a", "timeout_seconds": 100000}),
            "invalid_timeout_seconds",
        ),
        (
            json!({"name": "a", "system_prompt": "x".repeat(32_001)}),
            "invalid_system_prompt",
        ),
        (
            json!({"name": "a", "provider_id": "platform:openai", "model": "gpt-4o"}),
            "provider_not_configured",
        ),
        (
            json!({"name": "a", "provider_id": their_provider}),
            "invalid_provider_id",
        ),
        (
            json!({"name": "a", "provider_id": "openai"}),
            "invalid_json",
        ),
        (json!({"name": "a", "tenant_id": "x"}), "invalid_json"),
    ] {
        let response = app
            .post("/api/v1/agents", &admin.access_token, body.clone())
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::BAD_REQUEST, code).await;
    }
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM agents WHERE tenant_id = '{}'",
            admin.tenant_id
        )),
        0
    );
}

#[tokio::test]
async fn everyone_reads_agents_and_only_admins_or_agents_write_keys_change_them() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let admin = &tenant.admin;
    let agent = app.agent(admin, json!({"name": "a1"})).await;
    let id = agent["id"].as_str().unwrap();
    let user = app.with_user(admin, "user").await;
    let viewer = app.with_user(admin, "viewer").await;
    let (_, read_key) = app.with_api_key(&viewer, &["agents:read"]).await;
    let (_, write_key) = app.with_api_key(admin, &["agents:write"]).await;
    let (_, chat_key) = app.with_api_key(admin, &["chat"]).await;
    for token in [&user.access_token, &viewer.access_token, &read_key] {
        expect_status(
            app.get("/api/v1/agents", token).send().await.unwrap(),
            StatusCode::OK,
        )
        .await;
        expect_status(
            app.get(&format!("/api/v1/agents/{id}"), token)
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
    }
    expect_error(
        app.get("/api/v1/agents", &chat_key).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    for (token, code) in [
        (&user.access_token, "forbidden"),
        (&viewer.access_token, "forbidden"),
        (&read_key, "forbidden"),
        (&chat_key, "insufficient_scope"),
    ] {
        let create = app
            .post("/api/v1/agents", token, json!({"name": "nope"}))
            .send()
            .await
            .unwrap();
        expect_error(create, StatusCode::FORBIDDEN, code).await;
        let patch = app
            .patch(
                &format!("/api/v1/agents/{id}"),
                token,
                json!({"description": "x"}),
            )
            .send()
            .await
            .unwrap();
        expect_error(patch, StatusCode::FORBIDDEN, code).await;
        expect_error(
            app.delete(&format!("/api/v1/agents/{id}"), token)
                .send()
                .await
                .unwrap(),
            StatusCode::FORBIDDEN,
            code,
        )
        .await;
    }
    let created = app
        .post("/api/v1/agents", &write_key, json!({"name": "by-key"}))
        .send()
        .await
        .unwrap();
    expect_status(created, StatusCode::CREATED).await;
}

#[tokio::test]
async fn another_tenants_agents_and_providers_are_not_found() {
    let app = TestApp::new().await;
    let acme = app.signup("acme").await.admin;
    let globex = app.signup("globex").await.admin;
    let agent = app.agent(&globex, json!({"name": "theirs"})).await;
    let provider = app
        .post(
            "/api/v1/providers",
            &globex.access_token,
            json!({"name": "p", "kind": "openai", "api_key": "sk-test-123456"}),
        )
        .send()
        .await
        .unwrap();
    let provider = expect_status(provider, StatusCode::CREATED).await;
    let (agent_id, provider_id) = (
        agent["id"].as_str().unwrap(),
        provider["id"].as_str().unwrap(),
    );
    let token = &acme.access_token;
    for response in [
        app.get(&format!("/api/v1/agents/{agent_id}"), token)
            .send()
            .await
            .unwrap(),
        app.patch(
            &format!("/api/v1/agents/{agent_id}"),
            token,
            json!({"description": "mine"}),
        )
        .send()
        .await
        .unwrap(),
        app.delete(&format!("/api/v1/agents/{agent_id}"), token)
            .send()
            .await
            .unwrap(),
        app.get(&format!("/api/v1/providers/{provider_id}"), token)
            .send()
            .await
            .unwrap(),
        app.patch(
            &format!("/api/v1/providers/{provider_id}"),
            token,
            json!({"default_model": "x"}),
        )
        .send()
        .await
        .unwrap(),
        app.delete(&format!("/api/v1/providers/{provider_id}"), token)
            .send()
            .await
            .unwrap(),
    ] {
        expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let list = expect_status(
        app.get("/api/v1/agents", token).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["items"], json!([]));
    let list = expect_status(
        app.get("/api/v1/providers", token).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["items"], json!([]));
    assert_eq!(app.count("SELECT count(*) FROM agents WHERE name = 'theirs' AND description = '' AND deleted_at IS NULL"), 1);
}

#[tokio::test]
async fn provider_keys_are_encrypted_write_only_and_rotatable() {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    let created = app
        .post(
            "/api/v1/providers",
            &admin.access_token,
            json!({"name": "openai-prod", "kind": "openai", "api_key": "sk-live-ABCDEFGH1234", "default_model": "gpt-4o-mini"}),
        )
        .send()
        .await
        .unwrap();
    let created = expect_status(created, StatusCode::CREATED).await;
    assert_eq!(created["api_key_last4"], "1234");
    assert!(!created.to_string().contains("sk-live"));
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.count("SELECT count(*) FROM providers WHERE position(convert_to('sk-live', 'UTF8') in api_key_ciphertext) > 0"), 0);
    assert_eq!(
        app.count("SELECT count(*) FROM providers WHERE api_key_ciphertext IS NOT NULL"),
        1
    );

    let rotated = app
        .patch(
            &format!("/api/v1/providers/{id}"),
            &admin.access_token,
            json!({"api_key": "sk-live-NEWKEY9876"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_status(rotated, StatusCode::OK).await["api_key_last4"],
        "9876"
    );
    let listing = expect_status(
        app.get("/api/v1/providers", &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert!(!listing.to_string().contains("sk-live"));
    let audit = expect_status(
        app.get(
            "/api/v1/audit-events?action=provider.updated",
            &admin.access_token,
        )
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(audit["items"][0]["details"]["changed"], json!(["api_key"]));
    assert!(!audit.to_string().contains("NEWKEY"));

    // In use by an agent: cannot be deleted.
    app.agent(&admin, json!({"name": "uses-it", "provider_id": id}))
        .await;
    let refused = app
        .delete(&format!("/api/v1/providers/{id}"), &admin.access_token)
        .send()
        .await
        .unwrap();
    expect_error(refused, StatusCode::CONFLICT, "provider_in_use").await;
    assert_eq!(app.count("SELECT count(*) FROM providers"), 1);

    for (body, code) in [
        (json!({"name": "g", "kind": "glm"}), "invalid_provider_key"),
        (
            json!({"name": "m", "kind": "mock", "api_key": "x"}),
            "invalid_provider_key",
        ),
        (
            json!({"name": "m", "kind": "mock", "base_url": "https://example.com"}),
            "invalid_base_url",
        ),
        (
            json!({"name": "o", "kind": "cohere", "api_key": "x"}),
            "invalid_json",
        ),
        (
            json!({"name": "o", "kind": "openai", "api_key": "has space"}),
            "invalid_provider_key",
        ),
        (
            json!({"name": "o", "kind": "openai", "base_url": "ftp://example.com"}),
            "blocked_base_url",
        ),
        (
            json!({"name": "o", "kind": "openai", "base_url": "not a url"}),
            "invalid_base_url",
        ),
        (
            json!({"name": "o", "kind": "openai", "base_url": "https://user:pass@example.com"}),
            "invalid_base_url",
        ),
    ] {
        let response = app
            .post("/api/v1/providers", &admin.access_token, body.clone())
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::BAD_REQUEST, code).await;
    }
    let user = app.with_user(&admin, "user").await;
    expect_error(
        app.get("/api/v1/providers", &user.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn base_urls_pointing_inside_are_refused_unless_the_operator_allows_them() {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    for base in [
        "http://169.254.169.254/v1",
        "http://127.0.0.1:11434/v1",
        "http://localhost:8000/v1",
        "http://[::1]:8000/v1",
        "http://0x7f000001/v1",
        "http://2130706433/v1",
        "http://[::ffff:127.0.0.1]/v1",
        "http://10.0.0.8/v1",
    ] {
        let response = app
            .post(
                "/api/v1/providers",
                &admin.access_token,
                json!({"name": "local", "kind": "openai", "base_url": base}),
            )
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::BAD_REQUEST, "blocked_base_url").await;
    }
    assert_eq!(app.count("SELECT count(*) FROM providers"), 0);
    let open = TestApp::builder()
        .env("PAAS_ALLOW_PRIVATE_UPSTREAMS", "true")
        .start()
        .await;
    let admin = open.signup("acme").await.admin;
    let response = open
        .post(
            "/api/v1/providers",
            &admin.access_token,
            json!({"name": "ollama", "kind": "openai", "base_url": "http://127.0.0.1:11434/v1"}),
        )
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::CREATED).await;
}

/// What the fixture provider should answer.
#[derive(Clone, Copy)]
enum Upstream {
    Answer,
    RateLimited,
    CutMidStream,
    /// Accepts the request and never answers.
    Hang,
    /// Sends a chunk that is not JSON.
    Malformed,
    /// Answers HTTP 500 with OpenAI's error body.
    ServerError,
}

/// A local server speaking OpenAI's Chat Completions streaming format. Records the
/// Authorization header of each request.
async fn openai_fixture(mode: Upstream) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= head_end + 4 + length {
                            let auth = text[..head_end]
                                .lines()
                                .find(|l| l.to_lowercase().starts_with("authorization:"))
                                .unwrap_or("")
                                .to_owned();
                            record.lock().unwrap().push(auth);
                            break;
                        }
                    }
                }
                let chunk = |delta: &str| {
                    format!(
                        "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-test\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{delta}\"}},\"finish_reason\":null}}]}}\n\n"
                    )
                };
                if matches!(mode, Upstream::Hang) {
                    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    return;
                }
                let response = match mode {
                    Upstream::Malformed => {
                        let body = chunk("Hello") + "data: {this is not json\n\n";
                        format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}")
                    }
                    Upstream::Hang => String::new(),
                    Upstream::ServerError => {
                        let body = r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#;
                        format!("HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                    }
                    Upstream::RateLimited => "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 0\r\ncontent-length: 62\r\nconnection: close\r\n\r\n{\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_exceeded\"}}".to_owned(),
                    Upstream::Answer | Upstream::CutMidStream => {
                        let mut body = chunk("Hello") + &chunk(" from") + &chunk(" upstream");
                        if matches!(mode, Upstream::Answer) {
                            body.push_str("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-test\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
                            body.push_str("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-test\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":3,\"total_tokens\":14}}\n\n");
                            body.push_str("data: [DONE]\n\n");
                        }
                        format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}")
                    }
                };
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (format!("http://{addr}/v1"), seen)
}

async fn app_with_provider(mode: Upstream) -> (TestApp, common::Session, Arc<Mutex<Vec<String>>>) {
    let app = TestApp::builder()
        .env("PAAS_ALLOW_PRIVATE_UPSTREAMS", "true")
        .env("PAAS_UPSTREAM_MAX_RETRIES", "1")
        .env("PAAS_UPSTREAM_FIRST_BYTE_TIMEOUT_SECS", "1")
        .start()
        .await;
    let admin = app.signup("acme").await.admin;
    let (base, seen) = openai_fixture(mode).await;
    let provider = app
        .post(
            "/api/v1/providers",
            &admin.access_token,
            json!({"name": "fixture", "kind": "openai", "base_url": base, "api_key": "sk-fixture-SECRET", "default_model": "gpt-test"}),
        )
        .send()
        .await
        .unwrap();
    let provider = expect_status(provider, StatusCode::CREATED).await;
    app.agent(
        &admin,
        json!({"name": "real", "provider_id": provider["id"]}),
    )
    .await;
    (app, admin, seen)
}

/// Asserts what a run cut by an upstream fault left behind: the session's stored assistant
/// message is exactly the text streamed before the fault, and the usage ledger has exactly one
/// row for the run, with the tokens `GET /runs/{id}` reports. Returns the run.
async fn assert_partial_answer_stored_and_billed_once(
    app: &TestApp,
    token: &str,
    headers: &reqwest::header::HeaderMap,
    streamed: &str,
) -> Value {
    let run_id = headers["x-run-id"].to_str().unwrap();
    let session_id = headers["x-session-id"].to_str().unwrap();
    let run = app.finished_run(token, run_id).await;
    let messages = expect_status(
        app.get(&format!("/api/v1/sessions/{session_id}/messages"), token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let assistant: Vec<&Value> = messages["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .collect();
    assert_eq!(assistant.len(), 1, "{messages}");
    assert_eq!(assistant[0]["content"], streamed);
    // The ledger is written behind the run.
    let ledger = format!("SELECT count(*) FROM usage_records WHERE run_id = '{run_id}'");
    app.count_reaches(&ledger, 1).await;
    assert_eq!(app.count(&ledger), 1, "billed once");
    for column in ["prompt_tokens", "completion_tokens"] {
        assert_eq!(
            app.count(&format!(
                "SELECT {column} FROM usage_records WHERE run_id = '{run_id}'"
            )),
            run["usage"][column].as_i64().unwrap(),
            "{column} of the ledger row and of the run"
        );
    }
    run
}

#[tokio::test]
async fn platform_default_providers_come_from_the_environment() {
    let (base, seen) = openai_fixture(Upstream::Answer).await;
    let app = TestApp::builder()
        .env("OPENAI_API_KEY", "sk-platform-KEY7890")
        .env("OPENAI_BASE_URL", &base)
        .env("PAAS_ALLOW_PRIVATE_UPSTREAMS", "true")
        .start()
        .await;
    let admin = app.signup("acme").await.admin;
    let listing = app
        .get("/api/v1/providers", &admin.access_token)
        .send()
        .await
        .unwrap();
    let listing = expect_status(listing, StatusCode::OK).await;
    assert_eq!(listing["platform"], json!(["platform:openai"]));
    assert_eq!(listing["items"], json!([]), "no tenant provider was made");
    assert!(!listing.to_string().contains("sk-platform"));

    let agent = app
        .agent(
            &admin,
            json!({"name": "hosted", "provider_id": "platform:openai", "model": "gpt-test"}),
        )
        .await;
    assert_eq!(agent["provider_id"], "platform:openai");
    assert!(!agent.to_string().contains("sk-platform"));
    let (headers, events) = app
        .chat(
            &admin.access_token,
            json!({"agent": "hosted", "message": "hi"}),
        )
        .await;
    assert_eq!(answer(&events), "Hello from upstream");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["authorization: Bearer sk-platform-KEY7890"]
    );
    let run = app
        .finished_run(&admin.access_token, headers["x-run-id"].to_str().unwrap())
        .await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["provider"], "openai");
    assert_eq!(run["model"], "gpt-test");
}

#[tokio::test]
async fn an_upstream_server_error_is_retried_then_a_clear_error_billed_once_at_zero() {
    let (app, admin, seen) = app_with_provider(Upstream::ServerError).await;
    let (headers, events) = app
        .chat(
            &admin.access_token,
            json!({"agent": "real", "message": "hi"}),
        )
        .await;
    let error = events.iter().find(|e| e.event == "error").unwrap();
    assert_eq!(error.data["data"]["code"], "upstream_unavailable");
    assert_eq!(answer(&events), "");
    let done = events.last().unwrap();
    assert_eq!(done.event, "done");
    assert_eq!(done.data["data"]["status"], "failed");
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "PAAS_UPSTREAM_MAX_RETRIES=1: the first attempt and one retry"
    );
    let run_id = headers["x-run-id"].to_str().unwrap();
    let run = app.finished_run(&admin.access_token, run_id).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error_code"], "upstream_unavailable");
    assert_eq!(run["usage"]["total_tokens"], 0);
    // Nothing reached the model's answer, so nothing is billed, but the run has its one
    // ledger row (written behind the run).
    let ledger = format!("SELECT count(*) FROM usage_records WHERE run_id = '{run_id}'");
    app.count_reaches(&ledger, 1).await;
    assert_eq!(app.count(&ledger), 1);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM usage_records WHERE run_id = '{run_id}' \
             AND prompt_tokens = 0 AND completion_tokens = 0 AND status = 'failed'"
        )),
        1
    );
}

#[tokio::test]
async fn chat_goes_through_a_tenant_provider_with_its_decrypted_key() {
    let (app, admin, seen) = app_with_provider(Upstream::Answer).await;
    let (headers, events) = app
        .chat(
            &admin.access_token,
            json!({"agent": "real", "message": "hi"}),
        )
        .await;
    assert_eq!(answer(&events), "Hello from upstream");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["authorization: Bearer sk-fixture-SECRET"]
    );
    let run = app
        .finished_run(&admin.access_token, headers["x-run-id"].to_str().unwrap())
        .await;
    assert_eq!(run["provider"], "openai");
    assert_eq!(run["model"], "gpt-test");
    assert_eq!(
        run["usage"],
        json!({"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14, "estimated": false})
    );
}

#[tokio::test]
async fn upstream_failures_reach_the_client_as_clear_errors() {
    let (app, admin, seen) = app_with_provider(Upstream::RateLimited).await;
    let (_, events) = app
        .chat(
            &admin.access_token,
            json!({"agent": "real", "message": "hi"}),
        )
        .await;
    let error = events.iter().find(|e| e.event == "error").unwrap();
    assert_eq!(error.data["data"]["code"], "upstream_rate_limited");
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "retried once before giving up"
    );

    let (app, admin, seen) = app_with_provider(Upstream::CutMidStream).await;
    let (headers, events) = app
        .chat(
            &admin.access_token,
            json!({"agent": "real", "message": "hi"}),
        )
        .await;
    let error = events.iter().find(|e| e.event == "error").unwrap();
    assert_eq!(error.data["data"]["code"], "upstream_bad_response");
    assert_eq!(answer(&events), "Hello from upstream");
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "never retried after the first byte"
    );
    let run = app
        .finished_run(&admin.access_token, headers["x-run-id"].to_str().unwrap())
        .await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["usage"]["estimated"], true);
    assert!(
        run["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "the partial answer is billed once"
    );
    assert_partial_answer_stored_and_billed_once(
        &app,
        &admin.access_token,
        &headers,
        "Hello from upstream",
    )
    .await;
}

#[tokio::test]
async fn a_hanging_or_garbled_upstream_is_a_clear_error_not_a_hang() {
    let (app, admin, seen) = app_with_provider(Upstream::Hang).await;
    let started = std::time::Instant::now();
    let (_, events) = app
        .chat(
            &admin.access_token,
            json!({"agent": "real", "message": "hi"}),
        )
        .await;
    let error = events.iter().find(|e| e.event == "error").unwrap();
    assert_eq!(error.data["data"]["code"], "upstream_timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "a timeout before the first byte is retried once"
    );

    let (app, admin, _) = app_with_provider(Upstream::Malformed).await;
    let (headers, events) = app
        .chat(
            &admin.access_token,
            json!({"agent": "real", "message": "hi"}),
        )
        .await;
    let error = events.iter().find(|e| e.event == "error").unwrap();
    assert_eq!(error.data["data"]["code"], "upstream_bad_response");
    assert_eq!(answer(&events), "Hello");
    let run =
        assert_partial_answer_stored_and_billed_once(&app, &admin.access_token, &headers, "Hello")
            .await;
    assert_eq!(run["status"], "failed");
    assert!(run["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

/// Runs `agent-paas tenant create --if-not-exists --with-demo-agent` (what `just dev` does)
/// against the test server's database; its output.
fn create_demo_tenant(app: &TestApp) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_agent-paas"))
        .args([
            "tenant",
            "create",
            "--name",
            "demo",
            "--admin-email",
            "admin@demo.local",
            "--if-not-exists",
            "--with-demo-agent",
        ])
        .env("PAAS_ADMIN_PASSWORD", common::PASSWORD)
        .env("DATABASE_URL", app.db.url())
        .env("REDIS_URL", "redis://127.0.0.1:6379")
        .env("PAAS_REDIS_PREFIX", &app.redis_prefix)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_cli_seeds_the_demo_tenant_with_a_mock_agent_once() {
    let app = TestApp::new().await;
    let first = create_demo_tenant(&app);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let login = expect_status(
        app.login("demo", "admin@demo.local", common::PASSWORD)
            .await,
        StatusCode::OK,
    )
    .await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let agents = expect_status(
        app.get("/api/v1/agents", &token).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let items = agents["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{agents}");
    let demo = &items[0];
    assert_eq!(demo["name"], "assistant");
    assert_eq!(demo["provider_id"], "mock");
    assert_eq!(demo["model"], "mock");
    let mut tools: Vec<&str> = demo["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tools.sort_unstable();
    assert_eq!(tools, ["calculator", "current_time", "http_fetch"]);
    // It answers, offline.
    let (_, events) = app
        .chat(&token, json!({"agent": "assistant", "message": "hello"}))
        .await;
    assert!(answer(&events).starts_with("You said"), "{events:?}");

    // Again, as every `just dev` does: succeeds, changes nothing.
    let second = create_demo_tenant(&app);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(String::from_utf8_lossy(&second.stdout).contains("already exists"));
    assert_eq!(
        app.count("SELECT count(*) FROM tenants WHERE name = 'demo'"),
        1
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM agents a JOIN tenants t ON t.id = a.tenant_id \
             WHERE t.name = 'demo' AND a.deleted_at IS NULL"
        ),
        1,
        "the demo agent is not duplicated"
    );
}
