//! `dossier eval`: the prompt and a model, scored on the golden set (`infra/local/golden/`).
//! Each incident runs through the whole local pipeline with the model; the score says whether the
//! answers were usable (schema, repairs, fallbacks), grounded (every indicator the model cites is
//! in the evidence), right about techniques (recall and precision against the expected ones),
//! private (no internal identifier in any request to the model), and what they cost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use dossier_core::domain::{Case, CaseKey, IncidentHint, IndicatorKind, InternalNames, Trigger};
use dossier_core::embedded::RecordingXdr;
use dossier_core::ports::{Clock, SystemClock};
use dossier_core::stages::open_case;
use dossier_core::synthesis::{LanguageModel, LlmError, LlmRequest, LlmResponse};

use super::{config, pipeline, BadInput, RUN_BUDGET};

const EXPECTATIONS: &str = include_str!("../../golden/expectations.json");

/// The golden incidents, by name.
const INCIDENTS: &[(&str, &str)] = &[
    ("demo_powershell_stager", include_str!("../../samples/xdr/demo_powershell_stager.json")),
    ("endpoint_malware", include_str!("../../../../tests/fixtures/incidents/endpoint_malware.json")),
    ("attack_surface", include_str!("../../../../tests/fixtures/incidents/attack_surface.json")),
    ("email_phishing", include_str!("../../../../tests/fixtures/incidents/email_phishing.json")),
    ("identity_bruteforce", include_str!("../../../../tests/fixtures/incidents/identity_bruteforce.json")),
    ("hostile_text", include_str!("../../../../tests/fixtures/incidents/hostile_text.json")),
];

/// What a prompt change must score before it ships (README, "Prompts under test").
pub const MIN_GROUNDING: f64 = 0.95;
pub const MIN_TECHNIQUE_RECALL: f64 = 0.8;

#[derive(Deserialize)]
struct Expectation {
    name: String,
    incident_id: String,
    indicators: Vec<String>,
    techniques: Vec<String>,
    must_say: Vec<String>,
    must_not_say: Vec<String>,
}

/// Records what the model is sent, so the requests can be searched for internal identifiers.
struct Recording {
    inner: Arc<dyn LanguageModel>,
    requests: Mutex<Vec<String>>,
}

#[async_trait]
impl LanguageModel for Recording {
    fn id(&self) -> &str {
        self.inner.id()
    }
    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        if let Ok(mut r) = self.requests.lock() {
            r.push(format!("{}\n{}", request.system, request.user));
        }
        self.inner.complete(request).await
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CaseScore {
    pub name: String,
    pub ai_generated: bool,
    pub attempts: u32,
    pub repaired: bool,
    pub fallback_reason: Option<String>,
    /// Indicators the model's text cites, and how many of them are in the evidence.
    pub cited: usize,
    pub grounded: usize,
    pub expected_indicators_cited: usize,
    pub expected_indicators: usize,
    pub techniques_expected: usize,
    pub techniques_given: usize,
    pub techniques_right: usize,
    /// Internal identifiers found in requests to the model (must be 0).
    pub leaked: Vec<String>,
    pub statements_failed: Vec<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub latency_ms: u64,
    pub cost_usd: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub prompt_version: String,
    pub prompt_hash: String,
    pub cases: usize,
    pub schema_valid: usize,
    pub repairs: usize,
    pub fallbacks: usize,
    pub grounding: f64,
    pub technique_recall: f64,
    pub technique_precision: f64,
    pub leaked_identifiers: usize,
    pub statements_failed: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub mean_latency_ms: u64,
    pub cost_usd: Option<f64>,
    pub passes: bool,
    pub per_case: Vec<CaseScore>,
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 {
        1.0
    } else {
        n as f64 / d as f64
    }
}

/// Indicators a text cites (external kinds only: the model sees internal ones as tokens).
fn cited_indicators(text: &str) -> Vec<String> {
    let names = InternalNames::default();
    let mut c = dossier_core::extract::Collector::new(&names);
    c.scan_text(text, "answer");
    let (found, _) = c.finish();
    found
        .into_iter()
        .filter(|i| {
            !i.internal
                && matches!(
                    i.kind,
                    IndicatorKind::Ipv4
                        | IndicatorKind::Ipv6
                        | IndicatorKind::Domain
                        | IndicatorKind::Sha256
                        | IndicatorKind::Md5
                        | IndicatorKind::Url
                )
        })
        .map(|i| i.value)
        .collect()
}

async fn score_case(
    e: &Expectation,
    extra_data: &str,
    model: Arc<dyn LanguageModel>,
    price: Option<(f64, f64)>,
) -> Result<CaseScore, BadInput> {
    let recording = Arc::new(Recording { inner: model, requests: Mutex::new(Vec::new()) });
    let xdr = Arc::new(RecordingXdr::serving(extra_data.to_string()));
    let p =
        pipeline(config()?, xdr.clone(), None, dossier_local::backend::no_webhooks(), Some(recording.clone() as Arc<dyn LanguageModel>))
            .await?;
    let clock = SystemClock;
    let key = CaseKey::new("eval", &e.incident_id).map_err(|err| BadInput(err.to_string()))?;
    open_case(&p.ctx, Case::new(key.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default()))
        .await
        .map_err(|err| BadInput(format!("{}: {err}", e.name)))?;
    if !p.run_until_settled(std::slice::from_ref(&key), RUN_BUDGET).await.map_err(|err| BadInput(err.to_string()))? {
        return Err(BadInput(format!("{}: the case did not settle", e.name)));
    }
    let case = p.case(&key).await.map_err(|err| BadInput(err.to_string()))?.ok_or_else(|| BadInput(format!("{}: no case", e.name)))?;
    let dossier = p.dossier(&key).await.map_err(|err| BadInput(err.to_string()))?;
    let comment = xdr
        .writes()
        .iter()
        .filter_map(|w| w.body.pointer("/request_data/update_data/comment/value").and_then(|v| v.as_str()).map(str::to_string))
        .find(|c| c.starts_with("[Dossier]"))
        .unwrap_or_default();
    let mut s = CaseScore { name: e.name.clone(), ..CaseScore::default() };
    if let Some(d) = &dossier {
        s.ai_generated = d.ai_generated;
        if let Some(run) = &d.model_run {
            s.attempts = run.attempts;
            s.repaired = d.ai_generated && run.attempts > 1;
            s.fallback_reason = run.rejected.clone().filter(|_| !d.ai_generated);
            s.input_tokens = run.input_tokens;
            s.output_tokens = run.output_tokens;
            s.latency_ms = run.latency_ms;
            s.cost_usd = price.map(|(i, o)| (run.input_tokens as f64 * i + run.output_tokens as f64 * o) / 1_000_000.0);
        }
        if d.ai_generated {
            let text = std::iter::once(d.summary.clone())
                .chain(d.hypotheses.iter().flat_map(|h| std::iter::once(h.text.clone()).chain(h.evidence.iter().cloned())))
                .chain(d.timeline.iter().map(|t| t.event.clone()))
                .chain(d.next_steps.iter().map(|n| n.text.clone()))
                .collect::<Vec<_>>()
                .join("\n");
            let cited = cited_indicators(&text);
            let known: Vec<String> = case.indicators.iter().map(|i| i.value.to_ascii_lowercase()).collect();
            s.cited = cited.len();
            s.grounded = cited.iter().filter(|c| known.contains(&c.to_ascii_lowercase())).count();
            s.expected_indicators = e.indicators.len();
            s.expected_indicators_cited =
                e.indicators.iter().filter(|x| text.to_ascii_lowercase().contains(&x.to_ascii_lowercase())).count();
            let given: Vec<&str> = d.techniques.iter().map(|t| t.id.as_str()).collect();
            s.techniques_expected = e.techniques.len();
            s.techniques_given = given.len();
            s.techniques_right = e.techniques.iter().filter(|t| given.contains(&t.as_str())).count();
        }
    }
    let requests = recording.requests.lock().map(|r| r.join("\n").to_ascii_lowercase()).unwrap_or_default();
    s.leaked = case
        .indicators
        .iter()
        .filter(|i| {
            // Identifiers of people, machines and the network; process names and hashes are not.
            let identifying = matches!(
                i.kind,
                IndicatorKind::Hostname
                    | IndicatorKind::User
                    | IndicatorKind::Email
                    | IndicatorKind::Ipv4
                    | IndicatorKind::Ipv6
                    | IndicatorKind::Domain
                    | IndicatorKind::Url
            );
            identifying && i.internal && i.value.len() >= 4 && requests.contains(&i.value.to_ascii_lowercase())
        })
        .map(|i| format!("{} {}", i.kind, i.value))
        .collect();
    for m in &e.must_say {
        if !comment.contains(m.as_str()) {
            s.statements_failed.push(format!("does not say `{m}`"));
        }
    }
    for m in &e.must_not_say {
        if comment.contains(m.as_str()) {
            s.statements_failed.push(format!("says `{m}`"));
        }
    }
    Ok(s)
}

/// `DOSSIER_LLM_PRICE_USD_PER_MTOK` = "<input>,<output>".
fn price() -> Option<(f64, f64)> {
    let text = super::env("DOSSIER_LLM_PRICE_USD_PER_MTOK")?;
    let (i, o) = text.split_once(',')?;
    Some((i.trim().parse().ok()?, o.trim().parse().ok()?))
}

/// The model under evaluation: OpenAI-compatible (as `run` and `serve` build it) or Anthropic,
/// the key from `DOSSIER_LLM_KEY`.
pub fn model_for(provider: &str, url: &str, name: &str) -> Result<Arc<dyn LanguageModel>, BadInput> {
    match provider {
        "openai" => super::model(Some(url), name).ok_or_else(|| BadInput("--llm-url is required".into())),
        "anthropic" => super::env("DOSSIER_LLM_KEY")
            .map(|key| Arc::new(dossier_adapters::llm::Anthropic::new(url, key, name, super::llm_timeout())) as Arc<dyn LanguageModel>)
            .ok_or_else(|| BadInput("--provider anthropic needs DOSSIER_LLM_KEY".into())),
        other => Err(BadInput(format!("--provider {other}: use openai or anthropic"))),
    }
}

pub async fn eval(model: Arc<dyn LanguageModel>) -> Result<EvalReport, BadInput> {
    let expectations: Vec<Expectation> = serde_json::from_str(EXPECTATIONS).map_err(|e| BadInput(format!("golden set: {e}")))?;
    let mut report = EvalReport {
        model: model.id().to_string(),
        prompt_version: dossier_core::synthesis::PROMPT_VERSION.to_string(),
        prompt_hash: dossier_core::synthesis::prompt_hash(),
        ..EvalReport::default()
    };
    let price = price();
    for e in &expectations {
        let incident = INCIDENTS
            .iter()
            .find(|(n, _)| *n == e.name)
            .map(|(_, t)| *t)
            .ok_or_else(|| BadInput(format!("golden set: no incident `{}`", e.name)))?;
        let s = tokio::time::timeout(RUN_BUDGET + Duration::from_secs(30), score_case(e, incident, model.clone(), price))
            .await
            .map_err(|_| BadInput(format!("{}: timed out", e.name)))??;
        report.per_case.push(s);
    }
    let c = &report.per_case;
    report.cases = c.len();
    report.schema_valid = c.iter().filter(|s| s.ai_generated).count();
    report.repairs = c.iter().filter(|s| s.repaired).count();
    report.fallbacks = c.len() - report.schema_valid;
    report.grounding = ratio(c.iter().map(|s| s.grounded).sum(), c.iter().map(|s| s.cited).sum());
    report.technique_recall = ratio(c.iter().map(|s| s.techniques_right).sum(), c.iter().map(|s| s.techniques_expected).sum());
    report.technique_precision = ratio(c.iter().map(|s| s.techniques_right).sum(), c.iter().map(|s| s.techniques_given).sum());
    report.leaked_identifiers = c.iter().map(|s| s.leaked.len()).sum();
    report.statements_failed = c.iter().map(|s| s.statements_failed.len()).sum();
    report.input_tokens = c.iter().map(|s| s.input_tokens).sum();
    report.output_tokens = c.iter().map(|s| s.output_tokens).sum();
    report.mean_latency_ms = c.iter().map(|s| s.latency_ms).sum::<u64>() / (c.len().max(1) as u64);
    report.cost_usd = price.map(|_| c.iter().filter_map(|s| s.cost_usd).sum());
    report.passes = report.leaked_identifiers == 0
        && report.fallbacks == 0
        && report.statements_failed == 0
        && report.grounding >= MIN_GROUNDING
        && report.technique_recall >= MIN_TECHNIQUE_RECALL;
    Ok(report)
}

pub fn print(r: &EvalReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    println!("model {} · prompt {} ({})", r.model, r.prompt_version, r.prompt_hash);
    for s in &r.per_case {
        println!(
            "{:<24} {} attempts {} · grounded {}/{} · techniques {}/{} right of {} given · leaked {} · statements failed {} · {} ms{}",
            s.name,
            if s.ai_generated { "ai      " } else { "FALLBACK" },
            s.attempts,
            s.grounded,
            s.cited,
            s.techniques_right,
            s.techniques_expected,
            s.techniques_given,
            s.leaked.len(),
            s.statements_failed.len(),
            s.latency_ms,
            s.fallback_reason.as_ref().map_or(String::new(), |r| format!(" · {r}"))
        );
    }
    println!(
        "total: {}/{} valid, {} repaired, {} fallbacks · grounding {:.0}% · technique recall {:.0}% precision {:.0}% · leaked {} · statements failed {} · tokens {} in / {} out{}",
        r.schema_valid,
        r.cases,
        r.repairs,
        r.fallbacks,
        r.grounding * 100.0,
        r.technique_recall * 100.0,
        r.technique_precision * 100.0,
        r.leaked_identifiers,
        r.statements_failed,
        r.input_tokens,
        r.output_tokens,
        r.cost_usd.map_or(String::new(), |c| format!(" · ${c:.4}"))
    );
    println!("{}", if r.passes { "PASSES" } else { "DOES NOT PASS (see README, \"Prompts under test\")" });
}
