//! synthesize: claim the case once, build the dossier, propose gated actions with signed links,
//! store the draft and hand the comment to writeback.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, Instrument};

use super::{ms_until, Context, MessageHandler, StageError};
use crate::case::{Action, ApprovalLink, Case, CaseKey, CaseStatus};
use crate::dossier::{deterministic, propose_actions, render_comment, CommentState, Draft};
use crate::messages::{Message, SynthesisReason};
use crate::ports::QueueName;
use crate::repo::{action_sk, draft_sk, Change, CASE_SK};
use crate::signing::{new_nonce, LinkClaims, LinkSigner, Scope};

pub struct Synthesize {
    ctx: Context,
    signer: Arc<LinkSigner>,
}

/// The one dossier draft of a case (closure drafts will get their own ids).
pub const DRAFT_ID: &str = "dossier-1";

impl Synthesize {
    pub fn new(ctx: Context, signer: Arc<LinkSigner>) -> Synthesize {
        Synthesize { ctx, signer }
    }

    async fn synthesize(&self, key: &CaseKey, reason: SynthesisReason) -> Result<(), StageError> {
        let Some(case) = self.ctx.repo.case(key).await? else {
            return Err(StageError::BadMessage(format!("no case {key}")));
        };
        let now = self.ctx.now_ms();
        match case.status {
            CaseStatus::Enriching => {
                let reported: Vec<String> = self.ctx.repo.source_reports(key).await?.into_iter().map(|r| r.source).collect();
                let complete = case.expected_sources.iter().all(|s| reported.contains(s));
                if !complete {
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
        let reports = self.ctx.repo.source_reports(key).await?;
        let missing: Vec<String> = case.expected_sources.iter().filter(|s| !reports.iter().any(|r| &r.source == *s)).cloned().collect();
        let dossier = deterministic(&case, &reports, &missing);
        let now = self.ctx.now_ms();
        let mut actions = propose_actions(&case, &dossier, self.ctx.config.phase);
        for action in &mut actions {
            action.links = self.links(key, action, now);
            if self.ctx.repo.put_new(key, &action_sk(&action.id), action).await? == crate::ports::PutOutcome::AlreadyExists {
                // Redelivery: the stored action (and its links) stand.
                if let Some(stored) = self.ctx.repo.action(key, &action.id).await? {
                    *action = stored;
                }
            }
        }
        // One draft per case; the id is derived from the case so a redelivery cannot make a second.
        let draft_id = DRAFT_ID.to_string();
        let comment = render_comment(&case, &draft_id, &dossier, &actions);
        let draft = Draft { id: draft_id.clone(), created_at_ms: now, dossier, comment, comment_state: CommentState::Pending };
        self.ctx.repo.put_new(key, &draft_sk(&draft_id), &draft).await?;
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
        info!(draft = %draft_id, actions = actions.len(), missing = missing.len(), "dossier drafted");
        self.ctx.audit(key, "dossier.drafted", format!("draft {draft_id}, {} proposed action(s), deterministic", actions.len())).await?;
        self.ctx.send(&QueueName::writeback(), &Message::WriteComment { case: key.clone(), draft_id }, Duration::ZERO).await
    }

    fn links(&self, key: &CaseKey, action: &Action, now_ms: i64) -> Vec<ApprovalLink> {
        let ttl_ms = i64::try_from(self.ctx.config.link_ttl.as_millis()).unwrap_or(i64::MAX);
        let exp_ms = now_ms.saturating_add(ttl_ms);
        self.ctx
            .config
            .approvers
            .iter()
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

#[async_trait]
impl MessageHandler for Synthesize {
    async fn handle(&self, body: &str) -> Result<(), StageError> {
        let Message::Synthesize { case, reason } = Message::parse(body)? else {
            return Err(StageError::BadMessage("synthesize accepts only `synthesize` messages".into()));
        };
        let span = tracing::info_span!("case", case = %case, stage = "synthesize");
        self.synthesize(&case, reason).instrument(span).await
    }
}
