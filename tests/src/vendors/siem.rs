//! Strict fakes of the log platforms asked for history: Splunk's search REST API and the Azure
//! Monitor Log Analytics query API (Sentinel), with Entra's token endpoint.

use crate::{FakeServer, Reply};

fn splunk_message(status: u16, kind: &str, text: &str) -> Reply {
    Reply::json(status, serde_json::json!({"messages": [{"type": kind, "text": text}]}).to_string())
}

/// Splunk REST search (https://docs.splunk.com/Documentation/Splunk/latest/RESTREF/RESTsearch;
/// splunk-sdk-python `binding.py`, `client.py`): `Authorization: Bearer <token>` (401 "call not
/// properly authenticated" otherwise); `POST /services/search/jobs` form-encoded with `search`
/// beginning with a generating command (`search …` or `| …`), `exec_mode` normal|blocking|oneshot
/// and only documented parameters (400 otherwise); job status and results are GETs with
/// `output_mode=json`; cancelling is `POST …/control` with `action=cancel`.
pub fn splunk(server: &FakeServer, token: &str) {
    let expected = format!("Bearer {token}");
    server.unknown_path(splunk_message(404, "ERROR", "Not Found"));
    server.guard(move |r| {
        if r.header("authorization") != Some(expected.as_str()) {
            return Some(splunk_message(401, "WARN", "call not properly authenticated"));
        }
        let form: Vec<(String, String)> = form_urlencoded::parse(r.body.as_bytes()).into_owned().collect();
        let field = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/services/search/jobs") => {
                if !r.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) {
                    return Some(splunk_message(400, "ERROR", "Expected a form-encoded body"));
                }
                const KNOWN: &[&str] = &["search", "exec_mode", "earliest_time", "latest_time", "output_mode", "count", "max_count", "id"];
                if let Some((k, _)) = form.iter().find(|(k, _)| !KNOWN.contains(&k.as_str())) {
                    return Some(splunk_message(400, "ERROR", &format!("Argument \"{k}\" is not supported by this handler.")));
                }
                let search = field("search").unwrap_or_default();
                if !(search.starts_with("search ") || search.starts_with('|')) {
                    return Some(splunk_message(400, "FATAL", "Error in 'SearchParser': Missing a search command before '|'."));
                }
                if field("exec_mode").is_some_and(|m| !["normal", "blocking", "oneshot"].contains(&m.as_str())) {
                    return Some(splunk_message(400, "ERROR", "Invalid exec_mode"));
                }
                None
            }
            ("GET", p) if p.starts_with("/services/search/jobs/") => {
                (r.param("output_mode").as_deref() != Some("json")).then(|| splunk_message(400, "ERROR", "this fake answers JSON only"))
            }
            ("POST", p) if p.starts_with("/services/search/jobs/") && p.ends_with("/control") => {
                (field("action").is_none()).then(|| splunk_message(400, "ERROR", "Missing action"))
            }
            _ => Some(splunk_message(404, "ERROR", "Not Found")),
        }
    });
}

fn la_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        serde_json::json!({"error": {"message": message, "code": code, "correlationId": "00000000-0000-0000-0000-000000000000"}})
            .to_string(),
    )
}

/// Log Analytics query API (https://learn.microsoft.com/azure/azure-monitor/logs/api/request-format,
/// /errors) and Entra's token endpoint (v2 client credentials): the token request must be
/// form-encoded with the app's id and secret, `grant_type=client_credentials` and the scope
/// `https://api.loganalytics.io/.default` (400 `invalid_scope` / 401 `invalid_client`); queries
/// `POST /v1/workspaces/{id}/query` with `Authorization: Bearer <token>` (401
/// `AuthenticationFailed` without, 403 `InvalidAuthenticationToken` with another), JSON body
/// `{"query", "timespan"?}` with `Content-Type: application/json` (the API answers an empty 200
/// otherwise), a `timespan` in ISO 8601 (400 `BadArgumentError`), an unknown workspace 404
/// `PathNotFoundError`.
pub fn log_analytics(server: &FakeServer, client_id: &str, client_secret: &str, token: &str, workspace: &str) {
    let (client_id, client_secret, token, workspace) =
        (client_id.to_string(), client_secret.to_string(), token.to_string(), workspace.to_string());
    server.unknown_path(la_error(404, "PathNotFoundError", "The requested path does not exist"));
    server.guard(move |r| {
        if r.path.ends_with("/oauth2/v2.0/token") {
            let form: Vec<(String, String)> = form_urlencoded::parse(r.body.as_bytes()).into_owned().collect();
            let field = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
            if field("client_id") != Some(client_id.as_str()) || field("client_secret") != Some(client_secret.as_str()) {
                return Some(Reply::json(401, r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#));
            }
            if field("grant_type") != Some("client_credentials") || field("scope") != Some("https://api.loganalytics.io/.default") {
                return Some(Reply::json(400, r#"{"error":"invalid_scope","error_description":"AADSTS70011: The provided value for the input parameter 'scope' is not valid.","error_codes":[70011]}"#));
            }
            return None;
        }
        let rest = r.path.strip_prefix("/v1/workspaces/")?;
        let Some((ws, "query")) = rest.split_once('/') else { return None };
        match r.header("authorization") {
            None => return Some(la_error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")),
            Some(a) if a != format!("Bearer {token}") => return Some(la_error(403, "InvalidAuthenticationToken", "The access token is invalid.")),
            _ => {}
        }
        if ws != workspace {
            return Some(la_error(404, "PathNotFoundError", "The requested path does not exist"));
        }
        if r.method != "POST" || !r.header("content-type").is_some_and(|c| c.starts_with("application/json")) {
            return Some(Reply::Body(200, String::new(), vec![]));
        }
        let body = r.json();
        if !body.get("query").is_some_and(|q| q.is_string()) {
            return Some(la_error(400, "BadArgumentError", "The request had some invalid properties"));
        }
        if body.get("timespan").is_some_and(|t| !t.as_str().is_some_and(|t| t.starts_with('P') || t.contains('/'))) {
            return Some(la_error(400, "BadArgumentError", "Invalid timespan"));
        }
        None
    });
}
