//! The Cortex XDR client against a local fake serving the recorded payloads, and misbehaving.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

use dossier_adapters::xdr::{AuthKind, Generation, XdrCredentials, XdrHttp};
use dossier_core::ports::{XdrApi, XdrError};
use dossier_tests::{fixture, vendors, FakeServer, Reply};

const EXTRA: &str = "/public_api/v1/incidents/get_incident_extra_data";
const UPDATE: &str = "/public_api/v1/incidents/update_incident";
const ISOLATE: &str = "/public_api/v1/endpoints/isolate";

/// The key the strict fake tenant accepts.
const XDR_KEY: &str = "k3y-material";
const XDR_KEY_ID: &str = "17";

fn creds(auth: AuthKind) -> XdrCredentials {
    XdrCredentials { api_key: XDR_KEY.into(), api_key_id: XDR_KEY_ID.into(), auth, generation: Generation::V3 }
}

#[tokio::test]
async fn fetches_extra_data_with_standard_key_auth() {
    let fake = FakeServer::start().await;
    vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
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
    vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
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
    vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
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
    vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
    fake.on("POST", ISOLATE, Reply::json(200, fixture("xdr/response_action_reply_mock.json")));
    let xdr = XdrHttp::new(&fake.url(), creds(AuthKind::Standard), Duration::from_secs(5));
    let id = xdr.isolate_endpoint("ep1", "42").await.unwrap();
    assert!(!id.is_empty());
    let body = fake.requests_to(ISOLATE)[0].json();
    assert_eq!(body["request_data"]["endpoint_id"], "ep1");
    assert_eq!(body["request_data"]["incident_id"], "42");
    // The documentation example with string-typed values parses as well.
    let fake2 = FakeServer::start().await;
    vendors::xdr(&fake2, XDR_KEY_ID, XDR_KEY);
    fake2.on("POST", ISOLATE, Reply::json(200, fixture("xdr/isolate.json")));
    let xdr2 = XdrHttp::new(&fake2.url(), creds(AuthKind::Standard), Duration::from_secs(5));
    assert!(!xdr2.isolate_endpoint("ep1", "42").await.unwrap().is_empty());
}

#[tokio::test]
async fn errors_say_what_to_fix_and_whether_to_retry() {
    let fake = FakeServer::start().await;
    vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
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
        (
            Reply::json(200, r#"{"reply": true}"#).delayed(Duration::from_secs(2)),
            |e| matches!(e, XdrError::Transport(m) if m.contains("timed out")),
            true,
        ),
    ];
    // Through a write, which the client never retries by itself, so each reply is seen once.
    for (i, (reply, check, retryable)) in cases.into_iter().enumerate() {
        fake.once("POST", UPDATE, reply);
        let err = xdr.add_comment("1", "x").await.unwrap_err();
        assert!(check(&err), "case {i}: {err:?}");
        assert_eq!(err.is_retryable(), retryable, "case {i}: {err:?}");
        assert!(!err.to_string().contains("k3y-material"), "the key must never appear in an error");
    }
}

#[tokio::test]
async fn an_error_envelope_inside_a_200_is_an_error() {
    let fake = FakeServer::start().await;
    vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
    fake.on("POST", UPDATE, Reply::json(200, fixture("xdr/error_401_unauthorized.json")));
    let xdr = XdrHttp::new(&fake.url(), creds(AuthKind::Standard), Duration::from_secs(5));
    assert!(matches!(xdr.add_comment("1", "x").await, Err(XdrError::Unauthorized(_))));
    let fake = FakeServer::start().await;
    vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
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

fn client(fake: &FakeServer, generation: Generation) -> XdrHttp {
    XdrHttp::new(
        &fake.url(),
        XdrCredentials { api_key: XDR_KEY.into(), api_key_id: XDR_KEY_ID.into(), auth: AuthKind::Standard, generation },
        Duration::from_secs(5),
    )
}

#[tokio::test]
async fn get_incidents_pages_by_100_over_the_modification_window() {
    let fake = FakeServer::start().await;
    vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
    let template: Value = serde_json::from_str(&fixture("xdr/get_incidents_recent_fields.json")).unwrap();
    let incident = template["reply"]["incidents"][0].clone();
    fake.on(
        "POST",
        "/public_api/v1/incidents/get_incidents",
        Reply::dynamic(move |req| {
            let rd = &req.json()["request_data"];
            let from = rd["search_from"].as_u64().unwrap();
            let to = rd["search_to"].as_u64().unwrap().min(250);
            let page: Vec<Value> = (from..to)
                .map(|i| {
                    let mut inc = incident.clone();
                    inc["incident_id"] = json!((1000 + i).to_string());
                    inc["modification_time"] = json!(1_700_000_000_000u64 + i);
                    inc
                })
                .collect();
            Reply::json(200, json!({"reply": {"total_count": 250, "result_count": page.len(), "incidents": page}}).to_string())
        }),
    );
    let xdr = client(&fake, Generation::V3);
    let refs = xdr.list_modified(1_000, 2_000_000_000_000).await.unwrap();
    assert_eq!(refs.len(), 250);
    assert_eq!(refs[0].incident_id, "1000");
    assert_eq!(refs[0].status.as_deref(), Some("new"));
    assert_eq!(refs[249].modification_ms, Some(1_700_000_000_249));
    let reqs = fake.requests_to("/public_api/v1/incidents/get_incidents");
    assert_eq!(reqs.len(), 3);
    let rd = &reqs[0].json()["request_data"];
    assert_eq!(rd["filters"][0], json!({"field": "modification_time", "operator": "gte", "value": 1000}));
    assert_eq!(rd["sort"], json!({"field": "modification_time", "keyword": "asc"}));
    assert_eq!(
        (reqs[2].json()["request_data"]["search_from"].as_u64(), reqs[2].json()["request_data"]["search_to"].as_u64()),
        (Some(200), Some(300))
    );
}

#[tokio::test]
async fn recorded_incident_listings_parse() {
    for f in ["xdr/get_incidents.json", "xdr/get_incidents_recent_fields.json"] {
        let fake = FakeServer::start().await;
        vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
        fake.on("POST", "/public_api/v1/incidents/get_incidents", Reply::json(200, fixture(f)));
        let refs = client(&fake, Generation::V3).list_modified(0, 1).await.unwrap();
        let listed = serde_json::from_str::<Value>(&fixture(f)).unwrap()["reply"]["incidents"].as_array().unwrap().len();
        assert_eq!(refs.len(), listed, "{f}");
        assert!(refs.iter().all(|r| r.creation_ms.is_some() && !r.description.is_empty()), "{f}: {refs:?}");
    }
}

#[tokio::test]
async fn reads_are_retried_with_backoff_writes_are_not() {
    let fake = FakeServer::start().await;
    vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
    fake.once("POST", EXTRA, Reply::json(500, fixture("xdr/error_500_public_api.json")));
    fake.on("POST", EXTRA, Reply::json(200, fixture("xdr/get_incident_extra_data.json")));
    fake.on("POST", UPDATE, Reply::json(500, fixture("xdr/error_500_public_api.json")));
    let xdr = client(&fake, Generation::V3);
    assert!(xdr.get_incident_extra_data("1").await.is_ok());
    assert_eq!(fake.requests_to(EXTRA).len(), 2);
    assert!(matches!(xdr.add_comment("1", "x").await, Err(XdrError::Server(_))));
    assert_eq!(fake.requests_to(UPDATE).len(), 1, "a comment is never sent twice by the client");
}

#[tokio::test]
async fn a_5x_tenant_is_probed_once_and_served_through_cases_and_issues() {
    let fake = FakeServer::start().await;
    vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
    fake.on("POST", "/public_api/v1/case/search", Reply::json(200, fixture("xdr/case_search_v5_mock.json")));
    fake.on("POST", "/public_api/v1/issue/search", Reply::json(200, fixture("xdr/issue_search_docs_example.json")));
    // The shape clients tested on tenants read (the reference gives a schema only).
    fake.on(
        "GET",
        "/public_api/v1/case/artifacts/42/",
        Reply::json(
            200,
            r#"[{"case_id": 42,
                "network_artifacts": {"TOTAL_COUNT": 1, "DATA": [{"type": "IP", "network_remote_ip": "98.136.103.23"}]},
                "file_artifacts": {"TOTAL_COUNT": 1, "DATA": [{"type": "HASH", "file_sha256": "03bd9a94482f180bb047626cb2f27ccf8daa0e201345480b43585580e09c311b"}]}}]"#,
        ),
    );
    fake.on("POST", "/public_api/v1/entries/insert", Reply::json(200, "{}"));
    fake.on("POST", "/public_api/v1/case/update/42", Reply::Body(204, String::new(), vec![]));
    let xdr = client(&fake, Generation::Auto);
    let refs = xdr.list_modified(0, 1).await.unwrap();
    assert_eq!((refs[0].incident_id.as_str(), refs[0].status.as_deref()), ("42", Some("Custom tenant status")));
    let extra = xdr.get_incident_extra_data("42").await.unwrap();
    let data = dossier_core::xdr::parse_extra_data(&extra).unwrap();
    let found = dossier_core::extract::extract(&data[0], &Default::default());
    let values: Vec<&str> = found.indicators.iter().map(|i| i.value.as_str()).collect();
    // From the documentation example's normalised fields: host, user, file hash, domain.
    assert!(values.contains(&"hostname1"), "issue host from xdm fields: {values:?}");
    assert!(values.contains(&"d4bfc6fabe8d6d1b76e5b441dc8d01758276281f56c929b282ac5c3ee704c431"), "{values:?}");
    assert!(values.iter().any(|v| v.ends_with("admin")), "xdm.source.identity.username: {values:?}");
    let issue_search = &fake.requests_to("/public_api/v1/issue/search")[0].json()["request_data"];
    assert_eq!(issue_search["include_fields"], json!(["normalized_fields"]));
    assert!(
        values.contains(&"98.136.103.23") && values.contains(&"03bd9a94482f180bb047626cb2f27ccf8daa0e201345480b43585580e09c311b"),
        "{values:?}"
    );
    xdr.add_comment("42", "dossier text").await.unwrap();
    let entry = &fake.requests_to("/public_api/v1/entries/insert")[0];
    assert_eq!(entry.json(), json!({"id": "INCIDENT-42", "data": "dossier text"}), "a case's War Room, not an alert's");
    // The poll used the documented filter and sort fields.
    let poll =
        fake.requests_to("/public_api/v1/case/search").into_iter().find(|r| r.json()["request_data"].get("filters").is_some()).unwrap();
    let rd = &poll.json()["request_data"];
    assert_eq!(rd["filters"][0]["field"], "last_update_time");
    assert_eq!(rd["sort"], json!({"field": "case_id", "keyword": "asc"}));
    xdr.set_severity("42", "critical").await.unwrap();
    assert_eq!(fake.requests_to("/public_api/v1/case/update/42")[0].json()["request_data"]["update_data"]["user_severity"], "critical");
    // One probe (the first case/search with search_to 1), then real calls.
    let probes =
        fake.requests_to("/public_api/v1/case/search").iter().filter(|r| r.json()["request_data"].get("filters").is_none()).count();
    assert_eq!(probes, 1);
    assert!(fake.requests_to("/public_api/v1/incidents/update_incident").is_empty());
}

#[tokio::test]
async fn the_rest_of_the_3x_client_on_recorded_payloads() {
    let fake = FakeServer::start().await;
    vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
    fake.on("POST", "/public_api/v2/alerts/get_alerts_multi_events", Reply::json(200, fixture("xdr/get_alerts_multi_events_v2.json")));
    fake.on("POST", "/public_api/v1/endpoints/get_endpoint", Reply::json(200, fixture("xdr/get_endpoint.json")));
    fake.on("POST", "/public_api/v1/actions/get_action_status", Reply::json(200, fixture("xdr/get_action_status.json")));
    fake.on("POST", UPDATE, Reply::json(200, r#"{"reply": true}"#));
    let xdr = client(&fake, Generation::V3);

    let ids: Vec<String> = (0..150).map(|i| i.to_string()).collect();
    let alerts = xdr.get_alerts_v2(&ids).await.unwrap();
    assert_eq!(alerts.len(), 2, "one recorded alert per page, two pages of ids");
    let pages = fake.requests_to("/public_api/v2/alerts/get_alerts_multi_events");
    assert_eq!(pages[1].json()["request_data"]["filters"][0]["value"].as_array().unwrap().len(), 50);

    let eps = xdr.get_endpoints(&["1111".into()]).await.unwrap();
    assert_eq!(
        (eps[0].endpoint_id.as_str(), eps[0].status.as_deref(), eps[0].ips.clone()),
        ("1111", Some("CONNECTED"), vec!["3.3.3.3".to_string()])
    );

    let status = xdr.get_action_status("7").await.unwrap();
    assert!(status.contains(&("23a86310665d413a958926fce5b794b3".to_string(), "FAILED".to_string())));
    assert_eq!(fake.requests_to("/public_api/v1/actions/get_action_status")[0].json()["request_data"]["group_action_id"], 7);

    use dossier_adapters::xdr::IncidentUpdate;
    let upd = IncidentUpdate {
        status: Some("under_investigation".into()),
        assigned_user_mail: Some("a@example.com".into()),
        ..Default::default()
    };
    xdr.update_incident("5", &upd).await.unwrap();
    assert_eq!(
        fake.requests_to(UPDATE)[0].json()["request_data"]["update_data"],
        json!({"status": "under_investigation", "assigned_user_mail": "a@example.com"})
    );
    let bad = IncidentUpdate { assigned_user_pretty_name: Some("A".into()), ..Default::default() };
    assert!(xdr.update_incident("5", &bad).await.is_err());
    assert_eq!(fake.requests_to(UPDATE).len(), 1);
}

#[tokio::test]
async fn xql_runs_polls_pending_and_streams_large_results() {
    use dossier_adapters::xdr::XqlOutcome;
    let fake = FakeServer::start().await;
    vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
    fake.on("POST", "/public_api/v1/xql/start_xql_query", Reply::json(200, fixture("xdr/xql_start_xql_query.json")));
    fake.once("POST", "/public_api/v1/xql/get_query_results", Reply::json(200, fixture("xdr/xql_get_query_results_pending.json")));
    fake.once("POST", "/public_api/v1/xql/get_query_results", Reply::json(200, fixture("xdr/xql_get_query_results.json")));
    fake.once("POST", "/public_api/v1/xql/get_query_results", Reply::json(200, fixture("xdr/xql_get_query_results_stream_id.json")));
    let rows: Vec<Value> = serde_json::from_str(&fixture("xdr/xql_get_query_results_stream_rows.json")).unwrap();
    let ndjson: String = rows.iter().map(|r| r.to_string() + "\n").collect();
    fake.on("POST", "/public_api/v1/xql/get_query_results_stream", Reply::Body(200, ndjson, vec![]));
    let xdr = client(&fake, Generation::V3);

    let id = xdr.start_xql_query("dataset = xdr_data | limit 10", 86_400_000).await.unwrap();
    assert_eq!(id, "ad21c1e1492d4c_667_inv");
    assert_eq!(fake.requests_to("/public_api/v1/xql/start_xql_query")[0].json()["request_data"]["timeframe"]["relativeTime"], 86_400_000);
    assert!(xdr.xql_status(&id).await.unwrap().is_none(), "PENDING");
    match xdr.xql_status(&id).await.unwrap() {
        Some(XqlOutcome::Rows(r)) => assert_eq!(r.len(), 3),
        other => panic!("{other:?}"),
    }
    let body = fake.requests_to("/public_api/v1/xql/get_query_results")[0].json();
    assert_eq!(body["request_data"]["limit"], 1000);
    let Some(XqlOutcome::Stream(stream)) = xdr.xql_status(&id).await.unwrap() else { panic!("expected a stream") };
    let streamed = xdr.get_query_results_stream(&stream).await.unwrap();
    assert_eq!(streamed, rows);
    // PARTIAL_SUCCESS (part of the tenants or datasets answered): the rows that came are kept.
    let mut partial: Value = serde_json::from_str(&fixture("xdr/xql_get_query_results.json")).unwrap();
    partial["reply"]["status"] = json!("PARTIAL_SUCCESS");
    fake.once("POST", "/public_api/v1/xql/get_query_results", Reply::json(200, partial.to_string()));
    match xdr.xql_status(&id).await.unwrap() {
        Some(XqlOutcome::Rows(r)) => assert_eq!(r.len(), 3),
        other => panic!("PARTIAL_SUCCESS is not a failure: {other:?}"),
    }
}

#[tokio::test]
async fn documentation_examples_parse_too() {
    let fake = FakeServer::start().await;
    vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
    fake.on("POST", "/public_api/v1/endpoints/get_endpoint", Reply::json(200, fixture("xdr/get_endpoint_docs_example.json")));
    fake.on("POST", "/public_api/v1/actions/get_action_status", Reply::json(200, fixture("xdr/get_action_status_docs_example.json")));
    let xdr = client(&fake, Generation::V3);
    // The published example's id is a template placeholder (`<endpoint ID>`): never an endpoint to act on.
    assert!(xdr.get_endpoints(&["x".into()]).await.unwrap().is_empty());
    assert_eq!(xdr.get_action_status("1").await.unwrap(), vec![("<agent ID>".to_string(), "COMPLETED_SUCCESSFULLY".to_string())]);
}

#[tokio::test]
async fn block_hash_and_already_listed() {
    let fake = FakeServer::start().await;
    vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
    fake.once("POST", "/public_api/v1/hash_exceptions/blocklist", Reply::json(200, r#"{"reply": true}"#));
    fake.once("POST", "/public_api/v1/hash_exceptions/blocklist", Reply::json(500, fixture("xdr/error_500_public_api.json")));
    let xdr = client(&fake, Generation::V3);
    let h = "03bd9a94482f180bb047626cb2f27ccf8daa0e201345480b43585580e09c311b";
    xdr.block_hash(h, "approved by lead", "42").await.unwrap();
    let body = fake.requests()[0].json();
    assert_eq!(body["request_data"]["hash_list"], json!([h]));
    assert_eq!(body["request_data"]["incident_id"], 42, "an integer in this call's schema");
    // "All hashes have already been added to the allow or block list": the goal is reached.
    xdr.block_hash(h, "again", "42").await.unwrap();
}

/// A failed probe (a refused key from clock skew, a rate limit, a server error) says nothing
/// about the API generation: it is not cached, and the next call probes again.
#[tokio::test]
async fn a_probe_that_fails_for_another_reason_fixes_no_generation() {
    let fake = FakeServer::start().await;
    vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
    fake.once("POST", "/public_api/v1/case/search", Reply::json(401, fixture("xdr/error_401_unauthorized.json")));
    fake.once("POST", "/public_api/v1/case/search", Reply::json(429, r#"{"reply": {"err_code": 429, "err_msg": "rate limit"}}"#));
    fake.on("POST", "/public_api/v1/case/search", Reply::json(200, fixture("xdr/case_search_v5_mock.json")));
    let xdr = client(&fake, Generation::Auto);
    assert!(matches!(xdr.list_modified(0, 1).await, Err(XdrError::Unauthorized(_))));
    assert!(matches!(xdr.list_modified(0, 1).await, Err(XdrError::RateLimited(_))));
    assert!(xdr.list_modified(0, 1).await.is_ok());
    assert_eq!(xdr.generation().await.unwrap(), Generation::V5, "the tenant is 5.x after all");
    assert!(fake.requests_to("/public_api/v1/incidents/get_incidents").is_empty(), "never fell back to 3.x");
    // A tenant without case/search (404) is 3.x.
    let old = FakeServer::start().await;
    vendors::xdr(&old, XDR_KEY_ID, XDR_KEY);
    old.on("POST", "/public_api/v1/incidents/get_incidents", Reply::json(200, fixture("xdr/get_incidents.json")));
    let xdr = client(&old, Generation::Auto);
    assert!(xdr.list_modified(0, 1).await.is_ok());
    assert_eq!(xdr.generation().await.unwrap(), Generation::V3);
}

/// The strict tenant refuses what XDR documents it refuses; the client says so in words that
/// tell the operator what to fix.
#[tokio::test]
async fn the_strict_tenant_refuses_what_xdr_refuses() {
    let fake = FakeServer::start().await;
    vendors::xdr(&fake, XDR_KEY_ID, XDR_KEY);
    fake.on("POST", EXTRA, Reply::json(200, fixture("xdr/get_incident_extra_data.json")));
    fake.on("POST", "/public_api/v1/case/search", Reply::json(200, r#"{"reply": {"TOTAL_COUNT": 0, "FILTER_COUNT": 0, "DATA": []}}"#));
    let wrong = XdrHttp::new(
        &fake.url(),
        XdrCredentials { api_key: "stolen".into(), api_key_id: XDR_KEY_ID.into(), auth: AuthKind::Advanced, generation: Generation::V3 },
        Duration::from_secs(5),
    );
    assert!(matches!(wrong.get_incident_extra_data("1").await, Err(XdrError::Unauthorized(_))));
    let http = dossier_adapters::http_client::client(Duration::from_secs(5));
    let post = |path: &str, body: Value| {
        http.post(format!("{}/public_api/v1/{path}", fake.url()))
            .header("x-xdr-auth-id", XDR_KEY_ID)
            .header("authorization", XDR_KEY)
            .json(&body)
    };
    let status = |req: reqwest::RequestBuilder| async move { req.send().await.unwrap().status().as_u16() };
    assert_eq!(status(post("incidents/get_incident_extra_data", json!({"request_data": {"incident_id": "1"}}))).await, 200);
    assert_eq!(status(post("incidents/get_incident_extra_data", json!({"incident_id": "1"}))).await, 400, "not under request_data");
    assert_eq!(status(post("incidents/get_incident_extra_data", json!({"request_data": {}}))).await, 400, "incident_id required");
    let page = json!({"request_data": {"search_from": 0, "search_to": 500}});
    assert_eq!(status(post("incidents/get_incidents", page)).await, 400, "pages of 100");
    let filter = json!({"request_data": {"filters": [{"field": "last_update_time", "operator": "gte", "value": 1}]}});
    assert_eq!(status(post("incidents/get_incidents", filter)).await, 400, "a 5.x field on 3.x");
    let sort = json!({"request_data": {"sort": {"field": "modification_time", "keyword": "asc"}}});
    assert_eq!(status(post("case/search", sort)).await, 200);
    let sort = json!({"request_data": {"sort": {"field": "last_update_time", "keyword": "asc"}}});
    assert_eq!(status(post("case/search", sort)).await, 400, "not a sort field of case/search");
    let block = json!({"request_data": {"hash_list": ["ab"], "incident_id": "42"}});
    assert_eq!(status(post("hash_exceptions/blocklist", block)).await, 400, "incident_id is an integer here");
    let sev = json!({"request_data": {"incident_id": "1", "update_data": {"manual_severity": "HIGH"}}});
    assert_eq!(status(post("incidents/update_incident", sev)).await, 400);
    assert_eq!(
        status(
            http.get(format!("{}/public_api/v1/incidents/get_incidents", fake.url()))
                .header("x-xdr-auth-id", XDR_KEY_ID)
                .header("authorization", XDR_KEY)
        )
        .await,
        405
    );
    // A client severity in capitals goes out as XDR documents it.
    fake.on("POST", UPDATE, Reply::json(200, r#"{"reply": true}"#));
    client(&fake, Generation::V3).set_severity("1", "HIGH").await.unwrap();
    assert_eq!(fake.requests_to(UPDATE).last().unwrap().json()["request_data"]["update_data"]["manual_severity"], "high");
}
