//! Secrets at rest (provider API keys): AES-256-GCM with `PAAS_MASTER_KEY`.
//!
//! Stored form: a version byte (`1`), a 12-byte random nonce, then the ciphertext and its tag.
//! The ciphertext is bound to where it is stored (the caller passes e.g. tenant and row ids as
//! associated data), so a stored secret copied into another row or tenant does not decrypt.
//! During a key rotation the previous master key still decrypts; [`SecretCipher::encrypt`]
//! always uses the current one, and [`SecretCipher::needs_rotation`] tells what to re-encrypt.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use paas_core::Error;
use secrecy::{ExposeSecret, SecretString};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// Encrypts and decrypts secrets with the master key (and the previous one, while rotating).
#[derive(Clone)]
pub struct SecretCipher {
    current: Aes256Gcm,
    previous: Option<Aes256Gcm>,
}

impl std::fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretCipher")
            .field("rotating", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

fn cipher_from(base64_key: &SecretString, name: &str) -> Result<Aes256Gcm, Error> {
    let bytes = STANDARD
        .decode(base64_key.expose_secret().trim())
        .map_err(|_| Error::internal(format!("{name} is not valid base64")))?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| Error::internal(format!("{name} must decode to exactly 32 bytes")))?;
    Ok(Aes256Gcm::new(&Key::<Aes256Gcm>::from(key)))
}

fn undecryptable() -> Error {
    Error::internal(
        "a stored secret cannot be decrypted with PAAS_MASTER_KEY (or PAAS_MASTER_KEY_PREVIOUS)",
    )
}

impl SecretCipher {
    /// `master_key` and `previous` are base64 of 32 bytes.
    pub fn new(master_key: &SecretString, previous: Option<&SecretString>) -> Result<Self, Error> {
        Ok(Self {
            current: cipher_from(master_key, "PAAS_MASTER_KEY")?,
            previous: previous
                .map(|p| cipher_from(p, "PAAS_MASTER_KEY_PREVIOUS"))
                .transpose()?,
        })
    }

    /// Encrypts `plaintext`, bound to `context` (the same context is needed to decrypt).
    pub fn encrypt(&self, plaintext: &str, context: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let sealed = self
            .current
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context,
                },
            )
            .map_err(|_| Error::internal("encrypting a secret failed"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open(cipher: &Aes256Gcm, stored: &[u8], context: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = stored.split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        cipher
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: sealed,
                    aad: context,
                },
            )
            .ok()
    }

    /// Decrypts a stored secret with the current key, or the previous one during a rotation.
    pub fn decrypt(&self, stored: &[u8], context: &[u8]) -> Result<SecretString, Error> {
        let plain = Self::open(&self.current, stored, context)
            .or_else(|| {
                self.previous
                    .as_ref()
                    .and_then(|p| Self::open(p, stored, context))
            })
            .ok_or_else(undecryptable)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| undecryptable())
    }

    /// Whether a stored secret was encrypted with the previous key (re-encrypt it).
    pub fn needs_rotation(&self, stored: &[u8], context: &[u8]) -> bool {
        Self::open(&self.current, stored, context).is_none()
            && self
                .previous
                .as_ref()
                .is_some_and(|p| Self::open(p, stored, context).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretString {
        SecretString::from(STANDARD.encode([byte; 32]))
    }

    #[test]
    fn secrets_round_trip_and_are_bound_to_their_context() {
        let cipher = SecretCipher::new(&key(7), None).unwrap();
        let stored = cipher
            .encrypt("sk-live-123456", b"tenant-a/provider-1")
            .unwrap();
        assert!(
            !stored.windows(6).any(|w| w == b"sk-liv"),
            "plaintext leaked into the ciphertext"
        );
        assert_eq!(
            cipher
                .decrypt(&stored, b"tenant-a/provider-1")
                .unwrap()
                .expose_secret(),
            "sk-live-123456"
        );
        assert!(cipher.decrypt(&stored, b"tenant-b/provider-1").is_err());
        let again = cipher
            .encrypt("sk-live-123456", b"tenant-a/provider-1")
            .unwrap();
        assert_ne!(stored, again, "nonces are random");
    }

    #[test]
    fn tampering_and_wrong_keys_fail() {
        let cipher = SecretCipher::new(&key(7), None).unwrap();
        let mut stored = cipher.encrypt("secret", b"ctx").unwrap();
        let last = stored.len() - 1;
        stored[last] ^= 1;
        assert!(cipher.decrypt(&stored, b"ctx").is_err());
        let other = SecretCipher::new(&key(8), None).unwrap();
        let stored = cipher.encrypt("secret", b"ctx").unwrap();
        assert!(other.decrypt(&stored, b"ctx").is_err());
        assert!(cipher.decrypt(&[], b"ctx").is_err());
        assert!(cipher.decrypt(&[9, 1, 2], b"ctx").is_err());
    }

    #[test]
    fn the_previous_key_decrypts_during_rotation() {
        let old = SecretCipher::new(&key(1), None).unwrap();
        let stored = old.encrypt("secret", b"ctx").unwrap();
        let rotating = SecretCipher::new(&key(2), Some(&key(1))).unwrap();
        assert_eq!(
            rotating.decrypt(&stored, b"ctx").unwrap().expose_secret(),
            "secret"
        );
        assert!(rotating.needs_rotation(&stored, b"ctx"));
        let fresh = rotating.encrypt("secret", b"ctx").unwrap();
        assert!(!rotating.needs_rotation(&fresh, b"ctx"));
        assert!(SecretCipher::new(&SecretString::from("short".to_owned()), None).is_err());
    }
}
