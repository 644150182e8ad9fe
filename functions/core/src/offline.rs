//! Offline and internal sources: an intel feed in STIX 2.1, a CMDB export for shops without
//! ServiceNow, and related cases from Dossier's own index.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::case::{Case, CaseKey};
use crate::indicator::{normalise, Indicator, IndicatorKind, InternalNames};
use crate::ports::{DocStore, PutOutcome, StoreError, Table};
use crate::sources::{
    CallCounter, Deferred, FeedError, IndicatorSource, IndicatorVerdict, IntelFeed, Lookup, LookupError, Source, SourceReport,
    SourceStatus, VerdictLevel,
};

// ---------------------------------------------------------------------------------------------
// STIX 2.1 intel feed

/// The observable a STIX pattern of the simple form `[type:property = 'value']` names.
fn stix_observable(pattern: &str) -> Option<(IndicatorKind, String)> {
    let inner = pattern.trim().strip_prefix('[')?.strip_suffix(']')?;
    // Compound patterns (AND/OR/FOLLOWEDBY) are not single indicators.
    if inner.contains(" AND ") || inner.contains(" OR ") || inner.contains(" FOLLOWEDBY ") {
        return None;
    }
    let (lhs, rhs) = inner.split_once('=')?;
    let value = rhs.trim().strip_prefix('\'')?.strip_suffix('\'')?.replace("\\'", "'");
    let lhs = lhs.trim().to_ascii_lowercase();
    let kind = match lhs.as_str() {
        "ipv4-addr:value" => IndicatorKind::Ipv4,
        "ipv6-addr:value" => IndicatorKind::Ipv6,
        "domain-name:value" => IndicatorKind::Domain,
        "url:value" => IndicatorKind::Url,
        "email-addr:value" => IndicatorKind::Email,
        "file:hashes.'sha-256'" | "file:hashes.sha256" | "file:hashes.'sha256'" => IndicatorKind::Sha256,
        "file:hashes.'sha-1'" | "file:hashes.sha1" | "file:hashes.'sha1'" => IndicatorKind::Sha1,
        "file:hashes.md5" | "file:hashes.'md5'" => IndicatorKind::Md5,
        _ => return None,
    };
    Some((kind, value))
}

impl IntelFeed {
    /// A STIX 2.1 bundle: `indicator` objects with simple patterns. `indicator_types` (or
    /// `labels`) decide the verdict; `confidence` becomes the score. Other objects are ignored.
    pub fn from_stix(text: &str) -> Result<IntelFeed, FeedError> {
        let bundle: Value = serde_json::from_str(text).map_err(|e| FeedError { line: e.line(), reason: format!("not JSON: {e}") })?;
        let objects =
            bundle.get("objects").and_then(Value::as_array).ok_or(FeedError { line: 1, reason: "a STIX bundle needs `objects`".into() })?;
        let names = InternalNames::default();
        let mut entries = Vec::new();
        for obj in objects.iter().filter(|o| o.get("type").and_then(Value::as_str) == Some("indicator")) {
            let Some((kind, raw)) = obj.get("pattern").and_then(Value::as_str).and_then(stix_observable) else { continue };
            let Some(ind) = normalise(kind, &raw, &names) else { continue };
            let types: Vec<String> = obj
                .get("indicator_types")
                .or_else(|| obj.get("labels"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect();
            let verdict = if types.iter().any(|t| t == "malicious-activity" || t == "attribution" || t == "compromised") {
                VerdictLevel::Malicious
            } else if types.iter().any(|t| t == "anomalous-activity" || t == "unknown") {
                VerdictLevel::Suspicious
            } else if types.iter().any(|t| t == "benign") {
                VerdictLevel::Harmless
            } else {
                VerdictLevel::Suspicious
            };
            let name = obj.get("name").and_then(Value::as_str).unwrap_or("STIX indicator");
            let description = obj.get("description").and_then(Value::as_str).unwrap_or("");
            let summary = if description.is_empty() { name.to_string() } else { format!("{name}: {description}") };
            let mut v = IndicatorVerdict::new(&ind, verdict, summary)
                .fact("stix_id", obj.get("id").and_then(Value::as_str).unwrap_or_default())
                .fact("valid_until", obj.get("valid_until").and_then(Value::as_str).unwrap_or_default());
            if let Some(c) = obj.get("confidence").and_then(Value::as_f64) {
                v = v.score(c);
            }
            entries.push(v);
        }
        Ok(IntelFeed::from_entries(entries))
    }

    /// CSV or STIX, by content.
    pub fn parse(text: &str) -> Result<IntelFeed, FeedError> {
        if text.trim_start().starts_with('{') {
            IntelFeed::from_stix(text)
        } else {
            IntelFeed::from_csv(text)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CMDB export (CSV)

pub const CMDB_EXPORT_SOURCE: &str = "cmdb-export";

/// Asset context from a CMDB export: a CSV whose header names its columns. `hostname` is
/// required; `owner`, `support_group`, `used_for`, `criticality`, `business_service`,
/// `location`, `ip_address` are read when present.
pub struct CmdbExport {
    rows: BTreeMap<String, Vec<(String, String)>>,
}

impl CmdbExport {
    pub fn from_csv(text: &str) -> Result<CmdbExport, FeedError> {
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        let (_, header) = lines.next().ok_or(FeedError { line: 1, reason: "empty CMDB export".into() })?;
        let columns: Vec<String> = header.split(',').map(|c| c.trim().to_ascii_lowercase()).collect();
        let host_col = columns
            .iter()
            .position(|c| c == "hostname" || c == "name")
            .ok_or(FeedError { line: 1, reason: "the header needs a `hostname` column".into() })?;
        let mut rows = BTreeMap::new();
        for (i, line) in lines {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            let host = cells
                .get(host_col)
                .map(|h| h.to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .ok_or(FeedError { line: i + 1, reason: "no hostname".into() })?;
            let facts = columns
                .iter()
                .zip(cells.iter())
                .filter(|(c, v)| !v.is_empty() && c.as_str() != "hostname")
                .map(|(c, v)| (c.clone(), (*v).to_string()))
                .collect();
            rows.insert(host, facts);
        }
        Ok(CmdbExport { rows })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[async_trait]
impl IndicatorSource for CmdbExport {
    fn name(&self) -> &'static str {
        CMDB_EXPORT_SOURCE
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        kind == IndicatorKind::Hostname
    }
    fn sends_externally(&self) -> bool {
        false
    }
    async fn lookup(&self, indicator: &Indicator, _calls: &CallCounter) -> Result<Lookup, LookupError> {
        let host = indicator.value.to_ascii_lowercase();
        let short = host.split('.').next().unwrap_or(&host).to_string();
        let Some(facts) = self.rows.get(&host).or_else(|| self.rows.get(&short)) else { return Ok(Lookup::NotFound) };
        let get = |k: &str| facts.iter().find(|(c, _)| c == k).map(|(_, v)| v.as_str()).unwrap_or("");
        let mut summary = "CMDB export".to_string();
        for (label, key) in [("used for", "used_for"), ("criticality", "criticality"), ("service", "business_service"), ("owner", "owner")]
        {
            if !get(key).is_empty() {
                summary.push_str(&format!(", {label} {}", get(key)));
            }
        }
        let mut v = IndicatorVerdict::new(indicator, VerdictLevel::Unknown, summary);
        for (k, val) in facts {
            v = v.fact(k, val.clone());
        }
        Ok(Lookup::Found(v))
    }
}

// ---------------------------------------------------------------------------------------------
// Related cases

pub const RELATED_CASES_SOURCE: &str = "related-cases";
/// How long an indicator keeps pointing at a case.
const INDEX_TTL_MS: i64 = 30 * 86_400_000;
/// Most indicators indexed / looked up per case.
const INDEX_CAP: usize = 200;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct IndexEntry {
    case: CaseKey,
    at_ms: i64,
    techniques: Vec<String>,
}

/// A case that shares something with this one, and why it is listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelatedCase {
    pub case: CaseKey,
    pub shared_indicators: Vec<String>,
    pub shared_techniques: Vec<String>,
    pub hours_apart: f64,
    pub score: f64,
    pub reason: String,
}

fn index_pk(kind: IndicatorKind, value: &str) -> String {
    format!("idx#{kind}:{value}")
}

/// Indexes a case under its indicators, hosts and users (written by collect).
pub async fn index_case(store: &dyn DocStore, case: &Case, now_ms: i64) -> Result<(), StoreError> {
    let entry =
        IndexEntry { case: case.key.clone(), at_ms: case.hint.created_at_ms.unwrap_or(now_ms), techniques: case.all_technique_ids() };
    let body = serde_json::to_string(&entry).map_err(|e| StoreError::Rejected(e.to_string()))?;
    for ind in case.indicators.iter().filter(|i| i.kind != IndicatorKind::Process && i.value.len() <= 512).take(INDEX_CAP) {
        match store
            .put_new(Table::Cases, &index_pk(ind.kind, &ind.value), &case.key.storage_id(), &body, Some((now_ms + INDEX_TTL_MS) / 1000))
            .await?
        {
            PutOutcome::Written | PutOutcome::AlreadyExists => {}
        }
    }
    Ok(())
}

/// Recent cases sharing indicators, hosts or users with this one; shared techniques and time
/// proximity raise the score, and each carries its reason.
pub struct RelatedCases {
    pub store: Arc<dyn DocStore>,
}

#[async_trait]
impl Source for RelatedCases {
    fn name(&self) -> &str {
        RELATED_CASES_SOURCE
    }

    async fn enrich(&self, case: &Case) -> Result<SourceReport, Deferred> {
        let started = std::time::Instant::now();
        let mut by_case: BTreeMap<String, (IndexEntry, Vec<String>)> = BTreeMap::new();
        let mut errors = Vec::new();
        for ind in case.indicators.iter().filter(|i| i.kind != IndicatorKind::Process && i.value.len() <= 512).take(INDEX_CAP) {
            match self.store.query(Table::Cases, &index_pk(ind.kind, &ind.value), "").await {
                Ok(docs) => {
                    for d in docs.into_iter().filter(|d| d.sk != case.key.storage_id()).take(50) {
                        let Ok(entry) = serde_json::from_str::<IndexEntry>(&d.body) else { continue };
                        by_case.entry(d.sk).or_insert_with(|| (entry, Vec::new())).1.push(format!("{} {}", ind.kind, ind.value));
                    }
                }
                Err(e) if errors.len() < 5 => errors.push(e.to_string()),
                Err(_) => {}
            }
        }
        let mine = case.all_technique_ids();
        let at = case.hint.created_at_ms.unwrap_or(case.received_at_ms);
        let mut related: Vec<RelatedCase> = by_case
            .into_values()
            .map(|(entry, shared)| {
                let techniques: Vec<String> = entry.techniques.iter().filter(|t| mine.contains(t)).cloned().collect();
                let hours = (at - entry.at_ms).abs() as f64 / 3_600_000.0;
                let proximity = if hours <= 24.0 {
                    1.0
                } else if hours <= 168.0 {
                    0.5
                } else {
                    0.1
                };
                let score = (shared.len() as f64).min(5.0) / 5.0 * 0.6 + (techniques.len() as f64).min(3.0) / 3.0 * 0.25 + proximity * 0.15;
                let mut reason = format!("shares {}", shared.iter().take(3).cloned().collect::<Vec<_>>().join(", "));
                if shared.len() > 3 {
                    reason.push_str(&format!(" and {} more", shared.len() - 3));
                }
                if !techniques.is_empty() {
                    reason.push_str(&format!("; same techniques {}", techniques.join(", ")));
                }
                reason.push_str(&format!("; {hours:.0} h apart"));
                RelatedCase {
                    case: entry.case,
                    shared_indicators: shared,
                    shared_techniques: techniques,
                    hours_apart: hours,
                    score,
                    reason,
                }
            })
            .collect();
        related.sort_by(|a, b| b.score.total_cmp(&a.score));
        related.truncate(10);
        let mut report = SourceReport::skipped(RELATED_CASES_SOURCE, "");
        report.status = if related.is_empty() { SourceStatus::NotFound } else { SourceStatus::Ok };
        report.note = Some(format!("{} related case(s) in the last 30 days", related.len()));
        report.errors = errors;
        report.related_cases = related;
        report.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }
}
