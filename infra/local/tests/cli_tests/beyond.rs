//! The `dossier` binary on what goes beyond lookups: premium sources in `sources[]`, related
//! incidents and merges, runbook citations, campaign proposals and ranked attribution.

use serde_json::Value;
use std::process::Command;

use super::common::*;

/// The premium sources in `run --json`: each in `sources[]` with its status; Recorded Future's
/// actor for the demo's loader reaches the likely actors, and the ATT&CK group of that name
/// ranks first among the groups, named by the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn premium_sources_report_and_their_actor_names_rank() {
    use dossier_tests::{fixture, FakeServer, Reply};
    let rf = FakeServer::start().await;
    dossier_tests::vendors::recorded_future(&rf, "rf");
    rf.on(
        "GET",
        "/v2/hash/03bd9a94482f180bb047626cb2f27ccf8daa0e201345480b43585580e09c311b",
        Reply::json(200, fixture("recordedfuture/hash_malicious.json")),
    );
    let gti = FakeServer::start().await;
    dossier_tests::vendors::gti(&gti, "g");
    let qualys = FakeServer::start().await;
    dossier_tests::vendors::qualys(&qualys, "u", "p");
    qualys.on("POST", "/qps/rest/2.0/search/am/hostasset", Reply::Body(200, fixture("qualys/hostasset_search.xml"), vec![]));
    qualys.on("GET", "/api/2.0/fo/asset/host/vm/detection/", Reply::Body(200, fixture("qualys/host_detections_empty.xml"), vec![]));
    let urls = (format!("{}/v2", rf.url()), format!("{}/api/v3", gti.url()), qualys.url());
    let sample = format!("{}/samples/xdr/demo_powershell_stager.json", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["run", "--extra-data", &sample, "--json"])
            .env("RUST_LOG", "error")
            .env("DOSSIER_RECORDEDFUTURE_URL", urls.0)
            .env("DOSSIER_RECORDEDFUTURE_KEY", "rf")
            .env("DOSSIER_GTI_URL", urls.1)
            .env("DOSSIER_GTI_KEY", "g")
            .env("DOSSIER_QUALYS_URL", urls.2)
            .env("DOSSIER_QUALYS_KEY", "u:p")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = |name: &str| v["sources"].as_array().unwrap().iter().find(|s| s["name"] == name).map(|s| s["status"].clone());
    assert_eq!(status("recordedfuture"), Some(Value::from("ok")));
    assert_eq!(status("gti"), Some(Value::from("not_found")), "GTI knows none of them (404 everywhere)");
    assert_eq!(status("qualys"), Some(Value::from("not_found")), "the host has no open detections");
    for s in ["splunk", "sentinel"] {
        assert_eq!(status(s), Some(Value::from("skipped")), "{s} is listed, not configured");
    }
    let d = &v["dossier"];
    assert_eq!(d["named_actors"][0]["name"], "APT28");
    assert_eq!(d["named_actors"][0]["attack_group"], "G0007");
    assert_eq!(d["actors"][0]["id"], "G0007", "{}", d["actors"]);
    assert_eq!(d["actors"][0]["named_by"][0], "recordedfuture");
    let comment = v["dossier"]["comment"].as_str().unwrap();
    assert!(comment.contains("APT28 (threat actor; ATT&CK G0007) — named by recordedfuture"), "{comment}");
    assert!(comment.contains("first seen") || comment.contains("seen 2024-04-29 to 2024-05-01"), "dates per indicator");
    // The Qualys lookup for the host went by name, through Asset Management, and by IP for none
    // of the external addresses (it looks at the organisation's own hosts).
    assert!(qualys.requests().iter().all(|r| !r.query.contains("98.136.103.23")));
    if std::env::var_os("DOSSIER_SHOW").is_some() {
        eprintln!("{comment}");
    }
}

/// Two incidents of one intrusion in one run (files in order, one store): the second lists the
/// first as related, with what they share, a merge suggestion and a gated merge action that
/// nothing runs without approval. One JSON object per case, one per line.
#[test]
fn the_second_of_two_related_incidents_suggests_a_merge() {
    let first = format!("{}/samples/xdr/demo_powershell_stager.json", env!("CARGO_MANIFEST_DIR"));
    let second = fixture_path("incidents/demo_second_host.json");
    let out = Command::new(BIN)
        .args(["run", "--extra-data", &first, "--extra-data", &second, "--json"])
        .env("RUST_LOG", "error")
        .env_remove("DOSSIER_VIRUSTOTAL_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "one line per case");
    assert_eq!((lines[0]["case"]["incident_id"].as_str(), lines[1]["case"]["incident_id"].as_str()), (Some("4711"), Some("4712")));
    assert_eq!(lines[0]["related"], serde_json::json!([]), "the first saw nothing before it");
    let related = lines[1]["related"].as_array().unwrap();
    assert_eq!(related.len(), 1, "{related:?}");
    assert_eq!(related[0]["incident_id"], "4711");
    let shared: Vec<&str> = related[0]["shared"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    for s in
        ["domain cdn-update.example.net", "ipv4 98.136.103.23", "sha256 03bd9a94482f180bb047626cb2f27ccf8daa0e201345480b43585580e09c311b"]
    {
        assert!(shared.contains(&s), "{shared:?}");
    }
    assert!(!shared.iter().any(|s| s.contains("fin-ws-0231") || s.contains("j.doe")), "another host and user: {shared:?}");
    assert!(related[0]["score"].as_f64().unwrap() >= 0.6);
    let suggestions = lines[1]["suggestions"].as_array().unwrap();
    assert!(suggestions.iter().any(|s| s["kind"] == "merge" && s["text"].as_str().unwrap().contains("incident 4711")), "{suggestions:?}");
    let merge = lines[1]["actions"].as_array().unwrap().iter().find(|a| a["kind"] == "merge_cases").expect("a gated merge action");
    assert_eq!((merge["target"].as_str(), merge["status"].as_str()), (Some("4711"), Some("proposed")));
    // Nothing merged or noted on either incident without an approval.
    let writes = lines[1]["xdr_writes"].to_string() + &lines[0]["xdr_writes"].to_string();
    assert!(!writes.contains("Merge approved"), "{writes}");
    assert!(lines[1]["dossier"]["comment"].as_str().unwrap().contains("SUGGESTIONS"));
}

/// With a folder of runbooks (`DOSSIER_KNOWLEDGE_PATH`), the demo incident's dossier cites the
/// runbook that fits, by document and section; the lab case with its test file cites nothing.
#[test]
fn a_folder_of_runbooks_is_cited_where_it_fits() {
    let folder = format!("{}/samples/knowledge", env!("CARGO_MANIFEST_DIR"));
    let demo = format!("{}/samples/xdr/demo_powershell_stager.json", env!("CARGO_MANIFEST_DIR"));
    let lab = format!("{}/samples/xdr/get_incident_extra_data.json", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(BIN)
        .args(["run", "--extra-data", &demo, "--extra-data", &lab, "--json"])
        .env("RUST_LOG", "error")
        .env("DOSSIER_KNOWLEDGE_PATH", &folder)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let citations = lines[0]["dossier"]["citations"].as_array().unwrap();
    assert_eq!(citations[0]["document"], "runbooks/encoded-powershell.md", "{citations:?}");
    assert!(citations.iter().any(|c| c["section"] == "Triage"), "{citations:?}");
    assert!(citations.iter().all(|c| c["text"].as_str().is_some_and(|t| !t.is_empty())));
    assert!(lines[0]["dossier"]["comment"].as_str().unwrap().contains("runbooks/encoded-powershell.md § Triage"));
    assert_eq!(lines[1]["dossier"]["citations"], serde_json::json!([]), "a test file on a lab host fits no runbook");
    let knowledge = lines[0]["sources"].as_array().unwrap().iter().find(|s| s["name"] == "knowledge").unwrap();
    assert_eq!(knowledge["status"], "ok");
    // Without a folder the source says how to configure it.
    let v = run_json(&demo);
    let knowledge = v["sources"].as_array().unwrap().iter().find(|s| s["name"] == "knowledge").unwrap();
    assert_eq!(knowledge["status"], "skipped");
    assert!(knowledge["note"].as_str().unwrap().contains("DOSSIER_KNOWLEDGE_PATH"));
    // A folder that is not there is a clear error before anything runs.
    let bad = Command::new(BIN).args(["run", "--extra-data", &demo]).env("DOSSIER_KNOWLEDGE_PATH", "/nonexistent/kb").output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("DOSSIER_KNOWLEDGE_PATH"));
}

/// Three low-severity incidents of one campaign on three hosts, run in order: after the hunt,
/// one campaign proposal (a suggestion on each case, a gated action on the newest).
#[test]
fn three_quiet_incidents_on_three_hosts_make_one_campaign_proposal() {
    let demo = std::fs::read_to_string(format!("{}/samples/xdr/demo_powershell_stager.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let dir = std::env::temp_dir().join(format!("dossier-campaign-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut args = vec!["run".to_string()];
    for (i, host) in ["ws-a", "ws-b", "ws-c"].iter().enumerate() {
        let mut v: Value =
            serde_json::from_str(&demo.replace("fin-ws-0231", host).replace("FIN-WS-0231", &host.to_ascii_uppercase())).unwrap();
        v["reply"]["incident"]["incident_id"] = Value::from(format!("60{i}"));
        v["reply"]["incident"]["severity"] = Value::from("low");
        let path = dir.join(format!("{i}.json"));
        std::fs::write(&path, v.to_string()).unwrap();
        args.extend(["--extra-data".to_string(), path.to_string_lossy().into_owned()]);
    }
    args.push("--json".into());
    let out = Command::new(BIN).args(&args).env("RUST_LOG", "error").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for line in &lines {
        let campaign: Vec<&Value> = line["suggestions"].as_array().unwrap().iter().filter(|s| s["kind"] == "campaign").collect();
        assert_eq!(campaign.len(), 1, "{}", line["suggestions"]);
    }
    let proposals: Vec<&Value> =
        lines.iter().flat_map(|l| l["actions"].as_array().unwrap().iter()).filter(|a| a["kind"] == "open_investigation").collect();
    assert_eq!(proposals.len(), 1, "one proposal for the cluster");
    assert_eq!((proposals[0]["target"].as_str(), proposals[0]["status"].as_str()), (Some("600,601,602"), Some("proposed")));
    std::fs::remove_dir_all(&dir).ok();
}

/// The demo's attribution: ranked and explained — the groups known to use the malware the intel
/// feed names first (the one sharing more of the case's techniques ahead), commonplace techniques
/// named as such, and never "100% overlap" for groups that only share commonplace techniques.
#[test]
fn the_demo_attribution_is_ranked_and_explained() {
    let v = run_json(&format!("{}/samples/xdr/demo_powershell_stager.json", env!("CARGO_MANIFEST_DIR")));
    let actors = v["dossier"]["actors"].as_array().unwrap();
    let ranked: Vec<&str> = actors.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(ranked, ["TA2541", "SilverTerrier"], "{actors:?}");
    assert_eq!(actors[0]["named_by"][0], "intel-feed (uses Agent Tesla)");
    assert_eq!(actors[0]["shared"].as_array().unwrap().len(), 5);
    assert_eq!(v["dossier"]["commonplace_techniques"].as_array().unwrap().len(), 5);
    assert_eq!(v["dossier"]["named_actors"][0]["attack_software"], "S0331 Agent Tesla");
    let comment = v["dossier"]["comment"].as_str().unwrap();
    assert!(
        comment.contains("TA2541 (G1018) — named by intel-feed (uses Agent Tesla); shares 5 of the case's 5 technique(s), all commonplace"),
        "{comment}"
    );
    assert!(comment.contains("Not counted (used by a quarter or more of the 168 known groups): T1566.001 (82)"), "{comment}");
    assert!(!comment.contains("100% overlap") && !comment.contains("score 100/100"), "{comment}");
}
