//! Google Threat Intelligence (VirusTotal API v3 with a GTI licence; Mandiant intelligence is
//! merged into it): the `gti_assessment` of an IP, domain, URL or file (verdict, severity,
//! threat score 0–100, Mandiant confidence), first and last seen, and — for what GTI does not
//! call benign — the threat actors, campaigns and malware families it is associated with
//! (https://gtidocs.virustotal.com/reference/object-files, /docs/google-threat-intelligence-indicator-score,
//! /reference/relationships). `x-apikey` on every request; GTI returns `gti_assessment` only to
//! requests that name their tool in `x-tool`.

use async_trait::async_trait;
use serde_json::Value;
use std::time::Duration;

use super::virustotal::VirusTotal;
use super::{send, text};
use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::sources::{intel_facts, CallCounter, IndicatorSource, IndicatorVerdict, Lookup, LookupError, VerdictLevel};
use dossier_core::timefmt::format_utc;

pub const NAME: &str = "gti";
pub const DEFAULT_BASE_URL: &str = "https://www.virustotal.com/api/v3";
/// The `x-tool` value GTI asks integrations to send.
pub const TOOL: &str = "Dossier-CortexXDR";

#[derive(Clone)]
pub struct Gti {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
}

impl Gti {
    pub fn new(base_url: &str, api_key: String, timeout: Duration) -> Gti {
        Gti { http: crate::http_client::client(timeout), base_url: base_url.trim_end_matches('/').to_string(), api_key }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}/{path}", self.base_url))
            .header("x-apikey", &self.api_key)
            .header("x-tool", TOOL)
            .header("Accept", "application/json")
    }
}

/// `VERDICT_MALICIOUS` → malicious, and so on.
fn level(verdict: &str) -> VerdictLevel {
    match verdict {
        "VERDICT_MALICIOUS" => VerdictLevel::Malicious,
        "VERDICT_SUSPICIOUS" => VerdictLevel::Suspicious,
        "VERDICT_BENIGN" => VerdictLevel::Harmless,
        _ => VerdictLevel::Unknown,
    }
}

/// Names in an associations list by collection type (`threat-actor`, `campaign`,
/// `malware-family`; GTI's docs also spell them with `_`).
pub fn associations(list: &Value) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut actors, mut campaigns, mut malware) = (Vec::new(), Vec::new(), Vec::new());
    for item in list.get("data").and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = text(item, "/attributes/name") else { continue };
        match text(item, "/attributes/collection_type").unwrap_or_default().replace('_', "-").as_str() {
            "threat-actor" => actors.push(name),
            "campaign" => campaigns.push(name),
            "malware-family" => malware.push(name),
            _ => {}
        }
    }
    (actors, campaigns, malware)
}

/// Pure; tested on recorded-shape answers. `associated` is the associations list, when read.
pub fn verdict_from(indicator: &Indicator, body: &Value, associated: Option<&Value>) -> Result<IndicatorVerdict, LookupError> {
    let attrs =
        body.pointer("/data/attributes").filter(|a| a.is_object()).ok_or_else(|| LookupError::BadReply("no `data.attributes`".into()))?;
    let Some(assessment) = attrs.get("gti_assessment") else {
        return Err(LookupError::Unauthorized("no gti_assessment in the answer: the key has no Google Threat Intelligence licence".into()));
    };
    let verdict_name = text(assessment, "/verdict/value").unwrap_or_else(|| "VERDICT_UNKNOWN".into());
    let verdict = level(&verdict_name);
    let score = assessment.pointer("/threat_score/value").and_then(Value::as_f64);
    let severity = text(assessment, "/severity/value").unwrap_or_default();
    let factors = assessment.get("contributing_factors");
    let confidence =
        factors.and_then(|f| f.get("mandiant_confidence_score").or_else(|| f.get("gti_confidence_score"))).and_then(Value::as_f64);
    let date = |field: &str| attrs.get(field).and_then(Value::as_i64).map(|s| format_utc(s * 1000));
    let first = date("first_submission_date").or_else(|| date("first_seen_itw_date"));
    let last = date("last_analysis_date").or_else(|| date("last_modification_date"));
    let (actors, campaigns, malware) = associated.map(associations).unwrap_or_default();

    let mut summary = format!(
        "GTI {}{}",
        verdict_name.trim_start_matches("VERDICT_").to_ascii_lowercase(),
        score.map_or(String::new(), |s| format!(", threat score {s:.0}/100"))
    );
    if !severity.is_empty() && severity != "SEVERITY_NONE" && severity != "SEVERITY_UNKNOWN" {
        summary.push_str(&format!(", {} severity", severity.trim_start_matches("SEVERITY_").to_ascii_lowercase()));
    }
    if let Some(c) = confidence {
        summary.push_str(&format!(", Mandiant confidence {c:.0}"));
    }
    if let (Some(f), Some(l)) = (&first, &last) {
        summary.push_str(&format!("; first seen {}, last analysed {}", &f[..10.min(f.len())], &l[..10.min(l.len())]));
    }
    if !actors.is_empty() || !campaigns.is_empty() {
        let named: Vec<&str> = actors.iter().chain(&campaigns).map(String::as_str).take(3).collect();
        summary.push_str(&format!("; associated with {}", named.join(", ")));
    }
    let (path, gui) = VirusTotal::path(indicator.kind, &indicator.value).unwrap_or_default();
    let id = body
        .pointer("/data/id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| path.rsplit('/').next().unwrap_or_default().to_string());
    let mut v = IndicatorVerdict::new(indicator, verdict, summary)
        .link(format!("https://www.virustotal.com/gui/{gui}/{id}"))
        .fact("severity", severity)
        .fact("description", text(assessment, "/description").unwrap_or_default())
        .fact(intel_facts::CONFIDENCE, confidence.map(|c| format!("{c:.0}")).unwrap_or_default())
        .fact(intel_facts::FIRST_SEEN, first.unwrap_or_default())
        .fact(intel_facts::LAST_SEEN, last.unwrap_or_default())
        .fact(intel_facts::ACTORS, intel_facts::join(actors.iter().map(String::as_str)))
        .fact(intel_facts::CAMPAIGNS, intel_facts::join(campaigns.iter().map(String::as_str)))
        .fact(intel_facts::MALWARE, intel_facts::join(malware.iter().map(String::as_str)));
    if let Some(s) = score {
        v = v.score(s);
    }
    Ok(v)
}

#[async_trait]
impl IndicatorSource for Gti {
    fn name(&self) -> &'static str {
        NAME
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        VirusTotal::path(kind, "x").is_some()
    }
    fn sends_externally(&self) -> bool {
        true
    }

    async fn lookup(&self, indicator: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        let Some((path, _)) = VirusTotal::path(indicator.kind, &indicator.value) else { return Ok(Lookup::NotFound) };
        let Some(object) = send(self.get(&path), calls).await? else { return Ok(Lookup::NotFound) };
        if object.json.is_null() {
            return Err(LookupError::BadReply("empty answer".into()));
        }
        // Associations cost a request: only for what GTI does not call benign or undetected.
        let verdict = object.json.pointer("/data/attributes/gti_assessment/verdict/value").and_then(Value::as_str).unwrap_or("");
        let (associated, missed) = if matches!(level(verdict), VerdictLevel::Malicious | VerdictLevel::Suspicious) {
            match send(self.get(&format!("{path}/associations?limit=20")), calls).await {
                Ok(a) => (a.map(|a| a.json), None),
                // The verdict stands without the names; the verdict says they were not read.
                Err(e @ (LookupError::RateLimited { .. } | LookupError::Server(_) | LookupError::Timeout)) => (None, Some(e.to_string())),
                Err(e) => return Err(e),
            }
        } else {
            (None, None)
        };
        let verdict = verdict_from(indicator, &object.json, associated.as_ref())?.raw(&object.raw);
        Ok(Lookup::Found(match missed {
            Some(why) => verdict.fact("associations", format!("not read: {why}")),
            None => verdict,
        }))
    }
}
