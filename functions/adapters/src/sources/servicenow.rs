//! ServiceNow CMDB: the configuration item behind an XDR host name (class, used for, owner,
//! support group) and the business criticality of the services that use it (through the CMDB
//! Instance API's "Used by" relations).

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use std::time::Duration;

use super::{enc, send};
use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::sources::{CallCounter, IndicatorSource, IndicatorVerdict, Lookup, LookupError, VerdictLevel};

pub const NAME: &str = "servicenow";

#[derive(Clone)]
pub struct ServiceNow {
    http: reqwest::Client,
    base_url: String,
    authorization: String,
    /// Most related services whose criticality is read.
    pub max_services: usize,
}

impl ServiceNow {
    /// `credentials`: `user:password` (Basic) or `Bearer <token>` (OAuth).
    pub fn new(base_url: &str, credentials: &str, timeout: Duration) -> ServiceNow {
        let authorization =
            if credentials.starts_with("Bearer ") { credentials.to_string() } else { format!("Basic {}", STANDARD.encode(credentials)) };
        ServiceNow {
            http: crate::http_client::client(timeout),
            base_url: base_url.trim_end_matches('/').to_string(),
            authorization,
            max_services: 3,
        }
    }

    /// `GET /api/now/cmdb/instance/cmdb_ci_computer?sysparm_query=name=<host>` then the record's attributes.
    async fn instance_lookup(&self, host: &str, calls: &CallCounter) -> Result<Option<Value>, LookupError> {
        let list = self
            .get(&format!("/api/now/cmdb/instance/cmdb_ci_computer?sysparm_query={}&sysparm_limit=1", enc(&format!("name={host}"))), calls)
            .await?;
        let Some(sys_id) = list.and_then(|l| l.json.pointer("/result/0/sys_id").and_then(Value::as_str).map(str::to_string)) else {
            return Ok(None);
        };
        let detail = self.get(&format!("/api/now/cmdb/instance/cmdb_ci_computer/{}", enc(&sys_id)), calls).await?;
        Ok(detail.and_then(|d| d.json.pointer("/result/attributes").cloned()))
    }

    async fn get(&self, path: &str, calls: &CallCounter) -> Result<Option<super::Answer>, LookupError> {
        send(
            self.http
                .get(format!("{}{path}", self.base_url))
                .header("Authorization", &self.authorization)
                .header("Accept", "application/json"),
            calls,
        )
        .await
    }
}

/// A reference or choice field as text: display value when present, else the raw value.
fn field(record: &Value, name: &str) -> Option<String> {
    match record.get(name)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Object(o) => {
            o.get("display_value").or_else(|| o.get("value")).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
        }
        _ => None,
    }
}

/// A field's stored value (not its display value): what URL paths and queries need. With
/// `sysparm_display_value=all` a class reads `{"display_value": "Linux Server", "value":
/// "cmdb_ci_linux_server"}`; only the value names the class in the CMDB Instance API path.
fn raw(record: &Value, name: &str) -> Option<String> {
    match record.get(name)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Object(o) => o.get("value").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string),
        _ => None,
    }
}

/// "1 - most critical" → 1; used to keep the most critical service.
fn criticality_rank(c: &str) -> u32 {
    c.trim().chars().next().and_then(|d| d.to_digit(10)).unwrap_or(9)
}

/// The CI as a verdict. `services`: (name, criticality) of services using it. Pure; tested on fixtures.
pub fn verdict_from(indicator: &Indicator, ci: &Value, services: &[(String, Option<String>)]) -> IndicatorVerdict {
    let class = field(ci, "sys_class_name").unwrap_or_else(|| "cmdb_ci".into());
    let used_for = field(ci, "used_for").or_else(|| field(ci, "environment")).unwrap_or_default();
    let owner = field(ci, "owned_by").or_else(|| field(ci, "managed_by")).or_else(|| field(ci, "assigned_to")).unwrap_or_default();
    let group = field(ci, "support_group").or_else(|| field(ci, "assignment_group")).unwrap_or_default();
    let own_criticality = field(ci, "business_criticality").or_else(|| field(ci, "busines_criticality"));
    let criticality =
        services.iter().filter_map(|(_, c)| c.clone()).chain(own_criticality).min_by_key(|c| criticality_rank(c)).unwrap_or_default();
    let mut summary = format!("CMDB: {class}");
    if !used_for.is_empty() {
        summary.push_str(&format!(", used for {used_for}"));
    }
    if !criticality.is_empty() {
        summary.push_str(&format!(", business criticality {criticality}"));
    }
    if !services.is_empty() {
        summary.push_str(&format!(", used by {}", services.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")));
    }
    if !owner.is_empty() {
        summary.push_str(&format!(", owner {owner}"));
    }
    IndicatorVerdict::new(indicator, VerdictLevel::Unknown, summary)
        .fact("ci_name", field(ci, "name").unwrap_or_default())
        .fact("class", class)
        .fact("used_for", used_for)
        .fact("criticality", criticality)
        .fact("owner", owner)
        .fact("support_group", group)
        .fact("services", services.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>().join(", "))
        .fact("ip_address", field(ci, "ip_address").unwrap_or_default())
        .fact("location", field(ci, "location").unwrap_or_default())
}

#[async_trait]
impl IndicatorSource for ServiceNow {
    fn name(&self) -> &'static str {
        NAME
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        kind == IndicatorKind::Hostname
    }
    fn sends_externally(&self) -> bool {
        // The customer's own CMDB: internal names are exactly what it is for.
        false
    }

    async fn lookup(&self, indicator: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        let host = &indicator.value;
        if !fits_encoded_query(host) {
            // `^` joins conditions and `=` compares in an encoded query: a name holding either
            // would ask for another record. No host name does; such text is not looked up.
            return Ok(Lookup::NotFound);
        }
        let short = host.split('.').next().unwrap_or(host);
        let query = enc(&format!("name={short}^ORname={host}^ORfqdnSTARTSWITH{host}"));
        let path = format!(
            "/api/now/table/cmdb_ci?sysparm_query={query}&sysparm_limit=5&sysparm_display_value=all&sysparm_exclude_reference_link=true"
        );
        let Some(list) = self.get(&path, calls).await? else { return Ok(Lookup::NotFound) };
        let ci = match list.json.get("result").and_then(Value::as_array).and_then(|r| r.first()).cloned() {
            Some(ci) => ci,
            // Some instances restrict the Table API on cmdb_ci: ask the class-aware CMDB Instance API.
            None => match self.instance_lookup(short, calls).await? {
                Some(ci) => ci,
                None => return Ok(Lookup::NotFound),
            },
        };
        let mut services = Vec::new();
        if let (Some(class), Some(sys_id)) = (raw(&ci, "sys_class_name"), raw(&ci, "sys_id")) {
            if let Some(detail) = self.get(&format!("/api/now/cmdb/instance/{}/{}", enc(&class), enc(&sys_id)), calls).await? {
                let inbound = detail.json.pointer("/result/inbound_relations").and_then(Value::as_array).cloned().unwrap_or_default();
                for rel in inbound
                    .iter()
                    .filter(|r| r.pointer("/type/display_value").and_then(Value::as_str).is_some_and(|t| t.contains("Used by")))
                    .take(self.max_services)
                {
                    let name = rel.pointer("/target/display_value").and_then(Value::as_str).unwrap_or("?").to_string();
                    let criticality = match rel.pointer("/target/value").and_then(Value::as_str) {
                        Some(id) => self
                            .get(
                                &format!(
                                    "/api/now/table/cmdb_ci_service/{}?sysparm_fields=name,busines_criticality,business_criticality",
                                    enc(id)
                                ),
                                calls,
                            )
                            .await?
                            .and_then(|a| {
                                a.json
                                    .get("result")
                                    .and_then(|r| field(r, "busines_criticality").or_else(|| field(r, "business_criticality")))
                            }),
                        None => None,
                    };
                    services.push((name, criticality));
                }
            }
        }
        Ok(Lookup::Found(verdict_from(indicator, &ci, &services).raw(&list.raw)))
    }
}

/// A value that can sit in a ServiceNow encoded query without changing its meaning.
fn fits_encoded_query(value: &str) -> bool {
    !value.is_empty() && !value.chars().any(|c| matches!(c, '^' | '=' | '!' | '<' | '>' | '@') || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod query_tests {
    use super::fits_encoded_query;

    #[test]
    fn names_that_would_rewrite_the_query_are_not_sent() {
        assert!(fits_encoded_query("fin-ws-0231.corp.example"));
        for hostile in ["x^ORname=dc01", "a=b", "x^NQsys_id!=", "two words", ""] {
            assert!(!fits_encoded_query(hostile), "{hostile}");
        }
    }
}
