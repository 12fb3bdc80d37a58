//! API keys: `ap_` followed by 43 characters of URL-safe base64 (256 random bits).
//!
//! Only the SHA-256 of a key is stored. A fast hash is right here (unlike passwords): the
//! secret has 256 bits of entropy, so a stolen hash cannot be brute-forced, and authenticating a
//! key must be cheap because it happens on every request. Stored and presented hashes are
//! compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every key starts with this, so keys are recognisable (and findable by secret scanners).
pub const KEY_PREFIX: &str = "ap_";
const RANDOM_BYTES: usize = 32;
/// `ap_` + 43 base64 characters.
pub const KEY_LEN: usize = KEY_PREFIX.len() + 43;
/// How much of a key listings show: `ap_` + 8 characters.
pub const DISPLAY_PREFIX_LEN: usize = KEY_PREFIX.len() + 8;

/// A newly minted key: the secret (shown to its owner once), its display prefix and its hash.
#[derive(Debug)]
pub struct MintedKey {
    pub secret: SecretString,
    pub prefix: String,
    pub hash: [u8; 32],
}

/// Mints a new random key.
pub fn mint() -> MintedKey {
    let mut random = [0u8; RANDOM_BYTES];
    rand::fill(&mut random);
    let secret = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
    let prefix = secret[..DISPLAY_PREFIX_LEN].to_owned();
    let hash = hash(&secret);
    MintedKey {
        secret: SecretString::from(secret),
        prefix,
        hash,
    }
}

/// The SHA-256 of a key, as stored.
pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Whether a credential is shaped like one of our keys (and not, say, a JWT).
pub fn looks_like_key(candidate: &str) -> bool {
    candidate.len() == KEY_LEN
        && candidate.starts_with(KEY_PREFIX)
        && candidate[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Compares two hashes in constant time.
pub fn hashes_match(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn minted_keys_are_well_formed_and_unique() {
        let a = mint();
        let b = mint();
        assert_ne!(a.secret.expose_secret(), b.secret.expose_secret());
        assert!(looks_like_key(a.secret.expose_secret()));
        assert_eq!(a.secret.expose_secret().len(), KEY_LEN);
        assert!(a.secret.expose_secret().starts_with(&a.prefix));
        assert_eq!(a.prefix.len(), DISPLAY_PREFIX_LEN);
        assert_eq!(a.hash, hash(a.secret.expose_secret()));
    }

    #[test]
    fn only_key_shaped_strings_look_like_keys() {
        assert!(!looks_like_key("ap_short"));
        assert!(!looks_like_key("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"));
        assert!(!looks_like_key(&format!("ap_{}", "'".repeat(43))));
        assert!(!looks_like_key(&format!("xx_{}", "a".repeat(43))));
    }

    #[test]
    fn hash_comparison_is_exact() {
        let h = hash("ap_x");
        assert!(hashes_match(&h, &hash("ap_x")));
        assert!(!hashes_match(&h, &hash("ap_y")));
        assert!(!hashes_match(&h, &h[..31]));
    }
}
