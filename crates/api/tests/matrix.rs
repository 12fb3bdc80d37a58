//! The role × scope × route matrix of `docs/authorization.md`, walked over HTTP: every route,
//! as every role with a session and with keys of different scopes.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PASSWORD, Session, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ALL: &[&str] = &["admin", "user", "viewer"];
const WRITERS: &[&str] = &["admin", "user"];
const ADMINS: &[&str] = &["admin"];

/// What an API key needs on a route.
#[derive(Clone, Copy, Debug)]
enum Key {
    /// Any valid key.
    Any,
    /// Any of these scopes (or `admin`, which counts as every scope).
    Scopes(&'static [&'static str]),
    /// Keys are refused.
    SessionOnly,
}

struct Route {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    roles: &'static [&'static str],
    key: Key,
}

fn routes() -> Vec<Route> {
    let r = |method, path, body, roles, key| Route {
        method,
        path,
        body,
        roles,
        key,
    };
    let admin_scope = Key::Scopes(&["admin"]);
    vec![
        r(Method::GET, "/api/v1/me", None, ALL, Key::Any),
        r(Method::GET, "/api/v1/tenant", None, ALL, Key::Any),
        r(
            Method::PATCH,
            "/api/v1/me",
            Some(json!({"display_name": "Someone"})),
            ALL,
            Key::SessionOnly,
        ),
        r(
            Method::POST,
            "/api/v1/me/password",
            Some(json!({"current_password": PASSWORD, "new_password": PASSWORD})),
            ALL,
            Key::SessionOnly,
        ),
        r(Method::GET, "/api/v1/api-keys", None, ALL, admin_scope),
        r(
            Method::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "k", "scopes": ["agents:read"]})),
            ALL,
            admin_scope,
        ),
        r(Method::GET, "/api/v1/users", None, ADMINS, admin_scope),
        r(
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": "new@acme.test", "role": "viewer"})),
            ADMINS,
            admin_scope,
        ),
        r(
            Method::PATCH,
            "/api/v1/tenant",
            Some(json!({"settings": {"theme": "dark"}})),
            ADMINS,
            admin_scope,
        ),
        r(
            Method::GET,
            "/api/v1/audit-events",
            None,
            ADMINS,
            admin_scope,
        ),
        r(
            Method::GET,
            "/api/v1/agents",
            None,
            ALL,
            Key::Scopes(&["agents:read"]),
        ),
        r(
            Method::POST,
            "/api/v1/agents",
            Some(json!({"name": "made-in-matrix"})),
            ADMINS,
            Key::Scopes(&["agents:write"]),
        ),
        r(Method::GET, "/api/v1/providers", None, ADMINS, admin_scope),
        r(
            Method::POST,
            "/api/v1/providers",
            Some(json!({"name": "p", "kind": "mock"})),
            ADMINS,
            admin_scope,
        ),
        r(
            Method::GET,
            "/api/v1/sessions",
            None,
            ALL,
            Key::Scopes(&["sessions:read"]),
        ),
        r(
            Method::POST,
            "/api/v1/sessions",
            Some(json!({"agent": "matrix"})),
            WRITERS,
            Key::Scopes(&["sessions:write"]),
        ),
        r(
            Method::POST,
            "/api/v1/chat/completions",
            Some(json!({"agent": "matrix", "message": "hi"})),
            WRITERS,
            Key::Scopes(&["chat"]),
        ),
        r(
            Method::GET,
            "/api/v1/tenant/quota",
            None,
            ALL,
            Key::Scopes(&["usage:read"]),
        ),
        r(
            Method::GET,
            "/api/v1/usage",
            None,
            ALL,
            Key::Scopes(&["usage:read"]),
        ),
        r(
            Method::GET,
            "/v1/models",
            None,
            ALL,
            Key::Scopes(&["agents:read", "chat"]),
        ),
        r(
            Method::POST,
            "/v1/chat/completions",
            Some(json!({"model": "matrix", "messages": [{"role": "user", "content": "hi"}]})),
            WRITERS,
            Key::Scopes(&["chat"]),
        ),
    ]
}

struct Caller {
    label: String,
    token: String,
    role: &'static str,
    /// `None` for a session; the key's scopes otherwise.
    scopes: Option<Vec<&'static str>>,
}

fn expected(route: &Route, caller: &Caller) -> Result<(), &'static str> {
    if !route.roles.contains(&caller.role) {
        return Err("forbidden");
    }
    match (&caller.scopes, route.key) {
        (None, _) | (Some(_), Key::Any) => Ok(()),
        (Some(_), Key::SessionOnly) => Err("session_required"),
        (Some(held), Key::Scopes(needed)) => {
            if held.contains(&"admin") || needed.iter().any(|n| held.contains(n)) {
                Ok(())
            } else {
                Err("insufficient_scope")
            }
        }
    }
}

async fn callers(app: &TestApp, admin: &Session) -> Vec<Caller> {
    let user = app.with_user(admin, "user").await;
    let viewer = app.with_user(admin, "viewer").await;
    let mut callers = Vec::new();
    for (role, session) in [("admin", admin), ("user", &user), ("viewer", &viewer)] {
        callers.push(Caller {
            label: format!("{role} session"),
            token: session.access_token.clone(),
            role,
            scopes: None,
        });
    }
    let keys: [(&str, &Session, &[&'static str]); 7] = [
        ("admin", admin, &["admin"]),
        (
            "admin",
            admin,
            &[
                "chat",
                "agents:read",
                "agents:write",
                "sessions:read",
                "sessions:write",
                "usage:read",
            ],
        ),
        ("admin", admin, &["usage:read"]),
        (
            "user",
            &user,
            &[
                "chat",
                "sessions:read",
                "sessions:write",
                "usage:read",
                "agents:read",
            ],
        ),
        ("user", &user, &["chat"]),
        (
            "viewer",
            &viewer,
            &["agents:read", "sessions:read", "usage:read"],
        ),
        ("viewer", &viewer, &["usage:read"]),
    ];
    for (role, session, scopes) in keys {
        let (_, key) = app.with_api_key(session, scopes).await;
        callers.push(Caller {
            label: format!("{role} key {scopes:?}"),
            token: key,
            role,
            scopes: Some(scopes.to_vec()),
        });
    }
    callers
}

#[tokio::test]
async fn every_route_enforces_the_documented_matrix() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    app.agent(&tenant.admin, json!({"name": "matrix"})).await;
    let callers = callers(&app, &tenant.admin).await;
    let mut checked = 0;
    for route in routes() {
        for caller in &callers {
            let mut request = app
                .request(route.method.clone(), route.path)
                .bearer_auth(&caller.token);
            if let Some(body) = &route.body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let what = format!("{} {} as {}", route.method, route.path, caller.label);
            match expected(&route, caller) {
                Ok(()) => assert!(
                    status.is_success() || status == StatusCode::CONFLICT,
                    "{what}: expected success, got {status} {text}"
                ),
                Err(code) => {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {text}");
                    assert_eq!(body["error"]["code"], code, "{what}");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, routes().len() * 10);
}

#[tokio::test]
async fn the_matrix_covers_every_authenticated_route() {
    // Every path in the OpenAPI document that needs credentials is in the matrix above, or is an
    // id route whose authorisation is that of its collection (tested with the objects' tests).
    let app = TestApp::new().await;
    let doc: Value = app.openapi().await;
    let covered: Vec<String> = routes()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let mut uncovered = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let route = format!("{} {path}", method.to_uppercase());
            // The operator's routes take the operator token, not a tenant's credentials
            // (tests/quotas.rs covers them).
            let operator = path.starts_with("/api/v1/admin/");
            if op.get("security").is_some()
                && !covered.contains(&route)
                && !path.contains("{id}")
                && !operator
            {
                uncovered.push(route);
            }
        }
    }
    assert!(
        uncovered.is_empty(),
        "routes missing from the matrix: {uncovered:?}"
    );
}
