//! SIGTERM with 100 answers streaming and 20 OpenAI-compatible requests in flight: every open
//! dashboard stream is told and ends, every request is answered, and every run finishes and is
//! stored and billed before the process exits.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Binary, OPERATOR_TOKEN, count_in as count, parse_sse};
use futures_util::StreamExt;
use paas_testing::TestDatabase;
use serde_json::json;

#[tokio::test]
async fn sigterm_with_100_open_streams_tells_each_and_loses_nothing() {
    const STREAMS: usize = 100;
    const OPENAI_REQUESTS: usize = 20;
    let db = TestDatabase::new();
    let mut server = Binary::start(&db, &[("PAAS_OPERATOR_TOKEN", OPERATOR_TOKEN)]).await;
    let token = server.signup("acme").await;
    let client = reqwest::Client::new();
    // The free plan allows 5 runs at once: the operator lifts the limits this test would hit.
    let me: serde_json::Value = client
        .get(format!("{}/api/v1/me", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenant = me["tenant"]["id"].as_str().unwrap().to_owned();
    let lifted = client
        .put(format!(
            "{}/api/v1/admin/tenants/{tenant}/quota",
            server.base
        ))
        .bearer_auth(OPERATOR_TOKEN)
        .json(
            &json!({"max_concurrent_runs": 1000, "requests_per_minute": 100000,
                      "max_sessions_per_day": 100000, "max_tokens_per_month": 1000000000}),
        )
        .send()
        .await
        .unwrap();
    assert!(
        lifted.status().is_success(),
        "{}",
        lifted.text().await.unwrap()
    );
    client
        .post(format!("{}/api/v1/agents", server.base))
        .bearer_auth(&token)
        .json(&json!({"name": "helper"}))
        .send()
        .await
        .unwrap();
    // A hundred answers of about 3 s each, streaming.
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let response = client
            .post(format!("{}/api/v1/chat/completions", server.base))
            .bearer_auth(&token)
            .json(&json!({"agent": "helper", "message": "[mock:delay_ms=100] [mock:chunks=30] go"}))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
        streams.push(response.bytes_stream());
    }
    // Let them start.
    for stream in &mut streams {
        stream.next().await.unwrap().unwrap();
    }
    // And twenty OpenAI-compatible requests of about 1 s, whose run rows are written behind
    // their answers.
    let key = server.api_key(&token, &["chat"]).await;
    let mut completions = Vec::new();
    for _ in 0..OPENAI_REQUESTS {
        let request = client
            .post(format!("{}/v1/chat/completions", server.base))
            .bearer_auth(&key)
            .json(&json!({"model": "helper", "messages": [
                {"role": "user", "content": "[mock:delay_ms=100] [mock:chunks=10] go"}
            ]}))
            .send();
        completions.push(tokio::spawn(async move {
            let response = request.await.unwrap();
            response.status()
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    server.terminate();
    for mut stream in streams {
        let mut text = String::new();
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the stream ends promptly")
        {
            match chunk {
                Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => break,
            }
        }
        let events = parse_sse(&text);
        let last = events.last().unwrap();
        assert_eq!(last.event, "shutdown", "the last event says why: {text}");
        assert!(
            last.data["data"]["message"]
                .as_str()
                .unwrap()
                .contains("Last-Event-ID")
        );
    }
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "streams were told at once"
    );
    for completion in completions {
        assert!(
            completion.await.unwrap().is_success(),
            "requests in flight are answered"
        );
    }
    let status = server
        .wait(Duration::from_secs(40))
        .await
        .expect("the server exits within its drain bound");
    assert!(status.success(), "{status:?}");
    // The runs went on to the end: stored as completed, with their answers and their usage.
    let expected = i64::try_from(STREAMS).unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM runs WHERE source = 'chat' AND status = 'completed'"
        ),
        expected
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM messages WHERE role = 'assistant'"
        ),
        expected
    );
    // And so did the OpenAI-compatible ones, whose rows the server wrote before it exited.
    let openai = i64::try_from(OPENAI_REQUESTS).unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM runs WHERE source = 'openai' AND status = 'completed'"
        ),
        openai
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM usage_records"),
        expected + openai
    );
}
