//! AWS as the functions meet it, for the bench: the embedded store and queue with each call
//! taking what the region-local service takes, and every call counted by service and operation
//! and by the invocation that made it (which stage, which case), so a report can say how many
//! calls a case makes and how many of them sit one after another on its critical path.
//!
//! Defaults (`--aws-latency`): DynamoDB single-item reads 4 ms and writes 6 ms, transactions
//! 10 ms ("single-digit millisecond" latency, DynamoDB developer guide); SQS `SendMessage` 10 ms;
//! the SQS → Lambda event source mapping 16 ms median from send to invocation (measured p50
//! 16.2 ms, p90 33.8 ms, Bite-Sized Serverless "Serverless Messaging: Latency Compared", 2022).
//! Each call draws ±40 % jitter.

use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dossier_core::ports::{
    Delivery, DocStore, DueItem, Queue, QueueConsumer, QueueError, QueueName, StoreError, StoredDoc, Table, Write, WriteOutcome,
};

/// Per-call latencies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AwsLatency {
    pub ddb_read: Duration,
    pub ddb_write: Duration,
    pub ddb_transaction: Duration,
    pub sqs_send: Duration,
    /// From a message becoming visible to its function being invoked.
    pub trigger: Duration,
}

impl AwsLatency {
    /// The published region-local figures (see the module comment).
    pub fn published() -> AwsLatency {
        AwsLatency {
            ddb_read: Duration::from_millis(4),
            ddb_write: Duration::from_millis(6),
            ddb_transaction: Duration::from_millis(10),
            sqs_send: Duration::from_millis(10),
            trigger: Duration::from_millis(16),
        }
    }

    /// `--ddb-ms` sets a read; writes and transactions keep their published ratio to it.
    pub fn with(ddb_ms: Option<u64>, sqs_ms: Option<u64>, trigger_ms: Option<u64>) -> AwsLatency {
        let mut l = AwsLatency::published();
        if let Some(ms) = ddb_ms {
            l.ddb_read = Duration::from_millis(ms);
            l.ddb_write = Duration::from_millis(ms * 3 / 2);
            l.ddb_transaction = Duration::from_millis(ms * 5 / 2);
        }
        if let Some(ms) = sqs_ms {
            l.sqs_send = Duration::from_millis(ms);
        }
        if let Some(ms) = trigger_ms {
            l.trigger = Duration::from_millis(ms);
        }
        l
    }
}

/// One AWS call a function made (or a hand-off: the moment its work reached the next stage or
/// XDR).
#[derive(Clone, Debug)]
pub struct TracedCall {
    /// The invocation that made it (0: the HTTP doors, called outside any queue invocation).
    pub invocation: u64,
    pub operation: String,
    /// The table and key, or the queue.
    pub what: String,
    /// Which of the invocation's waves it belongs to: calls made while another call of the same
    /// invocation was in flight share a wave (they run side by side); a call made when none was
    /// starts the next one. The waves are the calls in sequence.
    pub wave: u32,
    /// When it started.
    pub at: std::time::Instant,
}

/// An invocation's calls in flight and waves so far.
#[derive(Default)]
struct Waves {
    in_flight: u32,
    waves: u32,
}

/// Every AWS call the pipeline made: by service and operation, and by invocation.
#[derive(Default)]
pub struct AwsCalls {
    by_operation: Mutex<BTreeMap<String, u64>>,
    units: Mutex<BTreeMap<String, u64>>,
    /// Every call functions made, in order.
    trace: Mutex<Vec<TracedCall>>,
    waves: Mutex<HashMap<u64, Waves>>,
    jitter_seed: AtomicU64,
}

/// The operation name of a hand-off mark in the trace.
pub const HAND_OFF: &str = "hand-off";

/// The operation name of work outside AWS in the trace (XDR, a source, the model): not an AWS
/// call, but AWS calls made while it runs add no time to the path.
pub const EXTERNAL: &str = "external";

impl AwsCalls {
    /// A call a function makes (and waits for); `what` names the table and key or the queue.
    /// Returns the invocation, to end the call with [`AwsCalls::ended`].
    fn started(&self, operation: &str, what: String) -> u64 {
        if operation != EXTERNAL {
            self.record_service(operation);
        }
        let invocation = crate::backend::current_invocation().unwrap_or(0);
        let mut waves = self.waves.lock().unwrap_or_else(|p| p.into_inner());
        let w = waves.entry(invocation).or_default();
        if w.in_flight == 0 {
            w.waves += 1;
        }
        w.in_flight += 1;
        let wave = w.waves;
        drop(waves);
        self.trace.lock().unwrap_or_else(|p| p.into_inner()).push(TracedCall {
            invocation,
            operation: operation.to_string(),
            what,
            wave,
            at: std::time::Instant::now(),
        });
        invocation
    }

    fn ended(&self, invocation: u64) {
        let mut waves = self.waves.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = waves.get_mut(&invocation) {
            w.in_flight = w.in_flight.saturating_sub(1);
        }
    }

    /// Runs `work` done outside AWS (a call to XDR, a source or the model) in the calling
    /// invocation's waves: AWS calls made while it runs share its wave.
    pub async fn external<T>(&self, what: &str, work: impl std::future::Future<Output = T>) -> T {
        let invocation = self.started(EXTERNAL, what.to_string());
        let out = work.await;
        self.ended(invocation);
        out
    }

    /// Marks the moment the calling invocation's work reached XDR (the comment posted): the calls
    /// after it are not on the way to the dossier.
    pub fn hand_off(&self, what: &str) {
        let invocation = crate::backend::current_invocation().unwrap_or(0);
        let wave = self.waves.lock().unwrap_or_else(|p| p.into_inner()).get(&invocation).map_or(0, |w| w.waves);
        self.trace.lock().unwrap_or_else(|p| p.into_inner()).push(TracedCall {
            invocation,
            operation: HAND_OFF.to_string(),
            what: what.to_string(),
            wave,
            at: std::time::Instant::now(),
        });
    }

    /// Every call functions made (and the hand-off marks), in order.
    pub fn trace(&self) -> Vec<TracedCall> {
        self.trace.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Units that are not calls (the items of a transaction), counted under their own name.
    fn record_units(&self, name: &str, n: u64) {
        *self.units.lock().unwrap_or_else(|p| p.into_inner()).entry(name.to_string()).or_default() += n;
    }

    pub fn units(&self) -> BTreeMap<String, u64> {
        self.units.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A call the platform makes around the functions (the event source mapping's polls).
    fn record_service(&self, operation: &str) {
        *self.by_operation.lock().unwrap_or_else(|p| p.into_inner()).entry(operation.to_string()).or_default() += 1;
    }

    pub fn by_operation(&self) -> BTreeMap<String, u64> {
        self.by_operation.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn total(&self) -> u64 {
        self.by_operation().values().sum()
    }

    /// `base` ± 40 %, from a cheap deterministic sequence (the bench must not depend on the OS
    /// random source per call).
    fn jittered(&self, base: Duration) -> Duration {
        let n = self.jitter_seed.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let unit = (n >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(0.6 + 0.8 * unit)
    }

    /// Runs `call` as one AWS call taking `base` (± jitter). Without a latency calls made side by
    /// side do not overlap in time (each completes when polled), so waves are counted only with
    /// one: a yield here to make them overlap would itself queue every call behind the other
    /// cases' tasks and change what the bench measures.
    async fn take<T>(&self, operation: &str, what: String, base: Duration, call: impl std::future::Future<Output = T>) -> T {
        self.take_n(1, operation, what, base, call).await
    }

    /// `n` calls of one operation made side by side (the chunks of a batch), as one wave.
    async fn take_n<T>(&self, n: usize, operation: &str, what: String, base: Duration, call: impl std::future::Future<Output = T>) -> T {
        let invocations: Vec<u64> = (0..n.max(1)).map(|_| self.started(operation, what.clone())).collect();
        if !base.is_zero() {
            wait(self.jittered(base)).await;
        }
        let out = call.await;
        for invocation in invocations {
            self.ended(invocation);
        }
        out
    }
}

/// A simulated wait of `d`, woken on time. Tokio's timer ticks in whole milliseconds and wakes
/// ~1.1 ms late on average on the CI machine (0.4–2 ms, for any length): with some 25 waits on a
/// lone case's path (each AWS call, hop, source round, the model, the post) that was ~25 ms of
/// "overhead" belonging to the bench's own clock, not to the pipeline or to AWS. async-io's timer
/// (timerfd) wakes within ~0.1 ms. The pipeline itself never sleeps on its happy path: its calls
/// wake on I/O.
pub async fn wait(d: Duration) {
    async_io::Timer::after(d).await;
}

fn key(table: Table, pk: &str, sk: &str) -> String {
    format!("{}[{pk} / {sk}]", table.as_str())
}

/// A store whose calls take DynamoDB's time.
pub struct LatentStore {
    pub inner: Arc<dyn DocStore>,
    pub latency: AwsLatency,
    pub calls: Arc<AwsCalls>,
}

#[async_trait]
impl DocStore for LatentStore {
    async fn get(&self, table: Table, pk: &str, sk: &str) -> Result<Option<StoredDoc>, StoreError> {
        self.calls.take("dynamodb:GetItem", key(table, pk, sk), self.latency.ddb_read, self.inner.get(table, pk, sk)).await
    }
    async fn get_many(&self, table: Table, keys: &[(String, String)]) -> Result<Vec<Option<StoredDoc>>, StoreError> {
        let what = keys.iter().map(|(pk, sk)| key(table, pk, sk)).collect::<Vec<_>>().join(", ");
        self.calls.record_units("dynamodb:BatchGetItem (items)", keys.len() as u64);
        self.calls.take("dynamodb:BatchGetItem", what, self.latency.ddb_read, self.inner.get_many(table, keys)).await
    }
    async fn query(&self, table: Table, pk: &str, sk_prefix: &str) -> Result<Vec<StoredDoc>, StoreError> {
        self.calls
            .take("dynamodb:Query", key(table, pk, &format!("{sk_prefix}*")), self.latency.ddb_read, self.inner.query(table, pk, sk_prefix))
            .await
    }
    async fn write(&self, writes: Vec<Write>) -> Result<WriteOutcome, StoreError> {
        let (op, base) = if writes.len() > 1 {
            ("dynamodb:TransactWriteItems", self.latency.ddb_transaction)
        } else {
            ("dynamodb:PutItem", self.latency.ddb_write)
        };
        if writes.len() > 1 {
            // Billing counts every item of a transaction (twice: prepare and commit).
            self.calls.record_units("dynamodb:TransactWriteItems (items)", writes.len() as u64);
        }
        let what = writes.iter().map(|w| key(w.table, &w.pk, &w.sk)).collect::<Vec<_>>().join(", ");
        self.calls.take(op, what, base, self.inner.write(writes)).await
    }
    async fn put_all(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.is_empty() {
            return self.inner.put_all(writes).await;
        }
        // One BatchWriteItem per 25 items, sent side by side (one wave).
        let what = writes.iter().map(|w| key(w.table, &w.pk, &w.sk)).collect::<Vec<_>>().join(", ");
        let calls = writes.len().div_ceil(dossier_core::ports::MAX_WRITES_PER_BATCH);
        self.calls.record_units("dynamodb:BatchWriteItem (items)", writes.len() as u64);
        self.calls.take_n(calls, "dynamodb:BatchWriteItem", what, self.latency.ddb_write, self.inner.put_all(writes)).await
    }
    async fn add_to_set(&self, table: Table, pk: &str, sk: &str, member: &str) -> Result<Vec<String>, StoreError> {
        self.calls
            .take("dynamodb:UpdateItem", key(table, pk, sk), self.latency.ddb_write, self.inner.add_to_set(table, pk, sk, member))
            .await
    }
    async fn count_up(&self, table: Table, pk: &str, sk: &str, limit: u64, expires_at_s: i64) -> Result<Option<u64>, StoreError> {
        self.calls
            .take(
                "dynamodb:UpdateItem",
                key(table, pk, sk),
                self.latency.ddb_write,
                self.inner.count_up(table, pk, sk, limit, expires_at_s),
            )
            .await
    }
    async fn set_members(&self, table: Table, pk: &str, sk: &str) -> Result<Vec<String>, StoreError> {
        self.calls.take("dynamodb:GetItem", key(table, pk, sk), self.latency.ddb_read, self.inner.set_members(table, pk, sk)).await
    }
    async fn due(&self, table: Table, until_ms: i64, limit: usize) -> Result<Vec<DueItem>, StoreError> {
        self.calls
            .take("dynamodb:Query", format!("{} due index", table.as_str()), self.latency.ddb_read, self.inner.due(table, until_ms, limit))
            .await
    }
}

/// A queue whose sends take SQS's time and whose messages reach their function after the event
/// source mapping's delay. Receives and deletes are the mapping's own (counted, not waited on by
/// the function).
pub struct LatentQueue {
    pub inner: Arc<dyn Queue>,
    pub consumer: Arc<dyn QueueConsumer>,
    pub latency: AwsLatency,
    pub calls: Arc<AwsCalls>,
}

#[async_trait]
impl Queue for LatentQueue {
    async fn send(&self, queue: &QueueName, body: &str, delay: Duration) -> Result<(), QueueError> {
        // The mapping picks the message up a moment after it is visible.
        let trigger = self.calls.jittered(self.latency.trigger);
        if !delay.is_zero() || trigger.is_zero() {
            return self
                .calls
                .take("sqs:SendMessage", queue.as_str().to_string(), self.latency.sqs_send, self.inner.send(queue, body, delay + trigger))
                .await;
        }
        // A message due at once reaches its function `trigger` after the send, on time: a delay
        // on the queue would be kept in whole milliseconds and found by a poller's millisecond
        // timer (see `wait`). Like SQS's, the message is the queue's once the send returns.
        self.calls.take("sqs:SendMessage", queue.as_str().to_string(), self.latency.sqs_send, async {}).await;
        // What the queue would refuse is refused to the sender, as SQS does.
        dossier_core::ports::check_message(body)?;
        let (inner, queue, body) = (self.inner.clone(), queue.clone(), body.to_string());
        tokio::spawn(async move {
            wait(trigger).await;
            if let Err(e) = inner.send(&queue, &body, Duration::ZERO).await {
                // Only a transport failure of the queue behind (moto) gets here: the case counts as lost.
                tracing::warn!(queue = %queue, error = %e, "bench: a message sent was refused by the queue behind it");
            }
        });
        Ok(())
    }
}

#[async_trait]
impl QueueConsumer for LatentQueue {
    async fn receive(&self, queue: &QueueName, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let got = self.consumer.receive(queue, max, wait).await?;
        if !got.is_empty() {
            self.calls.record_service("sqs:ReceiveMessage (event source mapping)");
        }
        Ok(got)
    }
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.calls.record_service("sqs:DeleteMessage (event source mapping)");
        self.consumer.ack(delivery).await
    }
    async fn retry_later(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        self.consumer.retry_later(delivery, delay).await
    }
}

/// AWS calls per case, in all and on the critical path. The critical path is the chain from
/// the webhook to the comment in XDR: the door's calls, then per case the invocation of each
/// stage that handed the case on (collect's fan-out, the enrichment that completed the fan-in,
/// synthesis's hand-over, write-back's post), each counted in waves up to its hand-off (calls
/// made side by side are one wave; what a function writes after its hand-off is off the path;
/// calls made while XDR, a source or the model works add no time and are not counted).
pub fn calls_per_case(
    trace: &[TracedCall],
    served: &HashMap<u64, (dossier_core::ports::QueueName, Option<dossier_core::domain::CaseKey>)>,
    cases: usize,
) -> (f64, f64) {
    let cases_f = cases.max(1) as f64;
    let is_aws = |c: &&TracedCall| c.operation != HAND_OFF && c.operation != EXTERNAL;
    let total = trace.iter().filter(is_aws).count() as f64;
    // The doors run for all cases at once: their calls per case are made one after another.
    let doors = trace.iter().filter(|c| c.invocation == 0).filter(is_aws).count() as f64 / cases_f;
    // Per invocation, its waves with an AWS call, and those where outside work also ran.
    let mut aws_waves: HashMap<u64, std::collections::BTreeSet<u32>> = HashMap::new();
    let mut external_waves: HashMap<u64, std::collections::BTreeSet<u32>> = HashMap::new();
    for c in trace.iter().filter(|c| c.invocation != 0) {
        let waves = match c.operation.as_str() {
            HAND_OFF => continue,
            EXTERNAL => &mut external_waves,
            _ => &mut aws_waves,
        };
        waves.entry(c.invocation).or_default().insert(c.wave);
    }
    // Per invocation, the wave of its hand-off: its last send to the next stage, or the post.
    let mut hand_off: HashMap<u64, u32> = HashMap::new();
    for c in trace.iter().filter(|c| c.invocation != 0 && (c.operation == HAND_OFF || c.operation == "sqs:SendMessage")) {
        let w = hand_off.entry(c.invocation).or_default();
        *w = (*w).max(c.wave);
    }
    // Per case and stage, the longest chain of waves among the invocations that handed it on.
    let mut per_case: HashMap<&dossier_core::domain::CaseKey, HashMap<String, u32>> = HashMap::new();
    for (invocation, last) in hand_off {
        let Some((queue, Some(case))) = served.get(&invocation) else { continue };
        let stage = if queue.as_str().starts_with("enrich") { "enrich".to_string() } else { queue.as_str().to_string() };
        let hidden = external_waves.get(&invocation);
        let waves = aws_waves
            .get(&invocation)
            .map_or(0, |w| w.iter().filter(|&&n| n <= last && !hidden.is_some_and(|h| h.contains(&n))).count() as u32);
        let w = per_case.entry(case).or_default().entry(stage).or_default();
        *w = (*w).max(waves);
    }
    let sequential = per_case.values().map(|stages| stages.values().sum::<u32>()).sum::<u32>() as f64 / cases_f;
    (total / cases_f, doors + sequential)
}
