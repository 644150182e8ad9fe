//! `XdrApi` over Cortex XDR's public REST API (3.x incidents). Keys come from a secret:
//! `{"api_key": "...", "api_key_id": "42", "auth": "standard" | "advanced"}`.

use async_trait::async_trait;
use serde_json::{json, Value};
use std::time::Duration;

use dossier_core::domain::Severity;
use dossier_core::ports::{IncidentRef, XdrApi, XdrError};
use dossier_core::timefmt::normalise_epoch;
use dossier_core::xdr::{check_error_envelope, scalar, PayloadError};

use crate::http_client::{NoAnswer, Status};

mod cases;
mod credentials;
mod xql;

pub use credentials::{AuthKind, Generation, XdrCredentials};
pub use xql::XqlOutcome;

#[derive(Clone)]
pub struct XdrHttp {
    http: reqwest::Client,
    base_url: String,
    creds: XdrCredentials,
    generation: std::sync::Arc<tokio::sync::OnceCell<Generation>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Page size of list calls (the API's maximum).
const PAGE: usize = 100;
/// `get_incidents.total_count` is documented as capped at 10,000.
const MAX_LISTED: usize = 10_000;
/// Attempts for reads that fail in a way retrying can help (server error, transport).
const READ_ATTEMPTS: u32 = 3;
/// First wait between read attempts (then doubled, with jitter).
const READ_BACKOFF: Duration = Duration::from_millis(200);

impl XdrHttp {
    /// `base_url`: `https://api-<fqdn>` (without `/public_api/v1`).
    pub fn new(base_url: &str, creds: XdrCredentials, timeout: Duration) -> XdrHttp {
        let generation = std::sync::Arc::new(tokio::sync::OnceCell::new());
        if creds.generation != Generation::Auto {
            // Configured: never probe.
            generation.set(creds.generation).ok();
        }
        XdrHttp {
            http: crate::http_client::client(timeout),
            base_url: base_url.trim_end_matches('/').to_string(),
            creds,
            generation,
            requests: std::sync::Arc::default(),
        }
    }

    /// The tenant's API generation, probed with `case/search` when not configured. Only an
    /// answer that says the call does not exist (404, or a 4xx refusing the path) fixes 3.x; a
    /// refused key (clock skew), a rate limit, a server error or a timeout says nothing about the
    /// generation: the probe fails, nothing is cached, and the next call probes again.
    pub async fn generation(&self) -> Result<Generation, XdrError> {
        self.generation
            .get_or_try_init(|| async {
                match self.call("case/search", json!({"search_from": 0, "search_to": 1})).await {
                    Ok(_) => Ok(Generation::V5),
                    Err(e @ (XdrError::NotFound(_) | XdrError::Rejected(_))) => {
                        tracing::info!(reason = %e, "case/search not available: Cortex XDR 3.x API");
                        Ok(Generation::V3)
                    }
                    Err(e) => {
                        tracing::warn!(reason = %e, "API generation not known yet: the probe failed for a reason that does not tell");
                        Err(e)
                    }
                }
            })
            .await
            .copied()
    }

    /// A read retried with jittered exponential backoff where retrying can help. Rate limits are
    /// not retried here: the caller's queue waits instead.
    async fn read(&self, path: &str, request_data: Value) -> Result<String, XdrError> {
        let retryable = |e: &XdrError| matches!(e, XdrError::Server(_) | XdrError::Transport(_));
        crate::http_client::retry(READ_ATTEMPTS, READ_BACKOFF, retryable, || self.call(path, request_data.clone())).await
    }

    async fn get_raw(&self, path: &str) -> Result<String, XdrError> {
        let path = format!("/public_api/v1/{path}");
        self.send(self.http.get(format!("{}{path}", self.base_url)), &path).await
    }

    /// `incidents/update_incident` with any of status, manual severity, assignee.
    pub async fn update_incident(&self, incident_id: &str, update: &IncidentUpdate) -> Result<(), XdrError> {
        if update.assigned_user_pretty_name.is_some() && update.assigned_user_mail.is_none() {
            return Err(XdrError::BadReply("assigned_user_pretty_name needs assigned_user_mail in the same call".into()));
        }
        let data = serde_json::to_value(update).map_err(|e| XdrError::BadReply(e.to_string()))?;
        self.call_checked("incidents/update_incident", json!({"incident_id": incident_id, "update_data": data})).await.map(drop)
    }

    /// Alert detail beyond extra data: `/public_api/v2/alerts/get_alerts_multi_events`, 100 ids a page.
    pub async fn get_alerts_v2(&self, alert_ids: &[String]) -> Result<Vec<Value>, XdrError> {
        let mut out = Vec::new();
        for chunk in alert_ids.chunks(PAGE) {
            let body = self
                .read_v2(
                    "alerts/get_alerts_multi_events",
                    json!({"filters": [{"field": "alert_id_list", "operator": "in", "value": chunk}], "search_from": 0, "search_to": PAGE}),
                )
                .await?;
            let reply = reply_of(&body, "alerts/get_alerts_multi_events")?;
            out.extend(reply.get("alerts").and_then(Value::as_array).cloned().unwrap_or_default());
        }
        Ok(out)
    }

    async fn read_v2(&self, path: &str, request_data: Value) -> Result<String, XdrError> {
        // The v2 alert API lives beside v1: same host, same auth, other version segment.
        self.post(&format!("/public_api/v2/{path}"), &json!({ "request_data": request_data })).await
    }

    /// `endpoints/get_endpoint` for these ids.
    pub async fn get_endpoints(&self, endpoint_ids: &[String]) -> Result<Vec<EndpointInfo>, XdrError> {
        let body = self
            .read("endpoints/get_endpoint", json!({"filters": [{"field": "endpoint_id_list", "operator": "in", "value": endpoint_ids}]}))
            .await?;
        let reply = reply_of(&body, "endpoints/get_endpoint")?;
        Ok(reply
            .get("endpoints")
            .and_then(Value::as_array)
            .map(|eps| {
                eps.iter()
                    .filter_map(|e| {
                        Some(EndpointInfo {
                            endpoint_id: scalar(e.get("endpoint_id")).or_else(|| scalar(e.get("agent_id")))?,
                            name: scalar(e.get("endpoint_name")).or_else(|| scalar(e.get("host_name"))),
                            status: scalar(e.get("endpoint_status")),
                            is_isolated: scalar(e.get("is_isolated")),
                            ips: dossier_core::xdr::list(e.get("ip")),
                            os: scalar(e.get("os_type")),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `actions/get_action_status`: endpoint id → status (PENDING, COMPLETED_SUCCESSFULLY, FAILED, ...).
    pub async fn get_action_status(&self, action_id: &str) -> Result<Vec<(String, String)>, XdrError> {
        let id = action_id.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(action_id));
        let body = self.read("actions/get_action_status", json!({"group_action_id": id})).await?;
        let reply = reply_of(&body, "actions/get_action_status")?;
        let data =
            reply.get("data").and_then(Value::as_object).ok_or_else(|| XdrError::BadReply("get_action_status: no `data` object".into()))?;
        Ok(data.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
    }

    /// Requests this client has sent (for per-source call accounting).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn list_v3(&self, from_ms: i64, to_ms: i64) -> Result<Vec<IncidentRef>, XdrError> {
        let mut out = Vec::new();
        loop {
            let body = self
                .read(
                    "incidents/get_incidents",
                    json!({
                        "filters": [
                            {"field": "modification_time", "operator": "gte", "value": from_ms},
                            {"field": "modification_time", "operator": "lte", "value": to_ms}
                        ],
                        "search_from": out.len(), "search_to": out.len() + PAGE,
                        "sort": {"field": "modification_time", "keyword": "asc"}
                    }),
                )
                .await?;
            let reply = reply_of(&body, "incidents/get_incidents")?;
            let page = reply
                .get("incidents")
                .and_then(Value::as_array)
                .ok_or_else(|| XdrError::BadReply("get_incidents: no `incidents` array".into()))?;
            out.extend(page.iter().filter_map(|i| {
                incident_ref(i, "incident_id", &["status"], &["manual_severity", "severity"], &["description", "incident_name"])
            }));
            let total = reply.get("total_count").and_then(Value::as_u64).map_or(usize::MAX, |t| t as usize);
            if page.len() < PAGE || out.len() >= total.min(MAX_LISTED) {
                return Ok(out);
            }
        }
    }

    fn auth_headers(&self) -> Vec<(&'static str, String)> {
        self.creds.headers()
    }

    /// POSTs `{"request_data": ...}` and returns the body of a 2xx answer.
    async fn call(&self, path: &str, request_data: Value) -> Result<String, XdrError> {
        self.call_raw(path, &json!({ "request_data": request_data })).await
    }

    /// POSTs a body as it is (the `entries/*` calls take XSOAR-style bodies).
    async fn call_raw(&self, path: &str, body: &Value) -> Result<String, XdrError> {
        self.post(&format!("/public_api/v1/{path}"), body).await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<String, XdrError> {
        self.send(self.http.post(format!("{}{path}", self.base_url)).json(body), path).await
    }

    /// Signs, sends and classifies one request: every method gets the same retryable/final split
    /// (a 429 or 5xx on a GET is retried like one on a POST).
    async fn send(&self, mut req: reqwest::RequestBuilder, path: &str) -> Result<String, XdrError> {
        self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for (k, v) in self.auth_headers() {
            req = req.header(k, v);
        }
        let reply = crate::http_client::exchange(req).await.map_err(|e| match e {
            // A connection that never opened sent nothing; after that, XDR may have acted.
            NoAnswer::NotSent(why) => XdrError::Unreachable(format!("{path}: {why}")),
            other => XdrError::Transport(format!("{path}: {other}")),
        })?;
        if reply.status == Status::Success {
            return Ok(reply.body);
        }
        let message = error_message(&reply.body);
        let code = reply.code;
        Err(match reply.status {
            Status::Unauthorized => XdrError::Unauthorized(message),
            Status::PaymentRequired => XdrError::NoLicence(message),
            Status::Forbidden => XdrError::Forbidden(message),
            Status::NotFound => XdrError::NotFound(message),
            Status::RateLimited => XdrError::RateLimited(message),
            // XDR reports its tenant limit (10 requests/s) as "Too many requests." and some quota
            // errors with a "rate limit" message, with a status it does not document.
            _ if ["rate limit", "too many requests", "parallel running queries"]
                .iter()
                .any(|m| message.to_ascii_lowercase().contains(m)) =>
            {
                XdrError::RateLimited(message)
            }
            // XDR answers an id it does not have with a 500 saying so: definite, not transient.
            Status::Server if message.to_ascii_lowercase().contains("not found") => XdrError::NotFound(format!("{path}: {message}")),
            Status::Server => XdrError::Server(format!("HTTP {code}: {message}")),
            Status::Rejected => XdrError::Rejected(format!("{path}: HTTP {code}: {message}")),
            Status::Success | Status::Unexpected => XdrError::BadReply(format!("{path}: HTTP {code}: {message}")),
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

/// Fields of `incidents/update_incident`; `None` leaves a field unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IncidentUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manual_severity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_user_mail: Option<String>,
    /// Only accepted together with `assigned_user_mail`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_user_pretty_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolve_comment: Option<String>,
}

/// An endpoint as `endpoints/get_endpoint` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    pub endpoint_id: String,
    pub name: Option<String>,
    pub status: Option<String>,
    pub is_isolated: Option<String>,
    pub ips: Vec<String>,
    pub os: Option<String>,
}

fn reply_of(body: &str, path: &str) -> Result<Value, XdrError> {
    let v: Value = serde_json::from_str(body).map_err(|e| XdrError::BadReply(format!("{path}: not JSON: {e}")))?;
    let reply = v.get("reply").cloned().ok_or_else(|| XdrError::BadReply(format!("{path}: no `reply`")))?;
    check_error_envelope(&reply).map_err(|e| XdrError::BadReply(format!("{path}: {e}")))?;
    Ok(reply)
}

/// One listed incident or case; rows without a usable id are dropped with a warning.
fn incident_ref(v: &Value, id_field: &str, status: &[&str], severity: &[&str], description: &[&str]) -> Option<IncidentRef> {
    let first = |fields: &[&str]| fields.iter().find_map(|f| scalar(v.get(*f)));
    let Some(incident_id) = scalar(v.get(id_field)) else {
        tracing::warn!(field = id_field, "listed incident without an id; skipped");
        return None;
    };
    let epoch = |f: &str| v.get(f).and_then(|x| x.as_i64().or_else(|| x.as_str().and_then(|s| s.trim().parse().ok()))).map(normalise_epoch);
    Some(IncidentRef {
        incident_id,
        status: first(status),
        severity: first(severity).map(|s| Severity::parse(&s)).unwrap_or_default(),
        description: first(description).unwrap_or_default(),
        creation_ms: epoch("creation_time"),
        modification_ms: epoch("modification_time").or_else(|| epoch("last_update_time")),
    })
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

#[async_trait]
impl XdrApi for XdrHttp {
    async fn list_modified(&self, from_ms: i64, to_ms: i64) -> Result<Vec<IncidentRef>, XdrError> {
        match self.generation().await? {
            Generation::V5 => self.list_v5(from_ms, to_ms).await,
            _ => self.list_v3(from_ms, to_ms).await,
        }
    }

    async fn get_incident_extra_data(&self, incident_id: &str) -> Result<String, XdrError> {
        match self.generation().await? {
            Generation::V5 => self.case_as_extra_data(incident_id).await,
            _ => self.read("incidents/get_incident_extra_data", json!({"incident_id": incident_id, "alerts_limit": 1000})).await,
        }
    }

    async fn add_comment(&self, incident_id: &str, text: &str) -> Result<(), XdrError> {
        match self.generation().await? {
            // 5.x has no case comment call; a War Room entry is the additive, documented way in.
            // A case's War Room is `INCIDENT-<id>`: a bare number addresses an alert's.
            Generation::V5 => {
                self.call_raw("entries/insert", &json!({"id": format!("INCIDENT-{incident_id}"), "data": text})).await.map(drop)
            }
            _ => self
                .call_checked(
                    "incidents/update_incident",
                    json!({"incident_id": incident_id, "update_data": {"comment": {"comment_action": "add", "value": text}}}),
                )
                .await
                .map(drop),
        }
    }

    async fn set_severity(&self, incident_id: &str, severity: &str) -> Result<(), XdrError> {
        // Both generations document low, medium, high, critical in lower case.
        let severity = severity.to_ascii_lowercase();
        match self.generation().await? {
            Generation::V5 => {
                self.call(&format!("case/update/{incident_id}"), json!({"update_data": {"user_severity": severity}})).await.map(drop)
            }
            _ => self
                .call_checked(
                    "incidents/update_incident",
                    json!({"incident_id": incident_id, "update_data": {"manual_severity": severity}}),
                )
                .await
                .map(drop),
        }
    }

    async fn block_hash(&self, sha256: &str, comment: &str, incident_id: &str) -> Result<(), XdrError> {
        // `incident_id` is an integer in the documented schema of this call (a string elsewhere).
        let incident = incident_id.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(incident_id));
        let data = json!({"hash_list": [sha256], "comment": comment, "incident_id": incident});
        match self.call_checked("hash_exceptions/blocklist", data).await {
            Ok(_) => Ok(()),
            // XDR answers 500 when the hash is already on a list: the goal is reached.
            Err(XdrError::Server(m)) if m.to_ascii_lowercase().contains("already") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn action_status(&self, action_id: &str) -> Result<Vec<(String, String)>, XdrError> {
        self.get_action_status(action_id).await
    }

    async fn comment_exists(&self, _incident_id: &str, _marker: &str) -> Result<Option<bool>, XdrError> {
        // Neither 3.x nor (as far as its documentation shows) the 5.x War Room offers a search
        // for a comment's text: a retried post cannot be checked, only counted.
        Ok(None)
    }

    async fn endpoint_isolated(&self, endpoint_id: &str) -> Result<Option<bool>, XdrError> {
        let endpoints = self.get_endpoints(&[endpoint_id.to_string()]).await?;
        Ok(endpoints
            .iter()
            .find(|e| e.endpoint_id == endpoint_id)
            .map(|e| matches!(e.is_isolated.as_deref(), Some("AGENT_ISOLATED" | "AGENT_PENDING_ISOLATION"))))
    }

    async fn manual_severity(&self, incident_id: &str) -> Result<Option<String>, XdrError> {
        let (path, data, list, field) = match self.generation().await? {
            Generation::V5 => (
                "case/search",
                json!({"filters": [{"field": "case_id", "operator": "in", "value": [incident_id.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(incident_id))]}], "search_from": 0, "search_to": 1}),
                "DATA",
                "user_severity",
            ),
            _ => (
                "incidents/get_incidents",
                json!({"filters": [{"field": "incident_id_list", "operator": "in", "value": [incident_id]}], "search_from": 0, "search_to": 1}),
                "incidents",
                "manual_severity",
            ),
        };
        let body = self.read(path, data).await?;
        let reply = reply_of(&body, path)?;
        Ok(reply.get(list).and_then(Value::as_array).and_then(|l| l.first()).and_then(|i| scalar(i.get(field))).filter(|s| !s.is_empty()))
    }

    async fn isolate_endpoint(&self, endpoint_id: &str, incident_id: &str) -> Result<String, XdrError> {
        let reply = self.call_checked("endpoints/isolate", json!({"endpoint_id": endpoint_id, "incident_id": incident_id})).await?;
        reply
            .get("action_id")
            .and_then(|v| v.as_i64().map(|n| n.to_string()).or_else(|| v.as_str().map(str::to_string)))
            .ok_or_else(|| XdrError::BadReply("endpoints/isolate: no action_id in the reply".into()))
    }
}
