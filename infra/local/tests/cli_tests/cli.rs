//! The `dossier` binary as users run it.

use serde_json::Value;
use std::process::Command;

use super::common::*;

fn assert_report_shape(v: &Value) {
    for key in ["case", "indicators", "techniques", "sources", "dossier", "actions", "xdr_writes"] {
        assert!(v.get(key).is_some(), "missing `{key}` in {v}");
    }
    for key in ["tenant", "incident_id", "status"] {
        assert!(v["case"][key].is_string(), "case.{key}");
    }
    for i in v["indicators"].as_array().unwrap() {
        let t = i["type"].as_str().unwrap();
        assert!(["ipv4", "ipv6", "domain", "url", "md5", "sha1", "sha256", "email", "hostname", "user"].contains(&t), "{t}");
        assert!(i["internal"].is_boolean() && i["verdicts"].is_array());
    }
    for s in v["sources"].as_array().unwrap() {
        assert!(s["name"].is_string() && s["status"].is_string() && s["calls"].is_u64());
    }
    let d = &v["dossier"];
    assert_eq!(d["ai_generated"], false);
    assert!(d["prompt_version"].is_string() && d["summary"].is_string() && d["comment"].is_string());
    assert!(d["hypotheses"].as_array().unwrap().iter().all(|h| h["text"].is_string() && h["confidence"].is_f64()));
    assert!(d["next_steps"].as_array().unwrap().iter().all(|n| n["text"].is_string()));
    for a in v["actions"].as_array().unwrap() {
        assert!(a["id"].is_string() && a["kind"].is_string() && a["target"].is_string() && a["status"].is_string());
        assert!(a["approval_url"].as_str().unwrap().contains("/approve?t="));
    }
    let writes = v["xdr_writes"].as_array().unwrap();
    assert_eq!(writes.len(), 1, "exactly one comment write");
    assert_eq!(writes[0]["endpoint"], "/public_api/v1/incidents/update_incident");
    assert_eq!(writes[0]["body"]["request_data"]["update_data"]["comment"]["comment_action"], "add");
}

fn values(v: &Value, kind: &str) -> Vec<String> {
    v["indicators"].as_array().unwrap().iter().filter(|i| i["type"] == kind).map(|i| i["value"].as_str().unwrap().to_string()).collect()
}

#[test]
fn runs_the_recorded_extra_data_reply() {
    let v = run_json(&fixture_path("xdr/get_incident_extra_data.json"));
    assert_report_shape(&v);
    assert_eq!(v["case"]["incident_id"], "1");
    // The bundled CMDB export calls the host a Malware Lab asset and the feed calls the file the
    // WildFire test sample: a test, so nothing is proposed and the case is done.
    assert_eq!(v["case"]["status"], "done");
    assert_eq!(values(&v, "sha256"), vec!["8d5aec85593c85ecdc8d5ac601e163a1cc26d877f88c03e9e0e94c9dd4a38fca"]);
    assert_eq!(values(&v, "hostname"), vec!["aaaaaa"]);
    assert_eq!(values(&v, "user"), vec!["Administrator"]);
    // "1.1.1.1." in host_ip, trailing dot and all.
    assert_eq!(values(&v, "ipv4"), vec!["1.1.1.1"]);
    let hash = v["indicators"].as_array().unwrap().iter().find(|i| i["type"] == "sha256").unwrap();
    assert_eq!(hash["verdicts"][0]["source"], "intel-feed");
    assert_eq!(hash["verdicts"][0]["verdict"], "malicious");
    let vt = v["sources"].as_array().unwrap().iter().find(|s| s["name"] == "virustotal").unwrap();
    assert_eq!((vt["status"].as_str(), vt["calls"].as_u64()), (Some("skipped"), Some(0)));
}

#[test]
fn runs_the_recorded_multiple_incidents_reply() {
    let v = run_json(&fixture_path("xdr/get_multiple_incidents_extra_data.json"));
    assert_report_shape(&v);
    // Placeholder hashes ("11111111111111111", "file_sha256_1") are not indicators.
    assert!(values(&v, "sha256").is_empty(), "{:?}", values(&v, "sha256"));
    assert_eq!(values(&v, "ipv4"), vec!["1.1.1.1"]);
    assert_eq!(v["case"]["status"], "done");
}

#[test]
fn runs_the_composed_demo_incident_with_techniques_and_an_isolation_proposal() {
    let v = run_json(&format!("{}/samples/xdr/demo_powershell_stager.json", env!("CARGO_MANIFEST_DIR")));
    assert_report_shape(&v);
    let cited: Vec<&str> =
        v["techniques"].as_array().unwrap().iter().filter(|t| t["inferred"] == false).map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(cited, vec!["PowerShell", "Ingress Tool Transfer"]);
    let inferred: Vec<(&str, &str)> = v["techniques"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["inferred"] == true)
        .map(|t| (t["id"].as_str().unwrap(), t["rule"].as_str().unwrap()))
        .collect();
    assert!(inferred.contains(&("T1027", "R01")), "encoded PowerShell → obfuscation: {inferred:?}");
    assert!(inferred.contains(&("T1566.001", "R16")), "macro document → spearphishing attachment: {inferred:?}");
    assert_eq!(values(&v, "domain"), vec!["cdn-update.example.net"]);
    assert_eq!(values(&v, "url"), vec!["https://cdn-update.example.net/stage2.ps1"]);
    let internal: Vec<bool> = v["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["value"] == "10.20.31.45")
        .map(|i| i["internal"].as_bool().unwrap())
        .collect();
    assert_eq!(internal, vec![true]);
    let kinds: Vec<&str> = v["actions"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["block_hash", "isolate_endpoint", "raise_severity"]);
}

fn assert_rejected(args: &[&str], needle: &str) {
    let out = dossier(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "nothing on stdout for rejected input");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "{args:?}: stderr {err:?} does not mention {needle:?}");
}

#[test]
fn unusable_input_exits_2_naming_the_problem() {
    let dir = std::env::temp_dir().join(format!("dossier-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let full = std::fs::read_to_string(fixture_path("xdr/get_incident_extra_data.json")).unwrap();
    let truncated = dir.join("truncated.json");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let empty = dir.join("empty.json");
    std::fs::write(&empty, "").unwrap();
    let no_id = dir.join("no_id.json");
    std::fs::write(&no_id, r#"{"reply": {"incident": {"description": "x"}, "alerts": {"data": []}}}"#).unwrap();
    let wrong_type = dir.join("wrong_type.json");
    std::fs::write(&wrong_type, r#"{"reply": {"incident": {"incident_id": "5"}, "alerts": {"data": "many"}}}"#).unwrap();
    assert_rejected(&["run", "--extra-data", truncated.to_str().unwrap(), "--json"], "not valid JSON at line");
    assert_rejected(&["run", "--extra-data", empty.to_str().unwrap(), "--json"], "not valid JSON");
    assert_rejected(&["run", "--extra-data", &fixture_path("xdr/error_401_unauthorized.json"), "--json"], "err_code 401");
    assert_rejected(&["run", "--extra-data", &fixture_path("xdr/error_500_public_api.json")], "err_code 500");
    assert_rejected(&["run", "--extra-data", no_id.to_str().unwrap()], "reply.incident.incident_id");
    assert_rejected(&["run", "--extra-data", wrong_type.to_str().unwrap()], "reply.alerts.data");
    assert_rejected(&["run", "--extra-data", dir.join("missing.json").to_str().unwrap()], "cannot read");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn demo_prints_dossiers_with_verdicts_techniques_and_links() {
    let out = dossier(&["demo"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Automated summary (no AI)",
        "MALICIOUS",
        "intel-feed: malicious",
        "T1059.001 PowerShell (Execution)",
        "T1105 Ingress Tool Transfer",
        "approval: http://",
        "Isolate endpoint",
    ] {
        assert!(text.contains(needle), "demo output lacks {needle:?}");
    }
}

#[test]
fn serve_refuses_to_start_without_a_webhook_secret() {
    let out = Command::new(BIN).args(["serve", "--addr", "127.0.0.1:0"]).env_remove("DOSSIER_WEBHOOK_SECRET").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DOSSIER_WEBHOOK_SECRET"));
}

/// A minimal HTTP/1.1 exchange over a real socket: (status, body).
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        // Best effort: the server may already have exited.
        if self.0.kill().is_ok() {
            self.0.wait().ok();
        }
    }
}

#[test]
fn serve_takes_webhooks_and_approvals_over_http() {
    use std::io::BufRead;
    let mut child = Child(
        Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--demo"])
            .env("DOSSIER_WEBHOOK_SECRET", "serve-test-secret")
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut approvals = Vec::new();
    let addr = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(url) = line.strip_prefix("approval: ") {
            approvals.push(url.to_string());
        }
        if let Some(url) = line.strip_prefix("listening: http://") {
            break url.to_string();
        }
    };
    assert!(approvals.len() >= 2, "{approvals:?}");
    let link = approvals[0].split_once(&addr).unwrap().1.to_string();

    // GET shows the confirmation page and decides nothing.
    let (status, page) = http(&addr, "GET", &link, &[], "");
    assert_eq!(status, 200);
    assert!(page.contains("<form method=\"post\""), "{page}");
    assert_eq!(http(&addr, "GET", &link, &[], "").0, 200, "GET is repeatable: still undecided");

    // The webhook door.
    let (status, body) = http(&addr, "POST", "/webhook", &[("content-type", "application/json")], r#"{"case_id": "4711"}"#);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"error\":\"unauthorized\""), "{body}");
    let (status, body) = http(&addr, "POST", "/webhook", &[("authorization", "Bearer serve-test-secret")], "{not json");
    assert_eq!(status, 400, "{body}");
    let (status, body) =
        http(&addr, "POST", "/webhook", &[("authorization", "Bearer serve-test-secret")], r#"{"case_id": "4711", "severity": "medium"}"#);
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("accepted"), "{body}");

    // POST decides once.
    let token = link.split_once("t=").unwrap().1;
    let form = format!("t={token}&decision=approve");
    let ct = [("content-type", "application/x-www-form-urlencoded")];
    let (status, body) = http(&addr, "POST", "/approve", &ct, &form);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("You approved"), "{body}");
    assert_eq!(http(&addr, "POST", "/approve", &ct, &form).0, 409);
    let (status, page) = http(&addr, "GET", &link, &[], "");
    assert_eq!(status, 200);
    assert!(page.contains("Already decided"), "{page}");
    assert_eq!(http(&addr, "GET", "/approve?t=k1.abc.def", &[], "").0, 403);
    assert_eq!(http(&addr, "GET", "/approve", &[], "").0, 400);
}

/// A 1,000-alert incident with 300 distinct external indicators (100 IPs, 100 domains, 100
/// hashes) and 50 internal IPs, run with VirusTotal, OTX and AbuseIPDB pointed at local fakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ti_sources_call_once_per_external_indicator_and_never_for_internal_ones() {
    use dossier_tests::{FakeServer, Reply};
    let alerts: Vec<Value> = (0..1000)
        .map(|i| {
            let n = i % 100;
            serde_json::json!({
                "alert_id": i.to_string(), "name": "Beacon", "host_name": format!("ws-{:03}", i % 50),
                "host_ip": format!("10.1.{}.{}", (i % 50) / 10, i % 50 + 1),
                "action_remote_ip": format!("45.{}.{}.7", n / 50 + 10, n % 50 + 1),
                "dns_query_name": format!("c2-{n}.bad-example.com"),
                "action_file_sha256": format!("{:064x}", n + 1),
            })
        })
        .collect();
    let incident = serde_json::json!({"reply": {"incident": {"incident_id": "9000", "severity": "high"}, "alerts": {"total_count": 1000, "data": alerts},
        "network_artifacts": {"data": []}, "file_artifacts": {"data": []}}});
    let path = std::env::temp_dir().join(format!("dossier-1000-{}.json", std::process::id()));
    std::fs::write(&path, incident.to_string()).unwrap();

    let vt = FakeServer::start().await;
    dossier_tests::vendors::virustotal(&vt, "k");
    vt.on("GET", "/api/v3/*", Reply::json(404, r#"{"error": {"code": "NotFoundError", "message": "x"}}"#));
    let otx = FakeServer::start().await;
    dossier_tests::vendors::otx(&otx, "k");
    otx.on("GET", "/api/v1/*", Reply::json(200, r#"{"pulse_info": {"count": 0, "pulses": []}, "validation": []}"#));
    let abuse = FakeServer::start().await;
    dossier_tests::vendors::abuseipdb(&abuse, "k");
    abuse.on(
        "GET",
        "/api/v2/check",
        Reply::json(200, r#"{"data": {"abuseConfidenceScore": 0, "totalReports": 0, "isWhitelisted": false}}"#),
    );
    let (vt_url, otx_url, abuse_url) = (format!("{}/api/v3", vt.url()), format!("{}/api/v1", otx.url()), format!("{}/api/v2", abuse.url()));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["run", "--extra-data", path.to_str().unwrap(), "--json"])
            .env("RUST_LOG", "error")
            .env("DOSSIER_VIRUSTOTAL_URL", vt_url)
            .env("DOSSIER_VIRUSTOTAL_KEY", "k")
            .env("DOSSIER_VIRUSTOTAL_QUOTA", "100000/min")
            .env("DOSSIER_OTX_URL", otx_url)
            .env("DOSSIER_OTX_KEY", "k")
            .env("DOSSIER_ABUSEIPDB_URL", abuse_url)
            .env("DOSSIER_ABUSEIPDB_KEY", "k")
            .env("DOSSIER_ABUSEIPDB_QUOTA", "100000/min")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let external = v["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["internal"] == false && ["ipv4", "domain", "sha256"].contains(&i["type"].as_str().unwrap()))
        .count();
    let internal_ips = v["indicators"].as_array().unwrap().iter().filter(|i| i["internal"] == true && i["type"] == "ipv4").count();
    assert_eq!((external, internal_ips), (300, 50));
    let calls = |name: &str| v["sources"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["calls"].as_u64().unwrap();
    assert_eq!(calls("virustotal"), 300);
    assert_eq!(calls("otx"), 300);
    assert_eq!(calls("abuseipdb"), 100, "IPs only");
    assert_eq!(vt.requests().len(), 300);
    for fake in [&vt, &otx, &abuse] {
        assert!(
            fake.requests().iter().all(|r| !r.path.contains("/10.1.") && !r.path.contains("/ws-")),
            "no internal indicator left the building"
        );
    }
}

/// `run --llm-url` against a local OpenAI-compatible fake: the dossier says which model and prompt wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_an_openai_compatible_model() {
    use dossier_tests::{FakeServer, Reply};
    let fake = FakeServer::start().await;
    fake.on(
        "POST",
        "/v1/chat/completions",
        Reply::dynamic(|r| {
            if r.header("authorization") != Some("Bearer sk-local") {
                return Reply::json(401, r#"{"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "code": "invalid_api_key"}}"#);
            }
            let prompt = r.json()["messages"][1]["content"].as_str().unwrap_or("").to_string();
            let host = prompt.find("HOST-").map(|i| prompt[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect::<String>()).unwrap_or_default();
            let answer = serde_json::json!({
                "summary": format!("Loader activity on {host} after a macro document; second stage from cdn-update.example.net."),
                "timeline": [], "hypotheses": [{"text": "Phishing-delivered loader.", "confidence": 0.7, "evidence": ["cdn-update.example.net"]}],
                "techniques": [{"id": "T1059.001", "rationale": "encoded command"}], "actors": [], "impacted": [],
                "next_steps": [{"text": "Check other hosts resolving the domain.", "xql": "dataset = xdr_data | filter dns_query_name = \"cdn-update.example.net\""}],
                "proposed_actions": [], "severity": {"level": "high", "reason": "malware executed"}
            });
            Reply::json(200, serde_json::json!({"choices": [{"message": {"content": answer.to_string()}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 10, "completion_tokens": 5}}).to_string())
        }),
    );
    let url = format!("{}/v1", fake.url());
    let sample = format!("{}/samples/xdr/demo_powershell_stager.json", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["run", "--extra-data", &sample, "--json", "--llm-url", &url, "--llm-model", "local-test-model"])
            .env("RUST_LOG", "error")
            .env("DOSSIER_LLM_KEY", "sk-local")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dossier"]["ai_generated"], true);
    assert_eq!(v["dossier"]["model"], "local-test-model");
    assert_eq!(v["dossier"]["prompt_version"], "dossier-v2");
    assert!(v["dossier"]["summary"].as_str().unwrap().contains("fin-ws-0231"), "re-identified");
    assert_eq!(fake.requests()[0].header("authorization"), Some("Bearer sk-local"));
}

/// `dossier doctor` against fakes that check credentials as the vendors do: a misconfigured
/// setup (no internal domains, a refused model key, a refused VirusTotal key) fails with one line
/// per problem; the corrected one is healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_each_misconfiguration_and_passes_a_correct_setup() {
    use dossier_tests::{FakeServer, Reply};
    let llm = FakeServer::start().await;
    llm.on(
        "POST",
        "/v1/chat/completions",
        Reply::dynamic(|r| {
            if r.header("authorization") != Some("Bearer sk-good") {
                return Reply::json(401, r#"{"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "code": "invalid_api_key"}}"#);
            }
            Reply::json(200, r#"{"choices": [{"message": {"content": "{\"ok\": true}"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 30, "completion_tokens": 5}}"#)
        }),
    );
    let vt = FakeServer::start().await;
    dossier_tests::vendors::virustotal(&vt, "vt-good");
    vt.on("GET", "/api/v3/*", Reply::json(404, r#"{"error": {"code": "NotFoundError", "message": "not found"}}"#));
    let (llm_url, vt_url) = (format!("{}/v1", llm.url()), format!("{}/api/v3", vt.url()));
    let doctor = move |llm_key: &'static str, vt_key: &'static str, domains: Option<&'static str>| {
        let (llm_url, vt_url) = (llm_url.clone(), vt_url.clone());
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(BIN);
            cmd.args(["doctor"])
                .env("RUST_LOG", "error")
                .env("DOSSIER_LLM_URL", llm_url)
                .env("DOSSIER_LLM_KEY", llm_key)
                .env("DOSSIER_VIRUSTOTAL_URL", vt_url)
                .env("DOSSIER_VIRUSTOTAL_KEY", vt_key)
                .env_remove("DOSSIER_XDR_URL")
                .env_remove("DOSSIER_INTERNAL_DOMAINS");
            if let Some(d) = domains {
                cmd.env("DOSSIER_INTERNAL_DOMAINS", d);
            }
            cmd.output().unwrap()
        })
    };
    let bad = doctor("sk-wrong", "vt-wrong", None).await.unwrap();
    let text = String::from_utf8_lossy(&bad.stdout).to_string();
    println!("misconfigured:\n{text}");
    assert_eq!(bad.status.code(), Some(1), "{text}");
    for line in ["FAIL internal-domains", "FAIL model", "FAIL virustotal", "skip xdr-api", "NOT HEALTHY", "Wrong API key"] {
        assert!(text.contains(line), "missing `{line}`:\n{text}");
    }
    assert!(text.contains("Incorrect API key") || text.contains("credentials"), "{text}");

    let good = doctor("sk-good", "vt-good", Some("corp.example")).await.unwrap();
    let text = String::from_utf8_lossy(&good.stdout).to_string();
    println!("correct:\n{text}");
    assert!(good.status.success(), "{text}");
    for line in ["ok   internal-domains", "ok   model", "ok   virustotal", "healthy"] {
        assert!(text.contains(line), "missing `{line}`:\n{text}");
    }
    assert!(!text.contains("FAIL"), "{text}");
}

/// `dossier eval` on the golden set with a fake OpenAI-compatible model that answers from the
/// evidence it is given (the techniques and external addresses in the prompt): a full report,
/// every case scored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_scores_the_golden_set_with_the_fake_model() {
    use dossier_tests::{FakeServer, Reply};
    let llm = FakeServer::start().await;
    llm.on(
        "POST",
        "/v1/chat/completions",
        Reply::dynamic(|r| {
            if r.header("authorization") != Some("Bearer sk-test") {
                return Reply::json(401, r#"{"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "code": "invalid_api_key"}}"#);
            }
            let prompt = r.json()["messages"][1]["content"].as_str().unwrap_or("").to_string();
            let evidence = prompt.split("<evidence>").nth(1).unwrap_or("");
            let mut techniques: Vec<String> = Vec::new();
            for (i, _) in evidence.match_indices("\"id\":\"T") {
                let id: String = evidence[i + 6..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.').collect();
                if !techniques.contains(&id) && techniques.len() < 6 {
                    techniques.push(id);
                }
            }
            // External addresses in clear (internal ones arrive as IP-n tokens): cite them.
            let addresses: Vec<&str> = evidence
                .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .filter(|w| w.split('.').count() == 4 && w.split('.').all(|p| p.parse::<u8>().is_ok()))
                .take(3)
                .collect();
            let answer = serde_json::json!({
                "summary": format!("The evidence shows the activity the alerts describe, involving {}.", addresses.join(", ")),
                "timeline": [],
                "hypotheses": [{"text": "Malicious activity.", "confidence": 0.6, "evidence": techniques.clone()}],
                "techniques": techniques.iter().map(|t| serde_json::json!({"id": t, "rationale": "in the alerts"})).collect::<Vec<_>>(),
                "actors": [],
                "impacted": [],
                "next_steps": [{"text": "Review the alerts in XDR.", "xql": ""}],
                "proposed_actions": [],
                "severity": {"level": "critical", "reason": "as the evidence shows"}
            });
            Reply::json(
                200,
                serde_json::json!({"choices": [{"message": {"content": answer.to_string()}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 2000, "completion_tokens": 200}}).to_string(),
            )
        }),
    );
    let url = format!("{}/v1", llm.url());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["eval", "--llm-url", &url, "--llm-model", "fake-gpt", "--json"])
            .env("RUST_LOG", "error")
            .env("DOSSIER_LLM_KEY", "sk-test")
            .env("DOSSIER_LLM_PRICE_USD_PER_MTOK", "1,5")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{text}");
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["cases"], 6);
    assert_eq!(v["schema_valid"], 6, "{text}");
    assert_eq!(v["fallbacks"], 0);
    assert_eq!(v["leaked_identifiers"], 0, "{text}");
    assert_eq!(v["statements_failed"], 0, "{text}");
    assert_eq!(v["technique_recall"], 1.0, "{text}");
    assert_eq!(v["grounding"], 1.0, "{text}");
    let cited: u64 = v["per_case"].as_array().unwrap().iter().map(|c| c["cited"].as_u64().unwrap()).sum();
    assert!(cited > 0, "the fake cites addresses, so grounding is measured: {text}");
    assert_eq!((v["input_tokens"].as_u64(), v["output_tokens"].as_u64()), (Some(12_000), Some(1_200)));
    assert!((v["cost_usd"].as_f64().unwrap() - 0.018).abs() < 1e-9, "{text}");
    assert_eq!(v["passes"], true);
    assert!(out.status.success());
}

/// `dossier doctor --lambda-config` against deployed functions' configurations, with their
/// secrets in moto: a missing secret and empty internal domains fail by name; the fixed
/// configuration is healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_a_deployed_configuration() {
    let endpoint = dossier_tests::moto_endpoint();
    let sdk = dossier_adapters::aws::sdk_config_for(&endpoint).await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = dossier_tests::unique_prefix("doctor-xdr");
    let created =
        client.create_secret().name(&name).secret_string(r#"{"api_key":"k","api_key_id":"1","auth":"standard"}"#).send().await.unwrap();
    let arn = created.arn().unwrap().to_string();
    let missing = arn.replace(&name, &format!("{name}-gone"));
    let dir = std::env::temp_dir();
    let write = |file: &str, domains: &str, vt_arn: &str| {
        let path = dir.join(format!("{file}-{}.json", std::process::id()));
        let config = serde_json::json!({"FunctionName": "dossier-dev-collect", "Environment": {"Variables": {
            "DOSSIER_INTERNAL_DOMAINS": domains, "DOSSIER_XDR_SECRET_ARN": arn, "DOSSIER_VIRUSTOTAL_SECRET_ARN": vt_arn, "DOSSIER_LLM_PROVIDER": "none"}}});
        std::fs::write(&path, config.to_string()).unwrap();
        path
    };
    let bad = write("doctor-bad", "", &missing);
    let good = write("doctor-good", "corp.example", &arn);
    let run = |path: std::path::PathBuf, endpoint: String| {
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(["doctor", "--lambda-config", path.to_str().unwrap(), "--aws-endpoint", &endpoint])
                .env("RUST_LOG", "error")
                .output()
                .unwrap()
        })
    };
    let out = run(bad, endpoint.clone()).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("misconfigured:\n{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    for line in [
        "FAIL dossier-dev-collect: internal-domains",
        "ok   dossier-dev-collect: DOSSIER_XDR_SECRET_ARN",
        "FAIL dossier-dev-collect: DOSSIER_VIRUSTOTAL_SECRET_ARN",
    ] {
        assert!(text.contains(line), "missing `{line}`:\n{text}");
    }
    assert!(!text.contains("api_key"), "secret values are never printed: {text}");
    let out = run(good, endpoint).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("correct:\n{text}");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("healthy") && !text.contains("FAIL"), "{text}");
}
