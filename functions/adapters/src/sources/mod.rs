//! Enrichment sources over HTTP, one module per service, each an `IndicatorSource` (or a
//! `Source` where it works on the whole case). Facts about each API are in the project's
//! reference notes; every module is tested on the recorded answers in `tests/fixtures/`.

pub mod abuseipdb;
pub mod catalog;
pub mod entra;
pub mod gti;
pub mod msgraph;
pub mod okta;
pub mod otx;
pub mod qualys;
pub mod recordedfuture;
pub mod sentinel;
pub mod servicenow;
pub mod shodan;
pub mod splunk;
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
    use crate::http_client::{exchange, NoAnswer, Status};
    calls.add(1);
    let reply = exchange(req).await.map_err(|e| match e {
        NoAnswer::TimedOut => LookupError::Timeout,
        other => LookupError::Transport(other.to_string()),
    })?;
    let what = || format!("HTTP {} {}", reply.code, reply.short_body());
    match reply.status {
        Status::Success => {
            let json = if reply.body.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&reply.body).map_err(|e| LookupError::BadReply(format!("not JSON: {e}")))?
            };
            Ok(Some(Answer { json, raw: reply.body }))
        }
        Status::NotFound => Ok(None),
        Status::RateLimited => Err(LookupError::RateLimited { retry_after: reply.retry_after }),
        Status::Unauthorized | Status::Forbidden | Status::PaymentRequired => Err(LookupError::Unauthorized(what())),
        Status::Server => Err(LookupError::Server(what())),
        Status::Rejected | Status::Unexpected => Err(LookupError::BadReply(what())),
    }
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
