//! writeback: the only stage that changes XDR. Posts each draft once and runs each approved
//! action once, each under a leased claim owned by this invocation; a claim taken over from a
//! worker that died reads back first where the API can. Also tells approvers.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn, Instrument};

mod closure_export;
mod comment;
mod notify;

use super::{ms_until, Context, Deadline, MessageHandler, StageError};
use crate::domain::{Action, ActionKind, ActionStatus, CaseKey, Claim, Draft, DraftKind, Execution, Owner};
use crate::messages::Message;
use crate::ports::{ClosureExport, IdentityAdmin, Notifier, QueueName, XdrApi, XdrError};
use crate::store::{action_sk, Change, Commit, Committed, Versioned};
use crate::text::clean_text;

pub struct Writeback {
    ctx: Context,
    xdr: Arc<dyn XdrApi>,
    identity: Option<Arc<dyn IdentityAdmin>>,
    notifiers: Vec<Arc<dyn Notifier>>,
    exports: Vec<Arc<dyn ClosureExport>>,
}

/// How often an XDR response action's status is polled, and for how long.
const ACTION_POLL_EVERY: Duration = Duration::from_secs(60);
const ACTION_POLL_ATTEMPTS: u32 = 30;
/// Time a worker must still have on its execution lease to act. The lease outlives the
/// invocation, so this only refuses a claim that came back after its lease had (nearly) lapsed.
const ACT_WITHIN_LEASE_MS: i64 = 1_000;

impl Writeback {
    pub fn new(ctx: Context, xdr: Arc<dyn XdrApi>) -> Writeback {
        Writeback { ctx, xdr, identity: None, notifiers: Vec::new(), exports: Vec::new() }
    }

    /// Where approvers are told about actions waiting for them (Slack, Teams, e-mail).
    pub fn with_notifiers(mut self, notifiers: Vec<Arc<dyn Notifier>>) -> Writeback {
        self.notifiers = notifiers;
        self
    }

    /// Where a posted closure summary is handed on (a ServiceNow record, an e-mail).
    pub fn with_closure_exports(mut self, exports: Vec<Arc<dyn ClosureExport>>) -> Writeback {
        self.exports = exports;
        self
    }

    /// Where `disable_user` actions run.
    pub fn with_identity(mut self, identity: Arc<dyn IdentityAdmin>) -> Writeback {
        self.identity = Some(identity);
        self
    }

    // -----------------------------------------------------------------------------------------
    // Actions

    async fn execute_action(&self, key: &CaseKey, action_id: &str, deadline: Deadline) -> Result<(), StageError> {
        let now = self.ctx.now_ms();
        // Nothing runs on an incident XDR resolved: its open actions end instead.
        if self.ctx.store.case(key).await?.is_some_and(|c| c.value.is_resolved()) {
            let expired = self.ctx.event(key, "action.expired", format!("{action_id}: incident resolved"));
            self.ctx
                .store
                .update(&key.storage_id(), &action_sk(action_id), |a: &mut Action, commit| {
                    if a.status != ActionStatus::Approved || !a.expire("incident resolved") {
                        return Ok::<_, StageError>(Change::Keep(()));
                    }
                    commit.audit(&expired)?;
                    Ok(Change::Write(()))
                })
                .await?;
            return self.ctx.settle_case(key, false).await;
        }
        let owner = Owner::new(self.ctx.actor);
        let lease_until = self.ctx.lease_until(deadline);
        let claimed = self
            .ctx
            .store
            .update_versioned(&key.storage_id(), &action_sk(action_id), |a: &mut Action, commit| {
                let claim = a.claim_execution(&owner, lease_until, now);
                if let Claim::Granted { reclaimed } = claim {
                    let detail = format!(
                        "{action_id}: attempt {}{}",
                        a.attempts,
                        if reclaimed { " (taken over from a worker that did not finish)" } else { "" }
                    );
                    commit.audit(&self.ctx.event(key, "action.executing", detail))?;
                    return Ok::<_, StageError>(Change::Write((claim, a.clone())));
                }
                Ok(Change::Keep((claim, a.clone())))
            })
            .await?
            .ok_or_else(|| StageError::BadMessage(format!("no action {action_id} on case {key}")))?;
        let ((claim, action), version) = claimed;
        let reclaimed = match claim {
            Claim::Granted { reclaimed } => reclaimed,
            Claim::Busy { until_ms } => {
                return Err(StageError::RetryLater { reason: "action execution in flight".into(), after: ms_until(now, until_ms) })
            }
            // Never without an approval; never twice. Approved or not, the case may settle now.
            Claim::Done | Claim::Refused(_) => return self.ctx.settle_case(key, false).await,
        };
        // A claim can come back after its own lease lapsed (the store answered slowly): another
        // worker may hold the action by now and be acting. Act only well inside the lease.
        if action.lease.as_ref().is_none_or(|l| l.lapsed(self.ctx.now_ms() + ACT_WITHIN_LEASE_MS)) {
            warn!(action = %action.id, "claim came back too late to act on; the lease decides who acts");
            return Err(StageError::RetryLater { reason: "claim returned after its lease".into(), after: Duration::from_secs(1) });
        }
        let outcome = match self.read_back(&action, reclaimed).await? {
            Some(found) => Ok(Execution::Succeeded { detail: found, xdr_action_id: action.xdr_action_id.clone() }),
            None => self.run(key, &action).await,
        };
        let execution = match outcome {
            Ok(done) => done,
            Err(e) if e.proves_nothing_written() && e.is_retryable() => {
                let mut released = action;
                if released.release(&owner, self.ctx.now_ms()).is_ok() {
                    let mut commit = Commit::new();
                    commit.save(&released, version)?;
                    self.ctx.store.commit(commit).await?;
                }
                return Err(e.into());
            }
            // It may have happened: the lease stands, and the retry reads back after it lapses.
            Err(e) if e.is_retryable() => return Err(e.into()),
            Err(e) => Execution::Failed(e.to_string()),
        };
        self.finish(key, action, version, &owner, execution).await
    }

    /// After a worker died mid-call, what the system shows; `Some(how)` if it is already done.
    async fn read_back(&self, action: &Action, reclaimed: bool) -> Result<Option<String>, StageError> {
        if !reclaimed {
            return Ok(None);
        }
        let done = match action.kind {
            ActionKind::IsolateEndpoint => self.xdr.endpoint_isolated(&action.target).await?.unwrap_or(false),
            ActionKind::RaiseSeverity => {
                self.xdr.manual_severity(&action.case.incident_id).await?.is_some_and(|s| s.eq_ignore_ascii_case(&action.target))
            }
            // Adding a hash already on the block list changes nothing: no read-back needed.
            ActionKind::BlockHash => false,
            ActionKind::DisableUser => match &self.identity {
                Some(idp) => idp.is_disabled(&action.target).await?.unwrap_or(false),
                None => false,
            },
            // `run` skips each incident that already carries the note: no read-back needed.
            ActionKind::MergeCases | ActionKind::OpenInvestigation => false,
        };
        Ok(done.then(|| "found already applied on read-back after a worker died mid-call".to_string()))
    }

    /// Posts `note` to each incident that does not carry `marker` yet (a note already there
    /// after a worker died mid-way is not repeated).
    async fn note_each(&self, incidents: &[String], marker: &str, note: &str) -> Result<(), XdrError> {
        for incident in incidents {
            if self.xdr.comment_exists(incident, marker).await? != Some(true) {
                self.xdr.add_comment(incident, note).await?;
            }
        }
        Ok(())
    }

    async fn run(&self, key: &CaseKey, action: &Action) -> Result<Execution, XdrError> {
        let approver = action.decision.as_ref().map_or("unknown".to_string(), |d| d.approver.clone());
        Ok(match action.kind {
            ActionKind::IsolateEndpoint => {
                let id = self.xdr.isolate_endpoint(&action.target, &key.incident_id).await?;
                Execution::Succeeded { detail: format!("XDR isolation action {id} started"), xdr_action_id: Some(id) }
            }
            ActionKind::RaiseSeverity => {
                self.xdr.set_severity(&key.incident_id, &action.target).await?;
                Execution::Succeeded { detail: format!("incident severity set to {}", action.target), xdr_action_id: None }
            }
            ActionKind::BlockHash => {
                let comment = format!("Dossier: approved by {approver} for incident {}", key.incident_id);
                self.xdr.block_hash(&action.target, &comment, &key.incident_id).await?;
                Execution::Succeeded { detail: format!("SHA-256 {} on the XDR block list", action.target), xdr_action_id: None }
            }
            ActionKind::DisableUser => match &self.identity {
                Some(idp) => {
                    let r = idp.disable_user(&action.target).await?;
                    Execution::Succeeded { detail: format!("{}: {r}", idp.name()), xdr_action_id: None }
                }
                None => Execution::Failed("no identity provider (Okta or Entra ID) is configured to disable users".into()),
            },
            ActionKind::MergeCases => {
                // XDR's public API documents no merge: the approved decision goes on both
                // incidents for the console merge.
                let other = &action.target;
                let marker = format!("[dossier-merge:{}#{}+{}]", key.tenant, key.incident_id, other);
                let note = format!(
                    "[Dossier] Merge approved by {approver}: incidents {} and {other} are one intrusion ({}). Cortex XDR's public API \
                     has no merge call: merge them in the console (select both incidents, Merge). {marker}",
                    key.incident_id,
                    clean_text(&action.rationale, 300)
                );
                let incidents = [key.incident_id.clone(), other.clone()];
                self.note_each(&incidents, &marker, &note).await?;
                Execution::Succeeded { detail: format!("merge noted on incidents {} and {other}", key.incident_id), xdr_action_id: None }
            }
            ActionKind::OpenInvestigation => {
                // Nor a call to open one investigation for several incidents: each gets the decision.
                let incidents: Vec<String> = action.target.split(',').map(|i| i.trim().to_string()).filter(|i| !i.is_empty()).collect();
                let marker = format!("[dossier-campaign:{}#{}:{}]", key.tenant, key.incident_id, action.id);
                let note = format!(
                    "[Dossier] Campaign investigation approved by {approver}: incidents {} are to be worked as one ({}). {marker}",
                    incidents.join(", "),
                    clean_text(&action.rationale, 300)
                );
                self.note_each(&incidents, &marker, &note).await?;
                Execution::Succeeded { detail: format!("campaign noted on incidents {}", incidents.join(", ")), xdr_action_id: None }
            }
        })
    }

    /// Records the outcome with its audit record and the result note for the incident, in one
    /// commit; a worker that lost its claim meanwhile records nothing.
    async fn finish(&self, key: &CaseKey, action: Action, version: u64, owner: &Owner, execution: Execution) -> Result<(), StageError> {
        let now = self.ctx.now_ms();
        let mut done = action.clone();
        if done.finish(owner, execution).is_err() {
            return Ok(());
        }
        let detail = done.execution_result.clone().unwrap_or_default();
        let approver = done.decision.as_ref().map_or("unknown".to_string(), |d| d.approver.clone());
        let text = format!(
            "[Dossier] {} on {} — {} (approved by {approver}): {}\n{}",
            done.kind.describe(),
            clean_text(&done.target_label, 120),
            done.status.as_str(),
            clean_text(&detail, 400),
            crate::dossier::draft_marker(key, &note_id(&done.id)),
        );
        let note = Draft::new(key, &note_id(&done.id), DraftKind::Note, text, now, &self.ctx.config.budgets);
        let mut commit = Commit::new();
        commit.save(&done, version)?;
        commit.create(&note)?;
        commit.audit(&self.ctx.event(
            key,
            "action.executed",
            format!("{} {} on {}: {detail}", done.kind.as_str(), done.status.as_str(), done.target),
        ))?;
        match self.ctx.store.commit(commit).await? {
            Committed::Written => {}
            Committed::Conflict { .. } => {
                warn!(action = %done.id, "claim lost after running; the new owner records the outcome");
                return Ok(());
            }
        }
        info!(action = %done.id, status = done.status.as_str(), "action executed");
        let mut next = vec![(
            QueueName::writeback(),
            Message::WriteComment { case: key.clone(), draft_id: note_id(&done.id), snapshot: None },
            Duration::ZERO,
        )];
        if done.status == ActionStatus::Executed && done.xdr_action_id.is_some() && done.kind == ActionKind::IsolateEndpoint {
            next.push((
                QueueName::writeback(),
                Message::CheckAction { case: key.clone(), action_id: done.id.clone(), attempt: 1 },
                ACTION_POLL_EVERY,
            ));
        }
        self.ctx.send_all(next).await?;
        self.ctx.settle_case(key, false).await
    }

    /// Polls an isolation until XDR reports a final status, then records it and comments once.
    async fn check_action(&self, key: &CaseKey, action_id: &str, attempt: u32) -> Result<(), StageError> {
        let Some(Versioned { value: action, .. }) = self.ctx.store.action(key, action_id).await? else { return Ok(()) };
        let Some(xdr_id) = action.xdr_action_id.clone() else { return Ok(()) };
        let statuses = self.xdr.action_status(&xdr_id).await?;
        let pending =
            statuses.is_empty() || statuses.iter().any(|(_, s)| matches!(s.as_str(), "PENDING" | "IN_PROGRESS" | "PENDING_ABORT"));
        if pending && attempt < ACTION_POLL_ATTEMPTS {
            return self
                .ctx
                .send(
                    &QueueName::writeback(),
                    &Message::CheckAction { case: key.clone(), action_id: action_id.to_string(), attempt: attempt + 1 },
                    ACTION_POLL_EVERY,
                )
                .await;
        }
        let summary = if pending {
            format!("still pending after {attempt} checks")
        } else {
            statuses.iter().map(|(e, s)| format!("{e}: {s}")).collect::<Vec<_>>().join(", ")
        };
        let note_id = format!("action-{action_id}-status");
        let text = format!(
            "[Dossier] {} on {}: XDR action {xdr_id} — {summary}\n{}",
            action.kind.describe(),
            clean_text(&action.target_label, 120),
            crate::dossier::draft_marker(key, &note_id)
        );
        let note = Draft::new(key, &note_id, DraftKind::Note, text, self.ctx.now_ms(), &self.ctx.config.budgets);
        let outcome = format!("XDR action {xdr_id}: {summary}");
        let event = self.ctx.event(key, "action.status", format!("{action_id}: {outcome}"));
        // The outcome, its note and its audit record together; a repeated check finds the note
        // there and only posts it (writeback posts each note once).
        self.ctx
            .store
            .update(&key.storage_id(), &action_sk(action_id), |a: &mut Action, commit| {
                if a.execution_result.as_deref().is_some_and(|r| r.contains(&outcome)) || !a.record_outcome(&outcome) {
                    return Ok::<_, StageError>(Change::Keep(()));
                }
                commit.create(&note)?;
                commit.audit(&event)?;
                Ok(Change::Write(()))
            })
            .await?;
        self.ctx
            .send(&QueueName::writeback(), &Message::WriteComment { case: key.clone(), draft_id: note_id, snapshot: None }, Duration::ZERO)
            .await
    }
}

/// The result note of an action.
fn note_id(action_id: &str) -> String {
    format!("action-{action_id}")
}

#[async_trait]
impl MessageHandler for Writeback {
    async fn handle(&self, body: &str, deadline: Deadline) -> Result<(), StageError> {
        let (message, waited) = Message::parse_counted(body)?;
        let span = tracing::info_span!("case", case = %message.case(), stage = "writeback");
        async {
            match message {
                Message::WriteComment { case, draft_id, snapshot } => {
                    self.write_comment(&case, &draft_id, snapshot, waited, deadline).await
                }
                Message::ExecuteAction { case, action_id } => self.execute_action(&case, &action_id, deadline).await,
                Message::Notify { case, action_id, attempt } => self.notify(&case, &action_id, attempt).await,
                Message::CheckAction { case, action_id, attempt } => self.check_action(&case, &action_id, attempt).await,
                _ => Err(StageError::BadMessage("writeback accepts only write_comment, execute_action, notify and check_action".into())),
            }
        }
        .instrument(span)
        .await
    }
}
