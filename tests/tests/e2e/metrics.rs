//! The stages' metrics for one case, as the EMF lines CloudWatch would turn into the dashboard's
//! figures: cases opened, per-source calls/errors/latency, model tokens and fallback, dossiers
//! posted with the time from incident creation to dossier.

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

use dossier_core::config::{ModelPrice, Phase, PipelineConfig};
use dossier_core::domain::CaseKey;
use dossier_core::embedded::RecordingXdr;
use dossier_core::http::HttpRequest;
use dossier_core::metrics::{emf_line, RecordingMetrics};
use dossier_core::ports::{Clock, SystemClock};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, IntelFeed, PerIndicator, Source};
use dossier_core::stages::HttpHandler;
use dossier_core::synthesis::{LanguageModel, LlmError, LlmRequest, LlmResponse};
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};

const DEMO: &str = include_str!("../../../infra/local/samples/xdr/demo_powershell_stager.json");
const FEED: &str = include_str!("../../../infra/local/samples/intel-feed.csv");

/// A model that is down: the case must still complete, and the fallback must be counted.
struct DownModel;

#[async_trait::async_trait]
impl LanguageModel for DownModel {
    fn id(&self) -> &str {
        "down-model"
    }
    async fn complete(&self, _req: &LlmRequest) -> Result<LlmResponse, LlmError> {
        Err(LlmError::Unavailable("503 from the provider".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_case_emits_the_dashboard_metrics() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(RecordingMetrics::default());
    let mut backend = Backend::embedded(clock.clone());
    backend.metrics = metrics.clone();
    let sources: Vec<Arc<dyn Source>> = vec![Arc::new(AttackSource), Arc::new(PerIndicator::new(IntelFeed::from_csv(FEED).expect("feed")))];
    let pipeline = LocalPipeline::new(PipelineParts {
        backend,
        config: PipelineConfig { phase: Phase(1), ..PipelineConfig::default() },
        clock: clock.clone(),
        xdr: Arc::new(RecordingXdr::serving(DEMO.to_string())),
        sources,
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![3; 32] }]).expect("signer")),
        webhook_secrets: dossier_core::xdr::WebhookSecrets::single("default", b"hook-secret-00000001").unwrap(),
        model: Some(Arc::new(DownModel)),
        identity: None,
        notifiers: Vec::new(),
    });
    let created = clock.now_ms() - 90_000;
    let req = HttpRequest {
        method: "POST".into(),
        path: "/webhook".into(),
        headers: vec![("authorization".into(), "Bearer hook-secret-00000001".into())],
        body: json!({"case_id": "4711", "severity": "high", "created_at": created}).to_string().into_bytes(),
        ..Default::default()
    };
    assert_eq!(pipeline.intake.handle(&req).await.status, 202);
    let key = CaseKey::new("default", "4711").expect("key");
    assert!(pipeline.run_until_settled(std::slice::from_ref(&key), Duration::from_secs(60)).await.expect("pump"));

    assert_eq!(metrics.values("CasesOpened"), vec![1.0]);
    assert_eq!(metrics.values("DossiersPosted"), vec![1.0]);
    let to_dossier = metrics.values("TimeToDossier");
    assert_eq!(to_dossier.len(), 1);
    assert!(to_dossier[0] >= 90_000.0, "measured from the incident's creation: {to_dossier:?}");
    assert_eq!(metrics.values("CaseLatency").len(), 1);
    assert_eq!(metrics.values("ModelFallback"), vec![1.0], "the model was down; the deterministic dossier stood in");
    // One record per source, each under its own Source dimension.
    let per_source: Vec<String> = metrics
        .sets()
        .iter()
        .filter(|(_, s)| s.metrics.iter().any(|m| m.name == "SourceErrors"))
        .filter_map(|(f, s)| {
            assert_eq!(f, "enrich");
            s.dimensions.iter().find(|(n, _)| *n == "Source").map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(per_source.len(), 2, "{per_source:?}");
    assert!(per_source.contains(&"attack".to_string()) && per_source.contains(&"intel-feed".to_string()));
    // Every record renders as a valid EMF line.
    for (function, set) in metrics.sets() {
        let line: Value = serde_json::from_str(&emf_line(&function, &set, 0)).expect("EMF is JSON");
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Dossier");
    }
}

/// A model that answers (with nothing to cite) and reports its token use.
struct CountedModel;

#[async_trait::async_trait]
impl LanguageModel for CountedModel {
    fn id(&self) -> &str {
        "counted-model"
    }
    async fn complete(&self, _req: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let answer = json!({"summary": "Narrative.", "timeline": [], "hypotheses": [], "techniques": [], "actors": [], "impacted": [], "next_steps": [], "proposed_actions": [], "severity": {"level": "medium", "reason": "test"}});
        Ok(LlmResponse { text: answer.to_string(), input_tokens: 12_000, output_tokens: 800 })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priced_model_reports_the_cost_of_each_case() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(RecordingMetrics::default());
    let mut backend = Backend::embedded(clock.clone());
    backend.metrics = metrics.clone();
    let price = ModelPrice::parse("3, 15").expect("price");
    let pipeline = LocalPipeline::new(PipelineParts {
        backend,
        config: PipelineConfig { phase: Phase(1), model_price: Some(price), ..PipelineConfig::default() },
        clock: clock.clone(),
        xdr: Arc::new(RecordingXdr::serving(DEMO.to_string())),
        sources: vec![Arc::new(AttackSource)],
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![3; 32] }]).expect("signer")),
        webhook_secrets: dossier_core::xdr::WebhookSecrets::single("default", b"hook-secret-00000001").unwrap(),
        model: Some(Arc::new(CountedModel)),
        identity: None,
        notifiers: Vec::new(),
    });
    let req = HttpRequest {
        method: "POST".into(),
        path: "/webhook".into(),
        headers: vec![("authorization".into(), "Bearer hook-secret-00000001".into())],
        body: json!({"case_id": "4712", "severity": "high"}).to_string().into_bytes(),
        ..Default::default()
    };
    assert_eq!(pipeline.intake.handle(&req).await.status, 202);
    let key = CaseKey::new("default", "4712").expect("key");
    assert!(pipeline.run_until_settled(std::slice::from_ref(&key), Duration::from_secs(60)).await.expect("pump"));
    assert_eq!(metrics.values("ModelFallback"), vec![0.0], "the answer was used");
    // 12,000 in at $3/M + 800 out at $15/M = $0.036 + $0.012.
    let cost = metrics.values("ModelCostUsd");
    assert_eq!(cost.len(), 1);
    assert!((cost[0] - 0.048).abs() < 1e-9, "{cost:?}");
    let set = metrics.sets().into_iter().find(|(_, s)| s.metrics.iter().any(|m| m.name == "ModelCostUsd")).expect("cost set");
    let line: Value = serde_json::from_str(&emf_line(&set.0, &set.1, 0)).expect("EMF is JSON");
    let units: Vec<&Value> = line["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().expect("metrics").iter().collect();
    assert!(units.iter().any(|m| m["Name"] == "ModelCostUsd" && m["Unit"] == "None"), "{units:?}");
}
