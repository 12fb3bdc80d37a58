//! A chat is one trace, exported over OTLP: the real binary, a local OTLP/HTTP receiver, and a
//! local OpenAI-compatible upstream that must receive the trace's `traceparent`.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::Binary;
use paas_testing::TestDatabase;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

/// Reads one HTTP request (head and body by Content-Length): (head, body).
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if data.len() >= end + 4 + length {
            return Some((head, data[end + 4..end + 4 + length].to_vec()));
        }
    }
}

/// Accepts OTLP/HTTP exports and keeps their (protobuf) bodies.
async fn otlp_receiver() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                while let Some((head, body)) = read_request(&mut socket).await {
                    if head.starts_with("post /v1/traces") {
                        record.lock().unwrap().push(body);
                    }
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

/// An OpenAI-compatible upstream that answers "Hello" and keeps each request's `traceparent`.
async fn upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let Some((head, _)) = read_request(&mut socket).await else {
                    return;
                };
                let parent = head
                    .lines()
                    .find_map(|l| l.strip_prefix("traceparent:"))
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                record.lock().unwrap().push(parent);
                let chunk = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-test\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":\"stop\"}]}\n\ndata: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-test\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\ndata: [DONE]\n\n";
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{chunk}"
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (format!("http://{addr}/v1"), seen)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn a_chat_is_one_exported_trace_and_its_upstream_call_carries_traceparent() {
    let (otlp, exports) = otlp_receiver().await;
    let (base_url, parents) = upstream().await;
    let db = TestDatabase::new();
    let server = Binary::start(
        &db,
        &[
            ("PAAS_ALLOW_PRIVATE_UPSTREAMS", "true"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "agent-paas-test"),
        ],
    )
    .await;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let token = server.signup("traced").await;
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    post(
        "/api/v1/agents",
        json!({"name": "calc", "tools": ["calculator"]}),
    )
    .await
    .unwrap();
    let provider: Value = post(
        "/api/v1/providers",
        json!({"name": "up", "kind": "openai", "base_url": base_url, "api_key": "sk-test", "default_model": "gpt-test"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    post(
        "/api/v1/agents",
        json!({"name": "remote", "provider_id": provider["id"]}),
    )
    .await
    .unwrap();
    for (agent, message) in [("calc", "what is 6 * 7?"), ("remote", "hi")] {
        let text = post(
            "/api/v1/chat/completions",
            json!({"agent": agent, "message": message}),
        )
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        assert!(text.contains("event: done"), "{text}");
    }

    // The upstream call carried the chat's trace context.
    let parent = parents.lock().unwrap().first().cloned().unwrap_or_default();
    let parts: Vec<&str> = parent.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent: {parent:?}");
    assert_eq!((parts[0], parts[1].len(), parts[2].len()), ("00", 32, 16));
    let trace_id = hex(parts[1]);

    // Every span of a chat reaches the OTLP receiver: the HTTP request, the quota decision,
    // the run, each model call with GenAI attributes, each tool call — in the same trace.
    let expected: [&[u8]; 8] = [
        b"/api/v1/chat/completions",
        b"quota.admit",
        b"agent.run",
        b"chat mock",
        b"execute_tool calculator",
        b"chat gpt-test",
        b"gen_ai.usage.input_tokens",
        b"agent-paas-test",
    ];
    let mut missing = Vec::new();
    for _ in 0..100 {
        let all: Vec<u8> = exports.lock().unwrap().concat();
        missing = expected
            .iter()
            .filter(|needle| !contains(&all, needle))
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        if missing.is_empty() && contains(&all, &trace_id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(missing.is_empty(), "spans not exported: {missing:?}");
    let all: Vec<u8> = exports.lock().unwrap().concat();
    assert!(
        contains(&all, &trace_id),
        "the upstream's traceparent names an exported trace"
    );
    drop(server);
}
