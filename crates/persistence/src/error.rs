//! The persistence layer's error and its mapping to client-facing errors.

use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};
use paas_core::Error;

/// What can go wrong inside a transaction: a query failed, or a rule checked inside the
/// transaction was broken (which rolls the transaction back).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Query(#[from] DieselError),
    #[error(transparent)]
    Rule(#[from] Error),
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
}

/// Stable error codes for the unique constraints a client can run into.
fn unique_violation(constraint: Option<&str>) -> Error {
    match constraint {
        Some("tenants_name_key") => Error::conflict(
            "tenant_name_taken",
            "a tenant with this name already exists",
        ),
        Some("users_tenant_email_key") => Error::conflict(
            "email_taken",
            "a user with this email already exists in this tenant",
        ),
        Some("providers_tenant_name_key") => Error::conflict(
            "provider_name_taken",
            "a provider with this name already exists",
        ),
        Some("agents_tenant_name_key") => {
            Error::conflict("agent_name_taken", "an agent with this name already exists")
        }
        _ => Error::conflict(
            "already_exists",
            "an object with these values already exists",
        ),
    }
}

/// PostgreSQL cannot store a NUL character: not in text (`invalid byte sequence for encoding
/// "UTF8": 0x00`, SQLSTATE 22021, also when a NUL is only compared in a lookup) and not as
/// `\u0000` in jsonb (`unsupported Unicode escape sequence`, 22P05). The value came from the
/// client, so this is a bad request, not an internal error. (Diesel reports both as `Unknown`
/// and does not expose the SQLSTATE: the message is what tells them apart.)
fn refuses_nul(info: &dyn DatabaseErrorInformation) -> bool {
    let message = info.message();
    (message.starts_with("invalid byte sequence for encoding") && message.ends_with("0x00"))
        || message.starts_with("unsupported Unicode escape sequence")
}

pub(crate) fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::unavailable(
        "database_unavailable",
        "the database is unavailable; retry shortly",
        2,
    )
    .with_source(source)
}

impl From<DbError> for Error {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Rule(err) => err,
            DbError::Corrupt(what) => Error::internal(format!("corrupt stored value: {what}")),
            DbError::Query(DieselError::DatabaseError(kind, info)) => match kind {
                DatabaseErrorKind::UniqueViolation => unique_violation(info.constraint_name()),
                DatabaseErrorKind::ForeignKeyViolation
                    if info.constraint_name() == Some("agents_provider_fkey") =>
                {
                    Error::conflict("provider_in_use", "agents still use this provider")
                }
                DatabaseErrorKind::CheckViolation => {
                    Error::bad_request("invalid_value", "a value is outside the allowed range")
                }
                DatabaseErrorKind::SerializationFailure => Error::unavailable(
                    "concurrent_update",
                    "a concurrent change got in the way; retry the request",
                    1,
                ),
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
                    unavailable(info.message().to_owned())
                }
                _ if refuses_nul(info.as_ref()) => Error::bad_request(
                    "invalid_value",
                    "a value contains a NUL character (\\u0000), which cannot be stored",
                ),
                _ => Error::internal(format!("database error: {}", info.message())),
            },
            DbError::Query(DieselError::NotFound) => Error::not_found("object"),
            // A commit or rollback that failed with the connection: the database went away.
            DbError::Query(DieselError::BrokenTransactionManager) => {
                unavailable("the connection broke during a transaction")
            }
            DbError::Query(other) => Error::internal(other),
        }
    }
}

/// Parses a stored enum string, treating an unknown value as corruption (never a panic).
pub(crate) fn parse_stored<T: std::str::FromStr>(column: &str, value: &str) -> Result<T, DbError> {
    value
        .parse()
        .map_err(|_| DbError::Corrupt(format!("{column} = {value:?}")))
}
