#![doc = include_str!("../README.md")]

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, HeaderMap};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::stream;
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::time::Instant;

/// Per-request override of [`MockConfig::latency`], in milliseconds.
pub const LATENCY_HEADER: &str = "x-mock-latency-ms";
/// Per-request override of [`MockConfig::chunks`].
pub const CHUNKS_HEADER: &str = "x-mock-chunks";
/// Per-request override of [`MockConfig::chunk_interval`], in milliseconds.
pub const CHUNK_INTERVAL_HEADER: &str = "x-mock-chunk-interval-ms";

/// The longest latency or chunk interval accepted (from flags or headers).
pub const MAX_DELAY: Duration = Duration::from_secs(3600);
/// The most content chunks one response may have.
pub const MAX_CHUNKS: u32 = 1_000_000;

/// How the mock behaves, for the whole process. Requests may override the timings and the
/// chunk count with the `x-mock-*` headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockConfig {
    /// Delay before the response head (streaming: before the first chunk).
    pub latency: Duration,
    /// Content chunks in a streamed answer; also the completion tokens of every answer.
    pub chunks: u32,
    /// Delay between two content chunks of a stream.
    pub chunk_interval: Duration,
    /// actix-web worker threads (at least 1).
    pub workers: usize,
    /// The model `GET /v1/models` lists. Answers echo the model the request names.
    pub model: String,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            chunks: 20,
            chunk_interval: Duration::from_millis(10),
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            model: "mock-gpt".to_owned(),
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What every worker shares.
#[derive(Debug)]
struct Shared {
    config: MockConfig,
    /// The `GET /v1/models` body, rendered once.
    models: Bytes,
    next_id: AtomicU64,
}

/// Builds the server on an already-bound listener (port 0 in tests). Await the returned
/// [`actix_web::dev::Server`] (or spawn it) to run it; stop it through its handle. OS signals are
/// not handled here: the binary does that.
pub fn server(
    config: MockConfig,
    listener: TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let workers = config.workers.max(1);
    let body_limit = config.max_body_bytes;
    let models = serde_json::json!({
        "object": "list",
        "data": [{
            "id": config.model,
            "object": "model",
            "created": 0,
            "owned_by": "mock-upstream",
        }],
    })
    .to_string();
    let shared = web::Data::new(Shared {
        config,
        models: Bytes::from(models),
        next_id: AtomicU64::new(1),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .app_data(web::PayloadConfig::new(body_limit))
            .route("/v1/chat/completions", web::post().to(chat_completions))
            .route("/v1/models", web::get().to(models_list))
            .route("/healthz", web::get().to(healthz))
            .default_service(web::to(not_found))
    })
    .workers(workers)
    .backlog(4096)
    // A stream is many small writes; Nagle's algorithm would hold them back.
    .tcp_nodelay(true)
    // Longer than the idle timeout of usual client pools, so a load generator does not race
    // the server closing a pooled connection.
    .keep_alive(Duration::from_secs(75))
    .shutdown_timeout(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

/// The part of a Chat Completions request the mock reads; everything else is ignored.
#[derive(Debug, Deserialize)]
struct ChatRequest<'a> {
    #[serde(borrow)]
    model: Cow<'a, str>,
    messages: Vec<IgnoredAny>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// The timings and size of one answer: the configuration with the request's overrides.
#[derive(Clone, Copy, Debug)]
struct Behaviour {
    latency: Duration,
    chunks: u32,
    interval: Duration,
}

impl Behaviour {
    /// Fails with the name of a header that is not a non-negative integer.
    fn resolve(config: &MockConfig, headers: &HeaderMap) -> Result<Self, &'static str> {
        let millis = |name: &'static str, default: Duration| -> Result<Duration, &'static str> {
            Ok(match number(headers, name)? {
                Some(ms) => Duration::from_millis(ms),
                None => default,
            }
            .min(MAX_DELAY))
        };
        let chunks = match number(headers, CHUNKS_HEADER)? {
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
            None => config.chunks,
        };
        Ok(Self {
            latency: millis(LATENCY_HEADER, config.latency)?,
            chunks: chunks.min(MAX_CHUNKS),
            interval: millis(CHUNK_INTERVAL_HEADER, config.chunk_interval)?,
        })
    }
}

/// A header holding a non-negative integer, if present; its name if it holds something else.
fn number(headers: &HeaderMap, name: &'static str) -> Result<Option<u64>, &'static str> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or(name)
}

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
fn error(status: StatusCode, message: &str, param: Option<&str>) -> HttpResponse {
    let kind = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    let body = serde_json::json!({
        "error": { "message": message, "type": kind, "param": param, "code": null }
    });
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body.to_string())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

async fn models_list(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(shared.models.clone())
}

async fn not_found(request: HttpRequest) -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        &format!("Invalid URL ({} {})", request.method(), request.path()),
        None,
    )
}

/// Everything an answer needs once the request is read.
#[derive(Debug)]
struct Answer {
    behaviour: Behaviour,
    /// Content chunks actually sent (fewer than asked when `max_tokens` is lower).
    chunks: u32,
    finish_reason: &'static str,
    include_usage: bool,
    prompt_tokens: u64,
    /// `"id":…,"object":"<object>","created":…,"model":…,"system_fingerprint":…,` (no braces).
    fields: String,
}

impl Answer {
    fn usage(&self, out: &mut BytesMut) {
        let completion = u64::from(self.chunks);
        let _ = write!(
            out,
            r#""usage":{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}}}"#,
            self.prompt_tokens,
            completion,
            self.prompt_tokens.saturating_add(completion)
        );
    }
}

async fn chat_completions(
    request: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let body = match body {
        Ok(body) => body,
        Err(err) => {
            let status = err.as_response_error().status_code();
            return error(status, &err.to_string(), None);
        }
    };
    let behaviour = match Behaviour::resolve(&shared.config, request.headers()) {
        Ok(behaviour) => behaviour,
        Err(header) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the {header} header must be a non-negative integer"),
                Some(header),
            );
        }
    };
    let chat: ChatRequest<'_> = match serde_json::from_slice(&body) {
        Ok(chat) => chat,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("We could not parse the JSON body of your request: {err}"),
                None,
            );
        }
    };
    if chat.messages.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "[] is too short - 'messages'",
            Some("messages"),
        );
    }
    let streaming = chat.stream.unwrap_or(false);
    let limit = chat.max_completion_tokens.or(chat.max_tokens);
    let (chunks, finish_reason) = match limit {
        Some(limit) if limit < behaviour.chunks => (limit, "length"),
        _ => (behaviour.chunks, "stop"),
    };
    let model = match serde_json::to_string(&*chat.model) {
        Ok(model) => model,
        Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string(), None),
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let object = if streaming {
        "chat.completion.chunk"
    } else {
        "chat.completion"
    };
    let mut fields = String::with_capacity(128 + model.len());
    let _ = write!(
        fields,
        r#""id":"chatcmpl-mock-{id}","object":"{object}","created":{created},"model":{model},"system_fingerprint":"fp_mock","#
    );
    let answer = Answer {
        behaviour,
        chunks,
        finish_reason,
        include_usage: chat
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        prompt_tokens: u64::try_from(body.len().div_ceil(4).max(1)).unwrap_or(u64::MAX),
        fields,
    };
    if streaming {
        stream_answer(answer).await
    } else {
        whole_answer(answer).await
    }
}

/// `chat.completion`: sent once the whole answer would have been generated, i.e. after the
/// latency plus the intervals between the chunks a stream would have had.
async fn whole_answer(answer: Answer) -> HttpResponse {
    let generation = answer
        .behaviour
        .interval
        .saturating_mul(answer.chunks.saturating_sub(1));
    let delay = answer.behaviour.latency.saturating_add(generation);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let chunks = usize::try_from(answer.chunks).unwrap_or(usize::MAX);
    let mut out = BytesMut::with_capacity(256 + answer.fields.len() + chunks.saturating_mul(8));
    out.put_u8(b'{');
    out.put_slice(answer.fields.as_bytes());
    out.put_slice(br#""choices":[{"index":0,"message":{"role":"assistant","content":""#);
    for i in 0..answer.chunks {
        token(&mut out, i);
    }
    let _ = write!(
        out,
        r#"","refusal":null}},"logprobs":null,"finish_reason":"{}"}}],"#,
        answer.finish_reason
    );
    answer.usage(&mut out);
    out.put_u8(b'}');
    HttpResponse::Ok()
        .content_type("application/json")
        .body(out.freeze())
}

/// The `i`th token of the deterministic answer, with its leading space: `tok0`, ` tok1`…
fn token(out: &mut BytesMut, i: u32) {
    if i > 0 {
        out.put_u8(b' ');
    }
    let _ = write!(out, "tok{i}");
}

/// Writes the SSE lines of a streamed answer into one reused buffer.
#[derive(Debug)]
struct Chunks {
    answer: Answer,
    out: BytesMut,
    next: u32,
    done: bool,
    /// When the first chunk was sent; chunk `i` is due `i` intervals later (no drift).
    start: Instant,
}

impl Chunks {
    /// `data: {<fields>[,"usage":null],"choices":[{"index":0,"delta":`
    fn open_choice(&mut self) {
        self.out.put_slice(b"data: {");
        self.out.put_slice(self.answer.fields.as_bytes());
        if self.answer.include_usage {
            self.out.put_slice(br#""usage":null,"#);
        }
        self.out.put_slice(br#""choices":[{"index":0,"delta":"#);
    }

    fn content(&mut self, i: u32) {
        self.open_choice();
        if i == 0 {
            self.out.put_slice(br#"{"role":"assistant","content":""#);
        } else {
            self.out.put_slice(br#"{"content":""#);
        }
        token(&mut self.out, i);
        self.out
            .put_slice(b"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
    }

    /// The finish chunk, the usage chunk if asked for, and `[DONE]`.
    fn end(&mut self) {
        self.open_choice();
        let _ = write!(
            self.out,
            "{{}},\"logprobs\":null,\"finish_reason\":\"{}\"}}]}}\n\n",
            self.answer.finish_reason
        );
        if self.answer.include_usage {
            self.out.put_slice(b"data: {");
            self.out.put_slice(self.answer.fields.as_bytes());
            self.out.put_slice(br#""choices":[],"#);
            self.answer.usage(&mut self.out);
            self.out.put_slice(b"}\n\n");
        }
        self.out.put_slice(b"data: [DONE]\n\n");
    }

    /// The whole body at once (no interval to wait for).
    fn render_all(&mut self) -> Bytes {
        for i in 0..self.answer.chunks {
            self.content(i);
        }
        self.end();
        self.done = true;
        self.out.split().freeze()
    }

    /// The next piece of the body, after waiting until it is due; `None` once `[DONE]` is out.
    async fn next_piece(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        if self.next < self.answer.chunks {
            if self.next > 0 {
                let offset = self.answer.behaviour.interval.saturating_mul(self.next);
                if let Some(due) = self.start.checked_add(offset) {
                    tokio::time::sleep_until(due).await;
                }
            }
            self.content(self.next);
            self.next += 1;
        }
        if self.next >= self.answer.chunks {
            self.end();
            self.done = true;
        }
        Some(self.out.split().freeze())
    }
}

/// `text/event-stream` of `chat.completion.chunk`s: the head after the latency, the first
/// chunk at once, the others one interval apart; the finish chunk, the usage chunk and `[DONE]`
/// go with the last content chunk.
async fn stream_answer(answer: Answer) -> HttpResponse {
    if !answer.behaviour.latency.is_zero() {
        tokio::time::sleep(answer.behaviour.latency).await;
    }
    let mut chunks = Chunks {
        out: BytesMut::with_capacity(512 + 2 * answer.fields.len()),
        answer,
        next: 0,
        done: false,
        start: Instant::now(),
    };
    let mut response = HttpResponse::Ok();
    response
        .content_type("text/event-stream; charset=utf-8")
        .insert_header((CACHE_CONTROL, "no-cache"));
    if chunks.answer.behaviour.interval.is_zero() {
        // Nothing to wait for: one body, no stream machinery.
        return response.body(chunks.render_all());
    }
    let body = stream::unfold(chunks, |mut chunks| async move {
        let piece = chunks.next_piece().await?;
        Some((Ok::<_, Infallible>(piece), chunks))
    });
    response.streaming(body)
}
