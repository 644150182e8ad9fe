//! Microsoft Sentinel history through the Log Analytics query API
//! (https://learn.microsoft.com/azure/azure-monitor/logs/api/request-format, response-format,
//! errors): the same question as the XDR and Splunk histories as a versioned KQL template over
//! the Sentinel tables (SecurityEvent 4688/4625, DeviceProcessEvents, DeviceNetworkEvents,
//! SigninLogs). `union isfuzzy=true` so a workspace without one of the tables still answers. A
//! 200 carrying `error.code = PartialError` is read as far as it goes and says so. Token: Entra
//! client credentials for `https://api.loganalytics.io/.default`.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::Duration;

use super::entra::{AppCredentials, AppToken};
use super::{send, text};
use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::sources::history::{history_verdict, is_history_entity};
use dossier_core::sources::{CallCounter, IndicatorSource, Lookup, LookupError};

pub const NAME: &str = "sentinel";
pub const DEFAULT_BASE_URL: &str = "https://api.loganalytics.azure.com/v1";
pub const TEMPLATES_VERSION: &str = "kql-history-v1";
const SCOPE: &str = "https://api.loganalytics.io/.default";

/// The secret: the app's credentials and the workspace id.
#[derive(Clone, Deserialize)]
pub struct SentinelCredentials {
    #[serde(flatten)]
    pub app: AppCredentials,
    pub workspace_id: String,
}

/// A KQL string literal: backslash and quote escaped, control characters dropped.
pub fn kql_quote(s: &str) -> String {
    let clean: String = s.chars().filter(|c| !c.is_control()).collect();
    format!("\"{}\"", clean.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Template v1: one row per event type with 7-day and 24-hour counts and failed logons.
pub fn history_query(indicator: &Indicator) -> Option<String> {
    let v = kql_quote(&indicator.value);
    let (security, process, network, signin) = match indicator.kind {
        IndicatorKind::Hostname => (
            format!("Computer =~ {v} or Computer startswith strcat({v}, \".\")"),
            Some(format!("DeviceName =~ {v} or DeviceName startswith strcat({v}, \".\")")),
            Some(format!("DeviceName =~ {v} or DeviceName startswith strcat({v}, \".\")")),
            None,
        ),
        IndicatorKind::User => (
            format!("Account =~ {v} or TargetUserName =~ {v} or Account endswith strcat(\"\\\\\", {v})"),
            Some(format!("AccountName =~ {v}")),
            None,
            Some(format!("UserPrincipalName =~ {v} or UserPrincipalName startswith strcat({v}, \"@\")")),
        ),
        IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => {
            (format!("IpAddress == {v}"), None, Some(format!("RemoteIP == {v} or LocalIP == {v}")), Some(format!("IPAddress == {v}")))
        }
        _ => return None,
    };
    let mut parts = vec![format!(
        "(SecurityEvent | where TimeGenerated > ago(7d) and ({security}) \
         | extend event_type = iff(EventID == 4688, \"PROCESS\", \"EVENT_LOG\"), failed = iff(EventID == 4625, 1, 0))"
    )];
    if let Some(p) = process {
        parts
            .push(format!("(DeviceProcessEvents | where TimeGenerated > ago(7d) and ({p}) | extend event_type = \"PROCESS\", failed = 0)"));
    }
    if let Some(n) = network {
        parts
            .push(format!("(DeviceNetworkEvents | where TimeGenerated > ago(7d) and ({n}) | extend event_type = \"NETWORK\", failed = 0)"));
    }
    if let Some(s) = signin {
        parts.push(format!(
            "(SigninLogs | where TimeGenerated > ago(7d) and ({s}) | extend event_type = \"SIGN_IN\", failed = iff(ResultType != \"0\", 1, 0))"
        ));
    }
    Some(format!(
        "union isfuzzy=true {} \
         | extend recent = iff(TimeGenerated > ago(24h), 1, 0) \
         | summarize events = count(), failed_logons = sum(failed), events_24h = sum(recent), failed_logons_24h = sum(recent * failed) by event_type",
        parts.join(", ")
    ))
}

/// The first table's rows as objects keyed by column name, and a partial error's message.
pub fn rows_from(body: &Value) -> Result<(Vec<Value>, Option<String>), LookupError> {
    let partial = match body.get("error") {
        Some(e) if text(e, "/code").as_deref() == Some("PartialError") => {
            Some(text(e, "/message").unwrap_or_else(|| "partial results".into()))
        }
        Some(e) => return Err(LookupError::BadReply(format!("query failed: {}", text(e, "/message").unwrap_or_else(|| e.to_string())))),
        None => None,
    };
    let table = body.pointer("/tables/0").ok_or_else(|| LookupError::BadReply("no `tables` in the answer".into()))?;
    let columns: Vec<String> = table
        .get("columns")
        .and_then(Value::as_array)
        .ok_or_else(|| LookupError::BadReply("no `columns`".into()))?
        .iter()
        .map(|c| text(c, "/name").unwrap_or_default())
        .collect();
    let rows = table
        .get("rows")
        .and_then(Value::as_array)
        .ok_or_else(|| LookupError::BadReply("no `rows`".into()))?
        .iter()
        .map(|r| {
            let cells = r.as_array().cloned().unwrap_or_default();
            Value::Object(columns.iter().cloned().zip(cells).collect::<Map<String, Value>>())
        })
        .collect();
    Ok((rows, partial))
}

pub struct Sentinel {
    http: reqwest::Client,
    base_url: String,
    workspace_id: String,
    token: AppToken,
}

impl Sentinel {
    pub fn new(base_url: &str, creds: SentinelCredentials, timeout: Duration) -> Sentinel {
        let http = crate::http_client::client(timeout);
        Sentinel {
            token: AppToken::new(http.clone(), creds.app, SCOPE),
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            workspace_id: creds.workspace_id,
        }
    }
}

#[async_trait]
impl IndicatorSource for Sentinel {
    fn name(&self) -> &'static str {
        NAME
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        is_history_entity(kind)
    }
    fn sends_externally(&self) -> bool {
        // The organisation's own workspace.
        false
    }

    async fn lookup(&self, indicator: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        let Some(query) = history_query(indicator) else { return Ok(Lookup::NotFound) };
        let token = self.token.get(calls).await?;
        let url = format!("{}/workspaces/{}/query", self.base_url, super::enc(&self.workspace_id));
        let req = self
            .http
            .post(url)
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            // The lookup's own timeout ends it sooner; the server stops at the same point.
            .header("Prefer", "wait=30")
            .body(json!({"query": query, "timespan": "P7D"}).to_string());
        let answer = match send(req, calls).await {
            Err(e @ LookupError::Unauthorized(_)) => {
                self.token.forget().await;
                return Err(e);
            }
            other => other?.ok_or_else(|| LookupError::BadReply("workspace query path not found (PathNotFoundError)".into()))?,
        };
        // An empty body: a request the API could not read (200), or a workspace without data
        // (204) — either way no answer about the entity.
        if answer.json.is_null() {
            return Err(LookupError::BadReply("empty answer".into()));
        }
        let (rows, partial) = rows_from(&answer.json)?;
        let verdict = history_verdict(indicator, &rows, "Sentinel", TEMPLATES_VERSION, &query);
        Ok(match (verdict, partial) {
            (Some(v), Some(p)) => Lookup::Found(v.fact("partial", p)),
            (Some(v), None) => Lookup::Found(v),
            (None, _) => Lookup::NotFound,
        })
    }
}
