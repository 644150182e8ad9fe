//! What XDR itself says about an incident, read once when the case is collected: what kind of
//! incident it is, XDR's own verdicts and outcomes, the alerts grouped with their key event, and
//! the facts each kind needs (an exposure, a message). The dossier states these first, before
//! any third-party intel, and weighs them above it.

use serde::{Deserialize, Serialize};

use super::Severity;

/// The kind of incident, which decides the dossier's facts, next steps and actions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// Alerts from an agent on a host: processes, files, connections.
    #[default]
    Endpoint,
    /// Cortex Xpanse / ASM: an internet-facing service with no agent.
    AttackSurface,
    /// A message: phishing, e-mail or DLP.
    Email,
    /// An account: logons, MFA, directory changes.
    Identity,
    /// Firewall or network sensor, no agent.
    Network,
    /// Cloud audit or posture.
    Cloud,
}

impl IncidentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Endpoint => "endpoint",
            Self::AttackSurface => "attack surface",
            Self::Email => "e-mail / DLP",
            Self::Identity => "identity",
            Self::Network => "network",
            Self::Cloud => "cloud",
        }
    }
}

impl std::fmt::Display for IncidentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verdict XDR (WildFire, its own malware analysis) gave a file of the incident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdrVerdict {
    /// The file's name, or its hash when XDR gave no name.
    pub subject: String,
    pub sha256: Option<String>,
    /// `MALWARE`, `GRAYWARE`, `PHISHING`, `BENIGN`.
    pub verdict: String,
    /// Who said it: "WildFire" or "XDR".
    pub by: String,
}

impl XdrVerdict {
    pub fn is_malicious(&self) -> bool {
        matches!(self.verdict.as_str(), "MALWARE" | "PHISHING" | "PHISING")
    }
}

/// One chain as XDR recorded it: parent → process → command line → file → destination → outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEvent {
    pub host: Option<String>,
    pub user: Option<String>,
    /// The causality actor (what started the chain: `winword.exe`, `outlook.exe`).
    pub parent: Option<String>,
    /// The acting process (image path when XDR gave one).
    pub process: Option<String>,
    /// What it started, when it started something.
    pub child: Option<String>,
    pub command_line: Option<String>,
    pub file_path: Option<String>,
    pub sha256: Option<String>,
    /// `ip:port`, or the host name it reached.
    pub destination: Option<String>,
    /// XDR's action (`Prevented (Blocked)`, `Detected (Reported)`).
    pub outcome: Option<String>,
}

impl KeyEvent {
    pub fn is_empty(&self) -> bool {
        self.parent.is_none()
            && self.process.is_none()
            && self.child.is_none()
            && self.command_line.is_none()
            && self.file_path.is_none()
            && self.destination.is_none()
    }
}

/// Alerts with the same name, process and severity, counted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertGroup {
    pub name: String,
    pub process: Option<String>,
    pub severity: Severity,
    pub count: usize,
    pub hosts: usize,
    pub users: usize,
    /// A few of the hosts, by name.
    pub host_examples: Vec<String>,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    /// The outcome XDR recorded for most of the group.
    pub outcome: Option<String>,
    /// The first alert's chain.
    pub key_event: KeyEvent,
}

/// An internet-facing service as Cortex Xpanse reported it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    pub address: Option<String>,
    pub port: Option<String>,
    pub protocol: Option<String>,
    /// The service as the alert names it (`Insecure Microsoft Exchange Server (15.0.1497.36)`).
    pub service: Option<String>,
    pub domains: Vec<String>,
    pub certificate: Option<String>,
    pub path: Option<String>,
    pub cves: Vec<Cve>,
    pub remediation: Option<String>,
    pub business_unit: Option<String>,
}

/// A CVE as Cortex Xpanse explains an exposure's risk.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cve {
    pub id: String,
    pub cvss: Option<f64>,
    pub epss: Option<f64>,
    /// `exploitMaturity` (e.g. "WEAPONIZED", "POC").
    pub exploit_maturity: Option<String>,
}

/// A message the incident is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageFacts {
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    pub subject: Option<String>,
    /// `fw_is_phishing` as the firewall wrote it.
    pub phishing: Option<String>,
    /// The domains of the links in the message (`fw_url_domain`).
    #[serde(default)]
    pub url_domains: Vec<String>,
}

impl MessageFacts {
    /// The sender's domain, lower-cased.
    pub fn sender_domain(&self) -> Option<String> {
        self.sender.as_deref().and_then(|s| s.trim().rsplit_once('@')).map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase())
    }

    /// Whether the firewall called the message phishing.
    pub fn flagged_phishing(&self) -> bool {
        self.phishing.as_deref().is_some_and(|p| {
            let p = p.trim().to_ascii_uppercase();
            p == "PHISHING" || p == "MALICIOUS" || p == "TRUE"
        })
    }
}

/// What XDR says about the incident, read at collect.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CaseFacts {
    pub kind: IncidentKind,
    /// `incident_sources[]` and the alerts' `source` values.
    pub sources: Vec<String>,
    /// XDR's count of the incident's alerts.
    pub xdr_alert_count: usize,
    /// Alerts Dossier read (XDR returns at most 1,000 per call).
    pub alerts_read: usize,
    /// The severity an analyst set by hand.
    pub analyst_severity: Option<Severity>,
    pub verdicts: Vec<XdrVerdict>,
    /// Alerts XDR prevented or blocked, and alerts it only detected.
    pub prevented: usize,
    pub detected: usize,
    /// Alerts on allow-listed (excluded) activity.
    pub allow_listed: usize,
    /// Alert groups, most severe and most frequent first.
    pub groups: Vec<AlertGroup>,
    /// Groups beyond those kept.
    pub groups_dropped: usize,
    /// First and last alert time.
    pub window: Option<(i64, i64)>,
    /// Whether any alert came from an agent (queries on agent data make sense).
    pub has_agent: bool,
    pub exposure: Option<Exposure>,
    pub message: Option<MessageFacts>,
    /// Alert text that addresses automation ("ignore previous instructions"), quoted, bounded.
    pub automation_text: Vec<String>,
}

impl CaseFacts {
    /// XDR or WildFire called a file of the incident malicious.
    pub fn xdr_malware(&self) -> Option<&XdrVerdict> {
        self.verdicts.iter().find(|v| v.is_malicious())
    }

    /// Every verdict XDR gave is benign.
    pub fn xdr_benign_only(&self) -> bool {
        !self.verdicts.is_empty() && self.verdicts.iter().all(|v| v.verdict == "BENIGN")
    }
}
