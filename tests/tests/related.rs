//! Related cases: a second incident sharing indicators with an earlier one names it, with the reason.

use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

use dossier_core::config::PipelineConfig;
use dossier_core::domain::{Case, CaseKey, IncidentHint, Trigger};
use dossier_core::embedded::RecordingXdr;
use dossier_core::ports::{Clock, SystemClock};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::RelatedCases;
use dossier_core::sources::{AttackSource, Source};
use dossier_core::stages::open_case;
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};

fn reply(id: &str) -> String {
    let mut v: Value = serde_json::from_str(include_str!("../../infra/local/samples/xdr/demo_powershell_stager.json")).unwrap();
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
    assert!(comment.as_str().unwrap().contains("RELATED CASES\n- incident 100"), "{comment}");
    // The first case found nothing (it was first).
    let first = pipeline.reports(&CaseKey::new("acme", "100").unwrap()).await.unwrap();
    assert!(first.iter().find(|r| r.source == "related-cases").unwrap().related_cases.is_empty());
}
