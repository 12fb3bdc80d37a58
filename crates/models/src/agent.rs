//! Agents and the providers they talk to.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use paas_core::{AgentId, Error, ProviderId, TenantId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::tenant::UnknownValue;
use crate::validate;

/// The wire protocol a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI Chat Completions, or any server that speaks it (vLLM, Ollama, DeepSeek…).
    Openai,
    /// Zhipu GLM v4.
    Glm,
    /// Anthropic Messages.
    Anthropic,
    /// The built-in mock model.
    Mock,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Openai,
        ProviderKind::Glm,
        ProviderKind::Anthropic,
        ProviderKind::Mock,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Glm => "glm",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Mock => "mock",
        }
    }
}

impl FromStr for ProviderKind {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownValue(s.to_owned()))
    }
}

/// A tenant's provider credentials as the API shows them: never the key, only its last four
/// characters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Provider {
    pub id: ProviderId,
    pub tenant_id: TenantId,
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: Option<String>,
    /// The last four characters of the API key, if one is set.
    pub api_key_last4: Option<String>,
    pub default_model: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which provider an agent uses: the built-in mock, one of the platform's default providers
/// (configured by the operator), or one of the tenant's own. On the wire: `"mock"`,
/// `"platform:openai"` (or `glm`, `anthropic`), or the provider's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AgentProvider {
    Mock,
    Platform(ProviderKind),
    Tenant(ProviderId),
}

impl fmt::Display for AgentProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentProvider::Mock => f.write_str("mock"),
            AgentProvider::Platform(kind) => write!(f, "platform:{}", kind.as_str()),
            AgentProvider::Tenant(id) => write!(f, "{id}"),
        }
    }
}

impl FromStr for AgentProvider {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || {
            Error::validation(
                "provider_id",
                "provider_id must be \"mock\", \"platform:openai\", \"platform:glm\", \
                 \"platform:anthropic\" or the id of one of your providers",
            )
        };
        if s == "mock" {
            return Ok(AgentProvider::Mock);
        }
        if let Some(kind) = s.strip_prefix("platform:") {
            return match kind.parse::<ProviderKind>() {
                Ok(ProviderKind::Mock) | Err(_) => Err(invalid()),
                Ok(kind) => Ok(AgentProvider::Platform(kind)),
            };
        }
        s.parse::<ProviderId>()
            .map(AgentProvider::Tenant)
            .map_err(|_| invalid())
    }
}

impl Serialize for AgentProvider {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AgentProvider {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse()
            .map_err(|err: Error| serde::de::Error::custom(err.message().to_owned()))
    }
}

impl utoipa::PartialSchema for AgentProvider {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "\"mock\", \"platform:openai\", \"platform:glm\", \"platform:anthropic\", or a provider id",
            ))
            .examples([serde_json::json!("mock")])
            .into()
    }
}

impl utoipa::ToSchema for AgentProvider {}

/// An agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: AgentId,
    pub tenant_id: TenantId,
    /// Slug, unique in the tenant; the `model` name in the OpenAI-compatible API.
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub system_prompt: String,
    pub provider_id: AgentProvider,
    pub model: String,
    pub temperature: Option<f32>,
    pub max_tokens: u32,
    /// Built-in tools the agent may call: `calculator`, `current_time`, `http_fetch`.
    pub tools: Vec<String>,
    /// Model calls per run at most (each tool round is one more).
    pub max_steps: u32,
    /// Wall-clock limit of one run.
    pub timeout_seconds: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Limits on agent fields.
pub const AGENT_MAX_TOKENS: u32 = 32_768;
pub const AGENT_MAX_STEPS: u32 = 32;
pub const AGENT_MAX_TIMEOUT_SECONDS: u32 = 600;
pub const SYSTEM_PROMPT_MAX_CHARS: usize = 32_000;
pub const DESCRIPTION_MAX_CHARS: usize = 2_000;
pub const MODEL_NAME_MAX: usize = 200;

/// Agent and provider names: 1–63 lowercase letters, digits, hyphens, dots or underscores,
/// starting with a letter or digit (they appear as model names in the OpenAI-compatible API).
pub fn validate_slug(field: &str, name: &str) -> Result<String, Error> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if valid {
        Ok(name.to_owned())
    } else {
        Err(Error::validation(
            field,
            format!(
                "{field} must be 1-63 lowercase letters, digits, '-', '.' or '_', starting with a \
                 letter or digit"
            ),
        ))
    }
}

pub fn validate_model(model: &str) -> Result<String, Error> {
    let model = model.trim();
    if model.is_empty()
        || model.chars().count() > MODEL_NAME_MAX
        || model.chars().any(char::is_control)
    {
        return Err(Error::validation(
            "model",
            "model must be 1-200 characters without control characters",
        ));
    }
    Ok(model.to_owned())
}

pub fn validate_temperature(temperature: f32) -> Result<f32, Error> {
    if temperature.is_finite() && (0.0..=2.0).contains(&temperature) {
        Ok(temperature)
    } else {
        Err(Error::validation(
            "temperature",
            "temperature must be from 0 to 2",
        ))
    }
}

pub fn validate_bounded(field: &str, value: u32, max: u32) -> Result<u32, Error> {
    if (1..=max).contains(&value) {
        Ok(value)
    } else {
        Err(Error::validation(
            field,
            format!("{field} must be from 1 to {max}"),
        ))
    }
}

pub fn validate_system_prompt(prompt: &str) -> Result<String, Error> {
    if prompt.chars().count() > SYSTEM_PROMPT_MAX_CHARS {
        return Err(Error::validation(
            "system_prompt",
            format!("system_prompt must be at most {SYSTEM_PROMPT_MAX_CHARS} characters"),
        ));
    }
    Ok(prompt.to_owned())
}

/// Trims a description; the limit applies to what is kept.
pub fn validate_description(description: &str) -> Result<String, Error> {
    let description = description.trim();
    if description.chars().count() > DESCRIPTION_MAX_CHARS {
        return Err(Error::validation(
            "description",
            format!("description must be at most {DESCRIPTION_MAX_CHARS} characters"),
        ));
    }
    Ok(description.to_owned())
}

/// Tool names must be known and listed once.
pub fn validate_tools(tools: &[String], known: &[&str]) -> Result<Vec<String>, Error> {
    let mut seen = Vec::new();
    for tool in tools {
        if !known.contains(&tool.as_str()) {
            return Err(Error::validation(
                "tools",
                format!("unknown tool; the built-in tools are {}", known.join(", ")),
            ));
        }
        if seen.contains(tool) {
            return Err(Error::validation("tools", "each tool may be listed once"));
        }
        seen.push(tool.clone());
    }
    Ok(seen)
}

/// Display names of agents: 1–200 characters.
pub fn validate_agent_display_name(name: &str) -> Result<String, Error> {
    validate::display_name("display_name", name, 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_providers_round_trip_through_their_wire_form() {
        for text in [
            "mock",
            "platform:openai",
            "platform:glm",
            "platform:anthropic",
        ] {
            let parsed: AgentProvider = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
        let id = ProviderId::new();
        assert_eq!(
            id.to_string().parse::<AgentProvider>().unwrap(),
            AgentProvider::Tenant(id)
        );
        for bad in ["", "platform:mock", "platform:cohere", "openai", "' OR 1=1"] {
            assert_eq!(
                bad.parse::<AgentProvider>().unwrap_err().code(),
                "invalid_provider_id",
                "{bad}"
            );
        }
        let json = serde_json::to_string(&AgentProvider::Platform(ProviderKind::Glm)).unwrap();
        assert_eq!(json, "\"platform:glm\"");
    }

    #[test]
    fn slugs_and_limits() {
        assert!(validate_slug("name", "support-bot.v2_x").is_ok());
        for bad in ["", "-x", "Bot", "a b", &"x".repeat(64), "bot'--"] {
            assert!(validate_slug("name", bad).is_err(), "{bad}");
        }
        assert!(validate_temperature(0.7).is_ok());
        assert!(validate_temperature(2.5).is_err());
        assert!(validate_temperature(f32::NAN).is_err());
        assert!(validate_bounded("max_tokens", 0, 10).is_err());
        assert!(validate_bounded("max_tokens", 1_000_000_000, AGENT_MAX_TOKENS).is_err());
        let known = ["calculator", "current_time"];
        assert!(validate_tools(&["calculator".into()], &known).is_ok());
        assert!(validate_tools(&["shell".into()], &known).is_err());
        assert!(validate_tools(&["calculator".into(), "calculator".into()], &known).is_err());
    }
}
