//! Chaos, on the embedded backend (300 cases) and on moto (500 cases, through the DynamoDB and
//! SQS adapters): every external dependency failing 20 % of calls at random (server errors,
//! 429s, timeouts, malformed bodies) and 20 % of queue messages delivered twice. Every case
//! must reach a terminal state, no incident gets two dossier comments, nothing changes in XDR
//! without an approval, and every failure is explained on the case or sits intact in a DLQ.
//! Seeded, so a failure reproduces.

use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dossier_core::config::{Phase, PipelineConfig};
use dossier_core::domain::{CaseKey, CaseStatus};
use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::embedded::RecordingXdr;
use dossier_core::http::HttpRequest;
use dossier_core::ports::{Clock, IncidentRef, Queue, QueueError, QueueName, SystemClock, XdrApi, XdrError};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{
    AttackSource, CallCounter, IndicatorSource, IndicatorVerdict, Lookup, LookupError, PerIndicator, Source, VerdictLevel,
};
use dossier_core::stages::HttpHandler;
use dossier_core::synthesis::{LanguageModel, LlmError, LlmRequest, LlmResponse};
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};

const CASES: usize = 300;
/// moto serves about one case a second on the 2-core CI machine.
const MOTO_CASES: usize = 500;
const FAULT_PERCENT: u64 = 20;
const DEMO: &str = include_str!("../../infra/local/samples/xdr/demo_powershell_stager.json");

/// xorshift64*: deterministic, shared by every fault injector.
struct Dice(AtomicU64);

impl Dice {
    fn roll(&self) -> u64 {
        let mut x = self.0.load(Ordering::Relaxed);
        loop {
            let mut n = x;
            n ^= n >> 12;
            n ^= n << 25;
            n ^= n >> 27;
            match self.0.compare_exchange_weak(x, n, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return n.wrapping_mul(0x2545_F491_4F6C_DD1D) % 100,
                Err(actual) => x = actual,
            }
        }
    }
    /// `Some(k)` (0..4, which fault) with probability FAULT_PERCENT.
    fn fault(&self) -> Option<u64> {
        let r = self.roll();
        (r < FAULT_PERCENT).then_some(r % 4)
    }
}

struct ChaosXdr {
    inner: RecordingXdr,
    dice: Arc<Dice>,
}

impl ChaosXdr {
    /// Faults raised before the request reaches XDR (the write did not happen).
    fn before(&self) -> Result<(), XdrError> {
        match self.dice.fault() {
            Some(0) => Err(XdrError::Server("500 Internal Server Error".into())),
            Some(1) => Err(XdrError::RateLimited("429 Too Many Requests".into())),
            Some(2) => Err(XdrError::Transport("connect timed out".into())),
            Some(_) => Err(XdrError::Server("502 Bad Gateway".into())),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl XdrApi for ChaosXdr {
    async fn list_modified(&self, from: i64, to: i64) -> Result<Vec<IncidentRef>, XdrError> {
        self.inner.list_modified(from, to).await
    }
    async fn get_incident_extra_data(&self, id: &str) -> Result<String, XdrError> {
        if self.dice.fault() == Some(3) {
            // A malformed body: truncated JSON.
            return Ok(DEMO[..DEMO.len() / 2].to_string());
        }
        self.before()?;
        let mut v: Value =
            serde_json::from_str(&self.inner.get_incident_extra_data(id).await?).map_err(|e| XdrError::BadReply(e.to_string()))?;
        v["reply"]["incident"]["incident_id"] = json!(id);
        Ok(v.to_string())
    }
    async fn add_comment(&self, id: &str, text: &str) -> Result<(), XdrError> {
        self.before()?;
        self.inner.add_comment(id, text).await
    }
    async fn set_severity(&self, id: &str, s: &str) -> Result<(), XdrError> {
        self.before()?;
        self.inner.set_severity(id, s).await
    }
    async fn isolate_endpoint(&self, e: &str, id: &str) -> Result<String, XdrError> {
        self.before()?;
        self.inner.isolate_endpoint(e, id).await
    }
    async fn block_hash(&self, h: &str, c: &str, id: &str) -> Result<(), XdrError> {
        self.before()?;
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

struct ChaosSource {
    name: &'static str,
    dice: Arc<Dice>,
}

#[async_trait]
impl IndicatorSource for ChaosSource {
    fn name(&self) -> &'static str {
        self.name
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        matches!(kind, IndicatorKind::Ipv4 | IndicatorKind::Domain | IndicatorKind::Sha256 | IndicatorKind::Url)
    }
    fn sends_externally(&self) -> bool {
        true
    }
    async fn lookup(&self, ind: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        calls.add(1);
        match self.dice.fault() {
            Some(0) => Err(LookupError::Server("500".into())),
            Some(1) => Err(LookupError::RateLimited { retry_after: Some(Duration::from_millis(300)) }),
            Some(2) => Err(LookupError::Timeout),
            Some(_) => Err(LookupError::BadReply("expected value at line 1 column 1".into())),
            None => Ok(Lookup::Found(IndicatorVerdict::new(ind, VerdictLevel::Suspicious, "chaos verdict"))),
        }
    }
}

struct ChaosModel(Arc<Dice>);

#[async_trait]
impl LanguageModel for ChaosModel {
    fn id(&self) -> &str {
        "chaos-model"
    }
    async fn complete(&self, _req: &LlmRequest) -> Result<LlmResponse, LlmError> {
        match self.0.fault() {
            Some(0) => Err(LlmError::Unavailable("503".into())),
            Some(1) => Err(LlmError::RateLimited("429".into())),
            Some(2) => Err(LlmError::Timeout),
            // Every other answer is not a valid dossier either: the fallback path carries the case.
            _ => Ok(LlmResponse { text: "{\"summary\": \"truncated".into(), input_tokens: 100, output_tokens: 5 }),
        }
    }
}

/// Delivers 20 % of messages twice, as SQS at-least-once delivery may.
struct Duplicating {
    inner: Arc<dyn Queue>,
    dice: Arc<Dice>,
    duplicated: AtomicU64,
}

#[async_trait]
impl Queue for Duplicating {
    async fn send(&self, queue: &QueueName, body: &str, delay: Duration) -> Result<(), QueueError> {
        self.inner.send(queue, body, delay).await?;
        if self.dice.roll() < FAULT_PERCENT {
            self.duplicated.fetch_add(1, Ordering::Relaxed);
            self.inner.send(queue, body, delay).await?;
        }
        Ok(())
    }
}

/// What the test needs after the run: where dead letters are.
enum Dlq {
    Memory(Arc<dossier_core::embedded::MemoryQueue>),
    Sqs { client: aws_sdk_sqs::Client, prefix: String },
}

impl Dlq {
    async fn all(&self, queues: &[QueueName]) -> Vec<(QueueName, String)> {
        match self {
            Dlq::Memory(q) => q.all_dead_letters(),
            Dlq::Sqs { client, prefix } => {
                let mut out = Vec::new();
                for queue in queues {
                    let url = dossier_adapters::provision::dlq_url(client, prefix, queue).await.expect("DLQ exists");
                    loop {
                        let got = client.receive_message().queue_url(&url).max_number_of_messages(10).send().await.expect("DLQ receive");
                        if got.messages().is_empty() {
                            break;
                        }
                        for m in got.messages() {
                            out.push((queue.clone(), m.body().unwrap_or_default().to_string()));
                            client
                                .delete_message()
                                .queue_url(&url)
                                .receipt_handle(m.receipt_handle().unwrap_or_default())
                                .send()
                                .await
                                .ok();
                        }
                    }
                }
                out
            }
        }
    }
}

const SOURCES: [&str; 3] = ["attack", "chaos-ti-1", "chaos-ti-2"];

/// `cases` cases through the pipeline on `backend` under faults and duplicate deliveries, then
/// every promise checked. On moto the queues run as Lambda would run them (long polling, each
/// message its own task); embedded, the pump delivers round by round.
async fn chaos(backend: Backend, dlq: Dlq, cases: usize, seed: u64) {
    let dice = Arc::new(Dice(AtomicU64::new(seed)));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let on_moto = matches!(dlq, Dlq::Sqs { .. });
    let duplicating = Arc::new(Duplicating { inner: backend.queue.clone(), dice: dice.clone(), duplicated: AtomicU64::new(0) });
    let backend = Backend { queue: duplicating.clone(), ..backend };
    let sources: Vec<Arc<dyn Source>> = vec![
        Arc::new(AttackSource),
        Arc::new(PerIndicator::new(ChaosSource { name: "chaos-ti-1", dice: dice.clone() })),
        Arc::new(PerIndicator::new(ChaosSource { name: "chaos-ti-2", dice: dice.clone() })),
    ];
    let xdr = Arc::new(ChaosXdr { inner: RecordingXdr::serving(DEMO.to_string()), dice: dice.clone() });
    let pipeline = Arc::new(LocalPipeline::new(PipelineParts {
        backend,
        config: PipelineConfig {
            phase: Phase(2),
            approvers: vec!["soc-lead".into()],
            public_base_url: "https://dossier.example".into(),
            enrich_deadline: Duration::from_secs(if on_moto { 60 } else { 20 }),
            // A comment is re-posted only after its lease: the lease must outlast posting plus
            // marking it posted. In memory that takes microseconds, so a 2 s lease exercises the
            // expiry path quickly; on a saturated moto a DynamoDB write can take seconds (a 2 s
            // lease gave 16 of 500 incidents a second comment), so there the production lease.
            write_lease: if on_moto { PipelineConfig::default().write_lease } else { Duration::from_secs(2) },
            xdr_extra_data_limit: dossier_core::ratelimit::RateLimit { limit: u32::MAX, ..PipelineConfig::default().xdr_extra_data_limit },
            ..PipelineConfig::default()
        },
        clock: clock.clone(),
        xdr: xdr.clone(),
        sources,
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![1; 32] }]).expect("signer")),
        webhook_secrets: dossier_core::xdr::WebhookSecrets::single("default", b"hook-secret-00000001").unwrap(),
        model: Some(Arc::new(ChaosModel(dice.clone()))),
        identity: None,
        notifiers: Vec::new(),
    }));

    let mut keys = Vec::new();
    for i in 0..cases {
        let id = (500_000 + i).to_string();
        let req = HttpRequest {
            method: "POST".into(),
            path: "/webhook".into(),
            headers: vec![("authorization".into(), "Bearer hook-secret-00000001".into())],
            body: json!({"case_id": id, "severity": "high"}).to_string().into_bytes(),
            ..Default::default()
        };
        let resp = pipeline.intake.handle(&req).await;
        // The intake's own queue send may be duplicated, never refused.
        assert_eq!(resp.status, 202, "{}", resp.body);
        keys.push(CaseKey::new("default", &id).expect("key"));
    }
    // moto took 16 min for 500 cases here; the budget leaves room for a slower CI machine.
    let budget = Duration::from_secs(if on_moto { 2400 } else { 300 });
    let settled = if on_moto {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers = tokio::spawn({
            let (pipeline, stop) = (pipeline.clone(), stop.clone());
            async move { pipeline.run_workers(8, &stop).await }
        });
        let started = std::time::Instant::now();
        let mut open: Vec<CaseKey> = keys.clone();
        while !open.is_empty() && started.elapsed() < budget {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let mut still = Vec::new();
            for key in open {
                let settled = pipeline.case(&key).await.ok().flatten().is_some_and(|c| c.status.is_settled());
                if !settled {
                    still.push(key);
                }
            }
            open = still;
        }
        // Let the last retries reach their DLQ before looking.
        stop.store(true, Ordering::Relaxed);
        workers.await.expect("workers end");
        open.is_empty()
    } else {
        pipeline.run_until_settled(&keys, budget).await.expect("pump")
    };

    let mut queues = vec![QueueName::collect(), QueueName::synthesize(), QueueName::writeback()];
    queues.extend(SOURCES.iter().map(|s| QueueName::enrich(s)));
    let dead: Vec<(QueueName, String)> = dlq.all(&queues).await;
    for (queue, body) in &dead {
        serde_json::from_str::<Value>(body).unwrap_or_else(|e| panic!("DLQ message on {queue} is not intact JSON ({e}): {body}"));
    }
    let mut by_status: HashMap<&'static str, usize> = HashMap::new();
    for key in &keys {
        let case = pipeline.case(key).await.expect("store").expect("every accepted case is stored");
        let status = case.status;
        *by_status.entry(status.as_str()).or_default() += 1;
        match status {
            CaseStatus::Done => {}
            CaseStatus::Failed => assert!(case.failure.as_deref().is_some_and(|r| !r.is_empty()), "case {key} failed without a reason"),
            other => assert!(
                dead.iter().any(|(_, b)| b.contains(&key.incident_id)),
                "case {key} stuck in {} with no DLQ message",
                other.as_str()
            ),
        }
    }
    assert!(settled || !dead.is_empty(), "not settled and nothing in a DLQ: {by_status:?}");

    // No incident got two dossier comments.
    let mut dossier_comments: HashMap<String, usize> = HashMap::new();
    for w in xdr.inner.writes() {
        if w.endpoint.ends_with("update_incident") {
            let text = w.body["request_data"]["update_data"]["comment"]["value"].as_str().unwrap_or_default();
            // The dossier comment is the one carrying the feedback link.
            if text.contains("Was this dossier useful?") {
                let id = w.body["request_data"]["incident_id"].as_str().unwrap_or_default().to_string();
                *dossier_comments.entry(id).or_default() += 1;
            }
        }
    }
    let duplicates: Vec<_> = dossier_comments.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "incidents with more than one dossier comment: {duplicates:?}");
    // Nothing changed in XDR without an approval (nobody approved anything here).
    let changes: Vec<_> = xdr
        .inner
        .writes()
        .into_iter()
        .filter(|w| !w.endpoint.ends_with("update_incident") || w.body["request_data"]["update_data"].get("manual_severity").is_some())
        .collect();
    assert!(changes.is_empty(), "XDR changed without approval: {:?}", changes.iter().map(|w| &w.endpoint).collect::<Vec<_>>());
    let done = by_status.get("done").copied().unwrap_or(0);
    assert!(done >= cases * 8 / 10, "most cases complete despite the faults: {by_status:?}");
    assert!(duplicating.duplicated.load(Ordering::Relaxed) > 0, "duplicates were injected");
    eprintln!(
        "chaos ({}): {cases} cases, {by_status:?}, {} dossier comments, {} DLQ messages, {} duplicated sends",
        if on_moto { "moto" } else { "embedded" },
        dossier_comments.len(),
        dead.len(),
        duplicating.duplicated.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_ends_explained_under_faults_and_duplicates() {
    let embedded = Backend::embedded(Arc::new(SystemClock));
    let dlq = Dlq::Memory(embedded.memory_queue.clone().expect("embedded queue"));
    chaos(embedded, dlq, CASES, 0x9E37_79B9_7F4A_7C15).await;
}

/// The same on moto: DynamoDB conditional writes and SQS redrive through the real adapters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_ends_explained_under_faults_and_duplicates_on_moto() {
    let cases = std::env::var("DOSSIER_CHAOS_MOTO_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(MOTO_CASES);
    let prefix = dossier_tests::unique_prefix("chaos");
    let names: Vec<String> = SOURCES.iter().map(|s| s.to_string()).collect();
    let aws = Backend::aws(&dossier_tests::moto_endpoint(), &prefix, &names).await.expect("moto backend");
    let sdk = dossier_adapters::aws::sdk_config_for(&dossier_tests::moto_endpoint()).await;
    chaos(aws, Dlq::Sqs { client: aws_sdk_sqs::Client::new(&sdk), prefix }, cases, 0x2545_F491_4F6C_DD1D).await;
}
