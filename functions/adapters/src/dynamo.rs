//! `DocStore` on DynamoDB. Items: `pk` (S), `sk` (S), `doc` (S, JSON), `ver` (N), optional
//! `expires_at` (N, the table's TTL attribute). Conditions carry every invariant.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;

use dossier_core::ports::{DocStore, PutOutcome, ReplaceOutcome, StoreError, StoredDoc, Table};

/// The three table names of a deployment.
#[derive(Clone, Debug)]
pub struct TableNames {
    pub cases: String,
    pub audit: String,
    pub cache: String,
}

impl TableNames {
    /// `<prefix>cases`, `<prefix>audit`, `<prefix>cache` (local runs and tests).
    pub fn prefixed(prefix: &str) -> TableNames {
        TableNames { cases: format!("{prefix}cases"), audit: format!("{prefix}audit"), cache: format!("{prefix}cache") }
    }
}

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
        match t {
            Table::Cases => &self.tables.cases,
            Table::Audit => &self.tables.audit,
            Table::Cache => &self.tables.cache,
        }
    }
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

#[async_trait]
impl DocStore for DynamoStore {
    async fn get(&self, table: Table, pk: &str, sk: &str) -> Result<Option<StoredDoc>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table(table))
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S(sk.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        out.item.as_ref().map(doc_from).transpose()
    }

    async fn put_new(&self, table: Table, pk: &str, sk: &str, body: &str, expires_at_s: Option<i64>) -> Result<PutOutcome, StoreError> {
        let mut req = self
            .client
            .put_item()
            .table_name(self.table(table))
            .item("pk", AttributeValue::S(pk.into()))
            .item("sk", AttributeValue::S(sk.into()))
            .item("doc", AttributeValue::S(body.into()))
            .item("ver", AttributeValue::N("1".into()))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(ttl) = expires_at_s {
            req = req.item("expires_at", AttributeValue::N(ttl.to_string()));
        }
        match req.send().await {
            Ok(_) => Ok(PutOutcome::Written),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(classify("PutItem", e)),
        }
    }

    async fn replace(&self, table: Table, pk: &str, sk: &str, body: &str, expected_version: u64) -> Result<ReplaceOutcome, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(self.table(table))
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S(sk.into()))
            .update_expression("SET #doc = :doc, #ver = :next")
            .condition_expression("#ver = :expected")
            .expression_attribute_names("#doc", "doc")
            .expression_attribute_names("#ver", "ver")
            .expression_attribute_values(":doc", AttributeValue::S(body.into()))
            .expression_attribute_values(":next", AttributeValue::N((expected_version + 1).to_string()))
            .expression_attribute_values(":expected", AttributeValue::N(expected_version.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(ReplaceOutcome::Written),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(ReplaceOutcome::Conflict),
            Err(e) => Err(classify("UpdateItem", e)),
        }
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
                out.push(doc_from(item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }
}
