//! The `dossier` binary as a user runs it (CLI, HTTP, browser), one test binary.

mod beyond;
mod browser;
mod cli;
mod common;
