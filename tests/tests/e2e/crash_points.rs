//! One test per place where a worker can die or a call can half-succeed, each asserting the
//! promise that must still hold: nothing twice, nothing without an approval, every case ends.
//! The worker "dies" by hanging at a chosen store write (before or after it is applied); the
//! runner kills it at its function's timeout and its message comes back after the visibility
//! timeout, as on Lambda. Time runs 200x faster than the wall clock.

use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dossier_core::config::{Phase, PipelineConfig};
use dossier_core::domain::{ActionKind, ActionStatus, Budgets, Case, CaseKey, CaseStatus, IncidentHint, Owner, Trigger};
use dossier_core::embedded::RecordingXdr;
use dossier_core::http::{HttpRequest, HttpResponse};
use dossier_core::messages::{Message, SynthesisReason};
use dossier_core::ports::{
    Clock, Condition, DocStore, DueItem, IncidentRef, QueueName, StoreError, StoredDoc, Table, Write, WriteOutcome, XdrApi, XdrError,
};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, IntelFeed, PerIndicator, Source};
use dossier_core::stages::open_case;
use dossier_core::store::{Commit, CASE_SK};
use dossier_core::synthesis::LanguageModel;
use dossier_local::backend::{current_invocation, Backend, FunctionTimes, LocalPipeline, PipelineParts, Timings};
use dossier_local::chaos::ScaledClock;

const DEMO: &str = include_str!("../../../infra/local/samples/xdr/demo_powershell_stager.json");
const FEED: &str = include_str!("../../../infra/local/samples/intel-feed.csv");
const SECRET: &str = "crash-points-webhook-secret";

/// Where the worker dies: at the first write (made inside an invocation) that matches.
#[derive(Clone, Copy, PartialEq, Eq)]
enum When {
    Before,
    After,
}

type Rule = Box<dyn Fn(&Write) -> bool + Send + Sync>;

struct CrashAt {
    inner: Arc<dyn DocStore>,
    rule: Mutex<Option<(Rule, When)>>,
    fired: std::sync::atomic::AtomicBool,
    /// A write that is applied but confirmed late (a slow store), once.
    stall: Mutex<Option<(Rule, Duration)>>,
    /// A write that is applied late (a slow transaction), once.
    late: Mutex<Option<(Rule, Duration)>>,
}

impl CrashAt {
    fn arm(&self, when: When, rule: impl Fn(&Write) -> bool + Send + Sync + 'static) {
        *self.rule.lock().unwrap() = Some((Box::new(rule), when));
    }
    fn stall(&self, wall: Duration, rule: impl Fn(&Write) -> bool + Send + Sync + 'static) {
        *self.stall.lock().unwrap() = Some((Box::new(rule), wall));
    }
    fn late(&self, wall: Duration, rule: impl Fn(&Write) -> bool + Send + Sync + 'static) {
        *self.late.lock().unwrap() = Some((Box::new(rule), wall));
    }
    fn fired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn take(&self, writes: &[Write]) -> Option<When> {
        current_invocation()?;
        let mut rule = self.rule.lock().unwrap();
        let hit = rule.as_ref().is_some_and(|(r, _)| writes.iter().any(r));
        if !hit {
            return None;
        }
        self.fired.store(true, std::sync::atomic::Ordering::SeqCst);
        rule.take().map(|(_, w)| w)
    }
}

async fn die() -> ! {
    std::future::pending::<()>().await;
    unreachable!()
}

#[async_trait]
impl DocStore for CrashAt {
    async fn get(&self, t: Table, pk: &str, sk: &str) -> Result<Option<StoredDoc>, StoreError> {
        self.inner.get(t, pk, sk).await
    }
    async fn get_many(&self, t: Table, keys: &[(String, String)]) -> Result<Vec<Option<StoredDoc>>, StoreError> {
        self.inner.get_many(t, keys).await
    }
    async fn query(&self, t: Table, pk: &str, p: &str) -> Result<Vec<StoredDoc>, StoreError> {
        self.inner.query(t, pk, p).await
    }
    async fn write(&self, writes: Vec<Write>) -> Result<WriteOutcome, StoreError> {
        let crash = self.take(&writes);
        if crash == Some(When::Before) {
            die().await;
        }
        let once = |slot: &Mutex<Option<(Rule, Duration)>>| {
            let mut slot = slot.lock().unwrap();
            let hit = slot.as_ref().is_some_and(|(r, _)| writes.iter().any(r));
            if hit {
                slot.take().map(|(_, d)| d)
            } else {
                None
            }
        };
        let (stall, late) = (once(&self.stall), once(&self.late));
        if let Some(d) = late {
            tokio::time::sleep(d).await;
        }
        let out = self.inner.write(writes).await?;
        if let Some(d) = stall {
            tokio::time::sleep(d).await;
        }
        if crash == Some(When::After) {
            die().await;
        }
        Ok(out)
    }
    async fn put_all(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let crash = self.take(&writes);
        if crash == Some(When::Before) {
            die().await;
        }
        self.inner.put_all(writes).await?;
        if crash == Some(When::After) {
            die().await;
        }
        Ok(())
    }
    async fn add_to_set(&self, t: Table, pk: &str, sk: &str, m: &str) -> Result<Vec<String>, StoreError> {
        self.inner.add_to_set(t, pk, sk, m).await
    }
    async fn count_up(&self, t: Table, pk: &str, sk: &str, limit: u64, exp: i64) -> Result<Option<u64>, StoreError> {
        self.inner.count_up(t, pk, sk, limit, exp).await
    }
    async fn set_members(&self, t: Table, pk: &str, sk: &str) -> Result<Vec<String>, StoreError> {
        self.inner.set_members(t, pk, sk).await
    }
    async fn due(&self, t: Table, until: i64, limit: usize) -> Result<Vec<DueItem>, StoreError> {
        self.inner.due(t, until, limit).await
    }
}

/// XDR that records, can refuse the next posts with scripted errors (applied first when the
/// error is a lost answer), and may or may not read comments back (5.x can, 3.x cannot).
struct Xdr {
    inner: RecordingXdr,
    reads_back: bool,
    post_errors: Mutex<VecDeque<XdrError>>,
}

impl Xdr {
    fn new(reads_back: bool) -> Xdr {
        Xdr { inner: RecordingXdr::serving(DEMO.to_string()), reads_back, post_errors: Mutex::default() }
    }
    fn writes_to(&self, suffix: &str) -> usize {
        self.inner.writes().iter().filter(|w| w.endpoint.ends_with(suffix)).count()
    }
    fn dossier_comments(&self) -> usize {
        self.inner
            .writes()
            .iter()
            .filter(|w| w.body["request_data"]["update_data"]["comment"]["value"].as_str().is_some_and(|t| t.contains(":dossier-1]")))
            .count()
    }
}

#[async_trait]
impl XdrApi for Xdr {
    async fn list_modified(&self, f: i64, t: i64) -> Result<Vec<IncidentRef>, XdrError> {
        self.inner.list_modified(f, t).await
    }
    async fn get_incident_extra_data(&self, id: &str) -> Result<String, XdrError> {
        self.inner.get_incident_extra_data(id).await
    }
    async fn add_comment(&self, id: &str, text: &str) -> Result<(), XdrError> {
        let scripted = self.post_errors.lock().unwrap().pop_front();
        match scripted {
            Some(XdrError::Transport(m)) => {
                self.inner.add_comment(id, text).await?;
                Err(XdrError::Transport(m))
            }
            Some(e) => Err(e),
            None => self.inner.add_comment(id, text).await,
        }
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
        if self.reads_back {
            self.inner.comment_exists(id, marker).await
        } else {
            Ok(None)
        }
    }
    async fn endpoint_isolated(&self, e: &str) -> Result<Option<bool>, XdrError> {
        self.inner.endpoint_isolated(e).await
    }
    async fn manual_severity(&self, id: &str) -> Result<Option<String>, XdrError> {
        self.inner.manual_severity(id).await
    }
}

/// What the wait conditions look at.
struct Snapshot {
    status: CaseStatus,
    actions: Vec<dossier_core::domain::Action>,
}

impl Snapshot {
    fn action(&self, kind: ActionKind) -> ActionStatus {
        self.actions.iter().find(|a| a.kind == kind).map_or(ActionStatus::Proposed, |a| a.status)
    }
}

struct Rig {
    pipeline: Arc<LocalPipeline>,
    crash: Arc<CrashAt>,
    xdr: Arc<Xdr>,
    clock: Arc<dyn Clock>,
    key: CaseKey,
}

fn rig(reads_back: bool) -> Rig {
    rig_with(reads_back, Vec::new())
}

fn rig_with(reads_back: bool, extra: Vec<Arc<dyn Source>>) -> Rig {
    rig_full(reads_back, extra, None)
}

/// A model that counts its calls and is down (the deterministic dossier stands in).
#[derive(Default)]
struct CountingModel(std::sync::atomic::AtomicU32);

#[async_trait]
impl dossier_core::synthesis::LanguageModel for CountingModel {
    fn id(&self) -> &str {
        "counting-model"
    }
    async fn complete(
        &self,
        _: &dossier_core::synthesis::LlmRequest,
    ) -> Result<dossier_core::synthesis::LlmResponse, dossier_core::synthesis::LlmError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(dossier_core::synthesis::LlmError::Unavailable("counted, then down".into()))
    }
}

fn rig_full(reads_back: bool, extra: Vec<Arc<dyn Source>>, model: Option<Arc<CountingModel>>) -> Rig {
    rig_timed(reads_back, extra, model.map(|m| m as Arc<dyn LanguageModel>), 30, 6)
}

/// A model whose every answer is valid and names its call: each synthesis run drafts its own text.
#[derive(Default)]
struct NumberedModel(std::sync::atomic::AtomicU32);

#[async_trait]
impl LanguageModel for NumberedModel {
    fn id(&self) -> &str {
        "numbered-model"
    }
    async fn complete(
        &self,
        _: &dossier_core::synthesis::LlmRequest,
    ) -> Result<dossier_core::synthesis::LlmResponse, dossier_core::synthesis::LlmError> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let answer = serde_json::json!({"summary": format!("Narrative of model call {n}."), "timeline": [], "hypotheses": [],
            "techniques": [], "actors": [], "impacted": [], "next_steps": [], "proposed_actions": [],
            "severity": {"level": "medium", "reason": "numbered"}});
        Ok(dossier_core::synthesis::LlmResponse { text: answer.to_string(), input_tokens: 1000, output_tokens: 200 })
    }
}

/// A rig whose functions time out after `timeout_s` (pipeline time; stage budgets twice that)
/// and whose failed messages come back after `retry_timeouts` such timeouts.
fn rig_timed(
    reads_back: bool,
    extra: Vec<Arc<dyn Source>>,
    model: Option<Arc<dyn LanguageModel>>,
    timeout_s: u64,
    retry_timeouts: u64,
) -> Rig {
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(1_800_000_000_000, 200.0));
    let backend = Backend::embedded_with(clock.clone(), Duration::from_secs(180));
    let crash = Arc::new(CrashAt {
        inner: backend.store.clone(),
        rule: Mutex::default(),
        fired: Default::default(),
        stall: Mutex::default(),
        late: Mutex::default(),
    });
    let backend = Backend { store: crash.clone(), ..backend };
    let xdr = Arc::new(Xdr::new(reads_back));
    let mut sources: Vec<Arc<dyn Source>> = vec![Arc::new(AttackSource), Arc::new(PerIndicator::new(IntelFeed::from_csv(FEED).unwrap()))];
    sources.extend(extra);
    let config = PipelineConfig {
        phase: Phase(2),
        // The fan-in deadline's message sends a comment again too: well after the functions' timeouts.
        enrich_deadline: Duration::from_secs(10 * timeout_s),
        write_lease: Duration::from_secs(30),
        link_ttl: Duration::from_secs(600),
        budgets: Budgets {
            collect: Duration::from_secs(2 * timeout_s),
            synthesize: Duration::from_secs(2 * timeout_s),
            write_back: Duration::from_secs(2 * timeout_s),
            execute: Duration::from_secs(timeout_s),
            max_nudges: 6,
        },
        ..PipelineConfig::default()
    };
    let f = |s| FunctionTimes { timeout: Duration::from_secs(s), failure_retry: Duration::from_secs(retry_timeouts * s) };
    let t = timeout_s;
    let timings = Timings { collect: f(t), enrich: f(t), synthesize: f(t), writeback: f(t), reconcile_every: Duration::from_secs(2 * t) };
    let pipeline = LocalPipeline::new(PipelineParts {
        backend,
        config,
        clock: clock.clone(),
        xdr: xdr.clone(),
        sources,
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![5; 32] }]).unwrap()),
        webhook_secrets: dossier_core::xdr::WebhookSecrets::single("default", SECRET.as_bytes()).unwrap(),
        model,
        identity: None,
        notifiers: Vec::new(),
    })
    .with_timings(timings);
    Rig { pipeline: Arc::new(pipeline), crash, xdr, clock, key: CaseKey::new("default", "4711").unwrap() }
}

impl Rig {
    async fn open(&self) {
        let case = Case::new(self.key.clone(), Trigger::Local, IncidentHint::default(), self.clock.now_ms(), &Default::default());
        open_case(&self.pipeline.ctx, case).await.unwrap();
    }

    /// Runs the queues and the reconciler until `done` holds of the case (or fails the test).
    async fn until(&self, what: &str, done: impl Fn(&Snapshot) -> bool) {
        let started = std::time::Instant::now();
        loop {
            while self.pipeline.pump_once().await.unwrap() > 0 {}
            let snapshot = Snapshot { status: self.status().await, actions: self.pipeline.actions(&self.key).await.unwrap() };
            if done(&snapshot) {
                return;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let events: Vec<String> = self
                    .pipeline
                    .ctx
                    .store
                    .events(&self.key)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| format!("{}: {}", e.event, e.detail))
                    .collect();
                panic!("never: {what}; case {:?}; events {events:#?}", snapshot.status);
            }
            self.pipeline.reconciler.run().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn status(&self) -> CaseStatus {
        self.pipeline.case(&self.key).await.unwrap().unwrap().status
    }

    async fn approve(&self, kind: ActionKind) -> HttpResponse {
        let action = self.pipeline.actions(&self.key).await.unwrap().into_iter().find(|a| a.kind == kind).unwrap();
        let token = action.links[0].url.split("t=").nth(1).unwrap().to_string();
        let req = HttpRequest {
            method: "POST".into(),
            path: "/approve".into(),
            headers: vec![("content-type".into(), "application/x-www-form-urlencoded".into())],
            body: format!("t={token}&decision=approve").into_bytes(),
            ..Default::default()
        };
        self.pipeline.invoke_http(&self.pipeline.approve, &req, Duration::from_secs(10)).await.unwrap_or(HttpResponse {
            status: 0,
            headers: Vec::new(),
            body: "killed".into(),
        })
    }

    /// Runs the queues until the case is in the related-case index (a dead collect's message
    /// comes back when its visibility lapses).
    async fn until_indexed(&self) {
        let started = std::time::Instant::now();
        while !self.indexed().await {
            assert!(started.elapsed() < Duration::from_secs(20), "the redelivery never wrote the related-case index");
            while self.pipeline.pump_once().await.unwrap() > 0 {}
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the case is in its tenant's related-case index (the recent-case entry).
    async fn indexed(&self) -> bool {
        let recent = dossier_core::sources::recent_pk(&self.key.tenant);
        self.pipeline.backend.store.get(Table::Cases, &recent, &self.key.storage_id()).await.unwrap().is_some()
    }

    async fn action(&self, kind: ActionKind) -> dossier_core::domain::Action {
        self.pipeline.actions(&self.key).await.unwrap().into_iter().find(|a| a.kind == kind).unwrap()
    }
}

fn is_draft_posted(w: &Write) -> bool {
    w.table == Table::Effects && w.sk.starts_with("draft#dossier") && w.body.contains("\"status\":\"posted\"")
}

fn awaiting(s: &Snapshot) -> bool {
    s.status == CaseStatus::AwaitingApproval
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_dies_after_the_decision_and_the_action_still_runs_once() {
    let r = rig(true);
    r.open().await;
    r.until("dossier posted", awaiting).await;
    // The approver's invocation dies right after the decision is stored: no hand-over was sent.
    r.crash.arm(When::After, |w| w.table == Table::Effects && w.body.contains("\"status\":\"approved\""));
    let page = r.approve(ActionKind::IsolateEndpoint).await;
    assert_eq!(page.status, 0, "the approver saw no answer");
    assert!(r.crash.fired());
    // Clicking again says it is decided (never "nothing changed").
    let again = r.approve(ActionKind::IsolateEndpoint).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("already decided"), "{}", again.body);
    // The reconciler hands it over: it runs, once.
    r.until("isolation executed", |s| s.action(ActionKind::IsolateEndpoint) == ActionStatus::Executed).await;
    assert_eq!(r.xdr.writes_to("/endpoints/isolate"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthesis_dies_after_its_claim_and_another_worker_finishes_it_once() {
    let r = rig(true);
    r.crash.arm(When::After, |w| w.table == Table::Cases && w.sk == CASE_SK && w.body.contains("\"status\":\"synthesizing\""));
    r.open().await;
    r.until("dossier posted", awaiting).await;
    assert!(r.crash.fired());
    assert_eq!(r.xdr.dossier_comments(), 1);
    let events: Vec<String> = r.pipeline.ctx.store.events(&r.key).await.unwrap().into_iter().map(|e| e.detail).collect();
    assert!(events.iter().any(|d| d.contains("taken over")), "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_lost_the_synthesis_claim_writes_and_sends_nothing() {
    let model = Arc::new(CountingModel::default());
    let r = rig_full(true, Vec::new(), Some(model.clone()));
    // Another worker holds a live lease on the synthesis.
    r.open().await;
    // Collect only: the sources' messages wait in their queues.
    let collect = Message::Collect { case: r.key.clone() }.to_body();
    let deadline = dossier_core::stages::Deadline::after(r.clock.now_ms(), Duration::from_secs(30));
    dossier_core::stages::dispose(
        r.pipeline.handler_of(&QueueName::collect()),
        r.pipeline.backend.queue.as_ref(),
        &QueueName::collect(),
        &collect,
        deadline,
    )
    .await;
    assert_eq!(r.status().await, CaseStatus::Enriching);
    let other = Owner::new("synthesize");
    let until = r.clock.now_ms() + 3_600_000;
    r.pipeline
        .ctx
        .store
        .update(&r.key.storage_id(), CASE_SK, |c: &mut Case, _: &mut Commit| {
            assert!(matches!(c.claim_synthesis(&other, until, r.clock.now_ms()), dossier_core::domain::Claim::Granted { .. }));
            Ok::<_, StoreError>(dossier_core::store::Change::Write(()))
        })
        .await
        .unwrap();
    let q = r.pipeline.backend.memory_queue.clone().unwrap();
    let before = q.sent_count();
    let msg = Message::Synthesize { case: r.key.clone(), reason: SynthesisReason::AllReported };
    let deadline = dossier_core::stages::Deadline::after(r.clock.now_ms(), Duration::from_secs(30));
    let outcome = dossier_core::stages::dispose(
        r.pipeline.handler_of(&QueueName::synthesize()),
        r.pipeline.backend.queue.as_ref(),
        &QueueName::synthesize(),
        &msg.to_body(),
        deadline,
    )
    .await;
    assert_eq!(outcome, dossier_core::stages::Disposition::Ack, "it waits (deferred) rather than fails");
    assert!(r.pipeline.draft(&r.key, "dossier-1").await.unwrap().is_none(), "no draft");
    assert!(r.pipeline.actions(&r.key).await.unwrap().is_empty(), "no action, no link");
    assert_eq!(q.sent_count(), before + 1, "only its own deferral was sent");
    assert_eq!(r.status().await, CaseStatus::Synthesizing);
    assert_eq!(model.0.load(std::sync::atomic::Ordering::SeqCst), 0, "the model was never asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthesis_dies_after_its_commit_and_the_reconciler_hands_it_over() {
    let r = rig(true);
    // The whole hand-over is stored, then the worker dies before sending anything.
    r.crash.arm(When::After, |w| w.table == Table::Effects && w.sk == "draft#dossier-1");
    r.open().await;
    r.until("dossier posted", awaiting).await;
    assert!(r.crash.fired());
    assert_eq!(r.xdr.dossier_comments(), 1);
    // The approvers are told although the notification message was never sent.
    r.until("approvers told", |s| s.actions.iter().all(|a| a.notified)).await;
}

/// The write that creates the dossier draft (synthesis's hand-over commit).
fn creates_dossier_draft(w: &Write) -> bool {
    w.table == Table::Effects && w.sk == "draft#dossier-1" && matches!(w.condition, Condition::Absent | Condition::AbsentAt(_))
}

/// The dossier comments posted, as XDR received them.
fn posted_dossiers(r: &Rig) -> Vec<String> {
    r.xdr
        .inner
        .writes()
        .iter()
        .filter_map(|w| w.body["request_data"]["update_data"]["comment"]["value"].as_str().map(str::to_string))
        .filter(|t| t.contains(":dossier-1]"))
        .collect()
}

/// Synthesis sends the comment beside the commit that stores its draft. Here the commit lands
/// after write-back has the message, once within write-back's short pauses (~150 ms of wall
/// time) and once after them (the message waits in the queue): the draft is posted once, as
/// stored, by that message. (The functions here time out after 1.5 s of wall time: time runs
/// 200x faster than the wall clock, write-back's pauses do not.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_that_outruns_its_draft_waits_for_it_and_posts_it_once() {
    for late_ms in [60, 300] {
        let r = rig_timed(true, Vec::new(), None, 300, 6);
        r.crash.late(Duration::from_millis(late_ms), creates_dossier_draft);
        r.open().await;
        // Every queue at once (a pump handles one round and waits for it, so write-back would
        // only see the message after synthesis's commit).
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers = tokio::spawn({
            let (p, stop) = (r.pipeline.clone(), stop.clone());
            async move { p.run_workers(4, &stop).await }
        });
        let started = std::time::Instant::now();
        while r.status().await != CaseStatus::AwaitingApproval {
            // Before the fan-in deadline's message (15 s of wall time), which would send it again.
            assert!(started.elapsed() < Duration::from_secs(10), "never posted (late by {late_ms} ms): {:?}", r.status().await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        workers.await.unwrap();
        let stored = r.pipeline.draft(&r.key, "dossier-1").await.unwrap().unwrap();
        assert_eq!(posted_dossiers(&r), vec![stored.comment.clone()], "late by {late_ms} ms");
        // Its own message posted it: the reconciler did not have to send it again.
        let events = r.pipeline.ctx.store.events(&r.key).await.unwrap();
        assert!(!events.iter().any(|e| e.event.starts_with("reconcile.")), "late by {late_ms} ms: {events:#?}");
    }
}

/// Synthesis dies before its commit lands, its comment message already sent; the worker that
/// takes the synthesis over commits its own draft (at a later version of the case). The dead
/// run's message, held back until that draft is stored and not yet claimed, must not pass for
/// it: it is decided on the stored draft, and the draft is posted once, as the run that
/// committed wrote it. Each run's model answer names its call, so the text shows whose it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_sent_beside_a_commit_that_never_landed_posts_nothing_of_its_own() {
    let r = rig_timed(true, Vec::new(), Some(Arc::new(NumberedModel::default())), 30, 1);
    r.crash.arm(When::Before, creates_dossier_draft);
    r.open().await;
    let started = std::time::Instant::now();
    let step = |what: &str| {
        assert!(started.elapsed() < Duration::from_secs(20), "never: {what}");
    };
    while !r.crash.fired() {
        step("the first synthesis dies");
        if r.pipeline.pump_once().await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // The dead run's comment message, taken off the queue before write-back sees it.
    let mut held = Vec::new();
    for delivery in r.pipeline.backend.consumer.receive(&QueueName::writeback(), 10, Duration::ZERO).await.unwrap() {
        r.pipeline.backend.consumer.ack(&delivery).await.unwrap();
        held.push(delivery.body);
    }
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(held[0].contains("write_comment") && held[0].contains("model call 1"), "{}", held[0]);
    // The synthesis comes back and is taken over; its draft is stored, its own message queued.
    while r.status().await != CaseStatus::WritingBack {
        step("the synthesis is taken over");
        if r.pipeline.pump_once().await.unwrap() == 0 {
            r.pipeline.reconciler.run().await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let deadline = dossier_core::stages::Deadline::after(r.clock.now_ms(), Duration::from_secs(30));
    let writeback = r.pipeline.handler_of(&QueueName::writeback());
    let outcome =
        dossier_core::stages::dispose(writeback, r.pipeline.backend.queue.as_ref(), &QueueName::writeback(), &held[0], deadline).await;
    assert_eq!(outcome, dossier_core::stages::Disposition::Ack);
    r.until("dossier posted", awaiting).await;
    let stored = r.pipeline.draft(&r.key, "dossier-1").await.unwrap().unwrap();
    let posted = posted_dossiers(&r);
    assert_eq!(posted, vec![stored.comment.clone()]);
    let dossier = r.pipeline.ctx.store.dossier(&r.key).await.unwrap().unwrap();
    assert_eq!(dossier.summary, "Narrative of model call 2.", "the run that took over committed the dossier");
    assert!(posted[0].contains(&dossier.summary), "the posted text is the committed run's: {}", posted[0]);
    assert!(!posted[0].contains("model call 1"), "the dead run's text was posted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writeback_dies_between_xdr_accepting_and_the_store_recording_and_reads_back() {
    let r = rig(true);
    r.crash.arm(When::Before, is_draft_posted);
    r.open().await;
    r.until("dossier posted", awaiting).await;
    assert!(r.crash.fired());
    assert_eq!(r.xdr.dossier_comments(), 1, "read back before posting again: one comment");
    let draft = r.pipeline.draft(&r.key, "dossier-1").await.unwrap().unwrap();
    assert_eq!(draft.attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_read_back_the_same_crash_posts_again_and_says_so() {
    let r = rig(false);
    r.crash.arm(When::Before, is_draft_posted);
    r.open().await;
    r.until("dossier posted", awaiting).await;
    // The one window an at-least-once queue cannot close where XDR cannot read comments back.
    assert_eq!(r.xdr.dossier_comments(), 2);
    let events: Vec<String> = r.pipeline.ctx.store.events(&r.key).await.unwrap().into_iter().map(|e| e.detail).collect();
    assert!(events.iter().any(|d| d.contains("posted again after a worker died")), "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_keeps_the_claim_a_429_releases_it_and_a_lost_answer_is_read_back() {
    // 429: nothing was written; the claim is released and the retry posts once.
    let r = rig(true);
    r.xdr.post_errors.lock().unwrap().push_back(XdrError::RateLimited("HTTP 429".into()));
    r.open().await;
    r.until("dossier posted", awaiting).await;
    let d = r.pipeline.draft(&r.key, "dossier-1").await.unwrap().unwrap();
    assert_eq!((r.xdr.dossier_comments(), d.attempts), (1, 2), "released, then claimed again normally");
    // A lost answer (XDR applied it): the lease stands, the next claim reads back, no second post.
    let r = rig(true);
    r.xdr.post_errors.lock().unwrap().push_back(XdrError::Transport("timed out".into()));
    r.open().await;
    r.until("dossier posted", awaiting).await;
    assert_eq!(r.xdr.dossier_comments(), 1);
    let events: Vec<String> = r.pipeline.ctx.store.events(&r.key).await.unwrap().into_iter().map(|e| e.detail).collect();
    assert!(events.iter().any(|d| d.contains("found on the incident on read-back")), "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_dies_after_xdr_isolated_and_the_retry_reads_back() {
    let r = rig(true);
    r.open().await;
    r.until("dossier posted", awaiting).await;
    // The worker dies after XDR isolated the host, before the outcome was recorded.
    r.crash.arm(When::Before, |w| w.table == Table::Effects && w.body.contains("\"status\":\"executed\""));
    assert_eq!(r.approve(ActionKind::IsolateEndpoint).await.status, 200);
    r.until("isolation recorded", |s| s.action(ActionKind::IsolateEndpoint) == ActionStatus::Executed).await;
    assert!(r.crash.fired());
    assert_eq!(r.xdr.writes_to("/endpoints/isolate"), 1, "isolated once");
    let a = r.action(ActionKind::IsolateEndpoint).await;
    assert_eq!(a.attempts, 2);
    assert!(a.execution_result.unwrap().contains("read-back"));
}

/// Collect dies right before or right after its commit (before the fan-out): the redelivery
/// collects (or finds the case collected), fans out, and writes the related-case index; the
/// case finishes with one dossier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_dies_around_its_commit_and_the_case_still_finishes_once() {
    for when in [When::After, When::Before] {
        let r = rig(true);
        r.crash.arm(when, |w| w.table == Table::Cases && w.sk == CASE_SK && w.body.contains("\"status\":\"enriching\""));
        r.open().await;
        r.until("dossier posted", awaiting).await;
        assert!(r.crash.fired());
        let reports = r.pipeline.reports(&r.key).await.unwrap();
        assert_eq!(reports.len(), 2, "both sources were asked and answered");
        r.until_indexed().await;
        assert_eq!(r.xdr.dossier_comments(), 1, "one dossier");
    }
}

/// Collect dies after the fan-out, before the related-case index: the redelivery finds the case
/// enriching, fans out again (consumers dedupe) and writes the index, so later cases of the
/// tenant still find this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_dies_before_the_related_index_and_its_redelivery_writes_it() {
    let r = rig(true);
    r.crash.arm(When::Before, |w| w.table == Table::Cases && w.pk.starts_with("recent#"));
    r.open().await;
    r.until("dossier posted", awaiting).await;
    assert!(r.crash.fired());
    r.until_indexed().await;
    assert_eq!(r.xdr.dossier_comments(), 1, "one dossier");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_actions_expire_with_their_links_and_approved_ones_still_run() {
    let r = rig(true);
    r.open().await;
    r.until("dossier posted", awaiting).await;
    // An approval stored with its hand-over lost (the queue dropped it): the reconciler runs it.
    let mut block = r.action(ActionKind::BlockHash).await;
    let budgets = r.pipeline.ctx.config.budgets;
    let decision = dossier_core::domain::Decision {
        approved: true,
        approver: "soc@corp.example".into(),
        at_ms: r.clock.now_ms(),
        source_ip: None,
        user_agent: None,
        proof: Some("link".into()),
    };
    block.decide(decision, false, &budgets).unwrap();
    let version = r.pipeline.ctx.store.action(&r.key, &block.id).await.unwrap().unwrap().version;
    let mut c = Commit::new();
    c.save(&block, version).unwrap();
    r.pipeline.ctx.store.commit(c).await.unwrap();
    r.until("approved block executed", |s| s.action(ActionKind::BlockHash) == ActionStatus::Executed).await;
    // The other links lapse (24 h): the actions expire and the case is done.
    let a = r.action(ActionKind::IsolateEndpoint).await;
    let wait = a.expires_at_ms - r.clock.now_ms();
    tokio::time::sleep(r.clock.wall(Duration::from_millis(u64::try_from(wait).unwrap_or(0)))).await;
    r.until("case done", |s| s.status == CaseStatus::Done).await;
    let a = r.action(ActionKind::IsolateEndpoint).await;
    assert_eq!(a.status, ActionStatus::Expired);
    assert!(a.end_reason.unwrap().contains("expired"));
    assert_eq!(r.xdr.writes_to("/endpoints/isolate"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executing_past_its_lease_is_run_again_after_reading_back() {
    let r = rig(true);
    r.open().await;
    r.until("dossier posted", awaiting).await;
    // A claim left by a worker that vanished (its lease lapsed long ago).
    let mut iso = r.action(ActionKind::IsolateEndpoint).await;
    let decision = dossier_core::domain::Decision {
        approved: true,
        approver: "soc@corp.example".into(),
        at_ms: r.clock.now_ms(),
        source_ip: None,
        user_agent: None,
        proof: Some("link".into()),
    };
    iso.decide(decision, false, &r.pipeline.ctx.config.budgets).unwrap();
    iso.claim_execution(&Owner::new("writeback"), r.clock.now_ms() + 1_000, r.clock.now_ms());
    let version = r.pipeline.ctx.store.action(&r.key, &iso.id).await.unwrap().unwrap().version;
    let mut c = Commit::new();
    c.save(&iso, version).unwrap();
    r.pipeline.ctx.store.commit(c).await.unwrap();
    r.until("isolation executed", |s| s.action(ActionKind::IsolateEndpoint) == ActionStatus::Executed).await;
    assert_eq!(r.xdr.writes_to("/endpoints/isolate"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_incident_refuses_decisions_and_expires_its_open_actions() {
    let r = rig(true);
    r.open().await;
    r.until("dossier posted", awaiting).await;
    let close = Message::Close { case: r.key.clone(), resolution: "resolved_false_positive".into() };
    r.pipeline.backend.queue.send(&QueueName::synthesize(), &close.to_body(), Duration::ZERO).await.unwrap();
    r.until("case done", |s| s.status == CaseStatus::Done).await;
    for a in r.pipeline.actions(&r.key).await.unwrap() {
        assert_eq!((a.status, a.end_reason.as_deref()), (ActionStatus::Expired, Some("incident resolved")), "{}", a.id);
    }
    let page = r.approve(ActionKind::IsolateEndpoint).await;
    assert_eq!(page.status, 409, "{}", page.body);
    assert_eq!(r.xdr.writes_to("/endpoints/isolate"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_from_intake_does_not_turn_the_callers_retry_into_a_409() {
    let r = rig(true);
    let body = r#"{"incident_id": "4711", "severity": "high", "status": "new"}"#;
    let t = r.clock.now_ms() / 1000;
    let sig = dossier_core::xdr::sign_body(SECRET.as_bytes(), t, body.as_bytes());
    let req = HttpRequest {
        method: "POST".into(),
        path: "/webhook".into(),
        headers: vec![("x-dossier-signature".into(), format!("t={t},v1={sig}"))],
        body: body.as_bytes().to_vec(),
        ..Default::default()
    };
    // The first attempt dies before its commit (the caller sees no answer, as with a 503).
    r.crash.arm(When::Before, |w| w.table == Table::Cases && w.sk == CASE_SK);
    assert!(r.pipeline.invoke_http(&r.pipeline.intake, &req, Duration::from_secs(10)).await.is_none());
    // The caller retries the very same delivery: accepted, not a replay.
    let again = r.pipeline.invoke_http(&r.pipeline.intake, &req, Duration::from_secs(10)).await.unwrap();
    assert_eq!(again.status, 202, "{}", again.body);
    assert!(again.body.contains("accepted"));
    // And a replay after that is refused.
    let replay = r.pipeline.invoke_http(&r.pipeline.intake, &req, Duration::from_secs(10)).await.unwrap();
    assert_eq!(replay.status, 409);
}

/// A source whose quota is exhausted the first `left` times it is asked.
struct Busy(std::sync::atomic::AtomicU32);

#[async_trait]
impl Source for Busy {
    fn name(&self) -> &str {
        "busy"
    }
    async fn enrich(&self, _case: &Case) -> Result<dossier_core::sources::SourceReport, dossier_core::sources::Deferred> {
        if self.0.fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(dossier_core::sources::Deferred {
                source_name: "busy".into(),
                after: Duration::from_secs(1),
                reason: "quota".into(),
            });
        }
        Ok(dossier_core::sources::SourceReport::skipped("busy", "answered at last"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_never_counts_toward_the_dlq_in_the_local_runner() {
    // Eight deferrals, more than the five receives after which a failing message goes to the
    // DLQ: a deferral is sent again, never counted, and the source's answer makes the dossier.
    let r = rig_with(true, vec![Arc::new(Busy(std::sync::atomic::AtomicU32::new(8)))]);
    r.open().await;
    r.until("dossier posted", awaiting).await;
    assert!(r.pipeline.backend.memory_queue.clone().unwrap().all_dead_letters().is_empty());
    let dossier = r.pipeline.dossier(&r.key).await.unwrap().unwrap();
    assert!(dossier.missing_sources.is_empty(), "{:?}", dossier.missing_sources);
    assert!(r.pipeline.reports(&r.key).await.unwrap().iter().any(|s| s.source == "busy"));
}

/// The store confirms the execution claim after the claim's own lease has lapsed: meanwhile
/// another worker could have taken the action over. The late worker must not act; the action
/// still runs, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_claim_confirmed_after_its_lease_does_not_act() {
    let r = rig(true);
    r.open().await;
    r.until("dossier posted", awaiting).await;
    assert_eq!(r.approve(ActionKind::IsolateEndpoint).await.status, 200);
    let action = r.action(ActionKind::IsolateEndpoint).await;
    // The lease is 35 s of pipeline time (175 ms of wall time at 200x); the claim's
    // confirmation takes 400 ms.
    r.crash.stall(Duration::from_millis(400), |w| w.table == Table::Effects && w.body.contains("\"status\":\"executing\""));
    let msg = Message::ExecuteAction { case: r.key.clone(), action_id: action.id.clone() };
    let deadline = dossier_core::stages::Deadline::after(r.clock.now_ms(), Duration::from_secs(30));
    dossier_core::stages::dispose(
        r.pipeline.handler_of(&QueueName::writeback()),
        r.pipeline.backend.queue.as_ref(),
        &QueueName::writeback(),
        &msg.to_body(),
        deadline,
    )
    .await;
    assert_eq!(r.xdr.writes_to("/endpoints/isolate"), 0, "a claim confirmed after its lease acted");
    r.until("isolation recorded", |s| s.action(ActionKind::IsolateEndpoint) == ActionStatus::Executed).await;
    assert_eq!(r.xdr.writes_to("/endpoints/isolate"), 1, "isolated once");
}
