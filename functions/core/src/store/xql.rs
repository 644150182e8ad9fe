//! The XQL history source's shared records (cache table, layout in `super`): the query each
//! entity has running or its answer, and the tenant's query slots, leased so that a worker that
//! dies does not keep one. Every worker of the tenant counts the same slots.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::ports::{Clock, Condition, DocStore, PutOutcome, ReplaceOutcome, StoreError, Table, Write};

const RUN_PK: &str = "xql-run";
const SLOT_PK: &str = "xql-slot";

/// A query started for an entity, or its answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct XqlRun {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<usize>,
    #[serde(default)]
    pub started_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub done_ms: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Slot {
    #[serde(default)]
    holder: String,
    #[serde(default)]
    until_ms: i64,
}

/// Runs and slots of one tenant (its XDR host), `slots` at a time, each leased `lease_ms`.
pub struct XqlRuns {
    store: Arc<dyn DocStore>,
    pub clock: Arc<dyn Clock>,
    pub tenant: String,
    pub slots: usize,
    pub lease_ms: i64,
}

fn encode<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Rejected(e.to_string()))
}

impl XqlRuns {
    pub fn new(store: Arc<dyn DocStore>, clock: Arc<dyn Clock>, tenant: &str, slots: usize, lease_ms: i64) -> XqlRuns {
        XqlRuns { store, clock, tenant: tenant.to_string(), slots, lease_ms }
    }

    pub async fn run(&self, key: &str) -> Result<Option<XqlRun>, StoreError> {
        let doc = self.store.get(Table::Cache, RUN_PK, key).await?;
        Ok(doc.and_then(|d| serde_json::from_str(&d.body).ok()))
    }

    /// Records a run (or its answer, or its end) for `keep_ms`.
    pub async fn save_run(&self, key: &str, run: &XqlRun, keep_ms: i64) -> Result<(), StoreError> {
        let expires = (self.clock.now_ms() + keep_ms) / 1000;
        let w = Write::new(Table::Cache, RUN_PK, key, encode(run)?, Condition::Overwrite).expires(Some(expires));
        self.store.write(vec![w]).await.map(drop)
    }

    /// Takes a free (or abandoned) slot for `holder`; `None` when all are busy.
    pub async fn claim_slot(&self, holder: &str) -> Result<Option<usize>, StoreError> {
        let now = self.clock.now_ms();
        let body = encode(&Slot { holder: holder.to_string(), until_ms: now + self.lease_ms })?;
        for n in 0..self.slots {
            let sk = format!("{}#{n}", self.tenant);
            match self.store.get(Table::Cache, SLOT_PK, &sk).await? {
                None => {
                    if self.store.put_new(Table::Cache, SLOT_PK, &sk, &body, None).await? == PutOutcome::Written {
                        return Ok(Some(n));
                    }
                }
                Some(doc) => {
                    let slot: Slot = serde_json::from_str(&doc.body).unwrap_or_default();
                    if slot.until_ms <= now
                        && self.store.replace(Table::Cache, SLOT_PK, &sk, &body, doc.version).await? == ReplaceOutcome::Written
                    {
                        return Ok(Some(n));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Frees slot `n` if `holder` still holds it (one that lost it after its lease frees nothing).
    pub async fn release_slot(&self, n: usize, holder: &str) -> Result<(), StoreError> {
        let sk = format!("{}#{n}", self.tenant);
        if let Some(doc) = self.store.get(Table::Cache, SLOT_PK, &sk).await? {
            let slot: Slot = serde_json::from_str(&doc.body).unwrap_or_default();
            if slot.holder == holder {
                self.store.replace(Table::Cache, SLOT_PK, &sk, &encode(&Slot::default())?, doc.version).await?;
            }
        }
        Ok(())
    }
}
