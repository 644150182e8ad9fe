//! `dossier chaos`: N cases through the whole pipeline while XDR, the sources and the model fail
//! at random (5xx, 429, timeouts, lost answers, malformed bodies), workers die between any two
//! store writes (their message comes back after the visibility timeout), messages are
//! delivered twice, approvers approve some actions and reject others, some incidents are
//! resolved midway, and the reconciler runs on its schedule, with time compressed. Then every
//! promise is counted: each case terminal with a reason, no comment posted twice except where a
//! worker died between XDR accepting it and the store recording it, no action run twice, no
//! change without an approval.

mod faults;
mod world;

pub use faults::{CrashingStore, Dice, Duplicating, ScaledClock, ScaledQueue};
pub use world::{marker_of, ChaosIntel, ChaosModel, Directory, World};

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dossier_core::config::{Phase, PipelineConfig};
use dossier_core::domain::{ActionStatus, Budgets, CaseKey, CaseStatus};
use dossier_core::dossier::AutoApprove;
use dossier_core::http::{HttpRequest, HttpResponse};
use dossier_core::ports::{Clock, DocStore, QueueName, SystemClock};
use dossier_core::ratelimit::RateLimit;
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, IntelFeed, PerIndicator, Source};
use dossier_core::xdr::{sign_body, WebhookSecrets};

use crate::backend::{Backend, FunctionTimes, LocalPipeline, PipelineParts, Timings};
use crate::samples::INTEL_FEED;

const DEMO: &str = include_str!("../../samples/xdr/demo_powershell_stager.json");
const WEBHOOK_SECRET: &str = "chaos-webhook-secret-0001";
const SOURCES: [&str; 3] = ["attack", "intel-feed", "chaos-intel"];

#[derive(Clone, Debug)]
pub struct ChaosOptions {
    pub cases: usize,
    /// Share of calls to XDR, the sources and the model that fail.
    pub fault_rate: f64,
    /// Share of store writes (made by a worker) around which the worker dies.
    pub crash_rate: f64,
    /// Share of messages delivered twice.
    pub duplicate_rate: f64,
    /// Share of incidents XDR resolves while they are in flight.
    pub resolve_rate: f64,
    /// Lease on claimed work; function timeouts are capped at it (a lease never ends before its
    /// worker's deadline).
    pub lease_seconds: Option<u64>,
    pub seed: u64,
    /// moto server (or AWS) instead of the embedded store and queue.
    pub aws_endpoint: Option<String>,
    /// Give up waiting after this long (wall clock).
    pub budget: Duration,
    pub progress: bool,
}

impl Default for ChaosOptions {
    fn default() -> Self {
        ChaosOptions {
            cases: 100,
            fault_rate: 0.2,
            crash_rate: 0.1,
            duplicate_rate: 0.2,
            resolve_rate: 0.05,
            lease_seconds: None,
            seed: 1,
            aws_endpoint: None,
            budget: Duration::from_secs(600),
            progress: false,
        }
    }
}

/// What the run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChaosReport {
    pub cases: usize,
    /// Cases done, failed or closed, each with its reason.
    pub terminal: usize,
    /// Cases not terminal when the run ended.
    pub stuck: usize,
    pub by_status: BTreeMap<String, usize>,
    /// Why cases failed or closed, by reason (numbers and ids left out).
    pub reasons: BTreeMap<String, usize>,
    /// Terminal cases without a reason (must be 0).
    pub unexplained: usize,
    /// Comments posted more than once (per draft).
    pub duplicate_comments: usize,
    /// Comments XDR accepted that the worker which sent them never recorded as posted (it died
    /// or lost the answer): the one window an at-least-once queue cannot close without reading
    /// back, where XDR cannot read back.
    pub ambiguous_posts: usize,
    /// Changes applied twice for one action.
    pub duplicate_executions: usize,
    /// Which ones (incident, kind, target), so a repeat can be traced in the audit trail.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repeated_changes: Vec<String>,
    /// The action events of the first repeat's incident, in order: how it came to run twice.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repeated_trail: Vec<String>,
    /// Changes applied without an approval on record.
    pub unapproved_changes: usize,
    pub dlq: usize,
    pub wall_ms: u64,
    pub crashes: u64,
    pub killed_invocations: usize,
    pub duplicated_messages: u64,
    pub approved: usize,
    pub rejected: usize,
    pub resolved: usize,
    pub executed: usize,
    pub seed: u64,
}

impl ChaosReport {
    /// Every promise held.
    pub fn holds(&self) -> bool {
        self.stuck == 0
            && self.unexplained == 0
            && self.duplicate_executions == 0
            && self.unapproved_changes == 0
            && self.duplicate_comments <= self.ambiguous_posts
    }
}

/// How time runs: the pipeline's clock and the functions' timings.
struct Clocking {
    clock: Arc<dyn Clock>,
    timings: Timings,
    visibility: Duration,
}

fn clocking(o: &ChaosOptions) -> Clocking {
    // Embedded, time runs 30x faster; SQS delays are whole seconds, so on moto a little slower.
    let scale = if o.aws_endpoint.is_some() { 8.0 } else { 30.0 };
    let cap = o.lease_seconds.map_or(Duration::MAX, Duration::from_secs);
    let f = |s: u64| {
        let timeout = Duration::from_secs(s).min(cap);
        FunctionTimes { timeout, failure_retry: timeout * 6 }
    };
    let timings = Timings { collect: f(20), enrich: f(20), synthesize: f(40), writeback: f(20), reconcile_every: Duration::from_secs(60) };
    // The template's rule: a queue's visibility timeout is at least six times its function's.
    let visibility = timings.synthesize.timeout * 6;
    Clocking { clock: Arc::new(ScaledClock::new(SystemClock.now_ms(), scale)), timings, visibility }
}

fn config(o: &ChaosOptions) -> PipelineConfig {
    PipelineConfig {
        phase: Phase(2),
        approvers: vec!["soc-lead@corp.example".into()],
        public_base_url: "https://dossier.example".into(),
        enrich_deadline: Duration::from_secs(60),
        write_lease: Duration::from_secs(o.lease_seconds.unwrap_or(60)),
        link_ttl: Duration::from_secs(30 * 60),
        // The chaos tenant's extra-data quota is not what is under test.
        xdr_extra_data_limit: RateLimit { limit: u32::MAX, ..PipelineConfig::default().xdr_extra_data_limit },
        auto_approve: vec![AutoApprove::parse("block_hash:malicious_engines>=5").expect("a valid policy")],
        budgets: Budgets {
            collect: Duration::from_secs(120),
            synthesize: Duration::from_secs(120),
            write_back: Duration::from_secs(120),
            execute: Duration::from_secs(60),
            max_nudges: 6,
        },
        synthesis_reserve: Duration::from_millis(500),
        model_timeout: Duration::from_secs(5),
        ..PipelineConfig::default()
    }
}

/// Everything the run holds on to.
struct Harness {
    pipeline: Arc<LocalPipeline>,
    world: Arc<World>,
    crashing: Arc<CrashingStore>,
    duplicating: Arc<Duplicating>,
    /// The store without crashes, for the harness's own reads.
    truth: Arc<dyn DocStore>,
    dice: Arc<Dice>,
    clock: Arc<dyn Clock>,
    dead_letters: Box<dyn Fn() -> futures_util::future::BoxFuture<'static, usize> + Send + Sync>,
}

async fn harness(o: &ChaosOptions) -> Result<Harness, String> {
    let dice = Arc::new(Dice::new(o.seed));
    let c = clocking(o);
    let names: Vec<String> = SOURCES.iter().map(|s| s.to_string()).collect();
    let (backend, dead_letters): (Backend, Box<dyn Fn() -> futures_util::future::BoxFuture<'static, usize> + Send + Sync>) =
        match &o.aws_endpoint {
            None => {
                let b = Backend::embedded_with(c.clock.clone(), c.visibility);
                let q = b.memory_queue.clone().ok_or("embedded queue")?;
                let dl = Box::new(move || {
                    let q = q.clone();
                    Box::pin(async move {
                        let dead = q.all_dead_letters();
                        for (queue, body) in &dead {
                            tracing::error!(%queue, %body, "dead letter");
                        }
                        dead.len()
                    }) as futures_util::future::BoxFuture<'static, usize>
                });
                (b, dl)
            }
            Some(ep) => {
                let prefix = format!("chaos{}-", &dossier_core::random::new_nonce()[..8]);
                let visibility_s = u32::try_from(c.clock.wall(c.visibility).as_secs().max(1)).unwrap_or(60);
                let b = Backend::aws_with(ep, &prefix, &names, visibility_s).await?;
                let sdk = dossier_adapters::aws::sdk_config_for(ep).await;
                let client = aws_sdk_sqs::Client::new(&sdk);
                let queues = crate::backend::queue_names(&names);
                let dl = Box::new(move || {
                    let (client, prefix, queues) = (client.clone(), prefix.clone(), queues.clone());
                    Box::pin(async move { sqs_dead_letters(&client, &prefix, &queues).await })
                        as futures_util::future::BoxFuture<'static, usize>
                });
                let scaled = Arc::new(ScaledQueue { inner: b.queue.clone(), consumer: b.consumer.clone(), clock: c.clock.clone() });
                (Backend { queue: scaled.clone(), consumer: scaled, ..b }, dl)
            }
        };
    let truth = backend.store.clone();
    let crashing = Arc::new(CrashingStore::new(truth.clone(), dice.clone(), o.crash_rate));
    let duplicating =
        Arc::new(Duplicating { inner: backend.queue.clone(), dice: dice.clone(), rate: o.duplicate_rate, duplicated: Default::default() });
    let backend = Backend { store: crashing.clone(), queue: duplicating.clone(), ..backend };
    let world = Arc::new(World::new(DEMO, dice.clone(), o.fault_rate)?);
    let sources: Vec<Arc<dyn Source>> = vec![
        Arc::new(AttackSource),
        Arc::new(PerIndicator::new(IntelFeed::from_csv(INTEL_FEED).map_err(|e| e.to_string())?)),
        Arc::new(PerIndicator::new(ChaosIntel { name: "chaos-intel", dice: dice.clone(), fault_rate: o.fault_rate })),
    ];
    let pipeline = LocalPipeline::new(PipelineParts {
        backend,
        config: config(o),
        clock: c.clock.clone(),
        xdr: world.clone(),
        sources,
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "chaos".into(), secret: vec![3; 32] }]).map_err(|e| e.to_string())?),
        webhook_secrets: WebhookSecrets::single("default", WEBHOOK_SECRET.as_bytes()).map_err(|e| e.to_string())?,
        model: Some(Arc::new(ChaosModel { dice: dice.clone(), fault_rate: o.fault_rate })),
        identity: Some(Arc::new(Directory(world.clone()))),
        notifiers: Vec::new(),
    })
    .with_timings(c.timings);
    Ok(Harness { pipeline: Arc::new(pipeline), world, crashing, duplicating, truth, dice, dead_letters, clock: c.clock.clone() })
}

async fn sqs_dead_letters(client: &aws_sdk_sqs::Client, prefix: &str, queues: &[QueueName]) -> usize {
    let mut n = 0;
    for q in queues {
        let Ok(url) = dossier_adapters::provision::dlq_url(client, prefix, q).await else { continue };
        if let Ok(a) = client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
        {
            n += a
                .attributes()
                .and_then(|m| m.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
        }
    }
    n
}

fn signed_post(path: &str, body: String, now_s: i64) -> HttpRequest {
    let sig = sign_body(WEBHOOK_SECRET.as_bytes(), now_s, body.as_bytes());
    HttpRequest {
        method: "POST".into(),
        path: path.into(),
        headers: vec![("x-dossier-signature".into(), format!("t={now_s},v1={sig}")), ("content-type".into(), "application/json".into())],
        body: body.into_bytes(),
        ..Default::default()
    }
}

/// Delivers a webhook the way a caller does: a failed or lost attempt is sent again, freshly
/// signed, until it is answered with a 2xx or 409.
async fn deliver_webhook(h: &Harness, body: serde_json::Value) -> Result<HttpResponse, String> {
    let mut last = String::from("no answer");
    for attempt in 0..30u64 {
        // Signed on the pipeline's (compressed) clock, as a caller's clock agrees with ours.
        let req = signed_post("/webhook", body.to_string(), h.clock.now_ms() / 1000);
        match h.pipeline.invoke_http(&h.pipeline.intake, &req, Duration::from_secs(29)).await {
            Some(resp) if resp.status < 300 || resp.status == 409 => return Ok(resp),
            Some(resp) => last = format!("{} {}", resp.status, resp.body),
            None => last = "no answer (the invocation was killed)".into(),
        }
        tokio::time::sleep(Duration::from_millis(50 * (attempt + 1).min(10))).await;
    }
    Err(format!("webhook {body} never accepted: {last}"))
}

/// Decides every proposed action that has a link: approve or reject at random, as approvers do
/// (a decision may be refused: already decided, or the incident was resolved).
async fn approvers(h: &Harness, keys: &[CaseKey], approved: &mut usize, rejected: &mut usize) {
    for key in keys {
        let Ok(actions) = h.pipeline.actions(key).await else { continue };
        for a in actions.iter().filter(|a| a.status == ActionStatus::Proposed) {
            let Some(link) = a.links.first() else { continue };
            let Some(token) = link.url.split("t=").nth(1) else { continue };
            let approve = h.dice.chance(0.7);
            let body = format!("t={token}&decision={}", if approve { "approve" } else { "reject" });
            let req = HttpRequest {
                method: "POST".into(),
                path: "/approve".into(),
                headers: vec![("content-type".into(), "application/x-www-form-urlencoded".into())],
                body: body.into_bytes(),
                ..Default::default()
            };
            if let Some(resp) = h.pipeline.invoke_http(&h.pipeline.approve, &req, Duration::from_secs(10)).await {
                if resp.status == 200 {
                    if approve {
                        *approved += 1;
                    } else {
                        *rejected += 1;
                    }
                }
            }
        }
    }
}

pub async fn run(o: &ChaosOptions) -> Result<ChaosReport, String> {
    let h = harness(o).await?;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = tokio::spawn({
        let (pipeline, stop) = (h.pipeline.clone(), stop.clone());
        async move { pipeline.run_workers(16, &stop).await }
    });
    let mut keys = Vec::new();
    let mut resolve = Vec::new();
    for i in 0..o.cases {
        let id = (700_000 + i).to_string();
        deliver_webhook(&h, serde_json::json!({"incident_id": id, "severity": "medium", "status": "new"})).await?;
        keys.push(CaseKey::new("default", &id).map_err(|e| e.to_string())?);
        if h.dice.chance(o.resolve_rate) {
            // Resolved in XDR right away: collect may see it resolved, or the closure webhook
            // may come first or later.
            h.world.resolve(&id);
            resolve.push(id);
        }
    }
    let (mut approved, mut rejected) = (0, 0);
    let mut resolved_sent = false;
    let mut open = keys.clone();
    while !open.is_empty() && started.elapsed() < o.budget {
        tokio::time::sleep(Duration::from_millis(500)).await;
        approvers(&h, &open, &mut approved, &mut rejected).await;
        // Some incidents are resolved in XDR midway: the closure path takes them.
        if !resolved_sent {
            for id in &resolve {
                deliver_webhook(&h, serde_json::json!({"incident_id": id, "severity": "medium", "status": "resolved_threat_handled"}))
                    .await?;
            }
            resolved_sent = true;
        }
        let mut still = Vec::new();
        for key in open {
            let terminal = h.pipeline.case(&key).await.ok().flatten().is_some_and(|c| c.status.is_terminal());
            if !terminal {
                still.push(key);
            }
        }
        open = still;
        if o.progress {
            eprint!("\r{}/{} cases ended, {:.0} s", keys.len() - open.len(), keys.len(), started.elapsed().as_secs_f64());
        }
    }
    if o.progress {
        eprintln!();
    }
    stop.store(true, Ordering::Relaxed);
    workers.await.map_err(|e| e.to_string())?;
    let wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut report = ChaosReport {
        cases: keys.len(),
        wall_ms,
        seed: o.seed,
        approved,
        rejected,
        resolved: resolve.len(),
        crashes: h.crashing.crashes(),
        killed_invocations: h.pipeline.invocations.killed_count(),
        duplicated_messages: h.duplicating.duplicated.load(Ordering::Relaxed),
        dlq: (h.dead_letters)().await,
        ..ChaosReport::default()
    };
    count(&h, &keys, &mut report).await?;
    Ok(report)
}

/// Counts what the world saw against what the store says.
async fn count(h: &Harness, keys: &[CaseKey], r: &mut ChaosReport) -> Result<(), String> {
    let store = dossier_core::store::Store::new(h.truth.clone());
    for key in keys {
        let case = store.case(key).await.map_err(|e| e.to_string())?.ok_or(format!("case {key} lost"))?.value;
        *r.by_status.entry(case.status.as_str().to_string()).or_default() += 1;
        if case.status.is_terminal() {
            r.terminal += 1;
            let explained = match case.status {
                CaseStatus::Done => case.draft_id.is_some(),
                _ => case.failure.as_deref().is_some_and(|f| !f.trim().is_empty()),
            };
            if !explained {
                r.unexplained += 1;
            }
            if let Some(f) = &case.failure {
                let reason: String = f.chars().filter(|c| !c.is_ascii_digit()).take(90).collect();
                *r.reasons.entry(reason).or_default() += 1;
            }
        } else {
            r.stuck += 1;
        }
    }
    // Comments: per draft, how often XDR accepted it, and how many of those acceptances the
    // sending worker never recorded.
    let mut per_marker: HashMap<String, usize> = HashMap::new();
    for post in h.world.posts() {
        let Some(marker) = post.marker else { continue };
        *per_marker.entry(marker.clone()).or_default() += 1;
        let recorded = post.invocation.is_some_and(|i| h.crashing.recorded_posted(&marker, i));
        if !recorded {
            r.ambiguous_posts += 1;
        }
    }
    r.duplicate_comments = per_marker.values().map(|n| n.saturating_sub(1)).sum();
    // Changes: each must belong to an approved action, and none may repeat.
    for change in h.world.changes() {
        if change.repeated {
            r.duplicate_executions += 1;
            if r.repeated_changes.len() < 10 {
                r.repeated_changes.push(format!("incident {} {} {}", change.incident, change.kind.as_str(), change.target));
            }
            if r.repeated_trail.is_empty() {
                if let Ok(key) = CaseKey::new("default", &change.incident) {
                    let events = store.events(&key).await.map_err(|e| e.to_string())?;
                    r.repeated_trail = events
                        .iter()
                        .filter(|e| e.event.starts_with("action."))
                        .map(|e| format!("{} {} {}: {}", e.at_ms, e.actor, e.event, e.detail))
                        .collect();
                }
            }
            continue;
        }
        r.executed += 1;
        let approved = match CaseKey::new("default", &change.incident) {
            Ok(key) => store.actions(&key).await.map_err(|e| e.to_string())?.iter().any(|a| {
                a.value.kind == change.kind && a.value.target == change.target && a.value.decision.as_ref().is_some_and(|d| d.approved)
            }),
            Err(_) => false,
        };
        if !approved {
            r.unapproved_changes += 1;
        }
    }
    Ok(())
}
