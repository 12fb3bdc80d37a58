//! Password hashing with bcrypt, always on a blocking thread.

use std::sync::{Arc, OnceLock};

use paas_core::Error;
use secrecy::{ExposeSecret, SecretString};

/// bcrypt's input limit.
const MAX_PASSWORD_BYTES: usize = 72;

/// Hashes and verifies passwords at a fixed bcrypt cost.
#[derive(Clone, Debug)]
pub struct PasswordHasher {
    cost: u32,
    /// A hash of a random password at the same cost: verifying against it makes a login for an
    /// unknown user cost the same time as one for a known user.
    dummy: Arc<OnceLock<String>>,
}

fn hashing_failed(err: impl std::fmt::Display) -> Error {
    Error::internal(format!("password hashing failed: {err}"))
}

impl PasswordHasher {
    /// `cost` is bcrypt's work factor, clamped to its range 4–31 (12 in production).
    pub fn new(cost: u32) -> Self {
        Self {
            cost: cost.clamp(4, 31),
            dummy: Arc::default(),
        }
    }

    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// Hashes a password that has already passed `paas_models::validate::new_password`.
    /// Passwords over 72 bytes are an error here too, so nothing is ever silently truncated.
    /// (bcrypt reads at most 72 bytes; at exactly 72 it drops only its own NUL terminator.)
    pub async fn hash(&self, password: SecretString) -> Result<String, Error> {
        if password.expose_secret().len() > MAX_PASSWORD_BYTES {
            return Err(Error::bad_request(
                "password_too_long",
                "password must be at most 72 bytes (bcrypt's limit); it is never truncated",
            ));
        }
        let cost = self.cost;
        tokio::task::spawn_blocking(move || {
            bcrypt::hash(password.expose_secret(), cost).map_err(hashing_failed)
        })
        .await
        .map_err(hashing_failed)?
    }

    /// Checks a password against a stored hash. With no hash (unknown user) it checks against a
    /// dummy hash and returns `false`, taking as long as a real check.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, Error> {
        let cost = self.cost;
        let dummy = Arc::clone(&self.dummy);
        tokio::task::spawn_blocking(move || {
            let known = hash.is_some();
            let hash = match hash {
                Some(hash) => hash,
                None => dummy.get_or_init(|| dummy_hash(cost)).clone(),
            };
            // No stored password is over 72 bytes, so a longer one never matches (bcrypt would
            // otherwise compare only its first 72 bytes). A malformed stored hash is no match.
            let within_limit = password.expose_secret().len() <= MAX_PASSWORD_BYTES;
            let matches = bcrypt::verify(password.expose_secret(), &hash).unwrap_or(false);
            Ok(known && within_limit && matches)
        })
        .await
        .map_err(hashing_failed)?
    }

    /// Computes the dummy hash now instead of on the first unknown-user login.
    pub async fn warm_up(&self) {
        let cost = self.cost;
        let dummy = Arc::clone(&self.dummy);
        let _ = tokio::task::spawn_blocking(move || {
            dummy.get_or_init(|| dummy_hash(cost));
        })
        .await;
    }
}

fn dummy_hash(cost: u32) -> String {
    let mut random = [0u8; 24];
    rand::fill(&mut random);
    let password: String = random.iter().map(|b| format!("{b:02x}")).collect();
    // Cannot fail: the input is 48 bytes and the cost is clamped to bcrypt's range.
    bcrypt::hash(password, cost).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_do_not() {
        let hasher = PasswordHasher::new(4);
        let hash = hasher.hash(secret("correct horse battery")).await.unwrap();
        assert!(hash.starts_with("$2b$04$"));
        assert!(
            hasher
                .verify(secret("correct horse battery"), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(secret("correct horse batterz"), Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn unknown_users_never_match() {
        let hasher = PasswordHasher::new(4);
        assert!(
            !hasher
                .verify(secret("anything at all"), None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn passwords_over_72_bytes_are_refused_not_truncated() {
        let hasher = PasswordHasher::new(4);
        let err = hasher.hash(secret(&"a".repeat(73))).await.unwrap_err();
        assert_eq!(err.code(), "password_too_long");
        // A hash of the first 72 bytes must not accept a longer password.
        let hash = hasher.hash(secret(&"a".repeat(72))).await.unwrap();
        assert!(
            !hasher
                .verify(secret(&"a".repeat(80)), Some(hash))
                .await
                .unwrap()
        );
    }

    /// On a single-threaded runtime a blocking hash would stall every other task; a ticker
    /// running beside it proves the executor thread stayed free while bcrypt worked.
    #[tokio::test(flavor = "current_thread")]
    async fn hashing_and_verifying_do_not_block_the_executor() {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::time::{Duration, Instant};

        // Cost 10 takes tens of milliseconds (cost 4 would be over in about one tick).
        let hasher = PasswordHasher::new(10);
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = Arc::clone(&ticks);
            async move {
                let mut interval = tokio::time::interval(Duration::from_millis(1));
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    interval.tick().await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Let the ticker start before measuring.
        tokio::time::sleep(Duration::from_millis(5)).await;

        let before = ticks.load(Ordering::Relaxed);
        let started = Instant::now();
        let hash = hasher.hash(secret("correct horse battery")).await.unwrap();
        let took = started.elapsed();
        let during_hash = ticks.load(Ordering::Relaxed) - before;

        let before = ticks.load(Ordering::Relaxed);
        assert!(
            hasher
                .verify(secret("correct horse battery"), Some(hash))
                .await
                .unwrap()
        );
        let during_verify = ticks.load(Ordering::Relaxed) - before;
        ticker.abort();

        assert!(
            took >= Duration::from_millis(10),
            "cost 10 should take tens of ms, took {took:?}"
        );
        // A hash run on the executor thread would allow no tick at all until it returned.
        assert!(
            during_hash >= 3,
            "the ticker advanced {during_hash} times during a {took:?} hash"
        );
        assert!(
            during_verify >= 3,
            "the ticker advanced {during_verify} times during a verify"
        );
    }

    #[tokio::test]
    async fn a_malformed_stored_hash_is_no_match() {
        let hasher = PasswordHasher::new(4);
        assert!(
            !hasher
                .verify(secret("whatever12"), Some("not-a-hash".into()))
                .await
                .unwrap()
        );
    }
}
