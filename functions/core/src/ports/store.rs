//! Document storage (DynamoDB): every invariant is a conditional write, several writes can be
//! committed as one (TransactWriteItems), and items with a due time are listed in a sparse index
//! the reconciler reads instead of scanning.

use async_trait::async_trait;
use std::collections::BTreeSet;

/// The tables Dossier keeps (the key layout of each is in `crate::store`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Cases, the dossier document, and small shared records (replay markers, poller
    /// watermark, feedback, the related-case index).
    Cases,
    /// What Dossier does to the world: drafts (comments) and gated actions with their
    /// decisions. Only synthesize, approve, writeback and the reconciler may write here.
    Effects,
    /// Source reports and the fan-in set; the only case data enrich functions may write.
    Reports,
    /// Append-only audit trail.
    Audit,
    /// Source answers per indicator and rate-limit windows, expiring by TTL.
    Cache,
}

impl Table {
    pub const ALL: [Table; 5] = [Table::Cases, Table::Effects, Table::Reports, Table::Audit, Table::Cache];

    /// Tables whose items carry due times (the reconciler's index).
    pub fn has_due_index(self) -> bool {
        matches!(self, Table::Cases | Table::Effects)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Table::Cases => "cases",
            Table::Effects => "effects",
            Table::Reports => "reports",
            Table::Audit => "audit",
            Table::Cache => "cache",
        }
    }
}

/// A stored document with its optimistic-concurrency version (1 on first write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDoc {
    pub sk: String,
    pub body: String,
    pub version: u64,
}

/// When a write may happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Only if no item has this key (the new item gets version 1).
    Absent,
    /// Only if no item has this key; the new item gets this version (at least 1). A record
    /// created in the same commit as another record's change can take that change's version:
    /// while that other record's versions only grow and the new one is never created again, a
    /// copy carried from a commit that did not land matches no record another commit made.
    AbsentAt(u64),
    /// Only if the stored version is this one (the new version is one more).
    Version(u64),
    /// Always; for records nobody versions (cache answers). The version becomes 1.
    Overwrite,
}

/// One item to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub table: Table,
    pub pk: String,
    pub sk: String,
    pub body: String,
    pub condition: Condition,
    /// Lists the item in the table's due index until this time (none: not listed).
    pub due_at_ms: Option<i64>,
    /// Removed by the table's TTL after this Unix second.
    pub expires_at_s: Option<i64>,
}

impl Write {
    pub fn new(table: Table, pk: impl Into<String>, sk: impl Into<String>, body: impl Into<String>, condition: Condition) -> Write {
        Write { table, pk: pk.into(), sk: sk.into(), body: body.into(), condition, due_at_ms: None, expires_at_s: None }
    }

    pub fn due(mut self, due_at_ms: Option<i64>) -> Write {
        self.due_at_ms = due_at_ms;
        self
    }

    pub fn expires(mut self, expires_at_s: Option<i64>) -> Write {
        self.expires_at_s = expires_at_s;
        self
    }

    /// The version the item has once written.
    pub fn next_version(&self) -> u64 {
        match self.condition {
            Condition::Absent | Condition::Overwrite => 1,
            Condition::AbsentAt(v) => v,
            Condition::Version(v) => v + 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Every write happened.
    Written,
    /// Nothing was written: the condition of write `index` did not hold.
    Conflict { index: usize },
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

/// An item of the due index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueItem {
    pub pk: String,
    pub sk: String,
    pub due_at_ms: i64,
}

/// Most writes committed together (DynamoDB TransactWriteItems takes 100).
pub const MAX_WRITES_PER_COMMIT: usize = 100;

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

#[async_trait]
pub trait DocStore: Send + Sync {
    async fn get(&self, table: Table, pk: &str, sk: &str) -> Result<Option<StoredDoc>, StoreError>;

    /// Several items of one table at once (BatchGetItem), in the order asked.
    async fn get_many(&self, table: Table, keys: &[(String, String)]) -> Result<Vec<Option<StoredDoc>>, StoreError>;

    /// All items of a partition whose sort key starts with `sk_prefix`, in sort-key order.
    async fn query(&self, table: Table, pk: &str, sk_prefix: &str) -> Result<Vec<StoredDoc>, StoreError>;

    /// Writes all of `writes` or none (at most [`MAX_WRITES_PER_COMMIT`], each key once).
    async fn write(&self, writes: Vec<Write>) -> Result<WriteOutcome, StoreError>;

    /// Writes records nobody versions (cache answers, index entries: every write
    /// `Condition::Overwrite`) in as few calls as the store allows (BatchWriteItem, 25 a call).
    /// Not atomic: a crash midway leaves some written, which is why only records that are
    /// rewritten whole on the next attempt go this way.
    async fn put_all(&self, writes: Vec<Write>) -> Result<(), StoreError>;

    /// Adds `member` to the string set of item (pk, sk), creating it; returns the whole set.
    /// Adding twice is adding once, so a redelivered message counts once (the fan-in).
    async fn add_to_set(&self, table: Table, pk: &str, sk: &str, member: &str) -> Result<Vec<String>, StoreError>;

    /// Takes one unit of the counter at (pk, sk) if fewer than `limit` are taken (one
    /// conditional update); returns the count after taking, or `None` when the limit is reached.
    /// The item expires after `expires_at_s`.
    async fn count_up(&self, table: Table, pk: &str, sk: &str, limit: u64, expires_at_s: i64) -> Result<Option<u64>, StoreError>;

    /// The string set of item (pk, sk); empty if there is none.
    async fn set_members(&self, table: Table, pk: &str, sk: &str) -> Result<Vec<String>, StoreError>;

    /// Up to `limit` items of the table's due index due at or before `until_ms`, earliest first.
    async fn due(&self, table: Table, until_ms: i64, limit: usize) -> Result<Vec<DueItem>, StoreError>;

    /// Writes only if no item has this key.
    async fn put_new(&self, table: Table, pk: &str, sk: &str, body: &str, expires_at_s: Option<i64>) -> Result<PutOutcome, StoreError> {
        let w = Write::new(table, pk, sk, body, Condition::Absent).expires(expires_at_s);
        Ok(match self.write(vec![w]).await? {
            WriteOutcome::Written => PutOutcome::Written,
            WriteOutcome::Conflict { .. } => PutOutcome::AlreadyExists,
        })
    }

    /// Replaces only if the stored version equals `expected_version`.
    async fn replace(&self, table: Table, pk: &str, sk: &str, body: &str, expected_version: u64) -> Result<ReplaceOutcome, StoreError> {
        Ok(match self.write(vec![Write::new(table, pk, sk, body, Condition::Version(expected_version))]).await? {
            WriteOutcome::Written => ReplaceOutcome::Written,
            WriteOutcome::Conflict { .. } => ReplaceOutcome::Conflict,
        })
    }
}

/// What DynamoDB refuses before looking at any condition.
pub fn check_writes(writes: &[Write]) -> Result<(), StoreError> {
    if writes.is_empty() || writes.len() > MAX_WRITES_PER_COMMIT {
        return Err(StoreError::Rejected(format!("{} writes in one commit (1 to {MAX_WRITES_PER_COMMIT})", writes.len())));
    }
    let mut keys = BTreeSet::new();
    for w in writes {
        if !keys.insert((w.table, w.pk.as_str(), w.sk.as_str())) {
            return Err(StoreError::Rejected(format!("{}/{} written twice in one commit", w.pk, w.sk)));
        }
        if w.body.len() + w.pk.len() + w.sk.len() > 400 * 1024 {
            return Err(StoreError::Rejected(format!("{}/{}: item larger than 400 KB", w.pk, w.sk)));
        }
        if w.condition == Condition::AbsentAt(0) {
            return Err(StoreError::Rejected(format!("{}/{}: a record's first version is at least 1", w.pk, w.sk)));
        }
    }
    Ok(())
}

/// What DynamoDB refuses in a BatchWriteItem, and what `put_all` promises: no conditions.
pub fn check_put_all(writes: &[Write]) -> Result<(), StoreError> {
    let mut keys = BTreeSet::new();
    for w in writes {
        if w.condition != Condition::Overwrite {
            return Err(StoreError::Rejected(format!("{}/{}: put_all takes only unconditional writes", w.pk, w.sk)));
        }
        // Twice in one batch: which one stays would depend on the order the chunks land.
        if !keys.insert((w.table, w.pk.as_str(), w.sk.as_str())) {
            return Err(StoreError::Rejected(format!("{}/{} written twice in one batch", w.pk, w.sk)));
        }
        if w.body.len() + w.pk.len() + w.sk.len() > 400 * 1024 {
            return Err(StoreError::Rejected(format!("{}/{}: item larger than 400 KB", w.pk, w.sk)));
        }
    }
    Ok(())
}

/// Items per BatchWriteItem call.
pub const MAX_WRITES_PER_BATCH: usize = 25;

/// Which shard of the due index an item is listed under (a few partitions, not one hot one).
pub fn due_shard(pk: &str) -> String {
    let h = pk.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("due#{}", h % DUE_SHARDS)
}

pub const DUE_SHARDS: u32 = 4;
