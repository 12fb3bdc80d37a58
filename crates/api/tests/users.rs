//! Managing users: roles, invitations, deactivation taking effect at once, and a tenant that
//! can never be left without an active admin.
// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PASSWORD, TestApp, expect_error, expect_status};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn an_admin_invites_a_viewer_who_can_log_in_read_only() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let admin = &tenant.admin;
    let created = app
        .post(
            "/api/v1/users",
            &admin.access_token,
            json!({"email": "Vera@Acme.test", "role": "viewer", "display_name": "Vera"}),
        )
        .send()
        .await
        .unwrap();
    let created = expect_status(created, StatusCode::CREATED).await;
    assert_eq!(created["user"]["role"], "viewer");
    assert_eq!(created["user"]["email"], "vera@acme.test");
    let temporary = created["temporary_password"]
        .as_str()
        .expect("a temporary password is returned once");
    assert!(temporary.len() >= 16);

    let login = expect_status(
        app.login("acme", "vera@acme.test", temporary).await,
        StatusCode::OK,
    )
    .await;
    let viewer_token = login["access_token"].as_str().unwrap();
    let me = expect_status(
        app.get("/api/v1/me", viewer_token).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["role"], "viewer");
    expect_error(
        app.get("/api/v1/users", viewer_token).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let listing = app
        .get(&format!("/api/v1/users/{}", admin.user_id), viewer_token)
        .send()
        .await
        .unwrap();
    expect_error(listing, StatusCode::FORBIDDEN, "forbidden").await;

    // The temporary password is not stored or shown anywhere else.
    let fetched = app
        .get(
            &format!("/api/v1/users/{}", created["user"]["id"].as_str().unwrap()),
            &admin.access_token,
        )
        .send()
        .await
        .unwrap();
    let fetched = expect_status(fetched, StatusCode::OK).await;
    assert!(!fetched.to_string().contains(temporary));
    let audit = expect_status(
        app.get("/api/v1/audit-events", &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert!(!audit.to_string().contains(temporary));
}

#[tokio::test]
async fn users_are_listed_filtered_and_paged() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let admin = &tenant.admin;
    app.with_user(admin, "viewer").await;
    app.with_user(admin, "user").await;
    app.with_user(admin, "user").await;
    let all = expect_status(
        app.get("/api/v1/users", &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
    let users = expect_status(
        app.get("/api/v1/users?role=user", &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(users["items"].as_array().unwrap().len(), 2);
    let page = expect_status(
        app.get("/api/v1/users?limit=2&offset=1", &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["items"][0]["id"], all["items"][1]["id"]);
    let bad = app
        .get("/api/v1/users?role=superadmin", &admin.access_token)
        .send()
        .await
        .unwrap();
    expect_error(bad, StatusCode::BAD_REQUEST, "invalid_query").await;
    let bad = app
        .get("/api/v1/users?limit=lots", &admin.access_token)
        .send()
        .await
        .unwrap();
    expect_error(bad, StatusCode::BAD_REQUEST, "invalid_query").await;
}

#[tokio::test]
async fn emails_are_unique_within_a_tenant_only() {
    let app = TestApp::new().await;
    let acme = app.signup("acme").await;
    let globex = app.signup("globex").await;
    let body = json!({"email": "sam@shared.test", "role": "user", "password": PASSWORD});
    expect_status(
        app.post("/api/v1/users", &acme.admin.access_token, body.clone())
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    expect_status(
        app.post("/api/v1/users", &globex.admin.access_token, body.clone())
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let again = app
        .post(
            "/api/v1/users",
            &acme.admin.access_token,
            json!({"email": "SAM@shared.test", "role": "viewer"}),
        )
        .send()
        .await
        .unwrap();
    expect_error(again, StatusCode::CONFLICT, "email_taken").await;
}

#[tokio::test]
async fn roles_change_and_take_effect_on_the_next_request() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let admin = &tenant.admin;
    let user = app.with_user(admin, "user").await;
    expect_error(
        app.get("/api/v1/users", &user.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let promoted = app
        .patch(
            &format!("/api/v1/users/{}", user.user_id),
            &admin.access_token,
            json!({"role": "admin"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_status(promoted, StatusCode::OK).await["role"],
        "admin"
    );
    // The same access token, issued when they were a user, now carries admin rights.
    expect_status(
        app.get("/api/v1/users", &user.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let audit = app
        .get(
            "/api/v1/audit-events?action=user.role_changed",
            &admin.access_token,
        )
        .send()
        .await
        .unwrap();
    let audit = expect_status(audit, StatusCode::OK).await;
    assert_eq!(
        audit["items"][0]["details"],
        json!({"from": "user", "to": "admin"})
    );
    assert_eq!(audit["items"][0]["actor_user_id"], admin.user_id.as_str());
    assert_eq!(audit["items"][0]["target_id"], user.user_id.as_str());
}

#[tokio::test]
async fn deactivation_locks_the_user_out_at_once() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let admin = &tenant.admin;
    let user = app.with_user(admin, "user").await;
    let (_, key) = app.with_api_key(&user, &["chat"]).await;
    expect_status(
        app.get("/api/v1/me", &key).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;

    let deleted = app
        .delete(
            &format!("/api/v1/users/{}", user.user_id),
            &admin.access_token,
        )
        .send()
        .await
        .unwrap();
    expect_status(deleted, StatusCode::NO_CONTENT).await;
    let audit = app
        .audit_events(&admin.access_token, "user.deactivated")
        .await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["actor_user_id"], admin.user_id.as_str());
    assert_eq!(audit[0]["target_type"], "user");
    assert_eq!(audit[0]["target_id"], user.user_id.as_str());
    assert_eq!(audit[0]["details"], json!({"api_keys_revoked": 1}));

    expect_error(
        app.get("/api/v1/me", &user.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "user_deactivated",
    )
    .await;
    expect_error(
        app.get("/api/v1/me", &key).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "api_key_revoked",
    )
    .await;
    expect_error(
        app.login("acme", &user.email, PASSWORD).await,
        StatusCode::FORBIDDEN,
        "user_deactivated",
    )
    .await;
    let refresh = app
        .request(reqwest::Method::POST, "/api/v1/auth/refresh")
        .json(&json!({"refresh_token": user.refresh_token}))
        .send()
        .await
        .unwrap();
    expect_error(refresh, StatusCode::UNAUTHORIZED, "session_revoked").await;

    // Reactivation lets them log in again (their old keys stay revoked).
    let reactivated = app
        .patch(
            &format!("/api/v1/users/{}", user.user_id),
            &admin.access_token,
            json!({"status": "active"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_status(reactivated, StatusCode::OK).await["status"],
        "active"
    );
    let audit = app
        .audit_events(&admin.access_token, "user.reactivated")
        .await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["target_id"], user.user_id.as_str());
    expect_status(
        app.login("acme", &user.email, PASSWORD).await,
        StatusCode::OK,
    )
    .await;
    expect_error(
        app.get("/api/v1/me", &key).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "api_key_revoked",
    )
    .await;
}

#[tokio::test]
async fn the_last_active_admin_cannot_be_demoted_or_deactivated() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let admin = &tenant.admin;
    let me = format!("/api/v1/users/{}", admin.user_id);
    for body in [
        json!({"role": "user"}),
        json!({"role": "viewer"}),
        json!({"status": "deactivated"}),
    ] {
        let response = app
            .patch(&me, &admin.access_token, body)
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::CONFLICT, "last_admin").await;
    }
    expect_error(
        app.delete(&me, &admin.access_token).send().await.unwrap(),
        StatusCode::CONFLICT,
        "last_admin",
    )
    .await;
    // A no-op change is fine.
    expect_status(
        app.patch(&me, &admin.access_token, json!({"role": "admin"}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;

    // With a second admin, the first may step down.
    let second = app.with_user(admin, "admin").await;
    expect_status(
        app.patch(&me, &admin.access_token, json!({"role": "user"}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let second_path = format!("/api/v1/users/{}", second.user_id);
    expect_error(
        app.delete(&second_path, &second.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::CONFLICT,
        "last_admin",
    )
    .await;
    assert_eq!(
        app.count("SELECT count(*) FROM users WHERE role = 'admin' AND status = 'active'"),
        1
    );
}

#[tokio::test]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let first = tenant.admin.clone();
    let second = app.with_user(&first, "admin").await;
    for _ in 0..5 {
        let a = app
            .patch(
                &format!("/api/v1/users/{}", second.user_id),
                &first.access_token,
                json!({"role": "user"}),
            )
            .send();
        let b = app
            .patch(
                &format!("/api/v1/users/{}", first.user_id),
                &second.access_token,
                json!({"role": "user"}),
            )
            .send();
        let (a, b) = tokio::join!(a, b);
        let statuses = [a.unwrap().status(), b.unwrap().status()];
        assert_eq!(
            app.count("SELECT count(*) FROM users WHERE role = 'admin' AND status = 'active'"),
            1,
            "{statuses:?}"
        );
        // Restore two admins for the next round, with whoever is still admin.
        let still_admin = if statuses[0] == StatusCode::OK {
            &first
        } else {
            &second
        };
        let demoted = if statuses[0] == StatusCode::OK {
            &second
        } else {
            &first
        };
        let restore = app
            .patch(
                &format!("/api/v1/users/{}", demoted.user_id),
                &still_admin.access_token,
                json!({"role": "admin"}),
            )
            .send()
            .await
            .unwrap();
        expect_status(restore, StatusCode::OK).await;
    }
}

#[tokio::test]
async fn fields_an_admin_may_not_set_are_refused() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let admin = &tenant.admin;
    let user = app.with_user(admin, "user").await;
    let path = format!("/api/v1/users/{}", user.user_id);
    for body in [
        json!({"tenant_id": uuid::Uuid::now_v7()}),
        json!({"id": uuid::Uuid::now_v7()}),
        json!({"email": "new@acme.test"}),
        json!({"password_hash": "x"}),
        json!({"role": "owner"}),
        json!({"status": "suspended"}),
    ] {
        let response = app
            .patch(&path, &admin.access_token, body.clone())
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::BAD_REQUEST, "invalid_json").await;
    }
    let create = app
        .post(
            "/api/v1/users",
            &admin.access_token,
            json!({"email": "x@acme.test", "role": "user", "tenant_id": uuid::Uuid::now_v7()}),
        )
        .send()
        .await
        .unwrap();
    expect_error(create, StatusCode::BAD_REQUEST, "invalid_json").await;
    // A user may not promote themselves through /me either.
    let me = app
        .patch(
            "/api/v1/me",
            &user.access_token,
            json!({"display_name": "Me", "role": "admin"}),
        )
        .send()
        .await
        .unwrap();
    expect_error(me, StatusCode::BAD_REQUEST, "invalid_json").await;
    assert_eq!(
        app.count("SELECT count(*) FROM users WHERE role = 'admin'"),
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM users"), 2);
}

#[tokio::test]
async fn users_change_their_own_display_name() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let viewer = app.with_user(&tenant.admin, "viewer").await;
    let updated = app
        .patch(
            "/api/v1/me",
            &viewer.access_token,
            json!({"display_name": "  Vee  "}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_status(updated, StatusCode::OK).await["display_name"],
        "Vee"
    );
    let empty = app
        .patch(
            "/api/v1/me",
            &viewer.access_token,
            json!({"display_name": "   "}),
        )
        .send()
        .await
        .unwrap();
    expect_error(empty, StatusCode::BAD_REQUEST, "invalid_display_name").await;
}
