//! Cortex XDR payloads as they really arrive: numbers as strings, seconds or milliseconds, `null`
//! sections, placeholders. Parsed tolerantly into a small model; anything that makes the payload
//! unusable is a `PayloadError` naming the field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{Cve, Severity};

use crate::timefmt::normalise_epoch;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("not valid JSON at line {line}, column {column}: {reason}")]
    NotJson { line: usize, column: usize, reason: String },
    #[error("XDR returned an error envelope instead of data: err_code {code}: {message}")]
    ErrorEnvelope { code: i64, message: String },
    #[error("missing required field `{0}`")]
    Missing(String),
    #[error("field `{field}` has the wrong type: expected {expected}")]
    WrongType { field: String, expected: &'static str },
}

/// The incident object (3.x `incident`), reduced to what Dossier uses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub incident_id: String,
    pub name: Option<String>,
    pub description: String,
    pub status: Option<String>,
    pub severity: Severity,
    pub creation_ms: Option<i64>,
    /// `modification_time` (5.x `last_update_time`): when XDR last changed the incident.
    #[serde(default)]
    pub modification_ms: Option<i64>,
    pub xdr_url: Option<String>,
    /// `hosts[]` as XDR writes them (`name:agent_id`).
    pub hosts: Vec<String>,
    pub users: Vec<String>,
    pub mitre_techniques: Vec<String>,
    /// The severity an analyst set by hand (`manual_severity`), when one did.
    #[serde(default)]
    pub analyst_severity: Option<Severity>,
    /// XDR's own count of the incident's alerts (`alert_count`), which may exceed those returned.
    #[serde(default)]
    pub alert_count: Option<usize>,
    /// `incident_sources[]`: "XDR Agent", "ASM", "XDR BIOC", ...
    #[serde(default)]
    pub sources: Vec<String>,
    /// `wildfire_hits`: files WildFire called malicious in this incident.
    #[serde(default)]
    pub wildfire_hits: usize,
    /// Attack-surface incidents: the CVEs of the exposed service (`xpanse_risk_explainer.cves[]`).
    #[serde(default)]
    pub cves: Vec<Cve>,
}

/// One alert; `fields` keeps every non-empty scalar the extractor may look at, by XDR field name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: Option<String>,
    pub name: Option<String>,
    pub category: Option<String>,
    pub severity: Severity,
    pub source: Option<String>,
    pub action: Option<String>,
    pub detection_ms: Option<i64>,
    pub host_name: Option<String>,
    pub endpoint_id: Option<String>,
    pub user_name: Option<String>,
    pub fields: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkArtifact {
    pub remote_ip: Option<String>,
    pub domain: Option<String>,
    pub remote_port: Option<String>,
    pub country: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileArtifact {
    pub file_name: Option<String>,
    pub sha256: Option<String>,
    pub wildfire_verdict: Option<String>,
    pub is_malicious: bool,
}

/// The reply of `incidents/get_incident_extra_data`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExtraData {
    pub incident: Incident,
    pub alerts: Vec<Alert>,
    pub alerts_total: usize,
    pub network_artifacts: Vec<NetworkArtifact>,
    pub file_artifacts: Vec<FileArtifact>,
    /// Tolerated oddities, each naming the field.
    pub warnings: Vec<String>,
}

/// Parses a `get_incident_extra_data` reply, or the `incidents[]` of
/// `get_multiple_incidents_extra_data`, into one `ExtraData` per incident.
pub fn parse_extra_data(text: &str) -> Result<Vec<ExtraData>, PayloadError> {
    let root: Value =
        serde_json::from_str(text).map_err(|e| PayloadError::NotJson { line: e.line(), column: e.column(), reason: e.to_string() })?;
    let reply = root.get("reply").ok_or_else(|| PayloadError::Missing("reply".into()))?;
    check_error_envelope(reply)?;
    if !reply.is_object() {
        return Err(PayloadError::WrongType { field: "reply".into(), expected: "object" });
    }
    if let Some(list) = reply.get("incidents") {
        let items = list.as_array().ok_or(PayloadError::WrongType { field: "reply.incidents".into(), expected: "array" })?;
        if items.is_empty() {
            return Err(PayloadError::Missing("reply.incidents[0]".into()));
        }
        return items.iter().enumerate().map(|(i, item)| parse_one(item, &format!("reply.incidents[{i}]"))).collect();
    }
    Ok(vec![parse_one(reply, "reply")?])
}

/// `{"reply": {"err_code": .., "err_msg": ..}}` is how XDR reports errors, sometimes with HTTP 200.
pub fn check_error_envelope(reply: &Value) -> Result<(), PayloadError> {
    if let Some(code) = reply.get("err_code") {
        let code = code.as_i64().or_else(|| code.as_str().and_then(|s| s.trim().parse().ok())).unwrap_or(0);
        let message = reply.get("err_msg").and_then(Value::as_str).unwrap_or("").trim().to_string();
        let extra = reply.get("err_extra").and_then(Value::as_str).unwrap_or("").trim();
        let message = if extra.is_empty() { message } else { format!("{message} ({extra})") };
        return Err(PayloadError::ErrorEnvelope { code, message });
    }
    Ok(())
}

fn parse_one(reply: &Value, path: &str) -> Result<ExtraData, PayloadError> {
    let mut warnings = Vec::new();
    let inc = reply.get("incident").ok_or_else(|| PayloadError::Missing(format!("{path}.incident")))?;
    if !inc.is_object() {
        return Err(PayloadError::WrongType { field: format!("{path}.incident"), expected: "object" });
    }
    let incident_id = scalar(inc.get("incident_id")).ok_or_else(|| PayloadError::Missing(format!("{path}.incident.incident_id")))?;
    if incident_id.len() > 64 || !incident_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(PayloadError::WrongType { field: format!("{path}.incident.incident_id"), expected: "a short alphanumeric id" });
    }
    let incident = Incident {
        incident_id,
        name: scalar(inc.get("incident_name")),
        description: scalar(inc.get("description")).unwrap_or_default(),
        status: scalar(inc.get("status")),
        severity: scalar(inc.get("manual_severity"))
            .or_else(|| scalar(inc.get("severity")))
            .map(|s| Severity::parse(&s))
            .unwrap_or_default(),
        creation_ms: epoch(inc.get("creation_time"), &format!("{path}.incident.creation_time"), &mut warnings),
        modification_ms: epoch(
            inc.get("modification_time").or_else(|| inc.get("last_update_time")),
            &format!("{path}.incident.modification_time"),
            &mut warnings,
        ),
        xdr_url: scalar(inc.get("xdr_url")),
        hosts: list(inc.get("hosts")),
        users: list(inc.get("users")),
        mitre_techniques: list(inc.get("mitre_techniques_ids_and_names")),
        analyst_severity: scalar(inc.get("manual_severity")).map(|s| Severity::parse(&s)).filter(|s| *s != Severity::Unknown),
        alert_count: scalar(inc.get("alert_count")).and_then(|n| n.parse().ok()),
        sources: list(inc.get("incident_sources")),
        wildfire_hits: scalar(inc.get("wildfire_hits")).and_then(|n| n.parse().ok()).unwrap_or(0),
        cves: cves(inc.get("xpanse_risk_explainer").and_then(|x| x.get("cves"))),
    };
    let (alerts_total, alert_values) = section(reply, "alerts", path, &mut warnings)?;
    let alerts = alert_values
        .iter()
        .enumerate()
        .map(|(i, a)| parse_alert(a, &format!("{path}.alerts.data[{i}]"), &mut warnings))
        .collect::<Vec<_>>();
    let (_, net_values) = section(reply, "network_artifacts", path, &mut warnings)?;
    let network_artifacts = net_values
        .iter()
        .map(|n| NetworkArtifact {
            remote_ip: scalar(n.get("network_remote_ip")),
            domain: scalar(n.get("network_domain")),
            remote_port: scalar(n.get("network_remote_port")),
            country: scalar(n.get("network_country")),
        })
        .collect();
    let (_, file_values) = section(reply, "file_artifacts", path, &mut warnings)?;
    let file_artifacts = file_values
        .iter()
        .map(|f| FileArtifact {
            file_name: scalar(f.get("file_name")),
            sha256: scalar(f.get("file_sha256")),
            wildfire_verdict: scalar(f.get("file_wildfire_verdict")),
            is_malicious: truthy(f.get("is_malicious")),
        })
        .collect();
    Ok(ExtraData { incident, alerts_total: alerts_total.max(alerts.len()), alerts, network_artifacts, file_artifacts, warnings })
}

fn cves(v: Option<&Value>) -> Vec<Cve> {
    let number = |c: &Value, k: &str| c.get(k).and_then(|n| n.as_f64().or_else(|| n.as_str().and_then(|s| s.trim().parse().ok())));
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(50)
        .filter_map(|c| {
            let id = scalar(c.get("cveId"))?;
            Some(Cve { id, cvss: number(c, "cvssScore"), epss: number(c, "epssScore"), exploit_maturity: scalar(c.get("exploitMaturity")) })
        })
        .collect()
}

/// A `{total_count, data: [...]}` section; absent or `null` is tolerated with a warning.
fn section<'a>(reply: &'a Value, name: &str, path: &str, warnings: &mut Vec<String>) -> Result<(usize, Vec<&'a Value>), PayloadError> {
    let Some(sec) = reply.get(name).filter(|v| !v.is_null()) else {
        warnings.push(format!("{path}.{name} is missing or null; treated as empty"));
        return Ok((0, Vec::new()));
    };
    let data = match sec {
        Value::Object(_) => sec.get("data"),
        // Some versions return the list directly.
        Value::Array(_) => Some(sec),
        _ => return Err(PayloadError::WrongType { field: format!("{path}.{name}"), expected: "object with `data`" }),
    };
    let items: Vec<&Value> = match data {
        None | Some(Value::Null) => {
            warnings.push(format!("{path}.{name}.data is missing or null; treated as empty"));
            Vec::new()
        }
        Some(Value::Array(a)) => a.iter().filter(|v| v.is_object()).collect(),
        Some(_) => return Err(PayloadError::WrongType { field: format!("{path}.{name}.data"), expected: "array" }),
    };
    let total = sec.get("total_count").and_then(|v| scalar(Some(v))).and_then(|s| s.parse().ok()).unwrap_or(items.len());
    Ok((total, items))
}

fn parse_alert(a: &Value, path: &str, warnings: &mut Vec<String>) -> Alert {
    let mut fields = Vec::new();
    if let Some(obj) = a.as_object() {
        for (k, v) in obj {
            for text in list(Some(v)) {
                fields.push((k.clone(), text));
            }
            // One level of nesting (attack-surface alerts: `certificate.subjectName`,
            // `asset_identifiers.httpPath`), named with a dot.
            if let Some(inner) = v.as_object() {
                for (k2, v2) in inner.iter().take(40) {
                    for text in list(Some(v2)) {
                        fields.push((format!("{k}.{k2}"), text));
                    }
                }
            }
        }
        // v1 alerts keep event-level fields (processes, files, network) inside `events[]`.
        for event in obj.get("events").and_then(Value::as_array).into_iter().flatten().take(100) {
            for (k, v) in event.as_object().into_iter().flatten() {
                for text in list(Some(v)) {
                    if !fields.iter().any(|(fk, fv)| fk == k && *fv == text) {
                        fields.push((k.clone(), text));
                    }
                }
            }
        }
    }
    Alert {
        alert_id: scalar(a.get("alert_id")),
        name: scalar(a.get("name")),
        category: scalar(a.get("category")),
        severity: scalar(a.get("severity")).map(|s| Severity::parse(&s)).unwrap_or_default(),
        source: scalar(a.get("source")),
        action: scalar(a.get("action_pretty")).or_else(|| scalar(a.get("action"))),
        detection_ms: epoch(a.get("detection_timestamp"), &format!("{path}.detection_timestamp"), warnings),
        host_name: scalar(a.get("host_name")),
        endpoint_id: scalar(a.get("endpoint_id")),
        user_name: scalar(a.get("user_name")),
        fields,
    }
}

/// A scalar as text: strings (trimmed, placeholders dropped), numbers; the first element of an array.
pub fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => {
            let t = s.trim();
            (!crate::domain::is_placeholder(t)).then(|| t.to_string())
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Array(a) => a.iter().find_map(|x| scalar(Some(x))),
        _ => None,
    }
}

/// Every scalar in a value that may be a scalar or an array of scalars (v2 alerts flatten fields into arrays).
pub fn list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(|x| scalar(Some(x))).collect(),
        other => scalar(other).into_iter().collect(),
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => {
            matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "yes" | "1")
        }
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}

fn epoch(v: Option<&Value>, field: &str, warnings: &mut Vec<String>) -> Option<i64> {
    let v = v?;
    if v.is_null() {
        return None;
    }
    let parsed = match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok().or_else(|| crate::timefmt::parse_rfc3339(s.trim())),
        _ => None,
    };
    match parsed {
        Some(n) => Some(normalise_epoch(n)),
        None => {
            warnings.push(format!("{field} is not a timestamp; ignored"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelope_is_reported() {
        let err = parse_extra_data(r#"{"reply": {"err_code": 401, "err_msg": "Unauthorized", "err_extra": "x"}}"#).unwrap_err();
        assert_eq!(err, PayloadError::ErrorEnvelope { code: 401, message: "Unauthorized (x)".into() });
    }

    #[test]
    fn names_the_missing_field() {
        assert_eq!(parse_extra_data(r#"{"reply": {}}"#).unwrap_err(), PayloadError::Missing("reply.incident".into()));
        assert_eq!(
            parse_extra_data(r#"{"reply": {"incident": {}}}"#).unwrap_err(),
            PayloadError::Missing("reply.incident.incident_id".into())
        );
        assert!(matches!(parse_extra_data(r#"{"reply": {"incident": {"incident_id": "1"}"#), Err(PayloadError::NotJson { .. })));
        assert!(matches!(parse_extra_data(""), Err(PayloadError::NotJson { .. })));
    }

    #[test]
    fn tolerates_null_sections_and_string_numbers() {
        let data = parse_extra_data(
            r#"{"reply": {"incident": {"incident_id": 42, "creation_time": "1575806909", "severity": "HIGH"},
                "alerts": null, "network_artifacts": {"data": null}}}"#,
        )
        .unwrap();
        let d = &data[0];
        assert_eq!(d.incident.incident_id, "42");
        assert_eq!(d.incident.creation_ms, Some(1_575_806_909_000));
        assert_eq!(d.incident.severity, Severity::High);
        assert!(d.alerts.is_empty());
        assert_eq!(d.warnings.len(), 3, "{:?}", d.warnings);
    }
}
