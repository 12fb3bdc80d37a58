//! Rules for values clients send. Each function returns the normalised value or a
//! `BadRequest` error with a stable `invalid_<field>` code and a message that says what is
//! allowed. No function here ever echoes a password back.

use paas_core::Error;

/// Tenant names are slugs: 3–63 characters, lowercase ASCII letters, digits and hyphens, not
/// starting or ending with a hyphen.
pub const TENANT_NAME_MIN: usize = 3;
pub const TENANT_NAME_MAX: usize = 63;
/// Passwords: at least this many characters…
pub const PASSWORD_MIN_CHARS: usize = 10;
/// …and at most this many bytes, bcrypt's limit (longer passwords are rejected, never
/// silently truncated).
pub const PASSWORD_MAX_BYTES: usize = 72;
pub const EMAIL_MAX: usize = 254;
pub const DISPLAY_NAME_MAX: usize = 100;
pub const TENANT_DISPLAY_NAME_MAX: usize = 200;
pub const API_KEY_NAME_MAX: usize = 100;
/// Tenant settings: a JSON object of at most this many bytes when serialised…
pub const SETTINGS_MAX_BYTES: usize = 16 * 1024;
/// …nested at most this deep.
pub const SETTINGS_MAX_DEPTH: usize = 8;

/// Names that would be confusing or dangerous as tenant slugs.
const RESERVED_TENANT_NAMES: &[&str] = &[
    "admin", "api", "app", "assets", "auth", "default", "healthz", "login", "logout", "metrics",
    "operator", "readyz", "root", "signup", "static", "system", "www",
];

/// Validates a tenant slug. Returns it unchanged (slugs are not normalised: `Acme` is an error,
/// not `acme`, so that what a person types is what they log in with).
pub fn tenant_name(name: &str) -> Result<String, Error> {
    let len = name.len();
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !(TENANT_NAME_MIN..=TENANT_NAME_MAX).contains(&len)
        || !valid_chars
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(Error::validation(
            "tenant_name",
            format!(
                "tenant name must be {TENANT_NAME_MIN}-{TENANT_NAME_MAX} characters of lowercase \
                 letters, digits and hyphens, not starting or ending with a hyphen"
            ),
        ));
    }
    if RESERVED_TENANT_NAMES.contains(&name) {
        return Err(Error::validation(
            "tenant_name",
            "this tenant name is reserved",
        ));
    }
    Ok(name.to_owned())
}

/// Trims and lowercases an email address and checks its shape (one `@`, a non-empty local
/// part, a dotted domain whose labels are letters, digits and hyphens, not starting or ending
/// with a hyphen; no spaces or control characters, at most 254 characters).
pub fn email(raw: &str) -> Result<String, Error> {
    let email = raw.trim().to_lowercase();
    let invalid = || Error::validation("email", "email must be an address like name@example.com");
    if email.is_empty() || email.len() > EMAIL_MAX {
        return Err(invalid());
    }
    if email
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
    {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    if local.is_empty()
        || local.len() > 64
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || !domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
    {
        return Err(invalid());
    }
    Ok(email)
}

/// Checks a new password: at least 10 characters, at most 72 bytes (bcrypt's limit), no NUL.
pub fn new_password(password: &str) -> Result<(), Error> {
    if password.len() > PASSWORD_MAX_BYTES {
        return Err(Error::bad_request(
            "password_too_long",
            format!(
                "password must be at most {PASSWORD_MAX_BYTES} bytes (bcrypt's limit); it is \
                 never truncated"
            ),
        ));
    }
    if password.chars().count() < PASSWORD_MIN_CHARS {
        return Err(Error::bad_request(
            "password_too_short",
            format!("password must be at least {PASSWORD_MIN_CHARS} characters"),
        ));
    }
    if password.contains('\0') {
        return Err(Error::validation(
            "password",
            "password must not contain NUL characters",
        ));
    }
    Ok(())
}

/// Trims a human-readable name and checks it: 1..=`max` characters, no control characters.
pub fn display_name(field: &str, raw: &str, max: usize) -> Result<String, Error> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > max {
        return Err(Error::validation(
            field,
            format!("{field} must be 1-{max} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::validation(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(name.to_owned())
}

/// Checks tenant settings: a JSON object, at most 16 KiB serialised, nested at most 8 deep.
pub fn settings(value: &serde_json::Value) -> Result<(), Error> {
    if !value.is_object() {
        return Err(Error::validation(
            "settings",
            "settings must be a JSON object",
        ));
    }
    if depth(value) > SETTINGS_MAX_DEPTH {
        return Err(Error::validation(
            "settings",
            format!("settings must be nested at most {SETTINGS_MAX_DEPTH} levels deep"),
        ));
    }
    let size = serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > SETTINGS_MAX_BYTES {
        return Err(Error::validation(
            "settings",
            format!("settings must be at most {SETTINGS_MAX_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tenant_names_are_slugs() {
        for ok in ["acme", "acme-corp", "a1b", "x".repeat(63).as_str()] {
            assert_eq!(tenant_name(ok).unwrap(), ok);
        }
        for bad in [
            "",
            "ab",
            "Acme",
            "-acme",
            "acme-",
            "acme corp",
            "acme_corp",
            "ac'me",
            "acmé",
            "' OR 1=1--",
            &"x".repeat(64),
            "admin",
        ] {
            let err = tenant_name(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_tenant_name", "{bad}");
        }
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(email("  Alice@Example.COM ").unwrap(), "alice@example.com");
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "alice@example",
            "a b@example.com",
            "alice@@example.com",
            "alice@exa mple.com",
            "alice@.example.com",
            "a\"@example.com",
            "x@example.com'; DROP TABLE users;--",
        ] {
            assert_eq!(email(bad).unwrap_err().code(), "invalid_email", "{bad}");
        }
    }

    #[test]
    fn passwords_have_a_floor_and_a_byte_ceiling() {
        assert!(new_password("correct horse").is_ok());
        assert_eq!(
            new_password("short").unwrap_err().code(),
            "password_too_short"
        );
        assert!(new_password(&"a".repeat(72)).is_ok());
        assert_eq!(
            new_password(&"a".repeat(73)).unwrap_err().code(),
            "password_too_long"
        );
        // 25 three-byte characters are 75 bytes: too long although only 25 characters.
        assert_eq!(
            new_password(&"€".repeat(25)).unwrap_err().code(),
            "password_too_long"
        );
        assert_eq!(
            new_password("abcdefghij\0").unwrap_err().code(),
            "invalid_password"
        );
    }

    #[test]
    fn errors_never_echo_the_password() {
        let secret = "p".repeat(80);
        let err = new_password(&secret).unwrap_err();
        assert!(!err.message().contains(&secret));
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(display_name("display_name", "  Ada  ", 100).unwrap(), "Ada");
        assert!(display_name("display_name", "   ", 100).is_err());
        assert!(display_name("display_name", &"x".repeat(101), 100).is_err());
        assert!(display_name("display_name", "a\u{7}b", 100).is_err());
    }

    #[test]
    fn settings_are_bounded_objects() {
        assert!(settings(&json!({"theme": "dark", "nested": {"a": [1, 2]}})).is_ok());
        assert!(settings(&json!([1, 2])).is_err());
        assert!(settings(&json!("x")).is_err());
        let mut deep = json!(1);
        for _ in 0..10 {
            deep = json!({ "a": deep });
        }
        assert!(settings(&deep).is_err());
        assert!(settings(&json!({"big": "x".repeat(17 * 1024)})).is_err());
    }
}
