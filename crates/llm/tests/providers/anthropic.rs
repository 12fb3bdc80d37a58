//! The Anthropic client against a fixture speaking the Messages streaming format.

use paas_llm::{
    AnthropicConfig, AnthropicProvider, ChatMessage, FinishReason, LlmError, Provider, StreamEvent,
    ToolCall, ToolSpec, Usage, collect,
};
use secrecy::SecretString;
use serde_json::json;

use crate::fixture::{End, Fixture, Reply, drain, fast_policy, request};

const KEY: &str = "sk-ant-api03-fixture-secret";

fn provider(fixture: &Fixture) -> AnthropicProvider {
    AnthropicProvider::new(AnthropicConfig {
        base_url: fixture.url(""),
        api_key: SecretString::from(KEY),
        http: fast_policy(),
        outbound: fixture.outbound(),
    })
    .unwrap()
}

/// Extended thinking, text, then a tool call whose input arrives in pieces, as the API streams
/// it (including the `ping` and the `signature_delta`).
const THINK_SAY_CALL: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":100,"output_tokens":2,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user wants the weather. "}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"I will call get_weather."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Okay, let's check"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":" the weather."}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":" \"San Francisco, CA\""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":", \"unit\": \"fahrenheit\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: content_block_start
data: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_02NoArguments","name":"get_time","input":{}}}

event: content_block_stop
data: {"type":"content_block_stop","index":3}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"#;

#[tokio::test]
async fn thinking_text_tool_use_and_usage() {
    let fixture = Fixture::start(vec![Reply::sse(THINK_SAY_CALL)]).await;
    let events: Vec<StreamEvent> = drain(provider(&fixture).stream(request()).await.unwrap())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        events,
        vec![
            StreamEvent::Reasoning("The user wants the weather. ".into()),
            StreamEvent::Reasoning("I will call get_weather.".into()),
            StreamEvent::Text("Okay, let's check".into()),
            StreamEvent::Text(" the weather.".into()),
            StreamEvent::ToolCall(ToolCall {
                id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
                name: "get_weather".into(),
                arguments: r#"{"location": "San Francisco, CA", "unit": "fahrenheit"}"#.into(),
            }),
            StreamEvent::ToolCall(ToolCall {
                id: "toolu_02NoArguments".into(),
                name: "get_time".into(),
                arguments: "{}".into(),
            }),
            StreamEvent::Usage(Usage {
                prompt_tokens: 572,
                completion_tokens: 89,
                estimated: false
            }),
            StreamEvent::Finish(FinishReason::ToolCalls),
        ]
    );
}

#[tokio::test]
async fn the_request_has_the_messages_headers_and_shape() {
    let fixture = Fixture::start(vec![Reply::sse(THINK_SAY_CALL)]).await;
    let mut req = request();
    req.messages.push(ChatMessage::assistant_tool_calls(
        "Checking both.",
        vec![
            ToolCall {
                id: "toolu_a".into(),
                name: "get_weather".into(),
                arguments: r#"{"location":"Paris"}"#.into(),
            },
            ToolCall {
                id: "toolu_b".into(),
                name: "get_weather".into(),
                arguments: "{\"location\":".into(),
            },
        ],
    ));
    req.messages
        .push(ChatMessage::tool_result("toolu_a", "21°C"));
    req.messages
        .push(ChatMessage::tool_result("toolu_b", "error: bad arguments"));
    req.tools = vec![ToolSpec {
        name: "get_weather".into(),
        description: "Current weather".into(),
        parameters: json!({"type": "object", "properties": {"location": {"type": "string"}}}),
    }];
    collect(provider(&fixture).stream(req).await.unwrap())
        .await
        .unwrap();
    let sent = &fixture.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(
        sent.json(),
        json!({
            "model": "test-model",
            "max_tokens": 4096,
            "stream": true,
            "system": "You are terse.",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Say hello."}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking both."},
                    {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"location": "Paris"}},
                    {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_a", "content": "21°C"},
                    {"type": "tool_result", "tool_use_id": "toolu_b", "content": "error: bad arguments"},
                ]},
            ],
            "tools": [{
                "name": "get_weather",
                "description": "Current weather",
                "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
            }],
        })
    );
}

const START: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

"#;

#[tokio::test]
async fn an_error_event_ends_the_stream_with_the_matching_error() {
    let overloaded = format!(
        "{START}event: error\ndata: {{\"type\": \"error\", \"error\": {{\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}}}\n\n"
    );
    let fixture = Fixture::start(vec![Reply::sse(&overloaded)]).await;
    let items = drain(provider(&fixture).stream(request()).await.unwrap()).await;
    assert_eq!(
        items,
        vec![
            Ok(StreamEvent::Text("Hello".into())),
            Err(LlmError::Unavailable("Overloaded".into())),
        ]
    );
    assert_eq!(fixture.count(), 1);

    let limited = format!(
        "{START}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"rate_limit_error\",\"message\":\"Number of request tokens has exceeded your per-minute rate limit\"}}}}\n\n"
    );
    let fixture = Fixture::start(vec![Reply::sse(&limited)]).await;
    let err = collect(provider(&fixture).stream(request()).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(err, LlmError::RateLimited { retry_after: None });

    let odd = format!(
        "{START}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"mystery_error\",\"message\":\"Something odd\"}}}}\n\n"
    );
    let fixture = Fixture::start(vec![Reply::sse(&odd)]).await;
    let err = collect(provider(&fixture).stream(request()).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(err, LlmError::BadResponse("Something odd".into()));
}

#[tokio::test]
async fn a_cut_message_is_a_bad_response_and_an_overloaded_529_is_retried() {
    let fixture = Fixture::start(vec![Reply::sse_then(START, End::Cut)]).await;
    let items = drain(provider(&fixture).stream(request()).await.unwrap()).await;
    assert_eq!(items[0], Ok(StreamEvent::Text("Hello".into())));
    assert!(
        matches!(items[1], Err(LlmError::BadResponse(_))),
        "{items:?}"
    );
    assert_eq!(fixture.count(), 1);

    let done = format!(
        "{START}event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
         event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"max_tokens\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":1}}}}\n\n\
         event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
    );
    let fixture = Fixture::start(vec![
        Reply::status(
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ),
        Reply::sse(&done),
    ])
    .await;
    let response = collect(provider(&fixture).stream(request()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(response.text, "Hello");
    assert_eq!(response.finish_reason, FinishReason::Length);
    assert_eq!(
        response.usage,
        Usage {
            prompt_tokens: 12,
            completion_tokens: 1,
            estimated: false
        }
    );
    assert_eq!(fixture.count(), 2);
}

#[tokio::test]
async fn a_refused_key_is_unauthorized() {
    let fixture = Fixture::start(vec![Reply::status(
        401,
        r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
    )])
    .await;
    let err = provider(&fixture).stream(request()).await.err().unwrap();
    assert_eq!(
        err,
        LlmError::Unauthorized("HTTP 401 (authentication_error)".into())
    );
    assert_eq!(fixture.count(), 1);
}
