//! approve: the approver's door. GET shows a confirmation page and changes nothing (link scanners
//! prefetch links); POST decides, once, with a conditional update.

use std::time::Duration;
use tracing::{info, warn, Instrument};

use super::{Context, StageError};
use crate::case::{Action, ActionStatus, Decision};
use crate::dossier::clean_text;
use crate::http::{HttpRequest, HttpResponse};
use crate::messages::Message;
use crate::ports::QueueName;
use crate::ports::Table;
use crate::repo::{action_sk, Change};
use crate::signing::{LinkClaims, LinkError, LinkSigner, Scope};
use crate::timefmt::format_utc;
use std::sync::Arc;

pub struct Approve {
    ctx: Context,
    signer: Arc<LinkSigner>,
}

enum Decided {
    Now(Action),
    Already(Action),
}

impl Approve {
    pub fn new(ctx: Context, signer: Arc<LinkSigner>) -> Approve {
        Approve { ctx, signer }
    }

    async fn respond(&self, req: &HttpRequest) -> HttpResponse {
        let (token, decision) = match req.method.as_str() {
            "GET" => (req.query_param("t").map(str::to_string), None),
            "POST" => {
                if req.body.len() > 16 * 1024 {
                    return page(413, "Request too large", "The form is larger than any approval form.");
                }
                let form = req.form();
                let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                (get("t"), get("decision"))
            }
            _ => return page(405, "Method not allowed", "Open the link from your notification."),
        };
        let Some(token) = token else {
            return page(400, "Link incomplete", "This link carries no approval token. Open the full link from your notification.");
        };
        let claims = match self.signer.verify(&token, self.ctx.now_ms() / 1000) {
            Ok(c) => c,
            Err(e) => return link_error_page(&e),
        };
        let span = tracing::info_span!("case", case = %claims.case, stage = "approve");
        // A link is only good on its own door: a feedback link cannot decide an action.
        let feedback_door = req.path.ends_with("/feedback");
        if feedback_door != (claims.scope == Scope::Feedback) {
            return page(403, "Link not valid here", "This link belongs to another page. Nothing was changed.");
        }
        async {
            let result = match (claims.scope, decision.as_deref()) {
                (Scope::Feedback, None) if req.method == "GET" => Ok(feedback_form(&token)),
                (Scope::Feedback, Some(vote @ ("useful" | "not_useful"))) => self.feedback(&claims, vote).await,
                (Scope::DecideAction, None) if req.method == "GET" => self.confirmation(&claims, &token).await,
                (Scope::DecideAction, Some("approve")) => self.decide(&claims, true, req).await,
                (Scope::DecideAction, Some("reject")) => self.decide(&claims, false, req).await,
                _ => Ok(page(400, "Unknown decision", "The form must say approve or reject (or useful / not useful).")),
            };
            result.unwrap_or_else(|e| {
                warn!(error = %e, "approval could not be processed");
                page(503, "Try again", "The decision could not be recorded right now. Nothing was changed; please try again in a minute.")
            })
        }
        .instrument(span)
        .await
    }

    async fn confirmation(&self, claims: &LinkClaims, token: &str) -> Result<HttpResponse, StageError> {
        let Some(action) = self.ctx.repo.action(&claims.case, &claims.action).await? else {
            return Ok(page(404, "Unknown action", "This link names an action that does not exist."));
        };
        let case = self.ctx.repo.case(&claims.case).await?;
        if action.status != ActionStatus::Proposed {
            return Ok(already_page(&action));
        }
        let summary = case.as_ref().map(|c| clean_text(&c.hint.description, 500)).unwrap_or_default();
        let view = ConfirmPage {
            title: "Approve this action?",
            incident: &claims.case.incident_id,
            tenant: &claims.case.tenant,
            summary: &summary,
            kind: action.kind.describe(),
            target: &action.target_label,
            why: &clean_text(&action.rationale, 600),
            approver: &claims.approver,
            expires: &format_utc(claims.exp * 1000),
            token,
        };
        Ok(render(200, &view))
    }

    async fn decide(&self, claims: &LinkClaims, approved: bool, req: &HttpRequest) -> Result<HttpResponse, StageError> {
        let now = self.ctx.now_ms();
        let decision = Decision {
            approved,
            approver: claims.approver.clone(),
            at_ms: now,
            source_ip: req.source_ip.clone(),
            user_agent: req.header("user-agent").map(|u| clean_text(u, 300)),
        };
        let outcome = self
            .ctx
            .repo
            .update(&claims.case, &action_sk(&claims.action), |a: &mut Action| {
                if a.status != ActionStatus::Proposed {
                    return Ok::<_, StageError>(Change::Keep(Decided::Already(a.clone())));
                }
                a.status = if approved { ActionStatus::Approved } else { ActionStatus::Rejected };
                a.decision = Some(decision.clone());
                Ok(Change::Write(Decided::Now(a.clone())))
            })
            .await?;
        let action = match outcome {
            None => return Ok(page(404, "Unknown action", "This link names an action that does not exist.")),
            Some(Decided::Already(a)) => {
                let mut resp = already_page(&a);
                resp.status = 409;
                return Ok(resp);
            }
            Some(Decided::Now(a)) => a,
        };
        let verb = if approved { "approved" } else { "rejected" };
        info!(action = %action.id, approver = %claims.approver, verb, "action decided");
        self.ctx.audit(&claims.case, "action.decided", format!("{} {} by {}", action.id, verb, claims.approver)).await?;
        // Approved or not, writeback settles the case; only an approved action executes.
        self.ctx
            .send(
                &QueueName::writeback(),
                &Message::ExecuteAction { case: claims.case.clone(), action_id: action.id.clone() },
                Duration::ZERO,
            )
            .await?;
        let body = format!(
            "You {verb} {} on {}.\n\nRecorded {} as {}.",
            action.kind.describe(),
            action.target_label,
            format_utc(now),
            claims.approver
        );
        Ok(page(200, if approved { "Approved" } else { "Rejected" }, &body))
    }
}

/// The feedback question: GET only shows it.
fn feedback_form(token: &str) -> HttpResponse {
    render(200, &FeedbackPage { title: "Was this dossier useful?", token })
}

impl Approve {
    /// One vote per link (its nonce), added to the counters of the dossier's prompt version.
    async fn feedback(&self, claims: &LinkClaims, vote: &str) -> Result<HttpResponse, StageError> {
        if self.ctx.store.put_new(Table::Cases, "feedback-vote", &claims.nonce, vote, None).await?
            == crate::ports::PutOutcome::AlreadyExists
        {
            return Ok(page(409, "Already answered", "This feedback link was already used. Thank you."));
        }
        let case = self.ctx.repo.case(&claims.case).await?;
        let prompt_version = match case.and_then(|c| c.draft_id) {
            Some(id) => self.ctx.repo.draft(&claims.case, &id).await?.map_or_else(|| "unknown".to_string(), |d| d.dossier.prompt_version),
            None => "unknown".to_string(),
        };
        let useful = vote == "useful";
        let mut attempts = 0;
        loop {
            attempts += 1;
            let current = self.ctx.store.get(Table::Cases, "feedback", &prompt_version).await?;
            let mut counts: FeedbackCounts = current.as_ref().and_then(|d| serde_json::from_str(&d.body).ok()).unwrap_or_default();
            if useful {
                counts.useful += 1;
            } else {
                counts.not_useful += 1;
            }
            let body = serde_json::to_string(&counts).map_err(|e| StageError::BadMessage(e.to_string()))?;
            let written = match &current {
                None => {
                    self.ctx.store.put_new(Table::Cases, "feedback", &prompt_version, &body, None).await?
                        == crate::ports::PutOutcome::Written
                }
                Some(doc) => {
                    self.ctx.store.replace(Table::Cases, "feedback", &prompt_version, &body, doc.version).await?
                        == crate::ports::ReplaceOutcome::Written
                }
            };
            if written || attempts >= 8 {
                break;
            }
        }
        self.ctx.audit(&claims.case, "feedback", format!("{vote} for prompt {prompt_version}")).await?;
        Ok(page(200, "Thank you", &format!("Recorded: {} (prompt {prompt_version}).", if useful { "useful" } else { "not useful" })))
    }
}

/// Feedback counted per prompt version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeedbackCounts {
    pub useful: u64,
    pub not_useful: u64,
}

/// The counts for one prompt version.
pub async fn feedback_counts(ctx: &Context, prompt_version: &str) -> Result<FeedbackCounts, StageError> {
    Ok(ctx.store.get(Table::Cases, "feedback", prompt_version).await?.and_then(|d| serde_json::from_str(&d.body).ok()).unwrap_or_default())
}

fn already_page(action: &Action) -> HttpResponse {
    let who = action.decision.as_ref().map_or(String::new(), |d| format!(" by {} at {}", d.approver, format_utc(d.at_ms)));
    page(
        200,
        "Already decided",
        &format!(
            "{} on {} was already decided{who}: {}. Nothing was changed.",
            action.kind.describe(),
            action.target_label,
            action.status.as_str()
        ),
    )
}

fn link_error_page(e: &LinkError) -> HttpResponse {
    match e {
        LinkError::Expired { exp } => page(
            410,
            "Link expired",
            &format!("This approval link expired at {}. Ask for a new one; nothing was changed.", format_utc(exp * 1000)),
        ),
        LinkError::Malformed => {
            page(400, "Link damaged", "This link is incomplete or damaged. Open the full link from your notification; nothing was changed.")
        }
        LinkError::BadSignature | LinkError::UnknownKey => {
            page(403, "Link not valid", "This link was not issued by Dossier, was altered, or its key was retired. Nothing was changed.")
        }
    }
}

/// The confirmation page (templates/confirm.html).
#[derive(askama::Template)]
#[template(path = "confirm.html")]
struct ConfirmPage<'a> {
    title: &'a str,
    incident: &'a str,
    tenant: &'a str,
    summary: &'a str,
    kind: &'a str,
    target: &'a str,
    why: &'a str,
    approver: &'a str,
    expires: &'a str,
    token: &'a str,
}

/// Every other page: a title and a few paragraphs (templates/message.html).
#[derive(askama::Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    paragraphs: Vec<String>,
}

/// The feedback question (templates/feedback.html).
#[derive(askama::Template)]
#[template(path = "feedback.html")]
struct FeedbackPage<'a> {
    title: &'a str,
    token: &'a str,
}

/// Pages are rendered by the template engine, which escapes every value; no scripts, no
/// external assets, a strict Content-Security-Policy (see `HttpResponse::html`).
fn render(status: u16, view: &impl askama::Template) -> HttpResponse {
    match view.render() {
        Ok(html) => HttpResponse::html(status, html),
        Err(e) => {
            warn!(error = %e, "page template failed");
            HttpResponse::html(500, "<!doctype html><title>Error · Dossier</title><p>The page could not be rendered.</p>".into())
        }
    }
}

fn page(status: u16, title: &str, text: &str) -> HttpResponse {
    render(status, &MessagePage { title, paragraphs: text.split("\n\n").map(str::to_string).collect() })
}

#[async_trait::async_trait]
impl super::HttpHandler for Approve {
    async fn handle(&self, req: &HttpRequest) -> HttpResponse {
        self.respond(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_everything_and_carry_a_strict_csp() {
        let hostile = "<script>alert(1)</script>\"' onmouseover=x";
        let view = ConfirmPage {
            title: "Approve this action?",
            incident: hostile,
            tenant: hostile,
            summary: hostile,
            kind: hostile,
            target: hostile,
            why: hostile,
            approver: hostile,
            expires: hostile,
            token: hostile,
        };
        let resp = render(200, &view);
        assert!(!resp.body.contains("<script>alert") && resp.body.contains("&#60;script&#62;"), "{}", resp.body);
        assert!(!resp.body.contains("\"' onmouseover"), "attribute values are escaped");
        let csp = resp.headers.iter().find(|(k, _)| k == "content-security-policy").map(|(_, v)| v.as_str()).unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("form-action 'self'"));
        let msg = page(400, hostile, hostile);
        assert!(!msg.body.contains("<script>alert"));
        assert!(msg.body.contains("width=device-width"), "usable on a phone");
    }
}
