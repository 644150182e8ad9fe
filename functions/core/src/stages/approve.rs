//! approve: the approver's door. GET shows a confirmation page and changes nothing (link scanners
//! prefetch links); POST decides, once, with a conditional update.

use std::time::Duration;
use tracing::{info, warn, Instrument};

use super::{Context, StageError};
use crate::case::{Action, ActionStatus, Decision};
use crate::dossier::clean_text;
use crate::http::{escape_html, HttpRequest, HttpResponse};
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
                    return page(413, "Request too large", "<p>The form is larger than any approval form.</p>");
                }
                let form = req.form();
                let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                (get("t"), get("decision"))
            }
            _ => return page(405, "Method not allowed", "<p>Open the link from your notification.</p>"),
        };
        let Some(token) = token else {
            return page(400, "Link incomplete", "<p>This link carries no approval token. Open the full link from your notification.</p>");
        };
        let claims = match self.signer.verify(&token, self.ctx.now_ms() / 1000) {
            Ok(c) => c,
            Err(e) => return link_error_page(&e),
        };
        let span = tracing::info_span!("case", case = %claims.case, stage = "approve");
        // A link is only good on its own door: a feedback link cannot decide an action.
        let feedback_door = req.path.ends_with("/feedback");
        if feedback_door != (claims.scope == Scope::Feedback) {
            return page(403, "Link not valid here", "<p>This link belongs to another page. Nothing was changed.</p>");
        }
        async {
            let result = match (claims.scope, decision.as_deref()) {
                (Scope::Feedback, None) if req.method == "GET" => Ok(feedback_form(&token)),
                (Scope::Feedback, Some(vote @ ("useful" | "not_useful"))) => self.feedback(&claims, vote).await,
                (Scope::DecideAction, None) if req.method == "GET" => self.confirmation(&claims, &token).await,
                (Scope::DecideAction, Some("approve")) => self.decide(&claims, true, req).await,
                (Scope::DecideAction, Some("reject")) => self.decide(&claims, false, req).await,
                _ => Ok(page(400, "Unknown decision", "<p>The form must say approve or reject (or useful / not useful).</p>")),
            };
            result.unwrap_or_else(|e| {
                warn!(error = %e, "approval could not be processed");
                page(
                    503,
                    "Try again",
                    "<p>The decision could not be recorded right now. Nothing was changed; please try again in a minute.</p>",
                )
            })
        }
        .instrument(span)
        .await
    }

    async fn confirmation(&self, claims: &LinkClaims, token: &str) -> Result<HttpResponse, StageError> {
        let Some(action) = self.ctx.repo.action(&claims.case, &claims.action).await? else {
            return Ok(page(404, "Unknown action", "<p>This link names an action that does not exist.</p>"));
        };
        let case = self.ctx.repo.case(&claims.case).await?;
        if action.status != ActionStatus::Proposed {
            return Ok(already_page(&action));
        }
        let summary = case.as_ref().map(|c| clean_text(&c.hint.description, 500)).unwrap_or_default();
        let body = format!(
            r#"<p class="meta">Incident {incident} · tenant {tenant}</p>
<p>{summary}</p>
<table>
<tr><th>Action</th><td>{kind}</td></tr>
<tr><th>Target</th><td>{target}</td></tr>
<tr><th>Why</th><td>{why}</td></tr>
<tr><th>Approver</th><td>{approver}</td></tr>
<tr><th>Link expires</th><td>{exp}</td></tr>
</table>
<form method="post" action="approve">
<input type="hidden" name="t" value="{token}">
<button type="submit" name="decision" value="approve" class="approve">Approve</button>
<button type="submit" name="decision" value="reject" class="reject">Reject</button>
</form>
<p class="meta">Nothing happens until you press a button.</p>"#,
            incident = escape_html(&claims.case.incident_id),
            tenant = escape_html(&claims.case.tenant),
            summary = escape_html(&summary),
            kind = escape_html(action.kind.describe()),
            target = escape_html(&action.target_label),
            why = escape_html(&clean_text(&action.rationale, 600)),
            approver = escape_html(&claims.approver),
            exp = escape_html(&format_utc(claims.exp * 1000)),
            token = escape_html(token),
        );
        Ok(page(200, "Approve this action?", &body))
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
            None => return Ok(page(404, "Unknown action", "<p>This link names an action that does not exist.</p>")),
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
            "<p>You {verb} <strong>{}</strong> on <strong>{}</strong>.</p><p class=\"meta\">Recorded {} as {}.</p>",
            escape_html(action.kind.describe()),
            escape_html(&action.target_label),
            escape_html(&format_utc(now)),
            escape_html(&claims.approver)
        );
        Ok(page(200, if approved { "Approved" } else { "Rejected" }, &body))
    }
}

/// The feedback question: GET only shows it.
fn feedback_form(token: &str) -> HttpResponse {
    page(
        200,
        "Was this dossier useful?",
        &format!(
            r#"<p>Your answer is counted for the prompt version that wrote the dossier.</p>
<form method="post" action="feedback"><input type="hidden" name="t" value="{}">
<button type="submit" name="decision" value="useful" class="approve">Useful</button>
<button type="submit" name="decision" value="not_useful" class="reject">Not useful</button></form>"#,
            escape_html(token)
        ),
    )
}

impl Approve {
    /// One vote per link (its nonce), added to the counters of the dossier's prompt version.
    async fn feedback(&self, claims: &LinkClaims, vote: &str) -> Result<HttpResponse, StageError> {
        if self.ctx.store.put_new(Table::Cases, "feedback-vote", &claims.nonce, vote, None).await?
            == crate::ports::PutOutcome::AlreadyExists
        {
            return Ok(page(409, "Already answered", "<p>This feedback link was already used. Thank you.</p>"));
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
        Ok(page(
            200,
            "Thank you",
            &format!("<p>Recorded: {} (prompt {}).</p>", if useful { "useful" } else { "not useful" }, escape_html(&prompt_version)),
        ))
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
            "<p>{} on {} was already decided{}: <strong>{}</strong>. Nothing was changed.</p>",
            escape_html(action.kind.describe()),
            escape_html(&action.target_label),
            escape_html(&who),
            escape_html(action.status.as_str())
        ),
    )
}

fn link_error_page(e: &LinkError) -> HttpResponse {
    match e {
        LinkError::Expired { exp } => page(
            410,
            "Link expired",
            &format!(
                "<p>This approval link expired at {}. Ask for a new one; nothing was changed.</p>",
                escape_html(&format_utc(exp * 1000))
            ),
        ),
        LinkError::Malformed => page(
            400,
            "Link damaged",
            "<p>This link is incomplete or damaged. Open the full link from your notification; nothing was changed.</p>",
        ),
        LinkError::BadSignature | LinkError::UnknownKey => page(
            403,
            "Link not valid",
            "<p>This link was not issued by Dossier, was altered, or its key was retired. Nothing was changed.</p>",
        ),
    }
}

/// A small, self-contained page: no scripts, no external assets, readable on a phone.
fn page(status: u16, title: &str, body: &str) -> HttpResponse {
    HttpResponse::html(
        status,
        format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t} · Dossier</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1a1a1a}}
th{{text-align:left;padding-right:1rem;vertical-align:top}}button{{font-size:1.1rem;padding:.6rem 1.4rem;margin:1rem .5rem 0 0;border:0;border-radius:.3rem;color:#fff}}
.approve{{background:#1d6f42}}.reject{{background:#a4262c}}.meta{{color:#555;font-size:.9rem}}</style></head>
<body><h1>{t}</h1>
{body}
</body></html>"#,
            t = escape_html(title)
        ),
    )
}

#[async_trait::async_trait]
impl super::HttpHandler for Approve {
    async fn handle(&self, req: &HttpRequest) -> HttpResponse {
        self.respond(req).await
    }
}
