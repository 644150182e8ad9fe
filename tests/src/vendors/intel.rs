//! Strict fakes of the premium threat-intel APIs: Recorded Future Connect v2 and Google Threat
//! Intelligence (VirusTotal API v3 with a GTI licence).

use std::net::IpAddr;

use super::{decoded, unknown_params, vt_error, vt_key_refused};
use crate::{FakeServer, Reply};

fn rf_error(status: u16, message: &str) -> Reply {
    Reply::json(status, serde_json::json!({"error": {"status": status, "message": message}}).to_string())
}

/// Recorded Future Connect API v2 (https://api.recordedfuture.com/v2/ interactive reference; the
/// vendor's SDK psengine `enrich/lookup_mgr.py`, `constants.py`): `X-RFToken` on every request
/// (401 otherwise — body undocumented, the `{"error": {"status", "message"}}` form psengine
/// parses); `GET /v2/{ip|domain|url|hash}/{entity}` with `fields` (a comma list of known fields),
/// `metadata` and `comment` the only parameters (400 for another); the entity percent-encoded
/// (a URL's `/` must arrive as `%2F`); an entity of the wrong form 400; an unknown one 404.
pub fn recorded_future(server: &FakeServer, token: &str) {
    let token = token.to_string();
    server.unknown_path(rf_error(404, "Entity not found"));
    server.guard(move |r| {
        match r.header("x-rftoken") {
            Some(t) if t == token => {}
            _ => return Some(rf_error(401, "Invalid or missing X-RFToken")),
        }
        if r.method != "GET" {
            return Some(rf_error(405, "Method not allowed"));
        }
        if let Some(p) = unknown_params(r, &["fields", "metadata", "comment"]) {
            return Some(rf_error(400, &format!("Unknown parameter {p}")));
        }
        const KNOWN: &[&str] = &[
            "entity",
            "risk",
            "timestamps",
            "intelCard",
            "metrics",
            "relatedEntities",
            "sightings",
            "analystNotes",
            "counts",
            "links",
            "riskMapping",
            "threatLists",
            "location",
            "dnsPortCert",
            "riskyCIDRIPs",
            "scanner",
            "hashAlgorithm",
            "fileHashes",
        ];
        if let Some(bad) = r.param("fields").unwrap_or_default().split(',').find(|f| !KNOWN.contains(f)) {
            return Some(rf_error(400, &format!("Unknown field {bad}")));
        }
        let rest = r.path.strip_prefix("/v2/")?;
        let (kind, raw) = rest.split_once('/')?;
        if raw.contains('/') {
            return Some(rf_error(404, "Not found: the entity must be percent-encoded"));
        }
        let entity = decoded(raw);
        let valid = match kind {
            "ip" => entity.parse::<IpAddr>().is_ok(),
            "domain" => {
                let d = entity.strip_prefix("idn:").unwrap_or(&entity);
                d.contains('.') && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            }
            "hash" => [32, 40, 64].contains(&entity.len()) && entity.chars().all(|c| c.is_ascii_hexdigit()),
            "url" => entity.starts_with("http://") || entity.starts_with("https://"),
            _ => return None,
        };
        (!valid).then(|| rf_error(400, &format!("Invalid {kind}: {entity}")))
    });
}

/// Google Threat Intelligence (https://gtidocs.virustotal.com/reference/object-files,
/// /reference/relationships, https://docs.virustotal.com/reference/errors): the VirusTotal v3
/// rules (`x-apikey`, 401 `WrongCredentialsError`; object ids by form, 400
/// `InvalidArgumentError`) plus GTI's: an `x-tool` header naming the integration (GTI omits
/// `gti_assessment` without it — here a 400 so a client that forgets it is caught), and the
/// `associations` relationship (`GET /{collection}/{id}/associations`, `limit` and `cursor` only).
pub fn gti(server: &FakeServer, key: &str) {
    let key = key.to_string();
    server.unknown_path(vt_error(404, "NotFoundError", "Resource not found"));
    server.guard(move |r| {
        if let Some(refused) = vt_key_refused(r, &key) {
            return Some(refused);
        }
        if r.header("x-tool").is_none_or(|t| t.trim().is_empty()) {
            return Some(vt_error(400, "BadRequestError", "x-tool header is required for Google Threat Intelligence attributes"));
        }
        if r.method != "GET" {
            return Some(vt_error(405, "BadRequestError", "Method not allowed"));
        }
        let rest = r.path.strip_prefix("/api/v3/")?;
        let parts: Vec<&str> = rest.split('/').collect();
        let (collection, id, relationship) = match parts[..] {
            [c, id] => (c, id, None),
            [c, id, rel] => (c, id, Some(rel)),
            _ => return None,
        };
        let allowed: &[&str] = if relationship.is_some() { &["limit", "cursor"] } else { &[] };
        if let Some(p) = unknown_params(r, allowed) {
            return Some(vt_error(400, "BadRequestError", &format!("Unknown parameter {p}")));
        }
        if relationship.is_some_and(|rel| rel != "associations") {
            return None;
        }
        let id = decoded(id);
        let valid = match collection {
            "ip_addresses" => id.parse::<IpAddr>().is_ok(),
            "domains" => !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "files" => [32, 40, 64].contains(&id.len()) && id.chars().all(|c| c.is_ascii_hexdigit()),
            "urls" => !id.contains(['=', '+', '/']) && !id.is_empty(),
            _ => return None,
        };
        (!valid).then(|| vt_error(400, "InvalidArgumentError", &format!("Invalid {collection} id {id}")))
    });
}
