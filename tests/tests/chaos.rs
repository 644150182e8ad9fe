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
    // moto keeps every table and item of the suite in one Python process and scans them for
    // queries: by the time this test runs, the rest of the suite has made it several times
    // slower than a fresh one (seen: 108 s fresh, over 900 s after the suite). Real DynamoDB does
    // not slow down with other tables; start from an empty emulator (no other test binary runs
    // at the same time, and this binary's other tests are embedded).
    let reset = dossier_adapters::http_client::client(Duration::from_secs(60))
        .post(format!("{}/moto-api/reset", dossier_tests::moto_endpoint()))
        .send()
        .await
        .expect("moto answers");
    assert!(reset.status().is_success(), "moto reset: {}", reset.status());
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
