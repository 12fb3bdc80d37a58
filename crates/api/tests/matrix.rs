//! The role × scope × route matrix of `docs/authorization.md`, walked over HTTP: every route,
//! as every role with a session and with keys of different scopes. A route with `{id}` acts on
//! an object made for the purpose at run time, one the caller may reach (its own chat session,
//! run or key; the tenant's agent, provider or user), so a refusal can only come from the
//! policy and an allowed call must find the object.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::{PASSWORD, Session, TestApp, expect_status};
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

/// The object a route's `{id}` names, resolved for each call.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// The route has no `{id}`.
    None,
    /// A user of the tenant other than the callers.
    User,
    /// A user made for this call (it is deactivated by it).
    FreshUser,
    /// A key of the caller's user, made for this call.
    FreshOwnKey,
    /// The tenant's provider.
    Provider,
    /// A provider made for this call.
    FreshProvider,
    /// The tenant's agent.
    Agent,
    /// An agent made for this call.
    FreshAgent,
    /// A chat session of the caller's user.
    OwnSession,
    /// A chat session of the caller's user, made for this call (for callers that may write
    /// sessions; others get their existing one).
    FreshOwnSession,
    /// For an admin, a run of another user (admins may see every run's status); for others,
    /// their own.
    AnyRunForAdmins,
    /// A run of the caller's user.
    OwnRun,
}

struct Route {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    roles: &'static [&'static str],
    key: Key,
    target: Target,
}

fn routes() -> Vec<Route> {
    let r = |method, path, body, roles, key| Route {
        method,
        path,
        body,
        roles,
        key,
        target: Target::None,
    };
    let id = |method, path, body, roles, key, target| Route {
        method,
        path,
        body,
        roles,
        key,
        target,
    };
    let admin_scope = Key::Scopes(&["admin"]);
    let follow = Key::Scopes(&["sessions:read", "chat"]);
    vec![
        id(
            Method::GET,
            "/api/v1/users/{id}",
            None,
            ADMINS,
            admin_scope,
            Target::User,
        ),
        id(
            Method::PATCH,
            "/api/v1/users/{id}",
            Some(json!({"display_name": "Renamed in the matrix"})),
            ADMINS,
            admin_scope,
            Target::User,
        ),
        id(
            Method::DELETE,
            "/api/v1/users/{id}",
            None,
            ADMINS,
            admin_scope,
            Target::FreshUser,
        ),
        id(
            Method::DELETE,
            "/api/v1/api-keys/{id}",
            None,
            ALL,
            admin_scope,
            Target::FreshOwnKey,
        ),
        id(
            Method::GET,
            "/api/v1/providers/{id}",
            None,
            ADMINS,
            admin_scope,
            Target::Provider,
        ),
        id(
            Method::PATCH,
            "/api/v1/providers/{id}",
            Some(json!({"default_model": "matrix-model"})),
            ADMINS,
            admin_scope,
            Target::Provider,
        ),
        id(
            Method::DELETE,
            "/api/v1/providers/{id}",
            None,
            ADMINS,
            admin_scope,
            Target::FreshProvider,
        ),
        id(
            Method::GET,
            "/api/v1/agents/{id}",
            None,
            ALL,
            Key::Scopes(&["agents:read"]),
            Target::Agent,
        ),
        id(
            Method::PATCH,
            "/api/v1/agents/{id}",
            Some(json!({"description": "Changed in the matrix"})),
            ADMINS,
            Key::Scopes(&["agents:write"]),
            Target::Agent,
        ),
        id(
            Method::DELETE,
            "/api/v1/agents/{id}",
            None,
            ADMINS,
            Key::Scopes(&["agents:write"]),
            Target::FreshAgent,
        ),
        id(
            Method::GET,
            "/api/v1/sessions/{id}",
            None,
            ALL,
            Key::Scopes(&["sessions:read"]),
            Target::OwnSession,
        ),
        id(
            Method::GET,
            "/api/v1/sessions/{id}/messages",
            None,
            ALL,
            Key::Scopes(&["sessions:read"]),
            Target::OwnSession,
        ),
        id(
            Method::GET,
            "/api/v1/sessions/{id}/export",
            None,
            ALL,
            Key::Scopes(&["sessions:read"]),
            Target::OwnSession,
        ),
        id(
            Method::PATCH,
            "/api/v1/sessions/{id}",
            Some(json!({"title": "Renamed in the matrix"})),
            WRITERS,
            Key::Scopes(&["sessions:write"]),
            Target::OwnSession,
        ),
        id(
            Method::DELETE,
            "/api/v1/sessions/{id}",
            None,
            WRITERS,
            Key::Scopes(&["sessions:write"]),
            Target::FreshOwnSession,
        ),
        id(
            Method::GET,
            "/api/v1/runs/{id}",
            None,
            ALL,
            follow,
            Target::AnyRunForAdmins,
        ),
        id(
            Method::GET,
            "/api/v1/runs/{id}/events",
            None,
            ALL,
            follow,
            Target::OwnRun,
        ),
        // The runs have finished, so an allowed cancel is 409 `run_finished` (not 404: found).
        id(
            Method::POST,
            "/api/v1/runs/{id}/cancel",
            None,
            WRITERS,
            Key::Scopes(&["chat"]),
            Target::AnyRunForAdmins,
        ),
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
    /// The caller's user, logged in (to make the caller's own objects).
    owner: Session,
}

/// The objects the `{id}` routes act on, made before the walk.
struct Fixtures {
    admin: Session,
    /// A user none of the callers is.
    user_id: String,
    provider_id: String,
    agent_id: String,
    /// A chat session and a finished run of each role's user.
    sessions: HashMap<&'static str, String>,
    runs: HashMap<&'static str, String>,
}

impl Fixtures {
    async fn new(app: &TestApp, admin: &Session, user: &Session, viewer: &Session) -> Self {
        let target = app.with_user(admin, "viewer").await;
        let provider = create(
            app,
            admin,
            "/api/v1/providers",
            json!({"name": "matrix-provider", "kind": "mock"}),
        )
        .await;
        let agent = app.agent(admin, json!({"name": "matrix-target"})).await;
        // Viewers cannot chat; this one did while it was a user, which is how a viewer comes
        // to own chat sessions and runs.
        set_role(app, admin, viewer, "user").await;
        let mut sessions = HashMap::new();
        let mut runs = HashMap::new();
        for (role, session) in [("admin", admin), ("user", user), ("viewer", viewer)] {
            let created =
                create(app, session, "/api/v1/sessions", json!({"agent": "matrix"})).await;
            sessions.insert(role, created["id"].as_str().unwrap().to_owned());
            let (headers, _) = app
                .chat(
                    &session.access_token,
                    json!({"agent": "matrix", "message": "hi"}),
                )
                .await;
            let run = headers["x-run-id"].to_str().unwrap().to_owned();
            app.finished_run(&session.access_token, &run).await;
            runs.insert(role, run);
        }
        set_role(app, admin, viewer, "viewer").await;
        Self {
            admin: admin.clone(),
            user_id: target.user_id,
            provider_id: id_of(&provider),
            agent_id: id_of(&agent),
            sessions,
            runs,
        }
    }

    /// The route's path with its `{id}` filled in for this caller.
    async fn path(&self, app: &TestApp, route: &Route, caller: &Caller, allowed: bool) -> String {
        let unique = || uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let id = match route.target {
            Target::None => return route.path.to_owned(),
            Target::User => self.user_id.clone(),
            Target::FreshUser if allowed => {
                let body =
                    json!({"email": format!("gone-{}@acme.test", unique()), "role": "viewer"});
                let created = create(app, &self.admin, "/api/v1/users", body).await;
                id_of(&created["user"])
            }
            Target::FreshUser => self.user_id.clone(),
            Target::FreshOwnKey => app.with_api_key(&caller.owner, &["usage:read"]).await.0,
            Target::Provider => self.provider_id.clone(),
            Target::FreshProvider if allowed => {
                let body = json!({"name": format!("gone-{}", unique()), "kind": "mock"});
                id_of(&create(app, &self.admin, "/api/v1/providers", body).await)
            }
            Target::FreshProvider => self.provider_id.clone(),
            Target::Agent => self.agent_id.clone(),
            Target::FreshAgent if allowed => {
                let body = json!({"name": format!("gone-{}", unique())});
                id_of(&app.agent(&self.admin, body).await)
            }
            Target::FreshAgent => self.agent_id.clone(),
            Target::FreshOwnSession if allowed => {
                let body = json!({"agent": "matrix"});
                id_of(&create(app, &caller.owner, "/api/v1/sessions", body).await)
            }
            Target::OwnSession | Target::FreshOwnSession => self.sessions[caller.role].clone(),
            Target::AnyRunForAdmins if caller.role == "admin" => self.runs["user"].clone(),
            Target::AnyRunForAdmins | Target::OwnRun => self.runs[caller.role].clone(),
        };
        route.path.replace("{id}", &id)
    }
}

fn id_of(object: &Value) -> String {
    object["id"].as_str().unwrap().to_owned()
}

/// POSTs `body` to `path` as `session` and returns the created object.
async fn create(app: &TestApp, session: &Session, path: &str, body: Value) -> Value {
    let response = app
        .post(path, &session.access_token, body)
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::CREATED).await
}

async fn set_role(app: &TestApp, admin: &Session, user: &Session, role: &str) {
    let response = app
        .patch(
            &format!("/api/v1/users/{}", user.user_id),
            &admin.access_token,
            json!({"role": role}),
        )
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::OK).await;
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

async fn callers(app: &TestApp, admin: &Session) -> (Vec<Caller>, Fixtures) {
    let user = app.with_user(admin, "user").await;
    let viewer = app.with_user(admin, "viewer").await;
    let fixtures = Fixtures::new(app, admin, &user, &viewer).await;
    let mut callers = Vec::new();
    for (role, session) in [("admin", admin), ("user", &user), ("viewer", &viewer)] {
        callers.push(Caller {
            label: format!("{role} session"),
            token: session.access_token.clone(),
            role,
            scopes: None,
            owner: session.clone(),
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
            owner: session.clone(),
        });
    }
    (callers, fixtures)
}

#[tokio::test]
async fn every_route_enforces_the_documented_matrix() {
    let app = TestApp::new().await;
    let tenant = app.signup("acme").await;
    // Room for the users, agents, sessions and requests the walk makes (the free plan has 5
    // users and 600 requests a minute).
    app.set_quota(
        &tenant.id,
        json!({"max_users": 1000, "max_agents": 1000, "max_sessions_per_day": 100_000,
            "requests_per_minute": 1_000_000, "key_requests_per_minute": 1_000_000}),
    )
    .await;
    app.agent(&tenant.admin, json!({"name": "matrix"})).await;
    let (callers, fixtures) = callers(&app, &tenant.admin).await;
    let mut checked = 0;
    for route in routes() {
        for caller in &callers {
            let allowed = expected(&route, caller).is_ok();
            let path = fixtures.path(&app, &route, caller, allowed).await;
            let mut request = app
                .request(route.method.clone(), &path)
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
    // Every path in the OpenAPI document that needs credentials is in the matrix above.
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
            if op.get("security").is_some() && !covered.contains(&route) && !operator {
                uncovered.push(route);
            }
        }
    }
    assert!(
        uncovered.is_empty(),
        "routes missing from the matrix: {uncovered:?}"
    );
}
