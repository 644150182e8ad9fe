//! Every enrichment source on its recorded answers (tests/fixtures, origins in SOURCES.md), and
//! against local fakes that answer 404, 429, 500, slowly and with garbage.

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

use dossier_adapters::sources::catalog::{self, Shared, SourceSettings, ALL};
use dossier_adapters::sources::{abuseipdb, msgraph, okta, otx, servicenow, shodan, tenable, virustotal, xql_history};
use dossier_core::domain::{normalise, Indicator, IndicatorKind, InternalNames};
use dossier_core::domain::{Case, CaseKey, IncidentHint, Trigger};
use dossier_core::embedded::{ManualClock, MemoryStore};
use dossier_core::sources::{IndicatorSource, Lookup, LookupError, PerIndicator, Source, SourceStatus, VerdictLevel};
use dossier_tests::{fixture, found, lookup, vendors, FakeServer, Reply};

fn json_fixture(rel: &str) -> Value {
    serde_json::from_str(&fixture(rel)).unwrap()
}

fn ind(kind: IndicatorKind, v: &str) -> Indicator {
    normalise(kind, v, &InternalNames::default()).unwrap()
}

fn case_with(values: &[(IndicatorKind, &str)]) -> Case {
    let mut c = Case::new(CaseKey::new("t", "1").unwrap(), Trigger::Local, IncidentHint::default(), 0, &Default::default());
    c.indicators = values.iter().map(|(k, v)| ind(*k, v)).collect();
    c
}

const T: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------------------------ VirusTotal

#[test]
fn virustotal_objects_become_verdicts() {
    let ip = virustotal::verdict_from(&ind(IndicatorKind::Ipv4, "8.8.8.8"), &json_fixture("virustotal/ip_address.json"), 3).unwrap();
    assert_eq!(ip.verdict, VerdictLevel::Malicious);
    assert!(ip.summary.starts_with("5/87 engines flag it malicious, 2 suspicious"), "{}", ip.summary);
    assert_eq!(ip.fact_value("network_owner"), Some("AS396507 EMERALD-ONION"));
    assert_eq!(ip.link.as_deref(), Some("https://www.virustotal.com/gui/ip-address/8.8.8.8"));
    let domain = virustotal::verdict_from(&ind(IndicatorKind::Domain, "example.com"), &json_fixture("virustotal/domain.json"), 3).unwrap();
    assert_eq!(domain.verdict, VerdictLevel::Malicious);
    // The WHOIS registration date (how young a sender's domain is matters for phishing).
    assert_eq!(domain.fact_value("registered"), Some("2017-01-21 16:26:19 UTC"));
    assert!(domain.summary.contains("registered 2017-01-21"), "{}", domain.summary);
    assert_eq!(
        virustotal::verdict_from(&ind(IndicatorKind::Url, "http://example.com/"), &json_fixture("virustotal/url.json"), 3).unwrap().verdict,
        VerdictLevel::Malicious
    );
    let file = virustotal::verdict_from(
        &ind(IndicatorKind::Sha256, "03bd9a94482f180bb047626cb2f27ccf8daa0e201345480b43585580e09c311b"),
        &json_fixture("virustotal/file_sha256.json"),
        3,
    )
    .unwrap();
    assert!(file.summary.contains("40/") && file.fact_value("threat_label").is_some(), "{file:?}");
    assert_eq!(
        virustotal::verdict_from(&ind(IndicatorKind::Ipv4, "8.8.8.8"), &json_fixture("virustotal/ip_address.json"), 10).unwrap().verdict,
        VerdictLevel::Suspicious
    );
    assert!(
        virustotal::verdict_from(&ind(IndicatorKind::Ipv4, "8.8.8.8"), &json_fixture("virustotal/error_404_not_found.json"), 3).is_err()
    );
}

#[tokio::test]
async fn virustotal_paths_headers_quota_and_faults() {
    let fake = FakeServer::start().await;
    vendors::virustotal(&fake, "vt-key");
    fake.on("GET", "/api/v3/ip_addresses/8.8.8.8", Reply::json(200, fixture("virustotal/ip_address.json")));
    fake.on("GET", "/api/v3/urls/*", Reply::json(404, fixture("virustotal/error_404_not_found.json")));
    fake.on(
        "GET",
        "/api/v3/ip_addresses/9.9.9.9",
        // VirusTotal's QuotaExceededError comes without Retry-After: the caller's default applies.
        Reply::json(429, fixture("virustotal/error_429_quota_exceeded.json")),
    );
    fake.on("GET", "/api/v3/ip_addresses/1.2.3.4", Reply::json(500, r#"{"error": {"code": "TransientError"}}"#));
    fake.on("GET", "/api/v3/domains/slow.example.com", Reply::json(200, fixture("virustotal/domain.json")).delayed(Duration::from_secs(3)));
    fake.on("GET", "/api/v3/domains/garbage.example.com", Reply::json(200, "{\"data\": "));
    let vt = virustotal::VirusTotal::new(&format!("{}/api/v3", fake.url()), "vt-key".into(), Duration::from_millis(500));
    assert!(matches!(lookup(&vt, &ind(IndicatorKind::Ipv4, "8.8.8.8")).await, (Ok(Lookup::Found(_)), 1)));
    assert!(matches!(lookup(&vt, &ind(IndicatorKind::Url, "http://bad.example.com/x")).await, (Ok(Lookup::NotFound), 1)));
    assert!(fake.requests().iter().any(|r| r.path == "/api/v3/urls/aHR0cDovL2JhZC5leGFtcGxlLmNvbS94"), "URL ids are unpadded base64url");
    assert!(fake.requests().iter().all(|r| r.header("x-apikey") == Some("vt-key")));
    assert_eq!(lookup(&vt, &ind(IndicatorKind::Ipv4, "9.9.9.9")).await.0, Err(LookupError::RateLimited { retry_after: None }));
    assert!(matches!(lookup(&vt, &ind(IndicatorKind::Ipv4, "1.2.3.4")).await.0, Err(LookupError::Server(_))));
    assert_eq!(lookup(&vt, &ind(IndicatorKind::Domain, "slow.example.com")).await.0, Err(LookupError::Timeout));
    assert!(matches!(lookup(&vt, &ind(IndicatorKind::Domain, "garbage.example.com")).await.0, Err(LookupError::BadReply(_))));

    // Through the runner: the 429 defers the whole source; the rest are reported, not fatal.
    let deferred = PerIndicator::new(vt.clone()).enrich(&case_with(&[(IndicatorKind::Ipv4, "9.9.9.9")])).await.unwrap_err();
    // No Retry-After from VirusTotal: the source's default wait.
    assert_eq!(deferred.after, Duration::from_secs(60));
    let report = PerIndicator::new(vt.clone())
        .enrich(&case_with(&[
            (IndicatorKind::Ipv4, "1.2.3.4"),
            (IndicatorKind::Domain, "slow.example.com"),
            (IndicatorKind::Domain, "garbage.example.com"),
            (IndicatorKind::Ipv4, "8.8.8.8"),
        ]))
        .await
        .unwrap();
    assert_eq!((report.status, report.verdicts.len(), report.errors.len(), report.calls), (SourceStatus::Ok, 1, 3, 4));
    assert_eq!(
        PerIndicator::new(vt.clone()).enrich(&case_with(&[(IndicatorKind::Domain, "slow.example.com")])).await.unwrap().status,
        SourceStatus::TimedOut
    );
    assert_eq!(PerIndicator::new(vt).enrich(&case_with(&[(IndicatorKind::Ipv4, "1.2.3.4")])).await.unwrap().status, SourceStatus::Error);
}

#[tokio::test]
async fn internal_indicators_never_reach_external_sources() {
    let fake = FakeServer::start().await;
    fake.on("GET", "/api/v3/*", Reply::json(404, fixture("virustotal/error_404_not_found.json")));
    let vt = virustotal::VirusTotal::new(&format!("{}/api/v3", fake.url()), "k".into(), T);
    let report = PerIndicator::new(vt.clone())
        .enrich(&case_with(&[
            (IndicatorKind::Ipv4, "10.1.1.1"),
            (IndicatorKind::Domain, "dc01.corp"),
            (IndicatorKind::Hostname, "pc-1"),
            (IndicatorKind::Ipv4, "9.9.9.9"),
        ]))
        .await
        .unwrap();
    assert_eq!(fake.requests().into_iter().map(|r| r.path).collect::<Vec<_>>(), vec!["/api/v3/ip_addresses/9.9.9.9"]);
    assert_eq!((report.status, report.calls), (SourceStatus::NotFound, 1));
    assert!(lookup(&vt, &ind(IndicatorKind::Ipv4, "10.1.1.1")).await.0.is_err(), "the adapter refuses too");
    assert_eq!(fake.requests().len(), 1);
}

// ------------------------------------------------------------------------------------------ OTX

#[test]
fn otx_general_answers_become_verdicts() {
    let ip = ind(IndicatorKind::Ipv4, "98.136.103.23");
    let (malware, urls) = (json_fixture("otx/ipv4_malware.json"), json_fixture("otx/ipv4_url_list.json"));
    let v =
        otx::verdict_from(&ip, &json_fixture("otx/ipv4_general_with_pulse.json"), &[("malware", &malware), ("url_list", &urls)]).unwrap();
    // One pulse, but OTX's own validation allow-lists the prefix: a false-positive hint wins.
    assert_eq!(v.verdict, VerdictLevel::Harmless, "{}", v.summary);
    assert!(v.fact_value("attack_ids").unwrap().contains("T1140"));
    assert_eq!((v.fact_value("pulses"), v.fact_value("urls_seen")), (Some("1"), Some("7855")));
    assert!(v.summary.contains("malware sample"), "{}", v.summary);
    assert!(otx::verdict_from(&ind(IndicatorKind::Ipv4, "8.8.88.8"), &json_fixture("otx/ipv4_general_no_pulses.json"), &[]).is_none());
    let pdns = json_fixture("otx/ipv4_passive_dns.json");
    let d = otx::verdict_from(
        &ind(IndicatorKind::Domain, "otx.alienvault.com"),
        &json_fixture("otx/domain_general.json"),
        &[("passive_dns", &pdns)],
    )
    .unwrap();
    assert_eq!(d.verdict, VerdictLevel::Harmless);
    assert!(d.fact_value("passive_dns_records").is_some());
    let sha1 = ind(IndicatorKind::Sha1, "6c5360d41bd2b14b1565f5b18e5c203cf512e493");
    assert!(otx::verdict_from(&sha1, &json_fixture("otx/file_general.json"), &[]).is_none());
    let mut file_in_pulse = json_fixture("otx/file_general.json");
    file_in_pulse["pulse_info"]["count"] = json!(1);
    let analysis = json_fixture("otx/file_analysis.json");
    let f = otx::verdict_from(&sha1, &file_in_pulse, &[("analysis", &analysis)]).unwrap();
    assert!(f.fact_value("file_type").unwrap().starts_with("PE32 executable"));
    assert!(otx::verdict_from(&ind(IndicatorKind::Url, "http://www.fotoidea.com/x"), &json_fixture("otx/url_general.json"), &[]).is_none());
    // Without the allow-list, one pulse is suspicious; families make it malicious.
    let mut g = json_fixture("otx/ipv4_general_with_pulse.json");
    g["validation"] = json!([]);
    assert_eq!(otx::verdict_from(&ip, &g, &[]).unwrap().verdict, VerdictLevel::Suspicious);
    g["pulse_info"]["pulses"][0]["malware_families"] = json!([{"id": "Pushdo", "display_name": "Pushdo"}]);
    assert_eq!(otx::verdict_from(&ip, &g, &[]).unwrap().verdict, VerdictLevel::Malicious);
    // Adversaries named by a pulse and by OTX's roll-up become the shared `actors` fact.
    g["pulse_info"]["pulses"][0]["adversary"] = json!("TA505");
    g["pulse_info"]["related"]["other"]["adversary"] = json!(["ta505", "Wizard Spider"]);
    let v = otx::verdict_from(&ip, &g, &[]).unwrap();
    assert_eq!(v.fact_value("actors"), Some("TA505; Wizard Spider"));
    assert_eq!(v.fact_value("malware"), Some("Pushdo"));
}

#[tokio::test]
async fn otx_reads_extra_sections_only_when_pulses_exist() {
    let fake = FakeServer::start().await;
    vendors::otx(&fake, "otx-key");
    fake.on("GET", "/api/v1/indicators/IPv4/98.136.103.23/general", Reply::json(200, fixture("otx/ipv4_general_with_pulse.json")));
    fake.on("GET", "/api/v1/indicators/IPv4/98.136.103.23/malware", Reply::json(200, fixture("otx/ipv4_malware.json")));
    fake.on("GET", "/api/v1/indicators/IPv4/8.8.88.8/general", Reply::json(200, fixture("otx/ipv4_general_no_pulses.json")));
    fake.on("GET", "/api/v1/indicators/file/*", Reply::json(200, fixture("otx/file_general.json")));
    let src = otx::Otx::new(&format!("{}/api/v1", fake.url()), "otx-key".into(), T);
    let (r, calls) = lookup(&src, &ind(IndicatorKind::Ipv4, "98.136.103.23")).await;
    assert_eq!(calls, 2);
    assert!(found(r).summary.contains("malware sample"));
    assert!(matches!(lookup(&src, &ind(IndicatorKind::Ipv4, "8.8.88.8")).await, (Ok(Lookup::NotFound), 1)));
    assert!(matches!(lookup(&src, &ind(IndicatorKind::Sha1, "6c5360d41bd2b14b1565f5b18e5c203cf512e493")).await, (Ok(Lookup::NotFound), 1)));
    assert!(fake.requests().iter().all(|r| r.header("x-otx-api-key") == Some("otx-key")));
    // A subdomain is an OTX `hostname`; a registered domain (also under a second-level label) a `domain`.
    fake.on("GET", "/api/v1/indicators/hostname/*", Reply::json(200, fixture("otx/ipv4_general_no_pulses.json")));
    fake.on("GET", "/api/v1/indicators/domain/*", Reply::json(200, fixture("otx/ipv4_general_no_pulses.json")));
    for (name, section) in [
        ("cdn.evil-example.com", "hostname"),
        ("evil-example.com", "domain"),
        ("shop.example.co.uk", "hostname"),
        ("example.co.uk", "domain"),
    ] {
        assert!(matches!(lookup(&src, &ind(IndicatorKind::Domain, name)).await.0, Ok(Lookup::NotFound)), "{name}");
        let last = fake.requests().last().unwrap().path.clone();
        assert_eq!(last, format!("/api/v1/indicators/{section}/{name}/general"), "{name}");
    }
}

// ------------------------------------------------------------------------------------ AbuseIPDB

#[tokio::test]
async fn abuseipdb_scores_reports_and_limits() {
    assert_eq!(
        abuseipdb::verdict_from(&ind(IndicatorKind::Ipv4, "118.25.6.39"), &json_fixture("abuseipdb/check_verbose.json")).unwrap().verdict,
        VerdictLevel::Malicious
    );
    assert_eq!(
        abuseipdb::verdict_from(&ind(IndicatorKind::Ipv4, "38.75.137.9"), &json_fixture("abuseipdb/check_nonverbose.json"))
            .unwrap()
            .verdict,
        VerdictLevel::Unknown
    );
    let fake = FakeServer::start().await;
    vendors::abuseipdb(&fake, "abuse-key");
    fake.once("GET", "/api/v2/check", Reply::json(200, fixture("abuseipdb/check_verbose.json")));
    fake.once(
        "GET",
        "/api/v2/check",
        Reply::json(429, fixture("abuseipdb/error_429_rate_limited.json")).with_header("retry-after", "3600"),
    );
    fake.once("GET", "/api/v2/check", Reply::json(422, fixture("abuseipdb/error_422_invalid_ip.json")));

    let src = abuseipdb::AbuseIpDb::new(&format!("{}/api/v2", fake.url()), "abuse-key".into(), T);
    let v = found(lookup(&src, &ind(IndicatorKind::Ipv4, "118.25.6.39")).await.0);
    assert_eq!(v.score, Some(100.0));
    let req = &fake.requests()[0];
    assert_eq!((req.header("key"), req.header("accept")), (Some("abuse-key"), Some("application/json")));
    assert_eq!(
        lookup(&src, &ind(IndicatorKind::Ipv4, "118.25.6.39")).await.0,
        Err(LookupError::RateLimited { retry_after: Some(Duration::from_secs(3600)) })
    );
    // A 422 says the request was wrong: an error in the report, not "nothing known".
    assert!(matches!(lookup(&src, &ind(IndicatorKind::Ipv4, "118.25.6.39")).await.0, Err(LookupError::BadReply(m)) if m.contains("422")));
}

// --------------------------------------------------------------------------------------- Shodan

#[tokio::test]
async fn shodan_host_context() {
    let fake = FakeServer::start().await;
    vendors::shodan(&fake, "sh-key");
    fake.on("GET", "/shodan/host/104.18.166.49", Reply::json(200, fixture("shodan/host_104.18.166.49.json")));
    fake.on("GET", "/shodan/host/5.5.5.5", Reply::json(404, r#"{"error": "No information available for that IP."}"#));
    let src = shodan::Shodan::new(&fake.url(), "sh-key".into(), T);
    let v = found(lookup(&src, &ind(IndicatorKind::Ipv4, "104.18.166.49")).await.0);
    assert_eq!(v.verdict, VerdictLevel::Unknown);
    assert!(v.summary.starts_with("9 open port(s)"), "{}", v.summary);
    assert_eq!(v.fact_value("org"), Some("Cloudflare"));
    assert!(v.raw_excerpt.as_ref().unwrap().len() <= dossier_core::sources::MAX_RAW_EXCERPT);
    assert_eq!(lookup(&src, &ind(IndicatorKind::Ipv4, "5.5.5.5")).await.0, Ok(Lookup::NotFound));
}

// ----------------------------------------------------------------------------------- ServiceNow

#[tokio::test]
async fn servicenow_ci_owner_and_service_criticality() {
    let fake = FakeServer::start().await;
    vendors::servicenow(&fake, "Basic c3ZjLWRvc3NpZXI6cGE1NQ==");
    let mut ci = json_fixture("servicenow/table_cmdb_ci_server_query.json");
    // The lookup asks with `sysparm_display_value=all`: every field then reads
    // `{"display_value", "value"}`, and the instance path must use the value, not "Linux Server".
    ci["result"][0]["sys_class_name"] = json!({"display_value": "Linux Server", "value": "cmdb_ci_linux_server"});
    ci["result"][0]["sys_id"] = json!({"display_value": "a8decc3f1b9c2410042611b4bd4bcb7d", "value": "a8decc3f1b9c2410042611b4bd4bcb7d"});
    fake.on("GET", "/api/now/table/cmdb_ci", Reply::json(200, ci.to_string()));
    fake.on(
        "GET",
        "/api/now/cmdb/instance/cmdb_ci_linux_server/a8decc3f1b9c2410042611b4bd4bcb7d",
        Reply::json(200, fixture("servicenow/cmdb_instance_get_linux_server.json")),
    );
    fake.on(
        "GET",
        "/api/now/table/cmdb_ci_service/829e953a0ad3370200af63483498b1ea",
        Reply::json(200, r#"{"result": {"name": "CMS App FLX", "busines_criticality": "1 - most critical"}}"#),
    );
    let src = servicenow::ServiceNow::new(&fake.url(), "svc-dossier:pa55", T);
    let (r, calls) = lookup(&src, &ind(IndicatorKind::Hostname, "test-name")).await;
    let v = found(r);
    assert_eq!(calls, 3);
    assert_eq!(v.fact_value("used_for"), Some("Production"));
    assert_eq!(v.fact_value("criticality"), Some("1 - most critical"));
    assert_eq!(v.fact_value("services"), Some("CMS App FLX"));
    assert!(fake.requests()[0].header("authorization").unwrap().starts_with("Basic "));
    assert!(fake.requests()[0].query.contains("sysparm_display_value=all"), "{}", fake.requests()[0].query);
    let empty = FakeServer::start().await;
    vendors::servicenow(&empty, "Bearer tok");
    empty.on("GET", "/api/now/table/cmdb_ci", Reply::json(200, fixture("servicenow/cmdb_instance_list_empty.json")));
    empty.on("GET", "/api/now/cmdb/instance/cmdb_ci_computer", Reply::json(200, fixture("servicenow/cmdb_instance_list_empty.json")));
    let src = servicenow::ServiceNow::new(&empty.url(), "Bearer tok", T);
    assert_eq!(lookup(&src, &ind(IndicatorKind::Hostname, "ghost")).await, (Ok(Lookup::NotFound), 2));
    assert_eq!(empty.requests()[0].header("authorization"), Some("Bearer tok"));
    // Where the Table API finds nothing, the CMDB Instance API is asked (list, then the record).
    let inst = FakeServer::start().await;
    vendors::servicenow(&inst, "Basic dTpw");
    inst.on("GET", "/api/now/table/cmdb_ci", Reply::json(200, fixture("servicenow/cmdb_instance_list_empty.json")));
    inst.on("GET", "/api/now/cmdb/instance/cmdb_ci_computer", Reply::json(200, fixture("servicenow/cmdb_instance_list.json")));
    inst.on(
        "GET",
        "/api/now/cmdb/instance/cmdb_ci_computer/0ad329e3db27901026fca015ca9619fb",
        Reply::json(200, fixture("servicenow/cmdb_instance_get_minimal.json")),
    );
    inst.on("GET", "/api/now/cmdb/instance/test_class/record_id", Reply::json(200, fixture("servicenow/cmdb_instance_get_minimal.json")));
    inst.on("GET", "/api/now/table/cmdb_ci_service/*", Reply::json(404, "{}"));
    let src = servicenow::ServiceNow::new(&inst.url(), "u:p", T);
    let v = found(lookup(&src, &ind(IndicatorKind::Hostname, "test")).await.0);
    assert_eq!((v.fact_value("ci_name"), v.fact_value("class")), (Some("Test"), Some("test_class")));
}

// -------------------------------------------------------------------------------------- Tenable

#[tokio::test]
async fn tenable_asset_exposure() {
    let fake = FakeServer::start().await;
    vendors::tenable(&fake, "a", "b");
    fake.on("GET", "/workbenches/assets", Reply::json(200, fixture("tenable/workbench_assets_filtered.json")));
    fake.on("GET", "/workbenches/vulnerabilities/*", Reply::json(200, fixture("tenable/workbench_vulnerability_info.json")));
    fake.on(
        "GET",
        "/workbenches/assets/*",
        Reply::dynamic(|r| {
            if r.path.ends_with("/info") {
                Reply::json(200, fixture("tenable/workbench_asset_info.json"))
            } else {
                Reply::json(200, fixture("tenable/workbench_asset_vulnerabilities.json"))
            }
        }),
    );
    let src = tenable::Tenable::new(&fake.url(), "accessKey=a;secretKey=b".into(), T);
    let (r, calls) = lookup(&src, &ind(IndicatorKind::Hostname, "docker.demo.io")).await;
    let v = found(r);
    assert_eq!(calls, 4);
    assert_eq!((v.fact_value("critical_vulns"), v.fact_value("high_vulns")), (Some("2"), Some("1")));
    assert_eq!(v.fact_value("top_vuln_exploit_available"), Some("false"));
    assert!(v.fact_value("top_vuln_cves").unwrap().starts_with("CVE-2020-14577"));
    assert_eq!(v.verdict, VerdictLevel::Suspicious);
    assert!(v.fact_value("top_vulns").unwrap().contains("VPR"), "{v:?}");
    assert_eq!(fake.requests()[0].header("x-apikeys"), Some("accessKey=a;secretKey=b"));
}

/// `host.hostname` with `match` is a substring match: the first asset may be another host.
#[tokio::test]
async fn tenable_takes_only_the_asset_named_like_the_host() {
    let fake = FakeServer::start().await;
    vendors::tenable(&fake, "a", "b");
    let list = json!({"assets": [
        {"id": "0a0a0a0a-0000-4000-8000-000000000010", "hostname": ["web10.demo.io"], "fqdn": ["web10.demo.io"], "netbios_name": [], "ipv4": ["10.0.0.10"]},
        {"id": "0a0a0a0a-0000-4000-8000-000000000001", "hostname": ["web1.demo.io"], "fqdn": ["web1.demo.io"], "netbios_name": ["WEB1"], "ipv4": ["10.0.0.1"]}
    ], "total": 2});
    fake.on("GET", "/workbenches/assets", Reply::json(200, list.to_string()));
    fake.on("GET", "/workbenches/vulnerabilities/*", Reply::json(200, fixture("tenable/workbench_vulnerability_info.json")));
    fake.on(
        "GET",
        "/workbenches/assets/*",
        Reply::dynamic(|r| {
            if r.path.ends_with("/info") {
                Reply::json(200, fixture("tenable/workbench_asset_info.json"))
            } else {
                Reply::json(200, fixture("tenable/workbench_asset_vulnerabilities.json"))
            }
        }),
    );
    let src = tenable::Tenable::new(&fake.url(), "accessKey=a;secretKey=b".into(), T);
    for host in ["web1.demo.io", "web1"] {
        found(lookup(&src, &ind(IndicatorKind::Hostname, host)).await.0);
    }
    let asset_reads: Vec<String> =
        fake.requests().iter().filter(|r| r.path.starts_with("/workbenches/assets/")).map(|r| r.path.clone()).collect();
    assert_eq!(asset_reads.len(), 4, "{asset_reads:?}");
    assert!(asset_reads.iter().all(|p| p.contains("/0a0a0a0a-0000-4000-8000-000000000001/")), "read another asset: {asset_reads:?}");
    assert!(matches!(lookup(&src, &ind(IndicatorKind::Hostname, "web")).await.0, Ok(Lookup::NotFound)));
}

// ----------------------------------------------------------------------------------------- Okta

#[tokio::test]
async fn okta_identity_factors_groups_and_log() {
    let fake = FakeServer::start().await;
    vendors::okta(&fake, "ssws-token");
    fake.on("GET", "/api/v1/users/test%40this.com", Reply::json(200, fixture("okta/user_get.json")));
    fake.on("GET", "/api/v1/users/TestID/factors", Reply::json(200, fixture("okta/user_factors.json")));
    fake.on("GET", "/api/v1/users/TestID/groups", Reply::json(200, fixture("okta/user_groups.json")));
    fake.on("GET", "/api/v1/logs", Reply::json(200, fixture("okta/system_log_user_session_start.json")));
    fake.on("GET", "/api/v1/users/denied", Reply::json(403, fixture("okta/error_403_access_denied.json")));
    // Okta says when the limit resets (X-Rate-Limit-Reset, UTC epoch seconds), not Retry-After.
    let reset = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 20).to_string();
    fake.on(
        "GET",
        "/api/v1/users/busy",
        Reply::json(429, fixture("okta/error_429_rate_limited.json"))
            .with_header("x-rate-limit-limit", "600")
            .with_header("x-rate-limit-remaining", "0")
            .with_header("x-rate-limit-reset", &reset),
    );
    let src = okta::Okta::new(&fake.url(), "ssws-token".into(), T);
    let (r, calls) = lookup(&src, &ind(IndicatorKind::User, "test@this.com")).await;
    let v = found(r);
    assert_eq!(calls, 4);
    assert_eq!(v.fact_value("status"), Some("PROVISIONED"));
    assert_eq!(v.fact_value("groups"), Some("Everyone"));
    assert!(v.summary.contains("1 event(s)"), "{}", v.summary);
    assert_eq!(fake.requests()[0].header("authorization"), Some("SSWS ssws-token"));
    assert_eq!(okta::login_of("CORP\\j.doe"), "j.doe");
    let v = okta::verdict_from(
        &ind(IndicatorKind::User, "x"),
        &json_fixture("okta/user_get.json"),
        &json!([]),
        &json!([]),
        &json_fixture("okta/system_log_group_membership_remove.json"),
    );
    assert_eq!(v.fact_value("mfa_factors"), None, "no active factor");
    assert!(v.summary.contains("no active MFA factor") && v.summary.contains("1 event(s)"), "{}", v.summary);
    assert!(
        matches!(lookup(&src, &ind(IndicatorKind::User, "CORP\\denied")).await.0, Err(LookupError::Unauthorized(m)) if m.contains("E0000006"))
    );
    match lookup(&src, &ind(IndicatorKind::User, "busy")).await.0 {
        Err(LookupError::RateLimited { retry_after: Some(wait) }) => assert!((19..=20).contains(&wait.as_secs()), "{wait:?}"),
        other => panic!("expected a rate limit with the reset time: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------- MS Graph

#[tokio::test]
async fn msgraph_reads_sign_in_activity_apart_and_survives_without_p1() {
    let fake = FakeServer::start().await;
    vendors::graph(&fake, "c", "s", "graph-token");
    fake.on("POST", "/token", Reply::json(200, r#"{"access_token": "graph-token", "expires_in": 3599, "token_type": "Bearer"}"#));
    // `/users/{UPN}` refuses `$select=signInActivity`; the filtered list answers 403 without P1.
    fake.on(
        "GET",
        "/v1.0/users/*",
        Reply::dynamic(|r| {
            if r.query.contains("signInActivity") {
                return Reply::json(400, r#"{"error": {"code": "BadRequest", "message": "Unsupported query."}}"#);
            }
            if r.path.ends_with("/microsoft.graph.group") {
                return Reply::json(200, fixture("msgraph/user_memberof_groups_select.json"));
            }
            Reply::json(200, fixture("msgraph/user_get_default.json"))
        }),
    );
    fake.on(
        "GET",
        "/v1.0/users",
        Reply::json(
            403,
            r#"{"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}}"#,
        ),
    );
    fake.on("GET", "/v1.0/auditLogs/signIns", Reply::json(403, r#"{"error": {"code": "Authentication_RequestFromNonPremiumTenantOrB2CTenant", "message": "Neither tenant is B2C or tenant doesn't have premium license"}}"#));
    fake.on(
        "GET",
        "/v1.0/identityProtection/riskyUsers/*",
        Reply::json(403, r#"{"error": {"code": "Forbidden", "message": "premium license required"}}"#),
    );
    let creds = msgraph::GraphCredentials {
        tenant_id: "t".into(),
        client_id: "c".into(),
        client_secret: "s".into(),
        token_url: Some(format!("{}/token", fake.url())),
    };
    let mut src = msgraph::MsGraph::new(&format!("{}/v1.0", fake.url()), creds, T);
    src.upn_suffix = Some("contoso.com".into());
    let v = found(lookup(&src, &ind(IndicatorKind::User, "CORP\\adele")).await.0);
    assert_eq!(v.fact_value("last_sign_in"), None, "{v:?}");
    assert!(fake.requests().iter().filter(|r| r.path.starts_with("/v1.0/users/")).all(|r| !r.query.contains("signInActivity")));
}

#[tokio::test]
async fn msgraph_user_groups_sign_ins_and_risk() {
    let fake = FakeServer::start().await;
    vendors::graph(&fake, "c", "s3cret", "graph-token");
    fake.on("POST", "/token", Reply::json(200, r#"{"access_token": "graph-token", "expires_in": 3599, "token_type": "Bearer"}"#));
    fake.on("GET", "/v1.0/users", Reply::json(200, fixture("msgraph/users_filter_select_signinactivity.json")));
    fake.on("GET", "/v1.0/users/*", Reply::json(200, fixture("msgraph/user_memberof_groups_select.json")));
    fake.on("GET", "/v1.0/auditLogs/signIns", Reply::json(200, fixture("msgraph/auditlogs_signins.json")));
    fake.on("GET", "/v1.0/identityProtection/riskyUsers/*", Reply::json(200, fixture("msgraph/riskyuser_get.json")));
    let creds = msgraph::GraphCredentials {
        tenant_id: "t".into(),
        client_id: "c".into(),
        client_secret: "s3cret".into(),
        token_url: Some(format!("{}/token", fake.url())),
    };
    let src = msgraph::MsGraph::new(&format!("{}/v1.0", fake.url()), creds, T);
    let (r, calls) = lookup(&src, &ind(IndicatorKind::User, "CORP\\stine")).await;
    let v = found(r);
    assert_eq!(calls, 6, "token, user, sign-in activity, groups, sign-ins, risk");
    assert_eq!(v.fact_value("risk_state"), Some("remediated"));
    assert_eq!(v.fact_value("groups"), Some("All users, AAD Contoso Users"));
    assert_eq!(v.fact_value("last_sign_in"), Some("2024-12-10T17:38:26Z"));
    let token_req = &fake.requests_to("/token")[0];
    assert!(
        token_req.body.contains("grant_type=client_credentials")
            && token_req.body.contains("scope=https%3A%2F%2Fgraph.microsoft.com%2F.default")
    );
    assert!(fake.requests_to("/v1.0/users")[0].header("authorization") == Some("Bearer graph-token"));
    // The token is reused.
    let (_, calls) = lookup(&src, &ind(IndicatorKind::User, "CORP\\stine")).await;
    assert_eq!(calls, 5);
    // Risk states map to verdicts.
    let x = ind(IndicatorKind::User, "x");
    let mut risky = json_fixture("msgraph/riskyuser_get.json");
    risky["riskState"] = json!("confirmedCompromised");
    assert_eq!(msgraph::verdict_from(&x, &json!({}), &json!({}), &json!({}), Some(&risky), None).verdict, VerdictLevel::Malicious);
    risky["riskState"] = json!("atRisk");
    let detections = json_fixture("msgraph/riskdetections_list.json");
    let v = msgraph::verdict_from(
        &x,
        &json_fixture("msgraph/user_get_default.json"),
        &json_fixture("msgraph/user_memberof.json"),
        &json!({}),
        Some(&risky),
        Some(&detections),
    );
    assert_eq!(v.verdict, VerdictLevel::Suspicious);
    assert_eq!(v.fact_value("risk_detections"), Some("unfamiliarFeatures (medium)"));
    assert_eq!(v.fact_value("upn"), Some("AdeleV@contoso.com"));
    // The other recorded listings parse into the same fields.
    let listed = json_fixture("msgraph/riskyusers_list.json");
    let l = msgraph::verdict_from(
        &x,
        &json_fixture("msgraph/user_get_select_identities.json"),
        &json!({}),
        &json!({}),
        listed.pointer("/value/0"),
        None,
    );
    assert_eq!(l.fact_value("risk_state"), Some("dismissed"));
}

// ----------------------------------------------------------------------------------- XQL history

#[tokio::test]
async fn xql_history_runs_one_versioned_template() {
    let q = xql_history::history_query(&ind(IndicatorKind::Hostname, "fin-ws-0231")).unwrap();
    assert!(q.starts_with("dataset = xdr_data | filter agent_hostname = \"fin-ws-0231\""), "{q}");
    assert!(xql_history::history_query(&ind(IndicatorKind::User, "a\"b")).unwrap().contains("\"a\\\"b\""), "values are quoted");
    let rows = [
        json!({"event_type": "PROCESS", "events": 120, "failed_logons": 0, "events_24h": 20, "failed_logons_24h": 0}),
        json!({"event_type": "EVENT_LOG", "events": "30", "failed_logons": 12, "events_24h": "5", "failed_logons_24h": 4}),
    ];
    let week = dossier_core::sources::history::activity_of(&rows, "events", "failed_logons");
    assert_eq!((week.processes, week.failed_logons, week.total), (120, 12, 150));
    let day = dossier_core::sources::history::activity_of(&rows, "events_24h", "failed_logons_24h");
    assert_eq!((day.processes, day.failed_logons, day.total), (20, 4, 25));

    let tenant = xql_tenant(&["SUCCESS"]).await;
    let src = catalog::build("xdr", &xql_settings(&tenant), &shared(), "test").unwrap();
    let report = src.enrich(&case_with(&[(IndicatorKind::Hostname, "fin-ws-0231")])).await.unwrap();
    assert_eq!(report.status, SourceStatus::Ok);
    assert_eq!(report.calls, 2, "one template: start + results");
    assert_eq!(report.verdicts[0].verdict, VerdictLevel::Suspicious, "11 failed logons in 24 h");
    assert_eq!(report.verdicts[0].fact_value("templates"), Some(xql_history::TEMPLATES_VERSION));
    let start = &tenant.requests_to("/public_api/v1/xql/start_xql_query")[0].json();
    assert_eq!(start["request_data"]["timeframe"]["relativeTime"], 7 * 86_400 * 1000);
}

/// A strict XDR tenant whose XQL results answer with these statuses in turn (the last one
/// repeats), counting the queries started.
async fn xql_tenant(statuses: &[&str]) -> FakeServer {
    let fake = FakeServer::start().await;
    vendors::xdr(&fake, "1", "k");
    fake.on("POST", "/public_api/v1/xql/start_xql_query", Reply::json(200, fixture("xdr/xql_start_xql_query.json")));
    let done = json!({"reply": {"status": "SUCCESS", "number_of_results": 2, "results": {"data": [
        {"event_type": "PROCESS", "events": 40, "failed_logons": 0, "events_24h": 10, "failed_logons_24h": 0},
        {"event_type": "EVENT_LOG", "events": 15, "failed_logons": 11, "events_24h": 12, "failed_logons_24h": 11}
    ]}}})
    .to_string();
    let (last, earlier) = statuses.split_last().unwrap();
    for s in earlier {
        let body = if *s == "SUCCESS" { done.clone() } else { json!({"reply": {"status": s}}).to_string() };
        fake.once("POST", "/public_api/v1/xql/get_query_results", Reply::json(200, body));
    }
    let body = if *last == "SUCCESS" { done } else { json!({"reply": {"status": last}}).to_string() };
    fake.on("POST", "/public_api/v1/xql/get_query_results", Reply::json(200, body));
    fake
}

/// A short source timeout: a lookup then waits about a second for a running query.
fn xql_settings(tenant: &FakeServer) -> SourceSettings {
    SourceSettings {
        url: Some(tenant.url()),
        key: Some(r#"{"api_key": "k", "api_key_id": "1", "generation": "v3"}"#.into()),
        timeout: Some(Duration::from_millis(500)),
        ..Default::default()
    }
}

/// A query still running when the lookup's budget ends is resumed by the redelivered message,
/// not started again; the answer is then reused by the next case about the same host.
#[tokio::test]
async fn a_running_xql_query_is_resumed_not_restarted() {
    let tenant = xql_tenant(&["PENDING", "PENDING", "PENDING", "SUCCESS"]).await;
    let shared = shared();
    let src = catalog::build("xdr", &xql_settings(&tenant), &shared, "test").unwrap();
    let case = case_with(&[(IndicatorKind::Hostname, "fin-ws-0231")]);
    let deferred = src.enrich(&case).await.expect_err("still running: the wait goes back to the queue");
    assert!(deferred.after >= Duration::from_secs(10));
    let report = src.enrich(&case).await.unwrap();
    assert_eq!(report.verdicts[0].fact_value("failed_logons_24h"), Some("11"));
    assert_eq!(tenant.requests_to("/public_api/v1/xql/start_xql_query").len(), 1, "resumed, not restarted");
    let mut other = case_with(&[(IndicatorKind::Hostname, "fin-ws-0231")]);
    other.key = CaseKey::new("t", "other").unwrap();
    src.enrich(&other).await.unwrap();
    assert_eq!(tenant.requests_to("/public_api/v1/xql/start_xql_query").len(), 1, "the answer is reused for 15 minutes");
}

/// XDR runs four API queries at a time per tenant: a fifth waits in the queue, whichever
/// worker asks; a slot left by a worker that died is free again once its lease ends.
#[tokio::test]
async fn the_tenant_has_four_query_slots_across_workers() {
    let tenant = xql_tenant(&["PENDING"]).await;
    let store: Arc<dyn dossier_core::ports::DocStore> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(1_790_000_000_000));
    let shared = Shared { store, clock: clock.clone(), cache: true };
    // Two workers (two Lambda instances) of the same tenant.
    let a = catalog::build("xdr", &xql_settings(&tenant), &shared, "test").unwrap();
    let b = catalog::build("xdr", &xql_settings(&tenant), &shared, "test").unwrap();
    for (i, worker) in [&a, &b, &a, &b].iter().enumerate() {
        let err = worker.enrich(&case_with(&[(IndicatorKind::Hostname, &format!("host-{i}"))])).await.unwrap_err();
        assert!(err.after >= Duration::from_secs(10), "still running");
    }
    assert_eq!(tenant.requests_to("/public_api/v1/xql/start_xql_query").len(), 4);
    let fifth = b.enrich(&case_with(&[(IndicatorKind::Hostname, "host-4")])).await.unwrap_err();
    assert_eq!(fifth.after, Duration::from_secs(15), "no free slot: wait in the queue");
    assert_eq!(tenant.requests_to("/public_api/v1/xql/start_xql_query").len(), 4, "no fifth query reaches XDR");
    // The four holders vanish (their queries never collected): after the lease, slots free up.
    clock.advance(Duration::from_secs(11 * 60));
    let _ = b.enrich(&case_with(&[(IndicatorKind::Hostname, "host-4")])).await;
    assert_eq!(tenant.requests_to("/public_api/v1/xql/start_xql_query").len(), 5);
}

// -------------------------------------------------------------------------------------- catalog

fn shared() -> Shared {
    Shared { store: Arc::new(MemoryStore::new()), clock: Arc::new(ManualClock::new(0)), cache: true }
}

#[tokio::test]
async fn every_source_builds_and_unconfigured_ones_say_why() {
    let shared = shared();
    let case = case_with(&[(IndicatorKind::Ipv4, "8.8.8.8"), (IndicatorKind::Hostname, "pc-1"), (IndicatorKind::User, "bob")]);
    for name in ALL {
        let src = catalog::build(name, &SourceSettings::default(), &shared, "set the key").unwrap();
        assert_eq!(src.name(), *name);
        let report = src.enrich(&case).await.unwrap();
        if !["attack", "related-cases"].contains(name) {
            assert_eq!(report.status, SourceStatus::Skipped, "{name}");
            assert!(report.note.unwrap().contains("not configured"), "{name}");
        }
    }
}

#[tokio::test]
async fn the_same_indicator_in_a_hundred_cases_is_looked_up_once() {
    let fake = FakeServer::start().await;
    vendors::virustotal(&fake, "k");
    fake.on("GET", "/api/v3/ip_addresses/8.8.8.8", Reply::json(200, fixture("virustotal/ip_address.json")));
    let settings = SourceSettings {
        url: Some(format!("{}/api/v3", fake.url())),
        key: Some("k".into()),
        quota: Some("1000/min".into()),
        ..Default::default()
    };
    let shared = shared();
    let src = catalog::build("virustotal", &settings, &shared, "").unwrap();
    let mut calls = 0;
    for i in 0..100 {
        let mut c = case_with(&[(IndicatorKind::Ipv4, "8.8.8.8")]);
        c.key = CaseKey::new("t", &i.to_string()).unwrap();
        let mut r = src.enrich(&c).await.unwrap();
        assert_eq!(r.verdicts[0].verdict, VerdictLevel::Malicious);
        calls += r.calls;
        // The answers for the cache are stored beside the report, as the enrich stage does.
        shared.store.put_all(std::mem::take(&mut r.to_cache)).await.unwrap();
    }
    assert_eq!((calls, fake.requests().len()), (1, 1));
}

#[tokio::test]
async fn a_public_virustotal_key_gets_four_lookups_a_minute() {
    let fake = FakeServer::start().await;
    vendors::virustotal(&fake, "k");
    fake.on("GET", "/api/v3/ip_addresses/*", Reply::json(404, fixture("virustotal/error_404_not_found.json")));
    let settings = SourceSettings { url: Some(format!("{}/api/v3", fake.url())), key: Some("k".into()), ..Default::default() };
    let src = catalog::build("virustotal", &settings, &shared(), "").unwrap();
    let ips: Vec<String> = (1..=6).map(|i| format!("8.8.4.{i}")).collect();
    let values: Vec<(IndicatorKind, &str)> = ips.iter().map(|i| (IndicatorKind::Ipv4, i.as_str())).collect();
    let deferred = src.enrich(&case_with(&values)).await.unwrap_err();
    assert!(deferred.after <= Duration::from_secs(61));
    assert_eq!(fake.requests().len(), 4, "the documented 4/min public quota");
}

/// Each client as its vendor's strict fake sees it: a wrong credential is refused with the
/// vendor's documented answer and surfaces as rejected credentials, never as "nothing known".
#[tokio::test]
async fn every_source_reports_a_refused_credential_as_such() {
    let vt = FakeServer::start().await;
    vendors::virustotal(&vt, "right");
    vt.on("GET", "/api/v3/ip_addresses/*", Reply::json(200, fixture("virustotal/ip_address.json")));
    let otx_fake = FakeServer::start().await;
    vendors::otx(&otx_fake, "right");
    otx_fake.on("GET", "/api/v1/indicators/*", Reply::json(200, fixture("otx/ipv4_general_with_pulse.json")));
    let abuse = FakeServer::start().await;
    vendors::abuseipdb(&abuse, "right");
    abuse.on("GET", "/api/v2/check", Reply::json(200, fixture("abuseipdb/check_verbose.json")));
    let sh = FakeServer::start().await;
    vendors::shodan(&sh, "right");
    sh.on("GET", "/shodan/host/*", Reply::json(200, fixture("shodan/host_104.18.166.49.json")));
    let ten = FakeServer::start().await;
    vendors::tenable(&ten, "a", "right");
    ten.on("GET", "/workbenches/assets", Reply::json(200, fixture("tenable/workbench_assets_filtered.json")));
    let ip = ind(IndicatorKind::Ipv4, "104.18.166.49");
    let host = ind(IndicatorKind::Hostname, "docker.demo.io");
    let sources: Vec<(Box<dyn IndicatorSource>, &Indicator)> = vec![
        (Box::new(virustotal::VirusTotal::new(&format!("{}/api/v3", vt.url()), "wrong".into(), T)), &ip),
        (Box::new(otx::Otx::new(&format!("{}/api/v1", otx_fake.url()), "wrong".into(), T)), &ip),
        (Box::new(abuseipdb::AbuseIpDb::new(&format!("{}/api/v2", abuse.url()), "wrong".into(), T)), &ip),
        (Box::new(shodan::Shodan::new(&sh.url(), "wrong".into(), T)), &ip),
        (Box::new(tenable::Tenable::new(&ten.url(), "accessKey=a;secretKey=wrong".into(), T)), &host),
    ];
    for (src, i) in &sources {
        let (r, _) = lookup(src.as_ref(), i).await;
        assert!(matches!(r, Err(LookupError::Unauthorized(_))), "{}: {r:?}", src.name());
    }
}

/// What each strict fake refuses besides credentials, so the guards themselves are known to bite.
#[tokio::test]
async fn the_strict_fakes_refuse_what_their_vendors_refuse() {
    let http = dossier_adapters::http_client::client(T);
    let status = |req: reqwest::RequestBuilder| async move { req.send().await.unwrap().status().as_u16() };
    let abuse = FakeServer::start().await;
    vendors::abuseipdb(&abuse, "k");
    abuse.on("GET", "/api/v2/check", Reply::json(200, "{}"));
    let check = |q: &str| http.get(format!("{}/api/v2/check?{q}", abuse.url())).header("Key", "k").header("Accept", "application/json");
    assert_eq!(status(check("ipAddress=8.8.8.8&maxAgeInDays=90")).await, 200);
    assert_eq!(status(check("maxAgeInDays=90")).await, 422, "ipAddress is required");
    assert_eq!(status(check("ipAddress=not-an-ip")).await, 422);
    assert_eq!(status(check("ipAddress=8.8.8.8&maxAgeInDays=366")).await, 422);
    assert_eq!(status(check("ipAddress=8.8.8.8&confidenceMinimum=90")).await, 422, "an undocumented parameter");
    let ten = FakeServer::start().await;
    vendors::tenable(&ten, "a", "b");
    ten.on("GET", "/workbenches/assets", Reply::json(200, "{}"));
    let assets = |q: &str| http.get(format!("{}/workbenches/assets?{q}", ten.url())).header("X-ApiKeys", "accessKey=a; secretKey=b;");
    assert_eq!(status(assets("filter.0.filter=host.hostname&filter.0.quality=match&filter.0.value=x")).await, 200);
    assert_eq!(status(assets("filter.0.filter=host.hostname&filter.0.value=x")).await, 400, "a filter without its quality");
    assert_eq!(status(assets("filter.0.filter=host.hostname&filter.0.quality=contains&filter.0.value=x")).await, 400);
    assert_eq!(status(assets("date_range=thirty")).await, 400);
    let vt = FakeServer::start().await;
    vendors::virustotal(&vt, "k");
    assert_eq!(status(http.get(format!("{}/api/v3/files/nothex", vt.url())).header("x-apikey", "k")).await, 400);
    assert_eq!(status(http.get(format!("{}/api/v3/ip_addresses/8.8.8.8", vt.url()))).await, 401, "no key");
    assert_eq!(status(http.post(format!("{}/api/v3/ip_addresses/8.8.8.8", vt.url())).header("x-apikey", "k")).await, 405);
    let sh = FakeServer::start().await;
    vendors::shodan(&sh, "k");
    assert_eq!(status(http.get(format!("{}/shodan/host/1.2.3.4", sh.url()))).await, 401, "the key is a query parameter");
    assert_eq!(status(http.get(format!("{}/shodan/host/x?key=k", sh.url()))).await, 400);
    let o = FakeServer::start().await;
    vendors::otx(&o, "k");
    assert_eq!(status(http.get(format!("{}/api/v1/indicators/IPv4/8.8.8.8/whois", o.url())).header("X-OTX-API-KEY", "k")).await, 404);
    assert_eq!(status(http.get(format!("{}/api/v1/indicators/IPv4/8.8.8.8/malware", o.url()))).await, 403);
}
