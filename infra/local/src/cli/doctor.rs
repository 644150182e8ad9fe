//! `dossier doctor`: is this configuration able to do its job? One line per check (internal
//! domains, the model, XDR, each configured source), a non-zero exit on any failure. It reads the
//! same environment as `run` and `serve`, and sends one small request to each configured service.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use dossier_adapters::sources::catalog::Shared;
use dossier_adapters::xdr::{XdrCredentials, XdrHttp};
use dossier_core::domain::{normalise, Case, CaseKey, IncidentHint, IndicatorKind, InternalNames, Trigger};
use dossier_core::ports::{Clock, SystemClock, XdrApi};
use dossier_core::sources::{SourceStatus, ATTACK_SOURCE, CMDB_EXPORT_SOURCE, INTEL_FEED_SOURCE, RELATED_CASES_SOURCE};
use dossier_core::synthesis::{LanguageModel, LlmRequest};

use super::{config, env, model, BadInput};

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Fail,
    /// Not configured: nothing to check (the pipeline runs without it).
    Skip,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
}

fn check(name: &str, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check { name: name.to_string(), verdict, detail: detail.into() }
}

/// The model answers a minimal schema-bound request.
async fn model_check(llm: Option<Arc<dyn LanguageModel>>) -> Check {
    let Some(llm) = llm else {
        return check("model", Verdict::Skip, "no DOSSIER_LLM_URL: every dossier is built from the evidence alone");
    };
    let request = LlmRequest {
        system: "You check connectivity. Answer with the JSON object the schema describes.".into(),
        user: "Answer {\"ok\": true}.".into(),
        schema: serde_json::json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false}),
        max_tokens: 64,
    };
    let started = Instant::now();
    match llm.complete(&request).await {
        Ok(answer) => check(
            "model",
            Verdict::Ok,
            format!(
                "{} answered in {} ms ({} tokens in, {} out)",
                llm.id(),
                started.elapsed().as_millis(),
                answer.input_tokens,
                answer.output_tokens
            ),
        ),
        Err(e) => check("model", Verdict::Fail, format!("{}: {e}", llm.id())),
    }
}

/// XDR accepts the key and its role can list incidents.
async fn xdr_check() -> Check {
    let (Some(url), Some(key)) = (env("DOSSIER_XDR_URL"), env("DOSSIER_XDR_KEY")) else {
        return check("xdr-api", Verdict::Skip, "no DOSSIER_XDR_URL / DOSSIER_XDR_KEY: the bundled sample incidents are served");
    };
    let creds = match XdrCredentials::from_secret(&key) {
        Ok(c) => c,
        Err(e) => return check("xdr-api", Verdict::Fail, format!("DOSSIER_XDR_KEY: {e}")),
    };
    let xdr = XdrHttp::new(&url, creds, Duration::from_secs(20));
    let now = SystemClock.now_ms();
    match xdr.list_modified(now - 3_600_000, now).await {
        Ok(list) => check("xdr-api", Verdict::Ok, format!("{url}: key accepted, {} incident(s) changed in the last hour", list.len())),
        Err(e) => check("xdr-api", Verdict::Fail, format!("{url}: {e}")),
    }
}

/// A case with one harmless indicator of each kind, for the sources to look up.
fn probe_case() -> Case {
    let mut case = Case::new(
        CaseKey::new("doctor", "0").expect("a valid key"),
        Trigger::Local,
        IncidentHint::default(),
        SystemClock.now_ms(),
        &Default::default(),
    );
    let names = InternalNames::default();
    for (kind, value) in [
        (IndicatorKind::Ipv4, "8.8.8.8"),
        (IndicatorKind::Domain, "example.com"),
        (IndicatorKind::Sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ] {
        case.indicators.extend(normalise(kind, value, &names));
    }
    case
}

/// Each source with a key looks up harmless indicators; an error or a timeout fails.
async fn source_checks() -> Result<Vec<Check>, BadInput> {
    // No cache: the check must reach the service, not an earlier answer.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let shared = Shared { store: Arc::new(dossier_core::embedded::MemoryStore::new()), clock, cache: false };
    let sources = dossier_local::sources::local_sources(&shared).map_err(|e| BadInput(e.to_string()))?;
    let case = probe_case();
    let mut out = Vec::new();
    for source in sources {
        let name = source.name().to_string();
        // Offline sources (bundled tables and files) have nothing to reach.
        if [ATTACK_SOURCE, RELATED_CASES_SOURCE, INTEL_FEED_SOURCE, CMDB_EXPORT_SOURCE].contains(&name.as_str()) {
            continue;
        }
        let started = Instant::now();
        let c = match source.enrich(&case).await {
            Ok(r) => match r.status {
                SourceStatus::Skipped => check(&name, Verdict::Skip, r.note.unwrap_or_default()),
                SourceStatus::Ok | SourceStatus::NotFound => {
                    check(&name, Verdict::Ok, format!("answered {} call(s) in {} ms", r.calls, started.elapsed().as_millis()))
                }
                SourceStatus::Error | SourceStatus::TimedOut => check(
                    &name,
                    Verdict::Fail,
                    format!(
                        "{}: {}{}",
                        r.status.as_str(),
                        r.note.unwrap_or_default(),
                        r.errors.first().map_or(String::new(), |e| format!("; first: {e}"))
                    ),
                ),
            },
            Err(deferred) => check(&name, Verdict::Fail, format!("asked to wait {} s: {}", deferred.after.as_secs(), deferred.reason)),
        };
        out.push(c);
    }
    Ok(out)
}

/// A deployed function's configuration as `aws lambda get-function-configuration` prints it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LambdaConfig {
    function_name: String,
    #[serde(default)]
    environment: Option<LambdaEnvironment>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LambdaEnvironment {
    #[serde(default)]
    variables: std::collections::BTreeMap<String, String>,
}

/// The model of a deployed function answers: Bedrock through the SDK (a retired model id is
/// refused by Converse), OpenAI-compatible / Anthropic need the key secret and are checked locally.
async fn bedrock_check(function: &str, model: &str, sdk: &aws_config::SdkConfig) -> Check {
    let client = aws_sdk_bedrockruntime::Client::new(sdk);
    let llm = dossier_adapters::llm::Bedrock::new(client, model, Duration::from_secs(30));
    let mut c = model_check(Some(Arc::new(llm))).await;
    c.name = format!("{function}: model");
    c
}

/// Checks deployed functions' configurations: internal domains, every secret ARN resolves, the
/// Bedrock model answers.
async fn deployed_checks(files: &[std::path::PathBuf], aws_endpoint: Option<&str>) -> Result<Vec<Check>, BadInput> {
    let sdk = match aws_endpoint {
        Some(ep) => dossier_adapters::aws::sdk_config_for(ep).await,
        None => dossier_adapters::aws::sdk_config().await,
    };
    let secrets = dossier_adapters::secrets::SecretsManager::new(aws_sdk_secretsmanager::Client::new(&sdk));
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| BadInput(format!("{}: {e}", file.display())))?;
        let config: LambdaConfig =
            serde_json::from_str(&text).map_err(|e| BadInput(format!("{}: not a Lambda configuration: {e}", file.display())))?;
        let f = config.function_name;
        let vars = config.environment.map(|e| e.variables).unwrap_or_default();
        if let Some(domains) = vars.get("DOSSIER_INTERNAL_DOMAINS") {
            out.push(if domains.trim().is_empty() {
                check(&format!("{f}: internal-domains"), Verdict::Fail, "empty: the company's own names would be looked up outside")
            } else {
                check(&format!("{f}: internal-domains"), Verdict::Ok, domains.clone())
            });
        }
        for (name, arn) in vars.iter().filter(|(k, v)| k.ends_with("_SECRET_ARN") && !v.trim().is_empty()) {
            use dossier_core::ports::SecretStore;
            out.push(match secrets.get_secret(arn).await {
                Ok(value) if value.trim().is_empty() => check(&format!("{f}: {name}"), Verdict::Fail, "the secret is empty"),
                Ok(_) => check(&format!("{f}: {name}"), Verdict::Ok, "resolves"),
                Err(e) => check(&format!("{f}: {name}"), Verdict::Fail, e.to_string()),
            });
        }
        if vars.get("DOSSIER_LLM_PROVIDER").map(String::as_str) == Some("bedrock") {
            let model = vars.get("DOSSIER_LLM_MODEL").cloned().unwrap_or_default();
            out.push(bedrock_check(&f, &model, &sdk).await);
        }
    }
    Ok(out)
}

pub async fn doctor(json: bool, lambda_configs: &[std::path::PathBuf], aws_endpoint: Option<&str>) -> Result<bool, BadInput> {
    if !lambda_configs.is_empty() {
        let checks = deployed_checks(lambda_configs, aws_endpoint).await?;
        return Ok(report(&checks, json));
    }
    let mut checks = Vec::new();
    let config = config()?;
    checks.push(if config.internal_names.domain_suffixes.is_empty() {
        check(
            "internal-domains",
            Verdict::Fail,
            "DOSSIER_INTERNAL_DOMAINS is empty: the company's own names would be looked up at threat-intel services",
        )
    } else {
        check("internal-domains", Verdict::Ok, config.internal_names.domain_suffixes.join(", "))
    });
    let llm = model(env("DOSSIER_LLM_URL").as_deref(), &env("DOSSIER_LLM_MODEL").unwrap_or_else(|| "gpt-4o-mini".into()));
    checks.push(model_check(llm).await);
    checks.push(xdr_check().await);
    checks.extend(source_checks().await?);
    checks.push(approvals_check(&config.public_base_url).await);
    Ok(report(&checks, json))
}

/// Who can decide, and whether links reach approvers: with sign-in, the provider's discovery
/// and keys answer; without it, links need a personal channel (a shared one gets no link).
async fn approvals_check(public_base_url: &str) -> Check {
    use dossier_core::ports::OidcProvider;
    let settings = match dossier_adapters::env::oidc_settings(public_base_url) {
        Ok(s) => s,
        Err(e) => return check("approvals", Verdict::Fail, e.to_string()),
    };
    if let Some(settings) = settings {
        let provider = dossier_adapters::oidc::HttpOidcProvider::new(
            &settings.issuer,
            &settings.client_id,
            env("DOSSIER_OIDC_CLIENT_SECRET"),
            Duration::from_secs(10),
        );
        return match (provider.metadata().await, provider.keys(false).await) {
            (Ok(md), Ok(_)) if md.issuer == settings.issuer => check(
                "approvals",
                Verdict::Ok,
                format!("approvers sign in with {}; register {} as its redirect URI", md.issuer, settings.redirect_uri),
            ),
            (Ok(md), Ok(_)) => {
                check("approvals", Verdict::Fail, format!("the discovery document names issuer {}, not {}", md.issuer, settings.issuer))
            }
            (Err(e), _) | (_, Err(e)) => check("approvals", Verdict::Fail, format!("{}: {e}", settings.issuer)),
        };
    }
    let notifiers = super::local_notifiers();
    if notifiers.is_empty() {
        return check("approvals", Verdict::Skip, "no notification channel: approval links are printed, not sent");
    }
    if notifiers.iter().any(|n| n.personal()) {
        check("approvals", Verdict::Ok, "links go to each approver personally; the link alone decides (no DOSSIER_OIDC_ISSUER)")
    } else {
        check(
            "approvals",
            Verdict::Fail,
            "only shared channels and no approver sign-in: links would not be sent (set DOSSIER_SLACK_BOT_TOKEN or DOSSIER_OIDC_ISSUER)",
        )
    }
}

fn report(checks: &[Check], json: bool) -> bool {
    let healthy = checks.iter().all(|c| c.verdict != Verdict::Fail);
    if json {
        println!("{}", serde_json::json!({"healthy": healthy, "checks": checks}));
    } else {
        for c in checks {
            let mark = match c.verdict {
                Verdict::Ok => "ok  ",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "skip",
            };
            println!("{mark} {:<17} {}", c.name, c.detail);
        }
        println!("{}", if healthy { "healthy" } else { "NOT HEALTHY: fix the FAIL lines above" });
    }
    healthy
}
