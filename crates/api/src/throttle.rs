//! Login throttling: failed logins are counted per account and per client address in fixed
//! windows in Redis; past the limit, logins are refused with 429 and `Retry-After` until the
//! window ends. A successful login clears the account's counter.
//!
//! If Redis is unreachable the same counting happens in this process's memory, so throttling
//! degrades to per-replica limits instead of switching off, and logins keep working.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fred::types::scripts::Script;
use paas_core::Error;
use sha2::{Digest, Sha256};

use crate::redis::RedisStore;

/// Counts of both keys and the milliseconds left in each window.
const CHECK: &str = r"
local a = tonumber(redis.call('GET', KEYS[1]) or '0')
local i = tonumber(redis.call('GET', KEYS[2]) or '0')
return {a, redis.call('PTTL', KEYS[1]), i, redis.call('PTTL', KEYS[2])}
";

/// Adds a failure to both keys, starting a window on a key's first failure.
const FAIL: &str = r"
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ARGV[1]) end
end
return 1
";

/// Limits for the throttle.
#[derive(Clone, Copy, Debug)]
pub struct ThrottleLimits {
    pub per_account: u32,
    pub per_ip: u32,
    pub window: Duration,
}

/// See the module docs.
#[derive(Debug)]
pub struct LoginThrottle {
    redis: RedisStore,
    limits: ThrottleLimits,
    check: Script,
    fail: Script,
    local: Mutex<HashMap<String, (u32, Instant)>>,
}

/// The two counters a login attempt touches.
#[derive(Debug, Clone)]
pub struct ThrottleKeys {
    account: String,
    ip: String,
}

fn too_many(retry_after: Duration) -> Error {
    Error::rate_limited(
        "too_many_login_attempts",
        "too many failed logins; wait before trying again",
        retry_after.as_secs().max(1),
    )
}

impl LoginThrottle {
    pub fn new(redis: RedisStore, limits: ThrottleLimits) -> Self {
        Self {
            redis,
            limits,
            check: Script::from_lua(CHECK),
            fail: Script::from_lua(FAIL),
            local: Mutex::new(HashMap::new()),
        }
    }

    /// Keys for an attempt. The account part is hashed so no email address is stored in Redis.
    pub fn keys(&self, tenant: &str, email: &str, ip: &str) -> ThrottleKeys {
        let account = Sha256::digest(format!("{tenant}\n{email}").as_bytes());
        let account: String = account
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        ThrottleKeys {
            account: self.redis.key(&format!("login:fail:acct:{account}")),
            ip: self.redis.key(&format!("login:fail:ip:{ip}")),
        }
    }

    /// Refuses the attempt with 429 if either counter is at its limit.
    pub async fn check(&self, keys: &ThrottleKeys) -> Result<(), Error> {
        let redis: Result<(i64, i64, i64, i64), _> = self
            .check
            .evalsha_with_reload(
                self.redis.client(),
                vec![keys.account.clone(), keys.ip.clone()],
                Vec::<String>::new(),
            )
            .await;
        match redis {
            Ok((account, account_ttl, ip, ip_ttl)) => {
                let ttl = |ms: i64| Duration::from_millis(ms.max(1000) as u64);
                if account >= i64::from(self.limits.per_account) {
                    return Err(too_many(ttl(account_ttl)));
                }
                if ip >= i64::from(self.limits.per_ip) {
                    return Err(too_many(ttl(ip_ttl)));
                }
                Ok(())
            }
            Err(err) => {
                tracing::warn!(error = %err, "login throttle: Redis unavailable, counting locally");
                self.check_local(keys)
            }
        }
    }

    /// Counts a failed attempt.
    pub async fn record_failure(&self, keys: &ThrottleKeys) {
        let window_ms = self.limits.window.as_millis().to_string();
        let redis: Result<i64, _> = self
            .fail
            .evalsha_with_reload(
                self.redis.client(),
                vec![keys.account.clone(), keys.ip.clone()],
                vec![window_ms],
            )
            .await;
        if let Err(err) = redis {
            tracing::warn!(error = %err, "login throttle: Redis unavailable, counting locally");
            self.record_local(keys);
        }
    }

    /// Clears the account's counter after a successful login (the address's counter stays, so
    /// one good account cannot launder guesses against others).
    pub async fn record_success(&self, keys: &ThrottleKeys) {
        use fred::interfaces::KeysInterface;
        if let Err(err) = self
            .redis
            .client()
            .del::<i64, _>(keys.account.clone())
            .await
        {
            tracing::warn!(error = %err, "login throttle: cannot clear the account counter");
        }
        self.lock_local().remove(&keys.account);
    }

    fn lock_local(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check_local(&self, keys: &ThrottleKeys) -> Result<(), Error> {
        let now = Instant::now();
        let mut local = self.lock_local();
        local.retain(|_, (_, until)| *until > now);
        for (key, limit) in [
            (&keys.account, self.limits.per_account),
            (&keys.ip, self.limits.per_ip),
        ] {
            if let Some((count, until)) = local.get(key)
                && *count >= limit
            {
                return Err(too_many(until.saturating_duration_since(now)));
            }
        }
        Ok(())
    }

    fn record_local(&self, keys: &ThrottleKeys) {
        let now = Instant::now();
        let mut local = self.lock_local();
        for key in [&keys.account, &keys.ip] {
            let entry = local
                .entry(key.clone())
                .or_insert((0, now + self.limits.window));
            if entry.1 <= now {
                *entry = (0, now + self.limits.window);
            }
            entry.0 += 1;
        }
    }
}
