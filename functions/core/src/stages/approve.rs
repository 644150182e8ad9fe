//! approve: the approver's door. GET shows a confirmation page and changes nothing (link scanners
//! prefetch links); POST decides, once, with a conditional update.

use std::time::Duration;
use tracing::{info, warn, Instrument};

use super::{Context, StageError};
use crate::domain::{Action, ActionStatus, Decision, DecisionRefused};
use crate::http::{HttpRequest, HttpResponse};
use crate::messages::Message;
use crate::ports::QueueName;
use crate::signin::{clear_signin_cookie, SignIn, SignInError, SignedIn};
use crate::signing::{LinkClaims, LinkError, LinkSigner, Scope};
use crate::store::{action_sk, Change, Feedback, FeedbackCounts, Voted};
use crate::text::clean_text;
use crate::timefmt::format_utc;
use std::sync::Arc;

pub struct Approve {
    ctx: Context,
    signer: Arc<LinkSigner>,
    /// With OpenID Connect configured, approvers sign in and only the person a link names can
    /// decide; without it, the link is the only proof.
    signin: Option<SignIn>,
}

impl Approve {
    pub fn new(ctx: Context, signer: Arc<LinkSigner>) -> Approve {
        Approve { ctx, signer, signin: None }
    }

    pub fn with_signin(mut self, signin: SignIn) -> Approve {
        self.signin = Some(signin);
        self
    }

    async fn respond(&self, req: &HttpRequest) -> HttpResponse {
        if req.path.ends_with("/callback") {
            return match req.method.as_str() {
                "GET" => self.signed_in(req).await,
                _ => page(405, "Method not allowed", "The sign-in provider returns here with a GET."),
            };
        }
        let (token, decision) = match req.method.as_str() {
            "GET" => (req.query_param("t").map(str::to_string), None),
            "POST" => {
                if let Some(why) = cross_site(req) {
                    warn!(reason = why, "cross-site approval POST refused");
                    return page(
                        403,
                        "Request refused",
                        "Decisions are only taken from the confirmation page itself. Nothing was changed.",
                    );
                }
                // The page's form sends `application/x-www-form-urlencoded`; a `text/plain` or
                // JSON POST is another page's doing (a "simple" cross-site request needs no CORS).
                let form_type = req.header("content-type").and_then(|c| c.split(';').next()).map(|c| c.trim().to_ascii_lowercase());
                if form_type.as_deref() != Some("application/x-www-form-urlencoded") {
                    warn!(content_type = form_type.as_deref().unwrap_or("-"), "approval POST that is not a form refused");
                    return page(
                        415,
                        "Request refused",
                        "Decisions are only taken from the confirmation page's form. Nothing was changed.",
                    );
                }
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
                (Scope::DecideAction, None) if req.method == "GET" => match self.person(&claims, req) {
                    Ok(who) => self.confirmation(&claims, &token, who.as_ref()).await,
                    Err(Unproven::NotSignedIn) => self.start_signin(&claims, &token).await,
                    Err(unproven) => Ok(unproven.page(&claims)),
                },
                (Scope::DecideAction, Some(verdict @ ("approve" | "reject"))) => match self.person(&claims, req) {
                    Ok(who) => self.decide(&claims, verdict == "approve", req, who.as_ref()).await,
                    Err(unproven) => Ok(unproven.page(&claims)),
                },
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

    /// Who is deciding: with sign-in configured, the signed-in person, who must be the approver
    /// the link names; without it, nobody is proven (`Ok(None)`): the link alone decides.
    fn person(&self, claims: &LinkClaims, req: &HttpRequest) -> Result<Option<SignedIn>, Unproven> {
        let Some(signin) = &self.signin else { return Ok(None) };
        match signin.current(req, self.ctx.now_ms() / 1000) {
            Some(who) if who.is(&claims.approver) => Ok(Some(who)),
            Some(who) => Err(Unproven::SomeoneElse(who.shown_as())),
            None if req.method == "GET" => Err(Unproven::NotSignedIn),
            None => Err(Unproven::SessionEnded),
        }
    }

    /// Sends the approver to their sign-in provider; they come back to `/approve/callback`.
    async fn start_signin(&self, claims: &LinkClaims, token: &str) -> Result<HttpResponse, StageError> {
        let Some(signin) = &self.signin else { return Ok(page(500, "Not configured", "Sign-in is not configured.")) };
        match signin.start(token, &claims.approver, self.ctx.now_ms() / 1000).await {
            Ok((location, cookie)) => Ok(HttpResponse::redirect(302, &location).with_cookie(&cookie)),
            Err(e) => {
                warn!(error = %e, "sign-in could not start");
                Ok(signin_failed_page(&e))
            }
        }
    }

    /// The provider's redirect back: verify who signed in, then return to the link they opened.
    async fn signed_in(&self, req: &HttpRequest) -> HttpResponse {
        let Some(signin) = &self.signin else {
            return page(404, "Not found", "Sign-in is not configured for approvals.");
        };
        let now_s = self.ctx.now_ms() / 1000;
        let (who, link) = match signin.finish(req, now_s).await {
            Ok(done) => done,
            Err(e) => {
                warn!(error = %e, "sign-in refused");
                return signin_failed_page(&e).with_cookie(&clear_signin_cookie());
            }
        };
        let claims = match self.signer.verify(&link, now_s) {
            Ok(c) => c,
            Err(e) => return link_error_page(&e).with_cookie(&clear_signin_cookie()),
        };
        if !who.is(&claims.approver) {
            warn!(case = %claims.case, signed_in = %who.subject, "signed in as someone other than the link's approver");
            return Unproven::SomeoneElse(who.shown_as()).page(&claims).with_cookie(&clear_signin_cookie());
        }
        info!(case = %claims.case, subject = %who.subject, "approver signed in");
        let back = format!("{}/approve?t={}", self.ctx.config.public_base_url.trim_end_matches('/'), link);
        HttpResponse::redirect(303, &back).with_cookie(&signin.session_cookie(&who)).with_cookie(&clear_signin_cookie())
    }

    async fn confirmation(&self, claims: &LinkClaims, token: &str, who: Option<&SignedIn>) -> Result<HttpResponse, StageError> {
        let Some(action) = self.ctx.store.action(&claims.case, &claims.action).await?.map(|a| a.value) else {
            return Ok(page(404, "Unknown action", "This link names an action that does not exist."));
        };
        let case = self.ctx.store.case(&claims.case).await?.map(|c| c.value);
        if action.status != ActionStatus::Proposed {
            return Ok(already_page(&action));
        }
        if let Some(resolution) = case.as_ref().and_then(|c| c.resolution.clone()) {
            return Ok(resolved_page(&resolution));
        }
        let summary = case.as_ref().map(|c| clean_text(&c.description, 500)).unwrap_or_default();
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
            proof: &match (who, &self.signin) {
                (Some(who), Some(signin)) => format!("You signed in as {} with {}.", who.shown_as(), signin.issuer()),
                _ => "This link is the only proof of who decides: anyone who holds it can approve or reject as the approver named above."
                    .to_string(),
            },
        };
        Ok(render(200, &view))
    }

    /// Decides once. The decision is the commit point: once it is stored the page says so, even
    /// if handing the action to writeback fails (the reconciler hands it over then).
    async fn decide(
        &self,
        claims: &LinkClaims,
        approved: bool,
        req: &HttpRequest,
        who: Option<&SignedIn>,
    ) -> Result<HttpResponse, StageError> {
        let now = self.ctx.now_ms();
        let resolution = self.ctx.store.case(&claims.case).await?.and_then(|c| c.value.resolution);
        let decision = Decision {
            approved,
            approver: claims.approver.clone(),
            at_ms: now,
            source_ip: req.source_ip.clone(),
            user_agent: req.header("user-agent").map(|u| clean_text(u, 300)),
            proof: Some(who.map_or_else(|| "link".to_string(), SignedIn::proof)),
        };
        let verb = if approved { "approved" } else { "rejected" };
        let event = self.ctx.event(&claims.case, "action.decided", format!("{} {verb} by {}", claims.action, claims.approver));
        let budgets = self.ctx.config.budgets;
        let outcome = self
            .ctx
            .store
            .update(&claims.case.storage_id(), &action_sk(&claims.action), |a: &mut Action, commit| {
                match a.decide(decision.clone(), resolution.is_some(), &budgets) {
                    Ok(()) => {
                        commit.audit(&event)?;
                        Ok::<_, StageError>(Change::Write(Ok(a.clone())))
                    }
                    Err(refused) => Ok(Change::Keep(Err((refused, a.clone())))),
                }
            })
            .await?;
        let action = match outcome {
            None => return Ok(page(404, "Unknown action", "This link names an action that does not exist.")),
            Some(Err((DecisionRefused::AlreadyDecided(_), a))) => {
                let mut resp = already_page(&a);
                resp.status = 409;
                return Ok(resp);
            }
            Some(Err((DecisionRefused::IncidentResolved, _))) => {
                let mut resp = resolved_page(resolution.as_deref().unwrap_or("resolved"));
                resp.status = 409;
                return Ok(resp);
            }
            Some(Err((DecisionRefused::Expired, _))) => {
                return Ok(page(410, "Approval closed", "The time to decide on this action has passed. Nothing was changed."))
            }
            Some(Ok(a)) => a,
        };
        info!(action = %action.id, approver = %claims.approver, verb, "action decided");
        // Approved or not, writeback settles the case; only an approved action executes.
        let handed = self
            .ctx
            .send(
                &QueueName::writeback(),
                &Message::ExecuteAction { case: claims.case.clone(), action_id: action.id.clone() },
                Duration::ZERO,
            )
            .await;
        let next = match (approved, handed) {
            (true, Ok(())) => "It runs now; the result is posted to the incident.".to_string(),
            (true, Err(e)) => {
                warn!(error = %e, "execution not queued; the reconciler will hand it over");
                "It will run within a few minutes; the result is posted to the incident.".to_string()
            }
            (false, _) => "Nothing will run.".to_string(),
        };
        let body = format!(
            "You {verb} {} on {}.\n\nRecorded {} as {}.\n\n{next}",
            action.kind.describe(),
            action.target_label,
            format_utc(now),
            claims.approver
        );
        Ok(page(200, if approved { "Approved" } else { "Rejected" }, &body))
    }
}

/// Why a decision cannot be taken from this browser.
enum Unproven {
    NotSignedIn,
    /// Signed in, but as another person than the link's approver.
    SomeoneElse(String),
    /// A POST without a current session (it lapsed while the page was open).
    SessionEnded,
}

impl Unproven {
    fn page(&self, claims: &LinkClaims) -> HttpResponse {
        match self {
            Unproven::SomeoneElse(who) => page(
                403,
                "Signed in as someone else",
                &format!(
                    "You are signed in as {who}, and this link asks {} to decide. Only they can. Nothing was changed.",
                    claims.approver
                ),
            ),
            Unproven::NotSignedIn | Unproven::SessionEnded => page(
                403,
                "Sign in first",
                "Your sign-in ended before the decision reached us. Open the link from your notification again and sign in; nothing was changed.",
            ),
        }
    }
}

fn signin_failed_page(e: &SignInError) -> HttpResponse {
    if e.is_retryable() {
        return page(503, "Try again", "The sign-in provider did not answer. Nothing was changed; open the link again in a minute.");
    }
    page(
        403,
        "Sign-in not accepted",
        &format!("The sign-in could not be accepted: {e}. Nothing was changed; open the link from your notification again."),
    )
}

fn resolved_page(resolution: &str) -> HttpResponse {
    page(
        200,
        "Incident resolved",
        &format!("XDR resolved this incident ({resolution}), so its open actions were closed. Nothing was changed."),
    )
}

/// The feedback question: GET only shows it.
fn feedback_form(token: &str) -> HttpResponse {
    render(200, &FeedbackPage { title: "Was this dossier useful?", token })
}

impl Approve {
    /// One vote per link (its nonce), added to the counters of the dossier's prompt version.
    async fn feedback(&self, claims: &LinkClaims, vote: &str) -> Result<HttpResponse, StageError> {
        let prompt_version = match self.ctx.store.draft(&claims.case, super::DRAFT_ID).await? {
            Some(d) => d.value.prompt_version,
            None => "unknown".to_string(),
        };
        let useful = vote == "useful";
        let event = self.ctx.event(&claims.case, "feedback", format!("{vote} for prompt {prompt_version}"));
        match Feedback(&self.ctx.store).vote(&claims.nonce, &prompt_version, useful, &event).await? {
            Voted::AlreadyVoted => Ok(page(409, "Already answered", "This feedback link was already used. Thank you.")),
            Voted::Counted => Ok(page(
                200,
                "Thank you",
                &format!("Recorded: {} (prompt {prompt_version}).", if useful { "useful" } else { "not useful" }),
            )),
        }
    }
}

/// The counts for one prompt version.
pub async fn feedback_counts(ctx: &Context, prompt_version: &str) -> Result<FeedbackCounts, StageError> {
    Ok(Feedback(&ctx.store).counts(prompt_version).await?)
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

/// Why a POST came from another site, if it did. Browsers say where a request comes from
/// (`Sec-Fetch-Site`, `Origin`); a page elsewhere that submits a form (even `text/plain`) to the
/// approval door is refused. Clients that send neither (curl, tests) are not browsers a page can
/// drive, and still need the signed token.
fn cross_site(req: &HttpRequest) -> Option<&'static str> {
    match req.header("sec-fetch-site").map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if v == "same-origin" || v == "none" => {}
        Some(_) => return Some("Sec-Fetch-Site is not same-origin"),
        None => {}
    }
    let origin = req.header("origin")?.trim();
    if origin.eq_ignore_ascii_case("null") {
        return Some("Origin is null");
    }
    let host = req.header("x-forwarded-host").or_else(|| req.header("host"))?.trim();
    let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h).trim_end_matches('/');
    (!origin_host.eq_ignore_ascii_case(host)).then_some("Origin is another site")
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
    /// What proves who decides here: the sign-in, or only the link.
    proof: &'a str,
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
            proof: hostile,
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

#[cfg(test)]
mod cross_site_tests {
    use super::cross_site;
    use crate::http::HttpRequest;

    fn post(headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            path: "/approve".into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn forms_posted_from_another_site_are_refused() {
        let host = ("host", "approvals.example.com");
        assert!(cross_site(&post(&[host, ("origin", "https://approvals.example.com"), ("sec-fetch-site", "same-origin")])).is_none());
        assert!(cross_site(&post(&[])).is_none(), "no browser headers: not a page-driven request");
        assert!(cross_site(&post(&[host, ("origin", "https://evil.example.net")])).is_some());
        assert!(cross_site(&post(&[host, ("origin", "null")])).is_some());
        assert!(cross_site(&post(&[host, ("sec-fetch-site", "cross-site")])).is_some());
        assert!(cross_site(&post(&[host, ("sec-fetch-site", "same-site")])).is_some(), "a sibling subdomain is another site here");
        assert!(cross_site(&post(&[host, ("origin", "https://approvals.example.com.evil.net")])).is_some());
    }
}
