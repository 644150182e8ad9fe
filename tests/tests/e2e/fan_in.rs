//! Fan-in: a source that never answers does not block a case; the deadline moves it to synthesis
//! and the dossier names the missing source. Embedded backend with a hand-moved clock.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

use dossier_core::config::PipelineConfig;
use dossier_core::domain::{Case, CaseKey, CaseStatus, IncidentHint, Trigger};
use dossier_core::embedded::{ManualClock, RecordingXdr};
use dossier_core::messages::{Message, SynthesisReason};
use dossier_core::ports::{Clock, QueueName, Table};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, Deferred, Source, SourceReport};
use dossier_core::stages::{open_case, Deadline, StageError};
use dossier_core::store::FAN_IN_SK;
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

/// The embedded pipeline with these sources and a 90-second fan-in deadline.
fn pipeline(clock: Arc<ManualClock>, xdr: Arc<RecordingXdr>, sources: Vec<Arc<dyn Source>>) -> LocalPipeline {
    LocalPipeline::new(PipelineParts {
        backend: Backend::embedded(clock.clone()),
        config: PipelineConfig { enrich_deadline: Duration::from_secs(90), ..PipelineConfig::default() },
        clock,
        xdr,
        sources,
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![1; 32] }]).unwrap()),
        webhook_secrets: dossier_local::backend::no_webhooks(),
        model: None,
        identity: None,
        notifiers: Vec::new(),
    })
}

async fn pump_idle(p: &LocalPipeline) {
    while p.pump_once().await.unwrap() > 0 {}
}

#[tokio::test]
async fn the_deadline_completes_a_case_whose_source_never_answers() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let xdr = Arc::new(RecordingXdr::serving(fixture("xdr/get_incident_extra_data.json")));
    let pipeline = pipeline(clock.clone(), xdr.clone(), vec![Arc::new(AttackSource), Arc::new(Silent)]);
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

/// Answers at once with nothing found.
struct Quick(&'static str);

#[async_trait]
impl Source for Quick {
    fn name(&self) -> &str {
        self.0
    }
    async fn enrich(&self, _case: &Case) -> Result<SourceReport, Deferred> {
        Ok(SourceReport::skipped(self.0, "nothing to look up"))
    }
}

/// A source joins the fan-in set while its report is being stored (side by side), so another
/// source can complete the set while a report is still in flight. Synthesis then waits a
/// moment and reads again: the case finishes seconds later, not at the fan-in deadline.
#[tokio::test]
async fn a_report_in_flight_when_the_set_completes_delays_synthesis_by_moments() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let xdr = Arc::new(RecordingXdr::serving(fixture("xdr/get_incident_extra_data.json")));
    let pipeline = pipeline(clock.clone(), xdr.clone(), vec![Arc::new(Quick("first")), Arc::new(Quick("lagging"))]);
    let key = CaseKey::new("acme", "1").unwrap();
    open_case(&pipeline.ctx, Case::new(key.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default()))
        .await
        .unwrap();
    pipeline.pump_once().await.unwrap();
    assert_eq!(pipeline.case(&key).await.unwrap().unwrap().status, CaseStatus::Enriching);
    // `lagging` is in the set, its report not yet stored; `first` then completes the set.
    pipeline.ctx.store.docs().add_to_set(Table::Reports, &key.storage_id(), FAN_IN_SK, "lagging").await.unwrap();
    let deadline = Deadline::after(clock.now_ms(), Duration::from_secs(30));
    let first = Message::Enrich { case: key.clone(), source: "first".into(), snapshot: None };
    pipeline.handler_of(&QueueName::enrich("first")).handle(&first.to_body(), deadline).await.unwrap();
    let early = Message::Synthesize { case: key.clone(), reason: SynthesisReason::AllReported };
    match pipeline.handler_of(&QueueName::synthesize()).handle(&early.to_body(), deadline).await {
        Err(StageError::RetryLater { after, .. }) => assert!(after <= Duration::from_secs(2), "waits moments, not the deadline: {after:?}"),
        other => panic!("{other:?}"),
    }
    // The lagging report lands (its own delivery), and within seconds the case is done.
    pump_idle(&pipeline).await;
    clock.advance(Duration::from_secs(3));
    pump_idle(&pipeline).await;
    assert!(pipeline.case(&key).await.unwrap().unwrap().status.is_settled());
    assert_eq!(xdr.writes().len(), 1);
    assert!(pipeline.dossier(&key).await.unwrap().unwrap().missing_sources.is_empty());
}
