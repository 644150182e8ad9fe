//! Queues (SQS): at-least-once delivery between the stages.

use async_trait::async_trait;
use std::fmt;
use std::time::Duration;

/// A logical queue: `collect`, `enrich-<source>`, `synthesize`, `writeback`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueName(String);

impl QueueName {
    pub fn collect() -> Self {
        QueueName("collect".into())
    }
    pub fn enrich(source: &str) -> Self {
        QueueName(format!("enrich-{source}"))
    }
    pub fn synthesize() -> Self {
        QueueName("synthesize".into())
    }
    pub fn writeback() -> Self {
        QueueName("writeback".into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `enrich-virustotal` → `ENRICH_VIRUSTOTAL`, for environment variable names.
    pub fn env_suffix(&self) -> String {
        self.0.to_ascii_uppercase().replace('-', "_")
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    #[error("no queue configured for `{0}`")]
    UnknownQueue(String),
    #[error("queue rejected the message: {0}")]
    Rejected(String),
}

impl QueueError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Unavailable(_))
    }
}

/// Longest delay a queue accepts (SQS: 15 minutes).
pub const MAX_QUEUE_DELAY: Duration = Duration::from_secs(900);

/// Largest message a queue accepts (SQS: 256 KiB).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// What SQS refuses before accepting a message.
pub fn check_message(body: &str) -> Result<(), QueueError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(QueueError::Rejected(format!("message of {} bytes exceeds 256 KiB", body.len())));
    }
    Ok(())
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// At-least-once: the message may be delivered more than once; consumers are idempotent.
    async fn send(&self, queue: &QueueName, body: &str, delay: Duration) -> Result<(), QueueError>;
}

/// One received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub queue: QueueName,
    /// Receipt handle: identifies this delivery for ack / retry.
    pub receipt: String,
    pub body: String,
    pub receive_count: u32,
}

/// Pull-side of a queue, used where no Lambda event source mapping does the polling (local runs).
#[async_trait]
pub trait QueueConsumer: Send + Sync {
    /// Up to `max` visible messages. With a non-zero `wait`, waits up to that long for the first
    /// one to become visible (SQS long polling, as Lambda's pollers do) instead of returning empty.
    async fn receive(&self, queue: &QueueName, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError>;
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;
    /// Makes the message visible again after `delay` (a retry; counts toward the DLQ limit).
    async fn retry_later(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError>;
}
