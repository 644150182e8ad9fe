//! AbuseIPDB v2 `check` for public IPs: abuse confidence 0–100, reports, usage type, Tor.

use async_trait::async_trait;
use serde_json::Value;
use std::time::Duration;

use super::{enc, send, text};
use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::sources::{CallCounter, IndicatorSource, IndicatorVerdict, Lookup, LookupError, VerdictLevel};

pub const NAME: &str = "abuseipdb";
pub const DEFAULT_BASE_URL: &str = "https://api.abuseipdb.com/api/v2";

#[derive(Clone)]
pub struct AbuseIpDb {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    pub max_age_days: u32,
}

impl AbuseIpDb {
    pub fn new(base_url: &str, api_key: String, timeout: Duration) -> AbuseIpDb {
        AbuseIpDb {
            http: crate::http_client::client(timeout),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            max_age_days: 90,
        }
    }
}

/// Pure; tested on fixtures.
pub fn verdict_from(indicator: &Indicator, body: &Value) -> Result<IndicatorVerdict, LookupError> {
    let d = body.get("data").ok_or_else(|| LookupError::BadReply("no `data` object".into()))?;
    let score =
        d.get("abuseConfidenceScore").and_then(Value::as_f64).ok_or_else(|| LookupError::BadReply("no abuseConfidenceScore".into()))?;
    let reports = d.get("totalReports").and_then(Value::as_u64).unwrap_or(0);
    let whitelisted = d.get("isWhitelisted").and_then(Value::as_bool).unwrap_or(false);
    let tor = d.get("isTor").and_then(Value::as_bool).unwrap_or(false);
    let verdict = if whitelisted {
        VerdictLevel::Harmless
    } else if score >= 75.0 {
        VerdictLevel::Malicious
    } else if score >= 25.0 || tor {
        VerdictLevel::Suspicious
    } else if reports == 0 {
        VerdictLevel::Unknown
    } else {
        VerdictLevel::Harmless
    };
    let mut summary = format!("abuse confidence {score:.0}/100 from {reports} report(s)");
    if let Some(n) = d.get("numDistinctUsers").and_then(Value::as_u64) {
        summary.push_str(&format!(" by {n} user(s)"));
    }
    if tor {
        summary.push_str("; Tor exit node");
    }
    if let Some(u) = text(d, "/usageType") {
        summary.push_str(&format!("; {u}"));
    }
    Ok(IndicatorVerdict::new(indicator, verdict, summary)
        .score(score)
        .link(format!("https://www.abuseipdb.com/check/{}", indicator.value))
        .fact("isp", text(d, "/isp").unwrap_or_default())
        .fact("country", text(d, "/countryCode").unwrap_or_default())
        .fact("last_reported", text(d, "/lastReportedAt").unwrap_or_default())
        .fact("tor", tor.to_string()))
}

#[async_trait]
impl IndicatorSource for AbuseIpDb {
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
        let url = format!("{}/check?ipAddress={}&maxAgeInDays={}", self.base_url, enc(&indicator.value), self.max_age_days);
        let req = self.http.get(url).header("Key", &self.api_key).header("Accept", "application/json");
        match send(req, calls).await {
            Ok(Some(a)) => Ok(Lookup::Found(verdict_from(indicator, &a.json)?.raw(&a.raw))),
            Ok(None) => Ok(Lookup::NotFound),
            // Reserved and private ranges answer 200 (`isPublic: false`); a 422 means this request
            // was wrong (not an address, `maxAgeInDays` outside 1-365): an error, not "nothing known".
            Err(e) => Err(e),
        }
    }
}
