//! The webhook door: every way in, every way to be refused, nothing stored when refused.

use std::sync::Arc;

use dossier_core::config::PipelineConfig;
use dossier_core::domain::Severity;
use dossier_core::domain::{CaseKey, CaseStatus};
use dossier_core::embedded::{ManualClock, MemoryQueue, MemoryStore};
use dossier_core::http::HttpRequest;
use dossier_core::ports::{Clock, DocStore, QueueName, Table};
use dossier_core::stages::{Context, HttpHandler, Intake};
use dossier_core::xdr::{sign_body, WebhookSecrets};

const SECRET: &[u8] = b"door-secret-0123456789";
const NOW_MS: i64 = 1_750_000_000_000;

struct Door {
    intake: Intake,
    store: Arc<MemoryStore>,
    queue: Arc<MemoryQueue>,
    ctx: Context,
}

fn door(config: PipelineConfig) -> Door {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(NOW_MS));
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new(clock.clone(), std::time::Duration::from_secs(30), 5));
    let ctx = Context::new(store.clone(), queue.clone(), clock, Arc::new(config), "intake");
    let secrets = WebhookSecrets::parse(
        &serde_json::json!({"default": String::from_utf8_lossy(SECRET), "emea": "emea-secret-0123456789"}).to_string(),
        "default",
    )
    .unwrap();
    Door { intake: Intake::new(ctx.clone(), secrets), store, queue, ctx }
}

fn post(headers: Vec<(&str, String)>, body: &str) -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        path: "/webhook".into(),
        headers: headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        body: body.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn bearer() -> (&'static str, String) {
    ("authorization", format!("Bearer {}", String::from_utf8_lossy(SECRET)))
}

fn signed(body: &str, t: i64) -> (&'static str, String) {
    ("x-dossier-signature", format!("t={t},v1={}", sign_body(SECRET, t, body.as_bytes())))
}

async fn nothing_stored(d: &Door) {
    assert!(d.store.query(Table::Cases, "default#7", "").await.unwrap().is_empty());
    assert_eq!(d.queue.depth(&QueueName::collect()), 0);
}

#[tokio::test]
async fn refusals_say_why_and_store_nothing() {
    let d = door(PipelineConfig::default());
    let body = r#"{"case_id": "7", "severity": "high"}"#;
    let cases: Vec<(HttpRequest, u16, &str)> = vec![
        (post(vec![], body), 401, "no credentials"),
        (post(vec![("authorization", "Bearer nope".into())], body), 401, "does not match"),
        (post(vec![signed(body, NOW_MS / 1000 - 400)], body), 401, "window"),
        (post(vec![("x-dossier-signature", "t=1,v1=00".into())], body), 401, "window"),
        (post(vec![signed("{}", NOW_MS / 1000)], body), 401, "does not match the body"),
        (post(vec![bearer()], "{\"case_id\": "), 400, "not JSON"),
        (post(vec![bearer()], "[1,2]"), 400, "JSON object"),
        (post(vec![bearer()], r#"{"severity": "high"}"#), 400, "case_id"),
        (post(vec![bearer()], r#"{"case_id": "7#x"}"#), 400, "incident id"),
        (post(vec![bearer()], &format!("{{\"case_id\": \"7\", \"description\": \"{}\"}}", "x".repeat(300 * 1024))), 413, "limit"),
    ];
    for (req, status, needle) in cases {
        let resp = d.intake.handle(&req).await;
        assert_eq!(resp.status, status, "{}", resp.body);
        let v: serde_json::Value = serde_json::from_str(&resp.body).unwrap();
        assert!(v["message"].as_str().unwrap().contains(needle), "{} lacks {needle:?}", resp.body);
        nothing_stored(&d).await;
    }
    let mut get = post(vec![bearer()], body);
    get.method = "GET".into();
    assert_eq!(d.intake.handle(&get).await.status, 405);
}

#[tokio::test]
async fn signed_requests_are_accepted_once_and_replays_refused() {
    let d = door(PipelineConfig::default());
    let body = r#"{"case_id": "7", "severity": "high"}"#;
    let req = post(vec![signed(body, NOW_MS / 1000 - 60)], body);
    assert_eq!(d.intake.handle(&req).await.status, 202);
    let replay = d.intake.handle(&req).await;
    assert_eq!(replay.status, 409, "{}", replay.body);
    // A fresh signature of the same delivery is a duplicate, not a replay: still one case.
    let again = d.intake.handle(&post(vec![signed(body, NOW_MS / 1000)], body)).await;
    assert_eq!(again.status, 202);
    assert!(again.body.contains("duplicate"));
    let case = d.ctx.store.case(&CaseKey::new("default", "7").unwrap()).await.unwrap().unwrap().value;
    assert_eq!(case.status, CaseStatus::Received);
    assert_eq!(case.hint.severity, Severity::High);
}

#[tokio::test]
async fn every_payload_shape_makes_a_case_under_the_right_tenant() {
    let d = door(PipelineConfig::default());
    let shapes = [
        (r#"{"case_id": 11, "severity": "medium", "alert_ids": ["1"]}"#, "default", "11"),
        (r#"{"incident_id": "12", "severity": "high", "status": "new", "hosts": ["pc:1"]}"#, "default", "12"),
        (r#"{"incident": {"incident_id": "13", "status": "under_investigation"}}"#, "default", "13"),
        (r#"{"case_id": 14, "case_name": "x", "status_progress": "New"}"#, "default", "14"),
    ];
    for (body, tenant, id) in shapes {
        let resp = d.intake.handle(&post(vec![bearer()], body)).await;
        assert_eq!(resp.status, 202, "{body}: {}", resp.body);
        assert!(d.ctx.store.case(&CaseKey::new(tenant, id).unwrap()).await.unwrap().is_some(), "{body}");
    }
    // The tenant is the one whose secret verified the delivery.
    let emea = [("authorization", "Bearer emea-secret-0123456789".to_string())];
    let resp =
        d.intake.handle(&post(emea.to_vec(), r#"{"tenant": "emea", "case": {"case_id": 15, "status_progress": "In Progress"}}"#)).await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    assert!(d.ctx.store.case(&CaseKey::new("emea", "15").unwrap()).await.unwrap().is_some());
    // A header or a body naming another tenant does not move the delivery there.
    let hdr = d.intake.handle(&post(vec![bearer(), ("x-dossier-tenant", "emea".into())], r#"{"case_id": 16}"#)).await;
    assert_eq!(hdr.status, 401, "{}", hdr.body);
    let body = d.intake.handle(&post(vec![bearer()], r#"{"tenant": "emea", "case_id": 16}"#)).await;
    assert_eq!(body.status, 400, "{}", body.body);
    assert!(d.ctx.store.case(&CaseKey::new("emea", "16").unwrap()).await.unwrap().is_none());
    assert!(d.ctx.store.case(&CaseKey::new("default", "16").unwrap()).await.unwrap().is_none());
    assert_eq!(d.queue.depth(&QueueName::collect()), 5);
}

#[tokio::test]
async fn the_rollout_filter_skips_with_a_reason_and_stores_nothing() {
    let d = door(PipelineConfig { min_severity: Severity::High, ..PipelineConfig::default() });
    for body in
        [r#"{"case_id": "7", "severity": "low"}"#, r#"{"incident_id": "7", "severity": "critical", "status": "resolved_false_positive"}"#]
    {
        let resp = d.intake.handle(&post(vec![bearer()], body)).await;
        assert_eq!(resp.status, 202);
        assert!(resp.body.contains("\"status\":\"skipped\""), "{}", resp.body);
        nothing_stored(&d).await;
    }
}
