//! The local Dossier CLI as a library: the same core stages on an embedded backend (or the AWS
//! adapters against moto / real AWS), a queue pump that plays the part of Lambda's event source
//! mappings, the JSON report, and a small HTTP server that plays API Gateway.

pub mod backend;
pub mod bench;
pub mod chaos;
pub mod coldstart;
pub mod cost;
pub mod latency;
pub mod report;
pub mod samples;
pub mod server;
pub mod simulated;
pub mod sources;
