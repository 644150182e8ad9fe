//! The reconciler: on a schedule, reads the due index (never a scan) for cases, actions and
//! drafts past their budget, and moves each forward (re-sends what it is waiting for) or ends
//! it with a reason on the record and in the audit trail. What is owed is decided by the entity
//! (`overdue`); this stage only carries it out. Nothing relies on one message arriving.

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use std::time::Duration;
use tracing::{info, warn};

use super::{Context, StageError};
use crate::domain::{Action, ActionOverdue, Case, CaseKey, CaseOverdue, Draft, DraftKind, DraftOverdue};
use crate::messages::{Message, SynthesisReason};
use crate::metrics::{Metric, MetricSet};
use crate::ports::{DueItem, QueueName, Table};
use crate::store::{Change, CASE_SK};

/// Most items looked at per run and table; the rest wait for the next run.
const BATCH: usize = 500;
/// Items handled at once.
const CONCURRENCY: usize = 8;

pub struct Reconciler {
    ctx: Context,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Cases past their budget when the run started.
    pub stuck_cases: usize,
    pub overdue_actions: usize,
    pub overdue_drafts: usize,
    /// Messages sent again.
    pub nudged: usize,
    /// Cases, actions and drafts ended with a reason.
    pub ended: usize,
    pub errors: Vec<String>,
}

/// What handling one item did.
enum Done {
    Nothing,
    Nudged,
    Ended,
}

impl Reconciler {
    pub fn new(ctx: Context) -> Reconciler {
        Reconciler { ctx }
    }

    pub async fn run(&self) -> Result<ReconcileReport, StageError> {
        let now = self.ctx.now_ms();
        let docs = self.ctx.store.docs();
        let cases: Vec<DueItem> = docs.due(Table::Cases, now, BATCH).await?.into_iter().filter(|d| d.sk == CASE_SK).collect();
        let effects = docs.due(Table::Effects, now, BATCH).await?;
        let mut report = ReconcileReport {
            stuck_cases: cases.len(),
            overdue_actions: effects.iter().filter(|d| d.sk.starts_with("action#")).count(),
            overdue_drafts: effects.iter().filter(|d| d.sk.starts_with("draft#")).count(),
            ..ReconcileReport::default()
        };
        let items = cases.into_iter().chain(effects);
        let results: Vec<(DueItem, Result<Done, StageError>)> = stream::iter(items)
            .map(|item| async move {
                let r = self.one(&item).await;
                (item, r)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (item, result) in results {
            match result {
                Ok(Done::Nudged) => report.nudged += 1,
                Ok(Done::Ended) => report.ended += 1,
                Ok(Done::Nothing) => {}
                Err(e) => {
                    warn!(pk = %item.pk, sk = %item.sk, error = %e, "reconcile step failed; the next run retries");
                    if report.errors.len() < 20 {
                        report.errors.push(format!("{}/{}: {e}", item.pk, item.sk));
                    }
                }
            }
        }
        self.ctx.metric(MetricSet::new(vec![
            Metric::count("StuckCases", report.stuck_cases as f64),
            Metric::count("ReconcilerNudges", report.nudged as f64),
            Metric::count("ReconcilerEnded", report.ended as f64),
        ]));
        if report.stuck_cases + report.overdue_actions + report.overdue_drafts > 0 {
            info!(
                stuck = report.stuck_cases,
                actions = report.overdue_actions,
                drafts = report.overdue_drafts,
                nudged = report.nudged,
                ended = report.ended,
                "reconciled"
            );
        }
        Ok(report)
    }

    async fn one(&self, item: &DueItem) -> Result<Done, StageError> {
        let key = CaseKey::from_storage_id(&item.pk).map_err(|e| StageError::BadMessage(format!("due item {}: {e}", item.pk)))?;
        let span = tracing::info_span!("case", case = %key, stage = "reconcile");
        let _entered = span.enter();
        if item.sk == CASE_SK {
            self.case(&key).await
        } else if let Some(id) = item.sk.strip_prefix("action#") {
            self.action(&key, id).await
        } else if let Some(id) = item.sk.strip_prefix("draft#") {
            self.draft(&key, id).await
        } else {
            Ok(Done::Nothing)
        }
    }

    async fn case(&self, key: &CaseKey) -> Result<Done, StageError> {
        let now = self.ctx.now_ms();
        let budgets = self.ctx.config.budgets;
        let owed = self
            .ctx
            .store
            .update(&key.storage_id(), CASE_SK, |c: &mut Case, commit| {
                let Some(owed) = c.overdue(now, &budgets) else { return Ok::<_, StageError>(Change::Keep(None)) };
                match &owed {
                    CaseOverdue::Settle => return Ok(Change::Keep(Some(owed))),
                    CaseOverdue::GiveUp(reason) => {
                        if !c.fail(reason.clone(), now) {
                            return Ok(Change::Keep(None));
                        }
                        commit.audit(&self.ctx.event(key, "case.failed", format!("ended by the reconciler: {reason}")))?;
                    }
                    nudge => {
                        c.nudged(now, &budgets);
                        commit.audit(&self.ctx.event(key, "reconcile.nudged", format!("{} overdue: {nudge:?} sent again", c.status)))?;
                    }
                }
                Ok(Change::Write(Some(owed)))
            })
            .await?
            .flatten();
        let message = match owed {
            None => return Ok(Done::Nothing),
            Some(CaseOverdue::GiveUp(_)) => return Ok(Done::Ended),
            Some(CaseOverdue::Settle) => {
                // The open actions are in the due index themselves; settling picks up what they became.
                self.ctx.settle_case(key, false).await?;
                return Ok(Done::Nothing);
            }
            Some(CaseOverdue::Collect) => (QueueName::collect(), Message::Collect { case: key.clone() }),
            Some(CaseOverdue::Synthesize) => {
                (QueueName::synthesize(), Message::Synthesize { case: key.clone(), reason: SynthesisReason::Deadline })
            }
            Some(CaseOverdue::WriteComment { draft_id }) => {
                (QueueName::writeback(), Message::WriteComment { case: key.clone(), draft_id, snapshot: None })
            }
        };
        self.ctx.send(&message.0, &message.1, Duration::ZERO).await?;
        Ok(Done::Nudged)
    }

    async fn action(&self, key: &CaseKey, id: &str) -> Result<Done, StageError> {
        let now = self.ctx.now_ms();
        let budgets = self.ctx.config.budgets;
        let owed = self
            .ctx
            .store
            .update(&key.storage_id(), &crate::store::action_sk(id), |a: &mut Action, commit| {
                let Some(owed) = a.overdue(now, &budgets) else { return Ok::<_, StageError>(Change::Keep(None)) };
                let changed = match &owed {
                    ActionOverdue::Expire(reason) => a.expire(reason.clone()),
                    ActionOverdue::GiveUp(reason) => a.give_up(reason.clone()),
                    ActionOverdue::Notify | ActionOverdue::Execute => {
                        a.nudged(now, &budgets);
                        true
                    }
                };
                if !changed {
                    return Ok(Change::Keep(None));
                }
                commit.audit(&self.ctx.event(key, "reconcile.action", format!("{id}: {owed:?}")))?;
                Ok(Change::Write(Some(owed)))
            })
            .await?
            .flatten();
        match owed {
            None => Ok(Done::Nothing),
            Some(ActionOverdue::Expire(_) | ActionOverdue::GiveUp(_)) => {
                self.ctx.settle_case(key, false).await?;
                Ok(Done::Ended)
            }
            Some(ActionOverdue::Notify) => {
                let m = Message::Notify { case: key.clone(), action_id: id.to_string(), attempt: 1 };
                self.ctx.send(&QueueName::writeback(), &m, Duration::ZERO).await?;
                Ok(Done::Nudged)
            }
            Some(ActionOverdue::Execute) => {
                let m = Message::ExecuteAction { case: key.clone(), action_id: id.to_string() };
                self.ctx.send(&QueueName::writeback(), &m, Duration::ZERO).await?;
                Ok(Done::Nudged)
            }
        }
    }

    async fn draft(&self, key: &CaseKey, id: &str) -> Result<Done, StageError> {
        let now = self.ctx.now_ms();
        let budgets = self.ctx.config.budgets;
        let owed = self
            .ctx
            .store
            .update(&key.storage_id(), &crate::store::draft_sk(id), |d: &mut Draft, commit| {
                let Some(owed) = d.overdue(now, &budgets) else { return Ok::<_, StageError>(Change::Keep(None)) };
                match &owed {
                    DraftOverdue::GiveUp(reason) => {
                        if !d.abandon(reason.clone()) {
                            return Ok(Change::Keep(None));
                        }
                    }
                    DraftOverdue::Post => d.nudged(now, &budgets),
                }
                commit.audit(&self.ctx.event(key, "reconcile.draft", format!("{id}: {owed:?}")))?;
                Ok(Change::Write(Some((owed, d.kind))))
            })
            .await?
            .flatten();
        match owed {
            None => Ok(Done::Nothing),
            Some((DraftOverdue::Post, _)) => {
                let m = Message::WriteComment { case: key.clone(), draft_id: id.to_string(), snapshot: None };
                self.ctx.send(&QueueName::writeback(), &m, Duration::ZERO).await?;
                Ok(Done::Nudged)
            }
            Some((DraftOverdue::GiveUp(reason), DraftKind::Dossier)) => {
                self.ctx.fail_case(key, format!("the dossier could not be written to XDR: {reason}")).await?;
                Ok(Done::Ended)
            }
            Some((DraftOverdue::GiveUp(_), _)) => Ok(Done::Ended),
        }
    }
}
