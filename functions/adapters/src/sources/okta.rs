//! Okta: the identity behind an XDR user (status, MFA factors, groups) and its last week of
//! System Log events (failures, threats, session starts and where from).

use async_trait::async_trait;
use serde_json::Value;
use std::time::Duration;

use super::{enc, send, text};
use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::sources::{CallCounter, IndicatorSource, IndicatorVerdict, Lookup, LookupError, VerdictLevel};

pub const NAME: &str = "okta";

#[derive(Clone)]
pub struct Okta {
    http: reqwest::Client,
    base_url: String,
    api_token: String,
    /// How far back the System Log is read.
    pub log_window: Duration,
}

impl Okta {
    /// `base_url`: `https://<org>.okta.com` (the client adds `/api/v1`).
    pub fn new(base_url: &str, api_token: String, timeout: Duration) -> Okta {
        Okta {
            http: crate::http_client::client(timeout),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_token,
            log_window: Duration::from_secs(7 * 86_400),
        }
    }

    async fn get(&self, path: &str, calls: &CallCounter) -> Result<Option<super::Answer>, LookupError> {
        let req = self
            .http
            .get(format!("{}/api/v1{path}", self.base_url))
            .header("Authorization", format!("SSWS {}", self.api_token))
            .header("Accept", "application/json");
        send(req, calls).await
    }
}

/// `CORP\j.doe` → `j.doe` (Okta resolves a login short name); a UPN is used whole.
pub fn login_of(user: &str) -> &str {
    user.rsplit_once('\\').map_or(user, |(_, u)| u)
}

/// Pure; tested on fixtures.
pub fn verdict_from(indicator: &Indicator, user: &Value, factors: &Value, groups: &Value, events: &Value) -> IndicatorVerdict {
    let status = text(user, "/status").unwrap_or_else(|| "UNKNOWN".into());
    let active_factors: Vec<String> = factors
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f.get("status").and_then(Value::as_str) == Some("ACTIVE"))
        .filter_map(|f| f.get("factorType").and_then(Value::as_str).map(str::to_string))
        .collect();
    let group_names: Vec<String> = groups
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.pointer("/profile/name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let events: Vec<&Value> = events.as_array().map(|e| e.iter().collect()).unwrap_or_default();
    let failures =
        events.iter().filter(|e| matches!(e.pointer("/outcome/result").and_then(Value::as_str), Some("FAILURE" | "DENY"))).count();
    let threats = events.iter().filter(|e| e.get("eventType").and_then(Value::as_str) == Some("security.threat.detected")).count();
    let last_ip = events.iter().find_map(|e| text(e, "/client/ipAddress")).unwrap_or_default();
    let last_country = events.iter().find_map(|e| text(e, "/client/geographicalContext/country")).unwrap_or_default();
    let verdict = if threats > 0 || failures >= 10 { VerdictLevel::Suspicious } else { VerdictLevel::Unknown };
    let mfa = if active_factors.is_empty() { "no active MFA factor".to_string() } else { format!("MFA {}", active_factors.join(", ")) };
    let summary = format!(
        "Okta: {status}, {mfa}, {} group(s); last 7 days: {} event(s), {failures} failure(s), {threats} threat(s)",
        group_names.len(),
        events.len()
    );
    IndicatorVerdict::new(indicator, verdict, summary)
        .fact("login", text(user, "/profile/login").unwrap_or_default())
        .fact("status", status)
        .fact("title", text(user, "/profile/title").unwrap_or_default())
        .fact("department", text(user, "/profile/department").unwrap_or_default())
        .fact("manager", text(user, "/profile/manager").unwrap_or_default())
        .fact("last_login", text(user, "/lastLogin").unwrap_or_default())
        .fact("mfa_factors", active_factors.join(", "))
        .fact("groups", group_names.into_iter().take(8).collect::<Vec<_>>().join(", "))
        .fact("failures_7d", failures.to_string())
        .fact("last_ip", last_ip)
        .fact("last_country", last_country)
}

#[async_trait]
impl IndicatorSource for Okta {
    fn name(&self) -> &'static str {
        NAME
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        kind == IndicatorKind::User
    }
    fn sends_externally(&self) -> bool {
        // The organisation's own identity provider.
        false
    }

    async fn lookup(&self, indicator: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        let Some(user) = self.get(&format!("/users/{}", enc(login_of(&indicator.value))), calls).await? else {
            return Ok(Lookup::NotFound);
        };
        let id = text(&user.json, "/id").ok_or_else(|| LookupError::BadReply("Okta user without an id".into()))?;
        let factors = self.get(&format!("/users/{}/factors", enc(&id)), calls).await?.map_or(Value::Null, |a| a.json);
        let groups = self.get(&format!("/users/{}/groups", enc(&id)), calls).await?.map_or(Value::Null, |a| a.json);
        let since = dossier_core::timefmt::format_rfc3339(
            dossier_core::ports::Clock::now_ms(&dossier_core::ports::SystemClock) - i64::try_from(self.log_window.as_millis()).unwrap_or(0),
        );
        let filter = enc(&format!("actor.id eq \"{id}\""));
        let events = self
            .get(&format!("/logs?since={}&filter={filter}&sortOrder=DESCENDING&limit=100", enc(&since)), calls)
            .await?
            .map_or(Value::Null, |a| a.json);
        Ok(Lookup::Found(verdict_from(indicator, &user.json, &factors, &groups, &events).raw(&user.raw)))
    }
}
