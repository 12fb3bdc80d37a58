#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The `http_fetch` tool against local fixture servers speaking raw HTTP/1.1: what it reads,
//! and above all what it refuses to contact.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paas_agents::tools::{HttpFetchConfig, ToolError, ToolRegistry};
use paas_net::OutboundPolicy;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A server that answers by path (see [`route`]) and records every request line's target.
struct Fixture {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Fixture {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                tokio::spawn(async move { serve(stream, seen).await });
            }
        });
        Self { addr, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A path on this fixture that redirects to `target` with `status`.
    fn redirect_to(&self, status: u16, target: &str) -> String {
        let to: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
        self.url(&format!("/redirect?status={status}&to={to}"))
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// A policy that allows this fixture's exact address and nothing else that is private.
    fn config(&self) -> HttpFetchConfig {
        HttpFetchConfig {
            outbound: OutboundPolicy {
                allow_private: false,
                exempt: vec![self.addr],
            },
            timeout: Duration::from_secs(2),
            ..HttpFetchConfig::default()
        }
    }
}

async fn serve(mut stream: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
    seen.lock().unwrap().push(target.clone());
    match route(&target, &head) {
        Some(response) => {
            let _ = stream.write_all(&response).await;
            let _ = stream.shutdown().await;
        }
        // Never answer, but keep the connection open.
        None => tokio::time::sleep(Duration::from_secs(30)).await,
    }
}

fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn route(target: &str, head: &str) -> Option<Vec<u8>> {
    let parsed = url::Url::parse(&format!("http://fixture{target}")).unwrap();
    let query = |key: &str| {
        parsed
            .query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    let path = parsed.path();
    let ok = |content_type: &str, body: &[u8]| {
        response("200 OK", &[("Content-Type", content_type)], body)
    };
    Some(match path {
        "/text" => ok("text/plain; charset=utf-8", b"hello, world"),
        "/html" => ok(
            "text/html; charset=utf-8",
            b"<!doctype html><html><head><title>Fixture page</title>\
              <script>document.write('<p>injected</p>')</script>\
              <style>p { color: red }</style></head>\
              <body><h1>Hello &amp; welcome</h1><p>Some <b>bold</b>   text&nbsp;here.</p></body></html>",
        ),
        "/json" => ok("application/json", br#"{"ok":true,"items":[1,2]}"#),
        "/png" => ok("image/png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
        "/untyped" => response("200 OK", &[], b"plain words"),
        "/untyped-binary" => response("200 OK", &[], b"\xff\xfe\0\x01binary"),
        "/gzip" => response(
            "200 OK",
            &[("Content-Type", "text/plain"), ("Content-Encoding", "gzip")],
            b"\x1f\x8b\x08\0",
        ),
        "/big" => ok("text/plain", &vec![b'a'; 100_000]),
        "/accents" => ok("text/plain", "é".repeat(1000).as_bytes()),
        "/exact" => ok("text/plain", &[b'x'; 1000]),
        "/missing" => response(
            "404 Not Found",
            &[("Content-Type", "text/html")],
            b"<h1>Not found</h1><p>No such page.</p>",
        ),
        "/headers" => ok("text/plain", head.as_bytes()),
        "/redirect" => {
            let status = query("status").unwrap_or_else(|| "302".into());
            let to = query("to").unwrap();
            response(&format!("{status} Redirect"), &[("Location", &to)], b"")
        }
        "/no-location" => response("302 Found", &[("Content-Type", "text/plain")], b"nowhere"),
        "/loop" => response("302 Found", &[("Location", "/loop")], b""),
        "/hang" => return None,
        chain if chain.starts_with("/chain/") => {
            let n: u32 = chain["/chain/".len()..].parse().unwrap();
            if n == 0 {
                ok("text/plain", b"end of chain")
            } else {
                // Relative Location, resolved against the current URL.
                let next = format!("{}", n - 1);
                response("301 Moved Permanently", &[("Location", &next)], b"")
            }
        }
        _ => response("404 Not Found", &[("Content-Type", "text/plain")], b"unknown"),
    })
}

/// A listener that must never be reached: it counts connections (and answers, so that a
/// broken guard would produce a successful fetch rather than a hang).
struct Forbidden {
    port: u16,
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Forbidden {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(&response(
                        "200 OK",
                        &[("Content-Type", "text/plain")],
                        b"internal secret",
                    ))
                    .await;
            }
        });
        Self {
            port: addr.port(),
            addr,
            accepted,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Every spelling of "somewhere the tool must not go" the tests try.
    fn targets(&self) -> Vec<String> {
        let p = self.port;
        vec![
            "http://169.254.169.254/latest/meta-data/".into(),
            format!("http://127.0.0.1:{p}/"),
            "http://[::1]/".into(),
            format!("http://[::1]:{p}/"),
            "http://0x7f000001/".into(),
            format!("http://0x7f000001:{p}/"),
            "http://2130706433/".into(),
            format!("http://2130706433:{p}/"),
            "http://[::ffff:127.0.0.1]/".into(),
            format!("http://[::ffff:127.0.0.1]:{p}/"),
            format!("http://127.1:{p}/"),
            format!("http://0.0.0.0:{p}/"),
            format!("http://[::]:{p}/"),
            format!("http://localhost:{p}/"),
            format!("https://10.0.0.1:{p}/"),
            "file:///etc/passwd".into(),
            "gopher://127.0.0.1:70/".into(),
        ]
    }
}

async fn fetch(config: HttpFetchConfig, url: &str) -> Result<Value, ToolError> {
    let registry = ToolRegistry::builtin(config);
    let tool = registry.get("http_fetch").unwrap();
    let out = tool.call(json!({ "url": url })).await?;
    Ok(serde_json::from_str(&out).unwrap())
}

#[tokio::test]
async fn fetches_plain_text_as_compact_json() {
    let fixture = Fixture::start().await;
    let tool = ToolRegistry::builtin(fixture.config())
        .get("http_fetch")
        .unwrap();
    let out = tool
        .call(json!({ "url": fixture.url("/text") }))
        .await
        .unwrap();
    assert_eq!(
        out,
        format!(
            r#"{{"url":"http://{}/text","status":200,"content_type":"text/plain; charset=utf-8","truncated":false,"text":"hello, world"}}"#,
            fixture.addr
        )
    );
    assert_eq!(fixture.requests(), ["/text"]);
}

#[tokio::test]
async fn sends_a_plain_get_without_compression_or_credentials() {
    let fixture = Fixture::start().await;
    let out = fetch(fixture.config(), &fixture.url("/headers"))
        .await
        .unwrap();
    let head = out["text"].as_str().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /headers http/1.1\r\n"), "{head}");
    assert!(head.contains("accept-encoding: identity"), "{head}");
    assert!(head.contains("user-agent: agentpaas-http_fetch/"), "{head}");
    assert!(!head.contains("authorization"), "{head}");
}

#[tokio::test]
async fn reduces_html_to_text() {
    let fixture = Fixture::start().await;
    let out = fetch(fixture.config(), &fixture.url("/html"))
        .await
        .unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(out["content_type"], "text/html; charset=utf-8");
    assert_eq!(
        out["text"],
        "Fixture page\nHello & welcome\nSome bold text here."
    );
}

#[tokio::test]
async fn returns_json_and_untyped_utf8_as_is() {
    let fixture = Fixture::start().await;
    let out = fetch(fixture.config(), &fixture.url("/json"))
        .await
        .unwrap();
    assert_eq!(out["content_type"], "application/json");
    assert_eq!(out["text"], r#"{"ok":true,"items":[1,2]}"#);

    let out = fetch(fixture.config(), &fixture.url("/untyped"))
        .await
        .unwrap();
    assert_eq!(out["content_type"], Value::Null);
    assert_eq!(out["text"], "plain words");
}

#[tokio::test]
async fn refuses_what_is_not_text() {
    let fixture = Fixture::start().await;
    for path in ["/png", "/untyped-binary", "/gzip"] {
        let err = fetch(fixture.config(), &fixture.url(path))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "tool_failed", "{path}: {err}");
    }
    let err = fetch(fixture.config(), &fixture.url("/png"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("not text: the response is image/png"),
        "{err}"
    );
}

#[tokio::test]
async fn truncates_large_bodies() {
    let fixture = Fixture::start().await;
    let config = HttpFetchConfig {
        max_bytes: 1000,
        ..fixture.config()
    };
    let out = fetch(config.clone(), &fixture.url("/big")).await.unwrap();
    assert_eq!(out["truncated"], true);
    assert_eq!(out["text"], "a".repeat(1000));

    // A cut in the middle of a character drops the partial character.
    let config = HttpFetchConfig {
        max_bytes: 1001,
        ..config
    };
    let out = fetch(config.clone(), &fixture.url("/accents"))
        .await
        .unwrap();
    assert_eq!(out["truncated"], true);
    assert_eq!(out["text"], "é".repeat(500));

    // Exactly the limit is not truncated.
    let config = HttpFetchConfig {
        max_bytes: 1000,
        ..config
    };
    let out = fetch(config, &fixture.url("/exact")).await.unwrap();
    assert_eq!(out["truncated"], false);
    assert_eq!(out["text"].as_str().unwrap().len(), 1000);
}

#[tokio::test]
async fn error_pages_are_returned_with_their_status() {
    let fixture = Fixture::start().await;
    let out = fetch(fixture.config(), &fixture.url("/missing"))
        .await
        .unwrap();
    assert_eq!(out["status"], 404);
    assert_eq!(out["text"], "Not found\nNo such page.");
    // A redirect status without a Location is an answer, not a redirect.
    let out = fetch(fixture.config(), &fixture.url("/no-location"))
        .await
        .unwrap();
    assert_eq!(out["status"], 302);
    assert_eq!(out["text"], "nowhere");
}

#[tokio::test]
async fn follows_redirects_within_the_limit() {
    let fixture = Fixture::start().await;
    let out = fetch(fixture.config(), &fixture.url("/chain/3"))
        .await
        .unwrap();
    assert_eq!(out["url"], fixture.url("/chain/0"));
    assert_eq!(out["text"], "end of chain");
    assert_eq!(
        fixture.requests(),
        ["/chain/3", "/chain/2", "/chain/1", "/chain/0"]
    );

    for status in [301, 302, 303, 307, 308] {
        let out = fetch(
            fixture.config(),
            &fixture.redirect_to(status, &fixture.url("/json")),
        )
        .await
        .unwrap();
        assert_eq!(out["url"], fixture.url("/json"), "{status}");
        assert_eq!(out["status"], 200, "{status}");
    }
}

#[tokio::test]
async fn stops_after_too_many_redirects() {
    let fixture = Fixture::start().await;
    let err = fetch(fixture.config(), &fixture.url("/loop"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "tool_failed");
    assert!(err.to_string().contains("too many redirects"), "{err}");
    // The first request and five redirects, not one more.
    assert_eq!(fixture.requests().len(), 6);

    let config = HttpFetchConfig {
        max_redirects: 2,
        ..fixture.config()
    };
    assert!(
        fetch(config.clone(), &fixture.url("/chain/2"))
            .await
            .is_ok()
    );
    let err = fetch(config, &fixture.url("/chain/3")).await.unwrap_err();
    assert!(err.to_string().contains("more than 2"), "{err}");
}

#[tokio::test]
async fn redirects_to_private_targets_are_blocked_and_never_contacted() {
    let fixture = Fixture::start().await;
    let forbidden = Forbidden::start().await;
    for target in forbidden.targets() {
        let before = fixture.requests().len();
        let err = fetch(fixture.config(), &fixture.redirect_to(302, &target))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "blocked", "{target}: {err}");
        assert!(
            err.to_string().contains("the redirect to"),
            "{target}: {err}"
        );
        // The fixture did send the redirect: the refusal happened on the second hop.
        assert_eq!(fixture.requests().len(), before + 1, "{target}");
    }
    // A 307 keeps its method and body in browsers; here it is refused all the same.
    let err = fetch(
        fixture.config(),
        &fixture.redirect_to(307, &format!("http://127.0.0.1:{}/", forbidden.port)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "blocked");
    assert_eq!(forbidden.accepted(), 0);
}

#[tokio::test]
async fn direct_requests_to_private_targets_are_blocked() {
    let forbidden = Forbidden::start().await;
    let fixture = Fixture::start().await;
    for target in forbidden.targets() {
        let err = fetch(fixture.config(), &target).await.unwrap_err();
        assert_eq!(err.code(), "blocked", "{target}: {err}");
    }
    // The default policy (public addresses only) refuses the fixture itself.
    let err = fetch(HttpFetchConfig::default(), &fixture.url("/text"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "blocked");
    assert!(
        err.to_string()
            .contains("127.0.0.1 is not a public address"),
        "{err}"
    );
    assert_eq!(forbidden.accepted(), 0);
    assert!(fixture.requests().is_empty());
}

/// The control for the two tests above: exempt the forbidden listener and the same redirect
/// reaches it, so a count of zero there means the guard held, not that the listener was deaf.
#[tokio::test]
async fn the_forbidden_listener_is_reachable_when_exempted() {
    let fixture = Fixture::start().await;
    let forbidden = Forbidden::start().await;
    let mut config = fixture.config();
    config.outbound.exempt.push(forbidden.addr);
    let target = format!("http://127.0.0.1:{}/", forbidden.port);
    let out = fetch(config, &fixture.redirect_to(302, &target))
        .await
        .unwrap();
    assert_eq!(out["text"], "internal secret");
    assert_eq!(forbidden.accepted(), 1);
}

#[tokio::test]
async fn refuses_urls_with_credentials() {
    let fixture = Fixture::start().await;
    for url in [
        format!("http://user:secret@{}/text", fixture.addr),
        format!("http://user@{}/text", fixture.addr),
        format!("http://:secret@{}/text", fixture.addr),
    ] {
        let err = fetch(fixture.config(), &url).await.unwrap_err();
        assert_eq!(err.code(), "blocked", "{url}: {err}");
        assert!(err.to_string().contains("credentials"), "{err}");
    }
    assert!(fixture.requests().is_empty());

    let target = format!("http://user:secret@{}/text", fixture.addr);
    let err = fetch(fixture.config(), &fixture.redirect_to(302, &target))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "blocked");
    assert_eq!(fixture.requests().len(), 1, "only the redirect itself");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let fixture = Fixture::start().await;
    let config = HttpFetchConfig {
        timeout: Duration::from_millis(300),
        ..fixture.config()
    };
    let started = Instant::now();
    let err = fetch(config, &fixture.url("/hang")).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.code(), "tool_failed");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
    assert_eq!(fixture.requests(), ["/hang"]);
}

#[tokio::test]
async fn rejects_malformed_arguments() {
    let tool = ToolRegistry::builtin(HttpFetchConfig::default())
        .get("http_fetch")
        .unwrap();
    for arguments in [
        json!({}),
        json!({ "url": 42 }),
        json!({ "url": "example.com/page" }),
        json!({ "url": "not a url" }),
        json!({ "url": "https://example.com", "method": "POST" }),
    ] {
        let err = tool.call(arguments.clone()).await.unwrap_err();
        assert_eq!(err.code(), "invalid_arguments", "{arguments}: {err}");
    }
}
