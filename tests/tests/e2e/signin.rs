//! Approvers sign in before they decide (OpenID Connect, authorization code + PKCE), against a
//! fake provider that behaves as the specifications say: discovery, an authorization request it
//! checks (S256 challenge, registered redirect URI, `openid` scope), a token endpoint that
//! authenticates the client (`client_secret_basic`), redeems a code once and only with the
//! verifier of its challenge, and RS256 ID tokens under a published JWKS
//! (OpenID Connect Core 1.0 §3.1; RFC 6749 §4.1; RFC 7636 §4.6).
//!
//! Every try to decide as someone else, with a forged, foreign, stale or replayed token, or
//! without the browser that started the sign-in, must leave the action undecided.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use dossier_adapters::oidc::HttpOidcProvider;
use dossier_core::config::PipelineConfig;
use dossier_core::domain::{ActionKind, ActionStatus, CaseKey};
use dossier_core::embedded::RecordingXdr;
use dossier_core::http::{HttpRequest, HttpResponse};
use dossier_core::ports::{Clock, SystemClock};
use dossier_core::signin::{OidcSettings, SignIn};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, IntelFeed, PerIndicator, Source};
use dossier_core::stages::HttpHandler;
use dossier_core::xdr::{sign_body, WebhookSecrets};
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};
use dossier_tests::{fixture, FakeServer, Recorded, Reply};
use sha2::{Digest, Sha256};

const DEMO: &str = include_str!("../../../infra/local/samples/xdr/demo_powershell_stager.json");
const FEED: &str = include_str!("../../../infra/local/samples/intel-feed.csv");
const SECRET: &str = "acme-webhook-secret-0001";
const CLIENT_ID: &str = "dossier-approvals";
const CLIENT_SECRET: &str = "s3cret&with:odd=chars";
const BASE: &str = "https://approvals.example.com";
const APPROVER: &str = "soc-approver@example.com";

/// How the fake provider spoils the next ID tokens (an attacker's or a broken provider's).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Spoil {
    Nothing,
    SignedWithAnotherKey,
    ForAnotherClient,
    FromAnotherIssuer,
    Expired,
    AnotherSignInsNonce,
    UnverifiedEmailOnly,
}

struct Grant {
    challenge: String,
    redirect_uri: String,
    nonce: String,
    email: String,
}

struct FakeIdp {
    server: FakeServer,
    grants: Arc<Mutex<HashMap<String, Grant>>>,
    spoil: Arc<Mutex<Spoil>>,
}

fn oauth_error(status: u16, code: &str) -> Reply {
    Reply::json(status, serde_json::json!({"error": code}).to_string())
}

fn form_of(body: &str) -> HashMap<String, String> {
    form_urlencoded::parse(body.as_bytes()).into_owned().collect()
}

impl FakeIdp {
    async fn start() -> FakeIdp {
        let server = FakeServer::start().await;
        let issuer = server.url();
        let grants: Arc<Mutex<HashMap<String, Grant>>> = Arc::default();
        let spoil = Arc::new(Mutex::new(Spoil::Nothing));
        server.on(
            "GET",
            "/.well-known/openid-configuration",
            Reply::json(
                200,
                serde_json::json!({
                    "issuer": issuer,
                    "authorization_endpoint": format!("{issuer}/authorize"),
                    "token_endpoint": format!("{issuer}/token"),
                    "jwks_uri": format!("{issuer}/keys"),
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                    "id_token_signing_alg_values_supported": ["RS256"]
                })
                .to_string(),
            ),
        );
        server.on("GET", "/keys", Reply::json(200, fixture("oidc/jwks.json")));
        let (g, s, iss) = (grants.clone(), spoil.clone(), issuer.clone());
        server.on("POST", "/token", Reply::dynamic(move |r| token(r, &g, *s.lock().unwrap(), &iss)));
        FakeIdp { server, grants, spoil }
    }

    fn spoil(&self, how: Spoil) {
        *self.spoil.lock().unwrap() = how;
    }

    /// The person signs in at the provider: it checks the authorization request the browser was
    /// sent with, and answers the redirect back with a one-time code.
    fn sign_in_as(&self, authorize: &str, email: &str) -> HttpRequest {
        let url = authorize.strip_prefix(&format!("{}/authorize?", self.server.url())).expect("sent to the provider's endpoint");
        let q = form_of(url);
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], CLIENT_ID);
        assert_eq!(q["redirect_uri"], format!("{BASE}/approve/callback"), "the registered redirect URI");
        assert!(q["scope"].split(' ').any(|s| s == "openid"));
        assert_eq!(q["code_challenge_method"], "S256", "PKCE with S256, never plain");
        assert_eq!(URL_SAFE_NO_PAD.decode(&q["code_challenge"]).unwrap().len(), 32);
        assert!(q["state"].len() >= 32 && !q["nonce"].is_empty());
        let code = format!("code-{}", self.grants.lock().unwrap().len() + 1);
        self.grants.lock().unwrap().insert(
            code.clone(),
            Grant {
                challenge: q["code_challenge"].clone(),
                redirect_uri: q["redirect_uri"].clone(),
                nonce: q["nonce"].clone(),
                email: email.into(),
            },
        );
        callback(&format!("code={code}&state={}", q["state"]))
    }
}

/// The token endpoint (RFC 6749 §4.1.3, §5.2; RFC 7636 §4.6).
fn token(r: &Recorded, grants: &Mutex<HashMap<String, Grant>>, spoil: Spoil, issuer: &str) -> Reply {
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{}", form_urlencoded::byte_serialize(CLIENT_SECRET.as_bytes()).collect::<String>()))
    );
    if r.header("authorization") != Some(basic.as_str()) {
        return oauth_error(401, "invalid_client");
    }
    if !r.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) {
        return oauth_error(400, "invalid_request");
    }
    let f = form_of(&r.body);
    if f.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return oauth_error(400, "unsupported_grant_type");
    }
    // A code is good once.
    let Some(grant) = f.get("code").and_then(|c| grants.lock().unwrap().remove(c)) else { return oauth_error(400, "invalid_grant") };
    if f.get("redirect_uri") != Some(&grant.redirect_uri) {
        return oauth_error(400, "invalid_grant");
    }
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != grant.challenge {
        return oauth_error(400, "invalid_grant");
    }
    let now = SystemClock.now_ms() / 1000;
    let mut claims = serde_json::json!({
        "iss": issuer, "aud": CLIENT_ID, "sub": format!("sub-{}", grant.email), "iat": now, "exp": now + 300,
        "nonce": grant.nonce, "email": grant.email, "email_verified": true, "name": "Approver",
    });
    let mut key = "oidc/signing-key.pem";
    match spoil {
        Spoil::Nothing => {}
        Spoil::SignedWithAnotherKey => key = "oidc/other-key.pem",
        Spoil::ForAnotherClient => claims["aud"] = "another-app".into(),
        Spoil::FromAnotherIssuer => claims["iss"] = "https://evil.example.net".into(),
        Spoil::Expired => claims["exp"] = (now - 3600).into(),
        Spoil::AnotherSignInsNonce => claims["nonce"] = "a-nonce-from-another-sign-in".into(),
        Spoil::UnverifiedEmailOnly => claims["email_verified"] = false.into(),
    }
    let header = jsonwebtoken::Header { kid: Some("test-key-1".into()), ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256) };
    let pem = fixture(key);
    let id_token = jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()).unwrap();
    Reply::json(200, serde_json::json!({"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": id_token}).to_string())
}

fn callback(query: &str) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        path: "/approve/callback".into(),
        query: form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
        ..Default::default()
    }
}

fn pipeline(idp: Option<&FakeIdp>) -> (LocalPipeline, Arc<LinkSigner>) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sources: Vec<Arc<dyn Source>> = vec![Arc::new(AttackSource), Arc::new(PerIndicator::new(IntelFeed::from_csv(FEED).unwrap()))];
    let signer = Arc::new(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![5; 32] }]).unwrap());
    let p = LocalPipeline::new(PipelineParts {
        backend: Backend::embedded(clock.clone()),
        config: PipelineConfig { public_base_url: BASE.into(), ..PipelineConfig::default() },
        clock,
        xdr: Arc::new(RecordingXdr::serving(DEMO.to_string())),
        sources,
        signer: signer.clone(),
        webhook_secrets: WebhookSecrets::single("acme", SECRET.as_bytes()).unwrap(),
        model: None,
        identity: None,
        notifiers: Vec::new(),
    });
    let p = match idp {
        Some(idp) => {
            let settings =
                OidcSettings { issuer: idp.server.url(), client_id: CLIENT_ID.into(), redirect_uri: format!("{BASE}/approve/callback") };
            let provider =
                HttpOidcProvider::new(&idp.server.url(), CLIENT_ID, Some(CLIENT_SECRET.into()), std::time::Duration::from_secs(5));
            p.with_signin(SignIn::new(settings, Arc::new(provider), signer.clone()))
        }
        None => p,
    };
    (p, signer)
}

/// A case with an isolation proposal for the approver; its link token.
async fn proposal(p: &LocalPipeline) -> (CaseKey, String, String) {
    let body = r#"{"incident_id": "4711", "severity": "high", "status": "new"}"#;
    let t = SystemClock.now_ms() / 1000;
    let sig = sign_body(SECRET.as_bytes(), t, body.as_bytes());
    let req = HttpRequest {
        method: "POST".into(),
        path: "/webhook".into(),
        headers: vec![("x-dossier-signature".into(), format!("t={t},v1={sig}"))],
        body: body.as_bytes().to_vec(),
        ..Default::default()
    };
    assert_eq!(p.intake.handle(&req).await.status, 202);
    let key = CaseKey::new("acme", "4711").unwrap();
    assert!(p.run_until_settled(std::slice::from_ref(&key), std::time::Duration::from_secs(60)).await.unwrap());
    let a = p.actions(&key).await.unwrap().into_iter().find(|a| a.kind == ActionKind::IsolateEndpoint).expect("an isolation proposal");
    assert_eq!(a.links[0].approver, APPROVER);
    let token = a.links[0].url.split("t=").nth(1).unwrap().to_string();
    (key, a.id, token)
}

fn header<'a>(r: &'a HttpResponse, name: &str) -> Option<&'a str> {
    r.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The `name=value` part of each Set-Cookie, as a browser would send it back.
fn cookies(r: &HttpResponse) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
        .filter(|c| !c.ends_with('='))
        .collect()
}

fn with_cookies(mut req: HttpRequest, jar: &[String]) -> HttpRequest {
    if !jar.is_empty() {
        req.headers.push(("cookie".into(), jar.join("; ")));
    }
    req
}

fn open(token: &str) -> HttpRequest {
    HttpRequest { method: "GET".into(), path: "/approve".into(), query: vec![("t".into(), token.into())], ..Default::default() }
}

fn decide(token: &str) -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        path: "/approve".into(),
        headers: vec![("content-type".into(), "application/x-www-form-urlencoded".into()), ("sec-fetch-site".into(), "same-origin".into())],
        body: format!("t={token}&decision=approve").into_bytes(),
        ..Default::default()
    }
}

/// Opens the link in a fresh browser: the sign-in cookie and where the provider is.
async fn start(p: &LocalPipeline, token: &str) -> (Vec<String>, String) {
    let r = p.approve.handle(&open(token)).await;
    assert_eq!(r.status, 302, "{}", r.body);
    let location = header(&r, "location").unwrap().to_string();
    let set = header(&r, "set-cookie").unwrap();
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attr), "{attr} missing from {set}");
    }
    assert!(set.starts_with("__Host-"), "{set}");
    (cookies(&r), location)
}

#[tokio::test]
async fn the_approver_named_in_the_link_signs_in_and_decides() {
    let idp = FakeIdp::start().await;
    let (p, _) = pipeline(Some(&idp));
    let (key, action, token) = proposal(&p).await;
    let (jar, location) = start(&p, &token).await;
    assert!(form_of(location.split_once('?').unwrap().1)["login_hint"] == APPROVER);
    let back = p.approve.handle(&with_cookies(idp.sign_in_as(&location, APPROVER), &jar)).await;
    assert_eq!(back.status, 303, "{}", back.body);
    assert_eq!(header(&back, "location"), Some(format!("{BASE}/approve?t={token}").as_str()));
    let session = cookies(&back);
    assert_eq!(session.len(), 1, "the session, and the sign-in cookie cleared");
    let page = p.approve.handle(&with_cookies(open(&token), &session)).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("You signed in as soc-approver@example.com"), "{}", page.body);
    let done = p.approve.handle(&with_cookies(decide(&token), &session)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let a = p.action(&key, &action).await.unwrap().unwrap();
    assert_ne!(a.status, ActionStatus::Proposed);
    let d = a.decision.unwrap();
    assert_eq!(d.approver, APPROVER);
    assert_eq!(d.proof.as_deref(), Some(format!("oidc {} sub sub-{APPROVER}", idp.server.url()).as_str()));
    // The client authenticated, and redeemed the code with its verifier.
    let redeemed = idp.server.requests_to("/token");
    assert_eq!(redeemed.len(), 1);
    assert!(form_of(&redeemed[0].body)["code_verifier"].len() >= 43);
}

#[tokio::test]
async fn without_a_sign_in_or_as_someone_else_nothing_is_decided() {
    let idp = FakeIdp::start().await;
    let (p, _) = pipeline(Some(&idp));
    let (key, action, token) = proposal(&p).await;
    // The link alone: no page to decide on, no decision.
    assert_eq!(p.approve.handle(&decide(&token)).await.status, 403);
    // Signed in as another member of the team.
    let (jar, location) = start(&p, &token).await;
    let other = p.approve.handle(&with_cookies(idp.sign_in_as(&location, "analyst@example.com"), &jar)).await;
    assert_eq!(other.status, 403);
    assert!(other.body.contains("analyst@example.com") && other.body.contains(APPROVER), "{}", other.body);
    assert!(cookies(&other).is_empty(), "no session for the wrong person");
    // A session that is someone else's (their own link, their own sign-in) does not carry over.
    let (jar, location) = start(&p, &token).await;
    let mine = p.approve.handle(&with_cookies(idp.sign_in_as(&location, APPROVER), &jar)).await;
    let session = cookies(&mine);
    let forged: Vec<String> = session.iter().map(|c| format!("{c}x")).collect();
    assert_eq!(p.approve.handle(&with_cookies(decide(&token), &forged)).await.status, 403, "a tampered session");
    let as_link: Vec<String> = vec![format!("__Host-dossier-approver={token}")];
    assert_eq!(p.approve.handle(&with_cookies(decide(&token), &as_link)).await.status, 403, "a link token as a session");
    assert_eq!(p.action(&key, &action).await.unwrap().unwrap().status, ActionStatus::Proposed);
}

#[tokio::test]
async fn forged_foreign_stale_or_replayed_sign_ins_decide_nothing() {
    let idp = FakeIdp::start().await;
    let (p, _) = pipeline(Some(&idp));
    let (key, action, token) = proposal(&p).await;
    for spoil in [
        Spoil::SignedWithAnotherKey,
        Spoil::ForAnotherClient,
        Spoil::FromAnotherIssuer,
        Spoil::Expired,
        Spoil::AnotherSignInsNonce,
        Spoil::UnverifiedEmailOnly,
    ] {
        idp.spoil(spoil);
        let (jar, location) = start(&p, &token).await;
        let r = p.approve.handle(&with_cookies(idp.sign_in_as(&location, APPROVER), &jar)).await;
        assert_eq!(r.status, 403, "{spoil:?}: {}", r.body);
        assert!(r.body.contains("ID token was refused"), "{spoil:?} refused for another reason: {}", r.body);
        assert!(cookies(&r).is_empty(), "{spoil:?} got a session");
    }
    idp.spoil(Spoil::Nothing);
    // The provider's answer replayed in another browser (no sign-in cookie), into another
    // sign-in (its state), or twice.
    let (jar_a, location_a) = start(&p, &token).await;
    let (jar_b, _) = start(&p, &token).await;
    let answer_a = idp.sign_in_as(&location_a, APPROVER);
    assert_eq!(p.approve.handle(&answer_a).await.status, 403, "no sign-in cookie");
    assert_eq!(p.approve.handle(&with_cookies(answer_a.clone(), &jar_b)).await.status, 403, "another sign-in's state");
    // Neither spent the code: the browser that started the sign-in completes it, once.
    assert_eq!(p.approve.handle(&with_cookies(answer_a.clone(), &jar_a)).await.status, 303);
    let again = p.approve.handle(&with_cookies(answer_a.clone(), &jar_a)).await;
    assert_eq!(again.status, 403, "a code is good once");
    assert!(cookies(&again).is_empty());
    // The provider says no.
    let denied = p.approve.handle(&with_cookies(callback("error=access_denied&state=x"), &jar_b)).await;
    assert_eq!(denied.status, 403);
    assert!(denied.body.contains("access_denied"));
    // Signing in decided nothing by itself.
    assert_eq!(p.action(&key, &action).await.unwrap().unwrap().status, ActionStatus::Proposed);
}

#[tokio::test]
async fn a_provider_that_is_down_changes_nothing_and_says_try_again() {
    let idp = FakeIdp::start().await;
    idp.server.once("GET", "/.well-known/openid-configuration", Reply::json(503, "{}"));
    let (p, _) = pipeline(Some(&idp));
    let (key, action, token) = proposal(&p).await;
    let r = p.approve.handle(&open(&token)).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(p.action(&key, &action).await.unwrap().unwrap().status, ActionStatus::Proposed);
    // It recovers on the next try.
    assert_eq!(p.approve.handle(&open(&token)).await.status, 302);
}

#[tokio::test]
async fn without_sign_in_the_page_says_what_the_link_alone_proves() {
    let (p, _) = pipeline(None);
    let (_, _, token) = proposal(&p).await;
    let page = p.approve.handle(&open(&token)).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("This link is the only proof of who decides"), "{}", page.body);
}
