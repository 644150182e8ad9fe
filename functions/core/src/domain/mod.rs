//! The domain: cases, actions, drafts, indicators, ATT&CK. The case, the draft and the action
//! each own their state machine (a transition table and the methods that consult it); stages
//! load an entity, call a transition, store it, and orchestrate. Nothing else writes a status.

mod action;
mod attack;
mod audit;
mod case;
mod draft;
mod facts;
mod host;
mod indicator;
mod key;
mod lease;
mod severity;

pub use action::*;
pub use attack::*;
pub use audit::AuditEvent;
pub use case::*;
pub use draft::*;
pub use facts::*;
pub use host::{normalise_domain, url_host};
pub use indicator::*;
pub use key::{CaseKey, InvalidKey};
pub use lease::{Claim, Lease, LostClaim, Owner};
pub use severity::Severity;
