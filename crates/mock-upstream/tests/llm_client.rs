//! Our own OpenAI client (`paas-llm`) accepts what the mock sends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use paas_llm::{ChatMessage, ChatRequest, FinishReason, HttpPolicy, ProviderKind, collect};
use paas_mock_upstream::MockConfig;
use paas_net::OutboundPolicy;
use url::Url;

use common::Mock;

#[tokio::test]
async fn the_openai_client_streams_the_text_and_the_usage() {
    let mock = Mock::start(MockConfig {
        chunks: 6,
        chunk_interval: Duration::from_millis(2),
        ..Mock::config()
    })
    .await;
    let base_url = Url::parse(&mock.url("/v1")).unwrap();
    // Loopback is not a public address: allow exactly this server.
    let outbound = OutboundPolicy {
        allow_private: false,
        exempt: vec![mock.addr],
    };
    let provider = paas_llm::build(
        ProviderKind::OpenAi,
        Some(base_url),
        None,
        &HttpPolicy::default(),
        &outbound,
        Duration::ZERO,
    )
    .unwrap();
    let request = ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![ChatMessage::system("be brief"), ChatMessage::user("hello")],
        tools: Vec::new(),
        temperature: Some(0.2),
        max_tokens: None,
    };
    let response = collect(provider.stream(request.clone()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(response.text, "tok0 tok1 tok2 tok3 tok4 tok5");
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert!(!response.usage.estimated, "{:?}", response.usage);
    assert_eq!(response.usage.completion_tokens, 6);
    assert!(response.usage.prompt_tokens > 0);

    // A max_tokens below the chunk count ends in `length`.
    let response = collect(
        provider
            .stream(ChatRequest {
                max_tokens: Some(3),
                ..request
            })
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.text, "tok0 tok1 tok2");
    assert_eq!(response.finish_reason, FinishReason::Length);
    assert_eq!(response.usage.completion_tokens, 3);
}
