//! Sign-up, login, refresh-token rotation and reuse detection, logout, token forgery, login
//! throttling, password rules.
// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{JWT_SECRET, PASSWORD, TestApp, claims_of, expect_error, expect_status, sign};
use jsonwebtoken::Algorithm;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn signup_raw(app: &TestApp, body: Value) -> reqwest::Response {
    app.request(Method::POST, "/api/v1/auth/signup")
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn signup_creates_a_tenant_whose_first_user_is_admin() {
    let app = TestApp::new().await;
    let response = signup_raw(
        &app,
        json!({"tenant_name": "acme", "email": "Ada@Acme.test", "password": PASSWORD, "display_name": "Ada"}),
    )
    .await;
    let body = expect_status(response, StatusCode::CREATED).await;
    assert_eq!(body["tenant"]["name"], "acme");
    assert_eq!(body["tenant"]["plan"], "free");
    assert_eq!(body["tenant"]["status"], "active");
    assert_eq!(
        body["user"]["email"], "ada@acme.test",
        "emails are normalised"
    );
    assert_eq!(body["user"]["role"], "admin");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        body["expires_in"], 900,
        "access tokens live 15 minutes by default"
    );
    assert!(body.get("password").is_none() && body["user"].get("password_hash").is_none());

    let me = app
        .get("/api/v1/me", body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let me = expect_status(me, StatusCode::OK).await;
    assert_eq!(me["role"], "admin");
    assert_eq!(me["tenant"]["name"], "acme");
    assert_eq!(me["user"]["display_name"], "Ada");
    assert_eq!(me["auth"]["method"], "session");
    assert_eq!(app.count("SELECT count(*) FROM tenant_quotas"), 1);
}

#[tokio::test]
async fn signup_refuses_a_taken_name_and_bad_fields_without_writing_anything() {
    let app = TestApp::new().await;
    app.signup("acme").await;
    let taken = signup_raw(
        &app,
        json!({"tenant_name": "acme", "email": "b@b.test", "password": PASSWORD}),
    )
    .await;
    expect_error(taken, StatusCode::CONFLICT, "tenant_name_taken").await;

    let cases = [
        (
            json!({"tenant_name": "Acme Corp", "email": "a@b.test", "password": PASSWORD}),
            "invalid_tenant_name",
        ),
        (
            json!({"tenant_name": "x'; DROP TABLE tenants;--", "email": "a@b.test", "password": PASSWORD}),
            "invalid_tenant_name",
        ),
        (
            json!({"tenant_name": "globex", "email": "not-an-email", "password": PASSWORD}),
            "invalid_email",
        ),
        (
            json!({"tenant_name": "globex", "email": "a@b.test' OR '1'='1", "password": PASSWORD}),
            "invalid_email",
        ),
        (
            json!({"tenant_name": "globex", "email": "a@b.test", "password": "short"}),
            "password_too_short",
        ),
        (
            json!({"tenant_name": "globex", "email": "a@b.test", "password": "p".repeat(73)}),
            "password_too_long",
        ),
        (
            json!({"tenant_name": "globex", "email": "a@b.test", "password": "€".repeat(25)}),
            "password_too_long",
        ),
        (
            json!({"tenant_name": "globex", "email": "a@b.test", "password": PASSWORD, "role": "viewer"}),
            "invalid_json",
        ),
        (
            json!({"tenant_name": "globex", "email": "a@b.test", "password": PASSWORD, "tenant_id": "00000000-0000-0000-0000-000000000000"}),
            "invalid_json",
        ),
        (
            json!({"tenant_name": "globex", "email": "a@b.test", "password": PASSWORD, "plan": "enterprise"}),
            "invalid_json",
        ),
        (
            json!({"tenant_name": "globex", "email": "a@b.test"}),
            "invalid_json",
        ),
        (
            json!({"tenant_name": 7, "email": "a@b.test", "password": PASSWORD}),
            "invalid_json",
        ),
    ];
    for (body, code) in cases {
        let response = signup_raw(&app, body.clone()).await;
        let error = expect_error(response, StatusCode::BAD_REQUEST, code).await;
        assert!(
            !error.to_string().contains(&"p".repeat(73)),
            "the password is echoed: {error}"
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM tenants"), 1);
    assert_eq!(app.count("SELECT count(*) FROM users"), 1);
}

#[tokio::test]
async fn a_72_byte_password_is_accepted_whole() {
    let app = TestApp::new().await;
    let password = "x".repeat(71) + "y";
    let response = signup_raw(
        &app,
        json!({"tenant_name": "acme", "email": "a@acme.test", "password": password}),
    )
    .await;
    expect_status(response, StatusCode::CREATED).await;
    expect_status(
        app.login("acme", "a@acme.test", &password).await,
        StatusCode::OK,
    )
    .await;
    let wrong_last_byte = "x".repeat(72);
    expect_error(
        app.login("acme", "a@acme.test", &wrong_last_byte).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let longer = password.clone() + "z";
    expect_error(
        app.login("acme", "a@acme.test", &longer).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn login_answers_unknown_tenants_users_and_wrong_passwords_alike() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let ok = expect_status(
        app.login("acme", "ADMIN@acme.test", PASSWORD).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ok["user"]["id"], tenant.admin.user_id.as_str());
    assert!(ok["user"]["last_login_at"].is_string());

    let mut messages = Vec::new();
    for (tenant_name, email, password) in [
        ("acme", "admin@acme.test", "wrong password!"),
        ("acme", "nobody@acme.test", PASSWORD),
        ("globex", "admin@acme.test", PASSWORD),
        ("' OR 1=1 --", "admin@acme.test", PASSWORD),
    ] {
        let body = expect_error(
            app.login(tenant_name, email, password).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
        messages.push(body["error"]["message"].clone());
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "every failure must read the same");
    // Failed logins against a known tenant are audited; successful ones too.
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE action = 'auth.login_failed'"),
        2
    );
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE action = 'auth.login'"),
        1
    );
}

/// The median of some durations.
fn median(mut times: Vec<std::time::Duration>) -> std::time::Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::test]
async fn unknown_users_and_tenants_cost_as_much_time_as_wrong_passwords() {
    // A real bcrypt cost (the other tests use 4, which is over in about a millisecond): skipping
    // the verification would make an unknown user's login tens of times faster than this.
    let app = TestApp::builder()
        .env("PAAS_BCRYPT_COST", "10")
        .env("PAAS_LOGIN_MAX_FAILURES", "1000")
        .env("PAAS_LOGIN_MAX_FAILURES_PER_IP", "1000")
        .start()
        .await;
    app.signup("acme").await;
    let cases = [
        ("acme", "admin@acme.test", "not the password"),
        ("acme", "nobody@acme.test", "not the password"),
        ("globex", "admin@globex.test", "not the password"),
    ];
    // One untimed round first: connections, prepared statements, the dummy hash.
    for (tenant, email, password) in cases {
        app.login(tenant, email, password).await;
    }
    let mut times: [Vec<std::time::Duration>; 3] = Default::default();
    for _ in 0..7 {
        for (i, (tenant, email, password)) in cases.into_iter().enumerate() {
            let started = std::time::Instant::now();
            let response = app.login(tenant, email, password).await;
            times[i].push(started.elapsed());
            expect_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        }
    }
    let [known, unknown_user, unknown_tenant] = times.map(median);
    for (case, median) in [
        ("an unknown user", unknown_user),
        ("an unknown tenant", unknown_tenant),
    ] {
        assert!(
            median * 2 >= known,
            "{case} took {median:?} (median), a wrong password {known:?}: a fast path?"
        );
    }
}

#[tokio::test]
async fn repeated_failures_lock_the_account_with_retry_after() {
    let app = TestApp::builder()
        .env("PAAS_LOGIN_MAX_FAILURES", "3")
        .start()
        .await;
    app.signup("acme").await;
    for _ in 0..3 {
        expect_error(
            app.login("acme", "admin@acme.test", "not the password")
                .await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    // Even the right password is refused now.
    let response = app.login("acme", "admin@acme.test", PASSWORD).await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    expect_error(
        response,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_login_attempts",
    )
    .await;
}

#[tokio::test]
async fn repeated_failures_from_one_address_are_throttled_across_accounts() {
    let app = TestApp::builder()
        .env("PAAS_LOGIN_MAX_FAILURES_PER_IP", "4")
        .start()
        .await;
    app.signup("acme").await;
    for i in 0..4 {
        let email = format!("guess{i}@acme.test");
        expect_error(
            app.login("acme", &email, "not the password").await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    let response = app.login("acme", "admin@acme.test", PASSWORD).await;
    let retry_after = retry_after(&response);
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    expect_error(
        response,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_login_attempts",
    )
    .await;
}

/// The `Retry-After` header of a response, in seconds.
fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Fires `count` wrong-password logins at once, half at each replica, for the accounts
/// `email(i)`; returns each response's status and `Retry-After`.
async fn concurrent_wrong_logins(
    replicas: [&TestApp; 2],
    count: usize,
    email: impl Fn(usize) -> String,
) -> Vec<(StatusCode, Option<u64>)> {
    let attempts = (0..count).map(|i| {
        let app = replicas[i % 2];
        let email = email(i);
        async move {
            let response = app.login("acme", &email, "not the password").await;
            let status = response.status();
            let retry = (status == StatusCode::TOO_MANY_REQUESTS).then(|| retry_after(&response));
            let body: Value = response.json().await.unwrap();
            let expected = if status == StatusCode::UNAUTHORIZED {
                "invalid_credentials"
            } else {
                "too_many_login_attempts"
            };
            assert_eq!(body["error"]["code"], expected, "{status}: {body}");
            (status, retry)
        }
    });
    futures_util::future::join_all(attempts).await
}

#[tokio::test]
async fn parallel_wrong_passwords_on_two_replicas_get_no_more_than_the_limit() {
    let limit = 3;
    let app = TestApp::builder()
        .env("PAAS_LOGIN_MAX_FAILURES", &limit.to_string())
        .env("PAAS_LOGIN_MAX_FAILURES_PER_IP", "1000")
        .env("PAAS_LOGIN_LOCKOUT_SECS", "3")
        .start()
        .await;
    let replica = TestApp::builder()
        .env("PAAS_LOGIN_MAX_FAILURES", &limit.to_string())
        .env("PAAS_LOGIN_MAX_FAILURES_PER_IP", "1000")
        .env("PAAS_LOGIN_LOCKOUT_SECS", "3")
        .replica_of(&app)
        .start()
        .await;
    app.signup("acme").await;

    let outcomes =
        concurrent_wrong_logins([&app, &replica], 30, |_| "admin@acme.test".to_owned()).await;
    let checked = outcomes
        .iter()
        .filter(|(status, _)| *status == StatusCode::UNAUTHORIZED)
        .count();
    // Every attempt is counted before its password is checked, so exactly `limit` of them get
    // that far, however they interleave; the others are refused without a check.
    assert_eq!(checked, limit, "{outcomes:?}");
    for (status, retry) in &outcomes {
        assert!(
            *status == StatusCode::UNAUTHORIZED || *status == StatusCode::TOO_MANY_REQUESTS,
            "{outcomes:?}"
        );
        if let Some(retry) = retry {
            assert!((1..=3).contains(retry), "{outcomes:?}");
        }
    }
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE action = 'auth.login_failed'"),
        i64::try_from(limit).unwrap(),
        "only the checked attempts are failed logins"
    );

    // The right password is refused too, on either replica, until the window ends.
    for server in [&app, &replica] {
        let response = server.login("acme", "admin@acme.test", PASSWORD).await;
        assert!((1..=3).contains(&retry_after(&response)));
        expect_error(
            response,
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_login_attempts",
        )
        .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    expect_status(
        replica.login("acme", "admin@acme.test", PASSWORD).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn without_redis_parallel_wrong_passwords_still_get_no_more_than_the_limit() {
    // Nothing listens on port 1: the throttle counts in the process's memory instead.
    let app = TestApp::builder()
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("PAAS_LOGIN_MAX_FAILURES", "3")
        .start()
        .await;
    app.signup("acme").await;
    let outcomes =
        concurrent_wrong_logins([&app, &app], 20, |_| "admin@acme.test".to_owned()).await;
    let checked = outcomes
        .iter()
        .filter(|(status, _)| *status == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(checked, 3, "{outcomes:?}");
    expect_error(
        app.login("acme", "admin@acme.test", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_login_attempts",
    )
    .await;
}

#[tokio::test]
async fn parallel_guesses_across_accounts_get_no_more_than_the_address_limit() {
    let app = TestApp::builder()
        .env("PAAS_LOGIN_MAX_FAILURES_PER_IP", "4")
        .start()
        .await;
    let replica = TestApp::builder()
        .env("PAAS_LOGIN_MAX_FAILURES_PER_IP", "4")
        .replica_of(&app)
        .start()
        .await;
    app.signup("acme").await;
    let outcomes =
        concurrent_wrong_logins([&app, &replica], 30, |i| format!("guess{i}@acme.test")).await;
    let checked = outcomes
        .iter()
        .filter(|(status, _)| *status == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(checked, 4, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .filter(|(status, _)| *status == StatusCode::TOO_MANY_REQUESTS)
            .all(|(_, retry)| retry.is_some_and(|r| (1..=900).contains(&r))),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_successful_login_clears_the_account_counter() {
    let app = TestApp::builder()
        .env("PAAS_LOGIN_MAX_FAILURES", "3")
        .start()
        .await;
    app.signup("acme").await;
    for _ in 0..2 {
        app.login("acme", "admin@acme.test", "not the password")
            .await;
    }
    expect_status(
        app.login("acme", "admin@acme.test", PASSWORD).await,
        StatusCode::OK,
    )
    .await;
    for _ in 0..2 {
        app.login("acme", "admin@acme.test", "not the password")
            .await;
    }
    expect_status(
        app.login("acme", "admin@acme.test", PASSWORD).await,
        StatusCode::OK,
    )
    .await;
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.request(Method::POST, "/api/v1/auth/refresh")
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    let first = expect_status(refresh(&app, &admin.refresh_token).await, StatusCode::OK).await;
    let new_access = first["access_token"].as_str().unwrap();
    let new_refresh = first["refresh_token"].as_str().unwrap();
    assert_ne!(new_refresh, admin.refresh_token);
    expect_status(
        app.get("/api/v1/me", new_access).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;

    // The spent token comes back (stolen?): refused, and the whole session is revoked.
    expect_error(
        refresh(&app, &admin.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "refresh_token_reused",
    )
    .await;
    expect_error(
        refresh(&app, new_refresh).await,
        StatusCode::UNAUTHORIZED,
        "session_revoked",
    )
    .await;
    expect_error(
        app.get("/api/v1/me", new_access).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "session_revoked",
    )
    .await;
    expect_error(
        app.get("/api/v1/me", &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "session_revoked",
    )
    .await;
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE action = 'auth.refresh_reused'"),
        1
    );

    // Other sessions of the same user are untouched.
    let other = expect_status(
        app.login("acme", &admin.email, PASSWORD).await,
        StatusCode::OK,
    )
    .await;
    expect_status(
        app.get("/api/v1/me", other["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn access_and_refresh_tokens_cannot_stand_in_for_each_other() {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    expect_error(
        app.get("/api/v1/me", &admin.refresh_token)
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    expect_error(
        refresh(&app, &admin.access_token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn logout_ends_the_session_at_once() {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    let logout = app
        .request(Method::POST, "/api/v1/auth/logout")
        .json(&json!({"refresh_token": admin.refresh_token}))
        .send()
        .await
        .unwrap();
    expect_status(logout, StatusCode::NO_CONTENT).await;
    // Logging out the same session again changes nothing and is not audited twice.
    let again = app
        .request(Method::POST, "/api/v1/auth/logout")
        .json(&json!({"refresh_token": admin.refresh_token}))
        .send()
        .await
        .unwrap();
    expect_status(again, StatusCode::NO_CONTENT).await;
    expect_error(
        refresh(&app, &admin.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "session_revoked",
    )
    .await;
    expect_error(
        app.get("/api/v1/me", &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "session_revoked",
    )
    .await;
    let garbage = app
        .request(Method::POST, "/api/v1/auth/logout")
        .json(&json!({"refresh_token": "garbage"}))
        .send()
        .await
        .unwrap();
    expect_error(garbage, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // The logout is in the audit log: who, and whose session.
    let login = expect_status(
        app.login("acme", &admin.email, PASSWORD).await,
        StatusCode::OK,
    )
    .await;
    let audit = app
        .audit_events(login["access_token"].as_str().unwrap(), "auth.logout")
        .await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["actor_user_id"], admin.user_id.as_str());
    assert_eq!(audit[0]["target_id"], admin.user_id.as_str());
}

#[tokio::test]
async fn forged_tampered_and_expired_tokens_are_refused() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let viewer = app.with_user(&tenant.admin, "viewer").await;
    let claims = claims_of(&viewer.access_token);
    let payload = viewer.access_token.split('.').nth(1).unwrap().to_owned();

    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let mut as_admin = claims.clone();
    as_admin["role"] = json!("admin");
    let mut tampered: Vec<&str> = viewer.access_token.split('.').collect();
    let admin_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&as_admin).unwrap());
    tampered[1] = &admin_payload;
    let mut expired = claims.clone();
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    let mut no_aud = claims.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    let mut no_iss = claims.clone();
    no_iss.as_object_mut().unwrap().remove("iss");
    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = json!("evil");
    let mut other_tenant = claims.clone();
    other_tenant["tid"] = json!(uuid::Uuid::now_v7());
    // Every claim valid and the right secret, but no expiry: such a token would never die.
    let mut no_exp = claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");

    let cases = [
        (format!("{none_header}.{payload}."), "invalid_token"),
        (tampered.join("."), "invalid_token"),
        (
            sign(
                &as_admin,
                Algorithm::HS256,
                b"a-different-secret-of-enough-length-xx",
            ),
            "invalid_token",
        ),
        (
            sign(&claims, Algorithm::HS512, JWT_SECRET.as_bytes()),
            "invalid_token",
        ),
        (
            sign(&no_aud, Algorithm::HS256, JWT_SECRET.as_bytes()),
            "invalid_token",
        ),
        (
            sign(&no_iss, Algorithm::HS256, JWT_SECRET.as_bytes()),
            "invalid_token",
        ),
        (
            sign(&wrong_iss, Algorithm::HS256, JWT_SECRET.as_bytes()),
            "invalid_token",
        ),
        (
            sign(&other_tenant, Algorithm::HS256, JWT_SECRET.as_bytes()),
            "invalid_token",
        ),
        (
            sign(&no_exp, Algorithm::HS256, JWT_SECRET.as_bytes()),
            "invalid_token",
        ),
        (
            sign(&expired, Algorithm::HS256, JWT_SECRET.as_bytes()),
            "token_expired",
        ),
        ("' OR '1'='1".to_owned(), "invalid_token"),
    ];
    for (token, code) in cases {
        let response = app.get("/api/v1/users", &token).send().await.unwrap();
        assert!(response.headers().contains_key("www-authenticate"));
        expect_error(response, StatusCode::UNAUTHORIZED, code).await;
    }
    // A correctly signed token with role=admin still does not make a viewer an admin: the role
    // is read from the database on every request.
    let forged_role = sign(&as_admin, Algorithm::HS256, JWT_SECRET.as_bytes());
    expect_error(
        app.get("/api/v1/users", &forged_role).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn missing_and_malformed_credentials_are_clear_401s() {
    let app = TestApp::new().await;
    let response = app.request(Method::GET, "/api/v1/me").send().await.unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED, "missing_credentials").await;
    let response = app
        .request(Method::GET, "/api/v1/me")
        .header("Authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    expect_error(
        response,
        StatusCode::UNAUTHORIZED,
        "unsupported_auth_scheme",
    )
    .await;
    let response = app
        .request(Method::GET, "/api/v1/me")
        .header("X-API-Key", "' OR 1=1 --")
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
}

#[tokio::test]
async fn changing_the_password_ends_other_sessions() {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    let other = expect_status(
        app.login("acme", &admin.email, PASSWORD).await,
        StatusCode::OK,
    )
    .await;
    let wrong = app
        .post(
            "/api/v1/me/password",
            &admin.access_token,
            json!({"current_password": "nope nope nope", "new_password": "a brand new password"}),
        )
        .send()
        .await
        .unwrap();
    expect_error(wrong, StatusCode::BAD_REQUEST, "wrong_password").await;
    let too_long = app
        .post(
            "/api/v1/me/password",
            &admin.access_token,
            json!({"current_password": PASSWORD, "new_password": "n".repeat(80)}),
        )
        .send()
        .await
        .unwrap();
    expect_error(too_long, StatusCode::BAD_REQUEST, "password_too_long").await;
    let ok = app
        .post(
            "/api/v1/me/password",
            &admin.access_token,
            json!({"current_password": PASSWORD, "new_password": "a brand new password"}),
        )
        .send()
        .await
        .unwrap();
    expect_status(ok, StatusCode::NO_CONTENT).await;
    // One audit entry, for the change that happened (not the refused attempts), with no
    // password in it.
    let audit = app
        .audit_events(&admin.access_token, "user.password_changed")
        .await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["actor_user_id"], admin.user_id.as_str());
    assert_eq!(audit[0]["target_id"], admin.user_id.as_str());
    let text = serde_json::to_string(&audit).unwrap();
    assert!(!text.contains(PASSWORD) && !text.contains("a brand new password"));
    expect_status(
        app.get("/api/v1/me", &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    expect_error(
        app.get("/api/v1/me", other["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "session_revoked",
    )
    .await;
    expect_error(
        app.login("acme", &admin.email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    expect_status(
        app.login("acme", &admin.email, "a brand new password")
            .await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn signup_can_be_switched_off() {
    let app = TestApp::builder()
        .env("PAAS_ALLOW_SIGNUP", "false")
        .start()
        .await;
    let response = signup_raw(
        &app,
        json!({"tenant_name": "acme", "email": "a@acme.test", "password": PASSWORD}),
    )
    .await;
    expect_error(response, StatusCode::FORBIDDEN, "signup_disabled").await;
    assert_eq!(app.count("SELECT count(*) FROM tenants"), 0);
}

#[tokio::test]
async fn logging_in_prunes_long_expired_refresh_tokens() {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    app.sql("UPDATE refresh_tokens SET expires_at = now() - interval '2 days'");
    expect_status(
        app.login("acme", &admin.email, PASSWORD).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        app.count("SELECT count(*) FROM refresh_tokens"),
        1,
        "only the new login's token is left"
    );
}

#[tokio::test]
async fn logout_with_an_expired_refresh_token_still_ends_its_session() {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    let mut claims = claims_of(&admin.refresh_token);
    claims["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    let expired = sign(&claims, Algorithm::HS256, JWT_SECRET.as_bytes());
    expect_error(
        refresh(&app, &expired).await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
    )
    .await;
    let logout = app
        .request(Method::POST, "/api/v1/auth/logout")
        .json(&json!({"refresh_token": expired}))
        .send()
        .await
        .unwrap();
    expect_status(logout, StatusCode::NO_CONTENT).await;
    expect_error(
        app.get("/api/v1/me", &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "session_revoked",
    )
    .await;
    // A forged one (wrong secret) is still refused.
    let forged = sign(
        &claims,
        Algorithm::HS256,
        b"a-different-secret-of-enough-length-xx",
    );
    let logout = app
        .request(Method::POST, "/api/v1/auth/logout")
        .json(&json!({"refresh_token": forged}))
        .send()
        .await
        .unwrap();
    expect_error(logout, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test]
async fn guessing_the_current_password_is_throttled_like_logins() {
    let app = TestApp::builder()
        .env("PAAS_LOGIN_MAX_FAILURES", "2")
        .start()
        .await;
    let admin = app.signup("acme").await.admin;
    let guess = || {
        app.post(
            "/api/v1/me/password",
            &admin.access_token,
            json!({"current_password": "a guessed password", "new_password": "a brand new password"}),
        )
        .send()
    };
    for _ in 0..2 {
        expect_error(
            guess().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "wrong_password",
        )
        .await;
    }
    expect_error(
        guess().await.unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_login_attempts",
    )
    .await;
    // The same counter guards the login.
    expect_error(
        app.login("acme", &admin.email, PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_login_attempts",
    )
    .await;
}

#[tokio::test]
async fn responses_with_tokens_are_never_cached() {
    let app = TestApp::new().await;
    app.signup("acme").await;
    let response = app.login("acme", "admin@acme.test", PASSWORD).await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    expect_status(response, StatusCode::OK).await;
}
