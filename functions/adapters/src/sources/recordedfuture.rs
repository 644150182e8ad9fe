//! Recorded Future Connect API v2 (https://api.recordedfuture.com/v2; the vendor's SDK
//! `psengine`): risk score 0–99 with criticality, the risk rules that fired, first and last
//! seen, and the threat actors and malware Recorded Future relates to an IP, domain, URL or hash.
//! `X-RFToken` on every request; an entity Recorded Future knows nothing of is a 404.

use async_trait::async_trait;
use serde_json::Value;
use std::time::Duration;

use super::{send, text};
use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::sources::{intel_facts, CallCounter, IndicatorSource, IndicatorVerdict, Lookup, LookupError, VerdictLevel};

pub const NAME: &str = "recordedfuture";
pub const DEFAULT_BASE_URL: &str = "https://api.recordedfuture.com/v2";
/// What a lookup asks for: the mandatory `entity,risk,timestamps`, the portal link and the
/// related threat actors and malware.
pub const FIELDS: &str = "entity,risk,timestamps,intelCard,relatedEntities";

#[derive(Clone)]
pub struct RecordedFuture {
    http: reqwest::Client,
    base_url: String,
    token: String,
}

impl RecordedFuture {
    pub fn new(base_url: &str, token: String, timeout: Duration) -> RecordedFuture {
        RecordedFuture { http: crate::http_client::client(timeout), base_url: base_url.trim_end_matches('/').to_string(), token }
    }
}

/// The entity type in the path, for the kinds Recorded Future looks up.
fn entity_type(kind: IndicatorKind) -> Option<&'static str> {
    Some(match kind {
        IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => "ip",
        IndicatorKind::Domain => "domain",
        IndicatorKind::Url => "url",
        IndicatorKind::Md5 | IndicatorKind::Sha1 | IndicatorKind::Sha256 => "hash",
        _ => return None,
    })
}

/// Percent-encodes the entity as the vendor's SDK does (`quote(entity, safe='.')`): a URL's
/// `/` and `:` become `%2F` and `%3A`.
fn encode_entity(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The names in one `relatedEntities` group (`RelatedThreatActor`, `RelatedMalware`), most
/// referenced first. `count` can be negative in real answers; it only orders.
fn related(data: &Value, group: &str) -> Vec<String> {
    let mut named: Vec<(i64, String)> = data
        .get("relatedEntities")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|g| g.get("type").and_then(Value::as_str) == Some(group))
        .flat_map(|g| g.get("entities").and_then(Value::as_array).cloned().unwrap_or_default())
        .filter_map(|e| Some((e.get("count").and_then(Value::as_i64).unwrap_or(0), text(&e, "/entity/name")?)))
        .collect();
    named.sort_by_key(|n| std::cmp::Reverse(n.0));
    named.into_iter().map(|(_, n)| n).collect()
}

/// Pure; tested on recorded-shape answers.
pub fn verdict_from(indicator: &Indicator, body: &Value) -> Result<IndicatorVerdict, LookupError> {
    let data = body.get("data").filter(|d| d.is_object()).ok_or_else(|| LookupError::BadReply("no `data` object".into()))?;
    let risk = data.get("risk").ok_or_else(|| LookupError::BadReply("no `risk` in the answer".into()))?;
    let score = risk.get("score").and_then(Value::as_f64).ok_or_else(|| LookupError::BadReply("no risk score".into()))?;
    let criticality = risk.get("criticality").and_then(Value::as_i64).unwrap_or(0);
    // Recorded Future's bands: 1 Unusual 5–24, 2 Suspicious 25–64, 3 Malicious 65–89,
    // 4 Very Malicious 90–99 (criticality 5 exists for vulnerabilities).
    let verdict = match criticality {
        c if c >= 3 => VerdictLevel::Malicious,
        2 => VerdictLevel::Suspicious,
        _ if score >= 65.0 => VerdictLevel::Malicious,
        _ if score >= 25.0 => VerdictLevel::Suspicious,
        _ => VerdictLevel::Unknown,
    };
    let label = text(risk, "/criticalityLabel").unwrap_or_else(|| "no current evidence of risk".into());
    let mut summary = format!("Recorded Future risk {score:.0}/99 ({label})");
    if let Some(rules) = text(risk, "/riskString") {
        summary.push_str(&format!(", {rules} risk rules"));
    }
    let mut rules: Vec<(i64, String)> = risk
        .get("evidenceDetails")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e.get("criticality").and_then(Value::as_i64).unwrap_or(0), text(e, "/rule")?)))
        .collect();
    rules.sort_by_key(|r| std::cmp::Reverse(r.0));
    if let Some((_, top)) = rules.first() {
        summary.push_str(&format!("; top rule: {top}"));
    }
    let first = text(data, "/timestamps/firstSeen");
    let last = text(data, "/timestamps/lastSeen");
    if let (Some(f), Some(l)) = (&first, &last) {
        summary.push_str(&format!("; seen {} to {}", day(f), day(l)));
    }
    let actors = related(data, "RelatedThreatActor");
    let malware = related(data, "RelatedMalware");
    if !actors.is_empty() {
        summary.push_str(&format!("; related actors: {}", actors.iter().take(3).cloned().collect::<Vec<_>>().join(", ")));
    }
    let mut v = IndicatorVerdict::new(indicator, verdict, summary)
        .score(score.min(99.0) * 100.0 / 99.0)
        .fact("risk_score", format!("{score:.0}"))
        .fact("criticality", label)
        .fact("risk_rules", rules.iter().take(5).map(|(_, r)| r.as_str()).collect::<Vec<_>>().join("; "))
        .fact(intel_facts::FIRST_SEEN, first.unwrap_or_default())
        .fact(intel_facts::LAST_SEEN, last.unwrap_or_default())
        .fact(intel_facts::ACTORS, intel_facts::join(actors.iter().map(String::as_str)))
        .fact(intel_facts::MALWARE, intel_facts::join(malware.iter().map(String::as_str)));
    if let Some(card) = text(data, "/intelCard") {
        v = v.link(card);
    }
    Ok(v)
}

/// The date part of an RFC 3339 timestamp.
fn day(ts: &str) -> &str {
    ts.get(..10).unwrap_or(ts)
}

#[async_trait]
impl IndicatorSource for RecordedFuture {
    fn name(&self) -> &'static str {
        NAME
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        entity_type(kind).is_some()
    }
    fn sends_externally(&self) -> bool {
        true
    }

    async fn lookup(&self, indicator: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        let Some(kind) = entity_type(indicator.kind) else { return Ok(Lookup::NotFound) };
        let url = format!("{}/{kind}/{}?fields={FIELDS}", self.base_url, encode_entity(&indicator.value));
        let req = self.http.get(url).header("X-RFToken", &self.token).header("Accept", "application/json");
        match send(req, calls).await? {
            Some(a) if a.json.is_null() => Err(LookupError::BadReply("empty answer".into())),
            Some(a) => Ok(Lookup::Found(verdict_from(indicator, &a.json)?.raw(&a.raw))),
            // "Nothing known on this entity" (the vendor's SDK reads 404 so).
            None => Ok(Lookup::NotFound),
        }
    }
}
