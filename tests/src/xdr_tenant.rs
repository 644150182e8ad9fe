//! A Cortex XDR 3.x tenant with state, behind the strict request rules of `vendors::xdr`: it
//! lists incidents by modification time in pages, serves their extra data, keeps comments and
//! manual severities, isolates endpoints (and says so on `get_endpoint`), keeps the hash block
//! list (a hash already listed answers XDR's documented 500) and reports action status. The
//! contract suite runs the real client against it and the in-memory twin side by side.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::{vendors, FakeServer, Recorded, Reply};

#[derive(Default)]
struct Tenant {
    /// Incident id → its `get_incident_extra_data` reply.
    incidents: BTreeMap<String, Value>,
    isolated: HashSet<String>,
    blocked: HashSet<String>,
    actions: HashMap<i64, String>,
}

pub struct XdrTenant {
    pub server: FakeServer,
    state: Arc<Mutex<Tenant>>,
}

fn ok(reply: Value) -> Reply {
    Reply::json(200, json!({"reply": reply}).to_string())
}

fn modified(inc: &Value) -> i64 {
    inc["reply"]["incident"]["modification_time"].as_i64().unwrap_or(0)
}

impl XdrTenant {
    /// A tenant with these incidents (raw extra-data replies), reached with this key.
    pub async fn start(key_id: &str, key: &str, incidents: &[String]) -> XdrTenant {
        let server = FakeServer::start().await;
        vendors::xdr(&server, key_id, key);
        let mut tenant = Tenant::default();
        for raw in incidents {
            let v: Value = serde_json::from_str(raw).expect("an extra-data reply");
            let id = v["reply"]["incident"]["incident_id"].as_str().expect("an incident id").to_string();
            tenant.incidents.insert(id, v);
        }
        let state = Arc::new(Mutex::new(tenant));
        let st = state.clone();
        server.on("POST", "/public_api/v1/*", Reply::dynamic(move |r| answer(&st, r)));
        XdrTenant { server, state }
    }

    pub fn comments(&self, incident: &str) -> Vec<String> {
        let st = self.state.lock().expect("tenant");
        st.incidents.get(incident).map_or(Vec::new(), |i| {
            i["reply"]["incident"]["comments"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
    }
}

fn answer(state: &Mutex<Tenant>, r: &Recorded) -> Reply {
    let mut st = state.lock().expect("tenant");
    let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    let data = &body["request_data"];
    let call = r.path.trim_start_matches("/public_api/v1/").trim_end_matches('/');
    match call {
        "incidents/get_incidents" => {
            let mut list: Vec<&Value> = st.incidents.values().collect();
            for f in data["filters"].as_array().cloned().unwrap_or_default() {
                let v = &f["value"];
                list.retain(|inc| match (f["field"].as_str(), f["operator"].as_str()) {
                    (Some("modification_time"), Some("gte")) => modified(inc) >= v.as_i64().unwrap_or(0),
                    (Some("modification_time"), Some("lte")) => modified(inc) <= v.as_i64().unwrap_or(0),
                    (Some("incident_id_list"), Some("in")) => v.as_array().is_some_and(|ids| ids.contains(&inc["reply"]["incident"]["incident_id"])),
                    _ => true,
                });
            }
            let descending = data["sort"]["keyword"].as_str().is_some_and(|k| k.eq_ignore_ascii_case("desc"));
            list.sort_by_key(|inc| modified(inc));
            if descending {
                list.reverse();
            }
            let from = data["search_from"].as_u64().unwrap_or(0) as usize;
            let to = data["search_to"].as_u64().unwrap_or(100) as usize;
            let page: Vec<Value> = list.iter().skip(from).take(to.saturating_sub(from)).map(|i| i["reply"]["incident"].clone()).collect();
            ok(json!({"total_count": list.len(), "result_count": page.len(), "incidents": page, "restricted_incident_ids": []}))
        }
        "incidents/get_incident_extra_data" => match st.incidents.get(data["incident_id"].as_str().unwrap_or_default()) {
            Some(inc) => Reply::json(200, inc.to_string()),
            // What a tenant answers for an id it does not have (XSOAR's tests record this 500).
            None => Reply::json(
                500,
                json!({"reply": {"err_code": 500, "err_msg": "An error occurred while processing XDR public API", "err_extra": "Incident not found"}}).to_string(),
            ),
        },
        "incidents/update_incident" => {
            let Some(inc) = st.incidents.get_mut(data["incident_id"].as_str().unwrap_or_default()) else {
                return Reply::json(500, json!({"reply": {"err_code": 500, "err_msg": "Incident not found", "err_extra": null}}).to_string());
            };
            let update = &data["update_data"];
            if let Some(text) = update["comment"]["value"].as_str() {
                let comments = &mut inc["reply"]["incident"]["comments"];
                if !comments.is_array() {
                    *comments = json!([]);
                }
                comments.as_array_mut().expect("an array").push(json!(text));
            }
            if let Some(sev) = update["manual_severity"].as_str() {
                inc["reply"]["incident"]["manual_severity"] = json!(sev);
            }
            ok(json!(true))
        }
        "endpoints/isolate" => {
            let endpoint = data["endpoint_id"].as_str().unwrap_or_default().to_string();
            st.isolated.insert(endpoint.clone());
            let id = 1000 + st.actions.len() as i64;
            st.actions.insert(id, endpoint);
            ok(json!({"action_id": id, "status": "PENDING", "endpoints_count": 1}))
        }
        "endpoints/get_endpoint" => {
            let ids: Vec<String> = data["filters"][0]["value"].as_array().cloned().unwrap_or_default().iter().filter_map(|v| v.as_str().map(str::to_string)).collect();
            let endpoints: Vec<Value> = ids
                .iter()
                .map(|id| json!({"endpoint_id": id, "endpoint_name": id, "is_isolated": if st.isolated.contains(id) { "AGENT_ISOLATED" } else { "AGENT_UNISOLATED" }}))
                .collect();
            ok(json!({"total_count": endpoints.len(), "result_count": endpoints.len(), "endpoints": endpoints}))
        }
        "actions/get_action_status" => match st.actions.get(&data["group_action_id"].as_i64().unwrap_or_default()) {
            Some(endpoint) => ok(json!({"data": {endpoint.clone(): "COMPLETED_SUCCESSFULLY"}})),
            None => Reply::json(500, json!({"reply": {"err_code": 500, "err_msg": "Action not found", "err_extra": null}}).to_string()),
        },
        "hash_exceptions/blocklist" => {
            let hashes: Vec<String> = data["hash_list"].as_array().cloned().unwrap_or_default().iter().filter_map(|h| h.as_str().map(str::to_string)).collect();
            if hashes.iter().all(|h| st.blocked.contains(h)) {
                return Reply::json(
                    500,
                    json!({"reply": {"err_code": 500, "err_msg": "An error occurred while processing XDR public API", "err_extra": "All hashes have already been added to the allow or block list"}}).to_string(),
                );
            }
            st.blocked.extend(hashes);
            ok(json!(true))
        }
        _ => Reply::json(404, json!({"reply": {"err_code": 404, "err_msg": "Not Found", "err_extra": call}}).to_string()),
    }
}
