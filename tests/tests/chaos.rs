//! `dossier chaos` as a test: faults in XDR, the sources and the model, workers dying between
//! any two store writes, duplicate deliveries, approvers, incidents resolved midway and the
//! reconciler, on the embedded backend and on moto through the DynamoDB and SQS adapters. Every
//! case ends with a reason; no comment twice except an ambiguous post; no action twice; nothing
//! without an approval. The full-size runs (300 cases, any seed) are `dossier chaos` itself.

use std::time::Duration;

use dossier_local::chaos::{run, ChaosOptions, ChaosReport};

fn check(r: &ChaosReport) {
    assert!(r.holds(), "a promise broke: {r:#?}");
    assert_eq!((r.terminal, r.stuck, r.unexplained), (r.cases, 0, 0), "{r:#?}");
    // The run injected what it says it did.
    assert!(r.crashes > 0 && r.killed_invocations > 0 && r.duplicated_messages > 0, "{r:#?}");
    assert!(r.approved > 0 && r.rejected > 0 && r.executed > 0, "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_ends_explained_under_faults_crashes_and_duplicates() {
    let r = run(&ChaosOptions { cases: 100, seed: 11, budget: Duration::from_secs(600), ..ChaosOptions::default() }).await.unwrap();
    eprintln!("chaos embedded: {}", serde_json::to_string(&r).unwrap());
    check(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_leases_change_nothing_that_was_promised() {
    let o = ChaosOptions { cases: 60, seed: 12, lease_seconds: Some(2), budget: Duration::from_secs(600), ..ChaosOptions::default() };
    let r = run(&o).await.unwrap();
    eprintln!("chaos embedded, 2 s leases: {}", serde_json::to_string(&r).unwrap());
    check(&r);
}

/// The same through the real adapters on moto: conditional puts, transactions, the due index,
/// SQS redrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_ends_explained_on_moto() {
    let cases = std::env::var("DOSSIER_CHAOS_MOTO_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(30);
    let o = ChaosOptions {
        cases,
        seed: 13,
        crash_rate: 0.05,
        aws_endpoint: Some(dossier_tests::moto_endpoint()),
        budget: Duration::from_secs(900),
        ..ChaosOptions::default()
    };
    let r = run(&o).await.unwrap();
    eprintln!("chaos on moto: {}", serde_json::to_string(&r).unwrap());
    check(&r);
}
