//! The Cortex XDR client against a local fake serving the recorded payloads, and misbehaving.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Duration;

use dossier_adapters::xdr::{AuthKind, XdrCredentials, XdrHttp};
use dossier_core::ports::{XdrApi, XdrError};
use dossier_tests::{fixture, FakeServer, Reply};

const EXTRA: &str = "/public_api/v1/incidents/get_incident_extra_data";
const UPDATE: &str = "/public_api/v1/incidents/update_incident";
const ISOLATE: &str = "/public_api/v1/endpoints/isolate";

fn creds(auth: AuthKind) -> XdrCredentials {
    XdrCredentials { api_key: "k3y-material".into(), api_key_id: "17".into(), auth }
}

#[tokio::test]
async fn fetches_extra_data_with_standard_key_auth() {
    let fake = FakeServer::start().await;
    fake.on("POST", EXTRA, Reply::json(200, fixture("xdr/get_incident_extra_data.json")));
    let xdr = XdrHttp::new(&fake.url(), creds(AuthKind::Standard), Duration::from_secs(5));
    let body = xdr.get_incident_extra_data("1").await.unwrap();
    assert!(dossier_core::xdr::parse_extra_data(&body).is_ok());
    let req = &fake.requests_to(EXTRA)[0];
    assert_eq!(req.header("authorization"), Some("k3y-material"));
    assert_eq!(req.header("x-xdr-auth-id"), Some("17"));
    assert_eq!(req.json()["request_data"]["incident_id"], "1");
    assert_eq!(req.json()["request_data"]["alerts_limit"], 1000);
}

#[tokio::test]
async fn advanced_key_auth_hashes_key_nonce_and_timestamp() {
    let fake = FakeServer::start().await;
    fake.on("POST", UPDATE, Reply::json(200, r#"{"reply": true}"#));
    let xdr = XdrHttp::new(&fake.url(), creds(AuthKind::Advanced), Duration::from_secs(5));
    xdr.add_comment("9", "hello").await.unwrap();
    let req = &fake.requests_to(UPDATE)[0];
    let nonce = req.header("x-xdr-nonce").unwrap();
    let ts = req.header("x-xdr-timestamp").unwrap();
    assert_eq!(nonce.len(), 64);
    assert!(nonce.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(ts.ends_with("000") && ts.len() == 13, "{ts}");
    let expected = hex::encode(Sha256::digest(format!("k3y-material{nonce}{ts}").as_bytes()));
    assert_eq!(req.header("authorization"), Some(expected.as_str()));
    assert_eq!(req.header("x-xdr-auth-id"), Some("17"));
}

#[tokio::test]
async fn comment_request_has_the_documented_shape() {
    let fake = FakeServer::start().await;
    fake.on("POST", UPDATE, Reply::json(200, r#"{"reply": true}"#));
    let xdr = XdrHttp::new(&fake.url(), creds(AuthKind::Standard), Duration::from_secs(5));
    xdr.add_comment("42", "AI text").await.unwrap();
    let body: Value = fake.requests_to(UPDATE)[0].json();
    assert_eq!(body["request_data"]["incident_id"], "42");
    assert_eq!(body["request_data"]["update_data"]["comment"]["comment_action"], "add");
    assert_eq!(body["request_data"]["update_data"]["comment"]["value"], "AI text");
}

#[tokio::test]
async fn isolate_returns_the_action_id() {
    let fake = FakeServer::start().await;
    fake.on("POST", ISOLATE, Reply::json(200, fixture("xdr/response_action_reply_mock.json")));
    let xdr = XdrHttp::new(&fake.url(), creds(AuthKind::Standard), Duration::from_secs(5));
    let id = xdr.isolate_endpoint("ep1", "42").await.unwrap();
    assert!(!id.is_empty());
    let body = fake.requests_to(ISOLATE)[0].json();
    assert_eq!(body["request_data"]["endpoint_id"], "ep1");
    assert_eq!(body["request_data"]["incident_id"], "42");
    // The documentation example with string-typed values parses as well.
    let fake2 = FakeServer::start().await;
    fake2.on("POST", ISOLATE, Reply::json(200, fixture("xdr/isolate.json")));
    let xdr2 = XdrHttp::new(&fake2.url(), creds(AuthKind::Standard), Duration::from_secs(5));
    assert!(!xdr2.isolate_endpoint("ep1", "42").await.unwrap().is_empty());
}

#[tokio::test]
async fn errors_say_what_to_fix_and_whether_to_retry() {
    let fake = FakeServer::start().await;
    let xdr = XdrHttp::new(&fake.url(), creds(AuthKind::Standard), Duration::from_millis(500));
    type Check = fn(&XdrError) -> bool;
    let cases: Vec<(Reply, Check, bool)> = vec![
        (
            Reply::json(401, fixture("xdr/error_401_unauthorized.json")),
            |e| matches!(e, XdrError::Unauthorized(m) if m.contains("Unauthorized access")),
            false,
        ),
        (Reply::json(402, r#"{"reply": {"err_code": 402, "err_msg": "missing license"}}"#), |e| matches!(e, XdrError::NoLicence(_)), false),
        (Reply::json(403, r#"{"reply": {"err_code": 403, "err_msg": "forbidden"}}"#), |e| matches!(e, XdrError::Forbidden(_)), false),
        (
            Reply::json(500, fixture("xdr/error_500_public_api.json")),
            |e| matches!(e, XdrError::Server(m) if m.contains("already been added")),
            true,
        ),
        (
            Reply::json(500, r#"{"reply": {"err_code": 500, "err_msg": "Rate limit exceeded"}}"#),
            |e| matches!(e, XdrError::RateLimited(_)),
            true,
        ),
        (Reply::json(429, "{}"), |e| matches!(e, XdrError::RateLimited(_)), true),
        (Reply::json(200, "{}").delayed(Duration::from_secs(2)), |e| matches!(e, XdrError::Transport(m) if m.contains("timed out")), true),
    ];
    for (i, (reply, check, retryable)) in cases.into_iter().enumerate() {
        fake.once("POST", EXTRA, reply);
        let err = xdr.get_incident_extra_data("1").await.unwrap_err();
        assert!(check(&err), "case {i}: {err:?}");
        assert_eq!(err.is_retryable(), retryable, "case {i}: {err:?}");
        assert!(!err.to_string().contains("k3y-material"), "the key must never appear in an error");
    }
}

#[tokio::test]
async fn an_error_envelope_inside_a_200_is_an_error() {
    let fake = FakeServer::start().await;
    fake.on("POST", UPDATE, Reply::json(200, fixture("xdr/error_401_unauthorized.json")));
    let xdr = XdrHttp::new(&fake.url(), creds(AuthKind::Standard), Duration::from_secs(5));
    assert!(matches!(xdr.add_comment("1", "x").await, Err(XdrError::Unauthorized(_))));
    let fake = FakeServer::start().await;
    fake.on("POST", UPDATE, Reply::json(200, "not json"));
    let xdr = XdrHttp::new(&fake.url(), creds(AuthKind::Standard), Duration::from_secs(5));
    assert!(matches!(xdr.add_comment("1", "x").await, Err(XdrError::BadReply(_))));
}

#[test]
fn credentials_parse_and_never_print_the_key() {
    let c = XdrCredentials::from_secret(r#"{"api_key": "abc", "api_key_id": "5", "auth": "advanced"}"#).unwrap();
    assert_eq!(c.auth, AuthKind::Advanced);
    assert!(!format!("{c:?}").contains("abc"));
    let c = XdrCredentials::from_secret("7:xyz").unwrap();
    assert_eq!((c.api_key_id.as_str(), c.api_key.as_str(), c.auth), ("7", "xyz", AuthKind::Standard));
    assert!(XdrCredentials::from_secret("garbage").is_err());
}
