//! What each deployed function builds once per cold start, from the environment the template sets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dossier_core::config::PipelineConfig;
use dossier_core::ports::{QueueName, SecretStore, SystemClock, XdrApi};
use dossier_core::signing::LinkSigner;
use dossier_core::sources::{AttackSource, IntelFeed, LookupLimits, NotConfigured, PerIndicator, Source, ATTACK_SOURCE, INTEL_FEED_SOURCE};
use dossier_core::stages::Context;

use crate::dynamo::DynamoStore;
use crate::env::{self, ConfigError};
use crate::secrets::SecretsManager;
use crate::sqs::SqsQueue;
use crate::virustotal::{self, VirusTotal};
use crate::xdr::{XdrCredentials, XdrHttp};

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("secret from {var}: {reason}")]
    Secret { var: &'static str, reason: String },
}

/// The AWS-backed ports of one function.
pub struct Aws {
    pub store: Arc<DynamoStore>,
    pub queue: Arc<SqsQueue>,
    pub secrets: Arc<dyn SecretStore>,
    pub config: Arc<PipelineConfig>,
}

/// `QUEUE_URL_COLLECT`, `QUEUE_URL_ENRICH_VIRUSTOTAL`, ... → logical names.
pub fn queue_urls_from_env() -> HashMap<QueueName, String> {
    std::env::vars()
        .filter_map(|(k, v)| {
            let suffix = k.strip_prefix("QUEUE_URL_")?;
            let name = suffix.to_ascii_lowercase().replace('_', "-");
            let queue = match name.strip_prefix("enrich-") {
                Some(source) => QueueName::enrich(source),
                None => match name.as_str() {
                    "collect" => QueueName::collect(),
                    "synthesize" => QueueName::synthesize(),
                    "writeback" => QueueName::writeback(),
                    _ => return None,
                },
            };
            Some((queue, v))
        })
        .collect()
}

impl Aws {
    pub async fn from_env() -> Result<Aws, WiringError> {
        let sdk = crate::aws::sdk_config().await;
        let store = DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            env::required("DOSSIER_CASES_TABLE")?,
            env::required("DOSSIER_AUDIT_TABLE")?,
        );
        let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_urls_from_env());
        let secrets = SecretsManager::new(aws_sdk_secretsmanager::Client::new(&sdk));
        Ok(Aws { store: Arc::new(store), queue: Arc::new(queue), secrets: Arc::new(secrets), config: Arc::new(env::pipeline_config()?) })
    }

    pub fn context(&self, actor: &'static str) -> Context {
        Context::new(self.store.clone(), self.queue.clone(), Arc::new(SystemClock), self.config.clone(), actor)
    }

    /// Reads the secret whose id (ARN or name) is in `var`.
    pub async fn secret(&self, var: &'static str) -> Result<String, WiringError> {
        let id = env::required(var)?;
        self.secrets.get_secret(&id).await.map_err(|e| WiringError::Secret { var, reason: e.to_string() })
    }

    pub async fn xdr(&self) -> Result<Arc<dyn XdrApi>, WiringError> {
        let base = env::required("DOSSIER_XDR_URL")?;
        let creds = XdrCredentials::from_secret(&self.secret("DOSSIER_XDR_SECRET_ARN").await?)
            .map_err(|reason| WiringError::Secret { var: "DOSSIER_XDR_SECRET_ARN", reason })?;
        Ok(Arc::new(XdrHttp::new(&base, creds, Duration::from_secs(20))))
    }

    pub async fn link_signer(&self) -> Result<Arc<LinkSigner>, WiringError> {
        let text = self.secret("DOSSIER_LINK_KEY_SECRET_ARN").await?;
        LinkSigner::from_secret(&text)
            .map(Arc::new)
            .map_err(|e| WiringError::Secret { var: "DOSSIER_LINK_KEY_SECRET_ARN", reason: e.to_string() })
    }

    /// The one source a deployed enrich function serves (`DOSSIER_SOURCE`).
    pub async fn source(&self, name: &str) -> Result<Arc<dyn Source>, WiringError> {
        Ok(match name {
            ATTACK_SOURCE => Arc::new(AttackSource),
            virustotal::NAME => match env::var("DOSSIER_VIRUSTOTAL_SECRET_ARN") {
                Some(_) => {
                    let key = self.secret("DOSSIER_VIRUSTOTAL_SECRET_ARN").await?;
                    let base = env::var("DOSSIER_VIRUSTOTAL_URL").unwrap_or_else(|| virustotal::DEFAULT_BASE_URL.into());
                    Arc::new(PerIndicator {
                        inner: VirusTotal::new(&base, key.trim().to_string(), Duration::from_secs(10)),
                        limits: LookupLimits::default(),
                    })
                }
                None => Arc::new(NotConfigured { name: name.into(), reason: "no API key configured".into() }),
            },
            INTEL_FEED_SOURCE => match env::var("DOSSIER_INTEL_FEED_PATH") {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| ConfigError::Invalid { name: "DOSSIER_INTEL_FEED_PATH", reason: e.to_string() })?;
                    let feed = IntelFeed::from_csv(&text)
                        .map_err(|e| ConfigError::Invalid { name: "DOSSIER_INTEL_FEED_PATH", reason: e.to_string() })?;
                    Arc::new(PerIndicator { inner: feed, limits: LookupLimits::default() })
                }
                None => Arc::new(NotConfigured { name: name.into(), reason: "no feed file configured".into() }),
            },
            other => Arc::new(NotConfigured { name: other.into(), reason: "this version has no adapter for the source".into() }),
        })
    }
}
