//! The bench's simulated dependencies: XDR, threat-intel sources and a model, each with a set
//! latency, their work traced as outside work in the AWS call trace.

use async_trait::async_trait;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::embedded::RecordingXdr;
use dossier_core::ports::{IncidentRef, XdrApi, XdrError};
use dossier_core::sources::{CallCounter, IndicatorSource, Lookup, LookupError};
use dossier_core::synthesis::{LanguageModel, LlmError, LlmRequest, LlmResponse};

use crate::latency::AwsCalls;

/// The bench's webhook secret.
pub(crate) const BENCH_SECRET: &str = "bench-webhook-secret-0001";

/// Stands for the incident id in the served sample, replaced per request.
pub(crate) const ID_PLACEHOLDER: &str = "bench-incident-id-placeholder";

/// XDR with latency: serves the sample incident under any id, records when each comment lands.
pub(crate) struct SimulatedXdr {
    pub(crate) inner: RecordingXdr,
    /// The sample with `ID_PLACEHOLDER` as its incident id (serialised once, not per request:
    /// the simulator's CPU is not Dossier's).
    pub(crate) extra_data: String,
    pub(crate) latency: Duration,
    pub(crate) write_latency: Duration,
    pub(crate) posted: Mutex<HashMap<String, Instant>>,
    pub(crate) comment_posted: tokio::sync::Notify,
    /// Where the post is marked as the end of the case's critical path.
    pub(crate) calls: Arc<AwsCalls>,
}

#[async_trait]
impl XdrApi for SimulatedXdr {
    async fn list_modified(&self, from: i64, to: i64) -> Result<Vec<IncidentRef>, XdrError> {
        self.inner.list_modified(from, to).await
    }
    async fn get_incident_extra_data(&self, id: &str) -> Result<String, XdrError> {
        self.calls.external("xdr get_incident_extra_data", crate::latency::wait(self.latency)).await;
        Ok(self.extra_data.replace(ID_PLACEHOLDER, id))
    }
    async fn add_comment(&self, id: &str, text: &str) -> Result<(), XdrError> {
        self.calls.external("xdr add comment", crate::latency::wait(self.write_latency)).await;
        self.inner.add_comment(id, text).await?;
        // The dossier comment (not action results) ends the measured path.
        self.posted.lock().map_err(|_| XdrError::Server("lock".into()))?.entry(id.to_string()).or_insert_with(Instant::now);
        self.calls.hand_off("xdr comment posted");
        self.comment_posted.notify_waiters();
        Ok(())
    }
    async fn set_severity(&self, id: &str, s: &str) -> Result<(), XdrError> {
        self.inner.set_severity(id, s).await
    }
    async fn isolate_endpoint(&self, e: &str, id: &str) -> Result<String, XdrError> {
        self.inner.isolate_endpoint(e, id).await
    }
    async fn block_hash(&self, h: &str, c: &str, id: &str) -> Result<(), XdrError> {
        self.inner.block_hash(h, c, id).await
    }
    async fn action_status(&self, a: &str) -> Result<Vec<(String, String)>, XdrError> {
        self.inner.action_status(a).await
    }
    async fn comment_exists(&self, id: &str, marker: &str) -> Result<Option<bool>, XdrError> {
        self.inner.comment_exists(id, marker).await
    }
    async fn endpoint_isolated(&self, e: &str) -> Result<Option<bool>, XdrError> {
        self.inner.endpoint_isolated(e).await
    }
    async fn manual_severity(&self, id: &str) -> Result<Option<String>, XdrError> {
        self.inner.manual_severity(id).await
    }
}

/// A threat-intel source with latency: one "call" per lookup, behind the real cache.
pub(crate) struct SimulatedSource {
    pub(crate) name: &'static str,
    pub(crate) latency: Duration,
    pub(crate) calls: Arc<AwsCalls>,
}

#[async_trait]
impl IndicatorSource for SimulatedSource {
    fn name(&self) -> &'static str {
        self.name
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        !kind.is_entity()
    }
    fn sends_externally(&self) -> bool {
        true
    }
    async fn lookup(&self, _: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        calls.add(1);
        self.calls.external(self.name, crate::latency::wait(self.latency)).await;
        Ok(Lookup::NotFound)
    }
}

/// A model with latency whose answer is valid and cites nothing. Tokens are counted as a real
/// model would bill them: the prompt actually built (about 4 characters a token) and a typical
/// dossier answer.
pub(crate) struct SimulatedModel(
    pub(crate) Duration,
    pub(crate) Arc<(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64)>,
    pub(crate) Arc<AwsCalls>,
);

/// Output tokens of a typical dossier answer (the golden set's answers run 900–1,500).
pub(crate) const TYPICAL_ANSWER_TOKENS: u64 = 1200;

#[async_trait]
impl LanguageModel for SimulatedModel {
    fn id(&self) -> &str {
        "simulated-model"
    }
    async fn complete(&self, req: &LlmRequest) -> Result<LlmResponse, LlmError> {
        self.2.external("model", crate::latency::wait(self.0)).await;
        let input = ((req.system.len() + req.user.len() + req.schema.to_string().len()) / 4) as u64;
        self.1 .0.fetch_add(input, std::sync::atomic::Ordering::Relaxed);
        self.1 .1.fetch_add(TYPICAL_ANSWER_TOKENS, std::sync::atomic::Ordering::Relaxed);
        let answer = json!({"summary": "Simulated narrative.", "timeline": [], "hypotheses": [], "techniques": [], "actors": [], "impacted": [], "next_steps": [], "proposed_actions": [], "severity": {"level": "medium", "reason": "simulated"}});
        Ok(LlmResponse { text: answer.to_string(), input_tokens: 1000, output_tokens: 200 })
    }
}
