//! The audit trail's records: who or what did what to a case, and when.

use serde::{Deserialize, Serialize};

use super::CaseKey;

/// One append-only audit record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub case: CaseKey,
    pub at_ms: i64,
    /// Function or person that acted.
    pub actor: String,
    /// What happened, dotted: `xdr.get_incident_extra_data`, `source.reported`, `action.decided`.
    pub event: String,
    pub detail: String,
    /// For an event that a redelivered message would record again (a source's report): one
    /// record per key, however often it is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub once_key: Option<String>,
}
