//! Anthropic Messages (`https://api.anthropic.com`, `POST /v1/messages`, headers `x-api-key` and
//! `anthropic-version: 2023-06-01`), streamed.
//!
//! The request: system messages joined into the top-level `system`; `max_tokens` always sent
//! (4096 when the request has none, as the API requires it); assistant tool calls as `tool_use`
//! blocks with their arguments parsed (`{}` when they are not a JSON object); tool results as
//! `tool_result` blocks in a user message, consecutive ones (and any user text after them)
//! merged into one message since roles must alternate; tools as `{name, description,
//! input_schema}`; temperature clamped to Anthropic's [0, 1].
//!
//! The response events: `message_start` (input tokens, cache reads and writes included),
//! `content_block_start` / `content_block_delta` / `content_block_stop` for text, thinking and
//! tool-use blocks (the tool input arrives as `input_json_delta` pieces, and the call is yielded
//! at its block's stop), `message_delta` (stop reason, output tokens), `message_stop`. `ping` is
//! ignored; an `error` event ends the stream with the matching error.

use std::collections::BTreeMap;
use std::fmt;

use reqwest::Client;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use paas_net::OutboundPolicy;

use crate::decode::{Decoder, Tally, drive, json};
use crate::http::{self, ErrorBody, HttpPolicy};
use crate::types::BoxFuture;
use crate::{
    ChatRequest, EventStream, FinishReason, LlmError, MessageRole, Provider, StreamEvent, ToolCall,
};

/// The API version this client speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `max_tokens` when the request sets none (the API requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Where and how to reach Anthropic.
#[derive(Clone, Debug)]
pub struct AnthropicConfig {
    /// The API root, without the version path: `https://api.anthropic.com`.
    pub base_url: Url,
    pub api_key: SecretString,
    pub http: HttpPolicy,
    pub outbound: OutboundPolicy,
}

/// The Anthropic Messages client.
pub struct AnthropicProvider {
    endpoint: Url,
    api_key: SecretString,
    client: Client,
    http: HttpPolicy,
}

impl fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("endpoint", &self.endpoint.as_str())
            .field("api_key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl AnthropicProvider {
    /// Anthropic's API root.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.anthropic.com";

    /// Checks the base URL against the outbound policy and builds the client; no request is
    /// made.
    pub fn new(config: AnthropicConfig) -> Result<Self, LlmError> {
        http::check_base_url(&config.base_url, &config.outbound)?;
        Ok(Self {
            endpoint: http::endpoint(&config.base_url, "v1/messages"),
            api_key: config.api_key,
            client: http::client(&config.http, &config.outbound)?,
            http: config.http,
        })
    }
}

impl Provider for AnthropicProvider {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<EventStream, LlmError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&request_body(&request)).map_err(|err| {
                LlmError::Rejected(format!("the request cannot be encoded: {err}"))
            })?;
            let mut headers = http::json_headers();
            headers.insert(
                "x-api-key",
                http::secret_header(self.api_key.expose_secret())?,
            );
            headers.insert(
                "anthropic-version",
                HeaderValue::from_static(ANTHROPIC_VERSION),
            );
            tracing::debug!(provider = "anthropic", model = %request.model, "sending a message");
            let response = http::post(
                &self.client,
                &self.http,
                "anthropic",
                &self.endpoint,
                &headers,
                &body,
            )
            .await?;
            let events = http::event_stream(response, self.http.idle_timeout).await?;
            Ok(drive(
                "anthropic",
                Box::pin(events),
                MessagesDecoder::new(&request),
            ))
        })
    }
}

/// The request in the Messages format.
pub(crate) fn request_body(request: &ChatRequest) -> Value {
    let mut system: Vec<&str> = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut push = |role: &'static str, blocks: Vec<Value>| {
        if blocks.is_empty() {
            return;
        }
        match messages.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    };
    for message in &request.messages {
        match message.role {
            MessageRole::System => {
                if !message.content.trim().is_empty() {
                    system.push(&message.content);
                }
            }
            MessageRole::User => push("user", text_block(&message.content).into_iter().collect()),
            MessageRole::Assistant => {
                let mut blocks: Vec<Value> = text_block(&message.content).into_iter().collect();
                blocks.extend(message.tool_calls.iter().map(|call| {
                    json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": tool_input(&call.arguments),
                    })
                }));
                push("assistant", blocks);
            }
            MessageRole::Tool => {
                let mut block = Map::new();
                block.insert("type".into(), json!("tool_result"));
                block.insert(
                    "tool_use_id".into(),
                    json!(message.tool_call_id.as_deref().unwrap_or_default()),
                );
                if !message.content.is_empty() {
                    block.insert("content".into(), json!(message.content));
                }
                push("user", vec![Value::Object(block)]);
            }
        }
    }

    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert(
        "max_tokens".into(),
        json!(request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    body.insert("stream".into(), json!(true));
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    body.insert(
        "messages".into(),
        Value::Array(
            messages
                .into_iter()
                .map(|(role, content)| json!({ "role": role, "content": content }))
                .collect(),
        ),
    );
    if !request.tools.is_empty() {
        let tools = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": input_schema(&tool.parameters),
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(temperature) = request.temperature {
        let temperature = f64::from(temperature.clamp(0.0, 1.0));
        body.insert(
            "temperature".into(),
            json!((temperature * 1000.0).round() / 1000.0),
        );
    }
    Value::Object(body)
}

/// A text block, or nothing for empty text (the API refuses empty text blocks).
fn text_block(text: &str) -> Option<Value> {
    (!text.trim().is_empty()).then(|| json!({ "type": "text", "text": text }))
}

/// A tool call's arguments as the `input` object the API wants: `{}` unless they are a JSON
/// object.
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ => json!({}),
    }
}

/// The API requires an object schema; an empty or missing one becomes the empty object schema.
fn input_schema(parameters: &Value) -> Value {
    match parameters {
        Value::Object(map) if map.contains_key("type") => parameters.clone(),
        Value::Object(map) if !map.is_empty() => {
            let mut schema = map.clone();
            schema.insert("type".into(), json!("object"));
            Value::Object(schema)
        }
        _ => json!({ "type": "object", "properties": {} }),
    }
}

/// The streamed events (only what we read; unknown types are ignored).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u64,
        content_block: WireBlock,
    },
    ContentBlockDelta {
        index: u64,
        delta: WireDelta,
    },
    ContentBlockStop {
        index: u64,
    },
    MessageDelta {
        #[serde(default)]
        delta: Option<MessageDeltaBody>,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Ping,
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct StartMessage {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

impl WireUsage {
    /// All the prompt's tokens: fresh, written to the cache and read from it.
    fn prompt(&self) -> Option<u64> {
        self.input_tokens.map(|input| {
            input
                .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
                .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Option<Value>,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        text: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

/// A tool-use block being received.
#[derive(Debug)]
struct OpenToolUse {
    id: String,
    name: String,
    input: Option<Value>,
    json: String,
}

impl OpenToolUse {
    fn finish(self) -> ToolCall {
        let arguments = if !self.json.trim().is_empty() {
            self.json
        } else {
            match self.input {
                Some(input @ Value::Object(_)) => input.to_string(),
                _ => "{}".to_owned(),
            }
        };
        ToolCall {
            id: self.id,
            name: self.name,
            arguments,
        }
    }
}

pub(crate) struct MessagesDecoder {
    tally: Tally,
    tools: BTreeMap<u64, OpenToolUse>,
    called: bool,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    stop: Option<FinishReason>,
}

impl MessagesDecoder {
    pub(crate) fn new(request: &ChatRequest) -> Self {
        Self {
            tally: Tally::new(request),
            tools: BTreeMap::new(),
            called: false,
            prompt_tokens: None,
            completion_tokens: None,
            stop: None,
        }
    }

    fn usage(&mut self, usage: &WireUsage) {
        if let Some(prompt) = usage.prompt() {
            self.prompt_tokens = Some(prompt);
        }
        if let Some(output) = usage.output_tokens {
            self.completion_tokens = Some(output);
        }
    }

    fn emit_call(&mut self, call: OpenToolUse, out: &mut Vec<StreamEvent>) {
        let call = call.finish();
        self.tally.add(&call.name);
        self.called = true;
        out.push(StreamEvent::ToolCall(call));
    }
}

fn stop_reason(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    }
}

impl Decoder for MessagesDecoder {
    fn event(
        &mut self,
        event: &eventsource_stream::Event,
        out: &mut Vec<StreamEvent>,
    ) -> Result<bool, LlmError> {
        let value: Value = json(event)?;
        if event.event == "error" || value.get("type").and_then(Value::as_str) == Some("error") {
            return Err(ErrorBody::from_value(&value).to_error());
        }
        let wire = WireEvent::deserialize(&value).map_err(|err| {
            LlmError::BadResponse(format!(
                "a `{}` event does not have the expected shape ({:?} error)",
                event.event,
                err.classify()
            ))
        })?;
        match wire {
            WireEvent::MessageStart { message } => {
                if let Some(usage) = &message.usage {
                    self.usage(usage);
                }
            }
            WireEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                WireBlock::Text { text } if !text.is_empty() => {
                    self.tally.add(&text);
                    out.push(StreamEvent::Text(text));
                }
                WireBlock::Thinking { thinking } if !thinking.is_empty() => {
                    self.tally.add(&thinking);
                    out.push(StreamEvent::Reasoning(thinking));
                }
                WireBlock::ToolUse { id, name, input } => {
                    self.tools.insert(
                        index,
                        OpenToolUse {
                            id,
                            name,
                            input,
                            json: String::new(),
                        },
                    );
                }
                WireBlock::Text { .. } | WireBlock::Thinking { .. } | WireBlock::Other => {}
            },
            WireEvent::ContentBlockDelta { index, delta } => match delta {
                WireDelta::TextDelta { text } => {
                    if !text.is_empty() {
                        self.tally.add(&text);
                        out.push(StreamEvent::Text(text));
                    }
                }
                WireDelta::ThinkingDelta { thinking } => {
                    if !thinking.is_empty() {
                        self.tally.add(&thinking);
                        out.push(StreamEvent::Reasoning(thinking));
                    }
                }
                WireDelta::InputJsonDelta { partial_json } => {
                    let Some(tool) = self.tools.get_mut(&index) else {
                        return Err(LlmError::BadResponse(format!(
                            "tool input arrived for block {index}, which is not a tool call"
                        )));
                    };
                    self.tally.add(&partial_json);
                    tool.json.push_str(&partial_json);
                }
                WireDelta::Other => {}
            },
            WireEvent::ContentBlockStop { index } => {
                if let Some(tool) = self.tools.remove(&index) {
                    self.emit_call(tool, out);
                }
            }
            WireEvent::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.and_then(|d| d.stop_reason) {
                    self.stop = Some(stop_reason(&reason));
                }
                if let Some(usage) = &usage {
                    self.usage(usage);
                }
            }
            WireEvent::MessageStop => return Ok(true),
            WireEvent::Ping | WireEvent::Unknown => {}
        }
        Ok(false)
    }

    fn end(&mut self, complete: bool, out: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        if !complete && self.stop.is_none() {
            return Err(LlmError::BadResponse(
                "the stream ended before the message was complete (no stop_reason, no message_stop)"
                    .into(),
            ));
        }
        for (_, tool) in std::mem::take(&mut self.tools) {
            self.emit_call(tool, out);
        }
        out.push(StreamEvent::Usage(
            self.tally.usage(self.prompt_tokens, self.completion_tokens),
        ));
        let finish = match self.stop {
            Some(FinishReason::Stop) | None if self.called => FinishReason::ToolCalls,
            Some(reason) => reason,
            None => FinishReason::Other,
        };
        out.push(StreamEvent::Finish(finish));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChatMessage, ToolSpec};

    #[test]
    fn the_request_is_in_the_messages_format() {
        let call = |id: &str, arguments: &str| ToolCall {
            id: id.into(),
            name: "lookup".into(),
            arguments: arguments.into(),
        };
        let request = ChatRequest {
            model: "claude-sonnet-4-5".into(),
            messages: vec![
                ChatMessage::system("be brief"),
                ChatMessage::system("answer in French"),
                ChatMessage::user("look two things up"),
                ChatMessage::assistant_tool_calls(
                    "Looking.",
                    vec![call("toolu_1", r#"{"q":"a"}"#), call("toolu_2", "not json")],
                ),
                ChatMessage::tool_result("toolu_1", "A"),
                ChatMessage::tool_result("toolu_2", "B"),
                ChatMessage::user("thanks"),
            ],
            tools: vec![ToolSpec {
                name: "lookup".into(),
                description: "Looks things up".into(),
                parameters: json!({}),
            }],
            temperature: Some(1.5),
            max_tokens: None,
        };
        assert_eq!(
            request_body(&request),
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 4096,
                "stream": true,
                "system": "be brief\n\nanswer in French",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "look two things up"}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Looking."},
                        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "a"}},
                        {"type": "tool_use", "id": "toolu_2", "name": "lookup", "input": {}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "A"},
                        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "B"},
                        {"type": "text", "text": "thanks"},
                    ]},
                ],
                "tools": [{
                    "name": "lookup",
                    "description": "Looks things up",
                    "input_schema": {"type": "object", "properties": {}},
                }],
                "temperature": 1.0,
            })
        );
    }
}
