//! Indicators and entities: what a case is about, normalised and classified once, at extraction.
//!
//! The internal/external decision is made here and travels with the indicator: sources that call
//! third parties refuse internal ones.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::host::{normalise_domain, normalise_url, url_host};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndicatorKind {
    Ipv4,
    Ipv6,
    Domain,
    Url,
    Md5,
    Sha1,
    Sha256,
    Email,
    Hostname,
    User,
    Process,
}

impl IndicatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
            Self::Domain => "domain",
            Self::Url => "url",
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Email => "email",
            Self::Hostname => "hostname",
            Self::User => "user",
            Self::Process => "process",
        }
    }

    pub fn is_hash(self) -> bool {
        matches!(self, Self::Md5 | Self::Sha1 | Self::Sha256)
    }

    pub fn is_ip(self) -> bool {
        matches!(self, Self::Ipv4 | Self::Ipv6)
    }

    /// Entities name things inside the organisation (assets, identities, processes); they are
    /// context, never something to send to a threat-intel service.
    pub fn is_entity(self) -> bool {
        matches!(self, Self::Hostname | Self::User | Self::Process)
    }
}

impl fmt::Display for IndicatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One normalised indicator or entity of a case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Indicator {
    pub kind: IndicatorKind,
    pub value: String,
    /// True for internal or reserved addresses, internal names and every entity.
    pub internal: bool,
    /// Where it was seen (XDR field names), at most a few, for the analyst.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen_in: Vec<String>,
}

impl Indicator {
    pub fn key(&self) -> (IndicatorKind, &str) {
        (self.kind, self.value.as_str())
    }
}

/// An XDR endpoint (agent) of the case: its id and host name, as XDR reported them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub endpoint_id: Option<String>,
    pub host_name: Option<String>,
}

/// Settings that decide what counts as internal.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InternalNames {
    /// Domain suffixes owned by the organisation, lower case, without a leading dot (e.g. `corp.example.com`).
    pub domain_suffixes: Vec<String>,
}

/// Suffixes reserved or customary for private networks: never resolvable on the internet.
const RESERVED_SUFFIXES: [&str; 8] = ["local", "localdomain", "internal", "intranet", "corp", "lan", "home.arpa", "localhost"];

/// Public mail and consumer domains: a user's address there says nothing about what the
/// organisation owns.
const PUBLIC_MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "yahoo.com",
    "icloud.com",
    "me.com",
    "proton.me",
    "protonmail.com",
    "gmx.com",
    "aol.com",
];

impl InternalNames {
    /// These names plus suffixes learned from the tenant's own data (host FQDNs, UPN suffixes).
    pub fn with_learned(&self, learned: &[String]) -> InternalNames {
        let mut domain_suffixes = self.domain_suffixes.clone();
        for s in learned {
            let s = s.trim().trim_start_matches('.').to_ascii_lowercase();
            if s.contains('.') && !PUBLIC_MAIL_DOMAINS.contains(&s.as_str()) && !domain_suffixes.contains(&s) {
                domain_suffixes.push(s);
            }
        }
        InternalNames { domain_suffixes }
    }

    /// Every suffix that makes a name internal: reserved private-use ones and the organisation's.
    pub fn all_suffixes(&self) -> impl Iterator<Item = &str> {
        RESERVED_SUFFIXES.iter().copied().chain(self.domain_suffixes.iter().map(String::as_str))
    }

    pub fn is_internal_domain(&self, domain: &str) -> bool {
        let suffix_match = |s: &str| domain == s || domain.ends_with(&format!(".{s}"));
        RESERVED_SUFFIXES.iter().any(|s| suffix_match(s))
            || domain.ends_with(".in-addr.arpa")
            || domain.ends_with(".ip6.arpa")
            || self.domain_suffixes.iter().any(|s| suffix_match(s))
    }
}

/// Values XDR uses for "nothing here" which must never become indicators.
pub fn is_placeholder(value: &str) -> bool {
    let v = value.trim();
    // Template placeholders as published in API examples: `<host_name>`, `<sha256>`.
    let templated = v.len() > 2 && v.starts_with('<') && v.ends_with('>') && !v[1..v.len() - 1].contains(['<', '>']);
    v.is_empty()
        || templated
        || ["n/a", "na", "null", "none", "unknown", "-", "undefined", "nan", "0"].iter().any(|p| v.eq_ignore_ascii_case(p))
}

/// Defanged separators and what they stand for: the one list `refang` and the pseudonymiser's
/// search for defanged values both read.
pub const DEFANGED_SEPARATORS: [(&str, &str); 10] = [
    ("[.]", "."),
    ("(.)", "."),
    ("{.}", "."),
    ("[dot]", "."),
    ("(dot)", "."),
    ("[DOT]", "."),
    ("[:]", ":"),
    ("[://]", "://"),
    ("[@]", "@"),
    ("[at]", "@"),
];

/// Turns defanged notation back into the real form: `hxxp`, `[.]`, `(.)`, `[dot]`, `[:]`, `[@]`.
pub fn refang(text: &str) -> String {
    if !text.contains('[') && !text.contains('(') && !text.contains("xx") && !text.contains("XX") {
        return text.to_string();
    }
    let mut out = text.to_string();
    for (from, to) in DEFANGED_SEPARATORS {
        out = out.replace(from, to);
    }
    for (from, to) in
        [("hxxps://", "https://"), ("hxxp://", "http://"), ("HXXPS://", "https://"), ("HXXP://", "http://"), ("fxp://", "ftp://")]
    {
        out = out.replace(from, to);
    }
    out
}

/// Where an indicator lives, as the dossier labels it: the company's own, a reserved range
/// (documentation, CGNAT, benchmarking: never a real peer), or the internet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    External,
    Internal,
    Reserved,
}

impl Scope {
    pub fn of(kind: IndicatorKind, value: &str, internal: bool) -> Scope {
        if !internal {
            return Scope::External;
        }
        if !matches!(kind, IndicatorKind::Ipv4 | IndicatorKind::Ipv6) {
            return Scope::Internal;
        }
        match value.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) if v4.is_private() || v4.is_loopback() || v4.is_link_local() => Scope::Internal,
            Ok(IpAddr::V6(v6)) if v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80 => {
                Scope::Internal
            }
            Ok(_) => Scope::Reserved,
            Err(_) => Scope::Internal,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::External => "external",
            Scope::Internal => "internal",
            Scope::Reserved => "reserved",
        }
    }
}

/// Classification of an IP address: reserved ranges are "internal" for our purposes.
pub fn ip_is_internal(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => ipv4_is_internal(v4),
        IpAddr::V6(v6) => ipv6_is_internal(v6),
    }
}

fn ipv4_is_internal(ip: &Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (64..=127).contains(&o[1])) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking
        || o[0] >= 240 // reserved
}

fn ipv6_is_internal(ip: &Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return ipv4_is_internal(&v4);
    }
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
}

/// Normalises and validates a value of a known kind; `None` if it is not a valid indicator.
pub fn normalise(kind: IndicatorKind, raw: &str, names: &InternalNames) -> Option<Indicator> {
    let trimmed = raw.trim().trim_matches(|c: char| c == '"' || c == '\'' || c == '<' || c == '>');
    if is_placeholder(trimmed) || trimmed.len() > 2048 {
        return None;
    }
    let refanged = refang(trimmed);
    let v = refanged.as_str();
    let (value, internal) = match kind {
        IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => {
            // XDR sometimes writes a trailing dot ("1.1.1.1.") or a port.
            let v = v.trim_end_matches('.');
            let ip: IpAddr = v.parse().ok()?;
            let internal = ip_is_internal(&ip);
            match ip {
                IpAddr::V4(a) => return Some(make(IndicatorKind::Ipv4, a.to_string(), internal)),
                IpAddr::V6(a) => match a.to_ipv4_mapped() {
                    Some(v4) => return Some(make(IndicatorKind::Ipv4, v4.to_string(), internal)),
                    None => return Some(make(IndicatorKind::Ipv6, a.to_string(), internal)),
                },
            }
        }
        IndicatorKind::Domain => {
            let d = normalise_domain(v)?;
            let internal = names.is_internal_domain(&d);
            (d, internal)
        }
        IndicatorKind::Url => {
            let url = normalise_url(v)?;
            let host = url_host(&url)?;
            let internal = match host.parse::<IpAddr>() {
                Ok(ip) => ip_is_internal(&ip),
                Err(_) => names.is_internal_domain(&host),
            };
            (url, internal)
        }
        IndicatorKind::Md5 | IndicatorKind::Sha1 | IndicatorKind::Sha256 => {
            let len = match kind {
                IndicatorKind::Md5 => 32,
                IndicatorKind::Sha1 => 40,
                _ => 64,
            };
            if v.len() != len || !v.bytes().all(|b| b.is_ascii_hexdigit()) || v.bytes().all(|b| b == b'0') {
                return None;
            }
            (v.to_ascii_lowercase(), false)
        }
        IndicatorKind::Email => {
            let (local, domain) = v.rsplit_once('@')?;
            if local.is_empty() || local.len() > 64 || local.contains(char::is_whitespace) {
                return None;
            }
            let d = normalise_domain(domain)?;
            let internal = names.is_internal_domain(&d);
            (format!("{}@{d}", local.to_ascii_lowercase()), internal)
        }
        IndicatorKind::Hostname => {
            let h = v.trim_end_matches('.');
            // "." or a defanged "[.]" is no host: nothing is left once the root dot goes.
            if h.is_empty() || h.len() > 255 || h.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return None;
            }
            // Host names are case-insensitive (NetBIOS, DNS): one spelling per host.
            (h.to_ascii_lowercase(), true)
        }
        IndicatorKind::User => {
            if v.len() > 256 || v.chars().any(|c| c.is_control()) {
                return None;
            }
            (v.to_string(), true)
        }
        IndicatorKind::Process => {
            if v.len() > 512 || v.chars().any(|c| c.is_control()) {
                return None;
            }
            (v.to_string(), true)
        }
    };
    Some(make(kind, value, internal))
}

fn make(kind: IndicatorKind, value: String, internal: bool) -> Indicator {
    Indicator { kind, value, internal, seen_in: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(kind: IndicatorKind, raw: &str) -> Option<Indicator> {
        normalise(kind, raw, &InternalNames::default())
    }

    #[test]
    fn ip_classification_covers_reserved_ranges() {
        for internal in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "192.0.2.5",
            "198.51.100.7",
            "203.0.113.9",
            "0.0.0.0",
            "255.255.255.255",
            "fd00::1",
            "fe80::1",
            "::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(n(IndicatorKind::Ipv4, internal).unwrap().internal, "{internal}");
        }
        for external in ["8.8.8.8", "1.1.1.1", "104.18.166.49", "2606:4700::1111"] {
            assert!(!n(IndicatorKind::Ipv4, external).unwrap().internal, "{external}");
        }
    }

    #[test]
    fn ip_normalisation() {
        assert_eq!(n(IndicatorKind::Ipv4, "1.1.1.1.").unwrap().value, "1.1.1.1");
        assert_eq!(n(IndicatorKind::Ipv4, "1[.]1[.]1[.]1").unwrap().value, "1.1.1.1");
        let v6 = n(IndicatorKind::Ipv6, "2606:4700:0000:0000:0000:0000:0000:1111").unwrap();
        assert_eq!((v6.kind, v6.value.as_str()), (IndicatorKind::Ipv6, "2606:4700::1111"));
        assert!(n(IndicatorKind::Ipv4, "999.1.1.1").is_none());
        assert!(n(IndicatorKind::Ipv4, "N/A").is_none());
    }

    #[test]
    fn hashes_are_validated_and_lower_cased() {
        let h = "8D5AEC85593C85ECDC8D5AC601E163A1CC26D877F88C03E9E0E94C9DD4A38FCA";
        assert_eq!(n(IndicatorKind::Sha256, h).unwrap().value, h.to_lowercase());
        assert!(n(IndicatorKind::Sha256, "11111111111111111").is_none());
        assert!(n(IndicatorKind::Sha256, "file_sha256_1").is_none());
        assert!(n(IndicatorKind::Md5, &"0".repeat(32)).is_none());
    }

    #[test]
    fn domains_and_urls() {
        assert_eq!(n(IndicatorKind::Domain, "Evil.Example.COM.").unwrap().value, "evil.example.com");
        assert!(n(IndicatorKind::Domain, "dc01.corp").unwrap().internal);
        assert!(n(IndicatorKind::Domain, "1.2.3.4").is_none());
        let u = n(IndicatorKind::Url, "hxxp://Bad[.]Example.com/x?a=1").unwrap();
        assert_eq!(u.value, "http://bad.example.com/x?a=1");
        assert!(!u.internal);
        assert!(n(IndicatorKind::Url, "http://10.0.0.5:8080/a").unwrap().internal);
        assert!(n(IndicatorKind::Url, "javascript://x").is_none());
        assert_eq!(n(IndicatorKind::Domain, "Пример.COM").unwrap().value, "xn--e1afmkfd.com");
        assert_eq!(n(IndicatorKind::Domain, "xn--e1afmkfd.com").unwrap().value, "xn--e1afmkfd.com");
        assert_eq!(n(IndicatorKind::Url, "https://пример.com/a").unwrap().value, "https://xn--e1afmkfd.com/a");
        let names = InternalNames { domain_suffixes: vec!["acme.test".into()] };
        assert!(normalise(IndicatorKind::Domain, "hr.acme.test", &names).unwrap().internal);
        assert!(!normalise(IndicatorKind::Domain, "notacme.test", &names).unwrap().internal);
    }

    #[test]
    fn bracketed_hosts_are_ipv6_literals_or_nothing() {
        // Attacker text: an open bracket once sliced past the end of the authority (a panic
        // that sent every retry of the case to the DLQ; found by the extra_data fuzz target).
        for bad in ["http://[a.com", "http://[::1", "http://[", "http://[]/", "http://[a.com]/x", "http://[::1]x/", "http://a.com:8o/"] {
            assert!(n(IndicatorKind::Url, bad).is_none(), "{bad}");
            assert!(url_host(bad).is_none(), "{bad}");
        }
        // A backslash before `@` is a path to browsers: the host is the one before it.
        assert_eq!(url_host("http://evil.com\\@good.com/").as_deref(), Some("evil.com"));
        assert_eq!(url_host(&n(IndicatorKind::Url, "http://evil.com\\@good.com/").unwrap().value).as_deref(), Some("evil.com"));
        // A hexadecimal last label is an address to browsers, not a domain.
        assert!(n(IndicatorKind::Url, "http://10.0.0.0x1/").is_none());
        assert!(n(IndicatorKind::Domain, "10.0.0.0x1").is_none());
        assert!(n(IndicatorKind::Domain, "cdn.0xdeadbeef").is_none());
        assert_eq!(n(IndicatorKind::Domain, "cdn.0xdead-zone.com").unwrap().value, "cdn.0xdead-zone.com");
        assert_eq!(n(IndicatorKind::Url, "http://[2001:DB8:0::1]/x").unwrap().value, "http://[2001:db8::1]/x");
        // Ports: as a number, the scheme's own and an empty one left out, impossible ones refused.
        assert_eq!(n(IndicatorKind::Url, "http://a.com:80/x").unwrap().value, "http://a.com/x");
        assert_eq!(n(IndicatorKind::Url, "https://a.com:443").unwrap().value, "https://a.com");
        assert_eq!(n(IndicatorKind::Url, "http://a.com:/x").unwrap().value, "http://a.com/x");
        assert_eq!(n(IndicatorKind::Url, "http://a.com:0080/x").unwrap().value, "http://a.com/x");
        assert_eq!(n(IndicatorKind::Url, "https://a.com:80/x").unwrap().value, "https://a.com:80/x");
        for impossible in ["http://a.com:0/", "http://a.com:65536/", "http://a.com:99999999999999999999/"] {
            assert!(n(IndicatorKind::Url, impossible).is_none(), "{impossible}");
        }
        let v6 = n(IndicatorKind::Url, "http://[2001:4860::8888]:8080/a").unwrap();
        assert_eq!(v6.value, "http://[2001:4860::8888]:8080/a");
        assert_eq!(url_host(&v6.value).as_deref(), Some("2001:4860::8888"));
        assert_eq!(n(IndicatorKind::Url, "http://Bad.Example.com:443").unwrap().value, "http://bad.example.com:443");
        assert_eq!(n(IndicatorKind::Url, "ftp://Bad.Example.com:21/f").unwrap().value, "ftp://bad.example.com/f");
    }

    #[test]
    fn a_host_name_of_only_dots_is_no_host() {
        for dots in [".", "..", "[.]", "(.)", "'.'"] {
            assert!(n(IndicatorKind::Hostname, dots).is_none(), "{dots}");
        }
        assert_eq!(n(IndicatorKind::Hostname, "WS-01.").unwrap().value, "ws-01");
    }

    #[test]
    fn placeholders_never_become_indicators() {
        for p in ["N/A", "", "  ", "null", "None", "-", "UNKNOWN"] {
            assert!(is_placeholder(p), "{p}");
            assert!(n(IndicatorKind::Hostname, p).is_none());
        }
    }
}
