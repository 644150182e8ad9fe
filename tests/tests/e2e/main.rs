//! End-to-end tests of the pipeline, one test binary (one link of the whole dependency tree
//! instead of one per file: the clean-clone build and its disk use depend on it). Each module
//! says what it covers. `log_hygiene` (owns the global subscriber) and `chaos` (resets moto,
//! so no other test may use it at the same time) stay binaries of their own.

mod actions;
mod attacks;
mod burst;
mod closure;
mod crash_points;
mod dossier_kinds;
mod e2e_moto;
mod fan_in;
mod hunt;
mod metrics;
mod poller;
mod related;
mod signin;
mod snapshots;
mod synthesis;
mod template;
