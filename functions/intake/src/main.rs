//! intake Lambda: API Gateway HTTP API `POST /webhook` → `dossier_core::stages::Intake`.

use dossier_adapters::{lambda, telemetry, wiring::Aws};
use dossier_core::stages::Intake;
use dossier_core::xdr::WebhookSecrets;
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    let secrets = WebhookSecrets::parse(&aws.secret("DOSSIER_WEBHOOK_SECRET_ARN").await?, &aws.config.default_tenant)
        .map_err(|e| format!("DOSSIER_WEBHOOK_SECRET_ARN: {e}"))?;
    lambda::serve_http(Arc::new(Intake::new(aws.context("intake"), secrets))).await
}
