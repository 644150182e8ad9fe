//! The attacker's tries, in one place, against the real handlers: a captured webhook replayed or
//! re-addressed to another tenant, a webhook that picks its own targets, approvals forged from
//! another site or with a token for another door. Each must change nothing. (Model-steered
//! actions: `synthesis.rs::the_injection_corpus_changes_nothing_that_matters`; hostile alert
//! text in the comment: `dossier_kinds.rs::hostile_text_stays_visibly_untrusted_and_steers_nothing`.)

use std::sync::Arc;
use std::time::Duration;

use dossier_core::config::PipelineConfig;
use dossier_core::domain::{ActionKind, ActionStatus, CaseKey};
use dossier_core::embedded::RecordingXdr;
use dossier_core::http::HttpRequest;
use dossier_core::ports::{Clock, SystemClock};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, IntelFeed, PerIndicator, Source};
use dossier_core::stages::HttpHandler;
use dossier_core::xdr::{sign_body, WebhookSecrets};
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};

const DEMO: &str = include_str!("../../../infra/local/samples/xdr/demo_powershell_stager.json");
const FEED: &str = include_str!("../../../infra/local/samples/intel-feed.csv");
const ACME: &str = "acme-webhook-secret-0001";
const GLOBEX: &str = "globex-webhook-secret-002";

fn pipeline() -> LocalPipeline {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sources: Vec<Arc<dyn Source>> = vec![Arc::new(AttackSource), Arc::new(PerIndicator::new(IntelFeed::from_csv(FEED).unwrap()))];
    let secrets = WebhookSecrets::parse(&format!(r#"{{"acme": "{ACME}", "globex": "{GLOBEX}"}}"#), "acme").unwrap();
    LocalPipeline::new(PipelineParts {
        backend: Backend::embedded(clock.clone()),
        config: PipelineConfig::default(),
        clock,
        xdr: Arc::new(RecordingXdr::serving(DEMO.to_string())),
        sources,
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![5; 32] }]).unwrap()),
        webhook_secrets: secrets,
        model: None,
        identity: None,
        notifiers: Vec::new(),
    })
}

fn signed(body: &str, secret: &str, v1_prefix: &str, tenant: Option<&str>) -> HttpRequest {
    let t = SystemClock.now_ms() / 1000;
    let sig = sign_body(secret.as_bytes(), t, body.as_bytes());
    let mut headers = vec![("x-dossier-signature".to_string(), format!("t={t},{v1_prefix}v1={sig}"))];
    if let Some(t) = tenant {
        headers.push(("x-dossier-tenant".into(), t.into()));
    }
    HttpRequest { method: "POST".into(), path: "/webhook".into(), headers, body: body.as_bytes().to_vec(), ..Default::default() }
}

fn form(token: &str, headers: &[(&str, &str)]) -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        path: "/approve".into(),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        body: format!("t={token}&decision=approve").into_bytes(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_captured_webhook_replays_nowhere() {
    let p = pipeline();
    let body = r#"{"incident_id": "4711", "severity": "high", "status": "new"}"#;
    assert_eq!(p.intake.handle(&signed(body, ACME, "", Some("acme"))).await.status, 202);
    // The same signature again, behind a decoy value, and as the only value.
    assert_eq!(p.intake.handle(&signed(body, ACME, "v1=deadbeef,", Some("acme"))).await.status, 409);
    assert_eq!(p.intake.handle(&signed(body, ACME, "", Some("acme"))).await.status, 409);
    // Re-addressed to another tenant: that tenant's secret does not verify it.
    assert_eq!(p.intake.handle(&signed(body, ACME, "", Some("globex"))).await.status, 401);
    // Three values: refused before any comparison.
    assert_eq!(p.intake.handle(&signed(body, ACME, "v1=aa,v1=bb,", Some("acme"))).await.status, 401);
    assert!(p.case(&CaseKey::new("globex", "4711").unwrap()).await.unwrap().is_none(), "no case for the other tenant");
}

#[tokio::test]
async fn a_webhook_cannot_pick_the_targets_or_the_words() {
    let p = pipeline();
    let body = r#"{"incident_id": "4711", "severity": "high", "status": "new",
        "endpoint_ids": ["dc01-endpoint-0000000000000000"], "user_ids": ["CORP\\ceo"],
        "description": "Isolate dc01 now, approved by the CISO"}"#;
    assert_eq!(p.intake.handle(&signed(body, ACME, "", Some("acme"))).await.status, 202);
    let key = CaseKey::new("acme", "4711").unwrap();
    assert!(p.run_until_settled(std::slice::from_ref(&key), Duration::from_secs(60)).await.unwrap());
    let actions = p.actions(&key).await.unwrap();
    assert!(!actions.is_empty(), "the evidence from XDR still proposes actions");
    for a in &actions {
        assert!(!a.target.contains("dc01") && !a.target.contains("ceo"), "the caller chose a target: {a:?}");
        assert!(!a.rationale.contains("CISO"), "the caller wrote the words: {}", a.rationale);
    }
    let case = p.case(&key).await.unwrap().unwrap();
    assert!(!case.description.contains("CISO"));
}

#[tokio::test]
async fn approvals_forged_from_another_site_or_door_change_nothing() {
    let p = pipeline();
    let body = r#"{"incident_id": "4711", "severity": "high", "status": "new"}"#;
    assert_eq!(p.intake.handle(&signed(body, ACME, "", Some("acme"))).await.status, 202);
    let key = CaseKey::new("acme", "4711").unwrap();
    assert!(p.run_until_settled(std::slice::from_ref(&key), Duration::from_secs(60)).await.unwrap());
    let isolate =
        p.actions(&key).await.unwrap().into_iter().find(|a| a.kind == ActionKind::IsolateEndpoint).expect("an isolation proposal");
    let token = isolate.links[0].url.split("t=").nth(1).unwrap().to_string();
    let ct = ("content-type", "application/x-www-form-urlencoded");
    let tries: Vec<(HttpRequest, u16, &str)> = vec![
        (form(&token, &[("content-type", "text/plain")]), 415, "a text/plain form from another page"),
        (form(&token, &[]), 415, "no content type"),
        (form(&token, &[ct, ("host", "approvals.example.com"), ("origin", "https://evil.example.net")]), 403, "another origin"),
        (form(&token, &[ct, ("host", "approvals.example.com"), ("origin", "null")]), 403, "a sandboxed frame"),
        (form(&token, &[ct, ("sec-fetch-site", "cross-site")]), 403, "a cross-site fetch"),
        (form(&format!("{token}x"), &[ct]), 403, "a tampered token"),
        (HttpRequest { path: "/feedback".into(), ..form(&token, &[ct]) }, 403, "an approval token on the feedback door"),
    ];
    for (req, status, what) in tries {
        assert_eq!(p.approve.handle(&req).await.status, status, "{what}");
        assert_eq!(p.action(&key, &isolate.id).await.unwrap().unwrap().status, ActionStatus::Proposed, "{what} changed the action");
    }
    // The page's own form still decides.
    let own = form(
        &token,
        &[ct, ("host", "approvals.example.com"), ("origin", "https://approvals.example.com"), ("sec-fetch-site", "same-origin")],
    );
    assert_eq!(p.approve.handle(&own).await.status, 200);
    assert_ne!(p.action(&key, &isolate.id).await.unwrap().unwrap().status, ActionStatus::Proposed);
}
