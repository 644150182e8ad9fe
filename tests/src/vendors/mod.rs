//! Strict fakes: each vendor's request rules as its documentation states them, installed as a
//! `FakeServer::guard`. A request the vendor would refuse (credential missing or wrong, method,
//! path, a parameter missing, unknown or out of range) gets the vendor's documented error, not
//! the recorded answer. Where the documentation is silent the guard says so and follows the
//! vendor's own client (see the research notes in each function's comment).

use std::net::IpAddr;

use crate::{FakeServer, Recorded, Reply};

mod bedrock_kb;
mod intel;
mod qualys;
mod servicenow_records;
mod siem;
pub use bedrock_kb::bedrock_knowledge_base;
pub use intel::{gti, recorded_future};
pub use qualys::{qualys, qualys_error};
pub use servicenow_records::{servicenow_records, Records};
pub use siem::{log_analytics, splunk};

/// Parameters not in `allowed` (a client sending something the vendor does not document).
fn unknown_params(r: &Recorded, allowed: &[&str]) -> Option<String> {
    r.params()
        .into_iter()
        .map(|(k, _)| k)
        .find(|k| !allowed.contains(&k.as_str()) && !allowed.iter().any(|a| a.ends_with('*') && k.starts_with(&a[..a.len() - 1])))
}

fn decoded(segment: &str) -> String {
    form_urlencoded::parse(format!("v={}", segment.replace('+', "%2B")).as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

fn vt_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, serde_json::json!({"error": {"code": code, "message": message}}).to_string())
}

/// VirusTotal's answer to a request without the right `x-apikey`.
fn vt_key_refused(r: &Recorded, key: &str) -> Option<Reply> {
    match r.header("x-apikey") {
        None => Some(vt_error(401, "AuthenticationRequiredError", "X-Apikey header is missing")),
        Some(k) if k != key => Some(vt_error(401, "WrongCredentialsError", "Wrong API key")),
        _ => None,
    }
}

/// VirusTotal API v3 (https://docs.virustotal.com/reference/authentication,
/// https://docs.virustotal.com/reference/errors, https://docs.virustotal.com/reference/ip-info):
/// `x-apikey` on every request (401 `AuthenticationRequiredError` / `WrongCredentialsError`);
/// objects by id under `ip_addresses`, `domains`, `files` (MD5, SHA-1, SHA-256), `urls` (unpadded
/// base64url of the URL, or its SHA-256); 400 `InvalidArgumentError` for an id of the wrong
/// form, 404 `NotFoundError` for any other path. The object GETs take no query parameters we use.
/// Wrong method: undocumented (405 with the same envelope here).
pub fn virustotal(server: &FakeServer, key: &str) {
    let key = key.to_string();
    server.unknown_path(vt_error(404, "NotFoundError", "Resource not found"));
    server.guard(move |r| {
        if let Some(refused) = vt_key_refused(r, &key) {
            return Some(refused);
        }
        if r.method != "GET" {
            return Some(vt_error(405, "BadRequestError", "Method not allowed"));
        }
        if let Some(p) = unknown_params(r, &[]) {
            return Some(vt_error(400, "BadRequestError", &format!("Unknown parameter {p}")));
        }
        let rest = r.path.strip_prefix("/api/v3/")?;
        let (collection, id) = rest.split_once('/')?;
        let id = decoded(id);
        let valid = match collection {
            "ip_addresses" => id.parse::<IpAddr>().is_ok(),
            "domains" => !id.is_empty() && id.len() <= 253 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "files" => [32, 40, 64].contains(&id.len()) && id.chars().all(|c| c.is_ascii_hexdigit()),
            "urls" => !id.contains(['=', '+', '/']) && !id.is_empty(),
            _ => return None,
        };
        (!valid).then(|| vt_error(400, "InvalidArgumentError", &format!("Invalid {collection} id {id}")))
    });
}

/// AlienVault OTX DirectConnect v1 (https://otx.alienvault.com/api; the vendor's OTXv2 SDK,
/// `IndicatorTypes.py`): `X-OTX-API-KEY`, a wrong key 403 (body undocumented); `general` also
/// answers without a key. `GET /api/v1/indicators/{type}/{value}/{section}` with the SDK's type
/// and section pairs; an unknown pair or path 404, a value that is not of its type 400.
pub fn otx(server: &FakeServer, key: &str) {
    let key = key.to_string();
    server.unknown_path(Reply::json(404, r#"{"detail": "Not found."}"#));
    server.guard(move |r| {
        let rest = r.path.strip_prefix("/api/v1/indicators/")?;
        let parts: Vec<&str> = rest.splitn(3, '/').collect();
        let [kind, value, section] = parts[..] else { return Some(Reply::json(404, r#"{"detail": "Not found."}"#)) };
        match r.header("x-otx-api-key") {
            Some(k) if k != key => return Some(Reply::json(403, r#"{"detail": "Invalid API key."}"#)),
            None if section != "general" => {
                return Some(Reply::json(403, r#"{"detail": "Authentication credentials were not provided."}"#))
            }
            _ => {}
        }
        if r.method != "GET" {
            return Some(Reply::json(405, r#"{"detail": "Method not allowed."}"#));
        }
        let sections: &[&str] = match kind {
            "IPv4" | "IPv6" => &["general", "reputation", "geo", "malware", "url_list", "passive_dns", "http_scans"],
            "domain" => &["general", "geo", "malware", "url_list", "passive_dns", "whois", "http_scans"],
            "hostname" => &["general", "geo", "malware", "url_list", "passive_dns", "http_scans"],
            "url" => &["general", "url_list"],
            "file" => &["general", "analysis"],
            "cve" => &["general"],
            _ => &[],
        };
        if !sections.contains(&section) {
            return Some(Reply::json(404, r#"{"detail": "Not found."}"#));
        }
        if let Some(p) = unknown_params(r, &["limit", "page"]) {
            return Some(Reply::json(400, format!(r#"{{"detail": "unknown parameter {p}"}}"#)));
        }
        let value = decoded(value);
        let valid = match kind {
            "IPv4" => value.parse::<std::net::Ipv4Addr>().is_ok(),
            "IPv6" => value.parse::<std::net::Ipv6Addr>().is_ok(),
            "file" => [32, 40, 64].contains(&value.len()) && value.chars().all(|c| c.is_ascii_hexdigit()),
            "domain" | "hostname" => value.contains('.') && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            _ => !value.is_empty(),
        };
        (!valid).then(|| Reply::json(400, format!(r#"{{"detail": "Invalid {kind}: {value}"}}"#)))
    });
}

fn abuse_error(status: u16, detail: &str, parameter: Option<&str>) -> Reply {
    let mut e = serde_json::json!({"detail": detail, "status": status});
    if let Some(p) = parameter {
        e["source"] = serde_json::json!({"parameter": p});
    }
    Reply::json(status, serde_json::json!({"errors": [e]}).to_string())
}

/// AbuseIPDB API v2 (https://docs.abuseipdb.com/#check-endpoint, #rate-limiting, error
/// handling): key in the `Key` header (or the `key` parameter), 401 with the JSON:API error list
/// otherwise; JSON only with `Accept: application/json` (an HTML page without it);
/// `GET /api/v2/check` with `ipAddress` required (422 when missing or not an address),
/// `maxAgeInDays` 1-365 (422), `verbose` a flag.
pub fn abuseipdb(server: &FakeServer, key: &str) {
    let key = key.to_string();
    server.guard(move |r| {
        let given = r.header("key").map(str::to_string).or_else(|| r.param("key"));
        if given.as_deref() != Some(key.as_str()) {
            return Some(abuse_error(
                401,
                "Authentication failed. Your API key is either missing, incorrect, or revoked. Note: The APIv2 key differs from the APIv1 key.",
                None,
            ));
        }
        if r.header("accept") != Some("application/json") {
            return Some(Reply::Body(200, "<!DOCTYPE html><html><body>AbuseIPDB</body></html>".into(), vec![("content-type".into(), "text/html".into())]));
        }
        if r.path != "/api/v2/check" {
            return None;
        }
        if r.method != "GET" {
            return Some(abuse_error(405, "The method is not allowed for this endpoint.", None));
        }
        if let Some(p) = unknown_params(r, &["ipAddress", "maxAgeInDays", "verbose", "key"]) {
            return Some(abuse_error(422, &format!("Unknown parameter {p}."), Some(&p)));
        }
        match r.param("ipAddress") {
            None => return Some(abuse_error(422, "The ip address field is required.", Some("ipAddress"))),
            Some(ip) if ip.parse::<IpAddr>().is_err() => {
                return Some(abuse_error(
                    422,
                    "The ip address must be a valid IPv4 or IPv6 address (e.g. 8.8.8.8 or 2001:4860:4860::8888).",
                    Some("ipAddress"),
                ))
            }
            _ => {}
        }
        match r.param("maxAgeInDays").map(|d| d.parse::<u32>()) {
            Some(Ok(1..=365)) | None => None,
            Some(_) => Some(abuse_error(422, "The max age in days must be between 1 and 365.", Some("maxAgeInDays"))),
        }
    });
}

/// Shodan (https://developer.shodan.io/api): the key is the `key` query parameter (401
/// otherwise; shodan-python reads `{"error": ...}`); `GET /shodan/host/{ip}` with `history` and
/// `minify` optional booleans; an address that is not one `{"error": "Invalid IP"}`.
pub fn shodan(server: &FakeServer, key: &str) {
    let key = key.to_string();
    server.unknown_path(Reply::json(404, r#"{"error": "Not found"}"#));
    server.guard(move |r| {
        if r.param("key").as_deref() != Some(key.as_str()) {
            return Some(Reply::json(401, r#"{"error": "Please provide a valid API key."}"#));
        }
        if r.method != "GET" {
            return Some(Reply::json(405, r#"{"error": "Method not allowed"}"#));
        }
        if let Some(p) = unknown_params(r, &["key", "history", "minify"]) {
            return Some(Reply::json(400, format!(r#"{{"error": "Unknown parameter {p}"}}"#)));
        }
        let ip = r.path.strip_prefix("/shodan/host/")?;
        decoded(ip).parse::<IpAddr>().is_err().then(|| Reply::json(400, r#"{"error": "Invalid IP"}"#))
    });
}

/// Tenable Vulnerability Management workbenches (https://developer.tenable.com/docs/authorization,
/// the workbench API reference, https://developer.tenable.com/docs/workbench-filters):
/// `X-ApiKeys: accessKey=…; secretKey=…;` (401 `Invalid Credentials`); the four workbench GETs;
/// `date_range` a whole number of days, `all_fields` `full|default`, `filter.search_type`
/// `and|or`, filters as `filter.N.filter|quality|value` triples (quality `match`, `nmatch`, `eq`,
/// `neq`), at most 10; 400 otherwise.
pub fn tenable(server: &FakeServer, access: &str, secret: &str) {
    let (access, secret) = (access.to_string(), secret.to_string());
    server.unknown_path(Reply::json(404, r#"{"statusCode": 404, "error": "Not Found", "message": "Not Found"}"#));
    server.guard(move |r| {
        let keys: Vec<(String, String)> = r
            .header("x-apikeys")
            .unwrap_or_default()
            .split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let get = |n: &str| keys.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        if get("accessKey").as_deref() != Some(access.as_str()) || get("secretKey").as_deref() != Some(secret.as_str()) {
            return Some(Reply::json(401, r#"{"statusCode": 401, "error": "Unauthorized", "message": "Invalid Credentials"}"#));
        }
        let bad =
            |m: String| Some(Reply::json(400, serde_json::json!({"statusCode": 400, "error": "Bad Request", "message": m}).to_string()));
        if r.method != "GET" {
            return Some(Reply::json(405, r#"{"statusCode": 405, "error": "Method Not Allowed"}"#));
        }
        let segments: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        let filters_allowed = match segments[..] {
            ["workbenches", "assets"] | ["workbenches", "assets", _, "vulnerabilities"] | ["workbenches", "vulnerabilities", _, "info"] => {
                true
            }
            ["workbenches", "assets", _, "info"] => false,
            _ => return None,
        };
        if let ["workbenches", "vulnerabilities", plugin, "info"] = segments[..] {
            if plugin.parse::<u64>().is_err() {
                return bad(format!("plugin_id must be an integer: {plugin}"));
            }
        }
        if let ["workbenches", "assets", uuid, _] = segments[..] {
            if uuid.len() != 36 || uuid.chars().filter(|c| *c == '-').count() != 4 {
                return bad(format!("asset_id must be a UUID: {uuid}"));
            }
        }
        let params = r.params();
        let mut filters = std::collections::BTreeMap::<String, Vec<String>>::new();
        for (k, v) in &params {
            match k.as_str() {
                "date_range" if v.parse::<u32>().is_err() => return bad(format!("date_range must be a whole number: {v}")),
                "all_fields" if v != "full" && v != "default" => return bad(format!("all_fields must be full or default: {v}")),
                "filter.search_type" if !filters_allowed || (v != "and" && v != "or") => return bad(format!("filter.search_type: {v}")),
                "date_range" | "all_fields" | "filter.search_type" => {}
                other if other.starts_with("filter.") && filters_allowed => {
                    let mut it = other["filter.".len()..].splitn(2, '.');
                    let (Some(n), Some(part)) = (it.next(), it.next()) else { return bad(format!("malformed filter {other}")) };
                    if n.parse::<u8>().is_err() || !["filter", "quality", "value"].contains(&part) {
                        return bad(format!("malformed filter {other}"));
                    }
                    if part == "quality" && !["match", "nmatch", "eq", "neq"].contains(&v.as_str()) {
                        return bad(format!("unknown filter quality {v}"));
                    }
                    filters.entry(n.to_string()).or_default().push(part.to_string());
                }
                other => return bad(format!("unknown parameter {other}")),
            }
        }
        if filters.len() > 10 {
            return bad("You cannot specify more than 10 filters".into());
        }
        filters.values().any(|parts| parts.len() != 3).then(|| {
            Reply::json(400, r#"{"statusCode": 400, "error": "Bad Request", "message": "a filter needs filter, quality and value"}"#)
        })
    });
}

fn okta_error(status: u16, code: &str, summary: &str) -> Reply {
    Reply::json(
        status,
        serde_json::json!({"errorCode": code, "errorSummary": summary, "errorLink": code, "errorId": "oaeFAKE", "errorCauses": []})
            .to_string(),
    )
}

/// Okta Management API (https://developer.okta.com/docs/reference/error-codes/, the Users,
/// User Lifecycle and System Log references): `Authorization: SSWS <token>` (401 `E0000011`);
/// the reads are GETs, `lifecycle/suspend` a POST (405 `E0000022` otherwise); `/logs` takes
/// `since`, `until`, `after`, `filter`, `q`, `sortOrder` (ASCENDING|DESCENDING), `limit` (0-1000)
/// (400 `E0000001`/`E0000053`); an unknown path 404 `E0000007`.
pub fn okta(server: &FakeServer, token: &str) {
    let expected = format!("SSWS {token}");
    server.unknown_path(okta_error(404, "E0000007", "Not found: Resource not found"));
    server.guard(move |r| {
        if r.header("authorization") != Some(expected.as_str()) {
            return Some(okta_error(401, "E0000011", "Invalid token provided"));
        }
        let suspend = r.path.ends_with("/lifecycle/suspend");
        if (suspend && r.method != "POST") || (!suspend && r.method != "GET") {
            return Some(okta_error(405, "E0000022", "The endpoint does not support the provided HTTP method"));
        }
        if r.path == "/api/v1/logs" {
            if let Some(p) = unknown_params(r, &["since", "until", "after", "filter", "q", "sortOrder", "limit"]) {
                return Some(okta_error(400, "E0000053", &format!("Invalid parameter: {p}")));
            }
            if r.param("sortOrder").is_some_and(|o| o != "ASCENDING" && o != "DESCENDING") {
                return Some(okta_error(400, "E0000001", "Api validation failed: sortOrder"));
            }
            if r.param("limit").is_some_and(|l| l.parse::<u32>().map_or(true, |n| n > 1000)) {
                return Some(okta_error(400, "E0000001", "Api validation failed: limit"));
            }
            for t in ["since", "until"] {
                if r.param(t).is_some_and(|v| time_of(&v).is_none()) {
                    return Some(okta_error(
                        400,
                        "E0000001",
                        &format!("Api validation failed: '{t}': The date format in your query is not recognized."),
                    ));
                }
            }
        } else if let Some(p) = unknown_params(r, &["expand"]) {
            return Some(okta_error(400, "E0000001", &format!("Api validation failed: {p}")));
        }
        None
    });
}

/// An RFC 3339 time (`2026-11-27T10:00:00.000Z`).
fn time_of(v: &str) -> Option<()> {
    let (date, time) = v.split_once('T')?;
    (date.len() == 10
        && date.chars().filter(|c| *c == '-').count() == 2
        && (time.ends_with('Z') || time.contains('+') || time.contains('-')))
    .then_some(())
}

fn graph_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        serde_json::json!({"error": {"code": code, "message": message, "innerError": {"date": "2026-11-27T00:00:00", "request-id": "fake", "client-request-id": "fake"}}})
            .to_string(),
    )
}

/// Microsoft Graph v1.0 and its token endpoint (https://learn.microsoft.com/graph/errors,
/// https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow,
/// https://learn.microsoft.com/graph/aad-advanced-queries): the token is a form POST of
/// `client_credentials` for `https://graph.microsoft.com/.default` (400 `invalid_request` /
/// `invalid_scope`, 401 `invalid_client`); Graph calls carry `Authorization: Bearer <token>`
/// (401 `InvalidAuthenticationToken`); filters on `onPremisesSamAccountName` and OData casts need
/// `$count=true` with `ConsistencyLevel: eventual` (400 `Request_UnsupportedQuery`); a `$count`
/// without the header 400 `Request_BadRequest`; the user update is a PATCH of JSON.
pub fn graph(server: &FakeServer, client_id: &str, client_secret: &str, token: &str) {
    let (client_id, client_secret, bearer) = (client_id.to_string(), client_secret.to_string(), format!("Bearer {token}"));
    server.guard(move |r| {
        if r.path.ends_with("/token") {
            let form: Vec<(String, String)> = form_urlencoded::parse(r.body.as_bytes()).into_owned().collect();
            let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            let aad = |status: u16, error: &str, description: &str| {
                Reply::json(status, serde_json::json!({"error": error, "error_description": description, "error_codes": [0]}).to_string())
            };
            if r.method != "POST" || !r.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) {
                return Some(aad(400, "invalid_request", "AADSTS900144: The request body must contain the following parameter: 'grant_type'."));
            }
            if get("grant_type") != Some("client_credentials") {
                return Some(aad(400, "unsupported_grant_type", "AADSTS70003"));
            }
            if get("scope") != Some("https://graph.microsoft.com/.default") {
                return Some(aad(400, "invalid_scope", "AADSTS70011: The provided value for the input parameter 'scope' is not valid."));
            }
            if get("client_id") != Some(client_id.as_str()) || get("client_secret") != Some(client_secret.as_str()) {
                return Some(aad(401, "invalid_client", "AADSTS7000215: Invalid client secret provided."));
            }
            return None;
        }
        match r.header("authorization") {
            None => return Some(graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")),
            Some(a) if a != bearer => return Some(graph_error(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.")),
            _ => {}
        }
        let allowed_method = if r.method == "PATCH" { r.path.starts_with("/v1.0/users/") } else { r.method == "GET" };
        if !allowed_method {
            return Some(graph_error(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target."));
        }
        if r.method == "PATCH" && !r.header("content-type").is_some_and(|c| c.starts_with("application/json")) {
            return Some(graph_error(415, "BadRequest", "Content-Type must be application/json."));
        }
        let advanced = r.header("consistencylevel") == Some("eventual") && r.param("$count").as_deref() == Some("true");
        if r.param("$count").is_some() && r.header("consistencylevel") != Some("eventual") {
            return Some(graph_error(400, "Request_BadRequest", "$count is not currently supported."));
        }
        let needs_advanced = r.param("$filter").is_some_and(|f| f.contains("onPremisesSamAccountName")) || r.path.contains("/microsoft.graph.");
        if needs_advanced && !advanced {
            return Some(graph_error(
                400,
                "Request_UnsupportedQuery",
                "Operation not supported because the required parameters might be missing. Try adding $count=true query parameter and ConsistencyLevel:eventual header.",
            ));
        }
        unknown_params(r, &["$select", "$filter", "$top", "$count", "$skiptoken", "$orderby"])
            .map(|p| graph_error(400, "BadRequest", &format!("Query option '{p}' is not allowed.")))
    });
}

fn snow_error(status: u16, message: &str, detail: &str) -> Reply {
    Reply::json(status, serde_json::json!({"error": {"message": message, "detail": detail}, "status": "failure"}).to_string())
}

/// ServiceNow Table API and CMDB Instance API (the Table API and CMDB Instance API references,
/// REST API HTTP response codes): Basic or Bearer authorization (401 `User Not Authenticated`);
/// GET only here (405); `sysparm_display_value` true|false|all, `sysparm_limit` a positive
/// number, only the documented `sysparm_*` parameters (400); a URI that is no API 400 `Requested
/// URI does not represent any resource`. Unknown fields in an encoded query are ignored, as the
/// instance does.
pub fn servicenow(server: &FakeServer, authorization: &str) {
    let expected = authorization.to_string();
    server.unknown_path(snow_error(400, "Requested URI does not represent any resource", ""));
    server.guard(move |r| {
        if r.header("authorization") != Some(expected.as_str()) {
            return Some(snow_error(401, "User Not Authenticated", "Required to provide Auth information"));
        }
        if r.method != "GET" {
            return Some(snow_error(405, "Method not Supported", "The HTTP action is not allowed for the requested REST API"));
        }
        let allowed: &[&str] = if r.path.starts_with("/api/now/cmdb/instance/") {
            &["sysparm_query", "sysparm_limit", "sysparm_offset", "sysparm_relation_limit", "sysparm_relation_offset"]
        } else {
            &[
                "sysparm_query",
                "sysparm_limit",
                "sysparm_offset",
                "sysparm_fields",
                "sysparm_display_value",
                "sysparm_exclude_reference_link",
                "sysparm_view",
                "sysparm_no_count",
            ]
        };
        if let Some(p) = unknown_params(r, allowed) {
            return Some(snow_error(400, "Invalid parameter", &p));
        }
        if r.param("sysparm_display_value").is_some_and(|v| !["true", "false", "all"].contains(&v.as_str())) {
            return Some(snow_error(400, "Invalid sysparm_display_value", "must be true, false or all"));
        }
        r.param("sysparm_limit")
            .filter(|l| l.parse::<u32>().map_or(true, |n| n == 0))
            .map(|l| snow_error(400, &format!("limit is {l}"), "sysparm_limit must be a positive number"))
    });
}

fn xdr_error(status: u16, message: &str, extra: &str) -> Reply {
    Reply::json(status, serde_json::json!({"reply": {"err_code": status, "err_msg": message, "err_extra": extra}}).to_string())
}

/// Whether a standard or advanced Cortex XDR API key signed this request: standard sends the key
/// itself in `Authorization`; advanced sends `sha256(key + nonce + timestamp)` in lower-case hex
/// with a 64-character alphanumeric `x-xdr-nonce` and a millisecond `x-xdr-timestamp`.
fn xdr_authorised(r: &Recorded, key_id: &str, key: &str) -> bool {
    use sha2::Digest;
    if r.header("x-xdr-auth-id") != Some(key_id) {
        return false;
    }
    let Some(auth) = r.header("authorization") else { return false };
    match (r.header("x-xdr-nonce"), r.header("x-xdr-timestamp")) {
        (Some(nonce), Some(ts)) => {
            let fresh = ts.parse::<i64>().is_ok_and(|t| {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
                (t - now).abs() < 5 * 60 * 1000
            });
            nonce.len() == 64
                && nonce.chars().all(|c| c.is_ascii_alphanumeric())
                && fresh
                && auth == hex::encode(sha2::Sha256::digest(format!("{key}{nonce}{ts}").as_bytes()))
        }
        _ => auth == key,
    }
}

/// The filter fields and operators an XDR list call documents.
fn xdr_filters(body: &serde_json::Value, fields: &[&str], operators: &[&str]) -> Result<(), String> {
    let Some(filters) = body.get("filters") else { return Ok(()) };
    for f in filters.as_array().ok_or("filters must be a list")? {
        let field = f.get("field").and_then(|v| v.as_str()).ok_or("a filter without field")?;
        let op = f.get("operator").and_then(|v| v.as_str()).ok_or("a filter without operator")?;
        if f.get("value").is_none() {
            return Err(format!("filter {field} without value"));
        }
        if !fields.contains(&field) {
            return Err(format!("{field} is not a valid filter field"));
        }
        if !operators.contains(&op) {
            return Err(format!("{op} is not a valid operator"));
        }
    }
    Ok(())
}

/// A page of at most 100 (`search_from` ≤ `search_to`, 100 apart at most).
fn xdr_page(body: &serde_json::Value) -> Result<(), String> {
    let from = body.get("search_from").map_or(Some(0), |v| v.as_u64()).ok_or("search_from must be an integer")?;
    let to = body.get("search_to").map_or(Some(from + 100), |v| v.as_u64()).ok_or("search_to must be an integer")?;
    if to < from || to - from > 100 {
        return Err(format!("search_from {from} to search_to {to}: at most 100 results per request"));
    }
    Ok(())
}

fn xdr_sort(body: &serde_json::Value, fields: &[&str]) -> Result<(), String> {
    let Some(sort) = body.get("sort") else { return Ok(()) };
    let field = sort.get("field").and_then(|v| v.as_str()).ok_or("sort needs field")?;
    let keyword = sort.get("keyword").and_then(|v| v.as_str()).ok_or("sort needs keyword")?;
    if !fields.contains(&field) || !["asc", "desc", "ASC", "DESC"].contains(&keyword) {
        return Err(format!("cannot sort by {field} {keyword}"));
    }
    Ok(())
}

/// What an XDR call requires of its `request_data`, as the API reference documents it.
fn xdr_request(call: &str, data: &serde_json::Value) -> Result<(), String> {
    let string = |k: &str| data.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty()).map(drop).ok_or(format!("{k} is required"));
    let severity = |v: Option<&serde_json::Value>| match v.and_then(|v| v.as_str()) {
        Some("low" | "medium" | "high" | "critical" | "") | None => Ok(()),
        Some(s) => Err(format!("{s} is not a valid severity")),
    };
    match call {
        "incidents/get_incidents" => {
            xdr_filters(
                data,
                &[
                    "modification_time",
                    "creation_time",
                    "incident_id_list",
                    "description",
                    "alert_sources",
                    "status",
                    "incident_id",
                    "starred",
                ],
                &["in", "contains", "gte", "lte", "eq", "neq"],
            )?;
            xdr_sort(data, &["creation_time", "incident_id", "modification_time"])?;
            xdr_page(data)
        }
        "incidents/get_incident_extra_data" => {
            string("incident_id")?;
            match data.get("alerts_limit") {
                Some(v) if !v.is_u64() => Err("alerts_limit must be an integer".into()),
                _ => Ok(()),
            }
        }
        "incidents/update_incident" => {
            string("incident_id")?;
            let update = data.get("update_data").filter(|u| u.is_object()).ok_or("update_data is required")?;
            if let Some(c) = update.get("comment") {
                if c.get("comment_action").and_then(|a| a.as_str()) != Some("add") || !c.get("value").is_some_and(|v| v.is_string()) {
                    return Err("comment needs comment_action and value".into());
                }
            }
            severity(update.get("manual_severity"))
        }
        "endpoints/get_endpoint" => {
            xdr_filters(
                data,
                &[
                    "endpoint_id_list",
                    "endpoint_status",
                    "dist_name",
                    "first_seen",
                    "last_seen",
                    "ip_list",
                    "group_name",
                    "platform",
                    "alias",
                    "isolate",
                    "hostname",
                    "public_ip_list",
                ],
                &["in", "gte", "lte", "eq"],
            )?;
            xdr_page(data)
        }
        "endpoints/isolate" => string("endpoint_id"),
        "actions/get_action_status" => {
            data.get("group_action_id").filter(|v| v.is_i64()).map(drop).ok_or("group_action_id must be an integer".into())
        }
        "hash_exceptions/blocklist" => {
            if !data.get("hash_list").and_then(|h| h.as_array()).is_some_and(|h| !h.is_empty() && h.iter().all(|x| x.is_string())) {
                return Err("hash_list is required".into());
            }
            match data.get("incident_id") {
                Some(v) if !v.is_i64() => Err("incident_id must be an integer".into()),
                _ => Ok(()),
            }
        }
        "xql/start_xql_query" => string("query"),
        "xql/get_query_results" => {
            string("query_id")?;
            if data.get("format").and_then(|f| f.as_str()).is_some_and(|f| f != "json" && f != "csv") {
                return Err("format is json or csv".into());
            }
            match data.get("limit").and_then(|l| l.as_u64()) {
                Some(n) if n > 1000 => Err("limit is at most 1000".into()),
                _ => Ok(()),
            }
        }
        "xql/get_query_results_stream" => string("stream_id"),
        "case/search" => {
            xdr_filters(
                data,
                &[
                    "case_id",
                    "starred",
                    "case_domain",
                    "severity",
                    "creation_time",
                    "last_update_time",
                    "modification_time",
                    "status_progress",
                    "assigned_user",
                    "assigned_user_pretty",
                ],
                &["in", "nin", "gte", "lte", "eq", "neq", "contains", "not_contains"],
            )?;
            xdr_sort(data, &["case_id", "severity", "creation_time", "modification_time"])?;
            xdr_page(data)
        }
        "issue/search" => {
            xdr_filters(
                data,
                &["id", "external_id", "severity", "_insert_time", "last_modified", "status.progress", "observation_time", "category"],
                &["in", "gte", "lte"],
            )?;
            xdr_sort(data, &["id", "severity", "observation_time"])?;
            if let Some(f) = data.get("include_fields") {
                let ok = f.as_array().is_some_and(|a| a.iter().all(|x| matches!(x.as_str(), Some("normalized_fields" | "custom_fields"))));
                if !ok {
                    return Err("include_fields holds normalized_fields and custom_fields only".into());
                }
            }
            xdr_page(data)
        }
        c if c.starts_with("case/update/") => {
            let update = data.get("update_data").and_then(|u| u.as_object()).filter(|u| !u.is_empty()).ok_or("update_data is required")?;
            severity(update.get("user_severity"))
        }
        _ => Ok(()),
    }
}

/// Cortex XDR public API (https://docs-cortex.paloaltonetworks.com/r/Cortex-XDR-REST-API/Get-Started-with-Cortex-XDR-APIs
/// and each call's page): standard or advanced key (401 with the `err_code` envelope otherwise);
/// every call a POST of `{"request_data": {...}}` (5.x `entries/insert` unwrapped, `case/artifacts`
/// a GET); each call's required fields, filter fields, operators, sort fields and pages of 100
/// (400 `err_code` envelope otherwise). An unknown path or method is not documented: 404 here.
pub fn xdr(server: &FakeServer, key_id: &str, key: &str) {
    let (key_id, key) = (key_id.to_string(), key.to_string());
    server.unknown_path(xdr_error(404, "Not Found", "the requested URL was not found on the server"));
    server.guard(move |r| {
        if !xdr_authorised(r, &key_id, &key) {
            return Some(xdr_error(
                401,
                "\tUnauthorized access. An issue occurred during authentication. This can indicate an incorrect key, id, or other invalid authentication parameters.",
                "EXTRA_DATA",
            ));
        }
        let call = r.path.strip_prefix("/public_api/v1/").or_else(|| r.path.strip_prefix("/public_api/v2/"))?.trim_end_matches('/');
        if call.starts_with("case/artifacts/") {
            return (r.method != "GET").then(|| xdr_error(405, "Method Not Allowed", call));
        }
        if r.method != "POST" {
            return Some(xdr_error(405, "Method Not Allowed", call));
        }
        let body: serde_json::Value = match serde_json::from_str(&r.body) {
            Ok(b) => b,
            Err(e) => return Some(xdr_error(400, "Invalid JSON", &e.to_string())),
        };
        if call == "entries/insert" {
            let ok = body.get("id").is_some_and(|v| v.is_string()) && body.get("data").is_some_and(|v| v.is_string());
            return (!ok).then(|| xdr_error(400, "id and data are required", call));
        }
        let Some(data) = body.get("request_data").filter(|d| d.is_object()) else {
            return Some(xdr_error(400, "request_data is required", call));
        };
        xdr_request(call, data).err().map(|why| xdr_error(400, &why, call))
    });
}

fn openai_error(status: u16, message: &str, kind: &str, code: Option<&str>) -> Reply {
    Reply::json(status, serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}}).to_string())
}

/// OpenAI Chat Completions (https://platform.openai.com/docs/api-reference/chat/create,
/// https://platform.openai.com/docs/guides/structured-outputs, error codes guide):
/// `Authorization: Bearer <key>` (401 `invalid_api_key`); `POST /v1/chat/completions` with
/// `model` and non-empty `messages` of known roles; `response_format` `json_schema` needs
/// `name` and `schema`; reasoning models (o1/o3/o4/gpt-5) refuse `max_tokens` and a
/// `temperature` other than 1 (400 `unsupported_parameter`); unknown top-level fields 400.
pub fn openai(server: &FakeServer, key: &str) {
    let expected = format!("Bearer {key}");
    server.unknown_path(openai_error(404, "Invalid URL", "invalid_request_error", None));
    server.guard(move |r| {
        if r.header("authorization") != Some(expected.as_str()) {
            return Some(openai_error(401, "Incorrect API key provided.", "invalid_request_error", Some("invalid_api_key")));
        }
        if !r.path.ends_with("/chat/completions") {
            return None;
        }
        if r.method != "POST" {
            return Some(openai_error(405, "Method not allowed", "invalid_request_error", None));
        }
        let bad = |m: &str| Some(openai_error(400, m, "invalid_request_error", None));
        let body: serde_json::Value = match serde_json::from_str(&r.body) {
            Ok(b) => b,
            Err(_) => return bad("We could not parse the JSON body of your request."),
        };
        let allowed = [
            "model",
            "messages",
            "response_format",
            "max_tokens",
            "max_completion_tokens",
            "temperature",
            "seed",
            "top_p",
            "n",
            "stop",
            "user",
        ];
        if let Some(k) = body.as_object().and_then(|o| o.keys().find(|k| !allowed.contains(&k.as_str()))) {
            return bad(&format!("Unrecognized request argument supplied: {k}"));
        }
        let model = body["model"].as_str().unwrap_or_default().to_ascii_lowercase();
        if model.is_empty() {
            return bad("you must provide a model parameter");
        }
        let messages = body["messages"].as_array().filter(|m| !m.is_empty());
        if !messages.is_some_and(|m| {
            m.iter().all(|x| matches!(x["role"].as_str(), Some("system" | "developer" | "user" | "assistant")) && x["content"].is_string())
        }) {
            return bad("'messages' must be a non-empty list of messages with a role and content");
        }
        if let Some(rf) = body.get("response_format") {
            if rf["type"] == "json_schema" && !(rf["json_schema"]["name"].is_string() && rf["json_schema"]["schema"].is_object()) {
                return bad("response_format json_schema needs name and schema");
            }
        }
        let reasoning = ["o1", "o3", "o4", "gpt-5"].iter().any(|p| model == *p || model.starts_with(&format!("{p}-")));
        if reasoning && body.get("max_tokens").is_some() {
            return Some(openai_error(
                400,
                "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
                "invalid_request_error",
                Some("unsupported_parameter"),
            ));
        }
        if reasoning && body.get("temperature").is_some_and(|t| t.as_f64() != Some(1.0)) {
            return Some(openai_error(
                400,
                "Unsupported value: 'temperature' does not support 0 with this model.",
                "invalid_request_error",
                Some("unsupported_value"),
            ));
        }
        None
    });
}

fn anthropic_error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(status, serde_json::json!({"type": "error", "error": {"type": kind, "message": message}}).to_string())
}

/// Anthropic Messages API (https://docs.anthropic.com/en/api/messages, /en/api/errors,
/// /en/api/versioning): `x-api-key` (401 `authentication_error`), `anthropic-version` required
/// (400 `invalid_request_error`); `POST /v1/messages` with `model`, `max_tokens` and non-empty
/// `messages` whose roles are user/assistant (the system prompt is the top-level `system`); a
/// forced tool needs that tool in `tools` with an `input_schema`.
pub fn anthropic(server: &FakeServer, key: &str) {
    let key = key.to_string();
    server.unknown_path(anthropic_error(404, "not_found_error", "Not found"));
    server.guard(move |r| {
        if r.header("x-api-key") != Some(key.as_str()) {
            return Some(anthropic_error(401, "authentication_error", "invalid x-api-key"));
        }
        if r.header("anthropic-version").is_none() {
            return Some(anthropic_error(400, "invalid_request_error", "anthropic-version: header is required"));
        }
        if r.path != "/v1/messages" {
            return None;
        }
        if r.method != "POST" {
            return Some(anthropic_error(405, "invalid_request_error", "Method not allowed"));
        }
        let bad = |m: &str| Some(anthropic_error(400, "invalid_request_error", m));
        let body: serde_json::Value = match serde_json::from_str(&r.body) {
            Ok(b) => b,
            Err(_) => return bad("invalid JSON"),
        };
        if !body["model"].is_string() {
            return bad("model: Field required");
        }
        if !body["max_tokens"].is_u64() {
            return bad("max_tokens: Field required");
        }
        let messages = body["messages"].as_array().filter(|m| !m.is_empty());
        if !messages.is_some_and(|m| m.iter().all(|x| matches!(x["role"].as_str(), Some("user" | "assistant")))) {
            return bad("messages: roles must be user or assistant; use the top-level system parameter");
        }
        if let Some(name) = body["tool_choice"]["name"].as_str() {
            let declared = body["tools"].as_array().is_some_and(|t| t.iter().any(|x| x["name"] == name && x["input_schema"].is_object()));
            if !declared {
                return bad("tool_choice names a tool that is not in tools");
            }
        }
        None
    });
}

/// A Slack incoming webhook (https://api.slack.com/messaging/webhooks, "Handling errors"):
/// POST of JSON with `text` or `blocks` (400 `invalid_payload` / `no_text`); the URL is the
/// credential (404 `no_service` for another path).
pub fn slack_webhook(server: &FakeServer, path: &str) {
    let path = path.to_string();
    server.guard(move |r| {
        if r.path != path {
            return Some(Reply::Body(404, "no_service".into(), vec![]));
        }
        if r.method != "POST" {
            return Some(Reply::Body(405, "invalid_method".into(), vec![]));
        }
        let Ok(body) = serde_json::from_str::<serde_json::Value>(&r.body) else {
            return Some(Reply::Body(400, "invalid_payload".into(), vec![]));
        };
        (!body["text"].is_string() && !body["blocks"].is_array()).then(|| Reply::Body(400, "no_text".into(), vec![]))
    });
}

/// A Microsoft Teams workflow webhook ("Post to a channel when a webhook request is received",
/// https://learn.microsoft.com/connectors/teams/): POST of a message with Adaptive Card
/// attachments (`contentType` `application/vnd.microsoft.card.adaptive`, `content.type`
/// `AdaptiveCard`); 400 otherwise; the URL (with its `sig`) is the credential.
pub fn teams_workflow(server: &FakeServer, path: &str) {
    let path = path.to_string();
    server.guard(move |r| {
        if r.path != path {
            return Some(Reply::json(404, r#"{"error": {"code": "WorkflowNotFound"}}"#));
        }
        if r.method != "POST" {
            return Some(Reply::json(405, r#"{"error": {"code": "MethodNotAllowed"}}"#));
        }
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        let cards = body["attachments"].as_array().filter(|a| !a.is_empty());
        let ok = body["type"] == "message"
            && cards.is_some_and(|a| {
                a.iter().all(|c| c["contentType"] == "application/vnd.microsoft.card.adaptive" && c["content"]["type"] == "AdaptiveCard")
            });
        (!ok).then(|| {
            Reply::json(
                400,
                r#"{"error": {"code": "InvalidRequestContent", "message": "The request content is not an Adaptive Card message."}}"#,
            )
        })
    });
}

/// Amazon SES v2 `SendEmail` (https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html):
/// SigV4-signed (`Authorization: AWS4-HMAC-SHA256 ...` for service `ses`, 403 otherwise);
/// `POST /v2/email/outbound-emails` with `Content` and, for a simple message, `Destination` and
/// `FromEmailAddress` (400 `BadRequestException`).
pub fn ses(server: &FakeServer) {
    server.guard(|r| {
        let signed = r.header("authorization").is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 ") && a.contains("/ses/aws4_request"));
        if !signed {
            return Some(
                Reply::json(403, r#"{"message": "Missing Authentication Token"}"#)
                    .with_header("x-amzn-errortype", "MissingAuthenticationTokenException"),
            );
        }
        if r.path != "/v2/email/outbound-emails" || r.method != "POST" {
            return None;
        }
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        let ok = body["FromEmailAddress"].is_string()
            && body["Destination"]["ToAddresses"].as_array().is_some_and(|a| !a.is_empty())
            && body["Content"]["Simple"]["Subject"]["Data"].is_string()
            && body["Content"]["Simple"]["Body"].is_object();
        (!ok).then(|| Reply::json(400, r#"{"message": "Missing required field"}"#).with_header("x-amzn-errortype", "BadRequestException"))
    });
}

/// Amazon Bedrock Runtime `Converse` (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html):
/// SigV4 for service `bedrock` (403 `MissingAuthenticationTokenException` otherwise); `POST
/// /model/{modelId}/converse` with non-empty `messages` (roles user/assistant, `content` a list of
/// blocks); a forced tool must be among `toolConfig.tools` (400 `ValidationException`).
pub fn bedrock(server: &FakeServer) {
    server.guard(|r| {
        let signed = r.header("authorization").is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 ") && a.contains("/bedrock/aws4_request"));
        if !signed {
            return Some(
                Reply::json(403, r#"{"message": "Missing Authentication Token"}"#)
                    .with_header("x-amzn-errortype", "MissingAuthenticationTokenException"),
            );
        }
        if !(r.path.starts_with("/model/") && r.path.ends_with("/converse")) {
            return Some(
                Reply::json(404, r#"{"message": "Unknown operation"}"#).with_header("x-amzn-errortype", "UnknownOperationException"),
            );
        }
        let invalid = |m: &str| {
            Some(Reply::json(400, serde_json::json!({"message": m}).to_string()).with_header("x-amzn-errortype", "ValidationException"))
        };
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        let messages = body["messages"].as_array().filter(|m| !m.is_empty());
        if !messages.is_some_and(|m| m.iter().all(|x| matches!(x["role"].as_str(), Some("user" | "assistant")) && x["content"].is_array()))
        {
            return invalid("messages: a non-empty list of user/assistant messages with content blocks is required");
        }
        if let Some(name) = body["toolConfig"]["toolChoice"]["tool"]["name"].as_str() {
            let declared = body["toolConfig"]["tools"].as_array().is_some_and(|t| t.iter().any(|x| x["toolSpec"]["name"] == name));
            if !declared {
                return invalid("toolChoice names a tool that is not in toolConfig.tools");
            }
        }
        None
    });
}
