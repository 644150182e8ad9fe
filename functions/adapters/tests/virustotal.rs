//! VirusTotal v3: every recorded fixture parsed into a verdict, and the client against a fake
//! that answers 404, 429, 500, slowly and with garbage.

use serde_json::Value;
use std::time::Duration;

use dossier_adapters::virustotal::{verdict_from, VirusTotal};
use dossier_core::case::{Case, CaseKey, IncidentHint, Trigger};
use dossier_core::indicator::{normalise, IndicatorKind, InternalNames};
use dossier_core::sources::{IndicatorSource, Lookup, LookupError, LookupLimits, PerIndicator, Source, SourceStatus, VerdictLevel};
use dossier_tests::{fixture, FakeServer, Reply};

fn json(rel: &str) -> Value {
    serde_json::from_str(&fixture(rel)).unwrap()
}

#[test]
fn every_recorded_object_becomes_a_verdict() {
    let ip = verdict_from(IndicatorKind::Ipv4, "8.8.8.8", &json("virustotal/ip_address.json"), 3).unwrap();
    assert_eq!(ip.verdict, VerdictLevel::Malicious);
    assert!(ip.summary.starts_with("5/87 engines flag it malicious, 2 suspicious"), "{}", ip.summary);
    assert!(ip.summary.contains("AS396507 EMERALD-ONION"), "{}", ip.summary);
    assert_eq!(ip.link.as_deref(), Some("https://www.virustotal.com/gui/ip-address/8.8.8.8"));
    let domain = verdict_from(IndicatorKind::Domain, "example.com", &json("virustotal/domain.json"), 3).unwrap();
    assert_eq!(domain.verdict, VerdictLevel::Malicious);
    assert!(domain.summary.starts_with("8/98"), "{}", domain.summary);
    let url = verdict_from(IndicatorKind::Url, "http://example.com/", &json("virustotal/url.json"), 3).unwrap();
    assert_eq!(url.verdict, VerdictLevel::Malicious);
    let file = verdict_from(
        IndicatorKind::Sha256,
        "03bd9a94482f180bb047626cb2f27ccf8daa0e201345480b43585580e09c311b",
        &json("virustotal/file_sha256.json"),
        3,
    )
    .unwrap();
    assert_eq!(file.verdict, VerdictLevel::Malicious);
    assert!(file.summary.contains("40/"), "{}", file.summary);
    assert!(file.summary.contains("label"), "{}", file.summary);
    // A stricter threshold turns a 5-engine IP into suspicious.
    assert_eq!(
        verdict_from(IndicatorKind::Ipv4, "8.8.8.8", &json("virustotal/ip_address.json"), 10).unwrap().verdict,
        VerdictLevel::Suspicious
    );
    assert!(matches!(
        verdict_from(IndicatorKind::Ipv4, "8.8.8.8", &json("virustotal/error_404_not_found.json"), 3),
        Err(LookupError::BadReply(_))
    ));
}

fn indicator(kind: IndicatorKind, v: &str) -> dossier_core::indicator::Indicator {
    normalise(kind, v, &InternalNames::default()).unwrap()
}

fn case_with(values: &[(IndicatorKind, &str)]) -> Case {
    let mut c = Case::new(CaseKey::new("t", "1").unwrap(), Trigger::Local, IncidentHint::default(), 0);
    c.indicators = values.iter().map(|(k, v)| indicator(*k, v)).collect();
    c
}

#[tokio::test]
async fn lookups_hit_the_documented_paths_with_the_key_header() {
    let fake = FakeServer::start().await;
    fake.on("GET", "/api/v3/ip_addresses/8.8.8.8", Reply::json(200, fixture("virustotal/ip_address.json")));
    fake.on("GET", "/api/v3/urls/*", Reply::json(200, fixture("virustotal/url.json")));
    fake.on("GET", "/api/v3/files/*", Reply::json(404, fixture("virustotal/error_404_not_found.json")));
    let vt = VirusTotal::new(&format!("{}/api/v3", fake.url()), "vt-key".into(), Duration::from_secs(5));
    assert!(matches!(vt.lookup(&indicator(IndicatorKind::Ipv4, "8.8.8.8")).await.unwrap(), Lookup::Found(_)));
    assert_eq!(vt.lookup(&indicator(IndicatorKind::Sha256, &"a".repeat(64))).await.unwrap(), Lookup::NotFound);
    vt.lookup(&indicator(IndicatorKind::Url, "http://bad.example.com/x")).await.unwrap();
    let reqs = fake.requests();
    assert!(reqs.iter().all(|r| r.header("x-apikey") == Some("vt-key")));
    // URL ids are unpadded base64url of the URL.
    assert!(
        reqs.iter().any(|r| r.path == "/api/v3/urls/aHR0cDovL2JhZC5leGFtcGxlLmNvbS94"),
        "{:?}",
        reqs.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn quota_exhaustion_defers_instead_of_failing() {
    let fake = FakeServer::start().await;
    fake.on(
        "GET",
        "/api/v3/ip_addresses/*",
        Reply::json(429, fixture("virustotal/error_429_quota_exceeded.json")).with_header("retry-after", "37"),
    );
    let src = PerIndicator {
        inner: VirusTotal::new(&format!("{}/api/v3", fake.url()), "k".into(), Duration::from_secs(5)),
        limits: LookupLimits::default(),
    };
    let deferred = src.enrich(&case_with(&[(IndicatorKind::Ipv4, "8.8.8.8")])).await.unwrap_err();
    assert_eq!(deferred.after, Duration::from_secs(37));
}

#[tokio::test]
async fn server_errors_timeouts_and_garbage_are_reported_not_fatal() {
    let fake = FakeServer::start().await;
    fake.on("GET", "/api/v3/ip_addresses/1.2.3.4", Reply::json(500, r#"{"error": {"code": "TransientError"}}"#));
    fake.on("GET", "/api/v3/ip_addresses/5.6.7.8", Reply::json(200, fixture("virustotal/ip_address.json")).delayed(Duration::from_secs(3)));
    fake.on("GET", "/api/v3/domains/garbage.example.com", Reply::json(200, "{\"data\": "));
    fake.on("GET", "/api/v3/domains/ok.example.com", Reply::json(200, fixture("virustotal/domain.json")));
    let timeout = Duration::from_millis(300);
    let src = PerIndicator {
        inner: VirusTotal::new(&format!("{}/api/v3", fake.url()), "k".into(), Duration::from_secs(5)),
        limits: LookupLimits { per_lookup_timeout: timeout, ..LookupLimits::default() },
    };
    let report = src
        .enrich(&case_with(&[
            (IndicatorKind::Ipv4, "1.2.3.4"),
            (IndicatorKind::Ipv4, "5.6.7.8"),
            (IndicatorKind::Domain, "garbage.example.com"),
            (IndicatorKind::Domain, "ok.example.com"),
        ]))
        .await
        .unwrap();
    assert_eq!(report.status, SourceStatus::Ok);
    assert_eq!(report.verdicts.len(), 1);
    assert_eq!(report.errors.len(), 3, "{:?}", report.errors);
    assert!(report.errors.iter().any(|e| e.contains("timed out")));
    assert!(report.errors.iter().any(|e| e.contains("server error")));
    assert!(report.errors.iter().any(|e| e.contains("not JSON")));
    assert_eq!(report.calls, 4);
    // Everything failing is an error status, all timing out is timed_out.
    let all_slow = PerIndicator {
        inner: VirusTotal::new(&format!("{}/api/v3", fake.url()), "k".into(), Duration::from_secs(5)),
        limits: LookupLimits { per_lookup_timeout: timeout, ..LookupLimits::default() },
    };
    assert_eq!(all_slow.enrich(&case_with(&[(IndicatorKind::Ipv4, "5.6.7.8")])).await.unwrap().status, SourceStatus::TimedOut);
    assert_eq!(all_slow.enrich(&case_with(&[(IndicatorKind::Ipv4, "1.2.3.4")])).await.unwrap().status, SourceStatus::Error);
}

#[tokio::test]
async fn internal_indicators_are_never_sent() {
    let fake = FakeServer::start().await;
    fake.on("GET", "/api/v3/*", Reply::json(404, fixture("virustotal/error_404_not_found.json")));
    let src = PerIndicator {
        inner: VirusTotal::new(&format!("{}/api/v3", fake.url()), "k".into(), Duration::from_secs(5)),
        limits: LookupLimits::default(),
    };
    let report = src
        .enrich(&case_with(&[
            (IndicatorKind::Ipv4, "10.1.1.1"),
            (IndicatorKind::Domain, "dc01.corp"),
            (IndicatorKind::Hostname, "pc-1"),
            (IndicatorKind::Ipv4, "9.9.9.9"),
        ]))
        .await
        .unwrap();
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/api/v3/ip_addresses/9.9.9.9"]);
    assert_eq!((report.status, report.calls), (SourceStatus::NotFound, 1));
    // The adapter itself refuses an internal indicator too.
    assert!(src.inner.lookup(&indicator(IndicatorKind::Ipv4, "10.1.1.1")).await.is_err());
    assert_eq!(fake.requests().len(), 1);
}
