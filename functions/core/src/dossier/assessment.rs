//! The deterministic dossier: built from the evidence alone, with no model.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::domain::{attack, Case, GroupMatch, IndicatorKind, Severity, Technique};
use crate::dossier::playbook::next_steps;
use crate::dossier::{Dossier, Hypothesis, IndicatorFinding, SourceLine, SourceVerdict, TimelineEntry};
use crate::sources::{SourceReport, VerdictLevel};
use crate::text::clean_text;
use crate::timefmt::format_utc;

pub const DETERMINISTIC_VERSION: &str = "deterministic-v1";

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
    let related_cases: Vec<crate::sources::RelatedCase> = reports.iter().flat_map(|r| r.related_cases.iter().cloned()).collect();

    let hosts: Vec<String> = case.indicators.iter().filter(|i| i.kind == IndicatorKind::Hostname).map(|i| i.value.clone()).collect();
    let users: Vec<String> = case.indicators.iter().filter(|i| i.kind == IndicatorKind::User).map(|i| i.value.clone()).collect();
    let title = case.incident_name.clone().or_else(|| case.alert_names.first().cloned()).unwrap_or_else(|| case.description.clone());

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

fn bump(s: Severity) -> Severity {
    match s {
        Severity::Medium => Severity::High,
        Severity::High => Severity::Critical,
        other => other,
    }
}
