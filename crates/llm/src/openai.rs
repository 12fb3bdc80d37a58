//! OpenAI Chat Completions, and every server that speaks it (vLLM, Ollama, DeepSeek, LiteLLM…).
//!
//! `POST {base}/chat/completions` with `stream: true` and `stream_options.include_usage`, so the
//! last chunk carries the usage. The wire handling here is shared with [`crate::glm`], which
//! speaks the same format with a few quirks (a dialect):
//!
//! - text arrives in `choices[0].delta.content`, reasoning (DeepSeek, GLM, vLLM) in
//!   `delta.reasoning_content` or `delta.reasoning`;
//! - tool calls arrive as fragments in `delta.tool_calls[]`: the first carries the `id` and the
//!   function `name`, the following ones pieces of `function.arguments`. They are assembled by
//!   `index`, else by `id`, else appended to the most recent call, and yielded complete when the
//!   response ends, before the usage;
//! - `data: [DONE]` ends the stream. A body that ends without it and without a
//!   `finish_reason` was cut: that is an error, not a short answer.

use std::fmt;

use reqwest::Client;
use reqwest::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use paas_net::OutboundPolicy;

use crate::decode::{Decoder, Tally, drive, json};
use crate::http::{self, ErrorBody, HttpPolicy};
use crate::types::BoxFuture;
use crate::{
    ChatMessage, ChatRequest, EventStream, FinishReason, LlmError, MessageRole, Provider,
    StreamEvent, ToolCall,
};

/// Where and how to reach an OpenAI-compatible server.
#[derive(Clone, Debug)]
pub struct OpenAiConfig {
    /// The API root, up to and including the version: `https://api.openai.com/v1`,
    /// `http://vllm.internal:8000/v1`, `https://api.deepseek.com/v1`…
    pub base_url: Url,
    /// Sent as `Authorization: Bearer …`. Local servers (vLLM, Ollama) often need none.
    pub api_key: Option<SecretString>,
    pub http: HttpPolicy,
    pub outbound: OutboundPolicy,
}

/// The OpenAI (Chat Completions) client.
pub struct OpenAiProvider {
    inner: Compatible,
}

impl OpenAiProvider {
    /// OpenAI's own API root.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.openai.com/v1";

    /// Checks the base URL against the outbound policy and builds the client; no request is
    /// made.
    pub fn new(config: OpenAiConfig) -> Result<Self, LlmError> {
        Ok(Self {
            inner: Compatible::new(
                "openai",
                Dialect::OpenAi,
                &config.base_url,
                config.api_key,
                config.http,
                &config.outbound,
            )?,
        })
    }
}

impl fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Provider for OpenAiProvider {
    fn kind(&self) -> &'static str {
        "openai"
    }

    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<EventStream, LlmError>> {
        self.inner.stream(request)
    }
}

/// The variations of the Chat Completions format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// OpenAI and the servers that copy it: usage only when `stream_options` asks for it.
    OpenAi,
    /// Zhipu GLM v4: usage always in the last chunk and no `stream_options`; temperature within
    /// [0, 1]; extra finish reasons (`sensitive`, `network_error`); numeric error codes.
    Glm,
}

/// A Chat Completions client for either dialect.
pub(crate) struct Compatible {
    kind: &'static str,
    dialect: Dialect,
    endpoint: Url,
    api_key: Option<SecretString>,
    client: Client,
    http: HttpPolicy,
}

impl fmt::Debug for Compatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint.as_str())
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl Compatible {
    pub(crate) fn new(
        kind: &'static str,
        dialect: Dialect,
        base_url: &Url,
        api_key: Option<SecretString>,
        http: HttpPolicy,
        outbound: &OutboundPolicy,
    ) -> Result<Self, LlmError> {
        http::check_base_url(base_url, outbound)?;
        Ok(Self {
            kind,
            dialect,
            endpoint: http::endpoint(base_url, "chat/completions"),
            api_key,
            client: http::client(&http, outbound)?,
            http,
        })
    }

    pub(crate) fn stream(
        &self,
        request: ChatRequest,
    ) -> BoxFuture<'_, Result<EventStream, LlmError>> {
        Box::pin(async move {
            let body =
                serde_json::to_vec(&request_body(&request, self.dialect)).map_err(|err| {
                    LlmError::Rejected(format!("the request cannot be encoded: {err}"))
                })?;
            let mut headers = http::json_headers();
            if let Some(key) = &self.api_key {
                headers.insert(
                    AUTHORIZATION,
                    http::secret_header(&format!("Bearer {}", key.expose_secret()))?,
                );
            }
            tracing::debug!(provider = self.kind, model = %request.model, "sending a chat completion");
            let response = http::post(
                &self.client,
                &self.http,
                self.kind,
                &self.endpoint,
                &headers,
                &body,
            )
            .await?;
            let events = http::event_stream(response, self.http.idle_timeout).await?;
            Ok(drive(
                self.kind,
                Box::pin(events),
                ChunkDecoder::new(&request, self.dialect),
            ))
        })
    }
}

/// A float as JSON without `f32` noise (0.7, not 0.699999988079071).
fn rounded(value: f32) -> Value {
    json!((f64::from(value) * 1000.0).round() / 1000.0)
}

/// The request in the Chat Completions format.
pub(crate) fn request_body(request: &ChatRequest, dialect: Dialect) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert(
        "messages".into(),
        Value::Array(request.messages.iter().map(wire_message).collect()),
    );
    body.insert("stream".into(), json!(true));
    if dialect == Dialect::OpenAi {
        body.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    if !request.tools.is_empty() {
        let tools = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    }
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(temperature) = request.temperature {
        let temperature = match dialect {
            Dialect::OpenAi => temperature,
            Dialect::Glm => temperature.clamp(0.0, 1.0),
        };
        body.insert("temperature".into(), rounded(temperature));
    }
    if let Some(max_tokens) = request.max_tokens {
        body.insert("max_tokens".into(), json!(max_tokens));
    }
    Value::Object(body)
}

fn wire_message(message: &ChatMessage) -> Value {
    match message.role {
        MessageRole::System | MessageRole::User => {
            json!({ "role": message.role.as_str(), "content": message.content })
        }
        MessageRole::Assistant => {
            let mut wire = Map::new();
            wire.insert("role".into(), json!("assistant"));
            // Content may be null only when the turn calls tools.
            let content = if message.content.is_empty() && !message.tool_calls.is_empty() {
                Value::Null
            } else {
                json!(message.content)
            };
            wire.insert("content".into(), content);
            if !message.tool_calls.is_empty() {
                let calls = message
                    .tool_calls
                    .iter()
                    .map(|call| {
                        let arguments = if call.arguments.trim().is_empty() {
                            "{}"
                        } else {
                            call.arguments.as_str()
                        };
                        json!({
                            "id": call.id,
                            "type": "function",
                            "function": { "name": call.name, "arguments": arguments },
                        })
                    })
                    .collect();
                wire.insert("tool_calls".into(), Value::Array(calls));
            }
            Value::Object(wire)
        }
        MessageRole::Tool => json!({
            "role": "tool",
            "tool_call_id": message.tool_call_id.as_deref().unwrap_or_default(),
            "content": message.content,
        }),
    }
}

/// One `chat.completion.chunk` (only what we read).
#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<Fragment>>,
}

#[derive(Debug, Deserialize)]
struct Fragment {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionFragment>,
}

#[derive(Debug, Deserialize)]
struct FunctionFragment {
    #[serde(default)]
    name: Option<String>,
    /// A string on the wire; some servers send the object itself.
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// Decodes `chat.completion.chunk` events.
pub(crate) struct ChunkDecoder {
    dialect: Dialect,
    tally: Tally,
    calls: ToolCallAssembler,
    finish: Option<FinishReason>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

impl ChunkDecoder {
    pub(crate) fn new(request: &ChatRequest, dialect: Dialect) -> Self {
        Self {
            dialect,
            tally: Tally::new(request),
            calls: ToolCallAssembler::default(),
            finish: None,
            prompt_tokens: None,
            completion_tokens: None,
        }
    }

    fn finish_reason(&self, reason: &str) -> Result<FinishReason, LlmError> {
        Ok(match reason {
            "stop" => FinishReason::Stop,
            "length" | "model_context_window_exceeded" => FinishReason::Length,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            "sensitive" if self.dialect == Dialect::Glm => FinishReason::ContentFilter,
            // The answer broke off upstream: not an ending to pass off as complete.
            "network_error" | "insufficient_system_resource" => {
                return Err(LlmError::Unavailable(format!(
                    "the provider stopped generating: {reason}"
                )));
            }
            _ => FinishReason::Other,
        })
    }
}

impl Decoder for ChunkDecoder {
    fn event(
        &mut self,
        event: &eventsource_stream::Event,
        out: &mut Vec<StreamEvent>,
    ) -> Result<bool, LlmError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        if event.event == "error" {
            let value: Value = json(event)?;
            return Err(ErrorBody::from_value(&value).to_error());
        }
        let chunk: Chunk = json(event)?;
        if let Some(error) = chunk.error.filter(|e| !e.is_null()) {
            return Err(ErrorBody::from_value(&json!({ "error": error })).to_error());
        }
        for choice in chunk.choices.unwrap_or_default() {
            if choice.index.unwrap_or(0) != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                let reasoning = delta.reasoning_content.or(delta.reasoning);
                if let Some(reasoning) = reasoning.filter(|r| !r.is_empty()) {
                    self.tally.add(&reasoning);
                    out.push(StreamEvent::Reasoning(reasoning));
                }
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    self.tally.add(&text);
                    out.push(StreamEvent::Text(text));
                }
                for fragment in delta.tool_calls.unwrap_or_default() {
                    let function = fragment.function.as_ref();
                    let name = function.and_then(|f| f.name.as_deref());
                    let arguments = function.and_then(|f| match &f.arguments {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(Value::Null) | None => None,
                        Some(other) => Some(other.to_string()),
                    });
                    // Names are counted once a call, at the end: GLM repeats them.
                    self.tally.add(arguments.as_deref().unwrap_or_default());
                    self.calls.fragment(
                        fragment.index,
                        fragment.id.as_deref(),
                        name,
                        arguments.as_deref(),
                    );
                }
            }
            if let Some(reason) = choice.finish_reason.as_deref().filter(|r| !r.is_empty()) {
                self.finish = Some(self.finish_reason(reason)?);
            }
        }
        if let Some(usage) = chunk.usage {
            self.prompt_tokens = usage.prompt_tokens.or(self.prompt_tokens);
            self.completion_tokens = usage.completion_tokens.or(self.completion_tokens);
        }
        Ok(false)
    }

    fn end(&mut self, complete: bool, out: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        if !complete && self.finish.is_none() {
            return Err(LlmError::BadResponse(
                "the stream ended before the response was complete (no finish_reason, no [DONE])"
                    .into(),
            ));
        }
        let calls = self.calls.take();
        let called = !calls.is_empty();
        for call in &calls {
            self.tally.add(&call.name);
        }
        out.extend(calls.into_iter().map(StreamEvent::ToolCall));
        out.push(StreamEvent::Usage(
            self.tally.usage(self.prompt_tokens, self.completion_tokens),
        ));
        let finish = match self.finish {
            // Some servers (older Ollama, vLLM) say `stop` after calling tools.
            Some(FinishReason::Stop) | None if called => FinishReason::ToolCalls,
            Some(reason) => reason,
            None => FinishReason::Other,
        };
        out.push(StreamEvent::Finish(finish));
        Ok(())
    }
}

/// Assembles streamed tool-call fragments into complete calls.
///
/// A fragment belongs to the call with the same `index`; without an index, to the call with the
/// same `id`; with neither, to the most recent call (unless it names a different function, which
/// starts a new call). A fragment whose `id` differs from its index's call starts a new call too
/// (servers that number every parallel call 0). The first `id` and `name` seen are kept (GLM
/// repeats them), the `arguments` pieces are concatenated.
#[derive(Debug, Default)]
pub(crate) struct ToolCallAssembler {
    calls: Vec<PartialCall>,
}

#[derive(Debug)]
struct PartialCall {
    index: Option<u64>,
    id: String,
    name: String,
    arguments: String,
}

impl ToolCallAssembler {
    pub(crate) fn fragment(
        &mut self,
        index: Option<u64>,
        id: Option<&str>,
        name: Option<&str>,
        arguments: Option<&str>,
    ) {
        let id = id.filter(|s| !s.is_empty());
        let name = name.filter(|s| !s.is_empty());
        let position = self.position(index, id, name);
        let call = match position {
            Some(position) => &mut self.calls[position],
            None => {
                self.calls.push(PartialCall {
                    index,
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
                let last = self.calls.len() - 1;
                &mut self.calls[last]
            }
        };
        if call.index.is_none() {
            call.index = index;
        }
        if let (true, Some(id)) = (call.id.is_empty(), id) {
            id.clone_into(&mut call.id);
        }
        if let (true, Some(name)) = (call.name.is_empty(), name) {
            name.clone_into(&mut call.name);
        }
        if let Some(arguments) = arguments {
            call.arguments.push_str(arguments);
        }
    }

    fn position(&self, index: Option<u64>, id: Option<&str>, name: Option<&str>) -> Option<usize> {
        let same_id = |call: &PartialCall| match id {
            Some(id) => call.id.is_empty() || call.id == id,
            None => true,
        };
        if let Some(index) = index
            && let Some(found) = self
                .calls
                .iter()
                .rposition(|c| c.index == Some(index) && same_id(c))
        {
            return Some(found);
        }
        if let Some(id) = id {
            return self.calls.iter().rposition(|c| c.id == id);
        }
        let last = self.calls.len().checked_sub(1)?;
        let call = &self.calls[last];
        let other_function = name.is_some_and(|n| !call.name.is_empty() && call.name != n);
        let other_index = index.is_some() && call.index.is_some();
        (!other_function && !other_index).then_some(last)
    }

    /// The complete calls, in the order of their `index` (the message's order, whatever order
    /// their fragments started in) when every call has one, else in the order they started. A
    /// call without an id gets one (`call_N`) so its result can refer to it; empty arguments
    /// become `{}`.
    pub(crate) fn take(&mut self) -> Vec<ToolCall> {
        let mut calls = std::mem::take(&mut self.calls);
        if calls.iter().all(|call| call.index.is_some()) {
            calls.sort_by_key(|call| call.index); // stable: calls all numbered 0 keep their order
        }
        calls
            .into_iter()
            .enumerate()
            .map(|(n, call)| ToolCall {
                id: if call.id.is_empty() {
                    format!("call_{}", n + 1)
                } else {
                    call.id
                },
                name: call.name,
                arguments: if call.arguments.trim().is_empty() {
                    "{}".to_owned()
                } else {
                    call.arguments
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ToolSpec;

    /// index, id, name, arguments
    type Fragment<'a> = (
        Option<u64>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    );

    fn assembled(fragments: &[Fragment<'_>]) -> Vec<ToolCall> {
        let mut assembler = ToolCallAssembler::default();
        for (index, id, name, arguments) in fragments {
            assembler.fragment(*index, *id, *name, *arguments);
        }
        assembler.take()
    }

    fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn fragments_are_assembled_by_index_then_id_then_recency() {
        // OpenAI: parallel calls, interleaved, by index.
        assert_eq!(
            assembled(&[
                (Some(0), Some("call_a"), Some("f"), Some("")),
                (Some(1), Some("call_b"), Some("g"), Some("")),
                (Some(0), None, None, Some("{\"x\":")),
                (Some(1), None, None, Some("{\"y\":2}")),
                (Some(0), None, None, Some("1}")),
            ]),
            vec![
                call("call_a", "f", "{\"x\":1}"),
                call("call_b", "g", "{\"y\":2}")
            ]
        );
        // GLM: no index, the id repeated on every fragment, the name too.
        assert_eq!(
            assembled(&[
                (None, Some("call_1"), Some("f"), Some("{\"q\":")),
                (None, Some("call_1"), Some("f"), Some("\"rust\"}")),
                (None, Some("call_2"), Some("g"), Some("{}")),
            ]),
            vec![
                call("call_1", "f", "{\"q\":\"rust\"}"),
                call("call_2", "g", "{}")
            ]
        );
        // Neither index nor id: the most recent call.
        assert_eq!(
            assembled(&[
                (None, Some("call_1"), Some("f"), None),
                (None, None, None, Some("{\"a\"")),
                (None, None, None, Some(":1}")),
                (None, None, Some("g"), Some("{}")),
            ]),
            vec![call("call_1", "f", "{\"a\":1}"), call("call_2", "g", "{}")]
        );
        // Every parallel call numbered 0, told apart by id.
        assert_eq!(
            assembled(&[
                (Some(0), Some("a"), Some("f"), Some("{}")),
                (Some(0), Some("b"), Some("f"), Some("{\"n\":")),
                (Some(0), None, None, Some("2}")),
            ]),
            vec![call("a", "f", "{}"), call("b", "f", "{\"n\":2}")]
        );
    }

    #[test]
    fn the_request_is_in_the_chat_completions_format() {
        let request = ChatRequest {
            model: "gpt-4o-mini".into(),
            messages: vec![
                ChatMessage::system("be brief"),
                ChatMessage::user("weather?"),
                ChatMessage::assistant_tool_calls("", vec![call("call_1", "weather", "")]),
                ChatMessage::tool_result("call_1", "sunny"),
            ],
            tools: vec![ToolSpec {
                name: "weather".into(),
                description: "Current weather".into(),
                parameters: json!({"type": "object", "properties": {}}),
            }],
            temperature: Some(1.7),
            max_tokens: Some(100),
        };
        let openai = request_body(&request, Dialect::OpenAi);
        assert_eq!(
            openai,
            json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "weather?"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                ],
                "stream": true,
                "stream_options": {"include_usage": true},
                "tools": [{"type": "function", "function": {
                    "name": "weather",
                    "description": "Current weather",
                    "parameters": {"type": "object", "properties": {}},
                }}],
                "temperature": 1.7,
                "max_tokens": 100,
            })
        );
        let glm = request_body(&request, Dialect::Glm);
        assert!(glm.get("stream_options").is_none());
        assert_eq!(glm["temperature"], json!(1.0));
    }
}
