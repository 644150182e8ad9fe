//! XDR data lake history through XQL: what the same host, user or IP did over the last 24 hours
//! and 7 days (process starts, network connections, failed logins). The queries are versioned
//! templates; values are quoted, never spliced raw.

use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

use crate::xdr::XdrHttp;
use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::ports::XdrError;
use dossier_core::sources::{CallCounter, IndicatorSource, IndicatorVerdict, Lookup, LookupError, VerdictLevel};
use dossier_core::xql::xql_quote;

/// Named `xdr` as its configuration (`DOSSIER_XDR_URL` / `DOSSIER_XDR_KEY`).
pub const NAME: &str = "xdr";
pub const TEMPLATES_VERSION: &str = "xql-history-v1";

/// The filter that selects an entity's events.
fn entity_filter(indicator: &Indicator) -> Option<String> {
    let v = xql_quote(&indicator.value);
    Some(match indicator.kind {
        IndicatorKind::Hostname => format!("agent_hostname = {v}"),
        IndicatorKind::User => format!("actor_effective_username = {v}"),
        IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => format!("action_remote_ip = {v} or action_local_ip = {v}"),
        _ => return None,
    })
}

/// Template v1: events by type, with failed logons (4625) counted alongside.
pub fn history_query(indicator: &Indicator) -> Option<String> {
    Some(format!(
        "dataset = xdr_data | filter {} | alter failed_logon = if(action_evtlog_event_id = 4625, 1, 0) | comp count() as events, sum(failed_logon) as failed_logons by event_type | limit 50",
        entity_filter(indicator)?
    ))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    pub processes: u64,
    pub network: u64,
    pub failed_logons: u64,
    pub total: u64,
}

/// Sums the rows of one template run. Pure; tested.
pub fn activity(rows: &[Value]) -> Activity {
    let mut a = Activity::default();
    for r in rows {
        let n = r.get("events").and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))).unwrap_or(0);
        let failed = r.get("failed_logons").and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64))).unwrap_or(0);
        a.total += n;
        a.failed_logons += failed;
        match r.get("event_type").and_then(Value::as_str).unwrap_or("").to_ascii_uppercase().as_str() {
            t if t.contains("PROCESS") => a.processes += n,
            t if t.contains("NETWORK") => a.network += n,
            _ => {}
        }
    }
    a
}

pub struct XqlHistory {
    xdr: Arc<XdrHttp>,
    pub poll_every: Duration,
    pub max_polls: u32,
}

impl XqlHistory {
    pub fn new(xdr: Arc<XdrHttp>) -> XqlHistory {
        XqlHistory { xdr, poll_every: Duration::from_secs(2), max_polls: 10 }
    }

    async fn run(&self, query: &str, window: Duration, calls: &CallCounter) -> Result<Activity, LookupError> {
        let before = self.xdr.requests_sent();
        let result = self.xdr.run_xql(query, i64::try_from(window.as_millis()).unwrap_or(i64::MAX), self.poll_every, self.max_polls).await;
        calls.add(u32::try_from(self.xdr.requests_sent().saturating_sub(before)).unwrap_or(u32::MAX));
        result.map(|rows| activity(&rows)).map_err(|e| match e {
            XdrError::RateLimited(_) => LookupError::RateLimited { retry_after: Some(Duration::from_secs(30)) },
            XdrError::Unauthorized(m) | XdrError::Forbidden(m) | XdrError::NoLicence(m) => LookupError::Unauthorized(m),
            XdrError::Transport(m) => LookupError::Transport(m),
            XdrError::Server(m) => LookupError::Server(m),
            other => LookupError::BadReply(other.to_string()),
        })
    }
}

#[async_trait]
impl IndicatorSource for XqlHistory {
    fn name(&self) -> &'static str {
        NAME
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        matches!(kind, IndicatorKind::Hostname | IndicatorKind::User | IndicatorKind::Ipv4 | IndicatorKind::Ipv6)
    }
    fn sends_externally(&self) -> bool {
        // The tenant's own data lake.
        false
    }

    async fn lookup(&self, indicator: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        let Some(query) = history_query(indicator) else { return Ok(Lookup::NotFound) };
        let day = self.run(&query, Duration::from_secs(86_400), calls).await?;
        let week = self.run(&query, Duration::from_secs(7 * 86_400), calls).await?;
        if week.total == 0 {
            return Ok(Lookup::NotFound);
        }
        let verdict = if day.failed_logons >= 10 { VerdictLevel::Suspicious } else { VerdictLevel::Unknown };
        let summary = format!(
            "XDR history: 24h {} events ({} process, {} network, {} failed logons); 7d {} events ({} failed logons)",
            day.total, day.processes, day.network, day.failed_logons, week.total, week.failed_logons
        );
        Ok(Lookup::Found(
            IndicatorVerdict::new(indicator, verdict, summary)
                .fact("events_24h", day.total.to_string())
                .fact("process_starts_24h", day.processes.to_string())
                .fact("network_connections_24h", day.network.to_string())
                .fact("failed_logons_24h", day.failed_logons.to_string())
                .fact("events_7d", week.total.to_string())
                .fact("failed_logons_7d", week.failed_logons.to_string())
                .fact("templates", TEMPLATES_VERSION)
                .fact("query", query),
        ))
    }
}
