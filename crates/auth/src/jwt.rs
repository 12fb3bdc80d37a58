//! Access and refresh tokens: HS256 JWTs.
//!
//! - The algorithm is pinned server-side: a token whose header names another algorithm
//!   (including `none`) is refused before its signature is looked at.
//! - `exp`, `iss`, `aud` and `sub` are required and checked.
//! - Access and refresh tokens have different audiences and `typ` claims, so neither is
//!   accepted where the other is expected.
//! - During a secret rotation, tokens signed with the previous secret still verify (new tokens
//!   are always signed with the current one).

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use paas_core::{Error, RefreshTokenId, Role, TenantId, TokenFamilyId, UserId};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const ALGORITHM: Algorithm = Algorithm::HS256;
const ACCESS_TYPE: &str = "access";
const REFRESH_TYPE: &str = "refresh";
/// Tolerated clock skew between replicas, in seconds.
const LEEWAY_SECS: u64 = 5;

/// Settings for token issuance.
#[derive(Clone, Debug)]
pub struct JwtConfig {
    pub secret: SecretString,
    /// The secret being rotated out: still accepted for verification, never used to sign.
    pub previous_secret: Option<SecretString>,
    pub issuer: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

/// Claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: UserId,
    /// Tenant.
    pub tid: TenantId,
    /// The login session (refresh-token family) this token belongs to.
    pub sid: TokenFamilyId,
    /// Role at issue time; informational — authorisation always re-reads the current role.
    pub role: Role,
    pub typ: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: uuid::Uuid,
}

/// Claims of a refresh token. `jti` is the stored token's id.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefreshClaims {
    pub iss: String,
    pub aud: String,
    pub sub: UserId,
    pub tid: TenantId,
    pub sid: TokenFamilyId,
    pub jti: RefreshTokenId,
    pub typ: String,
    pub iat: i64,
    pub exp: i64,
}

/// A signed token and when it expires.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Keys and validation rules, built once at start-up.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: Vec<DecodingKey>,
    issuer: String,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("issuer", &self.issuer)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish_non_exhaustive()
    }
}

fn access_audience(issuer: &str) -> String {
    format!("{issuer}:access")
}

fn refresh_audience(issuer: &str) -> String {
    format!("{issuer}:refresh")
}

fn invalid_token() -> Error {
    Error::unauthenticated("invalid_token", "the token is invalid")
}

impl JwtKeys {
    pub fn new(config: &JwtConfig) -> Self {
        let secret = config.secret.expose_secret().as_bytes();
        let mut decoding = vec![DecodingKey::from_secret(secret)];
        if let Some(previous) = &config.previous_secret {
            decoding.push(DecodingKey::from_secret(
                previous.expose_secret().as_bytes(),
            ));
        }
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding,
            issuer: config.issuer.clone(),
            access_ttl: config.access_ttl,
            refresh_ttl: config.refresh_ttl,
        }
    }

    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    pub fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }

    fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
        now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(15))
    }

    fn sign<T: Serialize>(&self, claims: &T) -> Result<String, Error> {
        jsonwebtoken::encode(&Header::new(ALGORITHM), claims, &self.encoding)
            .map_err(Error::internal)
    }

    /// Issues an access token for a user's login session.
    pub fn issue_access(
        &self,
        tenant: TenantId,
        user: UserId,
        role: Role,
        session: TokenFamilyId,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken, Error> {
        let expires_at = Self::expiry(now, self.access_ttl);
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: access_audience(&self.issuer),
            sub: user,
            tid: tenant,
            sid: session,
            role,
            typ: ACCESS_TYPE.to_owned(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            jti: uuid::Uuid::new_v4(),
        };
        Ok(IssuedToken {
            token: self.sign(&claims)?,
            expires_at,
        })
    }

    /// Issues a refresh token; `id` is the row that records it.
    pub fn issue_refresh(
        &self,
        tenant: TenantId,
        user: UserId,
        session: TokenFamilyId,
        id: RefreshTokenId,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken, Error> {
        let expires_at = Self::expiry(now, self.refresh_ttl);
        let claims = RefreshClaims {
            iss: self.issuer.clone(),
            aud: refresh_audience(&self.issuer),
            sub: user,
            tid: tenant,
            sid: session,
            jti: id,
            typ: REFRESH_TYPE.to_owned(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        Ok(IssuedToken {
            token: self.sign(&claims)?,
            expires_at,
        })
    }

    fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        audience: &str,
        check_expiry: bool,
    ) -> Result<T, Error> {
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = check_expiry;
        let mut last = invalid_token();
        for key in &self.decoding {
            match jsonwebtoken::decode::<T>(token, key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(err) => match err.kind() {
                    // Try the previous secret only when the signature is what failed.
                    JwtErrorKind::InvalidSignature => last = invalid_token(),
                    JwtErrorKind::ExpiredSignature => {
                        return Err(Error::unauthenticated(
                            "token_expired",
                            "the token has expired; refresh it or log in again",
                        ));
                    }
                    _ => return Err(invalid_token()),
                },
            }
        }
        Err(last)
    }

    /// Verifies an access token (signature, algorithm, issuer, audience, expiry, type).
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, Error> {
        let claims: AccessClaims = self.verify(token, &access_audience(&self.issuer), true)?;
        if claims.typ != ACCESS_TYPE {
            return Err(invalid_token());
        }
        Ok(claims)
    }

    /// Verifies a refresh token (signature, algorithm, issuer, audience, expiry, type). Whether
    /// it was already spent is for the caller to check against storage.
    pub fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, Error> {
        self.refresh_claims(token, true)
    }

    /// Like [`Self::verify_refresh`] but accepts an expired token (its signature, algorithm,
    /// issuer, audience and type are still checked): enough to *end* its session at logout,
    /// never to continue one.
    pub fn verify_refresh_for_logout(&self, token: &str) -> Result<RefreshClaims, Error> {
        self.refresh_claims(token, false)
    }

    fn refresh_claims(&self, token: &str, check_expiry: bool) -> Result<RefreshClaims, Error> {
        let claims: RefreshClaims =
            self.verify(token, &refresh_audience(&self.issuer), check_expiry)?;
        if claims.typ != REFRESH_TYPE {
            return Err(invalid_token());
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;

    fn keys_with(secret: &str, previous: Option<&str>) -> JwtKeys {
        JwtKeys::new(&JwtConfig {
            secret: SecretString::from(secret.to_owned()),
            previous_secret: previous.map(|p| SecretString::from(p.to_owned())),
            issuer: "agent-paas".into(),
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(86_400),
        })
    }

    fn keys() -> JwtKeys {
        keys_with("a-test-secret-that-is-long-enough-to-use", None)
    }

    fn access(keys: &JwtKeys) -> String {
        keys.issue_access(
            TenantId::new(),
            UserId::new(),
            Role::User,
            TokenFamilyId::new(),
            Utc::now(),
        )
        .unwrap()
        .token
    }

    fn refresh(keys: &JwtKeys) -> String {
        keys.issue_refresh(
            TenantId::new(),
            UserId::new(),
            TokenFamilyId::new(),
            RefreshTokenId::new(),
            Utc::now(),
        )
        .unwrap()
        .token
    }

    #[test]
    fn access_tokens_verify_and_live_fifteen_minutes() {
        let keys = keys();
        let now = Utc::now();
        let issued = keys
            .issue_access(
                TenantId::new(),
                UserId::new(),
                Role::Admin,
                TokenFamilyId::new(),
                now,
            )
            .unwrap();
        assert_eq!((issued.expires_at - now).num_seconds(), 900);
        let claims = keys.verify_access(&issued.token).unwrap();
        assert_eq!(claims.role, Role::Admin);
        assert_eq!(claims.iss, "agent-paas");
    }

    #[test]
    fn access_and_refresh_tokens_cannot_stand_in_for_each_other() {
        let keys = keys();
        assert_eq!(
            keys.verify_access(&refresh(&keys)).unwrap_err().code(),
            "invalid_token"
        );
        assert_eq!(
            keys.verify_refresh(&access(&keys)).unwrap_err().code(),
            "invalid_token"
        );
    }

    #[test]
    fn a_tampered_signature_or_payload_is_refused() {
        let keys = keys();
        let token = access(&keys);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        // Change the role in the payload and keep the signature.
        let payload = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
        let mut claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        claims["role"] = json!("admin");
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        assert_eq!(
            keys.verify_access(&parts.join(".")).unwrap_err().code(),
            "invalid_token"
        );
        // Flip the signature.
        let mut sig = token.clone();
        sig.pop();
        sig.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(
            keys.verify_access(&sig).unwrap_err().code(),
            "invalid_token"
        );
        // Another secret.
        let other = keys_with("a-completely-different-secret-of-length", None);
        assert_eq!(
            other.verify_access(&token).unwrap_err().code(),
            "invalid_token"
        );
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let keys = keys();
        let token = access(&keys);
        let payload = token.split('.').nth(1).unwrap();
        for alg in ["none", "HS512", "RS256"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            let forged = format!("{header}.{payload}.");
            assert_eq!(
                keys.verify_access(&forged).unwrap_err().code(),
                "invalid_token",
                "{alg}"
            );
        }
        // A genuine HS512 token signed with the right secret is still refused: HS256 is pinned.
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(b"a-test-secret-that-is-long-enough-to-use"),
        )
        .unwrap();
        assert_eq!(
            keys.verify_access(&hs512).unwrap_err().code(),
            "invalid_token"
        );
    }

    #[test]
    fn expired_tokens_say_so() {
        let keys = keys();
        let long_ago = Utc::now() - chrono::Duration::hours(2);
        let issued = keys
            .issue_access(
                TenantId::new(),
                UserId::new(),
                Role::User,
                TokenFamilyId::new(),
                long_ago,
            )
            .unwrap();
        assert_eq!(
            keys.verify_access(&issued.token).unwrap_err().code(),
            "token_expired"
        );
    }

    #[test]
    fn missing_required_claims_are_refused() {
        let keys = keys();
        let secret = b"a-test-secret-that-is-long-enough-to-use";
        let exp = Utc::now().timestamp() + 600;
        for claims in [
            json!({"iss": "agent-paas", "aud": "agent-paas:access", "sub": UserId::new(), "typ": "access"}),
            json!({"aud": "agent-paas:access", "sub": UserId::new(), "exp": exp}),
            json!({"iss": "agent-paas", "sub": UserId::new(), "exp": exp}),
            json!({"iss": "someone-else", "aud": "agent-paas:access", "sub": UserId::new(), "exp": exp}),
        ] {
            let token = jsonwebtoken::encode(
                &Header::new(ALGORITHM),
                &claims,
                &EncodingKey::from_secret(secret),
            )
            .unwrap();
            assert!(keys.verify_access(&token).is_err(), "{claims}");
        }
    }

    #[test]
    fn expired_refresh_tokens_can_still_end_their_session() {
        let keys = keys();
        let long_ago = Utc::now() - chrono::Duration::days(60);
        let expired = keys
            .issue_refresh(
                TenantId::new(),
                UserId::new(),
                TokenFamilyId::new(),
                RefreshTokenId::new(),
                long_ago,
            )
            .unwrap()
            .token;
        assert_eq!(
            keys.verify_refresh(&expired).unwrap_err().code(),
            "token_expired"
        );
        assert!(keys.verify_refresh_for_logout(&expired).is_ok());
        // …but only a genuine refresh token.
        assert!(keys.verify_refresh_for_logout(&access(&keys)).is_err());
        let other = keys_with("a-completely-different-secret-of-length", None);
        assert!(other.verify_refresh_for_logout(&expired).is_err());
    }

    #[test]
    fn garbage_is_an_invalid_token_not_a_panic() {
        let keys = keys();
        for garbage in [
            "",
            ".",
            "a.b.c",
            "' OR 1=1 --",
            "eyJ.eyJ.sig",
            &"x".repeat(10_000),
        ] {
            assert_eq!(
                keys.verify_access(garbage).unwrap_err().code(),
                "invalid_token"
            );
        }
    }

    #[test]
    fn the_previous_secret_still_verifies_during_rotation() {
        let old = keys_with("the-old-secret-that-is-long-enough-000", None);
        let token = access(&old);
        let rotated = keys_with(
            "the-new-secret-that-is-long-enough-111",
            Some("the-old-secret-that-is-long-enough-000"),
        );
        assert!(rotated.verify_access(&token).is_ok());
        let new_token = access(&rotated);
        assert!(
            old.verify_access(&new_token).is_err(),
            "new tokens use the new secret"
        );
    }
}
