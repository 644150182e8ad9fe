//! intake: the webhook door. Authenticates (the tenant is the one whose secret verifies),
//! refuses replays before anything else, bounds, parses, filters, and creates the case with its
//! replay marker in one commit; answers 202 in milliseconds.

use serde_json::json;
use std::time::Duration;
use tracing::{info, warn, Instrument};

use super::{Context, StageError};
use crate::domain::{Case, CaseKey, CaseStatus, Trigger};
use crate::http::{HttpRequest, HttpResponse};
use crate::messages::Message;
use crate::metrics::{Metric, MetricSet};
use crate::ports::{QueueName, StoreError, Write};
use crate::store::{Commit, Committed, ReplayMarkers};
use crate::xdr::{authenticate, parse_webhook, WebhookSecrets, MAX_BODY_BYTES, SIGNATURE_TOLERANCE_S};

pub struct Intake {
    ctx: Context,
    secrets: WebhookSecrets,
}

/// What became of a delivery.
enum Accepted {
    New,
    Duplicate,
    Replayed,
}

impl Intake {
    pub fn new(ctx: Context, secrets: WebhookSecrets) -> Intake {
        Intake { ctx, secrets }
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
        let verified = match authenticate(req, &self.secrets, self.ctx.now_ms() / 1000) {
            Ok(v) => v,
            Err(e) => {
                warn!(reason = %e, source_ip = req.source_ip.as_deref().unwrap_or("-"), "webhook rejected: authentication");
                return HttpResponse::error(401, "unauthorized", e.to_string());
            }
        };
        // A replay is refused before any branch looks at the body.
        if let Some(replay_key) = &verified.replay_key {
            match ReplayMarkers(&self.ctx.store).seen(replay_key).await {
                Ok(false) => {}
                Ok(true) => return replayed(),
                Err(e) => {
                    warn!(error = %e, "replay check unavailable");
                    return HttpResponse::error(503, "unavailable", "the request could not be checked; retry later");
                }
            }
        }
        let incoming = match parse_webhook(&req.body) {
            Ok(w) => w,
            Err(e) => return HttpResponse::error(400, "invalid_payload", e.to_string()),
        };
        if incoming.tenant.as_deref().is_some_and(|t| t != verified.tenant) {
            return HttpResponse::error(400, "invalid_payload", "the body names another tenant than the one whose secret signed it");
        }
        let key = match CaseKey::new(&verified.tenant, &incoming.incident_id) {
            Ok(k) => k,
            Err(e) => return HttpResponse::error(400, "invalid_payload", e.to_string()),
        };
        let span = tracing::info_span!("case", case = %key);
        async {
            let status = incoming.hint.status.clone().unwrap_or_default();
            if is_resolved(&status) {
                return self.closure(&key, &status, verified.replay_key.as_deref()).await;
            }
            if let Err(reason) = self.ctx.config.admit(incoming.hint.severity, incoming.hint.status.as_deref()) {
                info!(%reason, "incident skipped at the door");
                return HttpResponse::json(202, json!({"status": "skipped", "case": key, "reason": reason}));
            }
            match self.accept(&key, incoming.hint, verified.replay_key.as_deref()).await {
                Ok(Accepted::New) => HttpResponse::json(202, json!({"status": "accepted", "case": key})),
                Ok(Accepted::Duplicate) => HttpResponse::json(202, json!({"status": "duplicate", "case": key})),
                Ok(Accepted::Replayed) => replayed(),
                Err(e) => {
                    warn!(error = %e, "webhook could not be stored");
                    HttpResponse::error(503, "unavailable", "the case could not be stored; retry later")
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Creates the case and its replay marker together, then starts collection. Nothing is
    /// stored when the commit fails, so the caller's retry of a 503 is not taken for a replay.
    async fn accept(&self, key: &CaseKey, hint: crate::domain::IncidentHint, replay_key: Option<&str>) -> Result<Accepted, StageError> {
        let now = self.ctx.now_ms();
        let case = Case::new(key.clone(), Trigger::Webhook, hint, now, &self.ctx.config.budgets);
        let mut commit = Commit::new();
        let marker = replay_key.map(|k| commit.push(self.marker(k))).transpose()?;
        let case_write = commit.create(&case)?;
        commit.audit(&self.ctx.event(key, "case.received", "webhook"))?;
        match self.ctx.store.commit(commit).await? {
            Committed::Written => {
                self.ctx.metric(MetricSet::new(vec![Metric::count("CasesOpened", 1.0)]));
                self.start(key).await;
                info!("case accepted");
                Ok(Accepted::New)
            }
            Committed::Conflict { index } if Some(index) == marker => Ok(Accepted::Replayed),
            Committed::Conflict { index } if index == case_write => {
                // Another delivery of the same incident. Its own replay marker is written too, so
                // that replaying this delivery is refused like any other.
                if let Some(k) = replay_key {
                    let mut commit = Commit::new();
                    commit.push(self.marker(k))?;
                    if let Committed::Conflict { .. } = self.ctx.store.commit(commit).await? {
                        return Ok(Accepted::Replayed);
                    }
                }
                // If the first delivery stored the case but its hand-over was lost, this one
                // finishes the job (collect is idempotent); the reconciler would otherwise.
                if self.ctx.store.case(key).await?.is_some_and(|c| c.value.status == CaseStatus::Received) {
                    self.start(key).await;
                }
                info!("duplicate webhook");
                Ok(Accepted::Duplicate)
            }
            Committed::Conflict { index } => Err(StoreError::Rejected(format!("intake commit conflicted on write {index}")).into()),
        }
    }

    fn marker(&self, replay_key: &str) -> Write {
        ReplayMarkers::marker(replay_key, self.ctx.now_ms() / 1000 + 2 * SIGNATURE_TOLERANCE_S)
    }

    /// Hands the case to collect. The case is stored: if the send fails the reconciler re-sends
    /// it, so the caller still gets its 202.
    async fn start(&self, key: &CaseKey) {
        if let Err(e) = self.ctx.send(&QueueName::collect(), &Message::Collect { case: key.clone() }, Duration::ZERO).await {
            warn!(error = %e, "collect not queued; the reconciler will start the case");
        }
    }

    /// A resolved incident: the closure path for a case we know; nothing for one we do not.
    async fn closure(&self, key: &CaseKey, status: &str, replay_key: Option<&str>) -> HttpResponse {
        match self.ctx.store.case(key).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return HttpResponse::json(
                    202,
                    json!({"status": "skipped", "case": key, "reason": format!("status {status}: no open case to close")}),
                )
            }
            Err(e) => {
                warn!(error = %e, "case lookup failed");
                return HttpResponse::error(503, "unavailable", "the case could not be read; retry later");
            }
        }
        let close = Message::Close { case: key.clone(), resolution: status.to_string() };
        if let Err(e) = self.ctx.send(&QueueName::synthesize(), &close, Duration::ZERO).await {
            warn!(error = %e, "closure could not be queued");
            return HttpResponse::error(503, "unavailable", "the closure could not be queued; retry later");
        }
        if let Some(k) = replay_key {
            let mut commit = Commit::new();
            let written = match commit.push(self.marker(k)) {
                Ok(_) => self.ctx.store.commit(commit).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                // The closure is queued and is idempotent: a replay of it changes nothing.
                warn!(error = %e, "replay marker of a closure not written");
            }
        }
        HttpResponse::json(202, json!({"status": "closing", "case": key}))
    }
}

fn replayed() -> HttpResponse {
    warn!("webhook rejected: replayed delivery");
    HttpResponse::error(409, "replayed", "this signed request was already received; sign each delivery anew")
}

/// XDR 3.x `resolved_*` statuses, 5.x `Resolved`, and `closed`.
pub fn is_resolved(status: &str) -> bool {
    let lower = status.trim().to_ascii_lowercase();
    lower.starts_with("resolved") || lower == "closed"
}

/// Creates a case without HTTP (poller, local CLI): the same dedupe and the same first message.
pub async fn open_case(ctx: &Context, case: Case) -> Result<bool, StageError> {
    let key = case.key.clone();
    let mut commit = Commit::new();
    commit.create(&case)?;
    commit.audit(&ctx.event(&key, "case.received", format!("{:?}", case.trigger).to_lowercase()))?;
    let created = ctx.store.commit(commit).await? == Committed::Written;
    ctx.send(&QueueName::collect(), &Message::Collect { case: key }, Duration::ZERO).await?;
    Ok(created)
}

#[async_trait::async_trait]
impl super::HttpHandler for Intake {
    async fn handle(&self, req: &HttpRequest) -> HttpResponse {
        self.respond(req).await
    }
}
