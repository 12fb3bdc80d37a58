//! Typed settings, read once from the environment at start-up (plus a `.env` file in
//! development) and passed to everything that needs them. Never a global.
//!
//! | Variable | Default | Meaning |
//! |---|---|---|
//! | `PAAS_ENV` | `development` | `development` or `production`. Production refuses to start with missing or weak secrets. |
//! | `DATABASE_URL` | `postgres://postgres@127.0.0.1:5432/agent_paas` (development only) | PostgreSQL connection URL. |
//! | `REDIS_URL` | `redis://127.0.0.1:6379` (development only) | Redis connection URL. |
//! | `PAAS_LISTEN_ADDR` | `127.0.0.1:8080` | Address and port the HTTP server binds. |
//! | `PAAS_JWT_SECRET` | random per process (development only) | HMAC secret for access and refresh tokens; at least 32 bytes. |
//! | `PAAS_JWT_SECRET_PREVIOUS` | unset | The secret being rotated out: tokens it signed still verify. |
//! | `PAAS_MASTER_KEY` | random per process (development only) | Base64 of 32 bytes: the AES-256-GCM key that encrypts secrets at rest. |
//! | `PAAS_JWT_ISSUER` | `agent-paas` | `iss` of issued tokens (audiences derive from it). |
//! | `PAAS_ACCESS_TOKEN_TTL_SECS` | `900` | Access-token lifetime. |
//! | `PAAS_REFRESH_TOKEN_TTL_SECS` | `2592000` (30 days) | Refresh-token lifetime. |
//! | `PAAS_BCRYPT_COST` | `12` | bcrypt work factor (at least 10 in production). |
//! | `PAAS_DB_MAX_CONNECTIONS` | `16` | Connection-pool size. |
//! | `PAAS_DB_ACQUIRE_TIMEOUT_MS` | `5000` | Wait for a connection before answering 503. |
//! | `PAAS_REDIS_PREFIX` | `paas:` | Prefix of every Redis key (lets deployments share a Redis). |
//! | `PAAS_ALLOW_SIGNUP` | `true` | Whether `POST /api/v1/auth/signup` is open to anyone. |
//! | `PAAS_TRUST_PROXY_HEADERS` | `false` | Take the client address from `Forwarded`/`X-Forwarded-For` (only behind a proxy that sets them). |
//! | `PAAS_LOGIN_MAX_FAILURES` | `5` | Failed logins per account before it is throttled. |
//! | `PAAS_LOGIN_MAX_FAILURES_PER_IP` | `30` | Failed logins per client address before it is throttled. |
//! | `PAAS_LOGIN_LOCKOUT_SECS` | `900` | Window (and lock-out) of the login throttle. |
//! | `PAAS_API_KEY_DEFAULT_TTL_DAYS` | `90` | Expiry of a new API key when none is asked for. |
//! | `PAAS_API_KEY_MAX_TTL_DAYS` | `365` | Longest expiry a new API key may have. |
//! | `PAAS_WORKERS` | number of CPUs | HTTP worker threads. |
//! | `PAAS_LOG_FORMAT` | `json` in production, `text` in development | Log line format. |
//! | `RUST_LOG` | `info` | Log filter (tracing `EnvFilter` syntax). |
//! | `PAAS_MASTER_KEY_PREVIOUS` | unset | The master key being rotated out: secrets it encrypted still decrypt. |
//! | `PAAS_ALLOW_PRIVATE_UPSTREAMS` | `false` | Let provider base URLs point at loopback or private addresses (a local vLLM or Ollama). |
//! | `OPENAI_API_KEY` | unset | Enables the platform provider `platform:openai` for every tenant. |
//! | `OPENAI_BASE_URL` | `https://api.openai.com/v1` | Base URL of `platform:openai` (any OpenAI-compatible server). |
//! | `ZHIPUAI_API_KEY` | unset | Enables `platform:glm` (Zhipu GLM). |
//! | `ANTHROPIC_API_KEY` | unset | Enables `platform:anthropic`. |
//! | `PAAS_MOCK_CHUNK_DELAY_MS` | `15` | Pause between the built-in mock model's streamed chunks. |
//! | `PAAS_TOOL_TIMEOUT_SECS` | `15` | Time limit of one tool call. |
//! | `PAAS_RUN_EVENTS_TTL_SECS` | `3600` | How long a finished run's events stay available for resuming. |
//! | `PAAS_SSE_PING_SECS` | `15` | A comment line (`: ping`) is sent on a chat's event stream after this long without an event, so proxies keep idle connections open. |
//! | `PAAS_RUN_LEASE_SECS` | `30` | A run's ownership lease: its process renews it every third of this; a replica marks a run whose lease expired (its process died) `failed` (`interrupted`), releases its tokens and bills it, sweeping every half of this. |
//! | `PAAS_UPSTREAM_CONNECT_TIMEOUT_SECS` | `10` | Connecting to a model provider. |
//! | `PAAS_UPSTREAM_FIRST_BYTE_TIMEOUT_SECS` | `60` | Waiting for a provider's response headers. |
//! | `PAAS_UPSTREAM_IDLE_TIMEOUT_SECS` | `60` | Silence allowed between streamed chunks. |
//! | `PAAS_UPSTREAM_MAX_RETRIES` | `2` | Retries of a provider call that failed before its first byte. |
//! | `PAAS_OPERATOR_TOKEN` | unset (operator API off) | Bearer token of the platform operator's API (`/api/v1/admin/…`); at least 32 characters. |
//! | `PAAS_WEB_DIR` | unset (the dashboard built into the binary) | Serve the web dashboard from this directory instead (a `frontend/dist` build). |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | unset (no traces exported) | Export traces over OTLP/HTTP to this endpoint (e.g. `http://jaeger:4318`); the other standard `OTEL_*` variables apply too. |
//! | `OTEL_SERVICE_NAME` | `agent-paas` | The service name traces carry. |
//! | `PAAS_TRACES_FILTER` | `info` | Which spans are exported (EnvFilter syntax), independent of `RUST_LOG`. |
//! | `PAAS_METRICS_TOKEN` | unset (open) | When set, `GET /metrics` requires `Authorization: Bearer <token>`. |
//! | `PAAS_QUOTA_FAIL_OPEN` | `false` | While Redis is unavailable, admit chats without a token reservation (`true`) instead of answering 503. |
//! | `PAAS_QUOTAS` | `true` | Enforce plans' rate limits, runs in progress and token quotas in Redis. `false`: no limits at all and no Redis round trip on a request's path; usage is still recorded in the ledger, but the month's counters in Redis do not count it. |
//! | `PAAS_RECORD_OPENAI_RUNS` | `true` | Write a run row for each OpenAI-compatible request, behind its answer and batched (`GET /api/v1/runs/{id}`, and recovery after a crash, need it). `false`: only its usage-ledger row is written. |
//! | `PAAS_CONFIG_CACHE` | `true` | Keep API keys, agents and provider clients in memory (changes reach every replica at once over Redis; off while Redis is unreachable). `false` reads them from PostgreSQL on every request. |
//!
//! Any secret (`DATABASE_URL`, `REDIS_URL`, `PAAS_JWT_SECRET`, `PAAS_JWT_SECRET_PREVIOUS`,
//! `PAAS_MASTER_KEY`, `PAAS_MASTER_KEY_PREVIOUS`, `OPENAI_API_KEY`, `ZHIPUAI_API_KEY`,
//! `ANTHROPIC_API_KEY`, `PAAS_OPERATOR_TOKEN`, `PAAS_METRICS_TOKEN`) may instead be read from the file named in `<NAME>_FILE`.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

/// Development or production.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Everything the server reads from its environment.
#[derive(Clone, Debug)]
pub struct Config {
    pub env: Environment,
    pub database_url: SecretString,
    pub redis_url: SecretString,
    pub listen_addr: String,
    pub jwt_secret: SecretString,
    pub jwt_previous_secret: Option<SecretString>,
    pub master_key: SecretString,
    pub jwt_issuer: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub bcrypt_cost: u32,
    pub db_max_connections: usize,
    pub db_acquire_timeout: Duration,
    pub redis_prefix: String,
    pub allow_signup: bool,
    pub trust_proxy_headers: bool,
    pub login_max_failures: u32,
    pub login_max_failures_per_ip: u32,
    pub login_lockout: Duration,
    pub api_key_default_ttl_days: u32,
    pub api_key_max_ttl_days: u32,
    pub workers: usize,
    pub log_format: LogFormat,
    pub master_key_previous: Option<SecretString>,
    pub allow_private_upstreams: bool,
    pub openai_api_key: Option<SecretString>,
    pub openai_base_url: String,
    pub zhipuai_api_key: Option<SecretString>,
    pub anthropic_api_key: Option<SecretString>,
    pub mock_chunk_delay: Duration,
    pub tool_timeout: Duration,
    pub run_events_ttl: Duration,
    /// Idle time before a `: ping` on a chat's event stream (`PAAS_SSE_PING_SECS`).
    pub sse_ping: Duration,
    /// A run's ownership lease (see `runs::recovery`).
    pub run_lease: Duration,
    pub upstream_connect_timeout: Duration,
    pub upstream_first_byte_timeout: Duration,
    pub upstream_idle_timeout: Duration,
    pub upstream_max_retries: u32,
    pub operator_token: Option<SecretString>,
    pub metrics_token: Option<SecretString>,
    pub web_dir: Option<std::path::PathBuf>,
    pub quota_fail_open: bool,
    /// Enforce rate limits and token quotas (`PAAS_QUOTAS`; see `paas_quota::QuotaConfig`).
    pub quotas: bool,
    /// Write a run row for each OpenAI-compatible request (`PAAS_RECORD_OPENAI_RUNS`).
    pub record_openai_runs: bool,
    /// Cache API keys, agents and provider clients in memory (see `crate::cache`).
    pub config_cache: bool,
    /// Secrets that were generated because none were configured (development only), so the
    /// server can warn that sessions will not survive a restart.
    pub generated_secrets: Vec<&'static str>,
    /// Things that are allowed but worth a warning at start-up.
    pub warnings: Vec<String>,
}

/// Every problem found in the environment, reported together.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

const DEV_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/agent_paas";
const DEV_REDIS_URL: &str = "redis://127.0.0.1:6379";
const MIN_SECRET_BYTES: usize = 32;

/// Strings people leave in place of a real secret.
const WEAK_SECRETS: &[&str] = &[
    "secret",
    "changeme",
    "change-me",
    "password",
    "development",
    "test",
    "jwt",
    "default",
];

/// Reads variables, with `<NAME>_FILE` support for secrets.
struct Source<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<String>,
}

impl Source<'_> {
    fn var(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn secret(&mut self, name: &str) -> Option<SecretString> {
        let file_var = format!("{name}_FILE");
        if let Some(path) = self.var(&file_var) {
            return match std::fs::read_to_string(&path) {
                Ok(contents) => Some(SecretString::from(contents.trim().to_owned())),
                Err(err) => {
                    self.problems
                        .push(format!("{file_var}: cannot read {path}: {err}"));
                    None
                }
            };
        }
        self.var(name).map(SecretString::from)
    }

    fn parse<T: std::str::FromStr>(&mut self, name: &str, default: T, what: &str) -> T {
        match self.var(name) {
            None => default,
            Some(raw) => raw.parse().unwrap_or_else(|_| {
                self.problems
                    .push(format!("{name} must be {what} (got {raw:?})"));
                default
            }),
        }
    }

    fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.var(name).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => true,
            Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => false,
            Some(v) => {
                self.problems
                    .push(format!("{name} must be true or false (got {v:?})"));
                default
            }
        }
    }
}

fn random_secret() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    SecretString::from(STANDARD.encode(bytes))
}

/// Why a JWT secret is too weak, if it is.
fn weak_secret_reason(secret: &str) -> Option<String> {
    if secret.len() < MIN_SECRET_BYTES {
        return Some(format!(
            "is {} bytes; use at least {MIN_SECRET_BYTES}",
            secret.len()
        ));
    }
    // Mostly placeholder words ("changeme-changeme-…"): little is left once they are removed.
    // (A random secret may contain "jwt" or "test" by chance; that leaves plenty.)
    let mut rest: String = secret
        .to_ascii_lowercase()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    for weak in WEAK_SECRETS {
        rest = rest.replace(weak, "");
    }
    if rest.len() < 16 {
        return Some("is made mostly of placeholder words".to_owned());
    }
    let distinct = secret
        .bytes()
        .collect::<std::collections::HashSet<_>>()
        .len();
    if distinct < 10 {
        return Some(format!("uses only {distinct} distinct characters"));
    }
    None
}

/// Why a master key is unusable, if it is: it must be base64 of exactly 32 bytes.
fn master_key_problem(key: &str, production: bool) -> Option<String> {
    match STANDARD.decode(key) {
        Err(_) => Some("is not valid base64".to_owned()),
        Ok(bytes) if bytes.len() != 32 => Some(format!(
            "decodes to {} bytes; it must be exactly 32",
            bytes.len()
        )),
        Ok(bytes)
            if production && bytes.iter().collect::<std::collections::HashSet<_>>().len() < 8 =>
        {
            Some("is not random (too few distinct bytes)".to_owned())
        }
        Ok(_) => None,
    }
}

const GENERATE_HINT: &str = "generate one with `openssl rand -base64 32`";

impl Config {
    /// Reads the process environment. Outside production, a `.env` file in the working
    /// directory is loaded first, without overriding variables that are already set; in
    /// production it is ignored, so configuration comes only from the real environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let production = matches!(
            std::env::var("PAAS_ENV").as_deref(),
            Ok("production") | Ok("prod")
        );
        if !production {
            match dotenvy::dotenv() {
                Ok(_) => {}
                Err(err) if err.not_found() => {}
                Err(err) => return Err(ConfigError(vec![format!(".env cannot be read: {err}")])),
            }
        }
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads settings from a map; for tests.
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| vars.get(name).cloned())
    }

    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut src = Source {
            lookup,
            problems: Vec::new(),
        };
        let env = match src.var("PAAS_ENV").as_deref() {
            None | Some("development") | Some("dev") => Environment::Development,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => {
                src.problems.push(format!(
                    "PAAS_ENV must be development or production (got {other:?})"
                ));
                Environment::Development
            }
        };
        let production = env == Environment::Production;
        let mut generated = Vec::new();
        let mut warnings = Vec::new();

        let database_url = match src.secret("DATABASE_URL") {
            Some(url) => url,
            None if production => {
                src.problems
                    .push("DATABASE_URL is required in production".to_owned());
                SecretString::from(String::new())
            }
            None => SecretString::from(DEV_DATABASE_URL.to_owned()),
        };
        let redis_url = match src.secret("REDIS_URL") {
            Some(url) => url,
            None if production => {
                src.problems
                    .push("REDIS_URL is required in production".to_owned());
                SecretString::from(String::new())
            }
            None => SecretString::from(DEV_REDIS_URL.to_owned()),
        };

        let jwt_secret = match src.secret("PAAS_JWT_SECRET") {
            Some(secret) => {
                if let Some(reason) = weak_secret_reason(secret.expose_secret()) {
                    if production {
                        src.problems
                            .push(format!("PAAS_JWT_SECRET {reason}; {GENERATE_HINT}"));
                    } else {
                        warnings.push(format!(
                            "PAAS_JWT_SECRET {reason}; acceptable only in development"
                        ));
                    }
                }
                secret
            }
            None if production => {
                src.problems.push(format!(
                    "PAAS_JWT_SECRET is required in production; {GENERATE_HINT}"
                ));
                SecretString::from(String::new())
            }
            None => {
                generated.push("PAAS_JWT_SECRET");
                random_secret()
            }
        };
        let jwt_previous_secret = src.secret("PAAS_JWT_SECRET_PREVIOUS");
        if let Some(previous) = &jwt_previous_secret
            && let (true, Some(reason)) = (production, weak_secret_reason(previous.expose_secret()))
        {
            src.problems
                .push(format!("PAAS_JWT_SECRET_PREVIOUS {reason}"));
        }

        let master_key = match src.secret("PAAS_MASTER_KEY") {
            Some(key) => {
                if let Some(problem) = master_key_problem(key.expose_secret(), production) {
                    src.problems
                        .push(format!("PAAS_MASTER_KEY {problem}; {GENERATE_HINT}"));
                }
                key
            }
            None if production => {
                src.problems.push(format!(
                    "PAAS_MASTER_KEY is required in production; {GENERATE_HINT}"
                ));
                SecretString::from(String::new())
            }
            None => {
                generated.push("PAAS_MASTER_KEY");
                random_secret()
            }
        };

        let bcrypt_cost = src.parse("PAAS_BCRYPT_COST", 12u32, "a number from 4 to 31");
        if !(4..=31).contains(&bcrypt_cost) {
            src.problems.push(format!(
                "PAAS_BCRYPT_COST must be from 4 to 31 (got {bcrypt_cost})"
            ));
        } else if production && bcrypt_cost < 10 {
            src.problems.push(format!(
                "PAAS_BCRYPT_COST is {bcrypt_cost}; use at least 10 in production"
            ));
        }

        let access_secs = src.parse("PAAS_ACCESS_TOKEN_TTL_SECS", 900u64, "a number of seconds");
        let refresh_secs = src.parse(
            "PAAS_REFRESH_TOKEN_TTL_SECS",
            30 * 86_400u64,
            "a number of seconds",
        );
        if access_secs == 0 || access_secs > 86_400 {
            src.problems
                .push("PAAS_ACCESS_TOKEN_TTL_SECS must be from 1 to 86400".to_owned());
        }
        if refresh_secs <= access_secs {
            src.problems.push(
                "PAAS_REFRESH_TOKEN_TTL_SECS must be longer than the access-token TTL".to_owned(),
            );
        }

        let default_ttl = src.parse("PAAS_API_KEY_DEFAULT_TTL_DAYS", 90u32, "a number of days");
        let max_ttl = src.parse("PAAS_API_KEY_MAX_TTL_DAYS", 365u32, "a number of days");
        if default_ttl == 0 || default_ttl > max_ttl {
            src.problems.push(
                "PAAS_API_KEY_DEFAULT_TTL_DAYS must be from 1 to PAAS_API_KEY_MAX_TTL_DAYS"
                    .to_owned(),
            );
        }

        let log_format = match src.var("PAAS_LOG_FORMAT").as_deref() {
            None if production => LogFormat::Json,
            None => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                src.problems.push(format!(
                    "PAAS_LOG_FORMAT must be json or text (got {other:?})"
                ));
                LogFormat::Text
            }
        };

        let master_key_previous = src.secret("PAAS_MASTER_KEY_PREVIOUS");
        if let Some(problem) = master_key_previous
            .as_ref()
            .and_then(|key| master_key_problem(key.expose_secret(), production))
        {
            src.problems
                .push(format!("PAAS_MASTER_KEY_PREVIOUS {problem}"));
        }
        let secs = |src: &mut Source<'_>, name: &str, default: u64| {
            Duration::from_secs(src.parse(name, default, "a number of seconds").max(1))
        };
        let tool_timeout = secs(&mut src, "PAAS_TOOL_TIMEOUT_SECS", 15);
        let run_events_ttl = secs(&mut src, "PAAS_RUN_EVENTS_TTL_SECS", 3600);
        let run_lease = secs(&mut src, "PAAS_RUN_LEASE_SECS", 30);
        let sse_ping = secs(&mut src, "PAAS_SSE_PING_SECS", 15);
        let upstream_connect_timeout = secs(&mut src, "PAAS_UPSTREAM_CONNECT_TIMEOUT_SECS", 10);
        let upstream_first_byte_timeout =
            secs(&mut src, "PAAS_UPSTREAM_FIRST_BYTE_TIMEOUT_SECS", 60);
        let upstream_idle_timeout = secs(&mut src, "PAAS_UPSTREAM_IDLE_TIMEOUT_SECS", 60);
        let openai_base_url = src
            .var("OPENAI_BASE_URL")
            .unwrap_or_else(|| "https://api.openai.com/v1".to_owned());
        if url::Url::parse(&openai_base_url).is_err() {
            src.problems.push(format!(
                "OPENAI_BASE_URL is not a URL (got {openai_base_url:?})"
            ));
        }

        let operator_token = src.secret("PAAS_OPERATOR_TOKEN");
        if let Some(token) = &operator_token
            && token.expose_secret().trim().chars().count() < 32
        {
            src.problems.push(format!(
                "PAAS_OPERATOR_TOKEN must be at least 32 characters; {GENERATE_HINT}"
            ));
        }

        let default_workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let config = Config {
            env,
            database_url,
            redis_url,
            listen_addr: src
                .var("PAAS_LISTEN_ADDR")
                .unwrap_or_else(|| "127.0.0.1:8080".to_owned()),
            jwt_secret,
            jwt_previous_secret,
            master_key,
            jwt_issuer: src
                .var("PAAS_JWT_ISSUER")
                .unwrap_or_else(|| "agent-paas".to_owned()),
            access_token_ttl: Duration::from_secs(access_secs),
            refresh_token_ttl: Duration::from_secs(refresh_secs),
            bcrypt_cost,
            db_max_connections: src
                .parse("PAAS_DB_MAX_CONNECTIONS", 16usize, "a number")
                .max(1),
            db_acquire_timeout: Duration::from_millis(
                src.parse(
                    "PAAS_DB_ACQUIRE_TIMEOUT_MS",
                    5000u64,
                    "a number of milliseconds",
                )
                .max(1),
            ),
            redis_prefix: src
                .var("PAAS_REDIS_PREFIX")
                .unwrap_or_else(|| "paas:".to_owned()),
            allow_signup: src.flag("PAAS_ALLOW_SIGNUP", true),
            trust_proxy_headers: src.flag("PAAS_TRUST_PROXY_HEADERS", false),
            login_max_failures: src
                .parse("PAAS_LOGIN_MAX_FAILURES", 5u32, "a number")
                .max(1),
            login_max_failures_per_ip: src
                .parse("PAAS_LOGIN_MAX_FAILURES_PER_IP", 30u32, "a number")
                .max(1),
            login_lockout: Duration::from_secs(
                src.parse("PAAS_LOGIN_LOCKOUT_SECS", 900u64, "a number of seconds")
                    .max(1),
            ),
            api_key_default_ttl_days: default_ttl,
            api_key_max_ttl_days: max_ttl,
            workers: src
                .parse("PAAS_WORKERS", default_workers, "a number")
                .max(1),
            log_format,
            master_key_previous,
            allow_private_upstreams: src.flag("PAAS_ALLOW_PRIVATE_UPSTREAMS", false),
            openai_api_key: src.secret("OPENAI_API_KEY"),
            openai_base_url,
            zhipuai_api_key: src.secret("ZHIPUAI_API_KEY"),
            anthropic_api_key: src.secret("ANTHROPIC_API_KEY"),
            mock_chunk_delay: Duration::from_millis(src.parse(
                "PAAS_MOCK_CHUNK_DELAY_MS",
                15u64,
                "a number of milliseconds",
            )),
            tool_timeout,
            run_events_ttl,
            run_lease,
            sse_ping,
            upstream_connect_timeout,
            upstream_first_byte_timeout,
            upstream_idle_timeout,
            upstream_max_retries: src
                .parse("PAAS_UPSTREAM_MAX_RETRIES", 2u32, "a number")
                .min(10),
            operator_token,
            metrics_token: src.secret("PAAS_METRICS_TOKEN"),
            web_dir: src.var("PAAS_WEB_DIR").map(std::path::PathBuf::from),
            quota_fail_open: src.flag("PAAS_QUOTA_FAIL_OPEN", false),
            quotas: src.flag("PAAS_QUOTAS", true),
            record_openai_runs: src.flag("PAAS_RECORD_OPENAI_RUNS", true),
            config_cache: src.flag("PAAS_CONFIG_CACHE", true),
            generated_secrets: generated,
            warnings,
        };
        if src.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(src.problems))
        }
    }

    pub fn is_production(&self) -> bool {
        self.env == Environment::Production
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_map(&vars)
    }

    const STRONG: &str = "Zq3v9KfX2mLw8RtY5pNc7bHj4sUd6aGe";
    const KEY: &str = "q83vEjKx3dGq9ZBTqXBzE0N2dXl1bWZ3bWZ0aGlzaXM=";

    #[test]
    fn development_needs_nothing_and_generates_secrets() {
        let config = config(&[]).unwrap();
        assert_eq!(config.env, Environment::Development);
        assert_eq!(config.listen_addr, "127.0.0.1:8080");
        assert_eq!(config.access_token_ttl, Duration::from_secs(900));
        assert_eq!(
            config.generated_secrets,
            vec!["PAAS_JWT_SECRET", "PAAS_MASTER_KEY"]
        );
        assert!(master_key_problem(config.master_key.expose_secret(), true).is_none());
    }

    #[test]
    fn production_names_every_missing_secret() {
        let err = config(&[("PAAS_ENV", "production")]).unwrap_err();
        let text = err.to_string();
        for var in [
            "DATABASE_URL",
            "REDIS_URL",
            "PAAS_JWT_SECRET",
            "PAAS_MASTER_KEY",
        ] {
            assert!(text.contains(var), "{var} missing from: {text}");
        }
    }

    #[test]
    fn production_refuses_weak_secrets() {
        let base = [
            ("PAAS_ENV", "production"),
            ("DATABASE_URL", "postgres://app@db/paas"),
            ("REDIS_URL", "redis://cache:6379"),
            ("PAAS_MASTER_KEY", KEY),
        ];
        for weak in [
            "short",
            "changeme-changeme-changeme-changeme",
            &"ab".repeat(20),
        ] {
            let mut vars = base.to_vec();
            vars.push(("PAAS_JWT_SECRET", weak));
            let err = config(&vars).unwrap_err();
            assert!(err.to_string().contains("PAAS_JWT_SECRET"), "{weak}: {err}");
            assert!(
                !err.to_string().contains(weak),
                "the secret must not be echoed"
            );
        }
        let mut vars = base.to_vec();
        vars.push(("PAAS_JWT_SECRET", STRONG));
        assert!(config(&vars).is_ok());
        vars[3] = ("PAAS_MASTER_KEY", "dG9vIHNob3J0");
        assert!(
            config(&vars)
                .unwrap_err()
                .to_string()
                .contains("exactly 32")
        );
        vars[3] = (
            "PAAS_MASTER_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        );
        assert!(
            config(&vars)
                .unwrap_err()
                .to_string()
                .contains("not random")
        );
    }

    #[test]
    fn random_secrets_are_never_mistaken_for_placeholders() {
        for _ in 0..5_000 {
            let secret = random_secret();
            assert_eq!(weak_secret_reason(secret.expose_secret()), None);
        }
        // Even one that happens to contain placeholder words.
        assert_eq!(
            weak_secret_reason("jwtTESTq83vEjKx3dGq9ZBTqXBzE0N2dXl1bWZ3bW"),
            None
        );
        assert!(weak_secret_reason("my-jwt-secret-test-password-default").is_some());
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = std::env::temp_dir().join(format!("paas-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwt");
        std::fs::write(&path, format!("{STRONG}\n")).unwrap();
        let config = config(&[("PAAS_JWT_SECRET_FILE", path.to_str().unwrap())]).unwrap();
        assert_eq!(config.jwt_secret.expose_secret(), STRONG);
        let err = config_missing_file();
        assert!(err.to_string().contains("PAAS_JWT_SECRET_FILE"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn config_missing_file() -> ConfigError {
        config(&[("PAAS_JWT_SECRET_FILE", "/nonexistent/paas/secret")]).unwrap_err()
    }

    #[test]
    fn bad_values_are_named() {
        let err = config(&[
            ("PAAS_ENV", "staging"),
            ("PAAS_BCRYPT_COST", "fast"),
            ("PAAS_ALLOW_SIGNUP", "maybe"),
            ("PAAS_LOG_FORMAT", "xml"),
        ])
        .unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
    }
}
