//! One AWS SDK configuration per process, with the explicit rustls+ring HTTP client the trimmed
//! SDK features require. `AWS_ENDPOINT_URL` (moto server, LocalStack) is honoured by aws-config.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::{tls, Builder};

/// Installs ring as the process-wide rustls provider (reqwest is built without one). Idempotent.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    if rustls::crypto::ring::default_provider().install_default().is_err() {
        tracing::debug!("rustls crypto provider already installed");
    }
}

pub async fn sdk_config() -> SdkConfig {
    install_crypto_provider();
    let http = Builder::new().tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring)).build_https();
    aws_config::defaults(BehaviorVersion::latest()).http_client(http).load().await
}

/// Configuration for a given endpoint (moto server in tests and local runs).
pub async fn sdk_config_for(endpoint: &str) -> SdkConfig {
    install_crypto_provider();
    let http = Builder::new().tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring)).build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http).endpoint_url(endpoint);
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
        loader = loader.region(aws_config::Region::new("us-east-1"));
    }
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        // moto accepts any credentials; real AWS never sees these because the endpoint is local.
        loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "dossier-local"));
    }
    loader.load().await
}
