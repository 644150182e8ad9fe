//! The approvers' OpenID Connect provider over HTTPS: discovery (OpenID Connect Discovery 1.0
//! §4), the token endpoint (RFC 6749 §4.1.3 with the PKCE `code_verifier` of RFC 7636 §4.5,
//! client authentication `client_secret_basic`, or none for a public client) and the JWKS.
//! Discovery and keys are cached for an hour per container; a refresh of the keys (an unknown
//! key id) is allowed once a minute, so tokens with made-up key ids cannot hammer the provider.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use dossier_core::ports::{OidcError, OidcProvider, ProviderMetadata};

use crate::http_client::{exchange, Reply, Status};

const CACHE_FOR: Duration = Duration::from_secs(3600);
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(60);

pub struct HttpOidcProvider {
    http: reqwest::Client,
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    metadata: Mutex<Option<(ProviderMetadata, Instant)>>,
    keys: Mutex<Option<(String, Instant)>>,
}

impl HttpOidcProvider {
    pub fn new(issuer: &str, client_id: &str, client_secret: Option<String>, timeout: Duration) -> HttpOidcProvider {
        HttpOidcProvider {
            http: crate::http_client::client(timeout),
            issuer: issuer.to_string(),
            client_id: client_id.to_string(),
            client_secret: client_secret.filter(|s| !s.trim().is_empty()),
            metadata: Mutex::new(None),
            keys: Mutex::new(None),
        }
    }

    async fn get(&self, url: &str) -> Result<String, OidcError> {
        let reply =
            exchange(self.http.get(url).header("accept", "application/json")).await.map_err(|e| OidcError::Unavailable(e.to_string()))?;
        ok_body(reply)
    }
}

fn ok_body(reply: Reply) -> Result<String, OidcError> {
    match reply.status {
        Status::Success => Ok(reply.body),
        Status::RateLimited | Status::Server => Err(OidcError::Unavailable(format!("HTTP {} {}", reply.code, reply.short_body()))),
        _ => Err(OidcError::Refused(format!("HTTP {} {}", reply.code, reply.short_body()))),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl OidcProvider for HttpOidcProvider {
    async fn metadata(&self) -> Result<ProviderMetadata, OidcError> {
        if let Some((md, at)) = lock(&self.metadata).as_ref() {
            if at.elapsed() < CACHE_FOR {
                return Ok(md.clone());
            }
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
        let body = self.get(&url).await?;
        let md: ProviderMetadata = serde_json::from_str(&body).map_err(|e| OidcError::BadReply(format!("discovery document: {e}")))?;
        *lock(&self.metadata) = Some((md.clone(), Instant::now()));
        Ok(md)
    }

    async fn redeem(&self, code: &str, verifier: &str, redirect_uri: &str) -> Result<String, OidcError> {
        let md = self.metadata().await?;
        let mut form =
            vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri), ("code_verifier", verifier)];
        let mut req = self.http.post(&md.token_endpoint).header("accept", "application/json");
        match &self.client_secret {
            // RFC 6749 §2.3.1: both parts form-urlencoded before Basic encoding.
            Some(secret) => {
                let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let basic = STANDARD.encode(format!("{}:{}", enc(&self.client_id), enc(secret)));
                req = req.header("authorization", format!("Basic {basic}"));
            }
            None => form.push(("client_id", &self.client_id)),
        }
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let reply = exchange(req.header("content-type", "application/x-www-form-urlencoded").body(body))
            .await
            .map_err(|e| OidcError::Unavailable(e.to_string()))?;
        let body = ok_body(reply)?;
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| OidcError::BadReply(format!("token answer: {e}")))?;
        v.get("id_token")
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| OidcError::BadReply("the token answer has no id_token (is `openid` an allowed scope?)".into()))
    }

    async fn keys(&self, refresh: bool) -> Result<String, OidcError> {
        if let Some((keys, at)) = lock(&self.keys).as_ref() {
            let limit = if refresh { REFRESH_AT_MOST_EVERY } else { CACHE_FOR };
            if at.elapsed() < limit {
                return Ok(keys.clone());
            }
        }
        let md = self.metadata().await?;
        let body = self.get(&md.jwks_uri).await?;
        *lock(&self.keys) = Some((body.clone(), Instant::now()));
        Ok(body)
    }
}
