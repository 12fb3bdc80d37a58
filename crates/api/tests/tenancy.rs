//! One tenant never sees or touches another's data, on every route that takes an id or lists
//! anything; and a suspended tenant is locked out at once.
// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PASSWORD, TestApp, expect_error, expect_status};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn another_tenants_ids_answer_exactly_like_missing_ones() {
    let app = TestApp::new().await;
    let acme = app.signup("acme").await;
    let globex = app.signup("globex").await;
    let globex_user = app.with_user(&globex.admin, "user").await;
    let (globex_key, _) = app.with_api_key(&globex_user, &["chat"]).await;
    let missing = uuid::Uuid::now_v7().to_string();
    let token = &acme.admin.access_token;

    // A malformed id is a 404 too, before any query runs.
    for id in ["not-a-uuid", "1%27%20OR%20%271%27=%271"] {
        let response = app
            .get(&format!("/api/v1/users/{id}"), token)
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
        let response = app
            .delete(&format!("/api/v1/api-keys/{id}"), token)
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }

    let mut answers: Vec<(String, Value)> = Vec::new();
    for id in [globex_user.user_id.as_str(), missing.as_str()] {
        let responses = [
            app.get(&format!("/api/v1/users/{id}"), token)
                .send()
                .await
                .unwrap(),
            app.patch(
                &format!("/api/v1/users/{id}"),
                token,
                json!({"role": "viewer"}),
            )
            .send()
            .await
            .unwrap(),
            app.delete(&format!("/api/v1/users/{id}"), token)
                .send()
                .await
                .unwrap(),
        ];
        for response in responses {
            let body = expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
            answers.push(("user".into(), body));
        }
    }
    for id in [globex_key.as_str(), missing.as_str()] {
        let response = app
            .delete(&format!("/api/v1/api-keys/{id}"), token)
            .send()
            .await
            .unwrap();
        answers.push((
            "key".into(),
            expect_error(response, StatusCode::NOT_FOUND, "not_found").await,
        ));
    }
    // Same kind of object, same body, whether it exists elsewhere or nowhere.
    let user_bodies: Vec<_> = answers
        .iter()
        .filter(|(k, _)| k == "user")
        .map(|(_, b)| b.clone())
        .collect();
    assert!(
        user_bodies.windows(2).all(|w| w[0] == w[1]),
        "{user_bodies:?}"
    );
    let key_bodies: Vec<_> = answers
        .iter()
        .filter(|(k, _)| k == "key")
        .map(|(_, b)| b.clone())
        .collect();
    assert!(
        key_bodies.windows(2).all(|w| w[0] == w[1]),
        "{key_bodies:?}"
    );

    // Nothing in globex changed.
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM users WHERE id = '{}' AND role = 'user' AND status = 'active'",
            globex_user.user_id
        )),
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL"),
        1
    );
}

#[tokio::test]
async fn listings_show_only_the_callers_tenant() {
    let app = TestApp::new().await;
    let acme = app.signup("acme").await;
    let globex = app.signup("globex").await;
    app.with_user(&globex.admin, "viewer").await;
    app.with_api_key(&globex.admin, &["chat"]).await;
    let token = &acme.admin.access_token;

    let users = expect_status(
        app.get("/api/v1/users", token).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let emails: Vec<_> = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(emails, vec!["admin@acme.test".to_owned()]);

    let keys = expect_status(
        app.get("/api/v1/api-keys?include_revoked=true", token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(keys["items"], json!([]));
    let foreign_owner = app
        .get(
            &format!("/api/v1/api-keys?user_id={}", globex.admin.user_id),
            token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_status(foreign_owner, StatusCode::OK).await["items"],
        json!([])
    );

    let audit = expect_status(
        app.get("/api/v1/audit-events?limit=200", token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    for event in audit["items"].as_array().unwrap() {
        assert_eq!(event["tenant_id"], acme.id.as_str(), "{event}");
    }
    let foreign_actor = app
        .get(
            &format!(
                "/api/v1/audit-events?actor_user_id={}",
                globex.admin.user_id
            ),
            token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_status(foreign_actor, StatusCode::OK).await["items"],
        json!([])
    );

    let tenant = expect_status(
        app.get("/api/v1/tenant", token).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(tenant["name"], "acme");
    let updated = app
        .patch(
            "/api/v1/tenant",
            token,
            json!({"display_name": "Acme Inc."}),
        )
        .send()
        .await
        .unwrap();
    expect_status(updated, StatusCode::OK).await;
    let other = expect_status(
        app.get("/api/v1/tenant", &globex.admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(other["display_name"], "globex");
}

#[tokio::test]
async fn a_tenant_id_in_a_body_is_never_applied() {
    let app = TestApp::new().await;
    let acme = app.signup("acme").await;
    let globex = app.signup("globex").await;
    for (path, body) in [
        (
            "/api/v1/users",
            json!({"email": "x@x.test", "role": "user", "tenant_id": globex.id}),
        ),
        (
            "/api/v1/api-keys",
            json!({"name": "k", "scopes": ["chat"], "tenant_id": globex.id}),
        ),
        (
            "/api/v1/api-keys",
            json!({"name": "k", "scopes": ["chat"], "user_id": globex.admin.user_id}),
        ),
    ] {
        let response = app
            .post(path, &acme.admin.access_token, body)
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::BAD_REQUEST, "invalid_json").await;
    }
    let patch = app
        .patch(
            "/api/v1/tenant",
            &acme.admin.access_token,
            json!({"id": globex.id, "display_name": "x"}),
        )
        .send()
        .await
        .unwrap();
    expect_error(patch, StatusCode::BAD_REQUEST, "invalid_json").await;
    let patch = app
        .patch(
            "/api/v1/tenant",
            &acme.admin.access_token,
            json!({"plan": "enterprise"}),
        )
        .send()
        .await
        .unwrap();
    expect_error(patch, StatusCode::BAD_REQUEST, "invalid_json").await;
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM users WHERE tenant_id = '{}'",
            globex.id
        )),
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM api_keys"), 0);
    assert_eq!(app.count("SELECT count(*) FROM tenants WHERE plan = 'free' AND display_name IN ('acme', 'globex')"), 2);
}

#[tokio::test]
async fn a_suspended_tenant_is_locked_out_at_once() {
    let app = TestApp::new().await;
    let acme = app.signup("acme").await;
    let globex = app.signup("globex").await;
    let (_, key) = app.with_api_key(&acme.admin, &["admin"]).await;
    app.sql(&format!(
        "UPDATE tenants SET status = 'suspended' WHERE id = '{}'",
        acme.id
    ));

    expect_error(
        app.get("/api/v1/me", &acme.admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "tenant_suspended",
    )
    .await;
    expect_error(
        app.get("/api/v1/me", &key).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "tenant_suspended",
    )
    .await;
    expect_error(
        app.login("acme", "admin@acme.test", PASSWORD).await,
        StatusCode::FORBIDDEN,
        "tenant_suspended",
    )
    .await;
    let refresh = app
        .request(reqwest::Method::POST, "/api/v1/auth/refresh")
        .json(&json!({"refresh_token": acme.admin.refresh_token}))
        .send()
        .await
        .unwrap();
    expect_error(refresh, StatusCode::FORBIDDEN, "tenant_suspended").await;
    // Other tenants are unaffected.
    expect_status(
        app.get("/api/v1/me", &globex.admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
}
