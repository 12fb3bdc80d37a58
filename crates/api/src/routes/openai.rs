//! The OpenAI-compatible API: `GET /v1/models` (the tenant's agents) and
//! `POST /v1/chat/completions` (run an agent; `model` is the agent's name), with OpenAI's
//! response, chunk and error shapes, so the official SDKs work with only `base_url` and
//! `api_key` set. Unknown request fields are ignored, as OpenAI does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, get, post, web};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use paas_auth::{Action, authorize};
use paas_core::{Error, ErrorKind, RunId};
use paas_llm::ChatMessage;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{ApiError, status_of};
use crate::extract::{Auth, ChatAuth, count_if_uncounted, count_request};
use crate::idempotency::{self, IdempotencyKeyHeader, Keyed, StreamFormat, Streamed};
use crate::runs::WireEvent;
use crate::services::chat::{MAX_MESSAGES, OpenAiInput, check_message, start_openai};
use crate::services::{agents, chat};
use crate::state::AppState;

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug)]
pub struct OpenAiError(pub Error);

impl From<Error> for OpenAiError {
    fn from(err: Error) -> Self {
        Self(err)
    }
}

impl From<ApiError> for OpenAiError {
    fn from(err: ApiError) -> Self {
        Self(err.0)
    }
}

impl std::fmt::Display for OpenAiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::BadRequest
        | ErrorKind::NotFound
        | ErrorKind::Conflict
        | ErrorKind::PayloadTooLarge
        | ErrorKind::UnsupportedMediaType
        | ErrorKind::Unprocessable => "invalid_request_error",
        ErrorKind::Unauthenticated => "authentication_error",
        ErrorKind::Forbidden => "permission_error",
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::Unavailable
        | ErrorKind::BadGateway
        | ErrorKind::GatewayTimeout
        | ErrorKind::Internal => "api_error",
    }
}

fn error_json(err: &Error) -> Value {
    json!({"error": {"message": err.message(), "type": error_type(err.kind()), "param": null, "code": err.code()}})
}

impl ResponseError for OpenAiError {
    fn status_code(&self) -> StatusCode {
        status_of(self.0.kind())
    }

    fn error_response(&self) -> HttpResponse {
        // Log like every other error, then answer in OpenAI's shape.
        let mut copy = Error::new(
            self.0.kind(),
            self.0.code().to_owned(),
            self.0.message().to_owned(),
        );
        if let Some(secs) = self.0.retry_after_secs() {
            copy = copy.with_retry_after(secs);
        }
        let logged = ApiError(copy);
        let standard = logged.error_response();
        let mut response = HttpResponse::build(self.status_code());
        for (name, value) in standard.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                response.insert_header((name.clone(), value.clone()));
            }
        }
        response.json(error_json(&self.0))
    }
}

type OpenAiResult<T> = Result<T, OpenAiError>;

/// Body errors for the `/v1` scope, in OpenAI's shape.
pub fn json_error(err: actix_web::error::JsonPayloadError, req: &HttpRequest) -> actix_web::Error {
    let standard = crate::error::json_error(err, req);
    let api = standard
        .as_error::<ApiError>()
        .map(|e| Error::new(e.0.kind(), e.0.code().to_owned(), e.0.message().to_owned()));
    OpenAiError(
        api.unwrap_or_else(|| Error::bad_request("invalid_json", "the request body is not valid")),
    )
    .into()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelObject {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub owned_by: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelObject>,
}

/// The tenant's agents, as OpenAI models (the agent's name is the model id).
#[utoipa::path(tag = "openai", responses((status = 200, body = ModelList), (status = 401)),
    security(("bearer" = []), ("api_key" = [])))]
#[get("/models")]
pub async fn list_models(
    state: web::Data<AppState>,
    auth: Result<Auth, ApiError>,
) -> OpenAiResult<web::Json<ModelList>> {
    let Auth(principal) = auth?;
    // Integrators' keys often have only `chat`: that is enough to list models too.
    authorize(&principal, Action::ReadAgents)
        .or_else(|err| authorize(&principal, Action::Chat).map_err(|_| err))?;
    let tenant = crate::services::tenant::get(&state, &principal).await?;
    let data = agents::list(&state, &principal)
        .await?
        .into_iter()
        .map(|agent| ModelObject {
            id: agent.name,
            object: "model",
            created: agent.created_at.timestamp(),
            owned_by: tenant.name.clone(),
        })
        .collect();
    Ok(web::Json(ModelList {
        object: "list",
        data,
    }))
}

/// A message's content: a string, or OpenAI's array of parts (only text parts are read).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Value>),
    Null(()),
}

impl Content {
    fn text(self) -> Result<String, Error> {
        match self {
            Content::Text(text) => Ok(text),
            Content::Null(()) => Ok(String::new()),
            Content::Parts(parts) => {
                let mut out = String::new();
                for part in parts {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => out
                            .push_str(part.get("text").and_then(Value::as_str).unwrap_or_default()),
                        _ => {
                            return Err(Error::bad_request(
                                "unsupported_content",
                                "only text content parts are supported",
                            ));
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default = "no_content")]
    content: Content,
}

fn no_content() -> Content {
    Content::Null(())
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// OpenAI's chat completion request (fields we do not use are accepted and ignored).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CompletionRequest {
    /// The agent's name.
    pub model: String,
    #[schema(value_type = Vec<Object>)]
    messages: Vec<InMessage>,
    #[serde(default)]
    pub stream: bool,
    #[schema(value_type = Option<Object>)]
    stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub n: Option<u32>,
}

fn parse_request(body: CompletionRequest) -> Result<(String, OpenAiInput, bool, bool), Error> {
    if body.messages.is_empty() {
        return Err(Error::bad_request(
            "empty_messages",
            "messages must not be empty",
        ));
    }
    if body.messages.len() > MAX_MESSAGES {
        return Err(Error::bad_request(
            "too_many_messages",
            format!("at most {MAX_MESSAGES} messages per request"),
        ));
    }
    if body.n.is_some_and(|n| n != 1) {
        return Err(Error::bad_request(
            "unsupported_n",
            "only n = 1 is supported",
        ));
    }
    let max_tokens = match body.max_completion_tokens.or(body.max_tokens) {
        None => None,
        Some(n) if (1..=u64::from(paas_models::agent::AGENT_MAX_TOKENS)).contains(&n) => {
            u32::try_from(n).ok()
        }
        Some(_) => {
            return Err(Error::validation(
                "max_tokens",
                format!(
                    "max_tokens must be from 1 to {}",
                    paas_models::agent::AGENT_MAX_TOKENS
                ),
            ));
        }
    };
    let temperature = body
        .temperature
        .map(paas_models::agent::validate_temperature)
        .transpose()?;
    let mut messages = Vec::with_capacity(body.messages.len());
    for message in body.messages {
        let text = message.content.text()?;
        if text.chars().count() > chat::MESSAGE_MAX_CHARS {
            check_message("message content", &text)?;
        }
        messages.push(match message.role.as_str() {
            "system" | "developer" => ChatMessage::system(text),
            "user" => ChatMessage::user(text),
            "assistant" => ChatMessage::assistant(text),
            other => {
                return Err(Error::bad_request(
                    "unsupported_role",
                    format!("messages with role {other:?} are not supported; use system, user or assistant"),
                ));
            }
        });
    }
    if !messages
        .iter()
        .any(|m| m.role == paas_llm::MessageRole::User)
    {
        return Err(Error::bad_request(
            "empty_message",
            "messages must include a user message",
        ));
    }
    let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
    Ok((
        body.model,
        OpenAiInput {
            messages,
            stream: body.stream,
            max_tokens,
            temperature,
        },
        body.stream,
        include_usage,
    ))
}

fn event_data(event: &WireEvent) -> Value {
    serde_json::from_str::<Value>(&event.json)
        .ok()
        .and_then(|v| v.get("data").cloned())
        .unwrap_or(Value::Null)
}

/// Maps a run's end to OpenAI's `finish_reason`.
fn finish_reason(events: &[WireEvent]) -> &'static str {
    let limited_by_tokens = events.iter().any(|e| {
        &*e.name == "limit"
            && event_data(e).get("reason").and_then(Value::as_str) == Some("max_tokens")
    });
    if limited_by_tokens { "length" } else { "stop" }
}

fn run_error(event: &WireEvent) -> Error {
    let data = event_data(event);
    let code = data
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("upstream_unavailable")
        .to_owned();
    let message = data
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("the run failed")
        .to_owned();
    let kind = match code.as_str() {
        "upstream_rate_limited" => ErrorKind::RateLimited,
        "upstream_timeout" => ErrorKind::GatewayTimeout,
        "upstream_rejected" => ErrorKind::BadRequest,
        _ => ErrorKind::BadGateway,
    };
    let err = Error::new(kind, code, message);
    if kind == ErrorKind::RateLimited {
        err.with_retry_after(5)
    } else {
        err
    }
}

fn usage_json(done: Option<&WireEvent>) -> Value {
    let usage = done
        .map(event_data)
        .and_then(|d| d.get("usage").cloned())
        .unwrap_or(Value::Null);
    let prompt = usage
        .get("prompt_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let completion = usage
        .get("completion_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// Runs an agent with the caller's messages. With `stream: true` the answer streams as OpenAI
/// `chat.completion.chunk`s ending with `data: [DONE]` (usage in a last chunk when
/// `stream_options.include_usage` is set); otherwise one `chat.completion` with usage. With an
/// `Idempotency-Key`, a retry gets the same completion (a stream follows the same run again)
/// instead of running the agent twice.
#[utoipa::path(tag = "openai", request_body = CompletionRequest, params(IdempotencyKeyHeader),
    responses((status = 200, description = "chat.completion, or a text/event-stream of chat.completion.chunk",
            headers(("X-Run-Id" = String, description = "The run's id"),
                    ("Idempotent-Replayed" = String, description = "`true` on a retry answered from its Idempotency-Key"))),
        (status = 400), (status = 401), (status = 404, description = "Unknown model (agent)"),
        (status = 409, description = "idempotency_request_in_progress: a request with this Idempotency-Key is still running; Retry-After"),
        (status = 422, description = "idempotency_key_reused: the Idempotency-Key was used for another request"),
        (status = 429, description = "rate_limited, token_quota_exceeded or too_many_concurrent_runs; Retry-After says when to retry"),
        (status = 502), (status = 503, description = "quota_unavailable; Retry-After")),
    security(("bearer" = []), ("api_key" = [])))]
#[post("/chat/completions")]
pub async fn chat_completions(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Result<ChatAuth, ApiError>,
    Keyed { body, key }: Keyed<Result<web::Json<CompletionRequest>, actix_web::Error>>,
) -> Result<HttpResponse, actix_web::Error> {
    // Credentials are checked before the body, as for every other route.
    let ChatAuth(principal, plan) = auth.map_err(OpenAiError::from)?;
    let reply = async {
        // The body's shape (400) before the scope (403), as on every route.
        let body = body?.into_inner();
        authorize(&principal, Action::Chat).map_err(OpenAiError::from)?;
        let (work_req, work_state) = (req.clone(), state.clone());
        let work = move || async move {
            let mut rate = None;
            let reply = complete(&work_state, principal, &plan, body, &mut rate).await;
            match count_request(&work_req, &work_state, &principal, &plan, rate).await {
                Some(refused) => Err(OpenAiError(refused)),
                None => reply,
            }
        };
        Ok::<_, actix_web::Error>(idempotency::once(&req, &principal, key, work).await?)
    }
    .await;
    if let Some(refused) = count_if_uncounted(&req, &state, &principal, &plan).await {
        return Err(OpenAiError(refused).into());
    }
    reply
}

async fn complete(
    state: &AppState,
    principal: paas_core::Principal,
    plan: &paas_models::TenantPlan,
    body: CompletionRequest,
    rate: &mut Option<paas_quota::RateOutcome>,
) -> OpenAiResult<HttpResponse> {
    let (model, input, stream, include_usage) = parse_request(body)?;
    let agent = agents::find(state, &principal, &model)
        .await
        .map_err(|err| {
            if err.kind() == ErrorKind::NotFound {
                Error::new(
                    ErrorKind::NotFound,
                    "model_not_found",
                    format!("the model {model:?} does not exist (models are your tenant's agents)"),
                )
            } else {
                err
            }
        })?;
    let started = start_openai(state, &principal, plan, agent, input, rate).await?;
    let run = started.run;
    let created = chrono::Utc::now().timestamp();
    let model = started.agent.name.clone();
    if !stream {
        let events: Vec<WireEvent> = run.until_done().await;
        if let Some(error) = events.iter().find(|e| &*e.name == "error") {
            return Err(run_error(error).into());
        }
        let content: String = events
            .iter()
            .filter(|e| &*e.name == "message")
            .filter_map(|e| event_data(e).as_str().map(str::to_owned))
            .collect();
        let done = events.iter().find(|e| &*e.name == "done");
        return Ok(HttpResponse::Ok()
            .insert_header(("X-Run-Id", run.id.to_string()))
            .json(json!({
                "id": completion_id(run.id),
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": null},
                    "logprobs": null,
                    "finish_reason": finish_reason(&events),
                }],
                "usage": usage_json(done),
                "system_fingerprint": null,
            })));
    }

    let mut response = HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("X-Accel-Buffering", "no"))
        .insert_header(("X-Run-Id", run.id.to_string()))
        .streaming(chunk_stream(
            crate::runs::RunManager::watch_started(std::sync::Arc::clone(&run)),
            run.id,
            created,
            model.clone(),
            include_usage,
        ));
    Streamed {
        run: run.id,
        format: StreamFormat::OpenAiChunks {
            created,
            model,
            include_usage,
        },
    }
    .mark(&mut response);
    Ok(response)
}

/// A completion's id: the run's.
fn completion_id(run: RunId) -> String {
    format!("chatcmpl-{}", run.as_uuid().simple())
}

/// A run's events as OpenAI `chat.completion.chunk` frames ending with `data: [DONE]` (an
/// error ends the stream in OpenAI's error shape). The same run, `created`, `model` and
/// `include_usage` give the same bytes, so a retry with an idempotency key can follow the run
/// again.
pub(crate) fn chunk_stream(
    events: impl Stream<Item = WireEvent> + 'static,
    run: RunId,
    created: i64,
    model: String,
    include_usage: bool,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
    let id = completion_id(run);
    let chunk = move |delta: Value, finish: Option<&str>| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    };
    let frame = |value: &Value| Bytes::from(format!("data: {value}\n\n"));
    let mut seen: Vec<WireEvent> = Vec::new();
    let ended = Arc::new(AtomicBool::new(false));
    let ended_seen = Arc::clone(&ended);
    let first = frame(&chunk(json!({"role": "assistant", "content": ""}), None));
    futures_util::stream::once(async move { Ok::<_, actix_web::Error>(first) })
        .chain(events.map(move |event| {
            if matches!(&*event.name, "error" | "done") {
                ended_seen.store(true, Ordering::Relaxed);
            }
            let out = match &*event.name {
                "message" => frame(&chunk(json!({"content": event_data(&event)}), None)),
                "error" => {
                    let err = run_error(&event);
                    Bytes::from(format!("data: {}\n\ndata: [DONE]\n\n", error_json(&err)))
                }
                "done" => {
                    let failed = seen.iter().any(|e| &*e.name == "error");
                    if failed {
                        Bytes::new()
                    } else {
                        let mut out = frame(&chunk(json!({}), Some(finish_reason(&seen)))).to_vec();
                        if include_usage {
                            let mut usage_chunk = chunk(json!({}), None);
                            usage_chunk["choices"] = json!([]);
                            usage_chunk["usage"] = usage_json(Some(&event));
                            out.extend_from_slice(&frame(&usage_chunk));
                        }
                        out.extend_from_slice(b"data: [DONE]\n\n");
                        Bytes::from(out)
                    }
                }
                _ => Bytes::new(),
            };
            seen.push(event);
            Ok(out)
        }))
        .chain(futures_util::stream::once(async move {
            // The events stopped before the run's end: they cannot be read (Redis is down), or
            // they have expired (a retry long after the run, see `PAAS_RUN_EVENTS_TTL_SECS`).
            if ended.load(Ordering::Relaxed) {
                return Ok(Bytes::new());
            }
            let err = Error::unavailable(
                "events_unavailable",
                "this run's events cannot be read (they expire some time after the run ends)",
                1,
            );
            Ok(Bytes::from(format!(
                "data: {}\n\ndata: [DONE]\n\n",
                error_json(&err)
            )))
        }))
        .filter(|chunk| futures_util::future::ready(!matches!(chunk, Ok(b) if b.is_empty())))
}
