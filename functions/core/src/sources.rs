//! Enrichment sources behind one port. Each source reports a `SourceReport` per case: verdicts per
//! indicator (threat intel), technique context (ATT&CK), or why it had nothing to say.

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

use crate::attack::{attack, GroupMatch, Resolved, Technique};
use crate::case::Case;
use crate::indicator::{normalise, Indicator, IndicatorKind, InternalNames};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictLevel {
    Unknown,
    Harmless,
    Suspicious,
    Malicious,
}

impl VerdictLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Harmless => "harmless",
            Self::Suspicious => "suspicious",
            Self::Malicious => "malicious",
        }
    }

    pub fn parse(raw: &str) -> Option<VerdictLevel> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "malicious" => Some(Self::Malicious),
            "suspicious" => Some(Self::Suspicious),
            "harmless" | "benign" | "clean" => Some(Self::Harmless),
            "unknown" => Some(Self::Unknown),
            _ => None,
        }
    }
}

/// One source's normalised opinion of one indicator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndicatorVerdict {
    pub kind: IndicatorKind,
    pub value: String,
    pub verdict: VerdictLevel,
    /// 0..100 where the source gives one.
    pub score: Option<f64>,
    /// The evidence in one line ("5/87 engines flag it malicious").
    pub summary: String,
    /// Where an analyst can look further.
    pub link: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceStatus {
    Ok,
    NotFound,
    Error,
    Skipped,
    TimedOut,
}

impl SourceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::Error => "error",
            Self::Skipped => "skipped",
            Self::TimedOut => "timed_out",
        }
    }
}

/// What one source contributed to one case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceReport {
    pub source: String,
    pub status: SourceStatus,
    /// Requests actually sent to the source for this case.
    pub calls: u32,
    pub latency_ms: u64,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub verdicts: Vec<IndicatorVerdict>,
    #[serde(default)]
    pub techniques: Vec<Technique>,
    #[serde(default)]
    pub groups: Vec<GroupMatch>,
    /// Per-indicator failures, bounded.
    #[serde(default)]
    pub errors: Vec<String>,
}

impl SourceReport {
    pub fn skipped(source: &str, reason: impl Into<String>) -> SourceReport {
        SourceReport {
            source: source.to_string(),
            status: SourceStatus::Skipped,
            calls: 0,
            latency_ms: 0,
            note: Some(reason.into()),
            verdicts: Vec::new(),
            techniques: Vec::new(),
            groups: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// A source wants the message retried later (quota exhausted, 429 with `Retry-After`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("source {source_name} asks to retry in {after:?}: {reason}")]
pub struct Deferred {
    pub source_name: String,
    pub after: Duration,
    pub reason: String,
}

/// One enrichment source, as the enrich stage sees it.
#[async_trait]
pub trait Source: Send + Sync {
    fn name(&self) -> &str;
    async fn enrich(&self, case: &Case) -> Result<SourceReport, Deferred>;
}

// ---------------------------------------------------------------------------------------------
// Per-indicator sources (threat intel, asset and identity lookups)

#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    Found(IndicatorVerdict),
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("rate limited")]
    RateLimited { retry_after: Option<Duration> },
    #[error("credentials rejected: {0}")]
    Unauthorized(String),
    #[error("transport: {0}")]
    Transport(String),
    #[error("server error: {0}")]
    Server(String),
    #[error("unusable answer: {0}")]
    BadReply(String),
    #[error("timed out")]
    Timeout,
}

#[async_trait]
pub trait IndicatorSource: Send + Sync {
    fn name(&self) -> &'static str;
    fn accepts(&self, kind: IndicatorKind) -> bool;
    /// True when lookups leave the organisation: internal indicators are then never sent.
    fn sends_externally(&self) -> bool;
    /// HTTP requests one lookup costs.
    fn calls_per_lookup(&self) -> u32;
    async fn lookup(&self, indicator: &Indicator) -> Result<Lookup, LookupError>;
}

/// Limits applied around a per-indicator source.
#[derive(Clone, Copy, Debug)]
pub struct LookupLimits {
    pub concurrency: usize,
    pub per_lookup_timeout: Duration,
    /// Most indicators looked up per case (the rest are named in the note).
    pub max_lookups: usize,
}

impl Default for LookupLimits {
    fn default() -> Self {
        LookupLimits { concurrency: 4, per_lookup_timeout: Duration::from_secs(10), max_lookups: 300 }
    }
}

/// Runs an `IndicatorSource` over a case's indicators.
pub struct PerIndicator<S> {
    pub inner: S,
    pub limits: LookupLimits,
}

#[async_trait]
impl<S: IndicatorSource> Source for PerIndicator<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn enrich(&self, case: &Case) -> Result<SourceReport, Deferred> {
        let started = Instant::now();
        let name = self.inner.name();
        let eligible: Vec<&Indicator> = case
            .indicators
            .iter()
            .filter(|i| self.inner.accepts(i.kind))
            // Second line of defence: internal indicators never reach an external service.
            .filter(|i| !(self.inner.sends_externally() && i.internal))
            .collect();
        if eligible.is_empty() {
            return Ok(SourceReport::skipped(name, "no indicator of a kind this source looks up"));
        }
        let over_cap = eligible.len().saturating_sub(self.limits.max_lookups);
        let lookups: Vec<Indicator> = eligible.into_iter().take(self.limits.max_lookups).cloned().collect();
        let results: Vec<(Indicator, Result<Lookup, LookupError>)> = stream::iter(lookups)
            .map(|ind: Indicator| async move {
                let r = match tokio::time::timeout(self.limits.per_lookup_timeout, self.inner.lookup(&ind)).await {
                    Ok(r) => r,
                    Err(_) => Err(LookupError::Timeout),
                };
                (ind, r)
            })
            .buffer_unordered(self.limits.concurrency.max(1))
            .collect()
            .await;
        let mut report = SourceReport::skipped(name, "");
        report.note = None;
        report.calls = u32::try_from(results.len()).unwrap_or(u32::MAX) * self.inner.calls_per_lookup();
        let (mut found, mut not_found, mut timeouts) = (0usize, 0usize, 0usize);
        let mut retry_after: Option<Duration> = None;
        for (ind, r) in results {
            match r {
                Ok(Lookup::Found(v)) => {
                    found += 1;
                    report.verdicts.push(v);
                }
                Ok(Lookup::NotFound) => not_found += 1,
                Err(LookupError::RateLimited { retry_after: after }) => {
                    retry_after = Some(retry_after.unwrap_or_default().max(after.unwrap_or(Duration::from_secs(60))));
                }
                Err(e) => {
                    if e == LookupError::Timeout {
                        timeouts += 1;
                    }
                    if report.errors.len() < 10 {
                        report.errors.push(format!("{} {}: {e}", ind.kind, ind.value));
                    }
                }
            }
        }
        if let Some(after) = retry_after {
            return Err(Deferred { source_name: name.to_string(), after, reason: "rate limited by the source".into() });
        }
        report.verdicts.sort_by(|a, b| b.verdict.cmp(&a.verdict).then_with(|| a.value.cmp(&b.value)));
        let failed = report.errors.len();
        report.status = if found > 0 {
            SourceStatus::Ok
        } else if not_found > 0 {
            SourceStatus::NotFound
        } else if timeouts > 0 && timeouts == failed {
            SourceStatus::TimedOut
        } else {
            SourceStatus::Error
        };
        let mut note = format!("{found} found, {not_found} unknown to the source");
        if failed > 0 {
            note.push_str(&format!(", {failed} failed"));
        }
        if over_cap > 0 {
            note.push_str(&format!(", {over_cap} not looked up (cap {})", self.limits.max_lookups));
        }
        report.note = Some(note);
        report.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }
}

/// A source the deployment has not configured (no key): it reports `skipped` with the reason.
pub struct NotConfigured {
    pub name: String,
    pub reason: String,
}

#[async_trait]
impl Source for NotConfigured {
    fn name(&self) -> &str {
        &self.name
    }
    async fn enrich(&self, _case: &Case) -> Result<SourceReport, Deferred> {
        Ok(SourceReport::skipped(&self.name, self.reason.clone()))
    }
}

// ---------------------------------------------------------------------------------------------
// Offline sources

/// MITRE ATT&CK (embedded v18.1): names and tactics of the case's techniques, overlapping groups.
pub struct AttackSource;

pub const ATTACK_SOURCE: &str = "attack";

#[async_trait]
impl Source for AttackSource {
    fn name(&self) -> &str {
        ATTACK_SOURCE
    }

    async fn enrich(&self, case: &Case) -> Result<SourceReport, Deferred> {
        let ids = case.all_technique_ids();
        if ids.is_empty() {
            return Ok(SourceReport::skipped(ATTACK_SOURCE, "no ATT&CK technique cited by XDR or inferred from the alerts"));
        }
        let a = attack();
        let mut report = SourceReport::skipped(ATTACK_SOURCE, "");
        let mut notes = Vec::new();
        let mut active_ids = Vec::new();
        for id in &ids {
            match a.resolve(id) {
                Resolved::Active(t) => {
                    active_ids.push(t.id.clone());
                    report.techniques.push(t.clone());
                }
                Resolved::Retired { name, replaced_by: Some(t) } => {
                    notes.push(format!("{id} ({name}) is retired; read as {} {}", t.id, t.name));
                    active_ids.push(t.id.clone());
                    report.techniques.push(t.clone());
                }
                Resolved::Retired { name, replaced_by: None } => notes.push(format!("{id} ({name}) is deprecated without replacement")),
                Resolved::Unknown => notes.push(format!("{id} is not an ATT&CK v{} Enterprise technique", crate::attack::ATTACK_VERSION)),
            }
        }
        report.groups = a.groups_overlapping(&active_ids, 5);
        report.status = if report.techniques.is_empty() { SourceStatus::NotFound } else { SourceStatus::Ok };
        report.note = Some(if notes.is_empty() {
            format!("{} technique(s) resolved, {} overlapping group(s)", report.techniques.len(), report.groups.len())
        } else {
            notes.join("; ")
        });
        Ok(report)
    }
}

/// An internal intel feed (CSV: `type,value,verdict,score,description,reference`), read once.
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
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || (i == 0 && line.starts_with("type,")) {
                continue;
            }
            let cols: Vec<&str> = line.splitn(6, ',').collect();
            if cols.len() < 5 {
                return Err(FeedError { line: line_no, reason: "expected type,value,verdict,score,description[,reference]".into() });
            }
            let kind: IndicatorKind = serde_json::from_value(serde_json::Value::String(cols[0].trim().to_string()))
                .map_err(|_| FeedError { line: line_no, reason: format!("unknown type `{}`", cols[0]) })?;
            let ind = normalise(kind, cols[1], &names)
                .ok_or_else(|| FeedError { line: line_no, reason: format!("`{}` is not a valid {kind}", cols[1]) })?;
            let verdict = VerdictLevel::parse(cols[2])
                .ok_or_else(|| FeedError { line: line_no, reason: format!("unknown verdict `{}`", cols[2]) })?;
            let score = cols[3].trim().parse::<f64>().ok().filter(|s| (0.0..=100.0).contains(s));
            entries.push(IndicatorVerdict {
                kind: ind.kind,
                value: ind.value,
                verdict,
                score,
                summary: cols[4].trim().to_string(),
                link: cols.get(5).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
            });
        }
        Ok(IntelFeed { entries })
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
    fn calls_per_lookup(&self) -> u32 {
        0
    }
    async fn lookup(&self, indicator: &Indicator) -> Result<Lookup, LookupError> {
        Ok(self
            .entries
            .iter()
            .find(|e| e.kind == indicator.kind && e.value == indicator.value)
            .map_or(Lookup::NotFound, |e| Lookup::Found(e.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{CaseKey, IncidentHint, Trigger};

    fn case_with(indicators: Vec<Indicator>, techniques: Vec<&str>) -> Case {
        let mut c = Case::new(CaseKey::new("t", "1").unwrap(), Trigger::Local, IncidentHint::default(), 0);
        c.indicators = indicators;
        c.techniques = techniques.into_iter().map(str::to_string).collect();
        c
    }

    fn ind(kind: IndicatorKind, v: &str) -> Indicator {
        normalise(kind, v, &InternalNames::default()).unwrap()
    }

    struct Recording(std::sync::Mutex<Vec<String>>, Option<LookupError>);

    #[async_trait]
    impl IndicatorSource for Recording {
        fn name(&self) -> &'static str {
            "rec"
        }
        fn accepts(&self, kind: IndicatorKind) -> bool {
            kind.is_ip()
        }
        fn sends_externally(&self) -> bool {
            true
        }
        fn calls_per_lookup(&self) -> u32 {
            1
        }
        async fn lookup(&self, i: &Indicator) -> Result<Lookup, LookupError> {
            self.0.lock().unwrap().push(i.value.clone());
            match &self.1 {
                Some(e) => Err(e.clone()),
                None => Ok(Lookup::NotFound),
            }
        }
    }

    #[tokio::test]
    async fn internal_indicators_never_reach_external_sources() {
        let src = PerIndicator { inner: Recording(Default::default(), None), limits: LookupLimits::default() };
        let c = case_with(
            vec![ind(IndicatorKind::Ipv4, "10.0.0.1"), ind(IndicatorKind::Ipv4, "8.8.8.8"), ind(IndicatorKind::Hostname, "pc1")],
            vec![],
        );
        let r = src.enrich(&c).await.unwrap();
        assert_eq!(*src.inner.0.lock().unwrap(), vec!["8.8.8.8".to_string()]);
        assert_eq!((r.status, r.calls), (SourceStatus::NotFound, 1));
    }

    #[tokio::test]
    async fn rate_limit_defers_the_whole_source() {
        let src = PerIndicator {
            inner: Recording(Default::default(), Some(LookupError::RateLimited { retry_after: Some(Duration::from_secs(30)) })),
            limits: LookupLimits::default(),
        };
        let c = case_with(vec![ind(IndicatorKind::Ipv4, "8.8.8.8")], vec![]);
        assert_eq!(src.enrich(&c).await.unwrap_err().after, Duration::from_secs(30));
    }

    #[tokio::test]
    async fn attack_source_resolves_and_ranks_groups() {
        let c = case_with(vec![], vec!["T1059.001", "T1002", "T9999"]);
        let r = AttackSource.enrich(&c).await.unwrap();
        assert_eq!(r.status, SourceStatus::Ok);
        let ids: Vec<_> = r.techniques.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, vec!["T1059.001", "T1560"]);
        assert!(r.note.unwrap().contains("T9999"));
        assert!(!r.groups.is_empty());
    }

    #[tokio::test]
    async fn intel_feed_parses_and_matches() {
        let feed = IntelFeed::from_csv(
            "type,value,verdict,score,description,reference\nipv4,8.8.8.8,malicious,90,C2 server,https://intel.example/1\n",
        )
        .unwrap();
        let src = PerIndicator { inner: feed, limits: LookupLimits::default() };
        let r = src.enrich(&case_with(vec![ind(IndicatorKind::Ipv4, "8.8.8.8")], vec![])).await.unwrap();
        assert_eq!(r.verdicts[0].verdict, VerdictLevel::Malicious);
        assert_eq!(r.calls, 0);
        assert_eq!(IntelFeed::from_csv("ipv4,999.1.1.1,malicious,1,x").err().unwrap().line, 1);
        assert!(IntelFeed::from_csv("ipv4,8.8.8.8,evil,1,x").is_err());
    }
}
