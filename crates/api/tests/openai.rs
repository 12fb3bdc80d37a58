//! The OpenAI-compatible API: exact response, chunk and error shapes, limits, billing — and the
//! official OpenAI Python SDK working against it unchanged.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Session, TestApp, expect_status};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn setup() -> (TestApp, Session, String) {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    app.agent(
        &admin,
        json!({"name": "helper", "tools": ["calculator"], "system_prompt": "Be brief."}),
    )
    .await;
    let (_, key) = app.with_api_key(&admin, &["chat", "agents:read"]).await;
    (app, admin, key)
}

async fn openai_error(response: reqwest::Response, status: StatusCode, code: &str) -> Value {
    let body = expect_status(response, status).await;
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(body["error"]["type"].is_string(), "{body}");
    assert!(body["error"].as_object().unwrap().contains_key("param"));
    body
}

#[tokio::test]
async fn models_are_the_tenants_agents() {
    let (app, admin, key) = setup().await;
    app.agent(&admin, json!({"name": "writer"})).await;
    let other = app.signup("globex").await.admin;
    app.agent(&other, json!({"name": "not-yours"})).await;
    let models = expect_status(
        app.get("/v1/models", &key).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["helper", "writer"]);
    assert_eq!(models["data"][0]["object"], "model");
    assert_eq!(models["data"][0]["owned_by"], "acme");
}

#[tokio::test]
async fn a_completion_has_openais_shape_and_usage() {
    let (app, _, key) = setup().await;
    let response = app
        .post("/v1/chat/completions", &key, json!({"model": "helper", "messages": [{"role": "user", "content": "what is 6*7?"}], "unknown_field": true}))
        .send()
        .await
        .unwrap();
    let body = expect_status(response, StatusCode::OK).await;
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "helper");
    assert_eq!(body["choices"][0]["index"], 0);
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "The calculator tool returned: 42"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let usage = &body["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0);
    // The run's outcome is stored right after the answer is sent.
    app.count_reaches("SELECT count(*) FROM runs WHERE source = 'openai' AND status = 'completed' AND session_id IS NULL", 1).await;
    assert_eq!(app.count("SELECT count(*) FROM runs"), 1);
    assert_eq!(
        app.count("SELECT count(*) FROM chat_sessions"),
        0,
        "no session is stored"
    );

    // Content as parts, system messages, max_tokens cutting the answer.
    let response = app
        .post(
            "/v1/chat/completions",
            &key,
            json!({"model": "helper", "max_tokens": 10, "messages": [
                {"role": "system", "content": "Answer in one line."},
                {"role": "user", "content": [{"type": "text", "text": "[mock:chunks=200]"}]}
            ]}),
        )
        .send()
        .await
        .unwrap();
    let body = expect_status(response, StatusCode::OK).await;
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() <= 10);
}

#[tokio::test]
async fn streaming_sends_chunks_usage_and_done() {
    let (app, _, key) = setup().await;
    let response = app
        .post(
            "/v1/chat/completions",
            &key,
            json!({"model": "helper", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "[mock:reply=Hello there world]"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let lines: Vec<&str> = text.split("\n\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.last(), Some(&"data: [DONE]"));
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "helper");
        assert_eq!(chunk["id"], chunks[0]["id"]);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Hello there world");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);

    // Without include_usage there is no usage chunk, as with OpenAI.
    let response = app
        .post("/v1/chat/completions", &key, json!({"model": "helper", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(!text.contains("\"usage\""));
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn errors_have_openais_shape() {
    let (app, admin, key) = setup().await;
    let unauthenticated = app
        .request(Method::POST, "/v1/chat/completions")
        .json(&json!({"model": "helper", "messages": []}))
        .send()
        .await
        .unwrap();
    let body = openai_error(
        unauthenticated,
        StatusCode::UNAUTHORIZED,
        "missing_credentials",
    )
    .await;
    assert_eq!(body["error"]["type"], "authentication_error");
    let bad_key = app
        .post(
            "/v1/chat/completions",
            "ap_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            json!({}),
        )
        .send()
        .await
        .unwrap();
    openai_error(bad_key, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    let unknown = app
        .post(
            "/v1/chat/completions",
            &key,
            json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    openai_error(unknown, StatusCode::NOT_FOUND, "model_not_found").await;
    let user = app.with_user(&admin, "viewer").await;
    let (_, read_only) = app.with_api_key(&user, &["agents:read"]).await;
    let forbidden = app
        .post(
            "/v1/chat/completions",
            &read_only,
            json!({"model": "helper", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    openai_error(forbidden, StatusCode::FORBIDDEN, "forbidden").await;
    let many: Vec<Value> = (0..300)
        .map(|_| json!({"role": "user", "content": "hi"}))
        .collect();
    let before = app.count("SELECT count(*) FROM runs");
    for (body, code) in [
        (json!({"model": "helper", "messages": []}), "empty_messages"),
        (
            json!({"model": "helper", "messages": many}),
            "too_many_messages",
        ),
        (
            json!({"model": "helper", "max_tokens": 1_000_000_000u64, "messages": [{"role": "user", "content": "hi"}]}),
            "invalid_max_tokens",
        ),
        (
            json!({"model": "helper", "temperature": 9, "messages": [{"role": "user", "content": "hi"}]}),
            "invalid_temperature",
        ),
        (
            json!({"model": "helper", "n": 3, "messages": [{"role": "user", "content": "hi"}]}),
            "unsupported_n",
        ),
        (
            json!({"model": "helper", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]}),
            "unsupported_content",
        ),
        (
            json!({"model": "helper", "messages": [{"role": "tool", "content": "x"}]}),
            "unsupported_role",
        ),
        (
            json!({"model": "helper", "messages": [{"role": "system", "content": "only system"}]}),
            "empty_message",
        ),
        (
            json!({"model": "helper", "messages": [{"role": "user", "content": "x".repeat(32_001)}]}),
            "message_too_long",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            "invalid_json",
        ),
    ] {
        let response = app
            .post("/v1/chat/completions", &key, body)
            .send()
            .await
            .unwrap();
        openai_error(response, StatusCode::BAD_REQUEST, code).await;
    }
    let broken = app
        .request(Method::POST, "/v1/chat/completions")
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    openai_error(broken, StatusCode::BAD_REQUEST, "invalid_json").await;
    assert_eq!(
        app.count("SELECT count(*) FROM runs"),
        before,
        "nothing ran"
    );

    // A provider failure: a 429 (non-streaming) or an error object in the stream.
    let limited = app.post("/v1/chat/completions", &key, json!({"model": "helper", "messages": [{"role": "user", "content": "[mock:error=rate_limited]"}]})).send().await.unwrap();
    assert!(limited.headers().contains_key("retry-after"));
    openai_error(
        limited,
        StatusCode::TOO_MANY_REQUESTS,
        "upstream_rate_limited",
    )
    .await;
    let streamed = app
        .post("/v1/chat/completions", &key, json!({"model": "helper", "stream": true, "messages": [{"role": "user", "content": "[mock:chunks=30][mock:fail_after=15]"}]}))
        .send()
        .await
        .unwrap();
    let text = streamed.text().await.unwrap();
    assert!(
        text.contains("\"code\":\"upstream_bad_response\""),
        "{text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_is_still_billed() {
    let (app, admin, key) = setup().await;
    let response = app
        .post("/v1/chat/completions", &key, json!({"model": "helper", "stream": true, "messages": [{"role": "user", "content": "[mock:delay_ms=10][mock:chunks=40]"}]}))
        .send()
        .await
        .unwrap();
    let run_id = response.headers()["x-run-id"].to_str().unwrap().to_owned();
    drop(response);
    let run = app.finished_run(&admin.access_token, &run_id).await;
    assert_eq!(run["status"], "completed");
    assert!(run["usage"]["completion_tokens"].as_u64().unwrap() >= 40);
}

/// A Python with the official `openai` package, installed once into a cache directory.
fn sdk_python() -> std::path::PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    let venv = std::path::Path::new(&home).join(".cache/agent-paas/openai-sdk-venv");
    let python = venv.join("bin/python");
    let ready = std::process::Command::new(&python)
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        let created = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(created.success(), "python3 -m venv failed");
        let installed = std::process::Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "openai>=1.40,<4"])
            .status()
            .unwrap();
        assert!(
            installed.success(),
            "pip install openai failed (the test needs the PyPI registry)"
        );
    }
    python
}

#[tokio::test]
async fn the_official_openai_python_sdk_works_unchanged() {
    let (app, _, key) = setup().await;
    let python = tokio::task::spawn_blocking(sdk_python).await.unwrap();
    let script = r#"
import os, sys
from openai import OpenAI, NotFoundError
client = OpenAI(base_url=os.environ["BASE"] + "/v1", api_key=os.environ["KEY"])
assert [m.id for m in client.models.list()] == ["helper"]
reply = client.chat.completions.create(model="helper", messages=[{"role": "user", "content": "what is 6*7?"}])
assert reply.choices[0].message.content == "The calculator tool returned: 42", reply
assert reply.usage.total_tokens > 0
parts, usage = [], None
stream = client.chat.completions.create(model="helper", stream=True, stream_options={"include_usage": True},
                                        messages=[{"role": "user", "content": "[mock:reply=streamed through the sdk]"}])
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage
assert "".join(parts) == "streamed through the sdk", parts
assert usage and usage.total_tokens > 0
try:
    client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    sys.exit("expected NotFoundError")
except NotFoundError as err:
    assert err.code == "model_not_found"
print("sdk ok")
"#;
    let base = app.base.clone();
    let output = tokio::process::Command::new(python)
        .args(["-c", script])
        .env("BASE", base)
        .env("KEY", key)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the SDK script failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("sdk ok"));
}

/// Node with the official `openai` package, installed once into a cache directory.
fn sdk_node_dir() -> std::path::PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    let dir = std::path::Path::new(&home).join(".cache/agent-paas/openai-js-sdk");
    if !dir.join("node_modules/openai").exists() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("package.json"),
            r#"{"name": "sdk-check", "private": true}"#,
        )
        .unwrap();
        let installed = std::process::Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "openai@4"])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(
            installed.success(),
            "npm install openai failed (the test needs the npm registry)"
        );
    }
    dir
}

#[tokio::test]
async fn the_official_openai_javascript_sdk_works_unchanged() {
    let (app, _, key) = setup().await;
    let dir = tokio::task::spawn_blocking(sdk_node_dir).await.unwrap();
    let script = r#"
const OpenAI = require('openai');
(async () => {
  const client = new OpenAI({ baseURL: process.env.BASE + '/v1', apiKey: process.env.KEY });
  const models = await client.models.list();
  if (models.data.map((m) => m.id).join() !== 'helper') throw new Error('models: ' + JSON.stringify(models.data));
  const reply = await client.chat.completions.create({ model: 'helper', messages: [{ role: 'user', content: 'what is 6*7?' }] });
  if (reply.choices[0].message.content !== 'The calculator tool returned: 42') throw new Error('reply: ' + JSON.stringify(reply));
  const stream = await client.chat.completions.create({
    model: 'helper', stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: '[mock:reply=streamed through the js sdk]' }],
  });
  let text = ''; let usage = null;
  for await (const chunk of stream) {
    if (chunk.choices.length && chunk.choices[0].delta.content) text += chunk.choices[0].delta.content;
    if (chunk.usage) usage = chunk.usage;
  }
  if (text !== 'streamed through the js sdk' || !usage || usage.total_tokens <= 0) throw new Error('stream: ' + text);
  try {
    await client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] });
    throw new Error('expected a 404');
  } catch (err) {
    if (err.status !== 404 || err.code !== 'model_not_found') throw err;
  }
  console.log('sdk ok');
})().catch((err) => { console.error(err); process.exit(1); });
"#;
    let output = tokio::process::Command::new("node")
        .args(["-e", script])
        .current_dir(&dir)
        .env("BASE", &app.base)
        .env("KEY", &key)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the SDK script failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("sdk ok"));
}

/// A non-streamed completion through `helper`, as `key`.
async fn complete(app: &TestApp, key: &str) -> reqwest::Response {
    app.request(Method::POST, "/v1/chat/completions")
        .bearer_auth(key)
        .json(&json!({"model": "helper", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn without_run_rows_a_completion_is_billed_by_its_ledger_row_alone() {
    let app = TestApp::builder()
        .env("PAAS_RECORD_OPENAI_RUNS", "false")
        .start()
        .await;
    let admin = app.signup("acme").await.admin;
    app.agent(&admin, json!({"name": "helper"})).await;
    let (_, key) = app.with_api_key(&admin, &["chat"]).await;
    for _ in 0..3 {
        let body = expect_status(complete(&app, &key).await, StatusCode::OK).await;
        assert!(body["usage"]["total_tokens"].as_i64().unwrap() > 0);
    }
    app.ledger_rows(3).await;
    assert_eq!(
        app.count("SELECT count(*) FROM usage_records WHERE source = 'openai'"),
        3
    );
    assert_eq!(app.count("SELECT count(*) FROM runs"), 0);
    // Dashboard turns keep their rows (their messages belong to them).
    app.chat(
        &admin.access_token,
        json!({"agent": "helper", "message": "hello"}),
    )
    .await;
    app.count_reaches("SELECT count(*) FROM runs WHERE status = 'completed'", 1)
        .await;
    assert_eq!(app.count("SELECT count(*) FROM runs"), 1);
}

#[tokio::test]
async fn with_quotas_off_nothing_is_limited_and_usage_is_still_recorded() {
    let app = TestApp::builder().env("PAAS_QUOTAS", "false").start().await;
    let acme = app.signup("acme").await;
    app.set_quota(
        &acme.id,
        json!({"requests_per_minute": 1, "key_requests_per_minute": 1,
               "max_tokens_per_month": 1, "max_concurrent_runs": 1}),
    )
    .await;
    app.agent(&acme.admin, json!({"name": "helper"})).await;
    let (_, key) = app.with_api_key(&acme.admin, &["chat"]).await;
    let answers = (0..5).map(|_| complete(&app, &key));
    for response in futures_util::future::join_all(answers).await {
        expect_status(response, StatusCode::OK).await;
    }
    app.ledger_rows(5).await;
    assert_eq!(app.count("SELECT count(*) FROM usage_records"), 5);
}
