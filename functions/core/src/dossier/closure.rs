//! The closure draft: when XDR marks an incident resolved, Dossier drafts the resolve comment for
//! the analyst: root cause, lessons learned, and an executive summary mapped to NIST CSF 2.0
//! functions and CIS Controls v8. Built from the evidence (labelled as not AI-written).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::domain::{Action, ActionStatus, Case};
use crate::dossier::Dossier;
use crate::text::clean_text;
use crate::timefmt::format_utc;

pub const CLOSURE_DRAFT_ID: &str = "closure-1";

/// CIS Controls v8 (control number, title) that address each ATT&CK tactic.
fn cis_for(tactic: &str) -> &'static [(u8, &'static str)] {
    match tactic {
        "Reconnaissance" | "Resource Development" => &[(12, "Network Infrastructure Management")],
        "Initial Access" => &[
            (9, "Email and Web Browser Protections"),
            (14, "Security Awareness and Skills Training"),
            (7, "Continuous Vulnerability Management"),
        ],
        "Execution" => &[(2, "Inventory and Control of Software Assets"), (10, "Malware Defenses")],
        "Persistence" => &[(4, "Secure Configuration of Enterprise Assets and Software"), (5, "Account Management")],
        "Privilege Escalation" => &[(7, "Continuous Vulnerability Management"), (6, "Access Control Management")],
        "Defense Evasion" => &[(8, "Audit Log Management"), (10, "Malware Defenses")],
        "Credential Access" => &[(6, "Access Control Management"), (5, "Account Management")],
        "Discovery" | "Lateral Movement" => &[(12, "Network Infrastructure Management"), (13, "Network Monitoring and Defense")],
        "Collection" | "Exfiltration" => &[(3, "Data Protection"), (13, "Network Monitoring and Defense")],
        "Command and Control" => &[(9, "Email and Web Browser Protections"), (13, "Network Monitoring and Defense")],
        "Impact" => &[(11, "Data Recovery"), (17, "Incident Response Management")],
        _ => &[(17, "Incident Response Management")],
    }
}

/// Renders the closure draft. `resolution` is XDR's status (`resolved_true_positive`, ...).
pub fn render_closure(case: &Case, dossier: Option<&Dossier>, actions: &[Action], resolution: &str) -> String {
    let mut s = String::new();
    let true_positive = resolution.contains("true_positive") || resolution.contains("threat_handled");
    let _ = writeln!(s, "[Dossier] Closure draft — Automated summary (no AI) — pending analyst review");
    let _ = writeln!(s, "Resolution in XDR: {}", clean_text(resolution, 60));

    let tactics: Vec<String> = dossier
        .map(|d| {
            let mut t: Vec<String> = d.techniques.iter().flat_map(|t| t.tactics.iter().cloned()).collect();
            t.dedup();
            t
        })
        .unwrap_or_default();
    let flagged: Vec<String> = dossier
        .map(|d| {
            d.indicators
                .iter()
                .filter(|f| f.worst >= crate::sources::VerdictLevel::Suspicious)
                .take(5)
                .map(|f| format!("{} {}", f.kind, f.value))
                .collect()
        })
        .unwrap_or_default();
    let hosts: Vec<&str> = case.endpoints.iter().filter_map(|e| e.host_name.as_deref()).collect();

    let _ = writeln!(s, "\nEXECUTIVE SUMMARY");
    let when = case.first_alert_ms.or(case.hint.created_at_ms).map(format_utc).unwrap_or_else(|| "an unknown time".into());
    let _ = writeln!(
        s,
        "{} incident {} began at {when} on {}. {} {}",
        if true_positive { "Confirmed" } else { "Resolved" },
        case.key.incident_id,
        if hosts.is_empty() { "no named host".to_string() } else { hosts.join(", ") },
        if flagged.is_empty() {
            "No indicator was flagged by threat intelligence.".to_string()
        } else {
            format!("Indicators involved: {}.", flagged.join("; "))
        },
        if tactics.is_empty() { String::new() } else { format!("The activity spanned {}.", tactics.join(" → ")) }
    );
    let executed: Vec<String> = actions
        .iter()
        .filter(|a| a.status == ActionStatus::Executed)
        .map(|a| format!("{} on {}", a.kind.describe(), a.target_label))
        .collect();
    if !executed.is_empty() {
        let _ = writeln!(s, "Response actions taken through Dossier: {}.", executed.join("; "));
    }

    let _ = writeln!(s, "\nROOT CAUSE (draft — confirm before resolving)");
    let root =
        dossier.and_then(|d| d.hypotheses.iter().max_by(|a, b| a.confidence.total_cmp(&b.confidence))).map(|h| clean_text(&h.text, 400));
    let initial = dossier
        .and_then(|d| d.techniques.iter().find(|t| t.tactics.iter().any(|x| x == "Initial Access")))
        .map(|t| format!(" Entry point: {} {}.", t.id, t.name));
    let _ = writeln!(
        s,
        "{}{}",
        root.unwrap_or_else(|| "The evidence does not establish a root cause; record the analyst's finding.".into()),
        initial.unwrap_or_default()
    );

    let _ = writeln!(s, "\nLESSONS LEARNED (CIS Controls v8)");
    let mut controls: BTreeSet<(u8, &str)> = BTreeSet::new();
    for t in &tactics {
        controls.extend(cis_for(t).iter().copied());
    }
    if controls.is_empty() {
        controls.insert((17, "Incident Response Management"));
    }
    for (n, title) in &controls {
        let _ = writeln!(s, "- CIS {n} {title}: review the safeguards that would have prevented or shortened this incident.");
    }

    let _ = writeln!(s, "\nNIST CSF 2.0");
    let _ = writeln!(
        s,
        "- DETECT (DE.CM, DE.AE): detected by {} alert(s){}.",
        case.alert_count,
        case.alert_names.first().map_or(String::new(), |n| format!(", first \"{}\"", clean_text(n, 100)))
    );
    let _ = writeln!(
        s,
        "- RESPOND (RS.AN, RS.MI): {}",
        if executed.is_empty() {
            "no containment action ran through Dossier; record what the team did.".to_string()
        } else {
            format!("{}.", executed.join("; "))
        }
    );
    let _ = writeln!(s, "- RECOVER (RC.RP): confirm affected assets are restored and monitored.");
    let _ =
        writeln!(s, "- PROTECT (PR.AA, PR.PS, PR.AT): {}", controls.iter().map(|(n, _)| format!("CIS {n}")).collect::<Vec<_>>().join(", "));
    let _ =
        writeln!(s, "- IDENTIFY (ID.RA) / GOVERN (GV.OV): feed the root cause into the risk register; track the lessons above to closure.");
    // Suggestions for the detection engineers and the playbook owners, from what the case showed.
    let detection = dossier.and_then(super::playbook::detection_draft);
    let steps: Vec<String> = dossier.map(|d| d.next_steps.iter().take(3).map(|n| clean_text(&n.text, 200)).collect()).unwrap_or_default();
    if detection.is_some() || !steps.is_empty() || !executed.is_empty() {
        let _ = writeln!(s, "\nSUGGESTIONS FOR REVIEW (drafted from this case; nothing is deployed)");
        if let Some(rule) = detection {
            let techniques = dossier.map(|d| d.techniques.iter().map(|t| t.id.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default();
            let _ = writeln!(s, "- Detection rule draft (XQL, for a correlation or BIOC rule; techniques {techniques}):\n   {rule}");
        }
        if !steps.is_empty() || !executed.is_empty() {
            let _ = writeln!(
                s,
                "- Playbook update: the steps this case called for were: {}{}. Keep the ones that proved useful in the runbook for this kind of incident.",
                steps.join("; "),
                if executed.is_empty() { String::new() } else { format!("; response: {}", executed.join("; ")) }
            );
        }
    }
    let _ = writeln!(s, "\n{}", super::draft_marker(&case.key, CLOSURE_DRAFT_ID));
    s
}
