//! Telling approvers: Slack (incoming webhook, blocks with the buttons as links), Microsoft Teams
//! (workflow webhook with an Adaptive Card) and e-mail (Amazon SES). The link opens the
//! confirmation page; nothing is decided from the chat client.

use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use serde_json::json;
use std::time::Duration;

use dossier_core::http::escape_html;
use dossier_core::ports::{ApprovalNotice, Notifier, NotifyError};
use dossier_core::timefmt::format_utc;

async fn post(http: &reqwest::Client, url: &str, body: &serde_json::Value) -> Result<(), NotifyError> {
    use crate::http_client::{exchange, Status};
    // Without an answer the message may or may not have arrived: telling an approver twice is
    // the lesser harm than never telling them.
    let reply = exchange(http.post(url).json(body)).await.map_err(|e| NotifyError::Retryable(e.to_string()))?;
    match reply.status {
        Status::Success => Ok(()),
        Status::RateLimited | Status::Server => Err(NotifyError::Retryable(format!("HTTP {} {}", reply.code, reply.short_body()))),
        _ => Err(NotifyError::Refused(format!("HTTP {} {}", reply.code, reply.short_body()))),
    }
}

fn headline(n: &ApprovalNotice) -> String {
    format!("Approval needed: {} on {} (incident {}, {})", n.action, n.target, n.case.incident_id, n.severity)
}

/// A Slack incoming webhook (the URL is the secret).
pub struct SlackWebhook {
    http: reqwest::Client,
    url: String,
}

impl SlackWebhook {
    pub fn new(url: String, timeout: Duration) -> SlackWebhook {
        SlackWebhook { http: crate::http_client::client(timeout), url }
    }

    pub fn message(n: &ApprovalNotice) -> serde_json::Value {
        // Slack mrkdwn: escape &, <, > so alert text cannot inject links or mentions.
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        json!({
            "text": esc(&headline(n)),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*\n{}\n_{}_", esc(&headline(n)), esc(&n.title), esc(&n.rationale))}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("For {} · link expires {}", esc(&n.approver), format_utc(n.expires_at_ms))}]},
                {"type": "actions", "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Review and decide"}, "url": n.url, "style": "primary"}
                ]}
            ]
        })
    }
}

#[async_trait]
impl Notifier for SlackWebhook {
    fn channel(&self) -> &str {
        "slack"
    }
    async fn notify(&self, n: &ApprovalNotice) -> Result<(), NotifyError> {
        post(&self.http, &self.url, &Self::message(n)).await
    }
}

/// Text for an Adaptive Card TextBlock or FactSet value, which render a Markdown subset: every
/// Markdown character escaped (CommonMark backslash escapes) and link schemes defanged, so alert
/// text cannot add a link, an image or emphasis that looks like ours.
fn teams_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars().filter(|c| !c.is_control()) {
        if matches!(c, '\\' | '*' | '_' | '[' | ']' | '(' | ')' | '~' | '#' | '>' | '<' | '`' | '!' | '|') {
            out.push('\\');
        }
        out.push(c);
    }
    out.replace("http://", "hxxp://").replace("https://", "hxxps://").replace("HTTP://", "hxxp://").replace("HTTPS://", "hxxps://")
}

/// A Microsoft Teams workflow webhook ("Post to a channel when a webhook request is received").
pub struct TeamsWebhook {
    http: reqwest::Client,
    url: String,
}

impl TeamsWebhook {
    pub fn new(url: String, timeout: Duration) -> TeamsWebhook {
        TeamsWebhook { http: crate::http_client::client(timeout), url }
    }

    pub fn message(n: &ApprovalNotice) -> serde_json::Value {
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "text": teams_text(&headline(n))},
                        {"type": "TextBlock", "wrap": true, "text": teams_text(&n.title)},
                        {"type": "FactSet", "facts": [
                            {"title": "Why", "value": teams_text(&n.rationale)},
                            {"title": "Approver", "value": teams_text(&n.approver)},
                            {"title": "Expires", "value": format_utc(n.expires_at_ms)}
                        ]}
                    ],
                    "actions": [{"type": "Action.OpenUrl", "title": "Review and decide", "url": n.url}]
                }
            }]
        })
    }
}

#[async_trait]
impl Notifier for TeamsWebhook {
    fn channel(&self) -> &str {
        "teams"
    }
    async fn notify(&self, n: &ApprovalNotice) -> Result<(), NotifyError> {
        post(&self.http, &self.url, &Self::message(n)).await
    }
}

/// E-mail through Amazon SES to approvers whose id is an address.
pub struct SesEmail {
    client: aws_sdk_sesv2::Client,
    from: String,
}

impl SesEmail {
    pub fn new(client: aws_sdk_sesv2::Client, from: String) -> SesEmail {
        SesEmail { client, from }
    }

    pub fn html(n: &ApprovalNotice) -> String {
        format!(
            "<p><strong>{}</strong></p><p>{}</p><p>{}</p><p><a href=\"{}\">Review and decide</a> (expires {})</p>",
            escape_html(&headline(n)),
            escape_html(&n.title),
            escape_html(&n.rationale),
            escape_html(&n.url),
            escape_html(&format_utc(n.expires_at_ms))
        )
    }
}

#[async_trait]
impl Notifier for SesEmail {
    fn channel(&self) -> &str {
        "email"
    }
    async fn notify(&self, n: &ApprovalNotice) -> Result<(), NotifyError> {
        if !n.approver.contains('@') {
            return Err(NotifyError::Refused(format!("approver `{}` is not an e-mail address", n.approver)));
        }
        let content = |s: String| Content::builder().data(s).charset("UTF-8").build().map_err(|e| NotifyError::Refused(e.to_string()));
        let body = Body::builder()
            .html(content(Self::html(n))?)
            .text(content(format!("{}\n{}\n{}\nReview and decide: {}", headline(n), n.title, n.rationale, n.url))?)
            .build();
        let message = Message::builder().subject(content(headline(n))?).body(body).build();
        let result = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(&n.approver).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                use aws_sdk_sesv2::error::ProvideErrorMetadata;
                let code = e.code().unwrap_or("").to_string();
                let msg = format!("{code} {}", e.message().unwrap_or("")).trim().to_string();
                Err(match code.as_str() {
                    "TooManyRequestsException" | "LimitExceededException" | "" => {
                        NotifyError::Retryable(if msg.is_empty() { "SES unreachable".into() } else { msg })
                    }
                    _ => NotifyError::Refused(msg),
                })
            }
        }
    }
}

#[cfg(test)]
mod teams_tests {
    use super::teams_text;

    #[test]
    fn alert_text_cannot_add_links_or_emphasis_to_a_card() {
        let hostile = "[Approve now](https://evil.example/approve) **urgent** ![x](http://t/i.png) <at>CISO</at>";
        let shown = teams_text(hostile);
        assert_eq!(shown, r"\[Approve now\]\(hxxps://evil.example/approve\) \*\*urgent\*\* \!\[x\]\(hxxp://t/i.png\) \<at\>CISO\</at\>");
        assert_eq!(teams_text("isolate fin-ws-0231"), "isolate fin-ws-0231");
    }
}
