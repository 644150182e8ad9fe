//! Recorded Future, Google Threat Intelligence, Qualys, Splunk and Sentinel on recorded-shape
//! answers (tests/fixtures, origins in SOURCES.md) behind their strict fakes, and every one of
//! them through the same faults: 401, 429 with Retry-After, 5xx, a malformed and an empty answer.

use std::time::Duration;

use dossier_adapters::sources::{gti, qualys, recordedfuture, sentinel, splunk};
use dossier_core::domain::{normalise, Indicator, IndicatorKind, InternalNames};
use dossier_core::sources::{IndicatorSource, Lookup, LookupError, VerdictLevel};
use dossier_tests::{fixture, found, lookup, vendors, FakeServer, Reply};

const T: Duration = Duration::from_secs(5);
const SHA: &str = "03bd9a94482f180bb047626cb2f27ccf8daa0e201345480b43585580e09c311b";

fn ind(kind: IndicatorKind, v: &str) -> Indicator {
    normalise(kind, v, &InternalNames::default()).unwrap()
}

fn xml(status: u16, body: String) -> Reply {
    Reply::Body(status, body, vec![("content-type".into(), "text/xml".into())])
}

/// What a fault must become.
type Expect = fn(&LookupError) -> bool;

/// The same five faults on the call at `method path`, each answered once: what the source
/// must make of them.
async fn faults(fake: &FakeServer, method: &str, path: &str, src: &dyn IndicatorSource, i: &Indicator) {
    let cases: Vec<(&str, Reply, Expect)> = vec![
        ("401", Reply::json(401, r#"{"error": "unauthorised"}"#), |e| matches!(e, LookupError::Unauthorized(_))),
        ("429", Reply::json(429, r#"{"error": "slow down"}"#).with_header("retry-after", "7"), |e| {
            *e == LookupError::RateLimited { retry_after: Some(Duration::from_secs(7)) }
        }),
        ("503", Reply::json(503, r#"{"error": "unavailable"}"#), |e| matches!(e, LookupError::Server(_))),
        ("malformed", Reply::json(200, "{\"data\": [unterminated"), |e| matches!(e, LookupError::BadReply(_))),
        ("empty", Reply::json(200, ""), |e| matches!(e, LookupError::BadReply(_))),
    ];
    for (name, reply, expected) in cases {
        fake.once(method, path, reply);
        match lookup(src, i).await.0 {
            Err(e) if expected(&e) => {}
            other => panic!("{} {name}: {other:?}", src.name()),
        }
    }
}

// ------------------------------------------------------------------------------ Recorded Future

#[tokio::test]
async fn recorded_future_risk_rules_dates_and_related_actors() {
    let fake = FakeServer::start().await;
    vendors::recorded_future(&fake, "rf-token");
    fake.once("GET", &format!("/v2/hash/{SHA}"), Reply::json(200, fixture("recordedfuture/hash_malicious.json")));
    fake.once("GET", "/v2/ip/184.168.221.96", Reply::json(200, fixture("recordedfuture/ip_related.json")));
    let src = recordedfuture::RecordedFuture::new(&format!("{}/v2", fake.url()), "rf-token".into(), T);

    let v = found(lookup(&src, &ind(IndicatorKind::Sha256, SHA)).await.0);
    assert_eq!(v.verdict, VerdictLevel::Malicious);
    assert_eq!(v.fact_value("actors"), Some("APT28"));
    assert_eq!(v.fact_value("first_seen"), Some("2024-04-29T22:11:03.000Z"));
    assert!(v.summary.contains("risk 95/99 (Very Malicious)") && v.summary.contains("seen 2024-04-29 to 2024-05-01"), "{}", v.summary);
    assert!(v.summary.contains("top rule: Linked to Attack Vector"), "the most critical rule first: {}", v.summary);
    let req = &fake.requests()[0];
    assert_eq!(req.param("fields").as_deref(), Some(recordedfuture::FIELDS));

    let v = found(lookup(&src, &ind(IndicatorKind::Ipv4, "184.168.221.96")).await.0);
    assert_eq!(v.verdict, VerdictLevel::Unknown, "criticality 1 (Unusual) is not suspicious");
    assert_eq!(v.fact_value("malware"), Some("Delf; Zeus"), "most referenced first");
    assert_eq!(v.fact_value("actors"), Some("MyNameSucked"), "a Person is a threat actor too");
    assert_eq!(v.link.as_deref(), Some("https://app.recordedfuture.com/live/sc/entity/ip%3A184.168.221.96"));

    // A URL travels percent-encoded (the strict fake refuses a raw `/`); unknown is a 404.
    let (r, calls) = lookup(&src, &ind(IndicatorKind::Url, "https://cdn-update.example.net/stage2.ps1")).await;
    assert_eq!((r, calls), (Ok(Lookup::NotFound), 1));
    assert!(fake.requests().last().unwrap().path.contains("https%3A%2F%2Fcdn-update.example.net%2Fstage2.ps1"));

    faults(&fake, "GET", &format!("/v2/hash/{SHA}"), &src, &ind(IndicatorKind::Sha256, SHA)).await;
    let wrong = recordedfuture::RecordedFuture::new(&format!("{}/v2", fake.url()), "wrong".into(), T);
    assert!(matches!(lookup(&wrong, &ind(IndicatorKind::Sha256, SHA)).await.0, Err(LookupError::Unauthorized(_))));
}

// ------------------------------------------------------------------------------------------- GTI

#[tokio::test]
async fn gti_assessment_confidence_and_associations() {
    let fake = FakeServer::start().await;
    vendors::gti(&fake, "gti-key");
    let file = "699ec052ecc898bdbdafea0027c4ab44c3d01ae011c17745dd2b7fbddaa077f3";
    fake.on("GET", &format!("/api/v3/files/{file}"), Reply::json(200, fixture("gti/file.json")));
    fake.on("GET", &format!("/api/v3/files/{file}/associations"), Reply::json(200, fixture("gti/file_associations.json")));
    let src = gti::Gti::new(&format!("{}/api/v3", fake.url()), "gti-key".into(), T);

    let (r, calls) = lookup(&src, &ind(IndicatorKind::Sha256, file)).await;
    let v = found(r);
    assert_eq!(calls, 2, "the object, then its associations (malicious)");
    assert_eq!(v.verdict, VerdictLevel::Malicious);
    assert_eq!(v.score, Some(100.0));
    assert_eq!(v.fact_value("actors"), Some("APT28"));
    assert_eq!(v.fact_value("campaigns"), Some("CAMP.24.001"));
    assert_eq!(v.fact_value("malware"), Some("CHOPSTICK"));
    assert_eq!(v.fact_value("confidence"), Some("100"));
    assert_eq!(v.fact_value("first_seen"), Some("2007-02-07 23:53:03 UTC"));
    assert!(v.summary.contains("Mandiant confidence 100") && v.summary.contains("associated with APT28"), "{}", v.summary);
    assert!(fake.requests().iter().all(|r| r.header("x-tool") == Some(gti::TOOL)));

    // Undetected: no second call for names.
    let url = "http://www.fotoidea.com/sport/4x4_san_ponso/slides/IMG_0068.html";
    fake.once("GET", "/api/v3/urls/*", Reply::json(200, fixture("gti/url_undetected.json")));
    let (r, calls) = lookup(&src, &ind(IndicatorKind::Url, url)).await;
    assert_eq!((found(r).verdict, calls), (VerdictLevel::Unknown, 1));

    // A key without a GTI licence gets plain VirusTotal objects: said so, not read as "unknown".
    fake.once(
        "GET",
        "/api/v3/ip_addresses/8.8.8.8",
        Reply::json(200, r#"{"data": {"type": "ip_address", "id": "8.8.8.8", "attributes": {"reputation": 0}}}"#),
    );
    assert!(
        matches!(lookup(&src, &ind(IndicatorKind::Ipv4, "8.8.8.8")).await.0, Err(LookupError::Unauthorized(m)) if m.contains("licence"))
    );

    // The associations call failing leaves the verdict, noted.
    fake.once("GET", &format!("/api/v3/files/{file}/associations"), Reply::json(503, r#"{"error": {"code": "TransientError"}}"#));
    let v = found(lookup(&src, &ind(IndicatorKind::Sha256, file)).await.0);
    assert_eq!(v.verdict, VerdictLevel::Malicious);
    assert!(v.fact_value("associations").is_some_and(|n| n.starts_with("not read")));

    faults(&fake, "GET", "/api/v3/domains/cdn-update.example.net", &src, &ind(IndicatorKind::Domain, "cdn-update.example.net")).await;
}

// ---------------------------------------------------------------------------------------- Qualys

#[tokio::test]
async fn qualys_open_detections_by_address_and_by_name() {
    let fake = FakeServer::start().await;
    vendors::qualys(&fake, "acme_ab12", "s3cret:pw");
    let detections = "/api/2.0/fo/asset/host/vm/detection/";
    let kb = "/api/2.0/fo/knowledge_base/vuln/";
    fake.on("GET", detections, xml(200, fixture("qualys/host_detections.xml")));
    fake.on("GET", kb, xml(200, fixture("qualys/knowledge_base.xml")));
    fake.on("POST", "/qps/rest/2.0/search/am/hostasset", xml(200, fixture("qualys/hostasset_search.xml")));
    let src = qualys::Qualys::new(&fake.url(), "acme_ab12:s3cret:pw", T).unwrap();
    // The organisation's own address (as the collect stage marks it); an outside one is not asked.
    let own = |ip: &str| Indicator { internal: true, ..ind(IndicatorKind::Ipv4, ip) };
    assert_eq!(lookup(&src, &ind(IndicatorKind::Ipv4, "98.136.103.23")).await, (Ok(Lookup::NotFound), 0));

    let (r, calls) = lookup(&src, &own("1.1.1.1")).await;
    let v = found(r);
    assert_eq!(calls, 2, "detections, then titles and CVEs");
    assert_eq!(v.verdict, VerdictLevel::Suspicious, "a critical QDS");
    assert!(
        v.summary.starts_with(
            "Qualys: 2 open (1 urgent, 0 critical, 1 serious); worst Vtecrm Vtenext Multiple Security Vulnerabilities (QDS 95 critical"
        ),
        "{}",
        v.summary
    );
    assert_eq!(v.fact_value("top_vuln_cves"), Some("CVE-2020-10227, CVE-2020-10228"));
    let req = &fake.requests_to(detections)[0];
    assert_eq!(
        (req.param("ips").as_deref(), req.param("status").as_deref(), req.param("show_qds").as_deref()),
        (Some("1.1.1.1"), Some("New,Active,Re-Opened"), Some("1"))
    );
    assert_eq!(fake.requests_to(kb)[0].param("ids").as_deref(), Some("10052,38628"), "worst first");

    // A host name: resolved through Asset Management to the exact host (not the `-old` one).
    let v = found(lookup(&src, &ind(IndicatorKind::Hostname, "FIN-WS-0231")).await.0);
    assert_eq!(v.fact_value("host_id"), Some("143111841"));
    assert_eq!(fake.requests_to(detections).last().unwrap().param("ids").as_deref(), Some("143111841"));

    // Nothing known: no host in the list.
    fake.once("GET", detections, xml(200, fixture("qualys/host_detections_empty.xml")));
    assert_eq!(lookup(&src, &own("10.9.9.9")).await.0, Ok(Lookup::NotFound));

    // Qualys blocks with 409 and says how long (header, or SECONDS_TO_WAIT in the body).
    fake.once("GET", detections, xml(409, fixture("qualys/error_1965_rate.xml")));
    assert_eq!(lookup(&src, &own("1.1.1.1")).await.0, Err(LookupError::RateLimited { retry_after: Some(Duration::from_secs(68928)) }));
    fake.once("GET", detections, xml(409, fixture("qualys/error_1965_rate.xml")).with_header("X-RateLimit-ToWait-Sec", "42"));
    assert_eq!(lookup(&src, &own("1.1.1.1")).await.0, Err(LookupError::RateLimited { retry_after: Some(Duration::from_secs(42)) }));
    // A wrong password: Qualys's bad login, as refused credentials.
    let wrong = qualys::Qualys::new(&fake.url(), "acme_ab12:nope", T).unwrap();
    assert!(matches!(lookup(&wrong, &own("1.1.1.1")).await.0, Err(LookupError::Unauthorized(m)) if m.contains("Bad Login")));
    assert!(qualys::Qualys::new(&fake.url(), "no-colon", T).is_err());

    faults(&fake, "GET", detections, &src, &own("1.1.1.1")).await;
}

// ---------------------------------------------------------------------------------------- Splunk

#[tokio::test]
async fn splunk_runs_one_bounded_job_and_reads_it_once() {
    let fake = FakeServer::start().await;
    vendors::splunk(&fake, "splunk-token");
    let sid = "1700000000.1234";
    let job = format!("/services/search/jobs/{sid}");
    fake.on("POST", "/services/search/jobs", Reply::json(201, fixture("splunk/job_created.json")));
    fake.once("GET", &job, Reply::json(200, fixture("splunk/job_running.json")));
    fake.on("GET", &job, Reply::json(200, fixture("splunk/job_done.json")));
    fake.on("GET", &format!("{job}/results"), Reply::json(200, fixture("splunk/results.json")));
    let mut src = splunk::Splunk::new(&fake.url(), "splunk-token".into(), T);
    src.first_poll = Duration::from_millis(10);

    let host = ind(IndicatorKind::Hostname, "fin-ws-0231");
    let (r, calls) = lookup(&src, &host).await;
    let v = found(r);
    assert_eq!(calls, 4, "create, two polls, results");
    assert_eq!(v.verdict, VerdictLevel::Suspicious, "12 failed logons in 24 hours");
    assert_eq!(v.fact_value("events_7d"), Some("1790"));
    assert_eq!(v.fact_value("templates"), Some(splunk::TEMPLATES_VERSION));
    let create = &fake.requests_to("/services/search/jobs")[0];
    let form: Vec<(String, String)> = form_urlencoded::parse(create.body.as_bytes()).into_owned().collect();
    let field = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!((field("earliest_time"), field("latest_time"), field("exec_mode")), (Some("-7d"), Some("now"), Some("normal")));
    assert!(field("search").unwrap().contains("host=\"fin-ws-0231\""));

    // Values are quoted, never spliced: a quote in a name cannot end the string.
    let q = splunk::history_search(&ind(IndicatorKind::User, "CORP\\j\"doe | delete")).unwrap();
    assert!(q.contains("user=\"corp\\\\j\\\"doe | delete\"") || q.contains("user=\"CORP\\\\j\\\"doe | delete\""), "{q}");

    // A failed job is an error with Splunk's message; a job past the budget is cancelled.
    fake.once("GET", &job, Reply::json(200, fixture("splunk/job_failed.json")));
    assert!(matches!(lookup(&src, &host).await.0, Err(LookupError::BadReply(m)) if m.contains("unbalanced")));
    let mut slow = splunk::Splunk::new(&fake.url(), "splunk-token".into(), T);
    slow.first_poll = Duration::from_millis(20);
    slow.max_wait = Duration::from_millis(30);
    fake.once("GET", &job, Reply::json(200, fixture("splunk/job_running.json")));
    fake.once("GET", &job, Reply::json(200, fixture("splunk/job_running.json")));
    fake.on("POST", &format!("{job}/control"), Reply::json(200, "{}"));
    assert_eq!(lookup(&slow, &host).await.0, Err(LookupError::Timeout));
    let cancel = fake.requests_to(&format!("{job}/control"));
    assert_eq!(cancel.len(), 1);
    assert_eq!(cancel[0].body, "action=cancel");
    // The search head's concurrency limit: a server-side refusal.
    fake.once("POST", "/services/search/jobs", Reply::json(503, fixture("splunk/error_503_concurrency.json")));
    assert!(matches!(lookup(&src, &host).await.0, Err(LookupError::Server(_))));
    let wrong = splunk::Splunk::new(&fake.url(), "wrong".into(), T);
    assert!(matches!(lookup(&wrong, &host).await.0, Err(LookupError::Unauthorized(_))));

    faults(&fake, "GET", &format!("{job}/results"), &src, &host).await;
}

// -------------------------------------------------------------------------------------- Sentinel

fn sentinel_key(fake: &FakeServer) -> sentinel::SentinelCredentials {
    serde_json::from_value(serde_json::json!({
        "tenant_id": "contoso", "client_id": "app-1", "client_secret": "s3cret", "workspace_id": "ws-1",
        "token_url": format!("{}/contoso/oauth2/v2.0/token", fake.url())
    }))
    .unwrap()
}

#[tokio::test]
async fn sentinel_queries_its_workspace_with_an_app_token() {
    let fake = FakeServer::start().await;
    let token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.sentinel";
    vendors::log_analytics(&fake, "app-1", "s3cret", token, "ws-1");
    fake.on("POST", "/contoso/oauth2/v2.0/token", Reply::json(200, fixture("sentinel/token.json")));
    fake.on("POST", "/v1/workspaces/ws-1/query", Reply::json(200, fixture("sentinel/query_rows.json")));
    let src = sentinel::Sentinel::new(&format!("{}/v1", fake.url()), sentinel_key(&fake), T);

    let user = ind(IndicatorKind::User, "j.doe");
    let (r, calls) = lookup(&src, &user).await;
    let v = found(r);
    assert_eq!(calls, 2, "a token, then the query");
    assert_eq!(v.fact_value("events_7d"), Some("1291"));
    assert_eq!(v.fact_value("failed_logons_24h"), Some("3"));
    assert_eq!(v.verdict, VerdictLevel::Unknown);
    let q = fake.requests_to("/v1/workspaces/ws-1/query")[0].json();
    assert_eq!(q["timespan"], "P7D");
    let kql = q["query"].as_str().unwrap();
    assert!(kql.starts_with("union isfuzzy=true") && kql.contains("UserPrincipalName =~ \"j.doe\""), "{kql}");
    // The token is reused.
    let (_, calls) = lookup(&src, &user).await;
    assert_eq!(calls, 1);

    // A partial answer is used and says so; nothing seen is not found.
    fake.once("POST", "/v1/workspaces/ws-1/query", Reply::json(200, fixture("sentinel/query_partial.json")));
    assert!(found(lookup(&src, &user).await.0).fact_value("partial").is_some());
    fake.once("POST", "/v1/workspaces/ws-1/query", Reply::json(200, fixture("sentinel/query_empty.json")));
    assert_eq!(lookup(&src, &user).await.0, Ok(Lookup::NotFound));
    // A query error is an error with the service's message.
    fake.once("POST", "/v1/workspaces/ws-1/query", Reply::json(400, fixture("sentinel/error_400_syntax.json")));
    assert!(matches!(lookup(&src, &user).await.0, Err(LookupError::BadReply(_))));
    // A wrong secret: the token endpoint refuses, as refused credentials.
    let mut key = sentinel_key(&fake);
    key.app.client_secret = "wrong".into();
    let wrong = sentinel::Sentinel::new(&format!("{}/v1", fake.url()), key, T);
    assert!(matches!(lookup(&wrong, &user).await.0, Err(LookupError::Unauthorized(_))));

    faults(&fake, "POST", "/v1/workspaces/ws-1/query", &src, &user).await;
}
