//! The webhook door: authentication and the payloads it accepts.
//!
//! Auth is `Authorization: Bearer <secret>` or `X-Dossier-Signature: t=<unix s>,v1=<hex
//! HMAC-SHA256(secret, "<t>.<raw body>")>` within a five-minute window; both compared in constant
//! time.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::domain::IncidentHint;
use crate::domain::Severity;
use crate::http::HttpRequest;
use crate::xdr::{list, scalar};

pub const SIGNATURE_TOLERANCE_S: i64 = 300;
/// Bodies above this are refused before parsing.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: send `Authorization: Bearer <secret>` or `X-Dossier-Signature`")]
    Missing,
    #[error("the shared secret does not match")]
    BadSecret,
    #[error("X-Dossier-Signature must look like `t=<unix seconds>,v1=<hex>` (a second `v1=` only while a secret rotates)")]
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

/// The webhook secrets of every tenant: each tenant has its current secret and, while callers
/// move to a new one, its previous one. A delivery belongs to the tenant whose secret verifies it.
#[derive(Clone)]
pub struct WebhookSecrets {
    tenants: Vec<(String, Vec<Vec<u8>>)>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secret material.
        f.debug_list().entries(self.tenants.iter().map(|(t, s)| format!("{t}: {} secret(s)", s.len()))).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error("no webhook secret configured")]
    Empty,
    #[error("webhook secret of tenant `{0}` is shorter than 16 bytes")]
    TooShort(String),
    #[error("webhook secrets: {0}")]
    Invalid(String),
}

impl WebhookSecrets {
    /// One tenant with one secret.
    pub fn single(tenant: &str, secret: &[u8]) -> Result<WebhookSecrets, SecretsError> {
        Self::new(vec![(tenant.to_string(), vec![secret.to_vec()])])
    }

    pub fn new(tenants: Vec<(String, Vec<Vec<u8>>)>) -> Result<WebhookSecrets, SecretsError> {
        if tenants.is_empty() || tenants.iter().any(|(_, s)| s.is_empty()) {
            return Err(SecretsError::Empty);
        }
        for (tenant, secrets) in &tenants {
            crate::domain::CaseKey::new(tenant, "1").map_err(|e| SecretsError::Invalid(format!("tenant `{tenant}`: {e}")))?;
            if secrets.len() > 2 {
                return Err(SecretsError::Invalid(format!("tenant `{tenant}`: at most a current and a previous secret")));
            }
            if secrets.iter().any(|s| s.len() < 16) {
                return Err(SecretsError::TooShort(tenant.clone()));
            }
        }
        Ok(WebhookSecrets { tenants })
    }

    /// The secret as stored: a bare string (the default tenant's one secret), or JSON
    /// `{"<tenant>": "<secret>" | {"current": "…", "previous": "…"}, …}`.
    pub fn parse(text: &str, default_tenant: &str) -> Result<WebhookSecrets, SecretsError> {
        let trimmed = text.trim();
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(trimmed) else {
            return Self::single(default_tenant, trimmed.as_bytes());
        };
        let mut tenants = Vec::new();
        for (tenant, v) in map {
            let secrets = match v {
                serde_json::Value::String(s) => vec![s.into_bytes()],
                serde_json::Value::Object(o) => ["current", "previous"]
                    .iter()
                    .filter_map(|k| o.get(*k).and_then(serde_json::Value::as_str))
                    .map(|s| s.as_bytes().to_vec())
                    .collect(),
                _ => return Err(SecretsError::Invalid(format!("tenant `{tenant}`: expected a string or {{\"current\", \"previous\"}}"))),
            };
            tenants.push((tenant, secrets));
        }
        Self::new(tenants)
    }

    /// The tenants to try: the one a header names (it only chooses which secrets to try), or all.
    fn candidates<'a>(&'a self, named: Option<&'a str>) -> impl Iterator<Item = &'a (String, Vec<Vec<u8>>)> + 'a {
        self.tenants.iter().filter(move |(t, _)| named.is_none_or(|n| n == t))
    }
}

/// Who sent a delivery, as proven by the secret that verified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub tenant: String,
    /// For a signed delivery, what identifies it: the tenant and the MAC this server computed
    /// (never a value copied from the header), so the same delivery is the same key however its
    /// header is written.
    pub replay_key: Option<String>,
}

/// Most `v1=` values in one signature header: the current and the previous secret's.
pub const MAX_SIGNATURES: usize = 2;

pub fn authenticate(req: &HttpRequest, secrets: &WebhookSecrets, now_s: i64) -> Result<Verified, AuthError> {
    let named = req.header("x-dossier-tenant").map(str::trim);
    if let Some(sig) = req.header("x-dossier-signature") {
        let mut t = None;
        let mut v1 = Vec::new();
        for part in sig.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) if t.is_none() => t = Some(v.trim().parse::<i64>().map_err(|_| AuthError::BadSignatureFormat)?),
                Some(("t", _)) => return Err(AuthError::BadSignatureFormat),
                Some(("v1", v)) => v1.push(v.trim().to_ascii_lowercase()),
                _ => return Err(AuthError::BadSignatureFormat),
            }
        }
        let Some(t) = t else { return Err(AuthError::BadSignatureFormat) };
        if v1.is_empty() || v1.len() > MAX_SIGNATURES {
            return Err(AuthError::BadSignatureFormat);
        }
        if (now_s - t).abs() > SIGNATURE_TOLERANCE_S {
            return Err(AuthError::StaleTimestamp);
        }
        for (tenant, keys) in secrets.candidates(named) {
            for key in keys {
                let expected = sign_body(key, t, &req.body);
                if v1.iter().any(|given| constant_time_eq(expected.as_bytes(), given.as_bytes())) {
                    return Ok(Verified { tenant: tenant.clone(), replay_key: Some(format!("{tenant}:{expected}")) });
                }
            }
        }
        return Err(AuthError::BadSignature);
    }
    let auth = req.header("authorization").ok_or(AuthError::Missing)?;
    let token = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer ")).ok_or(AuthError::Missing)?;
    for (tenant, keys) in secrets.candidates(named) {
        if keys.iter().any(|k| constant_time_eq(token.trim().as_bytes(), k)) {
            return Ok(Verified { tenant: tenant.clone(), replay_key: None });
        }
    }
    Err(AuthError::BadSecret)
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

/// Which payload shape arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{case_id, severity, created_at, alert_ids, endpoint_ids, user_ids, description, mitre_techniques}`
    #[default]
    Seed,
    /// A Cortex XDR 3.x incident object (`incident_id`, ...), bare or under `incident`.
    XdrIncident,
    /// A Cortex XDR 5.x case object (`case_id` with `case_name` / `status_progress` / `issue_ids`), bare or under `case`.
    XdrCase,
}

/// A parsed webhook: which incident, for which tenant (if the payload names one), and the hints.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookIncident {
    pub tenant: Option<String>,
    pub incident_id: String,
    pub format: WebhookFormat,
    pub hint: IncidentHint,
}

/// Parses any accepted payload: the seed's webhook JSON, an XDR 3.x incident object, or an XDR
/// 5.x case object (each also accepted inside `{"incident": ...}` / `{"case": ...}`), plus an
/// optional `tenant`.
pub fn parse_webhook(body: &[u8]) -> Result<WebhookIncident, WebhookError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| WebhookError::NotJson(e.to_string()))?;
    if !root.is_object() {
        return Err(WebhookError::NotObject);
    }
    let tenant = scalar(root.get("tenant"));
    let (v, format) = if let Some(inc) = root.get("incident").filter(|x| x.is_object()) {
        (inc, WebhookFormat::XdrIncident)
    } else if let Some(case) = root.get("case").filter(|x| x.is_object()) {
        (case, WebhookFormat::XdrCase)
    } else if root.get("incident_id").is_some() {
        (&root, WebhookFormat::XdrIncident)
    } else if ["case_name", "status_progress", "issue_ids", "case_domain", "user_severity"].iter().any(|k| root.get(k).is_some()) {
        (&root, WebhookFormat::XdrCase)
    } else {
        (&root, WebhookFormat::Seed)
    };
    let id_field = if format == WebhookFormat::XdrIncident { "incident_id" } else { "case_id" };
    let incident_id = match v.get(id_field) {
        None | Some(Value::Null) => return Err(WebhookError::Missing(id_field)),
        Some(Value::String(_) | Value::Number(_)) => scalar(v.get(id_field)).ok_or(WebhookError::Missing(id_field))?,
        Some(_) => return Err(WebhookError::Invalid { field: id_field, reason: "expected a string or a number".into() }),
    };
    let created_field = if format == WebhookFormat::Seed { "created_at" } else { "creation_time" };
    let created_at_ms = match v.get(created_field) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_i64().map(crate::timefmt::normalise_epoch),
        Some(Value::String(s)) => Some(
            s.trim()
                .parse::<i64>()
                .ok()
                .map(crate::timefmt::normalise_epoch)
                .or_else(|| crate::timefmt::parse_rfc3339(s.trim()))
                .ok_or(WebhookError::Invalid { field: created_field, reason: "expected RFC 3339 or epoch seconds/milliseconds".into() })?,
        ),
        Some(_) => return Err(WebhookError::Invalid { field: created_field, reason: "expected a string or a number".into() }),
    };
    let strings = |field: &'static str| -> Result<Vec<String>, WebhookError> {
        match v.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(_)) => Ok(list(v.get(field)).into_iter().take(1000).collect()),
            Some(_) => Err(WebhookError::Invalid { field, reason: "expected an array".into() }),
        }
    };
    let first = |fields: &[&str]| fields.iter().find_map(|f| scalar(v.get(*f)));
    let description: String = first(&["description", "incident_name", "case_name"]).unwrap_or_default().chars().take(4000).collect();
    let severity = first(&["manual_severity", "user_severity", "severity"]).map(|s| Severity::parse(&s)).unwrap_or_default();
    let (alert_ids, techniques_field) = match format {
        WebhookFormat::Seed => (strings("alert_ids")?, "mitre_techniques"),
        WebhookFormat::XdrIncident => (Vec::new(), "mitre_techniques_ids_and_names"),
        WebhookFormat::XdrCase => (strings("issue_ids")?, "mitre_techniques_ids_and_names"),
    };
    let mut user_ids = strings("user_ids")?;
    user_ids.extend(if format == WebhookFormat::Seed { Vec::new() } else { strings("users")? });
    Ok(WebhookIncident {
        tenant,
        incident_id,
        format,
        hint: IncidentHint {
            severity,
            description,
            created_at_ms,
            status: first(&["status", "status_progress"]),
            alert_ids,
            endpoint_ids: strings("endpoint_ids")?,
            user_ids,
            mitre_techniques: strings(techniques_field)?,
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
        let raw = b"s3cret-s3cret-s3cret";
        let s = WebhookSecrets::single("default", raw).unwrap();
        let bearer = authenticate(&req(vec![("authorization", "Bearer s3cret-s3cret-s3cret".into())], "{}"), &s, 0).unwrap();
        assert_eq!((bearer.tenant.as_str(), bearer.replay_key), ("default", None));
        assert_eq!(authenticate(&req(vec![("authorization", "Bearer nope".into())], "{}"), &s, 0), Err(AuthError::BadSecret));
        assert_eq!(authenticate(&req(vec![], "{}"), &s, 0), Err(AuthError::Missing));
        let sig = sign_body(raw, 1_000, b"{}");
        let good = req(vec![("x-dossier-signature", format!("t=1000,v1={sig}"))], "{}");
        assert_eq!(authenticate(&good, &s, 1_100).unwrap().replay_key, Some(format!("default:{sig}")));
        assert_eq!(authenticate(&good, &s, 1_301), Err(AuthError::StaleTimestamp));
        let other_body = req(vec![("x-dossier-signature", format!("t=1000,v1={sig}"))], "{\"a\":1}");
        assert_eq!(authenticate(&other_body, &s, 1_000), Err(AuthError::BadSignature));
        assert_eq!(authenticate(&req(vec![("x-dossier-signature", "v1=abc".into())], "{}"), &s, 0), Err(AuthError::BadSignatureFormat));
    }

    #[test]
    fn the_replay_key_is_what_the_server_verified_not_what_the_header_says() {
        let raw = b"s3cret-s3cret-s3cret";
        let s = WebhookSecrets::single("default", raw).unwrap();
        let sig = sign_body(raw, 1_000, b"{}");
        let plain = authenticate(&req(vec![("x-dossier-signature", format!("t=1000,v1={sig}"))], "{}"), &s, 1_000).unwrap();
        let padded =
            authenticate(&req(vec![("x-dossier-signature", format!("t=1000,v1=deadbeef,v1={}", sig.to_uppercase()))], "{}"), &s, 1_000)
                .unwrap();
        assert_eq!(plain.replay_key, padded.replay_key, "a decoy v1 or another case does not make a new delivery");
        let three = format!("t=1000,v1=aa,v1=bb,v1={sig}");
        assert_eq!(authenticate(&req(vec![("x-dossier-signature", three)], "{}"), &s, 1_000), Err(AuthError::BadSignatureFormat));
        let two_t = format!("t=1000,t=2000,v1={sig}");
        assert_eq!(authenticate(&req(vec![("x-dossier-signature", two_t)], "{}"), &s, 1_000), Err(AuthError::BadSignatureFormat));
    }

    #[test]
    fn the_tenant_is_the_one_whose_secret_verifies() {
        let s = WebhookSecrets::parse(
            r#"{"acme": {"current": "acme-secret-0000000001", "previous": "acme-secret-0000000000"}, "globex": "globex-secret-000000001"}"#,
            "default",
        )
        .unwrap();
        let sig = sign_body(b"acme-secret-0000000000", 1_000, b"{}");
        let signed = |tenant: Option<&str>| {
            let mut h = vec![("x-dossier-signature", format!("t=1000,v1={sig}"))];
            if let Some(t) = tenant {
                h.push(("x-dossier-tenant", t.to_string()));
            }
            req(h, "{}")
        };
        assert_eq!(authenticate(&signed(None), &s, 1_000).unwrap().tenant, "acme", "the previous secret still verifies");
        assert_eq!(authenticate(&signed(Some("acme")), &s, 1_000).unwrap().tenant, "acme");
        assert_eq!(authenticate(&signed(Some("globex")), &s, 1_000), Err(AuthError::BadSignature), "a header cannot re-tenant");
        assert_eq!(authenticate(&signed(Some("nobody")), &s, 1_000), Err(AuthError::BadSignature));
        assert!(WebhookSecrets::parse("short", "default").is_err());
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
    fn parses_an_xdr_incident_and_a_5x_case() {
        let inc = parse_webhook(
            br#"{"incident": {"incident_id": "88", "creation_time": 1575806909185, "severity": "low", "manual_severity": "high",
                 "status": "new", "incident_name": "Cred dump", "users": ["corp\\bob"], "mitre_techniques_ids_and_names": ["T1003.001 - LSASS Memory"]}}"#,
        )
        .unwrap();
        assert_eq!((inc.format, inc.incident_id.as_str(), inc.hint.severity), (WebhookFormat::XdrIncident, "88", Severity::High));
        assert_eq!(inc.hint.status.as_deref(), Some("new"));
        assert_eq!(inc.hint.created_at_ms, Some(1_575_806_909_185));
        assert_eq!(inc.hint.mitre_techniques, vec!["T1003.001 - LSASS Memory"]);
        assert_eq!(inc.hint.user_ids, vec!["corp\\bob"]);
        let case = parse_webhook(
            br#"{"case_id": 1234, "case_name": "Phish", "status_progress": "New", "user_severity": "critical", "issue_ids": [5, 6]}"#,
        )
        .unwrap();
        assert_eq!((case.format, case.incident_id.as_str(), case.hint.severity), (WebhookFormat::XdrCase, "1234", Severity::Critical));
        assert_eq!(case.hint.alert_ids, vec!["5", "6"]);
        assert_eq!(case.hint.description, "Phish");
        let wrapped = parse_webhook(br#"{"tenant": "acme", "case": {"case_id": "77", "severity": "SEV_040_HIGH"}}"#).unwrap();
        assert_eq!(
            (wrapped.format, wrapped.tenant.as_deref(), wrapped.hint.severity),
            (WebhookFormat::XdrCase, Some("acme"), Severity::High)
        );
        assert_eq!(parse_webhook(br#"{"incident": {"severity": "high"}}"#), Err(WebhookError::Missing("incident_id")));
        assert!(matches!(parse_webhook(br#"{"incident_id": {"x": 1}}"#), Err(WebhookError::Invalid { field: "incident_id", .. })));
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
