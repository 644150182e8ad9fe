//! Shodan host lookup for public IPs: open ports, services, known CVEs, tags. Exposure context
//! more than reputation: the verdict stays unknown unless Shodan tags the host as hostile.

use async_trait::async_trait;
use serde_json::Value;
use std::time::Duration;

use super::{enc, send, text};
use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::sources::{CallCounter, IndicatorSource, IndicatorVerdict, Lookup, LookupError, VerdictLevel};

pub const NAME: &str = "shodan";
pub const DEFAULT_BASE_URL: &str = "https://api.shodan.io";

#[derive(Clone)]
pub struct Shodan {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
}

impl Shodan {
    pub fn new(base_url: &str, api_key: String, timeout: Duration) -> Shodan {
        Shodan { http: crate::http_client::client(timeout), base_url: base_url.trim_end_matches('/').to_string(), api_key }
    }
}

/// Pure; tested on the fixture.
pub fn verdict_from(indicator: &Indicator, body: &Value) -> IndicatorVerdict {
    let ports: Vec<String> =
        body.get("ports").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_u64).map(|p| p.to_string()).collect();
    let tags: Vec<String> =
        body.get("tags").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
    let vulns: Vec<String> = match body.get("vulns") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Some(Value::Object(o)) => o.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let products: Vec<String> = body
        .get("data")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| {
            let port = b.get("port").and_then(Value::as_u64)?;
            let product = b.get("product").and_then(Value::as_str).unwrap_or("?");
            Some(format!("{port}/{product}"))
        })
        .take(8)
        .collect();
    let hostile = tags.iter().any(|t| matches!(t.as_str(), "malware" | "c2" | "compromised" | "botnet" | "tor" | "scanner"));
    let verdict = if hostile { VerdictLevel::Suspicious } else { VerdictLevel::Unknown };
    let org = text(body, "/org").unwrap_or_default();
    let mut summary = format!("{} open port(s) ({}); {org}", ports.len(), ports.iter().take(10).cloned().collect::<Vec<_>>().join(", "));
    if !vulns.is_empty() {
        summary.push_str(&format!("; {} known CVE(s)", vulns.len()));
    }
    if !tags.is_empty() {
        summary.push_str(&format!("; tags {}", tags.join(", ")));
    }
    IndicatorVerdict::new(indicator, verdict, summary)
        .link(format!("https://www.shodan.io/host/{}", indicator.value))
        .fact("ports", ports.join(", "))
        .fact("services", products.join(", "))
        .fact("org", org)
        .fact("asn", text(body, "/asn").unwrap_or_default())
        .fact("cves", vulns.into_iter().take(10).collect::<Vec<_>>().join(", "))
        .fact("last_update", text(body, "/last_update").unwrap_or_default())
}

#[async_trait]
impl IndicatorSource for Shodan {
    fn name(&self) -> &'static str {
        NAME
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        kind.is_ip()
    }
    fn sends_externally(&self) -> bool {
        true
    }

    async fn lookup(&self, indicator: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        // The key is a query parameter (Shodan has no header auth); reqwest errors never print it.
        let req = self.http.get(format!("{}/shodan/host/{}?key={}", self.base_url, enc(&indicator.value), enc(&self.api_key)));
        Ok(match send(req, calls).await? {
            Some(a) => Lookup::Found(verdict_from(indicator, &a.json).raw(&a.raw)),
            None => Lookup::NotFound,
        })
    }
}
