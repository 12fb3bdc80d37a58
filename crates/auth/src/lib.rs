#![doc = include_str!("../README.md")]

pub mod api_key;
pub mod jwt;
pub mod password;
pub mod policy;
pub mod secrets;

pub use api_key::MintedKey;
pub use jwt::{AccessClaims, IssuedToken, JwtConfig, JwtKeys, RefreshClaims};
pub use password::PasswordHasher;
pub use policy::{Action, authorize, mintable_scopes};
pub use secrets::SecretCipher;
