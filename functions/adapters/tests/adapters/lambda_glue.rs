//! The Lambda event glue: API Gateway events in and out, SQS batches with partial failures and
//! deferrals that never count toward the DLQ.

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::sqs::SqsEvent;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

use dossier_adapters::lambda::{process_sqs_batch, to_request, to_response};
use dossier_core::domain::CaseKey;
use dossier_core::embedded::{ManualClock, MemoryQueue};
use dossier_core::http::HttpResponse;
use dossier_core::messages::Message;
use dossier_core::ports::{QueueConsumer, QueueName};
use dossier_core::stages::{Deadline, MessageHandler, StageError};

/// Answers by the message's incident id.
struct ByIncident;

fn body(incident: &str) -> String {
    Message::Collect { case: CaseKey::new("t", incident).unwrap() }.to_body()
}

#[async_trait]
impl MessageHandler for ByIncident {
    async fn handle(&self, body: &str, _deadline: Deadline) -> Result<(), StageError> {
        match Message::parse(body)?.case().incident_id.as_str() {
            "ok" => Ok(()),
            "defer" => Err(StageError::RetryLater { reason: "quota".into(), after: Duration::from_secs(30) }),
            "flaky" => Err(StageError::Store(dossier_core::ports::StoreError::Unavailable("throttled".into()))),
            _ => Err(StageError::BadMessage("garbage".into())),
        }
    }
}

#[tokio::test]
async fn sqs_batches_report_failures_and_defer_without_failing() {
    let clock = Arc::new(ManualClock::new(0));
    let queue = MemoryQueue::new(clock.clone(), Duration::from_secs(30), 5);
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "m-ok", "receiptHandle": "r1", "body": body("ok"), "attributes": {}, "messageAttributes": {}},
        {"messageId": "m-defer", "receiptHandle": "r2", "body": body("defer"), "attributes": {}, "messageAttributes": {}},
        {"messageId": "m-bad", "receiptHandle": "r3", "body": body("garbage"), "attributes": {}, "messageAttributes": {}},
        {"messageId": "m-flaky", "receiptHandle": "r4", "body": body("flaky"), "attributes": {}, "messageAttributes": {}},
        {"messageId": "m-junk", "receiptHandle": "r5", "body": "not a message", "attributes": {}, "messageAttributes": {}},
        {"messageId": "m-empty", "receiptHandle": "r6", "attributes": {}, "messageAttributes": {}}
    ]}))
    .unwrap();
    let q = QueueName::collect();
    let resp = process_sqs_batch(&ByIncident, &queue, &q, event, Deadline { at_ms: 30_000 }).await;
    let failed: Vec<&str> = resp.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, vec!["m-bad", "m-flaky", "m-junk", "m-empty"]);
    // The deferred message was sent again with its delay, not failed, its deferral counted.
    assert!(queue.receive(&q, 10, Duration::ZERO).await.unwrap().is_empty());
    clock.advance(Duration::from_secs(30));
    let again = queue.receive(&q, 10, Duration::ZERO).await.unwrap();
    assert_eq!((again.len(), again[0].receive_count), (1, 1));
    assert_eq!(Message::parse(&again[0].body).unwrap(), Message::parse(&body("defer")).unwrap());
    assert!(again[0].body.contains("\"deferred\":1"), "{}", again[0].body);
}

#[test]
fn api_gateway_events_become_plain_requests_and_back() {
    let ev: ApiGatewayV2httpRequest = serde_json::from_value(json!({
        "version": "2.0", "rawPath": "/approve", "rawQueryString": "t=a%2Bb&x=1",
        "headers": {"User-Agent": "phone", "Content-Type": "application/x-www-form-urlencoded"},
        "requestContext": {"http": {"method": "POST", "path": "/approve", "sourceIp": "198.51.100.9"}, "timeEpoch": 0},
        "body": "dD1hYmMmZGVjaXNpb249YXBwcm92ZQ==", "isBase64Encoded": true
    }))
    .unwrap();
    let req = to_request(&ev).unwrap();
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/approve"));
    assert_eq!(req.query_param("t"), Some("a+b"));
    assert_eq!(req.header("user-agent"), Some("phone"));
    assert_eq!(req.source_ip.as_deref(), Some("198.51.100.9"));
    assert_eq!(req.form(), vec![("t".to_string(), "abc".to_string()), ("decision".to_string(), "approve".to_string())]);
    let mut bad = ev.clone();
    bad.body = Some("***".into());
    assert_eq!(to_request(&bad).unwrap_err().status, 400);
    let out = to_response(HttpResponse::error(401, "unauthorized", "no"));
    assert_eq!(out.status_code, 401);
    assert_eq!(out.headers.get("content-type").unwrap(), "application/json");
}
