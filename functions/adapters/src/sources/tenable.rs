//! Tenable.io workbenches: the asset behind an XDR host name, its vulnerability counts by
//! severity and its top vulnerabilities by VPR.

use async_trait::async_trait;
use serde_json::Value;
use std::time::Duration;

use super::{enc, send, text};
use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::sources::{CallCounter, IndicatorSource, IndicatorVerdict, Lookup, LookupError, VerdictLevel};

pub const NAME: &str = "tenable";
pub const DEFAULT_BASE_URL: &str = "https://cloud.tenable.com";

#[derive(Clone)]
pub struct Tenable {
    http: reqwest::Client,
    base_url: String,
    /// `accessKey=...;secretKey=...`
    api_keys: String,
}

impl Tenable {
    pub fn new(base_url: &str, api_keys: String, timeout: Duration) -> Tenable {
        Tenable { http: crate::http_client::client(timeout), base_url: base_url.trim_end_matches('/').to_string(), api_keys }
    }

    async fn get(&self, path: &str, calls: &CallCounter) -> Result<Option<super::Answer>, LookupError> {
        send(
            self.http.get(format!("{}{path}", self.base_url)).header("X-ApiKeys", &self.api_keys).header("Accept", "application/json"),
            calls,
        )
        .await
    }
}

/// Pure; tested on fixtures. `asset`: one workbench asset; `info`: its `/info`; `vulns`: its
/// `/vulnerabilities`; `top_info`: `/workbenches/vulnerabilities/{plugin}/info` of the worst one.
pub fn verdict_from(
    indicator: &Indicator,
    asset: &Value,
    info: Option<&Value>,
    vulns: Option<&Value>,
    top_info: Option<&Value>,
) -> IndicatorVerdict {
    let severities =
        info.and_then(|i| i.pointer("/info/counts/vulnerabilities/severities")).and_then(Value::as_array).cloned().unwrap_or_default();
    let count = |name: &str| {
        severities
            .iter()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|s| s.get("count"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let (critical, high, medium) = (count("Critical"), count("High"), count("Medium"));
    let mut top: Vec<&Value> =
        vulns.and_then(|v| v.get("vulnerabilities")).and_then(Value::as_array).map(|v| v.iter().collect()).unwrap_or_default();
    top.sort_by(|a, b| {
        let k = |v: &Value| {
            (v.get("vpr_score").and_then(Value::as_f64).unwrap_or(0.0), v.get("cvss3_base_score").and_then(Value::as_f64).unwrap_or(0.0))
        };
        k(b).partial_cmp(&k(a)).unwrap_or(std::cmp::Ordering::Equal)
    });
    let top_lines: Vec<String> = top
        .iter()
        .take(3)
        .map(|v| {
            format!(
                "{} (VPR {}, CVSS {})",
                v.get("plugin_name").and_then(Value::as_str).unwrap_or("?"),
                v.get("vpr_score").and_then(Value::as_f64).map_or("-".into(), |s| format!("{s:.1}")),
                v.get("cvss3_base_score")
                    .or_else(|| v.get("cvss_base_score"))
                    .and_then(Value::as_f64)
                    .map_or("-".into(), |s| format!("{s:.1}"))
            )
        })
        .collect();
    let os = asset.pointer("/operating_system/0").and_then(Value::as_str).unwrap_or("").to_string();
    let exploit = top_info.and_then(|t| t.pointer("/info/vulnerability_information"));
    let exploitable = exploit.and_then(|e| e.get("exploit_available")).and_then(Value::as_bool);
    let by_malware = exploit.and_then(|e| e.get("exploited_by_malware")).and_then(Value::as_bool);
    let cves: Vec<String> = top_info
        .and_then(|t| t.pointer("/info/reference_information"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r.get("name").and_then(Value::as_str) == Some("cve"))
        .flat_map(|r| r.get("values").and_then(Value::as_array).cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .take(5)
        .collect();
    let mut summary = format!("Tenable: {critical} critical, {high} high, {medium} medium vulnerabilities");
    if let Some(first) = top_lines.first() {
        summary.push_str(&format!("; worst {first}"));
    }
    // An exposed host is context, not a verdict on the incident: flag it, do not call it malicious.
    let verdict = if critical > 0 { VerdictLevel::Suspicious } else { VerdictLevel::Unknown };
    IndicatorVerdict::new(indicator, verdict, summary)
        .fact("asset_id", text(asset, "/id").unwrap_or_default())
        .fact("critical_vulns", critical.to_string())
        .fact("high_vulns", high.to_string())
        .fact("top_vulns", top_lines.join("; "))
        .fact("top_vuln_exploit_available", exploitable.map(|b| b.to_string()).unwrap_or_default())
        .fact("top_vuln_exploited_by_malware", by_malware.map(|b| b.to_string()).unwrap_or_default())
        .fact("top_vuln_cves", cves.join(", "))
        .fact("os", os)
        .fact("acr_score", text(asset, "/acr_score").or_else(|| info.and_then(|i| text(i, "/info/acr_score"))).unwrap_or_default())
        .fact("last_seen", text(asset, "/last_seen").unwrap_or_default())
}

#[async_trait]
impl IndicatorSource for Tenable {
    fn name(&self) -> &'static str {
        NAME
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        kind == IndicatorKind::Hostname
    }
    fn sends_externally(&self) -> bool {
        // The customer's own vulnerability platform.
        false
    }

    async fn lookup(&self, indicator: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        let path = format!(
            "/workbenches/assets?filter.0.filter=host.hostname&filter.0.quality=match&filter.0.value={}&filter.search_type=and&all_fields=full&date_range=30",
            // `match` is case-sensitive and Tenable keeps DNS host names in lower case, while XDR
            // often reports them upper-case (`WS-0042`).
            enc(&indicator.value.to_ascii_lowercase())
        );
        let Some(list) = self.get(&path, calls).await? else { return Ok(Lookup::NotFound) };
        // `match` on host.hostname is a substring match: `web1` also finds `web10` and
        // `web1.test`. Only an asset whose own name is this host is this host.
        let wanted = indicator.value.to_ascii_lowercase();
        let short = |n: &str| n.split('.').next().unwrap_or(n).to_string();
        let names_of = |a: &Value| -> Vec<String> {
            ["hostname", "fqdn", "netbios_name"]
                .iter()
                .flat_map(|k| a.get(*k).and_then(Value::as_array).cloned().unwrap_or_default())
                .filter_map(|v| v.as_str().map(str::to_ascii_lowercase))
                .collect()
        };
        let assets = list.json.get("assets").and_then(Value::as_array).cloned().unwrap_or_default();
        let exact = assets.iter().find(|a| names_of(a).contains(&wanted));
        let by_short = || assets.iter().find(|a| !wanted.contains('.') && names_of(a).iter().any(|n| short(n) == wanted));
        let Some(asset) = exact.or_else(by_short).cloned() else {
            return Ok(Lookup::NotFound);
        };
        let Some(id) = text(&asset, "/id") else { return Err(LookupError::BadReply("workbench asset without an id".into())) };
        let info = self.get(&format!("/workbenches/assets/{}/info?all_fields=full", enc(&id)), calls).await?.map(|a| a.json);
        let vulns = self.get(&format!("/workbenches/assets/{}/vulnerabilities?date_range=30", enc(&id)), calls).await?.map(|a| a.json);
        let worst = vulns.as_ref().and_then(|v| v.get("vulnerabilities")).and_then(Value::as_array).and_then(|list| {
            list.iter().max_by(|a, b| {
                let k = |v: &Value| v.get("vpr_score").and_then(Value::as_f64).unwrap_or(0.0);
                k(a).total_cmp(&k(b))
            })
        });
        let top_info = match worst.and_then(|w| text(w, "/plugin_id")) {
            Some(plugin) => self.get(&format!("/workbenches/vulnerabilities/{}/info", enc(&plugin)), calls).await?.map(|a| a.json),
            None => None,
        };
        Ok(Lookup::Found(verdict_from(indicator, &asset, info.as_ref(), vulns.as_ref(), top_info.as_ref()).raw(&list.raw)))
    }
}
