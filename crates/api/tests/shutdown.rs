//! SIGTERM while answers stream: open dashboard streams are told and end, the runs finish and
//! are stored and billed before the process exits.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Binary, count_in as count, parse_sse};
use futures_util::StreamExt;
use paas_testing::TestDatabase;
use serde_json::json;

#[tokio::test]
async fn sigterm_mid_stream_tells_the_streams_and_loses_nothing() {
    let db = TestDatabase::new();
    let mut server = Binary::start(&db, &[]).await;
    let token = server.signup("acme").await;
    let client = reqwest::Client::new();
    client
        .post(format!("{}/api/v1/agents", server.base))
        .bearer_auth(&token)
        .json(&json!({"name": "helper"}))
        .send()
        .await
        .unwrap();
    // Three answers of about 3 s each, streaming.
    let mut streams = Vec::new();
    for _ in 0..3 {
        let response = client
            .post(format!("{}/api/v1/chat/completions", server.base))
            .bearer_auth(&token)
            .json(&json!({"agent": "helper", "message": "[mock:delay_ms=100] [mock:chunks=30] go"}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        streams.push(response.bytes_stream());
    }
    // Let them start.
    for stream in &mut streams {
        stream.next().await.unwrap().unwrap();
    }
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
    let status = server
        .wait(Duration::from_secs(40))
        .await
        .expect("the server exits within its drain bound");
    assert!(status.success(), "{status:?}");
    // The runs went on to the end: stored as completed, with their answers and their usage.
    assert_eq!(
        count(&db, "SELECT count(*) FROM runs WHERE status = 'completed'"),
        3
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM messages WHERE role = 'assistant'"
        ),
        3
    );
    assert_eq!(count(&db, "SELECT count(*) FROM usage_records"), 3);
}
