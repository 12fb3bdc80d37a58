#![doc = include_str!("../README.md")]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Why an outbound request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("only http and https URLs are allowed")]
    UnsupportedScheme,
    #[error("the URL is not valid: {0}")]
    InvalidUrl(String),
    #[error("{0} is not a public address")]
    BlockedAddress(String),
    #[error("the host name could not be resolved: {0}")]
    Resolution(String),
}

impl NetError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            NetError::UnsupportedScheme => "unsupported_scheme",
            NetError::InvalidUrl(_) => "invalid_url",
            NetError::BlockedAddress(_) => "blocked_address",
            NetError::Resolution(_) => "dns_failed",
        }
    }
}

/// Whether an address is on the public internet. See the crate docs for what is not.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0                                   // 0.0.0.0/8 "this network"
        || (a == 100 && (64..128).contains(&b))     // 100.64.0.0/10 carrier-grade NAT
        || (a == 192 && b == 0 && c == 0)           // 192.0.0.0/24 IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19))       // 198.18.0.0/15 benchmarking
        || a >= 240) // 240.0.0.0/4 reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00         // fc00::/7 unique local
        || (segments[0] & 0xffc0) == 0xfe80         // fe80::/10 link-local
        || (segments[0] & 0xffc0) == 0xfec0         // fec0::/10 site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // 2001:db8::/32 documentation
        || (segments[0] == 0x3fff && segments[1] < 0x1000) // 3fff::/20 documentation
        || segments[..3] == [0x2001, 0x0002, 0]     // 2001:2::/48 benchmarking
        || segments[0] == 0x5f00                    // 5f00::/16 segment routing SIDs
        // 64:ff9b:1::/48 local-use IPv4/IPv6 translation: a site's own NAT64, which may reach
        // any IPv4 address, private ones included.
        || segments[..3] == [0x0064, 0xff9b, 0x0001]
        || (segments[0] == 0x0100 && segments[1..4] == [0, 0, 0])) // 100::/64 discard
}

/// The IPv4 address an IPv6 address carries, for the forms that route to it: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`,
/// SIIT), NAT64 (`64:ff9b::/96`), 6to4 (`2002::/16`) and Teredo (`2001::/32`, client address
/// inverted).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let from =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(from(s[6], s[7])); // IPv4-compatible (excluding :: and ::1)
    }
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return Some(from(s[6], s[7])); // IPv4-translated
    }
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(from(s[6], s[7])); // NAT64
    }
    if s[0] == 0x2002 {
        return Some(from(s[1], s[2])); // 6to4
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Some(from(!s[6], !s[7])); // Teredo
    }
    None
}

/// What outbound connections a deployment allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Allow loopback and private addresses (an operator's local vLLM or Ollama).
    pub allow_private: bool,
    /// Exact addresses allowed even though they are not public (test fixtures).
    pub exempt: Vec<SocketAddr>,
}

impl OutboundPolicy {
    /// Public addresses only.
    pub fn public_only() -> Self {
        Self::default()
    }

    pub fn allows(&self, addr: SocketAddr) -> bool {
        self.allow_private || is_public_ip(addr.ip()) || self.exempt.contains(&addr)
    }
}

/// Checks what can be checked without DNS: the scheme, and the address if the host is a
/// literal one.
pub fn check_url(url: &Url, policy: &OutboundPolicy) -> Result<(), NetError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(NetError::UnsupportedScheme);
    }
    let port = url.port_or_known_default().unwrap_or(0);
    match url.host() {
        None => Err(NetError::InvalidUrl("the URL has no host".into())),
        Some(Host::Ipv4(ip)) => check_addr(SocketAddr::new(IpAddr::V4(ip), port), policy),
        Some(Host::Ipv6(ip)) => check_addr(SocketAddr::new(IpAddr::V6(ip), port), policy),
        Some(Host::Domain(_)) => Ok(()),
    }
}

fn check_addr(addr: SocketAddr, policy: &OutboundPolicy) -> Result<(), NetError> {
    if policy.allows(addr) {
        Ok(())
    } else {
        Err(NetError::BlockedAddress(addr.ip().to_string()))
    }
}

/// Checks the URL and resolves its host; every address the name resolves to must be allowed
/// (so a name cannot mix a public and a private answer). Returns the address to connect to: pin
/// the connection to it.
pub async fn resolve_checked(url: &Url, policy: &OutboundPolicy) -> Result<SocketAddr, NetError> {
    check_url(url, policy)?;
    let port = url.port_or_known_default().unwrap_or(80);
    let host = match url.host() {
        Some(Host::Ipv4(ip)) => return Ok(SocketAddr::new(IpAddr::V4(ip), port)),
        Some(Host::Ipv6(ip)) => return Ok(SocketAddr::new(IpAddr::V6(ip), port)),
        Some(Host::Domain(name)) => name.to_owned(),
        None => return Err(NetError::InvalidUrl("the URL has no host".into())),
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|err| NetError::Resolution(format!("{host}: {err}")))?
        .collect();
    let first = *addrs
        .first()
        .ok_or_else(|| NetError::Resolution(format!("{host}: no address")))?;
    for addr in &addrs {
        check_addr(*addr, policy)?;
    }
    Ok(first)
}

/// A `reqwest` DNS resolver that refuses names resolving to addresses the policy does not
/// allow. Literal-address URLs never reach a resolver: check them with [`check_url`].
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    policy: Arc<OutboundPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: OutboundPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(
                    Box::new(NetError::Resolution(format!("{host}: no address")))
                        as Box<dyn std::error::Error + Send + Sync>,
                );
            }
            // The port is not known here (it is 0): exemptions match on the address alone.
            let allowed = |addr: &SocketAddr| {
                policy.allow_private
                    || is_public_ip(addr.ip())
                    || policy.exempt.iter().any(|e| e.ip() == addr.ip())
            };
            if let Some(blocked) = addrs.iter().find(|a| !allowed(a)) {
                return Err(Box::new(NetError::BlockedAddress(format!(
                    "{host} ({})",
                    blocked.ip()
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "2001:db8::1",
            "ff02::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!is_public_ip(ip), "{ip} must not count as public");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "2002:0808:0808::",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_public_ip(ip), "{ip} is public");
        }
    }

    #[test]
    fn literal_and_obfuscated_addresses_are_refused() {
        let policy = OutboundPolicy::public_only();
        for target in [
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://017700000001/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[0:0:0:0:0:ffff:7f00:1]/",
            "https://10.0.0.1:8443/v1",
        ] {
            let err = check_url(&url(target), &policy).unwrap_err();
            assert_eq!(err.code(), "blocked_address", "{target}");
        }
        for target in [
            "file:///etc/passwd",
            "ftp://example.com/",
            "gopher://example.com/",
            "data:text/plain,hi",
        ] {
            assert_eq!(
                check_url(&url(target), &policy).unwrap_err().code(),
                "unsupported_scheme",
                "{target}"
            );
        }
        assert!(check_url(&url("https://api.openai.com/v1"), &policy).is_ok());
        assert!(check_url(&url("http://93.184.216.34/"), &policy).is_ok());
    }

    #[test]
    fn operators_and_tests_can_open_the_door_narrowly() {
        let local = OutboundPolicy {
            allow_private: true,
            exempt: vec![],
        };
        assert!(check_url(&url("http://127.0.0.1:11434/v1"), &local).is_ok());
        let exempt: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let narrow = OutboundPolicy {
            allow_private: false,
            exempt: vec![exempt],
        };
        assert!(check_url(&url("http://127.0.0.1:4000/"), &narrow).is_ok());
        assert!(check_url(&url("http://127.0.0.1:4001/"), &narrow).is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let policy = OutboundPolicy::public_only();
        let err = resolve_checked(&url("http://localhost:8080/"), &policy)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "blocked_address");
        let resolver = GuardedResolver::new(policy);
        let name: Name = "localhost".parse().unwrap();
        assert!(resolver.resolve(name).await.is_err());
        let open = GuardedResolver::new(OutboundPolicy {
            allow_private: true,
            exempt: vec![],
        });
        assert!(open.resolve("localhost".parse().unwrap()).await.is_ok());
    }
}
