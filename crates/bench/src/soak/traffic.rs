//! The soak's requests, each checked end to end, and what they are counted as.
//!
//! Every request is one [`Attempt`]: its kind, when it was sent and answered, whether it failed
//! and how, and the run it started, with the usage the client was told (the `usage` of a
//! `chat.completion`, the usage chunk of a stream, the `done` event of a dashboard chat). A
//! failure is *expected* only if it is one a Redis outage is documented to cause (503
//! `quota_unavailable`, a `token_quota` limit…) and the request overlapped a blip (from the stop
//! until [`Ctx::grace`] after the restart); anything else is *unexpected*.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::time::Instant;

/// Requests the scheduler sends (weights out of 20) and the others.
pub const COMPLETION: &str = "completion";
pub const STREAM: &str = "stream";
pub const DASHBOARD: &str = "dashboard";
pub const DASHBOARD_TOOL: &str = "dashboard_tool";
pub const KEY_CREATE: &str = "key_create";
pub const KEY_USE: &str = "key_use";
pub const KEY_REVOKE: &str = "key_revoke";
pub const REVOKED_KEY: &str = "revoked_key";
pub const REFRESH: &str = "token_refresh";

/// What the scheduler sends, and how often out of 20: non-streamed and streamed
/// `/v1/chat/completions`, dashboard turns with the mock-upstream agent and with the
/// calculator agent (the built-in mock model).
pub const MIX: [(&str, u32); 4] = [
    (COMPLETION, 8),
    (STREAM, 6),
    (DASHBOARD, 4),
    (DASHBOARD_TOOL, 2),
];

/// Every kind, in the order the report lists them.
pub const KINDS: [&str; 9] = [
    COMPLETION,
    STREAM,
    DASHBOARD,
    DASHBOARD_TOOL,
    KEY_CREATE,
    KEY_USE,
    KEY_REVOKE,
    REVOKED_KEY,
    REFRESH,
];

/// The calculator agent's questions, in the order a session asks them, and its answers.
const QUESTIONS: [(&str, &str); 4] = [
    ("What is 12 * (3 + 4)?", "84"),
    ("And 2 ^ 10?", "1024"),
    ("What is 7 * 6?", "42"),
    ("And 100 / 8?", "12.5"),
];

/// Prompt and completion tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
}

impl Usage {
    fn of(value: &Value) -> Option<Self> {
        Some(Self {
            prompt: value.get("prompt_tokens")?.as_u64()?,
            completion: value.get("completion_tokens")?.as_u64()?,
        })
    }

    pub fn total(self) -> u64 {
        self.prompt + self.completion
    }
}

/// A run the client saw start (it has the run's id).
#[derive(Clone, Debug)]
pub struct RunSeen {
    pub id: String,
    pub kind: &'static str,
    /// The run's final usage as the client was told it; `None` if the client never saw the end.
    pub usage: Option<Usage>,
}

/// How a request failed.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Short and stable, for counting: `503 quota_unavailable`, `wrong answer`, `no [DONE]`…
    pub class: String,
    pub detail: String,
    /// A failure a Redis outage is documented to cause: expected during a blip only.
    pub in_blip: bool,
}

impl Failure {
    fn new(class: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            class: class.into(),
            detail: detail.into(),
            in_blip: false,
        }
    }
}

/// One request.
#[derive(Debug)]
pub struct Attempt {
    pub kind: &'static str,
    pub sent: Instant,
    pub done: Instant,
    pub failure: Option<Failure>,
    pub run: Option<RunSeen>,
}

/// A failure kept as an example for the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Example {
    pub at_s: f64,
    pub kind: &'static str,
    pub class: String,
    pub detail: String,
}

/// Counts of one kind.
#[derive(Debug, Default)]
pub struct KindStats {
    pub sent: u64,
    pub ok: u64,
    pub expected: BTreeMap<String, u64>,
    pub unexpected: BTreeMap<String, u64>,
    /// Send to last byte, of successful requests.
    pub latencies: Vec<Duration>,
}

/// A Redis blip: when it was stopped and when it answered again.
#[derive(Clone, Copy, Debug)]
pub struct Blip {
    pub down: Instant,
    /// The same instant on the wall clock, to compare with the ledger's times.
    pub down_at: chrono::DateTime<chrono::Utc>,
    pub up: Option<Instant>,
    /// Expected failures it caused, and when the last of them was answered.
    pub failures: u64,
    pub last_failure: Option<Instant>,
}

/// Everything counted so far.
#[derive(Debug, Default)]
pub struct Stats {
    pub kinds: BTreeMap<&'static str, KindStats>,
    pub runs: Vec<RunSeen>,
    pub unexpected_examples: Vec<Example>,
    pub expected_examples: Vec<Example>,
    pub unexpected: u64,
    pub expected: u64,
}

/// A dashboard conversation: a session continued turn after turn, one turn at a time.
#[derive(Clone, Debug, Default)]
pub struct Session {
    pub id: Option<String>,
    pub turns: u32,
    pub max_turns: u32,
    /// Prompt tokens of the last turn: each turn sends the history, so it must grow.
    pub last_prompt: u64,
}

/// What every task shares.
#[derive(Debug)]
pub struct Ctx {
    pub client: reqwest::Client,
    pub root: String,
    /// The long-lived API key (`chat` scope).
    pub key: String,
    /// The admin's login session, refreshed before the access token expires.
    pub access_token: RwLock<String>,
    pub refresh_token: RwLock<String>,
    /// The mock-upstream agent and the calculator agent.
    pub agent: String,
    pub tool_agent: String,
    /// Content chunks of every mock-upstream answer (its completion tokens too).
    pub chunks: u32,
    pub start: Instant,
    /// How long after a blip's restart its failures are still expected.
    pub grace: Duration,
    pub stats: Mutex<Stats>,
    pub blips: Mutex<Vec<Blip>>,
    pub sessions: Mutex<VecDeque<Session>>,
    pub tool_sessions: Mutex<VecDeque<Session>>,
    pub sessions_started: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub sent: AtomicUsize,
}

/// Examples kept per failure class, and in all.
const EXAMPLES_PER_CLASS: usize = 3;
const EXAMPLES: usize = 40;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn keep(examples: &mut Vec<Example>, example: Example) {
    let same = examples
        .iter()
        .filter(|e| e.class == example.class && e.kind == example.kind)
        .count();
    if same < EXAMPLES_PER_CLASS && examples.len() < EXAMPLES {
        examples.push(example);
    }
}

impl Ctx {
    pub fn token(&self) -> String {
        self.access_token
            .read()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    pub fn elapsed_s(&self, at: Instant) -> f64 {
        (at.saturating_duration_since(self.start).as_secs_f64() * 10.0).round() / 10.0
    }

    /// The blip a request from `sent` to `done` overlapped, if any.
    fn blip_of(blips: &[Blip], sent: Instant, done: Instant, grace: Duration) -> Option<usize> {
        blips.iter().position(|b| {
            let until = b.up.map_or(done, |up| up + grace);
            b.down <= done && sent <= until
        })
    }

    /// Counts an attempt: ok, expected or unexpected failure, its latency, its run.
    pub fn record(&self, attempt: Attempt) {
        let blip = {
            let mut blips = lock(&self.blips);
            let index = Self::blip_of(&blips, attempt.sent, attempt.done, self.grace);
            match (&attempt.failure, index) {
                (Some(failure), Some(i)) if failure.in_blip => {
                    let blip = &mut blips[i];
                    blip.failures += 1;
                    blip.last_failure = Some(
                        blip.last_failure
                            .map_or(attempt.done, |t| t.max(attempt.done)),
                    );
                    true
                }
                _ => false,
            }
        };
        let at_s = self.elapsed_s(attempt.sent);
        let mut stats = lock(&self.stats);
        if let Some(run) = attempt.run {
            stats.runs.push(run);
        }
        let kind = stats.kinds.entry(attempt.kind).or_default();
        kind.sent += 1;
        match attempt.failure {
            None => {
                kind.ok += 1;
                kind.latencies.push(attempt.done - attempt.sent);
            }
            Some(failure) => {
                let example = Example {
                    at_s,
                    kind: attempt.kind,
                    class: failure.class.clone(),
                    detail: failure.detail,
                };
                if blip {
                    *kind.expected.entry(failure.class).or_default() += 1;
                    stats.expected += 1;
                    keep(&mut stats.expected_examples, example);
                } else {
                    *kind.unexpected.entry(failure.class).or_default() += 1;
                    stats.unexpected += 1;
                    keep(&mut stats.unexpected_examples, example);
                }
            }
        }
    }

    pub fn unexpected(&self) -> u64 {
        lock(&self.stats).unexpected
    }

    /// A request that was due but not sent, because too many were still unanswered.
    pub fn record_skipped(&self, kind: &'static str, in_flight: usize) {
        let now = Instant::now();
        self.record(Attempt {
            kind,
            sent: now,
            done: now,
            failure: Some(Failure::new(
                "not sent: generator backlog",
                format!("{in_flight} requests were unanswered when this one was due"),
            )),
            run: None,
        });
    }

    pub fn blip_started(&self) {
        lock(&self.blips).push(Blip {
            down: Instant::now(),
            down_at: chrono::Utc::now(),
            up: None,
            failures: 0,
            last_failure: None,
        });
    }

    pub fn blip_ended(&self) {
        if let Some(blip) = lock(&self.blips).last_mut() {
            blip.up = Some(Instant::now());
        }
    }
}

/// The failure of a request that did not get through: a 4xx/5xx with the platform's error code,
/// or a transport error.
async fn refused(response: reqwest::Response) -> Failure {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let code = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());
    let in_blip = (status.as_u16() == 503 && code == "quota_unavailable")
        || (status.as_u16() == 429 && code == "rate_limited");
    Failure {
        class: format!("{} {code}", status.as_u16()),
        detail: truncate(&body, 300),
        in_blip,
    }
}

fn transport(err: &reqwest::Error) -> Failure {
    let class = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect"
    } else if err.is_body() || err.is_decode() {
        "body cut"
    } else {
        "send"
    };
    Failure::new(class, truncate(&err.to_string(), 300))
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn run_id(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("x-run-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The answer every mock-upstream call gives: `tok0 tok1 … tok<chunks-1>`.
pub fn expected_text(chunks: u32) -> String {
    (0..chunks)
        .map(|i| format!("tok{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// SSE frames (separated by a blank line) of a whole body.
fn frames(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect()
}

fn data_of(frame: &str) -> Option<&str> {
    frame
        .lines()
        .find_map(|line| line.strip_prefix("data:"))
        .map(str::trim_start)
}

/// Sends a request and reads the whole answer: the response head and body, or how it failed.
async fn exchange(
    request: reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Bytes), Failure> {
    let response = request.send().await.map_err(|e| transport(&e))?;
    if !response.status().is_success() {
        return Err(refused(response).await);
    }
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(|e| transport(&e))?;
    Ok((status, headers, body))
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `POST /v1/chat/completions` with `bearer`, streamed or not, checked: status, run id,
/// completion id, the exact answer, `finish_reason`, usage (the mock's completion tokens), and
/// for a stream every frame up to `data: [DONE]`.
pub async fn completion(
    ctx: &Ctx,
    kind: &'static str,
    bearer: &str,
    stream: bool,
    n: usize,
) -> Attempt {
    let sent = Instant::now();
    let mut body = json!({
        "model": ctx.agent,
        // A little variety in the prompt's length, so its token count varies.
        "messages": [{"role": "user", "content": format!("Soak request {n}: {}", "say hello. ".repeat(n % 7 + 1))}],
        "stream": stream,
    });
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    let request = ctx
        .client
        .post(format!("{}/v1/chat/completions", ctx.root))
        .bearer_auth(bearer)
        .json(&body);
    let (failure, run) = match exchange(request).await {
        Err(failure) => (Some(failure), None),
        Ok((_, headers, body)) => {
            let id = header(&headers, "x-run-id");
            let checked = if stream {
                check_stream(ctx, &body)
            } else {
                check_completion(ctx, &body)
            };
            let (usage, failure) = match checked {
                Ok((usage, completion_id)) => {
                    let expected = id
                        .as_deref()
                        .map(|id| format!("chatcmpl-{}", id.replace('-', "")));
                    if id.is_none() {
                        (Some(usage), Some(Failure::new("no X-Run-Id", "")))
                    } else if expected.as_deref() != Some(completion_id.as_str()) {
                        (
                            Some(usage),
                            Some(Failure::new(
                                "completion id is not the run's",
                                format!(
                                    "id {completion_id}, X-Run-Id {}",
                                    id.clone().unwrap_or_default()
                                ),
                            )),
                        )
                    } else {
                        (Some(usage), None)
                    }
                }
                Err((usage, failure)) => (usage, Some(failure)),
            };
            let run = id.map(|id| RunSeen { id, kind, usage });
            (failure, run)
        }
    };
    Attempt {
        kind,
        sent,
        done: Instant::now(),
        failure,
        run,
    }
}

/// The usage a mock-upstream answer must carry.
fn check_usage(ctx: &Ctx, usage: Usage) -> Result<(), Failure> {
    if usage.completion != u64::from(ctx.chunks) || usage.prompt == 0 {
        return Err(Failure::new(
            "wrong usage",
            format!(
                "prompt {} completion {} (the mock writes {} tokens)",
                usage.prompt, usage.completion, ctx.chunks
            ),
        ));
    }
    Ok(())
}

type Checked = Result<(Usage, String), (Option<Usage>, Failure)>;

fn check_completion(ctx: &Ctx, body: &[u8]) -> Checked {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        (
            None,
            Failure::new(
                "unexpected body",
                format!("{e}: {}", truncate(&String::from_utf8_lossy(body), 200)),
            ),
        )
    })?;
    let usage = Usage::of(&value["usage"]);
    let fail = |class: &str, detail: String| (usage, Failure::new(class, detail));
    let Some(usage) = usage else {
        return Err(fail("no usage", truncate(&value.to_string(), 300)));
    };
    if value["usage"]["total_tokens"].as_u64() != Some(usage.total()) {
        return Err(fail(
            "wrong usage",
            format!("total_tokens is not the sum: {}", value["usage"]),
        ));
    }
    if value["object"] != "chat.completion" {
        return Err(fail("unexpected body", truncate(&value.to_string(), 300)));
    }
    let text = value["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    if text != expected_text(ctx.chunks) {
        return Err(fail("wrong answer", truncate(text, 200)));
    }
    if value["choices"][0]["finish_reason"] != "stop" {
        return Err(fail(
            "wrong finish_reason",
            value["choices"][0]["finish_reason"].to_string(),
        ));
    }
    check_usage(ctx, usage).map_err(|f| (Some(usage), f))?;
    Ok((usage, value["id"].as_str().unwrap_or_default().to_owned()))
}

fn check_stream(ctx: &Ctx, body: &[u8]) -> Checked {
    let mut text = String::new();
    let mut usage = None;
    let mut done = false;
    let mut finish = None;
    let mut id = String::new();
    let mut after_done = 0;
    for frame in frames(body) {
        let Some(data) = data_of(&frame) else {
            continue;
        };
        if done {
            after_done += 1;
        }
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let value: Value = match serde_json::from_str(data) {
            Ok(value) => value,
            Err(_) => return Err((usage, Failure::new("unexpected frame", truncate(data, 200)))),
        };
        if value.get("error").is_some() {
            let code = value["error"]["code"].as_str().unwrap_or("?");
            return Err((
                usage,
                Failure::new(format!("error chunk {code}"), truncate(data, 300)),
            ));
        }
        if id.is_empty() {
            value["id"].as_str().unwrap_or_default().clone_into(&mut id);
        }
        if let Some(u) = value.get("usage").filter(|u| !u.is_null()) {
            usage = Usage::of(u);
            if u["total_tokens"].as_u64() != usage.map(Usage::total) {
                return Err((
                    usage,
                    Failure::new("wrong usage", format!("total_tokens is not the sum: {u}")),
                ));
            }
        }
        if let Some(choice) = value["choices"].get(0) {
            if let Some(piece) = choice["delta"]["content"].as_str() {
                text.push_str(piece);
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                finish = Some(reason.to_owned());
            }
        }
    }
    if !done {
        return Err((
            usage,
            Failure::new("no [DONE]", format!("{} bytes", body.len())),
        ));
    }
    if after_done > 0 {
        return Err((usage, Failure::new("frames after [DONE]", "")));
    }
    let Some(usage) = usage else {
        return Err((
            None,
            Failure::new("no usage chunk", "stream_options.include_usage was set"),
        ));
    };
    if text != expected_text(ctx.chunks) {
        return Err((
            Some(usage),
            Failure::new("wrong answer", truncate(&text, 200)),
        ));
    }
    if finish.as_deref() != Some("stop") {
        return Err((
            Some(usage),
            Failure::new("wrong finish_reason", format!("{finish:?}")),
        ));
    }
    check_usage(ctx, usage).map_err(|f| (Some(usage), f))?;
    Ok((usage, id))
}

/// What a dashboard turn's events said.
#[derive(Debug, Default)]
struct Events {
    text: String,
    tool_results: Vec<String>,
    last_usage: Option<Usage>,
    limit: Option<String>,
    error: Option<String>,
    done: Option<Value>,
    after_done: usize,
    ids_in_order: bool,
}

fn events(body: &[u8]) -> Result<Events, Failure> {
    let mut seen = Events {
        ids_in_order: true,
        ..Events::default()
    };
    let mut next_id = 1u64;
    for frame in frames(body) {
        // `: ping` comments and anything without data carry nothing.
        let Some(data) = data_of(&frame) else {
            continue;
        };
        let value: Value = serde_json::from_str(data)
            .map_err(|_| Failure::new("unexpected frame", truncate(data, 200)))?;
        if let Some(id) = frame.lines().find_map(|l| l.strip_prefix("id:")) {
            if id.trim().parse::<u64>().ok() != Some(next_id) {
                seen.ids_in_order = false;
            }
            next_id += 1;
        }
        if seen.done.is_some() {
            seen.after_done += 1;
        }
        let data = &value["data"];
        match value["event"].as_str().unwrap_or_default() {
            "message" => seen.text.push_str(data.as_str().unwrap_or_default()),
            "tool_result" => seen
                .tool_results
                .push(data["content"].as_str().unwrap_or_default().to_owned()),
            "usage" => seen.last_usage = Usage::of(data),
            "limit" => seen.limit = data["reason"].as_str().map(str::to_owned),
            "error" => seen.error = Some(data["code"].as_str().unwrap_or("?").to_owned()),
            "done" => seen.done = Some(data.clone()),
            "shutdown" => {
                return Err(Failure::new(
                    "shutdown event",
                    truncate(data.to_string().as_str(), 200),
                ));
            }
            _ => {}
        }
    }
    Ok(seen)
}

/// One turn of a dashboard chat (`POST /api/v1/chat/completions` with the admin's session), in
/// a session of the mock-upstream agent (`tool: false`) or of the calculator agent. Checks the
/// events in order, `done` last with the run's id and the session's, stored, the exact answer,
/// and that each turn of a session sends more prompt tokens than the last (its history).
pub async fn dashboard(ctx: &Ctx, tool: bool) -> Attempt {
    let kind = if tool { DASHBOARD_TOOL } else { DASHBOARD };
    let pool = if tool {
        &ctx.tool_sessions
    } else {
        &ctx.sessions
    };
    let mut session = lock(pool).pop_front().unwrap_or_else(|| {
        let n = ctx.sessions_started.fetch_add(1, Ordering::Relaxed);
        Session {
            max_turns: 2 + (n % 4) as u32,
            ..Session::default()
        }
    });
    let sent = Instant::now();
    let (message, answer) = if tool {
        let (question, result) = QUESTIONS[session.turns as usize % QUESTIONS.len()];
        (
            question.to_owned(),
            format!("The calculator tool returned: {result}"),
        )
    } else {
        (
            format!(
                "Soak turn {} of this conversation: tell me something.",
                session.turns + 1
            ),
            expected_text(ctx.chunks),
        )
    };
    let mut body = json!({"message": message});
    match &session.id {
        Some(id) => body["session_id"] = json!(id),
        None => body["agent"] = json!(if tool { &ctx.tool_agent } else { &ctx.agent }),
    }
    let request = ctx
        .client
        .post(format!("{}/api/v1/chat/completions", ctx.root))
        .bearer_auth(ctx.token())
        .json(&body);
    let mut run = None;
    let failure = match exchange(request).await {
        Err(failure) => Some(failure),
        Ok((_, headers, body)) => {
            let id = header(&headers, "x-run-id");
            let session_id = header(&headers, "x-session-id");
            let checked = events(&body).and_then(|seen| {
                let usage = seen.done.as_ref().and_then(|d| Usage::of(&d["usage"]));
                run = id.clone().map(|id| RunSeen { id, kind, usage });
                check_turn(
                    ctx,
                    tool,
                    &session,
                    &seen,
                    id.as_deref(),
                    session_id.as_deref(),
                    &answer,
                )
                .map(|()| usage)
            });
            match checked {
                Ok(usage) => {
                    if session.id.is_none() {
                        session.id = session_id;
                    }
                    session.last_prompt = usage.map_or(0, |u| u.prompt);
                    None
                }
                Err(failure) => Some(failure),
            }
        }
    };
    session.turns += 1;
    // A session goes back to the pool for its next turn, unless it is over or went wrong (its
    // history would no longer be what the checks expect).
    if failure.is_none() && session.turns < session.max_turns {
        lock(pool).push_back(session);
    }
    Attempt {
        kind,
        sent,
        done: Instant::now(),
        failure,
        run,
    }
}

fn check_turn(
    ctx: &Ctx,
    tool: bool,
    session: &Session,
    seen: &Events,
    run_id: Option<&str>,
    session_id: Option<&str>,
    answer: &str,
) -> Result<(), Failure> {
    let Some(done) = &seen.done else {
        return Err(Failure::new(
            "no done event",
            format!("{} chars of answer", seen.text.len()),
        ));
    };
    if seen.after_done > 0 {
        return Err(Failure::new("events after done", ""));
    }
    if !seen.ids_in_order {
        return Err(Failure::new("event ids out of order", ""));
    }
    if let Some(code) = &seen.error {
        return Err(Failure::new(
            format!("error event {code}"),
            done.to_string(),
        ));
    }
    let Some(run_id) = run_id else {
        return Err(Failure::new("no X-Run-Id", ""));
    };
    if done["run_id"].as_str() != Some(run_id) {
        return Err(Failure::new("done names another run", done.to_string()));
    }
    if session_id.is_none() || done["session_id"].as_str() != session_id {
        return Err(Failure::new("done names another session", done.to_string()));
    }
    if let Some(id) = &session.id
        && session_id != Some(id.as_str())
    {
        return Err(Failure::new(
            "the turn went to another session",
            format!("{session_id:?} for {id}"),
        ));
    }
    if done["stored"] != true {
        return Err(Failure::new("not stored", done.to_string()));
    }
    let Some(usage) = Usage::of(&done["usage"]) else {
        return Err(Failure::new("no usage in done", done.to_string()));
    };
    if seen.last_usage != Some(usage) {
        return Err(Failure::new(
            "done's usage is not the last usage event's",
            format!("{:?} vs {usage:?}", seen.last_usage),
        ));
    }
    // During a blip a tool run cannot reserve its second model call: it ends on the quota.
    if tool && seen.limit.as_deref() == Some("token_quota") && done["status"] == "limited" {
        return Err(Failure {
            class: "limited: token_quota".to_owned(),
            detail: done.to_string(),
            in_blip: true,
        });
    }
    if done["status"] != "completed" {
        return Err(Failure::new(
            format!("status {}", done["status"].as_str().unwrap_or("?")),
            done.to_string(),
        ));
    }
    if seen.text != answer {
        return Err(Failure::new("wrong answer", truncate(&seen.text, 200)));
    }
    if tool {
        let expected = answer.rsplit(' ').next().unwrap_or_default();
        if seen.tool_results.len() != 1 || seen.tool_results[0] != expected {
            return Err(Failure::new(
                "wrong tool result",
                format!("{:?}", seen.tool_results),
            ));
        }
    } else {
        check_usage(ctx, usage)?;
    }
    if usage.prompt <= session.last_prompt {
        return Err(Failure::new(
            "history not sent",
            format!(
                "turn {} sent {} prompt tokens, the last {}",
                session.turns + 1,
                usage.prompt,
                session.last_prompt
            ),
        ));
    }
    Ok(())
}

/// One API-key cycle: create a key with the `chat` scope, chat with it, revoke it, and check
/// that the revoked key is refused with 401 `api_key_revoked` at once.
pub async fn key_cycle(ctx: &Ctx, n: usize) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    let sent = Instant::now();
    let request = ctx
        .client
        .post(format!("{}/api/v1/api-keys", ctx.root))
        .bearer_auth(ctx.token())
        .json(&json!({"name": format!("soak key {n}"), "scopes": ["chat"], "expires_in_days": 1}));
    let created = match exchange(request).await {
        Ok((status, _, body)) => {
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match (value["id"].as_str(), value["key"].as_str()) {
                (Some(id), Some(key)) if status.as_u16() == 201 => {
                    Ok((id.to_owned(), key.to_owned()))
                }
                _ => Err(Failure::new(
                    "unexpected body",
                    truncate(&value.to_string(), 300),
                )),
            }
        }
        Err(failure) => Err(failure),
    };
    let (id, key) = match created {
        Ok(pair) => {
            attempts.push(Attempt {
                kind: KEY_CREATE,
                sent,
                done: Instant::now(),
                failure: None,
                run: None,
            });
            pair
        }
        Err(failure) => {
            attempts.push(Attempt {
                kind: KEY_CREATE,
                sent,
                done: Instant::now(),
                failure: Some(failure),
                run: None,
            });
            return attempts;
        }
    };
    attempts.push(completion(ctx, KEY_USE, &key, false, n).await);
    let sent = Instant::now();
    let revoked = ctx
        .client
        .delete(format!("{}/api/v1/api-keys/{id}", ctx.root))
        .bearer_auth(ctx.token())
        .send()
        .await;
    let failure = match revoked {
        Ok(response) if response.status().as_u16() == 204 => None,
        Ok(response) if response.status().is_success() => Some(Failure::new(
            format!("{} instead of 204", response.status().as_u16()),
            "",
        )),
        Ok(response) => Some(refused(response).await),
        Err(err) => Some(transport(&err)),
    };
    let ok = failure.is_none();
    attempts.push(Attempt {
        kind: KEY_REVOKE,
        sent,
        done: Instant::now(),
        failure,
        run: None,
    });
    if !ok {
        return attempts;
    }
    let sent = Instant::now();
    let body = json!({"model": ctx.agent, "messages": [{"role": "user", "content": "Am I still let in?"}]});
    let answer = ctx
        .client
        .post(format!("{}/v1/chat/completions", ctx.root))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await;
    let (failure, run) = match answer {
        Err(err) => (Some(transport(&err)), None),
        Ok(response) => {
            let status = response.status().as_u16();
            let run = run_id(&response);
            let body = response.text().await.unwrap_or_default();
            let code = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let failure = if status == 401 && code == "api_key_revoked" {
                None
            } else if (200..300).contains(&status) {
                Some(Failure::new("revoked key accepted", truncate(&body, 300)))
            } else {
                Some(Failure::new(
                    format!("{status} {code} for a revoked key"),
                    truncate(&body, 300),
                ))
            };
            // A run started by a revoked key is billed, and not by anything the soak counts.
            let run = run.map(|id| RunSeen {
                id,
                kind: REVOKED_KEY,
                usage: None,
            });
            (failure, run)
        }
    };
    attempts.push(Attempt {
        kind: REVOKED_KEY,
        sent,
        done: Instant::now(),
        failure,
        run,
    });
    attempts
}

/// Trades the admin's refresh token for a new pair (the access token lives 15 minutes).
pub async fn refresh(ctx: &Ctx) -> Attempt {
    let sent = Instant::now();
    let refresh_token = ctx
        .refresh_token
        .read()
        .map(|t| t.clone())
        .unwrap_or_default();
    let request = ctx
        .client
        .post(format!("{}/api/v1/auth/refresh", ctx.root))
        .json(&json!({"refresh_token": refresh_token}));
    let failure = match exchange(request).await {
        Err(failure) => Some(failure),
        Ok((_, _, body)) => {
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match (
                value["access_token"].as_str(),
                value["refresh_token"].as_str(),
            ) {
                (Some(access), Some(refresh)) => {
                    if let Ok(mut token) = ctx.access_token.write() {
                        access.clone_into(&mut token);
                    }
                    if let Ok(mut token) = ctx.refresh_token.write() {
                        refresh.clone_into(&mut token);
                    }
                    None
                }
                _ => Some(Failure::new(
                    "unexpected body",
                    truncate(&value.to_string(), 200),
                )),
            }
        }
    };
    Attempt {
        kind: REFRESH,
        sent,
        done: Instant::now(),
        failure,
        run: None,
    }
}

/// The next kind of the mix: smooth weighted round robin, so the kinds interleave evenly.
#[derive(Debug, Default)]
pub struct Mixer {
    current: [i64; MIX.len()],
}

impl Mixer {
    pub fn next(&mut self) -> &'static str {
        let total: i64 = MIX.iter().map(|(_, w)| i64::from(*w)).sum();
        let mut best = 0;
        for (i, (_, weight)) in MIX.iter().enumerate() {
            self.current[i] += i64::from(*weight);
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= total;
        MIX[best].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_keeps_its_weights() {
        let mut mixer = Mixer::default();
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for _ in 0..200 {
            *counts.entry(mixer.next()).or_default() += 1;
        }
        for (kind, weight) in MIX {
            assert_eq!(counts[kind], weight * 10, "{kind}");
        }
    }

    #[test]
    fn the_mock_answer_is_numbered_tokens() {
        assert_eq!(expected_text(3), "tok0 tok1 tok2");
    }

    #[test]
    fn dashboard_events_are_read_in_order() {
        let body = b"id: 1\nevent: message\ndata: {\"event\":\"message\",\"data\":\"tok0\"}\n\n: ping\n\nid: 2\nevent: usage\ndata: {\"event\":\"usage\",\"data\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\nid: 3\nevent: done\ndata: {\"event\":\"done\",\"data\":{\"status\":\"completed\"}}\n\n";
        let seen = events(body).unwrap();
        assert_eq!(seen.text, "tok0");
        assert_eq!(
            seen.last_usage,
            Some(Usage {
                prompt: 5,
                completion: 1
            })
        );
        assert!(seen.ids_in_order);
        assert_eq!(seen.done.unwrap()["status"], "completed");
    }

    #[test]
    fn a_failure_counts_in_the_blip_it_overlaps() {
        let now = Instant::now();
        let s = Duration::from_secs(1);
        let blips = [Blip {
            down: now + 10 * s,
            down_at: chrono::Utc::now(),
            up: Some(now + 15 * s),
            failures: 0,
            last_failure: None,
        }];
        let grace = 5 * s;
        assert_eq!(Ctx::blip_of(&blips, now, now + 9 * s, grace), None);
        assert_eq!(
            Ctx::blip_of(&blips, now + 9 * s, now + 11 * s, grace),
            Some(0)
        );
        assert_eq!(
            Ctx::blip_of(&blips, now + 19 * s, now + 19 * s, grace),
            Some(0)
        );
        assert_eq!(
            Ctx::blip_of(&blips, now + 21 * s, now + 22 * s, grace),
            None
        );
        let ongoing = [Blip {
            up: None,
            ..blips[0]
        }];
        assert_eq!(
            Ctx::blip_of(&ongoing, now + 30 * s, now + 31 * s, grace),
            Some(0)
        );
    }
}
