//! The DynamoDB adapter against answers moto never gives: a write refused because a transaction
//! is in flight on one of its items. The fake checks what DynamoDB checks first (a signed
//! request, the JSON protocol's target) and answers with DynamoDB's documented errors.

use dossier_adapters::dynamo::{DynamoStore, TableNames};
use dossier_core::ports::{Condition, DocStore, StoreError, Table, Write, WriteOutcome};
use dossier_tests::{FakeServer, Recorded, Reply};

const TARGET: &str = "DynamoDB_20120810.";

fn amz_json(status: u16, body: &str) -> Reply {
    Reply::Body(status, body.to_string(), vec![("content-type".into(), "application/x-amz-json-1.0".into())])
}

fn ok() -> Reply {
    amz_json(200, "{}")
}

/// `TransactWriteItems` canceled with one reason per item, as DynamoDB lists them.
fn canceled(reasons: &[&str]) -> Reply {
    let list: Vec<serde_json::Value> = reasons.iter().map(|r| serde_json::json!({"Code": r})).collect();
    let body = serde_json::json!({
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "Message": format!("Transaction cancelled, please refer cancellation reasons for specific reasons [{}]", reasons.join(", ")),
        "CancellationReasons": list,
    });
    amz_json(400, &body.to_string())
}

fn put_conflict() -> Reply {
    amz_json(
        400,
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionConflictException","message":"Transaction is ongoing for the item"}"#,
    )
}

/// DynamoDB refuses an unsigned request, or one without the JSON protocol's target, before
/// anything else.
fn checks(r: &Recorded) -> Option<Reply> {
    if !r.header("authorization").is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential=")) {
        return Some(amz_json(
            400,
            r#"{"__type":"com.amazon.coral.service#MissingAuthenticationTokenException","message":"Request is missing Authentication Token"}"#,
        ));
    }
    if r.method != "POST" || r.path != "/" || !r.header("x-amz-target").is_some_and(|t| t.starts_with(TARGET)) {
        return Some(amz_json(400, r#"{"__type":"com.amazon.coral.service#UnknownOperationException"}"#));
    }
    None
}

async fn store(server: &FakeServer) -> DynamoStore {
    let sdk = dossier_adapters::aws::sdk_config_for(&server.url()).await;
    DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), TableNames::prefixed("faults-"))
}

fn operations(server: &FakeServer) -> Vec<String> {
    server.requests().iter().filter_map(|r| r.header("x-amz-target").map(|t| t.trim_start_matches(TARGET).to_string())).collect()
}

fn draft_and_case() -> Vec<Write> {
    vec![
        Write::new(Table::Cases, "t#1", "case", "{}", Condition::Version(3)),
        Write::new(Table::Effects, "t#1", "draft#dossier-1", "{}", Condition::AbsentAt(4)),
    ]
}

#[tokio::test]
async fn a_transaction_refused_for_another_in_flight_is_sent_again_and_lands() {
    let server = FakeServer::start().await;
    server
        .guard(checks)
        .once("POST", "/", canceled(&["None", "TransactionConflict"]))
        .once("POST", "/", canceled(&["TransactionConflict", "None"]))
        .on("POST", "/", ok());
    let outcome = store(&server).await.write(draft_and_case()).await.unwrap();
    assert_eq!(outcome, WriteOutcome::Written);
    assert_eq!(operations(&server), vec!["TransactWriteItems"; 3]);
    // The same transaction each time.
    let bodies: Vec<String> = server.requests().iter().map(|r| r.json()["TransactItems"].to_string()).collect();
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
}

#[tokio::test]
async fn a_put_refused_for_a_transaction_in_flight_is_sent_again_and_its_condition_decides() {
    let server = FakeServer::start().await;
    let condition_failed = amz_json(
        400,
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#,
    );
    server.guard(checks).once("POST", "/", put_conflict()).on("POST", "/", condition_failed);
    let claim = Write::new(Table::Effects, "t#1", "draft#dossier-1", "{}", Condition::Version(4));
    assert_eq!(store(&server).await.write(vec![claim]).await.unwrap(), WriteOutcome::Conflict { index: 0 });
    assert_eq!(operations(&server), vec!["PutItem"; 2]);
}

#[tokio::test]
async fn a_failed_condition_is_a_conflict_at_once_even_beside_a_transaction_conflict() {
    let server = FakeServer::start().await;
    server.guard(checks).on("POST", "/", canceled(&["TransactionConflict", "ConditionalCheckFailed"]));
    assert_eq!(store(&server).await.write(draft_and_case()).await.unwrap(), WriteOutcome::Conflict { index: 1 });
    assert_eq!(operations(&server).len(), 1);
}

#[tokio::test]
async fn a_transaction_in_flight_that_stays_is_unavailable_after_a_few_tries() {
    let server = FakeServer::start().await;
    server.guard(checks).on("POST", "/", canceled(&["None", "TransactionConflict"]));
    let err = store(&server).await.write(draft_and_case()).await.unwrap_err();
    assert!(matches!(&err, StoreError::Unavailable(m) if m.contains("draft#dossier-1")), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(operations(&server).len(), 5);
    // A transaction canceled for throttling is not tried again here: the message is.
    let throttled = FakeServer::start().await;
    throttled.guard(checks).on("POST", "/", canceled(&["ThrottlingError", "None"]));
    assert!(matches!(store(&throttled).await.write(draft_and_case()).await, Err(StoreError::Unavailable(_))));
    assert_eq!(operations(&throttled).len(), 1);
}
