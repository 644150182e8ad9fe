//! Synthesis with a language model: a prioritised, pseudonymised evidence pack; a versioned
//! prompt; the answer validated against the schema and the evidence; one repair attempt; then
//! the deterministic dossier if the model is absent, down or wrong. Internal names never leave
//! in clear, and text from alerts is only ever data.

mod evidence;
mod llm;
mod prompt;
mod pseudonym;
mod validate;

pub use evidence::{build_pack, EvidencePack, DEFAULT_TOKEN_BUDGET};
pub use llm::{LanguageModel, LlmError, LlmRequest, LlmResponse};
pub use prompt::{prompt_hash, schema, PROMPT_TEXT, PROMPT_VERSION};
pub use pseudonym::Pseudonyms;
pub use validate::{validate, ModelDossier, ValidationError};

use std::time::{Duration, Instant};

use crate::config::Phase;
use crate::domain::InternalNames;
use crate::domain::{Case, Proposal};
use crate::dossier::Dossier;
use crate::sources::SourceReport;

/// What a model call produced, for the draft and the audit trail.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelRun {
    pub model: String,
    pub prompt_version: String,
    pub prompt_hash: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub latency_ms: u64,
    pub attempts: u32,
    /// Why the model's dossier was not used, when it was not.
    pub rejected: Option<String>,
    /// The model gave no answer at all (down, throttled, refused the credentials, out of time),
    /// as opposed to an answer that was not usable.
    #[serde(default)]
    pub unreachable: bool,
}

/// How long the model may take, cut from the invocation's deadline by the caller.
#[derive(Clone, Copy, Debug)]
pub struct ModelBudget {
    /// When the model must be done (what remains is kept for the fallback and the writes).
    pub until: tokio::time::Instant,
    /// Longest single call.
    pub per_call: Duration,
}

/// A call shorter than this is not worth starting.
const MIN_CALL: Duration = Duration::from_secs(3);

/// Tries the model: one retry when the call failed in a way retrying helps (429, 5xx, timeout),
/// one repair when the answer was invalid, each only while the budget lasts. `Ok` with the AI
/// dossier and its proposals, or `Err` with the run explaining why the deterministic dossier
/// stands.
pub async fn with_model(
    model: &dyn LanguageModel,
    case: &Case,
    reports: &[SourceReport],
    baseline: &Dossier,
    phase: Phase,
    names: &InternalNames,
    budget: ModelBudget,
) -> Result<(Dossier, Vec<Proposal>, ModelRun), ModelRun> {
    let mut pseudonyms = Pseudonyms::for_case(case);
    let pack = build_pack(case, reports, baseline, &mut pseudonyms, names, phase, DEFAULT_TOKEN_BUDGET);
    let mut run = ModelRun {
        model: model.id().to_string(),
        prompt_version: PROMPT_VERSION.into(),
        prompt_hash: prompt_hash(),
        ..ModelRun::default()
    };
    let started = Instant::now();
    let mut user = pack.prompt.clone();
    let (mut retried, mut repaired) = (false, false);
    loop {
        let left = budget.until.saturating_duration_since(tokio::time::Instant::now());
        if left < MIN_CALL {
            let why = run.rejected.take().map_or(String::new(), |r| format!(" after: {r}"));
            run.rejected = Some(format!("no time left in this invocation for the model{why}"));
            run.unreachable = run.input_tokens == 0;
            return Err(run);
        }
        run.attempts += 1;
        let request = LlmRequest { system: PROMPT_TEXT.to_string(), user: user.clone(), schema: schema(), max_tokens: 4096 };
        let answer = match tokio::time::timeout(left.min(budget.per_call), model.complete(&request)).await {
            Ok(a) => a,
            Err(_) => Err(LlmError::Timeout),
        };
        run.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let answer = match answer {
            Ok(a) => a,
            Err(e @ (LlmError::RateLimited(_) | LlmError::Unavailable(_) | LlmError::Timeout)) if !retried => {
                tracing::warn!(error = %e, "model call failed; retrying once");
                retried = true;
                run.rejected = Some(format!("model call failed: {e}"));
                continue;
            }
            Err(e) => {
                run.rejected = Some(format!("model call failed: {e}"));
                run.unreachable = !matches!(e, LlmError::BadReply(_) | LlmError::Refused(_));
                return Err(run);
            }
        };
        run.input_tokens += answer.input_tokens;
        run.output_tokens += answer.output_tokens;
        match validate(&answer.text, case, &pack, &pseudonyms, phase) {
            Ok(parsed) => {
                run.rejected = None;
                let (dossier, proposals) = parsed.into_dossier(case, baseline, &pseudonyms, &run, phase);
                return Ok((dossier, proposals, run));
            }
            Err(e) if !repaired => {
                // One repair attempt: the same evidence, plus what was wrong.
                repaired = true;
                user = format!(
                    "{}\n\nYour previous answer was rejected: {e}. Answer again with one JSON object that follows every rule.",
                    pack.prompt
                );
                run.rejected = Some(e.to_string());
            }
            Err(e) => {
                run.rejected = Some(format!("invalid after one repair: {e}"));
                return Err(run);
            }
        }
    }
}
