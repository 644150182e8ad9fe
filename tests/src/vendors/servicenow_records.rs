//! A stateful strict fake of the ServiceNow Table API's record writes.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::snow_error;
use crate::{FakeServer, Recorded, Reply};

/// The records a fake table holds.
pub type Records = Arc<Mutex<Vec<Value>>>;

/// ServiceNow Table API writes (the "Table API" reference: `GET /api/now/table/{table}` with
/// `sysparm_query`, `sysparm_limit`, `sysparm_fields`; `POST` answering 201 with the whole
/// record, every value a string; `PATCH /{sys_id}`, 404 "No Record found" for an unknown one):
/// Basic or Bearer (401 "User Not Authenticated"), JSON bodies with `Content-Type:
/// application/json` (415 otherwise), only the table given (400 "Invalid table"), and on
/// `incident` a `short_description` to create. Journal fields (`work_notes`, `comments`) are
/// kept apart and do not come back in reads, as on an instance.
pub fn servicenow_records(server: &FakeServer, authorization: &str, table: &str) -> Records {
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let (expected, table) = (authorization.to_string(), table.to_string());
    let base = format!("/api/now/table/{table}");
    server.unknown_path(snow_error(400, "Invalid table", "Requested URI does not represent any resource"));
    {
        let base = base.clone();
        server.guard(move |r| {
            if r.header("authorization") != Some(expected.as_str()) {
                return Some(snow_error(401, "User Not Authenticated", "Required to provide Auth information"));
            }
            if !r.path.starts_with(&base) {
                return Some(snow_error(400, "Invalid table", &r.path));
            }
            if matches!(r.method.as_str(), "POST" | "PATCH") && !r.header("content-type").is_some_and(|c| c.starts_with("application/json"))
            {
                return Some(snow_error(415, "Unsupported Media Type", "Content-Type must be application/json"));
            }
            if let Some((k, _)) = r
                .params()
                .into_iter()
                .find(|(k, _)| !["sysparm_query", "sysparm_limit", "sysparm_fields", "sysparm_display_value"].contains(&k.as_str()))
            {
                return Some(snow_error(400, "Invalid parameter", &k));
            }
            None
        });
    }
    let state = records.clone();
    let fields = |record: &Value, wanted: Option<String>| -> Value {
        match wanted {
            Some(list) => Value::Object(list.split(',').filter_map(|f| record.get(f).map(|v| (f.to_string(), v.clone()))).collect()),
            None => record.clone(),
        }
    };
    server.on(
        "GET",
        &base,
        Reply::dynamic(move |r: &Recorded| {
            let query = r.param("sysparm_query").unwrap_or_default();
            let limit: usize = r.param("sysparm_limit").and_then(|l| l.parse().ok()).unwrap_or(10_000);
            let held = state.lock().unwrap();
            let matching: Vec<Value> = held
                .iter()
                .filter(|rec| {
                    query.split('^').filter(|c| !c.is_empty()).all(|c| match c.split_once('=') {
                        Some((f, v)) => rec.get(f).and_then(Value::as_str) == Some(v),
                        // An encoded-query part the instance cannot read is ignored, as ServiceNow does.
                        None => true,
                    })
                })
                .take(limit)
                .map(|rec| fields(rec, r.param("sysparm_fields")))
                .collect();
            Reply::json(200, json!({"result": matching}).to_string())
        }),
    );
    let state = records.clone();
    let is_incident = table == "incident";
    server.on(
        "POST",
        &base,
        Reply::dynamic(move |r: &Recorded| {
            let body = r.json();
            let Some(obj) = body.as_object() else { return snow_error(400, "Invalid JSON", "expected an object") };
            if is_incident && obj.get("short_description").and_then(Value::as_str).is_none_or(str::is_empty) {
                return snow_error(400, "Data Policy Exception", "The following fields are mandatory: Short description");
            }
            let mut held = state.lock().unwrap();
            let n = held.len() + 1;
            let mut record =
                json!({"sys_id": format!("{:032x}", n), "number": format!("{}{:07}", if is_incident { "INC" } else { "SIR" }, 10000 + n)});
            for (k, v) in obj {
                if !["work_notes", "comments"].contains(&k.as_str()) {
                    record[k] = Value::String(v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
                }
            }
            record["journal"] = json!(obj.get("work_notes").into_iter().cloned().collect::<Vec<_>>());
            held.push(record.clone());
            let mut shown = record;
            if let Some(o) = shown.as_object_mut() {
                o.remove("journal");
            }
            Reply::json(201, json!({"result": shown}).to_string())
        }),
    );
    let state = records.clone();
    server.on(
        "PATCH",
        &format!("{base}/*"),
        Reply::dynamic(move |r: &Recorded| {
            let sys_id = r.path.rsplit('/').next().unwrap_or_default().to_string();
            let body = r.json();
            let Some(obj) = body.as_object() else { return snow_error(400, "Invalid JSON", "expected an object") };
            let mut held = state.lock().unwrap();
            let Some(record) = held.iter_mut().find(|rec| rec["sys_id"] == sys_id.as_str()) else {
                return snow_error(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval");
            };
            for (k, v) in obj {
                if ["work_notes", "comments"].contains(&k.as_str()) {
                    if let Some(journal) = record["journal"].as_array_mut() {
                        journal.push(v.clone());
                    }
                } else {
                    record[k] = Value::String(v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
                }
            }
            let mut shown = record.clone();
            if let Some(o) = shown.as_object_mut() {
                o.remove("journal");
            }
            Reply::json(200, json!({"result": shown}).to_string())
        }),
    );
    records
}
