//! synthesize: claim the case under a lease, build the dossier (the model within what is left of
//! the invocation, else the evidence alone), and commit the case's hand-over, the draft, the
//! dossier, the proposed actions and their audit records together. A worker that lost its claim
//! commits nothing: the comment message it sent beside its commit finds no draft of its own (at
//! most it has the stored draft posted, as stored), and it notifies nobody and runs nothing. Also
//! drafts the closure note when XDR resolves an incident.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn, Instrument};

use super::{ms_until, Context, Deadline, MessageHandler, StageError};
use crate::config::ModelPrice;
use crate::domain::{
    Action, ActionStatus, ApprovalLink, Case, CaseKey, CaseStatus, Claim, Decision, Draft, DraftKind, Owner, Proposal, Severity,
};
use crate::dossier::{deterministic, propose_actions, render_closure, render_comment, Dossier, CLOSURE_DRAFT_ID};
use crate::messages::{Message, SynthesisReason};
use crate::ports::QueueName;
use crate::random::new_nonce;
use crate::signing::{LinkClaims, LinkSigner, Scope};
use crate::store::{Change, Commit, Committed, Versioned, CASE_SK};
use crate::synthesis::{self, LanguageModel, ModelBudget};

pub struct Synthesize {
    ctx: Context,
    signer: Arc<LinkSigner>,
    model: Option<Arc<dyn LanguageModel>>,
}

/// How long synthesis waits for a report the fan-in set already names (its write was in
/// flight when the set completed).
const REPORT_IN_FLIGHT: Duration = Duration::from_secs(2);

/// How many times an `all_reported` message reads again for such a report.
const REPORT_IN_FLIGHT_READS: u32 = 5;

/// The one dossier draft of a case.
pub const DRAFT_ID: &str = "dossier-1";

/// The sources the case expects that have no report among `reports`.
fn missing_reports(case: &Case, reports: &[crate::sources::SourceReport]) -> Vec<String> {
    case.missing_sources(&reports.iter().map(|r| r.source.as_str()).collect::<Vec<_>>())
}

/// A dossier drafted, not yet committed.
struct Generated {
    dossier: Dossier,
    proposals: Vec<Proposal>,
    rules_proposed: Vec<Proposal>,
    baseline: Dossier,
    /// Expected sources without a report.
    missing: usize,
    /// Audit records of the drafting (the model's call or refusal).
    events: Vec<crate::domain::AuditEvent>,
}

/// What the worker that committed the dossier must send next.
struct HandOver {
    messages: Vec<(QueueName, Message, Duration)>,
}

impl Synthesize {
    pub fn new(ctx: Context, signer: Arc<LinkSigner>) -> Synthesize {
        Synthesize { ctx, signer, model: None }
    }

    /// Writes dossiers with this model (falling back to the deterministic dossier).
    pub fn with_model(mut self, model: Arc<dyn LanguageModel>) -> Synthesize {
        self.model = Some(model);
        self
    }

    /// `waited`: how often this message was sent again to wait.
    async fn synthesize(&self, key: &CaseKey, reason: SynthesisReason, waited: u32, deadline: Deadline) -> Result<(), StageError> {
        // The case and the reports side by side: one round trip (reports only grow).
        let (stored, reports) = tokio::join!(self.ctx.store.case(key), self.ctx.store.reports(key));
        let Some(stored) = stored? else {
            return Err(StageError::BadMessage(format!("no case {key}")));
        };
        let reports = reports?;
        let now = self.ctx.now_ms();
        match stored.value.status {
            CaseStatus::Enriching => {
                let due = stored.value.enrich_deadline_ms.unwrap_or(now);
                // Before the deadline only a complete set of reports starts synthesis, whatever
                // the message says: the stored case names the sources.
                if now < due && !missing_reports(&stored.value, &reports).is_empty() {
                    if reason == SynthesisReason::AllReported {
                        // A source joins the fan-in set while its report is being stored: one
                        // may be a moment behind the set. Read again shortly, a few times; then
                        // the message is done (a source whose write keeps failing sends again
                        // when it succeeds, and the deadline message is queued; a forged one
                        // costs a few reads).
                        if waited >= REPORT_IN_FLIGHT_READS {
                            warn!(waited, "`all_reported` but a report is still missing; the deadline decides");
                            return Ok(());
                        }
                        info!("`all_reported` with a report not stored yet; reading again shortly");
                        let after = ms_until(now, due).min(REPORT_IN_FLIGHT);
                        return Err(StageError::RetryLater { reason: "a report is still being stored".into(), after });
                    }
                    // Deadlines beyond the queue's longest delay come back in hops.
                    return Err(StageError::RetryLater { reason: "fan-in deadline not reached".into(), after: ms_until(now, due) });
                }
            }
            CaseStatus::Synthesizing => {}
            // A redelivery after the hand-over: send the comment again (writeback posts it once).
            CaseStatus::WritingBack => {
                return match stored.value.draft_id {
                    Some(draft_id) => {
                        self.ctx
                            .send(
                                &QueueName::writeback(),
                                &Message::WriteComment { case: key.clone(), draft_id, snapshot: None },
                                Duration::ZERO,
                            )
                            .await
                    }
                    None => Ok(()),
                }
            }
            _ => return Ok(()),
        }
        let owner = Owner::new(self.ctx.actor);
        let lease_until = self.ctx.lease_until(deadline);
        // Claimed from the copy just read: no second read unless another worker wrote meanwhile.
        let pk = key.storage_id();
        let case_as_read = stored.value.clone();
        let claim = self.ctx.store.update_versioned_from(&pk, CASE_SK, stored, |c: &mut Case, commit| {
            let claim = c.claim_synthesis(&owner, lease_until, now);
            if let Claim::Granted { reclaimed } = claim {
                let detail = if reclaimed { "lease taken over from a worker that did not finish" } else { "claimed" };
                commit.audit(&self.ctx.event(key, "synthesis.claimed", detail))?;
                return Ok::<_, StageError>(Change::Write((claim, c.clone())));
            }
            Ok(Change::Keep((claim, c.clone())))
        });
        // The dossier is drafted while the claim is written: the claim costs a round trip, not
        // a round trip before the model. A lost claim drops the draft, and the model call with
        // it (only a worker delivered the same case within that round trip ever starts one).
        let mut generation = std::pin::pin!(self.generate(&case_as_read, reports, deadline));
        let mut claim = std::pin::pin!(claim);
        // The claim first: decided on the copy read (busy, done), it returns before the model is
        // ever asked.
        let (claim, early) = tokio::select! {
            biased;
            claimed = &mut claim => (claimed?, None),
            generated = &mut generation => (claim.as_mut().await?, Some(generated)),
        };
        let Some(((claim, case), version)) = claim else { return Ok(()) };
        match claim {
            Claim::Granted { .. } => {}
            Claim::Busy { until_ms } => {
                return Err(StageError::RetryLater { reason: "another worker holds the synthesis".into(), after: ms_until(now, until_ms) })
            }
            Claim::Done | Claim::Refused(_) => return Ok(()),
        }
        let generated = match early {
            Some(generated) => generated?,
            None => generation.as_mut().await?,
        };
        match self.hand_over(Versioned { value: case, version }, generated, &owner).await? {
            Some(hand_over) => self.ctx.send_all(hand_over.messages).await,
            None => {
                info!("synthesis claim lost to another worker; nothing stored (the comment message sent beside the commit posts nothing of its own)");
                Ok(())
            }
        }
    }

    /// The dossier and the actions proposed for it: the model within what is left of the
    /// invocation, else the evidence alone. Writes nothing.
    async fn generate(&self, case: &Case, reports: Vec<crate::sources::SourceReport>, deadline: Deadline) -> Result<Generated, StageError> {
        let key = case.key.clone();
        let config = self.ctx.config.clone();
        // The reports were read before the claim: one stored since (a deadline message a moment
        // early) is read now rather than left out. Only when some are missing: one read more.
        let reports = if missing_reports(case, &reports).is_empty() { reports } else { self.ctx.store.reports(&key).await? };
        let missing = missing_reports(case, &reports);
        let baseline = deterministic(case, &reports, &missing);
        let rules_proposed = propose_actions(case, &baseline, config.phase);
        let mut events = Vec::new();
        let (dossier, proposals) = match &self.model {
            None => (baseline.clone(), rules_proposed.clone()),
            Some(model) => {
                let until = tokio::time::Instant::now() + deadline.remaining(self.ctx.now_ms()).saturating_sub(config.synthesis_reserve);
                let budget = ModelBudget { until, per_call: config.model_timeout };
                match synthesis::with_model(
                    model.as_ref(),
                    case,
                    &reports,
                    &baseline,
                    config.phase,
                    &config.internal_names.with_learned(&case.internal_suffixes),
                    budget,
                )
                .await
                {
                    Ok((dossier, proposals, run)) => {
                        info!(model = %run.model, input_tokens = run.input_tokens, output_tokens = run.output_tokens, latency_ms = run.latency_ms, attempts = run.attempts, "model dossier accepted");
                        self.ctx.metric(model_metrics(&run, false, config.model_price));
                        events.push(self.ctx.event(
                            &key,
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
                        ));
                        (dossier, proposals)
                    }
                    Err(run) => {
                        let reason = run.rejected.clone().unwrap_or_default();
                        warn!(model = %run.model, %reason, "model dossier not used; deterministic dossier instead");
                        events.push(self.ctx.event(&key, "model.rejected", format!("{}: {reason}", run.model)));
                        self.ctx.metric(model_metrics(&run, true, config.model_price));
                        let mut d = baseline.clone();
                        d.model_run = Some(run);
                        (d, rules_proposed.clone())
                    }
                }
            }
        };
        Ok(Generated { dossier, proposals, rules_proposed, baseline, missing: missing.len(), events })
    }

    /// Commits the dossier with the case's hand-over (the case as claimed, at its version);
    /// `None` when the claim was lost meanwhile (nothing was written).
    async fn hand_over(&self, stored: Versioned<Case>, generated: Generated, owner: &Owner) -> Result<Option<HandOver>, StageError> {
        let Generated { dossier, proposals, rules_proposed, baseline, missing, mut events } = generated;
        let case = stored.value;
        let key = case.key.clone();
        let config = self.ctx.config.clone();
        let now = self.ctx.now_ms();
        let actions = self.actions(&case, proposals, &rules_proposed, &baseline, &dossier, now);
        let feedback = self.feedback_link(&key, now);
        let comment = format!("{}\nWas this dossier useful? {feedback}", render_comment(&case, DRAFT_ID, &dossier, &actions));
        let draft = Draft::new(&key, DRAFT_ID, DraftKind::Dossier, comment, now, &config.budgets)
            .written_by(dossier.ai_generated, &dossier.prompt_version);

        let mut handed_over = case.clone();
        if handed_over.drafted(owner, DRAFT_ID, now, &config.budgets).is_err() {
            return Ok(None);
        }
        // The draft is created at the version this commit gives the case. A commit that did not
        // land held an earlier claim (a later claim makes it conflict), no claim is granted after
        // the hand-over, and the draft's version only grows: so the copy the comment message
        // carries matches no draft but the one this commit stores (the case's transition table
        // and its test `no_claim_after_the_hand_over` keep it so).
        let created_at = stored.version + 1;
        let mut commit = Commit::new();
        commit.save(&handed_over, stored.version)?;
        commit.create_at(&draft, created_at)?;
        commit.dossier(&key, &dossier)?;
        for a in &actions {
            commit.create(a)?;
            if a.status == ActionStatus::Approved {
                let by = a.decision.as_ref().map_or("policy", |d| d.approver.as_str());
                events.push(self.ctx.event(&key, "action.auto_approved", format!("{} by {by}", a.id)));
            }
        }
        let ai = dossier.ai_generated;
        events.push(self.ctx.event(
            &key,
            "dossier.drafted",
            format!("draft {DRAFT_ID}, {} proposed action(s), {}", actions.len(), if ai { "AI-generated" } else { "deterministic" }),
        ));
        for e in &events {
            commit.audit(e)?;
        }
        // The comment message goes beside the commit, with the draft riding on it as created:
        // write-back claims it at that version without reading it, and waits a moment for a
        // draft still being stored. A message whose commit never lands posts nothing: no draft
        // is ever stored at its version. Without a copy to carry, it follows the commit.
        let comment = |snapshot| Message::WriteComment { case: key.clone(), draft_id: DRAFT_ID.into(), snapshot };
        let carried = self.ctx.snapshot(&draft, created_at).map(|s| comment(Some(s)));
        let beside = async {
            match &carried {
                Some(message) => match self.ctx.send(&QueueName::writeback(), message, Duration::ZERO).await {
                    Ok(()) => true,
                    Err(e) => {
                        warn!(error = %e, "comment message not sent beside the commit; sent after it");
                        false
                    }
                },
                None => false,
            }
        };
        let (committed, sent_beside) = tokio::join!(self.ctx.store.commit(commit), beside);
        match committed? {
            Committed::Written => {}
            // The case changed under us: the lease lapsed and another worker took over.
            Committed::Conflict { index: 0 } => return Ok(None),
            Committed::Conflict { index } => {
                return Err(StageError::Store(crate::ports::StoreError::Rejected(format!(
                    "the dossier of {key} conflicted on write {index} while its case did not"
                ))))
            }
        }
        info!(draft = DRAFT_ID, actions = actions.len(), missing, ai, "dossier drafted");
        let mut messages = Vec::new();
        if !sent_beside {
            // Not sent beside the commit (no copy to carry, or the send failed): sent now.
            messages.push((QueueName::writeback(), carried.unwrap_or_else(|| comment(None)), Duration::ZERO));
        }
        for a in &actions {
            match a.status {
                ActionStatus::Approved => messages.push((
                    QueueName::writeback(),
                    Message::ExecuteAction { case: key.clone(), action_id: a.id.clone() },
                    Duration::ZERO,
                )),
                // Approvers are told through writeback, which holds the notifiers and retries.
                ActionStatus::Proposed if !a.links.is_empty() => messages.push((
                    QueueName::writeback(),
                    Message::Notify { case: key.clone(), action_id: a.id.clone(), attempt: 1 },
                    Duration::ZERO,
                )),
                _ => {}
            }
        }
        Ok(Some(HandOver { messages }))
    }

    /// The proposals as actions with their signed links; those a policy approves are approved
    /// already (only kinds and targets the rules proposed themselves: see `AutoApprove`).
    fn actions(
        &self,
        case: &Case,
        proposals: Vec<Proposal>,
        rules: &[Proposal],
        evidence: &Dossier,
        dossier: &Dossier,
        now: i64,
    ) -> Vec<Action> {
        let config = &self.ctx.config;
        let expires = now.saturating_add(i64::try_from(config.link_ttl.as_millis()).unwrap_or(i64::MAX / 4));
        proposals
            .into_iter()
            .map(|p| {
                let mut action = Action::proposed(&case.key, p, now, expires, &config.budgets);
                if let Some(rule) = config.auto_approve.iter().find(|r| r.allows(&action, rules, evidence)) {
                    let decision = Decision {
                        approved: true,
                        approver: rule.describe(),
                        at_ms: now,
                        source_ip: None,
                        user_agent: None,
                        proof: Some("policy".into()),
                    };
                    if action.decide(decision, case.is_resolved(), &config.budgets).is_ok() {
                        return action;
                    }
                }
                action.links = self.links(&case.key, &action, expires, dossier.severity);
                if action.links.is_empty() {
                    // Nobody to tell: the action waits for its expiry only.
                    action.record_notifications(Vec::new(), true);
                }
                action
            })
            .collect()
    }

    /// The closure: the case records the resolution (an early case closes without a dossier),
    /// open actions expire ("incident resolved"), and a closure note is drafted once when a
    /// dossier was written.
    async fn close(&self, key: &CaseKey, resolution: &str) -> Result<(), StageError> {
        let now = self.ctx.now_ms();
        let budgets = self.ctx.config.budgets;
        let event = self.ctx.event(key, "incident.resolved", format!("XDR status {resolution}"));
        let Some(case) = self
            .ctx
            .store
            .update(&key.storage_id(), CASE_SK, |c: &mut Case, commit| {
                if !c.resolve(resolution, now) {
                    return Ok::<_, StageError>(Change::Keep(c.clone()));
                }
                commit.audit(&event)?;
                Ok(Change::Write(c.clone()))
            })
            .await?
        else {
            return Err(StageError::BadMessage(format!("no case {key}")));
        };
        for action in self
            .ctx
            .store
            .actions(key)
            .await?
            .into_iter()
            .filter(|a| matches!(a.value.status, ActionStatus::Proposed | ActionStatus::Approved))
        {
            let id = action.value.id.clone();
            let expired = self.ctx.event(key, "action.expired", format!("{id}: incident resolved"));
            self.ctx
                .store
                .update(&key.storage_id(), &crate::store::action_sk(&id), |a: &mut Action, commit| {
                    if !a.expire("incident resolved") {
                        return Ok::<_, StageError>(Change::Keep(()));
                    }
                    commit.audit(&expired)?;
                    Ok(Change::Write(()))
                })
                .await?;
        }
        if case.status == CaseStatus::Closed || case.draft_id.is_none() {
            info!("incident resolved before its dossier; no closure note");
            return Ok(());
        }
        if self.ctx.store.draft(key, CLOSURE_DRAFT_ID).await?.is_none() {
            let dossier = self.ctx.store.dossier(key).await?;
            let actions: Vec<Action> = self.ctx.store.actions(key).await?.into_iter().map(|a| a.value).collect();
            let comment = render_closure(&case, dossier.as_ref(), &actions, resolution);
            let draft = Draft::new(key, CLOSURE_DRAFT_ID, DraftKind::Closure, comment, now, &budgets);
            let mut commit = Commit::new();
            commit.create(&draft)?;
            commit.audit(&self.ctx.event(key, "closure.drafted", format!("resolution {resolution}")))?;
            self.ctx.store.commit(commit).await?;
        }
        self.ctx.settle_case(key, false).await?;
        self.ctx
            .send(
                &QueueName::writeback(),
                &Message::WriteComment { case: key.clone(), draft_id: CLOSURE_DRAFT_ID.to_string(), snapshot: None },
                Duration::ZERO,
            )
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

    fn links(&self, key: &CaseKey, action: &Action, expires_at_ms: i64, severity: Severity) -> Vec<ApprovalLink> {
        super::approval_links(&self.ctx.config, &self.signer, key, &action.id, expires_at_ms, severity)
    }
}

/// Tokens, latency, fallback and (with a configured price) the estimated cost, per model: a
/// rejected answer was paid for too.
fn model_metrics(run: &crate::synthesis::ModelRun, fell_back: bool, price: Option<ModelPrice>) -> crate::metrics::MetricSet {
    use crate::metrics::{Metric, MetricSet};
    let mut metrics = vec![
        Metric::count("ModelInputTokens", run.input_tokens as f64),
        Metric::count("ModelOutputTokens", run.output_tokens as f64),
        Metric::ms("ModelLatency", i64::try_from(run.latency_ms).unwrap_or(i64::MAX)),
        Metric::count("ModelFallback", f64::from(u8::from(fell_back))),
        Metric::count("ModelUnavailable", f64::from(u8::from(run.unreachable))),
    ];
    if let Some(price) = price {
        metrics.push(Metric::usd("ModelCostUsd", price.cost_usd(run.input_tokens, run.output_tokens)));
    }
    MetricSet::new(metrics).with_dimension("Model", run.model.clone())
}

#[async_trait]
impl MessageHandler for Synthesize {
    async fn handle(&self, body: &str, deadline: Deadline) -> Result<(), StageError> {
        match Message::parse_counted(body)? {
            (Message::Synthesize { case, reason }, waited) => {
                let span = tracing::info_span!("case", case = %case, stage = "synthesize");
                self.synthesize(&case, reason, waited, deadline).instrument(span).await
            }
            (Message::Close { case, resolution }, _) => {
                let span = tracing::info_span!("case", case = %case, stage = "closure");
                self.close(&case, &resolution).instrument(span).await
            }
            _ => Err(StageError::BadMessage("synthesize accepts only `synthesize` and `close` messages".into())),
        }
    }
}
