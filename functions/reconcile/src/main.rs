//! reconcile Lambda: an EventBridge schedule (every 5 minutes) → `dossier_core::stages::Reconciler`,
//! which moves cases, actions and drafts past their budget forward or ends them with a reason.

use dossier_adapters::{telemetry, wiring::Aws};
use dossier_core::stages::Reconciler;
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    let reconciler = Arc::new(Reconciler::new(aws.context("reconcile")));
    lambda_runtime::run(service_fn(move |_scheduled: LambdaEvent<serde_json::Value>| {
        let reconciler = reconciler.clone();
        // A step that fails is tried again by the next run; the run fails only if the index
        // cannot be read at all.
        async move { reconciler.run().await.map_err(lambda_runtime::Error::from) }
    }))
    .await
}
