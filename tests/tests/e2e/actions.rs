//! Gated actions after approval: block hash, raise severity by policy, isolation followed to its
//! XDR outcome, disable user — each executed once, its result recorded and posted back.

use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dossier_adapters::sources::catalog::{self, Shared, SourceSettings};
use dossier_core::config::PipelineConfig;
use dossier_core::domain::{ActionKind, ActionStatus, Case, CaseKey, IncidentHint, Trigger};
use dossier_core::dossier::AutoApprove;
use dossier_core::embedded::RecordingXdr;
use dossier_core::http::HttpRequest;
use dossier_core::messages::Message;
use dossier_core::ports::{Clock, IdentityAdmin, QueueName, SystemClock, XdrError};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, IntelFeed, PerIndicator, Source};
use dossier_core::stages::{open_case, HttpHandler};
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};
use dossier_tests::{fixture, FakeServer, Reply};

struct FakeIdp(Mutex<Vec<String>>);

#[async_trait]
impl IdentityAdmin for FakeIdp {
    fn name(&self) -> &str {
        "fake-idp"
    }
    async fn disable_user(&self, user: &str) -> Result<String, XdrError> {
        self.0.lock().unwrap().push(user.to_string());
        Ok(format!("user {user} suspended"))
    }
    async fn is_disabled(&self, user: &str) -> Result<Option<bool>, XdrError> {
        Ok(Some(self.0.lock().unwrap().iter().any(|u| u == user)))
    }
}

fn comments(xdr: &RecordingXdr) -> Vec<String> {
    xdr.writes()
        .iter()
        .filter_map(|w| w.body.pointer("/request_data/update_data/comment/value").and_then(|v| v.as_str()).map(str::to_string))
        .collect()
}

async fn drain(p: &LocalPipeline) {
    for _ in 0..30 {
        if p.pump_once().await.unwrap() == 0 {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_and_policy_approved_actions_run_once_and_report_back() {
    // VirusTotal (fake) says the dropped file is flagged by 40 engines: the policy raises severity.
    let vt = FakeServer::start().await;
    vt.on("GET", "/api/v3/files/*", Reply::json(200, fixture("virustotal/file_sha256.json")));
    vt.on("GET", "/api/v3/*", Reply::json(404, fixture("virustotal/error_404_not_found.json")));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backend = Backend::embedded(clock.clone());
    let shared = Shared { store: backend.store.clone(), clock: clock.clone(), cache: true };
    let vt_settings = SourceSettings {
        url: Some(format!("{}/api/v3", vt.url())),
        key: Some("k".into()),
        quota: Some("1000/min".into()),
        ..Default::default()
    };
    let sources: Vec<Arc<dyn Source>> = vec![
        Arc::new(AttackSource),
        Arc::new(PerIndicator::new(IntelFeed::from_csv(include_str!("../../../infra/local/samples/intel-feed.csv")).unwrap())),
        catalog::build("virustotal", &vt_settings, &shared, "").unwrap(),
    ];
    let xdr = Arc::new(RecordingXdr::serving(include_str!("../../../infra/local/samples/xdr/demo_powershell_stager.json").to_string()));
    let idp = Arc::new(FakeIdp(Mutex::default()));
    let config = PipelineConfig {
        auto_approve: vec![AutoApprove::parse("raise_severity:malicious_engines>=5").unwrap()],
        ..PipelineConfig::default()
    };
    let pipeline = LocalPipeline::new(PipelineParts {
        backend,
        config,
        clock: clock.clone(),
        xdr: xdr.clone(),
        sources,
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![4; 32] }]).unwrap()),
        webhook_secrets: dossier_local::backend::no_webhooks(),
        model: None,
        identity: Some(idp.clone()),
        notifiers: Vec::new(),
    });
    let key = CaseKey::new("default", "4711").unwrap();
    open_case(&pipeline.ctx, Case::new(key.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default()))
        .await
        .unwrap();
    assert!(pipeline.run_until_settled(std::slice::from_ref(&key), Duration::from_secs(30)).await.unwrap());
    drain(&pipeline).await;

    let actions = pipeline.actions(&key).await.unwrap();
    let by_kind = |k: ActionKind| actions.iter().find(|a| a.kind == k).cloned().unwrap();
    // The policy approved and ran the severity raise; nobody clicked.
    let raise = by_kind(ActionKind::RaiseSeverity);
    assert_eq!(raise.status, ActionStatus::Executed);
    assert_eq!(raise.decision.as_ref().unwrap().approver, "policy:raise_severity:malicious_engines>=5");
    assert!(xdr.writes().iter().any(|w| w.body.pointer("/request_data/update_data/manual_severity").is_some()));
    // The others wait for a human.
    let block = by_kind(ActionKind::BlockHash);
    let isolate = by_kind(ActionKind::IsolateEndpoint);
    assert_eq!((block.status, isolate.status), (ActionStatus::Proposed, ActionStatus::Proposed));
    assert!(xdr
        .writes()
        .iter()
        .all(|w| w.endpoint != "/public_api/v1/hash_exceptions/blocklist" && w.endpoint != "/public_api/v1/endpoints/isolate"));

    // Approve the hash block and the isolation by their links (twice each: one decision).
    for a in [&block, &isolate] {
        let token = a.links[0].url.split("t=").nth(1).unwrap().to_string();
        for expected in [200, 409] {
            let req = HttpRequest {
                method: "POST".into(),
                path: "/approve".into(),
                headers: vec![("content-type".into(), "application/x-www-form-urlencoded".into())],
                body: format!("t={token}&decision=approve").into_bytes(),
                ..Default::default()
            };
            assert_eq!(pipeline.approve.handle(&req).await.status, expected);
        }
    }
    drain(&pipeline).await;
    // The execute messages delivered again change nothing.
    for a in [&block, &isolate] {
        pipeline
            .backend
            .queue
            .send(&QueueName::writeback(), &Message::ExecuteAction { case: key.clone(), action_id: a.id.clone() }.to_body(), Duration::ZERO)
            .await
            .unwrap();
    }
    drain(&pipeline).await;
    let writes = xdr.writes();
    assert_eq!(writes.iter().filter(|w| w.endpoint == "/public_api/v1/hash_exceptions/blocklist").count(), 1);
    assert_eq!(writes.iter().filter(|w| w.endpoint == "/public_api/v1/endpoints/isolate").count(), 1);
    // The isolation is followed to its XDR outcome (the poll, delivered now instead of in a minute).
    pipeline
        .backend
        .queue
        .send(
            &QueueName::writeback(),
            &Message::CheckAction { case: key.clone(), action_id: isolate.id.clone(), attempt: 1 }.to_body(),
            Duration::ZERO,
        )
        .await
        .unwrap();
    drain(&pipeline).await;
    let isolated = pipeline.action(&key, &isolate.id).await.unwrap().unwrap();
    assert!(isolated.execution_result.as_deref().unwrap().contains("COMPLETED_SUCCESSFULLY"), "{:?}", isolated.execution_result);

    // Each result went back to the incident once: dossier + 3 results + isolation outcome.
    let texts = comments(&xdr);
    assert_eq!(texts.len(), 5, "{texts:#?}");
    assert!(texts.iter().any(|t| t.contains("Block file hash") && t.contains("executed")));
    assert!(texts.iter().any(|t| t.contains("Raise incident severity") && t.contains("policy:raise_severity")));
    assert!(texts.iter().any(|t| t.contains("Isolate endpoint") && t.contains("COMPLETED_SUCCESSFULLY")));
    let events: Vec<String> = pipeline.ctx.store.events(&key).await.unwrap().into_iter().map(|e| e.event).collect();
    assert!(events.contains(&"action.auto_approved".to_string()) && events.contains(&"action.status".to_string()));
    assert!(idp.0.lock().unwrap().is_empty(), "no user action was approved");
}

#[tokio::test]
async fn feedback_links_count_once_per_link_per_prompt_version() {
    let (pipeline, key, xdr) = notified_case(PipelineConfig::default(), Vec::new()).await;
    let comment = comments(&xdr).remove(0);
    let link =
        comment.lines().find_map(|l| l.strip_prefix("Was this dossier useful? ")).expect("a feedback link in the comment").to_string();
    let token = link.split("t=").nth(1).unwrap().to_string();
    let req = |method: &str, path: &str, body: String| HttpRequest {
        method: method.into(),
        path: path.into(),
        headers: vec![("content-type".into(), "application/x-www-form-urlencoded".into())],
        query: vec![("t".into(), token.clone())],
        body: body.into_bytes(),
        ..Default::default()
    };
    let form = pipeline.approve.handle(&req("GET", "/feedback", String::new())).await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("Was this dossier useful?"));
    assert_eq!(
        dossier_core::stages::feedback_counts(&pipeline.ctx, dossier_core::dossier::DETERMINISTIC_VERSION).await.unwrap().useful,
        0,
        "GET counts nothing"
    );
    assert_eq!(pipeline.approve.handle(&req("POST", "/feedback", format!("t={token}&decision=useful"))).await.status, 200);
    assert_eq!(pipeline.approve.handle(&req("POST", "/feedback", format!("t={token}&decision=not_useful"))).await.status, 409);
    let counts = dossier_core::stages::feedback_counts(&pipeline.ctx, dossier_core::dossier::DETERMINISTIC_VERSION).await.unwrap();
    assert_eq!((counts.useful, counts.not_useful), (1, 0));
    // A feedback link cannot decide an action, nor an approval link vote.
    assert_eq!(pipeline.approve.handle(&req("POST", "/approve", format!("t={token}&decision=approve"))).await.status, 403);
    let actions = pipeline.actions(&key).await.unwrap();
    let approval = actions[0].links[0].url.split("t=").nth(1).unwrap().to_string();
    let vote = HttpRequest {
        method: "POST".into(),
        path: "/feedback".into(),
        headers: vec![("content-type".into(), "application/x-www-form-urlencoded".into())],
        body: format!("t={approval}&decision=useful").into_bytes(),
        ..Default::default()
    };
    assert_eq!(pipeline.approve.handle(&vote).await.status, 403);
}

/// The demo incident through the pipeline with these notifiers, its notices delivered.
async fn notified_case(
    config: PipelineConfig,
    notifiers: Vec<Arc<dyn dossier_core::ports::Notifier>>,
) -> (LocalPipeline, CaseKey, Arc<RecordingXdr>) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let xdr = Arc::new(RecordingXdr::serving(include_str!("../../../infra/local/samples/xdr/demo_powershell_stager.json").to_string()));
    let pipeline = LocalPipeline::new(PipelineParts {
        backend: Backend::embedded(clock.clone()),
        config,
        clock: clock.clone(),
        xdr: xdr.clone(),
        sources: vec![
            Arc::new(AttackSource),
            Arc::new(PerIndicator::new(IntelFeed::from_csv(include_str!("../../../infra/local/samples/intel-feed.csv")).unwrap())),
        ],
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![8; 32] }]).unwrap()),
        webhook_secrets: dossier_local::backend::no_webhooks(),
        model: None,
        identity: None,
        notifiers,
    });
    let key = CaseKey::new("default", "4711").unwrap();
    open_case(&pipeline.ctx, Case::new(key.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default()))
        .await
        .unwrap();
    assert!(pipeline.run_until_settled(std::slice::from_ref(&key), Duration::from_secs(30)).await.unwrap());
    drain(&pipeline).await;
    (pipeline, key, xdr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_are_told_on_slack_teams_and_email_with_retries_visible_on_the_action() {
    // Approvers do not sign in here: the link alone decides, so the shared Slack and Teams
    // channels are told without it and the e-mail carries it to the approver alone.
    let slack = FakeServer::start().await;
    // The first notice about the isolation fails; everything else is delivered.
    let failed_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    slack.on(
        "POST",
        "/hook",
        Reply::dynamic(move |r| {
            if r.body.contains("Isolate endpoint") && !failed_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                Reply::json(500, "{}")
            } else {
                Reply::json(200, "ok")
            }
        }),
    );
    dossier_tests::vendors::slack_webhook(&slack, "/hook");
    let teams = FakeServer::start().await;
    dossier_tests::vendors::teams_workflow(&teams, "/workflow");
    teams.on("POST", "/workflow", Reply::json(400, r#"{"error": "bad card"}"#));
    let ses = FakeServer::start().await;
    dossier_tests::vendors::ses(&ses);
    ses.on("POST", "/v2/email/outbound-emails", Reply::json(200, r#"{"MessageId": "m-1"}"#));
    let sdk = dossier_adapters::aws::sdk_config_for(&ses.url()).await;
    let notifiers: Vec<Arc<dyn dossier_core::ports::Notifier>> = vec![
        Arc::new(dossier_adapters::notify::SlackWebhook::new(format!("{}/hook", slack.url()), Duration::from_secs(5))),
        Arc::new(dossier_adapters::notify::TeamsWebhook::new(format!("{}/workflow", teams.url()), Duration::from_secs(5))),
        Arc::new(dossier_adapters::notify::SesEmail::new(aws_sdk_sesv2::Client::new(&sdk), "dossier@corp.example".into())),
    ];
    let config =
        PipelineConfig { approvers: vec!["soc@corp.example".into(), "ciso@corp.example:critical".into()], ..PipelineConfig::default() };
    let (pipeline, key, _) = notified_case(config, notifiers).await;
    let isolate = pipeline.actions(&key).await.unwrap().into_iter().find(|a| a.kind == ActionKind::IsolateEndpoint).unwrap();
    // Routing: a high-severity case goes to the SOC approver only (the CISO asked for critical).
    assert_eq!(isolate.links.iter().map(|l| l.approver.as_str()).collect::<Vec<_>>(), vec!["soc@corp.example"]);
    // Slack failed once: the retry comes back later; deliver it now.
    pipeline
        .backend
        .queue
        .send(
            &QueueName::writeback(),
            &Message::Notify { case: key.clone(), action_id: isolate.id.clone(), attempt: 2 }.to_body(),
            Duration::ZERO,
        )
        .await
        .unwrap();
    drain(&pipeline).await;
    let action = pipeline.action(&key, &isolate.id).await.unwrap().unwrap();
    let status = |ch: &str| action.notifications.iter().find(|n| n.channel == ch).map(|n| (n.delivered, n.detail.clone()));
    assert_eq!(status("slack").map(|s| s.0), Some(true));
    assert_eq!(status("email").map(|s| s.0), Some(true));
    let teams_status = status("teams").unwrap();
    assert!(!teams_status.0 && teams_status.1.contains("HTTP 400"), "{teams_status:?}");
    // No link reached a shared channel; the e-mail took it to the approver through SES.
    let token = isolate.links[0].url.split("t=").nth(1).unwrap();
    for r in slack.requests().iter().chain(teams.requests().iter()) {
        assert!(!r.body.contains(token) && !r.body.contains("/approve?t="), "a link in a shared channel: {}", r.body);
    }
    let card = slack.requests().last().unwrap().json();
    assert_eq!(card["blocks"].as_array().unwrap().len(), 2, "no button: {card}");
    assert!(card["blocks"][1]["elements"][0]["text"].as_str().unwrap().contains("each received their own link personally"));
    // Notices go out side by side: find the isolation's e-mail among the actions' ones.
    let mail = ses
        .requests()
        .iter()
        .map(|r| r.json())
        .find(|m| m["Content"]["Simple"]["Body"]["Html"]["Data"].as_str().is_some_and(|h| h.contains(token)))
        .expect("the isolation's link went by e-mail");
    assert_eq!(mail["Destination"]["ToAddresses"][0], "soc@corp.example");
    let for_isolate = slack.requests().iter().filter(|r| r.body.contains("Isolate endpoint")).count();
    assert_eq!(for_isolate, 2, "one failure, one delivery, no duplicate");
    let proposed = pipeline.actions(&key).await.unwrap().iter().filter(|a| a.status == ActionStatus::Proposed).count();
    assert_eq!(ses.requests().len(), proposed, "one e-mail per action waiting for the approver");
}

/// Slack's Web API as documented: Bearer bot token, `users.lookupByEmail` (GET, `email`),
/// `chat.postMessage` (JSON with `channel`); refusals are HTTP 200 with `ok: false`, rate limits
/// HTTP 429 with `Retry-After` (https://api.slack.com/methods/users.lookupByEmail,
/// https://api.slack.com/methods/chat.postMessage, https://api.slack.com/apis/rate-limits).
fn strict_slack(server: &FakeServer) {
    const TOKEN: &str = "Bearer xoxb-test-token";
    let users = |email: &str| match email {
        "soc@corp.example" => Some("U0SOC"),
        "ciso@corp.example" => Some("U0CISO"),
        _ => None,
    };
    server.on(
        "GET",
        "/api/users.lookupByEmail",
        Reply::dynamic(move |r| {
            if r.header("authorization") != Some(TOKEN) {
                return Reply::json(200, r#"{"ok": false, "error": "invalid_auth"}"#);
            }
            let q: std::collections::HashMap<String, String> = form_urlencoded::parse(r.query.as_bytes()).into_owned().collect();
            match q.get("email").and_then(|e| users(e)) {
                Some(id) => Reply::json(200, serde_json::json!({"ok": true, "user": {"id": id, "team_id": "T0"}}).to_string()),
                None => Reply::json(200, r#"{"ok": false, "error": "users_not_found"}"#),
            }
        }),
    );
    server.on(
        "POST",
        "/api/chat.postMessage",
        Reply::dynamic(|r| {
            if r.header("authorization") != Some(TOKEN) {
                return Reply::json(200, r#"{"ok": false, "error": "not_authed"}"#);
            }
            if !r.header("content-type").is_some_and(|c| c.starts_with("application/json")) {
                return Reply::json(200, r#"{"ok": false, "error": "invalid_form_data"}"#);
            }
            let body = r.json();
            match body["channel"].as_str() {
                Some(c) if c.starts_with("U0") && (body["text"].is_string() || body["blocks"].is_array()) => {
                    Reply::json(200, serde_json::json!({"ok": true, "channel": format!("D{c}"), "ts": "1.0"}).to_string())
                }
                Some(_) => Reply::json(200, r#"{"ok": false, "error": "channel_not_found"}"#),
                None => Reply::json(200, r#"{"ok": false, "error": "no_text"}"#),
            }
        }),
    );
}

fn notice(approver: &str) -> dossier_core::ports::ApprovalNotice {
    dossier_core::ports::ApprovalNotice {
        case: CaseKey::new("default", "4711").unwrap(),
        title: "PowerShell stager <@channel>".into(),
        severity: dossier_core::domain::Severity::High,
        action: "Isolate endpoint".into(),
        target: "WS-0042".into(),
        rationale: "beacon to 203.0.113.7".into(),
        approver: approver.into(),
        url: Some("https://approvals.example.com/approve?t=k.abc.def".into()),
        expires_at_ms: 1_800_000_000_000,
    }
}

#[tokio::test]
async fn slack_direct_messages_reach_the_approver_alone_and_say_why_not() {
    use dossier_core::ports::{Notifier, NotifyError};
    let slack = FakeServer::start().await;
    strict_slack(&slack);
    let api = format!("{}/api", slack.url());
    let dm = dossier_adapters::notify::SlackDirect::new(&api, "xoxb-test-token".into(), Duration::from_secs(5));
    assert!(dm.personal());
    dm.notify(&notice("soc@corp.example")).await.unwrap();
    let sent = slack.requests_to("/api/chat.postMessage");
    assert_eq!(sent.len(), 1);
    let m = sent[0].json();
    assert_eq!(m["channel"], "U0SOC", "a direct message to the approver's own user");
    assert_eq!(m["blocks"][2]["elements"][0]["url"], "https://approvals.example.com/approve?t=k.abc.def");
    assert!(!m.to_string().contains("<@channel>"), "mentions in alert text are escaped: {m}");
    // Unknown approver, wrong token: refused with Slack's reason, nothing posted.
    assert_eq!(dm.notify(&notice("nobody@corp.example")).await, Err(NotifyError::Refused("users_not_found".into())));
    let wrong = dossier_adapters::notify::SlackDirect::new(&api, "xoxb-stolen".into(), Duration::from_secs(5));
    assert_eq!(wrong.notify(&notice("soc@corp.example")).await, Err(NotifyError::Refused("invalid_auth".into())));
    assert_eq!(slack.requests_to("/api/chat.postMessage").len(), 1);
    // Rate limited and down: try again later.
    slack.once(
        "GET",
        "/api/users.lookupByEmail",
        Reply::json(429, r#"{"ok": false, "error": "ratelimited"}"#).with_header("retry-after", "3"),
    );
    assert!(matches!(dm.notify(&notice("soc@corp.example")).await, Err(NotifyError::Retryable(_))));
    slack.once("POST", "/api/chat.postMessage", Reply::json(503, "upstream"));
    assert!(matches!(dm.notify(&notice("soc@corp.example")).await, Err(NotifyError::Retryable(_))));
    slack.once("POST", "/api/chat.postMessage", Reply::json(200, "<html>not json</html>"));
    assert!(matches!(dm.notify(&notice("soc@corp.example")).await, Err(NotifyError::Retryable(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_approver_sign_in_shared_channels_carry_the_links_and_dms_still_do() {
    let slack = FakeServer::start().await;
    slack.on("POST", "/hook", Reply::json(200, "ok"));
    let api = FakeServer::start().await;
    strict_slack(&api);
    let notifiers: Vec<Arc<dyn dossier_core::ports::Notifier>> = vec![
        Arc::new(dossier_adapters::notify::SlackWebhook::new(format!("{}/hook", slack.url()), Duration::from_secs(5))),
        Arc::new(dossier_adapters::notify::SlackDirect::new(
            &format!("{}/api", api.url()),
            "xoxb-test-token".into(),
            Duration::from_secs(5),
        )),
    ];
    let config = PipelineConfig { approvers: vec!["soc@corp.example".into()], approver_signin: true, ..PipelineConfig::default() };
    let (pipeline, key, _) = notified_case(config, notifiers).await;
    let isolate = pipeline.actions(&key).await.unwrap().into_iter().find(|a| a.kind == ActionKind::IsolateEndpoint).unwrap();
    let url = &isolate.links[0].url;
    assert!(slack.requests().iter().any(|r| r.json()["blocks"][2]["elements"][0]["url"] == *url), "the channel gets the link");
    assert!(api.requests_to("/api/chat.postMessage").iter().any(|r| r.json()["blocks"][2]["elements"][0]["url"] == *url));
    let action = pipeline.action(&key, &isolate.id).await.unwrap().unwrap();
    assert!(action.notifications.iter().all(|n| n.delivered && n.approver == "soc@corp.example"), "{:?}", action.notifications);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_shared_channels_only_and_no_sign_in_no_link_leaves_and_the_action_says_why() {
    let slack = FakeServer::start().await;
    slack.on("POST", "/hook", Reply::json(200, "ok"));
    let notifiers: Vec<Arc<dyn dossier_core::ports::Notifier>> =
        vec![Arc::new(dossier_adapters::notify::SlackWebhook::new(format!("{}/hook", slack.url()), Duration::from_secs(5)))];
    let (pipeline, key, _) = notified_case(PipelineConfig::default(), notifiers).await;
    let isolate = pipeline.actions(&key).await.unwrap().into_iter().find(|a| a.kind == ActionKind::IsolateEndpoint).unwrap();
    assert!(slack.requests().iter().all(|r| !r.body.contains("/approve?t=")), "a link in the shared channel");
    let why = isolate.notifications.iter().find(|n| n.channel == "none").expect("the undelivered link is recorded");
    assert!(!why.delivered && why.detail.contains("only shared channels"), "{why:?}");
}
