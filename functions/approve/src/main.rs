//! approve Lambda: API Gateway HTTP API `GET|POST /approve` → `dossier_core::stages::Approve`.

use dossier_adapters::{lambda, telemetry, wiring::Aws};
use dossier_core::stages::Approve;
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    let signer = aws.link_signer().await?;
    let mut approve = Approve::new(aws.context("approve"), signer.clone());
    if let Some(signin) = aws.signin(signer).await? {
        approve = approve.with_signin(signin);
    }
    lambda::serve_http(Arc::new(approve)).await
}
