//! The case: one XDR incident being enriched. Its status machine is the table in
//! [`CaseStatus::can_move_to`]; every change goes through a method of [`Case`] that consults it.
//! Every non-terminal status has a budget: the case carries the time it is due, and the
//! reconciler moves an overdue case forward or ends it with a reason.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

use super::{Claim, Endpoint, Indicator, InferredTechnique, Lease, LostClaim, Owner, Severity};
use crate::domain::CaseKey;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Accepted at the door; waiting for collect.
    Received,
    /// Collect is waiting for XDR (its shared quota or a retryable error).
    Collecting,
    /// Sources are answering; synthesis starts when all have, or at the fan-in deadline.
    Enriching,
    /// One worker (the lease owner) is writing the dossier.
    Synthesizing,
    /// The dossier draft is stored; writeback is posting it.
    WritingBack,
    /// The dossier is posted; proposed actions wait for approvers.
    AwaitingApproval,
    Done,
    Failed,
    /// XDR resolved the incident before a dossier was written: no dossier is posted.
    Closed,
}

impl CaseStatus {
    pub const ALL: [CaseStatus; 9] = [
        Self::Received,
        Self::Collecting,
        Self::Enriching,
        Self::Synthesizing,
        Self::WritingBack,
        Self::AwaitingApproval,
        Self::Done,
        Self::Failed,
        Self::Closed,
    ];

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
            Self::Closed => "closed",
        }
    }

    /// The transition table of a case: the only moves any code may make.
    pub fn can_move_to(self, next: CaseStatus) -> bool {
        use CaseStatus::*;
        matches!(
            (self, next),
            (Received, Collecting | Enriching)
                | (Collecting, Enriching)
                | (Enriching, Synthesizing)
                // A lapsed lease is taken over by a new owner.
                | (Synthesizing, Synthesizing | WritingBack)
                | (WritingBack, AwaitingApproval | Done)
                | (AwaitingApproval, Done)
                | (Received | Collecting | Enriching | Synthesizing | WritingBack | AwaitingApproval, Failed)
                | (Received | Collecting | Enriching | Synthesizing, Closed)
        )
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Closed)
    }

    /// True once the dossier has been written back, or the case ended without one.
    pub fn is_settled(self) -> bool {
        matches!(self, Self::AwaitingApproval) || self.is_terminal()
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

/// How long a case may stay in each status before the reconciler acts, and how often it nudges
/// before it gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budgets {
    /// Received or collecting: XDR evidence fetched (10 extra-data calls a minute per tenant,
    /// so a burst legitimately waits).
    pub collect: Duration,
    /// After the fan-in deadline or a lapsed synthesis lease.
    pub synthesize: Duration,
    /// Drafted: the comment posted.
    pub write_back: Duration,
    /// Approved but not yet executing.
    pub execute: Duration,
    /// Nudges (re-sent messages) before an overdue case or action is ended with a reason.
    pub max_nudges: u32,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            collect: Duration::from_secs(15 * 60),
            synthesize: Duration::from_secs(5 * 60),
            write_back: Duration::from_secs(10 * 60),
            execute: Duration::from_secs(2 * 60),
            max_nudges: 6,
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// How the incident reached Dossier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Webhook,
    Poller,
    Local,
}

/// What the door was told before XDR was asked. Only the incident id and the severity and status
/// (for the rollout filter) are used at the door; the case's facts come from XDR.
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

/// Unusable answers from XDR before a case fails.
pub const MAX_COLLECT_FAILURES: u32 = 3;

/// Alerts kept per case, and characters kept per text field.
pub const MAX_ALERT_DIGESTS: usize = 50;
pub const MAX_ALERT_TEXT: usize = 600;

/// What the reconciler should do about an overdue case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaseOverdue {
    /// Send collect again.
    Collect,
    /// Send synthesize again (the fan-in deadline passed, or a synthesis lease lapsed).
    Synthesize,
    /// Send the draft's write-back again.
    WriteComment { draft_id: String },
    /// Look at the open actions: expire those past their links, then settle.
    Settle,
    /// Nudged too often: end the case with this reason.
    GiveUp(String),
}

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
    /// When the reconciler looks at this case next (none once terminal).
    #[serde(default)]
    pub due_at_ms: Option<i64>,
    /// Times the reconciler re-sent this status's message.
    #[serde(default)]
    pub nudges: u32,
    /// Answers from XDR that could not be used (a cut or malformed reply), so far.
    #[serde(default)]
    pub collect_failures: u32,
    /// The synthesis claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// XDR resolved the incident (its status then), when it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// Filled by collect, from XDR.
    #[serde(default)]
    pub incident_name: Option<String>,
    /// XDR's description of the incident (never the webhook caller's text).
    #[serde(default)]
    pub description: String,
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
    /// ATT&CK IDs XDR cited.
    #[serde(default)]
    pub techniques: Vec<String>,
    /// ATT&CK IDs inferred by the rule table where XDR cited none, with rule and evidence.
    #[serde(default)]
    pub inferred_techniques: Vec<InferredTechnique>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// What XDR itself says: kind, verdicts, outcomes, alert groups, key events.
    #[serde(default)]
    pub facts: super::CaseFacts,
    /// Domain suffixes learned from the tenant's own data (host FQDNs, UPN suffixes), internal
    /// like the configured ones.
    #[serde(default)]
    pub internal_suffixes: Vec<String>,
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
    pub fn new(key: CaseKey, trigger: Trigger, hint: IncidentHint, now_ms: i64, budgets: &Budgets) -> Case {
        Case {
            key,
            status: CaseStatus::Received,
            failure: None,
            trigger,
            severity: hint.severity,
            hint,
            received_at_ms: now_ms,
            due_at_ms: Some(now_ms + ms(budgets.collect)),
            nudges: 0,
            collect_failures: 0,
            lease: None,
            resolution: None,
            incident_name: None,
            description: String::new(),
            xdr_url: None,
            alert_count: 0,
            alert_names: Vec::new(),
            alerts: Vec::new(),
            indicators: Vec::new(),
            indicators_dropped: 0,
            techniques: Vec::new(),
            inferred_techniques: Vec::new(),
            endpoints: Vec::new(),
            facts: super::CaseFacts::default(),
            internal_suffixes: Vec::new(),
            first_alert_ms: None,
            parse_warnings: Vec::new(),
            expected_sources: Vec::new(),
            enrich_deadline_ms: None,
            draft_id: None,
            history: vec![StatusChange { status: CaseStatus::Received, at_ms: now_ms }],
        }
    }

    /// The expected sources not among `reported` (source names), in the order they were asked.
    pub fn missing_sources<S: AsRef<str>>(&self, reported: &[S]) -> Vec<String> {
        self.expected_sources.iter().filter(|s| !reported.iter().any(|r| r.as_ref() == s.as_str())).cloned().collect()
    }

    /// When the case last entered `status`, if it ever did.
    pub fn entered(&self, status: CaseStatus) -> Option<i64> {
        self.history.iter().rev().find(|c| c.status == status).map(|c| c.at_ms)
    }

    /// The one place a status changes: checks the table, records the change, and starts the new
    /// status's budget afresh.
    fn move_to(&mut self, next: CaseStatus, due_at_ms: Option<i64>, now_ms: i64) -> Result<(), InvalidTransition> {
        if !self.status.can_move_to(next) {
            return Err(InvalidTransition { from: self.status, to: next });
        }
        if next != self.status {
            self.history.push(StatusChange { status: next, at_ms: now_ms });
        }
        self.status = next;
        self.nudges = 0;
        self.due_at_ms = if next.is_terminal() { None } else { due_at_ms };
        if next != CaseStatus::Synthesizing {
            self.lease = None;
        }
        Ok(())
    }

    /// Collect must wait for XDR (quota, retryable error): Received → Collecting.
    pub fn collecting(&mut self, now_ms: i64, budgets: &Budgets) -> bool {
        match self.status {
            CaseStatus::Received => self.move_to(CaseStatus::Collecting, Some(now_ms + ms(budgets.collect)), now_ms).is_ok(),
            _ => false,
        }
    }

    /// XDR's answer could not be used. A cut reply is usually transient, so collect tries again
    /// a few times; then the case fails with the reason. `true` if the case ended.
    pub fn collect_failed(&mut self, reason: &str, now_ms: i64, budgets: &Budgets) -> bool {
        if !matches!(self.status, CaseStatus::Received | CaseStatus::Collecting) {
            return false;
        }
        self.collect_failures += 1;
        if self.collect_failures >= MAX_COLLECT_FAILURES {
            return self.fail(format!("{reason} ({} attempts)", self.collect_failures), now_ms);
        }
        self.collecting(now_ms, budgets);
        false
    }

    /// Collect stored the evidence and fans out: Received | Collecting → Enriching, due at the
    /// fan-in deadline. `false` if the case is past collecting.
    pub fn collected(&mut self, sources: Vec<String>, deadline_ms: i64, now_ms: i64) -> bool {
        if !matches!(self.status, CaseStatus::Received | CaseStatus::Collecting) {
            return false;
        }
        self.expected_sources = sources;
        self.enrich_deadline_ms = Some(deadline_ms);
        self.move_to(CaseStatus::Enriching, Some(deadline_ms), now_ms).is_ok()
    }

    /// Enriching → Synthesizing under `owner`'s lease; a lapsed lease is taken over.
    pub fn claim_synthesis(&mut self, owner: &Owner, lease_until_ms: i64, now_ms: i64) -> Claim {
        match (&self.status, &self.lease) {
            (CaseStatus::Enriching, _) => {}
            (CaseStatus::Synthesizing, Some(lease)) if lease.held_by(owner) => return Claim::Granted { reclaimed: false },
            (CaseStatus::Synthesizing, Some(lease)) if !lease.lapsed(now_ms) => return Claim::Busy { until_ms: lease.until_ms },
            (CaseStatus::Synthesizing, _) => {}
            (s, _) if s.is_terminal() || *s == CaseStatus::WritingBack || *s == CaseStatus::AwaitingApproval => return Claim::Done,
            (s, _) => return Claim::Refused(format!("case is {s}, not enriching")),
        }
        let reclaimed = self.status == CaseStatus::Synthesizing;
        match self.move_to(CaseStatus::Synthesizing, Some(lease_until_ms), now_ms) {
            Ok(()) => {
                self.lease = Some(Lease::new(owner, lease_until_ms));
                Claim::Granted { reclaimed }
            }
            Err(e) => Claim::Refused(e.to_string()),
        }
    }

    /// The owner stored its draft: Synthesizing → WritingBack.
    pub fn drafted(&mut self, owner: &Owner, draft_id: &str, now_ms: i64, budgets: &Budgets) -> Result<(), LostClaim> {
        let held = self.status == CaseStatus::Synthesizing && self.lease.as_ref().is_some_and(|l| l.held_by(owner));
        if !held {
            return Err(LostClaim(format!("case {} is {} under another owner", self.key, self.status)));
        }
        self.draft_id = Some(draft_id.to_string());
        self.move_to(CaseStatus::WritingBack, Some(now_ms + ms(budgets.write_back)), now_ms).map_err(|e| LostClaim(e.to_string()))
    }

    /// After the dossier comment is posted, or whenever an action ends: AwaitingApproval while
    /// any action is open (due when the earliest open one is), else Done. A case still writing
    /// back settles only once its dossier is posted. `true` if it changed.
    pub fn settle(&mut self, open: &OpenActions, dossier_posted: bool, now_ms: i64) -> bool {
        let next = match (self.status, open.any) {
            (CaseStatus::WritingBack, _) if !dossier_posted => return false,
            (CaseStatus::WritingBack, true) => CaseStatus::AwaitingApproval,
            (CaseStatus::WritingBack | CaseStatus::AwaitingApproval, false) => CaseStatus::Done,
            (CaseStatus::AwaitingApproval, true) => {
                // Still waiting; the budget follows the open actions.
                let changed = self.due_at_ms != open.due_at_ms;
                self.due_at_ms = open.due_at_ms;
                return changed;
            }
            _ => return false,
        };
        self.move_to(next, open.due_at_ms, now_ms).is_ok()
    }

    /// Ends the case with a reason the analyst can act on. `false` if it had already ended.
    pub fn fail(&mut self, reason: impl Into<String>, now_ms: i64) -> bool {
        if self.move_to(CaseStatus::Failed, None, now_ms).is_err() {
            return false;
        }
        self.failure = Some(reason.into());
        true
    }

    /// XDR resolved the incident. Before a dossier exists the case closes without one; after,
    /// the resolution is recorded (open actions are then expired by the closure path).
    /// `true` if anything changed.
    pub fn resolve(&mut self, resolution: &str, now_ms: i64) -> bool {
        let first = self.resolution.is_none();
        self.resolution.get_or_insert_with(|| resolution.to_string());
        if self.status.can_move_to(CaseStatus::Closed) {
            self.failure = Some(format!("XDR resolved the incident ({resolution}) before the dossier was written"));
            return self.move_to(CaseStatus::Closed, None, now_ms).is_ok() || first;
        }
        first
    }

    pub fn is_resolved(&self) -> bool {
        self.resolution.is_some()
    }

    /// What is owed when the case is past its budget; `None` while it is not due.
    pub fn overdue(&self, now_ms: i64, budgets: &Budgets) -> Option<CaseOverdue> {
        let due = self.due_at_ms?;
        if now_ms < due {
            return None;
        }
        let owed = match self.status {
            CaseStatus::Received | CaseStatus::Collecting => CaseOverdue::Collect,
            CaseStatus::Enriching | CaseStatus::Synthesizing => CaseOverdue::Synthesize,
            CaseStatus::WritingBack => match &self.draft_id {
                Some(id) => CaseOverdue::WriteComment { draft_id: id.clone() },
                None => CaseOverdue::GiveUp("writing back without a draft".into()),
            },
            CaseStatus::AwaitingApproval => return Some(CaseOverdue::Settle),
            CaseStatus::Done | CaseStatus::Failed | CaseStatus::Closed => return None,
        };
        if self.nudges >= budgets.max_nudges {
            let minutes = (now_ms - self.history.last().map_or(self.received_at_ms, |h| h.at_ms)) / 60_000;
            return Some(CaseOverdue::GiveUp(format!("stuck {} for {minutes} min after {} retries", self.status, self.nudges)));
        }
        Some(owed)
    }

    /// The reconciler re-sent this status's message: count it and wait one more budget.
    pub fn nudged(&mut self, now_ms: i64, budgets: &Budgets) {
        self.nudges += 1;
        let budget = match self.status {
            CaseStatus::Received | CaseStatus::Collecting => budgets.collect,
            CaseStatus::Enriching | CaseStatus::Synthesizing => budgets.synthesize,
            _ => budgets.write_back,
        };
        self.due_at_ms = Some(now_ms + ms(budget));
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
}

/// Whether any action of a case is still open, and when the earliest open one is due.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenActions {
    pub any: bool,
    pub due_at_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case() -> Case {
        Case::new(CaseKey::new("acme", "42").unwrap(), Trigger::Webhook, IncidentHint::default(), 1_000, &Budgets::default())
    }

    /// The allowed moves, written out independently of the table: every other pair is refused.
    const ALLOWED: &[(CaseStatus, CaseStatus)] = {
        use CaseStatus::*;
        &[
            (Received, Collecting),
            (Received, Enriching),
            (Received, Failed),
            (Received, Closed),
            (Collecting, Enriching),
            (Collecting, Failed),
            (Collecting, Closed),
            (Enriching, Synthesizing),
            (Enriching, Failed),
            (Enriching, Closed),
            (Synthesizing, Synthesizing),
            (Synthesizing, WritingBack),
            (Synthesizing, Failed),
            (Synthesizing, Closed),
            (WritingBack, AwaitingApproval),
            (WritingBack, Done),
            (WritingBack, Failed),
            (AwaitingApproval, Done),
            (AwaitingApproval, Failed),
        ]
    };

    #[test]
    fn missing_sources_and_when_a_status_was_entered() {
        let mut c = case();
        assert_eq!(c.entered(CaseStatus::Enriching), None);
        assert!(c.collected(vec!["attack".into(), "otx".into(), "vt".into()], 90_000, 5_000));
        assert_eq!(c.entered(CaseStatus::Enriching), Some(5_000));
        assert_eq!(c.entered(CaseStatus::Received), Some(c.received_at_ms));
        assert_eq!(c.missing_sources(&["otx"]), vec!["attack".to_string(), "vt".to_string()]);
        assert!(c.missing_sources(&["vt", "attack", "otx", "other"]).is_empty());
    }

    #[test]
    fn the_transition_table_allows_exactly_the_listed_moves() {
        for from in CaseStatus::ALL {
            for to in CaseStatus::ALL {
                assert_eq!(from.can_move_to(to), ALLOWED.contains(&(from, to)), "{from} -> {to}");
            }
        }
        for s in CaseStatus::ALL {
            assert_eq!(s.is_terminal(), !CaseStatus::ALL.iter().any(|t| s.can_move_to(*t)), "{s}: terminal means no way out");
        }
    }

    /// Every method, from every status, makes only moves the table allows.
    #[test]
    fn every_method_from_every_status_respects_the_table() {
        let b = Budgets::default();
        let owner = Owner::new("t");
        let other = Owner::new("u");
        let open = OpenActions { any: true, due_at_ms: Some(9_000) };
        let none = OpenActions::default();
        for from in CaseStatus::ALL {
            let start = || {
                let mut c = case();
                c.status = from;
                c.due_at_ms = (!from.is_terminal()).then_some(1_500);
                c.lease = (from == CaseStatus::Synthesizing).then(|| Lease::new(&other, 5_000));
                c
            };
            let mut attempts: Vec<(&str, Case)> = Vec::new();
            let mut c = start();
            c.collecting(2_000, &b);
            attempts.push(("collecting", c));
            let mut c = start();
            c.collected(vec!["attack".into()], 3_000, 2_000);
            attempts.push(("collected", c));
            let mut c = start();
            c.claim_synthesis(&owner, 4_000, 2_000);
            attempts.push(("claim (lease live)", c));
            let mut c = start();
            c.claim_synthesis(&owner, 9_000, 6_000);
            attempts.push(("claim (lease lapsed)", c));
            let mut c = start();
            let _ = c.drafted(&owner, "d", 2_000, &b);
            attempts.push(("drafted by a non-owner", c));
            let mut c = start();
            c.lease = Some(Lease::new(&owner, 5_000));
            let _ = c.drafted(&owner, "d", 2_000, &b);
            attempts.push(("drafted by the owner", c));
            for o in [open, none] {
                for posted in [true, false] {
                    let mut c = start();
                    c.settle(&o, posted, 2_000);
                    attempts.push(("settle", c));
                }
            }
            let mut c = start();
            c.fail("x", 2_000);
            attempts.push(("fail", c));
            let mut c = start();
            c.collect_failures = MAX_COLLECT_FAILURES - 1;
            c.collect_failed("unusable", 2_000, &b);
            attempts.push(("collect failed for good", c));
            let mut c = start();
            c.collect_failed("unusable", 2_000, &b);
            attempts.push(("collect failed once", c));
            let mut c = start();
            c.resolve("resolved_other", 2_000);
            attempts.push(("resolve", c));
            for (what, c) in attempts {
                assert!(c.status == from || from.can_move_to(c.status), "{what}: {from} -> {} is not in the table", c.status);
                assert_eq!(c.due_at_ms.is_none(), c.status.is_terminal(), "{what} from {from}: due time iff not terminal");
            }
        }
    }

    #[test]
    fn synthesis_has_one_owner_until_its_lease_lapses() {
        let b = Budgets::default();
        let (a, z) = (Owner::new("synthesize"), Owner::new("synthesize"));
        let mut c = case();
        assert!(c.collected(vec!["attack".into()], 5_000, 2_000));
        assert_eq!(c.claim_synthesis(&a, 10_000, 3_000), Claim::Granted { reclaimed: false });
        assert_eq!(c.claim_synthesis(&z, 11_000, 4_000), Claim::Busy { until_ms: 10_000 });
        assert!(c.drafted(&z, "dossier-1", 4_000, &b).is_err(), "a non-owner cannot hand over");
        // The lease lapses (the owner died): another worker takes over and the first is out.
        assert_eq!(c.claim_synthesis(&z, 20_000, 10_000), Claim::Granted { reclaimed: true });
        assert!(c.drafted(&a, "dossier-1", 11_000, &b).is_err());
        assert!(c.drafted(&z, "dossier-1", 11_000, &b).is_ok());
        assert_eq!((c.status, c.lease.is_none()), (CaseStatus::WritingBack, true));
        assert_eq!(c.claim_synthesis(&a, 30_000, 12_000), Claim::Done);
    }

    /// The comment message is sent beside the hand-over commit, its draft created at the
    /// version that commit gives the case (see `stages::synthesize`): sound only while no claim
    /// is ever granted after the hand-over. No status reachable from WritingBack leads back to
    /// Enriching or Synthesizing, and a claim asked in any of them is refused or done.
    #[test]
    fn no_claim_after_the_hand_over() {
        let mut reachable = vec![CaseStatus::WritingBack];
        let mut i = 0;
        while i < reachable.len() {
            for next in CaseStatus::ALL {
                if reachable[i].can_move_to(next) && !reachable.contains(&next) {
                    reachable.push(next);
                }
            }
            i += 1;
        }
        assert!(!reachable.contains(&CaseStatus::Enriching) && !reachable.contains(&CaseStatus::Synthesizing), "{reachable:?}");
        let owner = Owner::new("synthesize");
        for status in reachable {
            let mut c = case();
            c.status = status;
            let claim = c.claim_synthesis(&owner, 99_000, 50_000);
            assert!(!matches!(claim, Claim::Granted { .. }), "{status}: {claim:?}");
            assert_eq!(c.status, status, "{status}: a refused claim changes nothing");
        }
    }

    #[test]
    fn settling_waits_for_open_actions_then_is_done() {
        let b = Budgets::default();
        let o = Owner::new("s");
        let mut c = case();
        c.collected(vec![], 2_000, 1_500);
        c.claim_synthesis(&o, 9_000, 2_000);
        c.drafted(&o, "d", 3_000, &b).unwrap();
        assert!(!c.settle(&OpenActions::default(), false, 3_500), "not before the dossier is posted");
        assert!(c.settle(&OpenActions { any: true, due_at_ms: Some(50_000) }, true, 4_000));
        assert_eq!((c.status, c.due_at_ms), (CaseStatus::AwaitingApproval, Some(50_000)));
        assert!(c.settle(&OpenActions::default(), false, 5_000));
        assert_eq!((c.status, c.due_at_ms), (CaseStatus::Done, None));
        assert!(!c.fail("late", 6_000), "done is terminal");
    }

    #[test]
    fn overdue_cases_are_nudged_then_given_up() {
        let b = Budgets { max_nudges: 2, ..Budgets::default() };
        let mut c = case();
        let due = c.due_at_ms.unwrap();
        assert_eq!(c.overdue(due - 1, &b), None);
        assert_eq!(c.overdue(due, &b), Some(CaseOverdue::Collect));
        c.nudged(due, &b);
        c.nudged(c.due_at_ms.unwrap(), &b);
        assert!(matches!(c.overdue(c.due_at_ms.unwrap(), &b), Some(CaseOverdue::GiveUp(r)) if r.contains("stuck received")));
        c.fail("given up", 0);
        assert_eq!(c.overdue(i64::MAX, &b), None);
    }

    #[test]
    fn a_resolved_incident_closes_an_early_case_and_is_only_recorded_later() {
        let mut c = case();
        assert!(c.resolve("resolved_duplicate", 2_000));
        assert_eq!(c.status, CaseStatus::Closed);
        assert!(c.failure.as_deref().unwrap().contains("resolved_duplicate"));
        let b = Budgets::default();
        let o = Owner::new("s");
        let mut d = case();
        d.collected(vec![], 2_000, 1_500);
        d.claim_synthesis(&o, 9_000, 2_000);
        d.drafted(&o, "d", 3_000, &b).unwrap();
        assert!(d.resolve("resolved_true_positive", 4_000));
        assert_eq!((d.status, d.is_resolved()), (CaseStatus::WritingBack, true));
        assert!(!d.resolve("resolved_true_positive", 5_000), "recorded once");
    }
}
