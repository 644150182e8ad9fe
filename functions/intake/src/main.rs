//! intake Lambda: API Gateway HTTP API `POST /webhook` → `dossier_core::stages::Intake`.

use dossier_adapters::{lambda, telemetry, wiring::Aws};
use dossier_core::stages::Intake;
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    let secret = aws.secret("DOSSIER_WEBHOOK_SECRET_ARN").await?;
    lambda::serve_http(Arc::new(Intake::new(aws.context("intake"), secret.trim().as_bytes().to_vec()))).await
}
