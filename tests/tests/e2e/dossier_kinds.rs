//! The posted comment, read as a Tier-3 analyst reads it, for each kind of incident recorded in
//! `tests/fixtures/incidents/`: what it must state, what it must not, which actions it proposes,
//! and every XQL it offers checked against the XQL grammar and the `xdr_data` fields it uses.

use std::sync::Arc;
use std::time::Duration;

use dossier_core::config::PipelineConfig;
use dossier_core::domain::{Action, ActionKind, Case, CaseKey, CaseStatus, IncidentHint, Trigger};
use dossier_core::embedded::RecordingXdr;
use dossier_core::ports::{Clock, SystemClock};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, IntelFeed, PerIndicator, Source};
use dossier_core::stages::open_case;
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};

/// Threat intel the tests control: the 1,000-alert incident's binary and destination.
const FEED: &str = "type,value,verdict,score,description\n\
sha256,b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c,malicious,90,Updater trojan (test feed)\n\
ipv4,45.9.148.108,malicious,85,C2 of the updater trojan (test feed)\n";

struct Outcome {
    comment: Option<String>,
    case: Case,
    actions: Vec<Action>,
}

async fn run(extra_data: String, incident_id: &str) -> Outcome {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backend = Backend::embedded(clock.clone());
    let sources: Vec<Arc<dyn Source>> = vec![Arc::new(AttackSource), Arc::new(PerIndicator::new(IntelFeed::from_csv(FEED).unwrap()))];
    let xdr = Arc::new(RecordingXdr::serving(extra_data));
    let pipeline = LocalPipeline::new(PipelineParts {
        backend,
        config: PipelineConfig::default(),
        clock: clock.clone(),
        xdr: xdr.clone(),
        sources,
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![3; 32] }]).unwrap()),
        webhook_secrets: dossier_core::xdr::WebhookSecrets::single("default", b"kinds-secret-00000001").unwrap(),
        model: None,
        identity: None,
        notifiers: Vec::new(),
    });
    let key = CaseKey::new("default", incident_id).unwrap();
    open_case(&pipeline.ctx, Case::new(key.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default()))
        .await
        .unwrap();
    assert!(pipeline.run_until_settled(std::slice::from_ref(&key), Duration::from_secs(60)).await.unwrap(), "case {incident_id} settled");
    let comment = xdr
        .writes()
        .iter()
        .filter_map(|w| w.body.pointer("/request_data/update_data/comment/value").and_then(|v| v.as_str()).map(str::to_string))
        .find(|c| c.starts_with("[Dossier]"));
    let case = pipeline.case(&key).await.unwrap().unwrap();
    let actions = pipeline.actions(&key).await.unwrap();
    if let Some(c) = &comment {
        check_every_query(c);
    }
    Outcome { comment, case, actions }
}

fn fixture(name: &str) -> String {
    dossier_tests::fixture(&format!("incidents/{name}"))
}

fn kinds(actions: &[Action]) -> Vec<ActionKind> {
    actions.iter().map(|a| a.kind).collect()
}

// ---------------------------------------------------------------------------------------------
// XQL: a small checker of the grammar the playbook uses, and the xdr_data fields it may name.

/// `panw_ngfw_url_raw` fields (Cortex Data Lake URL log names, as Palo Alto's CortexDataLake
/// integration reads them: `url_context_transformer`).
const NGFW_URL_FIELDS: &[&str] =
    &["_time", "url_domain", "uri", "source_ip", "source_user", "dest_user", "action", "url_category", "sub_type"];

/// Cortex Data Model fields (the XDM e-mail and user/network schema).
const XDM_FIELDS: &[&str] =
    &["_time", "xdm.email.sender", "xdm.email.recipients", "xdm.email.subject", "xdm.source.user.username", "xdm.network.http.domain"];

/// `xdr_data` fields the playbook's queries may use (XQL schema reference, `xdr_data`).
const XDR_DATA_FIELDS: &[&str] = &[
    "_time",
    "agent_hostname",
    "event_type",
    "causality_actor_process_image_name",
    "actor_process_image_name",
    "action_process_image_name",
    "action_process_image_command_line",
    "action_process_image_sha256",
    "action_process_image_md5",
    "action_file_sha256",
    "action_file_md5",
    "action_remote_ip",
    "action_external_hostname",
    "dns_query_name",
    "action_evtlog_event_id",
    "action_evtlog_data_fields",
];
const FUNCTIONS: &[&str] = &["count", "lowercase", "json_extract_scalar"];
const KEYWORDS: &[&str] = &["and", "or", "in", "not", "as", "by", "desc", "asc", "ENUM.PROCESS", "ENUM.EVENT_LOG"];

/// Splits on `|` outside string literals; fails on an unterminated literal or unbalanced brackets.
fn stages(query: &str) -> Vec<String> {
    let (mut out, mut cur, mut in_str, mut escaped, mut depth) = (Vec::new(), String::new(), false, false, 0i32);
    for c in query.chars() {
        if in_str {
            cur.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                cur.push(c);
            }
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth -= 1;
                assert!(depth >= 0, "unbalanced `)` in {query}");
                cur.push(c);
            }
            '|' => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    assert!(!in_str, "unterminated string literal in {query}");
    assert_eq!(depth, 0, "unbalanced `(` in {query}");
    out.push(cur.trim().to_string());
    out
}

/// The words of a stage outside string literals.
fn bare_words(stage: &str) -> Vec<String> {
    let mut words = Vec::new();
    let (mut cur, mut in_str, mut escaped) = (String::new(), false, false);
    for c in stage.chars() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        if c == '"' {
            in_str = true;
        } else if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            cur.push(c);
            continue;
        }
        if !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn check_query(q: &str) {
    let stages = stages(q);
    let config = &stages[0];
    let time = r#""\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \+0000""#;
    let re = regex_lite(&format!(r#"^config timeframe between {time} and {time}$"#));
    assert!(re(config), "the query must open with an exact timeframe: {q}");
    // The phishing templates read the firewall's URL log and the data model's e-mail fields.
    let fields: &[&str] = match stages[1].as_str() {
        "dataset = xdr_data" => XDR_DATA_FIELDS,
        "dataset = panw_ngfw_url_raw" => NGFW_URL_FIELDS,
        "datamodel dataset = *" => XDM_FIELDS,
        other => panic!("unknown dataset stage `{other}` in {q}"),
    };
    let mut defined: Vec<String> = Vec::new();
    for stage in &stages[2..] {
        let (verb, rest) = stage.split_once(' ').unwrap_or((stage, ""));
        assert!(["filter", "fields", "comp", "sort", "limit", "alter", "dedup"].contains(&verb), "unknown stage `{verb}` in {q}");
        if verb == "limit" {
            assert!(rest.trim().parse::<u32>().is_ok(), "limit takes a number: {q}");
            continue;
        }
        if verb == "alter" {
            if let Some((name, _)) = rest.split_once('=') {
                defined.push(name.trim().to_string());
            }
        }
        let words = bare_words(rest);
        let mut i = 0;
        while i < words.len() {
            let w = &words[i];
            // `x as name` defines a column.
            if i > 0 && words[i - 1] == "as" {
                defined.push(w.clone());
            } else if !(w.chars().all(|c| c.is_ascii_digit())
                || KEYWORDS.contains(&w.as_str())
                || FUNCTIONS.contains(&w.as_str())
                || fields.contains(&w.as_str())
                || defined.contains(w))
            {
                panic!("`{w}` is not an xdr_data field, function or keyword: {q}");
            }
            i += 1;
        }
    }
}

/// A tiny anchored matcher for the one pattern used above (digits, literal text).
fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool {
    let re = regex::Regex::new(pattern).unwrap();
    move |s| re.is_match(s)
}

fn check_every_query(comment: &str) {
    for line in comment.lines() {
        if let Some(q) = line.trim().strip_prefix("XQL: ") {
            check_query(q);
        }
    }
}

#[test]
fn the_xql_checker_rejects_what_xdr_would() {
    let ok = r#"config timeframe between "2024-05-01 08:58:00 +0000" and "2024-05-01 10:58:32 +0000" | dataset = xdr_data | filter agent_hostname = "a|b" | limit 5"#;
    check_query(ok);
    for bad in [
        r#"config timeframe = 24h | dataset = xdr_data | filter agent_hostname = "x""#,
        r#"config timeframe between "2024-05-01 08:58:00 +0000" and "2024-05-01 10:58:32 +0000" | dataset = xdr_data | filter actor_effective_user = "x""#,
        r#"config timeframe between "2024-05-01 08:58:00 +0000" and "2024-05-01 10:58:32 +0000" | dataset = xdr_data | filter agent_hostname = "x"#,
        r#"config timeframe between "2024-05-01 08:58:00 +0000" and "2024-05-01 10:58:32 +0000" | dataset = xdr_data | wherever x"#,
    ] {
        assert!(std::panic::catch_unwind(|| check_query(bad)).is_err(), "accepted: {bad}");
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn endpoint_malware_states_xdrs_verdict_first_and_never_calls_it_benign() {
    let out = run(fixture("endpoint_malware.json"), "9101").await;
    let c = out.comment.expect("a dossier");
    assert!(c.contains("WildFire verdict MALWARE for ProcessNameMDP98WW5.ps"), "{c}");
    assert!(c.contains("Prevented (Blocked)"), "{c}");
    assert!(c.contains("XDR counts 27 alerts (1 read)"), "the incident's own count next to what was read: {c}");
    assert!(c.contains("KEY EVENTS"), "{c}");
    assert!(!c.contains("No enrichment source flags"), "{c}");
    let first_hypothesis = c.split("HYPOTHESES").nth(1).and_then(|h| h.lines().nth(1)).unwrap_or_default();
    assert!(first_hypothesis.contains("Malicious activity"), "malicious ranks first against an XDR malware verdict: {first_hypothesis}");
    assert!(!c.contains("actor_effective_username"), "{c}");
    assert!(kinds(&out.actions).contains(&ActionKind::BlockHash), "{:?}", kinds(&out.actions));
    // The host's own address is not an indicator.
    let indicators = c.split("INDICATORS").nth(1).unwrap_or_default().split("\n\n").next().unwrap_or_default();
    assert!(!indicators.contains("1.1.1.1"), "{indicators}");
}

#[tokio::test]
async fn attack_surface_gets_exposure_facts_and_no_agent_queries() {
    let out = run(fixture("attack_surface.json"), "9102").await;
    let c = out.comment.expect("a dossier");
    for must in [
        "attack surface",
        "CVE-2021-34473 · CVSS 9.8 · EPSS 97% · exploit weaponized",
        "/owa/auth/logon.aspx",
        "mail[.]acme[.]com",
        "owner: Acme/IT",
        "Patch or take the service off the internet",
        "reachable and exploitable",
        "weaponised exploits exist for CVE-2021-34473, CVE-2021-26855",
    ] {
        assert!(c.contains(must), "missing `{must}`: {c}");
    }
    for must_not in ["agent_hostname", "ENUM.PROCESS", "process history", "Benign or novel"] {
        assert!(!c.contains(must_not), "`{must_not}` in an attack-surface dossier: {c}");
    }
    assert!(!kinds(&out.actions).contains(&ActionKind::IsolateEndpoint), "{:?}", kinds(&out.actions));
    let first_hypothesis = c.split("HYPOTHESES").nth(1).and_then(|h| h.lines().nth(1)).unwrap_or_default();
    assert!(first_hypothesis.contains("reachable and exploitable"), "{first_hypothesis}");
    assert!(c.contains("ipv4 1.1.1.1 [seen in: "), "the exposed address comes from the alert's fields: {c}");
}

#[tokio::test]
async fn email_gets_the_message_and_no_endpoint_steps() {
    let out = run(fixture("email_phishing.json"), "9103").await;
    let c = out.comment.expect("a dossier");
    for must in [
        "e-mail / DLP",
        "from: billing@invoices-acme[.]top",
        "subject: Overdue invoice 4471",
        "Pull the message",
        "login[.]invoices-acme[.]top",
        // The phishing section: the sender's domain and the link's, each with what is known.
        "PHISHING — THE MESSAGE, ITS SENDER AND ITS LINKS",
        "sender domain invoices-acme[.]top",
        "link to login[.]invoices-acme[.]top",
        // The firewall's verdict is evidence, not noise: malicious first, never "false positive".
        "The firewall calls the message from billing@invoices-acme.top phishing.",
        "T1566.002 Spearphishing Link",
        // Other recipients of the sender and click-through, versioned templates over 90 days.
        "phishing-xql-v1",
        r#"filter xdm.email.sender = "billing@invoices-acme.top""#,
        r#"dataset = panw_ngfw_url_raw | filter url_domain in ("login.invoices-acme.top")"#,
    ] {
        assert!(c.contains(must), "missing `{must}`: {c}");
    }
    let hypotheses = c.split("HYPOTHESES").nth(1).unwrap();
    assert!(hypotheses.trim_start().lines().nth(1).unwrap().contains("A phishing message reached"), "{hypotheses}");
    for must_not in ["agent_hostname", "ENUM.PROCESS", "login.invoices-acme.top ["] {
        assert!(!c.contains(must_not), "`{must_not}`: {c}");
    }
    assert!(out.actions.iter().all(|a| a.kind != ActionKind::IsolateEndpoint));
}

#[tokio::test]
async fn identity_queries_read_the_logged_on_account() {
    let out = run(fixture("identity_bruteforce.json"), "9104").await;
    let c = out.comment.expect("a dossier");
    assert!(c.contains("identity incident"), "{c}");
    assert!(c.contains(r#"json_extract_scalar(action_evtlog_data_fields, "$.TargetUserName")"#), "{c}");
    assert!(c.contains(r#"filter target_user = "svc-backup""#), "{c}");
    assert!(!c.contains("actor_effective_username"), "{c}");
    assert!(!c.contains("ENUM.PROCESS"), "{c}");
}

#[tokio::test]
async fn a_resolved_duplicate_gets_no_dossier() {
    let out = run(fixture("resolved_duplicate.json"), "9105").await;
    assert!(out.comment.is_none(), "a resolved incident got a dossier: {:?}", out.comment);
    assert_eq!(out.case.status, CaseStatus::Closed);
    assert!(out.actions.is_empty());
}

#[tokio::test]
async fn hostile_text_stays_visibly_untrusted_and_steers_nothing() {
    let out = run(fixture("hostile_text.json"), "9106").await;
    let c = out.comment.expect("a dossier");
    assert!(c.contains("&lt;script&gt;"), "{c}");
    assert!(!c.contains("<script>"), "{c}");
    assert!(!c.contains("https://dossier-approvals"), "an attacker's link must not be clickable: {c}");
    assert!(!c.contains("https://evil-payloads"), "{c}");
    assert!(c.contains("FINDINGS\n- Alert text addresses automated readers"), "{c}");
    assert!(c.contains("[free text: "), "indicators from free text say so: {c}");
    assert!(!kinds(&out.actions).contains(&ActionKind::DisableUser), "{:?}", kinds(&out.actions));
}

/// 1,000 alerts: 840 from one binary on 32 hosts, 60 critical on 4, 100 scattered low ones.
fn thousand_alerts() -> String {
    let mut v: serde_json::Value = serde_json::from_str(&fixture("endpoint_malware.json")).unwrap();
    let template = v.pointer("/reply/alerts/data/0").unwrap().clone();
    let sha = "b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c";
    let mut alerts = Vec::new();
    let mut hosts = Vec::new();
    for i in 0..1000 {
        let mut a = template.clone();
        let (name, sev, host, process) = match i {
            0..=839 => ("Suspicious updater beacon", "high", format!("ws-{:03}", i % 32), "C:\\ProgramData\\Updater\\updater.exe"),
            840..=899 => ("Credential dumping", "critical", format!("srv-{:02}", i % 4), "C:\\ProgramData\\Updater\\updater.exe"),
            _ => ("Unusual process", "low", format!("lab-{:03}", i % 50), "C:\\Tools\\scan.exe"),
        };
        a["alert_id"] = serde_json::json!(format!("{}", 50_000 + i));
        a["name"] = serde_json::json!(name);
        a["severity"] = serde_json::json!(sev);
        a["host_name"] = serde_json::json!(host.clone());
        a["endpoint_id"] = serde_json::json!(format!("ep-{host}"));
        a["host_ip"] = serde_json::json!(format!("10.1.{}.{}", i % 200, i % 250 + 1));
        a["actor_process_image_path"] = serde_json::json!(process);
        a["actor_process_image_sha256"] =
            serde_json::json!(if i < 900 { sha } else { "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00" });
        a["action_remote_ip"] = serde_json::json!(if i < 900 { "45.9.148.108" } else { "10.9.9.9" });
        a["action_remote_port"] = serde_json::json!(8443);
        a["detection_timestamp"] = serde_json::json!(1_701_757_403_327i64 + i as i64 * 1000);
        a["action_pretty"] = serde_json::json!("Detected (Reported)");
        alerts.push(a);
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    v["reply"]["alerts"] = serde_json::json!({"total_count": 1000, "data": alerts});
    v["reply"]["incident"]["incident_id"] = serde_json::json!("9107");
    v["reply"]["incident"]["alert_count"] = serde_json::json!(1000);
    v["reply"]["incident"]["hosts"] = serde_json::json!(hosts.iter().map(|h| format!("{h}:ep-{h}")).collect::<Vec<_>>());
    v["reply"]["file_artifacts"]["data"][0]["file_wildfire_verdict"] = serde_json::json!("UNKNOWN");
    v["reply"]["file_artifacts"]["data"][0]["is_malicious"] = serde_json::json!(false);
    v.to_string()
}

#[tokio::test]
async fn a_thousand_alerts_are_aggregated_and_contained() {
    let out = run(thousand_alerts(), "9107").await;
    let c = out.comment.expect("a dossier");
    assert!(c.contains("60× Credential dumping (critical) — C:\\ProgramData\\Updater\\updater.exe on 4 hosts"), "{c}");
    assert!(c.contains("840× Suspicious updater beacon (high) — C:\\ProgramData\\Updater\\updater.exe on 32 hosts"), "{c}");
    let critical = c.find("60× Credential dumping").unwrap();
    let high = c.find("840× Suspicious updater beacon").unwrap();
    assert!(critical < high, "most severe first");
    assert!(c.contains("ipv4 45.9.148.108"), "the external destination is listed: {c}");
    let external = c.find("ipv4 45.9.148.108").unwrap();
    if let Some(internal) = c.find("HOST, INTERNAL AND RESERVED ADDRESSES") {
        assert!(external < internal, "external indicators before internal addresses");
    }
    assert!(
        c.contains("alerts come from C:\\ProgramData\\Updater\\updater.exe: find every host"),
        "an estate-wide pivot for the shared binary: {c}"
    );
    let isolations: Vec<&Action> = out.actions.iter().filter(|a| a.kind == ActionKind::IsolateEndpoint).collect();
    assert!(!isolations.is_empty(), "containment is proposed: {:?}", kinds(&out.actions));
    for a in &isolations {
        assert!(!a.target_label.starts_with("lab-"), "isolation only where the flagged evidence was seen: {}", a.target_label);
    }
    assert!(c.chars().count() <= dossier_core::dossier::MAX_COMMENT_CHARS + 200);
}
