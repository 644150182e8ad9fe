//! Records carried on messages (the case on each enrich message, the draft on the comment
//! message) save a read, never a promise: a snapshot that is stale, forged or for another case
//! falls back to the store. Embedded backend with a hand-moved clock.

use async_trait::async_trait;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dossier_core::config::PipelineConfig;
use dossier_core::domain::{normalise, Case, CaseKey, CaseStatus, Draft, DraftKind, IncidentHint, IndicatorKind, Trigger};
use dossier_core::embedded::{ManualClock, RecordingXdr};
use dossier_core::messages::{Message, Snapshot, SynthesisReason};
use dossier_core::metrics::RecordingMetrics;
use dossier_core::ports::{Clock, QueueName};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, Deferred, Source, SourceReport};
use dossier_core::stages::{open_case, Deadline, StageError};
use dossier_core::store::Versioned;
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};
use dossier_tests::fixture;

/// Defers its first attempt for an hour (a quota), then answers; counts every attempt.
struct LateQuota(AtomicU32);

#[async_trait]
impl Source for LateQuota {
    fn name(&self) -> &str {
        "late"
    }
    async fn enrich(&self, _case: &Case) -> Result<SourceReport, Deferred> {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(Deferred { source_name: "late".into(), after: Duration::from_secs(3600), reason: "quota exhausted".into() });
        }
        Ok(SourceReport::skipped("late", "answered late"))
    }
}

async fn pump_idle(p: &LocalPipeline) {
    while p.pump_once().await.unwrap() > 0 {}
}

fn pipeline(clock: Arc<ManualClock>, xdr: Arc<RecordingXdr>, late: Arc<dyn Source>) -> LocalPipeline {
    pipeline_on(Backend::embedded(clock.clone()), clock, xdr, late)
}

fn pipeline_on(backend: Backend, clock: Arc<ManualClock>, xdr: Arc<RecordingXdr>, late: Arc<dyn Source>) -> LocalPipeline {
    LocalPipeline::new(PipelineParts {
        backend,
        config: PipelineConfig { enrich_deadline: Duration::from_secs(90), ..PipelineConfig::default() },
        clock,
        xdr,
        sources: vec![Arc::new(AttackSource), late],
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![1; 32] }]).unwrap()),
        webhook_secrets: dossier_local::backend::no_webhooks(),
        model: None,
        identity: None,
        notifiers: Vec::new(),
    })
}

/// The deferred enrich message comes back an hour later still carrying the case "enriching";
/// the deadline has passed and the case was written back meanwhile, so the stored case decides
/// and the source is not asked again.
#[tokio::test]
async fn a_carried_case_past_its_deadline_is_read_again_and_the_source_not_asked() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let xdr = Arc::new(RecordingXdr::serving(fixture("xdr/get_incident_extra_data.json")));
    let late = Arc::new(LateQuota(AtomicU32::new(0)));
    let p = pipeline(clock.clone(), xdr.clone(), late.clone());
    let key = CaseKey::new("acme", "1").unwrap();
    open_case(&p.ctx, Case::new(key.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default())).await.unwrap();
    pump_idle(&p).await;
    assert_eq!(late.0.load(Ordering::SeqCst), 1, "asked once, deferred");

    clock.advance(Duration::from_secs(91));
    pump_idle(&p).await;
    assert!(p.case(&key).await.unwrap().unwrap().status.is_settled(), "the deadline completed the case");
    assert_eq!(xdr.writes().len(), 1);

    clock.advance(Duration::from_secs(3600));
    pump_idle(&p).await;
    assert_eq!(late.0.load(Ordering::SeqCst), 1, "past the deadline the carried case is not trusted: the source is not asked");
    assert_eq!(xdr.writes().len(), 1, "and nothing more reaches XDR");
}

/// Comment messages carrying the dossier draft as it was created, after it was posted: a
/// redelivery, one whose draft text was changed in transit, one naming another case. Each is
/// a conflict at the carried version, then a read of the stored draft: nothing is posted again
/// and the changed text never reaches XDR.
#[tokio::test]
async fn a_stale_or_changed_carried_draft_posts_nothing() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let xdr = Arc::new(RecordingXdr::serving(fixture("xdr/get_incident_extra_data.json")));
    let late = Arc::new(LateQuota(AtomicU32::new(1)));
    let p = pipeline(clock.clone(), xdr.clone(), late);
    let key = CaseKey::new("acme", "1").unwrap();
    open_case(&p.ctx, Case::new(key.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default())).await.unwrap();
    pump_idle(&p).await;
    let case = p.case(&key).await.unwrap().unwrap();
    assert!(case.status.is_settled(), "{:?}", case.status);
    assert_eq!(xdr.writes().len(), 1, "the dossier is posted once");

    let draft_id = case.draft_id.clone().unwrap();
    let stored = p.ctx.store.draft(&key, &draft_id).await.unwrap().unwrap();
    let posted = stored.value;
    // Created at some version, then claimed and marked posted: two versions on.
    let created_at = stored.version - 2;
    let mut as_created = posted.clone();
    as_created.comment = format!("{}\nFORGED: isolate everything", posted.comment);
    let other = CaseKey::new("acme", "2").unwrap();
    let messages = [
        Message::WriteComment { case: key.clone(), draft_id: draft_id.clone(), snapshot: p.ctx.snapshot(&posted, created_at) },
        Message::WriteComment { case: key.clone(), draft_id: draft_id.clone(), snapshot: p.ctx.snapshot(&as_created, created_at) },
        // A genuine copy from a synthesis that lost its claim: created at an earlier version.
        Message::WriteComment { case: key.clone(), draft_id: draft_id.clone(), snapshot: p.ctx.snapshot(&as_created, created_at - 1) },
        Message::WriteComment { case: other, draft_id: draft_id.clone(), snapshot: p.ctx.snapshot(&as_created, created_at) },
    ];
    for m in &messages {
        p.ctx.send(&QueueName::writeback(), m, Duration::ZERO).await.unwrap();
    }
    pump_idle(&p).await;
    let writes = xdr.writes();
    assert_eq!(writes.len(), 1, "nothing posted again: {writes:?}");
    assert!(writes.iter().all(|w| !w.body.to_string().contains("FORGED")));
    assert_eq!(p.case(&key).await.unwrap().unwrap().status, case.status);
    assert_ne!(case.status, CaseStatus::Failed);
}

/// A comment message whose draft is never stored (its synthesis lost its claim, or died before
/// its commit): write-back waits for the draft (briefly, then in the queue) and lets the message
/// go, counted. Nothing is posted, nothing is stored, nothing rests in the DLQ.
#[tokio::test]
async fn a_comment_message_whose_draft_never_lands_is_let_go_and_counted() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let xdr = Arc::new(RecordingXdr::serving(fixture("xdr/get_incident_extra_data.json")));
    let metrics = Arc::new(RecordingMetrics::default());
    let mut backend = Backend::embedded(clock.clone());
    backend.metrics = metrics.clone();
    let p = pipeline_on(backend, clock.clone(), xdr.clone(), Arc::new(LateQuota(AtomicU32::new(1))));
    let key = CaseKey::new("acme", "9").unwrap();
    let lost = Draft::new(&key, "dossier-1", DraftKind::Dossier, "LOST RUN".into(), clock.now_ms(), &Default::default());
    let m = Message::WriteComment { case: key.clone(), draft_id: "dossier-1".into(), snapshot: p.ctx.snapshot(&lost, 7) };
    assert!(m.to_body().contains("LOST RUN"), "the genuine copy rides on the message");
    p.ctx.send(&QueueName::writeback(), &m, Duration::ZERO).await.unwrap();
    // Five waits of 2 s in the queue.
    for _ in 0..8 {
        pump_idle(&p).await;
        clock.advance(Duration::from_secs(3));
    }
    assert!(xdr.writes().is_empty(), "{:?}", xdr.writes());
    assert!(p.ctx.store.draft(&key, "dossier-1").await.unwrap().is_none(), "nothing stored");
    assert_eq!(metrics.values("CommentMessagesWithoutDraft"), vec![1.0]);
    let queue = p.backend.memory_queue.clone().unwrap();
    assert!(queue.all_dead_letters().is_empty(), "{:?}", queue.all_dead_letters());
    assert_eq!(p.pump_once().await.unwrap(), 0, "the message is gone");
}

/// A key other than the pipeline's: what a sender without the snapshot key could tag with.
fn foreign_key() -> LinkSigner {
    LinkSigner::new(vec![SigningKey { id: "local".into(), secret: vec![7; 32] }]).unwrap()
}

/// A copy as forged three ways: untagged, tagged under another key, and the genuine tag over an
/// altered body.
fn forgeries<R: dossier_core::messages::Carried>(genuine: &Snapshot, altered: &R, version: u64) -> Vec<Snapshot> {
    let body = serde_json::value::to_raw_value(altered).unwrap();
    vec![
        Snapshot { version, body: body.clone(), tag: String::new() },
        Snapshot::of(altered, version, &foreign_key()).unwrap(),
        Snapshot { version, body, tag: genuine.tag.clone() },
    ]
}

/// Comment messages forged while the genuine one waits in the queue (the draft created, not yet
/// claimed), each carrying the draft at its current version with other text: none is trusted.
/// The stored draft is claimed and posted once, and the forged text never reaches XDR.
#[tokio::test]
async fn a_forged_draft_ahead_of_the_genuine_one_posts_only_the_stored_text() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let xdr = Arc::new(RecordingXdr::serving(fixture("xdr/get_incident_extra_data.json")));
    let p = pipeline(clock.clone(), xdr.clone(), Arc::new(LateQuota(AtomicU32::new(1))));
    let key = CaseKey::new("acme", "1").unwrap();
    open_case(&p.ctx, Case::new(key.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default())).await.unwrap();
    while p.case(&key).await.unwrap().unwrap().status != CaseStatus::WritingBack {
        assert!(p.pump_once().await.unwrap() > 0, "the case stalled before write-back");
    }
    assert!(xdr.writes().is_empty(), "the genuine comment message is still queued");
    let draft_id = p.case(&key).await.unwrap().unwrap().draft_id.unwrap();
    let Versioned { value: stored, version } = p.ctx.store.draft(&key, &draft_id).await.unwrap().unwrap();
    let genuine = p.ctx.snapshot(&stored, version).expect("the pipeline tags snapshots");
    let mut altered = stored.clone();
    altered.comment = "FORGED: this host is clean, close the incident".into();
    let deadline = Deadline::after(clock.now_ms(), Duration::from_secs(30));
    for snapshot in forgeries(&genuine, &altered, version) {
        let m = Message::WriteComment { case: key.clone(), draft_id: draft_id.clone(), snapshot: Some(snapshot) };
        p.handler_of(&QueueName::writeback()).handle(&m.to_body(), deadline).await.unwrap();
    }
    pump_idle(&p).await;
    let writes = xdr.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(!writes[0].body.to_string().contains("FORGED"));
    assert!(writes[0].body.to_string().contains(&stored.comment.lines().next().unwrap().replace('"', "\\\"")));
    assert_eq!(p.draft(&key, &draft_id).await.unwrap().unwrap().comment, stored.comment, "the stored text is unchanged");
}

/// Remembers the indicators it was asked about.
struct Witness(std::sync::Mutex<Vec<String>>);

#[async_trait]
impl Source for Witness {
    fn name(&self) -> &str {
        "witness"
    }
    async fn enrich(&self, case: &Case) -> Result<SourceReport, Deferred> {
        self.0.lock().unwrap().extend(case.indicators.iter().map(|i| i.value.clone()));
        Ok(SourceReport::skipped("witness", "saw the case"))
    }
}

/// Enrich messages forged while the genuine ones wait: each carries the case with an internal
/// name planted as an external domain, and fewer expected sources. The source is asked only
/// about the stored case's indicators; a forged `all_reported` before the deadline starts no
/// synthesis.
#[tokio::test]
async fn a_forged_case_asks_no_source_about_what_the_stored_case_does_not_hold() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let xdr = Arc::new(RecordingXdr::serving(fixture("xdr/get_incident_extra_data.json")));
    let witness = Arc::new(Witness(Default::default()));
    let p = pipeline(clock.clone(), xdr.clone(), witness.clone());
    let key = CaseKey::new("acme", "1").unwrap();
    open_case(&p.ctx, Case::new(key.clone(), Trigger::Local, IncidentHint::default(), clock.now_ms(), &Default::default())).await.unwrap();
    p.pump_once().await.unwrap();
    let stored = p.case(&key).await.unwrap().unwrap();
    assert_eq!(stored.status, CaseStatus::Enriching, "collected; the enrich messages wait");
    let deadline = Deadline::after(clock.now_ms(), Duration::from_secs(30));

    // Synthesis before every expected source reported: refused whatever the message says.
    let early = Message::Synthesize { case: key.clone(), reason: SynthesisReason::AllReported };
    assert!(matches!(p.handler_of(&QueueName::synthesize()).handle(&early.to_body(), deadline).await, Err(StageError::RetryLater { .. })));
    assert_eq!(p.case(&key).await.unwrap().unwrap().status, CaseStatus::Enriching);

    let genuine = p.ctx.snapshot(&stored, 2).expect("the pipeline tags snapshots");
    let version = genuine.version;
    let mut planted = stored.clone();
    planted.indicators.push(normalise(IndicatorKind::Domain, "payroll.planted-secret.example", &Default::default()).unwrap());
    planted.expected_sources = vec!["witness".into()];
    for snapshot in forgeries(&genuine, &planted, version) {
        let m = Message::Enrich { case: key.clone(), source: "witness".into(), snapshot: Some(snapshot) };
        p.handler_of(&QueueName::enrich("witness")).handle(&m.to_body(), deadline).await.unwrap();
    }
    let seen = witness.0.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the stored case was enriched");
    assert!(!seen.iter().any(|v| v.contains("planted-secret")), "{seen:?}");
    // The witness reported, attack has not: the stored case still waits for it.
    assert_eq!(
        p.case(&key).await.unwrap().unwrap().status,
        CaseStatus::Enriching,
        "the forged copies named only `witness` as expected: the stored case still waits for `attack`"
    );
    pump_idle(&p).await;
    assert!(p.case(&key).await.unwrap().unwrap().status.is_settled());
    assert_eq!(xdr.writes().len(), 1);
}
