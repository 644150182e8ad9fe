//! Fan-in: a source that never answers does not block a case; the deadline moves it to synthesis
//! and the dossier names the missing source. Embedded backend with a hand-moved clock.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

use dossier_core::config::PipelineConfig;
use dossier_core::domain::{Case, CaseKey, CaseStatus, IncidentHint, Trigger};
use dossier_core::embedded::{ManualClock, RecordingXdr};
use dossier_core::messages::{Message, SynthesisReason};
use dossier_core::ports::{Clock, QueueName};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, Deferred, Source, SourceReport};
use dossier_core::stages::{dispose, open_case, Deadline, Disposition};
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

/// A case collected with sources `first` (reported) and `silent` (its message waits an hour).
async fn first_reported_silent_waiting() -> (Arc<ManualClock>, Arc<RecordingXdr>, LocalPipeline, CaseKey) {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let xdr = Arc::new(RecordingXdr::serving(fixture("xdr/get_incident_extra_data.json")));
    let pipeline = pipeline(clock.clone(), xdr.clone(), vec![Arc::new(Quick("first")), Arc::new(Silent)]);
    let key = CaseKey::new("acme", "1").unwrap();
    open_case(&pipeline.ctx, Case::new(key.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default()))
        .await
        .unwrap();
    pump_idle(&pipeline).await;
    (clock, xdr, pipeline, key)
}

/// A source joins the fan-in set while its report is being stored (side by side), and the one
/// that completes the set sends at once, so synthesis can read the set's `all_reported` before
/// that last report is stored. It then reads again two seconds later: the case finishes seconds
/// after, not at the fan-in deadline. (`silent` stands for the slow writer: its own message
/// waits an hour, so only the re-read can finish the case.)
#[tokio::test]
async fn a_report_in_flight_when_the_set_completes_delays_synthesis_by_seconds() {
    let (clock, xdr, pipeline, key) = first_reported_silent_waiting().await;
    assert_eq!(pipeline.case(&key).await.unwrap().unwrap().status, CaseStatus::Enriching, "`first` reported, `silent` waits");
    // `silent` joins the set (complete now) and sends, its report still on its way.
    pipeline.ctx.store.join_fan_in(&key, "silent").await.unwrap();
    let all = Message::Synthesize { case: key.clone(), reason: SynthesisReason::AllReported };
    let deadline = Deadline::after(clock.now_ms(), Duration::from_secs(30));
    let queue = QueueName::synthesize();
    let outcome = dispose(pipeline.handler_of(&queue), pipeline.backend.queue.as_ref(), &queue, &all.to_body(), deadline).await;
    assert_eq!(outcome, Disposition::Ack, "deferred: a copy waits in the queue");
    assert_eq!(pipeline.case(&key).await.unwrap().unwrap().status, CaseStatus::Enriching, "not without the report");
    // The report lands; two seconds later the waiting copy finds it.
    let report = SourceReport::skipped("silent", "answered at last");
    pipeline.ctx.store.report(&key, &report, &pipeline.ctx.event(&key, "source.reported", "silent")).await.unwrap();
    clock.advance(Duration::from_secs(2));
    pump_idle(&pipeline).await;
    assert!(pipeline.case(&key).await.unwrap().unwrap().status.is_settled(), "done 2 s later, not at the 90 s deadline");
    assert_eq!(xdr.writes().len(), 1);
    assert!(pipeline.dossier(&key).await.unwrap().unwrap().missing_sources.is_empty());
}

/// An `all_reported` whose missing report never lands (forged, or a source whose write keeps
/// failing): it reads again a few times, then is done — no copy left waiting, none in the DLQ —
/// and the deadline finishes the case, naming the source.
#[tokio::test]
async fn an_all_reported_for_a_report_that_never_lands_reads_a_few_times_then_the_deadline_decides() {
    let (clock, xdr, pipeline, key) = first_reported_silent_waiting().await;
    pipeline.ctx.store.join_fan_in(&key, "silent").await.unwrap();
    let all = Message::Synthesize { case: key.clone(), reason: SynthesisReason::AllReported };
    pipeline.ctx.send(&QueueName::synthesize(), &all, Duration::ZERO).await.unwrap();
    let mut handled = 0;
    for _ in 0..10 {
        handled += pipeline.pump_once().await.unwrap();
        clock.advance(Duration::from_secs(2));
    }
    assert_eq!(handled, 6, "the message and five re-reads, then nothing waits");
    assert_eq!(pipeline.case(&key).await.unwrap().unwrap().status, CaseStatus::Enriching);
    assert!(pipeline.backend.memory_queue.as_ref().unwrap().dead_letters(&QueueName::synthesize()).is_empty());
    clock.advance(Duration::from_secs(90));
    pump_idle(&pipeline).await;
    assert!(pipeline.case(&key).await.unwrap().unwrap().status.is_settled());
    assert_eq!(pipeline.dossier(&key).await.unwrap().unwrap().missing_sources, vec!["silent".to_string()]);
    assert_eq!(xdr.writes().len(), 1, "one dossier");
}
