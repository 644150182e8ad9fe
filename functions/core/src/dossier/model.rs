//! The dossier's data: what the deterministic builder and the model both produce.

use serde::{Deserialize, Serialize};

use crate::domain::{GroupMatch, IndicatorKind, Scope, Severity, Technique, TechniqueUse};
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
    /// External, internal, or a reserved range.
    #[serde(default = "external")]
    pub scope: Scope,
    /// The XDR fields it was seen in.
    #[serde(default)]
    pub seen_in: Vec<String>,
    /// Seen only in text anyone can write (command lines, descriptions), never in telemetry.
    #[serde(default)]
    pub free_text_only: bool,
    pub worst: VerdictLevel,
    pub verdicts: Vec<SourceVerdict>,
}

impl IndicatorFinding {
    /// An address XDR gave as the host's own (`host_ip`), not a peer it talked to.
    pub fn is_host_address(&self) -> bool {
        !self.seen_in.is_empty() && self.seen_in.iter().all(|s| s == "host_ip")
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    pub text: String,
    pub confidence: f64,
    /// Evidence for.
    pub evidence: Vec<String>,
    /// Evidence against.
    #[serde(default)]
    pub against: Vec<String>,
}

fn external() -> Scope {
    Scope::External
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

/// A passage of a runbook, wiki page or past report the dossier cites, as retrieved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    pub document: String,
    pub section: String,
    pub text: String,
}

/// Something the dossier suggests an analyst do that is not a gated action on its own: merge
/// with a related case, open a campaign investigation, review a detection draft.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    /// `merge`, `campaign`, `detection`, `playbook`.
    pub kind: String,
    pub text: String,
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
    /// ATT&CK groups ranked by the distinctive techniques they share (intel-named first).
    pub actors: Vec<GroupMatch>,
    /// Case techniques too common among groups to count towards attribution.
    #[serde(default)]
    pub commonplace_techniques: Vec<TechniqueUse>,
    /// Actor, campaign and malware names threat intel gives for the case's indicators.
    #[serde(default)]
    pub named_actors: Vec<crate::dossier::NamedActor>,
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
    /// Runbook and past-report passages that fit the case (only what was retrieved).
    #[serde(default)]
    pub citations: Vec<Citation>,
    /// Suggestions for the analyst (merges with related cases, ...).
    #[serde(default)]
    pub suggestions: Vec<Suggestion>,
    /// The model call behind an AI dossier, or the one whose answer was rejected.
    #[serde(default)]
    pub model_run: Option<crate::synthesis::ModelRun>,
}
