//! What Cortex XDR sends and answers: incident payloads (`get_incident_extra_data`) and the
//! webhook door's authentication and payload shapes.

mod payload;
mod webhook;

pub use payload::*;
pub use webhook::*;
