//! The pipeline wired for local runs, and the runner that delivers queue messages to the stages
//! the way Lambda's SQS event source mappings do: at batch size 1, at least once, each message
//! under its function's timeout (a handler past it is killed and its message comes back after
//! the visibility timeout), with the core's disposition rule deciding what happens to a message.
//! The reconciler runs on its schedule too.

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
use dossier_core::config::PipelineConfig;
use dossier_core::domain::{CaseKey, CaseStatus};
use dossier_core::embedded::{MemoryQueue, MemoryStore};
use dossier_core::metrics::{Metrics, NoMetrics};
use dossier_core::ports::{Clock, Delivery, DocStore, IdentityAdmin, Notifier, Queue, QueueConsumer, QueueName, XdrApi};
use dossier_core::signing::LinkSigner;
use dossier_core::sources::Source;
use dossier_core::stages::{
    dispose, Approve, Collect, Context, Deadline, Disposition, Enrich, Hunt, Intake, MessageHandler, Reconciler, StageError, Synthesize,
    Writeback,
};
use dossier_core::synthesis::LanguageModel;
use dossier_core::xdr::WebhookSecrets;

/// Where state and queues live.
#[derive(Clone)]
pub struct Backend {
    pub store: Arc<dyn DocStore>,
    pub queue: Arc<dyn Queue>,
    pub consumer: Arc<dyn QueueConsumer>,
    /// Set for the embedded backend: lets the runner see delayed messages and the DLQ.
    pub memory_queue: Option<Arc<MemoryQueue>>,
    /// Set for the embedded backend: counts the store calls.
    pub memory_store: Option<Arc<MemoryStore>>,
    /// Where the stages' metrics go (Lambda: EMF lines on stdout; local runs: nowhere).
    pub metrics: Arc<dyn Metrics>,
}

impl Backend {
    /// The embedded store and queue; messages become visible again `visibility` after a
    /// receive that was not acknowledged.
    pub fn embedded_with(clock: Arc<dyn Clock>, visibility: Duration) -> Backend {
        let queue = Arc::new(MemoryQueue::new(clock, visibility, dossier_adapters::provision::MAX_RECEIVE_COUNT));
        let store = Arc::new(MemoryStore::new());
        Backend {
            store: store.clone(),
            queue: queue.clone(),
            consumer: queue.clone(),
            memory_queue: Some(queue),
            memory_store: Some(store),
            metrics: Arc::new(NoMetrics),
        }
    }

    pub fn embedded(clock: Arc<dyn Clock>) -> Backend {
        Self::embedded_with(clock, Duration::from_secs(30))
    }

    /// The AWS adapters against `endpoint` (moto server or an AWS endpoint), creating the tables
    /// and queues under `prefix` if they are missing.
    pub async fn aws(endpoint: &str, prefix: &str, sources: &[String]) -> Result<Backend, String> {
        Self::aws_with(endpoint, prefix, sources, 30).await
    }

    pub async fn aws_with(endpoint: &str, prefix: &str, sources: &[String], visibility_s: u32) -> Result<Backend, String> {
        let sdk = dossier_adapters::aws::sdk_config_for(endpoint).await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let tables = TableNames::prefixed(prefix);
        dossier_adapters::provision::ensure_tables(&ddb, &tables).await?;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let urls = dossier_adapters::provision::ensure_queues(&sqs, prefix, &queue_names(sources), visibility_s).await?;
        let queue = Arc::new(SqsQueue::new(sqs, urls));
        Ok(Backend {
            store: Arc::new(DynamoStore::new(ddb, tables)),
            queue: queue.clone(),
            consumer: queue,
            memory_queue: None,
            memory_store: None,
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

/// How long an idle receiver waits on an empty queue (long polling, like Lambda's pollers): a
/// message is picked up as soon as it arrives, and an idle pipeline costs no CPU. Also how long
/// `run_workers` may take to notice `stop`.
const POLL_WAIT: Duration = Duration::from_secs(1);

/// Lambda's timings for one function, in the pipeline's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionTimes {
    /// The function's timeout: a handler still running then is killed.
    pub timeout: Duration,
    /// When a failed message is delivered again (Lambda: the queue's visibility timeout).
    pub failure_retry: Duration,
}

/// The timings of every function, in the pipeline's clock.
#[derive(Clone, Debug)]
pub struct Timings {
    pub collect: FunctionTimes,
    pub enrich: FunctionTimes,
    pub synthesize: FunctionTimes,
    pub writeback: FunctionTimes,
    /// How often the reconciler runs.
    pub reconcile_every: Duration,
}

impl Timings {
    /// The template's timeouts; failed messages come back after a second instead of the
    /// visibility timeout, so local runs do not sit idle.
    pub fn local() -> Timings {
        let f = |timeout_s: u64| FunctionTimes { timeout: Duration::from_secs(timeout_s), failure_retry: Duration::from_secs(1) };
        Timings { collect: f(30), enrich: f(60), synthesize: f(180), writeback: f(60), reconcile_every: Duration::from_secs(300) }
    }

    fn of(&self, queue: &QueueName) -> FunctionTimes {
        match queue.as_str() {
            "collect" => self.collect,
            "synthesize" => self.synthesize,
            "writeback" => self.writeback,
            _ => self.enrich,
        }
    }
}

/// All stages on one backend.
pub struct LocalPipeline {
    pub ctx: Context,
    pub backend: Backend,
    pub intake: Intake,
    pub approve: Approve,
    pub reconciler: Reconciler,
    /// The scheduled look for campaigns across recent cases.
    pub hunt: Hunt,
    collect: Collect,
    enrich: Enrich,
    synthesize: Synthesize,
    writeback: Writeback,
    queues: Vec<QueueName>,
    clock: Arc<dyn Clock>,
    pub timings: Timings,
    /// The invocations run so far, and which were killed.
    pub invocations: Invocations,
}

tokio::task_local! {
    /// The invocation a task runs in (fault injectors in tests attribute what they see to it).
    pub static INVOCATION: u64;
}

/// Numbers the invocations and remembers which were killed at their timeout.
#[derive(Default)]
pub struct Invocations {
    next: std::sync::atomic::AtomicU64,
    killed: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// Invocation → the queue (stage) it served and the case its message named.
    served: std::sync::Mutex<HashMap<u64, (QueueName, Option<CaseKey>)>>,
    /// Queue (stage) → invocations and their summed wall time (what Lambda bills).
    billed: std::sync::Mutex<HashMap<String, (u64, Duration)>>,
    /// Queue (stage) → the summed on-CPU time of its invocations.
    cpu: std::sync::Mutex<HashMap<String, Duration>>,
}

impl Invocations {
    fn start(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn serving(&self, id: u64, queue: &QueueName, body: &str) {
        /// Only the case a message is about: the bookkeeping must not parse a carried record
        /// the function will parse again (its CPU would count against the pipeline).
        #[derive(serde::Deserialize)]
        struct About {
            case: Option<CaseKey>,
        }
        let case = serde_json::from_str::<About>(body).ok().and_then(|a| a.case);
        self.served.lock().unwrap_or_else(|p| p.into_inner()).insert(id, (queue.clone(), case));
    }

    /// What each message invocation served (stage, case).
    pub fn served(&self) -> HashMap<u64, (QueueName, Option<CaseKey>)> {
        self.served.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn killed(&self, id: u64) {
        self.killed.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
    }

    pub fn was_killed(&self, id: u64) -> bool {
        self.killed.lock().unwrap_or_else(|p| p.into_inner()).contains(&id)
    }

    fn finished(&self, queue: &QueueName, took: Duration) {
        let mut billed = self.billed.lock().unwrap_or_else(|p| p.into_inner());
        let entry = billed.entry(queue.as_str().to_string()).or_default();
        entry.0 += 1;
        entry.1 += took;
    }

    fn spent_cpu(&self, queue: &str, cpu: Duration) {
        *self.cpu.lock().unwrap_or_else(|p| p.into_inner()).entry(queue.to_string()).or_default() += cpu;
    }

    /// Per queue (stage): the summed on-CPU time of its invocations.
    pub fn cpu(&self) -> HashMap<String, Duration> {
        self.cpu.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Per queue (stage): invocations and their summed wall time.
    pub fn billed(&self) -> HashMap<String, (u64, Duration)> {
        self.billed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn killed_count(&self) -> usize {
        self.killed.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A future with its own on-CPU time: the polling thread's CPU clock read around each poll (a
/// poll runs on one thread, so the sum is this future's work alone, whatever else the runtime
/// runs meanwhile on the same threads).
pub struct CpuTimed<F> {
    inner: std::pin::Pin<Box<F>>,
    spent: Duration,
}

impl<F: std::future::Future> CpuTimed<F> {
    pub fn new(inner: F) -> CpuTimed<F> {
        CpuTimed { inner: Box::pin(inner), spent: Duration::ZERO }
    }
}

impl<F: std::future::Future> std::future::Future for CpuTimed<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let before = cpu_time::ThreadTime::now();
        let polled = self.inner.as_mut().poll(cx);
        self.spent += before.elapsed();
        polled.map(|out| (out, self.spent))
    }
}

/// The invocation the calling task runs in, if any.
pub fn current_invocation() -> Option<u64> {
    INVOCATION.try_with(|i| *i).ok()
}

pub struct PipelineParts {
    pub backend: Backend,
    pub config: PipelineConfig,
    pub clock: Arc<dyn Clock>,
    pub xdr: Arc<dyn XdrApi>,
    pub sources: Vec<Arc<dyn Source>>,
    pub signer: Arc<LinkSigner>,
    pub webhook_secrets: WebhookSecrets,
    /// Writes the dossiers when set (else the deterministic dossier).
    pub model: Option<Arc<dyn LanguageModel>>,
    /// Runs approved `disable_user` actions when set.
    pub identity: Option<Arc<dyn IdentityAdmin>>,
    /// Tell approvers (Slack, Teams, e-mail).
    pub notifiers: Vec<Arc<dyn Notifier>>,
}

/// The webhook secret of local runs that have none (the demo and `run` take no webhooks).
pub fn no_webhooks() -> WebhookSecrets {
    let secret = format!("{}{}", dossier_core::random::new_nonce(), dossier_core::random::new_nonce());
    WebhookSecrets::single("default", secret.as_bytes()).expect("a 48-character secret is valid")
}

/// The key that tags records carried on messages, one per local pipeline (its stages share a
/// process); none if the OS gives no randomness, and then nothing is carried.
fn local_snapshot_key() -> dossier_core::stages::SnapshotKey {
    let cell = dossier_core::stages::SnapshotKey::default();
    let signer = dossier_core::random::new_secret().ok().and_then(|secret| {
        let key = dossier_core::signing::SigningKey { id: "local".into(), secret: secret.into_bytes() };
        dossier_core::signing::LinkSigner::new(vec![key]).ok()
    });
    if let Some(signer) = signer {
        // A fresh cell: it cannot be set already.
        drop(cell.set(Arc::new(signer)));
    }
    cell
}

impl LocalPipeline {
    pub fn new(parts: PipelineParts) -> LocalPipeline {
        let mut config = parts.config;
        config.sources = parts.sources.iter().map(|s| s.name().to_string()).collect();
        let config = Arc::new(config);
        let b = &parts.backend;
        let snapshot_key = local_snapshot_key();
        let ctx = |actor| {
            Context::new(b.store.clone(), b.queue.clone(), parts.clock.clone(), config.clone(), actor)
                .with_metrics(b.metrics.clone())
                .with_snapshot_key(snapshot_key.clone())
        };
        LocalPipeline {
            intake: Intake::new(ctx("intake"), parts.webhook_secrets.clone()),
            approve: Approve::new(ctx("approve"), parts.signer.clone()),
            reconciler: Reconciler::new(ctx("reconcile")),
            collect: Collect::new(ctx("collect"), parts.xdr.clone()),
            enrich: Enrich::new(ctx("enrich"), parts.sources.clone()),
            synthesize: match parts.model.clone() {
                Some(m) => Synthesize::new(ctx("synthesize"), parts.signer.clone()).with_model(m),
                None => Synthesize::new(ctx("synthesize"), parts.signer.clone()),
            },
            hunt: Hunt::new(ctx("hunt"), parts.signer.clone()),
            writeback: match parts.identity.clone() {
                Some(idp) => Writeback::new(ctx("writeback"), parts.xdr.clone()).with_identity(idp),
                None => Writeback::new(ctx("writeback"), parts.xdr.clone()),
            }
            .with_notifiers(parts.notifiers.clone()),
            queues: queue_names(&config.sources),
            ctx: ctx("dossier-local"),
            backend: parts.backend,
            clock: parts.clock,
            timings: Timings::local(),
            invocations: Invocations::default(),
        }
    }

    /// Where posted closure summaries are handed on (a ServiceNow record, an e-mail).
    pub fn with_closure_exports(mut self, exports: Vec<Arc<dyn dossier_core::ports::ClosureExport>>) -> LocalPipeline {
        self.writeback = self.writeback.with_closure_exports(exports);
        self
    }

    /// Approvers sign in (OpenID Connect) before they decide.
    pub fn with_signin(mut self, signin: dossier_core::signin::SignIn) -> LocalPipeline {
        self.approve = self.approve.with_signin(signin);
        self
    }

    pub fn with_timings(mut self, timings: Timings) -> LocalPipeline {
        self.timings = timings;
        self
    }

    /// The stage that handles `queue`'s messages.
    pub fn handler_of(&self, queue: &QueueName) -> &dyn MessageHandler {
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

    /// Runs every queue and the reconciler until `stop` is set, the way Lambda's event source
    /// mappings do at batch size 1: each message is handled as soon as it arrives, as its own
    /// task (an invocation), up to `concurrency` at a time per queue.
    pub async fn run_workers(self: &Arc<Self>, concurrency: usize, stop: &Arc<AtomicBool>) {
        let mut tasks = JoinSet::new();
        for queue in self.queues.clone() {
            tasks.spawn(self.clone().dispatch(queue, concurrency.max(1), stop.clone()));
        }
        tasks.spawn(self.clone().reconcile_on_schedule(stop.clone()));
        while tasks.join_next().await.is_some() {}
    }

    async fn reconcile_on_schedule(self: Arc<Self>, stop: Arc<AtomicBool>) {
        let every = self.clock.wall(self.timings.reconcile_every);
        loop {
            // Sleep in slices so `stop` is noticed.
            let mut waited = Duration::ZERO;
            while waited < every {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let slice = POLL_WAIT.min(every - waited);
                tokio::time::sleep(slice).await;
                waited += slice;
            }
            if let Err(e) = self.reconciler.run().await {
                warn!(error = %e, "reconciler run failed");
            }
        }
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

    /// One invocation: the handler runs under the function's timeout; the disposition decides
    /// what happens to the message. A killed invocation leaves its message in flight: it comes
    /// back when its visibility timeout lapses, as on Lambda.
    async fn deliver(&self, d: &Delivery) -> Result<(), StageError> {
        let times = self.timings.of(&d.queue);
        let deadline = Deadline::after(self.clock.now_ms(), times.timeout);
        let id = self.invocations.start();
        self.invocations.serving(id, &d.queue, &d.body);
        let run = dispose(self.handler_of(&d.queue), self.backend.queue.as_ref(), &d.queue, &d.body, deadline);
        let started = std::time::Instant::now();
        let (outcome, cpu) = CpuTimed::new(INVOCATION.scope(id, tokio::time::timeout(self.clock.wall(times.timeout), run))).await;
        self.invocations.finished(&d.queue, started.elapsed());
        self.invocations.spent_cpu(d.queue.as_str(), cpu);
        match outcome {
            Err(_) => {
                self.invocations.killed(id);
                warn!(queue = %d.queue, "invocation killed at its timeout; the message returns after its visibility timeout")
            }
            Ok(Disposition::Ack | Disposition::Defer(_)) => self.backend.consumer.ack(d).await?,
            Ok(Disposition::Fail { .. }) => self.backend.consumer.retry_later(d, times.failure_retry).await?,
        }
        Ok(())
    }

    /// Calls an HTTP door (intake, approve) as API Gateway would invoke its function: in its
    /// own invocation, killed at `timeout` (`None` then: the caller saw no answer).
    pub async fn invoke_http(
        &self,
        door: &dyn dossier_core::stages::HttpHandler,
        req: &dossier_core::http::HttpRequest,
        timeout: Duration,
    ) -> Option<dossier_core::http::HttpResponse> {
        let id = self.invocations.start();
        match INVOCATION.scope(id, tokio::time::timeout(self.clock.wall(timeout), door.handle(req))).await {
            Ok(resp) => Some(resp),
            Err(_) => {
                self.invocations.killed(id);
                None
            }
        }
    }

    /// Pumps until every case is settled (dossier written, or ended) and nothing is due, or the
    /// wall-clock budget runs out. Waits out delayed messages (deadlines, retries) in between,
    /// and runs the reconciler when nothing else moves.
    pub async fn run_until_settled(&self, cases: &[CaseKey], budget: Duration) -> Result<bool, StageError> {
        let started = std::time::Instant::now();
        let mut idle = Duration::ZERO;
        loop {
            let handled = self.pump_once().await?;
            if handled > 0 {
                idle = Duration::ZERO;
                continue;
            }
            if self.all_settled(cases).await? {
                return Ok(true);
            }
            if started.elapsed() >= budget {
                return Ok(false);
            }
            idle += Duration::from_millis(20);
            if idle >= self.clock.wall(self.timings.reconcile_every) {
                idle = Duration::ZERO;
                self.reconciler.run().await?;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn all_settled(&self, cases: &[CaseKey]) -> Result<bool, StageError> {
        for key in cases {
            match self.ctx.store.case(key).await? {
                Some(c) if c.value.status.is_settled() => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// The case as stored (tests and reports read through these).
    pub async fn case(&self, key: &CaseKey) -> Result<Option<dossier_core::domain::Case>, StageError> {
        Ok(self.ctx.store.case(key).await?.map(|c| c.value))
    }

    pub async fn actions(&self, key: &CaseKey) -> Result<Vec<dossier_core::domain::Action>, StageError> {
        Ok(self.ctx.store.actions(key).await?.into_iter().map(|a| a.value).collect())
    }

    pub async fn action(&self, key: &CaseKey, id: &str) -> Result<Option<dossier_core::domain::Action>, StageError> {
        Ok(self.ctx.store.action(key, id).await?.map(|a| a.value))
    }

    pub async fn draft(&self, key: &CaseKey, id: &str) -> Result<Option<dossier_core::domain::Draft>, StageError> {
        Ok(self.ctx.store.draft(key, id).await?.map(|d| d.value))
    }

    pub async fn dossier(&self, key: &CaseKey) -> Result<Option<dossier_core::dossier::Dossier>, StageError> {
        Ok(self.ctx.store.dossier(key).await?)
    }

    pub async fn reports(&self, key: &CaseKey) -> Result<Vec<dossier_core::sources::SourceReport>, StageError> {
        Ok(self.ctx.store.reports(key).await?)
    }

    /// Status of each case, for reports.
    pub async fn statuses(&self, cases: &[CaseKey]) -> Result<HashMap<CaseKey, CaseStatus>, StageError> {
        let mut out = HashMap::new();
        for key in cases {
            if let Some(c) = self.ctx.store.case(key).await? {
                out.insert(key.clone(), c.value.status);
            }
        }
        Ok(out)
    }
}
