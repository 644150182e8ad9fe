//! VirusTotal API v3 as an `IndicatorSource`: IPs, domains, URLs (by unpadded base64url id) and
//! file hashes. 404 is a valid "unknown"; 429 defers the message with `Retry-After`.

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use std::time::Duration;

use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::sources::{CallCounter, IndicatorSource, IndicatorVerdict, Lookup, LookupError, VerdictLevel};

/// The fact holding a domain's registration date (shared name: the dossier reads it).
pub const REGISTERED: &str = dossier_core::sources::intel_facts::REGISTERED;

pub const NAME: &str = "virustotal";
pub const DEFAULT_BASE_URL: &str = "https://www.virustotal.com/api/v3";

#[derive(Clone)]
pub struct VirusTotal {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    /// Engines that must say malicious before the verdict is malicious.
    pub malicious_threshold: u64,
}

impl VirusTotal {
    pub fn new(base_url: &str, api_key: String, timeout: Duration) -> VirusTotal {
        VirusTotal {
            http: crate::http_client::client(timeout),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            malicious_threshold: 3,
        }
    }

    /// The object path for an indicator and the GUI's name for its type (shared with GTI, the same API).
    pub(crate) fn path(kind: IndicatorKind, value: &str) -> Option<(String, &'static str)> {
        Some(match kind {
            IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => (format!("ip_addresses/{}", super::enc(value)), "ip-address"),
            IndicatorKind::Domain => (format!("domains/{}", super::enc(value)), "domain"),
            IndicatorKind::Url => (format!("urls/{}", URL_SAFE_NO_PAD.encode(value)), "url"),
            IndicatorKind::Md5 | IndicatorKind::Sha1 | IndicatorKind::Sha256 => (format!("files/{value}"), "file"),
            _ => return None,
        })
    }
}

/// Turns a v3 object into a verdict. Pure; tested on the recorded fixtures.
pub fn verdict_from(indicator: &Indicator, body: &Value, threshold: u64) -> Result<IndicatorVerdict, LookupError> {
    let data = body.get("data").ok_or_else(|| LookupError::BadReply("no `data` object".into()))?;
    let attrs = data.get("attributes").ok_or_else(|| LookupError::BadReply("no `data.attributes`".into()))?;
    let stats = attrs.get("last_analysis_stats").and_then(Value::as_object);
    let count = |k: &str| stats.and_then(|s| s.get(k)).and_then(Value::as_u64).unwrap_or(0);
    let (malicious, suspicious, harmless, undetected) = (count("malicious"), count("suspicious"), count("harmless"), count("undetected"));
    let engines = stats.map_or(0, |s| s.values().filter_map(Value::as_u64).sum::<u64>());
    let verdict = if malicious >= threshold {
        VerdictLevel::Malicious
    } else if malicious > 0 || suspicious > 0 {
        VerdictLevel::Suspicious
    } else if harmless > 0 || undetected > 0 {
        VerdictLevel::Harmless
    } else {
        VerdictLevel::Unknown
    };
    let mut summary = format!("{malicious}/{engines} engines flag it malicious");
    if suspicious > 0 {
        summary.push_str(&format!(", {suspicious} suspicious"));
    }
    let label = attrs.pointer("/popular_threat_classification/suggested_threat_label").and_then(Value::as_str);
    if let Some(label) = label {
        summary.push_str(&format!("; label {label}"));
    }
    let reputation = attrs.get("reputation").and_then(Value::as_i64);
    if let Some(rep) = reputation {
        summary.push_str(&format!("; reputation {rep}"));
    }
    let owner = attrs.get("as_owner").and_then(Value::as_str).map(|owner| {
        let asn = attrs.get("asn").and_then(Value::as_i64).map_or(String::new(), |a| format!("AS{a} "));
        format!("{asn}{owner}")
    });
    if let Some(o) = &owner {
        summary.push_str(&format!("; {o}"));
    }
    // A domain's registration date (WHOIS `creation_date`, epoch seconds): young domains phish.
    let registered = (indicator.kind == IndicatorKind::Domain)
        .then(|| attrs.get("creation_date").and_then(Value::as_i64))
        .flatten()
        .map(|secs| dossier_core::timefmt::format_utc(secs * 1000));
    if let Some(r) = &registered {
        summary.push_str(&format!("; registered {}", &r[..10.min(r.len())]));
    }
    let gui = match indicator.kind {
        IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => "ip-address",
        IndicatorKind::Domain => "domain",
        IndicatorKind::Url => "url",
        _ => "file",
    };
    let id = data.get("id").and_then(Value::as_str).unwrap_or(&indicator.value);
    let mut v = IndicatorVerdict::new(indicator, verdict, summary)
        .link(format!("https://www.virustotal.com/gui/{gui}/{id}"))
        .fact("engines_malicious", malicious.to_string())
        .fact("engines_total", engines.to_string())
        .fact("threat_label", label.unwrap_or_default())
        .fact("network_owner", owner.unwrap_or_default())
        .fact(REGISTERED, registered.unwrap_or_default());
    if engines > 0 {
        v = v.score((malicious as f64 / engines as f64 * 1000.0).round() / 10.0);
    }
    Ok(v)
}

#[async_trait]
impl IndicatorSource for VirusTotal {
    fn name(&self) -> &'static str {
        NAME
    }

    fn accepts(&self, kind: IndicatorKind) -> bool {
        Self::path(kind, "").is_some()
    }

    fn sends_externally(&self) -> bool {
        true
    }

    async fn lookup(&self, indicator: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        if indicator.internal {
            // Second line of defence behind the runner's filter.
            return Err(LookupError::BadReply("refused: internal indicator".into()));
        }
        let Some((path, _)) = Self::path(indicator.kind, &indicator.value) else {
            return Err(LookupError::BadReply(format!("VirusTotal does not look up {}", indicator.kind)));
        };
        let req = self.http.get(format!("{}/{path}", self.base_url)).header("x-apikey", &self.api_key);
        match super::send(req, calls).await? {
            None => Ok(Lookup::NotFound),
            Some(answer) => Ok(Lookup::Found(verdict_from(indicator, &answer.json, self.malicious_threshold)?.raw(&answer.raw))),
        }
    }
}
