//! Retries, timeouts, status mapping and the outbound guard, through the OpenAI client (the
//! policy is shared by every HTTP client).

use std::time::Duration;

use paas_llm::{
    HttpPolicy, LlmError, OpenAiConfig, OpenAiProvider, Provider, ProviderKind, build, collect,
};
use paas_net::OutboundPolicy;
use secrecy::SecretString;
use tokio::net::TcpListener;

use crate::fixture::{Fixture, Reply, fast_policy, request, timed};
use crate::openai::{HELLO, KEY, provider};

fn with_policy(fixture: &Fixture, http: HttpPolicy) -> OpenAiProvider {
    OpenAiProvider::new(OpenAiConfig {
        base_url: fixture.url("/v1"),
        api_key: Some(SecretString::from(KEY)),
        http,
        outbound: fixture.outbound(),
    })
    .unwrap()
}

const RATE_LIMITED: &str = r#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-abc on requests per min (RPM): Limit 3, Used 3, Requested 1.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;

const SERVER_ERROR: &str = r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#;

#[tokio::test]
async fn a_429_or_503_with_retry_after_is_waited_out_then_retried() {
    for (status, body) in [(429, RATE_LIMITED), (503, SERVER_ERROR)] {
        let fixture = Fixture::start(vec![
            Reply::status(status, body).with_header("retry-after", "1"),
            Reply::sse(HELLO),
        ])
        .await;
        let (result, elapsed) = timed(provider(&fixture).stream(request())).await;
        let response = collect(result.unwrap()).await.unwrap();
        assert_eq!(response.text, "Hello there!", "{status}");
        assert_eq!(fixture.count(), 2, "{status}");
        assert!(
            elapsed >= Duration::from_millis(950),
            "{status}: Retry-After was not honoured: {elapsed:?}"
        );
    }
}

#[tokio::test]
async fn a_retry_after_longer_than_a_call_may_wait_fails_at_once() {
    let fixture = Fixture::start(vec![
        Reply::status(429, RATE_LIMITED).with_header("retry-after", "120"),
        Reply::sse(HELLO),
    ])
    .await;
    let (result, elapsed) = timed(provider(&fixture).stream(request())).await;
    assert_eq!(
        result.err(),
        Some(LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(120))
        })
    );
    assert_eq!(fixture.count(), 1);
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
}

#[tokio::test]
async fn a_429_that_persists_is_rate_limited_after_the_retries() {
    let fixture = Fixture::start(vec![
        Reply::status(429, RATE_LIMITED).with_header("retry-after", "0"),
    ])
    .await;
    let err = provider(&fixture).stream(request()).await.err();
    assert_eq!(
        err,
        Some(LlmError::RateLimited {
            retry_after: Some(Duration::ZERO)
        })
    );
    assert_eq!(fixture.count(), 3);
}

#[tokio::test]
async fn two_500s_then_success() {
    let fixture = Fixture::start(vec![
        Reply::status(500, SERVER_ERROR),
        Reply::status(502, "<html><body>502 Bad Gateway</body></html>"),
        Reply::sse(HELLO),
    ])
    .await;
    let response = collect(provider(&fixture).stream(request()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(response.text, "Hello there!");
    assert_eq!(fixture.count(), 3);
}

#[tokio::test]
async fn a_provider_that_keeps_failing_is_unavailable_after_max_retries_plus_one_attempts() {
    let fixture = Fixture::start(vec![Reply::status(500, SERVER_ERROR)]).await;
    let err = provider(&fixture).stream(request()).await.err().unwrap();
    assert!(
        matches!(&err, LlmError::Unavailable(m) if m.contains("HTTP 500")),
        "{err:?}"
    );
    assert_eq!(fixture.count(), 3);

    let once = Fixture::start(vec![Reply::status(503, SERVER_ERROR)]).await;
    let no_retries = HttpPolicy {
        max_retries: 0,
        ..fast_policy()
    };
    let err = with_policy(&once, no_retries)
        .stream(request())
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), "upstream_unavailable");
    assert_eq!(once.count(), 1);
}

#[tokio::test]
async fn a_refused_key_is_unauthorized_and_not_retried() {
    let fixture = Fixture::start(vec![Reply::status(
        401,
        &format!(
            r#"{{"error":{{"message":"Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}}}"#,
            &KEY[..12]
        ),
    )])
    .await;
    let err = provider(&fixture).stream(request()).await.err().unwrap();
    assert_eq!(err.code(), "upstream_unauthorized");
    assert!(!format!("{err:?}").contains(&KEY[..12]), "{err:?}");
    assert_eq!(fixture.count(), 1);
}

#[tokio::test]
async fn a_rejected_request_carries_the_providers_message_and_is_not_retried() {
    let fixture = Fixture::start(vec![Reply::status(
        400,
        r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130412 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
    )])
    .await;
    let err = provider(&fixture).stream(request()).await.err().unwrap();
    assert_eq!(
        err,
        LlmError::Rejected(
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130412 tokens. Please reduce the length of the messages.".into()
        )
    );
    assert!(err.client_message().contains("maximum context length"));
    assert_eq!(fixture.count(), 1);

    let long = format!(
        r#"{{"error":{{"message":"{}","type":"invalid_request_error"}}}}"#,
        "x".repeat(2000)
    );
    let fixture = Fixture::start(vec![Reply::status(404, &long)]).await;
    let Some(LlmError::Rejected(message)) = provider(&fixture).stream(request()).await.err() else {
        panic!("a 404 is a rejection");
    };
    assert_eq!(
        message.chars().count(),
        301,
        "truncated to 300 characters and an ellipsis"
    );
}

#[tokio::test]
async fn no_headers_within_the_first_byte_timeout_is_a_timeout_retried_like_a_connection_failure() {
    let fixture = Fixture::start(vec![Reply::Silent]).await;
    let http = HttpPolicy {
        max_retries: 1,
        ..fast_policy()
    };
    let (result, elapsed) = timed(with_policy(&fixture, http).stream(request())).await;
    let err = result.err().unwrap();
    assert!(matches!(err, LlmError::Timeout(_)), "{err:?}");
    assert_eq!(fixture.count(), 2);
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    // Take a free port, then close it: connecting is refused.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let provider = OpenAiProvider::new(OpenAiConfig {
        base_url: format!("http://{addr}/v1").parse().unwrap(),
        api_key: None,
        http: HttpPolicy {
            max_retries: 1,
            ..fast_policy()
        },
        outbound: OutboundPolicy {
            allow_private: false,
            exempt: vec![addr],
        },
    })
    .unwrap();
    let err = provider.stream(request()).await.err().unwrap();
    assert_eq!(err.code(), "upstream_unavailable", "{err:?}");
}

#[tokio::test]
async fn without_the_exemption_the_fixture_is_refused_before_any_request() {
    let fixture = Fixture::start(vec![Reply::sse(HELLO)]).await;
    let config = |outbound: OutboundPolicy| OpenAiConfig {
        base_url: fixture.url("/v1"),
        api_key: Some(SecretString::from(KEY)),
        http: fast_policy(),
        outbound,
    };
    let err = OpenAiProvider::new(config(OutboundPolicy::public_only())).unwrap_err();
    assert_eq!(err.code(), "upstream_rejected");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    // An exemption for another port does not open this one.
    let mut other = fixture.addr;
    other.set_port(fixture.addr.port().wrapping_add(1));
    let err = OpenAiProvider::new(config(OutboundPolicy {
        allow_private: false,
        exempt: vec![other],
    }))
    .unwrap_err();
    assert_eq!(err.code(), "upstream_rejected");
    // The factory applies the same check.
    let err = build(
        ProviderKind::OpenAi,
        Some(fixture.url("/v1")),
        None,
        &fast_policy(),
        &OutboundPolicy::public_only(),
        Duration::ZERO,
    )
    .unwrap_err();
    assert_eq!(err.code(), "upstream_rejected");
    assert_eq!(fixture.count(), 0);
}

#[tokio::test]
async fn a_name_resolving_to_a_private_address_is_refused_at_connect_time_without_retries() {
    let fixture = Fixture::start(vec![Reply::sse(HELLO)]).await;
    let provider = OpenAiProvider::new(OpenAiConfig {
        base_url: format!("http://localhost:{}/v1", fixture.addr.port())
            .parse()
            .unwrap(),
        api_key: None,
        http: HttpPolicy {
            // A retried refusal would take at least this long.
            backoff_base: Duration::from_secs(5),
            backoff_cap: Duration::from_secs(5),
            ..fast_policy()
        },
        outbound: OutboundPolicy::public_only(),
    })
    .unwrap();
    let (result, elapsed) = timed(provider.stream(request())).await;
    let err = result.err().unwrap();
    assert_eq!(err.code(), "upstream_rejected", "{err:?}");
    assert!(err.to_string().contains("not a public address"), "{err}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(fixture.count(), 0);
}

#[tokio::test]
async fn a_json_document_instead_of_a_stream_is_a_bad_response() {
    let fixture = Fixture::start(vec![Reply::status(
        200,
        r#"{"error":{"message":"streaming is not supported for this model","type":"invalid_request_error"}}"#,
    )])
    .await;
    let err = provider(&fixture).stream(request()).await.err().unwrap();
    assert!(
        matches!(&err, LlmError::BadResponse(m) if m.contains("streaming is not supported")),
        "{err:?}"
    );
    assert_eq!(fixture.count(), 1);
}

#[tokio::test]
async fn the_factory_builds_working_clients() {
    let fixture = Fixture::start(vec![Reply::sse(HELLO)]).await;
    let provider = build(
        ProviderKind::OpenAi,
        Some(fixture.url("/v1")),
        Some(SecretString::from(KEY)),
        &fast_policy(),
        &fixture.outbound(),
        Duration::ZERO,
    )
    .unwrap();
    assert_eq!(provider.kind(), "openai");
    let response = collect(provider.stream(request()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(response.text, "Hello there!");
}
