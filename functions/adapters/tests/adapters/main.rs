//! The adapters against moto and the vendors' strict fakes, one test binary (one link instead of
//! one per file). Each module says what it covers.

mod contract;
mod dynamo_faults;
mod identity;
mod knowledge;
mod lambda_glue;
mod premium_sources;
mod sources;
mod xdr_http;
