//! Login throttling: login attempts are counted per account and per client address in fixed
//! windows in Redis; past the limit, logins are refused with 429 and `Retry-After` until the
//! window ends.
//!
//! An attempt is counted *before* its password is checked, in the same Lua script that checks
//! the limits, so parallel attempts cannot all slip under the limit (and replicas share the
//! counts). Once the password has been checked, an attempt that was not a failure is taken back:
//! a successful login clears the account's counter and takes its attempt off the address's; a
//! right password refused for another reason (a deactivated user) takes its attempt off both.
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

/// Refuses with `{1, ms left}` if a key is at its limit (`ARGV[1]` for `KEYS[1]`, `ARGV[2]` for
/// `KEYS[2]`); otherwise counts the attempt on both keys, starting a window of `ARGV[3]` ms on a
/// key's first attempt, and returns `{0, 0}`. One script, so checking and counting are atomic.
const ATTEMPT: &str = r"
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[i]) then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
      redis.call('PEXPIRE', key, ARGV[3])
      ttl = tonumber(ARGV[3])
    end
    return {1, ttl}
  end
end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ARGV[3]) end
end
return {0, 0}
";

/// Takes a counted attempt back: deletes `KEYS[1]` if `ARGV[1]` is `reset`, else decrements it;
/// decrements `KEYS[2]`. A counter whose window has ended is left alone (never made negative).
const RELEASE: &str = r"
if ARGV[1] == 'reset' then
  redis.call('DEL', KEYS[1])
elseif tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
  redis.call('DECR', KEYS[1])
end
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  redis.call('DECR', KEYS[2])
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
    attempt: Script,
    release: Script,
    local: Mutex<HashMap<String, (u32, Instant)>>,
}

/// The two counters a login attempt touches.
#[derive(Debug, Clone)]
pub struct ThrottleKeys {
    account: String,
    ip: String,
}

/// An attempt that has been counted; hand it back with [`LoginThrottle::succeeded`] or
/// [`LoginThrottle::forgive`] if it turns out not to be a failure. A failure needs nothing more.
#[derive(Debug)]
#[must_use = "an attempt that is not a failure must be handed back"]
pub struct Attempt {
    keys: ThrottleKeys,
    /// Counted in this process's memory (Redis was unreachable), not in Redis.
    local: bool,
}

fn too_many(retry_after: Duration) -> Error {
    Error::rate_limited(
        "too_many_login_attempts",
        "too many failed logins; wait before trying again",
        u64::try_from(retry_after.as_millis().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .max(1),
    )
}

/// How a counted attempt is taken back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Release {
    /// A successful login: the account's counter is cleared.
    Success,
    /// Not a failure, not a success: the attempt comes off both counters.
    Forgive,
}

impl LoginThrottle {
    pub fn new(redis: RedisStore, limits: ThrottleLimits) -> Self {
        Self {
            redis,
            limits,
            attempt: Script::from_lua(ATTEMPT),
            release: Script::from_lua(RELEASE),
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

    /// Counts an attempt on both counters before its password is checked, or refuses it with
    /// 429 if either counter is at its limit (a refused attempt is not counted). Until it is
    /// handed back, the attempt counts as a failure.
    pub async fn attempt(&self, keys: &ThrottleKeys) -> Result<Attempt, Error> {
        let args = vec![
            self.limits.per_account.to_string(),
            self.limits.per_ip.to_string(),
            self.limits.window.as_millis().to_string(),
        ];
        let redis: Result<(i64, i64), _> = self
            .attempt
            .evalsha_with_reload(
                self.redis.client(),
                vec![keys.account.clone(), keys.ip.clone()],
                args,
            )
            .await;
        match redis {
            Ok((0, _)) => Ok(Attempt {
                keys: keys.clone(),
                local: false,
            }),
            Ok((_, ttl_ms)) => Err(too_many(Duration::from_millis(
                u64::try_from(ttl_ms).unwrap_or(0),
            ))),
            Err(err) => {
                tracing::warn!(error = %err, "login throttle: Redis unavailable, counting locally");
                self.attempt_local(keys)?;
                Ok(Attempt {
                    keys: keys.clone(),
                    local: true,
                })
            }
        }
    }

    /// The attempt logged in: clears the account's counter and takes the attempt off the
    /// address's counter (whose other failures stay, so one good account cannot launder
    /// guesses against others).
    pub async fn succeeded(&self, attempt: Attempt) {
        self.release(attempt, Release::Success).await;
    }

    /// The attempt was no failure (the password was right but the login is refused for another
    /// reason, or checking it failed): takes it off both counters without clearing them.
    pub async fn forgive(&self, attempt: Attempt) {
        self.release(attempt, Release::Forgive).await;
    }

    async fn release(&self, attempt: Attempt, how: Release) {
        let keys = &attempt.keys;
        if how == Release::Success {
            // A lock-out counted locally during an outage ends with a success too.
            self.lock_local().remove(&keys.account);
        }
        if attempt.local {
            self.release_local(keys, how);
            return;
        }
        let mode = match how {
            Release::Success => "reset",
            Release::Forgive => "decrement",
        };
        let redis: Result<i64, _> = self
            .release
            .evalsha_with_reload(
                self.redis.client(),
                vec![keys.account.clone(), keys.ip.clone()],
                vec![mode.to_owned()],
            )
            .await;
        if let Err(err) = redis {
            tracing::warn!(error = %err, "login throttle: cannot take back a login attempt");
        }
    }

    fn lock_local(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// [`Self::attempt`] in this process's memory: checks and counts under one lock.
    fn attempt_local(&self, keys: &ThrottleKeys) -> Result<(), Error> {
        let now = Instant::now();
        let mut local = self.lock_local();
        local.retain(|_, (_, until)| *until > now);
        for (key, limit) in [
            (&keys.account, self.limits.per_account),
            (&keys.ip, self.limits.per_ip),
        ] {
            let (count, until) = local
                .get(key)
                .copied()
                .unwrap_or((0, now + self.limits.window));
            if count >= limit {
                return Err(too_many(until.saturating_duration_since(now)));
            }
        }
        for key in [&keys.account, &keys.ip] {
            local
                .entry(key.clone())
                .or_insert((0, now + self.limits.window))
                .0 += 1;
        }
        Ok(())
    }

    fn release_local(&self, keys: &ThrottleKeys, how: Release) {
        let mut local = self.lock_local();
        let account = (how == Release::Forgive).then_some(&keys.account);
        for key in account.into_iter().chain([&keys.ip]) {
            if let Some((count, _)) = local.get_mut(key) {
                *count = count.saturating_sub(1);
            }
        }
    }
}
