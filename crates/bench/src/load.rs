//! The load generator: Chat Completions requests at a constant arrival rate (an open model: a
//! new request leaves on schedule whether or not earlier ones have been answered, so a slow
//! server cannot hide its tail by slowing the client down), or from a fixed number of
//! concurrent clients (a closed model, for "N streams at once").
//!
//! Non-streamed answers are timed from send to the last byte. Streamed answers are timed to
//! the first chunk that carries content (time to first token) and between content chunks;
//! every stream is checked to end with `data: [DONE]` and to have carried every chunk.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Where requests go and what they carry.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub stream: bool,
    /// Content chunks every streamed answer must carry.
    pub chunks: u32,
}

impl Target {
    pub fn new(url: String, bearer: &str, model: &str, stream: bool, chunks: u32) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {bearer}")) {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let body = serde_json::json!({
            "model": model,
            "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
            "stream": stream,
        });
        Self {
            url,
            headers,
            body: Bytes::from(body.to_string()),
            stream,
            chunks,
        }
    }
}

/// One client for every request to a target: keep-alive connections, `TCP_NODELAY`, HTTP/1.1
/// (as OpenAI's SDKs talk to a server without TLS).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(60))
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap_or_default()
}

/// What one request measured.
#[derive(Debug, Default)]
struct Sample {
    /// Send to last byte.
    total: Duration,
    /// Send to the first content chunk (streams).
    ttft: Option<Duration>,
    /// Between consecutive content chunks (streams).
    gaps: Vec<Duration>,
    error: Option<String>,
}

/// Everything a measurement collected.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Send to last byte, of the successful requests.
    pub latencies: Vec<Duration>,
    pub ttft: Vec<Duration>,
    pub gaps: Vec<Duration>,
    pub ok: u64,
    pub errors: u64,
    /// Errors by kind (`status 429`, `incomplete stream`, `connect`, …).
    pub error_kinds: BTreeMap<String, u64>,
    /// From the first send to the last answer.
    pub elapsed: Duration,
}

impl Outcome {
    fn add(&mut self, sample: Sample) {
        match sample.error {
            Some(kind) => {
                self.errors += 1;
                *self.error_kinds.entry(kind).or_default() += 1;
            }
            None => {
                self.ok += 1;
                self.latencies.push(sample.total);
                self.ttft.extend(sample.ttft);
                self.gaps.extend(sample.gaps);
            }
        }
    }

    pub fn requests(&self) -> u64 {
        self.ok + self.errors
    }
}

/// Sends one request and reads the whole answer.
async fn one(client: &reqwest::Client, target: &Target) -> Sample {
    let started = Instant::now();
    let mut sample = Sample::default();
    let sent = client
        .post(&target.url)
        .headers(target.headers.clone())
        .body(target.body.clone())
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(err) => {
            sample.error = Some(if err.is_connect() {
                "connect".to_owned()
            } else if err.is_timeout() {
                "timeout".to_owned()
            } else {
                "send".to_owned()
            });
            return sample;
        }
    };
    let status = response.status();
    if !status.is_success() {
        // The error's code says which limit or fault refused it (OpenAI's error shape).
        let code = response
            .bytes()
            .await
            .ok()
            .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok())
            .and_then(|body| body["error"]["code"].as_str().map(str::to_owned));
        sample.error = Some(match code {
            Some(code) => format!("status {} {code}", status.as_u16()),
            None => format!("status {}", status.as_u16()),
        });
        return sample;
    }
    if !target.stream {
        match response.bytes().await {
            Ok(body) if contains(&body, b"\"chat.completion\"") => {}
            Ok(_) => sample.error = Some("unexpected body".to_owned()),
            Err(_) => sample.error = Some("body".to_owned()),
        }
        sample.total = started.elapsed();
        return sample;
    }
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    let mut content_chunks = 0u32;
    let mut last: Option<Instant> = None;
    let mut done = false;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(_) => {
                sample.error = Some("stream cut".to_owned());
                return sample;
            }
        };
        let at = Instant::now();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = find(&buffer, b"\n\n") {
            let frame: Vec<u8> = buffer.drain(..end + 2).collect();
            if contains(&frame, b"data: [DONE]") {
                done = true;
            } else if contains(&frame, b"\"error\"") {
                sample.error = Some("error event".to_owned());
            } else if has_content(&frame) {
                content_chunks += 1;
                match last {
                    None => sample.ttft = Some(at - started),
                    Some(previous) => sample.gaps.push(at - previous),
                }
                last = Some(at);
            }
        }
    }
    sample.total = started.elapsed();
    if sample.error.is_none() {
        if !done {
            sample.error = Some("no [DONE]".to_owned());
        } else if content_chunks != target.chunks {
            sample.error = Some(format!(
                "{content_chunks} of {} chunks delivered",
                target.chunks
            ));
        }
    }
    sample
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// A chunk frame whose delta carries text: `"content":"` followed by something other than the
/// closing quote (the opening role chunk has `"content":""`).
fn has_content(frame: &[u8]) -> bool {
    const KEY: &[u8] = b"\"content\":\"";
    let mut rest = frame;
    while let Some(at) = find(rest, KEY) {
        let after = &rest[at + KEY.len()..];
        if after.first().is_some_and(|b| *b != b'"') {
            return true;
        }
        rest = after;
    }
    false
}

/// Requests at `rate` per second for `duration`, each sent on schedule (open model). At most
/// `max_in_flight` are outstanding; a request due while that many are is counted as an error
/// (`generator saturated`) rather than delayed.
pub async fn open(
    client: &reqwest::Client,
    target: &Target,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
) -> Outcome {
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let (sender, mut receiver) = mpsc::unbounded_channel::<Sample>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut outcome = Outcome::default();
    let start = Instant::now();
    let mut skipped = 0u64;
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            skipped += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (client, target, sender, in_flight) = (
            client.clone(),
            target.clone(),
            sender.clone(),
            Arc::clone(&in_flight),
        );
        tokio::spawn(async move {
            let sample = one(&client, &target).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = sender.send(sample);
        });
    }
    drop(sender);
    while let Some(sample) = receiver.recv().await {
        outcome.add(sample);
    }
    outcome.elapsed = start.elapsed();
    if skipped > 0 {
        outcome.errors += skipped;
        outcome
            .error_kinds
            .insert("generator saturated".to_owned(), skipped);
    }
    outcome
}

/// `concurrency` clients, each sending its next request as soon as its last is answered, for
/// `duration` (closed model).
pub async fn closed(
    client: &reqwest::Client,
    target: &Target,
    concurrency: usize,
    duration: Duration,
) -> Outcome {
    let start = Instant::now();
    let deadline = start + duration;
    let (sender, mut receiver) = mpsc::unbounded_channel::<Sample>();
    for _ in 0..concurrency {
        let (client, target, sender) = (client.clone(), target.clone(), sender.clone());
        tokio::spawn(async move {
            while Instant::now() < deadline {
                let sample = one(&client, &target).await;
                if sender.send(sample).is_err() {
                    break;
                }
            }
        });
    }
    drop(sender);
    let mut outcome = Outcome::default();
    while let Some(sample) = receiver.recv().await {
        outcome.add(sample);
    }
    outcome.elapsed = start.elapsed();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_chunks_are_told_from_role_and_usage_chunks() {
        assert!(has_content(
            br#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#
        ));
        assert!(!has_content(
            br#"data: {"choices":[{"delta":{"role":"assistant","content":""}}]}"#
        ));
        assert!(!has_content(br#"data: {"choices":[],"usage":{}}"#));
        assert!(has_content(
            br#"data: {"a":{"content":""},"b":{"content":"x"}}"#
        ));
    }
}
