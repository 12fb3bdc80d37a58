#![doc = include_str!("../README.md")]

pub mod anthropic;
mod decode;
mod error;
mod factory;
pub mod glm;
pub mod http;
pub mod mock;
pub mod openai;
#[cfg(test)]
mod properties;
mod types;

pub use anthropic::{AnthropicConfig, AnthropicProvider};
pub use error::LlmError;
pub use factory::{ProviderKind, UnknownProviderKind, build};
pub use glm::{GlmConfig, GlmProvider};
pub use http::HttpPolicy;
pub use mock::MockProvider;
pub use openai::{OpenAiConfig, OpenAiProvider};
pub use types::{
    BoxFuture, ChatMessage, ChatRequest, ChatResponse, EventStream, FinishReason, MessageRole,
    Provider, StreamEvent, ToolCall, ToolSpec, Usage, collect, estimate_prompt_tokens,
    estimate_tokens,
};
