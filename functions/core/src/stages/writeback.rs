//! writeback: the only stage that changes XDR. Posts the dossier comment once per draft and runs
//! approved actions once per approval, each claimed with a leased conditional write first.

use async_trait::async_trait;
use std::sync::Arc;
use tracing::{info, Instrument};

use super::{ms_until, Context, MessageHandler, StageError};
use crate::case::{Action, ActionKind, ActionStatus, Case, CaseKey, CaseStatus, Notification};
use crate::dossier::{CommentState, Draft};
use crate::messages::Message;
use crate::ports::{ApprovalNotice, IdentityAdmin, Notifier, NotifyError, QueueName, XdrApi, XdrError};
use crate::repo::{action_sk, draft_sk, Change, CASE_SK};

pub struct Writeback {
    ctx: Context,
    xdr: Arc<dyn XdrApi>,
    identity: Option<Arc<dyn IdentityAdmin>>,
    notifiers: Vec<Arc<dyn Notifier>>,
}

/// Delivery attempts per approver and channel before a notification is recorded as failed.
const NOTIFY_ATTEMPTS: u32 = 5;

/// How often an XDR response action's status is polled, and for how long.
const ACTION_POLL_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
const ACTION_POLL_ATTEMPTS: u32 = 30;

enum Claim<T> {
    /// This worker does it; what it needs from the claimed document.
    Claimed(T),
    Done,
    Wait(i64),
}

impl Writeback {
    pub fn new(ctx: Context, xdr: Arc<dyn XdrApi>) -> Writeback {
        Writeback { ctx, xdr, identity: None, notifiers: Vec::new() }
    }

    /// Where approvers are told about actions waiting for them (Slack, Teams, e-mail).
    pub fn with_notifiers(mut self, notifiers: Vec<Arc<dyn Notifier>>) -> Writeback {
        self.notifiers = notifiers;
        self
    }

    /// Sends each approver's link on every channel not yet delivered; failures come back with a
    /// growing delay and, after the last attempt, stay on the action as failed deliveries.
    async fn notify(&self, key: &CaseKey, action_id: &str, attempt: u32) -> Result<(), StageError> {
        if self.notifiers.is_empty() {
            return Ok(());
        }
        let Some(action) = self.ctx.repo.action(key, action_id).await? else { return Ok(()) };
        if action.status != ActionStatus::Proposed {
            return Ok(());
        }
        let case = self.ctx.repo.case(key).await?;
        let title = case.as_ref().and_then(|c| c.incident_name.clone().or_else(|| c.alert_names.first().cloned())).unwrap_or_default();
        let severity = case.as_ref().map(|c| c.severity).unwrap_or_default();
        let mut results = Vec::new();
        for link in &action.links {
            for n in &self.notifiers {
                if action.notifications.iter().any(|d| d.delivered && d.approver == link.approver && d.channel == n.channel()) {
                    continue;
                }
                let notice = ApprovalNotice {
                    case: key.clone(),
                    title: crate::dossier::clean_text(&title, 200),
                    severity,
                    action: action.kind.describe().to_string(),
                    target: action.target_label.clone(),
                    rationale: crate::dossier::clean_text(&action.rationale, 400),
                    approver: link.approver.clone(),
                    url: link.url.clone(),
                    expires_at_ms: link.expires_at_ms,
                };
                let outcome = n.notify(&notice).await;
                results.push((link.approver.clone(), n.channel().to_string(), outcome));
            }
        }
        let now = self.ctx.now_ms();
        let mut retry = false;
        let recorded: Vec<Notification> = results
            .iter()
            .filter_map(|(approver, channel, outcome)| match outcome {
                Ok(()) => Some(Notification {
                    approver: approver.clone(),
                    channel: channel.clone(),
                    delivered: true,
                    detail: "delivered".into(),
                    at_ms: now,
                }),
                Err(NotifyError::Retryable(m)) if attempt < NOTIFY_ATTEMPTS => {
                    retry = true;
                    tracing::warn!(%channel, error = %m, attempt, "approval notice not delivered; will retry");
                    None
                }
                Err(e) => Some(Notification {
                    approver: approver.clone(),
                    channel: channel.clone(),
                    delivered: false,
                    detail: e.to_string(),
                    at_ms: now,
                }),
            })
            .collect();
        if !recorded.is_empty() {
            let rec = recorded.clone();
            self.ctx
                .repo
                .update(key, &action_sk(action_id), |a: &mut Action| {
                    a.notifications.extend(rec.iter().cloned());
                    Ok::<_, StageError>(Change::Write(()))
                })
                .await?;
            for r in &recorded {
                self.ctx.audit(key, "approval.notified", format!("{action_id} to {} by {}: {}", r.approver, r.channel, r.detail)).await?;
            }
        }
        if retry {
            let delay = std::time::Duration::from_secs(30 * u64::from(attempt));
            self.ctx
                .send(
                    &QueueName::writeback(),
                    &Message::Notify { case: key.clone(), action_id: action_id.to_string(), attempt: attempt + 1 },
                    delay,
                )
                .await?;
        }
        Ok(())
    }

    /// Where `disable_user` actions run.
    pub fn with_identity(mut self, identity: Arc<dyn IdentityAdmin>) -> Writeback {
        self.identity = Some(identity);
        self
    }

    /// A short comment (action results) through the same exactly-once path as the dossier: a
    /// draft written once, then claimed, posted and marked.
    async fn post_note(&self, key: &CaseKey, draft_id: &str, text: String) -> Result<(), StageError> {
        let Some(case) = self.ctx.repo.case(key).await? else { return Ok(()) };
        let draft = Draft {
            id: draft_id.to_string(),
            created_at_ms: self.ctx.now_ms(),
            dossier: crate::dossier::deterministic(&case, &[], &[]),
            comment: format!("{text}\n{}", crate::dossier::comment_marker(&case, draft_id)),
            comment_state: CommentState::Pending,
        };
        self.ctx.repo.put_new(key, &draft_sk(draft_id), &draft).await?;
        self.ctx
            .send(
                &QueueName::writeback(),
                &Message::WriteComment { case: key.clone(), draft_id: draft_id.to_string() },
                std::time::Duration::ZERO,
            )
            .await
    }

    /// Polls an isolation until XDR reports a final status, then records it and comments once.
    async fn check_action(&self, key: &CaseKey, action_id: &str, attempt: u32) -> Result<(), StageError> {
        let Some(action) = self.ctx.repo.action(key, action_id).await? else { return Ok(()) };
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
        let done = summary.clone();
        self.ctx
            .repo
            .update(key, &action_sk(action_id), |a: &mut Action| {
                a.execution_result = Some(format!("{} — XDR action {xdr_id}: {done}", a.execution_result.clone().unwrap_or_default()));
                Ok::<_, StageError>(Change::Write(()))
            })
            .await?;
        self.ctx.audit(key, "action.status", format!("{action_id}: XDR action {xdr_id}: {summary}")).await?;
        let text = format!(
            "[Dossier] {} on {}: XDR action {xdr_id} — {summary}",
            action.kind.describe(),
            crate::dossier::clean_text(&action.target_label, 120)
        );
        self.post_note(key, &format!("action-{action_id}-status"), text).await
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.ctx.config.write_lease.as_millis()).unwrap_or(i64::MAX)
    }

    async fn write_comment(&self, key: &CaseKey, draft_id: &str) -> Result<(), StageError> {
        let now = self.ctx.now_ms();
        let lease_until = now + self.lease_ms();
        let claim = self
            .ctx
            .repo
            .update(key, &draft_sk(draft_id), |d: &mut Draft| {
                Ok::<_, StageError>(match d.comment_state {
                    CommentState::Posted { .. } => Change::Keep(Claim::Done),
                    CommentState::Posting { lease_until_ms } if lease_until_ms > now => Change::Keep(Claim::Wait(lease_until_ms)),
                    // Pending, or a lease that ran out (a worker died mid-call): claim it.
                    _ => {
                        d.comment_state = CommentState::Posting { lease_until_ms: lease_until };
                        Change::Write(Claim::Claimed(d.comment.clone()))
                    }
                })
            })
            .await?
            .ok_or_else(|| StageError::BadMessage(format!("no draft {draft_id} on case {key}")))?;
        let comment = match claim {
            Claim::Done => return self.settle_case(key).await,
            Claim::Wait(until) => {
                return Err(StageError::RetryLater { reason: "another worker is posting this comment".into(), after: ms_until(now, until) })
            }
            Claim::Claimed(comment) => comment,
        };
        match self.xdr.add_comment(&key.incident_id, &comment).await {
            Ok(()) => {}
            Err(e) if e.is_retryable() => {
                // XDR refused or failed the request: release the claim so the retry need not wait
                // for the lease. After a transport error the comment may have been written, so the
                // lease stays and the retry waits it out.
                if !matches!(e, XdrError::Transport(_)) {
                    self.set_comment_state(key, draft_id, CommentState::Pending).await?;
                }
                return Err(e.into());
            }
            Err(e) => {
                self.set_comment_state(key, draft_id, CommentState::Pending).await?;
                return self.ctx.fail_case(key, format!("writing the dossier to XDR failed: {e}")).await;
            }
        }
        let posted_at = self.ctx.now_ms();
        self.set_comment_state(key, draft_id, CommentState::Posted { at_ms: posted_at }).await?;
        let chars = comment.chars().count();
        info!(draft = draft_id, chars, "dossier comment posted");
        self.ctx.audit(key, "xdr.comment_added", format!("draft {draft_id}, {chars} characters")).await?;
        self.dossier_posted_metrics(key, posted_at).await?;
        self.settle_case(key).await
    }

    /// Time from the incident's creation in XDR to its dossier (MTTA-style), and from the case
    /// reaching Dossier to its dossier.
    async fn dossier_posted_metrics(&self, key: &CaseKey, posted_at: i64) -> Result<(), StageError> {
        use crate::metrics::{Metric, MetricSet};
        let mut metrics = vec![Metric::count("DossiersPosted", 1.0)];
        if let Some(case) = self.ctx.repo.case_head(key).await? {
            metrics.push(Metric::ms("CaseLatency", posted_at - case.received_at_ms));
            if let Some(created) = case.incident_created_at_ms {
                metrics.push(Metric::ms("TimeToDossier", posted_at - created));
            }
        }
        self.ctx.metric(MetricSet::new(metrics));
        Ok(())
    }

    async fn set_comment_state(&self, key: &CaseKey, draft_id: &str, state: CommentState) -> Result<(), StageError> {
        self.ctx
            .repo
            .update(key, &draft_sk(draft_id), |d: &mut Draft| {
                d.comment_state = state;
                Ok::<_, StageError>(Change::Write(()))
            })
            .await?;
        Ok(())
    }

    /// After the comment: wait for approvals if any action is still open, else done.
    async fn settle_case(&self, key: &CaseKey) -> Result<(), StageError> {
        let actions = self.ctx.repo.actions(key).await?;
        let open = actions.iter().any(|a| matches!(a.status, ActionStatus::Proposed | ActionStatus::Approved | ActionStatus::Executing));
        let now = self.ctx.now_ms();
        self.ctx
            .repo
            .update(key, CASE_SK, |c: &mut Case| {
                let next = match (c.status, open) {
                    (CaseStatus::WritingBack, true) => CaseStatus::AwaitingApproval,
                    (CaseStatus::WritingBack | CaseStatus::AwaitingApproval, false) => CaseStatus::Done,
                    _ => return Ok::<_, StageError>(Change::Keep(())),
                };
                match c.move_to(next, now) {
                    Ok(()) => Ok(Change::Write(())),
                    Err(_) => Ok(Change::Keep(())),
                }
            })
            .await?;
        Ok(())
    }

    async fn execute_action(&self, key: &CaseKey, action_id: &str) -> Result<(), StageError> {
        let now = self.ctx.now_ms();
        let lease_until = now + self.lease_ms();
        let claim = self
            .ctx
            .repo
            .update(key, &action_sk(action_id), |a: &mut Action| {
                Ok::<_, StageError>(match a.status {
                    ActionStatus::Approved => {
                        a.status = ActionStatus::Executing;
                        a.execution_lease_until_ms = Some(lease_until);
                        Change::Write(Claim::Claimed(a.clone()))
                    }
                    ActionStatus::Executing if a.execution_lease_until_ms.unwrap_or(0) > now => {
                        Change::Keep(Claim::Wait(a.execution_lease_until_ms.unwrap_or(now)))
                    }
                    ActionStatus::Executing => {
                        a.execution_lease_until_ms = Some(lease_until);
                        Change::Write(Claim::Claimed(a.clone()))
                    }
                    // Never without an approval; never twice.
                    ActionStatus::Proposed | ActionStatus::Rejected | ActionStatus::Executed | ActionStatus::ExecutionFailed => {
                        Change::Keep(Claim::Done)
                    }
                })
            })
            .await?
            .ok_or_else(|| StageError::BadMessage(format!("no action {action_id} on case {key}")))?;
        let action = match claim {
            Claim::Done => return self.settle_case(key).await,
            Claim::Wait(until) => {
                return Err(StageError::RetryLater { reason: "action execution in flight".into(), after: ms_until(now, until) })
            }
            Claim::Claimed(action) => action,
        };
        let approver = action.decision.as_ref().map_or("unknown".to_string(), |d| d.approver.clone());
        let mut xdr_action_id = None;
        let result = match action.kind {
            ActionKind::IsolateEndpoint => match self.xdr.isolate_endpoint(&action.target, &key.incident_id).await {
                Ok(id) => {
                    xdr_action_id = Some(id.clone());
                    Ok(format!("XDR isolation action {id} started"))
                }
                Err(e) => Err(e),
            },
            ActionKind::RaiseSeverity => self
                .xdr
                .set_severity(&key.incident_id, &action.target)
                .await
                .map(|()| format!("incident severity set to {}", action.target)),
            ActionKind::BlockHash => self
                .xdr
                .block_hash(&action.target, &format!("Dossier: approved by {approver} for incident {}", key.incident_id), &key.incident_id)
                .await
                .map(|()| format!("SHA-256 {} on the XDR block list", action.target)),
            ActionKind::DisableUser => match &self.identity {
                Some(idp) => idp.disable_user(&action.target).await.map(|r| format!("{}: {r}", idp.name())),
                None => Err(XdrError::NotConfigured("no identity provider (Okta or Entra ID) is configured to disable users".into())),
            },
        };
        let (status, detail) = match result {
            Ok(detail) => (ActionStatus::Executed, detail),
            Err(e) if e.is_retryable() => return Err(e.into()),
            Err(e) => (ActionStatus::ExecutionFailed, e.to_string()),
        };
        let xdr_id = xdr_action_id.clone();
        self.ctx
            .repo
            .update(key, &action_sk(action_id), |a: &mut Action| {
                a.status = status;
                a.execution_result = Some(detail.clone());
                a.xdr_action_id = xdr_id.clone();
                Ok::<_, StageError>(Change::Write(()))
            })
            .await?;
        info!(action = action_id, status = status.as_str(), "action executed");
        self.ctx
            .audit(key, "action.executed", format!("{} {} on {}: {detail}", action.kind.as_str(), status.as_str(), action.target))
            .await?;
        // The result goes back to the incident as a comment, through the exactly-once comment path.
        let text = format!(
            "[Dossier] {} on {} — {} (approved by {approver}): {}",
            action.kind.describe(),
            crate::dossier::clean_text(&action.target_label, 120),
            status.as_str(),
            crate::dossier::clean_text(&detail, 400)
        );
        self.post_note(key, &format!("action-{action_id}"), text).await?;
        if xdr_action_id.is_some() {
            self.ctx
                .send(
                    &QueueName::writeback(),
                    &Message::CheckAction { case: key.clone(), action_id: action_id.to_string(), attempt: 1 },
                    ACTION_POLL_EVERY,
                )
                .await?;
        }
        self.settle_case(key).await
    }
}

#[async_trait]
impl MessageHandler for Writeback {
    async fn handle(&self, body: &str) -> Result<(), StageError> {
        match Message::parse(body)? {
            Message::WriteComment { case, draft_id } => {
                let span = tracing::info_span!("case", case = %case, stage = "writeback");
                self.write_comment(&case, &draft_id).instrument(span).await
            }
            Message::ExecuteAction { case, action_id } => {
                let span = tracing::info_span!("case", case = %case, stage = "writeback");
                self.execute_action(&case, &action_id).instrument(span).await
            }
            Message::Notify { case, action_id, attempt } => {
                let span = tracing::info_span!("case", case = %case, stage = "notify");
                self.notify(&case, &action_id, attempt).instrument(span).await
            }
            Message::CheckAction { case, action_id, attempt } => {
                let span = tracing::info_span!("case", case = %case, stage = "writeback");
                self.check_action(&case, &action_id, attempt).instrument(span).await
            }
            _ => Err(StageError::BadMessage("writeback accepts only `write_comment` and `execute_action` messages".into())),
        }
    }
}
