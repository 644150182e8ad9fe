//! synthesize Lambda: SQS `synthesize` → build the dossier and proposed actions (`dossier_core::stages::Synthesize`).

use aws_lambda_events::sqs::SqsEvent;
use dossier_adapters::{lambda, telemetry, wiring::Aws};
use dossier_core::ports::QueueName;
use dossier_core::stages::Synthesize;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    let handler = Arc::new(Synthesize::new(
        aws.context("synthesize"),
        aws.link_signer().await?,
    ));
    let queue = QueueName::synthesize();
    let consumer = aws.queue.clone();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let (handler, consumer, queue) = (handler.clone(), consumer.clone(), queue.clone());
        async move {
            Ok::<_, Error>(
                lambda::process_sqs_batch(&*handler, &*consumer, &queue, event.payload).await,
            )
        }
    }))
    .await
}
