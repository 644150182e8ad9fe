//! Domain names and URLs as indicators: written one way (lower case, punycode, an address in its
//! one form, the scheme's own port left out), a URL's host read as a browser reads it. They come
//! from alert text anyone can write: nothing here slices past what it checked.

use std::net::IpAddr;

/// Lower-cases, strips the root dot, checks labels. Internationalised names become their
/// punycode (`xn--`) form, so `пример.com` and `xn--e1afmkfd.com` are one indicator.
pub fn normalise_domain(raw: &str) -> Option<String> {
    let trimmed = raw.trim().trim_end_matches('.');
    let d = if trimmed.is_ascii() { trimmed.to_ascii_lowercase() } else { idna::domain_to_ascii(trimmed).ok()? };
    if d.len() < 3 || d.len() > 253 || !d.contains('.') {
        return None;
    }
    let labels: Vec<&str> = d.split('.').collect();
    for label in &labels {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return None;
        }
    }
    let tld = labels.last()?;
    // A numeric last label means an IP address or a version string, not a domain; browsers read
    // a hexadecimal one as an address too (`10.0.0.0x1` is 10.0.0.1: WHATWG "ends in a number").
    let hex = tld.strip_prefix("0x").is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    if tld.chars().all(|c| c.is_ascii_digit()) || hex || tld.len() < 2 {
        return None;
    }
    Some(d)
}

/// The URL in its one written form, or `None` when it is not an http(s)/ftp URL with a host.
pub(crate) fn normalise_url(raw: &str) -> Option<String> {
    let (scheme, rest) = raw.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https" | "ftp") || rest.is_empty() {
        return None;
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let host_end = rest.find(AUTHORITY_ENDS).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(host_end);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (raw_host, port) = split_host_port(host_port)?;
    // An address in its one written form (`2001:DB8:0::1` is `2001:db8::1`): one indicator.
    let host = match raw_host.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => normalise_domain(raw_host)?,
    };
    // An IPv6 host keeps its brackets in the URL.
    let host = if host_port.starts_with('[') { format!("[{host}]") } else { host };
    // The port as a number, left out when empty or the scheme's own (`http://a.com:80/` is
    // `http://a.com/`: one indicator); 0 and anything over 65535 is no port.
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => 21,
    };
    let port = match port.strip_prefix(':') {
        None | Some("") => String::new(),
        Some(digits) => match digits.parse::<u16>() {
            Ok(0) | Err(_) => return None,
            Ok(n) if n == default_port => String::new(),
            Ok(n) => format!(":{n}"),
        },
    };
    Some(format!("{scheme}://{host}{port}{tail}"))
}

/// What ends a URL's authority. Browsers read `\` as `/` in web URLs: the host of
/// `http://evil.com\@good.com` is evil.com, not good.com.
const AUTHORITY_ENDS: [char; 4] = ['/', '?', '#', '\\'];

/// An authority's host and what follows it (`:port` or nothing), or `None` when the host is
/// empty or a bracket is left open: `[` only ever opens an IPv6 literal (RFC 3986 §3.2.2), and
/// attacker text holds `http://[a.com` as readily as `http://[::1]:80`.
fn split_host_port(host_port: &str) -> Option<(&str, &str)> {
    let (host, port) = match host_port.strip_prefix('[') {
        Some(bracketed) => {
            let (literal, after) = bracketed.split_once(']')?;
            literal.parse::<std::net::Ipv6Addr>().ok()?;
            (literal, after)
        }
        None => host_port.find(':').map_or((host_port, ""), |at| host_port.split_at(at)),
    };
    let port_ok = port.is_empty() || port.strip_prefix(':').is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    (!host.is_empty() && port_ok).then_some((host, port))
}

/// The host part of a URL, or `None` when it has none or a malformed one.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let end = rest.find(AUTHORITY_ENDS).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    split_host_port(host_port).map(|(host, _)| host.to_string())
}
