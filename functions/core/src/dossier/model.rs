//! The dossier's data: what the deterministic builder and the model both produce.

use serde::{Deserialize, Serialize};

use crate::domain::{GroupMatch, IndicatorKind, Severity, Technique};
use crate::sources::{SourceStatus, VerdictLevel};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceVerdict {
    pub source: String,
    pub verdict: VerdictLevel,
    pub summary: String,
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndicatorFinding {
    pub kind: IndicatorKind,
    pub value: String,
    pub internal: bool,
    pub worst: VerdictLevel,
    pub verdicts: Vec<SourceVerdict>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    pub text: String,
    pub confidence: f64,
    pub evidence: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NextStep {
    pub text: String,
    pub xql: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub time: String,
    pub event: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Impacted {
    pub entity: String,
    /// `host`, `user` or `business_unit`.
    pub kind: String,
    pub criticality: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceLine {
    pub name: String,
    pub status: SourceStatus,
    pub calls: u32,
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dossier {
    pub ai_generated: bool,
    pub model: Option<String>,
    pub prompt_version: String,
    pub summary: String,
    pub severity: Severity,
    pub severity_reason: String,
    pub indicators: Vec<IndicatorFinding>,
    pub techniques: Vec<Technique>,
    /// Which of `techniques` were inferred by a rule, not cited by XDR.
    #[serde(default)]
    pub inferred: Vec<crate::domain::InferredTechnique>,
    pub actors: Vec<GroupMatch>,
    pub hypotheses: Vec<Hypothesis>,
    pub next_steps: Vec<NextStep>,
    pub sources: Vec<SourceLine>,
    /// Sources that had not reported when synthesis started.
    pub missing_sources: Vec<String>,
    #[serde(default)]
    pub related_cases: Vec<crate::sources::RelatedCase>,
    /// The most critical business criticality among the case's assets, when a CMDB says.
    #[serde(default)]
    pub asset_criticality: Option<String>,
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    #[serde(default)]
    pub impacted: Vec<Impacted>,
    /// Why each technique applies (model rationale), by technique id.
    #[serde(default)]
    pub technique_notes: Vec<(String, String)>,
    /// Likely actors or campaigns named by the model, with the basis.
    #[serde(default)]
    pub actor_notes: Vec<(String, String)>,
    /// The model call behind an AI dossier, or the one whose answer was rejected.
    #[serde(default)]
    pub model_run: Option<crate::synthesis::ModelRun>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CommentState {
    Pending,
    /// Claimed by a writeback worker until the lease ends.
    Posting {
        lease_until_ms: i64,
    },
    Posted {
        at_ms: i64,
    },
}

/// A synthesized dossier and the comment made from it; written once per case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    pub id: String,
    pub created_at_ms: i64,
    pub dossier: Dossier,
    pub comment: String,
    pub comment_state: CommentState,
}
