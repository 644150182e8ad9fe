//! synthesize: claim the case once, build the dossier, propose gated actions with signed links,
//! store the draft and hand the comment to writeback.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn, Instrument};

use super::{ms_until, Context, MessageHandler, StageError};
use crate::case::{Action, ApprovalLink, Case, CaseKey, CaseStatus};
use crate::config::ModelPrice;
use crate::dossier::{deterministic, propose_actions, render_comment, CommentState, Draft};
use crate::messages::{Message, SynthesisReason};
use crate::ports::QueueName;
use crate::repo::{action_sk, draft_sk, Change, CASE_SK};
use crate::signing::{new_nonce, LinkClaims, LinkSigner, Scope};
use crate::synthesis::{self, LanguageModel};

pub struct Synthesize {
    ctx: Context,
    signer: Arc<LinkSigner>,
    model: Option<Arc<dyn LanguageModel>>,
}

/// The one dossier draft of a case (closure drafts will get their own ids).
pub const DRAFT_ID: &str = "dossier-1";

impl Synthesize {
    pub fn new(ctx: Context, signer: Arc<LinkSigner>) -> Synthesize {
        Synthesize { ctx, signer, model: None }
    }

    /// Writes dossiers with this model (falling back to the deterministic dossier).
    pub fn with_model(mut self, model: Arc<dyn LanguageModel>) -> Synthesize {
        self.model = Some(model);
        self
    }

    async fn synthesize(&self, key: &CaseKey, reason: SynthesisReason) -> Result<(), StageError> {
        let Some(case) = self.ctx.repo.case_head(key).await? else {
            return Err(StageError::BadMessage(format!("no case {key}")));
        };
        let now = self.ctx.now_ms();
        match case.status {
            CaseStatus::Enriching => {
                if !case.all_reported(&self.ctx.repo.reported_sources(key).await?) {
                    let deadline = case.enrich_deadline_ms.unwrap_or(now);
                    if reason == SynthesisReason::AllReported {
                        return Ok(());
                    }
                    if now < deadline {
                        // Deadlines beyond the queue's longest delay come back in hops.
                        return Err(StageError::RetryLater {
                            reason: "fan-in deadline not reached".into(),
                            after: ms_until(now, deadline),
                        });
                    }
                }
                // Claim: only one worker moves Enriching → Synthesizing.
                let claimed = self
                    .ctx
                    .repo
                    .update(key, CASE_SK, |c: &mut Case| match c.move_to(CaseStatus::Synthesizing, now) {
                        Ok(()) => Ok::<_, StageError>(Change::Write(true)),
                        Err(_) => Ok(Change::Keep(false)),
                    })
                    .await?
                    .unwrap_or(false);
                if !claimed {
                    return Ok(());
                }
                self.build(key).await
            }
            // A crash after the claim: finish the job (every write below is idempotent).
            CaseStatus::Synthesizing => self.build(key).await,
            CaseStatus::WritingBack => match case.draft_id {
                Some(draft_id) => {
                    self.ctx.send(&QueueName::writeback(), &Message::WriteComment { case: key.clone(), draft_id }, Duration::ZERO).await
                }
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    async fn build(&self, key: &CaseKey) -> Result<(), StageError> {
        let Some(case) = self.ctx.repo.case(key).await? else {
            return Ok(());
        };
        let draft_id = DRAFT_ID.to_string();
        // A redelivery after the draft was stored: no second model call, just move on.
        if self.ctx.repo.draft(key, &draft_id).await?.is_none() {
            self.draft(&case, &draft_id).await?;
        } else {
            // A crash may have come between a policy approval and its hand-over: hand it over
            // again (writeback claims each execution once).
            for a in self.ctx.repo.actions(key).await?.into_iter().filter(|a| a.status == crate::case::ActionStatus::Approved) {
                self.ctx
                    .send(&QueueName::writeback(), &Message::ExecuteAction { case: key.clone(), action_id: a.id }, Duration::ZERO)
                    .await?;
            }
        }
        let now = self.ctx.now_ms();
        let id = draft_id.clone();
        self.ctx
            .repo
            .update(key, CASE_SK, |c: &mut Case| {
                c.draft_id = Some(id.clone());
                match c.move_to(CaseStatus::WritingBack, now) {
                    Ok(()) => Ok::<_, StageError>(Change::Write(())),
                    Err(_) => Ok(Change::Keep(())),
                }
            })
            .await?;
        self.ctx.send(&QueueName::writeback(), &Message::WriteComment { case: key.clone(), draft_id }, Duration::ZERO).await
    }

    /// Builds and stores the draft and its actions (each write first-one-wins).
    async fn draft(&self, case: &Case, draft_id: &str) -> Result<(), StageError> {
        let key = &case.key;
        let reports = self.ctx.repo.source_reports(key).await?;
        let missing: Vec<String> = case.expected_sources.iter().filter(|s| !reports.iter().any(|r| &r.source == *s)).cloned().collect();
        let baseline = deterministic(case, &reports, &missing);
        let phase = self.ctx.config.phase;
        let (dossier, mut actions) = match &self.model {
            None => {
                let actions = propose_actions(case, &baseline, phase);
                (baseline, actions)
            }
            Some(model) => {
                match synthesis::with_model(model.as_ref(), case, &reports, &baseline, phase, &self.ctx.config.internal_names).await {
                    Ok((dossier, actions, run)) => {
                        info!(model = %run.model, input_tokens = run.input_tokens, output_tokens = run.output_tokens, latency_ms = run.latency_ms, attempts = run.attempts, "model dossier accepted");
                        self.ctx.metric(model_metrics(&run, false, self.ctx.config.model_price));
                        self.ctx
                            .audit(
                                key,
                                "model.called",
                                format!(
                                    "{} accepted: prompt {} ({}), {} in / {} out tokens, {} ms, {} attempt(s)",
                                    run.model,
                                    run.prompt_version,
                                    run.prompt_hash,
                                    run.input_tokens,
                                    run.output_tokens,
                                    run.latency_ms,
                                    run.attempts
                                ),
                            )
                            .await?;
                        (dossier, actions)
                    }
                    Err(run) => {
                        let reason = run.rejected.clone().unwrap_or_default();
                        warn!(model = %run.model, %reason, "model dossier not used; deterministic dossier instead");
                        self.ctx.audit(key, "model.rejected", format!("{}: {reason}", run.model)).await?;
                        self.ctx.metric(model_metrics(&run, true, self.ctx.config.model_price));
                        let mut d = baseline;
                        d.model_run = Some(run);
                        let actions = propose_actions(case, &d, phase);
                        (d, actions)
                    }
                }
            }
        };
        let now = self.ctx.now_ms();
        for action in &mut actions {
            action.links = self.links(key, action, now, dossier.severity);
            if self.ctx.repo.put_new(key, &action_sk(&action.id), action).await? == crate::ports::PutOutcome::AlreadyExists {
                // Redelivery: the stored action (and its links) stand.
                if let Some(stored) = self.ctx.repo.action(key, &action.id).await? {
                    *action = stored;
                }
            }
        }
        // Policies approve some actions without a human; they run like any approved action.
        let mut auto_approved = Vec::new();
        for action in actions.iter_mut().filter(|a| a.status == crate::case::ActionStatus::Proposed) {
            let Some(rule) = self.ctx.config.auto_approve.iter().find(|r| r.allows(action, &dossier)) else { continue };
            let decision =
                crate::case::Decision { approved: true, approver: rule.describe(), at_ms: now, source_ip: None, user_agent: None };
            let approved = self
                .ctx
                .repo
                .update(key, &action_sk(&action.id), |a: &mut Action| {
                    if a.status != crate::case::ActionStatus::Proposed {
                        return Ok::<_, StageError>(Change::Keep(false));
                    }
                    a.status = crate::case::ActionStatus::Approved;
                    a.decision = Some(decision.clone());
                    Ok(Change::Write(true))
                })
                .await?
                .unwrap_or(false);
            if approved {
                action.status = crate::case::ActionStatus::Approved;
                action.decision = Some(decision);
                self.ctx.audit(key, "action.auto_approved", format!("{} by {}", action.id, rule.describe())).await?;
                auto_approved.push(action.id.clone());
            }
        }
        let feedback = self.feedback_link(key, now);
        let comment = format!("{}\nWas this dossier useful? {feedback}", render_comment(case, draft_id, &dossier, &actions));
        let ai = dossier.ai_generated;
        let draft = Draft { id: draft_id.to_string(), created_at_ms: now, dossier, comment, comment_state: CommentState::Pending };
        self.ctx.repo.put_new(key, &draft_sk(draft_id), &draft).await?;
        for id in auto_approved {
            self.ctx.send(&QueueName::writeback(), &Message::ExecuteAction { case: key.clone(), action_id: id }, Duration::ZERO).await?;
        }
        // Approvers are told through writeback, which holds the notifiers and retries delivery.
        for a in actions.iter().filter(|a| a.status == crate::case::ActionStatus::Proposed && !a.links.is_empty()) {
            self.ctx
                .send(&QueueName::writeback(), &Message::Notify { case: key.clone(), action_id: a.id.clone(), attempt: 1 }, Duration::ZERO)
                .await?;
        }
        info!(draft = %draft_id, actions = actions.len(), missing = missing.len(), ai, "dossier drafted");
        self.ctx
            .audit(
                key,
                "dossier.drafted",
                format!("draft {draft_id}, {} proposed action(s), {}", actions.len(), if ai { "AI-generated" } else { "deterministic" }),
            )
            .await
    }

    /// The closure draft, once per case, handed to writeback like any comment.
    async fn close(&self, key: &CaseKey, resolution: &str) -> Result<(), StageError> {
        let Some(case) = self.ctx.repo.case(key).await? else {
            return Err(StageError::BadMessage(format!("no case {key}")));
        };
        let draft_id = crate::closure::CLOSURE_DRAFT_ID;
        if self.ctx.repo.draft(key, draft_id).await?.is_none() {
            let dossier = match &case.draft_id {
                Some(id) => self.ctx.repo.draft(key, id).await?.map(|d| d.dossier),
                None => None,
            };
            let actions = self.ctx.repo.actions(key).await?;
            let comment = crate::closure::render_closure(&case, dossier.as_ref(), &actions, resolution);
            let base = dossier.unwrap_or_else(|| deterministic(&case, &[], &[]));
            let draft = Draft {
                id: draft_id.to_string(),
                created_at_ms: self.ctx.now_ms(),
                dossier: base,
                comment,
                comment_state: CommentState::Pending,
            };
            if self.ctx.repo.put_new(key, &draft_sk(draft_id), &draft).await? == crate::ports::PutOutcome::Written {
                self.ctx.audit(key, "closure.drafted", format!("resolution {resolution}")).await?;
            }
        }
        self.ctx
            .send(&QueueName::writeback(), &Message::WriteComment { case: key.clone(), draft_id: draft_id.to_string() }, Duration::ZERO)
            .await
    }

    /// One signed feedback link per dossier (30 days), shown in the comment.
    fn feedback_link(&self, key: &CaseKey, now_ms: i64) -> String {
        let token = self.signer.sign(&LinkClaims {
            case: key.clone(),
            action: "feedback".into(),
            scope: Scope::Feedback,
            approver: "analyst".into(),
            exp: now_ms / 1000 + 30 * 86_400,
            nonce: new_nonce(),
        });
        format!("{}/feedback?t={token}", self.ctx.config.public_base_url.trim_end_matches('/'))
    }

    fn links(&self, key: &CaseKey, action: &Action, now_ms: i64, severity: crate::xdr::Severity) -> Vec<ApprovalLink> {
        let ttl_ms = i64::try_from(self.ctx.config.link_ttl.as_millis()).unwrap_or(i64::MAX);
        let exp_ms = now_ms.saturating_add(ttl_ms);
        self.ctx
            .config
            .approvers_for(severity)
            .into_iter()
            .map(|approver| {
                let token = self.signer.sign(&LinkClaims {
                    case: key.clone(),
                    action: action.id.clone(),
                    scope: Scope::DecideAction,
                    approver: approver.clone(),
                    exp: exp_ms / 1000,
                    nonce: new_nonce(),
                });
                ApprovalLink {
                    approver: approver.clone(),
                    url: format!("{}/approve?t={token}", self.ctx.config.public_base_url.trim_end_matches('/')),
                    expires_at_ms: exp_ms,
                }
            })
            .collect()
    }
}

/// Tokens spent and whether the deterministic dossier had to stand in; per model.
/// Tokens, latency, fallback and (with a configured price) the estimated cost: a rejected answer
/// was paid for too.
fn model_metrics(run: &crate::synthesis::ModelRun, fell_back: bool, price: Option<ModelPrice>) -> crate::metrics::MetricSet {
    use crate::metrics::{Metric, MetricSet};
    let mut metrics = vec![
        Metric::count("ModelInputTokens", run.input_tokens as f64),
        Metric::count("ModelOutputTokens", run.output_tokens as f64),
        Metric::ms("ModelLatency", i64::try_from(run.latency_ms).unwrap_or(i64::MAX)),
        Metric::count("ModelFallback", f64::from(u8::from(fell_back))),
    ];
    if let Some(price) = price {
        metrics.push(Metric::usd("ModelCostUsd", price.cost_usd(run.input_tokens, run.output_tokens)));
    }
    MetricSet::new(metrics).with_dimension("Model", run.model.clone())
}

#[async_trait]
impl MessageHandler for Synthesize {
    async fn handle(&self, body: &str) -> Result<(), StageError> {
        match Message::parse(body)? {
            Message::Synthesize { case, reason } => {
                let span = tracing::info_span!("case", case = %case, stage = "synthesize");
                self.synthesize(&case, reason).instrument(span).await
            }
            Message::Close { case, resolution } => {
                let span = tracing::info_span!("case", case = %case, stage = "closure");
                self.close(&case, &resolution).instrument(span).await
            }
            _ => Err(StageError::BadMessage("synthesize accepts only `synthesize` and `close` messages".into())),
        }
    }
}
