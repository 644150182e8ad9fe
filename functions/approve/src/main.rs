//! approve Lambda: API Gateway HTTP API `GET|POST /approve` → `dossier_core::stages::Approve`.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use dossier_adapters::{lambda, telemetry, wiring::Aws};
use dossier_core::stages::Approve;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init_json();
    let aws = Aws::from_env().await?;
    let approve = Arc::new(Approve::new(
        aws.context("approve"),
        aws.link_signer().await?,
    ));
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| {
            let approve = approve.clone();
            async move {
                let response = match lambda::to_request(&event.payload) {
                    Ok(request) => approve.handle(&request).await,
                    Err(rejection) => rejection,
                };
                Ok::<_, Error>(lambda::to_response(response))
            }
        },
    ))
    .await
}
