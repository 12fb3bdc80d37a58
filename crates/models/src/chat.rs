//! Chat sessions, their messages, and runs (one turn of an agent each).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use paas_core::{AgentId, ApiKeyId, MessageId, RunId, SessionId, TenantId, UserId};
use serde::{Deserialize, Serialize};

use crate::tenant::UnknownValue;

/// A conversation of one user with one agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatSession {
    pub id: SessionId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub agent_id: AgentId,
    /// From the first message unless renamed.
    pub title: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageRole {
    System,
    User,
    Assistant,
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

impl FromStr for MessageRole {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "system" => Ok(MessageRole::System),
            "user" => Ok(MessageRole::User),
            "assistant" => Ok(MessageRole::Assistant),
            "tool" => Ok(MessageRole::Tool),
            other => Err(UnknownValue(other.to_owned())),
        }
    }
}

/// A tool call an assistant message made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolCallRecord {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them (JSON text).
    pub arguments: String,
}

/// One message of a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Message {
    pub id: MessageId,
    pub session_id: SessionId,
    /// The run that produced it (user messages: the run they started).
    pub run_id: Option<RunId>,
    pub role: MessageRole,
    pub content: String,
    /// The model's visible reasoning for this message, if any.
    pub reasoning: String,
    pub tool_calls: Vec<ToolCallRecord>,
    /// Tool messages: the call this answers, and the tool's name.
    pub tool_call_id: Option<String>,
    pub tool_name: Option<String>,
    /// Tool messages: the tool failed.
    pub is_error: bool,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub created_at: DateTime<Utc>,
}

/// Where a run came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunSource {
    /// The dashboard protocol, `POST /api/v1/chat/completions`.
    Chat,
    /// The OpenAI-compatible `POST /v1/chat/completions`.
    Openai,
}

impl RunSource {
    pub const fn as_str(self) -> &'static str {
        match self {
            RunSource::Chat => "chat",
            RunSource::Openai => "openai",
        }
    }
}

impl FromStr for RunSource {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "chat" => Ok(RunSource::Chat),
            "openai" => Ok(RunSource::Openai),
            other => Err(UnknownValue(other.to_owned())),
        }
    }
}

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
    Cancelled,
    /// Ended by a guardrail (steps, tokens, time, a repeating tool call).
    Limited,
}

impl RunStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Limited => "limited",
        }
    }

    pub fn is_finished(self) -> bool {
        self != RunStatus::Running
    }
}

impl FromStr for RunStatus {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "running" => Ok(RunStatus::Running),
            "completed" => Ok(RunStatus::Completed),
            "failed" => Ok(RunStatus::Failed),
            "cancelled" => Ok(RunStatus::Cancelled),
            "limited" => Ok(RunStatus::Limited),
            other => Err(UnknownValue(other.to_owned())),
        }
    }
}

/// Tokens a run consumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    /// Some provider did not report usage; part of these numbers is estimated.
    pub estimated: bool,
}

/// A run: one turn of an agent, with status and usage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    pub id: RunId,
    pub tenant_id: TenantId,
    pub session_id: Option<SessionId>,
    pub user_id: UserId,
    pub api_key_id: Option<ApiKeyId>,
    pub agent_id: AgentId,
    pub source: RunSource,
    pub status: RunStatus,
    pub provider: String,
    pub model: String,
    /// Model calls made.
    pub steps: u32,
    pub usage: RunUsage,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Which guardrail ended it (`max_steps`, `max_tokens`, `timeout`, `tool_timeout`,
    /// `repeated_tool_call`, `token_quota`).
    pub limit_reason: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A session title from the first message: its first line, at most 60 characters.
pub fn title_from(message: &str) -> String {
    let line = message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("New chat");
    let mut title: String = line.chars().filter(|c| !c.is_control()).take(60).collect();
    if line.chars().count() > 60 {
        title.push('…');
    }
    title
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_the_first_line() {
        assert_eq!(title_from("\n  Plan my trip \nto Rome"), "Plan my trip");
        assert_eq!(title_from("   "), "New chat");
        let long = "x".repeat(100);
        assert_eq!(title_from(&long).chars().count(), 61);
    }
}
