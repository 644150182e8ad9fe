//! synthesize Lambda: SQS `synthesize` → the dossier and proposed actions (`dossier_core::stages::Synthesize`).

use dossier_adapters::{lambda, telemetry, wiring::Aws};
use dossier_core::ports::QueueName;
use dossier_core::stages::Synthesize;
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    let mut synthesize = Synthesize::new(aws.context("synthesize"), aws.link_signer().await?);
    if let Some(model) = aws.model().await? {
        synthesize = synthesize.with_model(model);
    }
    let handler = Arc::new(synthesize);
    lambda::serve_queue(handler, aws.queue.clone(), QueueName::synthesize()).await
}
