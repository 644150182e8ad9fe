//! How the entities map to items: table, keys, due time, and the JSON body.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::domain::{Action, Case, Draft};
use crate::ports::{Condition, StoreError, Table, Write};

/// Largest document written; DynamoDB items are capped at 400 KB including keys.
pub const MAX_DOC_BYTES: usize = 380 * 1024;

/// An entity stored as one item.
pub trait Record: Serialize + DeserializeOwned {
    const TABLE: Table;
    fn pk(&self) -> String;
    fn sk(&self) -> String;
    /// Listed in the due index until then.
    fn due_at_ms(&self) -> Option<i64>;

    fn write(&self, condition: Condition) -> Result<Write, StoreError> {
        Ok(Write::new(Self::TABLE, self.pk(), self.sk(), encode(self)?, condition).due(self.due_at_ms()))
    }
}

impl Record for Case {
    const TABLE: Table = Table::Cases;
    fn pk(&self) -> String {
        self.key.storage_id()
    }
    fn sk(&self) -> String {
        super::CASE_SK.to_string()
    }
    fn due_at_ms(&self) -> Option<i64> {
        self.due_at_ms
    }
}

impl Record for Action {
    const TABLE: Table = Table::Effects;
    fn pk(&self) -> String {
        self.case.storage_id()
    }
    fn sk(&self) -> String {
        super::action_sk(&self.id)
    }
    fn due_at_ms(&self) -> Option<i64> {
        self.due_at_ms
    }
}

impl Record for Draft {
    const TABLE: Table = Table::Effects;
    fn pk(&self) -> String {
        self.case.storage_id()
    }
    fn sk(&self) -> String {
        super::draft_sk(&self.id)
    }
    fn due_at_ms(&self) -> Option<i64> {
        self.due_at_ms
    }
}

pub fn encode<T: Serialize>(value: &T) -> Result<String, StoreError> {
    let body = serde_json::to_string(value).map_err(|e| StoreError::Rejected(format!("cannot serialise: {e}")))?;
    if body.len() > MAX_DOC_BYTES {
        return Err(StoreError::Rejected(format!("document of {} bytes exceeds the {MAX_DOC_BYTES}-byte item budget", body.len())));
    }
    Ok(body)
}

pub fn decode<T: DeserializeOwned>(pk: &str, sk: &str, body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt { key: format!("{pk}/{sk}"), reason: e.to_string() })
}
