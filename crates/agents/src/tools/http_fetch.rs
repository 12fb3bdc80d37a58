//! The `http_fetch` tool: a text-only GET of a public URL, safe against SSRF.
//!
//! Every hop, the first request and each redirect alike:
//!
//! 1. refuses credentials in the URL and any scheme but `http`/`https`;
//! 2. resolves and checks the host with [`paas_net::resolve_checked`] (every DNS answer must be
//!    allowed by the outbound policy; literal and obfuscated addresses are checked as written);
//! 3. connects through a one-off client pinned to the checked address (`resolve(host, addr)`),
//!    with no proxy and no automatic redirects, so DNS rebinding between the check and the
//!    connection cannot change the target. The client's resolver is the policy-checking
//!    [`paas_net::GuardedResolver`] as well, should any other name ever be resolved.
//!
//! Redirects (301, 302, 303, 307, 308) are followed by hand, at most `max_redirects` of them.
//! Only text is read (`text/*`, JSON, XML, XHTML, and an untyped body that is UTF-8), at most
//! `max_bytes` of it, within `timeout` for the whole fetch. HTML becomes readable text.

use std::net::SocketAddr;
use std::sync::Arc;

use paas_llm::ToolSpec;
use paas_net::{GuardedResolver, NetError};
use reqwest::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, LOCATION};
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::{Host, Url};

use super::{BoxFuture, HttpFetchConfig, Tool, ToolError, html, parse_arguments};

/// Longest URL accepted, in bytes.
const MAX_URL_LEN: usize = 4096;
const USER_AGENT: &str = concat!("AgentPaaS-http_fetch/", env!("CARGO_PKG_VERSION"));

/// The `http_fetch` tool.
#[derive(Clone, Debug)]
pub struct HttpFetch {
    config: HttpFetchConfig,
}

impl HttpFetch {
    pub fn new(config: HttpFetchConfig) -> Self {
        Self { config }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    url: String,
}

/// What the model gets back, in this field order.
#[derive(Serialize)]
struct Output {
    url: String,
    status: u16,
    content_type: Option<String>,
    truncated: bool,
    text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyKind {
    Html,
    Text,
    /// No content type: text if the bytes are UTF-8.
    Untyped,
}

/// Whether this is the URL the model asked for or a redirect target (for error wording).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hop {
    First,
    Redirect,
}

impl Tool for HttpFetch {
    fn name(&self) -> &'static str {
        "http_fetch"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().into(),
            description: format!(
                "Fetches a public web page or text document with HTTP GET and returns JSON with \
                 the final URL (after redirects), the status code, the content type, whether \
                 the text was truncated, and the text (HTML is reduced to readable text). Only \
                 text, HTML, JSON and XML are returned, at most {} KiB; private and internal \
                 addresses are refused.",
                self.config.max_bytes / 1024
            ),
            parameters: json!({
                "type": "object",
                "properties": {
                    "url": {
                        "type": "string",
                        "description": "An absolute http or https URL, e.g. \"https://example.com/page\".",
                        "maxLength": MAX_URL_LEN,
                    }
                },
                "required": ["url"],
                "additionalProperties": false,
            }),
        }
    }

    fn call(&self, arguments: serde_json::Value) -> BoxFuture<'_, Result<String, ToolError>> {
        Box::pin(async move {
            let Arguments { url } = parse_arguments(arguments)?;
            let url = parse_url(&url)?;
            let output = tokio::time::timeout(self.config.timeout, self.fetch(url))
                .await
                .map_err(|_| {
                    ToolError::Failed(format!(
                        "the request timed out after {:?}",
                        self.config.timeout
                    ))
                })??;
            serde_json::to_string(&output).map_err(|err| ToolError::Failed(err.to_string()))
        })
    }
}

fn parse_url(raw: &str) -> Result<Url, ToolError> {
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return Err(ToolError::InvalidArguments(format!(
            "the URL is {} bytes long; at most {MAX_URL_LEN} are allowed",
            raw.len()
        )));
    }
    Url::parse(raw).map_err(|err| {
        ToolError::InvalidArguments(format!(
            "'{raw}' is not a valid absolute URL ({err}); write it like \"https://example.com/page\""
        ))
    })
}

impl HttpFetch {
    async fn fetch(&self, mut url: Url) -> Result<Output, ToolError> {
        let mut hop = Hop::First;
        let mut redirects = 0;
        loop {
            let response = self.request(&url, hop).await?;
            let status = response.status().as_u16();
            let location = response.headers().get(LOCATION);
            let Some(location) = location.filter(|_| matches!(status, 301 | 302 | 303 | 307 | 308))
            else {
                return self.read(url, response).await;
            };
            if redirects >= self.config.max_redirects {
                return Err(ToolError::Failed(format!(
                    "too many redirects (more than {}); the last one, from {url}, was not followed",
                    self.config.max_redirects
                )));
            }
            let location = location.to_str().map_err(|_| {
                ToolError::Failed(format!("{url} redirected to a Location that is not text"))
            })?;
            url = url.join(location).map_err(|err| {
                ToolError::Failed(format!(
                    "{url} redirected to '{location}', which is not a valid URL: {err}"
                ))
            })?;
            redirects += 1;
            hop = Hop::Redirect;
        }
    }

    /// Checks `url` against the policy and sends a GET pinned to the checked address.
    async fn request(&self, url: &Url, hop: Hop) -> Result<reqwest::Response, ToolError> {
        let refused = |reason: String| match hop {
            Hop::First => ToolError::Blocked(reason),
            Hop::Redirect => {
                ToolError::Blocked(format!("the redirect to {url} was refused: {reason}"))
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused(
                "URLs with credentials (user:password@host) are not allowed".into(),
            ));
        }
        let addr = paas_net::resolve_checked(url, &self.config.outbound)
            .await
            .map_err(|err| match err {
                NetError::UnsupportedScheme | NetError::BlockedAddress(_) => {
                    refused(err.to_string())
                }
                NetError::InvalidUrl(_) if hop == Hop::First => {
                    ToolError::InvalidArguments(err.to_string())
                }
                NetError::InvalidUrl(_) | NetError::Resolution(_) => {
                    ToolError::Failed(format!("{url}: {err}"))
                }
            })?;
        tracing::debug!(%url, %addr, "http_fetch: checked, connecting");
        self.send_pinned(url, addr).await
    }

    /// Sends the GET to `addr` whatever `url`'s host resolves to now: a fresh client whose
    /// resolver answers the URL's host with `addr` only (literal-address URLs need no resolver).
    async fn send_pinned(
        &self,
        url: &Url,
        addr: SocketAddr,
    ) -> Result<reqwest::Response, ToolError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.config.timeout)
            .connect_timeout(self.config.timeout)
            .dns_resolver(Arc::new(GuardedResolver::new(self.config.outbound.clone())))
            .user_agent(USER_AGENT);
        if let Some(Host::Domain(host)) = url.host() {
            builder = builder.resolve(host, addr);
        }
        let client = builder
            .build()
            .map_err(|err| ToolError::Failed(format!("could not build the HTTP client: {err}")))?;
        client
            .get(url.clone())
            .header(
                ACCEPT,
                "text/html, text/plain;q=0.9, application/json;q=0.9, application/xml;q=0.8, \
                 text/*;q=0.7",
            )
            .header(ACCEPT_ENCODING, "identity")
            .send()
            .await
            .map_err(|err| ToolError::Failed(describe(url, &err)))
    }

    /// Reads a final response: text-like only, at most `max_bytes`.
    async fn read(&self, url: Url, mut response: reqwest::Response) -> Result<Output, ToolError> {
        let status = response.status().as_u16();
        let headers = response.headers();
        let content_type = headers
            .get(CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_owned())
            .filter(|value| !value.is_empty());
        let kind = match &content_type {
            Some(content_type) => classify(content_type)?,
            None => BodyKind::Untyped,
        };
        if let Some(encoding) = headers.get(CONTENT_ENCODING) {
            let encoding = String::from_utf8_lossy(encoding.as_bytes());
            if !encoding.trim().eq_ignore_ascii_case("identity") {
                return Err(ToolError::Failed(format!(
                    "the response is compressed ({encoding}), which this tool does not decode"
                )));
            }
        }

        let max = self.config.max_bytes;
        let mut body: Vec<u8> = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| ToolError::Failed(describe(&url, &err)))?
        {
            let room = max - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        drop(response); // closes the connection if the body was not read to the end

        if truncated {
            // Do not let the cut turn the last character into U+FFFD.
            if let Err(err) = std::str::from_utf8(&body)
                && err.error_len().is_none()
            {
                body.truncate(err.valid_up_to());
            }
        }
        if kind == BodyKind::Untyped && (std::str::from_utf8(&body).is_err() || body.contains(&0)) {
            return Err(ToolError::Failed(
                "not text: the response has no content type and is not UTF-8 text".into(),
            ));
        }
        let text = String::from_utf8_lossy(&body);
        let text = match kind {
            BodyKind::Html => html::to_text(&text),
            BodyKind::Text | BodyKind::Untyped => text.into_owned(),
        };
        Ok(Output {
            url: url.to_string(),
            status,
            content_type,
            truncated,
            text,
        })
    }
}

/// What a `Content-Type` says about the body; anything not text-like is refused.
fn classify(content_type: &str) -> Result<BodyKind, ToolError> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "text/html" | "application/xhtml+xml" => Ok(BodyKind::Html),
        "application/json" | "application/xml" => Ok(BodyKind::Text),
        // Structured-syntax suffixes (RFC 6839): application/ld+json, application/rss+xml…
        m if m.starts_with("text/") || m.ends_with("+json") || m.ends_with("+xml") => {
            Ok(BodyKind::Text)
        }
        _ => Err(ToolError::Failed(format!(
            "not text: the response is {content_type}; only text, HTML, JSON and XML are fetched"
        ))),
    }
}

/// A transport error for the model: what happened, with its causes, without the noise.
fn describe(url: &Url, err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return format!("{url}: the request timed out");
    }
    let what = if err.is_connect() {
        "could not connect"
    } else if err.is_body() || err.is_decode() {
        "the response body could not be read"
    } else {
        "the request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    if causes.is_empty() {
        format!("{url}: {what}")
    } else {
        format!("{url}: {what}: {}", causes.join(": "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_text_like_types_are_read() {
        for (content_type, kind) in [
            ("text/html; charset=utf-8", BodyKind::Html),
            ("TEXT/HTML", BodyKind::Html),
            ("application/xhtml+xml", BodyKind::Html),
            ("text/plain", BodyKind::Text),
            ("text/csv", BodyKind::Text),
            ("application/json; charset=utf-8", BodyKind::Text),
            ("application/xml", BodyKind::Text),
            ("application/ld+json", BodyKind::Text),
            ("application/rss+xml", BodyKind::Text),
        ] {
            assert_eq!(classify(content_type), Ok(kind), "{content_type}");
        }
        for content_type in [
            "image/png",
            "application/octet-stream",
            "application/pdf",
            "video/mp4",
            "application/zip",
            "",
        ] {
            let err = classify(content_type).unwrap_err();
            assert_eq!(err.code(), "tool_failed");
            assert!(err.to_string().contains("not text"), "{err}");
        }
    }

    /// The connection goes to the checked address, not wherever the name resolves now: here
    /// the name resolves nowhere (`.invalid` is reserved), yet the request reaches the fixture.
    #[tokio::test]
    async fn connections_are_pinned_to_the_checked_address() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0);
                head.extend_from_slice(&buf[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(head).unwrap()
        });
        let tool = HttpFetch::new(HttpFetchConfig {
            timeout: std::time::Duration::from_secs(2),
            ..HttpFetchConfig::default()
        });
        let url = Url::parse(&format!("http://pinned.invalid:{}/x", addr.port())).unwrap();
        let response = tool.send_pinned(&url, addr).await.unwrap();
        assert_eq!(response.status().as_u16(), 204);
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(
            head.contains(&format!("host: pinned.invalid:{}", addr.port())),
            "{head}"
        );
    }

    #[test]
    fn urls_must_be_absolute_and_bounded() {
        assert!(parse_url(" https://example.com/a ").is_ok());
        for bad in [
            "example.com",
            "/relative",
            "",
            "http://",
            "https://exa mple.com/",
        ] {
            let err = parse_url(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_arguments", "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(
            parse_url(&long)
                .unwrap_err()
                .to_string()
                .contains("at most")
        );
    }
}
