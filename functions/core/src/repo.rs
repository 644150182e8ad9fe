//! Typed access to the case table over the `DocStore` port. Layout of one case partition
//! (`pk = tenant#incident`):
//!
//! | sk | document |
//! |---|---|
//! | `case` | [`Case`] |
//! | `source#<name>` | [`SourceReport`] (one per source, first write wins) |
//! | `draft#<id>` | [`Draft`] |
//! | `action#<id>` | [`Action`] |
//!
//! Invariants are conditional writes: `put_new` for "only once", versioned `replace` for state
//! changes. `update` re-reads and re-decides on a version conflict.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

use crate::case::{Action, AuditEvent, Case, CaseKey, CaseStatus};
use crate::dossier::Draft;
use crate::ports::{DocStore, PutOutcome, ReplaceOutcome, StoreError, Table};
use crate::sources::SourceReport;

pub const CASE_SK: &str = "case";
const CONFLICT_RETRIES: usize = 8;
/// Largest document written; DynamoDB items are capped at 400 KB including keys.
pub const MAX_DOC_BYTES: usize = 380 * 1024;

#[derive(Clone, Debug)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// What an update closure decided.
pub enum Change<R> {
    /// Write the modified document and return R.
    Write(R),
    /// Leave the document as it is and return R.
    Keep(R),
}

/// The small fields of a case, read without decoding its indicators, alerts and history: what
/// the fan-in, the synthesis claim and the write-back metrics need.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct CaseHead {
    pub status: CaseStatus,
    pub received_at_ms: i64,
    /// When XDR created the incident, if known.
    #[serde(default, rename = "hint", deserialize_with = "created_at_of_hint")]
    pub incident_created_at_ms: Option<i64>,
    #[serde(default)]
    pub expected_sources: Vec<String>,
    #[serde(default)]
    pub enrich_deadline_ms: Option<i64>,
    #[serde(default)]
    pub draft_id: Option<String>,
}

impl CaseHead {
    /// Every expected source is among `reported`.
    pub fn all_reported(&self, reported: &[String]) -> bool {
        self.expected_sources.iter().all(|s| reported.contains(s))
    }
}

fn created_at_of_hint<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Hint {
        created_at_ms: Option<i64>,
    }
    Ok(<Hint as serde::Deserialize>::deserialize(d)?.created_at_ms)
}

#[derive(Clone)]
pub struct CaseRepo {
    store: Arc<dyn DocStore>,
}

const SOURCE_PREFIX: &str = "source#";

pub fn source_sk(source: &str) -> String {
    format!("{SOURCE_PREFIX}{source}")
}
pub fn draft_sk(id: &str) -> String {
    format!("draft#{id}")
}
pub fn action_sk(id: &str) -> String {
    format!("action#{id}")
}

fn encode<T: Serialize>(value: &T) -> Result<String, StoreError> {
    let body = serde_json::to_string(value).map_err(|e| StoreError::Rejected(format!("cannot serialise: {e}")))?;
    if body.len() > MAX_DOC_BYTES {
        return Err(StoreError::Rejected(format!("document of {} bytes exceeds the {MAX_DOC_BYTES}-byte item budget", body.len())));
    }
    Ok(body)
}

fn decode<T: DeserializeOwned>(pk: &str, sk: &str, body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt { key: format!("{pk}/{sk}"), reason: e.to_string() })
}

impl CaseRepo {
    pub fn new(store: Arc<dyn DocStore>) -> CaseRepo {
        CaseRepo { store }
    }

    pub async fn get<T: DeserializeOwned>(&self, key: &CaseKey, sk: &str) -> Result<Option<Versioned<T>>, StoreError> {
        let pk = key.storage_id();
        match self.store.get(Table::Cases, &pk, sk).await? {
            Some(doc) => Ok(Some(Versioned { value: decode(&pk, sk, &doc.body)?, version: doc.version })),
            None => Ok(None),
        }
    }

    pub async fn put_new<T: Serialize>(&self, key: &CaseKey, sk: &str, value: &T) -> Result<PutOutcome, StoreError> {
        self.store.put_new(Table::Cases, &key.storage_id(), sk, &encode(value)?, None).await
    }

    /// Reads, lets `decide` change the document, writes it back conditionally; on a conflict it
    /// starts over with the fresh copy. `None` if the document does not exist.
    pub async fn update<T, R, E, F>(&self, key: &CaseKey, sk: &str, mut decide: F) -> Result<Option<R>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<StoreError>,
        F: FnMut(&mut T) -> Result<Change<R>, E>,
    {
        let pk = key.storage_id();
        for _ in 0..CONFLICT_RETRIES {
            let Some(mut current) = self.get::<T>(key, sk).await? else {
                return Ok(None);
            };
            match decide(&mut current.value)? {
                Change::Keep(r) => return Ok(Some(r)),
                Change::Write(r) => match self.store.replace(Table::Cases, &pk, sk, &encode(&current.value)?, current.version).await? {
                    ReplaceOutcome::Written => return Ok(Some(r)),
                    ReplaceOutcome::Conflict => continue,
                },
            }
        }
        Err(StoreError::Unavailable(format!("{pk}/{sk}: still conflicting after {CONFLICT_RETRIES} attempts")).into())
    }

    pub async fn query<T: DeserializeOwned>(&self, key: &CaseKey, prefix: &str) -> Result<Vec<T>, StoreError> {
        let pk = key.storage_id();
        self.store.query(Table::Cases, &pk, prefix).await?.iter().map(|d| decode(&pk, &d.sk, &d.body)).collect()
    }

    pub async fn create_case(&self, case: &Case) -> Result<PutOutcome, StoreError> {
        self.put_new(&case.key, CASE_SK, case).await
    }

    pub async fn case(&self, key: &CaseKey) -> Result<Option<Case>, StoreError> {
        Ok(self.get::<Case>(key, CASE_SK).await?.map(|v| v.value))
    }

    /// The case's small fields only (the fan-in runs this once per source per case).
    pub async fn case_head(&self, key: &CaseKey) -> Result<Option<CaseHead>, StoreError> {
        Ok(self.get::<CaseHead>(key, CASE_SK).await?.map(|v| v.value))
    }

    /// Whether a document exists, without decoding it.
    pub async fn exists(&self, key: &CaseKey, sk: &str) -> Result<bool, StoreError> {
        Ok(self.store.get(Table::Cases, &key.storage_id(), sk).await?.is_some())
    }

    /// Names of the sources that have reported, from the keys (the reports are not decoded).
    pub async fn reported_sources(&self, key: &CaseKey) -> Result<Vec<String>, StoreError> {
        let docs = self.store.query(Table::Cases, &key.storage_id(), SOURCE_PREFIX).await?;
        Ok(docs.into_iter().filter_map(|d| d.sk.strip_prefix(SOURCE_PREFIX).map(str::to_string)).collect())
    }

    pub async fn record_source(&self, key: &CaseKey, report: &SourceReport) -> Result<PutOutcome, StoreError> {
        self.put_new(key, &source_sk(&report.source), report).await
    }

    pub async fn source_reports(&self, key: &CaseKey) -> Result<Vec<SourceReport>, StoreError> {
        self.query(key, SOURCE_PREFIX).await
    }

    pub async fn draft(&self, key: &CaseKey, id: &str) -> Result<Option<Draft>, StoreError> {
        Ok(self.get::<Draft>(key, &draft_sk(id)).await?.map(|v| v.value))
    }

    pub async fn action(&self, key: &CaseKey, id: &str) -> Result<Option<Action>, StoreError> {
        Ok(self.get::<Action>(key, &action_sk(id)).await?.map(|v| v.value))
    }

    pub async fn actions(&self, key: &CaseKey) -> Result<Vec<Action>, StoreError> {
        self.query(key, "action#").await
    }
}

/// The append-only audit trail. Functions may only add records (IAM: PutItem only).
#[derive(Clone)]
pub struct AuditLog {
    store: Arc<dyn DocStore>,
}

impl AuditLog {
    pub fn new(store: Arc<dyn DocStore>) -> AuditLog {
        AuditLog { store }
    }

    pub async fn record(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut nonce = [0u8; 6];
        getrandom::getrandom(&mut nonce).map_err(|e| StoreError::Unavailable(format!("no randomness: {e}")))?;
        // Time-ordered, unique sort key: `000001575806909185#a1b2c3d4e5f6`.
        let sk = format!("{:018}#{}", event.at_ms.max(0), hex::encode(nonce));
        let body = encode(event)?;
        match self.store.put_new(Table::Audit, &event.case.storage_id(), &sk, &body, None).await? {
            PutOutcome::Written => Ok(()),
            PutOutcome::AlreadyExists => Err(StoreError::Rejected(format!("audit key {sk} collided"))),
        }
    }

    pub async fn events(&self, key: &CaseKey) -> Result<Vec<AuditEvent>, StoreError> {
        let pk = key.storage_id();
        self.store.query(Table::Audit, &pk, "").await?.iter().map(|d| decode(&pk, &d.sk, &d.body)).collect()
    }
}
