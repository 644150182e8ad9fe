//! The parts of the chaos run that misbehave on purpose: a seeded die, a store whose writer dies
//! between any two writes, a queue that delivers some messages twice, a compressed clock, and a
//! time scale for real SQS.

use async_trait::async_trait;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dossier_core::ports::{
    Clock, Delivery, DocStore, DueItem, Queue, QueueConsumer, QueueError, QueueName, StoreError, StoredDoc, Table, Write, WriteOutcome,
};

use crate::backend::current_invocation;

/// xorshift64*: deterministic for a seed, shared by every injector.
pub struct Dice(AtomicU64);

impl Dice {
    pub fn new(seed: u64) -> Dice {
        Dice(AtomicU64::new(seed.max(1)))
    }

    /// A number in [0, 1).
    pub fn roll(&self) -> f64 {
        let mut x = self.0.load(Ordering::Relaxed);
        loop {
            let mut n = x;
            n ^= n >> 12;
            n ^= n << 25;
            n ^= n >> 27;
            match self.0.compare_exchange_weak(x, n, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return (n.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64,
                Err(actual) => x = actual,
            }
        }
    }

    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.roll() < p
    }

    /// One of `n` choices.
    pub fn pick(&self, n: usize) -> usize {
        ((self.roll() * n as f64) as usize).min(n.saturating_sub(1))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The worker dies: the future never completes, and its invocation is killed at its timeout.
async fn die() -> ! {
    std::future::pending::<()>().await;
    unreachable!("a pending future never completes")
}

/// A store whose writer dies, with probability `rate` per write, just before or just after the
/// write (so between any two writes of a stage). Only writes made inside an invocation die; the
/// harness's own reads go to the inner store. It also notes which invocation recorded which
/// comment as posted (to tell an ambiguous post from a duplicate).
pub struct CrashingStore {
    inner: Arc<dyn DocStore>,
    dice: Arc<Dice>,
    rate: f64,
    crashes: AtomicU64,
    /// (draft marker, invocation) for every write that recorded a comment as posted.
    posted: Mutex<HashSet<(String, u64)>>,
}

impl CrashingStore {
    pub fn new(inner: Arc<dyn DocStore>, dice: Arc<Dice>, rate: f64) -> CrashingStore {
        CrashingStore { inner, dice, rate, crashes: AtomicU64::new(0), posted: Mutex::default() }
    }

    pub fn crashes(&self) -> u64 {
        self.crashes.load(Ordering::Relaxed)
    }

    /// Whether `invocation` recorded the draft with `marker` as posted.
    pub fn recorded_posted(&self, marker: &str, invocation: u64) -> bool {
        lock(&self.posted).contains(&(marker.to_string(), invocation))
    }

    /// Before a write: maybe die now, or decide to die right after it.
    async fn before(&self) -> bool {
        if current_invocation().is_none() || !self.dice.chance(self.rate) {
            return false;
        }
        self.crashes.fetch_add(1, Ordering::Relaxed);
        if self.dice.chance(0.5) {
            die().await;
        }
        true
    }
}

#[async_trait]
impl DocStore for CrashingStore {
    async fn get(&self, table: Table, pk: &str, sk: &str) -> Result<Option<StoredDoc>, StoreError> {
        self.inner.get(table, pk, sk).await
    }
    async fn get_many(&self, table: Table, keys: &[(String, String)]) -> Result<Vec<Option<StoredDoc>>, StoreError> {
        self.inner.get_many(table, keys).await
    }
    async fn query(&self, table: Table, pk: &str, sk_prefix: &str) -> Result<Vec<StoredDoc>, StoreError> {
        self.inner.query(table, pk, sk_prefix).await
    }
    async fn write(&self, writes: Vec<Write>) -> Result<WriteOutcome, StoreError> {
        let die_after = self.before().await;
        let posted: Vec<String> = writes
            .iter()
            .filter(|w| w.table == Table::Effects && w.body.contains("\"status\":\"posted\""))
            .filter_map(|w| w.sk.strip_prefix("draft#").map(|id| format!("[dossier:{}:{id}]", w.pk)))
            .collect();
        let outcome = self.inner.write(writes).await?;
        if let (WriteOutcome::Written, Some(invocation)) = (outcome, current_invocation()) {
            let mut p = lock(&self.posted);
            for marker in posted {
                p.insert((marker, invocation));
            }
        }
        if die_after {
            die().await;
        }
        Ok(outcome)
    }
    async fn put_all(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let die_after = self.before().await;
        self.inner.put_all(writes).await?;
        if die_after {
            die().await;
        }
        Ok(())
    }
    async fn add_to_set(&self, table: Table, pk: &str, sk: &str, member: &str) -> Result<Vec<String>, StoreError> {
        let die_after = self.before().await;
        let out = self.inner.add_to_set(table, pk, sk, member).await?;
        if die_after {
            die().await;
        }
        Ok(out)
    }
    async fn count_up(&self, table: Table, pk: &str, sk: &str, limit: u64, expires_at_s: i64) -> Result<Option<u64>, StoreError> {
        let die_after = self.before().await;
        let out = self.inner.count_up(table, pk, sk, limit, expires_at_s).await?;
        if die_after {
            die().await;
        }
        Ok(out)
    }
    async fn set_members(&self, table: Table, pk: &str, sk: &str) -> Result<Vec<String>, StoreError> {
        self.inner.set_members(table, pk, sk).await
    }
    async fn due(&self, table: Table, until_ms: i64, limit: usize) -> Result<Vec<DueItem>, StoreError> {
        self.inner.due(table, until_ms, limit).await
    }
}

/// Sends some messages twice, as SQS at-least-once delivery may.
pub struct Duplicating {
    pub inner: Arc<dyn Queue>,
    pub dice: Arc<Dice>,
    pub rate: f64,
    pub duplicated: AtomicU64,
}

#[async_trait]
impl Queue for Duplicating {
    async fn send(&self, queue: &QueueName, body: &str, delay: Duration) -> Result<(), QueueError> {
        self.inner.send(queue, body, delay).await?;
        if self.dice.chance(self.rate) {
            self.duplicated.fetch_add(1, Ordering::Relaxed);
            self.inner.send(queue, body, delay).await?;
        }
        Ok(())
    }
}

/// A clock that runs `scale` times faster than the wall clock: budgets, leases and delays of
/// minutes pass in seconds.
pub struct ScaledClock {
    start: Instant,
    start_ms: i64,
    scale: f64,
}

impl ScaledClock {
    pub fn new(start_ms: i64, scale: f64) -> ScaledClock {
        ScaledClock { start: Instant::now(), start_ms, scale: scale.max(1.0) }
    }
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> i64 {
        self.start_ms + (self.start.elapsed().as_secs_f64() * 1000.0 * self.scale) as i64
    }

    fn wall(&self, d: Duration) -> Duration {
        Duration::from_secs_f64(d.as_secs_f64() / self.scale)
    }
}

/// A real queue (SQS) under a compressed clock: delays and visibility changes are divided by the
/// clock's scale, so a 60 s deferral waits 60 s of the pipeline's time.
pub struct ScaledQueue {
    pub inner: Arc<dyn Queue>,
    pub consumer: Arc<dyn QueueConsumer>,
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl Queue for ScaledQueue {
    async fn send(&self, queue: &QueueName, body: &str, delay: Duration) -> Result<(), QueueError> {
        self.inner.send(queue, body, self.clock.wall(delay)).await
    }
}

#[async_trait]
impl QueueConsumer for ScaledQueue {
    async fn receive(&self, queue: &QueueName, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.consumer.receive(queue, max, wait).await
    }
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.consumer.ack(delivery).await
    }
    async fn retry_later(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        self.consumer.retry_later(delivery, self.clock.wall(delay)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dice_are_deterministic_and_uniform_enough() {
        let (a, b) = (Dice::new(7), Dice::new(7));
        let xs: Vec<f64> = (0..1000).map(|_| a.roll()).collect();
        assert!(xs.iter().zip((0..1000).map(|_| b.roll())).all(|(x, y)| *x == y));
        let low = xs.iter().filter(|x| **x < 0.2).count();
        assert!((150..250).contains(&low), "{low}");
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
    }

    #[test]
    fn a_scaled_clock_runs_faster_and_says_how_long_to_sleep() {
        let c = ScaledClock::new(0, 20.0);
        assert_eq!(c.wall(Duration::from_secs(20)), Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(50));
        assert!(c.now_ms() >= 1000, "{}", c.now_ms());
    }
}
