//! The dossier: what analysts read first. This module builds the deterministic dossier from the
//! evidence alone (no model) and renders the XDR comment. Alert text is attacker-controlled: it is
//! bounded and stripped of control characters before it is rendered anywhere.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::attack::{attack, GroupMatch, Technique};
use crate::case::{Action, ActionKind, Case};
use crate::config::Phase;
use crate::indicator::IndicatorKind;
use crate::sources::{SourceReport, SourceStatus, VerdictLevel};
use crate::timefmt::format_utc;
use crate::xdr::Severity;

/// Longest comment written to XDR; longer dossiers are cut with a note.
pub const MAX_COMMENT_CHARS: usize = 12_000;
pub const LABEL_AI: &str = "AI-generated — pending analyst review";
pub const LABEL_NO_AI: &str = "Automated summary (no AI)";
pub const DETERMINISTIC_VERSION: &str = "deterministic-v1";

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
    pub inferred: Vec<crate::attack_rules::InferredTechnique>,
    pub actors: Vec<GroupMatch>,
    pub hypotheses: Vec<Hypothesis>,
    pub next_steps: Vec<NextStep>,
    pub sources: Vec<SourceLine>,
    /// Sources that had not reported when synthesis started.
    pub missing_sources: Vec<String>,
    #[serde(default)]
    pub related_cases: Vec<crate::offline::RelatedCase>,
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

/// Removes control characters and bounds the length of untrusted text before rendering.
pub fn clean_text(s: &str, max_chars: usize) -> String {
    let mut out: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(max_chars).collect();
    if s.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// Quotes a value for an XQL string literal.
pub fn xql_quote(s: &str) -> String {
    let cleaned: String = s.chars().filter(|c| !c.is_control()).take(512).collect();
    format!("\"{}\"", cleaned.replace('\\', "\\\\").replace('"', "\\\""))
}

fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..5])
}

/// Builds the dossier from the evidence alone.
pub fn deterministic(case: &Case, reports: &[SourceReport], missing_sources: &[String]) -> Dossier {
    let a = attack();
    // Per-indicator verdicts across sources.
    let mut by_indicator: BTreeMap<(IndicatorKind, String), IndicatorFinding> = BTreeMap::new();
    for ind in &case.indicators {
        by_indicator.insert(
            (ind.kind, ind.value.clone()),
            IndicatorFinding {
                kind: ind.kind,
                value: ind.value.clone(),
                internal: ind.internal,
                worst: VerdictLevel::Unknown,
                verdicts: Vec::new(),
            },
        );
    }
    for r in reports {
        for v in &r.verdicts {
            if let Some(f) = by_indicator.get_mut(&(v.kind, v.value.clone())) {
                f.worst = f.worst.max(v.verdict);
                f.verdicts.push(SourceVerdict {
                    source: r.source.clone(),
                    verdict: v.verdict,
                    summary: clean_text(&v.summary, 200),
                    link: v.link.clone(),
                    facts: v.facts.clone(),
                });
            }
        }
    }
    let mut indicators: Vec<IndicatorFinding> = by_indicator.into_values().collect();
    indicators.sort_by(|x, y| y.worst.cmp(&x.worst).then(x.kind.cmp(&y.kind)).then(x.value.cmp(&y.value)));

    // Techniques: ATT&CK source result if present, else the embedded table directly.
    let mut techniques: Vec<Technique> = reports.iter().flat_map(|r| r.techniques.iter().cloned()).collect();
    if techniques.is_empty() {
        techniques = case.all_technique_ids().iter().filter_map(|id| a.technique(id).cloned()).collect();
    }
    techniques.sort_by_key(|t| (t.tactics.first().map_or(u32::MAX, |n| a.tactic_order(n)), t.id.clone()));
    techniques.dedup_by(|x, y| x.id == y.id);
    let mut actors: Vec<GroupMatch> = reports.iter().flat_map(|r| r.groups.iter().cloned()).collect();
    if actors.is_empty() {
        actors = a.groups_overlapping(&techniques.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), 5);
    }

    let malicious: Vec<&IndicatorFinding> = indicators.iter().filter(|f| f.worst == VerdictLevel::Malicious).collect();
    let suspicious: Vec<&IndicatorFinding> = indicators.iter().filter(|f| f.worst == VerdictLevel::Suspicious).collect();
    let tactic_chain: Vec<String> = {
        let mut t: Vec<&String> = techniques.iter().flat_map(|t| t.tactics.iter()).collect();
        t.sort_by_key(|n| a.tactic_order(n));
        t.dedup();
        t.into_iter().cloned().collect()
    };
    let high_impact = tactic_chain.iter().any(|t| t == "Impact" || t == "Credential Access" || t == "Exfiltration");

    let (assessed, severity_reason) = if malicious.len() >= 2 && high_impact {
        (
            Severity::Critical,
            format!("{} indicators are flagged malicious and the techniques reach {}", malicious.len(), tactic_chain.join(" → ")),
        )
    } else if !malicious.is_empty() {
        (Severity::High, format!("{} indicator(s) flagged malicious by threat intel", malicious.len()))
    } else if !suspicious.is_empty() {
        (Severity::Medium, format!("{} indicator(s) flagged suspicious, none malicious", suspicious.len()))
    } else {
        (case.severity, "no source flags any indicator; severity left as XDR set it".to_string())
    };
    // A flagged indicator on a most-critical asset (CMDB criticality 1) is one level worse.
    let asset_criticality = indicators
        .iter()
        .filter(|f| f.kind == IndicatorKind::Hostname)
        .flat_map(|f| f.verdicts.iter())
        .flat_map(|v| v.facts.iter().filter(|(k, _)| k == "criticality").map(|(_, c)| c.clone()))
        .min_by_key(|c| c.trim().chars().next().and_then(|d| d.to_digit(10)).unwrap_or(9));
    let crown_jewel = asset_criticality.as_deref().is_some_and(|c| c.trim_start().starts_with('1'));
    let (assessed, severity_reason) = if crown_jewel && assessed >= Severity::Medium && assessed < Severity::Critical {
        (
            bump(assessed),
            format!("{severity_reason}, on an asset of business criticality {}", asset_criticality.clone().unwrap_or_default()),
        )
    } else {
        (assessed, severity_reason)
    };
    let severity = assessed.max(case.severity);
    let related_cases: Vec<crate::offline::RelatedCase> = reports.iter().flat_map(|r| r.related_cases.iter().cloned()).collect();

    let hosts: Vec<String> = case.indicators.iter().filter(|i| i.kind == IndicatorKind::Hostname).map(|i| i.value.clone()).collect();
    let users: Vec<String> = case.indicators.iter().filter(|i| i.kind == IndicatorKind::User).map(|i| i.value.clone()).collect();
    let title = case.incident_name.clone().or_else(|| case.alert_names.first().cloned()).unwrap_or_else(|| case.hint.description.clone());

    // Summary: one paragraph a tired analyst can read in ten seconds.
    let mut summary = format!(
        "Incident {} ({}): \"{}\". {} alert(s) on {} involving {}.",
        case.key.incident_id,
        case.severity,
        clean_text(&title, 160),
        case.alert_count,
        if hosts.is_empty() { "no named host".to_string() } else { clean_text(&hosts.join(", "), 200) },
        if users.is_empty() { "no named user".to_string() } else { clean_text(&users.join(", "), 200) },
    );
    if malicious.is_empty() && suspicious.is_empty() {
        let observables = indicators.iter().filter(|f| !f.kind.is_entity()).count();
        let _ = write!(summary, " No enrichment source flags any of the {observables} indicator(s).");
    } else {
        let flagged: Vec<String> =
            malicious.iter().chain(suspicious.iter()).take(5).map(|f| format!("{} {} ({})", f.kind, f.value, f.worst.as_str())).collect();
        let _ = write!(summary, " Flagged: {}.", flagged.join("; "));
    }
    if !techniques.is_empty() {
        let names: Vec<String> = techniques.iter().take(6).map(|t| format!("{} {}", t.id, t.name)).collect();
        let _ = write!(summary, " ATT&CK: {} ({}).", names.join(", "), tactic_chain.join(" → "));
    }
    if !missing_sources.is_empty() {
        let _ = write!(summary, " Incomplete: {} did not answer in time.", missing_sources.join(", "));
    }

    let mut hypotheses = Vec::new();
    if !malicious.is_empty() {
        hypotheses.push(Hypothesis {
            text: format!("Malicious activity: threat intel flags {} indicator(s) seen in this incident.", malicious.len()),
            confidence: (0.55 + 0.1 * malicious.len() as f64).min(0.9),
            evidence: malicious.iter().take(5).map(|f| format!("{} {}", f.kind, f.value)).collect(),
        });
    }
    if !tactic_chain.is_empty() {
        hypotheses.push(Hypothesis {
            text: format!("The activity follows the ATT&CK chain {}.", tactic_chain.join(" → ")),
            confidence: if malicious.is_empty() { 0.45 } else { 0.65 },
            evidence: techniques.iter().take(6).map(|t| t.id.clone()).collect(),
        });
    }
    if let Some(top) = actors.first().filter(|g| g.score >= 0.5) {
        hypotheses.push(Hypothesis {
            text: format!("Tradecraft overlaps {} ({}); overlap alone is weak attribution.", top.name, top.id),
            confidence: (top.score * 0.4).min(0.4),
            evidence: top.shared.clone(),
        });
    }
    if malicious.is_empty() && suspicious.is_empty() {
        hypotheses.push(Hypothesis {
            text: "Benign or novel: no source knows these indicators; verify with the host's process history before closing.".into(),
            confidence: 0.4,
            evidence: Vec::new(),
        });
    }

    Dossier {
        ai_generated: false,
        model: None,
        prompt_version: DETERMINISTIC_VERSION.into(),
        summary,
        severity,
        severity_reason,
        next_steps: next_steps(&indicators, &techniques, &hosts, &users),
        indicators,
        techniques,
        inferred: case.inferred_techniques.clone(),
        actors,
        hypotheses,
        sources: reports
            .iter()
            .map(|r| SourceLine { name: r.source.clone(), status: r.status, calls: r.calls, note: r.note.clone() })
            .collect(),
        missing_sources: missing_sources.to_vec(),
        related_cases,
        asset_criticality,
        timeline: timeline(case),
        impacted: Vec::new(),
        technique_notes: Vec::new(),
        actor_notes: Vec::new(),
        model_run: None,
    }
}

/// The alerts in time order, as the deterministic timeline.
fn timeline(case: &Case) -> Vec<TimelineEntry> {
    case.alerts
        .iter()
        .take(12)
        .map(|a| TimelineEntry {
            time: a.time_ms.map(format_utc).unwrap_or_else(|| "time unknown".into()),
            event: clean_text(
                &format!("{} ({}){}", a.name, a.severity, a.host.as_ref().map_or(String::new(), |h| format!(" on {h}"))),
                300,
            ),
        })
        .collect()
}

/// Action ids derive from kind and target: the same proposal twice is one action.
pub fn action_id(kind: ActionKind, target: &str) -> String {
    format!("{}-{}", kind.as_str().replace('_', "-"), short_hash(target))
}

fn bump(s: Severity) -> Severity {
    match s {
        Severity::Medium => Severity::High,
        Severity::High => Severity::Critical,
        other => other,
    }
}

/// Next steps with ready XQL, per entity and per alert family.
fn next_steps(indicators: &[IndicatorFinding], techniques: &[Technique], hosts: &[String], users: &[String]) -> Vec<NextStep> {
    let mut steps = Vec::new();
    for h in hosts.iter().take(3) {
        steps.push(NextStep {
            text: format!("Review process activity on {} in the last 24 hours.", clean_text(h, 100)),
            xql: Some(format!(
                "config timeframe = 24h | dataset = xdr_data | filter agent_hostname = {} and event_type = ENUM.PROCESS | fields _time, actor_process_image_name, action_process_image_name, action_process_image_command_line | sort desc _time | limit 200",
                xql_quote(h)
            )),
        });
    }
    for f in indicators.iter().filter(|f| !f.internal && f.worst >= VerdictLevel::Suspicious).take(5) {
        let (text, filter) = match f.kind {
            IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => {
                ("Find every host that talked to", format!("action_remote_ip = {}", xql_quote(&f.value)))
            }
            IndicatorKind::Domain => ("Find every host that resolved", format!("dns_query_name = {}", xql_quote(&f.value))),
            IndicatorKind::Sha256 => (
                "Find every host that ran or wrote",
                format!("action_process_image_sha256 = {v} or action_file_sha256 = {v}", v = xql_quote(&f.value)),
            ),
            IndicatorKind::Md5 => (
                "Find every host that ran or wrote",
                format!("action_process_image_md5 = {v} or action_file_md5 = {v}", v = xql_quote(&f.value)),
            ),
            _ => continue,
        };
        steps.push(NextStep {
            text: format!("{text} {} {} (7 days).", f.kind, f.value),
            xql: Some(format!("config timeframe = 7d | dataset = xdr_data | filter {filter} | comp count() as events by agent_hostname | sort desc events")),
        });
    }
    for u in users.iter().take(2) {
        steps.push(NextStep {
            text: format!("Check recent logons of {} for unusual hosts or failures.", clean_text(u, 100)),
            xql: Some(format!(
                "config timeframe = 7d | dataset = xdr_data | filter event_type = ENUM.EVENT_LOG and action_evtlog_event_id in (4624, 4625) and actor_effective_username contains {} | comp count() as logons by agent_hostname, action_evtlog_event_id",
                xql_quote(u)
            )),
        });
    }
    let ids: Vec<&str> = techniques.iter().map(|t| t.id.as_str()).collect();
    if ids.iter().any(|t| t.starts_with("T1059.001")) {
        steps.push(NextStep {
            text: "Hunt for encoded PowerShell across the estate.".into(),
            xql: Some("config timeframe = 7d | dataset = xdr_data | filter event_type = ENUM.PROCESS and action_process_image_name ~= \"powershell\" and action_process_image_command_line ~= \"-e(nc|ncodedcommand)? \" | fields _time, agent_hostname, action_process_image_command_line | limit 200".into()),
        });
    }
    if ids.iter().any(|t| t.starts_with("T1486") || t.starts_with("T1490")) {
        steps.push(NextStep {
            text: "Look for shadow-copy deletion and mass file changes (ransomware precursors).".into(),
            xql: Some("config timeframe = 24h | dataset = xdr_data | filter event_type = ENUM.PROCESS and action_process_image_command_line ~= \"(vssadmin|wmic).*(delete|shadowcopy)\" | fields _time, agent_hostname, action_process_image_command_line".into()),
        });
    }
    if ids.iter().any(|t| t.starts_with("T1003")) {
        steps.push(NextStep {
            text: "Check for LSASS access (credential dumping) on the involved hosts.".into(),
            xql: Some("config timeframe = 24h | dataset = xdr_data | filter event_type = ENUM.PROCESS and action_process_image_name = \"lsass.exe\" | fields _time, agent_hostname, actor_process_image_name".into()),
        });
    }
    if steps.is_empty() {
        steps.push(NextStep { text: "Review the alert details in XDR; Dossier found no entity to pivot on.".into(), xql: None });
    }
    steps
}

/// Gated actions the evidence supports; nothing in phase 1. Only allow-listed kinds, only
/// targets that are entities of this case.
pub fn propose_actions(case: &Case, dossier: &Dossier, phase: Phase) -> Vec<Action> {
    if !phase.proposes_actions() {
        return Vec::new();
    }
    let mut actions = Vec::new();
    let mut push = |kind: ActionKind, target: String, label: String, rationale: String| {
        actions.push(Action::proposed(action_id(kind, &target), kind, target, label, rationale))
    };
    let malicious: Vec<&IndicatorFinding> =
        dossier.indicators.iter().filter(|f| f.worst == VerdictLevel::Malicious && !f.internal).collect();
    if !malicious.is_empty() {
        for ep in case.endpoints.iter().filter(|e| e.endpoint_id.is_some()).take(3) {
            let id = ep.endpoint_id.clone().unwrap_or_default();
            let label = ep.host_name.clone().unwrap_or_else(|| id.clone());
            push(
                ActionKind::IsolateEndpoint,
                id,
                label.clone(),
                format!(
                    "{label} is involved in an incident with {} malicious indicator(s), e.g. {} {}",
                    malicious.len(),
                    malicious[0].kind,
                    malicious[0].value
                ),
            );
        }
    }
    for f in malicious.iter().filter(|f| f.kind == IndicatorKind::Sha256).take(3) {
        let why = f
            .verdicts
            .iter()
            .find(|v| v.verdict == VerdictLevel::Malicious)
            .map_or(String::new(), |v| format!("{}: {}", v.source, v.summary));
        push(ActionKind::BlockHash, f.value.clone(), f.value.clone(), format!("file flagged malicious ({why})"));
    }
    // An identity a directory reports compromised (Entra ID risk, Okta threats).
    for f in dossier.indicators.iter().filter(|f| f.kind == IndicatorKind::User && f.worst >= VerdictLevel::Suspicious).take(2) {
        let why = f
            .verdicts
            .iter()
            .filter(|v| v.verdict >= VerdictLevel::Suspicious)
            .map(|v| format!("{}: {}", v.source, v.summary))
            .collect::<Vec<_>>()
            .join("; ");
        push(ActionKind::DisableUser, f.value.clone(), f.value.clone(), format!("identity at risk ({why})"));
    }
    if dossier.severity > case.severity && case.severity != Severity::Unknown {
        push(
            ActionKind::RaiseSeverity,
            dossier.severity.as_str().to_string(),
            format!("{} → {}", case.severity, dossier.severity),
            dossier.severity_reason.clone(),
        );
    }
    actions
}

/// The plain-text comment written to the XDR incident.
pub fn render_comment(case: &Case, draft_id: &str, d: &Dossier, actions: &[Action]) -> String {
    let mut s = String::new();
    let label = if d.ai_generated { LABEL_AI } else { LABEL_NO_AI };
    let _ = writeln!(s, "[Dossier] {label}");
    match (&d.model_run, d.ai_generated) {
        (Some(run), true) => {
            let _ = writeln!(
                s,
                "Model: {} · prompt {} ({}) · {} tokens in, {} out",
                run.model, run.prompt_version, run.prompt_hash, run.input_tokens, run.output_tokens
            );
        }
        (Some(run), false) => {
            let _ = writeln!(
                s,
                "The model's answer was not used ({}); this summary is built from the evidence alone.",
                clean_text(run.rejected.as_deref().unwrap_or("no answer"), 200)
            );
        }
        _ => {}
    }
    let _ = writeln!(s, "\nSUMMARY\n{}", d.summary);
    let _ = writeln!(s, "\nSEVERITY ASSESSMENT: {} ({})", d.severity, d.severity_reason);
    if !d.timeline.is_empty() {
        let _ = writeln!(s, "\nTIMELINE");
        for t in d.timeline.iter().take(12) {
            let _ = writeln!(s, "- {}: {}", clean_text(&t.time, 60), clean_text(&t.event, 300));
        }
    }
    if !d.impacted.is_empty() {
        let _ = writeln!(s, "\nIMPACTED");
        for i in &d.impacted {
            let _ = writeln!(s, "- {} {} (criticality: {})", i.kind, clean_text(&i.entity, 120), clean_text(&i.criticality, 60));
        }
    }

    let shown: Vec<&IndicatorFinding> = d.indicators.iter().filter(|f| !f.kind.is_entity()).collect();
    if !shown.is_empty() {
        let _ = writeln!(s, "\nINDICATORS");
        for f in shown.iter().take(25) {
            let scope = if f.internal { "internal" } else { "external" };
            let verdicts = if f.verdicts.is_empty() {
                "no verdict".to_string()
            } else {
                f.verdicts.iter().map(|v| format!("{}: {} — {}", v.source, v.verdict.as_str(), v.summary)).collect::<Vec<_>>().join("; ")
            };
            let _ = writeln!(s, "- {} {} [{scope}] {}: {}", f.kind, clean_text(&f.value, 200), f.worst.as_str().to_uppercase(), verdicts);
        }
        if shown.len() > 25 {
            let _ = writeln!(s, "- … and {} more", shown.len() - 25);
        }
    }
    let (with_context, bare): (Vec<&IndicatorFinding>, Vec<&IndicatorFinding>) =
        d.indicators.iter().filter(|f| f.kind.is_entity()).partition(|f| !f.verdicts.is_empty());
    if !with_context.is_empty() {
        let _ = writeln!(s, "\nASSETS AND IDENTITIES");
        for f in with_context.iter().take(10) {
            let context = f.verdicts.iter().map(|v| format!("{}: {}", v.source, v.summary)).collect::<Vec<_>>().join("; ");
            let _ = writeln!(s, "- {} {}: {}", f.kind, clean_text(&f.value, 100), context);
        }
    }
    if !bare.is_empty() {
        let names: Vec<String> = bare.iter().take(12).map(|f| format!("{} {}", f.kind, clean_text(&f.value, 100))).collect();
        let _ = writeln!(s, "\nENTITIES\n{}", names.join(", "));
    }
    if !d.related_cases.is_empty() {
        let _ = writeln!(s, "\nRELATED CASES");
        for r in d.related_cases.iter().take(5) {
            let _ = writeln!(s, "- incident {} ({:.0}%): {}", r.case.incident_id, r.score * 100.0, clean_text(&r.reason, 300));
        }
    }
    if !d.techniques.is_empty() {
        let _ = writeln!(s, "\nATT&CK (v{})", crate::attack::ATTACK_VERSION);
        for t in &d.techniques {
            let basis =
                d.inferred.iter().find(|i| i.id == t.id).map_or(String::new(), |i| format!(" — inferred by rule {} ({})", i.rule, i.about));
            let _ = writeln!(s, "- {} {} ({}){basis}", t.id, t.name, t.tactics.join(", "));
        }
    }
    if !d.actor_notes.is_empty() {
        let _ = writeln!(s, "\nLIKELY ACTORS OR CAMPAIGNS");
        for (name, basis) in d.actor_notes.iter().take(5) {
            let _ = writeln!(s, "- {}: {}", clean_text(name, 100), clean_text(basis, 300));
        }
    }
    if !d.actors.is_empty() {
        let _ = writeln!(s, "\nGROUPS KNOWN TO USE THESE TECHNIQUES");
        for g in d.actors.iter().take(5) {
            let _ = writeln!(s, "- {} ({}): {:.0}% overlap ({})", g.name, g.id, g.score * 100.0, g.shared.join(", "));
        }
    }
    if !d.hypotheses.is_empty() {
        let _ = writeln!(s, "\nHYPOTHESES");
        for h in &d.hypotheses {
            let _ = writeln!(s, "- [{:.0}%] {}", h.confidence * 100.0, h.text);
        }
    }
    let _ = writeln!(s, "\nNEXT STEPS");
    for (i, n) in d.next_steps.iter().enumerate() {
        let _ = writeln!(s, "{}. {}", i + 1, n.text);
        if let Some(x) = &n.xql {
            let _ = writeln!(s, "   XQL: {x}");
        }
    }
    if !actions.is_empty() {
        let _ = writeln!(s, "\nPROPOSED ACTIONS (nothing runs without a signed approval)");
        for a in actions {
            let _ = writeln!(
                s,
                "- {}: {} — {} [{}]",
                a.kind.describe(),
                clean_text(&a.target_label, 120),
                clean_text(&a.rationale, 300),
                a.status.as_str()
            );
        }
    }
    let _ = writeln!(s, "\nSOURCES");
    for src in &d.sources {
        let _ = writeln!(
            s,
            "- {}: {} ({} call(s)){}",
            src.name,
            src.status.as_str(),
            src.calls,
            src.note.as_ref().map_or(String::new(), |n| format!(" — {}", clean_text(n, 200)))
        );
    }
    for m in &d.missing_sources {
        let _ = writeln!(s, "- {m}: no answer before the deadline");
    }
    let footer = format!("\n[dossier:{}:{draft_id}] generated {}", case.key.storage_id(), format_utc(case.received_at_ms));
    let budget = MAX_COMMENT_CHARS - footer.chars().count() - 40;
    if s.chars().count() > budget {
        s = s.chars().take(budget).collect();
        s.push_str("\n… (cut to fit the XDR comment limit)");
    }
    s.push_str(&footer);
    s
}

/// The marker written into each comment: lets a retry recognise a comment already posted.
pub fn comment_marker(case: &Case, draft_id: &str) -> String {
    format!("[dossier:{}:{draft_id}]", case.key.storage_id())
}
