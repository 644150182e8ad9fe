//! synthesize Lambda: SQS `synthesize` → the dossier and proposed actions (`dossier_core::stages::Synthesize`).

use dossier_adapters::{lambda, telemetry, wiring::Aws};
use dossier_core::ports::QueueName;
use dossier_core::stages::Synthesize;
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    // Both secrets at once: against Secrets Manager each read is a network round trip.
    let snapshot_key = aws.snapshot_key();
    let (signer, model) = tokio::try_join!(aws.link_signer(), aws.model())?;
    let mut synthesize = Synthesize::new(aws.context("synthesize").with_snapshot_key(snapshot_key), signer);
    if let Some(model) = model {
        synthesize = synthesize.with_model(model);
    }
    let handler = Arc::new(synthesize);
    lambda::serve_queue(handler, aws.queue.clone(), QueueName::synthesize()).await
}
