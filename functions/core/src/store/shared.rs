//! Typed repositories for the small records that are not part of a case: webhook replay
//! markers, feedback votes and counters, and the poller's watermark (layout in `super`).

use serde::{Deserialize, Serialize};

use super::{decode, encode, Commit, Committed, Store};
use crate::domain::AuditEvent;
use crate::ports::{Condition, StoreError, Table, Write};

const REPLAY_PK: &str = "webhook-replay";
const VOTE_PK: &str = "feedback-vote";
const FEEDBACK_PK: &str = "feedback";
const POLLER_PK: &str = "poller";
const CONFLICT_RETRIES: usize = 16;

/// Signed webhook deliveries already accepted, kept for twice the signature window.
pub struct ReplayMarkers<'a>(pub &'a Store);

impl ReplayMarkers<'_> {
    pub async fn seen(&self, replay_key: &str) -> Result<bool, StoreError> {
        Ok(self.0.docs().get(Table::Cases, REPLAY_PK, replay_key).await?.is_some())
    }

    /// The marker as a write, to commit with what the delivery creates.
    pub fn marker(replay_key: &str, expires_at_s: i64) -> Write {
        Write::new(Table::Cases, REPLAY_PK, replay_key, "{}", Condition::Absent).expires(Some(expires_at_s))
    }
}

/// Feedback counted per prompt version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackCounts {
    pub useful: u64,
    pub not_useful: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Voted {
    Counted,
    /// This link (nonce) voted already.
    AlreadyVoted,
}

/// One vote per feedback link, counted per prompt version.
pub struct Feedback<'a>(pub &'a Store);

impl Feedback<'_> {
    /// Records the link's vote and counts it, with its audit record, in one commit.
    pub async fn vote(&self, nonce: &str, prompt_version: &str, useful: bool, event: &AuditEvent) -> Result<Voted, StoreError> {
        for _ in 0..CONFLICT_RETRIES {
            let current = self.0.docs().get(Table::Cases, FEEDBACK_PK, prompt_version).await?;
            let mut counts: FeedbackCounts = match &current {
                Some(d) => decode(FEEDBACK_PK, prompt_version, &d.body)?,
                None => FeedbackCounts::default(),
            };
            if useful {
                counts.useful += 1;
            } else {
                counts.not_useful += 1;
            }
            let condition = current.as_ref().map_or(Condition::Absent, |d| Condition::Version(d.version));
            let mut commit = Commit::new();
            let vote =
                commit.push(Write::new(Table::Cases, VOTE_PK, nonce, if useful { "useful" } else { "not_useful" }, Condition::Absent))?;
            commit.push(Write::new(Table::Cases, FEEDBACK_PK, prompt_version, encode(&counts)?, condition))?;
            commit.audit(event)?;
            match self.0.commit(commit).await? {
                Committed::Written => return Ok(Voted::Counted),
                Committed::Conflict { index } if index == vote => return Ok(Voted::AlreadyVoted),
                Committed::Conflict { .. } => continue,
            }
        }
        Err(StoreError::Unavailable(format!("feedback counters of {prompt_version} under heavy contention")))
    }

    pub async fn counts(&self, prompt_version: &str) -> Result<FeedbackCounts, StoreError> {
        match self.0.docs().get(Table::Cases, FEEDBACK_PK, prompt_version).await? {
            Some(d) => decode(FEEDBACK_PK, prompt_version, &d.body),
            None => Ok(FeedbackCounts::default()),
        }
    }
}

/// How far the poller has read XDR, per tenant; it only moves forward.
pub struct Watermarks<'a>(pub &'a Store);

#[derive(Serialize, Deserialize)]
struct Watermark {
    to_ms: i64,
}

impl Watermarks<'_> {
    fn sk(tenant: &str) -> String {
        format!("watermark#{tenant}")
    }

    /// The watermark and its version, if the tenant was ever polled.
    pub async fn get(&self, tenant: &str) -> Result<Option<(i64, u64)>, StoreError> {
        let sk = Self::sk(tenant);
        match self.0.docs().get(Table::Cases, POLLER_PK, &sk).await? {
            Some(d) => Ok(Some((decode::<Watermark>(POLLER_PK, &sk, &d.body)?.to_ms, d.version))),
            None => Ok(None),
        }
    }

    /// Moves it to `to_ms` if it is still at `read` (the version [`Watermarks::get`] gave, or
    /// none): two overlapping polls cannot move it back. `false` if another poll moved it first.
    pub async fn advance(&self, tenant: &str, read: Option<(i64, u64)>, to_ms: i64) -> Result<bool, StoreError> {
        if read.is_some_and(|(at, _)| at >= to_ms) {
            return Ok(false);
        }
        let condition = read.map_or(Condition::Absent, |(_, v)| Condition::Version(v));
        let mut commit = Commit::new();
        commit.push(Write::new(Table::Cases, POLLER_PK, Self::sk(tenant), encode(&Watermark { to_ms })?, condition))?;
        Ok(self.0.commit(commit).await? == Committed::Written)
    }
}
