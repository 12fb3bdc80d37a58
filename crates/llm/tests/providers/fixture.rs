//! A local HTTP/1.1 server that plays a model provider: it records every request and answers
//! from a script, one reply per request (the last one repeats). Streams are sent with chunked
//! transfer encoding, one chunk per SSE event, as the real APIs flush them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use paas_llm::{ChatMessage, ChatRequest, EventStream, HttpPolicy, LlmError, StreamEvent};
use paas_net::OutboundPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

/// How long a fixture that stalls keeps the connection open: longer than any test.
const STALL: Duration = Duration::from_secs(30);

/// One request the fixture received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Which TCP connection (numbered from 0 in accept order) carried the request.
    pub connection: usize,
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("the request body is JSON")
    }
}

#[derive(Clone, Debug)]
pub enum Part {
    /// Bytes written (and flushed) as one chunk.
    Data(String),
    Pause(Duration),
}

#[derive(Clone, Copy, Debug)]
pub enum End {
    /// The terminating chunk: the body is complete.
    Complete,
    /// Close the connection mid-body.
    Cut,
    /// Keep the connection open and send nothing more.
    Stall,
}

#[derive(Clone, Debug)]
pub enum Reply {
    /// `200 text/event-stream`, written part by part.
    Sse { parts: Vec<Part>, end: End },
    /// Any status with a body.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Read the request, never answer.
    Silent,
}

impl Reply {
    /// A complete event stream: `body` is split into events at blank lines, one chunk each.
    pub fn sse(body: &str) -> Reply {
        Reply::Sse {
            parts: events(body),
            end: End::Complete,
        }
    }

    /// An event stream that ends as `end` says after `body`.
    pub fn sse_then(body: &str, end: End) -> Reply {
        Reply::Sse {
            parts: events(body),
            end,
        }
    }

    pub fn status(status: u16, body: &str) -> Reply {
        Reply::Status {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_owned(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Status { headers, .. } = &mut self {
            headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }
}

fn events(body: &str) -> Vec<Part> {
    body.split_inclusive("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| Part::Data(event.trim_start_matches('\n').to_owned()))
        .collect()
}

/// A running fixture.
#[derive(Debug)]
pub struct Fixture {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Fixture {
    pub async fn start(replies: Vec<Reply>) -> Fixture {
        assert!(!replies.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(replies);
        let recorded = Arc::clone(&requests);
        tokio::spawn(async move {
            let mut connection = 0;
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(
                    socket,
                    connection,
                    Arc::clone(&replies),
                    Arc::clone(&recorded),
                ));
                connection += 1;
            }
        });
        Fixture { addr, requests }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    /// Public addresses plus exactly this fixture.
    pub fn outbound(&self) -> OutboundPolicy {
        OutboundPolicy {
            allow_private: false,
            exempt: vec![self.addr],
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn serve(
    mut socket: TcpStream,
    connection: usize,
    replies: Arc<Vec<Reply>>,
    requests: Arc<Mutex<Vec<Recorded>>>,
) {
    let mut buffer = Vec::new();
    // Keep-alive: several requests may come over one connection (retries reuse it).
    while let Some(request) = read_request(&mut socket, connection, &mut buffer).await {
        let n = {
            let mut requests = requests.lock().unwrap();
            requests.push(request);
            requests.len() - 1
        };
        let reply = replies[n.min(replies.len() - 1)].clone();
        let finished = match reply {
            Reply::Silent => {
                tokio::time::sleep(STALL).await;
                false
            }
            Reply::Status {
                status,
                headers,
                body,
            } => {
                let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
                socket.write_all(head.as_bytes()).await.is_ok()
            }
            Reply::Sse { parts, end } => write_stream(&mut socket, parts, end).await,
        };
        if !finished {
            return;
        }
    }
}

/// Writes a chunked event stream; returns whether the connection can carry another request.
async fn write_stream(socket: &mut TcpStream, parts: Vec<Part>, end: End) -> bool {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\
                cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
    if socket.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    for part in parts {
        match part {
            Part::Data(data) => {
                let chunk = format!("{:x}\r\n{data}\r\n", data.len());
                if socket.write_all(chunk.as_bytes()).await.is_err()
                    || socket.flush().await.is_err()
                {
                    return false;
                }
            }
            Part::Pause(pause) => tokio::time::sleep(pause).await,
        }
    }
    match end {
        End::Complete => socket.write_all(b"0\r\n\r\n").await.is_ok(),
        End::Cut => false,
        End::Stall => {
            tokio::time::sleep(STALL).await;
            false
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}

async fn read_request(
    socket: &mut TcpStream,
    connection: usize,
    buffer: &mut Vec<u8>,
) -> Option<Recorded> {
    let header_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 8192];
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let mut chunk = [0u8; 8192];
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buffer[header_end..header_end + length]).into_owned();
    buffer.drain(..header_end + length);
    Some(Recorded {
        connection,
        method,
        path,
        headers,
        body,
    })
}

/// Small timeouts and backoffs so failure tests stay fast. `backoff_cap` allows a
/// `Retry-After: 1` (up to 4 × 300 ms).
pub fn fast_policy() -> HttpPolicy {
    HttpPolicy {
        connect_timeout: Duration::from_millis(300),
        first_byte_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        max_retries: 2,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(300),
    }
}

pub fn request() -> ChatRequest {
    ChatRequest {
        model: "test-model".into(),
        messages: vec![
            ChatMessage::system("You are terse."),
            ChatMessage::user("Say hello."),
        ],
        tools: vec![],
        temperature: None,
        max_tokens: None,
    }
}

/// Every item of a stream, errors included.
pub async fn drain(mut stream: EventStream) -> Vec<Result<StreamEvent, LlmError>> {
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item);
    }
    items
}

/// Runs `f` and says how long it took.
pub async fn timed<F: std::future::Future>(f: F) -> (F::Output, Duration) {
    let start = Instant::now();
    let output = f.await;
    (output, start.elapsed())
}
