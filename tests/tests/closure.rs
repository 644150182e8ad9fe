//! Closure: when XDR resolves the incident, the analyst gets a resolve-comment draft (root cause,
//! lessons learned, executive summary mapped to NIST CSF 2.0 and CIS Controls v8), exactly once.

use std::sync::Arc;
use std::time::Duration;

use dossier_core::config::PipelineConfig;
use dossier_core::domain::{Case, CaseKey, IncidentHint, Trigger};
use dossier_core::embedded::RecordingXdr;
use dossier_core::http::HttpRequest;
use dossier_core::messages::Message;
use dossier_core::ports::{Clock, QueueName, SystemClock};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, IntelFeed, PerIndicator, Source};
use dossier_core::stages::{open_case, HttpHandler};
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};

#[tokio::test]
async fn a_resolved_incident_gets_one_closure_draft() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backend = Backend::embedded(clock.clone());
    let sources: Vec<Arc<dyn Source>> = vec![
        Arc::new(AttackSource),
        Arc::new(PerIndicator::new(IntelFeed::from_csv(include_str!("../../infra/local/samples/intel-feed.csv")).unwrap())),
    ];
    let xdr = Arc::new(RecordingXdr::serving(include_str!("../../infra/local/samples/xdr/demo_powershell_stager.json").to_string()));
    let pipeline = LocalPipeline::new(PipelineParts {
        backend,
        config: PipelineConfig::default(),
        clock: clock.clone(),
        xdr: xdr.clone(),
        sources,
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![2; 32] }]).unwrap()),
        webhook_secrets: dossier_core::xdr::WebhookSecrets::single("default", b"closure-secret-000001").unwrap(),
        model: None,
        identity: None,
        notifiers: Vec::new(),
    });
    let key = CaseKey::new("default", "4711").unwrap();
    open_case(&pipeline.ctx, Case::new(key.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default()))
        .await
        .unwrap();
    assert!(pipeline.run_until_settled(std::slice::from_ref(&key), Duration::from_secs(30)).await.unwrap());
    assert_eq!(xdr.writes().len(), 1);

    // XDR (through the webhook) says it is resolved.
    let resolved = HttpRequest {
        method: "POST".into(),
        path: "/webhook".into(),
        headers: vec![("authorization".into(), "Bearer closure-secret-000001".into())],
        body: br#"{"incident_id": "4711", "status": "resolved_true_positive", "severity": "high"}"#.to_vec(),
        ..Default::default()
    };
    let resp = pipeline.intake.handle(&resolved).await;
    assert_eq!(resp.status, 202);
    assert!(resp.body.contains("closing"), "{}", resp.body);
    // The same news again, and the message redelivered: one closure comment.
    pipeline.intake.handle(&resolved).await;
    pipeline
        .backend
        .queue
        .send(
            &QueueName::synthesize(),
            &Message::Close { case: key.clone(), resolution: "resolved_true_positive".into() }.to_body(),
            Duration::ZERO,
        )
        .await
        .unwrap();
    for _ in 0..20 {
        pipeline.pump_once().await.unwrap();
    }
    let writes = xdr.writes();
    assert_eq!(writes.len(), 2, "the dossier and one closure draft");
    let text = writes[1].body["request_data"]["update_data"]["comment"]["value"].as_str().unwrap();
    for needle in [
        "Closure draft",
        "Automated summary (no AI)",
        "EXECUTIVE SUMMARY",
        "ROOT CAUSE",
        "CIS 10 Malware Defenses",
        "CIS 9 Email and Web Browser Protections",
        "NIST CSF 2.0",
        "RESPOND (RS.AN, RS.MI)",
        "Entry point: T1566.001",
    ] {
        assert!(text.contains(needle), "closure lacks {needle:?}:\n{text}");
    }
    // An unknown incident resolved is acknowledged and changes nothing.
    let unknown = HttpRequest { body: br#"{"incident_id": "999", "status": "resolved_other"}"#.to_vec(), ..resolved.clone() };
    assert!(pipeline.intake.handle(&unknown).await.body.contains("no open case"));
}
