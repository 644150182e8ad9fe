//! The model's answer is checked before anything is stored: the schema (no unknown fields,
//! bounded sizes, confidence 0..1), every cited indicator, host, user and technique (they must
//! be in the evidence or the ATT&CK table), and every proposed action (allow-listed kind, a target
//! that is an entity of this case).

use serde::Deserialize;
use std::collections::BTreeSet;

use super::evidence::EvidencePack;
use super::pseudonym::Pseudonyms;
use super::ModelRun;
use crate::config::Phase;
use crate::domain::Severity;
use crate::domain::{attack, Resolved, Technique};
use crate::domain::{ActionKind, Case, Proposal};
use crate::domain::{IndicatorKind, InternalNames};
use crate::dossier::{Dossier, Hypothesis, Impacted, NextStep, TimelineEntry};
use crate::extract::Collector;
use crate::text::clean_text;

/// Answers longer than this are not read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("the answer is {0} bytes, over the {MAX_ANSWER_BYTES}-byte limit")]
    TooLong(usize),
    #[error("the answer does not follow the schema: {0}")]
    Schema(String),
    #[error("the answer cites {0}, which is not in the evidence")]
    UnknownIndicator(String),
    #[error("the answer cites {0}, which is not an ATT&CK technique")]
    UnknownTechnique(String),
    #[error("the answer proposes an action that is not allowed: {0}")]
    BadAction(String),
    #[error("the answer cites {0}, which was not retrieved")]
    UnknownCitation(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeline {
    time: String,
    event: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHypothesis {
    text: String,
    confidence: f64,
    evidence: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTechnique {
    id: String,
    rationale: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActor {
    name: String,
    basis: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImpacted {
    entity: String,
    kind: String,
    criticality: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    text: String,
    xql: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    kind: ActionKind,
    target: String,
    rationale: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeverity {
    level: String,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDossier {
    summary: String,
    timeline: Vec<RawTimeline>,
    hypotheses: Vec<RawHypothesis>,
    techniques: Vec<RawTechnique>,
    actors: Vec<RawActor>,
    impacted: Vec<RawImpacted>,
    next_steps: Vec<RawStep>,
    proposed_actions: Vec<RawAction>,
    severity: RawSeverity,
    /// Retrieved passages the answer rests on (optional for models that predate the field).
    #[serde(default)]
    citations: Vec<RawCitation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCitation {
    document: String,
    section: String,
}

/// A validated answer, still pseudonymised.
pub struct ModelDossier {
    raw: RawDossier,
    techniques: Vec<(Technique, String)>,
    actions: Vec<(ActionKind, String, String)>,
    severity: Severity,
}

fn check_len(field: &str, s: &str, max: usize) -> Result<(), ValidationError> {
    if s.chars().count() > max {
        return Err(ValidationError::Schema(format!("`{field}` is longer than {max} characters")));
    }
    Ok(())
}

fn check_count(field: &str, n: usize, max: usize) -> Result<(), ValidationError> {
    if n > max {
        return Err(ValidationError::Schema(format!("`{field}` has {n} items; at most {max}")));
    }
    Ok(())
}

pub fn validate(text: &str, case: &Case, pack: &EvidencePack, p: &Pseudonyms, phase: Phase) -> Result<ModelDossier, ValidationError> {
    if text.len() > MAX_ANSWER_BYTES {
        return Err(ValidationError::TooLong(text.len()));
    }
    // Tolerate a fenced block around the JSON; nothing else.
    let trimmed = text.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```").trim();
    let raw: RawDossier = serde_json::from_str(trimmed).map_err(|e| ValidationError::Schema(e.to_string()))?;

    check_len("summary", &raw.summary, 4000)?;
    check_count("timeline", raw.timeline.len(), 12)?;
    check_count("hypotheses", raw.hypotheses.len(), 5)?;
    check_count("techniques", raw.techniques.len(), 12)?;
    check_count("actors", raw.actors.len(), 5)?;
    check_count("impacted", raw.impacted.len(), 10)?;
    check_count("next_steps", raw.next_steps.len(), 8)?;
    check_count("proposed_actions", raw.proposed_actions.len(), 4)?;
    for h in &raw.hypotheses {
        if !(0.0..=1.0).contains(&h.confidence) || h.confidence.is_nan() {
            return Err(ValidationError::Schema(format!("confidence {} is outside 0..1", h.confidence)));
        }
        check_count("hypotheses[].evidence", h.evidence.len(), 8)?;
    }
    for i in &raw.impacted {
        if !matches!(i.kind.as_str(), "host" | "user" | "business_unit") {
            return Err(ValidationError::Schema(format!("impacted kind `{}`", i.kind)));
        }
    }
    let severity = match raw.severity.level.as_str() {
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        other => return Err(ValidationError::Schema(format!("severity level `{other}`"))),
    };

    // Every free text the model wrote, for citation checks.
    let mut texts: Vec<&str> = vec![&raw.summary, &raw.severity.reason];
    for t in &raw.timeline {
        texts.extend([t.time.as_str(), t.event.as_str()]);
    }
    for h in &raw.hypotheses {
        texts.push(&h.text);
        texts.extend(h.evidence.iter().map(String::as_str));
    }
    for t in &raw.techniques {
        texts.extend([t.id.as_str(), t.rationale.as_str()]);
    }
    for a in &raw.actors {
        texts.extend([a.name.as_str(), a.basis.as_str()]);
    }
    for i in &raw.impacted {
        texts.extend([i.entity.as_str(), i.criticality.as_str()]);
    }
    for s in &raw.next_steps {
        texts.extend([s.text.as_str(), s.xql.as_str()]);
    }
    for a in &raw.proposed_actions {
        texts.extend([a.target.as_str(), a.rationale.as_str()]);
    }
    for t in &texts {
        check_len("text field", t, 2000)?;
    }

    // Indicators: anything that looks like one must be in the evidence.
    let names = InternalNames::default();
    let mut c = Collector::new(&names);
    for t in &texts {
        c.scan_text(t, "answer");
    }
    let (cited, techniques_cited) = c.finish();
    let citable: BTreeSet<String> = pack.citable.iter().map(|v| v.to_lowercase()).collect();
    for ind in cited.iter().filter(|i| !i.kind.is_entity()) {
        let known = citable.contains(&ind.value.to_lowercase())
            // A URL's host alone, or a domain inside a cited URL, is fine.
            || (ind.kind == IndicatorKind::Domain && citable.iter().any(|v| v.contains(&format!("://{}", ind.value)) || v.ends_with(&format!(".{}", ind.value))));
        if !known {
            return Err(ValidationError::UnknownIndicator(format!("{} {}", ind.kind, ind.value)));
        }
    }
    // Pseudonym tokens must be ones we issued.
    let tokens: BTreeSet<&str> = p.tokens().collect();
    for t in &texts {
        for word in t.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '-')) {
            let is_token = ["HOST-", "USER-", "EMAIL-", "IP-", "DOMAIN-"]
                .iter()
                .any(|pre| word.strip_prefix(pre).is_some_and(|n| !n.is_empty() && n.chars().all(|d| d.is_ascii_digit())));
            if is_token && !tokens.contains(word) {
                return Err(ValidationError::UnknownIndicator(word.to_string()));
            }
        }
    }
    // Techniques: in the ATT&CK table (retired IDs are read as their replacement).
    let a = attack();
    let mut techniques = Vec::new();
    for id in raw.techniques.iter().map(|t| t.id.clone()).chain(techniques_cited.iter().cloned()) {
        let resolved = match a.resolve(&id) {
            Resolved::Active(t) => t.clone(),
            Resolved::Retired { replaced_by: Some(t), .. } => t.clone(),
            _ => return Err(ValidationError::UnknownTechnique(id)),
        };
        let rationale = raw.techniques.iter().find(|t| t.id == id).map(|t| t.rationale.clone()).unwrap_or_default();
        if !techniques.iter().any(|(t, _): &(Technique, String)| t.id == resolved.id) {
            techniques.push((resolved, rationale));
        }
    }
    // Actions: allow-listed kinds (the enum), targets that are entities of this case.
    let mut actions = Vec::new();
    for act in &raw.proposed_actions {
        let target = p.reveal(act.target.trim());
        let ok = match act.kind {
            ActionKind::IsolateEndpoint => case.endpoints.iter().any(|e| {
                e.endpoint_id.as_deref() == Some(target.as_str())
                    || (e.endpoint_id.is_some() && e.host_name.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(&target)))
            }),
            ActionKind::RaiseSeverity => matches!(target.as_str(), "medium" | "high" | "critical"),
            ActionKind::BlockHash => case.indicators.iter().any(|i| i.kind.is_hash() && i.value.eq_ignore_ascii_case(&target)),
            ActionKind::DisableUser => {
                case.indicators.iter().any(|i| i.kind == IndicatorKind::User && i.value.eq_ignore_ascii_case(&target))
            }
            // Merges come from Dossier's own case index, never from text a model read.
            ActionKind::MergeCases | ActionKind::OpenInvestigation => false,
        };
        if !ok {
            return Err(ValidationError::BadAction(format!("{} on `{}` (not an entity of this case)", act.kind.as_str(), act.target)));
        }
        // Outside the phases that propose actions, proposals are ignored, not errors.
        if phase.proposes_actions() {
            actions.push((act.kind, target, act.rationale.clone()));
        }
    }
    // Citations: only passages that were retrieved for this case, by document and section.
    check_count("citations", raw.citations.len(), 5)?;
    for c in &raw.citations {
        let (document, section) = (p.reveal(c.document.trim()), p.reveal(c.section.trim()));
        if !pack.knowledge.iter().any(|(d, s)| *d == document && *s == section) {
            return Err(ValidationError::UnknownCitation(format!("{document} § {section}")));
        }
    }
    Ok(ModelDossier { raw, techniques, actions, severity })
}

impl ModelDossier {
    /// The AI dossier, re-identified, on top of the deterministic facts (verdict tables,
    /// sources, related cases stay as computed). Severity never goes below the baseline.
    pub fn into_dossier(self, case: &Case, baseline: &Dossier, p: &Pseudonyms, run: &ModelRun, phase: Phase) -> (Dossier, Vec<Proposal>) {
        let show = |s: &str, max: usize| clean_text(&p.reveal(s), max);
        let mut d = baseline.clone();
        d.ai_generated = true;
        d.model = Some(run.model.clone());
        d.prompt_version = run.prompt_version.clone();
        d.summary = show(&self.raw.summary, 4000);
        d.timeline = self.raw.timeline.iter().map(|t| TimelineEntry { time: show(&t.time, 60), event: show(&t.event, 400) }).collect();
        d.hypotheses = self
            .raw
            .hypotheses
            .iter()
            .map(|h| Hypothesis {
                text: show(&h.text, 600),
                confidence: h.confidence,
                evidence: h.evidence.iter().map(|e| show(e, 200)).collect(),
                against: Vec::new(),
            })
            .collect();
        if !self.techniques.is_empty() {
            d.techniques = self.techniques.iter().map(|(t, _)| t.clone()).collect();
        }
        d.technique_notes = self.techniques.iter().filter(|(_, r)| !r.is_empty()).map(|(t, r)| (t.id.clone(), show(r, 400))).collect();
        d.actor_notes = self.raw.actors.iter().map(|a| (show(&a.name, 100), show(&a.basis, 400))).collect();
        // The passages the model rests on, in its order, with the retrieved text (never the model's).
        if !self.raw.citations.is_empty() {
            d.citations = self
                .raw
                .citations
                .iter()
                .filter_map(|c| {
                    let (document, section) = (p.reveal(c.document.trim()), p.reveal(c.section.trim()));
                    baseline.citations.iter().find(|b| b.document == document && b.section == section).cloned()
                })
                .collect();
        }
        d.impacted = self
            .raw
            .impacted
            .iter()
            .map(|i| Impacted { entity: show(&i.entity, 200), kind: i.kind.clone(), criticality: show(&i.criticality, 100) })
            .collect();
        d.next_steps = self
            .raw
            .next_steps
            .iter()
            .map(|s| NextStep {
                text: show(&s.text, 400),
                xql: Some(p.reveal(&s.xql)).filter(|x| !x.trim().is_empty()).map(|x| clean_text(&x, 2000)),
            })
            .collect();
        if self.severity > d.severity {
            d.severity = self.severity;
            d.severity_reason = show(&self.raw.severity.reason, 400);
        }
        d.severity = d.severity.max(case.severity);
        d.model_run = Some(run.clone());
        let mut actions = crate::dossier::propose_actions(case, &d, phase);
        for (kind, target, rationale) in self.actions {
            // An endpoint named by its host becomes its endpoint id (what XDR isolates).
            let target = match kind {
                ActionKind::IsolateEndpoint => case
                    .endpoints
                    .iter()
                    .find(|e| e.host_name.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(&target)))
                    .and_then(|e| e.endpoint_id.clone())
                    .unwrap_or(target),
                _ => target,
            };
            if actions.iter().any(|a| a.kind == kind && a.target == target) {
                continue;
            }
            let label = case
                .endpoints
                .iter()
                .find(|e| e.endpoint_id.as_deref() == Some(target.as_str()))
                .and_then(|e| e.host_name.clone())
                .unwrap_or_else(|| target.clone());
            actions.push(Proposal { kind, target, target_label: label, rationale: show(&rationale, 400) });
        }
        (d, actions)
    }
}
