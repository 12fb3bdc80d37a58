//! Zhipu GLM v4 (`https://open.bigmodel.cn/api/paas/v4`, `POST /chat/completions`,
//! `Authorization: Bearer <api key>`).
//!
//! The wire format is OpenAI's (see [`crate::openai`]) with quirks this client handles:
//!
//! - streamed tool-call fragments may lack `index`, may repeat the `id` (and name) on every
//!   fragment, or may carry the whole call at once: they are assembled by index when present,
//!   else by id, else appended to the most recent call;
//! - the last chunk carries `usage` unasked: `stream_options` is not sent;
//! - reasoning (GLM-4.5 and later) arrives as `reasoning_content`;
//! - `finish_reason` may be `sensitive` (content filter) or `network_error` (the answer broke
//!   off upstream: an error item);
//! - temperature must lie within [0, 1]: it is clamped.

use std::fmt;

use secrecy::SecretString;
use url::Url;

use paas_net::OutboundPolicy;

use crate::http::HttpPolicy;
use crate::openai::{Compatible, Dialect};
use crate::types::BoxFuture;
use crate::{ChatRequest, EventStream, LlmError, Provider};

/// Where and how to reach GLM.
#[derive(Clone, Debug)]
pub struct GlmConfig {
    /// The API root: `https://open.bigmodel.cn/api/paas/v4`.
    pub base_url: Url,
    pub api_key: SecretString,
    pub http: HttpPolicy,
    pub outbound: OutboundPolicy,
}

/// The Zhipu GLM v4 client.
pub struct GlmProvider {
    inner: Compatible,
}

impl GlmProvider {
    /// Zhipu's API root.
    pub const DEFAULT_BASE_URL: &'static str = "https://open.bigmodel.cn/api/paas/v4";

    /// Checks the base URL against the outbound policy and builds the client; no request is
    /// made.
    pub fn new(config: GlmConfig) -> Result<Self, LlmError> {
        Ok(Self {
            inner: Compatible::new(
                "glm",
                Dialect::Glm,
                &config.base_url,
                Some(config.api_key),
                config.http,
                &config.outbound,
            )?,
        })
    }
}

impl fmt::Debug for GlmProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Provider for GlmProvider {
    fn kind(&self) -> &'static str {
        "glm"
    }

    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<EventStream, LlmError>> {
        self.inner.stream(request)
    }
}
