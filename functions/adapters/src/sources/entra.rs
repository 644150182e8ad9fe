//! Microsoft Entra ID app sign-in (OAuth 2.0 client credentials,
//! https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow): one
//! token per scope, cached until two minutes before it expires. Used for Microsoft Graph and
//! the Log Analytics query API (Sentinel).

use serde::Deserialize;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use super::{enc, send, text};
use dossier_core::sources::{CallCounter, LookupError};

/// An app registration's credentials: `{"tenant_id", "client_id", "client_secret"[, "token_url"]}`.
#[derive(Clone, Deserialize)]
pub struct AppCredentials {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// Another token endpoint (sovereign clouds, tests).
    #[serde(default)]
    pub token_url: Option<String>,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials").field("tenant_id", &self.tenant_id).field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

pub struct AppToken {
    http: reqwest::Client,
    creds: AppCredentials,
    scope: &'static str,
    cached: Mutex<Option<(String, Instant)>>,
}

impl AppToken {
    pub fn new(http: reqwest::Client, creds: AppCredentials, scope: &'static str) -> AppToken {
        AppToken { http, creds, scope, cached: Mutex::new(None) }
    }

    /// A valid token, fetched when there is none or it is about to expire.
    pub async fn get(&self, calls: &CallCounter) -> Result<String, LookupError> {
        let mut cached = self.cached.lock().await;
        if let Some((t, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let url = self
            .creds
            .token_url
            .clone()
            .unwrap_or_else(|| format!("https://login.microsoftonline.com/{}/oauth2/v2.0/token", enc(&self.creds.tenant_id)));
        let form = format!(
            "client_id={}&client_secret={}&grant_type=client_credentials&scope={}",
            enc(&self.creds.client_id),
            enc(&self.creds.client_secret),
            enc(self.scope)
        );
        let req = self.http.post(url).header("Content-Type", "application/x-www-form-urlencoded").body(form);
        let answer = send(req, calls).await?.ok_or_else(|| LookupError::Unauthorized("token endpoint not found".into()))?;
        let token =
            text(&answer.json, "/access_token").ok_or_else(|| LookupError::Unauthorized("no access_token in the token answer".into()))?;
        // `expires_in` is a number in the v2 endpoint's answers, a string in some older ones.
        let ttl =
            answer.json.get("expires_in").and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))).unwrap_or(3600);
        *cached = Some((token.clone(), Instant::now() + Duration::from_secs(ttl.saturating_sub(120))));
        Ok(token)
    }

    /// Drops the cached token (after a 401 on a call that used it).
    pub async fn forget(&self) {
        *self.cached.lock().await = None;
    }
}
