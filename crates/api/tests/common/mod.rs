//! `TestApp`: a real server on a random port, with its own database (cloned from the migrated
//! template) and its own Redis key prefix, driven over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::TcpListener;

use actix_web::dev::ServerHandle;
use paas_api::{AppState, Config};
use paas_testing::TestDatabase;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

/// The JWT secret every test server uses, so tests can forge tokens on purpose.
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789-abcdefghijklmnop";
pub const PASSWORD: &str = "correct horse battery staple";
pub const MASTER_KEY: &str = "q83vEjKx3dGq9ZBTqXBzE0N2dXl1bWZ3bWZ0aGlzaXM=";

pub struct TestAppBuilder {
    vars: HashMap<String, String>,
}

impl TestAppBuilder {
    /// Overrides one environment variable of the server's configuration.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    pub async fn start(mut self) -> TestApp {
        let db = TestDatabase::new();
        let redis_prefix = paas_testing::redis_prefix();
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
        ];
        for (name, value) in defaults {
            self.vars
                .entry(name.to_owned())
                .or_insert_with(|| value.to_owned());
        }
        let config = Config::from_map(&self.vars).expect("test configuration");
        let state = AppState::new(config.clone()).expect("application state");
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
    pub db: TestDatabase,
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

    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            vars: HashMap::new(),
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
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(format!("SELECT ({query})::bigint AS n"))
            .get_result::<Count>(&mut self.db.owner_connection())
            .unwrap()
            .n
    }
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
