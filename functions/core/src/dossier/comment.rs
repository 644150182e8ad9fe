//! The plain-text comment written to the XDR incident.

use std::fmt::Write as _;

use crate::domain::{Action, Case, CaseKey};
use crate::dossier::{Dossier, IndicatorFinding};
use crate::text::clean_text;
use crate::timefmt::format_utc;

/// Longest comment written to XDR; longer dossiers are cut with a note.
pub const MAX_COMMENT_CHARS: usize = 12_000;
pub const LABEL_AI: &str = "AI-generated — pending analyst review";
pub const LABEL_NO_AI: &str = "Automated summary (no AI)";

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
        let _ = writeln!(s, "\nATT&CK (v{})", crate::domain::ATTACK_VERSION);
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
    let footer = format!("\n{} generated {}", draft_marker(&case.key, draft_id), format_utc(case.received_at_ms));
    let budget = MAX_COMMENT_CHARS - footer.chars().count() - 40;
    if s.chars().count() > budget {
        s = s.chars().take(budget).collect();
        s.push_str("\n… (cut to fit the XDR comment limit)");
    }
    s.push_str(&footer);
    s
}

/// The marker written into each comment: lets a retry recognise a comment already posted.
pub fn draft_marker(key: &CaseKey, draft_id: &str) -> String {
    format!("[dossier:{}:{draft_id}]", key.storage_id())
}
