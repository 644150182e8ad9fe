//! End to end on moto server: webhook → intake → SQS → collect (fake XDR serving a recorded-shape
//! extra-data reply) → enrich (ATT&CK + fake VirusTotal serving recorded answers) → synthesize →
//! writeback (fake XDR receives the comment). Then every message is delivered once more: still one
//! comment. Then the approval: GET changes nothing, POST approves once, the isolation runs once.

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dossier_adapters::lambda;
use dossier_adapters::sources::catalog::{self, Shared, SourceSettings};
use dossier_adapters::xdr::{AuthKind, Generation, XdrCredentials, XdrHttp};
use dossier_core::config::PipelineConfig;
use dossier_core::domain::{ActionKind, ActionStatus, CaseKey, CaseStatus};
use dossier_core::http::HttpResponse;
use dossier_core::ports::{Queue, QueueError, QueueName, SystemClock};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::Source;
use dossier_core::stages::HttpHandler;
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};
use dossier_tests::{fixture, moto_endpoint, unique_prefix, FakeServer, Reply};

const UPDATE: &str = "/public_api/v1/incidents/update_incident";
const ISOLATE: &str = "/public_api/v1/endpoints/isolate";
const SECRET: &str = "webhook-shared-secret-for-tests";

/// Records every message sent so the test can deliver each one again.
struct Tee {
    inner: Arc<dyn Queue>,
    sent: Mutex<Vec<(QueueName, String)>>,
}

#[async_trait]
impl Queue for Tee {
    async fn send(&self, queue: &QueueName, body: &str, delay: Duration) -> Result<(), QueueError> {
        self.sent.lock().unwrap().push((queue.clone(), body.to_string()));
        self.inner.send(queue, body, delay).await
    }
}

fn demo_extra_data() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/local/samples/xdr/demo_powershell_stager.json")).unwrap()
}

fn apigw_event(method: &str, path: &str, query: &str, headers: &[(&str, &str)], body: Option<&str>) -> ApiGatewayV2httpRequest {
    // The event shape API Gateway HTTP APIs (payload 2.0) deliver to the Lambda.
    let mut hdrs = serde_json::Map::new();
    for (k, v) in headers {
        hdrs.insert(k.to_string(), json!(v));
    }
    serde_json::from_value(json!({
        "version": "2.0", "routeKey": format!("{method} {path}"), "rawPath": path, "rawQueryString": query,
        "headers": hdrs,
        "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "e2e"},
                           "requestId": "r1", "routeKey": format!("{method} {path}"), "stage": "$default", "timeEpoch": 0},
        "body": body, "isBase64Encoded": false
    }))
    .unwrap()
}

async fn http(pipeline: &LocalPipeline, ev: ApiGatewayV2httpRequest, approve: bool) -> HttpResponse {
    let req = lambda::to_request(&ev).unwrap();
    if approve {
        pipeline.approve.handle(&req).await
    } else {
        pipeline.intake.handle(&req).await
    }
}

/// Pumps until two rounds in a row find nothing to do.
async fn drain(pipeline: &LocalPipeline) {
    let mut idle = 0;
    for _ in 0..500 {
        if pipeline.pump_once().await.unwrap() == 0 {
            idle += 1;
            if idle >= 3 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        } else {
            idle = 0;
        }
    }
    panic!("queues did not drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_to_comment_exactly_once_then_approval_to_isolation_exactly_once() {
    // Third parties: XDR and VirusTotal, from recorded payloads.
    let xdr_fake = FakeServer::start().await;
    dossier_tests::vendors::xdr(&xdr_fake, "1", "xdr-key");
    xdr_fake.on("POST", "/public_api/v1/incidents/get_incident_extra_data", Reply::json(200, demo_extra_data()));
    xdr_fake.on("POST", UPDATE, Reply::json(200, r#"{"reply": true}"#));
    xdr_fake.on("POST", ISOLATE, Reply::json(200, fixture("xdr/response_action_reply_mock.json")));
    let vt_fake = FakeServer::start().await;
    vt_fake.on("GET", "/api/v3/ip_addresses/*", Reply::json(200, fixture("virustotal/ip_address.json")));
    vt_fake.on("GET", "/api/v3/domains/*", Reply::json(200, fixture("virustotal/domain.json")));
    vt_fake.on("GET", "/api/v3/files/*", Reply::json(200, fixture("virustotal/file_sha256.json")));
    vt_fake.on("GET", "/api/v3/urls/*", Reply::json(404, fixture("virustotal/error_404_not_found.json")));

    // AWS: DynamoDB and SQS on moto, through the real adapters; the sources cache and count
    // their quota in the same (moto) DynamoDB.
    let names: Vec<String> = ["attack", "virustotal", "related-cases"].iter().map(|s| s.to_string()).collect();
    let aws = Backend::aws(&moto_endpoint(), &unique_prefix("e2e"), &names).await.unwrap();
    let shared = Shared { store: aws.store.clone(), clock: Arc::new(SystemClock), cache: true };
    let vt_settings = SourceSettings {
        url: Some(format!("{}/api/v3", vt_fake.url())),
        key: Some("vt-key".into()),
        quota: Some("1000/min".into()),
        ..Default::default()
    };
    let sources: Vec<Arc<dyn Source>> = names.iter().map(|n| catalog::build(n, &vt_settings, &shared, "").unwrap()).collect();
    let tee = Arc::new(Tee { inner: aws.queue.clone(), sent: Mutex::new(Vec::new()) });
    let backend = Backend { queue: tee.clone(), ..aws };
    let xdr = Arc::new(XdrHttp::new(
        &xdr_fake.url(),
        XdrCredentials { api_key: "xdr-key".into(), api_key_id: "1".into(), auth: AuthKind::Standard, generation: Generation::V3 },
        Duration::from_secs(5),
    ));
    let config = PipelineConfig {
        default_tenant: "acme".into(),
        public_base_url: "https://dossier.example".into(),
        approvers: vec!["lead@example.com".into()],
        ..PipelineConfig::default()
    };
    let pipeline = LocalPipeline::new(PipelineParts {
        backend,
        config,
        clock: Arc::new(SystemClock),
        xdr,
        sources,
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k1".into(), secret: vec![42; 32] }]).unwrap()),
        webhook_secrets: dossier_core::xdr::WebhookSecrets::single("acme", SECRET.as_bytes()).unwrap(),
        model: None,
        identity: None,
        notifiers: Vec::new(),
    });

    // The webhook: wrong secret is refused and stores nothing; the right one is accepted; a duplicate makes no second case.
    let payload = json!({"case_id": "4711", "severity": "medium", "created_at": "2024-05-01T10:00:00Z", "alert_ids": ["90001", "90002", "90003"],
        "endpoint_ids": ["5f1c2a9e7b3d4c8e9a0b1c2d3e4f5a6b"], "user_ids": ["CORP\\j.doe"], "description": "Encoded PowerShell", "mitre_techniques": ["T1059.001"]})
    .to_string();
    let bad = http(&pipeline, apigw_event("POST", "/webhook", "", &[("authorization", "Bearer wrong")], Some(&payload)), false).await;
    assert_eq!(bad.status, 401, "{}", bad.body);
    let key = CaseKey::new("acme", "4711").unwrap();
    assert!(pipeline.case(&key).await.unwrap().is_none());
    let auth = format!("Bearer {SECRET}");
    let ok = http(
        &pipeline,
        apigw_event("POST", "/webhook", "", &[("authorization", &auth), ("content-type", "application/json")], Some(&payload)),
        false,
    )
    .await;
    assert_eq!(ok.status, 202, "{}", ok.body);
    let dup = http(&pipeline, apigw_event("POST", "/webhook", "", &[("authorization", &auth)], Some(&payload)), false).await;
    assert_eq!(dup.status, 202);
    assert!(dup.body.contains("duplicate"), "{}", dup.body);

    assert!(pipeline.run_until_settled(std::slice::from_ref(&key), Duration::from_secs(60)).await.unwrap());
    let case = pipeline.case(&key).await.unwrap().unwrap();
    assert_eq!(case.status, CaseStatus::AwaitingApproval, "{:?}", case.failure);

    let comments = xdr_fake.requests_to(UPDATE);
    assert_eq!(comments.len(), 1);
    let text = comments[0].json()["request_data"]["update_data"]["comment"]["value"].as_str().unwrap().to_string();
    for needle in [
        "Automated summary (no AI)",
        "cdn-update.example.net",
        "98.136.103.23",
        "03bd9a94482f180bb047626cb2f27ccf8daa0e201345480b43585580e09c311b",
        "T1059.001 PowerShell",
        "T1105 Ingress Tool Transfer",
        "virustotal: malicious",
    ] {
        assert!(text.contains(needle), "comment lacks {needle:?}:\n{text}");
    }
    // Internal addresses never went to VirusTotal.
    assert!(vt_fake.requests().iter().all(|r| !r.path.contains("10.20.31.45") && !r.path.contains("fe80")));

    // Every message delivered once more: nothing new reaches XDR.
    let sent: Vec<(QueueName, String)> = tee.sent.lock().unwrap().clone();
    assert!(sent.len() >= 6, "{sent:?}");
    for (queue, body) in &sent {
        tee.inner.send(queue, body, Duration::ZERO).await.unwrap();
    }
    drain(&pipeline).await;
    assert_eq!(xdr_fake.requests_to(UPDATE).len(), 1, "a redelivery posted a second comment");
    assert!(xdr_fake.requests_to(ISOLATE).is_empty(), "nothing runs without an approval");

    // The approval link: GET shows a form and changes nothing.
    let actions = pipeline.actions(&key).await.unwrap();
    let isolate = actions.iter().find(|a| a.kind == ActionKind::IsolateEndpoint).expect("isolation proposed");
    assert_eq!(isolate.target, "5f1c2a9e7b3d4c8e9a0b1c2d3e4f5a6b");
    let url = &isolate.links[0].url;
    let token = url.split("t=").nth(1).unwrap();
    let page = http(&pipeline, apigw_event("GET", "/approve", &format!("t={token}"), &[], None), true).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<form method=\"post\""), "{}", page.body);
    assert!(page.headers.iter().any(|(k, v)| k == "content-security-policy" && v.contains("default-src 'none'")));
    assert_eq!(pipeline.action(&key, &isolate.id).await.unwrap().unwrap().status, ActionStatus::Proposed);

    // POST approves once; the second click is refused; the approval message is delivered twice.
    let form = format!("t={token}&decision=approve");
    let first =
        http(&pipeline, apigw_event("POST", "/approve", "", &[("content-type", "application/x-www-form-urlencoded")], Some(&form)), true)
            .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let second =
        http(&pipeline, apigw_event("POST", "/approve", "", &[("content-type", "application/x-www-form-urlencoded")], Some(&form)), true)
            .await;
    assert_eq!(second.status, 409, "{}", second.body);
    let tampered = http(
        &pipeline,
        apigw_event(
            "POST",
            "/approve",
            "",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(&format!("t={}x&decision=approve", token)),
        ),
        true,
    )
    .await;
    assert!(tampered.status == 403 || tampered.status == 400, "{}", tampered.status);
    let exec: Vec<(QueueName, String)> = tee.sent.lock().unwrap().iter().filter(|(_, b)| b.contains("execute_action")).cloned().collect();
    assert_eq!(exec.len(), 1);
    tee.inner.send(&exec[0].0, &exec[0].1, Duration::ZERO).await.unwrap();
    drain(&pipeline).await;
    assert_eq!(xdr_fake.requests_to(ISOLATE).len(), 1, "isolation must run exactly once");
    let done = pipeline.action(&key, &isolate.id).await.unwrap().unwrap();
    assert_eq!(done.status, ActionStatus::Executed);
    assert_eq!(done.decision.unwrap().source_ip.as_deref(), Some("203.0.113.7"));

    // The audit trail has the story.
    let events: Vec<String> = pipeline.ctx.store.events(&key).await.unwrap().into_iter().map(|e| e.event).collect();
    for e in [
        "case.received",
        "xdr.get_incident_extra_data",
        "source.reported",
        "dossier.drafted",
        "xdr.comment_added",
        "action.decided",
        "action.executed",
    ] {
        assert!(events.iter().any(|x| x == e), "audit lacks {e}: {events:?}");
    }
}
