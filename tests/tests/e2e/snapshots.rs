//! Records carried on messages (the case on each enrich message, the draft on the comment
//! message) save a read, never a promise: a snapshot that is stale, forged or for another case
//! falls back to the store. Embedded backend with a hand-moved clock.

use async_trait::async_trait;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dossier_core::config::PipelineConfig;
use dossier_core::domain::{Case, CaseKey, CaseStatus, IncidentHint, Trigger};
use dossier_core::embedded::{ManualClock, RecordingXdr};
use dossier_core::messages::{Message, Snapshot};
use dossier_core::ports::{Clock, QueueName};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, Deferred, Source, SourceReport};
use dossier_core::stages::open_case;
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

fn pipeline(clock: Arc<ManualClock>, xdr: Arc<RecordingXdr>, late: Arc<LateQuota>) -> LocalPipeline {
    LocalPipeline::new(PipelineParts {
        backend: Backend::embedded(clock.clone()),
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
    let posted = p.draft(&key, &draft_id).await.unwrap().unwrap();
    let mut as_created = posted.clone();
    as_created.comment = format!("{}\nFORGED: isolate everything", posted.comment);
    let other = CaseKey::new("acme", "2").unwrap();
    let messages = [
        Message::WriteComment { case: key.clone(), draft_id: draft_id.clone(), snapshot: Snapshot::of(&posted, 1) },
        Message::WriteComment { case: key.clone(), draft_id: draft_id.clone(), snapshot: Snapshot::of(&as_created, 1) },
        Message::WriteComment { case: other, draft_id: draft_id.clone(), snapshot: Snapshot::of(&as_created, 1) },
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
