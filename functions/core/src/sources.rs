//! Enrichment sources behind one port. Each source reports a `SourceReport` per case: verdicts per
//! indicator (threat intel), technique context (ATT&CK), or why it had nothing to say.

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

use crate::attack::{attack, GroupMatch, Resolved, Technique};
use crate::case::Case;
use crate::indicator::{normalise, Indicator, IndicatorKind, InternalNames};
use crate::ports::{Clock, DocStore, Table};
use crate::ratelimit::{LimitError, RateLimit, RateLimiter};
use sha2::Digest;
use std::sync::Arc;

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
    /// Structured context (owner, criticality, pulses, risk level...), bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<(String, String)>,
    /// A size-bounded excerpt of the raw answer (items are capped at 400 KB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_excerpt: Option<String>,
}

/// Longest raw excerpt kept per verdict.
pub const MAX_RAW_EXCERPT: usize = 2048;
const MAX_FACTS: usize = 16;

impl IndicatorVerdict {
    pub fn new(indicator: &Indicator, verdict: VerdictLevel, summary: impl Into<String>) -> IndicatorVerdict {
        IndicatorVerdict {
            kind: indicator.kind,
            value: indicator.value.clone(),
            verdict,
            score: None,
            summary: summary.into().chars().take(300).collect(),
            link: None,
            facts: Vec::new(),
            raw_excerpt: None,
        }
    }

    pub fn score(mut self, score: f64) -> Self {
        self.score = Some(score.clamp(0.0, 100.0));
        self
    }

    pub fn link(mut self, link: impl Into<String>) -> Self {
        self.link = Some(link.into());
        self
    }

    /// Adds a fact if it has a value; at most 16, each value bounded.
    pub fn fact(mut self, name: &str, value: impl Into<String>) -> Self {
        let value: String = value.into();
        if !value.trim().is_empty() && self.facts.len() < MAX_FACTS {
            self.facts.push((name.to_string(), crate::dossier::clean_text(value.trim(), 300)));
        }
        self
    }

    /// Keeps a bounded excerpt of the raw answer, cut on a character boundary.
    pub fn raw(mut self, raw: &str) -> Self {
        self.raw_excerpt = Some(crate::text::prefix(raw, MAX_RAW_EXCERPT).to_string());
        self
    }

    pub fn fact_value(&self, name: &str) -> Option<&str> {
        self.facts.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
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
    /// Other cases sharing indicators with this one (the related-cases source).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related_cases: Vec<crate::offline::RelatedCase>,
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
            related_cases: Vec::new(),
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

/// Counts the HTTP requests a lookup sends (what `calls` in a report means).
#[derive(Debug, Default)]
pub struct CallCounter(std::sync::atomic::AtomicU32);

impl CallCounter {
    pub fn add(&self, n: u32) {
        self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
    pub fn get(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait]
pub trait IndicatorSource: Send + Sync {
    fn name(&self) -> &'static str;
    fn accepts(&self, kind: IndicatorKind) -> bool;
    /// True when lookups leave the organisation: internal indicators are then never sent.
    fn sends_externally(&self) -> bool;
    /// Looks one indicator up, counting every request it sends.
    async fn lookup(&self, indicator: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError>;
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

/// Answers per (source, indicator), kept for a TTL: the same indicator in 100 cases is looked
/// up once. "Not found" is kept shorter (it may appear at the source any time).
#[derive(Clone)]
pub struct LookupCache {
    store: Arc<dyn DocStore>,
    clock: Arc<dyn Clock>,
    pub positive_ttl: Duration,
    pub negative_ttl: Duration,
}

#[derive(Serialize, Deserialize)]
struct Cached {
    expires_at_ms: i64,
    found: Option<IndicatorVerdict>,
}

impl LookupCache {
    pub fn new(store: Arc<dyn DocStore>, clock: Arc<dyn Clock>) -> LookupCache {
        LookupCache { store, clock, positive_ttl: Duration::from_secs(24 * 3600), negative_ttl: Duration::from_secs(6 * 3600) }
    }

    fn key(indicator: &Indicator) -> String {
        // Sort keys are capped at 1 KB: long values (URLs) are keyed by their hash.
        if indicator.value.len() > 200 {
            format!("{}:sha256:{}", indicator.kind, hex::encode(sha2::Sha256::digest(indicator.value.as_bytes())))
        } else {
            format!("{}:{}", indicator.kind, indicator.value)
        }
    }

    /// A fresh cached answer. A cache that cannot be read is a miss, never an error.
    pub async fn get(&self, source: &str, indicator: &Indicator) -> Option<Lookup> {
        let doc = match self.store.get(Table::Cache, source, &Self::key(indicator)).await {
            Ok(d) => d?,
            Err(e) => {
                tracing::warn!(error = %e, "cache unavailable; looking up");
                return None;
            }
        };
        let cached: Cached = serde_json::from_str(&doc.body).ok()?;
        if cached.expires_at_ms <= self.clock.now_ms() {
            return None;
        }
        Some(cached.found.map_or(Lookup::NotFound, Lookup::Found))
    }

    pub async fn put(&self, source: &str, indicator: &Indicator, lookup: &Lookup) {
        let ttl = match lookup {
            Lookup::Found(_) => self.positive_ttl,
            Lookup::NotFound => self.negative_ttl,
        };
        let expires_at_ms = self.clock.now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let found = match lookup {
            Lookup::Found(v) => Some(v.clone()),
            Lookup::NotFound => None,
        };
        let Ok(body) = serde_json::to_string(&Cached { expires_at_ms, found }) else { return };
        let key = Self::key(indicator);
        let result = match self.store.get(Table::Cache, source, &key).await {
            Ok(Some(old)) => self.store.replace(Table::Cache, source, &key, &body, old.version).await.map(drop),
            Ok(None) => self.store.put_new(Table::Cache, source, &key, &body, Some(expires_at_ms / 1000)).await.map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            // Losing a cache write costs one more lookup later, nothing else.
            tracing::warn!(error = %e, "cache write failed");
        }
    }
}

/// Quotas shared by every invocation of a source (e.g. VirusTotal public: 4/min and 500/day).
#[derive(Clone)]
pub struct Quota {
    pub limiter: RateLimiter,
    pub limits: Vec<RateLimit>,
}

/// Runs an `IndicatorSource` over a case's indicators: filters, caches, spends quota, bounds time.
pub struct PerIndicator<S> {
    pub inner: S,
    pub limits: LookupLimits,
    pub cache: Option<LookupCache>,
    pub quota: Option<Quota>,
    in_flight: InFlight,
}

/// Lookups of the same indicator running at once in this process (several cases of one burst
/// share their indicators): the first calls the source, the others wait for it and read its
/// answer from the cache instead of spending quota on the same question.
#[derive(Default)]
struct InFlight(std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

/// Holds one indicator's turn; the map entry goes when the last holder or waiter is done.
struct Turn<'a> {
    in_flight: &'a InFlight,
    key: String,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl InFlight {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        // Every update is a single insert or remove: a poisoned map is still consistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn turn(&self, key: String) -> Turn<'_> {
        let lock = self.map().entry(key.clone()).or_default().clone();
        Turn { in_flight: self, key, lock }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut map = self.in_flight.map();
        // Ours and the map's: nobody else holds or waits for this indicator.
        if Arc::strong_count(&self.lock) <= 2 {
            map.remove(&self.key);
        }
    }
}

impl<S: IndicatorSource> PerIndicator<S> {
    pub fn new(inner: S) -> PerIndicator<S> {
        PerIndicator { inner, limits: LookupLimits::default(), cache: None, quota: None, in_flight: InFlight::default() }
    }
    pub fn with_limits(mut self, limits: LookupLimits) -> Self {
        self.limits = limits;
        self
    }
    pub fn with_cache(mut self, cache: LookupCache) -> Self {
        self.cache = Some(cache);
        self
    }
    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.quota = Some(quota);
        self
    }

    async fn one(&self, ind: &Indicator, calls: &CallCounter) -> (Result<Lookup, LookupError>, bool) {
        let name = self.inner.name();
        // Without a cache a waiter would have no answer to read: no coalescing then.
        let turn = self.cache.as_ref().map(|_| self.in_flight.turn(LookupCache::key(ind)));
        let _held = match &turn {
            Some(t) => Some(t.lock.lock().await),
            None => None,
        };
        if let Some(cache) = &self.cache {
            if let Some(hit) = cache.get(name, ind).await {
                return (Ok(hit), true);
            }
        }
        if let Some(q) = &self.quota {
            for limit in &q.limits {
                match q.limiter.acquire(limit).await {
                    Ok(()) => {}
                    Err(LimitError::Exhausted { after, .. }) => return (Err(LookupError::RateLimited { retry_after: Some(after) }), false),
                    Err(LimitError::Store(e)) => return (Err(LookupError::Transport(format!("quota store: {e}"))), false),
                }
            }
        }
        let result = match tokio::time::timeout(self.limits.per_lookup_timeout, self.inner.lookup(ind, calls)).await {
            Ok(r) => r,
            Err(_) => Err(LookupError::Timeout),
        };
        if let (Some(cache), Ok(lookup)) = (&self.cache, &result) {
            cache.put(name, ind, lookup).await;
        }
        (result, false)
    }
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
        let calls = CallCounter::default();
        let calls_ref = &calls;
        let results: Vec<(Indicator, Result<Lookup, LookupError>, bool)> = stream::iter(lookups)
            .map(|ind: Indicator| async move {
                let (r, cached) = self.one(&ind, calls_ref).await;
                (ind, r, cached)
            })
            .buffer_unordered(self.limits.concurrency.max(1))
            .collect()
            .await;
        let mut report = SourceReport::skipped(name, "");
        report.note = None;
        report.calls = calls.get();
        let (mut found, mut not_found, mut timeouts, mut cached) = (0usize, 0usize, 0usize, 0usize);
        let mut retry_after: Option<Duration> = None;
        for (ind, r, was_cached) in results {
            cached += usize::from(was_cached);
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
            // What was answered is cached; the retry spends quota only on the rest.
            return Err(Deferred { source_name: name.to_string(), after, reason: "quota exhausted or rate limited by the source".into() });
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
        if cached > 0 {
            note.push_str(&format!(", {cached} from cache"));
        }
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
            let mut v = IndicatorVerdict::new(&ind, verdict, cols[4].trim());
            v.score = score;
            v.link = cols.get(5).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
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
        async fn lookup(&self, i: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
            calls.add(1);
            self.0.lock().unwrap().push(i.value.clone());
            match &self.1 {
                Some(e) => Err(e.clone()),
                None => Ok(Lookup::NotFound),
            }
        }
    }

    #[tokio::test]
    async fn internal_indicators_never_reach_external_sources() {
        let src = PerIndicator::new(Recording(Default::default(), None));
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
        let src =
            PerIndicator::new(Recording(Default::default(), Some(LookupError::RateLimited { retry_after: Some(Duration::from_secs(30)) })));
        let c = case_with(vec![ind(IndicatorKind::Ipv4, "8.8.8.8")], vec![]);
        assert_eq!(src.enrich(&c).await.unwrap_err().after, Duration::from_secs(30));
    }

    #[tokio::test]
    async fn the_cache_answers_repeat_lookups_until_its_ttl() {
        use crate::embedded::{ManualClock, MemoryStore};
        let clock = Arc::new(ManualClock::new(0));
        let cache = LookupCache::new(Arc::new(MemoryStore::new()), clock.clone());
        let src = PerIndicator::new(Recording(Default::default(), None)).with_cache(cache);
        let c = case_with(vec![ind(IndicatorKind::Ipv4, "8.8.8.8")], vec![]);
        assert_eq!(src.enrich(&c).await.unwrap().calls, 1);
        for _ in 0..100 {
            let r = src.enrich(&c).await.unwrap();
            assert_eq!((r.calls, r.status), (0, SourceStatus::NotFound));
        }
        // Negative answers live 6 hours.
        clock.advance(Duration::from_secs(6 * 3600 + 1));
        assert_eq!(src.enrich(&c).await.unwrap().calls, 1);
        assert_eq!(src.inner.0.lock().unwrap().len(), 2);
    }

    /// Answers after a pause, so that lookups from several cases overlap.
    struct Slow(std::sync::atomic::AtomicU32);

    #[async_trait]
    impl IndicatorSource for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn accepts(&self, kind: IndicatorKind) -> bool {
            kind.is_ip()
        }
        fn sends_externally(&self) -> bool {
            true
        }
        async fn lookup(&self, _: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
            calls.add(1);
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            Ok(Lookup::NotFound)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_lookups_of_one_indicator_make_one_call() {
        use crate::embedded::MemoryStore;
        let cache = LookupCache::new(Arc::new(MemoryStore::new()), Arc::new(crate::ports::SystemClock));
        let src = PerIndicator::new(Slow(Default::default())).with_cache(cache);
        let c = case_with(vec![ind(IndicatorKind::Ipv4, "8.8.8.8"), ind(IndicatorKind::Ipv4, "9.9.9.9")], vec![]);
        let reports = futures_util::future::join_all((0..20).map(|_| src.enrich(&c))).await;
        assert_eq!(src.inner.0.load(std::sync::atomic::Ordering::SeqCst), 2, "one call per indicator for 20 concurrent cases");
        let calls: u32 = reports.iter().map(|r| r.as_ref().unwrap().calls).sum();
        assert_eq!(calls, 2);
        assert!(reports.iter().all(|r| r.as_ref().unwrap().status == SourceStatus::NotFound));
        assert!(src.in_flight.map().is_empty(), "no entry outlives its lookups");
        // Without a cache there is no answer to share: each case calls.
        let uncached = PerIndicator::new(Slow(Default::default()));
        futures_util::future::join_all((0..3).map(|_| uncached.enrich(&c))).await;
        assert_eq!(uncached.inner.0.load(std::sync::atomic::Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn an_exhausted_quota_defers_without_calling() {
        use crate::embedded::{ManualClock, MemoryStore};
        let clock = Arc::new(ManualClock::new(0));
        let limiter = RateLimiter::new(Arc::new(MemoryStore::new()), clock.clone());
        let quota = Quota { limiter, limits: vec![RateLimit { name: "rec-minute".into(), limit: 2, window: Duration::from_secs(60) }] };
        let src = PerIndicator::new(Recording(Default::default(), None))
            .with_quota(quota)
            .with_limits(LookupLimits { concurrency: 1, ..LookupLimits::default() });
        let c = case_with(
            vec![ind(IndicatorKind::Ipv4, "8.8.8.8"), ind(IndicatorKind::Ipv4, "9.9.9.9"), ind(IndicatorKind::Ipv4, "1.1.1.1")],
            vec![],
        );
        let deferred = src.enrich(&c).await.unwrap_err();
        assert!(deferred.after <= Duration::from_secs(61), "{deferred:?}");
        assert_eq!(src.inner.0.lock().unwrap().len(), 2, "only the quota's worth of calls");
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
        let src = PerIndicator::new(feed);
        let r = src.enrich(&case_with(vec![ind(IndicatorKind::Ipv4, "8.8.8.8")], vec![])).await.unwrap();
        assert_eq!(r.verdicts[0].verdict, VerdictLevel::Malicious);
        assert_eq!(r.calls, 0);
        assert_eq!(IntelFeed::from_csv("ipv4,999.1.1.1,malicious,1,x").err().unwrap().line, 1);
        assert!(IntelFeed::from_csv("ipv4,8.8.8.8,evil,1,x").is_err());
    }
}
