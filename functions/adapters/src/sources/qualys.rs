//! Qualys VMDR (API v2, https://docs.qualys.com/en/vm/api/assets/host_lists/host_detection.htm):
//! the open vulnerabilities of a host, scored by the Qualys Detection Score (QDS 1–100), with the
//! worst ones' titles and CVEs from the KnowledgeBase. A second vulnerability source beside
//! Tenable. Basic auth and the `X-Requested-With` header every v2 call must carry; answers are
//! XML; a blocked call is a 409 with `X-RateLimit-ToWait-Sec` and a `SIMPLE_RETURN` code (1960
//! concurrency, 1965 rate). The detection list takes addresses, not names: a host name is first
//! resolved through the Asset Management search (`name` contains, then an exact check).

use async_trait::async_trait;
use std::time::Duration;

use crate::http_client::{exchange, NoAnswer, Status};
use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::sources::{CallCounter, IndicatorSource, IndicatorVerdict, Lookup, LookupError, VerdictLevel};

pub const NAME: &str = "qualys";
/// US Platform 1; every other platform has its own API server (configuration).
pub const DEFAULT_BASE_URL: &str = "https://qualysapi.qualys.com";
/// Open detections only (Qualys's default set is not documented consistently: always say).
const OPEN: &str = "New,Active,Re-Opened";

#[derive(Clone)]
pub struct Qualys {
    http: reqwest::Client,
    base_url: String,
    user: String,
    password: String,
}

impl Qualys {
    /// `key` is `username:password`.
    pub fn new(base_url: &str, key: &str, timeout: Duration) -> Result<Qualys, String> {
        let (user, password) = key.split_once(':').ok_or("the qualys key must be `username:password`")?;
        Ok(Qualys {
            http: crate::http_client::client(timeout),
            base_url: base_url.trim_end_matches('/').to_string(),
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    async fn call(&self, req: reqwest::RequestBuilder, calls: &CallCounter) -> Result<String, LookupError> {
        calls.add(1);
        let req = req.basic_auth(&self.user, Some(&self.password)).header("X-Requested-With", "dossier");
        let reply = exchange(req).await.map_err(|e| match e {
            NoAnswer::TimedOut => LookupError::Timeout,
            other => LookupError::Transport(other.to_string()),
        })?;
        let what = || format!("HTTP {} {}", reply.code, simple_return(&reply.body).unwrap_or_else(|| reply.short_body()));
        match (reply.code, reply.status) {
            (_, Status::Success) if reply.body.trim().is_empty() => Err(LookupError::BadReply("empty answer".into())),
            (_, Status::Success) => Ok(reply.body),
            // Qualys blocks with 409: 1960 (too many running) and 1965 (too many recently).
            (409, _) | (_, Status::RateLimited) => {
                Err(LookupError::RateLimited { retry_after: reply.retry_after.or_else(|| seconds_to_wait(&reply.body)) })
            }
            (_, Status::Unauthorized | Status::Forbidden | Status::PaymentRequired) => Err(LookupError::Unauthorized(what())),
            (_, Status::Server) => Err(LookupError::Server(what())),
            _ => Err(LookupError::BadReply(what())),
        }
    }

    /// The VM host id of a host named `name` (short name or FQDN), through Asset Management.
    async fn host_id(&self, name: &str, calls: &CallCounter) -> Result<Option<String>, LookupError> {
        let body = format!(
            "<ServiceRequest><preferences><limitResults>20</limitResults></preferences><filters>\
             <Criteria field=\"name\" operator=\"CONTAINS\">{}</Criteria></filters></ServiceRequest>",
            xml_escape(name)
        );
        let req =
            self.http.post(format!("{}/qps/rest/2.0/search/am/hostasset", self.base_url)).header("Content-Type", "text/xml").body(body);
        let xml = self.call(req, calls).await?;
        host_id_from(&xml, name)
    }
}

fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    format!("{url}?{}", form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

fn parse(xml: &str) -> Result<roxmltree::Document<'_>, LookupError> {
    // The answers carry a DOCTYPE naming their DTD (never fetched).
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..roxmltree::ParsingOptions::default() };
    roxmltree::Document::parse_with_options(xml, options).map_err(|e| LookupError::BadReply(format!("not XML: {e}")))
}

fn child_text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.children().find(|c| c.has_tag_name(name)).and_then(|c| c.text()).map(str::trim).filter(|t| !t.is_empty())
}

/// `SIMPLE_RETURN/RESPONSE/{CODE, TEXT}` of an error answer, as `code: text`.
fn simple_return(body: &str) -> Option<String> {
    let doc = parse(body).ok()?;
    let response = doc.descendants().find(|n| n.has_tag_name("SIMPLE_RETURN"))?.children().find(|n| n.has_tag_name("RESPONSE"))?;
    Some(format!("{}: {}", child_text(response, "CODE").unwrap_or("?"), child_text(response, "TEXT").unwrap_or("")))
}

/// `SECONDS_TO_WAIT` from a 1965 answer's item list.
fn seconds_to_wait(body: &str) -> Option<Duration> {
    let doc = parse(body).ok()?;
    let item = doc.descendants().filter(|n| n.has_tag_name("ITEM")).find(|i| child_text(*i, "KEY") == Some("SECONDS_TO_WAIT"))?;
    child_text(item, "VALUE")?.parse().ok().map(Duration::from_secs)
}

/// The host whose NetBIOS name, DNS name or first DNS label is `name` (ignoring case).
pub fn host_id_from(xml: &str, name: &str) -> Result<Option<String>, LookupError> {
    let doc = parse(xml)?;
    let root = doc.root_element();
    if child_text(root, "responseCode").is_some_and(|c| c != "SUCCESS") {
        let message = root.descendants().find(|n| n.has_tag_name("errorMessage")).and_then(|n| n.text()).unwrap_or("");
        return Err(LookupError::BadReply(format!("asset search: {} {message}", child_text(root, "responseCode").unwrap_or(""))));
    }
    let wanted = name.to_ascii_lowercase();
    let matches = |v: Option<&str>| {
        v.is_some_and(|v| {
            let v = v.to_ascii_lowercase();
            v == wanted || v.split('.').next() == Some(wanted.as_str())
        })
    };
    Ok(doc
        .descendants()
        .filter(|n| n.has_tag_name("HostAsset"))
        .find(|h| matches(child_text(*h, "netbiosName")) || matches(child_text(*h, "dnsHostName")) || matches(child_text(*h, "name")))
        .and_then(|h| child_text(h, "qwebHostId").map(str::to_string)))
}

/// One open detection.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub qid: String,
    pub severity: u8,
    pub qds: Option<u32>,
    pub kind: String,
    pub first_found: Option<String>,
}

/// The first host of a detection list and its open detections, worst first.
pub fn detections_from(xml: &str) -> Result<Option<(roxmltree::Document<'_>, Vec<Detection>)>, LookupError> {
    let doc = parse(xml)?;
    if doc.root_element().has_tag_name("SIMPLE_RETURN") {
        return Err(LookupError::BadReply(simple_return(xml).unwrap_or_default()));
    }
    if !doc.root_element().has_tag_name("HOST_LIST_VM_DETECTION_OUTPUT") {
        return Err(LookupError::BadReply(format!("unexpected answer <{}>", doc.root_element().tag_name().name())));
    }
    let Some(host) = doc.descendants().find(|n| n.has_tag_name("HOST")) else { return Ok(None) };
    let mut found: Vec<Detection> = host
        .descendants()
        .filter(|n| n.has_tag_name("DETECTION"))
        .map(|d| Detection {
            qid: child_text(d, "QID").unwrap_or_default().to_string(),
            severity: child_text(d, "SEVERITY").and_then(|s| s.parse().ok()).unwrap_or(0),
            qds: child_text(d, "QDS").and_then(|s| s.parse().ok()),
            kind: child_text(d, "TYPE").unwrap_or_default().to_string(),
            first_found: child_text(d, "FIRST_FOUND_DATETIME").map(str::to_string),
        })
        .filter(|d| !d.qid.is_empty())
        .collect();
    found.sort_by_key(|d| std::cmp::Reverse((d.qds.unwrap_or(0), d.severity)));
    Ok(Some((doc, found)))
}

/// Titles and CVEs per QID from a KnowledgeBase answer.
pub fn knowledge_from(xml: &str) -> Result<Vec<(String, String, Vec<String>)>, LookupError> {
    let doc = parse(xml)?;
    Ok(doc
        .descendants()
        .filter(|n| n.has_tag_name("VULN"))
        .map(|v| {
            let cves = v.descendants().filter(|n| n.has_tag_name("CVE")).filter_map(|c| child_text(c, "ID").map(str::to_string)).collect();
            (child_text(v, "QID").unwrap_or_default().to_string(), child_text(v, "TITLE").unwrap_or_default().to_string(), cves)
        })
        .collect())
}

/// QDS bands (Qualys): critical 90–100, high 70–89, medium 40–69, low 1–39.
fn band(qds: u32) -> &'static str {
    match qds {
        90.. => "critical",
        70..=89 => "high",
        40..=69 => "medium",
        _ => "low",
    }
}

/// Pure; tested on recorded-shape answers.
pub fn verdict_from(
    indicator: &Indicator,
    host_xml: &str,
    knowledge: &[(String, String, Vec<String>)],
) -> Result<Option<IndicatorVerdict>, LookupError> {
    let Some((doc, detections)) = detections_from(host_xml)? else { return Ok(None) };
    let host = doc.descendants().find(|n| n.has_tag_name("HOST")).ok_or_else(|| LookupError::BadReply("no HOST".into()))?;
    let confirmed: Vec<&Detection> = detections.iter().filter(|d| !d.kind.eq_ignore_ascii_case("Info")).collect();
    let count = |sev: u8| confirmed.iter().filter(|d| d.severity == sev).count();
    let critical_qds = confirmed.iter().filter(|d| d.qds.is_some_and(|q| q >= 90)).count();
    let title = |qid: &str| knowledge.iter().find(|(q, _, _)| q == qid);
    let top: Vec<String> = confirmed
        .iter()
        .take(3)
        .map(|d| {
            let (name, cves) = title(&d.qid).map_or((format!("QID {}", d.qid), String::new()), |(_, t, c)| {
                (
                    t.clone(),
                    if c.is_empty() { String::new() } else { format!(", {}", c.iter().take(3).cloned().collect::<Vec<_>>().join(" ")) },
                )
            });
            match d.qds {
                Some(q) => format!("{name} (QDS {q} {}, severity {}{cves})", band(q), d.severity),
                None => format!("{name} (severity {}{cves})", d.severity),
            }
        })
        .collect();
    let mut summary = format!("Qualys: {} open ({} urgent, {} critical, {} serious)", confirmed.len(), count(5), count(4), count(3));
    if let Some(first) = top.first() {
        summary.push_str(&format!("; worst {first}"));
    }
    // An exposed host is context, not a verdict on the incident (as with Tenable).
    let verdict = if critical_qds > 0 || count(5) > 0 { VerdictLevel::Suspicious } else { VerdictLevel::Unknown };
    let cves: Vec<String> =
        confirmed.iter().take(3).filter_map(|d| title(&d.qid)).flat_map(|(_, _, c)| c.iter().cloned()).take(5).collect();
    Ok(Some(
        IndicatorVerdict::new(indicator, verdict, summary)
            .fact("host_id", child_text(host, "ID").unwrap_or_default())
            .fact("ip", child_text(host, "IP").unwrap_or_default())
            .fact("os", child_text(host, "OS").unwrap_or_default())
            .fact("open_vulns", confirmed.len().to_string())
            .fact("critical_qds_vulns", critical_qds.to_string())
            .fact("top_vulns", top.join("; "))
            .fact("top_vuln_cves", cves.join(", "))
            .fact(
                "last_scanned",
                child_text(host, "LAST_VM_SCANNED_DATE").or_else(|| child_text(host, "LAST_SCAN_DATETIME")).unwrap_or_default(),
            ),
    ))
}

#[async_trait]
impl IndicatorSource for Qualys {
    fn name(&self) -> &'static str {
        NAME
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        matches!(kind, IndicatorKind::Hostname | IndicatorKind::Ipv4 | IndicatorKind::Ipv6)
    }
    fn sends_externally(&self) -> bool {
        // The organisation's own scanner, about its own hosts.
        false
    }

    async fn lookup(&self, indicator: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        // The scanner knows the organisation's own hosts: an outside address (the attacker's
        // server) is not asked about, which also spares the hourly call budget.
        if indicator.kind.is_ip() && !indicator.internal {
            return Ok(Lookup::NotFound);
        }
        let filter = match indicator.kind {
            IndicatorKind::Hostname => match self.host_id(&indicator.value, calls).await? {
                Some(id) => ("ids", id),
                None => return Ok(Lookup::NotFound),
            },
            IndicatorKind::Ipv6 => ("ipv6", indicator.value.clone()),
            _ => ("ips", indicator.value.clone()),
        };
        let url = format!("{}/api/2.0/fo/asset/host/vm/detection/", self.base_url);
        let query = [
            ("action", "list"),
            (filter.0, filter.1.as_str()),
            ("status", OPEN),
            ("show_qds", "1"),
            ("show_results", "0"),
            ("truncation_limit", "1"),
        ];
        let hosts = self.call(self.http.get(with_query(&url, &query)), calls).await?;
        let Some((_, detections)) = detections_from(&hosts)? else { return Ok(Lookup::NotFound) };
        // Titles and CVEs of the three worst (the KnowledgeBase is rate-limited too: one call).
        let qids: Vec<&str> = detections.iter().take(3).map(|d| d.qid.as_str()).collect();
        let knowledge = if qids.is_empty() {
            Vec::new()
        } else {
            let url = format!("{}/api/2.0/fo/knowledge_base/vuln/", self.base_url);
            let ids = qids.join(",");
            let query = [("action", "list"), ("ids", ids.as_str()), ("details", "Basic")];
            let kb = self.call(self.http.get(with_query(&url, &query)), calls).await?;
            knowledge_from(&kb)?
        };
        Ok(verdict_from(indicator, &hosts, &knowledge)?.map_or(Lookup::NotFound, |v| Lookup::Found(v.raw(&hosts))))
    }
}
