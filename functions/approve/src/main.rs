//! approve Lambda: API Gateway HTTP API `GET|POST /approve` → `dossier_core::stages::Approve`.

use dossier_adapters::{lambda, telemetry, wiring::Aws};
use dossier_core::stages::Approve;
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    lambda::serve_http(Arc::new(Approve::new(aws.context("approve"), aws.link_signer().await?))).await
}
