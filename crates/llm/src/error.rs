//! What can go wrong talking to a provider, with stable codes.

use std::time::Duration;

use paas_core::{Error, ErrorKind};

/// A provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// Could not connect, or the provider answered 5xx (after retries).
    #[error("the model provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider answered 429 (after retries).
    #[error("the model provider is rate limiting requests")]
    RateLimited { retry_after: Option<Duration> },
    /// No first byte, or no chunk for too long.
    #[error("the model provider timed out: {0}")]
    Timeout(String),
    /// The provider answered something we cannot read (malformed JSON, a cut stream…).
    #[error("the model provider sent a bad response: {0}")]
    BadResponse(String),
    /// The provider refused the credentials (401/403).
    #[error("the model provider refused the credentials")]
    Unauthorized(String),
    /// The provider refused the request itself (400/404/413/422: unknown model, too long…).
    #[error("the model provider refused the request: {0}")]
    Rejected(String),
}

impl LlmError {
    /// Stable snake_case code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            LlmError::Unavailable(_) => "upstream_unavailable",
            LlmError::RateLimited { .. } => "upstream_rate_limited",
            LlmError::Timeout(_) => "upstream_timeout",
            LlmError::BadResponse(_) => "upstream_bad_response",
            LlmError::Unauthorized(_) => "upstream_unauthorized",
            LlmError::Rejected(_) => "upstream_rejected",
        }
    }

    /// A message for the client: what happened, without upstream bodies or secrets.
    pub fn client_message(&self) -> String {
        match self {
            LlmError::Unavailable(_) => "the model provider is unavailable; retry shortly".into(),
            LlmError::RateLimited { .. } => {
                "the model provider is rate limiting requests; retry later".into()
            }
            LlmError::Timeout(_) => "the model provider did not answer in time".into(),
            LlmError::BadResponse(_) => "the model provider sent a response that could not be read".into(),
            LlmError::Unauthorized(_) => {
                "the model provider refused the configured credentials; ask an admin to check the provider's API key".into()
            }
            LlmError::Rejected(detail) => format!("the model provider refused the request: {detail}"),
        }
    }
}

impl From<LlmError> for Error {
    fn from(err: LlmError) -> Self {
        let message = err.client_message();
        let code = err.code();
        let api = match &err {
            LlmError::Unavailable(_) => Error::new(ErrorKind::BadGateway, code, message),
            LlmError::RateLimited { retry_after } => {
                Error::rate_limited(code, message, retry_after.map(|d| d.as_secs()).unwrap_or(5))
            }
            LlmError::Timeout(_) => Error::new(ErrorKind::GatewayTimeout, code, message),
            LlmError::BadResponse(_) | LlmError::Unauthorized(_) => {
                Error::new(ErrorKind::BadGateway, code, message)
            }
            LlmError::Rejected(_) => Error::new(ErrorKind::BadRequest, code, message),
        };
        api.with_source(err)
    }
}
