//! In-memory implementations of the ports with the semantics of the AWS ones: conditional writes,
//! at-least-once delivery with visibility timeouts, delays and a dead-letter queue per queue.
//! Used by the local CLI and by tests; the contract tests run the same suite against both.

use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

use crate::ports::{
    Clock, Delivery, DocStore, PutOutcome, Queue, QueueConsumer, QueueError, QueueName, ReplaceOutcome, SecretError, SecretStore,
    StoreError, StoredDoc, SystemClock, Table, XdrApi, XdrError,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-written (every update is a
    // single insert), so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------

/// (table, pk, sk) → (document, version)
type Items = BTreeMap<(Table, String, String), (String, u64)>;

#[derive(Default)]
pub struct MemoryStore {
    items: Mutex<Items>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

#[async_trait]
impl DocStore for MemoryStore {
    async fn get(&self, table: Table, pk: &str, sk: &str) -> Result<Option<StoredDoc>, StoreError> {
        Ok(lock(&self.items).get(&(table, pk.to_string(), sk.to_string())).map(|(body, version)| StoredDoc {
            sk: sk.to_string(),
            body: body.clone(),
            version: *version,
        }))
    }

    async fn put_new(&self, table: Table, pk: &str, sk: &str, body: &str, _expires_at_s: Option<i64>) -> Result<PutOutcome, StoreError> {
        let mut items = lock(&self.items);
        let key = (table, pk.to_string(), sk.to_string());
        if items.contains_key(&key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        items.insert(key, (body.to_string(), 1));
        Ok(PutOutcome::Written)
    }

    async fn replace(&self, table: Table, pk: &str, sk: &str, body: &str, expected_version: u64) -> Result<ReplaceOutcome, StoreError> {
        let mut items = lock(&self.items);
        match items.get_mut(&(table, pk.to_string(), sk.to_string())) {
            Some((stored, version)) if *version == expected_version => {
                *stored = body.to_string();
                *version += 1;
                Ok(ReplaceOutcome::Written)
            }
            _ => Ok(ReplaceOutcome::Conflict),
        }
    }

    async fn query(&self, table: Table, pk: &str, sk_prefix: &str) -> Result<Vec<StoredDoc>, StoreError> {
        let items = lock(&self.items);
        Ok(items
            .range((table, pk.to_string(), sk_prefix.to_string())..)
            .take_while(|((t, p, s), _)| *t == table && p == pk && s.starts_with(sk_prefix))
            .map(|((_, _, sk), (body, version))| StoredDoc { sk: sk.clone(), body: body.clone(), version: *version })
            .collect())
    }
}

// ---------------------------------------------------------------------------------------------

struct Message {
    id: u64,
    body: String,
    visible_at_ms: i64,
    receive_count: u32,
    in_flight_receipt: Option<String>,
}

/// Queues with delays, visibility timeouts and a dead-letter queue after `max_receives`.
pub struct MemoryQueue {
    queues: Mutex<HashMap<QueueName, VecDeque<Message>>>,
    /// Wakes long-polling receivers of a queue when a message is sent or re-scheduled.
    arrivals: Mutex<HashMap<QueueName, Arc<Notify>>>,
    dead: Mutex<HashMap<QueueName, Vec<String>>>,
    sent: AtomicU64,
    next_id: AtomicU64,
    clock: Arc<dyn Clock>,
    visibility_ms: i64,
    max_receives: u32,
}

impl MemoryQueue {
    pub fn new(clock: Arc<dyn Clock>, visibility: Duration, max_receives: u32) -> MemoryQueue {
        MemoryQueue {
            queues: Mutex::default(),
            arrivals: Mutex::default(),
            dead: Mutex::default(),
            sent: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            clock,
            visibility_ms: i64::try_from(visibility.as_millis()).unwrap_or(i64::MAX),
            max_receives,
        }
    }

    /// Defaults like the template's queues: 30 s visibility, DLQ after 5 receives.
    pub fn with_defaults() -> MemoryQueue {
        MemoryQueue::new(Arc::new(SystemClock), Duration::from_secs(30), 5)
    }

    /// Messages waiting (visible or not) per queue.
    pub fn depth(&self, queue: &QueueName) -> usize {
        lock(&self.queues).get(queue).map_or(0, VecDeque::len)
    }

    pub fn total_depth(&self) -> usize {
        lock(&self.queues).values().map(VecDeque::len).sum()
    }

    /// Earliest time a waiting message becomes visible, if any is waiting.
    pub fn next_visible_at_ms(&self) -> Option<i64> {
        lock(&self.queues).values().flat_map(|q| q.iter().map(|m| m.visible_at_ms)).min()
    }

    fn arrivals(&self, queue: &QueueName) -> Arc<Notify> {
        lock(&self.arrivals).entry(queue.clone()).or_default().clone()
    }

    /// How long until the next message of `queue` becomes visible (zero if one is), by the clock.
    fn next_visible_in(&self, queue: &QueueName) -> Option<Duration> {
        let now = self.clock.now_ms();
        let at = lock(&self.queues).get(queue)?.iter().map(|m| m.visible_at_ms).min()?;
        Some(Duration::from_millis(u64::try_from(at - now).unwrap_or(0)))
    }

    /// Takes up to `max` visible messages, moving those received too often to the DLQ.
    fn take_visible(&self, queue: &QueueName, max: usize) -> Vec<Delivery> {
        let now = self.clock.now_ms();
        let mut queues = lock(&self.queues);
        let Some(q) = queues.get_mut(queue) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut to_dead = Vec::new();
        for m in q.iter_mut() {
            if out.len() >= max {
                break;
            }
            if m.visible_at_ms > now {
                continue;
            }
            if m.receive_count >= self.max_receives {
                // Redrive: received too often without success, moved intact to the DLQ.
                to_dead.push(m.id);
                continue;
            }
            m.receive_count += 1;
            m.visible_at_ms = now + self.visibility_ms;
            let receipt = format!("{}:{}", m.id, m.receive_count);
            m.in_flight_receipt = Some(receipt.clone());
            out.push(Delivery { queue: queue.clone(), receipt, body: m.body.clone(), receive_count: m.receive_count });
        }
        if !to_dead.is_empty() {
            let mut dead = lock(&self.dead);
            q.retain(|m| {
                if to_dead.contains(&m.id) {
                    dead.entry(queue.clone()).or_default().push(m.body.clone());
                    false
                } else {
                    true
                }
            });
        }
        out
    }

    pub fn dead_letters(&self, queue: &QueueName) -> Vec<String> {
        lock(&self.dead).get(queue).cloned().unwrap_or_default()
    }

    pub fn all_dead_letters(&self) -> Vec<(QueueName, String)> {
        lock(&self.dead).iter().flat_map(|(q, bodies)| bodies.iter().map(move |b| (q.clone(), b.clone()))).collect()
    }

    pub fn sent_count(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Names of queues that ever received a message.
    pub fn queue_names(&self) -> Vec<QueueName> {
        let mut names: Vec<QueueName> = lock(&self.queues).keys().cloned().collect();
        names.sort();
        names
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, queue: &QueueName, body: &str, delay: Duration) -> Result<(), QueueError> {
        if body.len() > 256 * 1024 {
            return Err(QueueError::Rejected(format!("message of {} bytes exceeds 256 KiB", body.len())));
        }
        let delay_ms = i64::try_from(delay.min(crate::ports::MAX_QUEUE_DELAY).as_millis()).unwrap_or(0);
        let msg = Message {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            body: body.to_string(),
            visible_at_ms: self.clock.now_ms() + delay_ms,
            receive_count: 0,
            in_flight_receipt: None,
        };
        lock(&self.queues).entry(queue.clone()).or_default().push_back(msg);
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.arrivals(queue).notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl QueueConsumer for MemoryQueue {
    async fn receive(&self, queue: &QueueName, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        let arrivals = self.arrivals(queue);
        loop {
            // Registered before looking, so a send between the look and the wait still wakes us.
            let arrived = arrivals.notified();
            let mut arrived = std::pin::pin!(arrived);
            arrived.as_mut().enable();
            let got = self.take_visible(queue, max);
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            // A delayed or timed-out message becomes visible without a send: wake for it too.
            let left = deadline - now;
            let nap = self.next_visible_in(queue).map_or(left, |due| due.clamp(Duration::from_millis(1), left));
            let nap = std::pin::pin!(tokio::time::sleep(nap));
            futures_util::future::select(arrived, nap).await;
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        if let Some(q) = lock(&self.queues).get_mut(&delivery.queue) {
            // Like SQS, a stale receipt (the message was received again since) deletes nothing.
            q.retain(|m| m.in_flight_receipt.as_deref() != Some(delivery.receipt.as_str()));
        }
        Ok(())
    }

    async fn retry_later(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        let at = self.clock.now_ms() + i64::try_from(delay.min(crate::ports::MAX_QUEUE_DELAY).as_millis()).unwrap_or(0);
        if let Some(q) = lock(&self.queues).get_mut(&delivery.queue) {
            if let Some(m) = q.iter_mut().find(|m| m.in_flight_receipt.as_deref() == Some(delivery.receipt.as_str())) {
                m.visible_at_ms = at;
            }
        }
        // Waiting receivers re-compute when to wake: this message may now be the next one due.
        self.arrivals(&delivery.queue).notify_waiters();
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------

/// Secrets from a map (local runs read them from the environment into this).
#[derive(Default)]
pub struct MemorySecrets {
    values: HashMap<String, String>,
}

impl MemorySecrets {
    pub fn new(values: impl IntoIterator<Item = (String, String)>) -> MemorySecrets {
        MemorySecrets { values: values.into_iter().collect() }
    }
}

#[async_trait]
impl SecretStore for MemorySecrets {
    async fn get_secret(&self, id: &str) -> Result<String, SecretError> {
        self.values.get(id).cloned().ok_or_else(|| SecretError::NotFound(id.to_string()))
    }
}

/// A clock tests move by hand.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(start_ms))
    }
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(i64::try_from(by.as_millis()).unwrap_or(0), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------------

/// One write Dossier made (or would have made) to XDR.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct XdrWrite {
    pub endpoint: String,
    pub body: serde_json::Value,
}

/// Serves recorded extra-data replies and records writes instead of sending them: `dossier run`
/// and the demo use it, so nothing reaches a real tenant.
#[derive(Default)]
pub struct RecordingXdr {
    /// Incident id → raw `get_incident_extra_data` reply; `None` key serves any id.
    replies: Mutex<HashMap<String, String>>,
    fallback: Option<String>,
    writes: Mutex<Vec<XdrWrite>>,
}

impl RecordingXdr {
    /// Serves `reply` for any incident id.
    pub fn serving(reply: String) -> RecordingXdr {
        RecordingXdr { fallback: Some(reply), ..Default::default() }
    }

    pub fn with_incidents(replies: impl IntoIterator<Item = (String, String)>) -> RecordingXdr {
        RecordingXdr { replies: Mutex::new(replies.into_iter().collect()), ..Default::default() }
    }

    pub fn writes(&self) -> Vec<XdrWrite> {
        lock(&self.writes).clone()
    }

    fn record(&self, endpoint: &str, body: serde_json::Value) {
        lock(&self.writes).push(XdrWrite { endpoint: endpoint.to_string(), body });
    }
}

#[async_trait]
impl XdrApi for RecordingXdr {
    async fn list_modified(&self, _from_ms: i64, _to_ms: i64) -> Result<Vec<crate::ports::IncidentRef>, XdrError> {
        let replies: Vec<String> = lock(&self.replies).values().cloned().chain(self.fallback.clone()).collect();
        let mut out = Vec::new();
        for reply in replies {
            for d in crate::xdr::parse_extra_data(&reply).map_err(|e| XdrError::BadReply(e.to_string()))? {
                out.push(crate::ports::IncidentRef {
                    incident_id: d.incident.incident_id,
                    status: d.incident.status,
                    severity: d.incident.severity,
                    description: d.incident.description,
                    creation_ms: d.incident.creation_ms,
                    modification_ms: d.incident.creation_ms,
                });
            }
        }
        out.sort_by(|a, b| a.incident_id.cmp(&b.incident_id));
        out.dedup_by(|a, b| a.incident_id == b.incident_id);
        Ok(out)
    }

    async fn get_incident_extra_data(&self, incident_id: &str) -> Result<String, XdrError> {
        lock(&self.replies)
            .get(incident_id)
            .cloned()
            .or_else(|| self.fallback.clone())
            .ok_or_else(|| XdrError::NotFound(format!("no recorded incident {incident_id}")))
    }

    async fn add_comment(&self, incident_id: &str, text: &str) -> Result<(), XdrError> {
        self.record(
            "/public_api/v1/incidents/update_incident",
            serde_json::json!({"request_data": {"incident_id": incident_id, "update_data": {"comment": {"comment_action": "add", "value": text}}}}),
        );
        Ok(())
    }

    async fn set_severity(&self, incident_id: &str, severity: &str) -> Result<(), XdrError> {
        self.record(
            "/public_api/v1/incidents/update_incident",
            serde_json::json!({"request_data": {"incident_id": incident_id, "update_data": {"manual_severity": severity}}}),
        );
        Ok(())
    }

    async fn isolate_endpoint(&self, endpoint_id: &str, incident_id: &str) -> Result<String, XdrError> {
        self.record(
            "/public_api/v1/endpoints/isolate",
            serde_json::json!({"request_data": {"endpoint_id": endpoint_id, "incident_id": incident_id}}),
        );
        Ok(format!("recorded-{}", lock(&self.writes).len()))
    }

    async fn block_hash(&self, sha256: &str, comment: &str, incident_id: &str) -> Result<(), XdrError> {
        self.record(
            "/public_api/v1/hash_exceptions/blocklist",
            serde_json::json!({"request_data": {"hash_list": [sha256], "comment": comment, "incident_id": incident_id}}),
        );
        Ok(())
    }

    async fn action_status(&self, _action_id: &str) -> Result<Vec<(String, String)>, XdrError> {
        // Recorded actions complete at once: nothing real was asked of an endpoint.
        Ok(vec![("recorded".into(), "COMPLETED_SUCCESSFULLY".into())])
    }
}
