//! The shared Redis connections (fred), with every key under the configured prefix.
//!
//! The client connects in the background and reconnects forever, so the server starts and keeps
//! serving while Redis is down; every command has a short timeout, and callers decide what a
//! failure means for them (the login throttle falls back to per-process counting, `/readyz`
//! reports it).

use std::time::Duration;

use fred::prelude::{ClientLike, Config as FredConfig, ReconnectPolicy, TcpConfig};
use fred::types::Builder;
use paas_core::Error;

/// A connected (or reconnecting) Redis client and the key prefix of this deployment.
#[derive(Clone)]
pub struct RedisStore {
    client: fred::clients::Client,
    /// A second connection, for the quota and rate-limit scripts only: a request's admission
    /// then never queues behind the run events being written on the shared one (at a thousand
    /// open streams, enough of them to push admission past its timeout).
    quota_client: fred::clients::Client,
    prefix: String,
    config: FredConfig,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("connected", &self.client.is_connected())
            .finish()
    }
}

/// How long any one Redis command may take before the caller treats Redis as down.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// How long [`RedisStore::ping`] waits for a connection that is still being made.
const CONNECT_GRACE: Duration = Duration::from_secs(1);

impl RedisStore {
    /// Starts connecting; does not wait for the connection.
    pub fn connect(url: &str, prefix: &str) -> Result<Self, Error> {
        let config = FredConfig::from_url(url)
            .map_err(|err| Error::bad_request("invalid_redis_url", format!("REDIS_URL: {err}")))?;
        let build = || {
            let client = builder(config.clone())
                .build()
                .map_err(|err| Error::internal(format!("cannot build the Redis client: {err}")))?;
            client.connect();
            Ok::<_, Error>(client)
        };
        let (client, quota_client) = (build()?, build()?);
        Ok(Self {
            client,
            quota_client,
            prefix: prefix.to_owned(),
            config,
        })
    }

    /// A separate connection for pub/sub that re-subscribes by itself after reconnecting.
    pub fn subscriber(&self) -> Result<fred::clients::SubscriberClient, Error> {
        let subscriber = builder(self.config.clone())
            .build_subscriber_client()
            .map_err(|err| Error::internal(format!("cannot build the Redis subscriber: {err}")))?;
        subscriber.connect();
        // The task runs for the client's lifetime; its handle is not needed.
        drop(subscriber.manage_subscriptions());
        Ok(subscriber)
    }

    /// The full key for `suffix`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }
}

fn builder(config: FredConfig) -> Builder {
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|conn| {
            conn.connection_timeout = Duration::from_secs(2);
            conn.internal_command_timeout = Duration::from_secs(2);
            conn.max_command_attempts = 1;
            conn.tcp = TcpConfig {
                nodelay: Some(true),
                ..Default::default()
            };
        })
        .with_performance_config(|perf| {
            perf.default_command_timeout = COMMAND_TIMEOUT;
        })
        // Retry forever, 100 ms doubling to 2 s between attempts.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    builder
}

impl RedisStore {
    pub fn client(&self) -> &fred::clients::Client {
        &self.client
    }

    /// The connection of the quota and rate-limit scripts (see the field's doc).
    pub fn quota_client(&self) -> &fred::clients::Client {
        &self.quota_client
    }

    /// Is Redis answering right now?
    pub async fn ping(&self) -> Result<(), Error> {
        if !self.client.is_connected() {
            // Just started, or reconnecting: give the connection a moment before calling Redis
            // down (a probe right after start must not fail a healthy deployment).
            let connected =
                tokio::time::timeout(CONNECT_GRACE, self.client.wait_for_connect()).await;
            if !matches!(connected, Ok(Ok(()))) {
                return Err(unavailable("not connected"));
            }
        }
        let _: String = self.client.ping(None).await.map_err(unavailable)?;
        Ok(())
    }

    /// Closes the connections (at shutdown).
    pub async fn quit(&self) {
        let _ = self.client.quit().await;
        let _ = self.quota_client.quit().await;
    }
}

pub fn unavailable(source: impl std::fmt::Display) -> Error {
    Error::unavailable(
        "redis_unavailable",
        "Redis is unavailable; retry shortly",
        2,
    )
    .with_source(source.to_string())
}
