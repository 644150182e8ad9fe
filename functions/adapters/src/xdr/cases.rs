//! Cortex XDR 5.x (cases and issues): the case listing, and a case with its issues and
//! artifacts composed into the 3.x extra-data shape the rest of Dossier reads.

use serde_json::{json, Value};

use dossier_core::ports::{IncidentRef, XdrError};

use super::{incident_ref, reply_of, XdrHttp, MAX_LISTED, PAGE};

impl XdrHttp {
    /// 5.x has no `get_incident_extra_data`: the case (`case/search`), its issues (`issue/search`)
    /// and its artifacts (`GET case/artifacts/{id}/`) are composed into the 3.x reply shape, so
    /// the rest of Dossier reads one format. Issue fields are mapped from their `xdm.*` names.
    pub(super) async fn case_as_extra_data(&self, case_id: &str) -> Result<String, XdrError> {
        let id_value = case_id.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(case_id));
        let body = self
            .read(
                "case/search",
                json!({"filters": [{"field": "case_id", "operator": "in", "value": [id_value]}], "search_from": 0, "search_to": 1}),
            )
            .await?;
        let reply = reply_of(&body, "case/search")?;
        let case = reply.pointer("/DATA/0").cloned().ok_or_else(|| XdrError::NotFound(format!("case {case_id}")))?;
        let issue_ids: Vec<Value> = case.get("issue_ids").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut alerts = Vec::new();
        // Pages of 100, as every documented XDR list call pages; `include_fields` names the
        // normalised (`xdm.*`) fields the mapping reads (the documented default, `[]`, returns none).
        for chunk in issue_ids.chunks(PAGE) {
            let body = self
                .read(
                    "issue/search",
                    json!({
                        "filters": [{"field": "id", "operator": "in", "value": chunk}],
                        "search_from": 0, "search_to": chunk.len(),
                        "include_fields": ["normalized_fields"]
                    }),
                )
                .await?;
            let issues = reply_of(&body, "issue/search")?;
            // The reference names `DATA`, the published examples answer under `issues`, clients
            // tested on tenants read `data` as well: read any.
            alerts.extend(
                issues
                    .get("DATA")
                    .or_else(|| issues.get("issues"))
                    .or_else(|| issues.get("data"))
                    .and_then(Value::as_array)
                    .map(|d| d.iter().map(issue_as_alert).collect::<Vec<_>>())
                    .unwrap_or_default(),
            );
        }
        let artifacts = self
            .get_raw(&format!("case/artifacts/{case_id}/"))
            .await
            .ok()
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .unwrap_or(Value::Null);
        let (network, files) = case_artifacts(&artifacts);
        let incident = json!({
            "incident_id": case_id,
            "incident_name": case.get("case_name"),
            "description": case.get("description").or_else(|| case.get("case_name")),
            "severity": case.get("user_severity").filter(|v| !v.is_null()).or_else(|| case.get("severity")),
            "status": case.get("status_progress"),
            "creation_time": case.get("creation_time"),
            "xdr_url": case.get("xdr_url"),
            "hosts": case.get("hosts"),
            "users": case.get("users"),
        });
        Ok(json!({"reply": {
            "incident": incident,
            "alerts": {"total_count": alerts.len(), "data": alerts},
            "network_artifacts": {"total_count": network.len(), "data": network},
            "file_artifacts": {"total_count": files.len(), "data": files},
        }})
        .to_string())
    }

    pub(super) async fn list_v5(&self, from_ms: i64, to_ms: i64) -> Result<Vec<IncidentRef>, XdrError> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let body = self
                .read(
                    "case/search",
                    json!({
                        // `last_update_time` is a documented case/search filter field; the sort
                        // fields are `case_id`, `severity`, `creation_time`: every page of the
                        // window is read, so the order only has to be stable.
                        "filters": [
                            {"field": "last_update_time", "operator": "gte", "value": from_ms},
                            {"field": "last_update_time", "operator": "lte", "value": to_ms}
                        ],
                        "search_from": offset, "search_to": offset + PAGE,
                        "sort": {"field": "case_id", "keyword": "asc"}
                    }),
                )
                .await?;
            let reply = reply_of(&body, "case/search")?;
            let page =
                reply.get("DATA").and_then(Value::as_array).ok_or_else(|| XdrError::BadReply("case/search: no `DATA` array".into()))?;
            out.extend(page.iter().filter_map(|c| {
                incident_ref(c, "case_id", &["status_progress", "status"], &["user_severity", "severity"], &["case_name", "description"])
            }));
            offset += page.len();
            // Practitioners report FILTER_COUNT, not TOTAL_COUNT, as the count to page against.
            let total =
                reply.get("FILTER_COUNT").or_else(|| reply.get("TOTAL_COUNT")).and_then(Value::as_u64).map_or(usize::MAX, |t| t as usize);
            if page.len() < PAGE || offset >= total.min(MAX_LISTED) {
                return Ok(out);
            }
        }
    }
}

/// The artifacts of `GET case/artifacts/{id}/`: per the reference `{"reply": {"DATA":
/// [CaseArtifact]}}`, per clients tested on tenants a bare array of `CaseArtifact` — each
/// `{case_id, network_artifacts: {DATA}, file_artifacts: {DATA}}` — and, from older mocks, a flat
/// list of typed artifacts. Any of them: (network, files).
fn case_artifacts(body: &Value) -> (Vec<Value>, Vec<Value>) {
    let list = body
        .as_array()
        .cloned()
        .or_else(|| body.pointer("/reply/DATA").and_then(Value::as_array).cloned())
        .or_else(|| body.get("reply").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    let rows = |v: Option<&Value>| -> Vec<Value> {
        v.and_then(|g| g.get("DATA").or_else(|| g.get("data")).and_then(Value::as_array).cloned()).unwrap_or_default()
    };
    let (mut network, mut files) = (Vec::new(), Vec::new());
    for item in list {
        if item.get("network_artifacts").is_some() || item.get("file_artifacts").is_some() {
            network.extend(rows(item.get("network_artifacts")));
            files.extend(rows(item.get("file_artifacts")));
        } else if item.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("ip") || t.eq_ignore_ascii_case("domain"))
        {
            network.push(item);
        } else {
            files.push(item);
        }
    }
    (network, files)
}

/// A 5.x issue row as a 3.x alert: known `xdm.*` fields are mapped to the alert field names the
/// extractor reads; other scalar fields pass through under their own names.
fn issue_as_alert(issue: &Value) -> Value {
    const XDM: &[(&str, &str)] = &[
        ("xdm.source.host.hostname", "host_name"),
        ("xdm.source.host.ipv4_addresses", "host_ip"),
        ("xdm.source.ipv4", "action_local_ip"),
        ("xdm.target.ipv4", "action_remote_ip"),
        ("xdm.target.domain", "action_external_hostname"),
        ("xdm.domain", "action_external_hostname"),
        ("xdm.network.dns.dns_question.name", "dns_query_name"),
        ("xdm.source.user.username", "user_name"),
        ("xdm.source.identity.username", "user_name"),
        ("xdm.source.process.name", "actor_process_image_name"),
        ("xdm.source.process.command_line", "actor_process_command_line"),
        ("xdm.source.process.executable.sha256", "actor_process_image_sha256"),
        ("xdm.target.file.sha256", "action_file_sha256"),
        ("xdm.target.file.md5", "action_file_md5"),
        ("xdm.target.url", "action_url"),
    ];
    let mut alert = serde_json::Map::new();
    if let Some(obj) = issue.as_object() {
        for (k, v) in obj {
            if !v.is_object() {
                alert.insert(k.replace('.', "_"), v.clone());
            }
        }
    }
    // `id` in the reference's example, `issue_id` on the documentation page's.
    alert.insert("alert_id".into(), issue.get("id").or_else(|| issue.get("issue_id")).cloned().unwrap_or(Value::Null));
    if let Some(name) = issue.get("name").or_else(|| issue.get("issue_name")) {
        alert.insert("name".into(), name.clone());
    }
    if let Some(normalized) = issue.get("normalized_fields").and_then(Value::as_object) {
        for (xdm, field) in XDM {
            // Some normalised fields are lists (`xdm.target.ipv4`): an alert field holds one value.
            let value = match normalized.get(*xdm) {
                Some(Value::Array(list)) if *field != "host_ip" => list.first().cloned(),
                other => other.cloned(),
            };
            if let Some(v) = value.filter(|v| !v.is_null()) {
                alert.insert((*field).to_string(), v);
            }
        }
    }
    Value::Object(alert)
}
