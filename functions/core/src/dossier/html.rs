//! The full dossier as one self-contained HTML page (no scripts, no external assets), with the
//! attack timeline. Every value is escaped: alert text is attacker-controlled.

use std::fmt::Write as _;

use crate::domain::{Action, Case};
use crate::dossier::{Dossier, LABEL_AI, LABEL_NO_AI};
use crate::http::escape_html as e;

pub fn render_html(case: &Case, d: &Dossier, actions: &[Action]) -> String {
    let mut s = String::new();
    let label = if d.ai_generated { LABEL_AI } else { LABEL_NO_AI };
    let _ = write!(
        s,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Dossier · incident {id}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:1.5rem auto;padding:0 1rem;line-height:1.45;color:#1a1a1a}}
.label{{display:inline-block;padding:.2rem .6rem;border-radius:.3rem;background:#fff3cd}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:.3rem;text-align:left;vertical-align:top}}.malicious{{color:#a4262c;font-weight:bold}}.suspicious{{color:#9a5b00}}
ol.timeline{{border-left:3px solid #555;list-style:none;padding-left:1rem}}ol.timeline li{{margin:.4rem 0}}code{{white-space:pre-wrap;word-break:break-all}}</style></head><body>
<h1>Incident {id} <small>({tenant})</small></h1><p class="label">{label}</p>"#,
        id = e(&case.key.incident_id),
        tenant = e(&case.key.tenant),
        label = e(label)
    );
    if let Some(run) = &d.model_run {
        let _ = write!(
            s,
            "<p>Model {} · prompt {} ({}){}</p>",
            e(&run.model),
            e(&run.prompt_version),
            e(&run.prompt_hash),
            run.rejected.as_deref().map_or(String::new(), |r| format!(" · answer not used: {}", e(r)))
        );
    }
    let _ = write!(
        s,
        "<h2>Summary</h2><p>{}</p><p><strong>Severity: {}</strong> — {}</p>",
        e(&d.summary),
        e(d.severity.as_str()),
        e(&d.severity_reason)
    );
    if !d.timeline.is_empty() {
        let _ = write!(s, "<h2>Attack timeline</h2><ol class=\"timeline\">");
        for t in &d.timeline {
            let _ = write!(s, "<li><time>{}</time> — {}</li>", e(&t.time), e(&t.event));
        }
        s.push_str("</ol>");
    }
    if !d.hypotheses.is_empty() {
        s.push_str("<h2>Hypotheses</h2><ul>");
        for h in &d.hypotheses {
            let _ = write!(
                s,
                "<li>{:.0}% — {}{}</li>",
                h.confidence * 100.0,
                e(&h.text),
                if h.evidence.is_empty() { String::new() } else { format!(" <small>({})</small>", e(&h.evidence.join(", "))) }
            );
        }
        s.push_str("</ul>");
    }
    s.push_str("<h2>Indicators</h2><table><tr><th>type</th><th>value</th><th>scope</th><th>verdicts</th></tr>");
    for f in d.indicators.iter().take(200) {
        let verdicts: Vec<String> = f
            .verdicts
            .iter()
            .map(|v| format!("{}: <span class=\"{}\">{}</span> — {}", e(&v.source), v.verdict.as_str(), v.verdict.as_str(), e(&v.summary)))
            .collect();
        let _ = write!(
            s,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            f.kind,
            e(&f.value),
            if f.internal { "internal" } else { "external" },
            verdicts.join("<br>")
        );
    }
    s.push_str("</table>");
    if !d.techniques.is_empty() {
        s.push_str("<h2>ATT&amp;CK</h2><ul>");
        for t in &d.techniques {
            let note = d.technique_notes.iter().find(|(id, _)| *id == t.id).map_or(String::new(), |(_, n)| format!(" — {}", e(n)));
            let _ = write!(s, "<li><strong>{}</strong> {} ({}){}</li>", e(&t.id), e(&t.name), e(&t.tactics.join(", ")), note);
        }
        s.push_str("</ul>");
    }
    if !d.next_steps.is_empty() {
        s.push_str("<h2>Next steps</h2><ol>");
        for n in &d.next_steps {
            let _ = write!(s, "<li>{}{}</li>", e(&n.text), n.xql.as_ref().map_or(String::new(), |x| format!("<br><code>{}</code>", e(x))));
        }
        s.push_str("</ol>");
    }
    if !actions.is_empty() {
        s.push_str("<h2>Proposed actions (approval required)</h2><ul>");
        for a in actions {
            let _ =
                write!(s, "<li>{} on {} — {} [{}]</li>", e(a.kind.describe()), e(&a.target_label), e(&a.rationale), e(a.status.as_str()));
        }
        s.push_str("</ul>");
    }
    s.push_str("<h2>Sources</h2><ul>");
    for src in &d.sources {
        let _ = write!(
            s,
            "<li>{}: {} ({} calls){}</li>",
            e(&src.name),
            e(src.status.as_str()),
            src.calls,
            src.note.as_deref().map_or(String::new(), |n| format!(" — {}", e(n)))
        );
    }
    s.push_str("</ul></body></html>");
    s
}
