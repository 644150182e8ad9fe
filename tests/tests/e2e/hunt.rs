//! The hunt: low-severity incidents that share one external indicator across three hosts become
//! one campaign proposal — a note on each incident, once, and a gated action on the newest that
//! posts the approved decision to each incident, once. A second run proposes nothing new.

use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

use dossier_core::config::PipelineConfig;
use dossier_core::domain::{ActionKind, ActionStatus, Case, CaseKey, IncidentHint, Trigger};
use dossier_core::embedded::RecordingXdr;
use dossier_core::ports::{Clock, SystemClock};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, RelatedCases, Source};
use dossier_core::stages::{open_case, HttpHandler};
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};

/// The demo intrusion as a low-severity incident `id` on host `host`.
fn quiet_incident(id: &str, host: &str, hour: i64) -> String {
    let text = include_str!("../../../infra/local/samples/xdr/demo_powershell_stager.json")
        .replace("fin-ws-0231", host)
        .replace("FIN-WS-0231", &host.to_ascii_uppercase());
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["reply"]["incident"]["incident_id"] = Value::from(id);
    v["reply"]["incident"]["severity"] = Value::from("low");
    v["reply"]["incident"]["creation_time"] = Value::from(1_714_557_600_000_i64 + hour * 3_600_000);
    v.to_string()
}

fn notes_with(xdr: &RecordingXdr, needle: &str) -> Vec<String> {
    let mut ids: Vec<String> = xdr
        .writes()
        .iter()
        .filter(|w| w.body.to_string().contains(needle))
        .map(|w| w.body["request_data"]["incident_id"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn low_severity_incidents_sharing_an_indicator_on_three_hosts_make_one_campaign_proposal() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backend = Backend::embedded(clock.clone());
    let sources: Vec<Arc<dyn Source>> = vec![Arc::new(AttackSource), Arc::new(RelatedCases { store: backend.store.clone() })];
    let incidents = [("501", "ws-a", 0), ("502", "ws-b", 30), ("503", "ws-c", 60)];
    let xdr = Arc::new(RecordingXdr::with_incidents(incidents.iter().map(|(id, host, h)| (id.to_string(), quiet_incident(id, host, *h)))));
    let pipeline = LocalPipeline::new(PipelineParts {
        backend,
        config: PipelineConfig::default(),
        clock: clock.clone(),
        xdr: xdr.clone(),
        sources,
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![6; 32] }]).unwrap()),
        webhook_secrets: dossier_local::backend::no_webhooks(),
        model: None,
        identity: None,
        notifiers: Vec::new(),
    });
    let mut keys = Vec::new();
    for (id, _, _) in incidents {
        let key = CaseKey::new("acme", id).unwrap();
        open_case(&pipeline.ctx, Case::new(key.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default()))
            .await
            .unwrap();
        assert!(pipeline.run_until_settled(std::slice::from_ref(&key), Duration::from_secs(30)).await.unwrap());
        keys.push(key);
    }
    let first = pipeline.hunt.run().await.unwrap();
    assert_eq!(first.proposed, 1, "one campaign for the three: {first:?}");
    for _ in 0..10 {
        pipeline.pump_once().await.unwrap();
    }
    assert_eq!(notes_with(&xdr, "Possible campaign"), ["501", "502", "503"], "a note on each incident, once");
    // Run again (the next hour), and with the writeback messages delivered again: nothing new.
    let second = pipeline.hunt.run().await.unwrap();
    assert_eq!(second.proposed, 0);
    for _ in 0..10 {
        pipeline.pump_once().await.unwrap();
    }
    assert_eq!(notes_with(&xdr, "Possible campaign").len(), 3);

    // The gated action sits on the newest incident; nothing is opened without an approval.
    let newest = &keys[2];
    let action =
        pipeline.actions(newest).await.unwrap().into_iter().find(|a| a.kind == ActionKind::OpenInvestigation).expect("the proposal");
    assert_eq!((action.target.as_str(), action.status), ("501,502,503", ActionStatus::Proposed));
    assert!(action.rationale.contains("ws-a") && action.rationale.contains("3 incident(s)"), "{}", action.rationale);
    assert!(notes_with(&xdr, "Campaign investigation approved").is_empty());
    let approve = dossier_tests::decide(&action.links[0].url, "approve");
    assert_eq!(pipeline.approve.handle(&approve).await.status, 200);
    for _ in 0..10 {
        pipeline.pump_once().await.unwrap();
    }
    assert_eq!(notes_with(&xdr, "Campaign investigation approved"), ["501", "502", "503"], "the decision on each incident, once");
}
