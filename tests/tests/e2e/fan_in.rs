//! Fan-in: a source that never answers does not block a case; the deadline moves it to synthesis
//! and the dossier names the missing source. Embedded backend with a hand-moved clock.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

use dossier_core::config::PipelineConfig;
use dossier_core::domain::{Case, CaseKey, CaseStatus, IncidentHint, Trigger};
use dossier_core::embedded::{ManualClock, RecordingXdr};
use dossier_core::ports::Clock;
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, Deferred, Source, SourceReport};
use dossier_core::stages::open_case;
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};
use dossier_tests::fixture;

/// A source whose quota never comes back: every attempt is deferred for an hour.
struct Silent;

#[async_trait]
impl Source for Silent {
    fn name(&self) -> &str {
        "silent"
    }
    async fn enrich(&self, _case: &Case) -> Result<SourceReport, Deferred> {
        Err(Deferred { source_name: "silent".into(), after: Duration::from_secs(3600), reason: "quota exhausted".into() })
    }
}

async fn pump_idle(p: &LocalPipeline) {
    while p.pump_once().await.unwrap() > 0 {}
}

#[tokio::test]
async fn the_deadline_completes_a_case_whose_source_never_answers() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let config = PipelineConfig { enrich_deadline: Duration::from_secs(90), ..PipelineConfig::default() };
    let xdr = Arc::new(RecordingXdr::serving(fixture("xdr/get_incident_extra_data.json")));
    let pipeline = LocalPipeline::new(PipelineParts {
        backend: Backend::embedded(clock.clone()),
        config,
        clock: clock.clone(),
        xdr: xdr.clone(),
        sources: vec![Arc::new(AttackSource), Arc::new(Silent)],
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![1; 32] }]).unwrap()),
        webhook_secrets: dossier_local::backend::no_webhooks(),
        model: None,
        identity: None,
        notifiers: Vec::new(),
    });
    let key = CaseKey::new("acme", "1").unwrap();
    open_case(&pipeline.ctx, Case::new(key.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default()))
        .await
        .unwrap();

    pump_idle(&pipeline).await;
    let case = pipeline.case(&key).await.unwrap().unwrap();
    assert_eq!(case.status, CaseStatus::Enriching, "waits for the silent source");
    assert!(xdr.writes().is_empty());

    clock.advance(Duration::from_secs(60));
    pump_idle(&pipeline).await;
    assert_eq!(pipeline.case(&key).await.unwrap().unwrap().status, CaseStatus::Enriching, "not before the deadline");

    clock.advance(Duration::from_secs(31));
    pump_idle(&pipeline).await;
    let case = pipeline.case(&key).await.unwrap().unwrap();
    assert!(case.status.is_settled(), "{:?}", case.status);
    let draft = pipeline.draft(&key, case.draft_id.as_deref().unwrap()).await.unwrap().unwrap();
    let dossier = pipeline.dossier(&key).await.unwrap().unwrap();
    assert_eq!(dossier.missing_sources, vec!["silent".to_string()]);
    assert!(draft.comment.contains("silent: no answer before the deadline"), "{}", draft.comment);
    assert!(dossier.summary.contains("Incomplete: silent did not answer in time"));
    assert_eq!(xdr.writes().len(), 1, "exactly one comment");
}
