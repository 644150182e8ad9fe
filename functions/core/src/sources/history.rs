//! Entity history from a log platform (XDR data lake, Splunk, Sentinel): what the same host, user
//! or IP did over the last 24 hours and 7 days. Each platform runs its own versioned query
//! template; every template answers the same question in the same columns, one row per event
//! type: `event_type`, `events`, `failed_logons` (7 days) and `events_24h`, `failed_logons_24h`.
//! This turns those rows into one verdict, the same for every platform.

use serde_json::Value;

use crate::domain::Indicator;
use crate::sources::{IndicatorVerdict, VerdictLevel};

/// The entities a history source looks up: hosts, users and addresses.
pub fn is_history_entity(kind: crate::domain::IndicatorKind) -> bool {
    use crate::domain::IndicatorKind as K;
    matches!(kind, K::Hostname | K::User | K::Ipv4 | K::Ipv6)
}

/// Counts over one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    pub processes: u64,
    pub network: u64,
    pub failed_logons: u64,
    pub total: u64,
}

fn number(v: Option<&Value>) -> u64 {
    v.and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)).or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())))
        .unwrap_or(0)
}

/// Sums the rows over the columns given (7 days: `events`, `failed_logons`; 24 hours:
/// `events_24h`, `failed_logons_24h`). Numbers may come as strings (Splunk). Pure; tested.
pub fn activity_of(rows: &[Value], events: &str, failed: &str) -> Activity {
    let mut a = Activity::default();
    for r in rows {
        let n = number(r.get(events));
        a.total += n;
        a.failed_logons += number(r.get(failed));
        match r.get("event_type").and_then(Value::as_str).unwrap_or("").to_ascii_uppercase().as_str() {
            t if t.contains("PROCESS") => a.processes += n,
            t if t.contains("NETWORK") => a.network += n,
            _ => {}
        }
    }
    a
}

/// Failed logons in a day from which the history reads as suspicious (password guessing).
const SUSPICIOUS_FAILED_LOGONS_24H: u64 = 10;

/// The verdict for an entity's history rows, or `None` when the platform saw nothing of it.
/// `platform` names the data ("XDR", "Splunk", "Sentinel"), `templates` the template version.
pub fn history_verdict(indicator: &Indicator, rows: &[Value], platform: &str, templates: &str, query: &str) -> Option<IndicatorVerdict> {
    let week = activity_of(rows, "events", "failed_logons");
    let day = activity_of(rows, "events_24h", "failed_logons_24h");
    if week.total == 0 {
        return None;
    }
    let verdict = if day.failed_logons >= SUSPICIOUS_FAILED_LOGONS_24H { VerdictLevel::Suspicious } else { VerdictLevel::Unknown };
    let summary = format!(
        "{platform} history: 24h {} events ({} process, {} network, {} failed logons); 7d {} events ({} failed logons)",
        day.total, day.processes, day.network, day.failed_logons, week.total, week.failed_logons
    );
    Some(
        IndicatorVerdict::new(indicator, verdict, summary)
            .fact("events_24h", day.total.to_string())
            .fact("process_starts_24h", day.processes.to_string())
            .fact("network_connections_24h", day.network.to_string())
            .fact("failed_logons_24h", day.failed_logons.to_string())
            .fact("events_7d", week.total.to_string())
            .fact("failed_logons_7d", week.failed_logons.to_string())
            .fact("templates", templates)
            .fact("query", query),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::IndicatorKind;
    use serde_json::json;

    #[test]
    fn rows_become_one_verdict_whatever_the_number_types() {
        let host = Indicator { kind: IndicatorKind::Hostname, value: "fin-ws-0231".into(), internal: true, seen_in: Vec::new() };
        let rows = vec![
            json!({"event_type": "PROCESS", "events": 40, "failed_logons": 0, "events_24h": "12", "failed_logons_24h": "0"}),
            json!({"event_type": "EVENT_LOG", "events": "30", "failed_logons": 25.0, "events_24h": 20, "failed_logons_24h": 11}),
            json!({"event_type": "NETWORK", "events": 5}),
        ];
        let v = history_verdict(&host, &rows, "Splunk", "spl-history-v1", "search …").unwrap();
        assert_eq!(v.verdict, VerdictLevel::Suspicious, "11 failed logons in a day");
        assert_eq!(v.fact_value("events_7d"), Some("75"));
        assert_eq!(v.fact_value("process_starts_24h"), Some("12"));
        assert_eq!(v.fact_value("network_connections_24h"), Some("0"));
        assert!(v.summary.starts_with("Splunk history: 24h 32 events"));
        assert!(history_verdict(&host, &[], "Splunk", "v", "q").is_none(), "nothing seen: not found");
    }
}
