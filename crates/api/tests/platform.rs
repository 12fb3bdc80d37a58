//! Probes, the OpenAPI document, and behaviour when Redis is down.
// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Binary, PASSWORD, TestApp, count_on, expect_error, expect_status};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// An empty database (no tables, no migrations applied) of this test's own, dropped with the
/// value.
struct EmptyDatabase {
    name: String,
    url: String,
}

impl EmptyDatabase {
    fn new() -> Self {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        let name = format!("paas_empty_{}", uuid::Uuid::new_v4().simple());
        let mut admin = diesel::PgConnection::establish(&paas_testing::server_url()).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let mut url = url::Url::parse(&paas_testing::server_url()).unwrap();
        url.set_path(&format!("/{name}"));
        Self {
            name,
            url: url.to_string(),
        }
    }

    /// A counting query on this database, as its owner.
    fn count(&self, query: &str) -> i64 {
        use diesel::Connection;
        count_on(
            &mut diesel::PgConnection::establish(&self.url).unwrap(),
            query,
        )
    }

    fn tables_named(&self, table: &str) -> i64 {
        self.count(&format!(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_name = '{table}'"
        ))
    }
}

impl Drop for EmptyDatabase {
    fn drop(&mut self) {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        if let Ok(mut admin) = diesel::PgConnection::establish(&paas_testing::server_url()) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// The migrations the binary embeds (one directory each).
fn migration_count() -> i64 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../persistence/migrations");
    let count = std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().is_dir())
        .count();
    i64::try_from(count).unwrap()
}

/// Polls `GET /readyz` for up to `seconds`; the last status.
async fn readyz_within(base: &str, seconds: u64) -> Option<StatusCode> {
    let mut status = None;
    for _ in 0..seconds * 10 {
        if let Ok(response) = reqwest::get(format!("{base}/readyz")).await {
            status = Some(response.status());
            if response.status() == StatusCode::OK {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    status
}

async fn signup_on(base: &str, name: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/signup"))
        .json(
            &json!({"tenant_name": name, "email": format!("a@{name}.test"), "password": PASSWORD}),
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn serve_migrates_an_empty_database_before_serving() {
    let db = EmptyDatabase::new();
    assert_eq!(db.tables_named("tenants"), 0);
    let server = Binary::start_with(&db.url, &["serve"], &[]).await;
    assert_eq!(
        readyz_within(&server.base, 30).await,
        Some(StatusCode::OK),
        "the server never became ready"
    );
    assert_eq!(db.tables_named("tenants"), 1);
    assert_eq!(
        db.count("SELECT count(*) FROM __diesel_schema_migrations"),
        migration_count(),
        "every migration is applied"
    );
    let signed_up =
        expect_status(signup_on(&server.base, "fresh").await, StatusCode::CREATED).await;
    let token = signed_up["access_token"].as_str().unwrap();
    let me = reqwest::Client::new()
        .get(format!("{}/api/v1/me", server.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_status(me, StatusCode::OK).await["tenant"]["name"],
        "fresh"
    );
    assert_eq!(db.count("SELECT count(*) FROM tenants"), 1);
}

#[tokio::test]
async fn serve_with_no_migrate_leaves_an_empty_database_alone() {
    let db = EmptyDatabase::new();
    let server = Binary::start_with(&db.url, &["serve", "--no-migrate"], &[]).await;
    // It serves (PostgreSQL answers), but there is nothing to sign up into.
    let health = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let signup = signup_on(&server.base, "fresh").await;
    let status = signup.status();
    let body = signup.text().await.unwrap();
    assert!(status.is_server_error(), "{status} {body}");
    assert!(
        !body.contains("tenants"),
        "the error names the schema: {body}"
    );
    assert_eq!(db.tables_named("tenants"), 0, "--no-migrate created tables");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_name = '__diesel_schema_migrations'"
        ),
        0
    );
}

#[tokio::test]
async fn probes_report_liveness_and_readiness() {
    let app = TestApp::new().await;
    let health = app.request(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(expect_status(health, StatusCode::OK).await["status"], "ok");
    let ready = app.request(Method::GET, "/readyz").send().await.unwrap();
    let ready = expect_status(ready, StatusCode::OK).await;
    assert_eq!(
        (ready["postgres"].as_str(), ready["redis"].as_str()),
        (Some("ok"), Some("ok"))
    );
}

#[tokio::test]
async fn without_redis_the_server_is_not_ready_but_logins_work_and_stay_throttled() {
    // Nothing listens on port 1: Redis is "down" for this server.
    let app = TestApp::builder()
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("PAAS_LOGIN_MAX_FAILURES", "2")
        .start()
        .await;
    let ready = app.request(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(ready.headers()["retry-after"], "5");
    let ready = expect_status(ready, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        (ready["postgres"].as_str(), ready["redis"].as_str()),
        (Some("ok"), Some("unavailable"))
    );

    app.signup("acme").await;
    expect_status(
        app.login("acme", "admin@acme.test", PASSWORD).await,
        StatusCode::OK,
    )
    .await;
    for _ in 0..2 {
        expect_error(
            app.login("acme", "admin@acme.test", "wrong password").await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    expect_error(
        app.login("acme", "admin@acme.test", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_login_attempts",
    )
    .await;
}

#[tokio::test]
async fn without_postgres_requests_get_a_503_with_retry_after() {
    let app = TestApp::builder()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nothing")
        .env("PAAS_DB_ACQUIRE_TIMEOUT_MS", "500")
        .start()
        .await;
    let ready = app.request(Method::GET, "/readyz").send().await.unwrap();
    let ready = expect_status(ready, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(ready["postgres"], "unavailable");
    let login = app.login("acme", "admin@acme.test", PASSWORD).await;
    assert!(login.headers().contains_key("retry-after"));
    expect_error(
        login,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = TestApp::new().await;
    let doc: Value = app.openapi().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut routes: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes.sort();
    let expected = [
        "DELETE /api/v1/agents/{id}",
        "DELETE /api/v1/api-keys/{id}",
        "DELETE /api/v1/providers/{id}",
        "DELETE /api/v1/sessions/{id}",
        "DELETE /api/v1/users/{id}",
        "GET /api/v1/admin/tenants",
        "GET /api/v1/admin/tenants/{id}",
        "GET /api/v1/agents",
        "GET /api/v1/agents/{id}",
        "GET /api/v1/api-keys",
        "GET /api/v1/audit-events",
        "GET /api/v1/me",
        "GET /api/v1/openapi.json",
        "GET /api/v1/providers",
        "GET /api/v1/providers/{id}",
        "GET /api/v1/runs/{id}",
        "GET /api/v1/runs/{id}/events",
        "GET /api/v1/sessions",
        "GET /api/v1/sessions/{id}",
        "GET /api/v1/sessions/{id}/export",
        "GET /api/v1/sessions/{id}/messages",
        "GET /api/v1/tenant",
        "GET /api/v1/tenant/quota",
        "GET /api/v1/usage",
        "GET /api/v1/users",
        "GET /api/v1/users/{id}",
        "GET /healthz",
        "GET /metrics",
        "GET /readyz",
        "GET /v1/models",
        "PATCH /api/v1/admin/tenants/{id}",
        "PATCH /api/v1/agents/{id}",
        "PATCH /api/v1/me",
        "PATCH /api/v1/providers/{id}",
        "PATCH /api/v1/sessions/{id}",
        "PATCH /api/v1/tenant",
        "PATCH /api/v1/users/{id}",
        "POST /api/v1/admin/tenants/{id}/reactivate",
        "POST /api/v1/admin/tenants/{id}/suspend",
        "POST /api/v1/agents",
        "POST /api/v1/api-keys",
        "POST /api/v1/auth/login",
        "POST /api/v1/auth/logout",
        "POST /api/v1/auth/refresh",
        "POST /api/v1/auth/signup",
        "POST /api/v1/chat/completions",
        "POST /api/v1/me/password",
        "POST /api/v1/providers",
        "POST /api/v1/runs/{id}/cancel",
        "POST /api/v1/sessions",
        "POST /api/v1/users",
        "POST /v1/chat/completions",
        "PUT /api/v1/admin/tenants/{id}/quota",
    ];
    assert_eq!(routes, expected);
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("bearer") && schemes.contains_key("api_key"));
    for schema in [
        "SignupRequest",
        "User",
        "Tenant",
        "ApiKey",
        "AuditEvent",
        "ErrorBody",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema} missing"
        );
    }
}

#[tokio::test]
async fn the_audit_log_records_who_did_what_from_where() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    let admin = &tenant.admin;
    let viewer = app.with_user(admin, "viewer").await;
    let (key_id, _) = app.with_api_key(admin, &["chat"]).await;
    app.delete(&format!("/api/v1/api-keys/{key_id}"), &admin.access_token)
        .send()
        .await
        .unwrap();
    app.patch(
        "/api/v1/tenant",
        &admin.access_token,
        serde_json::json!({"settings": {"theme": "dark"}}),
    )
    .send()
    .await
    .unwrap();
    app.login("acme", &viewer.email, "wrong password").await;

    let all = expect_status(
        app.get("/api/v1/audit-events", &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let actions: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "auth.login_failed",
            "tenant.updated",
            "api_key.revoked",
            "api_key.created",
            "auth.login",
            "user.created",
            "user.created",
            "tenant.created"
        ]
    );
    let failed = &all["items"][0];
    assert_eq!(failed["actor_user_id"], viewer.user_id.as_str());
    assert_eq!(failed["ip"], "127.0.0.1");
    assert_eq!(failed["details"]["reason"], "wrong_password");
    assert_eq!(
        all["items"][1]["details"]["settings"]["to"],
        serde_json::json!({"theme": "dark"})
    );

    // Paging, newest first.
    let first = expect_status(
        app.get("/api/v1/audit-events?limit=3", &admin.access_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let before = first["next_before"].as_str().unwrap();
    let second = app
        .get(
            &format!("/api/v1/audit-events?limit=3&before={before}"),
            &admin.access_token,
        )
        .send()
        .await
        .unwrap();
    let second = expect_status(second, StatusCode::OK).await;
    assert_eq!(second["items"][0]["action"], "api_key.created");
    let created = app
        .get(
            "/api/v1/audit-events?action=user.created",
            &admin.access_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_status(created, StatusCode::OK).await["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn the_dashboard_is_served_at_the_root_and_never_shadows_the_api() {
    let app = TestApp::new().await;
    let root = app.request(Method::GET, "/").send().await.unwrap();
    let built = root.status() == StatusCode::OK;
    let root_type = root.headers()["content-type"].to_str().unwrap().to_owned();
    let root_body = root.text().await.unwrap();
    if built {
        assert!(root_type.starts_with("text/html"), "{root_type}");
        assert!(
            root_body.contains("<div id=\"root\""),
            "the SPA's index.html"
        );
    } else {
        assert!(root_body.contains("not built"), "{root_body}");
    }
    // Client-side routes get the same page, with a strict CSP when it is the dashboard.
    let route = app.request(Method::GET, "/chat/abc").send().await.unwrap();
    if built {
        assert!(
            route.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
    }
    assert_eq!(route.text().await.unwrap(), root_body);
    // The API is never shadowed.
    for (method, path) in [
        (Method::GET, "/api/v1/nope"),
        (Method::GET, "/api"),
        (Method::GET, "/v1/nope"),
        (Method::POST, "/"),
        (Method::GET, "/missing.js"),
    ] {
        let response = app.request(method.clone(), path).send().await.unwrap();
        expect_error(response, StatusCode::NOT_FOUND, "route_not_found").await;
    }
}

#[tokio::test]
async fn metrics_show_chats_tokens_http_and_dependencies_behind_their_token() {
    let app = TestApp::builder()
        .env("PAAS_METRICS_TOKEN", "metrics-token-0123456789")
        .start()
        .await;
    let acme = app.signup("acme").await;
    app.agent(
        &acme.admin,
        serde_json::json!({"name": "helper", "tools": ["calculator"]}),
    )
    .await;
    app.chat(
        &acme.admin.access_token,
        serde_json::json!({"agent": "helper", "message": "what is 6 * 7?"}),
    )
    .await;
    let denied = app.request(Method::GET, "/metrics").send().await.unwrap();
    expect_error(denied, StatusCode::UNAUTHORIZED, "invalid_metrics_token").await;
    let text = app
        .request(Method::GET, "/metrics")
        .bearer_auth("metrics-token-0123456789")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let tenant = format!("tenant_id=\"{}\"", acme.id);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains(&tenant))
            .unwrap_or_else(|| panic!("no {name} for the tenant in:\n{text}"))
            .to_owned()
    };
    assert!(line("chat_requests_total{").contains("status=\"completed\""));
    assert!(line("chat_requests_total{").contains("agent_type=\"mock\""));
    assert!(line("chat_duration_seconds_count{").ends_with(" 1"));
    assert!(line("token_usage_total{").contains("model=\"mock\""));
    assert!(line("active_sessions{").ends_with(" 0"));
    for series in [
        "http_requests_total{method=\"POST\",route=\"/api/v1/chat/completions\",status=\"200\"}",
        "time_to_first_token_seconds_bucket{provider=\"mock\"",
        "upstream_request_duration_seconds_bucket{provider=\"mock\"",
        "db_pool_connections{state=\"max\"} 8",
        "redis_up 1",
        "usage_queue_depth",
        "# HELP chat_requests_total",
    ] {
        assert!(text.contains(series), "{series} missing");
    }
    // Route patterns, never raw ids.
    assert!(!text.contains(&acme.admin.user_id));
}

#[tokio::test]
async fn every_response_names_its_request_id() {
    let app = TestApp::new().await;
    let mut ids = Vec::new();
    for path in ["/healthz", "/api/v1/me", "/nowhere"] {
        let response = app.request(Method::GET, path).send().await.unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(id.len(), 36, "a UUID: {id}");
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "one id per request");
}

#[tokio::test]
async fn paas_web_dir_serves_a_dashboard_build_from_disk() {
    let dir = std::env::temp_dir().join(format!("paas-web-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), "<div id=\"root\"></div>").unwrap();
    std::fs::write(dir.join("assets/app-1234.js"), "console.log(1)").unwrap();
    let app = TestApp::builder()
        .env("PAAS_WEB_DIR", dir.to_str().unwrap())
        .start()
        .await;
    let script = app
        .request(Method::GET, "/assets/app-1234.js")
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert!(
        script.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(script.text().await.unwrap(), "console.log(1)");
    let page = app
        .request(Method::GET, "/settings/keys")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.text().await.unwrap(), "<div id=\"root\"></div>");
    let missing = app
        .request(Method::GET, "/assets/nope.js")
        .send()
        .await
        .unwrap();
    expect_error(missing, StatusCode::NOT_FOUND, "route_not_found").await;
    let escaped = app
        .request(Method::GET, "/assets/..%2f..%2findex.html")
        .send()
        .await
        .unwrap();
    assert_eq!(escaped.status(), StatusCode::NOT_FOUND);
    std::fs::remove_dir_all(dir).unwrap();
}
