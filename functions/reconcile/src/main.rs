//! reconcile Lambda: two EventBridge schedules. Every 5 minutes → `dossier_core::stages::Reconciler`,
//! which moves cases, actions and drafts past their budget forward or ends them with a reason;
//! hourly, with the input `{"hunt": true}` → `dossier_core::stages::Hunt`, which looks across
//! recent low-severity cases for campaigns and proposes one investigation per cluster.

use dossier_adapters::{telemetry, wiring::Aws};
use dossier_core::stages::{Hunt, Reconciler};
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    let reconciler = Arc::new(Reconciler::new(aws.context("reconcile")));
    let hunt = Arc::new(Hunt::new(aws.context("hunt"), aws.link_signer().await?));
    lambda_runtime::run(service_fn(move |scheduled: LambdaEvent<serde_json::Value>| {
        let (reconciler, hunt) = (reconciler.clone(), hunt.clone());
        let hunting = scheduled.payload.get("hunt").and_then(serde_json::Value::as_bool) == Some(true);
        // A step that fails is tried again by the next run; the run fails only if the index
        // cannot be read at all.
        async move {
            if hunting {
                hunt.run().await.map(|_| ()).map_err(lambda_runtime::Error::from)
            } else {
                reconciler.run().await.map(|_| ()).map_err(lambda_runtime::Error::from)
            }
        }
    }))
    .await
}
