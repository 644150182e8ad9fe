//! Approvers sign in with OpenID Connect before they decide: authorization code with PKCE
//! (RFC 7636, S256) against any provider (Entra ID, Okta, Cognito, Google), the ID token verified
//! here against the issuer's JWKS, and its `email` / `preferred_username` compared with the
//! approver the link names. A link alone then proves nothing: it only says whose decision is
//! wanted.
//!
//! Stateless, as a Lambda must be: the pending sign-in (state, nonce, PKCE verifier, the link)
//! and the signed-in approver travel in `__Host-` cookies sealed with the link keys under their
//! own purposes (`LinkSigner::seal`), HttpOnly, Secure, SameSite=Lax.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::http::HttpRequest;
use crate::ports::{OidcError, OidcProvider, ProviderMetadata};
use crate::random::{new_nonce, new_secret};
use crate::signing::LinkSigner;

pub const SIGNIN_COOKIE: &str = "__Host-dossier-signin";
pub const SESSION_COOKIE: &str = "__Host-dossier-approver";
/// Time to complete a sign-in at the provider.
const SIGNIN_TTL_S: i64 = 600;
/// How long a signed-in approver may decide without signing in again.
const SESSION_TTL_S: i64 = 900;
/// Clock skew tolerated between the provider and this function.
const SKEW_S: i64 = 120;

/// The provider and this application's registration with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcSettings {
    /// Exactly as the provider's discovery document and tokens say it (`iss`).
    pub issuer: String,
    pub client_id: String,
    /// `<public base URL>/approve/callback`, registered with the provider.
    pub redirect_uri: String,
}

/// A sign-in in progress, in its cookie.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    /// The approval link the approver opened: where to return once signed in.
    link: String,
    exp: i64,
}

/// A signed-in approver, in the session cookie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedIn {
    pub issuer: String,
    /// The provider's stable id for the person.
    pub subject: String,
    /// The names the provider vouched for (`email`, `preferred_username`), as sent.
    pub names: Vec<String>,
    pub exp: i64,
}

impl SignedIn {
    /// Whether this person is the approver a link names.
    pub fn is(&self, approver: &str) -> bool {
        self.names.iter().any(|n| n.trim().eq_ignore_ascii_case(approver.trim()))
    }

    /// How the decision was proven, for the audit trail.
    pub fn proof(&self) -> String {
        format!("oidc {} sub {}", self.issuer, self.subject)
    }

    pub fn shown_as(&self) -> String {
        self.names.first().cloned().unwrap_or_else(|| self.subject.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    #[error("this sign-in was not started here, or took longer than ten minutes")]
    NotStarted,
    #[error("the answer does not belong to the sign-in started in this browser")]
    StateMismatch,
    #[error("the sign-in provider reported `{0}`")]
    ProviderSaid(String),
    #[error(transparent)]
    Provider(#[from] OidcError),
    #[error("the ID token was refused: {0}")]
    BadToken(String),
    #[error("the provider's discovery document names issuer `{found}`, not the configured `{configured}`")]
    WrongIssuer { found: String, configured: String },
    #[error("the operating system gave no randomness for the sign-in")]
    NoRandomness,
}

impl SignInError {
    /// Worth trying again in a minute (the provider was down), as opposed to refused.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SignInError::Provider(OidcError::Unavailable(_)))
    }
}

pub struct SignIn {
    settings: OidcSettings,
    provider: Arc<dyn OidcProvider>,
    signer: Arc<LinkSigner>,
}

impl SignIn {
    pub fn new(settings: OidcSettings, provider: Arc<dyn OidcProvider>, signer: Arc<LinkSigner>) -> SignIn {
        SignIn { settings, provider, signer }
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    async fn metadata(&self) -> Result<ProviderMetadata, SignInError> {
        let md = self.provider.metadata().await?;
        // OpenID Connect Discovery §4.3: the document must name the issuer it was fetched for.
        if md.issuer != self.settings.issuer {
            return Err(SignInError::WrongIssuer { found: md.issuer, configured: self.settings.issuer.clone() });
        }
        Ok(md)
    }

    /// Starts a sign-in for the approver a link names: where to send the browser, and the cookie
    /// that remembers this sign-in.
    pub async fn start(&self, link: &str, login_hint: &str, now_s: i64) -> Result<(String, String), SignInError> {
        let md = self.metadata().await?;
        let verifier = new_secret().map_err(|_| SignInError::NoRandomness)?;
        let state = new_secret().map_err(|_| SignInError::NoRandomness)?;
        let pending = Pending { state, nonce: new_nonce(), verifier, link: link.to_string(), exp: now_s + SIGNIN_TTL_S };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.settings.redirect_uri)
            .append_pair("scope", "openid email profile")
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("login_hint", login_hint)
            .finish();
        let sep = if md.authorization_endpoint.contains('?') { '&' } else { '?' };
        let location = format!("{}{sep}{query}", md.authorization_endpoint);
        let cookie = set_cookie(SIGNIN_COOKIE, &self.signer.seal(SIGNIN_COOKIE, &pending), SIGNIN_TTL_S);
        Ok((location, cookie))
    }

    /// Completes the sign-in the provider redirected back with: the person and the link they
    /// opened. Only a browser holding the matching sign-in cookie gets here.
    pub async fn finish(&self, req: &HttpRequest, now_s: i64) -> Result<(SignedIn, String), SignInError> {
        if let Some(error) = req.query_param("error") {
            return Err(SignInError::ProviderSaid(crate::text::clean_text(error, 80)));
        }
        let pending: Pending = cookie(req, SIGNIN_COOKIE)
            .and_then(|c| self.signer.open(SIGNIN_COOKIE, c).ok())
            .filter(|p: &Pending| p.exp > now_s)
            .ok_or(SignInError::NotStarted)?;
        let state = req.query_param("state").unwrap_or_default();
        if !constant_time_eq(state.as_bytes(), pending.state.as_bytes()) {
            return Err(SignInError::StateMismatch);
        }
        let code = req.query_param("code").filter(|c| !c.is_empty()).ok_or(SignInError::ProviderSaid("no code".into()))?;
        let md = self.metadata().await?;
        let id_token = self.provider.redeem(code, &pending.verifier, &self.settings.redirect_uri).await?;
        let who = match verify_id_token(&id_token, &self.provider.keys(false).await?, &md.issuer, &self.settings, &pending.nonce, now_s) {
            // A key id not published yet: the provider rotated its keys since the cache filled.
            Err(KeyMissing::Kid) => {
                verify_id_token(&id_token, &self.provider.keys(true).await?, &md.issuer, &self.settings, &pending.nonce, now_s)
            }
            other => other,
        }
        .map_err(|e| match e {
            KeyMissing::Kid => SignInError::BadToken("signed with a key the provider does not publish".into()),
            KeyMissing::Refused(why) => SignInError::BadToken(why),
        })?;
        Ok((SignedIn { exp: now_s + SESSION_TTL_S, ..who }, pending.link))
    }

    /// The session cookie for a signed-in approver.
    pub fn session_cookie(&self, who: &SignedIn) -> String {
        set_cookie(SESSION_COOKIE, &self.signer.seal(SESSION_COOKIE, who), SESSION_TTL_S)
    }

    /// The approver this browser signed in as, if the session is intact and current.
    pub fn current(&self, req: &HttpRequest, now_s: i64) -> Option<SignedIn> {
        let who: SignedIn = self.signer.open(SESSION_COOKIE, cookie(req, SESSION_COOKIE)?).ok()?;
        (who.exp > now_s && who.issuer == self.settings.issuer).then_some(who)
    }
}

/// Ends the pending sign-in in the browser.
pub fn clear_signin_cookie() -> String {
    format!("{SIGNIN_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

fn set_cookie(name: &str, value: &str, max_age_s: i64) -> String {
    // `__Host-`: Secure, Path=/ and no Domain, so no sibling host can set or read it.
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age_s}")
}

/// A cookie's value from the `Cookie` header.
fn cookie<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a token did not verify: its key is missing (refresh the keys once), or it is refused.
#[derive(Debug)]
enum KeyMissing {
    Kid,
    Refused(String),
}

#[derive(Deserialize)]
struct IdClaims {
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    aud: serde_json::Value,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
    #[serde(default)]
    preferred_username: Option<String>,
}

/// Verifies an ID token as OpenID Connect Core §3.1.3.7 asks: an asymmetric signature by a key
/// the issuer publishes, `iss`, `aud` (and `azp` when there are several audiences), `exp` / `nbf`
/// / `iat` against this clock, and the nonce of this sign-in.
fn verify_id_token(
    token: &str,
    jwks: &str,
    issuer: &str,
    settings: &OidcSettings,
    nonce: &str,
    now_s: i64,
) -> Result<SignedIn, KeyMissing> {
    let refuse = |why: &str| KeyMissing::Refused(why.to_string());
    let header = jsonwebtoken::decode_header(token).map_err(|e| KeyMissing::Refused(format!("unreadable header: {e}")))?;
    // Never `none` or a shared-secret MAC: an attacker who knows the client id would sign with it.
    let asymmetric = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];
    if !asymmetric.contains(&header.alg) {
        return Err(refuse("not signed with a public-key algorithm"));
    }
    let kid = header.kid.as_deref().ok_or_else(|| refuse("no key id"))?;
    let keys: JwkSet = serde_json::from_str(jwks).map_err(|e| KeyMissing::Refused(format!("unreadable JWKS: {e}")))?;
    let jwk = keys.find(kid).ok_or(KeyMissing::Kid)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyMissing::Refused(format!("unusable key {kid}: {e}")))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[&settings.client_id]);
    // Time is checked below against this function's clock, not the library's.
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["iss", "aud", "sub", "exp"]);
    let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &validation).map_err(|e| KeyMissing::Refused(format!("{e}")))?.claims;
    if claims.exp + SKEW_S <= now_s {
        return Err(refuse("expired"));
    }
    if claims.nbf.is_some_and(|t| t > now_s + SKEW_S) || claims.iat.is_some_and(|t| t > now_s + SKEW_S) {
        return Err(refuse("issued in the future"));
    }
    if claims.nonce.as_deref().is_none_or(|n| !constant_time_eq(n.as_bytes(), nonce.as_bytes())) {
        return Err(refuse("nonce does not match this sign-in (a replayed token)"));
    }
    if claims.aud.as_array().is_some_and(|a| a.len() > 1) && claims.azp.as_deref() != Some(settings.client_id.as_str()) {
        return Err(refuse("issued to another client (azp)"));
    }
    let verified = |v: &Option<serde_json::Value>| match v {
        Some(serde_json::Value::Bool(b)) => *b,
        // Some providers (Cognito) send "true" / "false" as strings.
        Some(serde_json::Value::String(s)) => s != "false",
        _ => true,
    };
    let mut names = Vec::new();
    if let Some(email) = claims.email.filter(|_| verified(&claims.email_verified)) {
        names.push(email);
    }
    if let Some(user) = claims.preferred_username {
        names.push(user);
    }
    if names.is_empty() {
        return Err(refuse("names no verified e-mail or username"));
    }
    Ok(SignedIn { issuer: issuer.to_string(), subject: claims.sub, names, exp: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_from_any_cookie_header() {
        let req = HttpRequest {
            headers: vec![("cookie".into(), "a=1; __Host-dossier-approver=xyz".into()), ("cookie".into(), "b=2".into())],
            ..HttpRequest::default()
        };
        assert_eq!(cookie(&req, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&req, "b"), Some("2"));
        assert_eq!(cookie(&req, SIGNIN_COOKIE), None);
    }

    #[test]
    fn a_signed_in_person_is_only_the_approver_they_were_vouched_as() {
        let who = SignedIn {
            issuer: "https://idp".into(),
            subject: "00u1".into(),
            names: vec!["Lead@Corp.example".into(), "lead".into()],
            exp: 10,
        };
        assert!(who.is("lead@corp.example"));
        assert!(who.is("lead"));
        assert!(!who.is("ciso@corp.example"));
        assert!(!who.is("lead@corp.example.evil"));
    }

    #[test]
    fn unsigned_and_shared_secret_tokens_are_refused() {
        let settings = OidcSettings { issuer: "https://idp".into(), client_id: "c".into(), redirect_uri: "https://x/cb".into() };
        let claims = serde_json::json!({"iss": "https://idp", "aud": "c", "sub": "s", "exp": 2_000_000_000, "nonce": "n", "email": "a@b"});
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header { kid: Some("k".into()), ..jsonwebtoken::Header::new(Algorithm::HS256) },
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"c"),
        )
        .unwrap();
        let jwks = r#"{"keys":[{"kty":"oct","kid":"k","k":"Yw"}]}"#;
        assert!(matches!(verify_id_token(&hs, jwks, "https://idp", &settings, "n", 0), Err(KeyMissing::Refused(_))));
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k"}"#), URL_SAFE_NO_PAD.encode(claims.to_string()));
        assert!(verify_id_token(&none, jwks, "https://idp", &settings, "n", 0).is_err());
    }
}
