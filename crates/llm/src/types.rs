//! The provider-neutral vocabulary: messages, tools, requests, stream events, usage, and the
//! [`Provider`] trait every client implements.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::LlmError;

/// Who said a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    System,
    User,
    Assistant,
    /// A tool's result, answering the assistant's tool call with the same id.
    Tool,
}

impl MessageRole {
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageRole::System => "system",
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
            MessageRole::Tool => "tool",
        }
    }
}

/// A tool call the model asked for, complete (streamed fragments already assembled).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for the call; tool results refer to it.
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them: JSON text (possibly invalid — the caller checks).
    pub arguments: String,
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: MessageRole,
    #[serde(default)]
    pub content: String,
    /// Assistant messages only: the tools it called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Tool messages only: the call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    fn new(role: MessageRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new(MessageRole::System, content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new(MessageRole::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(MessageRole::Assistant, content)
    }

    /// An assistant turn that calls tools (and may also say something).
    pub fn assistant_tool_calls(content: impl Into<String>, calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls: calls,
            ..Self::new(MessageRole::Assistant, content)
        }
    }

    /// A tool's result for the call `call_id`.
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(call_id.into()),
            ..Self::new(MessageRole::Tool, content)
        }
    }
}

/// A tool the model may call: a name, what it does, and a JSON Schema of its arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

/// One request to a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
}

/// Tokens a call consumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// The provider did not report usage; these numbers are our estimate.
    pub estimated: bool,
}

impl Usage {
    pub fn total(&self) -> u32 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// Adds another call's usage (estimated if either was).
    pub fn add(&mut self, other: Usage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.estimated |= other.estimated;
    }
}

/// Why the model stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    /// It hit `max_tokens`.
    Length,
    ToolCalls,
    ContentFilter,
    Other,
}

/// What a streaming call yields, in order: any number of `Reasoning`/`Text` deltas and
/// `ToolCall`s, then exactly one `Usage` and one `Finish` (providers that omit usage get an
/// estimate). An `Err` item ends the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StreamEvent {
    /// A piece of the answer.
    Text(String),
    /// A piece of the model's visible reasoning or plan.
    Reasoning(String),
    /// A complete tool call.
    ToolCall(ToolCall),
    Usage(Usage),
    Finish(FinishReason),
}

/// The events of one call.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, LlmError>> + Send>>;

/// A boxed future, as the object-safe trait needs.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A model provider.
///
/// `stream` resolves once the provider has accepted the request (for HTTP clients: a 200 and
/// its headers). Retries happen before that and only then: once a stream is returned, a failure
/// is an `Err` item, never a silent retry, so nothing the caller has shown is ever duplicated.
pub trait Provider: Send + Sync + Debug {
    /// `openai`, `glm`, `anthropic` or `mock`.
    fn kind(&self) -> &'static str;

    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<EventStream, LlmError>>;
}

/// The result of a whole call, for callers that do not stream.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatResponse {
    pub text: String,
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    pub finish_reason: FinishReason,
}

/// Runs a streaming call to the end and assembles the response.
pub async fn collect(mut stream: EventStream) -> Result<ChatResponse, LlmError> {
    let mut response = ChatResponse {
        text: String::new(),
        reasoning: String::new(),
        tool_calls: Vec::new(),
        usage: Usage::default(),
        finish_reason: FinishReason::Other,
    };
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Text(delta) => response.text.push_str(&delta),
            StreamEvent::Reasoning(delta) => response.reasoning.push_str(&delta),
            StreamEvent::ToolCall(call) => response.tool_calls.push(call),
            StreamEvent::Usage(usage) => response.usage = usage,
            StreamEvent::Finish(reason) => response.finish_reason = reason,
        }
    }
    Ok(response)
}

/// A rough token count for text (about four characters a token, at least one for non-empty
/// text). Used only where a provider reports nothing, and always marked as an estimate.
pub fn estimate_tokens(text: &str) -> u32 {
    let chars = text.chars().count();
    u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX)
}

/// A rough token count for a whole prompt: the messages, a small overhead per message, and the
/// tool definitions.
pub fn estimate_prompt_tokens(request: &ChatRequest) -> u32 {
    let messages: u32 = request
        .messages
        .iter()
        .map(|m| {
            let calls: u32 = m
                .tool_calls
                .iter()
                .map(|c| estimate_tokens(&c.name) + estimate_tokens(&c.arguments))
                .sum();
            4 + estimate_tokens(&m.content) + calls
        })
        .sum();
    let tools: u32 = request
        .tools
        .iter()
        .map(|t| {
            estimate_tokens(&t.name)
                + estimate_tokens(&t.description)
                + estimate_tokens(&t.parameters.to_string())
        })
        .sum();
    messages.saturating_add(tools).saturating_add(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_are_about_four_characters_a_token() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("a"), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("日本語です"), 2);
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![
                ChatMessage::system("be brief"),
                ChatMessage::user("hello there"),
            ],
            tools: vec![],
            temperature: None,
            max_tokens: None,
        };
        assert_eq!(estimate_prompt_tokens(&request), 4 + 2 + 4 + 3 + 3);
    }

    #[tokio::test]
    async fn collect_assembles_a_stream() {
        let events = vec![
            Ok(StreamEvent::Reasoning("thinking ".into())),
            Ok(StreamEvent::Text("Hel".into())),
            Ok(StreamEvent::Text("lo".into())),
            Ok(StreamEvent::Usage(Usage {
                prompt_tokens: 5,
                completion_tokens: 2,
                estimated: false,
            })),
            Ok(StreamEvent::Finish(FinishReason::Stop)),
        ];
        let response = collect(Box::pin(futures_util::stream::iter(events)))
            .await
            .unwrap();
        assert_eq!(response.text, "Hello");
        assert_eq!(response.reasoning, "thinking ");
        assert_eq!(response.usage.total(), 7);
        assert_eq!(response.finish_reason, FinishReason::Stop);
    }

    #[tokio::test]
    async fn collect_stops_at_an_error() {
        let events = vec![
            Ok(StreamEvent::Text("partial".into())),
            Err(LlmError::BadResponse("cut".into())),
        ];
        let err = collect(Box::pin(futures_util::stream::iter(events)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "upstream_bad_response");
    }
}
