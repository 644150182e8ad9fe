//! enrich Lambda: SQS `enrich-<source>` → one enrichment source (`DOSSIER_SOURCE`), deployed once
//! per source so each has its own queue, DLQ, concurrency and secret (`dossier_core::stages::Enrich`).

use dossier_adapters::{env, lambda, telemetry, wiring::Aws};
use dossier_core::ports::QueueName;
use dossier_core::stages::Enrich;
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    let source_name = env::required("DOSSIER_SOURCE")?;
    let snapshot_key = aws.snapshot_key();
    let handler = Arc::new(Enrich::new(aws.context("enrich").with_snapshot_key(snapshot_key), vec![aws.source(&source_name).await?]));
    lambda::serve_queue(handler, aws.queue.clone(), QueueName::enrich(&source_name)).await
}
