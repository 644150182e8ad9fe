//! The store in memory.

use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::lock;
use crate::ports::{Condition, DocStore, DueItem, StoreError, StoredDoc, Table, Write, WriteOutcome};

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
                Condition::Absent | Condition::AbsentAt(_) => current == 0,
                // As DynamoDB's `ver = :expected`: a missing item matches no version.
                Condition::Version(v) => current != 0 && current == v,
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

    async fn put_all(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        crate::ports::check_put_all(&writes)?;
        for chunk in writes.chunks(crate::ports::MAX_WRITES_PER_BATCH) {
            self.count("BatchWriteItem");
            let mut items = lock(&self.items);
            for w in chunk {
                let due_at_ms = if w.table.has_due_index() { w.due_at_ms } else { None };
                items
                    .insert((w.table, w.pk.clone(), w.sk.clone()), Item { body: w.body.clone(), version: 1, due_at_ms, ..Item::default() });
            }
        }
        Ok(())
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
