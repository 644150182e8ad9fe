//! Gated actions: changes to the world (isolate a host, raise severity, block a hash, disable a
//! user) that run only after a decision. The status machine is [`ActionStatus::can_move_to`];
//! every change is a method of [`Action`].

use serde::{Deserialize, Serialize};

use super::{Budgets, CaseKey, Claim, Lease, LostClaim, Owner};

/// Actions that change something in the world; only these can ever be proposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    IsolateEndpoint,
    RaiseSeverity,
    BlockHash,
    DisableUser,
    /// Mark this incident and a related one (the target) as one intrusion. XDR's public API
    /// documents no merge: the approved decision is posted to both incidents for the console merge.
    MergeCases,
    /// Open one investigation for a cluster of cases the hunt found (the target lists their
    /// incident ids). XDR documents no call for it: the decision is posted to each incident.
    OpenInvestigation,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IsolateEndpoint => "isolate_endpoint",
            Self::RaiseSeverity => "raise_severity",
            Self::BlockHash => "block_hash",
            Self::DisableUser => "disable_user",
            Self::MergeCases => "merge_cases",
            Self::OpenInvestigation => "open_investigation",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::IsolateEndpoint => "Isolate endpoint",
            Self::RaiseSeverity => "Raise incident severity",
            Self::BlockHash => "Block file hash",
            Self::DisableUser => "Disable user",
            Self::MergeCases => "Merge with related incident",
            Self::OpenInvestigation => "Open a campaign investigation",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Waiting for a human decision.
    Proposed,
    Approved,
    Rejected,
    /// Never decided in time, or the incident was resolved first (`end_reason` says which).
    Expired,
    /// Claimed by writeback under a lease; the call is in flight (or its worker died).
    Executing,
    Executed,
    ExecutionFailed,
}

impl ActionStatus {
    pub const ALL: [ActionStatus; 7] =
        [Self::Proposed, Self::Approved, Self::Rejected, Self::Expired, Self::Executing, Self::Executed, Self::ExecutionFailed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proposed => "proposed",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Executing => "executing",
            Self::Executed => "executed",
            Self::ExecutionFailed => "execution_failed",
        }
    }

    /// The transition table of an action: the only moves any code may make.
    pub fn can_move_to(self, next: ActionStatus) -> bool {
        use ActionStatus::*;
        matches!(
            (self, next),
            (Proposed, Approved | Rejected | Expired)
                | (Approved, Executing | Expired)
                // A lapsed execution lease is taken over by a new owner; a call the system provably
                // refused (before doing anything) releases the claim.
                | (Executing, Approved | Executing | Executed | ExecutionFailed)
        )
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Rejected | Self::Expired | Self::Executed | Self::ExecutionFailed)
    }

    /// Still waiting for a decision or an execution.
    pub fn is_open(self) -> bool {
        !self.is_terminal()
    }
}

impl std::fmt::Display for ActionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub approved: bool,
    /// The approver named in the link, or `policy:…` for an automatic approval.
    pub approver: String,
    pub at_ms: i64,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// How the approver's identity was established (`link`, `oidc:<issuer>`, `policy`).
    #[serde(default)]
    pub proof: Option<String>,
}

/// Why a decision was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecisionRefused {
    #[error("already {0}")]
    AlreadyDecided(ActionStatus),
    #[error("the approval window closed")]
    Expired,
    #[error("the incident was resolved in XDR")]
    IncidentResolved,
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

/// What happened when the action ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Execution {
    /// Done; what the system answered, and its own action id when it gives one (isolation).
    Succeeded {
        detail: String,
        xdr_action_id: Option<String>,
    },
    Failed(String),
}

/// What the reconciler should do about an overdue action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionOverdue {
    /// The approvers were never told: send the notification again.
    Notify,
    /// Approved (or its execution lease lapsed): send the execution again.
    Execute,
    /// End it with this reason (links expired, or nudged too often).
    Expire(String),
    /// Executing too long after too many nudges: record it as failed with this reason.
    GiveUp(String),
}

/// What synthesis (the rules or the model) proposes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub kind: ActionKind,
    pub target: String,
    pub target_label: String,
    pub rationale: String,
}

impl Proposal {
    /// Ids derive from kind and target: the same proposal twice is one action.
    pub fn id(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.target.as_bytes());
        format!("{}-{}", self.kind.as_str().replace('_', "-"), hex::encode(&digest[..5]))
    }
}

/// A gated action proposed by synthesis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub case: CaseKey,
    pub id: String,
    pub kind: ActionKind,
    /// Endpoint id, severity level, hash or user, depending on the kind.
    pub target: String,
    /// Human-readable target (host name for an endpoint id).
    pub target_label: String,
    pub rationale: String,
    pub status: ActionStatus,
    #[serde(default)]
    pub created_at_ms: i64,
    /// When the approval links lapse; a proposed action then expires.
    #[serde(default)]
    pub expires_at_ms: i64,
    #[serde(default)]
    pub decision: Option<Decision>,
    /// The execution claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// Execution claims taken (a second one follows a worker that died mid-call).
    #[serde(default)]
    pub attempts: u32,
    /// What the system answered, or why it failed.
    #[serde(default)]
    pub execution_result: Option<String>,
    /// XDR's id for the response action this started (isolation), polled for its outcome.
    #[serde(default)]
    pub xdr_action_id: Option<String>,
    /// Why an action ended without running (expiry, incident resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// When the reconciler looks at it next (none once ended).
    #[serde(default)]
    pub due_at_ms: Option<i64>,
    #[serde(default)]
    pub nudges: u32,
    /// Signed links, one per approver (delivered to them; never written to the incident).
    #[serde(default)]
    pub links: Vec<ApprovalLink>,
    /// Whether the approvers have been told (every channel tried to the end).
    #[serde(default)]
    pub notified: bool,
    /// Deliveries of the links to approvers, per channel.
    #[serde(default)]
    pub notifications: Vec<Notification>,
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Action {
    /// A newly proposed action: undecided, never run, no links yet; the approvers are told
    /// within the execute budget, and it expires with its links.
    pub fn proposed(case: &CaseKey, p: Proposal, now_ms: i64, expires_at_ms: i64, budgets: &Budgets) -> Action {
        Action {
            case: case.clone(),
            id: p.id(),
            kind: p.kind,
            target: p.target,
            target_label: p.target_label,
            rationale: p.rationale,
            status: ActionStatus::Proposed,
            created_at_ms: now_ms,
            expires_at_ms,
            decision: None,
            lease: None,
            attempts: 0,
            execution_result: None,
            xdr_action_id: None,
            end_reason: None,
            due_at_ms: Some((now_ms + ms(budgets.execute)).min(expires_at_ms)),
            nudges: 0,
            links: Vec::new(),
            notified: false,
            notifications: Vec::new(),
        }
    }

    /// The one place a status changes.
    fn move_to(&mut self, next: ActionStatus, due_at_ms: Option<i64>) -> bool {
        if !self.status.can_move_to(next) {
            return false;
        }
        self.status = next;
        self.nudges = 0;
        self.due_at_ms = if next.is_terminal() { None } else { due_at_ms };
        if next != ActionStatus::Executing {
            self.lease = None;
        }
        true
    }

    /// A person (or a policy) decides. Refused once decided, after the links lapsed, or once
    /// the incident is resolved.
    pub fn decide(&mut self, decision: Decision, incident_resolved: bool, budgets: &Budgets) -> Result<(), DecisionRefused> {
        if self.status != ActionStatus::Proposed {
            return Err(DecisionRefused::AlreadyDecided(self.status));
        }
        if incident_resolved {
            return Err(DecisionRefused::IncidentResolved);
        }
        if decision.at_ms >= self.expires_at_ms {
            return Err(DecisionRefused::Expired);
        }
        let (next, due) = if decision.approved {
            (ActionStatus::Approved, Some(decision.at_ms + ms(budgets.execute)))
        } else {
            (ActionStatus::Rejected, None)
        };
        self.move_to(next, due);
        self.decision = Some(decision);
        Ok(())
    }

    /// Approved → Executing under `owner`'s lease; a lapsed lease is taken over (`reclaimed`).
    pub fn claim_execution(&mut self, owner: &Owner, lease_until_ms: i64, now_ms: i64) -> Claim {
        match (&self.status, &self.lease) {
            (ActionStatus::Approved, _) => {}
            (ActionStatus::Executing, Some(l)) if l.held_by(owner) => return Claim::Granted { reclaimed: false },
            (ActionStatus::Executing, Some(l)) if !l.lapsed(now_ms) => return Claim::Busy { until_ms: l.until_ms },
            (ActionStatus::Executing, _) => {}
            (ActionStatus::Proposed, _) => return Claim::Refused("not approved".into()),
            (s, _) => return if *s == ActionStatus::Rejected { Claim::Refused("rejected".into()) } else { Claim::Done },
        }
        let reclaimed = self.status == ActionStatus::Executing;
        self.move_to(ActionStatus::Executing, Some(lease_until_ms));
        self.lease = Some(Lease::new(owner, lease_until_ms));
        self.attempts += 1;
        Claim::Granted { reclaimed }
    }

    /// The owner records the outcome: Executing → Executed | ExecutionFailed.
    pub fn finish(&mut self, owner: &Owner, outcome: Execution) -> Result<(), LostClaim> {
        let held = self.status == ActionStatus::Executing && self.lease.as_ref().is_some_and(|l| l.held_by(owner));
        if !held {
            return Err(LostClaim(format!("action {} is {} under another owner", self.id, self.status)));
        }
        match outcome {
            Execution::Succeeded { detail, xdr_action_id } => {
                self.move_to(ActionStatus::Executed, None);
                self.execution_result = Some(detail);
                self.xdr_action_id = xdr_action_id;
            }
            Execution::Failed(reason) => {
                self.move_to(ActionStatus::ExecutionFailed, None);
                self.execution_result = Some(reason);
            }
        }
        Ok(())
    }

    /// The system provably refused the call before doing anything (a 429, a 401): back to
    /// approved, due at once, so the retry need not wait for the lease.
    pub fn release(&mut self, owner: &Owner, now_ms: i64) -> Result<(), LostClaim> {
        let held = self.status == ActionStatus::Executing && self.lease.as_ref().is_some_and(|l| l.held_by(owner));
        if !held {
            return Err(LostClaim(format!("action {} is {} under another owner", self.id, self.status)));
        }
        self.move_to(ActionStatus::Approved, Some(now_ms));
        Ok(())
    }

    /// What the system reported later about an executed action (an isolation's final status).
    pub fn record_outcome(&mut self, detail: &str) -> bool {
        if self.status != ActionStatus::Executed {
            return false;
        }
        let before = self.execution_result.take().unwrap_or_default();
        self.execution_result = Some(if before.is_empty() { detail.to_string() } else { format!("{before} — {detail}") });
        true
    }

    /// Ends an action that has not started running (links lapsed, incident resolved). `true` if
    /// it changed.
    pub fn expire(&mut self, reason: impl Into<String>) -> bool {
        if !self.move_to(ActionStatus::Expired, None) {
            return false;
        }
        self.end_reason = Some(reason.into());
        true
    }

    /// The approvers have been told (or every channel failed for good).
    pub fn record_notifications(&mut self, deliveries: Vec<Notification>, complete: bool) {
        self.notifications.extend(deliveries);
        if complete && !self.notified {
            self.notified = true;
            if self.status == ActionStatus::Proposed {
                self.due_at_ms = Some(self.expires_at_ms);
            }
        }
    }

    /// What is owed when the action is past its budget; `None` while it is not due.
    pub fn overdue(&self, now_ms: i64, budgets: &Budgets) -> Option<ActionOverdue> {
        let due = self.due_at_ms?;
        if now_ms < due {
            return None;
        }
        match self.status {
            ActionStatus::Proposed if now_ms >= self.expires_at_ms => {
                Some(ActionOverdue::Expire("no decision before the approval links expired".into()))
            }
            ActionStatus::Proposed if self.nudges >= budgets.max_nudges => {
                Some(ActionOverdue::Expire(format!("the approvers could not be told after {} attempts", self.nudges)))
            }
            ActionStatus::Proposed => Some(ActionOverdue::Notify),
            ActionStatus::Approved | ActionStatus::Executing if self.nudges >= budgets.max_nudges => {
                Some(ActionOverdue::GiveUp(format!("not executed after {} attempts", self.nudges)))
            }
            ActionStatus::Approved | ActionStatus::Executing => Some(ActionOverdue::Execute),
            _ => None,
        }
    }

    /// The reconciler re-sent this action's message: count it and wait one more budget.
    pub fn nudged(&mut self, now_ms: i64, budgets: &Budgets) {
        self.nudges += 1;
        let next = now_ms + ms(budgets.execute);
        self.due_at_ms = Some(if self.status == ActionStatus::Proposed { next.min(self.expires_at_ms) } else { next });
    }

    /// Ends an execution that never finished (its workers kept dying): recorded as failed.
    pub fn give_up(&mut self, reason: impl Into<String>) -> bool {
        let reason = reason.into();
        match self.status {
            ActionStatus::Approved => self.expire(reason),
            ActionStatus::Executing => {
                let moved = self.move_to(ActionStatus::ExecutionFailed, None);
                if moved {
                    self.execution_result = Some(reason);
                }
                moved
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action() -> Action {
        let p = Proposal { kind: ActionKind::IsolateEndpoint, target: "ep1".into(), target_label: "pc1".into(), rationale: "why".into() };
        Action::proposed(&CaseKey::new("acme", "1").unwrap(), p, 1_000, 1_000_000, &Budgets::default())
    }

    fn decision(approved: bool, at_ms: i64) -> Decision {
        Decision { approved, approver: "soc@corp.example".into(), at_ms, source_ip: None, user_agent: None, proof: None }
    }

    const ALLOWED: &[(ActionStatus, ActionStatus)] = {
        use ActionStatus::*;
        &[
            (Proposed, Approved),
            (Proposed, Rejected),
            (Proposed, Expired),
            (Approved, Executing),
            (Approved, Expired),
            (Executing, Approved),
            (Executing, Executing),
            (Executing, Executed),
            (Executing, ExecutionFailed),
        ]
    };

    #[test]
    fn the_transition_table_allows_exactly_the_listed_moves() {
        for from in ActionStatus::ALL {
            for to in ActionStatus::ALL {
                assert_eq!(from.can_move_to(to), ALLOWED.contains(&(from, to)), "{from} -> {to}");
            }
            assert_eq!(from.is_terminal(), !ActionStatus::ALL.iter().any(|t| from.can_move_to(*t)), "{from}");
        }
    }

    #[test]
    fn every_method_from_every_status_respects_the_table() {
        let b = Budgets::default();
        let (me, other) = (Owner::new("w"), Owner::new("w"));
        for from in ActionStatus::ALL {
            let start = || {
                let mut a = action();
                a.status = from;
                a.due_at_ms = (!from.is_terminal()).then_some(1_500);
                a.lease = (from == ActionStatus::Executing).then(|| Lease::new(&other, 5_000));
                a
            };
            let mut results: Vec<(&str, Action)> = Vec::new();
            for approved in [true, false] {
                let mut a = start();
                let _ = a.decide(decision(approved, 2_000), false, &b);
                results.push(("decide", a));
            }
            let mut a = start();
            let _ = a.decide(decision(true, 2_000), true, &b);
            results.push(("decide after resolution", a));
            for now in [2_000, 9_000] {
                let mut a = start();
                a.claim_execution(&me, now + 1_000, now);
                results.push(("claim", a));
            }
            let mut a = start();
            let _ = a.finish(&me, Execution::Failed("x".into()));
            results.push(("finish by a non-owner", a));
            let mut a = start();
            a.lease = Some(Lease::new(&me, 5_000));
            let _ = a.finish(&me, Execution::Succeeded { detail: "ok".into(), xdr_action_id: None });
            results.push(("finish by the owner", a));
            let mut a = start();
            a.lease = Some(Lease::new(&me, 5_000));
            let _ = a.release(&me, 2_000);
            results.push(("release", a));
            let mut a = start();
            a.expire("x");
            results.push(("expire", a));
            let mut a = start();
            a.give_up("x");
            results.push(("give up", a));
            for (what, a) in results {
                assert!(a.status == from || from.can_move_to(a.status), "{what}: {from} -> {}", a.status);
                assert_eq!(a.due_at_ms.is_none(), a.status.is_terminal(), "{what} from {from}: due time iff open");
            }
        }
    }

    #[test]
    fn one_decision_and_none_after_expiry_or_resolution() {
        let b = Budgets::default();
        let mut a = action();
        assert_eq!(a.clone().decide(decision(true, 1_000_000), false, &b), Err(DecisionRefused::Expired));
        assert_eq!(a.clone().decide(decision(true, 2_000), true, &b), Err(DecisionRefused::IncidentResolved));
        a.decide(decision(false, 2_000), false, &b).unwrap();
        assert_eq!(a.decide(decision(true, 3_000), false, &b), Err(DecisionRefused::AlreadyDecided(ActionStatus::Rejected)));
        assert_eq!(a.claim_execution(&Owner::new("w"), 10_000, 4_000), Claim::Refused("rejected".into()));
    }

    #[test]
    fn one_execution_per_approval_and_a_lapsed_lease_is_reclaimed() {
        let b = Budgets::default();
        let (w1, w2) = (Owner::new("w"), Owner::new("w"));
        let mut a = action();
        assert_eq!(a.claim_execution(&w1, 10_000, 1_500), Claim::Refused("not approved".into()));
        a.decide(decision(true, 2_000), false, &b).unwrap();
        assert_eq!(a.claim_execution(&w1, 10_000, 3_000), Claim::Granted { reclaimed: false });
        assert_eq!(a.claim_execution(&w2, 11_000, 4_000), Claim::Busy { until_ms: 10_000 });
        assert_eq!(a.claim_execution(&w2, 20_000, 10_000), Claim::Granted { reclaimed: true });
        assert!(a.finish(&w1, Execution::Succeeded { detail: "late".into(), xdr_action_id: None }).is_err(), "w1 lost it");
        a.finish(&w2, Execution::Succeeded { detail: "isolated".into(), xdr_action_id: Some("77".into()) }).unwrap();
        assert_eq!((a.status, a.attempts, a.xdr_action_id.as_deref()), (ActionStatus::Executed, 2, Some("77")));
        assert_eq!(a.claim_execution(&w1, 30_000, 11_000), Claim::Done);
    }

    #[test]
    fn overdue_actions_are_notified_executed_or_expired() {
        let b = Budgets { max_nudges: 1, ..Budgets::default() };
        let mut a = action();
        let due = a.due_at_ms.unwrap();
        assert_eq!(a.overdue(due - 1, &b), None);
        assert_eq!(a.overdue(due, &b), Some(ActionOverdue::Notify));
        a.record_notifications(Vec::new(), true);
        assert_eq!(a.due_at_ms, Some(1_000_000), "once told, due when the links lapse");
        assert!(matches!(a.overdue(1_000_000, &b), Some(ActionOverdue::Expire(_))));
        let mut approved = action();
        approved.decide(decision(true, 2_000), false, &b).unwrap();
        let due = approved.due_at_ms.unwrap();
        assert_eq!(approved.overdue(due, &b), Some(ActionOverdue::Execute));
        approved.nudged(due, &b);
        assert!(matches!(approved.overdue(approved.due_at_ms.unwrap(), &b), Some(ActionOverdue::GiveUp(_))));
        assert!(approved.give_up("never ran"));
        assert_eq!(approved.status, ActionStatus::Expired);
    }
}
