//! An XDR tenant that serves recorded replies and records writes instead of sending them.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

use super::lock;
use crate::ports::{XdrApi, XdrError};

/// One write Dossier made (or would have made) to XDR.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct XdrWrite {
    pub endpoint: String,
    pub body: serde_json::Value,
}

/// Serves recorded extra-data replies and records writes instead of sending them: `dossier run`
/// and the demo use it, so nothing reaches a real tenant.
#[derive(Default)]
pub struct RecordingXdr {
    /// Incident id → raw `get_incident_extra_data` reply; `None` key serves any id.
    replies: Mutex<HashMap<String, String>>,
    fallback: Option<String>,
    writes: Mutex<Vec<XdrWrite>>,
}

impl RecordingXdr {
    /// Serves `reply` for any incident id.
    pub fn serving(reply: String) -> RecordingXdr {
        RecordingXdr { fallback: Some(reply), ..Default::default() }
    }

    pub fn with_incidents(replies: impl IntoIterator<Item = (String, String)>) -> RecordingXdr {
        RecordingXdr { replies: Mutex::new(replies.into_iter().collect()), ..Default::default() }
    }

    pub fn writes(&self) -> Vec<XdrWrite> {
        lock(&self.writes).clone()
    }

    fn record(&self, endpoint: &str, body: serde_json::Value) {
        lock(&self.writes).push(XdrWrite { endpoint: endpoint.to_string(), body });
    }
}

#[async_trait]
impl XdrApi for RecordingXdr {
    /// As XDR lists them: modified within the window, oldest first.
    async fn list_modified(&self, from_ms: i64, to_ms: i64) -> Result<Vec<crate::ports::IncidentRef>, XdrError> {
        let replies: Vec<String> = lock(&self.replies).values().cloned().chain(self.fallback.clone()).collect();
        let mut out = Vec::new();
        for reply in replies {
            for d in crate::xdr::parse_extra_data(&reply).map_err(|e| XdrError::BadReply(e.to_string()))? {
                out.push(crate::ports::IncidentRef {
                    incident_id: d.incident.incident_id,
                    status: d.incident.status,
                    severity: d.incident.severity,
                    description: d.incident.description,
                    creation_ms: d.incident.creation_ms,
                    modification_ms: d.incident.modification_ms.or(d.incident.creation_ms),
                });
            }
        }
        out.sort_by(|a, b| a.incident_id.cmp(&b.incident_id));
        out.dedup_by(|a, b| a.incident_id == b.incident_id);
        out.retain(|i| i.modification_ms.is_some_and(|m| (from_ms..=to_ms).contains(&m)));
        out.sort_by_key(|i| (i.modification_ms, i.incident_id.parse::<u64>().unwrap_or(u64::MAX)));
        Ok(out)
    }

    async fn get_incident_extra_data(&self, incident_id: &str) -> Result<String, XdrError> {
        lock(&self.replies)
            .get(incident_id)
            .cloned()
            .or_else(|| self.fallback.clone())
            .ok_or_else(|| XdrError::NotFound(format!("no recorded incident {incident_id}")))
    }

    async fn add_comment(&self, incident_id: &str, text: &str) -> Result<(), XdrError> {
        self.record(
            "/public_api/v1/incidents/update_incident",
            serde_json::json!({"request_data": {"incident_id": incident_id, "update_data": {"comment": {"comment_action": "add", "value": text}}}}),
        );
        Ok(())
    }

    async fn set_severity(&self, incident_id: &str, severity: &str) -> Result<(), XdrError> {
        self.record(
            "/public_api/v1/incidents/update_incident",
            serde_json::json!({"request_data": {"incident_id": incident_id, "update_data": {"manual_severity": severity}}}),
        );
        Ok(())
    }

    async fn isolate_endpoint(&self, endpoint_id: &str, incident_id: &str) -> Result<String, XdrError> {
        self.record(
            "/public_api/v1/endpoints/isolate",
            serde_json::json!({"request_data": {"endpoint_id": endpoint_id, "incident_id": incident_id}}),
        );
        Ok(format!("recorded-{}", lock(&self.writes).len()))
    }

    async fn block_hash(&self, sha256: &str, comment: &str, incident_id: &str) -> Result<(), XdrError> {
        self.record(
            "/public_api/v1/hash_exceptions/blocklist",
            serde_json::json!({"request_data": {"hash_list": [sha256], "comment": comment, "incident_id": incident_id}}),
        );
        Ok(())
    }

    async fn action_status(&self, _action_id: &str) -> Result<Vec<(String, String)>, XdrError> {
        // Recorded actions complete at once: nothing real was asked of an endpoint.
        Ok(vec![("recorded".into(), "COMPLETED_SUCCESSFULLY".into())])
    }

    async fn comment_exists(&self, incident_id: &str, marker: &str) -> Result<Option<bool>, XdrError> {
        let writes = lock(&self.writes);
        Ok(Some(writes.iter().any(|w| {
            w.body["request_data"]["incident_id"] == incident_id
                && w.body["request_data"]["update_data"]["comment"]["value"].as_str().is_some_and(|t| t.contains(marker))
        })))
    }

    async fn endpoint_isolated(&self, endpoint_id: &str) -> Result<Option<bool>, XdrError> {
        let writes = lock(&self.writes);
        Ok(Some(writes.iter().any(|w| w.endpoint.ends_with("/endpoints/isolate") && w.body["request_data"]["endpoint_id"] == endpoint_id)))
    }

    async fn manual_severity(&self, incident_id: &str) -> Result<Option<String>, XdrError> {
        let writes = lock(&self.writes);
        Ok(writes
            .iter()
            .rev()
            .filter(|w| w.body["request_data"]["incident_id"] == incident_id)
            .find_map(|w| w.body["request_data"]["update_data"]["manual_severity"].as_str().map(str::to_string)))
    }
}
