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

use std::time::Instant;

use crate::case::{Action, Case};
use crate::config::Phase;
use crate::dossier::Dossier;
use crate::indicator::InternalNames;
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
}

/// Tries the model; `Ok` with the AI dossier and its actions, or `Err` with the run explaining
/// why the deterministic dossier stands.
pub async fn with_model(
    model: &dyn LanguageModel,
    case: &Case,
    reports: &[SourceReport],
    baseline: &Dossier,
    phase: Phase,
    names: &InternalNames,
) -> Result<(Dossier, Vec<Action>, ModelRun), ModelRun> {
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
    for attempt in 1..=2 {
        run.attempts = attempt;
        let answer =
            model.complete(&LlmRequest { system: PROMPT_TEXT.to_string(), user: user.clone(), schema: schema(), max_tokens: 4096 }).await;
        run.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                run.rejected = Some(format!("model call failed: {e}"));
                return Err(run);
            }
        };
        run.input_tokens += answer.input_tokens;
        run.output_tokens += answer.output_tokens;
        match validate(&answer.text, case, &pack, &pseudonyms, phase) {
            Ok(parsed) => {
                let (dossier, actions) = parsed.into_dossier(case, baseline, &pseudonyms, &run, phase);
                return Ok((dossier, actions, run));
            }
            Err(e) if attempt == 1 => {
                // One repair attempt: the same evidence, plus what was wrong.
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
    Err(run)
}
