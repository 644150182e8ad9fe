//! Dossier core: domain types, pure pipeline logic and the ports (traits) the adapters implement.
//!
//! Nothing here knows the AWS SDK, an HTTP client or the Lambda runtime. The `embedded` module holds
//! in-memory implementations of the ports with the same semantics as the AWS ones, for the local
//! CLI and for tests.

// The fuzz targets run without a sanitizer on the strength of this.
#![forbid(unsafe_code)]

pub mod config;
pub mod domain;
pub mod dossier;
pub mod embedded;
pub mod extract;
pub mod http;
pub mod knowledge;
pub mod messages;
pub mod metrics;
pub mod ports;
pub mod random;
pub mod ratelimit;
pub mod redact;
pub mod signin;
pub mod signing;
pub mod sources;
pub mod stages;
pub mod store;
pub mod synthesis;
pub mod text;
pub mod timefmt;
pub mod xdr;
pub mod xql;
