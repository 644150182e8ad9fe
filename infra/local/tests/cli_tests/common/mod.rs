//! What the CLI tests share: the binary, fixture paths and a clean run.

#![allow(dead_code)] // each test file uses some of these

use serde_json::Value;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_dossier");

pub fn fixture_path(rel: &str) -> String {
    format!("{}/../../tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))
}

pub fn dossier(args: &[&str]) -> Output {
    // A clean environment: no keys, so no source calls out.
    Command::new(BIN)
        .args(args)
        .env_remove("DOSSIER_VIRUSTOTAL_KEY")
        .env_remove("DOSSIER_XDR_KEY")
        .env("RUST_LOG", "error")
        .output()
        .expect("run dossier")
}

pub fn run_json(path: &str) -> Value {
    let out = dossier(&["run", "--extra-data", path, "--json"]);
    assert!(out.status.success(), "{path}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{path}: stdout is not one JSON object: {e}"))
}
