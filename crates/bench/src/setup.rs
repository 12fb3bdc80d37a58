//! The system under test: the mock upstreams, the platform in front of them, and a tenant with
//! one provider and one agent per mock and an API key.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::Fail;
use crate::procs::{Proc, free_port, sibling, wait_ready};

/// How a mock upstream answers.
#[derive(Clone, Copy, Debug)]
pub struct MockShape {
    pub name: &'static str,
    pub latency_ms: u64,
    pub chunks: u32,
    pub chunk_interval_ms: u64,
}

/// No delay at all: what the platform adds is all there is to see.
pub const FAST: MockShape = MockShape {
    name: "fast",
    latency_ms: 0,
    chunks: 20,
    chunk_interval_ms: 0,
};
/// A model that takes 50 ms to answer (the capacity scenario).
pub const SLOW: MockShape = MockShape {
    name: "slow",
    latency_ms: 50,
    chunks: 20,
    chunk_interval_ms: 0,
};
/// 20 chunks, 10 ms apart (the streaming scenario).
pub const STREAM: MockShape = MockShape {
    name: "stream",
    latency_ms: 0,
    chunks: 20,
    chunk_interval_ms: 10,
};
/// 20 chunks a second apart (50 ms in a smoke run): streams that stay open (the concurrency and
/// memory scenario).
pub fn hold(quick: bool) -> MockShape {
    MockShape {
        name: "hold",
        latency_ms: 0,
        chunks: 20,
        chunk_interval_ms: if quick { 50 } else { 1_000 },
    }
}

/// Every mock the scenarios use.
pub fn shapes(quick: bool) -> [MockShape; 4] {
    [FAST, SLOW, STREAM, hold(quick)]
}

/// A running mock.
#[derive(Debug)]
pub struct Mock {
    pub shape: MockShape,
    pub proc: Proc,
    /// `http://127.0.0.1:<port>/v1`
    pub base: String,
}

pub async fn start_mock(bin_dir: Option<&Path>, shape: MockShape) -> Result<Mock, Fail> {
    let port = free_port()?;
    let mut command = Command::new(sibling(bin_dir, "mock-upstream")?);
    command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--latency-ms", &shape.latency_ms.to_string()])
        .args(["--chunks", &shape.chunks.to_string()])
        .args(["--chunk-interval-ms", &shape.chunk_interval_ms.to_string()])
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1");
    let mut proc = Proc::spawn(&format!("mock-upstream ({})", shape.name), command)?;
    let root = format!("http://127.0.0.1:{port}");
    wait_ready(
        &mut proc,
        &format!("{root}/healthz"),
        Duration::from_secs(10),
    )
    .await?;
    Ok(Mock {
        shape,
        proc,
        base: format!("{root}/v1"),
    })
}

const OPERATOR_TOKEN: &str = "bench-operator-token-0123456789abcdef";

/// The machine's Redis, which the benchmark shares (under a key prefix of its own).
pub const SHARED_REDIS: &str = "redis://127.0.0.1:6379";

/// Starts `agent-paas serve` on `database_url` (already migrated) and `redis_url`, with `env` on
/// top of the full path's configuration, logging warnings and errors only, to `log`.
pub async fn start_platform(
    bin_dir: Option<&Path>,
    database_url: &str,
    redis_url: &str,
    env: &[(&str, &str)],
    log: &Path,
) -> Result<(Proc, String), Fail> {
    let port = free_port()?;
    let mut command = Command::new(sibling(bin_dir, "agent-paas")?);
    command
        .args(["serve", "--no-migrate"])
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url)
        .env(
            "PAAS_REDIS_PREFIX",
            format!("bench:{}:", uuid::Uuid::new_v4().simple()),
        )
        .env("PAAS_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("PAAS_ENV", "development")
        .env("PAAS_ALLOW_PRIVATE_UPSTREAMS", "true")
        .env("PAAS_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("PAAS_BCRYPT_COST", "4")
        .env("PAAS_LOG_FORMAT", "text")
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied());
    // The server logs to stdout (and reports a failure to start on stderr): both go to `log`.
    let file = std::fs::File::create(log)?;
    command.stdout(file.try_clone()?).stderr(file);
    let mut proc = Proc::spawn_with_output("agent-paas", command)?;
    let root = format!("http://127.0.0.1:{port}");
    wait_ready(
        &mut proc,
        &format!("{root}/readyz"),
        Duration::from_secs(60),
    )
    .await?;
    Ok((proc, root))
}

/// One JSON call of the setup; anything but a 2xx is an error.
pub async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    bearer: &str,
    body: Value,
) -> Result<Value, Fail> {
    let response = client
        .request(method.clone(), &url)
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(format!("{method} {url}: {status}: {body}").into());
    }
    Ok(body)
}

/// The tenant [`configure_tenant`] sets up, and its admin's credentials.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: String,
    /// The admin's login session: an access token (15 minutes) and its refresh token.
    pub access_token: String,
    pub refresh_token: String,
    /// An API key of the admin's with the `chat` scope.
    pub key: String,
}

/// A tenant on the enterprise plan with limits no benchmark reaches, a provider and an agent
/// (`bench-<mock>`, no tools) per mock, and an API key with the `chat` scope. Returns the key.
pub async fn configure(root: &str, mocks: &[Mock]) -> Result<String, Fail> {
    Ok(configure_tenant(root, mocks).await?.key)
}

/// [`configure`], returning the tenant and the admin's session as well as the key.
pub async fn configure_tenant(root: &str, mocks: &[Mock]) -> Result<Tenant, Fail> {
    let client = reqwest::Client::new();
    let signup = call(
        &client,
        reqwest::Method::POST,
        format!("{root}/api/v1/auth/signup"),
        "",
        json!({"tenant_name": "bench", "email": "bench@bench.test",
               "password": "bench-password-0123456789"}),
    )
    .await?;
    let token = signup["access_token"]
        .as_str()
        .ok_or("signup gave no access token")?
        .to_owned();
    let refresh_token = signup["refresh_token"]
        .as_str()
        .ok_or("signup gave no refresh token")?
        .to_owned();
    let tenant = signup["tenant"]["id"]
        .as_str()
        .ok_or("signup gave no tenant id")?
        .to_owned();
    call(
        &client,
        reqwest::Method::PATCH,
        format!("{root}/api/v1/admin/tenants/{tenant}"),
        OPERATOR_TOKEN,
        json!({"plan": "enterprise"}),
    )
    .await?;
    let unlimited = 1_000_000_000i64;
    call(
        &client,
        reqwest::Method::PUT,
        format!("{root}/api/v1/admin/tenants/{tenant}/quota"),
        OPERATOR_TOKEN,
        json!({"max_tokens_per_month": unlimited, "requests_per_minute": unlimited,
               "key_requests_per_minute": unlimited, "max_concurrent_runs": unlimited}),
    )
    .await?;
    for mock in mocks {
        let provider = call(
            &client,
            reqwest::Method::POST,
            format!("{root}/api/v1/providers"),
            &token,
            json!({"name": format!("mock-{}", mock.shape.name), "kind": "openai",
                   "base_url": mock.base, "api_key": "sk-bench-upstream",
                   "default_model": "mock-gpt"}),
        )
        .await?;
        call(
            &client,
            reqwest::Method::POST,
            format!("{root}/api/v1/agents"),
            &token,
            json!({"name": format!("bench-{}", mock.shape.name), "provider_id": provider["id"],
                   "model": "mock-gpt", "tools": [], "max_tokens": 256, "max_steps": 1,
                   "timeout_seconds": 600}),
        )
        .await?;
    }
    let key = call(
        &client,
        reqwest::Method::POST,
        format!("{root}/api/v1/api-keys"),
        &token,
        json!({"name": "bench", "scopes": ["chat"]}),
    )
    .await?;
    Ok(Tenant {
        id: tenant,
        access_token: token,
        refresh_token,
        key: key["key"].as_str().ok_or("no API key")?.to_owned(),
    })
}
