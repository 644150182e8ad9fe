//! The pipeline stages. Each stage is a struct holding the ports it needs, built once per cold
//! start by a function's `main.rs` (or by the local CLI), handling one event at a time. A stage
//! loads an entity, calls one of its transitions, stores it (with its audit records, in one
//! commit), and sends what comes next; the rules themselves live on the entities.
//!
//! Every queue consumer is idempotent: a redelivered message re-checks stored state and either
//! does nothing or finishes what a crashed attempt started. What to do with a message after a
//! stage ran is decided in one place, [`disposition`], for Lambda and the local runner alike.

mod approve;
mod collect;
mod disposition;
mod enrich;
mod hunt;
mod intake;
mod poller;
mod reconcile;
mod synthesize;
mod writeback;

pub use crate::store::FeedbackCounts;
pub use approve::{feedback_counts, Approve};
pub use collect::{apply_extra_data, Collect};
pub use disposition::{dispose, Deadline, Disposition, MAX_DEFERRALS};
pub use enrich::Enrich;
pub use hunt::{find_clusters, Cluster, Hunt, HuntReport};
pub use intake::{open_case, Intake};
pub use poller::{PollReport, Poller};
pub use reconcile::{ReconcileReport, Reconciler};
pub use synthesize::{Synthesize, DRAFT_ID};
pub use writeback::Writeback;

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

use crate::config::PipelineConfig;
use crate::domain::{AuditEvent, Case, CaseKey, OpenActions};
use crate::messages::{Carried, Message, MessageError, Snapshot};
use crate::ports::{Clock, DocStore, Queue, QueueError, QueueName, StoreError, XdrError};
use crate::ratelimit::{LimitError, RateLimiter};
use crate::signing::LinkSigner;
use crate::store::{Change, Commit, Store, Versioned, CASE_SK};

/// One signed approval link per approver of `severity` for an action.
pub(crate) fn approval_links(
    config: &PipelineConfig,
    signer: &crate::signing::LinkSigner,
    key: &CaseKey,
    action_id: &str,
    expires_at_ms: i64,
    severity: crate::domain::Severity,
) -> Vec<crate::domain::ApprovalLink> {
    use crate::signing::{LinkClaims, Scope};
    config
        .approvers_for(severity)
        .into_iter()
        .map(|approver| {
            let token = signer.sign(&LinkClaims {
                case: key.clone(),
                action: action_id.to_string(),
                scope: Scope::DecideAction,
                approver: approver.clone(),
                exp: expires_at_ms / 1000,
                nonce: crate::random::new_nonce(),
            });
            crate::domain::ApprovalLink {
                approver,
                url: format!("{}/approve?t={token}", config.public_base_url.trim_end_matches('/')),
                expires_at_ms,
            }
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Xdr(#[from] XdrError),
    #[error("unusable message: {0}")]
    BadMessage(String),
    /// Not a failure: the work waits (a quota, a lease, a deadline not yet reached).
    #[error("retry in {after:?}: {reason}")]
    RetryLater { reason: String, after: Duration },
}

impl From<LimitError> for StageError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Exhausted { name, after } => StageError::RetryLater { reason: format!("rate limit {name}"), after },
            LimitError::Store(s) => StageError::Store(s),
        }
    }
}

impl From<MessageError> for StageError {
    fn from(e: MessageError) -> Self {
        StageError::BadMessage(e.to_string())
    }
}

impl StageError {
    /// Whether delivering the same message again can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StageError::Store(e) => e.is_retryable(),
            StageError::Queue(e) => e.is_retryable(),
            StageError::Xdr(e) => e.is_retryable(),
            StageError::BadMessage(_) => false,
            StageError::RetryLater { .. } => true,
        }
    }
}

/// A queue consumer: one message body in, success or a classified error out. `deadline` is when
/// the invocation is killed (the Lambda context's deadline): budgets are cut from it.
#[async_trait]
pub trait MessageHandler: Send + Sync {
    async fn handle(&self, body: &str, deadline: Deadline) -> Result<(), StageError>;
}

/// An HTTP door (intake, approve): a request in, a response out; never an error.
#[async_trait]
pub trait HttpHandler: Send + Sync {
    async fn handle(&self, req: &crate::http::HttpRequest) -> crate::http::HttpResponse;
}

/// What every stage shares.
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<PipelineConfig>,
    /// The function name recorded as the actor of audit events and in lease owners.
    pub actor: &'static str,
    pub limits: RateLimiter,
    pub metrics: Arc<dyn crate::metrics::Metrics>,
    /// Tags the records carried on messages (see [`Snapshot`]); until it is set (a function
    /// loads it in the background after it starts) nothing is carried and every consumer reads
    /// the store.
    snapshot_key: SnapshotKey,
}

/// The key that tags carried records, once loaded.
pub type SnapshotKey = Arc<std::sync::OnceLock<Arc<LinkSigner>>>;

impl Context {
    pub fn new(
        docs: Arc<dyn DocStore>,
        queue: Arc<dyn Queue>,
        clock: Arc<dyn Clock>,
        config: Arc<PipelineConfig>,
        actor: &'static str,
    ) -> Context {
        Context {
            store: Store::new(docs.clone()),
            limits: RateLimiter::new(docs, clock.clone()),
            queue,
            clock,
            config,
            actor,
            metrics: Arc::new(crate::metrics::NoMetrics),
            snapshot_key: SnapshotKey::default(),
        }
    }

    /// Carries records on messages, tagged with this key (shared by the senders and readers)
    /// once it is set.
    pub fn with_snapshot_key(mut self, key: SnapshotKey) -> Context {
        self.snapshot_key = key;
        self
    }

    /// `record` at `version`, tagged to ride on a message (none without a key, or too large).
    pub fn snapshot<R: Carried>(&self, record: &R, version: u64) -> Option<Snapshot> {
        Snapshot::of(record, version, self.snapshot_key.get()?)
    }

    /// The record a message carries, if its tag verifies under this pipeline's key.
    pub fn carried<R: Carried>(&self, snapshot: Option<Snapshot>) -> Option<Versioned<R>> {
        let key = self.snapshot_key.get()?;
        let carried = snapshot?.value(key);
        if carried.is_none() {
            tracing::warn!("a carried record failed its tag or did not parse; the store decides");
        }
        carried
    }

    pub fn with_metrics(mut self, metrics: Arc<dyn crate::metrics::Metrics>) -> Context {
        self.metrics = metrics;
        self
    }

    pub fn metric(&self, set: crate::metrics::MetricSet) {
        self.metrics.emit(self.actor, set);
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub async fn send(&self, queue: &QueueName, message: &Message, delay: Duration) -> Result<(), StageError> {
        self.queue.send(queue, &message.to_body(), delay).await?;
        Ok(())
    }

    /// Sends several messages at once; the first failure is returned after all were tried.
    pub async fn send_all(&self, messages: Vec<(QueueName, Message, Duration)>) -> Result<(), StageError> {
        let results = futures_util::future::join_all(messages.iter().map(|(q, m, d)| self.send(q, m, *d))).await;
        results.into_iter().collect()
    }

    /// An audit record by this function, now.
    pub fn event(&self, case: &CaseKey, event: &str, detail: impl Into<String>) -> AuditEvent {
        AuditEvent {
            case: case.clone(),
            at_ms: self.now_ms(),
            actor: self.actor.to_string(),
            event: event.to_string(),
            detail: detail.into(),
            once_key: None,
        }
    }

    /// Records one audit event on its own (a step that changes no record).
    pub async fn audit(&self, case: &CaseKey, event: &str, detail: impl Into<String>) -> Result<(), StageError> {
        let mut commit = Commit::new();
        commit.audit(&self.event(case, event, detail))?;
        self.store.commit(commit).await?;
        Ok(())
    }

    /// Marks the case failed with a reason the analyst can act on (unless it already ended).
    pub async fn fail_case(&self, key: &CaseKey, reason: String) -> Result<(), StageError> {
        tracing::warn!(%reason, "case failed");
        let now = self.now_ms();
        let event = self.event(key, "case.failed", reason.clone());
        self.store
            .update(&key.storage_id(), CASE_SK, |c: &mut Case, commit| {
                if !c.fail(reason.clone(), now) {
                    return Ok::<_, StageError>(Change::Keep(()));
                }
                commit.audit(&event)?;
                Ok(Change::Write(()))
            })
            .await?;
        Ok(())
    }

    /// Moves the case on from waiting for actions once none is open (`dossier_posted`: the
    /// dossier comment is in XDR, so a case still writing back may settle too).
    pub async fn settle_case(&self, key: &CaseKey, dossier_posted: bool) -> Result<(), StageError> {
        self.settled_case(key, dossier_posted).await.map(|_| ())
    }

    /// [`Context::settle_case`], returning the case as settled (`None` if there is none).
    pub async fn settled_case(&self, key: &CaseKey, dossier_posted: bool) -> Result<Option<Case>, StageError> {
        // The actions and the case side by side: one round trip.
        let (actions, case) = tokio::join!(self.store.actions(key), self.store.case(key));
        let (actions, Some(case)) = (actions?, case?) else { return Ok(None) };
        let open_due = actions.iter().filter(|a| a.value.status.is_open()).map(|a| a.value.due_at_ms.unwrap_or(i64::MAX)).min();
        let open = OpenActions { any: open_due.is_some(), due_at_ms: open_due };
        let now = self.now_ms();
        let settled = self
            .store
            .update_versioned_from(&key.storage_id(), CASE_SK, case, |c: &mut Case, commit| {
                let before = c.status;
                if !c.settle(&open, dossier_posted, now) {
                    return Ok::<_, StageError>(Change::Keep(c.clone()));
                }
                if c.status != before {
                    commit.audit(&self.event(key, "case.settled", c.status.as_str()))?;
                }
                Ok(Change::Write(c.clone()))
            })
            .await?;
        Ok(settled.map(|(c, _)| c))
    }

    /// When a lease taken now must end: past this invocation's deadline (so it outlives the
    /// worker) and never shorter than the configured lease.
    pub fn lease_until(&self, deadline: Deadline) -> i64 {
        let configured = self.now_ms().saturating_add(ms(self.config.write_lease));
        configured.max(deadline.at_ms.saturating_add(LEASE_MARGIN_MS))
    }
}

/// A lease outlives its worker's deadline by this much (clock skew between invocations).
const LEASE_MARGIN_MS: i64 = 5_000;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn ms_until(now_ms: i64, then_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(then_ms.saturating_sub(now_ms)).unwrap_or(0).max(1000))
}
