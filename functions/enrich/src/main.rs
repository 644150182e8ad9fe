//! enrich Lambda: SQS `enrich-<source>` → one enrichment source (`DOSSIER_SOURCE`), deployed once per source (`dossier_core::stages::Enrich`).

use aws_lambda_events::sqs::SqsEvent;
use dossier_adapters::{lambda, telemetry, wiring::Aws};
use dossier_core::ports::QueueName;
use dossier_core::stages::Enrich;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    let source_name = dossier_adapters::env::required("DOSSIER_SOURCE")?;
    let source = aws.source(&source_name).await?;
    let handler = Arc::new(Enrich::new(aws.context("enrich"), vec![source]));
    let queue = QueueName::enrich(&source_name);
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
