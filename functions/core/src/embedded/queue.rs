//! Queues in memory: delays, visibility timeouts, long polling and a DLQ per queue.

use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

use super::lock;
use crate::ports::{Clock, Delivery, Queue, QueueConsumer, QueueError, QueueName, SystemClock};

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
        crate::ports::check_message(body)?;
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
