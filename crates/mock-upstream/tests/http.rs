//! The wire format, over real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use common::Mock;
use paas_mock_upstream::MockConfig;

fn chat(stream: bool, include_usage: bool) -> Value {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"},
        ],
        "stream": stream,
    });
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// The events of an SSE body, each with when it arrived.
async fn events(response: reqwest::Response) -> Vec<(Instant, String)> {
    let mut body = response.bytes_stream();
    let mut pending = String::new();
    let mut events = Vec::new();
    while let Some(bytes) = body.next().await {
        pending.push_str(std::str::from_utf8(&bytes.unwrap()).unwrap());
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let data = event.trim_end().strip_prefix("data: ").unwrap().to_owned();
            events.push((Instant::now(), data));
        }
    }
    assert!(pending.is_empty(), "trailing bytes: {pending:?}");
    events
}

fn assert_chunk_shape(chunk: &Value) {
    assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
    assert!(chunk["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(chunk["created"].as_u64().unwrap() > 0);
    assert_eq!(chunk["model"], "gpt-4o-mini");
    assert!(chunk["choices"].is_array());
}

#[tokio::test]
async fn a_non_streamed_answer_is_a_chat_completion_with_usage() {
    let mock = Mock::start(MockConfig {
        chunks: 5,
        ..Mock::config()
    })
    .await;
    let body = chat(false, false);
    let response = reqwest::Client::new()
        .post(mock.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert!(answer["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(answer["model"], "gpt-4o-mini");
    let choice = &answer["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "tok0 tok1 tok2 tok3 tok4");
    assert_eq!(choice["finish_reason"], "stop");
    let usage = &answer["usage"];
    let sent = u64::try_from(serde_json::to_vec(&body).unwrap().len()).unwrap();
    assert_eq!(usage["prompt_tokens"], sent.div_ceil(4));
    assert_eq!(usage["completion_tokens"], 5);
    assert_eq!(usage["total_tokens"], sent.div_ceil(4) + 5);

    // max_tokens below the chunk count cuts the answer short.
    let mut short = chat(false, false);
    short["max_tokens"] = json!(2);
    let answer: Value = reqwest::Client::new()
        .post(mock.url("/v1/chat/completions"))
        .json(&short)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "tok0 tok1");
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(answer["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn a_stream_sends_its_chunks_an_interval_apart_then_finish_usage_and_done() {
    let chunks = 8u32;
    let interval = Duration::from_millis(25);
    let mock = Mock::start(MockConfig {
        chunks,
        chunk_interval: interval,
        ..Mock::config()
    })
    .await;
    let response = reqwest::Client::new()
        .post(mock.url("/v1/chat/completions"))
        .json(&chat(true, true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = events(response).await;
    let n = usize::try_from(chunks).unwrap();
    assert_eq!(events.len(), n + 3, "{events:?}");
    assert_eq!(events[n + 2].1, "[DONE]");
    let parsed: Vec<Value> = events[..n + 2]
        .iter()
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .collect();
    for chunk in &parsed {
        assert_chunk_shape(chunk);
    }
    let id = &parsed[0]["id"];
    assert!(parsed.iter().all(|c| &c["id"] == id));

    let mut text = String::new();
    for (i, chunk) in parsed[..n].iter().enumerate() {
        let choice = &chunk["choices"][0];
        assert_eq!(choice["index"], 0);
        assert!(choice["finish_reason"].is_null());
        if i == 0 {
            assert_eq!(choice["delta"]["role"], "assistant");
        }
        text.push_str(choice["delta"]["content"].as_str().unwrap());
    }
    assert_eq!(text, "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7");

    let finish = &parsed[n]["choices"][0];
    assert_eq!(finish["finish_reason"], "stop");
    assert_eq!(finish["delta"], json!({}));

    let usage_chunk = &parsed[n + 1];
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], chunks);
    assert!(usage_chunk["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    // Loosely: at least 80 % of (N - 1) intervals between the first and the last chunk.
    let spread = events[n - 1].0 - events[0].0;
    let expected = interval * (chunks - 1);
    assert!(
        spread >= expected * 4 / 5,
        "chunks spread over {spread:?}, expected about {expected:?}"
    );
}

#[tokio::test]
async fn without_include_usage_there_is_no_usage_chunk() {
    let mock = Mock::start(MockConfig {
        chunks: 3,
        ..Mock::config()
    })
    .await;
    let response = reqwest::Client::new()
        .post(mock.url("/v1/chat/completions"))
        .json(&chat(true, false))
        .send()
        .await
        .unwrap();
    let events = events(response).await;
    assert_eq!(events.len(), 3 + 1 + 1, "{events:?}");
    assert_eq!(events[4].1, "[DONE]");
    for (_, data) in &events[..4] {
        let chunk: Value = serde_json::from_str(data).unwrap();
        assert_chunk_shape(&chunk);
        assert!(chunk.get("usage").is_none(), "{chunk}");
        assert_eq!(chunk["choices"].as_array().unwrap().len(), 1);
    }
    let finish: Value = serde_json::from_str(&events[3].1).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn headers_override_the_latency_and_the_chunks() {
    let mock = Mock::start(Mock::config()).await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let response = client
        .post(mock.url("/v1/chat/completions"))
        .header("x-mock-latency-ms", "150")
        .header("x-mock-chunks", "2")
        .json(&chat(true, true))
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(120),
        "the head came after {:?}",
        started.elapsed()
    );
    let events = events(response).await;
    assert_eq!(events.len(), 2 + 3);

    let started = Instant::now();
    let answer: Value = client
        .post(mock.url("/v1/chat/completions"))
        .header("x-mock-latency-ms", "100")
        .json(&chat(false, false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(80));
    assert_eq!(answer["usage"]["completion_tokens"], 20);

    let response = client
        .post(mock.url("/v1/chat/completions"))
        .header("x-mock-latency-ms", "soon")
        .json(&chat(false, false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["param"], "x-mock-latency-ms");
}

#[tokio::test]
async fn malformed_requests_get_openai_errors() {
    let mock = Mock::start(Mock::config()).await;
    let client = reqwest::Client::new();
    let cases: [(&str, Value); 4] = [
        ("{\"model\": \"m\", \"messages\": [", Value::Null),
        (
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
            Value::Null,
        ),
        ("{\"model\": \"m\", \"messages\": {}}", Value::Null),
        ("{\"model\": \"m\", \"messages\": []}", json!("messages")),
    ];
    for (body, param) in cases {
        let response = client
            .post(mock.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        let error = error["error"].as_object().unwrap();
        let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "message", "param", "type"], "{body}");
        assert!(!error["message"].as_str().unwrap().is_empty());
        assert_eq!(error["type"], "invalid_request_error");
        assert_eq!(error["param"], param);
    }

    let response = client.get(mock.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn models_and_health() {
    let mock = Mock::start(Mock::config()).await;
    let client = reqwest::Client::new();
    let models: Value = client
        .get(mock.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "mock-gpt");
    assert_eq!(models["data"][0]["object"], "model");
    let health = client.get(mock.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
}
