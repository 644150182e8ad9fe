//! writeback Lambda: SQS `writeback` → post the dossier comment and run approved actions, each exactly once (`dossier_core::stages::Writeback`).

use aws_lambda_events::sqs::SqsEvent;
use dossier_adapters::{lambda, telemetry, wiring::Aws};
use dossier_core::ports::QueueName;
use dossier_core::stages::Writeback;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    let handler = Arc::new(Writeback::new(aws.context("writeback"), aws.xdr().await?));
    let queue = QueueName::writeback();
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
