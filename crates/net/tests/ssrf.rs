//! Property-based tests of the SSRF address checks:
//!
//! - [`is_public_ip`] agrees with a reference written from the IANA special-purpose address
//!   registries (plus the documentation, benchmarking and reserved ranges the crate refuses too),
//!   for any IPv4 or IPv6 address, including the IPv6 forms that carry an IPv4 address;
//! - any address of a refused range, and every IPv6 form of it (mapped, compatible,
//!   translated, NAT64, 6to4, Teredo), is refused;
//! - every way of writing a refused address in a URL (`0x7f000001`, `2130706433`, `0177.0.0.1`,
//!   `127.1`, `[::ffff:127.0.0.1]`, trailing dots, percent-escapes, user info, ports…) is
//!   refused or is not a valid URL: never allowed;
//! - `check_url` and `resolve_checked` are total on arbitrary input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use paas_net::{OutboundPolicy, check_url, is_public_ip, resolve_checked};
use proptest::prelude::*;
use url::Url;

// ---------------------------------------------------------------------------------------------
// The reference

/// IPv4 ranges that are not public: IANA's non-globally-reachable special-purpose blocks, plus
/// documentation, benchmarking, multicast and the reserved 240/4 (broadcast included).
const V4_REFUSED: &[(u32, u8, &str)] = &[
    (0x0000_0000, 8, "this network"),
    (0x0a00_0000, 8, "private"),
    (0x6440_0000, 10, "carrier-grade NAT"),
    (0x7f00_0000, 8, "loopback"),
    (0xa9fe_0000, 16, "link-local, cloud metadata"),
    (0xac10_0000, 12, "private"),
    (0xc000_0000, 24, "IETF protocol assignments"),
    (0xc000_0200, 24, "documentation"),
    (0xc0a8_0000, 16, "private"),
    (0xc612_0000, 15, "benchmarking"),
    (0xc633_6400, 24, "documentation"),
    (0xcb00_7100, 24, "documentation"),
    (0xe000_0000, 4, "multicast"),
    (0xf000_0000, 4, "reserved, broadcast"),
];

/// IPv6 ranges that are not public (besides those carrying an IPv4 address, judged by it).
const V6_REFUSED: &[(u128, u8, &str)] = &[
    (0, 128, "unspecified"),
    (1, 128, "loopback"),
    (
        0x0064_ff9b_0001 << 80,
        48,
        "local-use IPv4/IPv6 translation",
    ),
    (0x0100 << 112, 64, "discard-only"),
    (0x2001_0002 << 96, 48, "benchmarking"),
    (0x2001_0db8 << 96, 32, "documentation"),
    (0x3fff << 112, 20, "documentation"),
    (0x5f00 << 112, 16, "segment routing SIDs"),
    (0xfc00 << 112, 7, "unique local"),
    (0xfe80 << 112, 10, "link-local"),
    (0xfec0 << 112, 10, "site-local"),
    (0xff00 << 112, 8, "multicast"),
];

fn in_v4(ip: u32, (base, len, _): (u32, u8, &str)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    ip & mask == base
}

fn in_v6(ip: u128, (base, len, _): (u128, u8, &str)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    ip & mask == base
}

fn public_v4(ip: Ipv4Addr) -> bool {
    !V4_REFUSED.iter().any(|range| in_v4(ip.to_bits(), *range))
}

/// The IPv4 address an IPv6 address routes to, for the forms that carry one.
fn carried_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = ip.to_bits();
    let low = Ipv4Addr::from_bits(bits as u32);
    let s = ip.segments();
    // ::ffff:a.b.c.d mapped, ::a.b.c.d compatible (:: and ::1 carry 0.0.0.0 and 0.0.0.1,
    // refused anyway), ::ffff:0:a.b.c.d translated (SIIT), 64:ff9b::/96 NAT64.
    let prefixes = [0xffff, 0, 0xffff_0000, 0x0064_ff9b_0000_0000_0000_0000];
    if prefixes.contains(&(bits >> 32)) {
        Some(low)
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::from_bits(((bits >> 80) & 0xffff_ffff) as u32)) // 6to4
    } else if s[0] == 0x2001 && s[1] == 0 {
        Some(Ipv4Addr::from_bits(!(bits as u32))) // Teredo: the client, inverted
    } else {
        None
    }
}

fn public_v6(ip: Ipv6Addr) -> bool {
    match carried_v4(ip) {
        Some(v4) => public_v4(v4),
        None => !V6_REFUSED.iter().any(|range| in_v6(ip.to_bits(), *range)),
    }
}

fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

// ---------------------------------------------------------------------------------------------
// Generators

/// Any address of a refused IPv4 range.
fn refused_v4() -> impl Strategy<Value = Ipv4Addr> {
    (prop::sample::select(V4_REFUSED.to_vec()), any::<u32>()).prop_map(|((base, len, _), host)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        Ipv4Addr::from_bits(base | (host & !mask))
    })
}

fn refused_v6() -> impl Strategy<Value = Ipv6Addr> {
    (prop::sample::select(V6_REFUSED.to_vec()), any::<u128>()).prop_map(|((base, len, _), host)| {
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        Ipv6Addr::from_bits(base | (host & !mask))
    })
}

/// Addresses one bit outside a refused range: where an off-by-one in a prefix length shows.
fn near_misses() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (
            prop::sample::select(V4_REFUSED.to_vec()),
            any::<u32>(),
            any::<u8>()
        )
            .prop_map(|((base, len, _), host, bit)| {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                let flip = 1u32 << (31 - u32::from(bit % len));
                IpAddr::V4(Ipv4Addr::from_bits((base ^ flip) | (host & !mask)))
            }),
        (
            prop::sample::select(V6_REFUSED.to_vec()),
            any::<u128>(),
            any::<u8>()
        )
            .prop_map(|((base, len, _), host, bit)| {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                let flip = 1u128 << (127 - u32::from(bit % len));
                IpAddr::V6(Ipv6Addr::from_bits((base ^ flip) | (host & !mask)))
            }),
    ]
}

/// Every IPv6 form that carries `v4` (with random bits where the form has free ones).
fn v6_forms(v4: Ipv4Addr, noise: u128) -> Vec<Ipv6Addr> {
    let v4 = u128::from(v4.to_bits());
    vec![
        Ipv6Addr::from_bits(0xffff << 32 | v4),
        Ipv6Addr::from_bits(v4),
        Ipv6Addr::from_bits(0xffff_0000 << 32 | v4),
        Ipv6Addr::from_bits(0x0064_ff9b << 96 | v4),
        Ipv6Addr::from_bits(0x2002 << 112 | v4 << 80 | (noise & ((1 << 80) - 1))),
        Ipv6Addr::from_bits(
            0x2001_0000 << 96 | (noise & (((1 << 64) - 1) << 32)) | (!v4 & 0xffff_ffff),
        ),
    ]
}

/// Any address, with the special ranges and the IPv4-carrying forms well represented.
fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        1 => any::<u32>().prop_map(|bits| IpAddr::V4(Ipv4Addr::from_bits(bits))),
        1 => refused_v4().prop_map(IpAddr::V4),
        1 => any::<u128>().prop_map(|bits| IpAddr::V6(Ipv6Addr::from_bits(bits))),
        1 => refused_v6().prop_map(IpAddr::V6),
        4 => near_misses(),
        1 => (any::<u32>(), any::<u128>(), any::<prop::sample::Index>()).prop_map(|(v4, noise, form)| {
            let forms = v6_forms(Ipv4Addr::from_bits(v4), noise);
            IpAddr::V6(*form.get(&forms))
        }),
        1 => (refused_v4(), any::<u128>(), any::<prop::sample::Index>()).prop_map(|(v4, noise, form)| {
            IpAddr::V6(*form.get(&v6_forms(v4, noise)))
        }),
    ]
}

/// Ways to write an IPv4 address as a URL host that a parser (or a resolver) may read as it.
fn v4_spellings(ip: Ipv4Addr, pick: u8) -> Vec<String> {
    let [a, b, c, d] = ip.octets();
    let n = ip.to_bits();
    let hex_octet = |o: u8| {
        if pick & 1 == 0 {
            format!("0x{o:x}")
        } else {
            format!("0X{o:02X}")
        }
    };
    let octal_octet = |o: u8| format!("0{o:o}");
    let mixed = |o: u8, i: u8| match (pick >> i) % 3 {
        0 => o.to_string(),
        1 => hex_octet(o),
        _ => octal_octet(o),
    };
    let percent = |s: &str| {
        s.bytes()
            .map(|byte| format!("%{byte:02X}"))
            .collect::<String>()
    };
    let dotted = format!("{a}.{b}.{c}.{d}");
    vec![
        dotted.clone(),
        format!("{dotted}."),
        n.to_string(),
        format!("0x{n:x}"),
        format!("0X{n:08X}"),
        format!("0{n:o}"),
        format!(
            "{}.{}.{}.{}",
            mixed(a, 0),
            mixed(b, 1),
            mixed(c, 2),
            mixed(d, 3)
        ),
        format!(
            "{}.{}.{}.{}",
            octal_octet(a),
            octal_octet(b),
            octal_octet(c),
            octal_octet(d)
        ),
        format!("{a}.{b}.{}", u32::from(c) << 8 | u32::from(d)),
        format!("{a}.{}", n & 0x00ff_ffff),
        format!("{}.{}", hex_octet(a), n & 0x00ff_ffff),
        format!("000{a:o}.{b}.{c}.{d}"),
        percent(&dotted),
        dotted.replace('.', "%2E"),
        format!("[::ffff:{dotted}]"),
        format!("[::FFFF:{:x}:{:x}]", n >> 16, n & 0xffff),
        format!("[0:0:0:0:0:ffff:{dotted}]"),
        format!("[0000:0000:0000:0000:0000:ffff:{dotted}]"),
        format!("[::{dotted}]"),
        format!("[::ffff:0:{dotted}]"),
        format!("[64:ff9b::{dotted}]"),
        format!("[2002:{:x}:{:x}::1]", n >> 16, n & 0xffff),
        format!(
            "[2001:0:4136:e378:8000:63bf:{:x}:{:x}]",
            !n >> 16,
            !n & 0xffff
        ),
    ]
}

fn url_around(host: &str, shape: u8) -> String {
    match shape % 6 {
        0 => format!("http://{host}/"),
        1 => format!("https://{host}:8443/v1/chat/completions"),
        2 => format!("HTTP://{host}"),
        3 => format!("http://user:pass@{host}/latest/meta-data/"),
        4 => format!("http://{host}:80/?q=1#f"),
        _ => format!("https://evil.example@{host}/"),
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn is_public_ip_agrees_with_the_reference(ip in any_ip()) {
        prop_assert_eq!(is_public_ip(ip), public(ip), "{}", ip);
    }

    #[test]
    fn refused_ipv4_and_every_ipv6_form_of_it_are_refused(
        v4 in refused_v4(),
        noise in any::<u128>(),
    ) {
        prop_assert!(!is_public_ip(IpAddr::V4(v4)), "{}", v4);
        for v6 in v6_forms(v4, noise) {
            prop_assert!(!is_public_ip(IpAddr::V6(v6)), "{} (carrying {})", v6, v4);
        }
    }

    #[test]
    fn refused_ipv6_ranges_are_refused(v6 in refused_v6()) {
        prop_assert!(!is_public_ip(IpAddr::V6(v6)), "{}", v6);
    }
}

proptest! {
    #[test]
    fn every_spelling_of_a_refused_address_is_refused(
        v4 in prop_oneof![
            refused_v4(),
            Just(Ipv4Addr::LOCALHOST),
            Just(Ipv4Addr::new(169, 254, 169, 254)),
            Just(Ipv4Addr::UNSPECIFIED),
        ],
        pick in any::<u8>(),
        shape in any::<u8>(),
    ) {
        let policy = OutboundPolicy::public_only();
        for host in v4_spellings(v4, pick) {
            let text = url_around(&host, shape);
            if let Ok(url) = Url::parse(&text) {
                let result = check_url(&url, &policy);
                prop_assert!(
                    result.as_ref().is_err_and(|err| err.code() == "blocked_address"),
                    "{} ({}, host {:?}) gave {:?}", text, v4, url.host_str(), result
                );
            }
        }
    }

    /// The same spellings of a public address are read as that address and allowed: the check
    /// sees what the connection would use.
    #[test]
    fn every_spelling_of_a_public_address_is_read_as_it(
        v4 in any::<u32>().prop_map(Ipv4Addr::from_bits).prop_filter("public", |ip| public_v4(*ip)),
        pick in any::<u8>(),
    ) {
        for host in v4_spellings(v4, pick) {
            let text = url_around(&host, 0);
            let Ok(url) = Url::parse(&text) else { continue };
            let read = match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            let Some(read) = read else {
                prop_assert!(false, "{} is not read as an address", text);
                continue;
            };
            let allowed = check_url(&url, &OutboundPolicy::public_only()).is_ok();
            prop_assert_eq!(allowed, public(read), "{}", text);
        }
    }

    #[test]
    fn check_url_is_total_and_never_allows_a_non_public_literal(text in prop_oneof![
        any::<String>(),
        "(https?|ftp|file|HTTP)://[a-z0-9.:\\[\\]@%-]{0,40}(/[a-z]{0,5})?",
    ]) {
        if let Ok(url) = Url::parse(&text)
            && check_url(&url, &OutboundPolicy::public_only()).is_ok()
        {
            prop_assert!(matches!(url.scheme(), "http" | "https"));
            match url.host() {
                Some(url::Host::Ipv4(ip)) => prop_assert!(public_v4(ip)),
                Some(url::Host::Ipv6(ip)) => prop_assert!(public_v6(ip)),
                Some(url::Host::Domain(_)) => {}
                None => prop_assert!(false, "{} has no host", text),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A literal address is never resolved: `resolve_checked` decides as `check_url` does.
    #[test]
    fn resolve_checked_agrees_with_check_url_on_literals(ip in any_ip(), port in 1u16..) {
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let url = Url::parse(&format!("http://{host}:{port}/")).unwrap();
        let policy = OutboundPolicy::public_only();
        let resolved = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(resolve_checked(&url, &policy));
        prop_assert_eq!(resolved.is_ok(), public(ip));
        prop_assert_eq!(resolved.is_ok(), check_url(&url, &policy).is_ok());
    }
}

/// Regressions (found by `is_public_ip_agrees_with_the_reference`): special-purpose IPv6
/// ranges that were taken for public addresses. The local-use NAT64 prefix and the IPv4-
/// translated form reach IPv4 addresses, private ones included, through a translator.
#[test]
fn special_ipv6_ranges_are_not_public() {
    for ip in [
        "64:ff9b:1::a9fe:a9fe",
        "64:ff9b:1:ffff::7f00:1",
        "::ffff:0:7f00:1",
        "::ffff:0:a9fe:a9fe",
        "2001:2::1",
        "3fff::1",
        "5f00::1",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(!is_public_ip(ip), "{ip} must not count as public");
    }
    assert!(is_public_ip("::ffff:0:808:808".parse().unwrap()));
}
