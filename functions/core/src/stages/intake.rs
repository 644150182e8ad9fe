//! intake: the webhook door. Authenticates, bounds, parses, filters, dedupes, answers 202.

use crate::metrics::{Metric, MetricSet};
use serde_json::json;
use std::time::Duration;
use tracing::{info, warn, Instrument};

use super::{Context, StageError};
use crate::case::{Case, CaseKey, CaseStatus, Trigger};
use crate::http::{HttpRequest, HttpResponse};
use crate::messages::Message;
use crate::ports::{PutOutcome, QueueName, Table};
use crate::webhook::{authenticate, parse_webhook, MAX_BODY_BYTES, SIGNATURE_TOLERANCE_S};

/// The HMAC of a signed request identifies it: the same one twice is a replay.
fn signature_id(req: &HttpRequest) -> Option<String> {
    let header = req.header("x-dossier-signature")?;
    header.split(',').find_map(|p| p.trim().strip_prefix("v1=")).map(|v| v.trim().to_ascii_lowercase())
}

pub struct Intake {
    ctx: Context,
    webhook_secret: Vec<u8>,
}

impl Intake {
    pub fn new(ctx: Context, webhook_secret: Vec<u8>) -> Intake {
        Intake { ctx, webhook_secret }
    }

    async fn respond(&self, req: &HttpRequest) -> HttpResponse {
        if req.method != "POST" {
            return HttpResponse::error(405, "method_not_allowed", "POST the incident JSON to /webhook");
        }
        if req.body.len() > MAX_BODY_BYTES {
            return HttpResponse::error(
                413,
                "payload_too_large",
                format!("body is {} bytes; the limit is {MAX_BODY_BYTES}", req.body.len()),
            );
        }
        if let Err(e) = authenticate(req, &self.webhook_secret, self.ctx.now_ms() / 1000) {
            warn!(reason = %e, source_ip = req.source_ip.as_deref().unwrap_or("-"), "webhook rejected: authentication");
            return HttpResponse::error(401, "unauthorized", e.to_string());
        }
        let incoming = match parse_webhook(&req.body) {
            Ok(w) => w,
            Err(e) => return HttpResponse::error(400, "invalid_payload", e.to_string()),
        };
        let tenant = req
            .header("x-dossier-tenant")
            .map(str::to_string)
            .or(incoming.tenant.clone())
            .unwrap_or_else(|| self.ctx.config.default_tenant.clone());
        let key = match CaseKey::new(&tenant, &incoming.incident_id) {
            Ok(k) => k,
            Err(e) => return HttpResponse::error(400, "invalid_payload", e.to_string()),
        };
        let span = tracing::info_span!("case", case = %key);
        async {
            // A resolved incident we already know: draft its closure comment.
            let status = incoming.hint.status.clone().unwrap_or_default();
            let lower = status.to_ascii_lowercase();
            if lower.starts_with("resolved") || lower == "closed" {
                return match self.ctx.repo.case(&key).await {
                    Ok(Some(_)) => match self
                        .ctx
                        .send(&QueueName::synthesize(), &Message::Close { case: key.clone(), resolution: status.clone() }, Duration::ZERO)
                        .await
                    {
                        Ok(()) => HttpResponse::json(202, json!({"status": "closing", "case": key})),
                        Err(e) => {
                            warn!(error = %e, "closure could not be queued");
                            HttpResponse::error(503, "unavailable", "the closure could not be queued; retry later")
                        }
                    },
                    Ok(None) => HttpResponse::json(
                        202,
                        json!({"status": "skipped", "case": key, "reason": format!("status {status}: no open case to close")}),
                    ),
                    Err(e) => {
                        warn!(error = %e, "case lookup failed");
                        HttpResponse::error(503, "unavailable", "the case could not be read; retry later")
                    }
                };
            }
            if let Err(reason) = self.ctx.config.admit(incoming.hint.severity, incoming.hint.status.as_deref()) {
                info!(%reason, "incident skipped at the door");
                return HttpResponse::json(202, json!({"status": "skipped", "case": key, "reason": reason}));
            }
            if let Some(sig) = signature_id(req) {
                match self
                    .ctx
                    .store
                    .put_new(Table::Cases, "webhook-replay", &sig, "{}", Some(self.ctx.now_ms() / 1000 + 2 * SIGNATURE_TOLERANCE_S))
                    .await
                {
                    Ok(PutOutcome::Written) => {}
                    Ok(PutOutcome::AlreadyExists) => {
                        warn!("webhook rejected: replayed signature");
                        return HttpResponse::error(409, "replayed", "this signed request was already received; sign each delivery anew");
                    }
                    Err(e) => {
                        warn!(error = %e, "replay check unavailable");
                        return HttpResponse::error(503, "unavailable", "the request could not be checked; retry later");
                    }
                }
            }
            match self.accept(&key, incoming.hint).await {
                Ok(duplicate) => HttpResponse::json(202, json!({"status": if duplicate { "duplicate" } else { "accepted" }, "case": key})),
                Err(e) => {
                    warn!(error = %e, "webhook could not be stored");
                    HttpResponse::error(503, "unavailable", "the case could not be stored; retry later")
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Creates the case once and starts collection; `Ok(true)` for a duplicate delivery.
    async fn accept(&self, key: &CaseKey, hint: crate::case::IncidentHint) -> Result<bool, StageError> {
        let case = Case::new(key.clone(), Trigger::Webhook, hint, self.ctx.now_ms());
        let duplicate = match self.ctx.repo.create_case(&case).await? {
            PutOutcome::Written => {
                self.ctx.audit(key, "case.received", "webhook").await?;
                self.ctx.metric(MetricSet::new(vec![Metric::count("CasesOpened", 1.0)]));
                false
            }
            PutOutcome::AlreadyExists => {
                // A duplicate delivery. If the first one stored the case but failed to enqueue,
                // this one finishes the job (collect is idempotent).
                let stored = self.ctx.repo.case(key).await?;
                if stored.map(|c| c.status) != Some(CaseStatus::Received) {
                    info!("duplicate webhook; case already in progress");
                    return Ok(true);
                }
                true
            }
        };
        self.ctx.send(&QueueName::collect(), &Message::Collect { case: key.clone() }, Duration::ZERO).await?;
        info!(duplicate, "case accepted");
        Ok(duplicate)
    }
}

/// Creates a case without HTTP (poller, local CLI): the same dedupe and the same first message.
pub async fn open_case(ctx: &Context, case: Case) -> Result<bool, StageError> {
    let key = case.key.clone();
    let created = ctx.repo.create_case(&case).await? == PutOutcome::Written;
    if created {
        ctx.audit(&key, "case.received", format!("{:?}", case.trigger).to_lowercase()).await?;
    }
    ctx.send(&QueueName::collect(), &Message::Collect { case: key }, Duration::ZERO).await?;
    Ok(created)
}

#[async_trait::async_trait]
impl super::HttpHandler for Intake {
    async fn handle(&self, req: &HttpRequest) -> HttpResponse {
        self.respond(req).await
    }
}
