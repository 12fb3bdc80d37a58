//! The OpenAI client against a fixture speaking Chat Completions streaming.

use paas_llm::{
    ChatMessage, FinishReason, LlmError, OpenAiConfig, OpenAiProvider, Provider, StreamEvent,
    ToolCall, ToolSpec, Usage, collect, estimate_prompt_tokens, estimate_tokens,
};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::fixture::{End, Fixture, Part, Reply, drain, fast_policy, request};

pub const KEY: &str = "sk-proj-fixture-secret-0123456789";

pub fn provider(fixture: &Fixture) -> OpenAiProvider {
    OpenAiProvider::new(OpenAiConfig {
        base_url: fixture.url("/v1"),
        api_key: Some(SecretString::from(KEY)),
        http: fast_policy(),
        outbound: fixture.outbound(),
    })
    .unwrap()
}

/// One `chat.completion.chunk` event as OpenAI sends it.
pub fn chunk(delta: Value, finish_reason: Option<&str>) -> String {
    let chunk = json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        "usage": null,
    });
    format!("data: {chunk}\n\n")
}

/// The last chunk when `stream_options.include_usage` is set: no choices, the usage.
pub fn usage_chunk(prompt: u32, completion: u32) -> String {
    let chunk = json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        },
    });
    format!("data: {chunk}\n\n")
}

pub const DONE: &str = "data: [DONE]\n\n";

/// A short answer as OpenAI streams it, byte for byte.
pub const HELLO: &str = r#"data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"content":" there"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"content":"!"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":3,"total_tokens":22,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

data: [DONE]

"#;

fn text(s: &str) -> StreamEvent {
    StreamEvent::Text(s.into())
}

#[tokio::test]
async fn a_plain_stream_yields_text_then_the_reported_usage_then_finish() {
    let fixture = Fixture::start(vec![Reply::sse(HELLO)]).await;
    let mut req = request();
    req.temperature = Some(0.3);
    req.max_tokens = Some(256);
    let items = drain(provider(&fixture).stream(req).await.unwrap()).await;
    let events: Vec<StreamEvent> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        events,
        vec![
            text("Hello"),
            text(" there"),
            text("!"),
            StreamEvent::Usage(Usage {
                prompt_tokens: 19,
                completion_tokens: 3,
                estimated: false
            }),
            StreamEvent::Finish(FinishReason::Stop),
        ]
    );

    let sent = fixture.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].path, "/v1/chat/completions");
    assert_eq!(
        sent[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(sent[0].header("content-type"), Some("application/json"));
    assert_eq!(sent[0].header("accept"), Some("text/event-stream"));
    assert_eq!(
        sent[0].json(),
        json!({
            "model": "test-model",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Say hello."},
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0.3,
            "max_tokens": 256,
        })
    );
}

#[tokio::test]
async fn tools_and_a_tool_conversation_go_out_in_the_openai_format() {
    let fixture = Fixture::start(vec![Reply::sse(HELLO)]).await;
    let mut req = request();
    req.tools = vec![ToolSpec {
        name: "get_weather".into(),
        description: "Current weather in a city".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    }];
    req.messages.push(ChatMessage::assistant_tool_calls(
        "",
        vec![ToolCall {
            id: "call_abc".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        }],
    ));
    req.messages
        .push(ChatMessage::tool_result("call_abc", r#"{"temp_c":21}"#));
    collect(provider(&fixture).stream(req).await.unwrap())
        .await
        .unwrap();
    let body = fixture.requests()[0].json();
    assert_eq!(
        body["tools"],
        json!([{"type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }}])
    );
    assert_eq!(
        body["messages"][2],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
        ]})
    );
    assert_eq!(
        body["messages"][3],
        json!({"role": "tool", "tool_call_id": "call_abc", "content": "{\"temp_c\":21}"})
    );
    assert!(body.get("temperature").is_none() && body.get("max_tokens").is_none());
}

#[tokio::test]
async fn tool_calls_split_into_fragments_are_assembled_by_index() {
    // Two parallel calls; the arguments of each come in many pieces, interleaved.
    let mut body = chunk(
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"index": 0, "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
        ], "refusal": null}),
        None,
    );
    for piece in ["{\"", "city", "\":\"", "Par", "is\"}"] {
        body += &chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            None,
        );
    }
    body += &chunk(
        json!({"tool_calls": [
            {"index": 1, "id": "call_ABwp31hH5Sq8YDStgQz4Kpws", "type": "function", "function": {"name": "get_time", "arguments": ""}}
        ]}),
        None,
    );
    for (index, piece) in [(1, "{\"tz\":"), (1, "\"Europe/"), (1, "Paris\"}")] {
        body += &chunk(
            json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
            None,
        );
    }
    body += &chunk(json!({}), Some("tool_calls"));
    body += &usage_chunk(82, 41);
    body += DONE;
    let fixture = Fixture::start(vec![Reply::sse(&body)]).await;
    let events: Vec<StreamEvent> = drain(provider(&fixture).stream(request()).await.unwrap())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        events,
        vec![
            StreamEvent::ToolCall(ToolCall {
                id: "call_DdmO9pD3xa9XTPNJ32zg2hcA".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into(),
            }),
            StreamEvent::ToolCall(ToolCall {
                id: "call_ABwp31hH5Sq8YDStgQz4Kpws".into(),
                name: "get_time".into(),
                arguments: r#"{"tz":"Europe/Paris"}"#.into(),
            }),
            StreamEvent::Usage(Usage {
                prompt_tokens: 82,
                completion_tokens: 41,
                estimated: false
            }),
            StreamEvent::Finish(FinishReason::ToolCalls),
        ]
    );
}

#[tokio::test]
async fn a_server_that_reports_no_usage_gets_an_estimate_marked_as_such() {
    // What vLLM or an older server sends when it ignores stream_options.
    let body = chunk(
        json!({"role": "assistant", "content": "Hello there, "}),
        None,
    ) + &chunk(json!({"content": "how can I help?"}), None)
        + &chunk(json!({}), Some("stop"))
        + DONE;
    let fixture = Fixture::start(vec![Reply::sse(&body)]).await;
    let req = request();
    let response = collect(provider(&fixture).stream(req.clone()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(response.text, "Hello there, how can I help?");
    assert_eq!(
        response.usage,
        Usage {
            prompt_tokens: estimate_prompt_tokens(&req),
            completion_tokens: estimate_tokens("Hello there, how can I help?"),
            estimated: true,
        }
    );
    assert_eq!(response.finish_reason, FinishReason::Stop);
}

#[tokio::test]
async fn reasoning_content_is_reasoning_not_text() {
    // DeepSeek-R1 style: the reasoning first, then the answer.
    let body = chunk(
        json!({"role": "assistant", "content": null, "reasoning_content": ""}),
        None,
    ) + &chunk(
        json!({"content": null, "reasoning_content": "The user wants "}),
        None,
    ) + &chunk(
        json!({"content": null, "reasoning_content": "a greeting."}),
        None,
    ) + &chunk(json!({"content": "Hi!", "reasoning_content": null}), None)
        + &chunk(json!({"content": ""}), Some("length"))
        + &usage_chunk(12, 9)
        + DONE;
    let fixture = Fixture::start(vec![Reply::sse(&body)]).await;
    let events: Vec<StreamEvent> = drain(provider(&fixture).stream(request()).await.unwrap())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        events,
        vec![
            StreamEvent::Reasoning("The user wants ".into()),
            StreamEvent::Reasoning("a greeting.".into()),
            text("Hi!"),
            StreamEvent::Usage(Usage {
                prompt_tokens: 12,
                completion_tokens: 9,
                estimated: false
            }),
            StreamEvent::Finish(FinishReason::Length),
        ]
    );
}

#[tokio::test]
async fn a_cut_stream_ends_with_an_error_after_what_was_yielded_and_is_not_retried() {
    let body = chunk(json!({"role": "assistant", "content": "Once upon"}), None)
        + &chunk(json!({"content": " a time"}), None);
    let fixture = Fixture::start(vec![Reply::sse_then(&body, End::Cut), Reply::sse(HELLO)]).await;
    let items = drain(provider(&fixture).stream(request()).await.unwrap()).await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(items[0], Ok(text("Once upon")));
    assert_eq!(items[1], Ok(text(" a time")));
    assert!(
        matches!(&items[2], Err(LlmError::BadResponse(_))),
        "{:?}",
        items[2]
    );
    assert_eq!(
        fixture.count(),
        1,
        "a stream already yielding is never retried"
    );
}

#[tokio::test]
async fn a_stream_closed_cleanly_but_early_is_a_bad_response() {
    // The body ends properly (terminating chunk) but without finish_reason or [DONE].
    let body = chunk(json!({"role": "assistant", "content": "Once upon"}), None);
    let fixture = Fixture::start(vec![Reply::sse(&body)]).await;
    let items = drain(provider(&fixture).stream(request()).await.unwrap()).await;
    assert_eq!(items[0], Ok(text("Once upon")));
    assert!(matches!(items.last(), Some(Err(LlmError::BadResponse(_)))));
    assert_eq!(items.len(), 2);
}

#[tokio::test]
async fn a_stream_that_goes_quiet_times_out() {
    let body = chunk(json!({"role": "assistant", "content": "Thinking"}), None);
    let fixture = Fixture::start(vec![Reply::sse_then(&body, End::Stall)]).await;
    let stream = provider(&fixture).stream(request()).await.unwrap();
    let (items, elapsed) = crate::fixture::timed(drain(stream)).await;
    assert_eq!(items[0], Ok(text("Thinking")));
    assert!(
        matches!(&items[1], Err(LlmError::Timeout(_))),
        "{:?}",
        items[1]
    );
    assert_eq!(items.len(), 2);
    assert!(elapsed < std::time::Duration::from_secs(1), "{elapsed:?}");
    assert_eq!(fixture.count(), 1);
}

#[tokio::test]
async fn a_malformed_chunk_is_a_bad_response() {
    let body = chunk(json!({"role": "assistant", "content": "Hel"}), None)
        + "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"\n\n"
        + &chunk(json!({}), Some("stop"))
        + DONE;
    let fixture = Fixture::start(vec![Reply::sse(&body)]).await;
    let items = drain(provider(&fixture).stream(request()).await.unwrap()).await;
    assert_eq!(items[0], Ok(text("Hel")));
    let Some(Err(err)) = items.get(1) else {
        panic!("expected an error, got {items:?}")
    };
    assert_eq!(err.code(), "upstream_bad_response");
    assert!(
        !err.to_string().contains("lo\""),
        "no response data in errors: {err}"
    );
    assert_eq!(items.len(), 2);
}

#[tokio::test]
async fn an_error_object_inside_the_stream_is_mapped() {
    let body = chunk(json!({"role": "assistant", "content": "Partial"}), None)
        + "data: {\"error\":{\"message\":\"The server had an error while processing your request. Sorry about that!\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n";
    let fixture = Fixture::start(vec![Reply::sse(&body)]).await;
    let items = drain(provider(&fixture).stream(request()).await.unwrap()).await;
    assert_eq!(items[0], Ok(text("Partial")));
    assert!(
        matches!(&items[1], Err(LlmError::Unavailable(m)) if m.contains("The server had an error")),
        "{:?}",
        items[1]
    );
    assert_eq!(items.len(), 2);

    let limited = "data: {\"error\":{\"message\":\"Rate limit reached for gpt-4o\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\n";
    let fixture = Fixture::start(vec![Reply::sse(limited)]).await;
    let items = drain(provider(&fixture).stream(request()).await.unwrap()).await;
    assert_eq!(
        items,
        vec![Err(LlmError::RateLimited { retry_after: None })]
    );
}

#[tokio::test]
async fn a_server_without_a_key_gets_no_authorization_header() {
    let fixture = Fixture::start(vec![Reply::sse(HELLO)]).await;
    let local = OpenAiProvider::new(OpenAiConfig {
        base_url: fixture.url("/v1/"),
        api_key: None,
        http: fast_policy(),
        outbound: fixture.outbound(),
    })
    .unwrap();
    assert_eq!(local.kind(), "openai");
    collect(local.stream(request()).await.unwrap())
        .await
        .unwrap();
    let sent = &fixture.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), None);
}

#[tokio::test]
async fn the_key_never_shows_in_debug_output() {
    let fixture = Fixture::start(vec![Reply::sse(HELLO)]).await;
    let debug = format!("{:?}", provider(&fixture));
    assert!(!debug.contains(KEY), "{debug}");
    assert!(debug.contains("chat/completions"));
}

#[tokio::test]
async fn the_idle_timeout_is_per_chunk_not_for_the_whole_answer() {
    // Four gaps of 200 ms: longer than the 300 ms idle timeout in total, never in one gap.
    let pause = || Part::Pause(std::time::Duration::from_millis(200));
    let mut parts = Vec::new();
    for word in ["Slow", " and", " steady", "."] {
        parts.push(pause());
        parts.push(Part::Data(chunk(json!({"content": word}), None)));
    }
    parts.push(Part::Data(
        chunk(json!({}), Some("stop")) + &usage_chunk(10, 4) + DONE,
    ));
    let fixture = Fixture::start(vec![Reply::Sse {
        parts,
        end: End::Complete,
    }])
    .await;
    let response = collect(provider(&fixture).stream(request()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(response.text, "Slow and steady.");
    assert_eq!(response.finish_reason, FinishReason::Stop);
}

#[tokio::test]
async fn connections_are_kept_alive_between_calls() {
    let fixture = Fixture::start(vec![Reply::sse(HELLO)]).await;
    let provider = provider(&fixture);
    for _ in 0..3 {
        let response = collect(provider.stream(request()).await.unwrap())
            .await
            .unwrap();
        assert_eq!(response.text, "Hello there!");
    }
    let connections: Vec<usize> = fixture.requests().iter().map(|r| r.connection).collect();
    assert_eq!(
        connections,
        vec![0, 0, 0],
        "one pooled connection for all three calls"
    );
}
