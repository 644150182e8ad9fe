//! Closure: when XDR resolves the incident, the analyst gets a resolve-comment draft (root cause,
//! lessons learned, executive summary mapped to NIST CSF 2.0 and CIS Controls v8), exactly once.

use std::sync::Arc;
use std::time::Duration;

use dossier_core::config::PipelineConfig;
use dossier_core::domain::{Case, CaseKey, IncidentHint, Trigger};
use dossier_core::embedded::RecordingXdr;
use dossier_core::http::HttpRequest;
use dossier_core::messages::Message;
use dossier_core::ports::{Clock, ClosureExport, ClosureRecord, NotifyError, QueueName, SystemClock};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, IntelFeed, PerIndicator, Source};
use dossier_core::stages::{open_case, HttpHandler};
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};

/// A pipeline whose case 4711 has its dossier posted, handing closure summaries to `exports`.
async fn posted_case(exports: Vec<Arc<dyn ClosureExport>>) -> (LocalPipeline, CaseKey, Arc<RecordingXdr>) {
    posted_case_with(exports, false).await
}

/// As `posted_case`; with `knowledge`, a knowledge source over no runbooks (past closure
/// summaries only).
async fn posted_case_with(exports: Vec<Arc<dyn ClosureExport>>, knowledge: bool) -> (LocalPipeline, CaseKey, Arc<RecordingXdr>) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backend = Backend::embedded(clock.clone());
    let mut sources: Vec<Arc<dyn Source>> = vec![
        Arc::new(AttackSource),
        Arc::new(PerIndicator::new(IntelFeed::from_csv(include_str!("../../../infra/local/samples/intel-feed.csv")).unwrap())),
    ];
    if knowledge {
        sources.push(Arc::new(dossier_core::sources::KnowledgeSource {
            retriever: Arc::new(dossier_core::knowledge::KnowledgeIndex::build(&[])),
            store: Some(backend.store.clone()),
        }));
    }
    let xdr = Arc::new(RecordingXdr::serving(include_str!("../../../infra/local/samples/xdr/demo_powershell_stager.json").to_string()));
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
    })
    .with_closure_exports(exports);
    let key = CaseKey::new("default", "4711").unwrap();
    open_case(&pipeline.ctx, Case::new(key.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default()))
        .await
        .unwrap();
    assert!(pipeline.run_until_settled(std::slice::from_ref(&key), Duration::from_secs(30)).await.unwrap());
    assert_eq!(xdr.writes().len(), 1);
    (pipeline, key, xdr)
}

fn resolved_webhook() -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        path: "/webhook".into(),
        headers: vec![("authorization".into(), "Bearer closure-secret-000001".into())],
        body: br#"{"incident_id": "4711", "status": "resolved_true_positive", "severity": "high"}"#.to_vec(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_resolved_incident_gets_one_closure_draft() {
    let (pipeline, key, xdr) = posted_case(Vec::new()).await;
    // XDR (through the webhook) says it is resolved.
    let resolved = resolved_webhook();
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
        "SUGGESTIONS FOR REVIEW (drafted from this case; nothing is deployed)",
        "Detection rule draft (XQL",
        r#"dns_query_name in ("cdn-update.example.net")"#,
        "action_file_sha256 in (\"03bd9a94482f180bb047626cb2f27ccf8daa0e201345480b43585580e09c311b\")",
        "Playbook update:",
    ] {
        assert!(text.contains(needle), "closure lacks {needle:?}:\n{text}");
    }
    // An unknown incident resolved is acknowledged and changes nothing.
    let unknown = HttpRequest { body: br#"{"incident_id": "999", "status": "resolved_other"}"#.to_vec(), ..resolved.clone() };
    assert!(pipeline.intake.handle(&unknown).await.body.contains("no open case"));
}

/// A target that fails for now the first `fails` times.
struct Flaky {
    fails: std::sync::atomic::AtomicU32,
    delivered: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl ClosureExport for Flaky {
    fn target(&self) -> &str {
        "flaky"
    }
    async fn export(&self, r: &ClosureRecord) -> Result<String, NotifyError> {
        if self.fails.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            self.fails.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            return Err(NotifyError::Retryable("down for now".into()));
        }
        self.delivered.lock().unwrap().push(r.correlation_id());
        Ok("ok".into())
    }
}

/// At closure the summary becomes one ServiceNow record and one e-mail, whatever is
/// redelivered; a target that is down gets it when the message comes back, without the others
/// being sent again.
#[tokio::test]
async fn the_closure_summary_reaches_servicenow_and_email_once() {
    use dossier_tests::{vendors, FakeServer, Reply};
    let snow = FakeServer::start().await;
    let records = vendors::servicenow_records(&snow, "Bearer snow-token", "sn_si_incident");
    let ses = FakeServer::start().await;
    vendors::ses(&ses);
    ses.on("POST", "/v2/email/outbound-emails", Reply::json(200, r#"{"MessageId": "m-1"}"#));
    let sdk = dossier_adapters::aws::sdk_config_for(&ses.url()).await;
    let flaky = Arc::new(Flaky { fails: 1.into(), delivered: Default::default() });
    let exports: Vec<Arc<dyn ClosureExport>> = vec![
        Arc::new(
            dossier_adapters::export::ServiceNowRecord::new(&snow.url(), "Bearer snow-token", "sn_si_incident", Duration::from_secs(5))
                .unwrap(),
        ),
        Arc::new(dossier_adapters::export::SesSummary::new(
            aws_sdk_sesv2::Client::new(&sdk),
            "dossier@corp.example".into(),
            vec!["soc-leads@corp.example".into(), "ciso@corp.example".into()],
        )),
        flaky.clone(),
    ];
    let (pipeline, key, xdr) = posted_case(exports).await;
    assert!(pipeline.intake.handle(&resolved_webhook()).await.status == 202);
    for _ in 0..20 {
        pipeline.pump_once().await.unwrap();
    }
    assert_eq!(xdr.writes().len(), 2, "the dossier and the closure draft");
    // The closure message again (a duplicate delivery), and the draft's post redelivered.
    for message in [
        Message::Close { case: key.clone(), resolution: "resolved_true_positive".into() },
        Message::WriteComment { case: key.clone(), draft_id: "closure-1".into(), snapshot: None },
        Message::WriteComment { case: key.clone(), draft_id: "closure-1".into(), snapshot: None },
    ] {
        let queue = if matches!(message, Message::Close { .. }) { QueueName::synthesize() } else { QueueName::writeback() };
        pipeline.backend.queue.send(&queue, &message.to_body(), Duration::ZERO).await.unwrap();
        for _ in 0..5 {
            pipeline.pump_once().await.unwrap();
        }
    }
    let held = records.lock().unwrap().clone();
    assert_eq!(held.len(), 1, "one record: {held:#?}");
    let record = &held[0];
    assert_eq!(record["correlation_id"], "dossier:default#4711");
    assert!(record["short_description"].as_str().unwrap().starts_with("[Dossier] XDR incident 4711 closed"));
    assert!(record["description"].as_str().unwrap().contains("EXECUTIVE SUMMARY"));
    assert_eq!(record["impact"], "2", "the incident is medium in XDR");
    assert_eq!(ses.requests_to("/v2/email/outbound-emails").len(), 1, "one e-mail");
    let mail = ses.requests_to("/v2/email/outbound-emails")[0].json();
    assert_eq!(mail["Destination"]["ToAddresses"], serde_json::json!(["soc-leads@corp.example", "ciso@corp.example"]));
    assert!(mail["Content"]["Simple"]["Subject"]["Data"].as_str().unwrap().contains("resolved_true_positive"));
    assert_eq!(flaky.delivered.lock().unwrap().len(), 1, "the target that was down got it once, on redelivery");
    // Each hand-over is audited once.
    let trail = pipeline.ctx.store.events(&key).await.unwrap();
    let exported: Vec<&str> = trail.iter().filter(|e| e.event == "closure.exported").map(|e| e.detail.as_str()).collect();
    assert_eq!(exported.len(), 3, "{exported:?}");
    assert!(exported.iter().any(|d| d.starts_with("servicenow: sn_si_incident SIR0010001 created")), "{exported:?}");

    // A record that exists already (another run, a worker that died after creating it) is
    // updated, not duplicated: the target on its own, for a second time.
    let again = dossier_adapters::export::ServiceNowRecord::new(&snow.url(), "Bearer snow-token", "sn_si_incident", Duration::from_secs(5))
        .unwrap();
    let record = ClosureRecord {
        case: key.clone(),
        title: "t".into(),
        severity: Default::default(),
        resolution: "resolved_true_positive".into(),
        summary: "updated".into(),
    };
    assert_eq!(again.export(&record).await.unwrap(), "sn_si_incident SIR0010001 updated");
    assert_eq!(records.lock().unwrap().len(), 1);
    assert_eq!(records.lock().unwrap()[0]["journal"].as_array().unwrap().len(), 2, "the update is a work note");
}

/// ServiceNow's refusals and failures, as the writeback stage must read them.
#[tokio::test]
async fn servicenow_faults_are_retried_or_recorded_as_refused() {
    use dossier_tests::{vendors, FakeServer, Reply};
    let snow = FakeServer::start().await;
    vendors::servicenow_records(&snow, "Bearer right", "incident");
    let record = ClosureRecord {
        case: CaseKey::new("default", "1").unwrap(),
        title: "t".into(),
        severity: Default::default(),
        resolution: "resolved_false_positive".into(),
        summary: "s".into(),
    };
    let target =
        |token: &str| dossier_adapters::export::ServiceNowRecord::new(&snow.url(), token, "incident", Duration::from_secs(5)).unwrap();
    assert!(matches!(target("Bearer wrong").export(&record).await, Err(NotifyError::Refused(m)) if m.contains("401")));
    snow.once(
        "GET",
        "/api/now/table/incident",
        Reply::json(429, r#"{"error":{"message":"Maximum request rate exceeded","detail":"Rate limit"},"status":"failure"}"#)
            .with_header("retry-after", "30"),
    );
    assert!(matches!(target("Bearer right").export(&record).await, Err(NotifyError::Retryable(_))));
    snow.once("GET", "/api/now/table/incident", Reply::json(503, "{}"));
    assert!(matches!(target("Bearer right").export(&record).await, Err(NotifyError::Retryable(_))));
    // A hibernating developer instance answers 200 with its wake-up page.
    snow.once("GET", "/api/now/table/incident", Reply::Body(200, "<html>Your instance is hibernating</html>".into(), vec![]));
    assert!(matches!(target("Bearer right").export(&record).await, Err(NotifyError::Retryable(m)) if m.contains("not JSON")));
    assert_eq!(target("Bearer right").export(&record).await.unwrap(), "incident INC0010001 created");
    assert!(
        dossier_adapters::export::ServiceNowRecord::new(&snow.url(), "x", "cmdb_ci", Duration::from_secs(5)).is_err(),
        "only incident tables"
    );
}

/// A posted closure summary joins the knowledge later cases of the tenant search: the next case
/// of the same intrusion cites it.
#[tokio::test]
async fn a_closure_summary_is_cited_by_a_later_case() {
    let (pipeline, _key, _xdr) = posted_case_with(Vec::new(), true).await;
    assert!(pipeline.intake.handle(&resolved_webhook()).await.status == 202);
    for _ in 0..20 {
        pipeline.pump_once().await.unwrap();
    }
    let later = CaseKey::new("default", "4712").unwrap();
    let clock = SystemClock;
    open_case(&pipeline.ctx, Case::new(later.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default()))
        .await
        .unwrap();
    assert!(pipeline.run_until_settled(std::slice::from_ref(&later), Duration::from_secs(30)).await.unwrap());
    let dossier = pipeline.dossier(&later).await.unwrap().unwrap();
    let cited: Vec<(&str, &str)> = dossier.citations.iter().map(|c| (c.document.as_str(), c.section.as_str())).collect();
    assert_eq!(cited, [("closure of incident 4711", "closure summary")], "{cited:?}");
    assert!(dossier.citations[0].text.contains("EXECUTIVE SUMMARY"));
    // Another tenant's case does not see it.
    let theirs = CaseKey::new("globex", "4713").unwrap();
    open_case(&pipeline.ctx, Case::new(theirs.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default()))
        .await
        .unwrap();
    assert!(pipeline.run_until_settled(std::slice::from_ref(&theirs), Duration::from_secs(30)).await.unwrap());
    assert!(pipeline.dossier(&theirs).await.unwrap().unwrap().citations.is_empty());
}
