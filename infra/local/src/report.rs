//! The report of a local run: the JSON object `dossier run --json` prints, and the text the demo prints.

use serde_json::{json, Value};

use dossier_core::domain::{Action, CaseKey, Draft, IndicatorKind};
use dossier_core::embedded::XdrWrite;
use dossier_core::stages::StageError;

use crate::backend::LocalPipeline;

/// Everything about one case after a run.
pub async fn case_report(pipeline: &LocalPipeline, key: &CaseKey, xdr_writes: &[XdrWrite]) -> Result<Value, StageError> {
    let store = &pipeline.ctx.store;
    let case = store.case(key).await?.ok_or_else(|| StageError::BadMessage(format!("no case {key}")))?.value;
    let reports = store.reports(key).await?;
    let draft: Option<Draft> = match &case.draft_id {
        Some(id) => store.draft(key, id).await?.map(|d| d.value),
        None => None,
    };
    let dossier = store.dossier(key).await?;
    let (related, suggestions) = match &dossier {
        Some(d) => (
            d.related_cases
                .iter()
                .map(|r| json!({"incident_id": r.case.incident_id, "score": r.score, "shared": r.shared_indicators, "shared_techniques": r.shared_techniques, "hours_apart": r.hours_apart, "merge": r.merge}))
                .collect::<Vec<_>>(),
            d.suggestions.iter().map(|s| json!({"kind": s.kind, "text": s.text})).collect::<Vec<_>>(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let actions: Vec<Action> = store.actions(key).await?.into_iter().map(|a| a.value).collect();
    let indicators: Vec<Value> = case
        .indicators
        .iter()
        .filter(|i| i.kind != IndicatorKind::Process)
        .map(|i| {
            let verdicts: Vec<Value> = reports
                .iter()
                .flat_map(|r| {
                    r.verdicts
                        .iter()
                        .filter(|v| v.kind == i.kind && v.value == i.value)
                        .map(move |v| json!({"source": r.source, "verdict": v.verdict.as_str(), "summary": v.summary}))
                })
                .collect();
            json!({"type": i.kind.as_str(), "value": i.value, "internal": i.internal, "seen_in": i.seen_in, "verdicts": verdicts})
        })
        .collect();
    let techniques: Vec<Value> = match &dossier {
        Some(d) => d
            .techniques
            .iter()
            .map(|t| {
                let inferred = d.inferred.iter().find(|i| i.id == t.id);
                json!({"id": t.id, "name": t.name, "tactics": t.tactics, "inferred": inferred.is_some(), "rule": inferred.map(|i| &i.rule), "evidence": inferred.map(|i| &i.evidence)})
            })
            .collect(),
        None => case.techniques.iter().map(|id| json!({"id": id, "name": null, "tactics": []})).collect(),
    };
    let mut sources: Vec<Value> = case
        .expected_sources
        .iter()
        .map(|name| match reports.iter().find(|r| &r.source == name) {
            Some(r) => json!({"name": r.source, "status": r.status.as_str(), "calls": r.calls, "latency_ms": r.latency_ms, "note": r.note}),
            None => json!({"name": name, "status": "missing", "calls": 0, "latency_ms": null, "note": "no answer before synthesis"}),
        })
        .collect();
    sources.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let dossier = match (&dossier, &draft) {
        (Some(d), Some(draft)) => Some(json!({
            "ai_generated": d.ai_generated,
            "model": d.model,
            "prompt_version": d.prompt_version,
            "model_run": d.model_run,
            "timeline": d.timeline,
            "impacted": d.impacted,
            "summary": d.summary,
            "severity": d.severity.as_str(),
            "hypotheses": d.hypotheses.iter().map(|h| json!({"text": h.text, "confidence": h.confidence, "evidence": h.evidence})).collect::<Vec<_>>(),
            "actors": d.actors.iter().map(|g| json!({"id": g.id, "name": g.name, "score": g.score, "shared": g.shared, "drivers": g.drivers, "named_by": g.named_by})).collect::<Vec<_>>(),
            "commonplace_techniques": d.commonplace_techniques,
            "named_actors": d.named_actors,
            "citations": d.citations,
            "next_steps": d.next_steps.iter().map(|n| json!({"text": n.text, "xql": n.xql})).collect::<Vec<_>>(),
            "missing_sources": d.missing_sources,
            "comment": draft.comment,
            "comment_status": draft.status.as_str(),
        })),
        _ => None,
    };
    let actions: Vec<Value> = actions
        .iter()
        .map(|a| {
            json!({
                "id": a.id, "kind": a.kind.as_str(), "target": a.target, "target_label": a.target_label,
                "rationale": a.rationale, "status": a.status.as_str(), "end_reason": a.end_reason,
                "approval_url": a.links.first().map(|l| l.url.clone()),
                "approvals": a.links.iter().map(|l| json!({"approver": l.approver, "url": l.url, "expires_at_ms": l.expires_at_ms})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let incident_id = &key.incident_id;
    let writes: Vec<Value> = xdr_writes
        .iter()
        .filter(|w| w.body.pointer("/request_data/incident_id").and_then(Value::as_str) == Some(incident_id.as_str()))
        .map(|w| json!({"endpoint": w.endpoint, "body": w.body}))
        .collect();
    // The hunt's campaign proposals reach a case after its dossier: from its audit trail.
    let mut suggestions = suggestions;
    suggestions.extend(
        store
            .events(key)
            .await?
            .into_iter()
            .filter(|e| e.event == "campaign.suggested")
            .map(|e| json!({"kind": "campaign", "text": e.detail})),
    );
    Ok(json!({
        "case": {"tenant": key.tenant, "incident_id": key.incident_id, "status": case.status.as_str(), "failure": case.failure, "severity": case.severity.as_str(), "alert_count": case.alert_count, "resolution": case.resolution},
        "indicators": indicators,
        "techniques": techniques,
        "sources": sources,
        "dossier": dossier,
        "actions": actions,
        "related": related,
        "suggestions": suggestions,
        "xdr_writes": writes,
        "warnings": case.parse_warnings,
    }))
}

/// The full dossier of a case as an HTML page.
pub async fn html_page(pipeline: &LocalPipeline, key: &CaseKey) -> Result<String, StageError> {
    let store = &pipeline.ctx.store;
    let case = store.case(key).await?.ok_or_else(|| StageError::BadMessage(format!("no case {key}")))?.value;
    let dossier = store.dossier(key).await?.ok_or_else(|| StageError::BadMessage("no dossier yet".into()))?;
    let actions: Vec<Action> = store.actions(key).await?.into_iter().map(|a| a.value).collect();
    Ok(dossier_core::dossier::render_html(&case, &dossier, &actions))
}
