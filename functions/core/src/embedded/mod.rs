//! In-memory implementations of the ports with the semantics of the AWS ones: conditional writes,
//! at-least-once delivery with visibility timeouts, delays and a dead-letter queue per queue.
//! Used by the local CLI and by tests; the contract tests run the same suite against both.

use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

use crate::ports::{
    Clock, Condition, Delivery, DocStore, DueItem, Queue, QueueConsumer, QueueError, QueueName, SecretError, SecretStore, StoreError,
    StoredDoc, SystemClock, Table, Write, WriteOutcome, XdrApi, XdrError,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-written (every update is a
    // single insert), so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------

/// One stored item: a document with its version, or a fan-in set; its due time if listed.
#[derive(Clone, Debug, Default)]
struct Item {
    body: String,
    version: u64,
    due_at_ms: Option<i64>,
    set: BTreeSet<String>,
    counter: u64,
}

type Items = BTreeMap<(Table, String, String), Item>;

/// The store in memory, with DynamoDB's semantics: conditional writes, all-or-nothing commits,
/// string-set adds and a sparse due index. Counts the calls made, by operation.
#[derive(Default)]
pub struct MemoryStore {
    items: Mutex<Items>,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn count(&self, op: &'static str) {
        *lock(&self.calls).entry(op).or_default() += 1;
    }

    /// Calls made so far, by DynamoDB operation name.
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.calls).clone()
    }
}

fn doc(sk: &str, item: &Item) -> StoredDoc {
    StoredDoc { sk: sk.to_string(), body: item.body.clone(), version: item.version }
}

#[async_trait]
impl DocStore for MemoryStore {
    async fn get(&self, table: Table, pk: &str, sk: &str) -> Result<Option<StoredDoc>, StoreError> {
        self.count("GetItem");
        Ok(lock(&self.items).get(&(table, pk.to_string(), sk.to_string())).filter(|i| i.version > 0).map(|i| doc(sk, i)))
    }

    async fn get_many(&self, table: Table, keys: &[(String, String)]) -> Result<Vec<Option<StoredDoc>>, StoreError> {
        self.count("BatchGetItem");
        let items = lock(&self.items);
        Ok(keys.iter().map(|(pk, sk)| items.get(&(table, pk.clone(), sk.clone())).filter(|i| i.version > 0).map(|i| doc(sk, i))).collect())
    }

    async fn query(&self, table: Table, pk: &str, sk_prefix: &str) -> Result<Vec<StoredDoc>, StoreError> {
        self.count("Query");
        let items = lock(&self.items);
        Ok(items
            .range((table, pk.to_string(), sk_prefix.to_string())..)
            .take_while(|((t, p, s), _)| *t == table && p == pk && s.starts_with(sk_prefix))
            .filter(|(_, i)| i.version > 0)
            .map(|((_, _, sk), i)| doc(sk, i))
            .collect())
    }

    async fn write(&self, writes: Vec<Write>) -> Result<WriteOutcome, StoreError> {
        crate::ports::check_writes(&writes)?;
        self.count(if writes.len() == 1 { "PutItem" } else { "TransactWriteItems" });
        let mut items = lock(&self.items);
        for (index, w) in writes.iter().enumerate() {
            let current = items.get(&(w.table, w.pk.clone(), w.sk.clone())).map_or(0, |i| i.version);
            let holds = match w.condition {
                Condition::Absent => current == 0,
                Condition::Version(v) => current == v,
                Condition::Overwrite => true,
            };
            if !holds {
                return Ok(WriteOutcome::Conflict { index });
            }
        }
        for w in writes {
            let version = w.next_version();
            let due_at_ms = if w.table.has_due_index() { w.due_at_ms } else { None };
            items.insert((w.table, w.pk, w.sk), Item { body: w.body, version, due_at_ms, ..Item::default() });
        }
        Ok(WriteOutcome::Written)
    }

    async fn add_to_set(&self, table: Table, pk: &str, sk: &str, member: &str) -> Result<Vec<String>, StoreError> {
        self.count("UpdateItem");
        let mut items = lock(&self.items);
        let item = items.entry((table, pk.to_string(), sk.to_string())).or_default();
        item.set.insert(member.to_string());
        Ok(item.set.iter().cloned().collect())
    }

    async fn count_up(&self, table: Table, pk: &str, sk: &str, limit: u64, _expires_at_s: i64) -> Result<Option<u64>, StoreError> {
        self.count("UpdateItem");
        let mut items = lock(&self.items);
        let item = items.entry((table, pk.to_string(), sk.to_string())).or_default();
        if item.counter >= limit {
            return Ok(None);
        }
        item.counter += 1;
        Ok(Some(item.counter))
    }

    async fn set_members(&self, table: Table, pk: &str, sk: &str) -> Result<Vec<String>, StoreError> {
        self.count("GetItem");
        Ok(lock(&self.items).get(&(table, pk.to_string(), sk.to_string())).map(|i| i.set.iter().cloned().collect()).unwrap_or_default())
    }

    async fn due(&self, table: Table, until_ms: i64, limit: usize) -> Result<Vec<DueItem>, StoreError> {
        self.count("Query");
        let items = lock(&self.items);
        let mut due: Vec<DueItem> = items
            .iter()
            .filter(|((t, _, _), _)| *t == table)
            .filter_map(|((_, pk, sk), i)| {
                i.due_at_ms.filter(|d| *d <= until_ms).map(|d| DueItem { pk: pk.clone(), sk: sk.clone(), due_at_ms: d })
            })
            .collect();
        due.sort_by_key(|d| d.due_at_ms);
        due.truncate(limit);
        Ok(due)
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
        Some(self.clock.wall(Duration::from_millis(u64::try_from(at - now).unwrap_or(0))))
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
            let nap = self.next_visible_in(queue).map_or(left, |due| due.max(Duration::from_millis(1)).min(left));
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

    async fn comment_exists(&self, incident_id: &str, marker: &str) -> Result<Option<bool>, XdrError> {
        let writes = lock(&self.writes);
        Ok(Some(writes.iter().any(|w| {
            w.body["request_data"]["incident_id"] == incident_id
                && w.body["request_data"]["update_data"]["comment"]["value"].as_str().is_some_and(|t| t.contains(marker))
        })))
    }

    async fn endpoint_isolated(&self, endpoint_id: &str) -> Result<Option<bool>, XdrError> {
        let writes = lock(&self.writes);
        Ok(Some(writes.iter().any(|w| w.endpoint.ends_with("/endpoints/isolate") && w.body["request_data"]["endpoint_id"] == endpoint_id)))
    }

    async fn manual_severity(&self, incident_id: &str) -> Result<Option<String>, XdrError> {
        let writes = lock(&self.writes);
        Ok(writes
            .iter()
            .rev()
            .filter(|w| w.body["request_data"]["incident_id"] == incident_id)
            .find_map(|w| w.body["request_data"]["update_data"]["manual_severity"].as_str().map(str::to_string)))
    }
}
