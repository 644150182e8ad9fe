//! The webhook door: authentication and the payloads it accepts.
//!
//! Auth is `Authorization: Bearer <secret>` or `X-Dossier-Signature: t=<unix s>,v1=<hex
//! HMAC-SHA256(secret, "<t>.<raw body>")>` within a five-minute window; both compared in constant
//! time.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::case::IncidentHint;
use crate::http::HttpRequest;
use crate::xdr::{list, scalar, Severity};

pub const SIGNATURE_TOLERANCE_S: i64 = 300;
/// Bodies above this are refused before parsing.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: send `Authorization: Bearer <secret>` or `X-Dossier-Signature`")]
    Missing,
    #[error("the shared secret does not match")]
    BadSecret,
    #[error("X-Dossier-Signature must look like `t=<unix seconds>,v1=<hex>`")]
    BadSignatureFormat,
    #[error("the signature timestamp is outside the {SIGNATURE_TOLERANCE_S}-second window")]
    StaleTimestamp,
    #[error("the signature does not match the body")]
    BadSignature,
}

/// Compares without an early exit on the first differing byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn sign_body(secret: &[u8], timestamp_s: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub fn authenticate(req: &HttpRequest, secret: &[u8], now_s: i64) -> Result<(), AuthError> {
    if let Some(sig) = req.header("x-dossier-signature") {
        let mut t = None;
        let mut v1 = None;
        for part in sig.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) => t = v.trim().parse::<i64>().ok(),
                Some(("v1", v)) => v1 = Some(v.trim()),
                _ => {}
            }
        }
        let (Some(t), Some(v1)) = (t, v1) else {
            return Err(AuthError::BadSignatureFormat);
        };
        if (now_s - t).abs() > SIGNATURE_TOLERANCE_S {
            return Err(AuthError::StaleTimestamp);
        }
        let expected = sign_body(secret, t, &req.body);
        return if constant_time_eq(expected.as_bytes(), v1.to_ascii_lowercase().as_bytes()) {
            Ok(())
        } else {
            Err(AuthError::BadSignature)
        };
    }
    let auth = req.header("authorization").ok_or(AuthError::Missing)?;
    let token = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer ")).ok_or(AuthError::Missing)?;
    if constant_time_eq(token.trim().as_bytes(), secret) {
        Ok(())
    } else {
        Err(AuthError::BadSecret)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body must be a JSON object")]
    NotObject,
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}` is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// A parsed webhook: which incident, for which tenant (if the payload names one), and the hints.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookIncident {
    pub tenant: Option<String>,
    pub incident_id: String,
    pub hint: IncidentHint,
}

/// Parses the seed's webhook JSON: `case_id, severity, created_at, alert_ids, endpoint_ids,
/// user_ids, description, mitre_techniques` (plus an optional `tenant`).
pub fn parse_webhook(body: &[u8]) -> Result<WebhookIncident, WebhookError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| WebhookError::NotJson(e.to_string()))?;
    if !v.is_object() {
        return Err(WebhookError::NotObject);
    }
    let incident_id = scalar(v.get("case_id")).ok_or(WebhookError::Missing("case_id"))?;
    let created_at_ms = match v.get("created_at") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_i64().map(crate::timefmt::normalise_epoch),
        Some(Value::String(s)) => Some(
            s.trim()
                .parse::<i64>()
                .ok()
                .map(crate::timefmt::normalise_epoch)
                .or_else(|| crate::timefmt::parse_rfc3339(s.trim()))
                .ok_or(WebhookError::Invalid { field: "created_at", reason: "expected RFC 3339 or epoch seconds/milliseconds".into() })?,
        ),
        Some(_) => return Err(WebhookError::Invalid { field: "created_at", reason: "expected a string or a number".into() }),
    };
    let strings = |field: &'static str| -> Result<Vec<String>, WebhookError> {
        match v.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(_)) => Ok(list(v.get(field)).into_iter().take(1000).collect()),
            Some(_) => Err(WebhookError::Invalid { field, reason: "expected an array".into() }),
        }
    };
    let description: String = scalar(v.get("description")).unwrap_or_default().chars().take(4000).collect();
    Ok(WebhookIncident {
        tenant: scalar(v.get("tenant")),
        incident_id,
        hint: IncidentHint {
            severity: scalar(v.get("severity")).map(|s| Severity::parse(&s)).unwrap_or_default(),
            description,
            created_at_ms,
            alert_ids: strings("alert_ids")?,
            endpoint_ids: strings("endpoint_ids")?,
            user_ids: strings("user_ids")?,
            mitre_techniques: strings("mitre_techniques")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: Vec<(&str, String)>, body: &str) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            path: "/webhook".into(),
            headers: headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn bearer_and_signature() {
        let s = b"s3cret-s3cret";
        assert_eq!(authenticate(&req(vec![("authorization", "Bearer s3cret-s3cret".into())], "{}"), s, 0), Ok(()));
        assert_eq!(authenticate(&req(vec![("authorization", "Bearer nope".into())], "{}"), s, 0), Err(AuthError::BadSecret));
        assert_eq!(authenticate(&req(vec![], "{}"), s, 0), Err(AuthError::Missing));
        let sig = sign_body(s, 1_000, b"{}");
        let good = req(vec![("x-dossier-signature", format!("t=1000,v1={sig}"))], "{}");
        assert_eq!(authenticate(&good, s, 1_100), Ok(()));
        assert_eq!(authenticate(&good, s, 1_301), Err(AuthError::StaleTimestamp));
        let other_body = req(vec![("x-dossier-signature", format!("t=1000,v1={sig}"))], "{\"a\":1}");
        assert_eq!(authenticate(&other_body, s, 1_000), Err(AuthError::BadSignature));
        assert_eq!(authenticate(&req(vec![("x-dossier-signature", "v1=abc".into())], "{}"), s, 0), Err(AuthError::BadSignatureFormat));
    }

    #[test]
    fn parses_the_seed_payload() {
        let w = parse_webhook(
            br#"{"case_id": 4711, "severity": "high", "created_at": "2024-05-01T10:00:00Z", "alert_ids": ["1", 2],
                 "endpoint_ids": ["ep1"], "user_ids": ["CORP\\alice"], "description": "x", "mitre_techniques": ["T1059.001"]}"#,
        )
        .unwrap();
        assert_eq!(w.incident_id, "4711");
        assert_eq!(w.hint.severity, Severity::High);
        assert_eq!(w.hint.alert_ids, vec!["1", "2"]);
        assert_eq!(w.hint.created_at_ms, Some(1_714_557_600_000));
    }

    #[test]
    fn names_what_is_wrong() {
        assert_eq!(parse_webhook(b"[]"), Err(WebhookError::NotObject));
        assert_eq!(parse_webhook(b"{}"), Err(WebhookError::Missing("case_id")));
        assert!(matches!(parse_webhook(b"{\"case_id\": 1, \"alert_ids\": \"x\"}"), Err(WebhookError::Invalid { field: "alert_ids", .. })));
        assert!(matches!(
            parse_webhook(b"{\"case_id\": 1, \"created_at\": \"soon\"}"),
            Err(WebhookError::Invalid { field: "created_at", .. })
        ));
        assert!(matches!(parse_webhook(b"{"), Err(WebhookError::NotJson(_))));
    }
}
