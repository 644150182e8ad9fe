//! Next steps per kind of incident, with XQL anchored to the incident's own time window (an
//! analyst running a query next month still sees the incident) and only where an agent's data
//! exists. Field names follow the `xdr_data` schema; `tests/tests/e2e/dossier_kinds.rs` checks each
//! query against an XQL grammar and that schema.

use std::time::Duration;

use crate::domain::{Case, IncidentKind, IndicatorKind, Scope, Technique};
use crate::dossier::{IndicatorFinding, NextStep};
use crate::text::clean_text;
use crate::xql::{timeframe, xql_quote};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// PowerShell accepts any prefix of `-EncodedCommand` (`-e`, `-ec`, `-enc`…), with `-` or `/`.
pub(super) const ENCODED_POWERSHELL: &str = r#"filter event_type = ENUM.PROCESS and action_process_image_name ~= "(?i)^(powershell|pwsh)(\\.exe)?$" and action_process_image_command_line ~= "(?i)\\s[-/]e(c|nc?o?d?e?d?c?o?m?m?a?n?d?)?(\\s|$)""#;

struct Steps {
    steps: Vec<NextStep>,
}

impl Steps {
    fn say(&mut self, text: String) {
        self.steps.push(NextStep { text, xql: None });
    }
    fn query(&mut self, text: String, xql: String) {
        self.steps.push(NextStep { text, xql: Some(xql) });
    }
}

/// The logged-on account of a Windows logon event is `TargetUserName` in the event's data.
fn account_name(user: &str) -> String {
    let bare = user.rsplit('\\').next().unwrap_or(user);
    bare.split('@').next().unwrap_or(bare).to_ascii_lowercase()
}

pub(super) fn next_steps(case: &Case, indicators: &[IndicatorFinding], techniques: &[Technique]) -> Vec<NextStep> {
    let facts = &case.facts;
    let window = facts.window.or(case.first_alert_ms.map(|t| (t, t))).unwrap_or((case.received_at_ms, case.received_at_ms));
    let around = |before: Duration, after: Duration| timeframe(window, before, after);
    let hosts: Vec<&str> = case.indicators.iter().filter(|i| i.kind == IndicatorKind::Hostname).map(|i| i.value.as_str()).collect();
    let users: Vec<&str> = case.indicators.iter().filter(|i| i.kind == IndicatorKind::User).map(|i| i.value.as_str()).collect();
    let mut s = Steps { steps: Vec::new() };

    match facts.kind {
        IncidentKind::AttackSurface => attack_surface(case, &mut s),
        IncidentKind::Email => {
            if let Some(m) = &facts.message {
                let sender = m.sender.as_deref().unwrap_or("the sender");
                s.say(format!(
                    "Pull the message \"{}\" from {} out of every mailbox it reached ({}), and check the sender's domain reputation and authentication (SPF, DKIM, DMARC).",
                    clean_text(m.subject.as_deref().unwrap_or("(no subject)"), 120),
                    clean_text(sender, 120),
                    if m.recipients.is_empty() { "recipients unknown".to_string() } else { clean_text(&m.recipients.join(", "), 200) }
                ));
            }
            s.say("Check whether a recipient opened an attachment or a link from the message (mail gateway click logs, proxy).".into());
            if let Some(m) = &facts.message {
                phishing_queries(m, window, &mut s);
            }
        }
        IncidentKind::Identity => {}
        IncidentKind::Cloud => {
            s.say("Review the cloud provider's audit trail for the identity and resources in the alerts around the incident's time, and the keys or roles they used.".into());
        }
        IncidentKind::Endpoint | IncidentKind::Network => {}
    }

    if facts.has_agent {
        for h in hosts.iter().take(3) {
            s.query(
                format!("Review process activity on {} from an hour before the first alert to an hour after the last.", clean_text(h, 100)),
                format!(
                    "{} | dataset = xdr_data | filter agent_hostname = {} and event_type = ENUM.PROCESS | fields _time, causality_actor_process_image_name, actor_process_image_name, action_process_image_name, action_process_image_command_line | sort asc _time | limit 500",
                    around(HOUR, HOUR),
                    xql_quote(h)
                ),
            );
        }
        // The one binary behind many alerts: where else does it run?
        for g in facts.groups.iter().filter(|g| g.hosts > 1 || g.count > 10).take(2) {
            if let Some(sha) = &g.key_event.sha256 {
                s.query(
                    format!(
                        "{} alerts come from {}: find every host that ran or wrote it (7 days before the incident to a day after).",
                        g.count,
                        clean_text(g.process.as_deref().unwrap_or(sha), 120)
                    ),
                    format!(
                        "{} | dataset = xdr_data | filter action_process_image_sha256 = {v} or action_file_sha256 = {v} | comp count() as events by agent_hostname | sort desc events",
                        around(7 * DAY, DAY),
                        v = xql_quote(sha)
                    ),
                );
            }
        }
        // Every external indicator seen in telemetry, most-seen first; free text is not evidence.
        let mut pivots: Vec<&IndicatorFinding> = indicators
            .iter()
            .filter(|f| f.scope == Scope::External && !f.free_text_only && !f.kind.is_entity() && !f.is_host_address())
            .collect();
        pivots.sort_by(|x, y| y.worst.cmp(&x.worst).then(y.seen_in.len().cmp(&x.seen_in.len())));
        for f in pivots.into_iter().take(5) {
            let (text, filter) = match f.kind {
                IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => {
                    ("Find every host that talked to", format!("action_remote_ip = {}", xql_quote(&f.value)))
                }
                IndicatorKind::Domain => (
                    "Find every host that resolved or reached",
                    format!("dns_query_name = {v} or action_external_hostname = {v}", v = xql_quote(&f.value)),
                ),
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
            s.query(
                format!("{text} {} {} ({}; 7 days before the incident to a day after).", f.kind, f.value, f.worst.as_str()),
                format!(
                    "{} | dataset = xdr_data | filter {filter} | comp count() as events by agent_hostname | sort desc events",
                    around(7 * DAY, DAY)
                ),
            );
        }
        let ids: Vec<&str> = techniques.iter().map(|t| t.id.as_str()).collect();
        if ids.iter().any(|t| t.starts_with("T1059.001")) {
            s.query(
                "Hunt for encoded PowerShell across the estate (any -EncodedCommand prefix, powershell or pwsh).".into(),
                format!(
                    "{} | dataset = xdr_data | {ENCODED_POWERSHELL} | fields _time, agent_hostname, action_process_image_command_line | limit 200",
                    around(7 * DAY, DAY)
                ),
            );
        }
        if ids.iter().any(|t| t.starts_with("T1486") || t.starts_with("T1490")) {
            s.query(
                "Look for shadow-copy deletion and mass file changes (ransomware precursors).".into(),
                format!("{} | dataset = xdr_data | filter event_type = ENUM.PROCESS and action_process_image_command_line ~= \"(?i)(vssadmin|wmic).*(delete|shadowcopy)\" | fields _time, agent_hostname, action_process_image_command_line", around(DAY, DAY)),
            );
        }
        if ids.iter().any(|t| t.starts_with("T1003")) {
            s.query(
                "Check for LSASS access (credential dumping) on the involved hosts.".into(),
                format!("{} | dataset = xdr_data | filter event_type = ENUM.PROCESS and action_process_image_name = \"lsass.exe\" | fields _time, agent_hostname, actor_process_image_name", around(DAY, DAY)),
            );
        }
    }
    for u in users.iter().take(2) {
        let account = account_name(u);
        if facts.has_agent || facts.kind == IncidentKind::Identity {
            s.query(
                format!("Check logons of {} (successes and failures, by host) in the week before the incident.", clean_text(u, 100)),
                format!(
                    "{} | dataset = xdr_data | filter event_type = ENUM.EVENT_LOG and action_evtlog_event_id in (4624, 4625) | alter target_user = lowercase(json_extract_scalar(action_evtlog_data_fields, \"$.TargetUserName\")) | filter target_user = {} | comp count() as logons by agent_hostname, action_evtlog_event_id",
                    around(7 * DAY, DAY),
                    xql_quote(&account)
                ),
            );
        } else {
            s.say(format!("Check recent sign-ins and MFA prompts of {} in the identity provider.", clean_text(u, 100)));
        }
    }
    if s.steps.is_empty() {
        s.say("Review the alert details in XDR; Dossier found no entity to pivot on.".into());
    }
    s.steps
}

/// An internet-facing service: confirm, patch, look for exploitation. No agent queries: an
/// attack-surface finding has no agent behind it.
fn attack_surface(case: &Case, s: &mut Steps) {
    let Some(e) = &case.facts.exposure else { return };
    let at = match (&e.address, &e.port) {
        (Some(a), Some(p)) => format!("{a}:{p}"),
        (Some(a), None) => a.clone(),
        _ => "the exposed address".into(),
    };
    s.say(format!(
        "Confirm the exposure: is {} on {at}{} reachable from the internet, and who owns it{}?",
        clean_text(e.service.as_deref().unwrap_or("the service"), 160),
        e.path.as_ref().map_or(String::new(), |p| format!(" (path {})", clean_text(p, 100))),
        e.business_unit.as_ref().map_or(String::new(), |b| format!(" (business unit {})", clean_text(b, 80)))
    ));
    if !e.cves.is_empty() {
        let mut cves = e.cves.clone();
        // Weaponised and likely-exploited first.
        cves.sort_by(|x, y| {
            let weaponised = |c: &crate::domain::Cve| c.exploit_maturity.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("weaponized"));
            weaponised(y).cmp(&weaponised(x)).then(y.epss.unwrap_or(0.0).total_cmp(&x.epss.unwrap_or(0.0)))
        });
        let list: Vec<String> = cves
            .iter()
            .take(6)
            .map(|c| {
                let mut t = c.id.clone();
                if let Some(v) = c.cvss {
                    t.push_str(&format!(" CVSS {v:.1}"));
                }
                if let Some(p) = c.epss {
                    t.push_str(&format!(" EPSS {:.0}%", p * 100.0));
                }
                if let Some(m) = &c.exploit_maturity {
                    t.push_str(&format!(" {}", m.to_ascii_lowercase()));
                }
                t
            })
            .collect();
        s.say(format!("Patch or take the service off the internet; in this order: {}.", list.join("; ")));
    }
    if let Some(r) = &e.remediation {
        s.say(format!("Xpanse remediation guidance: {}", clean_text(r, 300)));
    }
    s.say(format!(
        "Look for exploitation: firewall and web-server logs for requests to {at} since the service was first seen exposed, and for new outbound connections from it."
    ));
    if !e.domains.is_empty() || e.certificate.is_some() {
        s.say(format!(
            "Check what else serves the certificate's names ({}): the same exposure may exist elsewhere.",
            clean_text(&e.domains.iter().cloned().chain(e.certificate.clone()).collect::<Vec<_>>().join(", "), 200)
        ));
    }
}

/// Version of the phishing query templates (other recipients, click-through).
pub const PHISHING_TEMPLATES: &str = "phishing-xql-v1";

/// Other recipients of the sender and the recipients' visits to the message's link domains, over
/// the 90 days up to the message. Recipients come from the Cortex Data Model's e-mail fields
/// (`xdm.email.*`: an e-mail source mapped to the data model); visits from the firewall's URL
/// filtering log (`panw_ngfw_url_raw`, Cortex Data Lake field names).
fn phishing_queries(m: &crate::domain::MessageFacts, window: (i64, i64), s: &mut Steps) {
    let ninety_days = timeframe(window, 90 * DAY, DAY);
    if let Some(sender) = &m.sender {
        s.query(
            format!("Find every other recipient of mail from {} in the 90 days before the message ({PHISHING_TEMPLATES}; needs an e-mail source in the Cortex Data Model).", clean_text(sender, 120)),
            format!(
                "{ninety_days} | datamodel dataset = * | filter xdm.email.sender = {} | fields _time, xdm.email.recipients, xdm.email.subject | limit 200",
                xql_quote(sender)
            ),
        );
    }
    if !m.url_domains.is_empty() {
        let domains = m.url_domains.iter().take(5).map(|d| xql_quote(d)).collect::<Vec<_>>().join(", ");
        s.query(
            format!("Find who visited the message's link domains in the 90 days up to the day after it ({PHISHING_TEMPLATES}; firewall URL log): a visit after delivery is a click-through."),
            format!(
                "{ninety_days} | dataset = panw_ngfw_url_raw | filter url_domain in ({domains}) | comp count() as visits by source_user, source_ip, url_domain | sort desc visits"
            ),
        );
    }
}

/// A detection rule draft from what a case showed: the flagged external indicators it carried,
/// and the behaviour behind its techniques where the playbook knows a query for it. XQL over
/// `xdr_data`, for an analyst to review and turn into a correlation or BIOC rule; `None` when the
/// case showed nothing to detect on.
pub(super) fn detection_draft(dossier: &crate::dossier::Dossier) -> Option<String> {
    use crate::sources::VerdictLevel;
    let flagged = |kinds: &[IndicatorKind]| -> Vec<String> {
        dossier
            .indicators
            .iter()
            .filter(|f| kinds.contains(&f.kind) && f.worst >= VerdictLevel::Suspicious && f.scope == Scope::External && !f.free_text_only)
            .take(10)
            .map(|f| xql_quote(&f.value))
            .collect()
    };
    let mut clauses = Vec::new();
    let domains = flagged(&[IndicatorKind::Domain]);
    if !domains.is_empty() {
        let list = domains.join(", ");
        clauses.push(format!("dns_query_name in ({list}) or action_external_hostname in ({list})"));
    }
    let ips = flagged(&[IndicatorKind::Ipv4, IndicatorKind::Ipv6]);
    if !ips.is_empty() {
        clauses.push(format!("action_remote_ip in ({})", ips.join(", ")));
    }
    let hashes = flagged(&[IndicatorKind::Sha256]);
    if !hashes.is_empty() {
        let list = hashes.join(", ");
        clauses.push(format!("action_file_sha256 in ({list}) or action_process_image_sha256 in ({list})"));
    }
    let mut rules = Vec::new();
    if !clauses.is_empty() {
        rules.push(format!(
            "dataset = xdr_data | filter {} | fields _time, agent_hostname, actor_process_image_name, action_external_hostname, action_remote_ip, action_file_sha256",
            clauses.join(" or ")
        ));
    }
    if dossier.techniques.iter().any(|t| t.id == "T1059.001") && dossier.techniques.iter().any(|t| t.id == "T1027") {
        rules.push(format!("dataset = xdr_data | {ENCODED_POWERSHELL} | fields _time, agent_hostname, action_process_image_command_line"));
    }
    (!rules.is_empty()).then(|| rules.join("\n   "))
}
