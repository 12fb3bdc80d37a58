//! The error that crosses layer boundaries.
//!
//! Every failure a client can see is an [`Error`]: an [`ErrorKind`] (which the API maps to an
//! HTTP status with an exhaustive `match`), a stable snake_case `code` that clients may branch
//! on, and a `message` written for the client. Internal causes ride along in `source`; they are
//! logged by the API and never sent to the client.

use std::borrow::Cow;
use std::fmt;

/// What went wrong, in the terms a client cares about. Each kind has exactly one HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or a value is invalid (400).
    BadRequest,
    /// No valid credentials (401).
    Unauthenticated,
    /// Authenticated, but not allowed (403).
    Forbidden,
    /// The thing does not exist, or belongs to someone else (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// The body is larger than allowed (413).
    PayloadTooLarge,
    /// The body is not of a supported media type (415).
    UnsupportedMediaType,
    /// Well-formed but semantically unacceptable (422).
    Unprocessable,
    /// Too many requests; retry later (429).
    RateLimited,
    /// A dependency is down; retry later (503).
    Unavailable,
    /// An upstream (a model provider) failed or answered nonsense (502).
    BadGateway,
    /// An upstream did not answer in time (504).
    GatewayTimeout,
    /// A bug or an unexpected failure (500). The message never reveals the cause.
    Internal,
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A client-facing error. See the module docs.
#[derive(thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    kind: ErrorKind,
    code: Cow<'static, str>,
    message: Cow<'static, str>,
    retry_after_secs: Option<u64>,
    #[source]
    source: Option<Source>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(
        kind: ErrorKind,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
            retry_after_secs: None,
            source: None,
        }
    }

    pub fn bad_request(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }

    /// A field failed validation: a 400 with code `invalid_<field>`.
    pub fn validation(field: &str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::BadRequest, format!("invalid_{field}"), message)
    }

    pub fn unauthenticated(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(ErrorKind::Unauthenticated, code, message)
    }

    pub fn forbidden(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(ErrorKind::Forbidden, code, message)
    }

    /// `what` names the kind of thing ("user", "API key"); the message never echoes the id, so
    /// a missing object and another tenant's object look exactly alike.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn conflict(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    pub fn rate_limited(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
        retry_after_secs: u64,
    ) -> Self {
        Self::new(ErrorKind::RateLimited, code, message).with_retry_after(retry_after_secs)
    }

    pub fn unavailable(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
        retry_after_secs: u64,
    ) -> Self {
        Self::new(ErrorKind::Unavailable, code, message).with_retry_after(retry_after_secs)
    }

    /// An unexpected failure. The cause is kept for the logs; the client sees a generic message.
    pub fn internal(source: impl Into<Source>) -> Self {
        Self::new(
            ErrorKind::Internal,
            "internal_error",
            "an internal error occurred",
        )
        .with_source(source)
    }

    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Seconds a client should wait before retrying; at least one second.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after_secs
    }

    /// The chain of internal causes, for logs only.
    pub fn cause_chain(&self) -> String {
        let mut out = String::new();
        let mut next = self
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(err) = next {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&err.to_string());
            next = err.source();
        }
        out
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("code", &self.code)
            .field("message", &self.message)
            .field("retry_after_secs", &self.retry_after_secs)
            .field("cause", &self.cause_chain())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause_from_the_message() {
        let err = Error::internal(std::io::Error::other("disk on fire at /var/secret"));
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert_eq!(err.code(), "internal_error");
        assert_eq!(err.message(), "an internal error occurred");
        assert!(!err.message().contains("secret"));
        assert_eq!(err.cause_chain(), "disk on fire at /var/secret");
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        assert_eq!(Error::unavailable("x", "y", 0).retry_after_secs(), Some(1));
        assert_eq!(
            Error::rate_limited("x", "y", 30).retry_after_secs(),
            Some(30)
        );
    }

    #[test]
    fn not_found_never_echoes_ids() {
        let err = Error::not_found("user");
        assert_eq!(err.code(), "not_found");
        assert_eq!(err.message(), "user not found");
    }
}
