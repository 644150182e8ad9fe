//! poller Lambda: an EventBridge schedule (every minute) → `dossier_core::stages::Poller`, the door
//! for classic XDR, which has no incident webhook.

use dossier_adapters::{telemetry, wiring::Aws};
use dossier_core::stages::Poller;
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    let poller = Arc::new(Poller::new(aws.context("poller"), aws.xdr().await?));
    lambda_runtime::run(service_fn(move |_scheduled: LambdaEvent<serde_json::Value>| {
        let poller = poller.clone();
        // An error fails the invocation: the next tick reads the same window again.
        async move { poller.poll().await.map_err(lambda_runtime::Error::from) }
    }))
    .await
}
