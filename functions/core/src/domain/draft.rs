//! A draft: one comment Dossier writes to the incident (the dossier, the closure note, an action
//! result), posted exactly once. The status machine is [`DraftStatus::can_move_to`].

use serde::{Deserialize, Serialize};

use super::{Budgets, CaseKey, Claim, Lease, LostClaim, Owner};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DraftKind {
    /// The dossier itself.
    Dossier,
    /// The closure note when XDR resolves the incident.
    Closure,
    /// A short note (an action's result).
    Note,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DraftStatus {
    Pending,
    /// Claimed by writeback under a lease; the XDR call is in flight (or its worker died).
    Posting,
    Posted,
    /// Will never be posted (XDR refused it for good); `end_reason` says why.
    Abandoned,
}

impl DraftStatus {
    pub const ALL: [DraftStatus; 4] = [Self::Pending, Self::Posting, Self::Posted, Self::Abandoned];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Posting => "posting",
            Self::Posted => "posted",
            Self::Abandoned => "abandoned",
        }
    }

    /// The transition table of a draft.
    pub fn can_move_to(self, next: DraftStatus) -> bool {
        use DraftStatus::*;
        matches!(
            (self, next),
            (Pending, Posting | Abandoned)
                // Released when XDR provably did not store it; retaken when the lease lapsed.
                | (Posting, Pending | Posting | Posted | Abandoned)
        )
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Posted | Self::Abandoned)
    }
}

impl std::fmt::Display for DraftStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the reconciler should do about an overdue draft.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DraftOverdue {
    /// Send the write-back again.
    Post,
    /// Nudged too often: abandon it with this reason.
    GiveUp(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    pub case: CaseKey,
    pub id: String,
    pub kind: DraftKind,
    pub created_at_ms: i64,
    /// The text posted to XDR, marker included.
    pub comment: String,
    pub status: DraftStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// Posting claims taken (a second one follows a worker that died mid-call).
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub posted_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    #[serde(default)]
    pub due_at_ms: Option<i64>,
    #[serde(default)]
    pub nudges: u32,
    /// Whether a model wrote the text, and under which prompt version (feedback is counted per
    /// prompt version).
    #[serde(default)]
    pub ai_generated: bool,
    #[serde(default)]
    pub prompt_version: String,
    /// Where a closure summary was handed on (target, receipt or why it was refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<Export>,
}

/// One hand-over of a closure summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    pub target: String,
    pub delivered: bool,
    /// The receipt (ticket number, recipients) or why the target refused it.
    pub detail: String,
    pub at_ms: i64,
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Draft {
    pub fn new(case: &CaseKey, id: &str, kind: DraftKind, comment: String, now_ms: i64, budgets: &Budgets) -> Draft {
        Draft {
            case: case.clone(),
            id: id.to_string(),
            kind,
            created_at_ms: now_ms,
            comment,
            status: DraftStatus::Pending,
            lease: None,
            attempts: 0,
            posted_at_ms: None,
            end_reason: None,
            due_at_ms: Some(now_ms + ms(budgets.execute)),
            nudges: 0,
            ai_generated: false,
            prompt_version: String::new(),
            exports: Vec::new(),
        }
    }

    /// Whether `target` has had this draft (delivered, or refused for good): it is not sent again.
    pub fn exported_to(&self, target: &str) -> bool {
        self.exports.iter().any(|e| e.target == target)
    }

    /// Records a hand-over once per target; false when one is already recorded.
    pub fn record_export(&mut self, export: Export) -> bool {
        if self.kind != DraftKind::Closure || self.exported_to(&export.target) {
            return false;
        }
        self.exports.push(export);
        true
    }

    /// Labels the draft with what wrote it.
    pub fn written_by(mut self, ai_generated: bool, prompt_version: &str) -> Draft {
        self.ai_generated = ai_generated;
        self.prompt_version = prompt_version.to_string();
        self
    }

    fn move_to(&mut self, next: DraftStatus, due_at_ms: Option<i64>) -> bool {
        if !self.status.can_move_to(next) {
            return false;
        }
        self.status = next;
        self.nudges = 0;
        self.due_at_ms = if next.is_terminal() { None } else { due_at_ms };
        if next != DraftStatus::Posting {
            self.lease = None;
        }
        true
    }

    /// Pending → Posting under `owner`'s lease; a lapsed lease is taken over (`reclaimed`: the
    /// previous worker may have posted before dying).
    pub fn claim_post(&mut self, owner: &Owner, lease_until_ms: i64, now_ms: i64) -> Claim {
        match (&self.status, &self.lease) {
            (DraftStatus::Pending, _) => {}
            (DraftStatus::Posting, Some(l)) if l.held_by(owner) => return Claim::Granted { reclaimed: false },
            (DraftStatus::Posting, Some(l)) if !l.lapsed(now_ms) => return Claim::Busy { until_ms: l.until_ms },
            (DraftStatus::Posting, _) => {}
            (DraftStatus::Posted, _) => return Claim::Done,
            (DraftStatus::Abandoned, _) => return Claim::Refused(self.end_reason.clone().unwrap_or_else(|| "abandoned".into())),
        }
        let reclaimed = self.status == DraftStatus::Posting;
        self.move_to(DraftStatus::Posting, Some(lease_until_ms));
        self.lease = Some(Lease::new(owner, lease_until_ms));
        self.attempts += 1;
        Claim::Granted { reclaimed }
    }

    /// The owner saw XDR accept it (or found it there on read-back).
    pub fn mark_posted(&mut self, owner: &Owner, now_ms: i64) -> Result<(), LostClaim> {
        self.holds(owner)?;
        self.move_to(DraftStatus::Posted, None);
        self.posted_at_ms = Some(now_ms);
        Ok(())
    }

    /// XDR provably did not store it (refused before processing): back to pending, due at once,
    /// so a retry need not wait for the lease.
    pub fn release(&mut self, owner: &Owner, now_ms: i64) -> Result<(), LostClaim> {
        self.holds(owner)?;
        self.move_to(DraftStatus::Pending, Some(now_ms));
        Ok(())
    }

    /// It will never be posted. `true` if it changed.
    pub fn abandon(&mut self, reason: impl Into<String>) -> bool {
        if !self.move_to(DraftStatus::Abandoned, None) {
            return false;
        }
        self.end_reason = Some(reason.into());
        true
    }

    fn holds(&self, owner: &Owner) -> Result<(), LostClaim> {
        if self.status == DraftStatus::Posting && self.lease.as_ref().is_some_and(|l| l.held_by(owner)) {
            Ok(())
        } else {
            Err(LostClaim(format!("draft {} is {} under another owner", self.id, self.status)))
        }
    }

    pub fn overdue(&self, now_ms: i64, budgets: &Budgets) -> Option<DraftOverdue> {
        if now_ms < self.due_at_ms? {
            return None;
        }
        if self.nudges >= budgets.max_nudges {
            return Some(DraftOverdue::GiveUp(format!("not posted after {} attempts", self.nudges)));
        }
        Some(DraftOverdue::Post)
    }

    pub fn nudged(&mut self, now_ms: i64, budgets: &Budgets) {
        self.nudges += 1;
        self.due_at_ms = Some(now_ms + ms(budgets.write_back));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        Draft::new(
            &CaseKey::new("a", "1").unwrap(),
            "dossier-1",
            DraftKind::Dossier,
            "text [dossier:a#1:dossier-1]".into(),
            1_000,
            &Budgets::default(),
        )
    }

    const ALLOWED: &[(DraftStatus, DraftStatus)] = {
        use DraftStatus::*;
        &[(Pending, Posting), (Pending, Abandoned), (Posting, Pending), (Posting, Posting), (Posting, Posted), (Posting, Abandoned)]
    };

    #[test]
    fn the_transition_table_allows_exactly_the_listed_moves() {
        for from in DraftStatus::ALL {
            for to in DraftStatus::ALL {
                assert_eq!(from.can_move_to(to), ALLOWED.contains(&(from, to)), "{from} -> {to}");
            }
            assert_eq!(from.is_terminal(), !DraftStatus::ALL.iter().any(|t| from.can_move_to(*t)), "{from}");
        }
    }

    #[test]
    fn every_method_from_every_status_respects_the_table() {
        let (me, other) = (Owner::new("w"), Owner::new("w"));
        for from in DraftStatus::ALL {
            let start = || {
                let mut d = draft();
                d.status = from;
                d.due_at_ms = (!from.is_terminal()).then_some(1_500);
                d.lease = (from == DraftStatus::Posting).then(|| Lease::new(&other, 5_000));
                d
            };
            let mut results: Vec<(&str, Draft)> = Vec::new();
            for now in [2_000, 9_000] {
                let mut d = start();
                d.claim_post(&me, now + 1_000, now);
                results.push(("claim", d));
            }
            let mut d = start();
            let _ = d.mark_posted(&me, 2_000);
            results.push(("mark by a non-owner", d));
            let mut d = start();
            d.lease = Some(Lease::new(&me, 5_000));
            let _ = d.mark_posted(&me, 2_000);
            results.push(("mark by the owner", d));
            let mut d = start();
            d.lease = Some(Lease::new(&me, 5_000));
            let _ = d.release(&me, 2_000);
            results.push(("release", d));
            let mut d = start();
            d.abandon("x");
            results.push(("abandon", d));
            for (what, d) in results {
                assert!(d.status == from || from.can_move_to(d.status), "{what}: {from} -> {}", d.status);
                assert_eq!(d.due_at_ms.is_none(), d.status.is_terminal(), "{what} from {from}");
            }
        }
    }

    #[test]
    fn one_post_per_draft_with_reclaim_after_a_lapsed_lease() {
        let (w1, w2) = (Owner::new("w"), Owner::new("w"));
        let mut d = draft();
        assert_eq!(d.claim_post(&w1, 10_000, 2_000), Claim::Granted { reclaimed: false });
        assert_eq!(d.claim_post(&w2, 11_000, 3_000), Claim::Busy { until_ms: 10_000 });
        assert_eq!(d.claim_post(&w2, 20_000, 10_000), Claim::Granted { reclaimed: true });
        assert!(d.mark_posted(&w1, 11_000).is_err(), "the first worker lost the claim");
        d.mark_posted(&w2, 11_000).unwrap();
        assert_eq!((d.status, d.posted_at_ms, d.attempts), (DraftStatus::Posted, Some(11_000), 2));
        assert_eq!(d.claim_post(&w1, 30_000, 12_000), Claim::Done);
    }

    #[test]
    fn a_release_makes_it_due_at_once() {
        let w = Owner::new("w");
        let mut d = draft();
        d.claim_post(&w, 10_000, 2_000);
        d.release(&w, 3_000).unwrap();
        assert_eq!((d.status, d.due_at_ms), (DraftStatus::Pending, Some(3_000)));
        assert_eq!(d.overdue(3_000, &Budgets::default()), Some(DraftOverdue::Post));
    }
}
