//! The JSON shapes clients depend on, pinned as snapshots (ids, times and tokens redacted).
//! A change here is an API change: update the snapshot deliberately (`INSTA_UPDATE=always`).

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PASSWORD, TestApp, expect_status};
use insta::assert_json_snapshot;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn signup_me_key_and_error_shapes() {
    let app = TestApp::new().await;
    let response = app
        .request(Method::POST, "/api/v1/auth/signup")
        .json(&json!({"tenant_name": "acme", "email": "ada@acme.test", "password": PASSWORD, "display_name": "Ada"}))
        .send()
        .await
        .unwrap();
    let signup = expect_status(response, StatusCode::CREATED).await;
    assert_json_snapshot!("signup", signup, {
        ".tenant.id" => "[id]", ".user.id" => "[id]", ".user.tenant_id" => "[id]",
        ".**.created_at" => "[time]", ".**.updated_at" => "[time]", ".user.last_login_at" => "[time]",
        ".access_token" => "[token]", ".refresh_token" => "[token]",
    });

    let token = signup["access_token"].as_str().unwrap();
    let key = app
        .post(
            "/api/v1/api-keys",
            token,
            json!({"name": "ci", "scopes": ["chat", "usage:read"], "expires_in_days": 30}),
        )
        .send()
        .await
        .unwrap();
    let key = expect_status(key, StatusCode::CREATED).await;
    assert_json_snapshot!("api_key_created", key, {
        ".id" => "[id]", ".key" => "[secret]", ".prefix" => "[prefix]", ".expires_at" => "[time]", ".created_at" => "[time]",
    });

    let me = expect_status(
        app.get("/api/v1/me", key["key"].as_str().unwrap())
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_json_snapshot!("me_with_api_key", me, {
        ".**.id" => "[id]", ".**.tenant_id" => "[id]", ".auth.api_key_id" => "[id]",
        ".**.created_at" => "[time]", ".**.updated_at" => "[time]", ".user.last_login_at" => "[time]",
    });

    let error = app
        .get("/api/v1/users", key["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_json_snapshot!(
        "insufficient_scope",
        expect_status(error, StatusCode::FORBIDDEN).await
    );
}
