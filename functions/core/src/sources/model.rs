//! What a source reports: verdicts per indicator, its status, and the two source ports (one
//! report per case; one lookup per indicator).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::domain::{Case, GroupMatch, Indicator, IndicatorKind, Technique};

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
            self.facts.push((name.to_string(), crate::text::clean_text(value.trim(), 300)));
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
    pub related_cases: Vec<crate::sources::RelatedCase>,
    /// Runbook, wiki and past-report passages that fit the case (the knowledge source).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passages: Vec<crate::knowledge::Passage>,
    /// Answers for the shared lookup cache, not part of the report: the enrich stage writes them
    /// beside the report, in the same round trip. A report never stored loses only these.
    #[serde(skip)]
    pub to_cache: Vec<crate::ports::Write>,
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
            passages: Vec::new(),
            to_cache: Vec::new(),
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

    /// [`Source::enrich`] that reports within `budget` with what it has by then (the enrich
    /// stage's invocation ends after it). A source that looks up many things one by one
    /// overrides it, so answers found before the end are reported and cached, not dropped.
    async fn enrich_within(&self, case: &Case, _budget: Duration) -> Result<SourceReport, Deferred> {
        self.enrich(case).await
    }
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

/// Fact names threat-intel sources share, so the dossier can gather them across sources: actor,
/// campaign and malware names (several joined by `; `), first and last seen (RFC 3339 dates),
/// and the source's confidence.
pub mod intel_facts {
    pub const ACTORS: &str = "actors";
    pub const CAMPAIGNS: &str = "campaigns";
    pub const MALWARE: &str = "malware";
    pub const FIRST_SEEN: &str = "first_seen";
    pub const LAST_SEEN: &str = "last_seen";
    pub const CONFIDENCE: &str = "confidence";
    /// A domain's registration date (WHOIS).
    pub const REGISTERED: &str = "registered";

    /// Joins names for one fact: distinct (ignoring case), in order, at most eight.
    pub fn join<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
        let mut out: Vec<&str> = Vec::new();
        for n in names.into_iter().map(str::trim).filter(|n| !n.is_empty()) {
            if out.len() < 8 && !out.iter().any(|o| o.eq_ignore_ascii_case(n)) {
                out.push(n);
            }
        }
        out.join("; ")
    }

    /// The names in a joined fact.
    pub fn split(joined: &str) -> impl Iterator<Item = &str> {
        joined.split(';').map(str::trim).filter(|n| !n.is_empty())
    }
}
