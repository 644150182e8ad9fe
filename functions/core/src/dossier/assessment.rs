//! The deterministic dossier: built from the evidence alone, with no model. XDR's own verdicts
//! and outcomes come first and weigh more than third-party intel; hypotheses compete, each with
//! the evidence for and against it and a confidence derived from that evidence.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::domain::{attack, Case, IndicatorKind, Scope, Severity, Technique};
use crate::dossier::playbook::next_steps;
use crate::dossier::{Dossier, Hypothesis, IndicatorFinding, SourceLine, SourceVerdict, TimelineEntry};
use crate::sources::{SourceReport, VerdictLevel};
use crate::text::clean_text;
use crate::timefmt::format_utc;

pub const DETERMINISTIC_VERSION: &str = "deterministic-v2";

/// Words in a CMDB or directory record that mark an asset as a lab or test system.
const TEST_ASSET_WORDS: &[&str] = &["lab", "sandbox", "test", "staging", "detonation"];

/// Findings per indicator: the case's indicators with every source's verdicts and XDR's own.
pub fn findings(case: &Case, reports: &[SourceReport]) -> Vec<IndicatorFinding> {
    let mut by_indicator: BTreeMap<(IndicatorKind, String), IndicatorFinding> = BTreeMap::new();
    for ind in &case.indicators {
        by_indicator.insert(
            (ind.kind, ind.value.clone()),
            IndicatorFinding {
                kind: ind.kind,
                value: ind.value.clone(),
                internal: ind.internal,
                scope: Scope::of(ind.kind, &ind.value, ind.internal),
                seen_in: ind.seen_in.clone(),
                free_text_only: !ind.seen_in.is_empty() && ind.seen_in.iter().all(|s| crate::extract::is_free_text(s)),
                worst: VerdictLevel::Unknown,
                verdicts: Vec::new(),
            },
        );
    }
    // XDR's verdicts first: they come from the tenant's own analysis of the file.
    for v in &case.facts.verdicts {
        let Some(sha) = &v.sha256 else { continue };
        if let Some(f) = by_indicator.get_mut(&(IndicatorKind::Sha256, sha.clone())) {
            let level = match v.verdict.as_str() {
                "BENIGN" => VerdictLevel::Harmless,
                "GRAYWARE" => VerdictLevel::Suspicious,
                _ => VerdictLevel::Malicious,
            };
            f.worst = f.worst.max(level);
            f.verdicts.push(SourceVerdict {
                source: format!("XDR {}", v.by),
                verdict: level,
                summary: format!("{} verdict {} for {}", v.by, v.verdict, v.subject),
                link: None,
                facts: Vec::new(),
            });
        }
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
    // Flagged first; external before internal and reserved; telemetry before free text.
    let scope_rank = |s: Scope| match s {
        Scope::External => 0,
        Scope::Internal => 1,
        Scope::Reserved => 2,
    };
    indicators.sort_by(|x, y| {
        y.worst
            .cmp(&x.worst)
            .then(scope_rank(x.scope).cmp(&scope_rank(y.scope)))
            .then(x.free_text_only.cmp(&y.free_text_only))
            .then(y.seen_in.len().cmp(&x.seen_in.len()))
            .then(x.kind.cmp(&y.kind))
            .then(x.value.cmp(&y.value))
    });
    indicators
}

/// Evidence for and against "this is malicious activity", each item with its weight.
struct Weighed {
    for_malicious: Vec<(String, f64)>,
    against: Vec<(String, f64)>,
    test_asset: Option<String>,
}

impl Weighed {
    fn confidence(&self) -> f64 {
        let sum = |v: &[(String, f64)]| v.iter().map(|(_, w)| w).sum::<f64>();
        (0.5 + sum(&self.for_malicious) - sum(&self.against)).clamp(0.05, 0.95)
    }
}

fn weigh(case: &Case, indicators: &[IndicatorFinding], tactic_chain: &[String]) -> Weighed {
    let facts = &case.facts;
    let mut for_malicious = Vec::new();
    let mut against = Vec::new();
    if let Some(v) = facts.xdr_malware() {
        for_malicious.push((format!("{} verdict {} for {}", v.by, v.verdict, v.subject), 0.3));
    }
    if facts.xdr_benign_only() {
        against.push(("WildFire calls every file of the incident benign".to_string(), 0.15));
    }
    if facts.prevented > 0 {
        for_malicious.push((format!("XDR prevented or blocked {} of {} alert(s)", facts.prevented, facts.alerts_read), 0.05));
    }
    // The firewall's own verdict on a message weighs like XDR's on a file.
    if let Some(m) = facts.message.as_ref().filter(|m| m.flagged_phishing()) {
        let from = m.sender.as_deref().map_or(String::new(), |s| format!(" from {s}"));
        for_malicious.push((format!("the firewall calls the message{from} phishing"), 0.3));
    }
    // An exposure is as bad as what attackers can do with it.
    if let Some(e) = &facts.exposure {
        let weaponised: Vec<&str> = e
            .cves
            .iter()
            .filter(|c| c.exploit_maturity.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("weaponized")))
            .map(|c| c.id.as_str())
            .collect();
        if !weaponised.is_empty() {
            for_malicious.push((format!("weaponised exploits exist for {}", weaponised.join(", ")), 0.3));
        }
        if let Some(top) =
            e.cves.iter().filter_map(|c| c.epss.map(|p| (c, p))).max_by(|x, y| x.1.total_cmp(&y.1)).filter(|(_, p)| *p >= 0.5)
        {
            for_malicious.push((format!("{} has a {:.0}% EPSS exploitation probability", top.0.id, top.1 * 100.0), 0.1));
        }
    }
    let intel = |f: &&IndicatorFinding, level: VerdictLevel| {
        f.verdicts.iter().any(|v| v.verdict == level && !v.source.starts_with("XDR ")) && f.scope == Scope::External
    };
    let malicious: Vec<&IndicatorFinding> = indicators.iter().filter(|f| intel(f, VerdictLevel::Malicious)).collect();
    let suspicious: Vec<&IndicatorFinding> = indicators.iter().filter(|f| intel(f, VerdictLevel::Suspicious)).collect();
    for f in malicious.iter().take(3) {
        let by: Vec<&str> = f.verdicts.iter().filter(|v| v.verdict == VerdictLevel::Malicious).map(|v| v.source.as_str()).take(3).collect();
        for_malicious.push((format!("{} {} flagged malicious by {}", f.kind, f.value, by.join(", ")), 0.1));
    }
    for f in suspicious.iter().take(2) {
        for_malicious.push((format!("{} {} flagged suspicious", f.kind, f.value), 0.05));
    }
    if tactic_chain.iter().any(|t| t == "Impact" || t == "Credential Access" || t == "Exfiltration") {
        for_malicious.push((format!("the techniques reach {}", tactic_chain.join(" → ")), 0.05));
    }
    if !facts.automation_text.is_empty() {
        for_malicious.push(("alert text addresses automated readers, as an attacker steering a tool would".to_string(), 0.05));
    }
    // Against: intel that calls the flagged files and addresses harmless, allow-listing, silence.
    let harmless: Vec<&IndicatorFinding> = indicators
        .iter()
        .filter(|f| !f.kind.is_entity() && f.verdicts.iter().any(|v| v.verdict == VerdictLevel::Harmless && !v.source.starts_with("XDR ")))
        .collect();
    for f in harmless.iter().take(2) {
        against.push((format!("{} {} called harmless by threat intel", f.kind, f.value), 0.1));
    }
    if facts.allow_listed > 0 {
        against.push((format!("{} alert(s) on allow-listed activity", facts.allow_listed), 0.2));
    }
    let any_flag = facts.xdr_malware().is_some()
        || !malicious.is_empty()
        || !suspicious.is_empty()
        || facts.exposure.is_some()
        || facts.message.as_ref().is_some_and(|m| m.flagged_phishing());
    if !any_flag {
        against.push(("no verdict from XDR or any enrichment source flags an indicator".to_string(), 0.15));
    }
    let test_asset = indicators
        .iter()
        .filter(|f| f.kind == IndicatorKind::Hostname)
        .flat_map(|f| f.verdicts.iter().map(move |v| (f, v)))
        .find(|(_, v)| {
            let text = format!("{} {}", v.summary, v.facts.iter().map(|(k, x)| format!("{k} {x}")).collect::<Vec<_>>().join(" "))
                .to_ascii_lowercase();
            text.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| TEST_ASSET_WORDS.contains(&w))
        })
        .map(|(f, v)| format!("{} is a lab or test asset ({}: {})", f.value, v.source, clean_text(&v.summary, 120)));
    if let Some(t) = &test_asset {
        against.push((t.clone(), 0.25));
    }
    Weighed { for_malicious, against, test_asset }
}

/// Builds the dossier from the evidence alone.
pub fn deterministic(case: &Case, reports: &[SourceReport], missing_sources: &[String]) -> Dossier {
    let a = attack();
    let facts = &case.facts;
    let indicators = findings(case, reports);

    // Techniques: ATT&CK source result if present, else the embedded table directly.
    let mut techniques: Vec<Technique> = reports.iter().flat_map(|r| r.techniques.iter().cloned()).collect();
    if techniques.is_empty() {
        techniques = case.all_technique_ids().iter().filter_map(|id| a.technique(id).cloned()).collect();
    }
    techniques.sort_by_key(|t| (t.tactics.first().map_or(u32::MAX, |n| a.tactic_order(n)), t.id.clone()));
    techniques.dedup_by(|x, y| x.id == y.id);
    let named_actors = super::named_actors(&indicators);
    let attribution = super::attribute(&techniques, &named_actors);
    let tactic_chain: Vec<String> = {
        let mut t: Vec<&String> = techniques.iter().flat_map(|t| t.tactics.iter()).collect();
        t.sort_by_key(|n| a.tactic_order(n));
        t.dedup();
        t.into_iter().cloned().collect()
    };
    let weighed = weigh(case, &indicators, &tactic_chain);
    let confidence = weighed.confidence();
    let (severity, severity_reason, asset_criticality) = assess_severity(case, &indicators, &tactic_chain, &weighed);

    let hosts: Vec<String> = case.indicators.iter().filter(|i| i.kind == IndicatorKind::Hostname).map(|i| i.value.clone()).collect();
    let users: Vec<String> = case.indicators.iter().filter(|i| i.kind == IndicatorKind::User).map(|i| i.value.clone()).collect();
    let title = case.incident_name.clone().or_else(|| case.alert_names.first().cloned()).unwrap_or_else(|| case.description.clone());

    // Summary: what XDR says first, then what intel adds; ten seconds to read.
    let alerts = if facts.alerts_read > 0 && facts.alerts_read < case.alert_count {
        format!("XDR counts {} alerts ({} read)", case.alert_count, facts.alerts_read)
    } else {
        format!("{} alert(s)", case.alert_count)
    };
    let mut summary = format!(
        "Incident {} ({}, {}): \"{}\". {alerts} on {} involving {}.",
        case.key.incident_id,
        case.severity,
        facts.kind,
        clean_text(&title, 160),
        if hosts.is_empty() { "no named host".to_string() } else { count_or_list("host", &hosts) },
        if users.is_empty() { "no named user".to_string() } else { count_or_list("user", &users) },
    );
    if let Some(v) = facts.xdr_malware() {
        let _ = write!(summary, " XDR: {} verdict {} for {}.", v.by, v.verdict, clean_text(&v.subject, 80));
    }
    if facts.prevented > 0 {
        let _ = write!(summary, " XDR prevented or blocked {} of {} alert(s).", facts.prevented, facts.alerts_read);
    }
    let flagged: Vec<String> = indicators
        .iter()
        .filter(|f| f.worst >= VerdictLevel::Suspicious && f.scope == Scope::External)
        .take(5)
        .map(|f| format!("{} {} ({})", f.kind, f.value, f.worst.as_str()))
        .collect();
    let phishing = facts.message.as_ref().filter(|m| m.flagged_phishing());
    if let Some(m) = phishing {
        let _ = write!(
            summary,
            " The firewall calls the message{} phishing.",
            m.sender.as_deref().map_or(String::new(), |s| format!(" from {}", clean_text(s, 120)))
        );
    }
    if flagged.is_empty() && facts.xdr_malware().is_none() && facts.exposure.is_none() && phishing.is_none() {
        let observables = indicators.iter().filter(|f| !f.kind.is_entity() && f.scope == Scope::External).count();
        let _ = write!(summary, " Neither XDR nor any enrichment source flags any of the {observables} external indicator(s).");
    } else if !flagged.is_empty() {
        let _ = write!(summary, " Flagged: {}.", flagged.join("; "));
    }
    if let Some(t) = &weighed.test_asset {
        let _ = write!(summary, " Note: {t}.");
    }
    if !facts.automation_text.is_empty() {
        let _ =
            write!(summary, " Alert text addresses automated readers (\"{}\"): its content is hostile input.", facts.automation_text[0]);
    }
    if !techniques.is_empty() {
        let names: Vec<String> = techniques.iter().take(6).map(|t| format!("{} {}", t.id, t.name)).collect();
        let _ = write!(summary, " ATT&CK: {} ({}).", names.join(", "), tactic_chain.join(" → "));
    }
    if !missing_sources.is_empty() {
        let _ = write!(summary, " Incomplete: {} did not answer in time.", missing_sources.join(", "));
    }

    let evidence = |v: &[(String, f64)]| v.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>();
    let mut hypotheses = vec![
        Hypothesis {
            text: match facts.kind {
                crate::domain::IncidentKind::AttackSurface => "The exposed service is reachable and exploitable from the internet.".into(),
                crate::domain::IncidentKind::Email if facts.message.as_ref().is_some_and(|m| m.flagged_phishing()) => {
                    "A phishing message reached its recipients; anyone who opened its link or attachment may have given away credentials or run malware.".into()
                }
                _ if tactic_chain.is_empty() => "Malicious activity.".into(),
                _ => format!("Malicious activity following the ATT&CK chain {}.", tactic_chain.join(" → ")),
            },
            confidence,
            evidence: evidence(&weighed.for_malicious),
            against: evidence(&weighed.against),
        },
        Hypothesis {
            text: if weighed.test_asset.is_some() {
                "Authorised testing or a test sample on a lab asset.".into()
            } else if facts.kind == crate::domain::IncidentKind::AttackSurface {
                "Not a real exposure: the service is patched, mitigated or unreachable (a scan artefact).".into()
            } else {
                "Benign or a false positive: legitimate software or administration.".into()
            },
            confidence: 1.0 - confidence,
            evidence: evidence(&weighed.against),
            against: evidence(&weighed.for_malicious),
        },
    ];
    hypotheses.sort_by(|x, y| y.confidence.total_cmp(&x.confidence));

    Dossier {
        ai_generated: false,
        model: None,
        prompt_version: DETERMINISTIC_VERSION.into(),
        summary,
        severity,
        severity_reason,
        next_steps: next_steps(case, &indicators, &techniques),
        indicators,
        techniques,
        inferred: case.inferred_techniques.clone(),
        actors: attribution.groups,
        commonplace_techniques: attribution.commonplace,
        named_actors,
        hypotheses,
        sources: reports
            .iter()
            .map(|r| SourceLine { name: r.source.clone(), status: r.status, calls: r.calls, note: r.note.clone() })
            .collect(),
        missing_sources: missing_sources.to_vec(),
        suggestions: merge_suggestions(reports),
        citations: reports
            .iter()
            .flat_map(|r| r.passages.iter())
            .take(3)
            .map(|p| crate::dossier::Citation { document: p.document.clone(), section: p.section.clone(), text: p.text.clone() })
            .collect(),
        related_cases: reports.iter().flat_map(|r| r.related_cases.iter().cloned()).collect(),
        asset_criticality,
        timeline: timeline(case),
        impacted: Vec::new(),
        technique_notes: Vec::new(),
        actor_notes: Vec::new(),
        model_run: None,
    }
}

/// A merge suggestion per related case close enough to be the same intrusion.
fn merge_suggestions(reports: &[SourceReport]) -> Vec<crate::dossier::Suggestion> {
    reports
        .iter()
        .flat_map(|r| r.related_cases.iter())
        .filter(|r| r.merge)
        .take(3)
        .map(|r| crate::dossier::Suggestion {
            kind: "merge".into(),
            text: format!(
                "Merge with incident {} (score {:.2}): {}. Proposed as a gated action; nothing is merged without approval.",
                r.case.incident_id, r.score, r.reason
            ),
        })
        .collect()
}

/// The severity the evidence supports, why, and the most critical asset criticality seen.
fn assess_severity(
    case: &Case,
    indicators: &[IndicatorFinding],
    tactic_chain: &[String],
    weighed: &Weighed,
) -> (Severity, String, Option<String>) {
    let facts = &case.facts;
    let external_malicious = indicators.iter().filter(|f| f.worst == VerdictLevel::Malicious && f.scope == Scope::External).count();
    let suspicious = indicators.iter().filter(|f| f.worst == VerdictLevel::Suspicious && f.scope == Scope::External).count();
    let high_impact = tactic_chain.iter().any(|t| t == "Impact" || t == "Credential Access" || t == "Exfiltration");
    let ran = facts.prevented < facts.alerts_read;
    let (assessed, reason) = if let Some(t) = &weighed.test_asset {
        (Severity::Low, format!("{t}; intel and context point to testing"))
    } else if let Some(v) = facts.xdr_malware() {
        let blocked = if ran { "not every alert was prevented" } else { "XDR prevented every alert" };
        if ran && high_impact {
            (
                Severity::Critical,
                format!(
                    "{} verdict {} for {}, {blocked}, and the techniques reach {}",
                    v.by,
                    v.verdict,
                    v.subject,
                    tactic_chain.join(" → ")
                ),
            )
        } else {
            (Severity::High, format!("{} verdict {} for {}; {blocked}", v.by, v.verdict, v.subject))
        }
    } else if let Some(e) = facts.exposure.as_ref().filter(|e| {
        e.cves
            .iter()
            .any(|c| c.exploit_maturity.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("weaponized")) || c.cvss.unwrap_or(0.0) >= 9.0)
    }) {
        let worst = e.cves.iter().filter_map(|c| c.cvss.map(|v| (c, v))).max_by(|x, y| x.1.total_cmp(&y.1));
        (
            Severity::High,
            format!(
                "an internet-facing service with {} CVE(s){}",
                e.cves.len(),
                worst.map_or(String::new(), |(c, v)| format!(", worst {} (CVSS {v:.1})", c.id))
            ),
        )
    } else if external_malicious >= 2 && high_impact {
        (
            Severity::Critical,
            format!("{external_malicious} indicators are flagged malicious and the techniques reach {}", tactic_chain.join(" → ")),
        )
    } else if external_malicious > 0 {
        (Severity::High, format!("{external_malicious} external indicator(s) flagged malicious by threat intel"))
    } else if suspicious > 0 {
        (Severity::Medium, format!("{suspicious} external indicator(s) flagged suspicious, none malicious"))
    } else if facts.message.as_ref().is_some_and(|m| m.flagged_phishing()) {
        (case.severity, "the firewall calls the message phishing; no intel flags its sender or links yet — severity left as XDR set it until someone is known to have clicked".to_string())
    } else {
        (case.severity, "neither XDR nor any source flags an indicator; severity left as XDR set it".to_string())
    };
    // A flagged indicator on a most-critical asset (CMDB criticality 1) is one level worse.
    let asset_criticality = indicators
        .iter()
        .filter(|f| f.kind == IndicatorKind::Hostname)
        .flat_map(|f| f.verdicts.iter())
        .flat_map(|v| v.facts.iter().filter(|(k, _)| k == "criticality").map(|(_, c)| c.clone()))
        .min_by_key(|c| c.trim().chars().next().and_then(|d| d.to_digit(10)).unwrap_or(9));
    let crown_jewel = asset_criticality.as_deref().is_some_and(|c| c.trim_start().starts_with('1'));
    let (assessed, reason) = if crown_jewel && assessed >= Severity::Medium && assessed < Severity::Critical {
        (bump(assessed), format!("{reason}, on an asset of business criticality {}", asset_criticality.clone().unwrap_or_default()))
    } else {
        (assessed, reason)
    };
    // The incident's severity (an analyst's when one set it) is never lowered here, and not
    // raised for a lab asset.
    let severity = if weighed.test_asset.is_some() { case.severity } else { assessed.max(case.severity) };
    (severity, reason, asset_criticality)
}

fn count_or_list(what: &str, items: &[String]) -> String {
    if items.len() <= 4 {
        clean_text(&items.join(", "), 200)
    } else {
        format!("{} {what}s (e.g. {})", items.len(), clean_text(&items[..3].join(", "), 160))
    }
}

/// The alert groups, most severe first, as the deterministic timeline; the single alerts in time
/// order when XDR gave no groups.
fn timeline(case: &Case) -> Vec<TimelineEntry> {
    if case.facts.groups.is_empty() {
        return case
            .alerts
            .iter()
            .take(12)
            .map(|a| TimelineEntry {
                time: a.time_ms.map(format_utc).unwrap_or_else(|| "time unknown".into()),
                event: clean_text(
                    &format!("{} ({}){}", a.name, a.severity, a.host.as_ref().map_or(String::new(), |h| format!(" on {h}"))),
                    300,
                ),
            })
            .collect();
    }
    case.facts
        .groups
        .iter()
        .map(|g| {
            let mut event = format!("{}× {} ({})", g.count, g.name, g.severity);
            if let Some(p) = &g.process {
                let _ = write!(event, " — {p}");
            }
            match g.hosts {
                0 => {}
                1 => {
                    let _ = write!(event, " on {}", g.host_examples.join(""));
                }
                n => {
                    let _ = write!(event, " on {n} hosts (e.g. {})", g.host_examples.join(", "));
                }
            }
            if g.users > 1 {
                let _ = write!(event, ", {} users", g.users);
            }
            if let Some(o) = &g.outcome {
                let _ = write!(event, "; XDR: {o}");
            }
            TimelineEntry {
                time: match (g.first_ms, g.last_ms) {
                    (Some(f), Some(l)) if l > f => format!("{} – {}", format_utc(f), format_utc(l)),
                    (Some(f), _) => format_utc(f),
                    _ => "time unknown".into(),
                },
                event: clean_text(&event, 400),
            }
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
