//! Turning errors into HTTP responses.
//!
//! Every error leaves as `{"error": {"code": "...", "message": "..."}}` with the status its
//! [`ErrorKind`] maps to (an exhaustive `match`: a new kind does not compile until it is
//! mapped). 429 and 503 carry `Retry-After`; 401 carries `WWW-Authenticate`. Internal causes are
//! logged with their chain and never sent to the client.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use paas_core::{Error, ErrorKind};
use serde::Serialize;

/// The JSON error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case; safe to branch on.
    pub code: String,
    /// For people; may change.
    pub message: String,
}

/// `paas_core::Error` as an actix response (a local newtype, as the orphan rule requires).
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        Self(err)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
        ErrorKind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(self.0.kind())
    }

    fn error_response(&self) -> HttpResponse {
        let err = &self.0;
        match err.kind() {
            ErrorKind::Internal => {
                tracing::error!(code = err.code(), cause = %err.cause_chain(), "internal error");
            }
            ErrorKind::Unavailable => {
                tracing::warn!(code = err.code(), cause = %err.cause_chain(), "dependency unavailable");
            }
            _ => tracing::debug!(code = err.code(), "request refused"),
        }
        let mut response = HttpResponse::build(self.status_code());
        if let Some(secs) = err.retry_after_secs() {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if err.kind() == ErrorKind::Unauthenticated {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"agent-paas\""),
            ));
        }
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        response.json(body(err))
    }
}

pub fn body(err: &Error) -> ErrorBody {
    ErrorBody {
        error: ErrorDetail {
            code: err.code().to_owned(),
            message: err.message().to_owned(),
        },
    }
}

/// Malformed or oversized JSON bodies.
pub fn json_error(err: actix_web::error::JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let api = match &err {
        E::OverflowKnownLength { .. } | E::Overflow { .. } => Error::new(
            ErrorKind::PayloadTooLarge,
            "payload_too_large",
            "the request body is larger than the 1 MiB limit",
        ),
        E::ContentType => Error::new(
            ErrorKind::UnsupportedMediaType,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        E::Deserialize(inner) => Error::bad_request("invalid_json", describe_serde(inner)),
        E::Serialize(_) => Error::internal(err.to_string()),
        _ => Error::bad_request("invalid_body", "the request body could not be read"),
    };
    ApiError(api).into()
}

/// A message about a JSON problem that names the field or position, never the value.
fn describe_serde(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof => {
            format!(
                "the body is not valid JSON (line {}, column {})",
                err.line(),
                err.column()
            )
        }
        Category::Io => "the body could not be read".to_owned(),
        // serde's data errors name fields and expected types ("unknown field `role`, expected
        // one of …", "missing field `email`"), which helps; but "invalid type: string \"…\""
        // quotes the value, which could be a secret sent in the wrong field. Drop quoted
        // strings and the position noise.
        Category::Data => {
            let text = err.to_string();
            let text = text.split(" at line ").next().unwrap_or(&text);
            format!(
                "the body does not match the expected shape: {}",
                redact_quoted(text)
            )
        }
    }
}

/// Replaces every double-quoted string with `"…"`.
fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for c in text.chars() {
        if c == '"' {
            if inside {
                out.push_str("…\"");
            } else {
                out.push('"');
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// Query strings that do not parse.
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    // serde_urlencoded's messages may quote the offending value; drop it as for JSON bodies.
    let message = format!("invalid query string: {}", redact_quoted(&err.to_string()));
    ApiError(Error::bad_request("invalid_query", message)).into()
}

/// Path segments that do not parse (such as an id that is not a UUID): answered as 404, exactly
/// like an id that does not exist.
pub fn path_error(_err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError(Error::not_found("resource")).into()
}

/// Unknown routes.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError(Error::new(
        ErrorKind::NotFound,
        "route_not_found",
        format!(
            "no route for {} {}",
            req.method(),
            req.path().chars().take(200).collect::<String>()
        ),
    ))
    .error_response()
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;

    use super::*;

    fn json_of(err: Error) -> (StatusCode, serde_json::Value, Option<String>) {
        let response = ApiError(err).error_response();
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().try_into_bytes().unwrap();
        (status, serde_json::from_slice(&bytes).unwrap(), retry)
    }

    #[test]
    fn errors_have_the_documented_shape() {
        let (status, json, _) = json_of(Error::not_found("user"));
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "not_found", "message": "user not found"}})
        );
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let (status, json, _) = json_of(Error::internal("password=hunter2 in SQL"));
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "internal_error", "message": "an internal error occurred"}})
        );
    }

    #[test]
    fn json_shape_errors_name_fields_but_never_quote_values() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Login {
            email: String,
            attempts: u32,
        }
        let err = serde_json::from_str::<Login>(r#"{"email": "a@b.c", "attempts": "hunter2"}"#)
            .unwrap_err();
        let message = describe_serde(&err);
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("invalid type"), "{message}");
        let err =
            serde_json::from_str::<Login>(r#"{"email": "a@b.c", "attempts": 1, "role": "admin"}"#)
                .unwrap_err();
        assert!(describe_serde(&err).contains("unknown field `role`"));
        let err = serde_json::from_str::<Login>(r#"{"email": "a@b.c""#).unwrap_err();
        assert!(describe_serde(&err).starts_with("the body is not valid JSON"));
    }

    #[test]
    fn throttling_and_outages_say_when_to_retry() {
        let (status, _, retry) = json_of(Error::rate_limited(
            "too_many_login_attempts",
            "slow down",
            42,
        ));
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry.as_deref(), Some("42"));
        let (status, _, retry) = json_of(Error::unavailable("database_unavailable", "down", 2));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("2"));
    }
}
