//! The role × scope × route matrix of `docs/authorization.md`, walked over HTTP: every route,
//! as every role with a session and with keys of different scopes.
// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PASSWORD, Session, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// What a principal may do on a route, per `docs/authorization.md`.
#[derive(Clone, Copy, Debug)]
enum Need {
    /// Any authenticated principal.
    Anyone,
    /// Any role; a key needs the `admin` scope.
    AnyRoleKeyAdmin,
    /// Admin role; a key needs the `admin` scope.
    Admin,
    /// Any role, sessions only.
    SessionOnly,
}

struct Route {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    need: Need,
}

fn routes() -> Vec<Route> {
    let r = |method, path, body, need| Route {
        method,
        path,
        body,
        need,
    };
    vec![
        r(Method::GET, "/api/v1/me", None, Need::Anyone),
        r(Method::GET, "/api/v1/tenant", None, Need::Anyone),
        r(
            Method::PATCH,
            "/api/v1/me",
            Some(json!({"display_name": "Someone"})),
            Need::SessionOnly,
        ),
        r(
            Method::POST,
            "/api/v1/me/password",
            Some(json!({"current_password": PASSWORD, "new_password": PASSWORD})),
            Need::SessionOnly,
        ),
        r(Method::GET, "/api/v1/api-keys", None, Need::AnyRoleKeyAdmin),
        r(
            Method::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "k", "scopes": ["agents:read"]})),
            Need::AnyRoleKeyAdmin,
        ),
        r(Method::GET, "/api/v1/users", None, Need::Admin),
        r(
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": "new@acme.test", "role": "viewer"})),
            Need::Admin,
        ),
        r(
            Method::PATCH,
            "/api/v1/tenant",
            Some(json!({"settings": {"theme": "dark"}})),
            Need::Admin,
        ),
        r(Method::GET, "/api/v1/audit-events", None, Need::Admin),
    ]
}

struct Caller {
    label: String,
    token: String,
    role: &'static str,
    /// `None` for a session; the key's scopes otherwise.
    scopes: Option<Vec<&'static str>>,
}

fn allowed(need: Need, caller: &Caller) -> Result<(), &'static str> {
    let has_admin_scope = caller.scopes.as_ref().is_none_or(|s| s.contains(&"admin"));
    match need {
        Need::Anyone => Ok(()),
        Need::SessionOnly => {
            if caller.scopes.is_some() {
                Err("session_required")
            } else {
                Ok(())
            }
        }
        Need::AnyRoleKeyAdmin => {
            if has_admin_scope {
                Ok(())
            } else {
                Err("insufficient_scope")
            }
        }
        Need::Admin => {
            if caller.role != "admin" {
                Err("forbidden")
            } else if has_admin_scope {
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
    let keys: [(&str, &Session, &[&'static str]); 6] = [
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
            let body: Value = response.json().await.unwrap_or(Value::Null);
            match allowed(route.need, caller) {
                Ok(()) => assert!(
                    status.is_success() || status == StatusCode::CONFLICT,
                    "{} {} as {}: expected success, got {status} {body}",
                    route.method,
                    route.path,
                    caller.label
                ),
                Err(code) => {
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{} {} as {}: {body}",
                        route.method,
                        route.path,
                        caller.label
                    );
                    assert_eq!(
                        body["error"]["code"], code,
                        "{} {} as {}",
                        route.method, route.path, caller.label
                    );
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 10 * 9);
}

#[tokio::test]
async fn the_matrix_covers_every_authenticated_route() {
    // Every path in the OpenAPI document that needs credentials is in the matrix above (or is
    // an id route covered by the users and keys tests).
    let app = TestApp::new().await;
    let doc: Value = app
        .request(Method::GET, "/api/v1/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let covered: Vec<String> = routes()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let by_id = [
        "GET /api/v1/users/{id}",
        "PATCH /api/v1/users/{id}",
        "DELETE /api/v1/users/{id}",
        "DELETE /api/v1/api-keys/{id}",
    ];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("security").is_none() {
                continue;
            }
            let route = format!("{} {path}", method.to_uppercase());
            assert!(
                covered.contains(&route) || by_id.contains(&route.as_str()),
                "{route} is not in the matrix"
            );
        }
    }
}
