//! Enrichment sources over HTTP, one module per service, each an `IndicatorSource` (or a
//! `Source` where it works on the whole case). Facts about each API are in the project's
//! reference notes; every module is tested on the recorded answers in `tests/fixtures/`.

pub mod abuseipdb;
pub mod catalog;
pub mod msgraph;
pub mod okta;
pub mod otx;
pub mod servicenow;
pub mod shodan;
pub mod tenable;
pub mod virustotal;
pub mod xql_history;

use serde_json::Value;

use dossier_core::sources::{CallCounter, LookupError};

/// What one HTTP exchange with a source gave.
pub struct Answer {
    pub json: Value,
    pub raw: String,
}

/// Sends a request, counting it, and maps the answer: 2xx → JSON, 404 → `None`, 429 → a
/// deferral with `Retry-After`, 401/403 → credentials, 5xx → server, anything else unusable.
pub async fn send(req: reqwest::RequestBuilder, calls: &CallCounter) -> Result<Option<Answer>, LookupError> {
    calls.add(1);
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status().as_u16();
    let retry_after = crate::http_client::retry_after(resp.headers());
    let raw = resp.text().await.map_err(transport)?;
    match status {
        200..=299 => {
            let json = if raw.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&raw).map_err(|e| LookupError::BadReply(format!("not JSON: {e}")))?
            };
            Ok(Some(Answer { json, raw }))
        }
        404 => Ok(None),
        429 => Err(LookupError::RateLimited { retry_after }),
        401 | 403 => Err(LookupError::Unauthorized(format!("HTTP {status} {}", short(&raw)))),
        500..=599 => Err(LookupError::Server(format!("HTTP {status} {}", short(&raw)))),
        _ => Err(LookupError::BadReply(format!("HTTP {status} {}", short(&raw)))),
    }
}

fn transport(e: reqwest::Error) -> LookupError {
    if e.is_timeout() {
        LookupError::Timeout
    } else if e.is_connect() {
        LookupError::Transport("connection failed".into())
    } else {
        LookupError::Transport("request failed".into())
    }
}

/// The first 160 characters of an error body, without control characters.
fn short(body: &str) -> String {
    body.chars().filter(|c| !c.is_control()).take(160).collect()
}

/// A string field, or a number as a string.
pub fn text(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Percent-encodes one path segment or query value.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}
