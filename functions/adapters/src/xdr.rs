//! `XdrApi` over Cortex XDR's public REST API (3.x incidents). Keys come from a secret:
//! `{"api_key": "...", "api_key_id": "42", "auth": "standard" | "advanced"}`.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

use dossier_core::domain::Severity;
use dossier_core::ports::{IncidentRef, XdrApi, XdrError};
use dossier_core::timefmt::normalise_epoch;
use dossier_core::xdr::{check_error_envelope, scalar, PayloadError};

use crate::http_client::{NoAnswer, Status};

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

    /// 5.x has no `get_incident_extra_data`: the case (`case/search`), its issues (`issue/search`)
    /// and its artifacts (`GET case/artifacts/{id}/`) are composed into the 3.x reply shape, so
    /// the rest of Dossier reads one format. Issue fields are mapped from their `xdm.*` names.
    async fn case_as_extra_data(&self, case_id: &str) -> Result<String, XdrError> {
        let id_value = case_id.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(case_id));
        let body = self
            .read(
                "case/search",
                json!({"filters": [{"field": "case_id", "operator": "in", "value": [id_value]}], "search_from": 0, "search_to": 1}),
            )
            .await?;
        let reply = reply_of(&body, "case/search")?;
        let case = reply.pointer("/DATA/0").cloned().ok_or_else(|| XdrError::NotFound(format!("case {case_id}")))?;
        let issue_ids: Vec<Value> = case.get("issue_ids").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut alerts = Vec::new();
        // Pages of 100, as every documented XDR list call pages; `include_fields` names the
        // normalised (`xdm.*`) fields the mapping reads (the documented default, `[]`, returns none).
        for chunk in issue_ids.chunks(PAGE) {
            let body = self
                .read(
                    "issue/search",
                    json!({
                        "filters": [{"field": "id", "operator": "in", "value": chunk}],
                        "search_from": 0, "search_to": chunk.len(),
                        "include_fields": ["normalized_fields"]
                    }),
                )
                .await?;
            let issues = reply_of(&body, "issue/search")?;
            // The reference names `DATA`, the published examples answer under `issues`, clients
            // tested on tenants read `data` as well: read any.
            alerts.extend(
                issues
                    .get("DATA")
                    .or_else(|| issues.get("issues"))
                    .or_else(|| issues.get("data"))
                    .and_then(Value::as_array)
                    .map(|d| d.iter().map(issue_as_alert).collect::<Vec<_>>())
                    .unwrap_or_default(),
            );
        }
        let artifacts = self
            .get_raw(&format!("case/artifacts/{case_id}/"))
            .await
            .ok()
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .unwrap_or(Value::Null);
        let (network, files) = case_artifacts(&artifacts);
        let incident = json!({
            "incident_id": case_id,
            "incident_name": case.get("case_name"),
            "description": case.get("description").or_else(|| case.get("case_name")),
            "severity": case.get("user_severity").filter(|v| !v.is_null()).or_else(|| case.get("severity")),
            "status": case.get("status_progress"),
            "creation_time": case.get("creation_time"),
            "xdr_url": case.get("xdr_url"),
            "hosts": case.get("hosts"),
            "users": case.get("users"),
        });
        Ok(json!({"reply": {
            "incident": incident,
            "alerts": {"total_count": alerts.len(), "data": alerts},
            "network_artifacts": {"total_count": network.len(), "data": network},
            "file_artifacts": {"total_count": files.len(), "data": files},
        }})
        .to_string())
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

    /// `xql/start_xql_query`: the execution id. A fifth parallel query is refused by XDR and
    /// reported as a rate limit.
    pub async fn start_xql_query(&self, query: &str, relative_time_ms: i64) -> Result<String, XdrError> {
        let body = self
            .call("xql/start_xql_query", json!({"query": query, "timeframe": {"relativeTime": relative_time_ms}}))
            .await
            .map_err(|e| match e {
                XdrError::BadReply(m) | XdrError::Server(m) if m.contains("parallel running queries") => XdrError::RateLimited(m),
                other => other,
            })?;
        let reply = reply_of(&body, "xql/start_xql_query")?;
        reply.as_str().map(str::to_string).ok_or_else(|| XdrError::BadReply("start_xql_query: the reply is not an execution id".into()))
    }

    /// One `xql/get_query_results` call: the outcome, or `None` while the query is PENDING.
    pub async fn xql_status(&self, query_id: &str) -> Result<Option<XqlOutcome>, XdrError> {
        let body = self
            .read("xql/get_query_results", json!({"query_id": query_id, "pending_flag": true, "limit": 1000, "format": "json"}))
            .await?;
        let reply = reply_of(&body, "xql/get_query_results")?;
        Ok(match reply.get("status").and_then(Value::as_str).unwrap_or("") {
            "PENDING" => None,
            // PARTIAL_SUCCESS: some tenants or datasets answered, the rest did not — the rows
            // that came are still evidence.
            "SUCCESS" | "PARTIAL_SUCCESS" => {
                let results = reply.get("results").cloned().unwrap_or(Value::Null);
                Some(match results.get("stream_id").and_then(Value::as_str) {
                    Some(stream) => XqlOutcome::Stream(stream.to_string()),
                    None => XqlOutcome::Rows(results.get("data").and_then(Value::as_array).cloned().unwrap_or_default()),
                })
            }
            other => Some(XqlOutcome::Failed(format!("status {other}"))),
        })
    }

    /// `xql/get_query_results_stream`: newline-delimited JSON rows (requested uncompressed).
    pub async fn get_query_results_stream(&self, stream_id: &str) -> Result<Vec<Value>, XdrError> {
        let body = self.read("xql/get_query_results_stream", json!({"stream_id": stream_id, "is_gzip_compressed": false})).await?;
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| XdrError::BadReply(format!("stream row not JSON: {e}"))))
            .collect()
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

    async fn list_v5(&self, from_ms: i64, to_ms: i64) -> Result<Vec<IncidentRef>, XdrError> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let body = self
                .read(
                    "case/search",
                    json!({
                        // `last_update_time` is a documented case/search filter field; the sort
                        // fields are `case_id`, `severity`, `creation_time`: every page of the
                        // window is read, so the order only has to be stable.
                        "filters": [
                            {"field": "last_update_time", "operator": "gte", "value": from_ms},
                            {"field": "last_update_time", "operator": "lte", "value": to_ms}
                        ],
                        "search_from": offset, "search_to": offset + PAGE,
                        "sort": {"field": "case_id", "keyword": "asc"}
                    }),
                )
                .await?;
            let reply = reply_of(&body, "case/search")?;
            let page =
                reply.get("DATA").and_then(Value::as_array).ok_or_else(|| XdrError::BadReply("case/search: no `DATA` array".into()))?;
            out.extend(page.iter().filter_map(|c| {
                incident_ref(c, "case_id", &["status_progress", "status"], &["user_severity", "severity"], &["case_name", "description"])
            }));
            offset += page.len();
            // Practitioners report FILTER_COUNT, not TOTAL_COUNT, as the count to page against.
            let total =
                reply.get("FILTER_COUNT").or_else(|| reply.get("TOTAL_COUNT")).and_then(Value::as_u64).map_or(usize::MAX, |t| t as usize);
            if page.len() < PAGE || offset >= total.min(MAX_LISTED) {
                return Ok(out);
            }
        }
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

/// What `xql/get_query_results` answered.
#[derive(Clone, Debug, PartialEq)]
pub enum XqlOutcome {
    Rows(Vec<Value>),
    /// More than 1,000 rows: read them with `get_query_results_stream`.
    Stream(String),
    Failed(String),
}

/// A 5.x issue row as a 3.x alert: known `xdm.*` fields are mapped to the alert field names the
/// extractor reads; other scalar fields pass through under their own names.
/// The artifacts of `GET case/artifacts/{id}/`: per the reference `{"reply": {"DATA":
/// [CaseArtifact]}}`, per clients tested on tenants a bare array of `CaseArtifact` — each
/// `{case_id, network_artifacts: {DATA}, file_artifacts: {DATA}}` — and, from older mocks, a flat
/// list of typed artifacts. Any of them: (network, files).
fn case_artifacts(body: &Value) -> (Vec<Value>, Vec<Value>) {
    let list = body
        .as_array()
        .cloned()
        .or_else(|| body.pointer("/reply/DATA").and_then(Value::as_array).cloned())
        .or_else(|| body.get("reply").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    let rows = |v: Option<&Value>| -> Vec<Value> {
        v.and_then(|g| g.get("DATA").or_else(|| g.get("data")).and_then(Value::as_array).cloned()).unwrap_or_default()
    };
    let (mut network, mut files) = (Vec::new(), Vec::new());
    for item in list {
        if item.get("network_artifacts").is_some() || item.get("file_artifacts").is_some() {
            network.extend(rows(item.get("network_artifacts")));
            files.extend(rows(item.get("file_artifacts")));
        } else if item.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("ip") || t.eq_ignore_ascii_case("domain"))
        {
            network.push(item);
        } else {
            files.push(item);
        }
    }
    (network, files)
}

fn issue_as_alert(issue: &Value) -> Value {
    const XDM: &[(&str, &str)] = &[
        ("xdm.source.host.hostname", "host_name"),
        ("xdm.source.host.ipv4_addresses", "host_ip"),
        ("xdm.source.ipv4", "action_local_ip"),
        ("xdm.target.ipv4", "action_remote_ip"),
        ("xdm.target.domain", "action_external_hostname"),
        ("xdm.domain", "action_external_hostname"),
        ("xdm.network.dns.dns_question.name", "dns_query_name"),
        ("xdm.source.user.username", "user_name"),
        ("xdm.source.identity.username", "user_name"),
        ("xdm.source.process.name", "actor_process_image_name"),
        ("xdm.source.process.command_line", "actor_process_command_line"),
        ("xdm.source.process.executable.sha256", "actor_process_image_sha256"),
        ("xdm.target.file.sha256", "action_file_sha256"),
        ("xdm.target.file.md5", "action_file_md5"),
        ("xdm.target.url", "action_url"),
    ];
    let mut alert = serde_json::Map::new();
    if let Some(obj) = issue.as_object() {
        for (k, v) in obj {
            if !v.is_object() {
                alert.insert(k.replace('.', "_"), v.clone());
            }
        }
    }
    // `id` in the reference's example, `issue_id` on the documentation page's.
    alert.insert("alert_id".into(), issue.get("id").or_else(|| issue.get("issue_id")).cloned().unwrap_or(Value::Null));
    if let Some(name) = issue.get("name").or_else(|| issue.get("issue_name")) {
        alert.insert("name".into(), name.clone());
    }
    if let Some(normalized) = issue.get("normalized_fields").and_then(Value::as_object) {
        for (xdm, field) in XDM {
            // Some normalised fields are lists (`xdm.target.ipv4`): an alert field holds one value.
            let value = match normalized.get(*xdm) {
                Some(Value::Array(list)) if *field != "host_ip" => list.first().cloned(),
                other => other.cloned(),
            };
            if let Some(v) = value.filter(|v| !v.is_null()) {
                alert.insert((*field).to_string(), v);
            }
        }
    }
    Value::Object(alert)
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
