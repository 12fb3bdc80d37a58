//! No secret a test uses — password, API key, access or refresh token, JWT secret, master key,
//! operator token, database password — ever appears in the logs (at debug level, trace for our
//! own crates) or in an error body.
// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{JWT_SECRET, MASTER_KEY, OPERATOR_TOKEN, PASSWORD, TestApp, expect_status};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn secrets_never_reach_logs_or_error_bodies() {
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_env_filter("debug,paas_api=trace,paas_auth=trace,paas_persistence=trace")
        .json()
        .init();

    // The server under test reaches its database through a URL with a password (the test
    // server trusts local connections, so the password is carried but never checked); the
    // first server only makes that database.
    let db_password = "db-password-SECRET-0123456789";
    let maker = TestApp::new().await;
    let mut database_url = url::Url::parse(maker.db.url()).unwrap();
    database_url.set_password(Some(db_password)).unwrap();
    let app = TestApp::builder()
        .replica_of(&maker)
        .env("DATABASE_URL", database_url.as_str())
        .env("PAAS_MASTER_KEY", MASTER_KEY)
        .env("PAAS_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("PAAS_LOGIN_MAX_FAILURES", "2")
        .start()
        .await;
    drop(maker);
    let tenant = app.signup("acme").await;
    let admin = &tenant.admin;
    let mut secrets = vec![
        PASSWORD.to_owned(),
        JWT_SECRET.to_owned(),
        MASTER_KEY.to_owned(),
        OPERATOR_TOKEN.to_owned(),
        db_password.to_owned(),
        admin.access_token.clone(),
        admin.refresh_token.clone(),
    ];
    let mut bodies = Vec::new();

    // The operator API, with the operator token and with near misses of it.
    let tenants = app
        .operator(Method::GET, "/api/v1/admin/tenants")
        .send()
        .await
        .unwrap();
    bodies.push(expect_status(tenants, StatusCode::OK).await.to_string());
    let suspended = app
        .operator(
            Method::POST,
            &format!("/api/v1/admin/tenants/{}/suspend", tenant.id),
        )
        .send()
        .await
        .unwrap();
    bodies.push(expect_status(suspended, StatusCode::OK).await.to_string());
    let reactivated = app
        .operator(
            Method::POST,
            &format!("/api/v1/admin/tenants/{}/reactivate", tenant.id),
        )
        .send()
        .await
        .unwrap();
    bodies.push(expect_status(reactivated, StatusCode::OK).await.to_string());
    for token in [format!("{OPERATOR_TOKEN}x"), admin.access_token.clone()] {
        let refused = app
            .request(Method::GET, "/api/v1/admin/tenants")
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        bodies.push(refused.text().await.unwrap());
    }

    let invited = app
        .post(
            "/api/v1/users",
            &admin.access_token,
            json!({"email": "v@acme.test", "role": "viewer"}),
        )
        .send()
        .await
        .unwrap();
    let invited = expect_status(invited, StatusCode::CREATED).await;
    secrets.push(invited["temporary_password"].as_str().unwrap().to_owned());
    let (key_id, key) = app.with_api_key(admin, &["admin"]).await;
    let provider_key = "sk-provider-SECRET-0123456789";
    secrets.push(provider_key.to_owned());
    let provider = app
        .post(
            "/api/v1/providers",
            &admin.access_token,
            json!({"name": "p", "kind": "openai", "api_key": provider_key}),
        )
        .send()
        .await
        .unwrap();
    bodies.push(provider.text().await.unwrap());
    let rotated = app
        .post(
            "/api/v1/providers",
            &admin.access_token,
            json!({"name": "p", "kind": "openai", "api_key": provider_key}),
        )
        .send()
        .await
        .unwrap();
    bodies.push(rotated.text().await.unwrap());
    bodies.push(
        app.get("/api/v1/providers", &admin.access_token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    secrets.push(key.clone());
    app.get("/api/v1/me", &key).send().await.unwrap();
    app.request(Method::GET, "/api/v1/me")
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();

    // Failures, which are where secrets usually leak.
    let wrong = "this-is-a-wrong-password-42";
    secrets.push(wrong.to_owned());
    for _ in 0..3 {
        bodies.push(
            app.login("acme", &admin.email, wrong)
                .await
                .text()
                .await
                .unwrap(),
        );
    }
    let typo = format!("{key}x");
    let refreshed = app
        .request(Method::POST, "/api/v1/auth/refresh")
        .json(&json!({"refresh_token": admin.refresh_token}))
        .send()
        .await
        .unwrap();
    let refreshed = expect_status(refreshed, StatusCode::OK).await;
    secrets.push(refreshed["refresh_token"].as_str().unwrap().to_owned());
    secrets.push(refreshed["access_token"].as_str().unwrap().to_owned());
    for response in [
        app.get("/api/v1/me", &typo).send().await.unwrap(),
        app.request(Method::POST, "/api/v1/auth/refresh")
            .json(&json!({"refresh_token": admin.refresh_token}))
            .send()
            .await
            .unwrap(),
        app.post(
            "/api/v1/users",
            &admin.access_token,
            json!({"email": "x@acme.test", "role": "user", "password": 12345}),
        )
        .send()
        .await
        .unwrap(),
        app.post(
            "/api/v1/me/password",
            &key,
            json!({"current_password": PASSWORD, "new_password": wrong}),
        )
        .send()
        .await
        .unwrap(),
        app.request(Method::POST, "/api/v1/auth/signup")
            .json(&json!({"tenant_name": "x", "email": "a@b.test", "password": wrong.repeat(4)}))
            .send()
            .await
            .unwrap(),
    ] {
        bodies.push(response.text().await.unwrap());
    }
    app.delete(&format!("/api/v1/api-keys/{key_id}"), &admin.access_token)
        .send()
        .await
        .unwrap();
    bodies.push(
        app.get("/api/v1/me", &key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    bodies.push(
        app.get("/api/v1/audit-events?limit=200", &admin.access_token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    drop(app);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.len() > 1000,
        "the test captured no logs; it would prove nothing"
    );
    assert!(
        logs.contains("/api/v1/auth/login"),
        "request logs are missing"
    );
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret appears in the logs: {}…",
            &secret[..6]
        );
        // Refresh and access tokens share a header; compare the signature part too.
        if let Some(signature) = secret.rsplit('.').next().filter(|s| s.len() > 20) {
            assert!(
                !logs.contains(signature),
                "a token signature appears in the logs"
            );
        }
        for body in &bodies {
            assert!(
                !body.contains(secret.as_str()),
                "a secret appears in a response body: {body}"
            );
        }
    }
}
