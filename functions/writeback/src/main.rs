//! writeback Lambda: SQS `writeback` → the dossier comment and approved actions, each exactly once
//! (`dossier_core::stages::Writeback`).

use dossier_adapters::{lambda, telemetry, wiring::Aws};
use dossier_core::ports::QueueName;
use dossier_core::stages::Writeback;
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    // The secrets at once: against Secrets Manager each read is a network round trip.
    let snapshot_key = aws.snapshot_key();
    let (xdr, identity, notifiers, exports) = tokio::try_join!(aws.xdr(), aws.identity(), aws.notifiers(), aws.closure_exports())?;
    let mut writeback = Writeback::new(aws.context("writeback").with_snapshot_key(snapshot_key), xdr);
    if let Some(identity) = identity {
        writeback = writeback.with_identity(identity);
    }
    let handler = Arc::new(writeback.with_notifiers(notifiers).with_closure_exports(exports));
    lambda::serve_queue(handler, aws.queue.clone(), QueueName::writeback()).await
}
