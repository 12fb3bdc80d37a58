//! The adversarial suite: on every route of the server's own OpenAPI document (and the
//! OpenAI-compatible routes), what attackers try: other spellings of the path, hostile strings
//! in every body field and in headers, deeply nested JSON, invalid UTF-8 and lone surrogates,
//! 50 MB bodies, absurd numbers, oversized completions, other tenants' ids, injected tenant and
//! role fields, and forged tokens. Each gets a fast, clear 4xx with a stable code (or, for data,
//! is stored and returned verbatim as JSON text), changes nothing, never a 5xx, and the server
//! stays healthy. A route added later is attacked too: the routes come from the document, and
//! a route with a body this suite cannot build, or an id it cannot fill, fails the suite.
// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{
    JWT_SECRET, OPERATOR_TOKEN, PASSWORD, Session, Tenant, TestApp, claims_of, expect_status, sign,
};
use diesel::PgConnection;
use jsonwebtoken::Algorithm;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The longest any answer may take ("fast": generous, as other test binaries share the VM).
const LIMIT: Duration = Duration::from_secs(10);

/// Strings attackers put in fields and headers.
fn hostile() -> Vec<String> {
    let mut strings: Vec<String> = [
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
        "javascript:alert(document.cookie)",
        "' OR '1'='1' --",
        "'; DROP TABLE users; --",
        "{{7*7}}",
        "${7*7}",
        "#{7*7} <%= 7*7 %>",
        "a\r\nSet-Cookie: x=1",
        "nul\u{0}byte",
        "\u{202e}\u{200b}🦀 ünïcödé",
    ]
    .map(str::to_owned)
    .to_vec();
    strings.push("x".repeat(100_000));
    strings
}

/// Quota overrides high enough that no count or rate limit gets in the way of the attacks.
fn generous() -> Value {
    json!({
        "max_users": 100_000, "max_agents": 100_000, "max_sessions_per_day": 100_000,
        "requests_per_minute": 1_000_000, "key_requests_per_minute": 1_000_000,
        "max_concurrent_runs": 100,
    })
}

// ---- the routes, from the server's own document ------------------------------------------

#[derive(Clone, Debug)]
struct Route {
    method: Method,
    template: String,
    /// Needs a tenant's credentials.
    secured: bool,
    /// The operator API (its own token).
    operator: bool,
    /// The JSON request body's schema, `$ref` resolved.
    body: Option<Value>,
    /// Takes an `Idempotency-Key` header.
    idempotent: bool,
}

impl Route {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.template)
    }

    fn openai(&self) -> bool {
        self.template.starts_with("/v1/")
    }
}

fn resolve(schemas: &Value, schema: &Value) -> Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(name) => resolve(schemas, &schemas[name.rsplit('/').next().unwrap()]),
        None => schema.clone(),
    }
}

/// Every path × method of `GET /api/v1/openapi.json`, and the OpenAI-compatible routes should
/// a later document leave them out.
fn routes(doc: &Value) -> Vec<Route> {
    let schemas = &doc["components"]["schemas"];
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            routes.push(Route {
                method: method.to_uppercase().parse().unwrap(),
                template: path.clone(),
                secured: op.get("security").is_some(),
                operator: op["security"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|scheme| scheme.get("operator").is_some())),
                body: op
                    .pointer("/requestBody/content/application~1json/schema")
                    .map(|schema| resolve(schemas, schema)),
                idempotent: op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key")),
            });
        }
    }
    for (method, path) in [
        (Method::GET, "/v1/models"),
        (Method::POST, "/v1/chat/completions"),
    ] {
        if !routes
            .iter()
            .any(|r| r.method == method && r.template == path)
        {
            routes.push(Route {
                body: (method == Method::POST).then(|| {
                    json!({"type": "object", "properties": {
                        "model": {"type": "string"},
                        "messages": {"type": "array", "items": {"type": "object"}}}})
                }),
                method,
                template: path.to_owned(),
                secured: true,
                operator: false,
                idempotent: false,
            });
        }
    }
    assert!(routes.len() > 40, "the document lists too few routes");
    routes
}

/// What a body field holds, as far as an attacker is concerned.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Text,
    TextList,
    Object,
    ObjectList,
    Null,
    Other,
}

fn kind_of(schemas: &Value, schema: &Value) -> Kind {
    let schema = resolve(schemas, schema);
    if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
        return alternatives
            .iter()
            .map(|a| kind_of(schemas, a))
            .find(|k| *k != Kind::Null)
            .unwrap_or(Kind::Other);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if types.contains(&"string") {
        Kind::Text
    } else if types.contains(&"array") {
        match kind_of(schemas, &schema["items"]) {
            Kind::Text => Kind::TextList,
            Kind::Object => Kind::ObjectList,
            _ => Kind::Other,
        }
    } else if types.contains(&"object") {
        Kind::Object
    } else if types == ["null"] {
        Kind::Null
    } else {
        Kind::Other
    }
}

/// The body's fields and their kinds.
fn fields(schemas: &Value, body: &Value) -> Vec<(String, Kind, bool)> {
    body["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .map(|(name, prop)| {
                    let secret = prop["format"] == "password"
                        || name.ends_with("password")
                        || name.ends_with("token")
                        || name == "api_key";
                    (name.clone(), kind_of(schemas, prop), secret)
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---- answers -------------------------------------------------------------------------------

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, snippet(&self.text))
    }
}

impl Reply {
    async fn of(request: RequestBuilder) -> Reply {
        let response = request
            .timeout(LIMIT)
            .send()
            .await
            .expect("an answer in time");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("the whole answer in time");
        Reply {
            status,
            headers,
            text,
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

fn snippet(text: &str) -> String {
    text.chars().take(300).collect()
}

/// What every answer must be: no 5xx, no cookie, `nosniff`; an error is a JSON body with a
/// stable snake_case code and a message.
fn check(reply: &Reply, what: &str) {
    assert!(
        !reply.status.is_server_error(),
        "{what}: {} {}",
        reply.status,
        snippet(&reply.text)
    );
    assert!(
        reply.headers.get("set-cookie").is_none(),
        "{what}: a Set-Cookie header"
    );
    assert_eq!(
        reply
            .headers
            .get("x-content-type-options")
            .map(|v| v.as_bytes()),
        Some(&b"nosniff"[..]),
        "{what}: no nosniff"
    );
    if reply.status.is_client_error() {
        assert!(
            reply.content_type().starts_with("application/json"),
            "{what}: {} as {:?}",
            reply.status,
            reply.content_type()
        );
        check_error_body(&reply.json(), what);
    }
}

fn check_error_body(body: &Value, what: &str) {
    let code = body["error"]["code"].as_str().unwrap_or_default();
    assert!(
        !code.is_empty()
            && code
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "{what}: no stable code in {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: no message in {body}"
    );
}

/// Does `value` hold `text` as one of its strings (at any depth)?
fn holds(value: &Value, text: &str) -> bool {
    match value {
        Value::String(s) => s == text,
        Value::Array(items) => items.iter().any(|v| holds(v, text)),
        Value::Object(map) => map.values().any(|v| holds(v, text)),
        _ => false,
    }
}

// ---- a raw HTTP/1.1 client, for what reqwest would normalise or refuse to send -------------

struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} {}",
            self.status,
            self.headers,
            snippet(&String::from_utf8_lossy(&self.body))
        )
    }
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// The response in `buf`, once it is complete.
fn parse_raw(buf: &[u8], closed: bool) -> Option<Raw> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &buf[end + 4..];
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let body = if let Some(length) = find("content-length") {
        let length: usize = length.parse().ok()?;
        if rest.len() < length {
            return None;
        }
        rest[..length].to_vec()
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = at + rest[at..].windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[at..line_end])
                    .split(';')
                    .next()?
                    .trim(),
                16,
            )
            .ok()?;
            at = line_end + 2;
            if size == 0 {
                break;
            }
            if rest.len() < at + size + 2 {
                return None;
            }
            body.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
        body
    } else if closed || status == 204 || status == 304 {
        rest.to_vec()
    } else {
        return None;
    };
    Some(Raw {
        status,
        headers,
        body,
    })
}

/// Sends `head` (everything up to and including the blank line) and then `body` from another
/// task, and reads the response as soon as it is complete, without waiting for the body to be
/// sent (so an answer before the body is read shows the server did not wait for it) nor for
/// the connection to close.
async fn raw(app: &TestApp, head: String, body: Vec<u8>) -> Raw {
    let stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    let sending = tokio::spawn(async move {
        // The server may answer and close before the body is sent: that is fine.
        for chunk in body.chunks(64 * 1024) {
            if writer.write_all(chunk).await.is_err() {
                return;
            }
        }
        // Keep the connection open (not half-closed) until the answer is read.
        tokio::time::sleep(LIMIT * 2).await;
        drop(writer);
    });
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut chunk).await.unwrap_or(0);
            buf.extend_from_slice(&chunk[..n]);
            if let Some(raw) = parse_raw(&buf, n == 0) {
                return raw;
            }
            assert!(
                n > 0,
                "the connection closed without a whole answer: {:?}",
                String::from_utf8_lossy(&buf)
            );
        }
    };
    let answer = tokio::time::timeout(LIMIT, read)
        .await
        .expect("an answer in time");
    sending.abort();
    answer
}

/// A request line and headers for [`raw`].
fn head(method: &Method, target: &str, token: Option<&str>, extra: &str) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}{extra}\r\n"
    )
}

// ---- the world the attacks run in ----------------------------------------------------------

/// Ids of one tenant's objects, to fill path parameters with.
#[derive(Clone, Debug)]
struct Ids {
    tenant: String,
    user: String,
    api_key: String,
    agent: String,
    agent_name: String,
    provider: String,
    session: String,
    run: String,
}

struct World {
    app: TestApp,
    doc: Value,
    routes: Vec<Route>,
    acme: Tenant,
    viewer: Session,
    /// An API key of acme's admin with `chat` and `agents:read` (the OpenAI-compatible API's).
    chat_key: String,
    ids: Ids,
    globex: Tenant,
    foreign: Ids,
    owner: Mutex<PgConnection>,
}

impl World {
    async fn new() -> World {
        let app = TestApp::builder()
            .env("PAAS_LOGIN_MAX_FAILURES", "100000")
            .env("PAAS_LOGIN_MAX_FAILURES_PER_IP", "100000")
            .start()
            .await;
        let acme = app.signup("acme").await;
        let globex = app.signup("globex").await;
        let (ids, chat_key) = populate(&app, &acme, "helper").await;
        let (foreign, _) = populate(&app, &globex, "globex-only").await;
        let viewer = app.with_user(&acme.admin, "viewer").await;
        let doc = app.openapi().await;
        let routes = routes(&doc);
        let owner = Mutex::new(app.db.owner_connection());
        World {
            app,
            doc,
            routes,
            acme,
            viewer,
            chat_key,
            ids,
            globex,
            foreign,
            owner,
        }
    }

    fn schemas(&self) -> &Value {
        &self.doc["components"]["schemas"]
    }

    /// A fingerprint of everything the API writes (read as the database owner): every row of
    /// tenants, users, keys, agents, providers, sessions, messages, quotas, refresh tokens and
    /// idempotency keys (less the last-used and last-login times), and the number of runs.
    /// Checks that `reply` (to the request `what`, sent when the tables were `before`) is a
    /// clear 400 `code` and that nothing changed.
    fn expect_refused(&self, reply: &Reply, what: &str, before: &str, code: &str) {
        check(reply, what);
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (StatusCode::BAD_REQUEST, code),
            "{what}: {}",
            reply.text
        );
        assert_eq!(self.snapshot(), before, "{what}");
    }

    fn snapshot(&self) -> String {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            fingerprint: String,
        }
        let tables = [
            "tenants",
            "users",
            "api_keys",
            "agents",
            "providers",
            "chat_sessions",
            "messages",
            "tenant_quotas",
            "refresh_tokens",
            "idempotency_keys",
        ];
        let parts: Vec<String> = tables
            .iter()
            .map(|t| {
                format!(
                    "(SELECT '{t}:' || count(*) || ':' || coalesce(md5(string_agg( \
                     (to_jsonb(x) - 'last_used_at' - 'last_login_at')::text, '|' \
                     ORDER BY (to_jsonb(x) - 'last_used_at' - 'last_login_at')::text)), '') \
                     FROM {t} x)"
                )
            })
            .collect();
        let sql = format!(
            "SELECT {} || ' runs:' || (SELECT count(*) FROM runs) AS fingerprint",
            parts.join(" || ' ' || ")
        );
        diesel::sql_query(sql)
            .get_result::<Row>(&mut *self.owner.lock().unwrap())
            .unwrap()
            .fingerprint
    }

    async fn healthy(&self) {
        let reply = Reply::of(self.app.request(Method::GET, "/healthz")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.json()["status"], "ok");
    }

    /// The route's path with its parameters filled from `ids`.
    fn path(&self, route: &Route, ids: &Ids) -> String {
        let Some((before, after)) = route.template.split_once("/{id}") else {
            assert!(!route.template.contains('{'), "{}", route.name());
            return route.template.clone();
        };
        let id = match before.rsplit('/').next().unwrap() {
            "users" => &ids.user,
            "api-keys" => &ids.api_key,
            "agents" => &ids.agent,
            "providers" => &ids.provider,
            "sessions" => &ids.session,
            "runs" => &ids.run,
            "tenants" => &ids.tenant,
            other => panic!(
                "{}: no id of kind {other:?} in the suite's fixture: add one",
                route.name()
            ),
        };
        assert!(!after.contains('{'), "{}", route.name());
        format!("{before}/{id}{after}")
    }

    /// The credential the route is meant for: the operator token, the chat key for `/v1`, the
    /// admin's session, or none.
    fn caller(&self, route: &Route) -> Option<String> {
        if route.operator {
            Some(OPERATOR_TOKEN.to_owned())
        } else if route.openai() {
            Some(self.chat_key.clone())
        } else if route.secured {
            Some(self.acme.admin.access_token.clone())
        } else {
            None
        }
    }

    /// A valid body for the route (`n` makes names unique). Every route with a JSON body must
    /// be here.
    fn body(&self, route: &Route, n: usize) -> Option<Value> {
        route.body.as_ref()?;
        Some(match (route.method.as_str(), route.template.as_str()) {
            ("POST", "/api/v1/auth/signup") => {
                json!({"tenant_name": format!("adv-{n}"), "email": format!("a{n}@adv.test"), "password": PASSWORD})
            }
            ("POST", "/api/v1/auth/login") => {
                json!({"tenant": "acme", "email": self.viewer.email, "password": PASSWORD})
            }
            ("POST", "/api/v1/auth/refresh" | "/api/v1/auth/logout") => {
                json!({"refresh_token": "not-a-refresh-token"})
            }
            ("PATCH", "/api/v1/me") => json!({"display_name": "Someone"}),
            ("POST", "/api/v1/me/password") => {
                json!({"current_password": PASSWORD, "new_password": PASSWORD})
            }
            ("POST", "/api/v1/users") => {
                json!({"email": format!("u{n}@acme.test"), "role": "viewer"})
            }
            ("PATCH", "/api/v1/users/{id}") => json!({"display_name": "Someone"}),
            ("POST", "/api/v1/api-keys") => {
                json!({"name": format!("key {n}"), "scopes": ["chat"]})
            }
            ("PATCH", "/api/v1/tenant") => json!({"display_name": "Acme"}),
            ("POST", "/api/v1/agents") => json!({"name": format!("agent-{n}")}),
            ("PATCH", "/api/v1/agents/{id}") => json!({"description": "An agent"}),
            ("POST", "/api/v1/providers") => {
                json!({"name": format!("provider-{n}"), "kind": "mock"})
            }
            ("PATCH", "/api/v1/providers/{id}") => json!({"default_model": "mock"}),
            ("POST", "/api/v1/sessions") => json!({"agent": "helper"}),
            ("PATCH", "/api/v1/sessions/{id}") => json!({"title": "A title"}),
            ("POST", "/api/v1/chat/completions") => {
                json!({"agent": "helper", "message": "hello"})
            }
            ("PATCH", "/api/v1/admin/tenants/{id}") => json!({"plan": "free"}),
            ("PUT", "/api/v1/admin/tenants/{id}/quota") => generous(),
            ("POST", "/v1/chat/completions") => {
                json!({"model": "helper", "messages": [{"role": "user", "content": "hello"}]})
            }
            _ => panic!(
                "{}: a route with a JSON body this suite has no valid body for: add one",
                route.name()
            ),
        })
    }

    fn request(
        &self,
        method: &Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> RequestBuilder {
        let mut request = self.app.request(method.clone(), path);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request
    }

    /// Waits until no run is in progress (runs finish, and write their rows, behind answers).
    async fn settle(&self) {
        self.app.runs_settled().await;
        self.app
            .count_reaches(
                "SELECT CASE WHEN count(*) = 0 THEN 1 ELSE 0 END FROM runs WHERE status = 'running'",
                1,
            )
            .await;
    }
}

/// A tenant's user, key, agent, provider, session and finished run; and a chat key.
async fn populate(app: &TestApp, tenant: &Tenant, agent: &str) -> (Ids, String) {
    app.set_quota(&tenant.id, generous()).await;
    let token = &tenant.admin.access_token;
    let user = app.with_user(&tenant.admin, "user").await;
    let (key_id, key) = app
        .with_api_key(&tenant.admin, &["chat", "agents:read"])
        .await;
    let created = app.agent(&tenant.admin, json!({"name": agent})).await;
    let provider = expect_status(
        app.post(
            "/api/v1/providers",
            token,
            json!({"name": "mocked", "kind": "mock"}),
        )
        .send()
        .await
        .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let (headers, _) = app
        .chat(token, json!({"agent": agent, "message": "hello"}))
        .await;
    let run = headers["x-run-id"].to_str().unwrap().to_owned();
    app.finished_run(token, &run).await;
    let ids = Ids {
        tenant: tenant.id.clone(),
        user: user.user_id,
        api_key: key_id,
        agent: created["id"].as_str().unwrap().to_owned(),
        agent_name: agent.to_owned(),
        provider: provider["id"].as_str().unwrap().to_owned(),
        session: headers["x-session-id"].to_str().unwrap().to_owned(),
        run,
    };
    (ids, key)
}

// ---- 0. coverage -------------------------------------------------------------------------

#[tokio::test]
async fn every_route_of_the_document_can_be_attacked() {
    let w = World::new().await;
    for route in &w.routes {
        w.path(route, &w.ids);
        w.path(route, &w.foreign);
        if route.body.is_some() {
            w.body(route, 0);
        }
    }
    for (method, path) in [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/healthz"),
    ] {
        assert!(
            w.routes
                .iter()
                .any(|r| r.method.as_str() == method && r.template == path),
            "{method} {path}"
        );
    }
}

// ---- 1. other spellings of every path --------------------------------------------------------

/// Spellings of `path` that a lenient router, proxy or decoder might take for it.
fn spellings(path: &str) -> Vec<String> {
    let (prefix, rest) = ["/api/v1/", "/v1/", "/"]
        .iter()
        .find_map(|p| path.strip_prefix(p).map(|r| (*p, r)))
        .unwrap();
    // The prefix without its last slash, never empty: "/api/v1", "/v1", "/".
    let bare = if prefix == "/" {
        "/"
    } else {
        prefix.trim_end_matches('/')
    };
    let mut chars = rest.chars();
    let first = chars.next().unwrap();
    let mut capitalised = prefix.to_owned();
    if let Some(c) = capitalised.get_mut(1..2) {
        c.make_ascii_uppercase();
    }
    vec![
        path.to_uppercase(),
        format!("{}{rest}", prefix.to_uppercase()),
        format!("{capitalised}{rest}"),
        format!("/{path}"),
        format!("{}{rest}", prefix.replacen("/v1", "//v1", 1)),
        format!("{prefix}/{rest}"),
        format!("{prefix}./{rest}"),
        format!("{prefix}agents/../{rest}"),
        format!("{prefix}agents/%2e%2e/{rest}"),
        format!("{prefix}%2E%2E/{}{rest}", &prefix[1..]),
        format!("{prefix}%2e/{rest}"),
        format!("{bare}%2f{rest}"),
        format!("/{}", path[1..].replace('/', "%2F")),
        format!("{path}/"),
        format!("{path}/."),
        format!("{path};x=1"),
        format!("{bare};x=1/{rest}"),
        format!("{prefix}..;/{rest}"),
        format!("{path}%00"),
        format!("{prefix}%00{rest}"),
        format!("{path}%20"),
        format!("{path}%0d%0aSet-Cookie:%20x=1"),
        format!("{prefix}%5c{rest}"),
        // The same path with one letter percent-encoded: a decoder's job, so the same route.
        format!("{prefix}%{:02x}{}", first as u32, chars.as_str()),
        format!("http://127.0.0.1{path}"),
    ]
}

#[tokio::test]
async fn other_spellings_of_every_path_are_a_json_404_or_the_same_route_with_the_same_auth() {
    let w = World::new().await;
    let viewer = w.viewer.access_token.clone();
    let mut n = 10_000;
    let mut checked = 0;
    for route in &w.routes {
        let path = w.path(route, &w.ids);
        for token in [None, Some(viewer.as_str())] {
            let who = if token.is_some() { "viewer" } else { "nobody" };
            let send = |target: String, n: usize| {
                let body = w.body(route, n).map(|b| b.to_string()).unwrap_or_default();
                let extra = if body.is_empty() {
                    String::new()
                } else {
                    format!(
                        "Content-Type: application/json\r\nContent-Length: {}\r\n",
                        body.len()
                    )
                };
                raw(
                    &w.app,
                    head(&route.method, &target, token, &extra),
                    body.into_bytes(),
                )
            };
            n += 1;
            let canonical = send(path.clone(), n).await;
            let targets = spellings(&path);
            let replies = futures_util::future::join_all(
                targets
                    .iter()
                    .enumerate()
                    .map(|(i, target)| send(target.clone(), n + 1 + i)),
            )
            .await;
            n += targets.len();
            for (target, reply) in targets.into_iter().zip(replies) {
                let what = format!("{} as {who} via {target}", route.name());
                assert!(reply.status < 500, "{what}: {reply:?}");
                assert!(reply.header("set-cookie").is_none(), "{what}");
                assert!(
                    (reply.status == 204 && reply.body.is_empty())
                        || reply.header("content-type").is_some_and(|t| {
                            t.starts_with("application/json")
                                || t.starts_with("text/event-stream")
                                || t.starts_with("text/plain; version=0.0.4")
                        }),
                    "{what}: {reply:?}"
                );
                if reply.status == 404 && ["route_not_found", "not_found"].contains(&&*reply.code())
                {
                    check_error_body(&reply.json(), &what);
                } else {
                    // Then it reached the same route, and the same checks held.
                    assert_eq!(
                        (reply.status, reply.code()),
                        (canonical.status, canonical.code()),
                        "{what}: {reply:?} (the path itself: {canonical:?})",
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 2000, "{checked}");
    // Nothing a viewer may not do happened: acme's admin-only objects are as they were.
    assert_eq!(
        w.app.count(&format!(
            "SELECT count(*) FROM users WHERE tenant_id = '{}' AND status = 'active'",
            w.acme.id
        )),
        3
    );
    assert_eq!(w.app.count("SELECT count(*) FROM agents"), 2);
    assert_eq!(w.app.count("SELECT count(*) FROM providers"), 2);
    assert_eq!(
        w.app
            .count("SELECT count(*) FROM tenants WHERE status = 'active' AND plan = 'free'"),
        w.app.count("SELECT count(*) FROM tenants")
    );
    w.healthy().await;
}

#[tokio::test]
async fn dot_segments_never_reach_files_outside_the_dashboard() {
    // A dashboard served from disk, with a secret next to it.
    let root = std::env::temp_dir().join(format!("paas-adv-{}", uuid::Uuid::new_v4().simple()));
    let web = root.join("web");
    std::fs::create_dir_all(web.join("assets")).unwrap();
    std::fs::write(web.join("index.html"), "<div id=\"root\"></div>").unwrap();
    std::fs::write(root.join("secret.txt"), "top secret").unwrap();
    let app = TestApp::builder()
        .env("PAAS_WEB_DIR", web.to_str().unwrap())
        .start()
        .await;
    for target in [
        "/../secret.txt",
        "/assets/../../secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/.%2e/secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/..%5csecret.txt",
        "/assets/..%5c..%5csecret.txt",
        "/%252e%252e/secret.txt",
        "/secret.txt%00.html",
    ] {
        let reply = raw(&app, head(&Method::GET, target, None, ""), Vec::new()).await;
        assert!(reply.status < 500, "{target}: {reply:?}");
        assert!(
            !String::from_utf8_lossy(&reply.body).contains("top secret"),
            "{target}: {reply:?}"
        );
    }
    expect_status(
        app.request(Method::GET, "/healthz").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    std::fs::remove_dir_all(root).unwrap();
}

// ---- 2. hostile strings in every field and header --------------------------------------------

/// Sets the field at `pointer` (`/name`, `/messages/0/content`), adding a top-level one.
fn set(body: &mut Value, pointer: &str, value: Value) {
    if let Some(slot) = body.pointer_mut(pointer) {
        *slot = value;
    } else {
        body[&pointer[1..]] = value;
    }
}

#[tokio::test]
async fn hostile_strings_in_every_body_field_are_refused_or_kept_verbatim() {
    let w = World::new().await;
    let mut n = 20_000;
    let (mut refused, mut kept) = (0, 0);
    for route in w.routes.iter().filter(|r| r.body.is_some()) {
        let mut targets: Vec<(String, Kind, bool)> =
            fields(w.schemas(), route.body.as_ref().unwrap())
                .into_iter()
                .map(|(name, kind, secret)| (format!("/{name}"), kind, secret))
                .collect();
        if route.openai() {
            targets.push(("/messages/0/content".into(), Kind::Text, false));
            targets.push(("/messages/0/role".into(), Kind::Text, false));
        }
        for (field, kind, secret) in targets {
            for payload in hostile() {
                let value = match kind {
                    Kind::Text => json!(payload),
                    Kind::TextList => json!([payload]),
                    Kind::Object => json!({"note": payload}),
                    Kind::ObjectList | Kind::Null | Kind::Other => continue,
                };
                n += 1;
                let mut body = w.body(route, n).unwrap();
                set(&mut body, &field, value);
                // Changing the password ends the caller's other sessions: a user of its own.
                let token = if route.template == "/api/v1/me/password" {
                    Some(w.app.with_user(&w.acme.admin, "user").await.access_token)
                } else {
                    w.caller(route)
                };
                let path = w.path(route, &w.ids);
                let what = format!("{} {field} = {:?}", route.name(), snippet(&payload));
                let before = w.snapshot();
                let reply =
                    Reply::of(w.request(&route.method, &path, token.as_deref(), Some(&body))).await;
                check(&reply, &what);
                if reply.status.is_success() {
                    w.kept(route, &field, secret, &payload, &reply, &what).await;
                    kept += 1;
                } else {
                    assert!(reply.status.is_client_error(), "{what}: {reply:?}");
                    assert_eq!(
                        w.snapshot(),
                        before,
                        "{what}: refused with {} yet something changed",
                        reply.code()
                    );
                    refused += 1;
                }
            }
        }
    }
    assert!(refused > 300 && kept > 50, "refused {refused}, kept {kept}");
    // The refused chats gave back what they had reserved.
    w.settle().await;
    let quota = w.app.quota(&w.acme.admin).await;
    assert_eq!(
        quota["usage"]["tokens_this_month"]["reserved"], 0,
        "{quota}"
    );
    assert_eq!(quota["usage"]["runs_in_progress"]["used"], 0, "{quota}");
    // What was kept is served back as JSON text on every route that reads it.
    for route in w.routes.iter().filter(|r| r.method == Method::GET) {
        let path = w.path(route, &w.ids);
        let reply =
            Reply::of(w.request(&route.method, &path, w.caller(route).as_deref(), None)).await;
        check(&reply, &route.name());
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}: {}",
            route.name(),
            reply.text
        );
        let ct = reply.content_type();
        assert!(
            ct.starts_with("application/json")
                || ct.starts_with("text/event-stream")
                || ct.starts_with("text/plain"),
            "{}: {ct}",
            route.name()
        );
    }
    let markdown = Reply::of(w.app.get(
        &format!("/api/v1/sessions/{}/export?format=markdown", w.ids.session),
        &w.acme.admin.access_token,
    ))
    .await;
    check(&markdown, "the markdown export");
    assert!(
        !markdown.content_type().contains("html"),
        "{}",
        markdown.content_type()
    );
    w.healthy().await;
}

impl World {
    /// An accepted hostile string was stored as data: returned verbatim as JSON text (a secret
    /// is never returned at all).
    async fn kept(
        &self,
        route: &Route,
        field: &str,
        secret: bool,
        payload: &str,
        reply: &Reply,
        what: &str,
    ) {
        if secret {
            assert!(!reply.text.contains(payload), "{what}: a secret echoed");
            return;
        }
        if reply.content_type().starts_with("text/event-stream") {
            // A chat turn: the message is in the session as sent. (`agent_type`, the old
            // alias of `agent`, is not read when `agent` is given.)
            self.settle().await;
            if field == "/agent_type" {
                return;
            }
            let session = reply.headers["x-session-id"].to_str().unwrap();
            let messages = Reply::of(self.app.get(
                &format!("/api/v1/sessions/{session}/messages"),
                &self.acme.admin.access_token,
            ))
            .await;
            assert!(
                holds(&messages.json(), payload),
                "{what}: not stored verbatim: {}",
                snippet(&messages.text)
            );
            return;
        }
        assert!(
            reply.content_type().starts_with("application/json"),
            "{what}: {}",
            reply.content_type()
        );
        if route.openai() {
            // The OpenAI-compatible API stores no session: the answer is a completion.
            self.settle().await;
            assert_eq!(reply.json()["object"], "chat.completion", "{what}");
            return;
        }
        assert!(
            holds(&reply.json(), payload),
            "{what}: accepted but not returned verbatim: {}",
            snippet(&reply.text)
        );
    }
}

#[tokio::test]
async fn hostile_headers_are_inert_on_every_route() {
    let w = World::new().await;
    let long = "x".repeat(8 * 1024);
    let headers: Vec<(&str, &str)> = vec![
        ("User-Agent", "<script>alert(1)</script>"),
        ("X-Forwarded-For", "' OR '1'='1' --"),
        ("X-Real-IP", "{{7*7}}"),
        ("Forwarded", "for=\"<script>alert(1)</script>\""),
        ("X-Request-Id", "${7*7}"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("Referer", "javascript:alert(1)"),
        ("Origin", "null"),
        ("User-Agent", &long),
        ("X-Request-Id", &long),
    ];
    let mut n = 30_000;
    for route in &w.routes {
        let token = (route.secured && !route.operator).then_some(w.viewer.access_token.as_str());
        let path = w.path(route, &w.ids);
        n += 1;
        let plain =
            Reply::of(w.request(&route.method, &path, token, w.body(route, n).as_ref())).await;
        check(&plain, &route.name());
        for (name, value) in &headers {
            n += 1;
            let what = format!("{} with {name}: {}", route.name(), snippet(value));
            let reply = Reply::of(
                w.request(&route.method, &path, token, w.body(route, n).as_ref())
                    .header(*name, *value),
            )
            .await;
            check(&reply, &what);
            assert_eq!(
                (reply.status, reply.code()),
                (plain.status, plain.code()),
                "{what}: {}",
                snippet(&reply.text)
            );
            let id = reply.headers["x-request-id"].to_str().unwrap();
            assert!(id.len() == 36 && id != *value, "{what}: X-Request-Id {id}");
        }
    }
    // A method override is not a method: the agent is still there.
    let admin = &w.acme.admin.access_token;
    let agent = format!("/api/v1/agents/{}", w.ids.agent);
    for verb in ["DELETE", "PATCH"] {
        let reply = Reply::of(
            w.app
                .get(&agent, admin)
                .header("X-HTTP-Method-Override", verb),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    assert_eq!(w.app.count("SELECT count(*) FROM agents"), 2);
    // Logged headers are stored as text, cut to their column's size.
    let login = w.body(
        w.routes
            .iter()
            .find(|r| r.template == "/api/v1/auth/login")
            .unwrap(),
        0,
    );
    for ua in ["<script>alert(1)</script>", long.as_str()] {
        let reply = Reply::of(
            w.app
                .request(Method::POST, "/api/v1/auth/login")
                .header("User-Agent", ua)
                .header("X-Forwarded-For", "<script>alert(1)</script>")
                .json(&login),
        )
        .await;
        check(&reply, "login");
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert!(
        w.app.count(
            "SELECT count(*) FROM audit_events WHERE user_agent = '<script>alert(1)</script>' \
             AND ip = '127.0.0.1'"
        ) >= 1
    );
    assert!(
        w.app.count(
            "SELECT count(*) FROM audit_events WHERE user_agent LIKE 'xxx%' AND length(user_agent) = 512"
        ) >= 1,
        "the long user agent, cut"
    );
    assert_eq!(
        w.app
            .count("SELECT count(*) FROM audit_events WHERE length(user_agent) > 512"),
        0
    );
    w.healthy().await;
}

#[tokio::test]
async fn hostile_idempotency_keys_are_refused_or_are_just_keys() {
    let w = World::new().await;
    let mut n = 40_000;
    let idempotent: Vec<&Route> = w.routes.iter().filter(|r| r.idempotent).collect();
    assert!(idempotent.len() >= 6, "{idempotent:?}");
    for route in idempotent {
        let path = w.path(route, &w.ids);
        let token = w.caller(route);
        for key in [
            "' OR '1'='1' --",
            "\"><img src=x onerror=alert(1)>",
            &"k".repeat(256),
            "",
        ] {
            n += 1;
            let what = format!("{} with Idempotency-Key {}", route.name(), snippet(key));
            let before = w.snapshot();
            let reply = Reply::of(
                w.request(
                    &route.method,
                    &path,
                    token.as_deref(),
                    w.body(route, n).as_ref(),
                )
                .header("Idempotency-Key", key),
            )
            .await;
            w.expect_refused(&reply, &what, &before, "invalid_idempotency_key");
        }
        // Non-ASCII bytes.
        n += 1;
        let reply = Reply::of(
            w.request(
                &route.method,
                &path,
                token.as_deref(),
                w.body(route, n).as_ref(),
            )
            .header(
                "Idempotency-Key",
                reqwest::header::HeaderValue::from_bytes("ünï".as_bytes()).unwrap(),
            ),
        )
        .await;
        assert_eq!(reply.code(), "invalid_idempotency_key", "{}", route.name());
        // Visible ASCII without spaces is a key like any other: the retry is a replay.
        for key in ["<script>alert(1)</script>", "{{7*7}}", "${7*7}';--"] {
            n += 1;
            // Keys are the user's: one of a kind per route.
            let key = format!("{key}{n}");
            let key = key.as_str();
            let body = w.body(route, n);
            let first = Reply::of(
                w.request(&route.method, &path, token.as_deref(), body.as_ref())
                    .header("Idempotency-Key", key),
            )
            .await;
            check(&first, &route.name());
            assert!(
                first.status.is_success(),
                "{}: {}",
                route.name(),
                first.text
            );
            w.settle().await;
            let again = Reply::of(
                w.request(&route.method, &path, token.as_deref(), body.as_ref())
                    .header("Idempotency-Key", key),
            )
            .await;
            assert_eq!(again.status, first.status, "{}", route.name());
            assert_eq!(again.headers["idempotent-replayed"], "true");
            w.settle().await;
        }
    }
    w.healthy().await;
}

#[tokio::test]
async fn crlf_in_request_headers_never_reaches_a_response_header() {
    let w = World::new().await;
    let token = w.acme.admin.access_token.clone();
    // A CRLF inside a value ends the header: what follows is just another request header.
    for extra in [
        "X-Request-Id: a\r\nSet-Cookie: x=1\r\n",
        "User-Agent: a\r\nSet-Cookie: x=1\r\n",
        "Idempotency-Key: a\r\nSet-Cookie: x=1\r\n",
    ] {
        let reply = raw(
            &w.app,
            head(&Method::GET, "/api/v1/me", Some(&token), extra),
            Vec::new(),
        )
        .await;
        assert_eq!(reply.status, 200, "{extra:?}: {reply:?}");
        assert!(reply.header("set-cookie").is_none(), "{extra:?}");
    }
    // A bare CR or LF, or a folded line, inside a value is not HTTP: the parser refuses it
    // before any route runs (its 400 has no body).
    for extra in [
        "User-Agent: a\rSet-Cookie: x=1\r\n",
        "X-Request-Id: a\r\n Set-Cookie: x=1\r\n",
        "Authorization: Bearer a\rb\r\n",
        "X-Forwarded-For: \0\r\n",
    ] {
        let reply = raw(
            &w.app,
            head(&Method::GET, "/api/v1/me", None, extra),
            Vec::new(),
        )
        .await;
        assert_eq!(reply.status, 400, "{extra:?}: {reply:?}");
        assert!(reply.body.is_empty() && reply.header("set-cookie").is_none());
    }
    // A 64 KiB header is HTTP (the parser takes up to 128 KiB of headers): the route answers.
    // A megabyte of header, or 200 headers, is not: refused the same way, before any route.
    let big = format!("User-Agent: {}\r\n", "x".repeat(64 * 1024));
    let huge = format!("User-Agent: {}\r\n", "x".repeat(1024 * 1024));
    let many: String = (0..200).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    for (extra, status) in [(big, 200), (huge, 431), (many, 431)] {
        let reply = raw(
            &w.app,
            head(&Method::GET, "/api/v1/me", Some(&token), &extra),
            Vec::new(),
        )
        .await;
        assert_eq!(reply.status, status, "{reply:?}");
    }
    w.healthy().await;
}

// ---- 3, 4. deeply nested JSON, invalid UTF-8, lone surrogates ------------------------------

impl World {
    /// Sends `bytes` as the JSON body of `route`, as the caller the route is meant for.
    async fn send_bytes(&self, route: &Route, bytes: Vec<u8>) -> Reply {
        let path = self.path(route, &self.ids);
        let token = self.caller(route);
        let mut request = self
            .app
            .request(route.method.clone(), &path)
            .header("content-type", "application/json")
            .body(bytes);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Reply::of(request).await
    }

    /// Sends each body to every route with a JSON body: each is 400 `invalid_json`, and nothing
    /// changes.
    async fn refuse_everywhere(&self, label: &str, bodies: impl Fn(&Route, usize) -> Vec<Vec<u8>>) {
        let mut n = 50_000;
        for route in self.routes.iter().filter(|r| r.body.is_some()) {
            n += 1;
            for (i, bytes) in bodies(route, n).into_iter().enumerate() {
                let what = format!("{} with {label} #{i}", route.name());
                let before = self.snapshot();
                let reply = self.send_bytes(route, bytes).await;
                self.expect_refused(&reply, &what, &before, "invalid_json");
            }
        }
        self.healthy().await;
    }

    /// The route's valid body with the first string field's value (or, without one, a key)
    /// replaced by `bad` (raw bytes, quotes included).
    fn with_bad_text(&self, route: &Route, n: usize, bad: &[u8]) -> Vec<u8> {
        let body = self.body(route, n).unwrap();
        let text_field = body
            .as_object()
            .unwrap()
            .iter()
            .find_map(|(k, v)| v.is_string().then(|| k.clone()));
        let mut body = body;
        let marker = "\"@@BAD@@\"";
        match text_field {
            Some(field) => body[&field] = json!("@@BAD@@"),
            None => {
                body["@@BAD@@"] = json!(1);
            }
        }
        let text = body.to_string();
        let at = text.find(marker).unwrap();
        let mut bytes = text.as_bytes()[..at].to_vec();
        bytes.extend_from_slice(bad);
        bytes.extend_from_slice(&text.as_bytes()[at + marker.len()..]);
        bytes
    }
}

#[tokio::test]
async fn deeply_nested_json_is_refused_quickly_on_every_json_route() {
    let w = World::new().await;
    w.refuse_everywhere("deep nesting", |route, n| {
        let deep = "[".repeat(100_000);
        let balanced = "[".repeat(100_000) + &"]".repeat(100_000);
        vec![
            deep.clone().into_bytes(),
            balanced.clone().into_bytes(),
            "{\"a\":".repeat(100_000).into_bytes(),
            w.with_bad_text(route, n, deep.as_bytes()),
            w.with_bad_text(route, n, balanced.as_bytes()),
            w.with_bad_text(route, n, "{\"a\":".repeat(100_000).as_bytes()),
        ]
    })
    .await;
}

#[tokio::test]
async fn invalid_utf8_and_lone_surrogates_are_refused_on_every_json_route() {
    let w = World::new().await;
    w.refuse_everywhere("bad text", |route, n| {
        let mut bodies: Vec<Vec<u8>> = [
            &b"\"\xff\xfe\""[..],
            b"\"\xc3\x28\"",
            b"\"\xc0\xaf\"",
            b"\"\xed\xa0\x80\"",
            b"\"\xf4\x90\x80\x80\"",
            b"\"ab\xe2\x82\"",
            br#""\ud800""#,
            br#""\udc00x""#,
            br#""\ud800\u0041""#,
            br#""\ud83e""#,
        ]
        .iter()
        .map(|bad| w.with_bad_text(route, n, bad))
        .collect();
        bodies.push(b"\xef\xbb\xbf{}".to_vec());
        bodies.push(b"{\"\xff\": 1}".to_vec());
        bodies
    })
    .await;
}

// ---- 5. 50 MB bodies -------------------------------------------------------------------------

const FIFTY_MB: usize = 50 * 1024 * 1024;

impl World {
    /// Who sends the big body: the route's own caller where the body is read, so the size is
    /// the only problem; nobody on the operator's routes without a body (suspend, reactivate),
    /// which would act.
    fn big_body_caller(&self, route: &Route) -> Option<String> {
        if route.operator && route.body.is_none() {
            None
        } else {
            self.caller(route)
        }
    }
}

#[tokio::test]
async fn fifty_megabyte_bodies_are_refused_before_they_are_read() {
    let w = World::new().await;
    let mut checked = 0;
    let start = b"{\"name\": \"".to_vec();
    // Two megabytes of the promised fifty: an answer shows the server did not wait for the rest.
    let mut sent = start.clone();
    sent.resize(2 * 1024 * 1024, b'x');
    for route in w
        .routes
        .iter()
        .filter(|r| matches!(r.method, Method::POST | Method::PATCH | Method::PUT))
    {
        let path = w.path(route, &w.ids);
        let token = w.big_body_caller(route);
        let mut chunked = Vec::new();
        for piece in sent.chunks(256 * 1024) {
            chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        for (framing, extra, body) in [
            (
                "Content-Length",
                format!("Content-Type: application/json\r\nContent-Length: {FIFTY_MB}\r\n"),
                sent.clone(),
            ),
            (
                "chunked",
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n".to_owned(),
                chunked,
            ),
        ] {
            let what = format!("{} with 50 MB ({framing})", route.name());
            let before = w.snapshot();
            let reply = raw(
                &w.app,
                head(&route.method, &path, token.as_deref(), &extra),
                body,
            )
            .await;
            assert!((400..500).contains(&reply.status), "{what}: {reply:?}");
            check_error_body(&reply.json(), &what);
            if route.body.is_some() {
                assert_eq!(
                    (reply.status, reply.code().as_str()),
                    (413, "payload_too_large"),
                    "{what}"
                );
            }
            assert!(reply.header("set-cookie").is_none());
            assert_eq!(w.snapshot(), before, "{what}");
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked}");
    w.healthy().await;

    // And the whole 50 MB, streamed by a real client, to the OpenAI-compatible API and to a
    // create: refused, and the server is fine afterwards.
    for (path, token) in [
        ("/v1/chat/completions", w.chat_key.clone()),
        ("/api/v1/agents", w.acme.admin.access_token.clone()),
    ] {
        let before = w.snapshot();
        let start = start.clone();
        let chunks = (0..50).map(move |i| {
            let mut chunk = vec![b'x'; 1024 * 1024];
            if i == 0 {
                chunk[..start.len()].copy_from_slice(&start);
            }
            Ok::<_, std::io::Error>(bytes::Bytes::from(chunk))
        });
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
        let sent = w
            .app
            .request(Method::POST, path)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .timeout(LIMIT)
            .send()
            .await;
        // The server may close the connection while the client is still sending: then the
        // client sees the error instead of the 413. Never a wait, though.
        match sent {
            Ok(response) => {
                assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
            }
            Err(err) => assert!(!err.is_timeout(), "{path}: {err}"),
        }
        assert_eq!(w.snapshot(), before, "{path}");
        w.healthy().await;
    }
}

/// `bytes` compressed with the system's `gzip`.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output.stdout
}

#[tokio::test]
async fn a_gzip_bomb_is_refused_at_the_body_limit() {
    let w = World::new().await;
    // 200 MB of JSON whitespace and an unfinished string, about 200 KB compressed: the server
    // decompresses request bodies, and stops at the 1 MiB limit on what they decompress to.
    let mut bomb = b"{\"name\": \"".to_vec();
    bomb.resize(200 * 1024 * 1024, b' ');
    let bomb = gzip(&bomb);
    assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
    for (path, token) in [
        ("/v1/chat/completions", w.chat_key.clone()),
        ("/api/v1/agents", w.acme.admin.access_token.clone()),
    ] {
        let before = w.snapshot();
        let response = w
            .app
            .request(Method::POST, path)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(bomb.clone())
            .timeout(LIMIT)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert_eq!(w.snapshot(), before, "{path}");
        w.healthy().await;
    }
}

// ---- 6, 7. absurd numbers and oversized completions ----------------------------------------

/// Sends `body` to `path` as `token` and checks it is refused with 400 `code` and changes
/// nothing.
async fn refused_as_bad_request(
    w: &World,
    method: Method,
    path: &str,
    token: &str,
    body: String,
    code: &str,
) -> Reply {
    let what = format!("{method} {path} {body}");
    let before = w.snapshot();
    let reply = Reply::of(
        w.app
            .request(method, path)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body),
    )
    .await;
    w.expect_refused(&reply, &what, &before, code);
    reply
}

#[tokio::test]
async fn absurd_numbers_are_refused_with_the_fields_code() {
    let w = World::new().await;
    let admin = w.acme.admin.access_token.clone();
    let too_big_or_small = [
        ("1000000000", "invalid_max_tokens"),
        ("0", "invalid_max_tokens"),
        ("32769", "invalid_max_tokens"),
        ("4294967295", "invalid_max_tokens"),
        ("4294967296", "invalid_json"),
        ("1e9", "invalid_json"),
        ("1000000000.0", "invalid_json"),
        ("-1", "invalid_json"),
        ("\"1e9\"", "invalid_json"),
        ("1e400", "invalid_json"),
        ("18446744073709551616", "invalid_json"),
    ];
    let temperatures = [
        ("1e39", "invalid_temperature"),
        ("3.4028236e38", "invalid_temperature"),
        ("2.0001", "invalid_temperature"),
        ("-0.5", "invalid_temperature"),
        ("1e400", "invalid_json"),
        ("NaN", "invalid_json"),
        ("\"NaN\"", "invalid_json"),
        ("Infinity", "invalid_json"),
        ("-Infinity", "invalid_json"),
    ];
    let mut cases: Vec<(String, String, String)> = Vec::new();
    for (value, code) in too_big_or_small {
        cases.push(("max_tokens".into(), value.into(), code.into()));
    }
    for (value, code) in temperatures {
        cases.push(("temperature".into(), value.into(), code.into()));
    }
    for field in ["max_steps", "timeout_seconds"] {
        cases.push((
            field.into(),
            "1000000000".into(),
            format!("invalid_{field}"),
        ));
        cases.push((field.into(), "0".into(), format!("invalid_{field}")));
        cases.push((field.into(), "-1".into(), "invalid_json".into()));
    }
    let agent = format!("/api/v1/agents/{}", w.ids.agent);
    for (i, (field, value, code)) in cases.iter().enumerate() {
        for (method, path, body) in [
            (
                Method::POST,
                "/api/v1/agents",
                format!("{{\"name\": \"absurd-{i}\", \"{field}\": {value}}}"),
            ),
            (
                Method::PATCH,
                agent.as_str(),
                format!("{{\"{field}\": {value}}}"),
            ),
        ] {
            refused_as_bad_request(&w, method, path, &admin, body, code).await;
        }
    }
    // The OpenAI-compatible API: the same limits, in its error shape.
    let mut openai: Vec<(String, String, String)> = Vec::new();
    for field in ["max_tokens", "max_completion_tokens"] {
        for (value, code) in too_big_or_small {
            let code = match value {
                // A 64-bit field there.
                "4294967296" => "invalid_max_tokens",
                _ => code,
            };
            openai.push((field.into(), value.into(), code.into()));
        }
    }
    for (value, code) in temperatures {
        openai.push(("temperature".into(), value.into(), code.into()));
    }
    openai.push(("n".into(), "1000000000".into(), "unsupported_n".into()));
    openai.push(("n".into(), "0".into(), "unsupported_n".into()));
    openai.push(("n".into(), "-1".into(), "invalid_json".into()));
    for (field, value, code) in &openai {
        let body = format!(
            "{{\"model\": \"helper\", \"messages\": [{{\"role\": \"user\", \"content\": \"hi\"}}], \"{field}\": {value}}}"
        );
        let reply = refused_as_bad_request(
            &w,
            Method::POST,
            "/v1/chat/completions",
            &w.chat_key,
            body,
            code,
        )
        .await;
        assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    }
    w.healthy().await;
}

#[tokio::test]
async fn oversized_completions_hit_the_documented_limits() {
    let w = World::new().await;
    let hi = json!({"role": "user", "content": "hi"});
    let many = |count: usize| vec![hi.clone(); count];
    let huge = "x".repeat(5 * 1024 * 1024);
    let long = "x".repeat(32_001);
    let cases = [
        (
            json!({"model": "helper", "messages": many(10_000)}),
            StatusCode::BAD_REQUEST,
            "too_many_messages",
        ),
        (
            json!({"model": "helper", "messages": many(10_000), "stream": true}),
            StatusCode::BAD_REQUEST,
            "too_many_messages",
        ),
        (
            json!({"model": "helper", "messages": many(257)}),
            StatusCode::BAD_REQUEST,
            "too_many_messages",
        ),
        (
            json!({"model": "helper", "messages": [{"role": "user", "content": huge}]}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            json!({"model": "helper", "messages": [{"role": "user", "content": long}]}),
            StatusCode::BAD_REQUEST,
            "message_too_long",
        ),
        (
            json!({"model": "helper", "messages": [{"role": "user", "content": [{"type": "text", "text": long}]}]}),
            StatusCode::BAD_REQUEST,
            "message_too_long",
        ),
        (
            json!({"model": "helper", "messages": []}),
            StatusCode::BAD_REQUEST,
            "empty_messages",
        ),
    ];
    for (body, status, code) in cases {
        let what = format!("{} messages", body["messages"].as_array().unwrap().len());
        let before = w.snapshot();
        let reply = Reply::of(w.app.post("/v1/chat/completions", &w.chat_key, body)).await;
        check(&reply, &what);
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (status, code),
            "{what}"
        );
        assert_eq!(w.snapshot(), before, "{what}");
    }
    // At the limits, a correct, bounded answer.
    for body in [
        json!({"model": "helper", "messages": many(256), "max_tokens": 16}),
        json!({"model": "helper", "messages": [{"role": "user", "content": "x".repeat(32_000)}], "max_tokens": 16}),
    ] {
        let reply = Reply::of(w.app.post("/v1/chat/completions", &w.chat_key, body)).await;
        check(&reply, "at the limit");
        assert_eq!(reply.status, StatusCode::OK, "{}", snippet(&reply.text));
        assert_eq!(reply.json()["object"], "chat.completion");
        assert!(reply.json()["usage"]["completion_tokens"].as_u64().unwrap() <= 16);
    }
    w.settle().await;
    // The dashboard's chat: the same per-message limit, and the body limit.
    let admin = &w.acme.admin.access_token;
    for (message, status, code) in [
        (
            huge.as_str(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (long.as_str(), StatusCode::BAD_REQUEST, "message_too_long"),
    ] {
        let before = w.snapshot();
        let reply = Reply::of(w.app.post(
            "/api/v1/chat/completions",
            admin,
            json!({"agent": "helper", "message": message}),
        ))
        .await;
        check(&reply, code);
        assert_eq!((reply.status, reply.code().as_str()), (status, code));
        assert_eq!(w.snapshot(), before, "{code}");
    }
    w.healthy().await;
}

// ---- 8. other tenants' ids and injected owner fields --------------------------------------

#[tokio::test]
async fn other_tenants_ids_in_every_path_are_404s_that_change_nothing() {
    let w = World::new().await;
    let mut checked = 0;
    let mut n = 60_000;
    for route in w
        .routes
        .iter()
        .filter(|r| r.template.contains("{id}") && !r.operator)
    {
        n += 1;
        let path = w.path(route, &w.foreign);
        let what = format!("{} with globex's id", route.name());
        let before = w.snapshot();
        let reply = Reply::of(w.request(
            &route.method,
            &path,
            w.caller(route).as_deref(),
            w.body(route, n).as_ref(),
        ))
        .await;
        check(&reply, &what);
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{what}: {}",
            reply.text
        );
        assert_eq!(w.snapshot(), before, "{what}");
        checked += 1;
    }
    assert!(checked >= 15, "{checked}");
    // Ids in bodies and queries: another tenant's agent, session, user.
    let admin = &w.acme.admin.access_token;
    let before = w.snapshot();
    for (path, body, code) in [
        (
            "/api/v1/chat/completions",
            json!({"agent": w.foreign.agent, "message": "hi"}),
            "not_found",
        ),
        (
            "/api/v1/chat/completions",
            json!({"agent": w.foreign.agent_name, "message": "hi"}),
            "not_found",
        ),
        (
            "/api/v1/chat/completions",
            json!({"session_id": w.foreign.session, "message": "hi"}),
            "not_found",
        ),
        (
            "/api/v1/sessions",
            json!({"agent": w.foreign.agent}),
            "not_found",
        ),
        (
            "/api/v1/agents",
            json!({"name": "borrower", "provider_id": w.foreign.provider}),
            "invalid_provider_id",
        ),
    ] {
        let reply = Reply::of(w.app.post(path, admin, body.clone())).await;
        check(&reply, path);
        assert!(
            reply.status.is_client_error(),
            "{path} {body}: {}",
            reply.text
        );
        assert_eq!(reply.code(), code, "{path} {body}");
    }
    for model in [&w.foreign.agent, &w.foreign.agent_name] {
        let reply = Reply::of(w.app.post(
            "/v1/chat/completions",
            &w.chat_key,
            json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
        ))
        .await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (StatusCode::NOT_FOUND, "model_not_found")
        );
    }
    assert_eq!(w.snapshot(), before);
    w.healthy().await;
}

#[tokio::test]
async fn owner_and_role_fields_injected_into_bodies_are_never_applied() {
    let w = World::new().await;
    let globex_admin = &w.globex.admin.user_id;
    let injected = [
        ("tenant_id", json!(w.globex.id)),
        ("user_id", json!(globex_admin)),
        ("owner_id", json!(globex_admin)),
        ("created_by", json!(globex_admin)),
        ("id", json!(uuid::Uuid::now_v7())),
        ("role", json!("admin")),
        ("status", json!("active")),
        ("plan", json!("enterprise")),
        ("is_admin", json!(true)),
        ("scopes", json!(["admin"])),
    ];
    let mut n = 70_000;
    for route in w.routes.iter().filter(|r| r.body.is_some()) {
        let known: Vec<String> = fields(w.schemas(), route.body.as_ref().unwrap())
            .into_iter()
            .map(|(name, ..)| name)
            .collect();
        for (field, value) in &injected {
            if known.contains(&(*field).to_owned()) {
                continue;
            }
            n += 1;
            let mut body = w.body(route, n).unwrap();
            body[*field] = value.clone();
            // The route's own caller, so that the field is the only problem.
            let token = w.caller(route);
            let what = format!("{} with {field}", route.name());
            let before = w.snapshot();
            let globex_runs = w.app.count(&format!(
                "SELECT count(*) FROM runs WHERE tenant_id = '{}'",
                w.globex.id
            ));
            let reply = Reply::of(w.request(
                &route.method,
                &w.path(route, &w.ids),
                token.as_deref(),
                Some(&body),
            ))
            .await;
            check(&reply, &what);
            if route.openai() {
                // OpenAI's API ignores unknown fields; the run is the caller's tenant's.
                assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.text);
                w.settle().await;
                assert_eq!(
                    w.app.count(&format!(
                        "SELECT count(*) FROM runs WHERE tenant_id = '{}'",
                        w.globex.id
                    )),
                    globex_runs,
                    "{what}"
                );
            } else {
                assert_eq!(
                    (reply.status, reply.code().as_str()),
                    (StatusCode::BAD_REQUEST, "invalid_json"),
                    "{what}: {}",
                    reply.text
                );
                assert_eq!(w.snapshot(), before, "{what}");
            }
        }
    }
    // A viewer naming a better role or scope for itself: refused.
    let viewer = &w.viewer.access_token;
    let before = w.snapshot();
    for (method, path, body, code) in [
        (
            Method::PATCH,
            "/api/v1/me".to_owned(),
            json!({"display_name": "V", "role": "admin"}),
            "invalid_json",
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{}", w.viewer.user_id),
            json!({"role": "admin"}),
            "forbidden",
        ),
        (
            Method::POST,
            "/api/v1/api-keys".to_owned(),
            json!({"name": "k", "scopes": ["admin"]}),
            "scope_not_allowed",
        ),
        (
            Method::POST,
            "/api/v1/api-keys".to_owned(),
            json!({"name": "k", "scopes": ["agents:write"]}),
            "scope_not_allowed",
        ),
    ] {
        let reply = Reply::of(w.request(&method, &path, Some(viewer), Some(&body))).await;
        check(&reply, &path);
        assert_eq!(reply.code(), code, "{method} {path} {body}: {}", reply.text);
    }
    assert_eq!(w.snapshot(), before);
    // The viewer is still a viewer, globex still has its users, acme is still on free.
    assert_eq!(
        w.app.count(&format!(
            "SELECT count(*) FROM users WHERE id = '{}' AND role = 'viewer'",
            w.viewer.user_id
        )),
        1
    );
    assert_eq!(
        w.app.count(&format!(
            "SELECT count(*) FROM users WHERE tenant_id = '{}'",
            w.globex.id
        )),
        2
    );
    assert_eq!(
        w.app
            .count("SELECT count(*) FROM tenants WHERE plan <> 'free'"),
        0
    );
    w.healthy().await;
}

// ---- 9. forged tokens on every route -----------------------------------------------------

#[tokio::test]
async fn forged_tokens_are_401_on_every_authenticated_route() {
    let w = World::new().await;
    let admin = &w.acme.admin;
    let claims = claims_of(&admin.access_token);
    let payload = admin.access_token.split('.').nth(1).unwrap();
    let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let mut expired = claims.clone();
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 60);
    let mut ghost = claims.clone();
    ghost["sub"] = json!(uuid::Uuid::now_v7());
    let mut no_exp = claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    let signature = admin.access_token.rsplit('.').next().unwrap();
    let long = "a".repeat(8 * 1024);
    let bearer = |t: &str| format!("Bearer {t}");
    let cases: Vec<(&str, String, &str)> = vec![
        ("none", String::new(), "missing_credentials"),
        ("empty bearer", "Bearer ".into(), "missing_credentials"),
        (
            "garbage",
            bearer("garbage.garbage.garbage"),
            "invalid_token",
        ),
        (
            "alg none",
            bearer(&format!("{none}.{payload}.")),
            "invalid_token",
        ),
        (
            "alg none, signature kept",
            bearer(&format!("{none}.{payload}.{signature}")),
            "invalid_token",
        ),
        (
            "a refresh token",
            bearer(&admin.refresh_token),
            "invalid_token",
        ),
        (
            "expired",
            bearer(&sign(&expired, Algorithm::HS256, JWT_SECRET.as_bytes())),
            "token_expired",
        ),
        (
            "another secret",
            bearer(&sign(
                &claims,
                Algorithm::HS256,
                b"another-secret-of-enough-length-0123456789",
            )),
            "invalid_token",
        ),
        (
            "HS512",
            bearer(&sign(&claims, Algorithm::HS512, JWT_SECRET.as_bytes())),
            "invalid_token",
        ),
        (
            "no exp",
            bearer(&sign(&no_exp, Algorithm::HS256, JWT_SECRET.as_bytes())),
            "invalid_token",
        ),
        (
            "unknown user",
            bearer(&sign(&ghost, Algorithm::HS256, JWT_SECRET.as_bytes())),
            "invalid_token",
        ),
        (
            "Basic",
            "Basic YWRtaW46YWRtaW4=".into(),
            "unsupported_auth_scheme",
        ),
        (
            "script",
            bearer("<script>alert(1)</script>"),
            "invalid_token",
        ),
        ("SQL", bearer("' OR '1'='1' --"), "invalid_token"),
        ("template", bearer("{{7*7}}${7*7}"), "invalid_token"),
        ("8 KiB", bearer(&long), "invalid_token"),
        (
            "unknown key",
            bearer("ap_0123456789abcdef0123456789abcdef"),
            "invalid_api_key",
        ),
        (
            "X-API-Key",
            "ap_<script>alert(1)</script>".into(),
            "invalid_api_key",
        ),
    ];
    let mut n = 80_000;
    let mut checked = 0;
    for route in w.routes.iter().filter(|r| r.secured) {
        let path = w.path(route, &w.ids);
        for (label, header, code) in &cases {
            n += 1;
            let mut request = w.app.request(route.method.clone(), &path);
            if *label == "X-API-Key" {
                request = request.header("X-API-Key", header);
            } else if !header.is_empty() {
                request = request.header("Authorization", header);
            }
            if let Some(body) = w.body(route, n) {
                request = request.json(&body);
            }
            let what = format!("{} with {label}", route.name());
            let before = w.snapshot();
            let reply = Reply::of(request).await;
            check(&reply, &what);
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{what}: {}",
                reply.text
            );
            let expected = if route.operator {
                "invalid_operator_token"
            } else {
                code
            };
            assert_eq!(reply.code(), expected, "{what}");
            assert!(reply.headers.contains_key("www-authenticate"), "{what}");
            assert_eq!(w.snapshot(), before, "{what}");
            checked += 1;
        }
        // A tenant's own valid credentials are not the operator's.
        if route.operator {
            for token in [&admin.access_token, &w.chat_key] {
                n += 1;
                let reply = Reply::of(w.request(
                    &route.method,
                    &path,
                    Some(token),
                    w.body(route, n).as_ref(),
                ))
                .await;
                assert_eq!(reply.code(), "invalid_operator_token", "{}", route.name());
            }
        }
    }
    assert!(checked > 600, "{checked}");
    w.healthy().await;
}
