//! AlienVault OTX DirectConnect v1: `general` for every indicator (pulses, malware families,
//! ATT&CK IDs, allow-list validation), plus `malware` for IPs that appear in pulses and
//! `passive_dns` for domains that do. Unknown indicators answer 200 with no pulses.

use async_trait::async_trait;
use serde_json::Value;
use std::time::Duration;

use super::{enc, send};
use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::sources::{intel_facts, CallCounter, IndicatorSource, IndicatorVerdict, Lookup, LookupError, VerdictLevel};

pub const NAME: &str = "otx";
pub const DEFAULT_BASE_URL: &str = "https://otx.alienvault.com/api/v1";

#[derive(Clone)]
pub struct Otx {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
}

impl Otx {
    pub fn new(base_url: &str, api_key: String, timeout: Duration) -> Otx {
        Otx { http: crate::http_client::client(timeout), base_url: base_url.trim_end_matches('/').to_string(), api_key }
    }

    fn slug(kind: IndicatorKind) -> Option<&'static str> {
        Some(match kind {
            IndicatorKind::Ipv4 => "IPv4",
            IndicatorKind::Ipv6 => "IPv6",
            IndicatorKind::Domain => "domain",
            IndicatorKind::Url => "url",
            IndicatorKind::Md5 | IndicatorKind::Sha1 | IndicatorKind::Sha256 => "file",
            _ => return None,
        })
    }

    async fn section(&self, slug: &str, value: &str, section: &str, calls: &CallCounter) -> Result<Option<super::Answer>, LookupError> {
        let req =
            self.http.get(format!("{}/indicators/{slug}/{}/{section}", self.base_url, enc(value))).header("X-OTX-API-KEY", &self.api_key);
        send(req, calls).await
    }
}

/// Second-level labels under which registries sell names (`example.co.uk` is a registered domain).
const SECOND_LEVEL: &[&str] = &["co", "com", "net", "org", "gov", "ac", "edu", "ne", "or", "go", "gob", "mil"];

/// A name below its registered domain: more labels than `example.com` / `example.co.uk`.
pub fn is_subdomain(name: &str) -> bool {
    let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
    let registered =
        if labels.len() >= 3 && labels[labels.len() - 1].len() == 2 && SECOND_LEVEL.contains(&labels[labels.len() - 2]) { 3 } else { 2 };
    labels.len() > registered
}

/// The verdict from a `general` answer and any extra sections read (`malware`, `passive_dns`,
/// `url_list`, `analysis`). Pure; tested on fixtures.
pub fn verdict_from(indicator: &Indicator, general: &Value, sections: &[(&str, &Value)]) -> Option<IndicatorVerdict> {
    let section = |name: &str| sections.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    let (malware, passive_dns) = (section("malware"), section("passive_dns"));
    let pulses = general.pointer("/pulse_info/pulses").and_then(Value::as_array).cloned().unwrap_or_default();
    let count = general.pointer("/pulse_info/count").and_then(Value::as_u64).unwrap_or(pulses.len() as u64);
    let allow_listed: Vec<String> = general
        .get("validation")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let mut families: Vec<String> = Vec::new();
    let mut adversaries: Vec<String> = Vec::new();
    let mut attack_ids: Vec<String> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for p in &pulses {
        if let Some(n) = p.get("name").and_then(Value::as_str) {
            names.push(n.chars().take(80).collect());
        }
        for f in p.get("malware_families").and_then(Value::as_array).into_iter().flatten() {
            let name = f.get("display_name").or_else(|| f.get("id")).and_then(Value::as_str).or_else(|| f.as_str());
            if let Some(n) = name {
                if !families.iter().any(|x| x == n) {
                    families.push(n.to_string());
                }
            }
        }
        if let Some(a) = p.get("adversary").and_then(Value::as_str).map(str::trim).filter(|a| !a.is_empty()) {
            adversaries.push(a.to_string());
        }
        for a in p.get("attack_ids").and_then(Value::as_array).into_iter().flatten() {
            if let Some(id) = a.get("id").and_then(Value::as_str) {
                if !attack_ids.iter().any(|x| x == id) {
                    attack_ids.push(id.to_string());
                }
            }
        }
    }
    // OTX's own roll-up over every pulse (`pulse_info.related.{alienvault,other}.adversary`).
    for side in ["alienvault", "other"] {
        let related = general.pointer(&format!("/pulse_info/related/{side}/adversary")).and_then(Value::as_array);
        adversaries.extend(related.into_iter().flatten().filter_map(Value::as_str).map(str::to_string));
    }
    let malware_samples = malware
        .and_then(|m| m.get("count").and_then(Value::as_u64).or_else(|| m.get("data").and_then(Value::as_array).map(|d| d.len() as u64)))
        .unwrap_or(0);
    if count == 0 && allow_listed.is_empty() && malware_samples == 0 {
        return None;
    }
    let verdict = if !allow_listed.is_empty() && families.is_empty() {
        VerdictLevel::Harmless
    } else if !families.is_empty() || count >= 3 {
        VerdictLevel::Malicious
    } else if count > 0 || malware_samples > 0 {
        VerdictLevel::Suspicious
    } else {
        VerdictLevel::Unknown
    };
    let mut summary = format!("in {count} OTX pulse(s)");
    if !families.is_empty() {
        summary.push_str(&format!("; malware families {}", families.join(", ")));
    }
    if !allow_listed.is_empty() {
        summary.push_str(&format!("; allow-listed ({})", allow_listed.join(", ")));
    }
    if malware_samples > 0 {
        summary.push_str(&format!("; {malware_samples} malware sample(s) seen with it"));
    }
    let resolutions = passive_dns.and_then(|p| p.get("passive_dns").and_then(Value::as_array)).map_or(0, Vec::len);
    let urls = section("url_list").and_then(|u| {
        u.get("full_size").and_then(Value::as_u64).or_else(|| u.get("url_list").and_then(Value::as_array).map(|l| l.len() as u64))
    });
    let file_type =
        section("analysis").and_then(|a| a.pointer("/analysis/info/results/file_type")).and_then(Value::as_str).unwrap_or_default();
    let slug = match indicator.kind {
        IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => "ip",
        IndicatorKind::Domain if is_subdomain(&indicator.value) => "hostname",
        IndicatorKind::Domain => "domain",
        IndicatorKind::Url => "url",
        _ => "file",
    };
    Some(
        IndicatorVerdict::new(indicator, verdict, summary)
            .link(format!("https://otx.alienvault.com/indicator/{slug}/{}", indicator.value))
            .fact("pulses", count.to_string())
            .fact("pulse_names", names.into_iter().take(3).collect::<Vec<_>>().join("; "))
            .fact(intel_facts::MALWARE, intel_facts::join(families.iter().map(String::as_str)))
            .fact(intel_facts::ACTORS, intel_facts::join(adversaries.iter().map(String::as_str)))
            .fact("attack_ids", attack_ids.join(", "))
            .fact("passive_dns_records", if resolutions > 0 { resolutions.to_string() } else { String::new() })
            .fact("urls_seen", urls.map(|u| u.to_string()).unwrap_or_default())
            .fact("file_type", file_type),
    )
}

#[async_trait]
impl IndicatorSource for Otx {
    fn name(&self) -> &'static str {
        NAME
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        Self::slug(kind).is_some()
    }
    fn sends_externally(&self) -> bool {
        true
    }

    async fn lookup(&self, indicator: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        let mut slug =
            Self::slug(indicator.kind).ok_or_else(|| LookupError::BadReply(format!("OTX does not look up {}", indicator.kind)))?;
        // OTX files a subdomain (`cdn.evil.example`) under `hostname`; `domain` holds only
        // registered domains and answers a subdomain with nothing.
        if indicator.kind == IndicatorKind::Domain && is_subdomain(&indicator.value) {
            slug = "hostname";
        }
        let Some(general) = self.section(slug, &indicator.value, "general", calls).await? else { return Ok(Lookup::NotFound) };
        let in_pulses = general.json.pointer("/pulse_info/count").and_then(Value::as_u64).unwrap_or(0) > 0;
        // Extra sections only where they can change the picture (each is another request).
        let wanted: &[&str] = match (in_pulses, slug) {
            (false, _) => &[],
            (true, "IPv4" | "IPv6") => &["malware"],
            (true, "domain") => &["passive_dns"],
            (true, "file") => &["analysis"],
            (true, _) => &[],
        };
        let mut extra = Vec::new();
        for name in wanted {
            if let Some(a) = self.section(slug, &indicator.value, name, calls).await? {
                extra.push((*name, a.json));
            }
        }
        let sections: Vec<(&str, &Value)> = extra.iter().map(|(n, v)| (*n, v)).collect();
        Ok(match verdict_from(indicator, &general.json, &sections) {
            Some(v) => Lookup::Found(v.raw(&general.raw)),
            None => Lookup::NotFound,
        })
    }
}
