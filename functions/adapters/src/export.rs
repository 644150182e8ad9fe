//! Closure exports: the closed case's summary as a ServiceNow record (incident or security
//! incident table) and as an e-mail through Amazon SES.

use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use std::time::Duration;

use crate::http_client::{exchange, NoAnswer, Status};
use dossier_core::domain::Severity;
use dossier_core::ports::{ClosureExport, ClosureRecord, NotifyError};

/// The ServiceNow Table API (https://www.servicenow.com/docs, "Table API"): the record is found
/// by `correlation_id` (the Table API has no idempotency key) and updated with a work note, or
/// created with the summary. `incident` or Security Incident Response's `sn_si_incident`.
pub struct ServiceNowRecord {
    http: reqwest::Client,
    base_url: String,
    authorization: String,
    table: String,
}

impl ServiceNowRecord {
    /// `credentials`: `user:password` (Basic) or `Bearer <token>`; `table`: `incident` or `sn_si_incident`.
    pub fn new(base_url: &str, credentials: &str, table: &str, timeout: Duration) -> Result<ServiceNowRecord, String> {
        if !matches!(table, "incident" | "sn_si_incident") {
            return Err(format!("closure table `{table}`: use incident or sn_si_incident"));
        }
        let authorization =
            if credentials.starts_with("Bearer ") { credentials.to_string() } else { format!("Basic {}", STANDARD.encode(credentials)) };
        Ok(ServiceNowRecord {
            http: crate::http_client::client(timeout),
            base_url: base_url.trim_end_matches('/').to_string(),
            authorization,
            table: table.to_string(),
        })
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Value, NotifyError> {
        let req = req.header("Authorization", &self.authorization).header("Accept", "application/json");
        let reply = exchange(req).await.map_err(|e| match e {
            NoAnswer::NotSent(why) => NotifyError::Retryable(format!("ServiceNow unreachable: {why}")),
            other => NotifyError::Retryable(format!("ServiceNow: {other}")),
        })?;
        let what = || format!("ServiceNow HTTP {}: {}", reply.code, reply.short_body());
        match reply.status {
            // A hibernating developer instance answers its wake-up page with 200 and HTML.
            Status::Success => serde_json::from_str(&reply.body).map_err(|_| NotifyError::Retryable(format!("{} (not JSON)", what()))),
            Status::RateLimited | Status::Server => Err(NotifyError::Retryable(what())),
            _ => Err(NotifyError::Refused(what())),
        }
    }
}

/// ServiceNow impact/urgency (1 high … 3 low) for a case's severity.
fn impact(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "1",
        Severity::Medium => "2",
        _ => "3",
    }
}

#[async_trait]
impl ClosureExport for ServiceNowRecord {
    fn target(&self) -> &str {
        "servicenow"
    }

    async fn export(&self, r: &ClosureRecord) -> Result<String, NotifyError> {
        let table = format!("{}/api/now/table/{}", self.base_url, self.table);
        let correlation = r.correlation_id();
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("sysparm_query", &format!("correlation_id={correlation}"))
            .append_pair("sysparm_limit", "1")
            .append_pair("sysparm_fields", "sys_id,number")
            .finish();
        let found = self.call(self.http.get(format!("{table}?{query}"))).await?;
        let existing = found.pointer("/result/0").cloned();
        let answer = match existing.as_ref().and_then(|e| e.get("sys_id")).and_then(Value::as_str) {
            Some(sys_id) => {
                let body = json!({"work_notes": r.summary, "description": r.summary});
                self.call(self.http.patch(format!("{table}/{sys_id}")).header("Content-Type", "application/json").body(body.to_string()))
                    .await?
            }
            None => {
                let body = json!({
                    "short_description": format!("[Dossier] XDR incident {} closed: {}", r.case.incident_id, r.title.chars().take(120).collect::<String>()),
                    "description": r.summary,
                    "correlation_id": correlation,
                    "correlation_display": "Dossier (Cortex XDR)",
                    "impact": impact(r.severity),
                    "urgency": impact(r.severity),
                    "work_notes": format!("XDR resolution: {}. Summary drafted by Dossier from the case evidence (pending analyst review).", r.resolution),
                });
                self.call(self.http.post(&table).header("Content-Type", "application/json").body(body.to_string())).await?
            }
        };
        let number = answer.pointer("/result/number").and_then(Value::as_str).or_else(|| existing.as_ref()?.get("number")?.as_str());
        Ok(match (number, existing.is_some()) {
            (Some(n), true) => format!("{} {n} updated", self.table),
            (Some(n), false) => format!("{} {n} created", self.table),
            (None, _) => format!("{} record written (no number in the answer)", self.table),
        })
    }
}

/// The closure summary by e-mail (SESv2 `SendEmail`) to configured recipients.
pub struct SesSummary {
    client: aws_sdk_sesv2::Client,
    from: String,
    to: Vec<String>,
}

impl SesSummary {
    pub fn new(client: aws_sdk_sesv2::Client, from: String, to: Vec<String>) -> SesSummary {
        SesSummary { client, from, to }
    }
}

#[async_trait]
impl ClosureExport for SesSummary {
    fn target(&self) -> &str {
        "email"
    }

    async fn export(&self, r: &ClosureRecord) -> Result<String, NotifyError> {
        let content = |s: String| Content::builder().data(s).charset("UTF-8").build().map_err(|e| NotifyError::Refused(e.to_string()));
        let subject = format!("[Dossier] Closure summary: XDR incident {} ({})", r.case.incident_id, r.resolution);
        let message = Message::builder().subject(content(subject)?).body(Body::builder().text(content(r.summary.clone())?).build()).build();
        let result = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().set_to_addresses(Some(self.to.clone())).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(format!("sent to {}", self.to.join(", "))),
            Err(e) => Err(crate::notify::ses_error(e)),
        }
    }
}
