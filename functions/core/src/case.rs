//! The case: one XDR incident being enriched, its status machine, its actions and audit events.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::extract::Endpoint;
use crate::indicator::Indicator;
use crate::xdr::Severity;

/// Identifies a case: one per (tenant, XDR incident id).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CaseKey {
    pub tenant: String,
    pub incident_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidKey {
    pub field: &'static str,
    pub reason: &'static str,
}

impl CaseKey {
    pub fn new(tenant: &str, incident_id: &str) -> Result<CaseKey, InvalidKey> {
        let check = |field: &'static str, v: &str| {
            if v.is_empty() {
                Err(InvalidKey { field, reason: "must not be empty" })
            } else if v.len() > 64 {
                Err(InvalidKey { field, reason: "longer than 64 characters" })
            } else if !v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
                Err(InvalidKey { field, reason: "only letters, digits, '-', '_' and '.' are allowed" })
            } else {
                Ok(())
            }
        };
        check("tenant", tenant)?;
        check("incident id", incident_id)?;
        Ok(CaseKey { tenant: tenant.to_string(), incident_id: incident_id.to_string() })
    }

    /// The partition key used in storage: `tenant#incident`.
    pub fn storage_id(&self) -> String {
        format!("{}#{}", self.tenant, self.incident_id)
    }
}

impl fmt::Display for CaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.incident_id)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Received,
    Collecting,
    Enriching,
    Synthesizing,
    WritingBack,
    AwaitingApproval,
    Done,
    Failed,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Collecting => "collecting",
            Self::Enriching => "enriching",
            Self::Synthesizing => "synthesizing",
            Self::WritingBack => "writing_back",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// Allowed moves of the status machine. Failing is allowed from every non-terminal state.
    pub fn can_move_to(self, next: CaseStatus) -> bool {
        use CaseStatus::*;
        matches!(
            (self, next),
            (Received, Collecting)
                | (Collecting, Enriching)
                | (Enriching, Synthesizing)
                | (Synthesizing, WritingBack)
                | (WritingBack, AwaitingApproval)
                | (WritingBack, Done)
                | (AwaitingApproval, Done)
                | (Received | Collecting | Enriching | Synthesizing | WritingBack | AwaitingApproval, Failed)
        )
    }

    /// True once the dossier has been written back (or the case failed).
    pub fn is_settled(self) -> bool {
        matches!(self, Self::AwaitingApproval | Self::Done | Self::Failed)
    }
}

impl fmt::Display for CaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("case cannot move from {from} to {to}")]
pub struct InvalidTransition {
    pub from: CaseStatus,
    pub to: CaseStatus,
}

/// How the incident reached Dossier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Webhook,
    Poller,
    Local,
}

/// What the webhook told us before we asked XDR.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IncidentHint {
    pub severity: Severity,
    pub description: String,
    pub created_at_ms: Option<i64>,
    /// The incident's status as the door saw it (`new`, `under_investigation`, `In Progress`, ...).
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub alert_ids: Vec<String>,
    #[serde(default)]
    pub endpoint_ids: Vec<String>,
    #[serde(default)]
    pub user_ids: Vec<String>,
    #[serde(default)]
    pub mitre_techniques: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    pub status: CaseStatus,
    pub at_ms: i64,
}

/// One alert as the narrative needs it: attacker-controlled text bounded and stripped of controls.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertDigest {
    pub name: String,
    pub category: String,
    pub severity: Severity,
    pub time_ms: Option<i64>,
    pub host: Option<String>,
    pub user: Option<String>,
    pub action: Option<String>,
    pub command_line: Option<String>,
    pub description: Option<String>,
}

/// Alerts kept per case, and characters kept per text field.
pub const MAX_ALERT_DIGESTS: usize = 50;
pub const MAX_ALERT_TEXT: usize = 600;

/// The case record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub key: CaseKey,
    pub status: CaseStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    pub trigger: Trigger,
    pub hint: IncidentHint,
    pub received_at_ms: i64,
    /// Filled by collect.
    #[serde(default)]
    pub incident_name: Option<String>,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default)]
    pub xdr_url: Option<String>,
    #[serde(default)]
    pub alert_count: usize,
    #[serde(default)]
    pub alert_names: Vec<String>,
    /// The first alerts, bounded, for the narrative (the full detail stays in XDR).
    #[serde(default)]
    pub alerts: Vec<AlertDigest>,
    #[serde(default)]
    pub indicators: Vec<Indicator>,
    /// Indicators beyond the stored cap, counted but not kept.
    #[serde(default)]
    pub indicators_dropped: usize,
    /// ATT&CK IDs XDR (or the webhook) cited.
    #[serde(default)]
    pub techniques: Vec<String>,
    /// ATT&CK IDs inferred by the rule table where XDR cited none, with rule and evidence.
    #[serde(default)]
    pub inferred_techniques: Vec<crate::attack_rules::InferredTechnique>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub first_alert_ms: Option<i64>,
    #[serde(default)]
    pub parse_warnings: Vec<String>,
    /// Sources the fan-out asked; fan-in waits for these or the deadline.
    #[serde(default)]
    pub expected_sources: Vec<String>,
    #[serde(default)]
    pub enrich_deadline_ms: Option<i64>,
    #[serde(default)]
    pub draft_id: Option<String>,
    #[serde(default)]
    pub history: Vec<StatusChange>,
}

impl Case {
    pub fn new(key: CaseKey, trigger: Trigger, hint: IncidentHint, now_ms: i64) -> Case {
        Case {
            key,
            status: CaseStatus::Received,
            failure: None,
            trigger,
            severity: hint.severity,
            hint,
            received_at_ms: now_ms,
            incident_name: None,
            xdr_url: None,
            alert_count: 0,
            alert_names: Vec::new(),
            alerts: Vec::new(),
            indicators: Vec::new(),
            indicators_dropped: 0,
            techniques: Vec::new(),
            inferred_techniques: Vec::new(),
            endpoints: Vec::new(),
            first_alert_ms: None,
            parse_warnings: Vec::new(),
            expected_sources: Vec::new(),
            enrich_deadline_ms: None,
            draft_id: None,
            history: vec![StatusChange { status: CaseStatus::Received, at_ms: now_ms }],
        }
    }

    pub fn move_to(&mut self, next: CaseStatus, now_ms: i64) -> Result<(), InvalidTransition> {
        if !self.status.can_move_to(next) {
            return Err(InvalidTransition { from: self.status, to: next });
        }
        self.status = next;
        self.history.push(StatusChange { status: next, at_ms: now_ms });
        Ok(())
    }

    /// Cited and inferred technique IDs, cited first.
    pub fn all_technique_ids(&self) -> Vec<String> {
        let mut ids = self.techniques.clone();
        for t in &self.inferred_techniques {
            if !ids.contains(&t.id) {
                ids.push(t.id.clone());
            }
        }
        ids
    }

    pub fn fail(&mut self, reason: impl Into<String>, now_ms: i64) -> Result<(), InvalidTransition> {
        self.move_to(CaseStatus::Failed, now_ms)?;
        self.failure = Some(reason.into());
        Ok(())
    }
}

/// Actions that change something in the world; only these can ever be proposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    IsolateEndpoint,
    RaiseSeverity,
    BlockHash,
    DisableUser,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IsolateEndpoint => "isolate_endpoint",
            Self::RaiseSeverity => "raise_severity",
            Self::BlockHash => "block_hash",
            Self::DisableUser => "disable_user",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::IsolateEndpoint => "Isolate endpoint",
            Self::RaiseSeverity => "Raise incident severity",
            Self::BlockHash => "Block file hash",
            Self::DisableUser => "Disable user",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Waiting for a human decision.
    Proposed,
    Approved,
    Rejected,
    /// Claimed by writeback; the XDR call is in flight (or crashed inside its lease).
    Executing,
    Executed,
    ExecutionFailed,
}

impl ActionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proposed => "proposed",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Executing => "executing",
            Self::Executed => "executed",
            Self::ExecutionFailed => "execution_failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub approved: bool,
    pub approver: String,
    pub at_ms: i64,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A gated action proposed by synthesis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub id: String,
    pub kind: ActionKind,
    /// Endpoint id, severity level, hash or user, depending on the kind.
    pub target: String,
    /// Human-readable target (host name for an endpoint id).
    pub target_label: String,
    pub rationale: String,
    pub status: ActionStatus,
    #[serde(default)]
    pub decision: Option<Decision>,
    #[serde(default)]
    pub execution_lease_until_ms: Option<i64>,
    /// What XDR answered (action id, status) or why it failed.
    #[serde(default)]
    pub execution_result: Option<String>,
    /// XDR's id for the response action this started (isolation), polled for its outcome.
    #[serde(default)]
    pub xdr_action_id: Option<String>,
    /// Signed links, one per approver (delivered to them; never written to the incident).
    #[serde(default)]
    pub links: Vec<ApprovalLink>,
    /// Deliveries of the links to approvers, per channel.
    #[serde(default)]
    pub notifications: Vec<Notification>,
}

impl Action {
    /// A newly proposed action: undecided, never run, no links yet.
    pub fn proposed(id: String, kind: ActionKind, target: String, target_label: String, rationale: String) -> Action {
        Action {
            id,
            kind,
            target,
            target_label,
            rationale,
            status: ActionStatus::Proposed,
            decision: None,
            execution_lease_until_ms: None,
            execution_result: None,
            xdr_action_id: None,
            links: Vec::new(),
            notifications: Vec::new(),
        }
    }
}

/// One delivery (or failed delivery) of an approval link.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub approver: String,
    pub channel: String,
    pub delivered: bool,
    pub detail: String,
    pub at_ms: i64,
}

/// One signed approval link for one approver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalLink {
    pub approver: String,
    pub url: String,
    pub expires_at_ms: i64,
}

/// One append-only audit record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub case: CaseKey,
    pub at_ms: i64,
    /// Function or person that acted.
    pub actor: String,
    /// What happened, dotted: `xdr.get_incident_extra_data`, `source.lookup`, `action.decided`.
    pub event: String,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_machine_allows_only_forward_moves() {
        let key = CaseKey::new("acme", "42").unwrap();
        let mut c = Case::new(key, Trigger::Webhook, IncidentHint::default(), 1);
        assert!(c.move_to(CaseStatus::Synthesizing, 2).is_err());
        for s in [CaseStatus::Collecting, CaseStatus::Enriching, CaseStatus::Synthesizing, CaseStatus::WritingBack, CaseStatus::Done] {
            c.move_to(s, 3).unwrap();
        }
        assert!(c.fail("late", 4).is_err(), "done is terminal");
        assert_eq!(c.history.len(), 6);
    }

    #[test]
    fn case_keys_are_validated() {
        assert!(CaseKey::new("acme", "42").is_ok());
        assert_eq!(CaseKey::new("", "1").unwrap_err().field, "tenant");
        assert!(CaseKey::new("acme", "1#2").is_err());
        assert!(CaseKey::new("acme", &"9".repeat(65)).is_err());
        assert_eq!(CaseKey::new("acme", "42").unwrap().storage_id(), "acme#42");
    }
}
