//! What the gateway path reads on every request and a tenant rarely changes — who an API key
//! is (its owner, role, scopes, expiry, the tenant's plan and status), the agent a request
//! names, and the agent's provider client — kept in memory, so a known key's chat makes no
//! PostgreSQL read before its run starts.
//!
//! Correctness comes before speed:
//! - Every change that could alter one of these answers (a key revoked, a user's role changed or
//!   deactivated, a tenant suspended or its plan or quotas changed, an agent or provider written)
//!   calls [`ConfigCache::invalidate`]: this process forgets the tenant's entries at once, and a
//!   message on a Redis channel tells every other replica (and the CLI's changes reach the
//!   servers the same way).
//! - A replica uses its cache only while it is subscribed to that channel. While the subscriber
//!   is disconnected (Redis down) every lookup goes to PostgreSQL, and on reconnecting the cache
//!   starts empty, so a change made while a replica could not hear it is never missed.
//! - Entries also expire after a short time ([`TTL`]), and a key's own expiry is checked on
//!   every use.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use paas_core::{Principal, ProviderId, TenantId};
use paas_models::{Agent, TenantPlan};

use crate::redis::RedisStore;

/// Longest an entry is used without being read again from PostgreSQL.
pub const TTL: Duration = Duration::from_secs(30);
/// Most entries of each kind; past that the kind starts over empty (a simple bound, reached
/// only by very many keys or agents in use within [`TTL`]).
const MAX_ENTRIES: usize = 100_000;

/// An API key's authentication, as checked against PostgreSQL.
#[derive(Clone, Copy, Debug)]
pub struct KeyAuth {
    pub principal: Principal,
    pub plan: TenantPlan,
    pub expires_at: DateTime<Utc>,
    /// When this process last recorded the key's use (see `authn::record_key_use`).
    pub touched_at: DateTime<Utc>,
}

#[derive(Debug)]
struct Entry<T> {
    tenant: TenantId,
    value: T,
    at: Instant,
}

/// A provider client and its kind's name.
pub type ProviderClient = (Arc<dyn paas_llm::Provider>, &'static str);

#[derive(Default)]
struct Entries {
    /// Bumped by every invalidation: a value read from PostgreSQL before one is not stored
    /// after it (it may be what the change replaced).
    generation: u64,
    keys: HashMap<[u8; 32], Entry<KeyAuth>>,
    /// By tenant and the name or id the request used.
    agents: HashMap<(TenantId, String), Entry<Agent>>,
    providers: HashMap<(TenantId, ProviderId), Entry<ProviderClient>>,
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries")
            .field("keys", &self.keys.len())
            .field("agents", &self.agents.len())
            .field("providers", &self.providers.len())
            .finish()
    }
}

fn fresh<T>(entry: &Entry<T>) -> bool {
    entry.at.elapsed() < TTL
}

/// Taken before reading what will be cached; see [`ConfigCache::stamp`].
#[derive(Clone, Copy, Debug)]
pub struct Stamp(u64);

/// See the module docs.
#[derive(Clone, Debug)]
pub struct ConfigCache {
    entries: Arc<std::sync::Mutex<Entries>>,
    /// Subscribed to the invalidation channel now; the cache is used only while this holds.
    listening: Arc<AtomicBool>,
    redis: RedisStore,
    enabled: bool,
}

impl ConfigCache {
    /// Starts listening for other replicas' changes. With `enabled` false (or until the
    /// subscription is up) every lookup misses.
    pub fn start(redis: RedisStore, enabled: bool) -> Result<Self, paas_core::Error> {
        let cache = Self {
            entries: Arc::default(),
            listening: Arc::new(AtomicBool::new(false)),
            redis,
            enabled,
        };
        if enabled {
            cache.listen()?;
        }
        Ok(cache)
    }

    fn channel(&self) -> String {
        self.redis.key("config-changed")
    }

    fn listen(&self) -> Result<(), paas_core::Error> {
        let subscriber = self.redis.subscriber()?;
        let channel = self.channel();
        let mut messages = subscriber.message_rx();
        let mut reconnects = subscriber.reconnect_rx();
        let mut errors = subscriber.error_rx();
        let cache = self.clone();
        tokio::spawn(async move {
            // Whatever happened while disconnected is unknown: start over empty each time the
            // subscription is (re)established.
            let subscribe = |cache: ConfigCache,
                             subscriber: fred::clients::SubscriberClient,
                             channel: String| async move {
                match subscriber.subscribe(channel).await {
                    Ok(()) => {
                        cache.clear();
                        cache.listening.store(true, Ordering::SeqCst);
                    }
                    Err(err) => {
                        cache.listening.store(false, Ordering::SeqCst);
                        tracing::debug!(error = %err, "config cache: not subscribed; lookups go to PostgreSQL");
                    }
                }
            };
            subscribe(cache.clone(), subscriber.clone(), channel.clone()).await;
            loop {
                tokio::select! {
                    message = messages.recv() => match message {
                        Ok(message) => {
                            let tenant = message
                                .value
                                .as_string()
                                .and_then(|s| s.parse::<TenantId>().ok());
                            match tenant {
                                Some(tenant) => cache.forget(tenant),
                                None => cache.clear(),
                            }
                        }
                        // Missed messages: forget everything.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => cache.clear(),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    },
                    event = reconnects.recv() => {
                        if matches!(event, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                            break;
                        }
                        cache.listening.store(false, Ordering::SeqCst);
                        cache.clear();
                        subscribe(cache.clone(), subscriber.clone(), channel.clone()).await;
                    }
                    event = errors.recv() => {
                        if matches!(event, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                            break;
                        }
                        // Messages may have been lost: do not trust the cache until subscribed
                        // again (now if still connected, else when the reconnect comes).
                        cache.listening.store(false, Ordering::SeqCst);
                        cache.clear();
                        if subscriber.is_connected() {
                            subscribe(cache.clone(), subscriber.clone(), channel.clone()).await;
                        }
                    }
                }
            }
            cache.listening.store(false, Ordering::SeqCst);
        });
        Ok(())
    }

    fn usable(&self) -> bool {
        self.enabled && self.listening.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn clear(&self) {
        let mut entries = self.lock();
        let generation = entries.generation + 1;
        *entries = Entries {
            generation,
            ..Entries::default()
        };
    }

    /// Take this before reading from PostgreSQL what is then `put_*` here: the value is kept
    /// only if no invalidation came in between.
    pub fn stamp(&self) -> Stamp {
        Stamp(self.lock().generation)
    }

    /// Forgets one tenant's entries in this process only.
    fn forget(&self, tenant: TenantId) {
        let mut entries = self.lock();
        entries.generation += 1;
        entries.keys.retain(|_, e| e.tenant != tenant);
        entries.agents.retain(|_, e| e.tenant != tenant);
        entries.providers.retain(|_, e| e.tenant != tenant);
    }

    /// A tenant's keys, users, plan, status, agents or providers changed: forget its entries
    /// here and tell the other replicas. Call it after the change is committed.
    pub async fn invalidate(&self, tenant: TenantId) {
        self.forget(tenant);
        if !self.enabled {
            return;
        }
        let published: Result<i64, _> = self
            .redis
            .client()
            .publish(self.channel(), tenant.to_string())
            .await;
        if let Err(err) = published {
            // Replicas that cannot hear this cannot hear Redis at all, so they are not using
            // their caches (see the module docs).
            tracing::warn!(error = %err, "config cache: could not tell other replicas of a change");
        }
    }

    /// Passes `result` through, invalidating the tenant's entries first when it is a success:
    /// for the end of a service function that changed something cached.
    pub async fn changed<T, E>(&self, tenant: TenantId, result: Result<T, E>) -> Result<T, E> {
        if result.is_ok() {
            self.invalidate(tenant).await;
        }
        result
    }

    /// A fresh entry of one kind, read with `read`; none while the cache is not usable.
    fn get<K: Hash + Eq, T, R>(
        &self,
        kind: fn(&Entries) -> &HashMap<K, Entry<T>>,
        key: &K,
        read: impl FnOnce(&T) -> R,
    ) -> Option<R> {
        if !self.usable() {
            return None;
        }
        let entries = self.lock();
        kind(&entries)
            .get(key)
            .filter(|e| fresh(e))
            .map(|e| read(&e.value))
    }

    /// Keeps an entry of one kind read under `stamp`, unless an invalidation came since.
    fn put<K: Hash + Eq, T>(
        &self,
        stamp: Stamp,
        kind: fn(&mut Entries) -> &mut HashMap<K, Entry<T>>,
        key: K,
        tenant: TenantId,
        value: T,
    ) {
        if !self.usable() {
            return;
        }
        let mut entries = self.lock();
        if entries.generation != stamp.0 {
            return;
        }
        let map = kind(&mut entries);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        let at = Instant::now();
        map.insert(key, Entry { tenant, value, at });
    }

    pub fn key(&self, hash: &[u8; 32]) -> Option<KeyAuth> {
        self.get(|e| &e.keys, hash, |auth| *auth)
    }

    pub fn put_key(&self, stamp: Stamp, hash: [u8; 32], auth: KeyAuth) {
        let tenant = auth.principal.tenant_id;
        self.put(stamp, |e| &mut e.keys, hash, tenant, auth);
    }

    /// Notes that the key's use was recorded now, keeping the entry's age.
    pub fn touch_key(&self, hash: &[u8; 32], at: DateTime<Utc>) {
        if let Some(entry) = self.lock().keys.get_mut(hash) {
            entry.value.touched_at = at;
        }
    }

    pub fn agent(&self, tenant: TenantId, name_or_id: &str) -> Option<Agent> {
        self.get(
            |e| &e.agents,
            &(tenant, name_or_id.to_owned()),
            Agent::clone,
        )
    }

    pub fn put_agent(&self, stamp: Stamp, tenant: TenantId, name_or_id: &str, agent: &Agent) {
        let key = (tenant, name_or_id.to_owned());
        self.put(stamp, |e| &mut e.agents, key, tenant, agent.clone());
    }

    pub fn provider(&self, tenant: TenantId, id: ProviderId) -> Option<ProviderClient> {
        self.get(
            |e| &e.providers,
            &(tenant, id),
            |(client, kind)| (Arc::clone(client), *kind),
        )
    }

    pub fn put_provider(
        &self,
        stamp: Stamp,
        tenant: TenantId,
        id: ProviderId,
        client: &ProviderClient,
    ) {
        let value = (Arc::clone(&client.0), client.1);
        self.put(stamp, |e| &mut e.providers, (tenant, id), tenant, value);
    }
}
