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
    let mut writeback = Writeback::new(aws.context("writeback"), aws.xdr().await?);
    if let Some(identity) = aws.identity().await? {
        writeback = writeback.with_identity(identity);
    }
    let handler = Arc::new(writeback.with_notifiers(aws.notifiers().await?));
    lambda::serve_queue(handler, aws.queue.clone(), QueueName::writeback()).await
}
