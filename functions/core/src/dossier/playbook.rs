//! Next steps with ready XQL, per entity and per alert family.

use crate::domain::{IndicatorKind, Technique};
use crate::dossier::{IndicatorFinding, NextStep};
use crate::sources::VerdictLevel;
use crate::text::clean_text;
use crate::xql::xql_quote;

/// Next steps with ready XQL, per entity and per alert family.
pub(super) fn next_steps(indicators: &[IndicatorFinding], techniques: &[Technique], hosts: &[String], users: &[String]) -> Vec<NextStep> {
    let mut steps = Vec::new();
    for h in hosts.iter().take(3) {
        steps.push(NextStep {
            text: format!("Review process activity on {} in the last 24 hours.", clean_text(h, 100)),
            xql: Some(format!(
                "config timeframe = 24h | dataset = xdr_data | filter agent_hostname = {} and event_type = ENUM.PROCESS | fields _time, actor_process_image_name, action_process_image_name, action_process_image_command_line | sort desc _time | limit 200",
                xql_quote(h)
            )),
        });
    }
    for f in indicators.iter().filter(|f| !f.internal && f.worst >= VerdictLevel::Suspicious).take(5) {
        let (text, filter) = match f.kind {
            IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => {
                ("Find every host that talked to", format!("action_remote_ip = {}", xql_quote(&f.value)))
            }
            IndicatorKind::Domain => ("Find every host that resolved", format!("dns_query_name = {}", xql_quote(&f.value))),
            IndicatorKind::Sha256 => (
                "Find every host that ran or wrote",
                format!("action_process_image_sha256 = {v} or action_file_sha256 = {v}", v = xql_quote(&f.value)),
            ),
            IndicatorKind::Md5 => (
                "Find every host that ran or wrote",
                format!("action_process_image_md5 = {v} or action_file_md5 = {v}", v = xql_quote(&f.value)),
            ),
            _ => continue,
        };
        steps.push(NextStep {
            text: format!("{text} {} {} (7 days).", f.kind, f.value),
            xql: Some(format!("config timeframe = 7d | dataset = xdr_data | filter {filter} | comp count() as events by agent_hostname | sort desc events")),
        });
    }
    for u in users.iter().take(2) {
        steps.push(NextStep {
            text: format!("Check recent logons of {} for unusual hosts or failures.", clean_text(u, 100)),
            xql: Some(format!(
                "config timeframe = 7d | dataset = xdr_data | filter event_type = ENUM.EVENT_LOG and action_evtlog_event_id in (4624, 4625) and actor_effective_username contains {} | comp count() as logons by agent_hostname, action_evtlog_event_id",
                xql_quote(u)
            )),
        });
    }
    let ids: Vec<&str> = techniques.iter().map(|t| t.id.as_str()).collect();
    if ids.iter().any(|t| t.starts_with("T1059.001")) {
        steps.push(NextStep {
            text: "Hunt for encoded PowerShell across the estate.".into(),
            xql: Some("config timeframe = 7d | dataset = xdr_data | filter event_type = ENUM.PROCESS and action_process_image_name ~= \"powershell\" and action_process_image_command_line ~= \"-e(nc|ncodedcommand)? \" | fields _time, agent_hostname, action_process_image_command_line | limit 200".into()),
        });
    }
    if ids.iter().any(|t| t.starts_with("T1486") || t.starts_with("T1490")) {
        steps.push(NextStep {
            text: "Look for shadow-copy deletion and mass file changes (ransomware precursors).".into(),
            xql: Some("config timeframe = 24h | dataset = xdr_data | filter event_type = ENUM.PROCESS and action_process_image_command_line ~= \"(vssadmin|wmic).*(delete|shadowcopy)\" | fields _time, agent_hostname, action_process_image_command_line".into()),
        });
    }
    if ids.iter().any(|t| t.starts_with("T1003")) {
        steps.push(NextStep {
            text: "Check for LSASS access (credential dumping) on the involved hosts.".into(),
            xql: Some("config timeframe = 24h | dataset = xdr_data | filter event_type = ENUM.PROCESS and action_process_image_name = \"lsass.exe\" | fields _time, agent_hostname, actor_process_image_name".into()),
        });
    }
    if steps.is_empty() {
        steps.push(NextStep { text: "Review the alert details in XDR; Dossier found no entity to pivot on.".into(), xql: None });
    }
    steps
}
