//! The core's public behaviour, one test binary. Each module says what it covers.

mod extraction;
mod intake;
mod poller;
