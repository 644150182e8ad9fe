//! Typed access to the tables over the `DocStore` port, and the one key layout of every record.
//!
//! | table | pk | sk | record | written by |
//! |---|---|---|---|---|
//! | cases | `tenant#incident` | `case` | [`Case`] (due index) | intake, poller, collect, synthesize, writeback, reconcile |
//! | cases | `tenant#incident` | `dossier` | [`Dossier`] (first write wins) | synthesize |
//! | cases | `webhook-replay` | tenant + verified MAC | replay marker (TTL) | intake |
//! | cases | `poller` | `watermark#<tenant>` | poller watermark | poller |
//! | cases | `feedback-vote` | link nonce | one vote per link | approve |
//! | cases | `feedback` | prompt version | vote counters | approve |
//! | cases | `idx#<kind>:<value>` | `tenant#incident` | related-case index (TTL) | collect |
//! | effects | `tenant#incident` | `draft#<id>` | [`Draft`] (due index) | synthesize, writeback, reconcile |
//! | effects | `tenant#incident` | `action#<id>` | [`Action`] (due index) | synthesize, approve, writeback, reconcile |
//! | reports | `tenant#incident` | `source#<name>` | [`SourceReport`] (first write wins) | enrich |
//! | reports | `tenant#incident` | `fan-in` | the set of sources that reported | enrich |
//! | audit | `tenant#incident` | `<ms>#<nonce>` or `once#<key>` | [`AuditEvent`] (append only) | every function |
//! | cache | `<source>` | `<kind>:<value>` | a source's answer (TTL) | enrich |
//! | cache | `ratelimit` | `<name>#<window>` | a rate-limit window (TTL) | collect, enrich |
//! | cache | `xql-run` | `<xdr host>#<template>#<kind>:<value>` | an XQL query started for an entity, or its answer (TTL) | enrich (xdr) |
//! | cache | `xql-slot` | `<xdr host>#<n>` | one of the tenant's 4 XQL query slots (leased) | enrich (xdr) |
//!
//! Invariants are conditional writes; a state change and its audit records are committed
//! together, so an audited step is never half done.

mod records;
mod shared;
mod xql;

pub use records::{decode, encode, Record, MAX_DOC_BYTES};
pub use shared::{Feedback, FeedbackCounts, ReplayMarkers, Voted, Watermarks};
pub use xql::{XqlRun, XqlRuns};

use serde::de::DeserializeOwned;
use std::sync::Arc;

use crate::domain::{Action, AuditEvent, Case, CaseKey, Draft};
use crate::dossier::Dossier;
use crate::ports::{Condition, DocStore, StoreError, Table, Write, WriteOutcome};
use crate::sources::SourceReport;

pub const CASE_SK: &str = "case";
pub const DOSSIER_SK: &str = "dossier";
pub const FAN_IN_SK: &str = "fan-in";
const SOURCE_PREFIX: &str = "source#";
const DRAFT_PREFIX: &str = "draft#";
const ACTION_PREFIX: &str = "action#";
const CONFLICT_RETRIES: usize = 8;

pub fn source_sk(source: &str) -> String {
    format!("{SOURCE_PREFIX}{source}")
}
pub fn draft_sk(id: &str) -> String {
    format!("{DRAFT_PREFIX}{id}")
}
pub fn action_sk(id: &str) -> String {
    format!("{ACTION_PREFIX}{id}")
}

#[derive(Clone, Debug)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// What an update closure decided.
pub enum Change<R> {
    /// Write the modified record (and whatever else the closure added to the commit), return R.
    Write(R),
    /// Leave everything as it is and return R.
    Keep(R),
}

/// Writes committed together: all or none.
#[derive(Default)]
pub struct Commit {
    writes: Vec<Write>,
}

/// The outcome of a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Committed {
    Written,
    /// Nothing was written: write `index` (in the order added) found the store changed.
    Conflict {
        index: usize,
    },
}

impl Commit {
    pub fn new() -> Commit {
        Commit::default()
    }

    /// Adds a record that must not exist yet (first write wins).
    pub fn create<R: Record>(&mut self, record: &R) -> Result<usize, StoreError> {
        self.push(record.write(Condition::Absent)?)
    }

    /// Adds a record that must not exist yet, at `version` (see [`Condition::AbsentAt`]).
    pub fn create_at<R: Record>(&mut self, record: &R, version: u64) -> Result<usize, StoreError> {
        self.push(record.write(Condition::AbsentAt(version))?)
    }

    /// Adds a record read at `version`: written only if nobody changed it since.
    pub fn save<R: Record>(&mut self, record: &R, version: u64) -> Result<usize, StoreError> {
        self.push(record.write(Condition::Version(version))?)
    }

    /// Adds an audit record. A record with a `once_key` is written once however often it is
    /// added (a redelivery); others get a unique time-ordered key.
    pub fn audit(&mut self, event: &AuditEvent) -> Result<usize, StoreError> {
        let sk = match &event.once_key {
            Some(k) => format!("once#{k}"),
            None => format!("{:018}#{}", event.at_ms.max(0), crate::random::new_nonce()),
        };
        let condition = if event.once_key.is_some() { Condition::Overwrite } else { Condition::Absent };
        self.push(Write::new(Table::Audit, event.case.storage_id(), sk, encode(event)?, condition))
    }

    /// Adds the case's dossier document (first write wins).
    pub fn dossier(&mut self, key: &CaseKey, dossier: &Dossier) -> Result<usize, StoreError> {
        self.push(Write::new(Table::Cases, key.storage_id(), DOSSIER_SK, encode(dossier)?, Condition::Absent))
    }

    /// Adds any write.
    pub fn push(&mut self, write: Write) -> Result<usize, StoreError> {
        self.writes.push(write);
        Ok(self.writes.len() - 1)
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// The typed store every stage uses.
#[derive(Clone)]
pub struct Store {
    docs: Arc<dyn DocStore>,
}

impl Store {
    pub fn new(docs: Arc<dyn DocStore>) -> Store {
        Store { docs }
    }

    /// The raw port, for records without a type here (rate limits, cache, small shared records).
    pub fn docs(&self) -> &Arc<dyn DocStore> {
        &self.docs
    }

    pub async fn get<T: DeserializeOwned>(&self, table: Table, pk: &str, sk: &str) -> Result<Option<Versioned<T>>, StoreError> {
        match self.docs.get(table, pk, sk).await? {
            Some(doc) => Ok(Some(Versioned { value: decode(pk, sk, &doc.body)?, version: doc.version })),
            None => Ok(None),
        }
    }

    async fn query<T: DeserializeOwned>(&self, table: Table, pk: &str, prefix: &str) -> Result<Vec<Versioned<T>>, StoreError> {
        self.docs
            .query(table, pk, prefix)
            .await?
            .iter()
            .map(|d| Ok(Versioned { value: decode(pk, &d.sk, &d.body)?, version: d.version }))
            .collect()
    }

    pub async fn commit(&self, commit: Commit) -> Result<Committed, StoreError> {
        if commit.writes.is_empty() {
            return Ok(Committed::Written);
        }
        Ok(match self.docs.write(commit.writes).await? {
            WriteOutcome::Written => Committed::Written,
            WriteOutcome::Conflict { index } => Committed::Conflict { index },
        })
    }

    /// Reads a record, lets `decide` change it (and add other writes, audit records, to the same
    /// commit), writes it back conditionally; on a conflict it starts over with a fresh copy.
    /// `None` if the record does not exist. Conflicts on the other writes are errors.
    pub async fn update<R, T, E, F>(&self, pk: &str, sk: &str, decide: F) -> Result<Option<T>, E>
    where
        R: Record,
        E: From<StoreError>,
        F: FnMut(&mut R, &mut Commit) -> Result<Change<T>, E>,
    {
        Ok(self.update_versioned(pk, sk, decide).await?.map(|(r, _)| r))
    }

    /// [`Store::update`], also returning the record's version afterwards.
    pub async fn update_versioned<R, T, E, F>(&self, pk: &str, sk: &str, decide: F) -> Result<Option<(T, u64)>, E>
    where
        R: Record,
        E: From<StoreError>,
        F: FnMut(&mut R, &mut Commit) -> Result<Change<T>, E>,
    {
        let Some(current) = self.get::<R>(R::TABLE, pk, sk).await? else {
            return Ok(None);
        };
        self.update_versioned_from(pk, sk, current, decide).await
    }

    /// [`Store::update_versioned`] starting from a copy already in hand (just read, or carried
    /// on the message): no read before the first write; a conflict reads and decides again.
    pub async fn update_versioned_from<R, T, E, F>(
        &self,
        pk: &str,
        sk: &str,
        first: Versioned<R>,
        mut decide: F,
    ) -> Result<Option<(T, u64)>, E>
    where
        R: Record,
        E: From<StoreError>,
        F: FnMut(&mut R, &mut Commit) -> Result<Change<T>, E>,
    {
        let mut first = Some(first);
        for _ in 0..CONFLICT_RETRIES {
            let mut current = match first.take() {
                Some(c) => c,
                None => match self.get::<R>(R::TABLE, pk, sk).await? {
                    Some(c) => c,
                    None => return Ok(None),
                },
            };
            let mut others = Commit::new();
            match decide(&mut current.value, &mut others)? {
                Change::Keep(r) => return Ok(Some((r, current.version))),
                Change::Write(r) => {
                    let mut commit = Commit::new();
                    commit.save(&current.value, current.version)?;
                    commit.writes.extend(others.writes);
                    match self.commit(commit).await? {
                        Committed::Written => return Ok(Some((r, current.version + 1))),
                        Committed::Conflict { index: 0 } => continue,
                        Committed::Conflict { index } => {
                            return Err(StoreError::Rejected(format!("{pk}/{sk}: write {index} of the commit conflicted")).into())
                        }
                    }
                }
            }
        }
        Err(StoreError::Unavailable(format!("{pk}/{sk}: still conflicting after {CONFLICT_RETRIES} attempts")).into())
    }

    pub async fn case(&self, key: &CaseKey) -> Result<Option<Versioned<Case>>, StoreError> {
        self.get(Table::Cases, &key.storage_id(), CASE_SK).await
    }

    pub async fn dossier(&self, key: &CaseKey) -> Result<Option<Dossier>, StoreError> {
        Ok(self.get::<Dossier>(Table::Cases, &key.storage_id(), DOSSIER_SK).await?.map(|v| v.value))
    }

    pub async fn draft(&self, key: &CaseKey, id: &str) -> Result<Option<Versioned<Draft>>, StoreError> {
        self.get(Table::Effects, &key.storage_id(), &draft_sk(id)).await
    }

    pub async fn drafts(&self, key: &CaseKey) -> Result<Vec<Versioned<Draft>>, StoreError> {
        self.query(Table::Effects, &key.storage_id(), DRAFT_PREFIX).await
    }

    pub async fn action(&self, key: &CaseKey, id: &str) -> Result<Option<Versioned<Action>>, StoreError> {
        self.get(Table::Effects, &key.storage_id(), &action_sk(id)).await
    }

    pub async fn actions(&self, key: &CaseKey) -> Result<Vec<Versioned<Action>>, StoreError> {
        self.query(Table::Effects, &key.storage_id(), ACTION_PREFIX).await
    }

    pub async fn reports(&self, key: &CaseKey) -> Result<Vec<SourceReport>, StoreError> {
        Ok(self.query::<SourceReport>(Table::Reports, &key.storage_id(), SOURCE_PREFIX).await?.into_iter().map(|v| v.value).collect())
    }

    /// Records a source's report with its audit record, in one transaction; the first report
    /// stands. Returns whether this one was the first.
    pub async fn report(&self, key: &CaseKey, report: &SourceReport, audit: &AuditEvent) -> Result<bool, StoreError> {
        let pk = key.storage_id();
        let mut commit = Commit::new();
        commit.push(Write::new(Table::Reports, &pk, source_sk(&report.source), encode(report)?, Condition::Absent))?;
        commit.audit(audit)?;
        match self.commit(commit).await? {
            Committed::Written => Ok(true),
            // Stored before, with its audit record, by an earlier delivery.
            Committed::Conflict { index: 0 } => Ok(false),
            Committed::Conflict { index } => Err(StoreError::Rejected(format!("{pk}: write {index} of a report conflicted"))),
        }
    }

    /// Adds a source to the case's fan-in set (the same set however often it is added); returns
    /// the sources in it now.
    pub async fn join_fan_in(&self, key: &CaseKey, source: &str) -> Result<Vec<String>, StoreError> {
        self.docs.add_to_set(Table::Reports, &key.storage_id(), FAN_IN_SK, source).await
    }

    /// The audit trail of a case, oldest first.
    pub async fn events(&self, key: &CaseKey) -> Result<Vec<AuditEvent>, StoreError> {
        let mut events: Vec<AuditEvent> =
            self.query::<AuditEvent>(Table::Audit, &key.storage_id(), "").await?.into_iter().map(|v| v.value).collect();
        events.sort_by_key(|e| e.at_ms);
        Ok(events)
    }
}
