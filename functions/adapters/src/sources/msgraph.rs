//! Microsoft Graph / Entra ID: the identity behind an XDR user (enabled, job, department,
//! sign-in activity), its groups, recent sign-ins and Identity Protection risk state.
//! Client-credentials token, cached until shortly before it expires.

use async_trait::async_trait;
use serde_json::Value;
use std::time::Duration;

use super::entra::AppToken;
use super::{enc, send, text};
use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::sources::{CallCounter, IndicatorSource, IndicatorVerdict, Lookup, LookupError, VerdictLevel};

pub const NAME: &str = "msgraph";
pub const DEFAULT_BASE_URL: &str = "https://graph.microsoft.com/v1.0";

/// The secret: `{"tenant_id", "client_id", "client_secret"[, "token_url"]}`.
pub type GraphCredentials = super::entra::AppCredentials;

pub struct MsGraph {
    http: reqwest::Client,
    base_url: String,
    token: AppToken,
    /// UPN suffix for `DOMAIN\user` names (`corp.example.com` → `user@corp.example.com`).
    pub upn_suffix: Option<String>,
}

impl MsGraph {
    pub fn new(base_url: &str, creds: GraphCredentials, timeout: Duration) -> MsGraph {
        let http = crate::http_client::client(timeout);
        MsGraph {
            token: AppToken::new(http.clone(), creds, "https://graph.microsoft.com/.default"),
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            upn_suffix: None,
        }
    }

    pub async fn token(&self, calls: &CallCounter) -> Result<String, LookupError> {
        self.token.get(calls).await
    }

    async fn get(&self, path: &str, token: &str, calls: &CallCounter) -> Result<Option<super::Answer>, LookupError> {
        send(self.http.get(format!("{}{path}", self.base_url)).bearer_auth(token).header("Accept", "application/json"), calls).await
    }

    /// A query Graph serves only with its advanced query parameters: `$count=true` and
    /// `ConsistencyLevel: eventual` (https://learn.microsoft.com/graph/aad-advanced-queries) —
    /// filters on `onPremisesSamAccountName`, OData casts such as `memberOf/microsoft.graph.group`.
    async fn get_advanced(&self, path: &str, token: &str, calls: &CallCounter) -> Result<Option<super::Answer>, LookupError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let req = self
            .http
            .get(format!("{}{path}{sep}$count=true", self.base_url))
            .bearer_auth(token)
            .header("Accept", "application/json")
            .header("ConsistencyLevel", "eventual");
        send(req, calls).await
    }

    /// The user path segment for an XDR user name.
    pub fn user_ref(&self, user: &str) -> Option<String> {
        if user.contains('@') {
            return Some(user.to_string());
        }
        let sam = user.rsplit_once('\\').map_or(user, |(_, u)| u);
        self.upn_suffix.as_ref().map(|s| format!("{sam}@{s}"))
    }
}

/// Pure; tested on fixtures.
pub fn verdict_from(
    indicator: &Indicator,
    user: &Value,
    member_of: &Value,
    sign_ins: &Value,
    risky: Option<&Value>,
    detections: Option<&Value>,
) -> IndicatorVerdict {
    let detection_types: Vec<String> = detections
        .and_then(|d| d.get("value"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| {
            let kind = text(d, "/riskEventType")?;
            Some(format!("{kind} ({})", text(d, "/riskLevel").unwrap_or_default()))
        })
        .take(5)
        .collect();
    let risk_level = risky.and_then(|r| text(r, "/riskLevel")).unwrap_or_else(|| "none".into());
    let risk_state = risky.and_then(|r| text(r, "/riskState")).unwrap_or_else(|| "none".into());
    let verdict = match (risk_state.as_str(), risk_level.as_str()) {
        ("confirmedCompromised", _) => VerdictLevel::Malicious,
        ("atRisk", _) | (_, "high" | "medium") => VerdictLevel::Suspicious,
        _ => VerdictLevel::Unknown,
    };
    let groups: Vec<String> =
        member_of.get("value").and_then(Value::as_array).into_iter().flatten().filter_map(|g| text(g, "/displayName")).collect();
    let sign_ins: Vec<&Value> = sign_ins.get("value").and_then(Value::as_array).map(|v| v.iter().collect()).unwrap_or_default();
    let failed = sign_ins.iter().filter(|s| s.pointer("/status/errorCode").and_then(Value::as_i64).is_some_and(|c| c != 0)).count();
    let enabled = user.get("accountEnabled").and_then(Value::as_bool);
    let summary = format!(
        "Entra ID: {}{}, risk {risk_level} ({risk_state}), {} group(s), {} recent sign-in(s), {failed} failed",
        text(user, "/userPrincipalName").unwrap_or_default(),
        match enabled {
            Some(false) => " (disabled)",
            _ => "",
        },
        groups.len(),
        sign_ins.len()
    );
    IndicatorVerdict::new(indicator, verdict, summary)
        .fact("upn", text(user, "/userPrincipalName").unwrap_or_default())
        .fact("display_name", text(user, "/displayName").unwrap_or_default())
        .fact("job_title", text(user, "/jobTitle").unwrap_or_default())
        .fact("department", text(user, "/department").unwrap_or_default())
        .fact("account_enabled", enabled.map(|e| e.to_string()).unwrap_or_default())
        .fact("last_sign_in", text(user, "/signInActivity/lastSignInDateTime").unwrap_or_default())
        .fact("risk_level", risk_level)
        .fact("risk_state", risk_state)
        .fact("groups", groups.into_iter().take(8).collect::<Vec<_>>().join(", "))
        .fact("last_sign_in_ip", sign_ins.first().and_then(|s| text(s, "/ipAddress")).unwrap_or_default())
        .fact("risk_detections", detection_types.join(", "))
}

#[async_trait]
impl IndicatorSource for MsGraph {
    fn name(&self) -> &'static str {
        NAME
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        kind == IndicatorKind::User
    }
    fn sends_externally(&self) -> bool {
        // The organisation's own directory.
        false
    }

    async fn lookup(&self, indicator: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        let token = self.token(calls).await?;
        // `signInActivity` is refused on `/users/{UPN}` (it needs the object id) and answers 403
        // without Entra ID P1 / AuditLog.Read.All: it is read on its own below.
        let select = "id,displayName,userPrincipalName,mail,jobTitle,department,accountEnabled,createdDateTime,onPremisesSamAccountName";
        let user = match self.user_ref(&indicator.value) {
            Some(upn) => self.get(&format!("/users/{}?$select={select}", enc(&upn)), &token, calls).await?.map(|a| a.json),
            None => {
                // No UPN suffix configured: find the account by its on-premises SAM name.
                let sam = indicator.value.rsplit_once('\\').map_or(indicator.value.as_str(), |(_, u)| u).replace('\'', "''");
                let filter = enc(&format!("onPremisesSamAccountName eq '{sam}'"));
                self.get_advanced(&format!("/users?$filter={filter}&$select={select}"), &token, calls)
                    .await?
                    .and_then(|a| a.json.pointer("/value/0").cloned())
            }
        };
        let Some(mut user) = user else { return Ok(Lookup::NotFound) };
        let Some(id) = text(&user, "/id") else { return Ok(Lookup::NotFound) };
        let activity = self
            .get(
                &format!("/users?$filter={}&$select=id,signInActivity", enc(&format!("id eq '{}'", id.replace('\'', "''")))),
                &token,
                calls,
            )
            .await;
        match activity {
            Ok(a) => {
                if let Some(last) = a.and_then(|a| a.json.pointer("/value/0/signInActivity").cloned()) {
                    user["signInActivity"] = last;
                }
            }
            // No P1 licence or no AuditLog.Read.All: the rest of the record still stands.
            Err(LookupError::Unauthorized(_)) => {}
            Err(e) => return Err(e),
        }
        let upn = text(&user, "/userPrincipalName").unwrap_or_default().replace('\'', "''");
        let member_of = self
            .get_advanced(&format!("/users/{}/memberOf/microsoft.graph.group?$select=id,displayName", enc(&id)), &token, calls)
            .await?
            .map_or(Value::Null, |a| a.json);
        // Sign-in logs need Entra ID P1, risk needs P2: a 403 there is a missing licence, not a failure.
        let sign_ins = match self
            .get(&format!("/auditLogs/signIns?$filter={}&$top=20", enc(&format!("userPrincipalName eq '{upn}'"))), &token, calls)
            .await
        {
            Ok(a) => a.map_or(Value::Null, |a| a.json),
            Err(LookupError::Unauthorized(_)) => Value::Null,
            Err(e) => return Err(e),
        };
        let risky = match self.get(&format!("/identityProtection/riskyUsers/{}", enc(&id)), &token, calls).await {
            Ok(a) => a.map(|a| a.json),
            Err(LookupError::Unauthorized(_)) => None,
            Err(e) => return Err(e),
        };
        // Detections explain a risk level; read them only when there is one.
        let at_risk = risky.as_ref().and_then(|r| text(r, "/riskLevel")).is_some_and(|l| !matches!(l.as_str(), "none" | "hidden"));
        let detections = if at_risk {
            match self
                .get(&format!("/identityProtection/riskDetections?$filter={}&$top=10", enc(&format!("userId eq '{id}'"))), &token, calls)
                .await
            {
                Ok(a) => a.map(|a| a.json),
                Err(LookupError::Unauthorized(_)) => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        Ok(Lookup::Found(verdict_from(indicator, &user, &member_of, &sign_ins, risky.as_ref(), detections.as_ref()).raw(&user.to_string())))
    }
}
