//! What every HTTP provider client shares: timeouts, the SSRF-guarded `reqwest` client, sending a
//! request with retries, mapping upstream statuses to [`LlmError`], and reading the body as
//! Server-Sent Events with an idle timeout.
//!
//! Retries happen only while waiting for the response headers. Once a `200` is in hand the
//! response belongs to the caller: a failure after that is an error item on the stream, never a
//! second request, so nothing already shown is duplicated.
//!
//! Nothing here logs a request or response body, or a header carrying a key.

use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt, stream};
use paas_net::{GuardedResolver, NetError, OutboundPolicy};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Client, Response, StatusCode, redirect};
use url::Url;

use crate::LlmError;

/// Timeouts and retries for provider calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpPolicy {
    /// TCP (and TLS) connection set-up.
    pub connect_timeout: Duration,
    /// From sending the request to the response headers.
    pub first_byte_timeout: Duration,
    /// Between two chunks of a streamed body.
    pub idle_timeout: Duration,
    /// Extra attempts after the first, on connection failures, timeouts, 408, 429 and 5xx.
    pub max_retries: u32,
    /// The first backoff ceiling; it doubles on each retry (full jitter).
    pub backoff_base: Duration,
    /// The largest backoff ceiling. A `Retry-After` longer than four times this is not waited
    /// for: the call fails at once with the provider's hint.
    pub backoff_cap: Duration,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_retries: 2,
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(8),
        }
    }
}

impl HttpPolicy {
    /// The longest `Retry-After` worth waiting for inside one call.
    pub fn max_retry_after(&self) -> Duration {
        self.backoff_cap.saturating_mul(4)
    }

    /// The backoff before retry number `retry` (0-based): uniformly random between zero and
    /// `min(backoff_cap, backoff_base * 2^retry)`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .backoff_base
            .saturating_mul(2u32.saturating_pow(retry.min(20)))
            .min(self.backoff_cap);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        if ceiling_ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(rand::random_range(0..=ceiling_ms))
    }
}

/// Builds the HTTP client a provider uses: connect timeout, TCP_NODELAY, pooled keep-alive
/// connections, no redirects, no proxies, and a DNS resolver that refuses names resolving to
/// addresses `outbound` does not allow.
///
/// Proxies are off (including `HTTP_PROXY` and friends) because a proxy would resolve the
/// provider's host itself, out of the guard's reach.
pub fn client(policy: &HttpPolicy, outbound: &OutboundPolicy) -> Result<Client, LlmError> {
    Client::builder()
        .user_agent(concat!("agent-paas/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(policy.connect_timeout)
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(60))
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver::new(outbound.clone())))
        .build()
        .map_err(|err| LlmError::Unavailable(format!("could not build the HTTP client: {err}")))
}

/// Checks a provider's base URL before any request: http(s) only, and a literal address must
/// be allowed by `outbound` (names are checked by the resolver at connect time).
pub fn check_base_url(url: &Url, outbound: &OutboundPolicy) -> Result<(), LlmError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(LlmError::Rejected(format!(
            "the provider URL must be http or https, not {}",
            url.scheme()
        )));
    }
    paas_net::check_url(url, outbound).map_err(|err| refused_address(&err))
}

fn refused_address(err: &NetError) -> LlmError {
    LlmError::Rejected(format!(
        "the provider address is refused by the outbound policy: {err}"
    ))
}

/// `base` with `path` appended to its path (`https://h/v1` + `chat/completions` →
/// `https://h/v1/chat/completions`).
pub(crate) fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url
}

/// Statuses worth another attempt. 529 is Anthropic's "overloaded".
fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504 | 529)
}

/// One attempt's outcome.
enum Attempt {
    Done(Result<Response, LlmError>),
    Retry {
        error: LlmError,
        retry_after: Option<Duration>,
    },
}

/// POSTs `body` (JSON) to `url` and returns the response once it is a 2xx, retrying as the
/// policy says. `provider` names the client in logs.
pub(crate) async fn post(
    client: &Client,
    policy: &HttpPolicy,
    provider: &'static str,
    url: &Url,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, LlmError> {
    let mut retry = 0u32;
    loop {
        let (error, retry_after) = match attempt(client, policy, url, headers, body.to_vec()).await
        {
            Attempt::Done(result) => return result,
            Attempt::Retry { error, retry_after } => (error, retry_after),
        };
        if retry >= policy.max_retries {
            tracing::warn!(
                provider,
                attempts = retry + 1,
                code = error.code(),
                "giving up: {error}"
            );
            return Err(error);
        }
        let delay = match retry_after {
            Some(hint) if hint > policy.max_retry_after() => {
                tracing::warn!(
                    provider,
                    retry_after_ms = u64::try_from(hint.as_millis()).unwrap_or(u64::MAX),
                    code = error.code(),
                    "the provider asks for a longer wait than a call may take: giving up"
                );
                return Err(error);
            }
            Some(hint) => hint,
            None => policy.backoff(retry),
        };
        retry += 1;
        tracing::warn!(
            provider,
            retry,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            code = error.code(),
            "retrying: {error}"
        );
        tokio::time::sleep(delay).await;
    }
}

/// Adds `traceparent` (and `tracestate`) of the current span, so a provider that traces sees
/// its call inside the chat's trace. Nothing is added when tracing is not exported.
fn inject_trace_context(headers: &mut HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    struct Injector<'a>(&'a mut HeaderMap);
    impl opentelemetry::propagation::Injector for Injector<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(key.as_bytes()),
                reqwest::header::HeaderValue::from_str(&value),
            ) {
                self.0.insert(name, value);
            }
        }
    }
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut Injector(headers));
    });
}

async fn attempt(
    client: &Client,
    policy: &HttpPolicy,
    url: &Url,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Attempt {
    let mut headers = headers.clone();
    inject_trace_context(&mut headers);
    let send = client.post(url.clone()).headers(headers).body(body).send();
    let response = match tokio::time::timeout(policy.first_byte_timeout, send).await {
        Err(_) => {
            return Attempt::Retry {
                error: LlmError::Timeout(format!(
                    "no response headers within {} ms",
                    policy.first_byte_timeout.as_millis()
                )),
                retry_after: None,
            };
        }
        Ok(Err(err)) => return transport_failure(&err),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if status.is_success() {
        return Attempt::Done(Ok(response));
    }
    let retry_after = retry_after(response.headers());
    let body = read_bounded(response, policy.idle_timeout).await;
    let error = status_error(status, retry_after, &body);
    if retryable_status(status) {
        Attempt::Retry { error, retry_after }
    } else {
        Attempt::Done(Err(error))
    }
}

/// Maps a failure to get a response at all.
fn transport_failure(err: &reqwest::Error) -> Attempt {
    if let Some(refused) = net_error(err) {
        return Attempt::Done(Err(refused_address(refused)));
    }
    if err.is_builder() {
        return Attempt::Done(Err(LlmError::Rejected(format!(
            "the request could not be built: {}",
            error_chain(err)
        ))));
    }
    let error = if err.is_timeout() {
        LlmError::Timeout(error_chain(err))
    } else {
        LlmError::Unavailable(error_chain(err))
    };
    Attempt::Retry {
        error,
        retry_after: None,
    }
}

/// The guard's refusal, if that is why the connection failed.
fn net_error(err: &reqwest::Error) -> Option<&NetError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(net) = current.downcast_ref::<NetError>() {
            return Some(net);
        }
        source = current.source();
    }
    None
}

/// An error and its causes on one line (reqwest's own message alone says little).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `Retry-After` in seconds (or OpenAI's `retry-after-ms`). The HTTP-date form is ignored.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    if let Some(ms) = number("retry-after-ms") {
        return Some(Duration::from_secs_f64((ms / 1000.0).min(86_400.0)));
    }
    number("retry-after").map(|s| Duration::from_secs_f64(s.min(86_400.0)))
}

/// The most of an error body we read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Reads up to [`MAX_ERROR_BODY`] bytes of a body, giving up quietly on a slow or broken one.
async fn read_bounded(mut response: Response, idle: Duration) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match tokio::time::timeout(idle, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    body
}

/// What a provider's JSON error body says: its message and its error type or code.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub message: Option<String>,
    /// The error's `type` (OpenAI, Anthropic), else its `code` (GLM).
    pub kind: Option<String>,
    /// The error's `code` when it also has a `type` (OpenAI: `rate_limit_exceeded`…).
    pub code: Option<String>,
}

impl ErrorBody {
    /// Reads the common shapes: `{"error": {"message", "type"|"code"}}` (OpenAI, GLM,
    /// Anthropic), `{"error": "..."}` (Ollama), `{"message", "type"}` and `{"detail": "..."}`.
    /// Anything else (HTML, plain text) gives nothing: it is not echoed.
    pub fn parse(body: &[u8]) -> Self {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(value) => Self::from_value(&value),
            Err(_) => Self::default(),
        }
    }

    fn with_kind(message: Option<String>, kind: Option<String>, code: Option<String>) -> Self {
        let (kind, code) = match kind {
            Some(kind) => (Some(kind), code),
            None => (code, None),
        };
        Self {
            message: message.map(|m| truncate(&m)),
            kind,
            code,
        }
    }

    pub fn from_value(value: &serde_json::Value) -> Self {
        let text = |v: Option<&serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        match value.get("error") {
            Some(error @ serde_json::Value::Object(_)) => Self::with_kind(
                text(error.get("message")),
                text(error.get("type")),
                text(error.get("code")),
            ),
            Some(serde_json::Value::String(message)) => Self {
                message: Some(truncate(message)),
                ..Self::default()
            },
            _ => Self::with_kind(
                text(value.get("message")).or_else(|| text(value.get("detail"))),
                text(value.get("type")),
                text(value.get("code")),
            ),
        }
    }
}

impl ErrorBody {
    /// Maps an error a provider reported inside a stream (an `error` object or event) by its
    /// type or code: OpenAI's and Anthropic's error types, and GLM's numeric codes.
    pub fn to_error(&self) -> LlmError {
        let message = || {
            self.message
                .clone()
                .unwrap_or_else(|| "the provider reported an error".to_owned())
        };
        let kind = self.kind.as_deref().unwrap_or_default();
        let code = self.code.as_deref().unwrap_or_default();
        let is = |names: &[&str]| names.contains(&kind) || names.contains(&code);
        if is(&[
            "rate_limit_error",
            "rate_limit_exceeded",
            "insufficient_quota",
            "1302",
            "1303",
            "1305",
        ]) {
            LlmError::RateLimited { retry_after: None }
        } else if is(&[
            "authentication_error",
            "permission_error",
            "invalid_api_key",
            "1000",
            "1001",
            "1002",
            "1003",
            "1004",
        ]) {
            LlmError::Unauthorized(format!("stream error ({kind})"))
        } else if is(&[
            "overloaded_error",
            "api_error",
            "server_error",
            "service_unavailable",
            "internal_error",
            "timeout",
            "500",
            "1234",
        ]) {
            LlmError::Unavailable(message())
        } else if is(&[
            "invalid_request_error",
            "not_found_error",
            "request_too_large",
            "context_length_exceeded",
            "model_not_found",
            "1210",
            "1211",
            "1212",
            "1213",
            "1214",
            "1301",
        ]) {
            LlmError::Rejected(message())
        } else {
            LlmError::BadResponse(message())
        }
    }
}

/// The most of a provider's error message we keep.
pub(crate) const MAX_MESSAGE_CHARS: usize = 300;

pub(crate) fn truncate(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(MAX_MESSAGE_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// Maps a final non-2xx status (and its body) to an error.
pub(crate) fn status_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> LlmError {
    let parsed = ErrorBody::parse(body);
    let code = status.as_u16();
    let with_message = |prefix: String| match &parsed.message {
        Some(message) => format!("{prefix}: {message}"),
        None => prefix,
    };
    match code {
        // The message may quote part of the key ("Incorrect API key provided: sk-…"): keep
        // only the status and the error type.
        401 | 403 => LlmError::Unauthorized(match &parsed.kind {
            Some(kind) => format!("HTTP {code} ({kind})"),
            None => format!("HTTP {code}"),
        }),
        429 => LlmError::RateLimited { retry_after },
        408 | 500..=599 => LlmError::Unavailable(with_message(format!("HTTP {code}"))),
        400..=499 => LlmError::Rejected(
            parsed
                .message
                .clone()
                .unwrap_or_else(|| format!("HTTP {code}")),
        ),
        300..=399 => LlmError::BadResponse(format!(
            "HTTP {code}: the provider redirected, and redirects are not followed"
        )),
        _ => LlmError::BadResponse(format!("unexpected HTTP {code}")),
    }
}

/// Reads a successful response as Server-Sent Events. Each chunk of the body must arrive within
/// `idle` of the previous one ([`LlmError::Timeout`] otherwise); a broken or cut body, or bytes
/// that are not an event stream, are [`LlmError::BadResponse`]. The stream ends after its first
/// error.
///
/// A provider that answers 200 with a JSON document instead of a stream (some do, for errors)
/// gets [`LlmError::BadResponse`] carrying its message, before any event.
pub(crate) async fn event_stream(
    response: Response,
    idle: Duration,
) -> Result<impl Stream<Item = Result<Event, LlmError>> + Send + 'static, LlmError> {
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if is_json {
        let body = read_bounded(response, idle).await;
        let parsed = ErrorBody::parse(&body);
        return Err(LlmError::BadResponse(format!(
            "expected an event stream, got a JSON document{}",
            parsed.message.map(|m| format!(": {m}")).unwrap_or_default()
        )));
    }
    let body = Box::pin(response.bytes_stream());
    let chunks = stream::unfold(Some(body), move |state| async move {
        let mut body = state?;
        match tokio::time::timeout(idle, body.next()).await {
            Err(_) => Some((
                Err(LlmError::Timeout(format!(
                    "no data from the provider for {} ms",
                    idle.as_millis()
                ))),
                None,
            )),
            Ok(None) => None,
            Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(body))),
            Ok(Some(Err(err))) => Some((
                Err(LlmError::BadResponse(format!(
                    "the response body broke off: {}",
                    error_chain(&err)
                ))),
                None,
            )),
        }
    });
    Ok(sse_events(Box::pin(chunks)))
}

/// The most bytes one event may take on the wire (all its lines). Far beyond any real event
/// (providers send deltas; GLM's largest, a whole tool call, is bounded by `max_tokens`, at
/// most 32k tokens for an agent), and what bounds the memory and parsing time a body that never
/// ends an event (garbage, or a stream without newlines) can cost.
pub(crate) const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Parses a body, arriving as `chunks` split anywhere (inside a UTF-8 character, inside a
/// `\r\n`), as Server-Sent Events: however it is split, the same events come out.
///
/// Bytes that are not UTF-8, an event longer than [`MAX_EVENT_BYTES`] or a body that ends inside
/// a character are [`LlmError::BadResponse`] as soon as they arrive, after the events complete
/// before them; the stream ends after its first error.
pub(crate) fn sse_events<S, B>(chunks: S) -> impl Stream<Item = Result<Event, LlmError>> + Send
where
    S: Stream<Item = Result<B, LlmError>> + Send + Unpin,
    B: AsRef<[u8]> + Send,
{
    let state = Checked {
        chunks,
        framing: Framing::default(),
        started: false,
        error: None,
        done: false,
    };
    let checked = stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        if !state.started {
            // The parser slices a leading BOM off at a byte that is not a character boundary,
            // and panics: it is given a blank line (which dispatches nothing) first, so it
            // never sees one, and the BOM is taken off here.
            state.started = true;
            return Some((Ok(Piece::Lf), state));
        }
        if let Some(err) = state.error.take() {
            state.done = true;
            return Some((Err(err), state));
        }
        let piece = match state.chunks.next().await {
            Some(Ok(bytes)) => {
                let mut checked = state.framing.check(bytes.as_ref());
                if let Some(err) = checked.error.take() {
                    state.error = Some(err);
                }
                if checked.is_whole(bytes.as_ref()) {
                    Ok(Piece::Body(bytes))
                } else {
                    let part = &bytes.as_ref()[checked.start..checked.end];
                    Ok(Piece::Part([checked.restored, part].concat()))
                }
            }
            Some(Err(err)) => {
                state.done = true;
                Err(err)
            }
            None => {
                state.done = true;
                match state.framing.finish() {
                    // A CR ends the last line, but the parser waits for a LF that may follow
                    // it: give it one (CR LF is a single line ending) so the event is not lost.
                    Ok(true) => Ok(Piece::Lf),
                    Ok(false) => return None,
                    Err(err) => Err(err),
                }
            }
        };
        Some((piece, state))
    });
    checked
        .eventsource()
        .map(|item| {
            item.map_err(|err| match err {
                EventStreamError::Transport(err) => err,
                EventStreamError::Utf8(err) => {
                    LlmError::BadResponse(format!("the event stream is not UTF-8: {err}"))
                }
                EventStreamError::Parser(err) => {
                    LlmError::BadResponse(format!("the event stream is malformed: {err}"))
                }
            })
        })
        .scan(false, |failed, item| {
            // The parser would go on to complain about what it still holds: one error is enough.
            let next = (!*failed).then(|| {
                *failed = item.is_err();
                item
            });
            futures_util::future::ready(next)
        })
}

struct Checked<S> {
    chunks: S,
    framing: Framing,
    started: bool,
    /// The error found in the last chunk, reported after the bytes before it.
    error: Option<LlmError>,
    done: bool,
}

/// What the SSE parser is given: a chunk as it came; part of one (without a BOM, or the bytes
/// before an error); or a LF (the blank line it starts with, and the one that completes a CR
/// at the end of the body).
enum Piece<B> {
    Body(B),
    Part(Vec<u8>),
    Lf,
}

impl<B: AsRef<[u8]>> AsRef<[u8]> for Piece<B> {
    fn as_ref(&self) -> &[u8] {
        match self {
            Piece::Body(bytes) => bytes.as_ref(),
            Piece::Part(bytes) => bytes,
            Piece::Lf => b"\n",
        }
    }
}

const BOM: &[u8] = "\u{feff}".as_bytes();

/// What [`sse_events`] checks of the raw bytes before the SSE parser buffers them. The parser
/// alone takes any invalid UTF-8 for a character cut by a chunk boundary and waits, buffering
/// the rest of the body, until the body ends; and it buffers an unterminated event without
/// limit, rescanning it on every chunk.
#[derive(Debug)]
struct Framing {
    /// While the body may still start with a BOM: how many of its bytes have been held back.
    bom: Option<usize>,
    /// The start of a UTF-8 character cut off at the end of the last chunk (at most 3 bytes).
    partial: Vec<u8>,
    /// Bytes of the body before the current chunk.
    offset: usize,
    /// Bytes of the current event so far.
    event_bytes: usize,
    /// The last byte ended a line (or nothing has been read yet).
    line_start: bool,
    /// The last byte was a CR: a LF right after it ends the same line.
    after_cr: bool,
}

impl Default for Framing {
    fn default() -> Self {
        Self {
            bom: Some(0),
            partial: Vec::new(),
            offset: 0,
            event_bytes: 0,
            line_start: true,
            after_cr: false,
        }
    }
}

/// What to pass on of a chunk: `restored` (BOM bytes held back from earlier chunks that turned
/// out not to be one) then `chunk[start..end]`; then the error, if any.
#[derive(Debug)]
struct Check {
    restored: &'static [u8],
    start: usize,
    end: usize,
    error: Option<LlmError>,
}

impl Check {
    fn is_whole(&self, chunk: &[u8]) -> bool {
        self.restored.is_empty() && self.start == 0 && self.end == chunk.len()
    }
}

impl Framing {
    /// Checks the next chunk and says what of it the parser gets: on error, the bytes before
    /// the fault still are, so the same events come out however the body is split.
    fn check(&mut self, bytes: &[u8]) -> Check {
        let (restored, start) = self.strip_bom(bytes);
        let (end, error) = match self.check_utf8(bytes) {
            Ok(()) => (bytes.len(), None),
            Err((valid, error)) => (valid, Some(error)),
        };
        let start = start.min(end);
        for (at, &byte) in bytes.iter().enumerate().take(end).skip(start) {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' | b'\n' => {
                    if self.line_start {
                        self.event_bytes = 0; // a blank line ends the event
                    }
                    self.line_start = true;
                    self.after_cr = byte == b'\r';
                }
                _ => {
                    self.line_start = false;
                    self.after_cr = false;
                    self.event_bytes += 1;
                    if self.event_bytes > MAX_EVENT_BYTES {
                        return Check {
                            restored,
                            start,
                            end: at,
                            error: Some(LlmError::BadResponse(format!(
                                "an event of the stream is longer than {MAX_EVENT_BYTES} bytes"
                            ))),
                        };
                    }
                }
            }
        }
        self.offset += bytes.len();
        Check {
            restored,
            start,
            end,
            error,
        }
    }

    /// Takes a BOM off the start of the body, however it is split: the bytes that may be the
    /// start of one are held back until it is clear; returns those to restore and where the
    /// chunk's bytes to pass on start.
    fn strip_bom(&mut self, bytes: &[u8]) -> (&'static [u8], usize) {
        let Some(held) = self.bom else {
            return (&[], 0);
        };
        let rest = &BOM[held..];
        let same = rest
            .iter()
            .zip(bytes)
            .take_while(|(bom, byte)| bom == byte)
            .count();
        if same == rest.len() {
            self.bom = None; // a BOM: dropped
            (&[], same)
        } else if same == bytes.len() {
            self.bom = Some(held + same); // maybe a BOM: wait for the next chunk
            (&[], same)
        } else {
            self.bom = None; // not a BOM: give back what was held
            (&BOM[..held], 0)
        }
    }

    fn check_utf8(&mut self, bytes: &[u8]) -> Result<(), (usize, LlmError)> {
        let joined;
        let text = if self.partial.is_empty() {
            bytes
        } else {
            joined = [self.partial.as_slice(), bytes].concat();
            &joined
        };
        let partial = match std::str::from_utf8(text) {
            Ok(_) => &[][..],
            // A character cut by the chunk boundary: the next chunk completes it.
            Err(err) if err.error_len().is_none() => &text[err.valid_up_to()..],
            Err(err) => {
                let carried = self.partial.len();
                return Err((
                    err.valid_up_to().saturating_sub(carried),
                    LlmError::BadResponse(format!(
                        "the event stream is not UTF-8 (at byte {})",
                        self.offset - carried + err.valid_up_to()
                    )),
                ));
            }
        };
        self.partial = partial.to_vec();
        Ok(())
    }

    /// The body ended. Says whether its last byte is a CR; a character cut short is an error.
    fn finish(&self) -> Result<bool, LlmError> {
        if self.partial.is_empty() {
            Ok(self.after_cr)
        } else {
            Err(LlmError::BadResponse(format!(
                "the event stream ends inside a UTF-8 character (at byte {})",
                self.offset - self.partial.len()
            )))
        }
    }
}

/// A header value holding a secret: marked sensitive so it never shows in debug output.
pub(crate) fn secret_header(value: &str) -> Result<HeaderValue, LlmError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        LlmError::Unauthorized("the API key contains characters a header cannot carry".into())
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// The headers every streaming JSON request carries.
pub(crate) fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        reqwest::header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_under_a_doubling_capped_ceiling() {
        let policy = HttpPolicy {
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_millis(350),
            ..HttpPolicy::default()
        };
        for _ in 0..200 {
            assert!(policy.backoff(0) <= Duration::from_millis(100));
            assert!(policy.backoff(1) <= Duration::from_millis(200));
            assert!(policy.backoff(2) <= Duration::from_millis(350));
            assert!(policy.backoff(40) <= Duration::from_millis(350));
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| policy.backoff(3)).collect();
        assert!(spread.len() > 5, "the backoff must be jittered");
        assert_eq!(policy.max_retry_after(), Duration::from_millis(1400));
    }

    #[test]
    fn retry_after_reads_seconds_and_milliseconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
        let mut date = HeaderMap::new();
        date.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&date), None);
    }

    #[test]
    fn error_bodies_of_every_provider_are_read() {
        let openai = br#"{"error":{"message":"Invalid model","type":"invalid_request_error","param":"model","code":"model_not_found"}}"#;
        assert_eq!(
            ErrorBody::parse(openai),
            ErrorBody {
                message: Some("Invalid model".into()),
                kind: Some("invalid_request_error".into()),
                code: Some("model_not_found".into()),
            }
        );
        let glm = r#"{"error":{"code":"1211","message":"模型不存在，请检查模型代码。"}}"#;
        let parsed = ErrorBody::parse(glm.as_bytes());
        assert_eq!(parsed.kind.as_deref(), Some("1211"));
        assert_eq!(
            parsed.message.as_deref(),
            Some("模型不存在，请检查模型代码。")
        );
        let anthropic = br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#;
        assert_eq!(
            ErrorBody::parse(anthropic).message.as_deref(),
            Some("max_tokens: Field required")
        );
        let ollama = br#"{"error":"model 'llama9' not found"}"#;
        assert_eq!(
            ErrorBody::parse(ollama).message.as_deref(),
            Some("model 'llama9' not found")
        );
        assert_eq!(
            ErrorBody::parse(b"<html>Bad Gateway</html>"),
            ErrorBody::default()
        );
    }

    #[test]
    fn messages_are_truncated_on_a_character_boundary() {
        let long = "é".repeat(400);
        let short = truncate(&long);
        assert_eq!(short.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(short.ends_with('…'));
        assert_eq!(truncate("fine"), "fine");
    }

    #[test]
    fn statuses_map_to_stable_errors() {
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        let unauthorized = status_error(StatusCode::UNAUTHORIZED, None, body);
        assert_eq!(unauthorized.code(), "upstream_unauthorized");
        assert!(!unauthorized.to_string().contains("sk-"));
        assert!(!format!("{unauthorized:?}").contains("sk-"));
        for code in [400u16, 404, 413, 422] {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
            assert_eq!(
                status_error(status, None, br#"{"error":{"message":"nope"}}"#),
                LlmError::Rejected("nope".into())
            );
        }
        assert_eq!(
            status_error(StatusCode::NOT_FOUND, None, b""),
            LlmError::Rejected("HTTP 404".into())
        );
        assert_eq!(
            status_error(
                StatusCode::TOO_MANY_REQUESTS,
                Some(Duration::from_secs(3)),
                b""
            ),
            LlmError::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        for code in [408u16, 500, 502, 503, 504, 529] {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            assert_eq!(
                status_error(status, None, b"").code(),
                "upstream_unavailable"
            );
        }
        assert_eq!(
            status_error(StatusCode::FOUND, None, b"").code(),
            "upstream_bad_response"
        );
    }

    #[test]
    fn endpoints_join_whatever_the_trailing_slash() {
        let join = |base: &str, path: &str| {
            Url::parse(base)
                .map(|b| endpoint(&b, path).to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            join("https://api.openai.com/v1", "chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            join("https://api.openai.com/v1/", "/chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            join("https://api.anthropic.com", "v1/messages"),
            "https://api.anthropic.com/v1/messages"
        );
    }

    #[test]
    fn base_urls_are_checked_before_any_request() {
        let public = OutboundPolicy::public_only();
        let url = |s: &str| Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(check_base_url(&url("https://api.openai.com/v1"), &public).is_ok());
        assert_eq!(
            check_base_url(&url("http://169.254.169.254/v1"), &public)
                .unwrap_err()
                .code(),
            "upstream_rejected"
        );
        assert!(check_base_url(&url("ftp://example.com/"), &public).is_err());
        assert!(check_base_url(&url("file:///etc/passwd"), &public).is_err());
    }
}
