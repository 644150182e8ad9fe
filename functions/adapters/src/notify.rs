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

/// Sends a notification request: the answer's body on 2xx; 429 and 5xx (and no answer) come
/// back to be retried, other refusals do not.
async fn deliver(req: reqwest::RequestBuilder) -> Result<String, NotifyError> {
    use crate::http_client::{exchange, Status};
    // Without an answer the message may or may not have arrived: telling an approver twice is
    // the lesser harm than never telling them.
    let reply = exchange(req).await.map_err(|e| NotifyError::Retryable(e.to_string()))?;
    match reply.status {
        Status::Success => Ok(reply.body),
        Status::RateLimited | Status::Server => Err(NotifyError::Retryable(format!("HTTP {} {}", reply.code, reply.short_body()))),
        _ => Err(NotifyError::Refused(format!("HTTP {} {}", reply.code, reply.short_body()))),
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &serde_json::Value) -> Result<(), NotifyError> {
    deliver(http.post(url).json(body)).await.map(drop)
}

/// Slack blocks for a notice: the button only when the notice carries a link.
fn slack_message(n: &ApprovalNotice) -> serde_json::Value {
    // Slack mrkdwn: escape &, <, > so alert text cannot inject links or mentions.
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*\n{}\n_{}_", esc(&headline(n)), esc(&n.title), esc(&n.rationale))}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("{} · {}", esc(&for_whom(n)), format_utc(n.expires_at_ms))}]}),
    ];
    if let Some(url) = &n.url {
        blocks.push(json!({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Review and decide"}, "url": url, "style": "primary"}
        ]}));
    }
    json!({"text": esc(&headline(n)), "blocks": blocks})
}

/// Who the notice is for, and where the link went.
fn for_whom(n: &ApprovalNotice) -> String {
    match n.url {
        Some(_) => format!("For {} · link expires", n.approver),
        None => format!("For {} · each received their own link personally · decide by", n.approver),
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
        slack_message(n)
    }
}

#[async_trait]
impl Notifier for SlackWebhook {
    fn channel(&self) -> &str {
        "slack"
    }
    fn personal(&self) -> bool {
        false
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
                            {"title": "Link", "value": if n.url.is_some() { "below" } else { "sent to each approver personally" }},
                            {"title": "Expires", "value": format_utc(n.expires_at_ms)}
                        ]}
                    ],
                    "actions": n.url.iter().map(|url| json!({"type": "Action.OpenUrl", "title": "Review and decide", "url": url})).collect::<Vec<_>>()
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
    fn personal(&self) -> bool {
        false
    }
    async fn notify(&self, n: &ApprovalNotice) -> Result<(), NotifyError> {
        post(&self.http, &self.url, &Self::message(n)).await
    }
}

/// A Slack direct message from the Dossier app's bot to each approver: `users.lookupByEmail`
/// (scope `users:read.email`) finds the approver's Slack user, `chat.postMessage` (scope
/// `chat:write`) with the user id as channel opens the DM. Slack answers HTTP 200 with
/// `{"ok": false, "error": ...}` for refusals and HTTP 429 with `Retry-After` when rate limited
/// (https://api.slack.com/methods/users.lookupByEmail, https://api.slack.com/methods/chat.postMessage).
pub const SLACK_API: &str = "https://slack.com/api";

pub struct SlackDirect {
    http: reqwest::Client,
    api: String,
    token: String,
}

impl SlackDirect {
    /// `api` is `https://slack.com/api` (a local fake in tests); `token` the bot token (`xoxb-`).
    pub fn new(api: &str, token: String, timeout: Duration) -> SlackDirect {
        SlackDirect { http: crate::http_client::client(timeout), api: api.trim_end_matches('/').to_string(), token }
    }

    /// A Slack Web API call: the answer's body when `ok` is true.
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<serde_json::Value, NotifyError> {
        let body = deliver(req.header("authorization", format!("Bearer {}", self.token))).await?;
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|_| {
            NotifyError::Retryable(format!("unreadable answer: {}", body.chars().filter(|c| !c.is_control()).take(200).collect::<String>()))
        })?;
        if v["ok"] == true {
            return Ok(v);
        }
        let error = v["error"].as_str().unwrap_or("unknown").to_string();
        Err(match error.as_str() {
            "ratelimited" | "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => NotifyError::Retryable(error),
            _ => NotifyError::Refused(error),
        })
    }
}

#[async_trait]
impl Notifier for SlackDirect {
    fn channel(&self) -> &str {
        "slack_dm"
    }
    fn personal(&self) -> bool {
        true
    }
    async fn notify(&self, n: &ApprovalNotice) -> Result<(), NotifyError> {
        if !n.approver.contains('@') {
            return Err(NotifyError::Refused(format!("approver `{}` is not an e-mail address Slack can look up", n.approver)));
        }
        let email: String = form_urlencoded::byte_serialize(n.approver.as_bytes()).collect();
        let user = self.call(self.http.get(format!("{}/users.lookupByEmail?email={email}", self.api))).await?;
        let id = user["user"]["id"].as_str().ok_or_else(|| NotifyError::Refused("users.lookupByEmail named no user id".into()))?;
        let mut message = slack_message(n);
        message["channel"] = json!(id);
        message["unfurl_links"] = json!(false);
        self.call(
            self.http
                .post(format!("{}/chat.postMessage", self.api))
                .header("content-type", "application/json; charset=utf-8")
                .json(&message),
        )
        .await
        .map(drop)
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
            escape_html(n.url.as_deref().unwrap_or_default()),
            escape_html(&format_utc(n.expires_at_ms))
        )
    }
}

#[async_trait]
impl Notifier for SesEmail {
    fn channel(&self) -> &str {
        "email"
    }
    fn personal(&self) -> bool {
        true
    }
    async fn notify(&self, n: &ApprovalNotice) -> Result<(), NotifyError> {
        if !n.approver.contains('@') {
            return Err(NotifyError::Refused(format!("approver `{}` is not an e-mail address", n.approver)));
        }
        let Some(url) = &n.url else { return Err(NotifyError::Refused("an approval e-mail without its link".into())) };
        let content = |s: String| Content::builder().data(s).charset("UTF-8").build().map_err(|e| NotifyError::Refused(e.to_string()));
        let body = Body::builder()
            .html(content(Self::html(n))?)
            .text(content(format!("{}\n{}\n{}\nReview and decide: {}", headline(n), n.title, n.rationale, url))?)
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
        result.map(|_| ()).map_err(ses_error)
    }
}

/// An SES error: throttling and no answer are worth a retry; a refusal is not.
pub(crate) fn ses_error<E, R>(e: aws_sdk_sesv2::error::SdkError<E, R>) -> NotifyError
where
    E: aws_sdk_sesv2::error::ProvideErrorMetadata,
{
    use aws_sdk_sesv2::error::ProvideErrorMetadata;
    let code = e.code().unwrap_or("").to_string();
    let msg = format!("{code} {}", e.message().unwrap_or("")).trim().to_string();
    match code.as_str() {
        "TooManyRequestsException" | "LimitExceededException" | "" => {
            NotifyError::Retryable(if msg.is_empty() { "SES unreachable".into() } else { msg })
        }
        _ => NotifyError::Refused(msg),
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
