//! The pipeline wired for local runs, and the pump that delivers queue messages to the stages the
//! way Lambda's SQS event source mappings do (at least once, retries with delay, DLQ on redrive).

use futures_util::future::join_all;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::warn;

use dossier_adapters::dynamo::{DynamoStore, TableNames};
use dossier_adapters::sqs::SqsQueue;
use dossier_core::case::{CaseKey, CaseStatus};
use dossier_core::config::PipelineConfig;
use dossier_core::embedded::{MemoryQueue, MemoryStore};
use dossier_core::metrics::{Metrics, NoMetrics};
use dossier_core::ports::{Clock, Delivery, DocStore, IdentityAdmin, Notifier, Queue, QueueConsumer, QueueName, XdrApi};
use dossier_core::signing::LinkSigner;
use dossier_core::sources::Source;
use dossier_core::stages::{Approve, Collect, Context, Enrich, Intake, MessageHandler, StageError, Synthesize, Writeback};
use dossier_core::synthesis::LanguageModel;

/// Where state and queues live.
#[derive(Clone)]
pub struct Backend {
    pub store: Arc<dyn DocStore>,
    pub queue: Arc<dyn Queue>,
    pub consumer: Arc<dyn QueueConsumer>,
    /// Set for the embedded backend: lets the pump see delayed messages and the DLQ.
    pub memory_queue: Option<Arc<MemoryQueue>>,
    /// Where the stages' metrics go (Lambda: EMF lines on stdout; local runs: nowhere).
    pub metrics: Arc<dyn Metrics>,
}

impl Backend {
    pub fn embedded(clock: Arc<dyn Clock>) -> Backend {
        let queue = Arc::new(MemoryQueue::new(clock, Duration::from_secs(30), dossier_adapters::provision::MAX_RECEIVE_COUNT));
        Backend {
            store: Arc::new(MemoryStore::new()),
            queue: queue.clone(),
            consumer: queue.clone(),
            memory_queue: Some(queue),
            metrics: Arc::new(NoMetrics),
        }
    }

    /// The AWS adapters against `endpoint` (moto server or an AWS endpoint), creating the tables
    /// and queues under `prefix` if they are missing.
    pub async fn aws(endpoint: &str, prefix: &str, sources: &[String]) -> Result<Backend, String> {
        let sdk = dossier_adapters::aws::sdk_config_for(endpoint).await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let tables = TableNames::prefixed(prefix);
        for t in [&tables.cases, &tables.audit, &tables.cache] {
            dossier_adapters::provision::ensure_table(&ddb, t).await?;
        }
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let urls = dossier_adapters::provision::ensure_queues(&sqs, prefix, &queue_names(sources), 30).await?;
        let queue = Arc::new(SqsQueue::new(sqs, urls));
        Ok(Backend {
            store: Arc::new(DynamoStore::new(ddb, tables)),
            queue: queue.clone(),
            consumer: queue,
            memory_queue: None,
            metrics: Arc::new(NoMetrics),
        })
    }
}

/// Every queue of the pipeline for these sources.
pub fn queue_names(sources: &[String]) -> Vec<QueueName> {
    let mut q = vec![QueueName::collect(), QueueName::synthesize(), QueueName::writeback()];
    q.extend(sources.iter().map(|s| QueueName::enrich(s)));
    q
}

/// How long an idle poller waits on an empty queue (long polling, like Lambda's pollers): a
/// message is picked up as soon as it arrives, and an idle pipeline costs no CPU. Also how long
/// `run_workers` may take to notice `stop`.
const POLL_WAIT: Duration = Duration::from_secs(1);

/// All stages on one backend.
pub struct LocalPipeline {
    pub ctx: Context,
    pub backend: Backend,
    pub intake: Intake,
    pub approve: Approve,
    collect: Collect,
    enrich: Enrich,
    synthesize: Synthesize,
    writeback: Writeback,
    queues: Vec<QueueName>,
}

pub struct PipelineParts {
    pub backend: Backend,
    pub config: PipelineConfig,
    pub clock: Arc<dyn Clock>,
    pub xdr: Arc<dyn XdrApi>,
    pub sources: Vec<Arc<dyn Source>>,
    pub signer: Arc<LinkSigner>,
    pub webhook_secret: Vec<u8>,
    /// Writes the dossiers when set (else the deterministic dossier).
    pub model: Option<Arc<dyn LanguageModel>>,
    /// Runs approved `disable_user` actions when set.
    pub identity: Option<Arc<dyn IdentityAdmin>>,
    /// Tell approvers (Slack, Teams, e-mail).
    pub notifiers: Vec<Arc<dyn Notifier>>,
}

impl LocalPipeline {
    pub fn new(parts: PipelineParts) -> LocalPipeline {
        let mut config = parts.config;
        config.sources = parts.sources.iter().map(|s| s.name().to_string()).collect();
        let config = Arc::new(config);
        let b = &parts.backend;
        let ctx = |actor| {
            Context::new(b.store.clone(), b.queue.clone(), parts.clock.clone(), config.clone(), actor).with_metrics(b.metrics.clone())
        };
        LocalPipeline {
            intake: Intake::new(ctx("intake"), parts.webhook_secret.clone()),
            approve: Approve::new(ctx("approve"), parts.signer.clone()),
            collect: Collect::new(ctx("collect"), parts.xdr.clone()),
            enrich: Enrich::new(ctx("enrich"), parts.sources.clone()),
            synthesize: match parts.model.clone() {
                Some(m) => Synthesize::new(ctx("synthesize"), parts.signer.clone()).with_model(m),
                None => Synthesize::new(ctx("synthesize"), parts.signer.clone()),
            },
            writeback: match parts.identity.clone() {
                Some(idp) => Writeback::new(ctx("writeback"), parts.xdr.clone()).with_identity(idp),
                None => Writeback::new(ctx("writeback"), parts.xdr.clone()),
            }
            .with_notifiers(parts.notifiers.clone()),
            queues: queue_names(&config.sources),
            ctx: ctx("dossier-local"),
            backend: parts.backend,
        }
    }

    fn handler(&self, queue: &QueueName) -> &dyn MessageHandler {
        match queue.as_str() {
            "collect" => &self.collect,
            "synthesize" => &self.synthesize,
            "writeback" => &self.writeback,
            _ => &self.enrich,
        }
    }

    /// One round over every queue: receives from all of them, then handles everything received
    /// concurrently (as separate Lambda functions would); returns how many messages were handled.
    pub async fn pump_once(&self) -> Result<usize, StageError> {
        let received = join_all(self.queues.iter().map(|q| self.backend.consumer.receive(q, 10, Duration::ZERO))).await;
        let mut deliveries = Vec::new();
        for r in received {
            deliveries.extend(r?);
        }
        let results = join_all(deliveries.iter().map(|d| self.deliver(d))).await;
        for r in results {
            r?;
        }
        Ok(deliveries.len())
    }

    /// Runs every queue until `stop` is set, the way Lambda's event source mappings do at batch
    /// size 1: each message is handled as soon as it arrives, as its own task (an invocation), up
    /// to `concurrency` at a time per queue (the function's concurrency). A slow stage (the model)
    /// never holds up the other queues and one slow message never holds up the next.
    pub async fn run_workers(self: &Arc<Self>, concurrency: usize, stop: &Arc<AtomicBool>) {
        let mut dispatchers = JoinSet::new();
        for queue in self.queues.clone() {
            dispatchers.spawn(self.clone().dispatch(queue, concurrency.max(1), stop.clone()));
        }
        while dispatchers.join_next().await.is_some() {}
    }

    /// One queue's long-polling receiver: takes as many messages as there are free slots and
    /// starts each at once. A receive that fails backs off and tries again, as the mapping does.
    async fn dispatch(self: Arc<Self>, queue: QueueName, concurrency: usize, stop: Arc<AtomicBool>) {
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut in_flight = JoinSet::new();
        while !stop.load(Ordering::Relaxed) {
            // Only this loop takes slots, so the free ones can only grow until we take them.
            let free = slots.available_permits();
            if free == 0 {
                if slots.acquire().await.is_err() {
                    return;
                }
                continue;
            }
            let batch = match self.backend.consumer.receive(&queue, free.min(10), POLL_WAIT).await {
                Ok(b) => b,
                Err(e) => {
                    warn!(queue = %queue, error = %e, "receive failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            for delivery in batch {
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let me = self.clone();
                in_flight.spawn(async move {
                    if let Err(e) = me.deliver(&delivery).await {
                        warn!(queue = %delivery.queue, error = %e, "delivery bookkeeping failed");
                    }
                    drop(slot);
                });
            }
            while let Some(done) = in_flight.try_join_next() {
                if let Err(e) = done {
                    warn!(queue = %queue, error = %e, "a delivery task ended abnormally");
                }
            }
        }
    }

    async fn deliver(&self, d: &Delivery) -> Result<(), StageError> {
        match self.handler(&d.queue).handle(&d.body).await {
            Ok(()) => self.backend.consumer.ack(d).await?,
            Err(e) => {
                // Like Lambda: the message stays; it comes back after the delay and goes to the
                // DLQ intact after the redrive limit.
                let delay = e.retry_after().unwrap_or_else(|| {
                    if e.is_retryable() {
                        Duration::from_millis(200 * u64::from(d.receive_count))
                    } else {
                        Duration::ZERO
                    }
                });
                warn!(queue = %d.queue, error = %e, attempt = d.receive_count, "message failed");
                self.backend.consumer.retry_later(d, delay).await?;
            }
        }
        Ok(())
    }

    /// Pumps until every case is settled (dossier written, or failed) and nothing is due, or the
    /// wall-clock budget runs out. Waits out delayed messages (deadlines, retries) in between.
    pub async fn run_until_settled(&self, cases: &[CaseKey], budget: Duration) -> Result<bool, StageError> {
        let started = std::time::Instant::now();
        loop {
            let handled = self.pump_once().await?;
            if handled > 0 {
                continue;
            }
            if self.all_settled(cases).await? {
                return Ok(true);
            }
            if started.elapsed() >= budget {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn all_settled(&self, cases: &[CaseKey]) -> Result<bool, StageError> {
        for key in cases {
            match self.ctx.repo.case(key).await? {
                Some(c) if c.status.is_settled() => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Status of each case, for reports.
    pub async fn statuses(&self, cases: &[CaseKey]) -> Result<HashMap<CaseKey, CaseStatus>, StageError> {
        let mut out = HashMap::new();
        for key in cases {
            if let Some(c) = self.ctx.repo.case(key).await? {
                out.insert(key.clone(), c.status);
            }
        }
        Ok(out)
    }
}
