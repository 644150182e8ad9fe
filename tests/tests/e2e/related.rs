//! Related cases: a second incident sharing indicators with an earlier one names it, with the reason.

use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

use dossier_core::config::PipelineConfig;
use dossier_core::domain::{ActionKind, ActionStatus, Case, CaseKey, IncidentHint, Trigger};
use dossier_core::embedded::RecordingXdr;
use dossier_core::messages::Message;
use dossier_core::ports::{Clock, QueueName, SystemClock};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::RelatedCases;
use dossier_core::sources::{AttackSource, Source};
use dossier_core::stages::{open_case, HttpHandler};
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};

fn reply(id: &str) -> String {
    let mut v: Value = serde_json::from_str(include_str!("../../../infra/local/samples/xdr/demo_powershell_stager.json")).unwrap();
    v["reply"]["incident"]["incident_id"] = Value::from(id);
    v.to_string()
}

#[tokio::test]
async fn a_case_sharing_indicators_with_an_earlier_one_names_it() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backend = Backend::embedded(clock.clone());
    let sources: Vec<Arc<dyn Source>> = vec![Arc::new(AttackSource), Arc::new(RelatedCases { store: backend.store.clone() })];
    let xdr = Arc::new(RecordingXdr::with_incidents([("100".to_string(), reply("100")), ("101".to_string(), reply("101"))]));
    let pipeline = LocalPipeline::new(PipelineParts {
        backend,
        config: PipelineConfig::default(),
        clock: clock.clone(),
        xdr: xdr.clone(),
        sources,
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![5; 32] }]).unwrap()),
        webhook_secrets: dossier_local::backend::no_webhooks(),
        model: None,
        identity: None,
        notifiers: Vec::new(),
    });
    for id in ["100", "101"] {
        let key = CaseKey::new("acme", id).unwrap();
        open_case(&pipeline.ctx, Case::new(key.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default()))
            .await
            .unwrap();
        assert!(pipeline.run_until_settled(&[key], Duration::from_secs(30)).await.unwrap());
    }
    let second = CaseKey::new("acme", "101").unwrap();
    let reports = pipeline.reports(&second).await.unwrap();
    let related = &reports.iter().find(|r| r.source == "related-cases").unwrap().related_cases;
    assert_eq!(related.len(), 1);
    assert_eq!(related[0].case.incident_id, "100");
    assert!(related[0].shared_indicators.iter().any(|s| s == "domain cdn-update.example.net"), "{:?}", related[0].shared_indicators);
    assert!(related[0].shared_techniques.contains(&"T1059.001".to_string()));
    assert!(related[0].reason.contains("same techniques"), "{}", related[0].reason);
    let writes = xdr.writes();
    let comment = &writes.last().unwrap().body["request_data"]["update_data"]["comment"]["value"];
    assert!(comment.as_str().unwrap().contains("RELATED CASES (this tenant, last 30 days)\n- incident 100"), "{comment}");
    // The first case found nothing (it was first).
    let first = pipeline.reports(&CaseKey::new("acme", "100").unwrap()).await.unwrap();
    assert!(first.iter().find(|r| r.source == "related-cases").unwrap().related_cases.is_empty());
    // The merge waits for an approver; approved, it is noted on both incidents once each, even
    // when the execution is delivered again.
    let merge = pipeline.actions(&second).await.unwrap().into_iter().find(|a| a.kind == ActionKind::MergeCases).expect("a merge action");
    assert_eq!((merge.target.as_str(), merge.status), ("100", ActionStatus::Proposed));
    let merge_notes = |xdr: &RecordingXdr| {
        xdr.writes()
            .iter()
            .filter(|w| w.body.to_string().contains("Merge approved"))
            .map(|w| w.body["request_data"]["incident_id"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    assert!(merge_notes(&xdr).is_empty(), "nothing before an approval");
    let approve = dossier_tests::decide(&merge.links[0].url, "approve");
    assert_eq!(pipeline.approve.handle(&approve).await.status, 200);
    for _ in 0..2 {
        pipeline
            .backend
            .queue
            .send(
                &QueueName::writeback(),
                &Message::ExecuteAction { case: second.clone(), action_id: merge.id.clone() }.to_body(),
                Duration::ZERO,
            )
            .await
            .unwrap();
        for _ in 0..10 {
            pipeline.pump_once().await.unwrap();
        }
    }
    let mut noted = merge_notes(&xdr);
    noted.sort();
    assert_eq!(noted, ["100", "101"], "one note on each incident");

    // The same incident in another tenant: never related across tenants.
    let other = CaseKey::new("globex", "100").unwrap();
    open_case(&pipeline.ctx, Case::new(other.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default()))
        .await
        .unwrap();
    assert!(pipeline.run_until_settled(std::slice::from_ref(&other), Duration::from_secs(30)).await.unwrap());
    let theirs = pipeline.reports(&other).await.unwrap();
    let related = &theirs.iter().find(|r| r.source == "related-cases").unwrap().related_cases;
    assert!(related.is_empty(), "another tenant's cases leaked in: {related:?}");
}
