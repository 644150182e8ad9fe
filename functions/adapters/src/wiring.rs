//! What each deployed function builds once per cold start, from the environment the template sets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::export::{ServiceNowRecord, SesSummary};
use dossier_core::config::PipelineConfig;
use dossier_core::ports::{ClosureExport, IdentityAdmin, Notifier, QueueName, SecretStore, SystemClock, XdrApi};
use dossier_core::signin::SignIn;
use dossier_core::signing::LinkSigner;
use dossier_core::sources::Source;
use dossier_core::stages::{Context, SnapshotKey};
use dossier_core::synthesis::LanguageModel;

use crate::dynamo::{DynamoStore, TableNames};
use crate::env::{self, ConfigError};
use crate::identity::{EntraAdmin, OktaAdmin};
use crate::llm::{Anthropic, Bedrock, OpenAiCompatible};
use crate::notify::{SesEmail, SlackDirect, SlackWebhook, TeamsWebhook, SLACK_API};
use crate::oidc::HttpOidcProvider;
use crate::secrets::SecretsManager;
use crate::sources::catalog::{self, RetrieverHandle, Shared, SourceSettings};
use crate::sources::msgraph::GraphCredentials;
use crate::sqs::SqsQueue;
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
    pub sdk: aws_config::SdkConfig,
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

/// Starts reading the trust roots for the HTTPS clients on a blocking thread, so that it overlaps
/// the secret read that comes first instead of following it (a cold start saves about 1.5 ms).
fn prepare_https_clients() {
    // Fire and forget: whoever builds a client first waits for the same one-time result.
    drop(tokio::task::spawn_blocking(|| drop(crate::tls::client_config())));
}

/// The snapshot key read from secret `id` by a task of its own, once `after` resolves; the cell
/// is set when it is in, and stays empty without an id, when the secret is not a key, or when
/// Secrets Manager still fails after a few tries spaced out over ~30 s (logged).
pub fn snapshot_key_in_background(
    secrets: Arc<dyn SecretStore>,
    id: Option<String>,
    after: impl std::future::Future<Output = ()> + Send + 'static,
) -> SnapshotKey {
    const TRIES: u32 = 5;
    let cell = SnapshotKey::default();
    let Some(id) = id else { return cell };
    let filled = cell.clone();
    tokio::spawn(async move {
        after.await;
        for attempt in 1..=TRIES {
            match secrets.get_secret(&id).await {
                Ok(text) => {
                    match LinkSigner::from_secret(&text) {
                        // Only this task sets the cell.
                        Ok(key) => drop(filled.set(Arc::new(key))),
                        Err(e) => tracing::error!(reason = %e, "snapshot key unusable: records are not carried on messages"),
                    }
                    return;
                }
                Err(e) if attempt == TRIES => {
                    tracing::error!(reason = %e, "snapshot key unavailable: records are not carried on messages");
                }
                Err(e) => {
                    tracing::warn!(reason = %e, attempt, "snapshot key not read yet; trying again");
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                }
            }
        }
    });
    cell
}

impl Aws {
    pub async fn from_env() -> Result<Aws, WiringError> {
        let sdk = crate::aws::sdk_config().await;
        let tables = TableNames {
            cases: env::required("DOSSIER_CASES_TABLE")?,
            effects: env::required("DOSSIER_EFFECTS_TABLE")?,
            reports: env::required("DOSSIER_REPORTS_TABLE")?,
            audit: env::required("DOSSIER_AUDIT_TABLE")?,
            cache: env::required("DOSSIER_CACHE_TABLE")?,
        };
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), tables);
        let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_urls_from_env());
        let secrets = SecretsManager::new(aws_sdk_secretsmanager::Client::new(&sdk));
        Ok(Aws {
            store: Arc::new(store),
            queue: Arc::new(queue),
            secrets: Arc::new(secrets),
            config: Arc::new(env::pipeline_config()?),
            sdk,
        })
    }

    pub fn context(&self, actor: &'static str) -> Context {
        Context::new(self.store.clone(), self.queue.clone(), Arc::new(SystemClock), self.config.clone(), actor)
            .with_metrics(Arc::new(crate::telemetry::StdoutEmf))
    }

    /// Reads the secret whose id (ARN or name) is in `var`.
    pub async fn secret(&self, var: &'static str) -> Result<String, WiringError> {
        let id = env::required(var)?;
        self.secrets.get_secret(&id).await.map_err(|e| WiringError::Secret { var, reason: e.to_string() })
    }

    pub async fn xdr(&self) -> Result<Arc<dyn XdrApi>, WiringError> {
        prepare_https_clients();
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

    /// The key that tags records carried on messages (`DOSSIER_SNAPSHOT_KEY_SECRET_ARN`, shared by
    /// collect, enrich, synthesize and write-back), read in the background once the function
    /// serves: carrying records saves reads, it is not needed to work, so a cold start does not
    /// wait for it.
    /// Until it is in (or if it cannot be read: logged) nothing is carried and each consumer
    /// reads the store.
    pub fn snapshot_key(&self) -> SnapshotKey {
        // Read once the function serves: init neither waits for it nor shares its round trips.
        snapshot_key_in_background(self.secrets.clone(), env::var("DOSSIER_SNAPSHOT_KEY_SECRET_ARN"), crate::lambda::serving())
    }

    /// Approver sign-in with OpenID Connect when `DOSSIER_OIDC_ISSUER` and `DOSSIER_OIDC_CLIENT_ID`
    /// are set; the client secret (if the provider issued one) from `DOSSIER_OIDC_CLIENT_SECRET_ARN`.
    pub async fn signin(&self, signer: Arc<LinkSigner>) -> Result<Option<SignIn>, WiringError> {
        let Some(settings) = env::oidc_settings(&self.config.public_base_url)? else { return Ok(None) };
        prepare_https_clients();
        let secret = match env::var("DOSSIER_OIDC_CLIENT_SECRET_ARN") {
            Some(_) => Some(self.secret("DOSSIER_OIDC_CLIENT_SECRET_ARN").await?.trim().to_string()),
            None => None,
        };
        let provider = HttpOidcProvider::new(&settings.issuer, &settings.client_id, secret, Duration::from_secs(10));
        Ok(Some(SignIn::new(settings, Arc::new(provider), signer)))
    }

    /// The one source a deployed enrich function serves (`DOSSIER_SOURCE`): its key from the
    /// secret in `DOSSIER_<SOURCE>_SECRET_ARN`, its URL from `DOSSIER_<SOURCE>_URL`, its quota
    /// from `DOSSIER_<SOURCE>_QUOTA`, file-backed sources from `DOSSIER_<SOURCE>_PATH`.
    pub async fn source(&self, name: &str) -> Result<Arc<dyn Source>, WiringError> {
        let prefix = format!("DOSSIER_{}", name.to_ascii_uppercase().replace('-', "_"));
        let var = |suffix: &str| std::env::var(format!("{prefix}_{suffix}")).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        // Only sources with an API (a key or a URL) need HTTPS: ATT&CK, related cases and file
        // feeds start without reading the trust store.
        if var("SECRET_ARN").is_some() || var("URL").is_some() {
            prepare_https_clients();
        }
        let key = match var("SECRET_ARN") {
            Some(arn) => Some(
                self.secrets
                    .get_secret(&arn)
                    .await
                    .map_err(|e| WiringError::Secret { var: "DOSSIER_<SOURCE>_SECRET_ARN", reason: e.to_string() })?,
            ),
            None => None,
        };
        let mut settings = SourceSettings { url: var("URL"), key, quota: var("QUOTA"), ..SourceSettings::default() };
        match (var("PATH"), name) {
            // The knowledge source reads a folder (shipped with the function); a knowledge base
            // id queries Amazon Bedrock instead.
            (path, dossier_core::sources::KNOWLEDGE_SOURCE) => {
                if let Some(id) = var("BASE_ID") {
                    let client = aws_sdk_bedrockagentruntime::Client::new(&self.sdk);
                    settings.retriever = Some(RetrieverHandle(Arc::new(crate::knowledge::BedrockKnowledgeBase::new(client, id))));
                } else if let Some(path) = path {
                    settings.documents = crate::knowledge::read_folder(std::path::Path::new(&path))
                        .map_err(|reason| ConfigError::Invalid { name: "DOSSIER_KNOWLEDGE_PATH", reason })?;
                }
            }
            (Some(path), _) => {
                settings.data = Some(
                    std::fs::read_to_string(&path)
                        .map_err(|e| ConfigError::Invalid { name: "DOSSIER_<SOURCE>_PATH", reason: format!("{path}: {e}") })?,
                )
            }
            (None, _) => {}
        }
        let shared = Shared { store: self.store.clone(), clock: Arc::new(SystemClock), cache: env::var("DOSSIER_CACHE_TABLE").is_some() };
        catalog::build(name, &settings, &shared, &format!("set {prefix}_SECRET_ARN"))
            .map_err(|reason| ConfigError::Invalid { name: "DOSSIER_SOURCE", reason }.into())
    }

    /// The language model for synthesis (`DOSSIER_LLM_PROVIDER` = `bedrock`, `openai`,
    /// `anthropic` or `none`; `DOSSIER_LLM_MODEL`; `DOSSIER_LLM_URL`; key in `DOSSIER_LLM_SECRET_ARN`).
    pub async fn model(&self) -> Result<Option<Arc<dyn LanguageModel>>, WiringError> {
        let provider = env::var("DOSSIER_LLM_PROVIDER").unwrap_or_else(|| "none".into());
        if provider == "openai" || provider == "anthropic" {
            prepare_https_clients();
        }
        let timeout = Duration::from_secs(env::var("DOSSIER_LLM_TIMEOUT_SECONDS").and_then(|t| t.parse().ok()).unwrap_or(60));
        let key = match env::var("DOSSIER_LLM_SECRET_ARN") {
            Some(_) => Some(self.secret("DOSSIER_LLM_SECRET_ARN").await?.trim().to_string()),
            None => None,
        };
        let model = || env::required("DOSSIER_LLM_MODEL");
        Ok(match provider.as_str() {
            "none" => None,
            "bedrock" => Some(Arc::new(Bedrock::new(aws_sdk_bedrockruntime::Client::new(&self.sdk), &model()?, timeout))),
            "openai" => Some(Arc::new(
                OpenAiCompatible::new(&env::required("DOSSIER_LLM_URL")?, key, &model()?, timeout)
                    .with_api_version(std::env::var("DOSSIER_LLM_API_VERSION").ok()),
            )),
            "anthropic" => {
                let key = key.ok_or(ConfigError::Missing("DOSSIER_LLM_SECRET_ARN"))?;
                Some(Arc::new(Anthropic::new(
                    &env::var("DOSSIER_LLM_URL").unwrap_or_else(|| Anthropic::DEFAULT_BASE_URL.into()),
                    key,
                    &model()?,
                    timeout,
                )))
            }
            other => {
                return Err(ConfigError::Invalid {
                    name: "DOSSIER_LLM_PROVIDER",
                    reason: format!("`{other}` is not bedrock, openai, anthropic or none"),
                }
                .into())
            }
        })
    }

    /// Where approved `disable_user` actions run (`DOSSIER_IDP` = `okta`, `entra` or `none`).
    pub async fn identity(&self) -> Result<Option<Arc<dyn IdentityAdmin>>, WiringError> {
        let timeout = Duration::from_secs(20);
        let idp = env::var("DOSSIER_IDP").unwrap_or_else(|| "none".into());
        if idp != "none" {
            prepare_https_clients();
        }
        Ok(match idp.as_str() {
            "none" => None,
            "okta" => {
                let token = self.secret("DOSSIER_OKTA_SECRET_ARN").await?;
                Some(Arc::new(OktaAdmin::new(&env::required("DOSSIER_OKTA_URL")?, token.trim().to_string(), timeout)))
            }
            "entra" => {
                let creds: GraphCredentials =
                    serde_json::from_str(&self.secret("DOSSIER_MSGRAPH_SECRET_ARN").await?).map_err(|_| WiringError::Secret {
                        var: "DOSSIER_MSGRAPH_SECRET_ARN",
                        reason: "expected {\"tenant_id\", \"client_id\", \"client_secret\"}".into(),
                    })?;
                let base = env::var("DOSSIER_MSGRAPH_URL").unwrap_or_else(|| crate::sources::msgraph::DEFAULT_BASE_URL.into());
                Some(Arc::new(EntraAdmin::new(&base, creds, env::var("DOSSIER_UPN_SUFFIX"), timeout)))
            }
            other => {
                return Err(ConfigError::Invalid { name: "DOSSIER_IDP", reason: format!("`{other}` is not okta, entra or none") }.into())
            }
        })
    }

    /// How approvers are told (`DOSSIER_NOTIFY` = any of `slack`, `teams`, `email`, `slack_dm`):
    /// Slack and Teams webhook URLs are secrets (`DOSSIER_SLACK_WEBHOOK_SECRET_ARN`,
    /// `DOSSIER_TEAMS_WEBHOOK_SECRET_ARN`), e-mail goes through SES from `DOSSIER_SES_FROM`, Slack
    /// direct messages through the app's bot token (`DOSSIER_SLACK_BOT_TOKEN_SECRET_ARN`).
    pub async fn notifiers(&self) -> Result<Vec<Arc<dyn Notifier>>, WiringError> {
        let timeout = Duration::from_secs(10);
        let mut out: Vec<Arc<dyn Notifier>> = Vec::new();
        let channels = env::var("DOSSIER_NOTIFY").unwrap_or_default();
        if channels.contains("slack") || channels.contains("teams") {
            // (`slack` also matches `slack_dm`.)
            prepare_https_clients();
        }
        for channel in channels.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            match channel {
                "slack" => out
                    .push(Arc::new(SlackWebhook::new(self.secret("DOSSIER_SLACK_WEBHOOK_SECRET_ARN").await?.trim().to_string(), timeout))),
                "teams" => out
                    .push(Arc::new(TeamsWebhook::new(self.secret("DOSSIER_TEAMS_WEBHOOK_SECRET_ARN").await?.trim().to_string(), timeout))),
                "email" => out.push(Arc::new(SesEmail::new(aws_sdk_sesv2::Client::new(&self.sdk), env::required("DOSSIER_SES_FROM")?))),
                "slack_dm" => out.push(Arc::new(SlackDirect::new(
                    &env::var("DOSSIER_SLACK_API_URL").unwrap_or_else(|| SLACK_API.into()),
                    self.secret("DOSSIER_SLACK_BOT_TOKEN_SECRET_ARN").await?.trim().to_string(),
                    timeout,
                ))),
                other => {
                    return Err(ConfigError::Invalid {
                        name: "DOSSIER_NOTIFY",
                        reason: format!("`{other}` is not slack, teams, email or slack_dm"),
                    }
                    .into())
                }
            }
        }
        Ok(out)
    }

    /// Where a closed case's summary is handed on: a ServiceNow record when
    /// `DOSSIER_CLOSURE_SERVICENOW_TABLE` is `incident` or `sn_si_incident` (instance
    /// `DOSSIER_SERVICENOW_URL`, credentials `DOSSIER_SERVICENOW_SECRET_ARN`), an e-mail to
    /// `DOSSIER_CLOSURE_EMAIL_TO` (comma-separated) from `DOSSIER_SES_FROM`.
    pub async fn closure_exports(&self) -> Result<Vec<Arc<dyn ClosureExport>>, WiringError> {
        let mut out: Vec<Arc<dyn ClosureExport>> = Vec::new();
        if let Some(table) = env::var("DOSSIER_CLOSURE_SERVICENOW_TABLE") {
            prepare_https_clients();
            let url = env::required("DOSSIER_SERVICENOW_URL")?;
            let credentials = self.secret("DOSSIER_SERVICENOW_SECRET_ARN").await?;
            let record = ServiceNowRecord::new(&url, credentials.trim(), table.trim(), Duration::from_secs(10))
                .map_err(|reason| ConfigError::Invalid { name: "DOSSIER_CLOSURE_SERVICENOW_TABLE", reason })?;
            out.push(Arc::new(record));
        }
        if let Some(to) = env::var("DOSSIER_CLOSURE_EMAIL_TO") {
            let to: Vec<String> = to.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_string).collect();
            if let Some(bad) = to.iter().find(|a| !a.contains('@')) {
                return Err(
                    ConfigError::Invalid { name: "DOSSIER_CLOSURE_EMAIL_TO", reason: format!("`{bad}` is not an e-mail address") }.into()
                );
            }
            out.push(Arc::new(SesSummary::new(aws_sdk_sesv2::Client::new(&self.sdk), env::required("DOSSIER_SES_FROM")?, to)));
        }
        Ok(out)
    }
}
