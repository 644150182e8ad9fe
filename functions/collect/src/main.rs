//! collect Lambda: SQS `collect` → fetch XDR extra data, extract indicators, fan out (`dossier_core::stages::Collect`).

use dossier_adapters::{lambda, telemetry, wiring::Aws};
use dossier_core::ports::QueueName;
use dossier_core::stages::Collect;
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    let snapshot_key = aws.snapshot_key();
    let handler = Arc::new(Collect::new(aws.context("collect").with_snapshot_key(snapshot_key), aws.xdr().await?));
    lambda::serve_queue(handler, aws.queue.clone(), QueueName::collect()).await
}
