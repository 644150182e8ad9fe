//! writeback: the only stage that changes XDR. Posts the dossier comment once per draft and runs
//! approved actions once per approval, each claimed with a leased conditional write first.

use async_trait::async_trait;
use std::sync::Arc;
use tracing::{info, Instrument};

use super::{ms_until, Context, MessageHandler, StageError};
use crate::case::{Action, ActionKind, ActionStatus, Case, CaseKey, CaseStatus};
use crate::dossier::{CommentState, Draft};
use crate::messages::Message;
use crate::ports::{XdrApi, XdrError};
use crate::repo::{action_sk, draft_sk, Change, CASE_SK};

pub struct Writeback {
    ctx: Context,
    xdr: Arc<dyn XdrApi>,
}

enum Claim {
    Claimed,
    Done,
    Wait(i64),
}

impl Writeback {
    pub fn new(ctx: Context, xdr: Arc<dyn XdrApi>) -> Writeback {
        Writeback { ctx, xdr }
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
                        Change::Write(Claim::Claimed)
                    }
                })
            })
            .await?
            .ok_or_else(|| StageError::BadMessage(format!("no draft {draft_id} on case {key}")))?;
        match claim {
            Claim::Done => return self.settle_case(key).await,
            Claim::Wait(until) => {
                return Err(StageError::RetryLater { reason: "another worker is posting this comment".into(), after: ms_until(now, until) })
            }
            Claim::Claimed => {}
        }
        let Some(draft) = self.ctx.repo.draft(key, draft_id).await? else {
            return Ok(());
        };
        match self.xdr.add_comment(&key.incident_id, &draft.comment).await {
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
        info!(draft = draft_id, chars = draft.comment.chars().count(), "dossier comment posted");
        self.ctx.audit(key, "xdr.comment_added", format!("draft {draft_id}, {} characters", draft.comment.chars().count())).await?;
        self.settle_case(key).await
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
                        Change::Write(Claim::Claimed)
                    }
                    ActionStatus::Executing if a.execution_lease_until_ms.unwrap_or(0) > now => {
                        Change::Keep(Claim::Wait(a.execution_lease_until_ms.unwrap_or(now)))
                    }
                    ActionStatus::Executing => {
                        a.execution_lease_until_ms = Some(lease_until);
                        Change::Write(Claim::Claimed)
                    }
                    // Never without an approval; never twice.
                    ActionStatus::Proposed | ActionStatus::Rejected | ActionStatus::Executed | ActionStatus::ExecutionFailed => {
                        Change::Keep(Claim::Done)
                    }
                })
            })
            .await?
            .ok_or_else(|| StageError::BadMessage(format!("no action {action_id} on case {key}")))?;
        match claim {
            Claim::Done => return self.settle_case(key).await,
            Claim::Wait(until) => {
                return Err(StageError::RetryLater { reason: "action execution in flight".into(), after: ms_until(now, until) })
            }
            Claim::Claimed => {}
        }
        let Some(action) = self.ctx.repo.action(key, action_id).await? else {
            return Ok(());
        };
        let result = match action.kind {
            ActionKind::IsolateEndpoint => {
                self.xdr.isolate_endpoint(&action.target, &key.incident_id).await.map(|id| format!("XDR isolation action {id} started"))
            }
            ActionKind::RaiseSeverity => self
                .xdr
                .set_severity(&key.incident_id, &action.target)
                .await
                .map(|()| format!("incident severity set to {}", action.target)),
            ActionKind::BlockHash | ActionKind::DisableUser => {
                Err(XdrError::NotConfigured(format!("{} is not executable by this deployment", action.kind.as_str())))
            }
        };
        let (status, detail) = match result {
            Ok(detail) => (ActionStatus::Executed, detail),
            Err(e) if e.is_retryable() => return Err(e.into()),
            Err(e) => (ActionStatus::ExecutionFailed, e.to_string()),
        };
        self.ctx
            .repo
            .update(key, &action_sk(action_id), |a: &mut Action| {
                a.status = status;
                a.execution_result = Some(detail.clone());
                Ok::<_, StageError>(Change::Write(()))
            })
            .await?;
        info!(action = action_id, status = status.as_str(), "action executed");
        self.ctx
            .audit(key, "action.executed", format!("{} {} on {}: {detail}", action.kind.as_str(), status.as_str(), action.target))
            .await?;
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
            _ => Err(StageError::BadMessage("writeback accepts only `write_comment` and `execute_action` messages".into())),
        }
    }
}
