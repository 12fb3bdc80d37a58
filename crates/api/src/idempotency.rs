//! Idempotency keys, with Stripe's semantics, for the creating POSTs and both chat endpoints.
//!
//! A client sends `Idempotency-Key: <1–255 visible ASCII characters>`. The first request with a
//! key runs; its response is kept 24 hours and a retry of the same request (same method, path
//! and body bytes) gets it again with `Idempotent-Replayed: true`, without running anything a
//! second time. The same key on a different request is a 422 (`idempotency_key_reused`); a
//! retry while the first is still running is a 409 (`idempotency_request_in_progress`,
//! `Retry-After: 1`). A first response that a retry might change (5xx, 429) is not kept: the
//! retry runs anew. Client errors (4xx) are kept and replayed. Keys belong to the principal's
//! tenant and user: another user's identical key is a different key.
//!
//! The mechanism, in one place:
//! - [`Keyed`] wraps a handler's body extractor (normally `web::Json<T>`): the body goes through
//!   it unchanged (limits, errors) and, only when the header is present, is hashed on its way.
//! - [`once`] wraps the handler's work after authentication and authorisation: it claims the key
//!   in the database (`paas_persistence::idempotency`), runs the work to its end even if the
//!   client goes away (so a retry finds the response rather than a stuck claim), and keeps the
//!   response — or answers from the one kept. Without the header it only calls the work: no
//!   database round trip.
//! - A streamed chat response is never buffered: the handler marks it with [`Streamed`] (its run
//!   and [`StreamFormat`]), the status and headers are kept, and a replay follows the same run's
//!   events from the start, rendered the same way.
//!
//! Kept bodies are encrypted with the master key (they can hold an API key's secret or a
//! temporary password), bound to their tenant, user and key.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use bytes::Bytes;
use futures_util::stream::{LocalBoxStream, Stream, StreamExt};
use paas_core::{Error, ErrorKind, Principal, RunId};
use paas_persistence::idempotency::{self as store, Claim, Held, NewClaim, StoredResponse};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::extract::app_state;
use crate::state::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The header on a replayed response.
pub const REPLAYED: &str = "idempotent-replayed";
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// How long a key and its response are kept.
pub const KEEP_FOR: chrono::Duration = chrono::Duration::hours(24);
/// How long a claim in progress holds before it counts as abandoned (its process stopped): the
/// longest a request can take, a non-streaming chat completion waiting for its run.
const CLAIM_LEASE: chrono::Duration =
    chrono::Duration::seconds(paas_models::agent::AGENT_MAX_TIMEOUT_SECONDS as i64 + 300);
/// The response headers kept and replayed (besides status and body).
const KEPT_HEADERS: [HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::LOCATION,
    HeaderName::from_static("x-run-id"),
    HeaderName::from_static("x-session-id"),
    HeaderName::from_static("x-accel-buffering"),
];
/// How often each server deletes expired keys, and how many at most each time.
const SWEEP_EVERY: Duration = Duration::from_secs(600);
const SWEEP_BATCH: u32 = 10_000;

/// A request's `Idempotency-Key`, checked, with the SHA-256 of its body. Passed to [`once`].
#[derive(Debug)]
pub struct IdempotencyKey(KeyHeader);

#[derive(Debug)]
enum KeyHeader {
    Absent,
    /// Present but not 1–255 visible ASCII characters (or given twice).
    Invalid,
    Present {
        key: String,
        /// `None` if the body extractor did not read the body to its end.
        body_sha256: Option<[u8; 32]>,
    },
}

/// What the header says, before the body is read.
fn parse_header(headers: &HeaderMap) -> KeyHeader {
    let mut values = headers.get_all(HEADER);
    let Some(value) = values.next() else {
        return KeyHeader::Absent;
    };
    let bytes = value.as_bytes();
    let valid = values.next().is_none()
        && (1..=MAX_KEY_LEN).contains(&bytes.len())
        && bytes.iter().all(|b| (0x21..=0x7e).contains(b));
    match std::str::from_utf8(bytes) {
        Ok(key) if valid => KeyHeader::Present {
            key: key.to_owned(),
            body_sha256: None,
        },
        _ => KeyHeader::Invalid,
    }
}

fn invalid_key() -> Error {
    Error::bad_request(
        "invalid_idempotency_key",
        format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters, given once"),
    )
}

/// A body extractor `T` (normally `web::Json<_>`) together with the request's
/// [`IdempotencyKey`]. `T` reads the body exactly as it would alone — same limits, same errors;
/// when the header is present the bytes are hashed as they pass.
#[derive(Debug)]
pub struct Keyed<T> {
    pub body: T,
    pub key: IdempotencyKey,
}

#[derive(Default)]
struct BodyDigest {
    hasher: Sha256,
    finished: bool,
}

/// The request body, hashed on its way to the extractor.
struct Hashing {
    inner: Payload,
    digest: Rc<RefCell<BodyDigest>>,
}

impl Stream for Hashing {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => self.digest.borrow_mut().hasher.update(chunk),
            Poll::Ready(None) => self.digest.borrow_mut().finished = true,
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }
}

impl<T> FromRequest for Keyed<T>
where
    T: FromRequest + 'static,
{
    type Error = T::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, T::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let parsed = parse_header(req.headers());
        let KeyHeader::Present { key, .. } = parsed else {
            let body = T::from_request(req, payload);
            return Box::pin(async move {
                Ok(Keyed {
                    body: body.await?,
                    key: IdempotencyKey(parsed),
                })
            });
        };
        let digest = Rc::new(RefCell::new(BodyDigest::default()));
        let hashing: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(Hashing {
            inner: payload.take(),
            digest: Rc::clone(&digest),
        });
        let body = T::from_request(req, &mut Payload::from(hashing));
        Box::pin(async move {
            let body = body.await?;
            let digest = std::mem::take(&mut *digest.borrow_mut());
            let body_sha256 = digest.finished.then(|| digest.hasher.finalize().into());
            Ok(Keyed {
                body,
                key: IdempotencyKey(KeyHeader::Present { key, body_sha256 }),
            })
        })
    }
}

/// How a streamed response is rendered again from its run's events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum StreamFormat {
    /// The dashboard's Server-Sent Events (as `GET /runs/{id}/events`).
    RunEvents,
    /// OpenAI `chat.completion.chunk`s.
    #[serde(rename = "openai_chunks")]
    OpenAiChunks {
        created: i64,
        model: String,
        include_usage: bool,
    },
}

/// Marks a streamed response (in its extensions) with the run it follows, so that [`once`] can
/// keep it without reading the stream.
#[derive(Clone, Debug)]
pub struct Streamed {
    pub run: RunId,
    pub format: StreamFormat,
}

impl Streamed {
    pub fn mark(self, response: &mut HttpResponse) {
        response.extensions_mut().insert(self);
    }
}

/// Runs `work` once per idempotency key: the first request with the key runs it and its
/// response is kept; a retry of the same request gets that response again. Call it after the
/// caller is authenticated and authorised (a refusal there is not kept). Without the header,
/// this is `work().await`.
///
/// `E` is the route's error type: the key's own errors (400, 409, 422, or 503 when the database
/// cannot be reached) come back as `Err`; the work's errors become the kept response.
pub async fn once<E, F, Fut>(
    req: &HttpRequest,
    principal: &Principal,
    key: IdempotencyKey,
    work: F,
) -> Result<HttpResponse, E>
where
    E: From<Error> + ResponseError + 'static,
    F: FnOnce() -> Fut + 'static,
    Fut: Future<Output = Result<HttpResponse, E>> + 'static,
{
    let (key, body_sha256) = match key.0 {
        KeyHeader::Absent => return work().await,
        KeyHeader::Invalid => return Err(invalid_key().into()),
        KeyHeader::Present { key, body_sha256 } => (key, body_sha256),
    };
    let state = app_state(req)?;
    let body_sha256 = body_sha256.ok_or_else(|| {
        Error::internal("the request body was not read before its key was claimed")
    })?;
    let holder = match begin(&state, principal, req, key, body_sha256).await? {
        Begun::Held(holder) => holder,
        Begun::Replay(response) => return Ok(response),
    };
    // The work goes on if the client goes away (its connection dropping drops this future), so
    // that the claim ends with a response to replay rather than stuck in progress.
    let task = actix_web::rt::spawn(async move {
        let response = match work().await {
            Ok(response) => response,
            Err(err) => HttpResponse::from_error(err),
        };
        holder.keep(response).await
    });
    match task.await {
        Ok(response) => Ok(response),
        // The work panicked; its claim was released when the holder was dropped.
        Err(_) => Err(Error::internal("the request's work did not finish").into()),
    }
}

enum Begun {
    Held(Holder),
    Replay(HttpResponse),
}

/// Claims the key (one short transaction), or answers from the response kept for it.
async fn begin(
    state: &web::Data<AppState>,
    principal: &Principal,
    req: &HttpRequest,
    key: String,
    body_sha256: [u8; 32],
) -> Result<Begun, Error> {
    let (tenant, user) = (principal.tenant_id, principal.user_id);
    let attempt = Uuid::new_v4();
    let now = state.clock.now();
    let method = req.method().as_str().to_owned();
    let path = req.path().to_owned();
    let claimed = {
        let key = key.clone();
        state
            .db
            .tenant_tx(tenant, move |conn| {
                store::claim(
                    conn,
                    &NewClaim {
                        tenant,
                        user,
                        key: &key,
                        attempt,
                        method: &method,
                        path: &path,
                        request_hash: &body_sha256,
                        now,
                        locked_until: now + CLAIM_LEASE,
                        expires_at: now + KEEP_FOR,
                    },
                )
            })
            .await?
    };
    match claimed {
        Claim::Claimed => Ok(Begun::Held(Holder {
            state: web::Data::clone(state),
            tenant,
            user,
            key,
            attempt,
            settled: false,
        })),
        Claim::InProgress => Err(Error::conflict(
            "idempotency_request_in_progress",
            "a request with this Idempotency-Key is still in progress; retry shortly",
        )
        .with_retry_after(1)),
        Claim::Mismatch { method, path } => Err(Error::new(
            ErrorKind::Unprocessable,
            "idempotency_key_reused",
            format!(
                "this Idempotency-Key was already used for a different request (first: {method} \
                 {path}); use a new key for a new request"
            ),
        )),
        Claim::Completed(stored) => {
            tracing::debug!(status = stored.status, "replaying an idempotent response");
            replay(state, principal, &key, stored)
                .await
                .map(Begun::Replay)
        }
    }
}

/// What the kept body is encrypted against: it decrypts only for its own tenant, user and key.
fn body_context(tenant: paas_core::TenantId, user: paas_core::UserId, key: &str) -> Vec<u8> {
    format!("idempotency:{tenant}:{user}:{key}").into_bytes()
}

/// A claimed key: ends kept (with the response) or released. Dropped unsettled (the work
/// panicked, the server stopped), it is released in the background.
struct Holder {
    state: web::Data<AppState>,
    tenant: paas_core::TenantId,
    user: paas_core::UserId,
    key: String,
    attempt: Uuid,
    settled: bool,
}

/// Responses a retry may change: the key is released for the retry to run anew.
fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let value = headers.get(name)?.to_str().ok()?;
            Some((name.as_str().to_owned(), value.to_owned()))
        })
        .collect()
}

impl Holder {
    /// Keeps `response` for the key (or releases the key if a retry may answer differently)
    /// and returns it. Never buffers a stream: a streamed response must be marked [`Streamed`].
    async fn keep(mut self, response: HttpResponse) -> HttpResponse {
        let status = response.status();
        if retryable(status) {
            self.release().await;
            return response;
        }
        let (head, body) = response.into_parts();
        let headers = kept_headers(head.headers());
        let (stored, response) = if let BodySize::Stream = body.size() {
            let streamed = head.extensions().get::<Streamed>().cloned();
            let Some(streamed) = streamed else {
                tracing::warn!("a streamed response without its run cannot be kept; key released");
                self.release().await;
                return head.set_body(body);
            };
            let stream = serde_json::to_value(&streamed.format).ok();
            let stored = StoredResponse {
                status: status.as_u16(),
                headers,
                body: None,
                run_id: Some(streamed.run),
                stream,
            };
            (stored, head.set_body(body))
        } else {
            let bytes = match actix_web::body::to_bytes(body).await {
                Ok(bytes) => bytes,
                Err(_) => {
                    self.release().await;
                    return HttpResponse::from_error(crate::error::ApiError(Error::internal(
                        "the response body could not be read",
                    )));
                }
            };
            let context = body_context(self.tenant, self.user, &self.key);
            let sealed = std::str::from_utf8(&bytes)
                .map_err(|_| Error::internal("a response body that is not UTF-8 is not kept"))
                .and_then(|text| self.state.cipher.encrypt(text, &context));
            let sealed = match sealed {
                Ok(sealed) => sealed,
                Err(err) => {
                    tracing::warn!(error = %err.cause_chain(), "cannot keep a response; key released");
                    self.release().await;
                    return head.set_body(BoxBody::new(bytes));
                }
            };
            let stored = StoredResponse {
                status: status.as_u16(),
                headers,
                body: Some(sealed),
                run_id: None,
                stream: None,
            };
            (stored, head.set_body(BoxBody::new(bytes)))
        };
        self.complete(stored).await;
        response
    }

    async fn complete(&mut self, stored: StoredResponse) {
        let (tenant, user, key, attempt) = (self.tenant, self.user, self.key.clone(), self.attempt);
        let now = self.state.clock.now();
        let kept = self
            .state
            .db
            .tenant_tx(tenant, move |conn| {
                let held = Held {
                    tenant,
                    user,
                    key: &key,
                    attempt,
                };
                store::complete(conn, &held, &stored, now)
            })
            .await;
        match kept {
            Ok(true) => self.settled = true,
            Ok(false) => {
                // Taken over as abandoned: the other claim owns the key now.
                self.settled = true;
                tracing::warn!("an idempotency key's claim was taken over before it completed");
            }
            Err(err) => {
                tracing::warn!(
                    code = err.code(),
                    "cannot keep an idempotent response; key released"
                );
                self.release().await;
            }
        }
    }

    async fn release(&mut self) {
        self.settled = true;
        if let Err(err) =
            release(&self.state, self.tenant, self.user, &self.key, self.attempt).await
        {
            // The claim expires on its own (`locked_until`).
            tracing::warn!(code = err.code(), "cannot release an idempotency key");
        }
    }
}

async fn release(
    state: &AppState,
    tenant: paas_core::TenantId,
    user: paas_core::UserId,
    key: &str,
    attempt: Uuid,
) -> Result<bool, Error> {
    let key = key.to_owned();
    state
        .db
        .tenant_tx(tenant, move |conn| {
            store::release(
                conn,
                &Held {
                    tenant,
                    user,
                    key: &key,
                    attempt,
                },
            )
        })
        .await
}

impl Drop for Holder {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (state, tenant, user, key, attempt) = (
            self.state.clone(),
            self.tenant,
            self.user,
            std::mem::take(&mut self.key),
            self.attempt,
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = release(&state, tenant, user, &key, attempt).await;
            });
        }
    }
}

/// The kept response again, with `Idempotent-Replayed: true`; a streamed one follows its run's
/// events from the start.
async fn replay(
    state: &AppState,
    principal: &Principal,
    key: &str,
    stored: StoredResponse,
) -> Result<HttpResponse, Error> {
    let status = StatusCode::from_u16(stored.status)
        .map_err(|_| Error::internal(format!("kept status {} is invalid", stored.status)))?;
    let mut response = HttpResponse::build(status);
    for (name, value) in &stored.headers {
        response.insert_header((name.as_str(), value.as_str()));
    }
    response.insert_header((REPLAYED, "true"));
    if let Some(sealed) = &stored.body {
        let context = body_context(principal.tenant_id, principal.user_id, key);
        let body = state.cipher.decrypt(sealed, &context)?;
        return Ok(response.body(body.expose_secret().to_owned()));
    }
    let (Some(run), Some(format)) = (stored.run_id, stored.stream) else {
        return Ok(response.finish());
    };
    let format: StreamFormat = serde_json::from_value(format)
        .map_err(|err| Error::internal(format!("kept stream format: {err}")))?;
    let body: LocalBoxStream<'static, Result<Bytes, actix_web::Error>> = match format {
        StreamFormat::RunEvents => {
            crate::routes::chat::replay_events(state, principal, run).await?
        }
        StreamFormat::OpenAiChunks {
            created,
            model,
            include_usage,
        } => crate::routes::openai::chunk_stream(
            state.runs.watch(run, 0),
            run,
            created,
            model,
            include_usage,
        )
        .boxed_local(),
    };
    Ok(response.streaming(body))
}

/// Deletes expired keys across tenants every few minutes, for as long as the runtime runs (a
/// key's own next claim deletes it too, so this only bounds the table). Outside a Tokio
/// runtime it does nothing.
pub fn spawn_sweeper(state: &AppState) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (db, clock) = (state.db.clone(), state.clock.clone());
    runtime.spawn(async move {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
        loop {
            tick.tick().await;
            let now = clock.now();
            match db
                .anonymous_tx(move |conn| store::sweep_expired(conn, now, SWEEP_BATCH))
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::debug!(keys = n, "deleted expired idempotency keys"),
                Err(err) => tracing::debug!(code = err.code(), "could not sweep idempotency keys"),
            }
        }
    });
}

/// The `Idempotency-Key` request header, for the OpenAPI description of the routes that take it.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// Makes the request safe to retry: 1–255 visible ASCII characters, unique per request
    /// (a UUID is a good choice). A retry with the same key and the same body within 24 hours
    /// gets the first response again, with `Idempotent-Replayed: true`, and nothing runs twice
    /// (a streamed chat answer follows the same run again). The same key with another body is a
    /// 422 `idempotency_key_reused`; while the first request is still running, a 409
    /// `idempotency_request_in_progress`. A first answer of 5xx or 429 is not kept.
    #[param(
        rename = "Idempotency-Key",
        required = false,
        min_length = 1,
        max_length = 255
    )]
    pub idempotency_key: String,
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn parsed(values: &[&[u8]]) -> KeyHeader {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                HeaderName::from_static(HEADER),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        parse_header(&headers)
    }

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters_given_once() {
        assert!(matches!(parsed(&[]), KeyHeader::Absent));
        for good in [
            &b"a"[..],
            b"7f9c0c4e-2b5e-4f8a-9a57-3c2c7ae1b0f1",
            b"!~{}[]",
            &[b'k'; 255],
        ] {
            assert!(
                matches!(parsed(&[good]), KeyHeader::Present { ref key, .. } if key.as_bytes() == good),
                "{good:?}"
            );
        }
        for bad in [
            &b""[..],
            b"has space",
            b"tab\there",
            &[b'k'; 256],
            b"caf\xc3\xa9",
        ] {
            assert!(matches!(parsed(&[bad]), KeyHeader::Invalid), "{bad:?}");
        }
        assert!(matches!(parsed(&[b"a", b"b"]), KeyHeader::Invalid));
    }

    #[test]
    fn only_answers_a_retry_may_change_release_the_key() {
        for status in [500, 502, 503, 504, 429] {
            assert!(retryable(StatusCode::from_u16(status).unwrap()), "{status}");
        }
        for status in [200, 201, 204, 400, 403, 404, 409, 422] {
            assert!(
                !retryable(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
    }

    #[test]
    fn stream_formats_are_stored_with_a_tag() {
        let format = StreamFormat::OpenAiChunks {
            created: 1,
            model: "helper".into(),
            include_usage: true,
        };
        let json = serde_json::to_value(&format).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"format": "openai_chunks", "created": 1, "model": "helper", "include_usage": true})
        );
        assert_eq!(
            serde_json::from_value::<StreamFormat>(json).unwrap(),
            format
        );
        assert_eq!(
            serde_json::to_value(StreamFormat::RunEvents).unwrap(),
            serde_json::json!({"format": "run_events"})
        );
    }
}
