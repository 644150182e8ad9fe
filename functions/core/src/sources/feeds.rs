//! File-backed sources: an intel feed (CSV or STIX 2.1) and a CMDB export, read once.

use async_trait::async_trait;
use serde_json::Value;
use std::collections::BTreeMap;

use crate::domain::{normalise, Indicator, IndicatorKind, InternalNames};
use crate::sources::{CallCounter, IndicatorSource, IndicatorVerdict, Lookup, LookupError, VerdictLevel};

/// An internal intel feed (CSV: `type,value,verdict,score,description[,reference[,actors[,malware]]]`,
/// actor and malware names separated by `;`), read once.
pub struct IntelFeed {
    entries: Vec<IndicatorVerdict>,
}

pub const INTEL_FEED_SOURCE: &str = "intel-feed";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("intel feed line {line}: {reason}")]
pub struct FeedError {
    pub line: usize,
    pub reason: String,
}

impl IntelFeed {
    pub fn from_csv(text: &str) -> Result<IntelFeed, FeedError> {
        let mut entries = Vec::new();
        let names = InternalNames::default();
        let records = crate::text::csv_records(text).map_err(|e| FeedError { line: e.line, reason: e.reason })?;
        for (i, (line_no, cols)) in records.iter().enumerate() {
            let line_no = *line_no;
            if i == 0 && cols.first().is_some_and(|c| c.eq_ignore_ascii_case("type")) {
                continue;
            }
            if cols.len() < 5 {
                return Err(FeedError { line: line_no, reason: "expected type,value,verdict,score,description[,reference]".into() });
            }
            let kind: IndicatorKind = serde_json::from_value(serde_json::Value::String(cols[0].trim().to_string()))
                .map_err(|_| FeedError { line: line_no, reason: format!("unknown type `{}`", cols[0]) })?;
            let ind = normalise(kind, &cols[1], &names)
                .ok_or_else(|| FeedError { line: line_no, reason: format!("`{}` is not a valid {kind}", cols[1]) })?;
            let verdict = VerdictLevel::parse(&cols[2])
                .ok_or_else(|| FeedError { line: line_no, reason: format!("unknown verdict `{}`", cols[2]) })?;
            let score = cols[3].trim().parse::<f64>().ok().filter(|s| (0.0..=100.0).contains(s));
            let mut v = IndicatorVerdict::new(&ind, verdict, cols[4].as_str());
            v.score = score;
            v.link = cols.get(5).cloned().filter(|s| !s.is_empty());
            let names = |i: usize| {
                cols.get(i).map(|c| crate::sources::intel_facts::join(crate::sources::intel_facts::split(c))).unwrap_or_default()
            };
            v = v.fact(crate::sources::intel_facts::ACTORS, names(6)).fact(crate::sources::intel_facts::MALWARE, names(7));
            entries.push(v);
        }
        Ok(IntelFeed { entries })
    }

    pub fn from_entries(entries: Vec<IndicatorVerdict>) -> IntelFeed {
        IntelFeed { entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[async_trait]
impl IndicatorSource for IntelFeed {
    fn name(&self) -> &'static str {
        INTEL_FEED_SOURCE
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        !kind.is_entity()
    }
    fn sends_externally(&self) -> bool {
        false
    }
    async fn lookup(&self, indicator: &Indicator, _calls: &CallCounter) -> Result<Lookup, LookupError> {
        Ok(self
            .entries
            .iter()
            .find(|e| e.kind == indicator.kind && e.value == indicator.value)
            .map_or(Lookup::NotFound, |e| Lookup::Found(e.clone())))
    }
}

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
        let records = crate::text::csv_records(text).map_err(|e| FeedError { line: e.line, reason: e.reason })?;
        let mut lines = records.into_iter();
        let (_, header) = lines.next().ok_or(FeedError { line: 1, reason: "empty CMDB export".into() })?;
        let columns: Vec<String> = header.iter().map(|c| c.to_ascii_lowercase()).collect();
        let host_col = columns
            .iter()
            .position(|c| c == "hostname" || c == "name")
            .ok_or(FeedError { line: 1, reason: "the header needs a `hostname` column".into() })?;
        let mut rows = BTreeMap::new();
        for (line, cells) in lines {
            let host = cells
                .get(host_col)
                .map(|h| h.to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .ok_or(FeedError { line, reason: "no hostname".into() })?;
            let facts = columns
                .iter()
                .zip(cells.iter())
                .filter(|(c, v)| !v.is_empty() && c.as_str() != "hostname")
                .map(|(c, v)| (c.clone(), v.clone()))
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
