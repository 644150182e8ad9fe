//! `DocStore` on DynamoDB. Items: `pk` (S), `sk` (S), `doc` (S, JSON), `ver` (N), optional
//! `expires_at` (N, the table's TTL attribute), optional `due_shard` (S) + `due_at` (N) (the
//! sparse `due` index of the cases and effects tables), or `members` (SS) for a fan-in set.
//! Conditions carry every invariant; several writes go as one TransactWriteItems.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, PutRequest, ReturnValue, TransactWriteItem, WriteRequest};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use std::time::Duration;

use dossier_core::ports::{due_shard, Condition, DocStore, DueItem, StoreError, StoredDoc, Table, Write, WriteOutcome, DUE_SHARDS};

/// The table names of a deployment.
#[derive(Clone, Debug)]
pub struct TableNames {
    pub cases: String,
    pub effects: String,
    pub reports: String,
    pub audit: String,
    pub cache: String,
}

impl TableNames {
    /// `<prefix>cases`, `<prefix>effects`, ... (local runs and tests).
    pub fn prefixed(prefix: &str) -> TableNames {
        TableNames {
            cases: format!("{prefix}cases"),
            effects: format!("{prefix}effects"),
            reports: format!("{prefix}reports"),
            audit: format!("{prefix}audit"),
            cache: format!("{prefix}cache"),
        }
    }

    pub fn name(&self, t: Table) -> &str {
        match t {
            Table::Cases => &self.cases,
            Table::Effects => &self.effects,
            Table::Reports => &self.reports,
            Table::Audit => &self.audit,
            Table::Cache => &self.cache,
        }
    }
}

/// Name of the due index (a global secondary index on `due_shard`, `due_at`).
pub const DUE_INDEX: &str = "due";

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    tables: TableNames,
}

impl DynamoStore {
    pub fn new(client: Client, tables: TableNames) -> DynamoStore {
        DynamoStore { client, tables }
    }

    fn table(&self, t: Table) -> &str {
        self.tables.name(t)
    }

    /// The item a write puts, with the condition that guards it.
    fn put(&self, w: Write) -> Item {
        let mut item = HashMap::from([
            ("pk".to_string(), AttributeValue::S(w.pk.clone())),
            ("sk".to_string(), AttributeValue::S(w.sk.clone())),
            ("doc".to_string(), AttributeValue::S(w.body.clone())),
            ("ver".to_string(), AttributeValue::N(w.next_version().to_string())),
        ]);
        if let Some(ttl) = w.expires_at_s {
            item.insert("expires_at".into(), AttributeValue::N(ttl.to_string()));
        }
        if let (true, Some(due)) = (w.table.has_due_index(), w.due_at_ms) {
            item.insert("due_shard".into(), AttributeValue::S(due_shard(&w.pk)));
            item.insert("due_at".into(), AttributeValue::N(due.to_string()));
        }
        let condition = match w.condition {
            Condition::Absent | Condition::AbsentAt(_) => Some(("attribute_not_exists(pk)".to_string(), None)),
            Condition::Version(v) => Some(("ver = :expected".to_string(), Some(v))),
            Condition::Overwrite => None,
        };
        Item { table: self.table(w.table).to_string(), item, condition }
    }
}

impl DynamoStore {
    /// One BatchWriteItem of at most 25 puts; unprocessed items (throttling) are sent again with
    /// exponential backoff, as the DynamoDB guide asks, a bounded number of times.
    async fn batch_write(&self, chunk: Vec<Write>) -> Result<(), StoreError> {
        let mut pending: HashMap<String, Vec<WriteRequest>> = HashMap::new();
        for w in chunk {
            let Item { table, item, .. } = self.put(w);
            let put =
                PutRequest::builder().set_item(Some(item)).build().map_err(|e| StoreError::Rejected(format!("BatchWriteItem: {e}")))?;
            pending.entry(table).or_default().push(WriteRequest::builder().put_request(put).build());
        }
        for attempt in 0..BATCH_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
            }
            let out = self
                .client
                .batch_write_item()
                .set_request_items(Some(std::mem::take(&mut pending)))
                .send()
                .await
                .map_err(|e| classify("BatchWriteItem", e))?;
            pending = out.unprocessed_items.unwrap_or_default().into_iter().filter(|(_, w)| !w.is_empty()).collect();
            if pending.is_empty() {
                return Ok(());
            }
        }
        let left: usize = pending.values().map(Vec::len).sum();
        Err(StoreError::Unavailable(format!("BatchWriteItem: {left} items left unprocessed after {BATCH_ATTEMPTS} attempts")))
    }

    /// One attempt: `Ok(None)` when DynamoDB refused it for a transaction in flight on one of
    /// its items (nothing was written).
    async fn write_once(&self, writes: Vec<Write>) -> Result<Option<WriteOutcome>, StoreError> {
        if writes.len() == 1 {
            let w = writes.into_iter().next().expect("one write");
            let Item { table, item, condition } = self.put(w);
            let mut req = self.client.put_item().table_name(table).set_item(Some(item));
            if let Some((expr, version)) = condition {
                req = req.condition_expression(expr);
                if let Some(v) = version {
                    req = req.expression_attribute_values(":expected", AttributeValue::N(v.to_string()));
                }
            }
            return match req.send().await {
                Ok(_) => Ok(Some(WriteOutcome::Written)),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                    Ok(Some(WriteOutcome::Conflict { index: 0 }))
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_transaction_conflict_exception()) => Ok(None),
                Err(e) => Err(classify("PutItem", e)),
            };
        }
        let mut items = Vec::with_capacity(writes.len());
        for w in writes {
            let Item { table, item, condition } = self.put(w);
            let mut put = Put::builder().table_name(table).set_item(Some(item));
            if let Some((expr, version)) = condition {
                put = put.condition_expression(expr);
                if let Some(v) = version {
                    put = put.expression_attribute_values(":expected", AttributeValue::N(v.to_string()));
                }
            }
            let put = put.build().map_err(|e| StoreError::Rejected(format!("TransactWriteItems: {e}")))?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(Some(WriteOutcome::Written)),
            Err(e) => {
                if let Some(canceled) = e.as_service_error().and_then(|s| match s {
                    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
                    _ => None,
                }) {
                    let reasons = canceled.cancellation_reasons();
                    if let Some(index) = reasons.iter().position(|r| r.code() == Some("ConditionalCheckFailed")) {
                        return Ok(Some(WriteOutcome::Conflict { index }));
                    }
                    let codes: Vec<&str> = reasons.iter().filter_map(|r| r.code()).filter(|c| *c != "None").collect();
                    if !codes.is_empty() && codes.iter().all(|c| *c == "TransactionConflict") {
                        return Ok(None);
                    }
                    // Throttling and the like: the message is retried.
                    return Err(StoreError::Unavailable(format!("TransactWriteItems canceled: {}", codes.join(", "))));
                }
                Err(classify("TransactWriteItems", e))
            }
        }
    }
}

/// Tries of a batch call before unprocessed items are an error (the message is retried).
const BATCH_ATTEMPTS: u32 = 5;

/// Tries of a write DynamoDB refused because a transaction was in flight on one of its items
/// (`TransactionConflictException`; a transaction canceled for `TransactionConflict`): nothing
/// was written, and the guide asks to try again with backoff (here 10–20, 20–40, 40–80, 80–160
/// ms), which the SDK does not do for these. Synthesis's hand-over and write-back's claim of the
/// same draft meet this way when the comment message outruns the commit it was sent beside.
const TRANSACTION_CONFLICT_ATTEMPTS: u32 = 5;

/// One PutItem: the table, the item, and its condition (an expression and the version it names).
struct Item {
    table: String,
    item: HashMap<String, AttributeValue>,
    condition: Option<(String, Option<u64>)>,
}

/// Throttling and 5xx are worth retrying; validation errors are not.
fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(what: &str, e: SdkError<E>) -> StoreError {
    let code = e.code().unwrap_or("").to_string();
    let msg = e.message().unwrap_or("").to_string();
    let detail = format!("{what}: {code} {msg}").trim().to_string();
    match &e {
        SdkError::ServiceError(_)
            if matches!(
                code.as_str(),
                "ValidationException" | "ResourceNotFoundException" | "ItemCollectionSizeLimitExceededException" | "AccessDeniedException"
            ) =>
        {
            StoreError::Rejected(detail)
        }
        SdkError::ConstructionFailure(_) => StoreError::Rejected(detail),
        _ => StoreError::Unavailable(if code.is_empty() { format!("{what}: {e:?}").chars().take(300).collect() } else { detail }),
    }
}

fn doc_from(item: &HashMap<String, AttributeValue>) -> Result<StoredDoc, StoreError> {
    let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let sk = s("sk").ok_or_else(|| StoreError::Corrupt { key: "?".into(), reason: "item without sk".into() })?;
    let body = s("doc").ok_or_else(|| StoreError::Corrupt { key: sk.clone(), reason: "item without doc".into() })?;
    let version = item
        .get("ver")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| StoreError::Corrupt { key: sk.clone(), reason: "item without a numeric ver".into() })?;
    Ok(StoredDoc { sk, body, version })
}

fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), AttributeValue::S(pk.into())), ("sk".to_string(), AttributeValue::S(sk.into()))])
}

#[async_trait]
impl DocStore for DynamoStore {
    async fn get(&self, table: Table, pk: &str, sk: &str) -> Result<Option<StoredDoc>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table(table))
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        out.item.as_ref().map(doc_from).transpose()
    }

    async fn get_many(&self, table: Table, keys: &[(String, String)]) -> Result<Vec<Option<StoredDoc>>, StoreError> {
        let name = self.table(table).to_string();
        let mut found: HashMap<(String, String), StoredDoc> = HashMap::new();
        let mut unique: Vec<&(String, String)> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(100) {
            let mut pending: Vec<HashMap<String, AttributeValue>> = chunk.iter().map(|(p, s)| key(p, s)).collect();
            // Unprocessed keys (throttling) are asked again, a bounded number of times.
            for attempt in 0..BATCH_ATTEMPTS {
                if pending.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Rejected(format!("BatchGetItem: {e}")))?;
                let out =
                    self.client.batch_get_item().request_items(&name, request).send().await.map_err(|e| classify("BatchGetItem", e))?;
                for item in out.responses.as_ref().and_then(|r| r.get(&name)).into_iter().flatten() {
                    let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                    let d = doc_from(item)?;
                    found.insert((pk, d.sk.clone()), d);
                }
                pending = out.unprocessed_keys.and_then(|mut u| u.remove(&name)).map(|k| k.keys).unwrap_or_default();
            }
            if !pending.is_empty() {
                return Err(StoreError::Unavailable(format!("BatchGetItem: {} keys left unprocessed", pending.len())));
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn query(&self, table: Table, pk: &str, sk_prefix: &str) -> Result<Vec<StoredDoc>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut req = self
                .client
                .query()
                .table_name(self.table(table))
                .consistent_read(true)
                .expression_attribute_values(":pk", AttributeValue::S(pk.into()))
                .set_exclusive_start_key(start.take());
            req = if sk_prefix.is_empty() {
                req.key_condition_expression("pk = :pk")
            } else {
                req.key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", AttributeValue::S(sk_prefix.into()))
            };
            let page = req.send().await.map_err(|e| classify("Query", e))?;
            for item in page.items() {
                // A fan-in set shares a partition with documents; it is not one.
                if item.contains_key("doc") {
                    out.push(doc_from(item)?);
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn write(&self, writes: Vec<Write>) -> Result<WriteOutcome, StoreError> {
        dossier_core::ports::check_writes(&writes)?;
        for attempt in 0..TRANSACTION_CONFLICT_ATTEMPTS {
            if attempt > 0 {
                // Spread: the two writers refused together must not meet again on the next try.
                let base = 10u64 << (attempt - 1);
                tokio::time::sleep(Duration::from_millis(base + dossier_core::random::below(base))).await;
            }
            if let Some(outcome) = self.write_once(writes.clone()).await? {
                return Ok(outcome);
            }
        }
        let keys: Vec<String> = writes.iter().map(|w| format!("{}/{}", w.pk, w.sk)).collect();
        Err(StoreError::Unavailable(format!(
            "a transaction on {} stayed in flight over {TRANSACTION_CONFLICT_ATTEMPTS} attempts",
            keys.join(", ")
        )))
    }

    async fn put_all(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        dossier_core::ports::check_put_all(&writes)?;
        let chunks: Vec<Vec<Write>> = writes.chunks(dossier_core::ports::MAX_WRITES_PER_BATCH).map(<[Write]>::to_vec).collect();
        // The chunks go side by side: one round trip however many there are.
        futures_util::future::try_join_all(chunks.into_iter().map(|chunk| self.batch_write(chunk))).await?;
        Ok(())
    }

    async fn add_to_set(&self, table: Table, pk: &str, sk: &str, member: &str) -> Result<Vec<String>, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(self.table(table))
            .set_key(Some(key(pk, sk)))
            .update_expression("ADD members :m")
            .expression_attribute_values(":m", AttributeValue::Ss(vec![member.to_string()]))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| classify("UpdateItem", e))?;
        let mut members = out.attributes.and_then(|mut a| a.remove("members")).and_then(|v| v.as_ss().ok().cloned()).unwrap_or_default();
        members.sort();
        Ok(members)
    }

    async fn count_up(&self, table: Table, pk: &str, sk: &str, limit: u64, expires_at_s: i64) -> Result<Option<u64>, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(self.table(table))
            .set_key(Some(key(pk, sk)))
            .update_expression("ADD used :one SET expires_at = :ttl")
            .condition_expression("attribute_not_exists(used) OR used < :limit")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":limit", AttributeValue::N(limit.to_string()))
            .expression_attribute_values(":ttl", AttributeValue::N(expires_at_s.to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match out {
            Ok(o) => Ok(o.attributes.and_then(|a| a.get("used").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())).or(Some(limit))),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(None),
            Err(e) => Err(classify("UpdateItem", e)),
        }
    }

    async fn set_members(&self, table: Table, pk: &str, sk: &str) -> Result<Vec<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table(table))
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        let mut members = out.item.and_then(|mut i| i.remove("members")).and_then(|v| v.as_ss().ok().cloned()).unwrap_or_default();
        members.sort();
        Ok(members)
    }

    async fn due(&self, table: Table, until_ms: i64, limit: usize) -> Result<Vec<DueItem>, StoreError> {
        if !table.has_due_index() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for shard in 0..DUE_SHARDS {
            let mut start: Option<HashMap<String, AttributeValue>> = None;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(self.table(table))
                    .index_name(DUE_INDEX)
                    .key_condition_expression("due_shard = :s AND due_at <= :t")
                    .expression_attribute_values(":s", AttributeValue::S(format!("due#{shard}")))
                    .expression_attribute_values(":t", AttributeValue::N(until_ms.to_string()))
                    .limit(i32::try_from(limit.min(1000)).unwrap_or(1000))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| classify("Query", e))?;
                for item in page.items() {
                    let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                    let due_at_ms = item.get("due_at").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok());
                    if let (Some(pk), Some(sk), Some(due_at_ms)) = (s("pk"), s("sk"), due_at_ms) {
                        out.push(DueItem { pk, sk, due_at_ms });
                    }
                }
                match page.last_evaluated_key {
                    Some(k) if !k.is_empty() && out.len() < limit * (shard as usize + 1) => start = Some(k),
                    _ => break,
                }
            }
        }
        out.sort_by_key(|d| d.due_at_ms);
        out.truncate(limit);
        Ok(out)
    }
}
