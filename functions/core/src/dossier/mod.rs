//! The dossier: what analysts read first. The deterministic dossier is built from the evidence
//! alone (it is also what analysts get whenever the model is down); the comment, the closure
//! note and the HTML report render it. Alert text is attacker-controlled: bounded and stripped
//! of control characters before it is rendered anywhere.

mod assessment;
mod attribution;
mod closure;
mod comment;
mod html;
mod model;
mod playbook;
mod proposals;

pub use assessment::{deterministic, DETERMINISTIC_VERSION};
pub use attribution::{attribute, named_actors, NamedActor, NamedKind};
pub use closure::{render_closure, CLOSURE_DRAFT_ID};
pub use comment::{draft_marker, render_comment, LABEL_AI, LABEL_NO_AI, MAX_COMMENT_CHARS};
pub use html::render_html;
pub use model::*;
pub use proposals::{propose_actions, AutoApprove};
