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

pub async fn doctor(json: bool) -> Result<bool, BadInput> {
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
    let healthy = checks.iter().all(|c| c.verdict != Verdict::Fail);
    if json {
        println!("{}", serde_json::json!({"healthy": healthy, "checks": checks}));
    } else {
        for c in &checks {
            let mark = match c.verdict {
                Verdict::Ok => "ok  ",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "skip",
            };
            println!("{mark} {:<17} {}", c.name, c.detail);
        }
        println!("{}", if healthy { "healthy" } else { "NOT HEALTHY: fix the FAIL lines above" });
    }
    Ok(healthy)
}
