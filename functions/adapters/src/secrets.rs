//! `SecretStore` on AWS Secrets Manager. Functions read their secrets once per cold start.

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::Client;

use dossier_core::ports::{SecretError, SecretStore};

#[derive(Clone)]
pub struct SecretsManager {
    client: Client,
}

impl SecretsManager {
    pub fn new(client: Client) -> SecretsManager {
        SecretsManager { client }
    }
}

#[async_trait]
impl SecretStore for SecretsManager {
    async fn get_secret(&self, id: &str) -> Result<String, SecretError> {
        match self.client.get_secret_value().secret_id(id).send().await {
            Ok(out) => out.secret_string().map(str::to_string).ok_or_else(|| SecretError::NotFound(format!("{id} (no string value)"))),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Err(SecretError::NotFound(id.to_string())),
            // Never echo secret material: only the error code and message from the service.
            Err(e) => Err(SecretError::Unavailable(format!("{id}: {} {}", e.code().unwrap_or("error"), e.message().unwrap_or("")))),
        }
    }
}
