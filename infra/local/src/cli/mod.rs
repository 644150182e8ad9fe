//! What the commands share: configuration from the environment, the local pipeline, input errors.

use std::sync::Arc;
use std::time::Duration;

use dossier_adapters::llm::OpenAiCompatible;
use dossier_core::config::PipelineConfig;
use dossier_core::domain::{Case, CaseKey, IncidentHint, Trigger};
use dossier_core::ports::{Clock, SystemClock, XdrApi};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::synthesis::LanguageModel;
use dossier_core::xdr::{ExtraData, WebhookSecrets};
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};

pub mod demo;
pub mod doctor;
pub mod eval;
pub mod print;
pub mod run;
pub mod serve;

/// Input problems: exit 2 with the message.
pub struct BadInput(pub String);

/// How long a local run may take before it is reported as not settled.
pub const RUN_BUDGET: Duration = Duration::from_secs(600);

pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// Local link key: `DOSSIER_LINK_KEY` if set, else a fresh random key (links die with the process).
pub fn local_signer() -> Result<Arc<LinkSigner>, BadInput> {
    match env("DOSSIER_LINK_KEY") {
        Some(text) => LinkSigner::from_secret(&text).map(Arc::new).map_err(|e| BadInput(format!("DOSSIER_LINK_KEY: {e}"))),
        None => {
            let mut secret = vec![0u8; 32];
            getrandom::getrandom(&mut secret).map_err(|e| BadInput(format!("no OS randomness for a link key: {e}")))?;
            LinkSigner::new(vec![SigningKey { id: "local".into(), secret }]).map(Arc::new).map_err(|e| BadInput(e.to_string()))
        }
    }
}

pub fn config() -> Result<PipelineConfig, BadInput> {
    dossier_adapters::env::pipeline_config().map_err(|e| BadInput(e.to_string()))
}

pub async fn backend(aws_endpoint: Option<&str>, clock: Arc<dyn Clock>, sources: &[String]) -> Result<Backend, BadInput> {
    match aws_endpoint {
        None => Ok(Backend::embedded(clock)),
        Some(ep) => Backend::aws(ep, &env("DOSSIER_RESOURCE_PREFIX").unwrap_or_else(|| "dossier-".into()), sources)
            .await
            .map_err(|e| BadInput(format!("AWS endpoint {ep}: {e}"))),
    }
}

/// Slack / Teams from `DOSSIER_SLACK_WEBHOOK_URL` / `DOSSIER_TEAMS_WEBHOOK_URL`; Slack direct
/// messages with the bot token in `DOSSIER_SLACK_BOT_TOKEN`.
pub fn local_notifiers() -> Vec<Arc<dyn dossier_core::ports::Notifier>> {
    let mut out: Vec<Arc<dyn dossier_core::ports::Notifier>> = Vec::new();
    if let Some(url) = env("DOSSIER_SLACK_WEBHOOK_URL") {
        out.push(Arc::new(dossier_adapters::notify::SlackWebhook::new(url, Duration::from_secs(10))));
    }
    if let Some(url) = env("DOSSIER_TEAMS_WEBHOOK_URL") {
        out.push(Arc::new(dossier_adapters::notify::TeamsWebhook::new(url, Duration::from_secs(10))));
    }
    if let Some(token) = env("DOSSIER_SLACK_BOT_TOKEN") {
        let api = env("DOSSIER_SLACK_API_URL").unwrap_or_else(|| dossier_adapters::notify::SLACK_API.into());
        out.push(Arc::new(dossier_adapters::notify::SlackDirect::new(&api, token, Duration::from_secs(10))));
    }
    out
}

/// A ServiceNow record at closure (`DOSSIER_CLOSURE_SERVICENOW_TABLE` with
/// `DOSSIER_SERVICENOW_URL` / `DOSSIER_SERVICENOW_KEY`). Closure e-mail needs SES: deployed only.
pub fn local_closure_exports() -> Result<Vec<Arc<dyn dossier_core::ports::ClosureExport>>, BadInput> {
    let Some(table) = env("DOSSIER_CLOSURE_SERVICENOW_TABLE") else { return Ok(Vec::new()) };
    let (Some(url), Some(key)) = (env("DOSSIER_SERVICENOW_URL"), env("DOSSIER_SERVICENOW_KEY")) else {
        return Err(BadInput("DOSSIER_CLOSURE_SERVICENOW_TABLE needs DOSSIER_SERVICENOW_URL and DOSSIER_SERVICENOW_KEY".into()));
    };
    let record = dossier_adapters::export::ServiceNowRecord::new(&url, &key, &table, Duration::from_secs(10)).map_err(BadInput)?;
    Ok(vec![Arc::new(record)])
}

/// `DOSSIER_LLM_TIMEOUT_SECONDS`, 60 by default.
pub fn llm_timeout() -> Duration {
    env("DOSSIER_LLM_TIMEOUT_SECONDS").and_then(|t| t.parse().ok()).map_or(Duration::from_secs(60), Duration::from_secs)
}

/// An OpenAI-compatible model when a URL is given (key `DOSSIER_LLM_KEY`; a classic Azure
/// deployment's `api-version` from `DOSSIER_LLM_API_VERSION`).
pub fn model(url: Option<&str>, name: &str) -> Option<Arc<dyn LanguageModel>> {
    url.map(|u| {
        Arc::new(OpenAiCompatible::new(u, env("DOSSIER_LLM_KEY"), name, llm_timeout()).with_api_version(env("DOSSIER_LLM_API_VERSION")))
            as Arc<dyn LanguageModel>
    })
}

pub async fn pipeline(
    config: PipelineConfig,
    xdr: Arc<dyn XdrApi>,
    aws_endpoint: Option<&str>,
    webhook_secrets: WebhookSecrets,
    model: Option<Arc<dyn LanguageModel>>,
) -> Result<LocalPipeline, BadInput> {
    let names = dossier_local::sources::names();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backend = backend(aws_endpoint, clock.clone(), &names).await?;
    let shared = dossier_adapters::sources::catalog::Shared { store: backend.store.clone(), clock: clock.clone(), cache: true };
    let sources = dossier_local::sources::local_sources(&shared).map_err(|e| BadInput(e.to_string()))?;
    let signer = local_signer()?;
    let oidc = dossier_adapters::env::oidc_settings(&config.public_base_url).map_err(|e| BadInput(e.to_string()))?;
    let pipeline = LocalPipeline::new(PipelineParts {
        backend,
        config,
        clock,
        xdr,
        sources,
        signer: signer.clone(),
        webhook_secrets,
        model,
        identity: None,
        notifiers: local_notifiers(),
    })
    .with_closure_exports(local_closure_exports()?);
    Ok(match oidc {
        // Locally the client secret is the value itself (`DOSSIER_OIDC_CLIENT_SECRET`).
        Some(settings) => {
            let provider = dossier_adapters::oidc::HttpOidcProvider::new(
                &settings.issuer,
                &settings.client_id,
                env("DOSSIER_OIDC_CLIENT_SECRET"),
                std::time::Duration::from_secs(10),
            );
            pipeline.with_signin(dossier_core::signin::SignIn::new(settings, Arc::new(provider), signer))
        }
        None => pipeline,
    })
}

pub fn case_for(tenant: &str, data: &ExtraData, now_ms: i64) -> Result<Case, BadInput> {
    let key = CaseKey::new(tenant, &data.incident.incident_id).map_err(|e| BadInput(e.to_string()))?;
    let hint = IncidentHint {
        severity: data.incident.severity,
        description: data.incident.description.clone(),
        created_at_ms: data.incident.creation_ms,
        ..Default::default()
    };
    Ok(Case::new(key, Trigger::Local, hint, now_ms, &Default::default()))
}
