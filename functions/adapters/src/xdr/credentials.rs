//! A Cortex XDR API key and how it signs a request: a standard key is sent as it is; an advanced
//! key as `sha256(key + nonce + timestamp)` with a fresh 64-character nonce and the time in
//! milliseconds (whole seconds).

use serde::Deserialize;
use sha2::{Digest, Sha256};

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
    /// API generation of the tenant; `auto` probes `case/search` once.
    #[serde(default)]
    pub generation: Generation,
}

/// Cortex XDR 3.x (incidents + alerts) or the 5.x platform (cases + issues).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Generation {
    #[default]
    Auto,
    V3,
    V5,
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
            Some((id, key)) if !id.is_empty() && !key.is_empty() => Ok(XdrCredentials {
                api_key: key.to_string(),
                api_key_id: id.to_string(),
                auth: AuthKind::Standard,
                generation: Generation::Auto,
            }),
            _ => Err("the XDR secret must be JSON {\"api_key\", \"api_key_id\", \"auth\"} or `id:key`".into()),
        }
    }
}

impl XdrCredentials {
    /// The authentication headers for one request.
    pub(super) fn headers(&self) -> Vec<(&'static str, String)> {
        match self.auth {
            AuthKind::Standard => vec![("authorization", self.api_key.clone()), ("x-xdr-auth-id", self.api_key_id.clone())],
            AuthKind::Advanced => {
                let nonce = nonce64();
                let timestamp = (dossier_core::ports::Clock::now_ms(&dossier_core::ports::SystemClock) / 1000 * 1000).to_string();
                let hash = hex::encode(Sha256::digest(format!("{}{nonce}{timestamp}", self.api_key).as_bytes()));
                vec![
                    ("authorization", hash),
                    ("x-xdr-auth-id", self.api_key_id.clone()),
                    ("x-xdr-nonce", nonce),
                    ("x-xdr-timestamp", timestamp),
                ]
            }
        }
    }
}

fn nonce64() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 64];
    if getrandom::getrandom(&mut bytes).is_err() {
        tracing::error!("no OS randomness for the XDR nonce");
    }
    bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}
