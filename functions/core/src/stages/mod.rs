//! The pipeline stages. Each stage is a struct holding the ports it needs, built once per cold
//! start by a function's `main.rs` (or by the local CLI), and handling one event at a time.
//!
//! Every queue consumer is idempotent: a redelivered message re-checks stored state and either
//! does nothing or finishes what a crashed attempt started.

mod approve;
mod collect;
mod enrich;
mod intake;
mod poller;
mod synthesize;
mod writeback;

pub use approve::{feedback_counts, Approve, FeedbackCounts};
pub use collect::{apply_extra_data, Collect};
pub use enrich::Enrich;
pub use intake::{open_case, Intake};
pub use poller::{PollReport, Poller};
pub use synthesize::Synthesize;
pub use writeback::Writeback;

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

use crate::case::{AuditEvent, CaseKey};
use crate::config::PipelineConfig;
use crate::messages::{Message, MessageError};
use crate::ports::{Clock, DocStore, Queue, QueueError, QueueName, StoreError, XdrError};
use crate::ratelimit::{LimitError, RateLimiter};
use crate::repo::{AuditLog, CaseRepo};

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

    /// How long to wait before the next attempt, when the error says.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            StageError::RetryLater { after, .. } => Some(*after),
            _ => None,
        }
    }
}

/// A queue consumer: one message body in, success or a classified error out.
#[async_trait]
pub trait MessageHandler: Send + Sync {
    async fn handle(&self, body: &str) -> Result<(), StageError>;
}

/// An HTTP door (intake, approve): a request in, a response out; never an error.
#[async_trait]
pub trait HttpHandler: Send + Sync {
    async fn handle(&self, req: &crate::http::HttpRequest) -> crate::http::HttpResponse;
}

/// What every stage shares.
#[derive(Clone)]
pub struct Context {
    pub repo: CaseRepo,
    pub audit: AuditLog,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<PipelineConfig>,
    /// The function name recorded as the actor of audit events.
    pub actor: &'static str,
    pub limits: RateLimiter,
    /// For small shared records (replay guard); case data goes through `repo`.
    pub store: Arc<dyn DocStore>,
    pub metrics: Arc<dyn crate::metrics::Metrics>,
}

impl Context {
    pub fn new(
        store: Arc<dyn DocStore>,
        queue: Arc<dyn Queue>,
        clock: Arc<dyn Clock>,
        config: Arc<PipelineConfig>,
        actor: &'static str,
    ) -> Context {
        Context {
            repo: CaseRepo::new(store.clone()),
            audit: AuditLog::new(store.clone()),
            limits: RateLimiter::new(store.clone(), clock.clone()),
            store,
            queue,
            clock,
            config,
            actor,
            metrics: Arc::new(crate::metrics::NoMetrics),
        }
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

    pub async fn audit(&self, case: &CaseKey, event: &str, detail: impl Into<String>) -> Result<(), StageError> {
        self.audit
            .record(&AuditEvent {
                case: case.clone(),
                at_ms: self.now_ms(),
                actor: self.actor.to_string(),
                event: event.to_string(),
                detail: detail.into(),
            })
            .await?;
        Ok(())
    }
}

impl Context {
    /// Marks the case failed with a reason the analyst can act on (unless it already ended).
    pub async fn fail_case(&self, key: &CaseKey, reason: String) -> Result<(), StageError> {
        tracing::warn!(%reason, "case failed");
        let now = self.now_ms();
        self.repo
            .update(key, crate::repo::CASE_SK, |c: &mut crate::case::Case| match c.fail(reason.clone(), now) {
                Ok(()) => Ok::<_, StageError>(crate::repo::Change::Write(())),
                Err(_) => Ok(crate::repo::Change::Keep(())),
            })
            .await?;
        self.audit(key, "case.failed", reason).await
    }
}

fn ms_until(now_ms: i64, then_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(then_ms.saturating_sub(now_ms)).unwrap_or(0).max(1000))
}
