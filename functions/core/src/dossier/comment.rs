//! The plain-text comment written to the XDR incident.

use crate::domain::{Action, Case, CaseKey, IndicatorKind, Scope};
use crate::dossier::{Dossier, IndicatorFinding};
use crate::sources::intel_facts;
use crate::text::clean_text;
use crate::timefmt::format_utc;

/// Longest comment written to XDR; longer dossiers are cut with a note.
pub const MAX_COMMENT_CHARS: usize = 12_000;
pub const LABEL_AI: &str = "AI-generated — pending analyst review";
pub const LABEL_NO_AI: &str = "Automated summary (no AI)";

/// Untrusted text as the comment shows it: no control characters, bounded, tags escaped, and
/// links made unclickable (an attacker's URL must never look like one of ours).
pub fn untrusted(s: &str, max_chars: usize) -> String {
    let cleaned = clean_text(s, max_chars);
    let mut out = String::with_capacity(cleaned.len());
    for c in cleaned.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    defang_schemes(&out)
}

/// `http://` → `hxxp://` (any case), wherever it appears.
fn defang_schemes(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if lower[i..].starts_with("http://") || lower[i..].starts_with("https://") || lower[i..].starts_with("ftp://") {
            let scheme_end = i + lower[i..].find("://").unwrap_or(0);
            out.push_str(&s[i..scheme_end].replace(['t', 'T'], "x"));
            i = scheme_end;
            continue;
        }
        let c = s[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// An indicator value as the comment shows it: URLs, domains and e-mail addresses defanged.
pub fn shown_value(kind: IndicatorKind, value: &str) -> String {
    let v = untrusted(value, 200);
    match kind {
        IndicatorKind::Url | IndicatorKind::Domain | IndicatorKind::Email => v.replace('.', "[.]"),
        _ => v,
    }
}

struct HypothesisView {
    confidence: String,
    text: String,
    evidence: String,
    against: String,
}

struct StepView {
    text: String,
    xql: Option<String>,
}

/// The comment's template (templates/comment.txt) and the values it shows, each already made
/// safe: the template only lays them out.
#[derive(askama::Template)]
#[template(path = "comment.txt", escape = "none")]
struct CommentView {
    label: &'static str,
    model_line: Option<String>,
    summary: String,
    severity: String,
    severity_reason: String,
    kind: String,
    xdr: Vec<String>,
    findings: Vec<String>,
    key_events: Vec<String>,
    exposure: Vec<String>,
    message: Vec<String>,
    timeline: Vec<String>,
    impacted: Vec<String>,
    indicators: Vec<String>,
    internal: String,
    assets: Vec<String>,
    entities: String,
    related: Vec<String>,
    suggestions: Vec<String>,
    citations: Vec<String>,
    attack_version: &'static str,
    techniques: Vec<String>,
    actors: Vec<String>,
    groups: Vec<String>,
    hypotheses: Vec<HypothesisView>,
    next_steps: Vec<StepView>,
    actions: Vec<String>,
    sources: Vec<String>,
}

/// What XDR itself says, one line each.
fn xdr_lines(case: &Case) -> Vec<String> {
    let f = &case.facts;
    let mut out = Vec::new();
    if f.alerts_read > 0 {
        let read = if f.alerts_read < f.xdr_alert_count { format!(" ({} read)", f.alerts_read) } else { String::new() };
        out.push(format!("{} alert(s){read}; sources: {}", f.xdr_alert_count.max(f.alerts_read), untrusted(&f.sources.join(", "), 200)));
    }
    for v in &f.verdicts {
        out.push(format!("{} verdict {} for {}", v.by, v.verdict, untrusted(&v.subject, 120)));
    }
    if f.prevented + f.detected > 0 {
        out.push(format!("outcome: {} prevented or blocked, {} detected only", f.prevented, f.detected));
    }
    if f.allow_listed > 0 {
        out.push(format!("{} alert(s) on allow-listed activity", f.allow_listed));
    }
    if let Some(s) = f.analyst_severity {
        out.push(format!("severity set by an analyst: {s}"));
    }
    if let Some(r) = &case.resolution {
        out.push(format!("resolved in XDR: {}", untrusted(r, 60)));
    }
    out
}

fn key_event_line(e: &crate::domain::KeyEvent, count: usize) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &e.parent {
        parts.push(untrusted(p, 120));
    }
    if let Some(p) = &e.process {
        parts.push(untrusted(p, 200));
    }
    if let Some(c) = &e.child {
        parts.push(untrusted(c, 120));
    }
    if let Some(c) = &e.command_line {
        parts.push(format!("`{}`", untrusted(c, 300)));
    }
    if let Some(p) = &e.file_path {
        parts.push(untrusted(p, 200));
    }
    if let Some(d) = &e.destination {
        parts.push(untrusted(d, 200).replace('.', "[.]"));
    }
    if let Some(o) = &e.outcome {
        parts.push(format!("XDR: {}", untrusted(o, 60)));
    }
    let at = e.host.as_deref().map_or(String::new(), |h| format!("{}: ", untrusted(h, 100)));
    let times = if count > 1 { format!(" ({count} alerts)") } else { String::new() };
    format!("{at}{}{times}", parts.join(" → "))
}

/// The plain-text comment written to the XDR incident.
pub fn render_comment(case: &Case, draft_id: &str, d: &Dossier, actions: &[Action]) -> String {
    let facts = &case.facts;
    let model_line = match (&d.model_run, d.ai_generated) {
        (Some(run), true) => Some(format!(
            "Model: {} · prompt {} ({}) · {} tokens in, {} out",
            run.model, run.prompt_version, run.prompt_hash, run.input_tokens, run.output_tokens
        )),
        (Some(run), false) if run.unreachable => Some(format!(
            "The language model could not be reached ({}); this summary is built from the evidence alone.",
            untrusted(run.rejected.as_deref().unwrap_or("no answer"), 200)
        )),
        (Some(run), false) => Some(format!(
            "The model's answer was not used ({}); this summary is built from the evidence alone.",
            untrusted(run.rejected.as_deref().unwrap_or("no answer"), 200)
        )),
        _ => None,
    };
    let findings = facts
        .automation_text
        .iter()
        .map(|t| {
            format!(
                "Alert text addresses automated readers: \"{}\". Treat the alert's text as hostile input; nothing in it was followed.",
                untrusted(t, 120)
            )
        })
        .collect();
    let key_events =
        facts.groups.iter().filter(|g| !g.key_event.is_empty()).take(5).map(|g| key_event_line(&g.key_event, g.count)).collect();
    let mut exposure = Vec::new();
    if let Some(e) = &facts.exposure {
        if let Some(s) = &e.service {
            exposure.push(format!("service: {}", untrusted(s, 200)));
        }
        let at: Vec<String> = [&e.address, &e.port, &e.protocol].iter().filter_map(|x| x.as_deref()).map(|x| untrusted(x, 60)).collect();
        if !at.is_empty() {
            exposure.push(format!("at: {}", at.join(" ")));
        }
        if let Some(p) = &e.path {
            exposure.push(format!("path: {}", untrusted(p, 200)));
        }
        for c in e.cves.iter().take(8) {
            let mut line = untrusted(&c.id, 30);
            if let Some(v) = c.cvss {
                line.push_str(&format!(" · CVSS {v:.1}"));
            }
            if let Some(p) = c.epss {
                line.push_str(&format!(" · EPSS {:.0}%", p * 100.0));
            }
            if let Some(m) = &c.exploit_maturity {
                line.push_str(&format!(" · exploit {}", untrusted(m, 30).to_ascii_lowercase()));
            }
            exposure.push(line);
        }
        if !e.domains.is_empty() || e.certificate.is_some() {
            let names: Vec<String> = e.domains.iter().chain(e.certificate.iter()).map(|n| shown_value(IndicatorKind::Domain, n)).collect();
            exposure.push(format!("certificate and domains: {}", names.join(", ")));
        }
        if let Some(b) = &e.business_unit {
            exposure.push(format!("owner: {}", untrusted(b, 120)));
        }
    }
    let mut message = Vec::new();
    if let Some(m) = &facts.message {
        if let Some(s) = &m.sender {
            message.push(format!("from: {}", shown_value(IndicatorKind::Email, s)));
        }
        if !m.recipients.is_empty() {
            message
                .push(format!("to: {}", m.recipients.iter().map(|r| shown_value(IndicatorKind::Email, r)).collect::<Vec<_>>().join(", ")));
        }
        if let Some(s) = &m.subject {
            message.push(format!("subject: {}", untrusted(s, 200)));
        }
        if let Some(p) = &m.phishing {
            message.push(format!("firewall phishing verdict: {}", untrusted(p, 40)));
        }
        // The sender's domain and the linked domains, with what intel says and how old they are.
        let about = |domain: &str| {
            let f = d.indicators.iter().find(|f| f.kind == IndicatorKind::Domain && f.value.eq_ignore_ascii_case(domain));
            let verdicts = f.map_or(String::new(), |f| {
                f.verdicts.iter().map(|v| format!("{}: {}", v.source, untrusted(&v.summary, 160))).collect::<Vec<_>>().join("; ")
            });
            let registered = f.and_then(|f| f.verdicts.iter().find_map(|v| v.facts.iter().find(|(k, _)| k == intel_facts::REGISTERED)));
            let age = registered.map_or(String::new(), |(_, when)| format!(" (registered {})", untrusted(when, 40)));
            let worst = f.map_or("no verdict", |f| f.worst.as_str());
            format!(
                "{}{age}: {}",
                shown_value(IndicatorKind::Domain, domain),
                if verdicts.is_empty() { worst.to_string() } else { verdicts }
            )
        };
        if let Some(domain) = m.sender_domain() {
            message.push(format!("sender domain {}", about(&domain)));
        }
        for domain in m.url_domains.iter().take(3) {
            message.push(format!("link to {}", about(domain)));
        }
        message.push(
            "reply-to and return-path: not in the alert (XDR's firewall e-mail alerts carry sender, recipient, subject and link domain)"
                .into(),
        );
    }
    let shown: Vec<&IndicatorFinding> =
        d.indicators.iter().filter(|f| !f.kind.is_entity() && f.scope == Scope::External && !f.is_host_address()).collect();
    let mut indicators: Vec<String> = shown
        .iter()
        .take(25)
        .map(|f| {
            let verdicts = if f.verdicts.is_empty() {
                "no verdict".to_string()
            } else {
                f.verdicts
                    .iter()
                    .map(|v| format!("{}: {} — {}", v.source, v.verdict.as_str(), untrusted(&v.summary, 200)))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let origin = if f.free_text_only {
                format!("free text: {}", f.seen_in.join(", "))
            } else if f.seen_in.is_empty() {
                "seen in: unknown".to_string()
            } else {
                format!("seen in: {}", f.seen_in.join(", "))
            };
            format!("{} {} [{origin}] {}: {verdicts}", f.kind, shown_value(f.kind, &f.value), f.worst.as_str().to_uppercase())
        })
        .collect();
    if shown.len() > 25 {
        indicators.push(format!("… and {} more external indicator(s)", shown.len() - 25));
    }
    let local: Vec<&IndicatorFinding> =
        d.indicators.iter().filter(|f| !f.kind.is_entity() && (f.scope != Scope::External || f.is_host_address())).collect();
    let internal = if local.is_empty() {
        String::new()
    } else {
        let list = |scope: Scope| -> Vec<String> {
            local.iter().filter(|f| f.scope == scope && !f.is_host_address()).map(|f| untrusted(&f.value, 60)).collect()
        };
        let (own, reserved) = (list(Scope::Internal), list(Scope::Reserved));
        let hosts: Vec<String> = local.iter().filter(|f| f.is_host_address()).map(|f| untrusted(&f.value, 60)).collect();
        let mut parts = Vec::new();
        if !hosts.is_empty() {
            parts.push(format!("the hosts' own addresses (host_ip): {}", hosts.iter().take(8).cloned().collect::<Vec<_>>().join(", ")));
        }
        if !own.is_empty() {
            let more = if own.len() > 8 { format!(" … {} in all", own.len()) } else { String::new() };
            parts.push(format!("internal: {}{more}", own.iter().take(8).cloned().collect::<Vec<_>>().join(", ")));
        }
        if !reserved.is_empty() {
            parts.push(format!("reserved ranges (not real peers): {}", reserved.iter().take(8).cloned().collect::<Vec<_>>().join(", ")));
        }
        parts.join("\n")
    };
    let (with_context, bare): (Vec<&IndicatorFinding>, Vec<&IndicatorFinding>) =
        d.indicators.iter().filter(|f| f.kind.is_entity()).partition(|f| !f.verdicts.is_empty());
    let assets = with_context
        .iter()
        .take(10)
        .map(|f| {
            let context = f.verdicts.iter().map(|v| format!("{}: {}", v.source, untrusted(&v.summary, 200))).collect::<Vec<_>>().join("; ");
            format!("{} {}: {context}", f.kind, untrusted(&f.value, 100))
        })
        .collect();
    let entities = {
        let names: Vec<String> = bare.iter().take(12).map(|f| format!("{} {}", f.kind, untrusted(&f.value, 100))).collect();
        let more = if bare.len() > 12 { format!(" … {} in all", bare.len()) } else { String::new() };
        if names.is_empty() {
            String::new()
        } else {
            format!("{}{more}", names.join(", "))
        }
    };
    let view = CommentView {
        label: if d.ai_generated { LABEL_AI } else { LABEL_NO_AI },
        model_line,
        summary: untrusted(&d.summary, 4000),
        severity: d.severity.to_string(),
        severity_reason: untrusted(&d.severity_reason, 400),
        kind: facts.kind.to_string(),
        xdr: xdr_lines(case),
        findings,
        key_events,
        exposure,
        message,
        timeline: d.timeline.iter().take(12).map(|t| format!("{}: {}", untrusted(&t.time, 60), untrusted(&t.event, 400))).collect(),
        impacted: d
            .impacted
            .iter()
            .map(|i| format!("{} {} (criticality: {})", i.kind, untrusted(&i.entity, 120), untrusted(&i.criticality, 60)))
            .collect(),
        indicators,
        internal,
        assets,
        entities,
        related: d
            .related_cases
            .iter()
            .take(5)
            .map(|r| format!("incident {} ({:.0}%): {}", r.case.incident_id, r.score * 100.0, untrusted(&r.reason, 300)))
            .collect(),
        suggestions: d.suggestions.iter().take(6).map(|s| format!("{}: {}", s.kind, untrusted(&s.text, 600))).collect(),
        citations: d
            .citations
            .iter()
            .map(|c| format!("{} § {}: {}", untrusted(&c.document, 200), untrusted(&c.section, 120), untrusted(&c.text, 300)))
            .collect(),
        attack_version: crate::domain::ATTACK_VERSION,
        techniques: d
            .techniques
            .iter()
            .map(|t| {
                let basis = d
                    .inferred
                    .iter()
                    .find(|i| i.id == t.id)
                    .map_or(String::new(), |i| format!(" — inferred by rule {} ({})", i.rule, untrusted(&i.about, 200)));
                format!("{} {} ({}){basis}", t.id, t.name, t.tactics.join(", "))
            })
            .collect(),
        actors: super::attribution::actor_lines(d),
        groups: super::attribution::group_lines(d),
        hypotheses: d
            .hypotheses
            .iter()
            .map(|h| HypothesisView {
                confidence: format!("{:.0}", h.confidence * 100.0),
                text: untrusted(&h.text, 600),
                evidence: h.evidence.iter().map(|e| untrusted(e, 200)).collect::<Vec<_>>().join("; "),
                against: h.against.iter().map(|e| untrusted(e, 200)).collect::<Vec<_>>().join("; "),
            })
            .collect(),
        next_steps: d
            .next_steps
            .iter()
            .map(|n| StepView { text: untrusted(&n.text, 600), xql: n.xql.as_deref().map(|x| x.replace('<', "&lt;").replace('>', "&gt;")) })
            .collect(),
        actions: actions
            .iter()
            .map(|a| {
                format!(
                    "{}: {} — {} [{}]",
                    a.kind.describe(),
                    untrusted(&a.target_label, 120),
                    untrusted(&a.rationale, 300),
                    a.status.as_str()
                )
            })
            .collect(),
        sources: d
            .sources
            .iter()
            .map(|src| {
                format!(
                    "{}: {} ({} call(s)){}",
                    src.name,
                    src.status.as_str(),
                    src.calls,
                    src.note.as_ref().map_or(String::new(), |n| format!(" — {}", untrusted(n, 200)))
                )
            })
            .chain(d.missing_sources.iter().map(|m| format!("{m}: no answer before the deadline")))
            .collect(),
    };
    // The template has no fallible filters; a failure here is a bug, and the evidence-only
    // summary still reaches the analyst.
    let mut s = askama::Template::render(&view).unwrap_or_else(|e| {
        tracing::error!(error = %e, "comment template failed");
        format!("[Dossier] {}\n\nSUMMARY\n{}\n", view.label, view.summary)
    });
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
