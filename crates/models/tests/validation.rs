//! Property-based tests of the rules for values clients send (`validate`, `agent`): every
//! function is total on arbitrary unicode (an answer, never a panic); what it accepts matches
//! the documented rule (checked against a reference written from the docs); what it returns is
//! normalised, and normalising again changes nothing; what it refuses carries the stable
//! `invalid_<field>` code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use paas_core::Error;
use paas_models::agent::{
    AGENT_MAX_TOKENS, AgentProvider, DESCRIPTION_MAX_CHARS, MODEL_NAME_MAX, ProviderKind,
    validate_bounded, validate_description, validate_model, validate_slug, validate_temperature,
    validate_tools,
};
use paas_models::validate::{self, EMAIL_MAX, TENANT_NAME_MAX, TENANT_NAME_MIN};
use proptest::prelude::*;

/// Characters that look like the allowed ones but are not, or that trimming, lowercasing and
/// byte counting treat differently from what a person sees; and any character at all.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(vec![
            'a', 'z', '0', '9', '-', '.', '_', '@', ' ', 'A', 'Z',
        ]),
        2 => any::<char>(),
        2 => prop::sample::select(vec![
            '\t', '\n', '\r', '\u{0}', '\u{7f}', '\u{85}', '\u{a0}', '\u{200b}', '\u{2028}',
            '\u{3000}', '\u{feff}', '\u{202e}', 'é', 'É', 'ß', 'İ', 'ı', 'Σ', 'ς', 'ﬀ', 'K',
            'а', 'е', 'о', '０', '９', '²', '中', '😀', '\u{301}', '"', '\\', '\'', '/', ':',
        ]),
    ]
}

fn tricky_string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(tricky_char(), 0..=max).prop_map(|chars| chars.into_iter().collect())
}

/// Any string: arbitrary unicode, the tricky characters, and long ones.
fn input() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        tricky_string(24),
        tricky_string(300),
        "[a-z0-9-]{0,70}",
        "[a-z0-9._-]{0,70}",
    ]
}

fn refused_with(result: Result<impl std::fmt::Debug, Error>, code: &str) -> bool {
    match result {
        Ok(_) => false,
        Err(err) => {
            assert_eq!(err.code(), code, "{}", err.message());
            assert!(!err.message().is_empty());
            true
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Slugs

const RESERVED: &[&str] = &[
    "admin", "api", "app", "assets", "auth", "default", "healthz", "login", "logout", "metrics",
    "operator", "readyz", "root", "signup", "static", "system", "www",
];

/// The documented tenant name rule: 3–63 lowercase ASCII letters, digits and hyphens, not
/// starting or ending with a hyphen, and not reserved.
fn is_tenant_slug(name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    (TENANT_NAME_MIN..=TENANT_NAME_MAX).contains(&chars.len())
        && chars
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        && chars.first() != Some(&'-')
        && chars.last() != Some(&'-')
        && !RESERVED.contains(&name)
}

/// The documented agent and provider name rule: 1–63 lowercase letters, digits, `-`, `.` or
/// `_`, starting with a letter or digit.
fn is_name_slug(name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    (1..=63).contains(&chars.len())
        && chars
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'))
        && chars[0].is_ascii_alphanumeric()
}

proptest! {
    #[test]
    fn tenant_names_are_accepted_exactly_when_they_are_documented_slugs(name in input()) {
        match validate::tenant_name(&name) {
            Ok(accepted) => {
                prop_assert!(is_tenant_slug(&name), "{:?} accepted", name);
                prop_assert_eq!(accepted, name);
            }
            Err(err) => {
                prop_assert!(!is_tenant_slug(&name), "{:?} refused: {}", name, err.message());
                prop_assert_eq!(err.code(), "invalid_tenant_name");
            }
        }
    }

    #[test]
    fn agent_and_provider_names_are_accepted_exactly_when_they_are_documented_slugs(
        name in input(),
    ) {
        match validate_slug("name", &name) {
            Ok(accepted) => {
                prop_assert!(is_name_slug(&name), "{:?} accepted", name);
                prop_assert_eq!(accepted, name);
            }
            Err(err) => {
                prop_assert!(!is_name_slug(&name), "{:?} refused: {}", name, err.message());
                prop_assert_eq!(err.code(), "invalid_name");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Emails

/// A well-formed address: a local part of the usual characters, a dotted domain of
/// letter-digit-hyphen labels.
fn address() -> impl Strategy<Value = String> {
    let label = "[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?";
    (
        "[a-zA-Z0-9._%+-]{1,40}",
        prop::collection::vec(label, 1..4),
        "[a-z]{2,10}",
    )
        .prop_map(|(local, labels, tld)| format!("{local}@{}.{tld}", labels.join(".")))
}

/// What every accepted address looks like once normalised.
fn well_formed(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= EMAIL_MAX
        && email == email.trim()
        && email == email.to_lowercase()
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

/// Strings shaped like addresses, right or wrong in every part: empty, dotted, hyphenated,
/// unicode, padded, shouted labels.
fn email_like() -> impl Strategy<Value = String> {
    let part = prop_oneof!["[a0-]{0,4}", "[a-zA-Z0-9._%+-]{0,8}", tricky_string(4),];
    (
        part.clone(),
        prop::sample::select(vec!["@", "@@", "", "@ "]),
        prop::collection::vec(part, 1..4),
        prop::sample::select(vec!["", " ", "\n"]),
    )
        .prop_map(|(local, at, labels, pad)| format!("{pad}{local}{at}{}{pad}", labels.join(".")))
}

proptest! {
    #[test]
    fn accepted_emails_are_normalised_and_well_formed(raw in prop_oneof![input(), email_like()]) {
        if let Ok(email) = validate::email(&raw) {
            prop_assert!(well_formed(&email), "{:?} accepted as {:?}", raw, email);
            prop_assert_eq!(validate::email(&email).ok(), Some(email.clone()), "idempotent");
        } else {
            prop_assert!(refused_with(validate::email(&raw), "invalid_email"));
        }
    }

    #[test]
    fn well_formed_addresses_are_accepted_whatever_their_case_and_padding(
        address in address(),
        pad in prop::sample::select(vec!["", " ", "\t", "\n", " \u{3000}"]),
    ) {
        prop_assume!(address.len() <= EMAIL_MAX && address.split('@').next().unwrap_or("").len() <= 64);
        let normalised = address.to_lowercase();
        prop_assert_eq!(validate::email(&address).ok(), Some(normalised.clone()));
        let shouted = format!("{pad}{}{pad}", address.to_uppercase());
        prop_assert_eq!(validate::email(&shouted).ok(), Some(normalised));
    }
}

/// Regression (found by `accepted_emails_are_normalised_and_well_formed`): domain labels that
/// start or end with a hyphen (`a@-.a`), which no mail can be delivered to, were accepted.
#[test]
fn domain_labels_do_not_start_or_end_with_a_hyphen() {
    for bad in [
        "a@-.com",
        "a@-example.com",
        "a@example-.com",
        "a@example.-com",
    ] {
        assert_eq!(
            validate::email(bad).unwrap_err().code(),
            "invalid_email",
            "{bad}"
        );
    }
    assert!(validate::email("a@my-example.co-op.com").is_ok());
}

// ---------------------------------------------------------------------------------------------
// Names, descriptions, model names

proptest! {
    #[test]
    fn display_names_are_trimmed_bounded_and_free_of_control_characters(
        raw in input(),
        max in 1usize..120,
    ) {
        let trimmed = raw.trim();
        let fits = !trimmed.is_empty()
            && trimmed.chars().count() <= max
            && !trimmed.chars().any(char::is_control);
        match validate::display_name("display_name", &raw, max) {
            Ok(name) => {
                prop_assert!(fits, "{:?} accepted", raw);
                prop_assert_eq!(&name, trimmed);
                prop_assert_eq!(validate::display_name("display_name", &name, max).ok(), Some(name));
            }
            Err(err) => {
                prop_assert!(!fits, "{:?} refused: {}", raw, err.message());
                prop_assert_eq!(err.code(), "invalid_display_name");
            }
        }
    }

    #[test]
    fn model_names_are_trimmed_bounded_and_free_of_control_characters(raw in input()) {
        let trimmed = raw.trim();
        let fits = !trimmed.is_empty()
            && trimmed.chars().count() <= MODEL_NAME_MAX
            && !trimmed.chars().any(char::is_control);
        match validate_model(&raw) {
            Ok(model) => {
                prop_assert!(fits, "{:?} accepted", raw);
                prop_assert_eq!(model, trimmed);
            }
            Err(err) => {
                prop_assert!(!fits, "{:?} refused", raw);
                prop_assert_eq!(err.code(), "invalid_model");
            }
        }
    }

    /// The limit applies to what is stored: the trimmed text.
    #[test]
    fn descriptions_are_bounded_after_trimming(
        body in prop_oneof![
            (tricky_string(40), 0usize..60).prop_map(|(text, n)| text.repeat(n)),
            // Around the limit.
            (DESCRIPTION_MAX_CHARS - 3..DESCRIPTION_MAX_CHARS + 3).prop_map(|n| "é".repeat(n)),
        ],
        pad in prop::sample::select(vec!["", " ", "\n\n", "\t \u{3000}"]),
    ) {
        let raw = format!("{pad}{body}{pad}");
        let trimmed = raw.trim();
        match validate_description(&raw) {
            Ok(description) => {
                prop_assert!(description.chars().count() <= DESCRIPTION_MAX_CHARS);
                prop_assert_eq!(&description, trimmed);
                prop_assert_eq!(validate_description(&description).ok(), Some(description));
            }
            Err(err) => {
                let chars = trimmed.chars().count();
                prop_assert!(chars > DESCRIPTION_MAX_CHARS, "{} refused", chars);
                prop_assert_eq!(err.code(), "invalid_description");
            }
        }
    }
}

/// Regression (found by `descriptions_are_bounded_after_trimming`): the limit was applied before
/// trimming, so a description of exactly the limit was refused for a trailing newline.
#[test]
fn a_description_at_the_limit_with_a_trailing_newline_is_accepted() {
    let description = "x".repeat(DESCRIPTION_MAX_CHARS);
    assert_eq!(
        validate_description(&format!("{description}\n")).unwrap(),
        description
    );
    assert!(validate_description(&format!("{description}y")).is_err());
}

// ---------------------------------------------------------------------------------------------
// Numbers, tools, providers

proptest! {
    #[test]
    fn temperatures_are_accepted_exactly_from_0_to_2(temperature in prop_oneof![
        any::<f32>(),
        -0.5f32..2.5,
        prop::sample::select(vec![0.0, -0.0, 2.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY,
            f32::MIN_POSITIVE, 2.0000002, -f32::MIN_POSITIVE]),
    ]) {
        let fits = temperature.is_finite() && (0.0..=2.0).contains(&temperature);
        match validate_temperature(temperature) {
            Ok(accepted) => {
                prop_assert!(fits, "{} accepted", temperature);
                prop_assert_eq!(accepted.to_bits(), temperature.to_bits());
            }
            Err(err) => {
                prop_assert!(!fits, "{} refused", temperature);
                prop_assert_eq!(err.code(), "invalid_temperature");
            }
        }
    }

    #[test]
    fn max_tokens_are_accepted_exactly_from_1_to_the_limit(
        value in any::<u32>(),
        small in 0u32..40_000,
    ) {
        for value in [value, small] {
            let fits = (1..=AGENT_MAX_TOKENS).contains(&value);
            match validate_bounded("max_tokens", value, AGENT_MAX_TOKENS) {
                Ok(accepted) => prop_assert!(fits && accepted == value),
                Err(err) => {
                    prop_assert!(!fits);
                    prop_assert_eq!(err.code(), "invalid_max_tokens");
                }
            }
        }
    }

    #[test]
    fn tool_lists_are_accepted_when_known_and_unique(
        tools in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec!["calculator", "current_time", "http_fetch"])
                    .prop_map(String::from),
                input(),
            ],
            0..6,
        ),
    ) {
        let known = ["calculator", "current_time", "http_fetch"];
        let unique = tools.iter().enumerate().all(|(i, t)| !tools[..i].contains(t));
        let fits = unique && tools.iter().all(|t| known.contains(&t.as_str()));
        match validate_tools(&tools, &known) {
            Ok(accepted) => prop_assert!(fits && accepted == tools),
            Err(err) => {
                prop_assert!(!fits);
                prop_assert_eq!(err.code(), "invalid_tools");
            }
        }
    }

    #[test]
    fn agent_providers_parse_totally_and_round_trip(text in input(), id in any::<u128>()) {
        if let Ok(provider) = text.parse::<AgentProvider>() {
            prop_assert_eq!(provider.to_string().parse::<AgentProvider>().ok(), Some(provider));
        } else {
            prop_assert!(refused_with(text.parse::<AgentProvider>(), "invalid_provider_id"));
        }
        let hex = format!("{id:032x}");
        let (a, rest) = hex.split_at(8);
        let (b, rest) = rest.split_at(4);
        let (c, rest) = rest.split_at(4);
        let (d, e) = rest.split_at(4);
        let uuid = format!("{a}-{b}-{c}-{d}-{e}");
        let tenant = uuid.parse::<AgentProvider>();
        prop_assert!(matches!(tenant, Ok(AgentProvider::Tenant(_))), "{}", uuid);
        for kind in [ProviderKind::Openai, ProviderKind::Glm, ProviderKind::Anthropic] {
            let platform = AgentProvider::Platform(kind);
            prop_assert_eq!(platform.to_string().parse::<AgentProvider>().ok(), Some(platform));
        }
    }
}
