//! API keys: shown once, stored hashed, scoped within the owner's role, always expiring,
//! revocable at once, accepted in either header.
// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestApp, expect_error, expect_status};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

#[tokio::test]
async fn a_key_is_shown_once_and_stored_only_as_a_hash() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let admin = &tenant.admin;
    let created = app
        .post(
            "/api/v1/api-keys",
            &admin.access_token,
            json!({"name": "ci", "scopes": ["chat", "agents:read"]}),
        )
        .send()
        .await
        .unwrap();
    let created = expect_status(created, StatusCode::CREATED).await;
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("ap_") && key.len() == 46, "{key}");
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(created["scopes"], json!(["chat", "agents:read"]));
    let expires: chrono::DateTime<chrono::Utc> =
        created["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_days();
    assert!(
        (89..=90).contains(&days),
        "default expiry is 90 days, got {days}"
    );

    let listing = expect_status(
        app.get("/api/v1/api-keys", &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let item = &listing["items"][0];
    assert_eq!(item["prefix"], created["prefix"]);
    assert!(item.get("key").is_none() && item.get("key_hash").is_none());
    assert!(!listing.to_string().contains(key));

    let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM api_keys WHERE key_hash = '\\x{hex}'::bytea"
        )),
        1
    );
    assert_eq!(
        app.count(&format!("SELECT count(*) FROM api_keys WHERE position('{key}' in key_hash::text || name || prefix) > 0")),
        0
    );
}

#[tokio::test]
async fn keys_work_in_either_header_and_show_their_scopes() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let (id, key) = app.with_api_key(&tenant.admin, &["agents:read"]).await;
    let bearer = expect_status(
        app.get("/api/v1/me", &key).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        bearer["auth"],
        json!({"method": "api_key", "api_key_id": id, "scopes": ["agents:read"]})
    );
    let header = app
        .request(Method::GET, "/api/v1/me")
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    expect_status(header, StatusCode::OK).await;

    // last_used_at is recorded off the request path.
    let mut used = false;
    for _ in 0..50 {
        if app.count("SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL") == 1 {
            used = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(used, "last_used_at was never recorded");
}

#[tokio::test]
async fn nobody_mints_a_key_beyond_their_role() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let user = app.with_user(&tenant.admin, "user").await;
    let viewer = app.with_user(&tenant.admin, "viewer").await;
    for (session, scopes) in [
        (&user, json!(["admin"])),
        (&user, json!(["chat", "agents:write"])),
        (&viewer, json!(["chat"])),
        (&viewer, json!(["sessions:write"])),
    ] {
        let response = app
            .post(
                "/api/v1/api-keys",
                &session.access_token,
                json!({"name": "k", "scopes": scopes}),
            )
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::FORBIDDEN, "scope_not_allowed").await;
    }
    // Within their role, fine.
    app.with_api_key(
        &user,
        &["chat", "sessions:read", "sessions:write", "usage:read"],
    )
    .await;
    app.with_api_key(&viewer, &["agents:read", "sessions:read", "usage:read"])
        .await;
    app.with_api_key(&tenant.admin, &["admin"]).await;

    for (scopes, code) in [
        (json!([]), "invalid_scopes"),
        (json!(["root"]), "invalid_scopes"),
        (json!(["CHAT"]), "invalid_scopes"),
    ] {
        let response = app
            .post(
                "/api/v1/api-keys",
                &user.access_token,
                json!({"name": "k", "scopes": scopes}),
            )
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::BAD_REQUEST, code).await;
    }
    assert_eq!(app.count("SELECT count(*) FROM api_keys"), 3);
}

#[tokio::test]
async fn every_key_expires_within_the_allowed_window() {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    let in_a_year_and_a_day = (chrono::Utc::now() + chrono::Duration::days(366)).to_rfc3339();
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let cases = [
        (
            json!({"name": "k", "scopes": ["chat"], "expires_in_days": 0}),
            "invalid_expires_in_days",
        ),
        (
            json!({"name": "k", "scopes": ["chat"], "expires_in_days": 400}),
            "invalid_expires_in_days",
        ),
        (
            json!({"name": "k", "scopes": ["chat"], "expires_at": in_a_year_and_a_day}),
            "invalid_expires_at",
        ),
        (
            json!({"name": "k", "scopes": ["chat"], "expires_at": yesterday}),
            "invalid_expires_at",
        ),
        (
            json!({"name": "k", "scopes": ["chat"], "expires_at": "tomorrow"}),
            "invalid_json",
        ),
        (
            json!({"name": "k", "scopes": ["chat"], "expires_in_days": 5, "expires_at": yesterday}),
            "invalid_expiry",
        ),
        (json!({"name": "", "scopes": ["chat"]}), "invalid_name"),
        (
            json!({"name": "k", "scopes": ["chat"], "expires_at": null, "id": "x"}),
            "invalid_json",
        ),
    ];
    for (body, code) in cases {
        let response = app
            .post("/api/v1/api-keys", &admin.access_token, body)
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::BAD_REQUEST, code).await;
    }
    let ok = app
        .post(
            "/api/v1/api-keys",
            &admin.access_token,
            json!({"name": "k", "scopes": ["chat"], "expires_in_days": 7}),
        )
        .send()
        .await
        .unwrap();
    let ok = expect_status(ok, StatusCode::CREATED).await;
    let expires: chrono::DateTime<chrono::Utc> =
        ok["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!((expires - chrono::Utc::now()).num_days(), 6);
    assert_eq!(app.count("SELECT count(*) FROM api_keys"), 1);
}

#[tokio::test]
async fn revoked_and_expired_keys_stop_working_at_once() {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    let (revoked_id, revoked) = app.with_api_key(&admin, &["admin"]).await;
    let (expired_id, expired) = app.with_api_key(&admin, &["admin"]).await;
    expect_status(
        app.get("/api/v1/me", &revoked).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;

    let response = app
        .delete(
            &format!("/api/v1/api-keys/{revoked_id}"),
            &admin.access_token,
        )
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::NO_CONTENT).await;
    expect_error(
        app.get("/api/v1/me", &revoked).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "api_key_revoked",
    )
    .await;
    // Revoking again is harmless.
    let again = app
        .delete(
            &format!("/api/v1/api-keys/{revoked_id}"),
            &admin.access_token,
        )
        .send()
        .await
        .unwrap();
    expect_status(again, StatusCode::NO_CONTENT).await;
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE action = 'api_key.revoked'"),
        1
    );

    app.sql(&format!(
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = '{expired_id}'"
    ));
    expect_error(
        app.get("/api/v1/me", &expired).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "api_key_expired",
    )
    .await;

    let active = expect_status(
        app.get("/api/v1/api-keys", &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        active["items"].as_array().unwrap().len(),
        1,
        "revoked keys are hidden by default"
    );
    let all = app
        .get("/api/v1/api-keys?include_revoked=true", &admin.access_token)
        .send()
        .await
        .unwrap();
    let all = expect_status(all, StatusCode::OK).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);

    let unknown = format!("ap_{}", "A".repeat(43));
    expect_error(
        app.get("/api/v1/me", &unknown).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
    )
    .await;
}

#[tokio::test]
async fn users_manage_their_own_keys_and_admins_all_of_them() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let admin = &tenant.admin;
    let alice = app.with_user(admin, "user").await;
    let bob = app.with_user(admin, "user").await;
    let (alice_key, _) = app.with_api_key(&alice, &["chat"]).await;
    let (bob_key, _) = app.with_api_key(&bob, &["chat"]).await;

    let mine = expect_status(
        app.get("/api/v1/api-keys", &alice.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let ids: Vec<_> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![alice_key.as_str()]);
    let peek = app
        .get(
            &format!("/api/v1/api-keys?user_id={}", bob.user_id),
            &alice.access_token,
        )
        .send()
        .await
        .unwrap();
    expect_error(peek, StatusCode::FORBIDDEN, "forbidden").await;
    // Alice cannot revoke Bob's key: it looks like it does not exist.
    let steal = app
        .delete(&format!("/api/v1/api-keys/{bob_key}"), &alice.access_token)
        .send()
        .await
        .unwrap();
    expect_error(steal, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(
        app.count("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL"),
        2
    );

    let all = expect_status(
        app.get("/api/v1/api-keys", &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let bobs = app
        .get(
            &format!("/api/v1/api-keys?user_id={}", bob.user_id),
            &admin.access_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_status(bobs, StatusCode::OK).await["items"][0]["id"],
        bob_key.as_str()
    );
    let revoke = app
        .delete(&format!("/api/v1/api-keys/{bob_key}"), &admin.access_token)
        .send()
        .await
        .unwrap();
    expect_status(revoke, StatusCode::NO_CONTENT).await;
}

#[tokio::test]
async fn a_key_cannot_do_more_than_its_scopes_or_its_owner() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let admin = &tenant.admin;
    let (_, chat_key) = app.with_api_key(admin, &["chat"]).await;
    let (_, admin_key) = app.with_api_key(admin, &["admin"]).await;
    expect_error(
        app.get("/api/v1/users", &chat_key).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    expect_error(
        app.get("/api/v1/api-keys", &chat_key).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    expect_status(
        app.get("/api/v1/users", &admin_key).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    // A key never changes the account itself.
    let password = app
        .post(
            "/api/v1/me/password",
            &admin_key,
            json!({"current_password": common::PASSWORD, "new_password": "another long password"}),
        )
        .send()
        .await
        .unwrap();
    expect_error(password, StatusCode::FORBIDDEN, "session_required").await;

    // When the owner is demoted, their admin-scoped key loses admin powers with them.
    let second = app.with_user(admin, "admin").await;
    let (_, second_key) = app.with_api_key(&second, &["admin"]).await;
    let demote = app
        .patch(
            &format!("/api/v1/users/{}", second.user_id),
            &admin.access_token,
            json!({"role": "user"}),
        )
        .send()
        .await
        .unwrap();
    expect_status(demote, StatusCode::OK).await;
    expect_error(
        app.get("/api/v1/users", &second_key).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}
