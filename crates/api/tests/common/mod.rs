//! `TestApp`: a real server on a random port, with its own database (cloned from the migrated
//! template) and its own Redis key prefix, driven over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use paas_api::{AppState, Config};
use paas_testing::TestDatabase;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

/// The JWT secret every test server uses, so tests can forge tokens on purpose.
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789-abcdefghijklmnop";
pub const PASSWORD: &str = "correct horse battery staple";
pub const MASTER_KEY: &str = "q83vEjKx3dGq9ZBTqXBzE0N2dXl1bWZ3bWZ0aGlzaXM=";

/// The operator token of every test server.
pub const OPERATOR_TOKEN: &str = "operator-token-for-tests-0123456789-abcdef";

pub struct TestAppBuilder {
    vars: HashMap<String, String>,
    shared: Option<(Arc<TestDatabase>, String)>,
    clock: Option<Arc<dyn paas_core::Clock>>,
}

impl TestAppBuilder {
    /// Overrides one environment variable of the server's configuration.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Tells the server's time from `clock` (to cross days and months in a test).
    pub fn clock(mut self, clock: Arc<dyn paas_core::Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// A second server on the same database and Redis prefix: another replica.
    pub fn replica_of(mut self, other: &TestApp) -> Self {
        self.shared = Some((Arc::clone(&other.db), other.redis_prefix.clone()));
        self
    }

    pub async fn start(mut self) -> TestApp {
        let (db, redis_prefix) = match self.shared.take() {
            Some(shared) => shared,
            None => (Arc::new(TestDatabase::new()), paas_testing::redis_prefix()),
        };
        let defaults = [
            ("PAAS_ENV", "development"),
            ("DATABASE_URL", db.url()),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("PAAS_REDIS_PREFIX", redis_prefix.as_str()),
            ("PAAS_JWT_SECRET", JWT_SECRET),
            (
                "PAAS_MASTER_KEY",
                "q83vEjKx3dGq9ZBTqXBzE0N2dXl1bWZ3bWZ0aGlzaXM=",
            ),
            ("PAAS_BCRYPT_COST", "4"),
            ("PAAS_WORKERS", "1"),
            ("PAAS_DB_MAX_CONNECTIONS", "8"),
            ("PAAS_MOCK_CHUNK_DELAY_MS", "0"),
            ("PAAS_OPERATOR_TOKEN", OPERATOR_TOKEN),
        ];
        for (name, value) in defaults {
            self.vars
                .entry(name.to_owned())
                .or_insert_with(|| value.to_owned());
        }
        let config = Config::from_map(&self.vars).expect("test configuration");
        let state = match self.clock.take() {
            Some(clock) => AppState::with_clock(config.clone(), clock),
            None => AppState::new(config.clone()),
        }
        .expect("application state");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = paas_api::server::build(state.clone(), listener).unwrap();
        let handle = server.handle();
        tokio::spawn(server);
        TestApp {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder().build().unwrap(),
            db,
            state,
            redis_prefix,
            handle,
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub db: Arc<TestDatabase>,
    pub state: AppState,
    pub redis_prefix: String,
    handle: ServerHandle,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Sends the stop command now; the returned future only waits for completion.
        drop(self.handle.stop(false));
    }
}

/// A logged-in user.
#[derive(Clone, Debug)]
pub struct Session {
    pub tenant_id: String,
    pub tenant_name: String,
    pub user_id: String,
    pub email: String,
    pub password: String,
    pub access_token: String,
    pub refresh_token: String,
}

/// A tenant made by sign-up, with its admin.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub admin: Session,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::builder().start().await
    }

    /// A request to the operator API, with the operator token.
    pub fn operator(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(OPERATOR_TOKEN)
    }

    /// Replaces a tenant's quota overrides through the operator API.
    pub async fn set_quota(&self, tenant_id: &str, overrides: Value) -> Value {
        let response = self
            .operator(
                Method::PUT,
                &format!("/api/v1/admin/tenants/{tenant_id}/quota"),
            )
            .json(&overrides)
            .send()
            .await
            .unwrap();
        expect_status(response, StatusCode::OK).await
    }

    /// The server's OpenAPI document.
    pub async fn openapi(&self) -> Value {
        self.request(Method::GET, "/api/v1/openapi.json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The tenant's quota status as its admin sees it.
    pub async fn quota(&self, session: &Session) -> Value {
        expect_status(
            self.get("/api/v1/tenant/quota", &session.access_token)
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await
    }

    /// Waits until the usage ledger holds `rows` rows (it is written behind the runs).
    pub async fn ledger_rows(&self, rows: i64) {
        self.count_reaches("SELECT count(*) FROM usage_records", rows)
            .await;
    }

    /// The tenant's audit events with `action`, newest first, as its admin reads them.
    pub async fn audit_events(&self, admin_token: &str, action: &str) -> Vec<Value> {
        let response = self
            .get(
                &format!("/api/v1/audit-events?action={action}"),
                admin_token,
            )
            .send()
            .await
            .unwrap();
        let body = expect_status(response, StatusCode::OK).await;
        let items = body["items"].as_array().unwrap().clone();
        assert!(items.iter().all(|e| e["action"] == action), "{body}");
        items
    }

    /// Waits until this app's runs have ended and their rows are written (behind their
    /// answers, for the OpenAI-compatible API).
    pub async fn runs_settled(&self) {
        for _ in 0..400 {
            if self.state.runs.active() == 0 && self.state.runs.records_queued() == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!(
            "runs did not settle: {} active, {} run records queued",
            self.state.runs.active(),
            self.state.runs.records_queued()
        );
    }

    /// Waits (at most 5 s) until the owner-side count `query` is at least `rows`: for what is
    /// written just after a response (the usage ledger; an OpenAI-compatible run's row,
    /// written behind its answer).
    pub async fn count_reaches(&self, query: &str, rows: i64) {
        for _ in 0..200 {
            if self.count(query) >= rows {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("{query} gave {}, expected {rows}", self.count(query));
    }

    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            vars: HashMap::new(),
            shared: None,
            clock: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub fn get(&self, path: &str, token: &str) -> RequestBuilder {
        self.request(Method::GET, path).bearer_auth(token)
    }

    pub fn post(&self, path: &str, token: &str, body: Value) -> RequestBuilder {
        self.request(Method::POST, path)
            .bearer_auth(token)
            .json(&body)
    }

    pub fn patch(&self, path: &str, token: &str, body: Value) -> RequestBuilder {
        self.request(Method::PATCH, path)
            .bearer_auth(token)
            .json(&body)
    }

    pub fn delete(&self, path: &str, token: &str) -> RequestBuilder {
        self.request(Method::DELETE, path).bearer_auth(token)
    }

    /// Signs up a tenant named `name` with admin `admin@<name>.test`.
    pub async fn signup(&self, name: &str) -> Tenant {
        let email = format!("admin@{name}.test");
        let response = self
            .request(Method::POST, "/api/v1/auth/signup")
            .json(&json!({"tenant_name": name, "email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let body = expect_status(response, StatusCode::CREATED).await;
        let id = body["tenant"]["id"].as_str().unwrap().to_owned();
        Tenant {
            id: id.clone(),
            name: name.to_owned(),
            admin: Session {
                tenant_id: id,
                tenant_name: name.to_owned(),
                user_id: body["user"]["id"].as_str().unwrap().to_owned(),
                email,
                password: PASSWORD.to_owned(),
                access_token: body["access_token"].as_str().unwrap().to_owned(),
                refresh_token: body["refresh_token"].as_str().unwrap().to_owned(),
            },
        }
    }

    /// Logs in and returns the session.
    pub async fn login(&self, tenant: &str, email: &str, password: &str) -> Response {
        self.request(Method::POST, "/api/v1/auth/login")
            .json(&json!({"tenant": tenant, "email": email, "password": password}))
            .send()
            .await
            .unwrap()
    }

    /// Creates a user with `role` in the admin's tenant and logs them in.
    pub async fn with_user(&self, admin: &Session, role: &str) -> Session {
        let email = format!(
            "{role}-{}@{}.test",
            &uuid::Uuid::new_v4().simple().to_string()[..8],
            admin.tenant_name
        );
        let response = self
            .post(
                "/api/v1/users",
                &admin.access_token,
                json!({"email": email, "role": role, "password": PASSWORD}),
            )
            .send()
            .await
            .unwrap();
        let created = expect_status(response, StatusCode::CREATED).await;
        let login = expect_status(
            self.login(&admin.tenant_name, &email, PASSWORD).await,
            StatusCode::OK,
        )
        .await;
        Session {
            tenant_id: admin.tenant_id.clone(),
            tenant_name: admin.tenant_name.clone(),
            user_id: created["user"]["id"].as_str().unwrap().to_owned(),
            email,
            password: PASSWORD.to_owned(),
            access_token: login["access_token"].as_str().unwrap().to_owned(),
            refresh_token: login["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Creates an API key for the session's user with these scopes; returns (id, secret).
    pub async fn with_api_key(&self, session: &Session, scopes: &[&str]) -> (String, String) {
        let response = self
            .post(
                "/api/v1/api-keys",
                &session.access_token,
                json!({"name": "test key", "scopes": scopes}),
            )
            .send()
            .await
            .unwrap();
        let body = expect_status(response, StatusCode::CREATED).await;
        (
            body["id"].as_str().unwrap().to_owned(),
            body["key"].as_str().unwrap().to_owned(),
        )
    }

    /// Runs SQL as the database owner (bypassing row-level security), for arranging state
    /// the API cannot, like an expiry in the past.
    pub fn sql(&self, statement: &str) {
        use diesel::connection::SimpleConnection;
        self.db.owner_connection().batch_execute(statement).unwrap();
    }

    /// Counts rows as the database owner, to prove what was (not) written.
    pub fn count(&self, query: &str) -> i64 {
        count_in(&self.db, query)
    }
}

/// Runs a counting query (`SELECT count(*) …`) on `db` as its owner, bypassing row-level
/// security, to prove what was (not) written.
pub fn count_in(db: &TestDatabase, query: &str) -> i64 {
    count_on(&mut db.owner_connection(), query)
}

pub fn count_on(conn: &mut diesel::PgConnection, query: &str) -> i64 {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(format!("SELECT ({query})::bigint AS n"))
        .get_result::<Count>(conn)
        .unwrap()
        .n
}

/// The claims of a JWT, read without checking its signature (to forge variants of it).
pub fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// A JWT of `claims`, signed with `alg` and `secret`.
pub fn sign(claims: &Value, alg: jsonwebtoken::Algorithm, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Asserts the status and returns the JSON body (or `Value::Null` for an empty body).
pub async fn expect_status(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "unexpected status; body: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

/// Asserts an error response: status, and the stable code in `{"error": {"code": ...}}`.
pub async fn expect_error(response: Response, status: StatusCode, code: &str) -> Value {
    let body = expect_status(response, status).await;
    assert_eq!(body["error"]["code"], code, "unexpected error body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "no message: {body}"
    );
    body
}

/// One Server-Sent Event as the tests see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sse {
    pub id: Option<u64>,
    pub event: String,
    pub data: Value,
}

/// Parses a complete `text/event-stream` body (comments skipped).
pub fn parse_sse(body: &str) -> Vec<Sse> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut id = None;
            let mut event = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            if data.is_empty() {
                return None;
            }
            let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
            Some(Sse { id, event, data })
        })
        .collect()
}

/// The answer text of a run's events.
pub fn answer(events: &[Sse]) -> String {
    events
        .iter()
        .filter(|e| e.event == "message")
        .filter_map(|e| e.data["data"].as_str().map(str::to_owned))
        .collect()
}

/// Reads SSE events from a streaming response until `count` events have arrived (or the
/// stream ends), then drops the connection.
pub async fn read_events(response: Response, count: usize) -> Vec<Sse> {
    use futures_util::StreamExt;
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while events.len() < count {
        let Some(chunk) = stream.next().await else {
            break;
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            events.extend(parse_sse(&block));
        }
    }
    events.truncate(count);
    events
}

impl TestApp {
    /// Creates an agent as `session` (an admin) and returns its JSON.
    pub async fn agent(&self, session: &Session, body: Value) -> Value {
        let response = self
            .post("/api/v1/agents", &session.access_token, body)
            .send()
            .await
            .unwrap();
        expect_status(response, StatusCode::CREATED).await
    }

    /// Sends a chat message and reads the whole event stream.
    pub async fn chat(&self, token: &str, body: Value) -> (reqwest::header::HeaderMap, Vec<Sse>) {
        let response = self
            .post("/api/v1/chat/completions", token, body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "chat failed: {text}");
        (headers, parse_sse(&text))
    }

    /// Starts a chat turn and returns the streaming response (not yet read) and its run id.
    pub async fn start_chat(&self, token: &str, body: Value) -> (Response, String) {
        let response = self
            .post("/api/v1/chat/completions", token, body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "chat did not start");
        let run_id = response.headers()["x-run-id"].to_str().unwrap().to_owned();
        (response, run_id)
    }

    /// Waits until a run has finished (and its row is written) and returns it.
    pub async fn finished_run(&self, token: &str, run_id: &str) -> Value {
        for _ in 0..200 {
            let response = self
                .get(&format!("/api/v1/runs/{run_id}"), token)
                .send()
                .await
                .unwrap();
            // An OpenAI-compatible run's row is written behind it: not found until then.
            if response.status() != StatusCode::NOT_FOUND {
                let run = expect_status(response, StatusCode::OK).await;
                if run["status"] != "running" {
                    return run;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("run {run_id} did not finish");
    }
}

/// The real `agent-paas` binary serving on a free port (for what needs a whole process:
/// signals, exported traces). Killed when dropped.
pub struct Binary {
    pub base: String,
    pub child: std::process::Child,
}

impl Binary {
    /// Starts `agent-paas serve --no-migrate` on `db` (already migrated) with `env`, and waits
    /// until it answers.
    pub async fn start(db: &TestDatabase, env: &[(&str, &str)]) -> Binary {
        Self::start_with(db.url(), &["serve", "--no-migrate"], env).await
    }

    /// Starts `agent-paas <args>` (a `serve`) on the database at `database_url` with `env`, and
    /// waits (at most 10 s) until it answers.
    pub async fn start_with(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Binary {
        let port = free_port();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_agent-paas"));
        command
            .args(args)
            .env("DATABASE_URL", database_url)
            .env("REDIS_URL", "redis://127.0.0.1:6379")
            .env("PAAS_REDIS_PREFIX", paas_testing::redis_prefix())
            .env("PAAS_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("PAAS_BCRYPT_COST", "4")
            .env("PAAS_MOCK_CHUNK_DELAY_MS", "0")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if reqwest::get(format!("{base}/healthz")).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Binary { base, child }
    }

    /// Sends SIGTERM, as an orchestrator stopping the pod would.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`; its exit status.
    pub async fn wait(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        None
    }

    /// Signs up a tenant and returns its admin's access token.
    pub async fn signup(&self, name: &str) -> String {
        let body: Value = reqwest::Client::new()
            .post(format!("{}/api/v1/auth/signup", self.base))
            .json(&json!({"tenant_name": name, "email": format!("a@{name}.test"), "password": PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A new API key of the signed-up user (`token`) with `scopes`.
    pub async fn api_key(&self, token: &str, scopes: &[&str]) -> String {
        let body: Value = reqwest::Client::new()
            .post(format!("{}/api/v1/api-keys", self.base))
            .bearer_auth(token)
            .json(&json!({"name": "integration", "scopes": scopes}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["key"].as_str().unwrap().to_owned()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis server of this test's own, so stopping it disturbs no other test.
pub struct PrivateRedis {
    pub port: u16,
    child: std::process::Child,
}

impl PrivateRedis {
    pub fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        Self { port, child }
    }

    pub async fn wait_ready(&self) {
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start");
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL server of this test's own (its own data directory and port), so stopping and
/// restarting it disturbs no other test. Runs as the `postgres` user when the tests run as root
/// (PostgreSQL refuses to run as root).
pub struct PrivatePostgres {
    pub port: u16,
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
}

impl PrivatePostgres {
    /// Creates a cluster and a migrated database `paas`, and starts the server.
    pub fn start() -> Self {
        let bin = ["17", "16", "15", "14"]
            .iter()
            .map(|v| std::path::PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
            .find(|dir| dir.join("pg_ctl").exists())
            .expect("PostgreSQL server binaries under /usr/lib/postgresql/<version>/bin");
        let dir = std::env::temp_dir().join(format!("paas-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let pg = Self {
            port: free_port(),
            dir,
            bin,
        };
        if as_root() {
            let status = std::process::Command::new("chown")
                .arg("postgres:postgres")
                .arg(&pg.dir)
                .status()
                .unwrap();
            assert!(status.success(), "chown of the data directory failed");
        }
        pg.run("initdb", &["-A", "trust", "-U", "postgres", "--no-sync"]);
        pg.resume();
        let mut admin = pg.connect("postgres");
        diesel::connection::SimpleConnection::batch_execute(&mut admin, "CREATE DATABASE paas")
            .unwrap();
        paas_persistence::migrations::run_pending(&pg.url())
            .unwrap_or_else(|err| panic!("migrating the private database failed: {err:?}"));
        pg
    }

    /// One of PostgreSQL's programs on this server's data directory (as `postgres` when root).
    fn command(&self, program: &str, args: &[&str]) -> std::process::Command {
        let path = self.bin.join(program);
        let mut command = if as_root() {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            std::process::Command::new(path)
        };
        command.args(args).arg("-D").arg(&self.dir);
        command
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program, args)
            .output()
            .expect("run a PostgreSQL program");
        assert!(
            output.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The URL of the `paas` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/paas", self.port)
    }

    pub fn connect(&self, database: &str) -> diesel::PgConnection {
        use diesel::Connection;
        let url = format!("postgres://postgres@127.0.0.1:{}/{database}", self.port);
        diesel::PgConnection::establish(&url).unwrap()
    }

    /// Stops the server the way `pg_ctl stop` does by default (fast: open transactions are
    /// rolled back, connections are closed), and waits until it is down.
    pub fn stop(&self) {
        self.run("pg_ctl", &["stop", "-m", "fast", "-w"]);
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &["start", "-w", "-l", log.to_str().unwrap(), "-o", &options],
        );
    }

    /// A counting query (`SELECT count(*) …`) on the `paas` database, as its owner.
    pub fn count(&self, query: &str) -> i64 {
        count_on(&mut self.connect("paas"), query)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl", &["stop", "-m", "immediate", "-w"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the tests run as root (`/proc/self` belongs to the process's effective user).
fn as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
