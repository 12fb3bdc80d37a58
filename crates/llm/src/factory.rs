//! Choosing and building a provider client from configuration.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use paas_net::OutboundPolicy;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::anthropic::{AnthropicConfig, AnthropicProvider};
use crate::glm::{GlmConfig, GlmProvider};
use crate::http::HttpPolicy;
use crate::mock::MockProvider;
use crate::openai::{OpenAiConfig, OpenAiProvider};
use crate::{LlmError, Provider};

/// The kinds of provider the platform can talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI, or any server speaking its Chat Completions API.
    OpenAi,
    /// Zhipu GLM v4.
    Glm,
    /// Anthropic Messages.
    Anthropic,
    /// The built-in mock: no key, no network.
    Mock,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::OpenAi,
        ProviderKind::Glm,
        ProviderKind::Anthropic,
        ProviderKind::Mock,
    ];

    /// `openai`, `glm`, `anthropic` or `mock`, as [`Provider::kind`] says.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Glm => "glm",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Mock => "mock",
        }
    }

    /// The provider's public API root, used when no base URL is configured (none for the mock).
    pub const fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::OpenAi => Some(OpenAiProvider::DEFAULT_BASE_URL),
            ProviderKind::Glm => Some(GlmProvider::DEFAULT_BASE_URL),
            ProviderKind::Anthropic => Some(AnthropicProvider::DEFAULT_BASE_URL),
            ProviderKind::Mock => None,
        }
    }

    /// Whether calls need an API key (an OpenAI-compatible local server may not).
    pub const fn requires_api_key(self) -> bool {
        matches!(self, ProviderKind::Glm | ProviderKind::Anthropic)
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not one of `openai`, `glm`, `anthropic`, `mock`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider kind {0:?}: expected openai, glm, anthropic or mock")]
pub struct UnknownProviderKind(pub String);

impl FromStr for ProviderKind {
    type Err = UnknownProviderKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderKind::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownProviderKind(s.to_owned()))
    }
}

/// Builds a provider client. `base_url` defaults to the kind's public API root; GLM and
/// Anthropic need an `api_key` ([`LlmError::Unauthorized`] without one). The base URL is
/// checked against `outbound` here, before any request. The mock ignores everything but
/// `mock_chunk_delay`.
pub fn build(
    kind: ProviderKind,
    base_url: Option<Url>,
    api_key: Option<SecretString>,
    http: &HttpPolicy,
    outbound: &OutboundPolicy,
    mock_chunk_delay: Duration,
) -> Result<Arc<dyn Provider>, LlmError> {
    let base_url = || match (&base_url, kind.default_base_url()) {
        (Some(url), _) => Ok(url.clone()),
        (None, Some(default)) => Url::parse(default)
            .map_err(|err| LlmError::Rejected(format!("invalid default base URL: {err}"))),
        (None, None) => Err(LlmError::Rejected(format!(
            "the {kind} provider has no base URL"
        ))),
    };
    let required_key = || {
        api_key.clone().ok_or_else(|| {
            LlmError::Unauthorized(format!("no API key is configured for the {kind} provider"))
        })
    };
    Ok(match kind {
        ProviderKind::OpenAi => Arc::new(OpenAiProvider::new(OpenAiConfig {
            base_url: base_url()?,
            api_key: api_key.clone(),
            http: http.clone(),
            outbound: outbound.clone(),
        })?),
        ProviderKind::Glm => Arc::new(GlmProvider::new(GlmConfig {
            base_url: base_url()?,
            api_key: required_key()?,
            http: http.clone(),
            outbound: outbound.clone(),
        })?),
        ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(AnthropicConfig {
            base_url: base_url()?,
            api_key: required_key()?,
            http: http.clone(),
            outbound: outbound.clone(),
        })?),
        ProviderKind::Mock => Arc::new(MockProvider::new(mock_chunk_delay)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in ProviderKind::ALL {
            assert_eq!(kind.as_str().parse::<ProviderKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
            if kind != ProviderKind::Mock {
                assert!(
                    kind.default_base_url()
                        .and_then(|u| Url::parse(u).ok())
                        .is_some()
                );
            }
        }
        assert_eq!("OpenAI".parse::<ProviderKind>(), Ok(ProviderKind::OpenAi));
        assert!("gemini".parse::<ProviderKind>().is_err());
    }

    #[test]
    fn build_checks_keys_and_addresses_before_any_request() {
        let http = HttpPolicy::default();
        let public = OutboundPolicy::public_only();
        let mock = build(
            ProviderKind::Mock,
            None,
            None,
            &http,
            &public,
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(mock.kind(), "mock");
        for kind in [
            ProviderKind::OpenAi,
            ProviderKind::Glm,
            ProviderKind::Anthropic,
        ] {
            let key = Some(SecretString::from("k"));
            let provider = build(kind, None, key.clone(), &http, &public, Duration::ZERO).unwrap();
            assert_eq!(provider.kind(), kind.as_str());
            assert!(!format!("{provider:?}").contains("\"k\""));
            let private = Url::parse("http://10.0.0.5:8000/v1").ok();
            let err = build(kind, private, key, &http, &public, Duration::ZERO).unwrap_err();
            assert_eq!(err.code(), "upstream_rejected", "{kind}");
        }
        let err = build(
            ProviderKind::Anthropic,
            None,
            None,
            &http,
            &public,
            Duration::ZERO,
        )
        .unwrap_err();
        assert_eq!(err.code(), "upstream_unauthorized");
        assert!(
            build(
                ProviderKind::OpenAi,
                None,
                None,
                &http,
                &public,
                Duration::ZERO
            )
            .is_ok()
        );
    }
}
