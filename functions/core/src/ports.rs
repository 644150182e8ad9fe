//! Ports: what the core needs from the outside world. Adapters implement them (AWS SDK, HTTP);
//! `crate::embedded` implements them in memory with the same semantics.

use async_trait::async_trait;
use std::fmt;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Document store (DynamoDB)

/// The tables Dossier keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Case meta, per-source results, drafts, actions.
    Cases,
    /// Append-only audit trail.
    Audit,
    /// Source answers per indicator, expiring by TTL.
    Cache,
}

/// A stored document with its optimistic-concurrency version (1 on first write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDoc {
    pub sk: String,
    pub body: String,
    pub version: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Written,
    AlreadyExists,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplaceOutcome {
    Written,
    /// The stored version is not the expected one (or the item is gone): re-read and decide again.
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store rejected the request: {0}")]
    Rejected(String),
    #[error("stored document {key} is not readable: {reason}")]
    Corrupt { key: String, reason: String },
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Conditional document storage: every invariant is a conditional write.
#[async_trait]
pub trait DocStore: Send + Sync {
    async fn get(&self, table: Table, pk: &str, sk: &str) -> Result<Option<StoredDoc>, StoreError>;
    /// Writes only if no item has this key.
    async fn put_new(&self, table: Table, pk: &str, sk: &str, body: &str, expires_at_s: Option<i64>) -> Result<PutOutcome, StoreError>;
    /// Replaces only if the stored version equals `expected_version`; the new version is +1.
    async fn replace(&self, table: Table, pk: &str, sk: &str, body: &str, expected_version: u64) -> Result<ReplaceOutcome, StoreError>;
    /// All items of a partition whose sort key starts with `sk_prefix`, in sort-key order.
    async fn query(&self, table: Table, pk: &str, sk_prefix: &str) -> Result<Vec<StoredDoc>, StoreError>;
}

// ---------------------------------------------------------------------------------------------
// Queues (SQS)

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

// ---------------------------------------------------------------------------------------------
// Cortex XDR

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdrError {
    #[error("XDR rejected the API key (HTTP 401): check the key, its id and the clock: {0}")]
    Unauthorized(String),
    #[error("XDR tenant lacks the licence this call needs (HTTP 402): {0}")]
    NoLicence(String),
    #[error("the API key's role lacks a permission (HTTP 403): {0}")]
    Forbidden(String),
    #[error("XDR does not know this object: {0}")]
    NotFound(String),
    #[error("XDR rate limit reached: {0}")]
    RateLimited(String),
    #[error("XDR server error: {0}")]
    Server(String),
    #[error("XDR unreachable: {0}")]
    Transport(String),
    #[error("XDR answered something unusable: {0}")]
    BadReply(String),
    #[error("XDR is not configured: {0}")]
    NotConfigured(String),
}

impl XdrError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, XdrError::RateLimited(_) | XdrError::Server(_) | XdrError::Transport(_))
    }
}

/// An incident (3.x) or case (5.x) as a listing returns it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IncidentRef {
    pub incident_id: String,
    pub status: Option<String>,
    pub severity: crate::xdr::Severity,
    pub description: String,
    pub creation_ms: Option<i64>,
    pub modification_ms: Option<i64>,
}

/// The calls Dossier makes to Cortex XDR.
#[async_trait]
pub trait XdrApi: Send + Sync {
    /// Incidents (3.x `incidents/get_incidents`) or cases (5.x `case/search`) modified in
    /// `[from_ms, to_ms]`, oldest first, all pages.
    async fn list_modified(&self, from_ms: i64, to_ms: i64) -> Result<Vec<IncidentRef>, XdrError>;
    /// `incidents/get_incident_extra_data`: the raw reply body, parsed by `crate::xdr`.
    async fn get_incident_extra_data(&self, incident_id: &str) -> Result<String, XdrError>;
    /// `incidents/update_incident` with `update_data.comment` (`comment_action: "add"`).
    async fn add_comment(&self, incident_id: &str, text: &str) -> Result<(), XdrError>;
    /// `incidents/update_incident` with `update_data.manual_severity`.
    async fn set_severity(&self, incident_id: &str, severity: &str) -> Result<(), XdrError>;
    /// `endpoints/isolate` for one endpoint, linked to the incident; returns XDR's action id.
    async fn isolate_endpoint(&self, endpoint_id: &str, incident_id: &str) -> Result<String, XdrError>;
    /// `hash_exceptions/blocklist` for one SHA-256, linked to the incident. Already listed is success.
    async fn block_hash(&self, sha256: &str, comment: &str, incident_id: &str) -> Result<(), XdrError>;
    /// `actions/get_action_status`: endpoint id → status.
    async fn action_status(&self, action_id: &str) -> Result<Vec<(String, String)>, XdrError>;
}

/// Disabling an identity (Okta suspend, Entra ID `accountEnabled = false`).
#[async_trait]
pub trait IdentityAdmin: Send + Sync {
    /// Which directory acts (recorded with the result).
    fn name(&self) -> &str;
    /// Returns what the directory answered, in words.
    async fn disable_user(&self, user: &str) -> Result<String, XdrError>;
}

// ---------------------------------------------------------------------------------------------
// Secrets, time

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret `{0}` not found")]
    NotFound(String),
    #[error("secret store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn get_secret(&self, id: &str) -> Result<String, SecretError>;
}

pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The real wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }
}

// ---------------------------------------------------------------------------------------------
// Notifying approvers

/// What an approver is told: the case, the action, and their signed link.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalNotice {
    pub case: crate::case::CaseKey,
    pub title: String,
    pub severity: crate::xdr::Severity,
    pub action: String,
    pub target: String,
    pub rationale: String,
    pub approver: String,
    pub url: String,
    pub expires_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("delivery failed, will retry: {0}")]
    Retryable(String),
    #[error("delivery refused: {0}")]
    Refused(String),
}

/// Slack, Microsoft Teams, e-mail.
#[async_trait]
pub trait Notifier: Send + Sync {
    fn channel(&self) -> &str;
    async fn notify(&self, notice: &ApprovalNotice) -> Result<(), NotifyError>;
}
