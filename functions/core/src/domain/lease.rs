//! Claims on work that must happen once (synthesis, posting a comment, executing an action): a
//! lease names its owner (one invocation of a function) and when it lapses. A worker that loses
//! its claim stops without side effects; one whose lease lapsed may be replaced by another.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One invocation of one function: `synthesize:3f9c0a…`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner(String);

impl Owner {
    /// A fresh owner for one invocation of `function`.
    pub fn new(function: &str) -> Owner {
        Owner(format!("{function}:{}", crate::random::new_nonce()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: Owner,
    pub until_ms: i64,
}

impl Lease {
    pub fn new(owner: &Owner, until_ms: i64) -> Lease {
        Lease { owner: owner.clone(), until_ms }
    }

    pub fn lapsed(&self, now_ms: i64) -> bool {
        now_ms >= self.until_ms
    }

    pub fn held_by(&self, owner: &Owner) -> bool {
        &self.owner == owner
    }
}

/// What an attempt to claim work found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This worker now holds the work. `reclaimed` when a previous holder's lease lapsed: it may
    /// have done the external part before dying, so read back before acting where the API can.
    Granted { reclaimed: bool },
    /// Someone else holds a live lease until then.
    Busy { until_ms: i64 },
    /// Already done (or ended): nothing to do.
    Done,
    /// The work may not be done at all (never approved, ended, incident resolved), and why.
    Refused(String),
}

/// The worker no longer holds the claim it worked under: it must stop without side effects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("claim lost: {0}")]
pub struct LostClaim(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_unique_and_name_their_function() {
        let a = Owner::new("writeback");
        let b = Owner::new("writeback");
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("writeback:"));
        let lease = Lease::new(&a, 100);
        assert!(lease.held_by(&a) && !lease.held_by(&b));
        assert!(!lease.lapsed(99) && lease.lapsed(100));
    }
}
