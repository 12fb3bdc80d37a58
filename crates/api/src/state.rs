//! Everything a request handler can reach, built once at start-up and shared by all workers.

use std::sync::Arc;

use paas_agents::tools::{HttpFetchConfig, ToolRegistry};
use paas_auth::{JwtConfig, JwtKeys, PasswordHasher, SecretCipher};
use paas_core::{Clock, Error, SystemClock};
use paas_persistence::{Db, DbConfig};
use secrecy::ExposeSecret;

use crate::config::Config;
use crate::redis::RedisStore;
use crate::runs::RunManager;
use crate::services::providers::ProviderRegistry;
use crate::throttle::{LoginThrottle, ThrottleLimits};

/// Shared application state (cheap to clone: everything inside is reference-counted).
#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub redis: RedisStore,
    pub jwt: Arc<JwtKeys>,
    pub passwords: PasswordHasher,
    pub login_throttle: Arc<LoginThrottle>,
    pub clock: Arc<dyn Clock>,
    pub cipher: SecretCipher,
    pub providers: Arc<ProviderRegistry>,
    pub runs: RunManager,
    pub quotas: paas_quota::Quotas,
    pub usage: paas_quota::UsageWriter,
    pub cache: crate::cache::ConfigCache,
}

impl AppState {
    /// Builds the state from configuration. Connects lazily: neither PostgreSQL nor Redis has to
    /// be up yet. Must be called inside a Tokio runtime (it starts the Redis connection tasks).
    pub fn new(config: Config) -> Result<Self, Error> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    pub fn with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        let db = Db::new(&DbConfig {
            url: config.database_url.expose_secret().to_owned(),
            max_connections: config.db_max_connections,
            acquire_timeout: config.db_acquire_timeout,
        })?;
        let redis = RedisStore::connect(config.redis_url.expose_secret(), &config.redis_prefix)?;
        let jwt = JwtKeys::new(&JwtConfig {
            secret: config.jwt_secret.clone(),
            previous_secret: config.jwt_previous_secret.clone(),
            issuer: config.jwt_issuer.clone(),
            access_ttl: config.access_token_ttl,
            refresh_ttl: config.refresh_token_ttl,
        });
        let login_throttle = LoginThrottle::new(
            redis.clone(),
            ThrottleLimits {
                per_account: config.login_max_failures,
                per_ip: config.login_max_failures_per_ip,
                window: config.login_lockout,
            },
        );
        let cipher = SecretCipher::new(&config.master_key, config.master_key_previous.as_ref())?;
        let providers = Arc::new(ProviderRegistry::from_config(&config)?);
        let tools = Arc::new(ToolRegistry::builtin(HttpFetchConfig::default()));
        let quotas = paas_quota::Quotas::new(
            redis.quota_client().clone(),
            db.clone(),
            paas_quota::QuotaConfig {
                prefix: config.redis_prefix.clone(),
                fail_open: config.quota_fail_open,
                enforce: config.quotas,
            },
        );
        let usage = paas_quota::UsageWriter::start(db.clone(), paas_quota::LedgerConfig::default());
        let runs = RunManager::new(
            db.clone(),
            redis.clone(),
            tools,
            quotas.clone(),
            usage.clone(),
            crate::runs::RunTimes {
                events_ttl: config.run_events_ttl,
                lease: config.run_lease,
                ping: config.sse_ping,
            },
        );
        runs.listen_for_cancels()?;
        let cache = crate::cache::ConfigCache::start(redis.clone(), config.config_cache)?;
        Ok(Self {
            passwords: PasswordHasher::new(config.bcrypt_cost),
            cipher,
            providers,
            runs,
            quotas,
            usage,
            cache,
            config: Arc::new(config),
            db,
            redis,
            jwt: Arc::new(jwt),
            login_throttle: Arc::new(login_throttle),
            clock,
        })
    }
}
