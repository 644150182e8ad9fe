//! Posting drafts: each draft claimed under a lease and posted once; a claim taken over from a
//! worker that died reads back first where the API can. A dossier draft rides on its message
//! from synthesis, which sends it beside the commit that stores it.

use std::time::Duration;
use tracing::{info, warn};

use super::Writeback;
use crate::domain::{CaseKey, Claim, Draft, DraftKind, Owner};
use crate::messages::Snapshot;
use crate::metrics::{Metric, MetricSet};
use crate::ports::XdrError;
use crate::stages::{ms_until, Deadline, StageError};
use crate::store::{draft_sk, Change, Commit, Committed, Versioned};

/// Pauses before claiming again a carried draft whose commit (sent beside its message) has not
/// landed yet: a transaction a little slower than the queue. Then the message waits in the queue.
const DRAFT_COMMIT_PAUSES_MS: [u64; 4] = [10, 20, 40, 80];
/// How long, and how often, a comment message waits in the queue for its draft. A draft still
/// missing then belongs to a commit that did not land (its synthesis lost its claim, or died, or
/// its commit failed) or that lands later still: the message is let go, and the reconciler sends
/// the comment again for a case whose draft is stored and not posted.
const DRAFT_IN_FLIGHT: Duration = Duration::from_secs(2);
const DRAFT_IN_FLIGHT_WAITS: u32 = 5;

impl Writeback {
    /// `waited`: how often this message was deferred (for its draft, or behind another worker).
    pub(super) async fn write_comment(
        &self,
        key: &CaseKey,
        draft_id: &str,
        snapshot: Option<Snapshot>,
        waited: u32,
        deadline: Deadline,
    ) -> Result<(), StageError> {
        let owner = Owner::new(self.ctx.actor);
        let now = self.ctx.now_ms();
        let lease_until = self.ctx.lease_until(deadline);
        let decide = |d: &mut Draft, _: &mut Commit| {
            let claim = d.claim_post(&owner, lease_until, now);
            Ok::<_, StageError>(match claim {
                Claim::Granted { .. } => Change::Write((claim, d.clone())),
                _ => Change::Keep((claim, d.clone())),
            })
        };
        let (pk, sk) = (key.storage_id(), draft_sk(draft_id));
        // The draft as synthesis created it: claimed at that version without reading it first
        // (a draft changed since is a conflict, and then it is read).
        let carried = self.ctx.carried::<Draft>(snapshot).filter(|d| d.value.case == *key && d.value.id == draft_id);
        let claimed = match carried {
            Some(first) => {
                let Some(claimed) = self.claim_carried(&pk, &sk, first, &decide).await? else {
                    // Synthesis sends this message beside the commit that stores the draft: a
                    // draft still missing was a moment behind (wait a little longer), or its
                    // commit did not land (nothing of this message's to post).
                    if waited >= DRAFT_IN_FLIGHT_WAITS {
                        warn!(draft = draft_id, waited, "the draft this message carries is not stored; message let go");
                        self.ctx.metric(MetricSet::new(vec![Metric::count("CommentMessagesWithoutDraft", 1.0)]));
                        return Ok(());
                    }
                    return Err(StageError::RetryLater { reason: "the draft is still being stored".into(), after: DRAFT_IN_FLIGHT });
                };
                claimed
            }
            None => self
                .ctx
                .store
                .update_versioned(&pk, &sk, &decide)
                .await?
                .ok_or_else(|| StageError::BadMessage(format!("no draft {draft_id} on case {key}")))?,
        };
        let ((claim, draft), version) = claimed;
        let reclaimed = match claim {
            Claim::Granted { reclaimed } => reclaimed,
            Claim::Done => return self.after_post(key, &draft).await,
            Claim::Busy { until_ms } => {
                return Err(StageError::RetryLater {
                    reason: "another worker is posting this comment".into(),
                    after: ms_until(now, until_ms),
                })
            }
            Claim::Refused(reason) => {
                info!(draft = draft_id, %reason, "draft will not be posted");
                return Ok(());
            }
        };
        let marker = crate::dossier::draft_marker(key, draft_id);
        // The previous owner died mid-call: if XDR can tell whether it posted, ask.
        let already = if reclaimed { self.xdr.comment_exists(&key.incident_id, &marker).await? } else { None };
        let note = match already {
            Some(true) => "found on the incident on read-back; not posted again",
            Some(false) | None => {
                if let Err(e) = self.xdr.add_comment(&key.incident_id, &draft.comment).await {
                    return self.comment_failed(draft, version, &owner, e).await;
                }
                if reclaimed && already.is_none() {
                    "posted again after a worker died mid-post (this XDR version cannot read comments back)"
                } else {
                    "posted"
                }
            }
        };
        let posted_at = self.ctx.now_ms();
        let mut posted = draft.clone();
        if posted.mark_posted(&owner, posted_at).is_err() {
            return Ok(());
        }
        let chars = posted.comment.chars().count();
        let mut commit = Commit::new();
        commit.save(&posted, version)?;
        commit.audit(&self.ctx.event(key, "xdr.comment_added", format!("draft {draft_id}, {chars} characters: {note}")))?;
        if let Committed::Conflict { .. } = self.ctx.store.commit(commit).await? {
            warn!(draft = draft_id, "claim lost after posting");
            return Ok(());
        }
        info!(draft = draft_id, chars, "comment posted");
        if posted.kind == DraftKind::Dossier {
            let case = self.ctx.settled_case(key, true).await?;
            self.dossier_posted_metrics(case.as_ref(), posted_at);
            return Ok(());
        }
        self.after_post(key, &posted).await
    }

    /// Claims a carried draft at the version it was created with, without reading it. Only a
    /// conditional write checks a carried copy against the store: any other outcome (posted
    /// already, busy, refused, another commit's draft) is decided again on the stored draft. A
    /// draft not stored yet is tried again after short pauses; `None` if it is still missing.
    async fn claim_carried<T, F>(
        &self,
        pk: &str,
        sk: &str,
        first: Versioned<Draft>,
        decide: &F,
    ) -> Result<Option<((Claim, T), u64)>, StageError>
    where
        F: Fn(&mut Draft, &mut Commit) -> Result<Change<(Claim, T)>, StageError>,
    {
        let mut pauses = DRAFT_COMMIT_PAUSES_MS.iter().map(|ms| Duration::from_millis(*ms));
        loop {
            match self.ctx.store.update_versioned_from(pk, sk, first.clone(), decide).await? {
                Some(granted @ ((Claim::Granted { .. }, _), _)) => return Ok(Some(granted)),
                // Decided without a write (perhaps on the carried copy itself): the stored draft decides.
                Some(_) => return self.ctx.store.update_versioned(pk, sk, decide).await,
                // The write found no draft, and neither did the read after it.
                None => match pauses.next() {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => return Ok(None),
                },
            }
        }
    }

    /// XDR failed the post. If it provably stored nothing, the claim is released so a retry
    /// need not wait; otherwise the lease stands and the retry reads back after it lapses.
    async fn comment_failed(&self, draft: Draft, version: u64, owner: &Owner, e: XdrError) -> Result<(), StageError> {
        if e.proves_nothing_written() {
            let mut released = draft;
            if released.release(owner, self.ctx.now_ms()).is_ok() {
                let mut commit = Commit::new();
                commit.save(&released, version)?;
                self.ctx.store.commit(commit).await?;
            }
        }
        warn!(error = %e, "comment not posted; will retry");
        Err(e.into())
    }

    /// A posted dossier settles the case; a posted closure summary is handed on to the
    /// configured targets.
    async fn after_post(&self, key: &CaseKey, draft: &Draft) -> Result<(), StageError> {
        match draft.kind {
            DraftKind::Dossier => self.ctx.settle_case(key, true).await,
            DraftKind::Closure => {
                // Posted closure summaries join the knowledge later cases search.
                crate::sources::remember_closure(self.ctx.store.docs().as_ref(), key, &draft.comment, self.ctx.now_ms()).await?;
                self.export_closure(key, draft).await
            }
            _ => Ok(()),
        }
    }

    /// Time from the incident's creation in XDR to its dossier (MTTA-style), and from the case
    /// reaching Dossier to its dossier.
    /// `case` as settled (read for the settling, not again for the metrics).
    fn dossier_posted_metrics(&self, case: Option<&crate::domain::Case>, posted_at: i64) {
        use crate::metrics::{Metric, MetricSet};
        let mut metrics = vec![Metric::count("DossiersPosted", 1.0)];
        if let Some(case) = case {
            metrics.push(Metric::ms("CaseLatency", posted_at - case.received_at_ms));
            if let Some(created) = case.hint.created_at_ms {
                metrics.push(Metric::ms("TimeToDossier", posted_at - created));
            }
        }
        self.ctx.metric(MetricSet::new(metrics));
    }
}
