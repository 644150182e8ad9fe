//! `XdrApi` over Cortex XDR's public REST API (3.x incidents). Keys come from a secret:
//! `{"api_key": "...", "api_key_id": "42", "auth": "standard" | "advanced"}`.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

use dossier_core::ports::{XdrApi, XdrError};
use dossier_core::xdr::{check_error_envelope, PayloadError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    #[default]
    Standard,
    Advanced,
}

#[derive(Clone, Deserialize)]
pub struct XdrCredentials {
    pub api_key: String,
    pub api_key_id: String,
    #[serde(default)]
    pub auth: AuthKind,
}

impl std::fmt::Debug for XdrCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdrCredentials").field("api_key_id", &self.api_key_id).field("auth", &self.auth).finish_non_exhaustive()
    }
}

impl XdrCredentials {
    /// Parses the secret. A bare `id:key` string is accepted as a standard key.
    pub fn from_secret(text: &str) -> Result<XdrCredentials, String> {
        if let Ok(c) = serde_json::from_str::<XdrCredentials>(text) {
            return Ok(c);
        }
        match text.trim().split_once(':') {
            Some((id, key)) if !id.is_empty() && !key.is_empty() => {
                Ok(XdrCredentials { api_key: key.to_string(), api_key_id: id.to_string(), auth: AuthKind::Standard })
            }
            _ => Err("the XDR secret must be JSON {\"api_key\", \"api_key_id\", \"auth\"} or `id:key`".into()),
        }
    }
}

#[derive(Clone)]
pub struct XdrHttp {
    http: reqwest::Client,
    base_url: String,
    creds: XdrCredentials,
}

impl XdrHttp {
    /// `base_url`: `https://api-<fqdn>` (without `/public_api/v1`).
    pub fn new(base_url: &str, creds: XdrCredentials, timeout: Duration) -> XdrHttp {
        XdrHttp { http: crate::http_client::client(timeout), base_url: base_url.trim_end_matches('/').to_string(), creds }
    }

    fn auth_headers(&self) -> Vec<(&'static str, String)> {
        match self.creds.auth {
            AuthKind::Standard => vec![("authorization", self.creds.api_key.clone()), ("x-xdr-auth-id", self.creds.api_key_id.clone())],
            AuthKind::Advanced => {
                let nonce = nonce64();
                let timestamp = (dossier_core::ports::Clock::now_ms(&dossier_core::ports::SystemClock) / 1000 * 1000).to_string();
                let hash = hex::encode(Sha256::digest(format!("{}{nonce}{timestamp}", self.creds.api_key).as_bytes()));
                vec![
                    ("authorization", hash),
                    ("x-xdr-auth-id", self.creds.api_key_id.clone()),
                    ("x-xdr-nonce", nonce),
                    ("x-xdr-timestamp", timestamp),
                ]
            }
        }
    }

    /// POSTs `{"request_data": ...}` and returns the body of a 2xx answer.
    async fn call(&self, path: &str, request_data: Value) -> Result<String, XdrError> {
        let mut req = self.http.post(format!("{}/public_api/v1/{path}", self.base_url)).json(&json!({ "request_data": request_data }));
        for (k, v) in self.auth_headers() {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| XdrError::Transport(format!("{path}: {}", without_url(&e))))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| XdrError::Transport(format!("{path}: reading the body: {}", without_url(&e))))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let message = error_message(&body);
        Err(match status {
            401 => XdrError::Unauthorized(message),
            402 => XdrError::NoLicence(message),
            403 => XdrError::Forbidden(message),
            404 => XdrError::NotFound(message),
            429 => XdrError::RateLimited(message),
            _ if message.to_ascii_lowercase().contains("rate limit") => XdrError::RateLimited(message),
            500..=599 => XdrError::Server(format!("HTTP {status}: {message}")),
            _ => XdrError::BadReply(format!("{path}: HTTP {status}: {message}")),
        })
    }

    /// Calls that answer `{"reply": <bool or object>}`: an error envelope inside a 200 is an error.
    async fn call_checked(&self, path: &str, request_data: Value) -> Result<Value, XdrError> {
        let body = self.call(path, request_data).await?;
        let v: Value = serde_json::from_str(&body).map_err(|e| XdrError::BadReply(format!("{path}: not JSON: {e}")))?;
        let reply = v.get("reply").cloned().ok_or_else(|| XdrError::BadReply(format!("{path}: no `reply`")))?;
        check_error_envelope(&reply).map_err(|e| match e {
            PayloadError::ErrorEnvelope { code: 401, message } => XdrError::Unauthorized(message),
            PayloadError::ErrorEnvelope { code: 402, message } => XdrError::NoLicence(message),
            PayloadError::ErrorEnvelope { code: 403, message } => XdrError::Forbidden(message),
            PayloadError::ErrorEnvelope { code, message } if code >= 500 => XdrError::Server(message),
            other => XdrError::BadReply(other.to_string()),
        })?;
        Ok(reply)
    }
}

/// reqwest errors print the URL; the URL holds only the tenant host, but keep messages short.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    kind.to_string()
}

fn error_message(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let reply = v.get("reply").unwrap_or(&v);
    let msg = reply.get("err_msg").and_then(Value::as_str).unwrap_or("").trim();
    let extra = reply.get("err_extra").and_then(Value::as_str).unwrap_or("").trim();
    let text = match (msg.is_empty(), extra.is_empty()) {
        (true, _) => body.chars().take(200).collect::<String>(),
        (false, true) => msg.to_string(),
        (false, false) => format!("{msg} ({extra})"),
    };
    text.chars().filter(|c| !c.is_control()).collect()
}

fn nonce64() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 64];
    if getrandom::getrandom(&mut bytes).is_err() {
        tracing::error!("no OS randomness for the XDR nonce");
    }
    bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

#[async_trait]
impl XdrApi for XdrHttp {
    async fn get_incident_extra_data(&self, incident_id: &str) -> Result<String, XdrError> {
        self.call("incidents/get_incident_extra_data", json!({"incident_id": incident_id, "alerts_limit": 1000})).await
    }

    async fn add_comment(&self, incident_id: &str, text: &str) -> Result<(), XdrError> {
        self.call_checked(
            "incidents/update_incident",
            json!({"incident_id": incident_id, "update_data": {"comment": {"comment_action": "add", "value": text}}}),
        )
        .await?;
        Ok(())
    }

    async fn set_severity(&self, incident_id: &str, severity: &str) -> Result<(), XdrError> {
        self.call_checked("incidents/update_incident", json!({"incident_id": incident_id, "update_data": {"manual_severity": severity}}))
            .await?;
        Ok(())
    }

    async fn isolate_endpoint(&self, endpoint_id: &str, incident_id: &str) -> Result<String, XdrError> {
        let reply = self.call_checked("endpoints/isolate", json!({"endpoint_id": endpoint_id, "incident_id": incident_id})).await?;
        reply
            .get("action_id")
            .and_then(|v| v.as_i64().map(|n| n.to_string()).or_else(|| v.as_str().map(str::to_string)))
            .ok_or_else(|| XdrError::BadReply("endpoints/isolate: no action_id in the reply".into()))
    }
}
