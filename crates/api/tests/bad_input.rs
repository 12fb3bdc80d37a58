//! Bad input of every kind gets a clear 4xx with a stable code, writes nothing, and never
//! causes a 500.
// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PASSWORD, TestApp, expect_error, expect_status};
use reqwest::{Method, StatusCode};
use serde_json::json;

const SQL: &[&str] = &[
    "' OR '1'='1",
    "'; DROP TABLE users; --",
    "\" OR \"\"=\"",
    "1; SELECT pg_sleep(10)",
    "admin'--",
    "$1 UNION SELECT key_hash FROM api_keys",
];

#[tokio::test]
async fn malformed_bodies_are_refused_before_anything_is_written() {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    let writes = [
        "/api/v1/users",
        "/api/v1/api-keys",
        "/api/v1/auth/signup",
        "/api/v1/auth/login",
    ];
    for path in writes {
        for (body, content_type, status, code) in [
            (
                "{\"email\": ",
                "application/json",
                StatusCode::BAD_REQUEST,
                "invalid_json",
            ),
            (
                "not json at all",
                "application/json",
                StatusCode::BAD_REQUEST,
                "invalid_json",
            ),
            (
                "[1, 2, 3]",
                "application/json",
                StatusCode::BAD_REQUEST,
                "invalid_json",
            ),
            (
                "null",
                "application/json",
                StatusCode::BAD_REQUEST,
                "invalid_json",
            ),
            (
                "{\"email\": \"a@b.test\"}",
                "text/plain",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
        ] {
            let response = app
                .request(Method::POST, path)
                .bearer_auth(&admin.access_token)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            expect_error(response, status, code).await;
        }
        // Invalid UTF-8.
        let response = app
            .request(Method::POST, path)
            .bearer_auth(&admin.access_token)
            .header("content-type", "application/json")
            .body(vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'])
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::BAD_REQUEST, "invalid_json").await;
        // Deeply nested JSON.
        let nested = "[".repeat(100_000) + &"]".repeat(100_000);
        let response = app
            .request(Method::POST, path)
            .bearer_auth(&admin.access_token)
            .header("content-type", "application/json")
            .body(nested)
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::BAD_REQUEST, "invalid_json").await;
    }
    assert_eq!(app.count("SELECT count(*) FROM users"), 1);
    assert_eq!(app.count("SELECT count(*) FROM api_keys"), 0);
    assert_eq!(app.count("SELECT count(*) FROM tenants"), 1);
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_refused() {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    let huge = json!({"email": "a@acme.test", "role": "user", "display_name": "x".repeat(2 * 1024 * 1024)});
    let response = app
        .post("/api/v1/users", &admin.access_token, huge)
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let huge =
        json!({"tenant_name": "big", "email": "a@b.test", "password": "p".repeat(1_100_000)});
    let response = app
        .request(Method::POST, "/api/v1/auth/signup")
        .json(&huge)
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_eq!(app.count("SELECT count(*) FROM users"), 1);
}

#[tokio::test]
async fn wrong_types_and_missing_fields_name_the_problem() {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    for (body, mention) in [
        (json!({"email": 42, "role": "user"}), "invalid type"),
        (json!({"email": "a@acme.test"}), "missing field `role`"),
        (
            json!({"email": "a@acme.test", "role": "root"}),
            "unknown variant",
        ),
        (
            json!({"email": "a@acme.test", "role": "user", "password": ["x"]}),
            "invalid type",
        ),
        (
            json!({"email": "a@acme.test", "role": "user", "shoe_size": 42}),
            "unknown field `shoe_size`",
        ),
    ] {
        let response = app
            .post("/api/v1/users", &admin.access_token, body)
            .send()
            .await
            .unwrap();
        let error = expect_error(response, StatusCode::BAD_REQUEST, "invalid_json").await;
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains(mention),
            "{error}"
        );
    }
    let settings = app
        .patch(
            "/api/v1/tenant",
            &admin.access_token,
            json!({"settings": [1, 2]}),
        )
        .send()
        .await
        .unwrap();
    expect_error(settings, StatusCode::BAD_REQUEST, "invalid_settings").await;
    let mut deep = json!(1);
    for _ in 0..20 {
        deep = json!({"a": deep});
    }
    let settings = app
        .patch(
            "/api/v1/tenant",
            &admin.access_token,
            json!({"settings": deep}),
        )
        .send()
        .await
        .unwrap();
    expect_error(settings, StatusCode::BAD_REQUEST, "invalid_settings").await;
}

#[tokio::test]
async fn sql_in_fields_is_refused_by_validation_or_stored_as_plain_text() {
    // Many failed logins below: keep the throttle out of the way.
    let app = TestApp::builder()
        .env("PAAS_LOGIN_MAX_FAILURES", "100")
        .env("PAAS_LOGIN_MAX_FAILURES_PER_IP", "100")
        .start()
        .await;
    let admin = app.signup("acme").await.admin;
    let mut accepted_emails = 0;
    for sql in SQL {
        // Fields with a shape refuse it.
        let signup = app
            .request(Method::POST, "/api/v1/auth/signup")
            .json(&json!({"tenant_name": sql, "email": "a@b.test", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        expect_error(signup, StatusCode::BAD_REQUEST, "invalid_tenant_name").await;
        // An apostrophe is legal in an email address (o'brien@…), so some of these are valid
        // addresses: those are stored verbatim; the rest are refused.
        let email = format!("a{sql}@acme.test");
        let user = app
            .post(
                "/api/v1/users",
                &admin.access_token,
                json!({"email": email, "role": "user"}),
            )
            .send()
            .await
            .unwrap();
        if email.contains(' ') || email.contains('"') || email.contains(';') {
            expect_error(user, StatusCode::BAD_REQUEST, "invalid_email").await;
        } else {
            assert_eq!(
                expect_status(user, StatusCode::CREATED).await["user"]["email"],
                email.to_lowercase()
            );
            accepted_emails += 1;
        }
        expect_error(
            app.login(sql, "admin@acme.test", PASSWORD).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
        expect_error(
            app.login("acme", sql, PASSWORD).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
        expect_error(
            app.login("acme", "admin@acme.test", sql).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
        let audit = app
            .get(
                &format!("/api/v1/audit-events?action={}", urlencode(sql)),
                &admin.access_token,
            )
            .send()
            .await
            .unwrap();
        expect_error(audit, StatusCode::BAD_REQUEST, "invalid_action").await;
        let scope = app
            .post(
                "/api/v1/api-keys",
                &admin.access_token,
                json!({"name": "k", "scopes": [sql]}),
            )
            .send()
            .await
            .unwrap();
        expect_error(scope, StatusCode::BAD_REQUEST, "invalid_scopes").await;

        // Free text is data: stored and returned exactly as sent.
        let key = app
            .post(
                "/api/v1/api-keys",
                &admin.access_token,
                json!({"name": sql, "scopes": ["chat"]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(expect_status(key, StatusCode::CREATED).await["name"], *sql);
        let me = app
            .patch(
                "/api/v1/me",
                &admin.access_token,
                json!({"display_name": sql}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_status(me, StatusCode::OK).await["display_name"],
            *sql
        );
    }
    // The tables are intact and hold exactly what was sent.
    assert_eq!(accepted_emails, 1, "only admin'-- is a well-formed address");
    assert_eq!(app.count("SELECT count(*) FROM users"), 1 + accepted_emails);
    assert_eq!(app.count("SELECT count(*) FROM api_keys"), SQL.len() as i64);
    assert_eq!(app.count("SELECT count(*) FROM tenants"), 1);
}

#[tokio::test]
async fn sql_in_headers_is_harmless() {
    let app = TestApp::new().await;
    let admin = app.signup("acme").await.admin;
    for sql in SQL {
        let bearer = app
            .request(Method::GET, "/api/v1/me")
            .header("Authorization", format!("Bearer {sql}"))
            .send()
            .await
            .unwrap();
        expect_error(bearer, StatusCode::UNAUTHORIZED, "invalid_token").await;
        let key = app
            .request(Method::GET, "/api/v1/me")
            .header("X-API-Key", *sql)
            .send()
            .await
            .unwrap();
        expect_error(key, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
        let scheme = app
            .request(Method::GET, "/api/v1/me")
            .header("Authorization", *sql)
            .send()
            .await
            .unwrap();
        assert_eq!(scheme.status(), StatusCode::UNAUTHORIZED);
        // Headers the server records are stored verbatim, not executed.
        let response = app
            .get("/api/v1/me", &admin.access_token)
            .header("User-Agent", *sql)
            .header("X-Forwarded-For", *sql)
            .send()
            .await
            .unwrap();
        expect_status(response, StatusCode::OK).await;
        let login = app
            .request(Method::POST, "/api/v1/auth/login")
            .header("User-Agent", *sql)
            .header("X-Forwarded-For", *sql)
            .json(&json!({"tenant": "acme", "email": "admin@acme.test", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        expect_status(login, StatusCode::OK).await;
    }
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE action = 'auth.login'"),
        SQL.len() as i64
    );
    // Without PAAS_TRUST_PROXY_HEADERS, X-Forwarded-For is ignored: the address is the peer's.
    assert_eq!(
        app.count(
            "SELECT count(*) FROM audit_events WHERE action = 'auth.login' AND ip = '127.0.0.1'"
        ),
        SQL.len() as i64
    );
    assert_eq!(app.count("SELECT count(*) FROM users"), 1);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_404s() {
    let app = TestApp::new().await;
    for (method, path) in [
        // (Other paths are the dashboard's client-side routes: tests/platform.rs.)
        (Method::GET, "/api/nope"),
        (Method::GET, "/api/v2/me"),
        (Method::PUT, "/api/v1/me"),
        (Method::GET, "/api/v1/users/"),
    ] {
        let response = app.request(method, path).send().await.unwrap();
        expect_error(response, StatusCode::NOT_FOUND, "route_not_found").await;
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
