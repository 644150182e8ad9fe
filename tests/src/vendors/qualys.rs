//! Strict fake of Qualys VMDR API v2 and the Asset Management search.

use super::unknown_params;
use crate::{FakeServer, Reply};

/// A `SIMPLE_RETURN` error as Qualys answers (https://docs.qualys.com/en/vm/qweb-all-api/appendix/appendix_d.htm).
pub fn qualys_error(status: u16, code: u32, text: &str) -> Reply {
    Reply::Body(
        status,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<SIMPLE_RETURN><RESPONSE><DATETIME>2024-01-01T00:00:00Z</DATETIME><CODE>{code}</CODE><TEXT>{text}</TEXT></RESPONSE></SIMPLE_RETURN>"
        ),
        vec![("content-type".into(), "text/xml".into())],
    )
}

/// Qualys API v2 (https://docs.qualys.com/en/vm/api/assets/host_lists/host_detection.htm,
/// …/get_started/authentication.htm, appendix D error codes) and the QPS Asset Management
/// search (https://docs.qualys.com/en/ca/api/agents/list_agents.htm): HTTP Basic on every call
/// (401 "Bad Login/Password"); `X-Requested-With` on every v2 call (no documented error: 400
/// here); `action=list` required (1903); only the documented parameters (1901), `status` from
/// New/Active/Fixed/Re-Opened and `show_qds`/`show_results` 0 or 1 (1905); the detection list
/// has no host-name filter (a client sending one gets 1901, as Qualys answers). The search is a
/// POST of an XML `ServiceRequest`.
pub fn qualys(server: &FakeServer, user: &str, password: &str) {
    use base64::Engine;
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
    server.unknown_path(qualys_error(404, 404, "Not found"));
    server.guard(move |r| {
        if r.header("authorization") != Some(expected.as_str()) {
            return Some(qualys_error(401, 2000, "Bad Login/Password"));
        }
        if r.path == "/qps/rest/2.0/search/am/hostasset" {
            if r.method != "POST" || !r.body.contains("<ServiceRequest>") {
                return Some(Reply::Body(
                    400,
                    "<ServiceResponse><responseCode>INVALID_REQUEST</responseCode></ServiceResponse>".into(),
                    vec![],
                ));
            }
            return None;
        }
        if r.header("x-requested-with").is_none() {
            return Some(qualys_error(400, 1903, "Missing required header X-Requested-With"));
        }
        if r.method != "GET" && r.method != "POST" {
            return Some(qualys_error(400, 1908, "request method incompatible"));
        }
        let allowed: &[&str] = match r.path.as_str() {
            "/api/2.0/fo/asset/host/vm/detection/" => &[
                "action",
                "ips",
                "ipv6",
                "ids",
                "id_min",
                "id_max",
                "qids",
                "severities",
                "status",
                "include_vuln_type",
                "show_results",
                "truncation_limit",
                "show_qds",
                "qds_min",
                "qds_max",
                "show_qds_factors",
                "filter_superseded_qids",
                "output_format",
            ],
            "/api/2.0/fo/knowledge_base/vuln/" => &["action", "ids", "id_min", "id_max", "details", "is_patchable", "echo_request"],
            _ => return None,
        };
        if let Some(p) = unknown_params(r, allowed) {
            return Some(qualys_error(400, 1901, &format!("Unrecognized parameter(s): {p}")));
        }
        if r.param("action").as_deref() != Some("list") {
            return Some(qualys_error(400, 1903, "Missing required parameter(s): action"));
        }
        if let Some(status) = r.param("status") {
            if status.split(',').any(|s| !["New", "Active", "Fixed", "Re-Opened"].contains(&s)) {
                return Some(qualys_error(400, 1905, &format!("parameter status has invalid value: {status}")));
            }
        }
        for flag in ["show_qds", "show_results"] {
            if r.param(flag).is_some_and(|v| v != "0" && v != "1") {
                return Some(qualys_error(400, 1905, &format!("parameter {flag} has invalid value")));
            }
        }
        None
    });
}
