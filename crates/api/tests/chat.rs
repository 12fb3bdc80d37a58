//! Chat over Server-Sent Events with the mock model: the event protocol, tool steps, history,
//! runs that survive dropped connections, resumption with Last-Event-ID (on this replica and on
//! another), cancellation, guardrails, failures, and who may do what.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Session, TestApp, answer, expect_error, expect_status, parse_sse, read_events};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn setup() -> (TestApp, Session) {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    app.agent(&admin, json!({"name": "helper", "tools": ["calculator", "current_time"], "system_prompt": "Be brief."})).await;
    (app, admin)
}

#[tokio::test]
async fn a_chat_streams_numbered_events_and_stores_the_turn() {
    let (app, admin) = setup().await;
    let (headers, events) = app
        .chat(
            &admin.access_token,
            json!({"agent": "helper", "message": "what is 12 * (3 + 4)?"}),
        )
        .await;
    let run_id = headers["x-run-id"].to_str().unwrap().to_owned();
    let session_id = headers["x-session-id"].to_str().unwrap().to_owned();
    assert_eq!(headers["content-type"], "text/event-stream");

    let ids: Vec<u64> = events.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(
        ids,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "ids increase by one"
    );
    for event in &events {
        assert_eq!(
            event.data["event"],
            event.event.as_str(),
            "data carries the event name"
        );
    }
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.first(), Some(&"thought"));
    assert!(
        names.contains(&"tool_call") && names.contains(&"tool_result") && names.contains(&"usage")
    );
    let call = events.iter().find(|e| e.event == "tool_call").unwrap();
    assert_eq!(call.data["data"]["name"], "calculator");
    let result = events.iter().find(|e| e.event == "tool_result").unwrap();
    assert_eq!(result.data["data"]["content"], "84");
    assert_eq!(answer(&events), "The calculator tool returned: 84");
    let done = events.last().unwrap();
    assert_eq!(done.event, "done");
    assert_eq!(done.data["data"]["status"], "completed");
    assert_eq!(done.data["data"]["run_id"], run_id.as_str());
    assert_eq!(done.data["data"]["session_id"], session_id.as_str());
    assert_eq!(done.data["data"]["stored"], true);

    // Stored by the time `done` is seen.
    let messages = app
        .get(
            &format!("/api/v1/sessions/{session_id}/messages"),
            &admin.access_token,
        )
        .send()
        .await
        .unwrap();
    let messages = expect_status(messages, StatusCode::OK).await;
    let roles: Vec<&str> = messages["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    assert_eq!(messages["items"][1]["tool_calls"][0]["name"], "calculator");
    assert!(
        messages["items"][1]["reasoning"]
            .as_str()
            .unwrap()
            .contains("calculator")
    );
    assert_eq!(messages["items"][2]["tool_name"], "calculator");
    assert!(messages["items"][3]["completion_tokens"].as_u64().unwrap() > 0);

    let run = expect_status(
        app.get(&format!("/api/v1/runs/{run_id}"), &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["steps"], 2);
    assert_eq!(run["usage"], done.data["data"]["usage"]);
    assert!(run["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(run["source"], "chat");
    assert_eq!(run["provider"], "mock");
}

#[tokio::test]
async fn a_session_keeps_its_history_and_title() {
    let (app, admin) = setup().await;
    let (headers, _) = app
        .chat(
            &admin.access_token,
            json!({"agent_type": "helper", "message": "Plan my trip to Rome\nplease"}),
        )
        .await;
    let session_id = headers["x-session-id"].to_str().unwrap().to_owned();
    let (headers, events) = app
        .chat(
            &admin.access_token,
            json!({"session_id": session_id, "message": "[mock:reply=second answer]"}),
        )
        .await;
    assert_eq!(headers["x-session-id"], session_id.as_str());
    assert_eq!(answer(&events), "second answer");
    let session = expect_status(
        app.get(
            &format!("/api/v1/sessions/{session_id}"),
            &admin.access_token,
        )
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(session["title"], "Plan my trip to Rome");
    let messages = expect_status(
        app.get(
            &format!("/api/v1/sessions/{session_id}/messages"),
            &admin.access_token,
        )
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(messages["items"].as_array().unwrap().len(), 4);
    // The second turn saw the first: its prompt was larger than a fresh one.
    let runs = app.count(&format!(
        "SELECT count(*) FROM runs WHERE session_id = '{session_id}'"
    ));
    assert_eq!(runs, 2);
    let prompts: Vec<i64> = (0..2)
        .map(|i| app.count(&format!("SELECT prompt_tokens FROM runs WHERE session_id = '{session_id}' ORDER BY started_at OFFSET {i} LIMIT 1")))
        .collect();
    assert!(prompts[1] > prompts[0], "{prompts:?}");
}

#[tokio::test]
async fn the_callers_own_agent_can_be_named_by_its_id() {
    let (app, admin) = setup().await;
    // A second agent, so the id has to pick the right one.
    app.agent(&admin, json!({"name": "other"})).await;
    let agents = expect_status(
        app.get("/api/v1/agents", &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let helper = agents["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "helper")
        .unwrap();
    let id = helper["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let (headers, events) = app
        .chat(
            &admin.access_token,
            json!({"agent": id, "message": "[mock:reply=by id]"}),
        )
        .await;
    assert_eq!(answer(&events), "by id");
    let done = events.last().unwrap();
    assert_eq!(done.event, "done");
    assert_eq!(done.data["data"]["status"], "completed");
    let run = app
        .finished_run(&admin.access_token, headers["x-run-id"].to_str().unwrap())
        .await;
    assert_eq!(run["agent_id"], id.as_str());
    let session_id = headers["x-session-id"].to_str().unwrap();
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM chat_sessions WHERE id = '{session_id}' AND agent_id = '{id}'"
        )),
        1
    );
}

#[tokio::test]
async fn bad_chat_requests_are_refused_before_anything_runs() {
    let (app, admin) = setup().await;
    let other = app.signup("globex").await.admin;
    app.agent(&other, json!({"name": "theirs"})).await;
    let (headers, _) = app
        .chat(
            &other.access_token,
            json!({"agent": "theirs", "message": "hi"}),
        )
        .await;
    let their_session = headers["x-session-id"].to_str().unwrap().to_owned();
    let before = app.count("SELECT count(*) FROM runs");
    let token = &admin.access_token;
    for (body, status, code) in [
        (
            json!({"agent": "helper", "message": ""}),
            StatusCode::BAD_REQUEST,
            "empty_message",
        ),
        (
            json!({"agent": "helper", "message": "   \n "}),
            StatusCode::BAD_REQUEST,
            "empty_message",
        ),
        (
            json!({"agent": "helper", "message": "x".repeat(32_001)}),
            StatusCode::BAD_REQUEST,
            "message_too_long",
        ),
        (
            json!({"message": "hi"}),
            StatusCode::BAD_REQUEST,
            "invalid_agent",
        ),
        (
            json!({"agent": "nobody", "message": "hi"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"agent": "theirs", "message": "hi"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"agent": "helper", "message": "hi", "session_id": their_session}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"agent": "helper", "message": "hi", "max_tokens": 5}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            json!({"agent": "helper", "message": 42}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
    ] {
        let response = app
            .post("/api/v1/chat/completions", token, body.clone())
            .send()
            .await
            .unwrap();
        expect_error(response, status, code).await;
    }
    // A session with another agent.
    app.agent(&admin, json!({"name": "second"})).await;
    let (headers, _) = app
        .chat(token, json!({"agent": "helper", "message": "hi"}))
        .await;
    let session = headers["x-session-id"].to_str().unwrap().to_owned();
    let response = app
        .post(
            "/api/v1/chat/completions",
            token,
            json!({"agent": "second", "message": "hi", "session_id": session}),
        )
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "session_agent_mismatch").await;
    assert_eq!(app.count("SELECT count(*) FROM runs"), before + 1);
}

#[tokio::test]
async fn only_chatting_roles_and_chat_keys_may_chat() {
    let (app, admin) = setup().await;
    let viewer = app.with_user(&admin, "viewer").await;
    let user = app.with_user(&admin, "user").await;
    let response = app
        .post(
            "/api/v1/chat/completions",
            &viewer.access_token,
            json!({"agent": "helper", "message": "hi"}),
        )
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let (_, read_key) = app
        .with_api_key(&user, &["agents:read", "sessions:read"])
        .await;
    let response = app
        .post(
            "/api/v1/chat/completions",
            &read_key,
            json!({"agent": "helper", "message": "hi"}),
        )
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::FORBIDDEN, "insufficient_scope").await;
    let (_, chat_key) = app.with_api_key(&user, &["chat"]).await;
    let (_, events) = app
        .chat(&chat_key, json!({"agent": "helper", "message": "hi"}))
        .await;
    assert_eq!(events.last().unwrap().data["data"]["status"], "completed");
    assert_eq!(
        app.count("SELECT count(*) FROM runs WHERE api_key_id IS NOT NULL"),
        1
    );
}

#[tokio::test]
async fn a_dropped_connection_resumes_with_last_event_id_and_loses_nothing() {
    let (app, admin) = setup().await;
    let (response, run_id) = app
        .start_chat(
            &admin.access_token,
            json!({"agent": "helper", "message": "[mock:delay_ms=15][mock:chunks=60]"}),
        )
        .await;
    let first = read_events(response, 12).await; // then the connection drops
    assert_eq!(first.len(), 12);
    let resumed = app
        .get(
            &format!("/api/v1/runs/{run_id}/events"),
            &admin.access_token,
        )
        .header("Last-Event-ID", "12")
        .send()
        .await
        .unwrap();
    let rest = parse_sse(&expect_status_text(resumed).await);
    assert_eq!(
        rest.first().unwrap().id,
        Some(13),
        "exactly the missed events, none twice"
    );
    let all: Vec<_> = first.iter().chain(rest.iter()).cloned().collect();
    let ids: Vec<u64> = all.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(ids, (1..=all.len() as u64).collect::<Vec<_>>());
    let text = answer(&all);
    assert_eq!(
        text,
        (1..=60)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert_eq!(all.last().unwrap().event, "done");

    // Replaying everything (no Last-Event-ID) after the end gives the same events.
    let replay = app
        .get(
            &format!("/api/v1/runs/{run_id}/events"),
            &admin.access_token,
        )
        .send()
        .await
        .unwrap();
    let replay = parse_sse(&expect_status_text(replay).await);
    assert_eq!(replay, all);
    let bad = app
        .get(
            &format!("/api/v1/runs/{run_id}/events"),
            &admin.access_token,
        )
        .header("Last-Event-ID", "soon")
        .send()
        .await
        .unwrap();
    expect_error(bad, StatusCode::BAD_REQUEST, "invalid_last_event_id").await;
}

async fn expect_status_text(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

#[tokio::test]
async fn a_run_whose_client_left_finishes_is_stored_and_billed() {
    let (app, admin) = setup().await;
    let (response, run_id) = app
        .start_chat(
            &admin.access_token,
            json!({"agent": "helper", "message": "[mock:delay_ms=10][mock:chunks=40]"}),
        )
        .await;
    let session_id = response.headers()["x-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    drop(read_events(response, 2).await);
    let run = app.finished_run(&admin.access_token, &run_id).await;
    assert_eq!(run["status"], "completed");
    assert!(run["usage"]["completion_tokens"].as_u64().unwrap() >= 40);
    let stored = app.count(&format!(
        "SELECT count(*) FROM messages WHERE session_id = '{session_id}' AND role = 'assistant' AND content LIKE '%word40'"
    ));
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn another_replica_serves_the_missed_events_from_redis_and_can_cancel() {
    let (app, admin) = setup().await;
    let replica = TestApp::builder().replica_of(&app).start().await;
    let (response, run_id) = app
        .start_chat(
            &admin.access_token,
            json!({"agent": "helper", "message": "[mock:delay_ms=10][mock:chunks=30]"}),
        )
        .await;
    let first = read_events(response, 5).await;
    let resumed = replica
        .get(
            &format!("/api/v1/runs/{run_id}/events"),
            &admin.access_token,
        )
        .header("Last-Event-ID", "5")
        .send()
        .await
        .unwrap();
    let rest = parse_sse(&expect_status_text(resumed).await);
    assert_eq!(rest.first().unwrap().id, Some(6));
    let all: Vec<_> = first.into_iter().chain(rest).collect();
    assert_eq!(
        answer(&all),
        (1..=30)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert_eq!(all.last().unwrap().event, "done");

    // Cancel through the other replica: the owner hears it over Redis.
    let (response, run_id) = app
        .start_chat(
            &admin.access_token,
            json!({"agent": "helper", "message": "[mock:delay_ms=20][mock:chunks=2000]"}),
        )
        .await;
    drop(read_events(response, 3).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cancel = replica
        .request(Method::POST, &format!("/api/v1/runs/{run_id}/cancel"))
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::ACCEPTED);
    let run = app.finished_run(&admin.access_token, &run_id).await;
    assert_eq!(run["status"], "cancelled");
}

#[tokio::test]
async fn cancelling_stops_a_run_and_keeps_what_it_wrote() {
    let (app, admin) = setup().await;
    let (response, run_id) = app
        .start_chat(
            &admin.access_token,
            json!({"agent": "helper", "message": "[mock:delay_ms=20][mock:chunks=2000]"}),
        )
        .await;
    let cancel_url = format!("/api/v1/runs/{run_id}/cancel");
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.request(Method::POST, &cancel_url)
            .bearer_auth(&admin.access_token)
            .send()
            .await
            .unwrap()
    };
    let (events, cancel) = tokio::join!(
        async { parse_sse(&response.text().await.unwrap()) },
        canceller
    );
    assert_eq!(cancel.status(), StatusCode::ACCEPTED);
    let done = events.last().unwrap();
    assert_eq!(done.event, "done");
    assert_eq!(done.data["data"]["status"], "cancelled");
    assert!(!answer(&events).is_empty());
    let run = app.finished_run(&admin.access_token, &run_id).await;
    assert_eq!(run["status"], "cancelled");
    let again = app
        .request(Method::POST, &cancel_url)
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap();
    expect_error(again, StatusCode::CONFLICT, "run_finished").await;
}

#[tokio::test]
async fn guardrails_end_runs_with_a_limit_event() {
    let (app, admin) = setup().await;
    app.agent(
        &admin,
        json!({"name": "tight", "tools": ["calculator"], "max_steps": 2, "max_tokens": 400}),
    )
    .await;
    let looping = r#"[mock:tool=calculator {"expression": "1+1"}][mock:loop]"#;
    let (_, events) = app
        .chat(
            &admin.access_token,
            json!({"agent": "helper", "message": looping}),
        )
        .await;
    let limit = events.iter().find(|e| e.event == "limit").unwrap();
    assert_eq!(limit.data["data"]["reason"], "repeated_tool_call");
    assert_eq!(events.last().unwrap().data["data"]["status"], "limited");
    let (_, events) = app
        .chat(
            &admin.access_token,
            json!({"agent": "tight", "message": looping}),
        )
        .await;
    let limit = events.iter().find(|e| e.event == "limit").unwrap();
    assert_eq!(limit.data["data"]["reason"], "max_steps");
    let (_, events) = app
        .chat(
            &admin.access_token,
            json!({"agent": "tight", "message": "[mock:chunks=2000]"}),
        )
        .await;
    let limit = events.iter().find(|e| e.event == "limit").unwrap();
    assert_eq!(limit.data["data"]["reason"], "max_tokens");
    assert!(
        limit.data["data"]["message"]
            .as_str()
            .unwrap()
            .contains("400")
    );
}

#[tokio::test]
async fn provider_failures_are_error_events_and_the_partial_answer_is_kept() {
    let (app, admin) = setup().await;
    let (headers, events) = app
        .chat(
            &admin.access_token,
            json!({"agent": "helper", "message": "[mock:error=rate_limited]"}),
        )
        .await;
    let error = events.iter().find(|e| e.event == "error").unwrap();
    assert_eq!(error.data["data"]["code"], "upstream_rate_limited");
    assert_eq!(events.last().unwrap().data["data"]["status"], "failed");
    let run_id = headers["x-run-id"].to_str().unwrap();
    let run = expect_status(
        app.get(&format!("/api/v1/runs/{run_id}"), &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(run["error_code"], "upstream_rate_limited");
    assert_eq!(
        run["usage"]["total_tokens"], 0,
        "nothing was sent, nothing is billed"
    );

    let (headers, events) = app
        .chat(
            &admin.access_token,
            json!({"agent": "helper", "message": "[mock:chunks=40][mock:fail_after=20]"}),
        )
        .await;
    let error = events.iter().find(|e| e.event == "error").unwrap();
    assert_eq!(error.data["data"]["code"], "upstream_bad_response");
    let partial = answer(&events);
    assert!(!partial.is_empty());
    let session = headers["x-session-id"].to_str().unwrap();
    let stored = app.count(&format!(
        "SELECT count(*) FROM messages WHERE session_id = '{session}' AND role = 'assistant' AND content = '{partial}'"
    ));
    assert_eq!(stored, 1, "the partial answer is stored");
    let run = app
        .finished_run(&admin.access_token, headers["x-run-id"].to_str().unwrap())
        .await;
    assert_eq!(run["usage"]["estimated"], true);
    assert!(run["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn runs_are_private_to_their_user_and_tenant() {
    let (app, admin) = setup().await;
    let user = app.with_user(&admin, "user").await;
    let other = app.signup("globex").await.admin;
    let (headers, _) = app
        .chat(
            &user.access_token,
            json!({"agent": "helper", "message": "hi"}),
        )
        .await;
    let run_id = headers["x-run-id"].to_str().unwrap().to_owned();
    let someone = app.with_user(&admin, "user").await;
    for (token, status) in [
        (&someone.access_token, StatusCode::NOT_FOUND),
        (&other.access_token, StatusCode::NOT_FOUND),
    ] {
        for path in [
            format!("/api/v1/runs/{run_id}"),
            format!("/api/v1/runs/{run_id}/events"),
        ] {
            expect_error(
                app.get(&path, token).send().await.unwrap(),
                status,
                "not_found",
            )
            .await;
        }
        let cancel = app
            .request(Method::POST, &format!("/api/v1/runs/{run_id}/cancel"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        expect_error(cancel, status, "not_found").await;
    }
    // The tenant's admin may see its status and usage, but not the conversation in its events.
    expect_status(
        app.get(&format!("/api/v1/runs/{run_id}"), &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let events = app
        .get(
            &format!("/api/v1/runs/{run_id}/events"),
            &admin.access_token,
        )
        .send()
        .await
        .unwrap();
    expect_error(events, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn sessions_list_search_rename_export_and_delete() {
    let (app, admin) = setup().await;
    let token = &admin.access_token;
    let mut ids = Vec::new();
    for message in ["Rome itinerary", "Paris food", "rome budget"] {
        let (headers, _) = app
            .chat(token, json!({"agent": "helper", "message": message}))
            .await;
        ids.push(headers["x-session-id"].to_str().unwrap().to_owned());
    }
    let list = expect_status(
        app.get("/api/v1/sessions", token).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let listed: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()],
        "newest first"
    );
    let found = expect_status(
        app.get("/api/v1/sessions?q=ROME", token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(found["items"].as_array().unwrap().len(), 2);
    let literal = expect_status(
        app.get("/api/v1/sessions?q=%25", token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        literal["items"].as_array().unwrap().len(),
        0,
        "% is matched literally"
    );
    let paged = expect_status(
        app.get("/api/v1/sessions?limit=1&offset=1", token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(paged["items"][0]["id"], ids[1].as_str());

    let renamed = app
        .patch(
            &format!("/api/v1/sessions/{}", ids[0]),
            token,
            json!({"title": "Roma"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_status(renamed, StatusCode::OK).await["title"],
        "Roma"
    );
    let bad = app
        .patch(
            &format!("/api/v1/sessions/{}", ids[0]),
            token,
            json!({"title": ""}),
        )
        .send()
        .await
        .unwrap();
    expect_error(bad, StatusCode::BAD_REQUEST, "invalid_title").await;

    let json_export = app
        .get(
            &format!("/api/v1/sessions/{}/export?format=json", ids[0]),
            token,
        )
        .send()
        .await
        .unwrap();
    assert!(
        json_export.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".json")
    );
    let json_export = expect_status(json_export, StatusCode::OK).await;
    assert_eq!(json_export["session"]["title"], "Roma");
    assert_eq!(json_export["messages"].as_array().unwrap().len(), 2);
    let md = app
        .get(
            &format!("/api/v1/sessions/{}/export?format=markdown", ids[0]),
            token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(md.status(), StatusCode::OK);
    let md = md.text().await.unwrap();
    assert!(
        md.starts_with("# Roma") && md.contains("Rome itinerary") && md.contains("### Assistant")
    );
    let bad = app
        .get(
            &format!("/api/v1/sessions/{}/export?format=pdf", ids[0]),
            token,
        )
        .send()
        .await
        .unwrap();
    expect_error(bad, StatusCode::BAD_REQUEST, "invalid_format").await;

    let created = app
        .post(
            "/api/v1/sessions",
            token,
            json!({"agent": "helper", "title": "Empty"}),
        )
        .send()
        .await
        .unwrap();
    let created = expect_status(created, StatusCode::CREATED).await;
    assert_eq!(created["title"], "Empty");

    let deleted = app
        .delete(&format!("/api/v1/sessions/{}", ids[0]), token)
        .send()
        .await
        .unwrap();
    expect_status(deleted, StatusCode::NO_CONTENT).await;
    expect_error(
        app.get(&format!("/api/v1/sessions/{}", ids[0]), token)
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM messages WHERE session_id = '{}'",
            ids[0]
        )),
        0
    );
    assert_eq!(
        app.count("SELECT count(*) FROM runs"),
        3,
        "runs stay for usage"
    );
}

#[tokio::test]
async fn sessions_are_private_to_their_user_and_tenant() {
    let (app, admin) = setup().await;
    let (headers, _) = app
        .chat(
            &admin.access_token,
            json!({"agent": "helper", "message": "secret plans"}),
        )
        .await;
    let session = headers["x-session-id"].to_str().unwrap().to_owned();
    let colleague = app.with_user(&admin, "user").await;
    let outsider = app.signup("globex").await.admin;
    for token in [&colleague.access_token, &outsider.access_token] {
        for path in [
            format!("/api/v1/sessions/{session}"),
            format!("/api/v1/sessions/{session}/messages"),
            format!("/api/v1/sessions/{session}/export"),
        ] {
            expect_error(
                app.get(&path, token).send().await.unwrap(),
                StatusCode::NOT_FOUND,
                "not_found",
            )
            .await;
        }
        let rename = app
            .patch(
                &format!("/api/v1/sessions/{session}"),
                token,
                json!({"title": "mine"}),
            )
            .send()
            .await
            .unwrap();
        expect_error(rename, StatusCode::NOT_FOUND, "not_found").await;
        expect_error(
            app.delete(&format!("/api/v1/sessions/{session}"), token)
                .send()
                .await
                .unwrap(),
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        let list = expect_status(
            app.get("/api/v1/sessions", token).send().await.unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(list["items"], json!([]));
    }
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM chat_sessions WHERE id = '{session}' AND title = 'secret plans'"
        )),
        1
    );
}

#[tokio::test]
async fn http_fetch_refuses_internal_targets() {
    let (app, admin) = setup().await;
    app.agent(&admin, json!({"name": "browser", "tools": ["http_fetch"]}))
        .await;
    for target in [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:5432/",
        "http://[::1]/",
        "http://2130706433/",
        "file:///etc/passwd",
    ] {
        let (_, events) = app.chat(&admin.access_token, json!({"agent": "browser", "message": format!("[mock:tool=http_fetch {{\"url\": \"{target}\"}}]")})).await;
        let result = events.iter().find(|e| e.event == "tool_result").unwrap();
        assert_eq!(result.data["data"]["is_error"], true, "{target}");
        assert!(
            result.data["data"]["content"]
                .as_str()
                .unwrap()
                .contains("blocked"),
            "{target}: {}",
            result.data
        );
    }
}

#[tokio::test]
async fn deleting_the_session_mid_run_still_records_the_run() {
    let (app, admin) = setup().await;
    let (response, run_id) = app
        .start_chat(
            &admin.access_token,
            json!({"agent": "helper", "message": "[mock:delay_ms=10][mock:chunks=50]"}),
        )
        .await;
    let session_id = response.headers()["x-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    drop(read_events(response, 2).await);
    let deleted = app
        .delete(
            &format!("/api/v1/sessions/{session_id}"),
            &admin.access_token,
        )
        .send()
        .await
        .unwrap();
    expect_status(deleted, StatusCode::NO_CONTENT).await;
    let run = app.finished_run(&admin.access_token, &run_id).await;
    assert_eq!(run["status"], "completed", "the run is not left running");
    assert!(
        run["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "and its usage is kept"
    );
    assert_eq!(run["session_id"], serde_json::Value::Null);
    assert_eq!(app.count("SELECT count(*) FROM messages"), 0);
}

#[tokio::test]
async fn a_runs_event_stream_expires_even_if_the_run_never_finishes() {
    use fred::interfaces::KeysInterface;
    let (app, admin) = setup().await;
    let (response, run_id) = app
        .start_chat(
            &admin.access_token,
            json!({"agent": "helper", "message": "[mock:delay_ms=20][mock:chunks=200]"}),
        )
        .await;
    drop(read_events(response, 5).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let key = app.state.redis.key(&format!("run:{run_id}:events"));
    let ttl: i64 = app.state.redis.client().ttl(&key).await.unwrap();
    assert!(
        ttl > 3600,
        "a running run's stream already expires (in {ttl} s)"
    );
    let cancel = app
        .request(Method::POST, &format!("/api/v1/runs/{run_id}/cancel"))
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::ACCEPTED);
    app.finished_run(&admin.access_token, &run_id).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ttl: i64 = app.state.redis.client().ttl(&key).await.unwrap();
    assert!(
        (1..=3600).contains(&ttl),
        "a finished run's stream is kept for the configured TTL, got {ttl}"
    );
}

#[tokio::test]
async fn idle_event_streams_get_comment_pings_that_are_not_events() {
    let app = TestApp::builder()
        .env("PAAS_SSE_PING_SECS", "1")
        .start()
        .await;
    let admin = app.signup("acme").await.admin;
    app.agent(&admin, json!({"name": "helper"})).await;
    let replica = TestApp::builder()
        .replica_of(&app)
        .env("PAAS_SSE_PING_SECS", "1")
        .start()
        .await;
    // Nine chunks (eight of thought, one of answer) 1.2 s apart: longer than the ping interval.
    let (response, run_id) = app
        .start_chat(
            &admin.access_token,
            json!({"agent": "helper", "message": "[mock:delay_ms=1200][mock:chunks=1]"}),
        )
        .await;
    // Followed on another replica too, from Redis.
    let followed = replica
        .get(
            &format!("/api/v1/runs/{run_id}/events"),
            &admin.access_token,
        )
        .send()
        .await
        .unwrap();
    for (what, text) in [
        ("the run's own stream", response.text().await.unwrap()),
        ("a replica following it", followed.text().await.unwrap()),
    ] {
        let pings =
            text.matches("\n: ping\n\n").count() + usize::from(text.starts_with(": ping\n\n"));
        assert!(pings >= 1, "{what}: {text}");
        let events = parse_sse(&text);
        assert_eq!(events.last().unwrap().event, "done", "{what}");
        let ids: Vec<u64> = events.iter().map(|e| e.id.unwrap()).collect();
        assert_eq!(
            ids,
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "{what}: pings are not events"
        );
    }
}
