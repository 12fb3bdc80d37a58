//! The GLM client against a fixture speaking Zhipu's v4 streaming format, quirks included.

use paas_llm::{
    FinishReason, GlmConfig, GlmProvider, LlmError, Provider, StreamEvent, ToolCall, Usage, collect,
};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::fixture::{Fixture, Reply, drain, fast_policy, request};

const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0.AbCdEfGhIjKlMnOp";

fn provider(fixture: &Fixture) -> GlmProvider {
    GlmProvider::new(GlmConfig {
        base_url: fixture.url("/api/paas/v4"),
        api_key: SecretString::from(KEY),
        http: fast_policy(),
        outbound: fixture.outbound(),
    })
    .unwrap()
}

/// One chunk as GLM sends it: no `object`, no `logprobs`, `finish_reason` only when set.
fn chunk(delta: Value, finish_reason: Option<&str>, usage: Option<(u32, u32)>) -> String {
    let mut choice = json!({"index": 0, "delta": delta});
    if let Some(reason) = finish_reason {
        choice["finish_reason"] = json!(reason);
    }
    let mut chunk = json!({
        "id": "2024101714523491b3ab1cc8a94a4c",
        "created": 1729147954,
        "model": "glm-4-plus",
        "choices": [choice],
    });
    if let Some((prompt, completion)) = usage {
        chunk["usage"] = json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        });
    }
    format!("data: {chunk}\n\n")
}

const DONE: &str = "data: [DONE]\n\n";

async fn events(body: &str) -> (Vec<StreamEvent>, Fixture) {
    let fixture = Fixture::start(vec![Reply::sse(body)]).await;
    let events = drain(provider(&fixture).stream(request()).await.unwrap())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    (events, fixture)
}

fn weather_call(id: &str, arguments: &str) -> StreamEvent {
    StreamEvent::ToolCall(ToolCall {
        id: id.into(),
        name: "get_weather".into(),
        arguments: arguments.into(),
    })
}

#[tokio::test]
async fn text_and_usage_in_the_last_chunk_without_stream_options() {
    let body = chunk(json!({"role": "assistant", "content": "你好"}), None, None)
        + &chunk(json!({"role": "assistant", "content": "！"}), None, None)
        + &chunk(
            json!({"role": "assistant", "content": ""}),
            Some("stop"),
            Some((8, 3)),
        )
        + DONE;
    let (events, fixture) = events(&body).await;
    assert_eq!(
        events,
        vec![
            StreamEvent::Text("你好".into()),
            StreamEvent::Text("！".into()),
            StreamEvent::Usage(Usage {
                prompt_tokens: 8,
                completion_tokens: 3,
                estimated: false
            }),
            StreamEvent::Finish(FinishReason::Stop),
        ]
    );
    let sent = &fixture.requests()[0];
    assert_eq!(sent.path, "/api/paas/v4/chat/completions");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let body = sent.json();
    assert_eq!(body["stream"], json!(true));
    assert!(
        body.get("stream_options").is_none(),
        "GLM is not sent stream_options"
    );
}

#[tokio::test]
async fn a_whole_call_in_one_fragment() {
    // What GLM-4 actually sends: the call complete, with the finish reason and usage.
    let body = chunk(
        json!({"role": "assistant", "tool_calls": [{
            "id": "call_9042716359012397823",
            "index": 0,
            "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"北京\"}"}
        }]}),
        Some("tool_calls"),
        Some((140, 21)),
    ) + DONE;
    let (events, _) = events(&body).await;
    assert_eq!(
        events,
        vec![
            weather_call("call_9042716359012397823", "{\"city\": \"北京\"}"),
            StreamEvent::Usage(Usage {
                prompt_tokens: 140,
                completion_tokens: 21,
                estimated: false
            }),
            StreamEvent::Finish(FinishReason::ToolCalls),
        ]
    );
}

#[tokio::test]
async fn fragments_without_index_repeating_the_id_are_joined() {
    let mut body = String::new();
    for piece in ["{\"city\"", ": \"上", "海\"}"] {
        body += &chunk(
            json!({"role": "assistant", "tool_calls": [{
                "id": "call_2024101714",
                "type": "function",
                "function": {"name": "get_weather", "arguments": piece}
            }]}),
            None,
            None,
        );
    }
    body += &chunk(
        json!({"role": "assistant", "tool_calls": [{
            "id": "call_2024101715",
            "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"广州\"}"}
        }]}),
        None,
        None,
    );
    body += &chunk(
        json!({"role": "assistant"}),
        Some("tool_calls"),
        Some((150, 40)),
    );
    body += DONE;
    let (events, _) = events(&body).await;
    assert_eq!(
        &events[..2],
        &[
            weather_call("call_2024101714", "{\"city\": \"上海\"}"),
            weather_call("call_2024101715", "{\"city\": \"广州\"}"),
        ]
    );
    assert_eq!(events[3], StreamEvent::Finish(FinishReason::ToolCalls));
}

#[tokio::test]
async fn fragments_with_neither_index_nor_id_join_the_most_recent_call() {
    let body = chunk(
        json!({"role": "assistant", "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": ""}
        }]}),
        None,
        None,
    ) + &chunk(
        json!({"role": "assistant", "tool_calls": [{"function": {"arguments": "{\"city\":"}}]}),
        None,
        None,
    ) + &chunk(
        json!({"role": "assistant", "tool_calls": [{"function": {"arguments": "\"深圳\"}"}}]}),
        None,
        None,
    ) + &chunk(json!({"role": "assistant"}), Some("tool_calls"), None)
        + DONE;
    let (events, _) = events(&body).await;
    assert_eq!(events[0], weather_call("call_1", "{\"city\":\"深圳\"}"));
    assert!(matches!(
        events[1],
        StreamEvent::Usage(Usage {
            estimated: true,
            ..
        })
    ));
}

#[tokio::test]
async fn reasoning_content_and_the_sensitive_finish() {
    let body = chunk(
        json!({"role": "assistant", "reasoning_content": "用户在打招呼。"}),
        None,
        None,
    ) + &chunk(json!({"role": "assistant", "content": "你好"}), None, None)
        + &chunk(
            json!({"role": "assistant", "content": ""}),
            Some("sensitive"),
            Some((5, 6)),
        )
        + DONE;
    let (events, _) = events(&body).await;
    assert_eq!(events[0], StreamEvent::Reasoning("用户在打招呼。".into()));
    assert_eq!(events[1], StreamEvent::Text("你好".into()));
    assert_eq!(events[3], StreamEvent::Finish(FinishReason::ContentFilter));
}

#[tokio::test]
async fn glm_errors_are_mapped() {
    let fixture = Fixture::start(vec![Reply::status(
        429,
        r#"{"error":{"code":"1302","message":"您当前使用该API的并发数过高，请降低并发，或联系客服增加限额。"}}"#,
    )])
    .await;
    let err = provider(&fixture).stream(request()).await.err().unwrap();
    assert_eq!(err.code(), "upstream_rate_limited");
    assert_eq!(fixture.count(), 3);

    let fixture = Fixture::start(vec![Reply::status(
        400,
        r#"{"error":{"code":"1211","message":"模型不存在，请检查模型代码。"}}"#,
    )])
    .await;
    let err = provider(&fixture).stream(request()).await.err().unwrap();
    assert_eq!(
        err,
        LlmError::Rejected("模型不存在，请检查模型代码。".into())
    );

    // An inference failure mid-answer is an error, not a short answer.
    let body = chunk(json!({"role": "assistant", "content": "今天"}), None, None)
        + &chunk(
            json!({"role": "assistant", "content": ""}),
            Some("network_error"),
            None,
        );
    let fixture = Fixture::start(vec![Reply::sse(&body)]).await;
    let stream = provider(&fixture).stream(request()).await.unwrap();
    assert_eq!(
        collect(stream).await.unwrap_err().code(),
        "upstream_unavailable"
    );
}
