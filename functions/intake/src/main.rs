//! intake Lambda: API Gateway HTTP API `POST /webhook` → the webhook door in `dossier_core::stages::Intake`.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use dossier_adapters::{lambda, telemetry, wiring::Aws};
use dossier_core::stages::Intake;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    let secret = aws.secret("DOSSIER_WEBHOOK_SECRET_ARN").await?;
    let intake = Arc::new(Intake::new(
        aws.context("intake"),
        secret.trim().as_bytes().to_vec(),
    ));
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| {
            let intake = intake.clone();
            async move {
                let response = match lambda::to_request(&event.payload) {
                    Ok(request) => intake.handle(&request).await,
                    Err(rejection) => rejection,
                };
                Ok::<_, Error>(lambda::to_response(response))
            }
        },
    ))
    .await
}
