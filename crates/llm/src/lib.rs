#![doc = include_str!("../README.md")]

mod error;
pub mod mock;
mod types;

pub use error::LlmError;
pub use types::{
    ChatMessage, ChatRequest, ChatResponse, EventStream, FinishReason, MessageRole, Provider,
    StreamEvent, ToolCall, ToolSpec, Usage, collect, estimate_prompt_tokens, estimate_tokens,
};
