//! `dossier bench`: N cases through the whole pipeline against simulated dependencies with set
//! latencies (XDR, each source, the model, the write-back), measuring webhook-to-comment latency,
//! the overhead over the critical path, CPU per case, peak memory and calls per indicator.

use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dossier_core::config::{Phase, PipelineConfig};
use dossier_core::domain::{Case, CaseKey};
use dossier_core::embedded::RecordingXdr;
use dossier_core::http::HttpRequest;
use dossier_core::ports::{Clock, SystemClock};
use dossier_core::ratelimit::RateLimit;
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, LookupCache, LookupLimits, PerIndicator, Source};
use dossier_core::stages::HttpHandler;
use dossier_core::synthesis::LanguageModel;
use dossier_core::xdr::WebhookSecrets;

use crate::backend::{Backend, LocalPipeline, PipelineParts};
use crate::latency::{AwsCalls, AwsLatency, LatentQueue, LatentStore, EXTERNAL, HAND_OFF};
use crate::samples::SAMPLES;
use crate::simulated::{SimulatedModel, SimulatedSource, SimulatedXdr, BENCH_SECRET, ID_PLACEHOLDER};

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub cases: usize,
    pub xdr_ms: u64,
    pub source_ms: u64,
    pub sources: usize,
    pub model_ms: u64,
    pub writeback_ms: u64,
    pub aws_endpoint: Option<String>,
    /// Messages handled at once per queue (Lambda concurrency per function).
    pub concurrency: usize,
    pub progress: bool,
    /// The embedded store and queue take AWS's per-call time (none: they take none).
    pub aws_latency: Option<AwsLatency>,
    /// Print every AWS call, in order, with its stage and the table and key (or queue) it
    /// touched, to stderr (best with `--cases 1`).
    pub trace_calls: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub backend: String,
    pub cases: usize,
    pub lost: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    pub critical_path_ms: f64,
    pub overhead_pct: f64,
    pub sequential_ms: f64,
    pub sequential_ratio: f64,
    pub cpu_ms_per_case: f64,
    pub peak_rss_mib: f64,
    pub wall_ms: f64,
    /// HTTP-equivalent calls per distinct indicator, per simulated source.
    pub calls_per_indicator: HashMap<String, f64>,
    /// The per-call AWS latencies the run used (none: the embedded store and queue took none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_latency_ms: Option<BTreeMap<String, u64>>,
    /// AWS calls the functions made per case (DynamoDB and SQS sends; not the event source
    /// mapping's polls), and how many of them follow one another on a case's critical path
    /// (counted with `--aws-latency` only: without a latency, calls made side by side do not
    /// overlap in time and could not be told from calls made one after another).
    pub aws_calls_per_case: f64,
    pub aws_sequential_calls_per_case: Option<f64>,
    /// Per case, by service and operation (the event source mapping's receives and deletes
    /// included, as SQS bills them).
    pub aws_calls_by_operation: BTreeMap<String, f64>,
    /// Per case, by stage (`webhook` for the door, `enrich` for all sources together) and
    /// operation: where the calls are made.
    pub aws_calls_by_stage: BTreeMap<String, BTreeMap<String, f64>>,
    /// What a case costs on AWS, item by item, beside the usual single-function way.
    pub cost: crate::cost::CostTable,
    /// Per function (`intake`, `collect`, `enrich` for every source, `synthesize`, `writeback`):
    /// CPU and wall time per invocation, projected to Lambda's memory sizes.
    pub functions: BTreeMap<String, crate::cost::FunctionFigures>,
}

const SOURCE_NAMES: [&str; 8] = ["sim-ti-1", "sim-ti-2", "sim-ti-3", "sim-ti-4", "sim-ti-5", "sim-ti-6", "sim-ti-7", "sim-ti-8"];

/// CPU time of this process so far, in ms (Linux): the sum of its threads' on-CPU time from
/// `/proc/self/task/*/schedstat` (nanoseconds; `/proc/self/stat` counts 10 ms ticks, too coarse
/// for a few cases). Threads that already exited are not counted: the runtime's workers live as
/// long as the bench.
/// Not the simulator's timer thread ("async-io", see `latency::wait`): it only wakes the
/// simulated waits, whose work is the simulated services', not the pipeline's.
fn cpu_ms() -> f64 {
    cpu_ms_of_threads("self", |name| name != "async-io")
}

/// On-CPU time of every thread of a process (`self` or a pid), from the scheduler's counters.
pub fn cpu_ms_of(pid: &str) -> f64 {
    cpu_ms_of_threads(pid, |_| true)
}

/// On-CPU time of the threads of a process whose name `counted` accepts.
fn cpu_ms_of_threads(pid: &str, counted: impl Fn(&str) -> bool) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = tasks
        .filter_map(Result::ok)
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|name| counted(name.trim_end())))
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum();
    ns as f64 / 1e6
}

pub fn peak_rss_mib() -> f64 {
    peak_rss_mib_of("self")
}

/// VmHWM of `/proc/<pid>/status` (`self` for this process), in MiB; 0 where /proc is missing.
pub fn peak_rss_mib_of(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|k| k.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Measures `o.cases` cases, after one unmeasured case through a pipeline of its own (its own
/// store and cache, no latencies): the process's one-time work (the ATT&CK tables, compiled
/// patterns, the runtime's threads) is done before the clock starts, as a warm Lambda function
/// has done it in an earlier invocation. Cold starts are `bench cold-start`'s to measure.
pub async fn run(o: &BenchOptions) -> Result<BenchReport, String> {
    let warm_up = BenchOptions {
        cases: 1,
        xdr_ms: 0,
        source_ms: 0,
        model_ms: 1,
        writeback_ms: 0,
        aws_endpoint: None,
        concurrency: 1,
        progress: false,
        aws_latency: None,
        trace_calls: false,
        ..o.clone()
    };
    measure(&warm_up).await?;
    measure(o).await
}

async fn measure(o: &BenchOptions) -> Result<BenchReport, String> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sim_sources: Vec<&'static str> = SOURCE_NAMES.iter().take(o.sources.clamp(1, SOURCE_NAMES.len())).copied().collect();
    let mut names: Vec<String> = vec!["attack".into()];
    names.extend(sim_sources.iter().map(|s| s.to_string()));
    let backend = match &o.aws_endpoint {
        None => Backend::embedded(clock.clone()),
        Some(ep) => Backend::aws(ep, &format!("bench-{}-", std::process::id()), &names).await?,
    };
    // Every store and queue call is counted; with `--aws-latency` each also takes AWS's time.
    let calls = Arc::new(AwsCalls::default());
    let latency = o.aws_latency.unwrap_or(AwsLatency::with(Some(0), Some(0), Some(0)));
    let queue = Arc::new(LatentQueue { inner: backend.queue.clone(), consumer: backend.consumer.clone(), latency, calls: calls.clone() });
    let backend = Backend {
        store: Arc::new(LatentStore { inner: backend.store.clone(), latency, calls: calls.clone() }),
        queue: queue.clone(),
        consumer: queue,
        ..backend
    };
    let mut sources: Vec<Arc<dyn Source>> = vec![Arc::new(AttackSource)];
    for name in &sim_sources {
        let src = PerIndicator::new(SimulatedSource { name, latency: Duration::from_millis(o.source_ms), calls: calls.clone() })
            .with_cache(LookupCache::new(backend.store.clone(), clock.clone()));
        sources.push(Arc::new(src));
    }
    let sample = SAMPLES[0].extra_data.to_string();
    let mut template: Value = serde_json::from_str(&sample).map_err(|e| format!("bench sample: {e}"))?;
    template["reply"]["incident"]["incident_id"] = json!(ID_PLACEHOLDER);
    let xdr = Arc::new(SimulatedXdr {
        extra_data: template.to_string(),
        inner: RecordingXdr::serving(sample),
        latency: Duration::from_millis(o.xdr_ms),
        write_latency: Duration::from_millis(o.writeback_ms),
        posted: Mutex::default(),
        comment_posted: tokio::sync::Notify::new(),
        calls: calls.clone(),
    });
    let tokens = Arc::new((std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0)));
    let model: Option<Arc<dyn LanguageModel>> = (o.model_ms > 0)
        .then(|| Arc::new(SimulatedModel(Duration::from_millis(o.model_ms), tokens.clone(), calls.clone())) as Arc<dyn LanguageModel>);
    let pipeline = Arc::new(LocalPipeline::new(PipelineParts {
        backend,
        // The bench measures pipeline overhead, not the tenant's 10/min extra-data quota (which
        // the burst test covers), so the simulated tenant gets a quota it never reaches.
        config: PipelineConfig {
            phase: Phase(1),
            enrich_deadline: Duration::from_secs(120),
            xdr_extra_data_limit: RateLimit { limit: u32::MAX, ..PipelineConfig::default().xdr_extra_data_limit },
            ..PipelineConfig::default()
        },
        clock: clock.clone(),
        xdr: xdr.clone(),
        sources,
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "bench".into(), secret: vec![7; 32] }]).map_err(|e| e.to_string())?),
        webhook_secrets: WebhookSecrets::single("default", BENCH_SECRET.as_bytes()).map_err(|e| e.to_string())?,
        model,
        identity: None,
        notifiers: Vec::new(),
    }));

    let cpu_before = cpu_ms();
    let started = Instant::now();
    // The webhooks arrive as a burst while the functions already run (API Gateway invokes
    // intake for each at once): with AWS's latencies, webhooks taken one after another would
    // hold the first cases back until the last was accepted.
    let sent_at: Mutex<HashMap<String, Instant>> = Mutex::default();
    let intake_time: Mutex<Duration> = Mutex::default();
    let intake_cpu: Mutex<Duration> = Mutex::default();
    let ids: Vec<String> = (0..o.cases).map(|i| format!("{}", 100_000 + i)).collect();
    let mut keys = Vec::new();
    for id in &ids {
        keys.push(CaseKey::new("default", id).map_err(|e| e.to_string())?);
    }
    let intakes = async {
        let answers = futures_util::future::join_all(ids.iter().map(|id| {
            let req = HttpRequest {
                method: "POST".into(),
                path: "/webhook".into(),
                headers: vec![("authorization".into(), format!("Bearer {BENCH_SECRET}"))],
                body: json!({"case_id": id, "severity": "high"}).to_string().into_bytes(),
                ..Default::default()
            };
            if let Ok(mut sent) = sent_at.lock() {
                sent.insert(id.clone(), Instant::now());
            }
            let pipeline = &pipeline;
            let (intake_time, intake_cpu) = (&intake_time, &intake_cpu);
            async move {
                let started = Instant::now();
                let (answer, cpu) = crate::backend::CpuTimed::new(pipeline.intake.handle(&req)).await;
                if let (Ok(mut t), Ok(mut c)) = (intake_time.lock(), intake_cpu.lock()) {
                    *t += started.elapsed();
                    *c += cpu;
                }
                answer
            }
        }))
        .await;
        answers.into_iter().find(|r| r.status != 202).map_or(Ok(()), |r| Err(format!("webhook refused: {} {}", r.status, r.body)))
    };
    let budget = Duration::from_secs(60 + (o.cases as u64) * 2);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let monitor = async {
        let mut last_shown = usize::MAX;
        loop {
            let done = xdr.posted.lock().map(|p| p.len()).unwrap_or(0);
            if o.progress && done != last_shown {
                let width = 30;
                let filled = done * width / o.cases.max(1);
                eprint!("\r[{}{}] {done}/{} cases", "#".repeat(filled), " ".repeat(width - filled), o.cases);
                std::io::stderr().flush().ok();
                last_shown = done;
            }
            let Some(left) = budget.checked_sub(started.elapsed()).filter(|_| done < o.cases) else {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                return started.elapsed();
            };
            // Woken per comment, not on a timer: the bench's own wake-ups would count as CPU.
            let notified = xdr.comment_posted.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if xdr.posted.lock().map(|p| p.len()).unwrap_or(0) == done {
                tokio::time::timeout(left, notified).await.ok();
            }
        }
    };
    // Wall time ends with the last comment, not when the idle pollers notice `stop`.
    let (accepted, wall, ()) = tokio::join!(intakes, monitor, pipeline.run_workers(o.concurrency, &stop));
    accepted?;
    let sent_at = sent_at.into_inner().map_err(|_| "lock")?;
    if o.progress {
        eprintln!();
    }
    let cpu = cpu_ms() - cpu_before;
    // The pipeline's calls, before the bench reads anything back itself.
    let trace = calls.trace();
    let by_operation = calls.by_operation();
    let posted = xdr.posted.lock().map_err(|_| "lock")?.clone();
    let mut latencies: Vec<f64> =
        posted.iter().filter_map(|(id, at)| sent_at.get(id).map(|s| at.duration_since(*s).as_secs_f64() * 1000.0)).collect();
    latencies.sort_by(f64::total_cmp);
    let lost = o.cases - latencies.len();
    // Calls per distinct external indicator, per source.
    let mut lookups: HashMap<String, f64> = HashMap::new();
    let mut distinct = 0usize;
    if let Some(k) = keys.first() {
        let case: Option<Case> = pipeline.ctx.store.case(k).await.map_err(|e| e.to_string())?.map(|c| c.value);
        distinct = case.map_or(0, |c| c.indicators.iter().filter(|i| !i.internal && !i.kind.is_entity()).count());
    }
    for key in &keys {
        for r in pipeline.ctx.store.reports(key).await.map_err(|e| e.to_string())? {
            if r.source.starts_with("sim-") {
                *lookups.entry(r.source).or_default() += f64::from(r.calls);
            }
        }
    }
    for v in lookups.values_mut() {
        *v /= distinct.max(1) as f64;
    }
    // Each source looks up `concurrency` indicators at a time, so its part of the critical path
    // is one latency per round.
    let rounds = distinct.div_ceil(LookupLimits::default().concurrency.max(1)).max(1) as u64;
    let critical = (o.xdr_ms + o.source_ms * rounds + o.model_ms + o.writeback_ms) as f64;
    let sequential = (o.xdr_ms + o.source_ms * rounds * sim_sources.len() as u64 + o.model_ms + o.writeback_ms) as f64;
    let p50 = percentile(&latencies, 0.5);
    let served = pipeline.invocations.served();
    let (aws_calls_per_case, aws_sequential_calls_per_case) = crate::latency::calls_per_case(&trace, &served, o.cases);
    let stage_of = |invocation: u64| match served.get(&invocation) {
        None => "webhook".to_string(),
        Some((queue, _)) if queue.as_str().starts_with("enrich") => "enrich".to_string(),
        Some((queue, _)) => queue.as_str().to_string(),
    };
    let mut by_stage: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for c in &trace {
        let stage = stage_of(c.invocation);
        if o.trace_calls {
            let at = c.at.saturating_duration_since(started).as_secs_f64() * 1000.0;
            eprintln!("{at:>8.1} ms  {stage:<11} #{:<5} wave {:<2} {:<28} {}", c.invocation, c.wave, c.operation, c.what);
        }
        if c.operation != HAND_OFF && c.operation != EXTERNAL {
            *by_stage.entry(stage).or_default().entry(c.operation.clone()).or_default() += 1.0 / o.cases.max(1) as f64;
        }
    }
    let per_case = |n: u64| n as f64 / o.cases.max(1) as f64;
    let billed = pipeline.invocations.billed();
    let intake_time = intake_time.into_inner().map_err(|_| "lock")?;
    let intake_cpu = intake_cpu.into_inner().map_err(|_| "lock")?;
    let functions = function_figures(&billed, &pipeline.invocations.cpu(), (intake_cpu, intake_time), o.cases);
    let cost = crate::cost::cost(&crate::cost::Counted {
        cases: o.cases,
        billed: &billed,
        cpu: &pipeline.invocations.cpu(),
        intake: intake_time,
        intake_cpu,
        aws_calls_by_operation: &by_operation,
        aws_units: &calls.units(),
        model_tokens: (tokens.0.load(std::sync::atomic::Ordering::Relaxed), tokens.1.load(std::sync::atomic::Ordering::Relaxed)),
        sequential_ms: sequential,
    });
    Ok(BenchReport {
        backend: if o.aws_endpoint.is_some() { "aws".into() } else { "embedded".into() },
        cases: o.cases,
        lost,
        p50_ms: p50,
        p95_ms: percentile(&latencies, 0.95),
        max_ms: latencies.last().copied().unwrap_or(0.0),
        critical_path_ms: critical,
        overhead_pct: if critical > 0.0 { (p50 - critical) / critical * 100.0 } else { 0.0 },
        sequential_ms: sequential,
        sequential_ratio: if p50 > 0.0 { sequential / p50 } else { 0.0 },
        cpu_ms_per_case: cpu / o.cases.max(1) as f64,
        peak_rss_mib: peak_rss_mib(),
        wall_ms: wall.as_secs_f64() * 1000.0,
        calls_per_indicator: lookups,
        aws_latency_ms: o.aws_latency.map(|l| {
            BTreeMap::from([
                ("dynamodb_read".to_string(), l.ddb_read.as_millis() as u64),
                ("dynamodb_write".to_string(), l.ddb_write.as_millis() as u64),
                ("dynamodb_transaction".to_string(), l.ddb_transaction.as_millis() as u64),
                ("sqs_send".to_string(), l.sqs_send.as_millis() as u64),
                ("sqs_to_lambda".to_string(), l.trigger.as_millis() as u64),
            ])
        }),
        aws_calls_per_case,
        aws_sequential_calls_per_case: o.aws_latency.map(|_| aws_sequential_calls_per_case),
        aws_calls_by_operation: by_operation.into_iter().map(|(op, n)| (op, per_case(n))).collect(),
        aws_calls_by_stage: by_stage,
        cost,
        functions,
    })
}

/// Per function: its queues' invocations (every source's enrich queue is one function's code),
/// and the webhook's for intake.
fn function_figures(
    billed: &HashMap<String, (u64, Duration)>,
    cpu: &HashMap<String, Duration>,
    intake: (Duration, Duration),
    cases: usize,
) -> BTreeMap<String, crate::cost::FunctionFigures> {
    let mut summed: BTreeMap<String, (u64, Duration, Duration)> = BTreeMap::new();
    summed.insert("intake".into(), (cases as u64, intake.0, intake.1));
    for (queue, (n, wall)) in billed {
        let function = if queue.starts_with("enrich") { "enrich" } else { queue.as_str() };
        let entry = summed.entry(function.to_string()).or_default();
        entry.0 += n;
        entry.1 += cpu.get(queue).copied().unwrap_or_default();
        entry.2 += *wall;
    }
    summed.into_iter().map(|(f, (n, cpu, wall))| (f.clone(), crate::cost::function_figures(&f, n, cpu, wall, cases))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_bench_case_reaches_a_comment_and_lookups_are_counted() {
        let o = BenchOptions {
            cases: 6,
            xdr_ms: 0,
            source_ms: 0,
            sources: 3,
            model_ms: 0,
            writeback_ms: 0,
            aws_endpoint: None,
            concurrency: 2,
            progress: false,
            aws_latency: None,
            trace_calls: false,
        };
        let r = run(&o).await.expect("bench runs");
        assert_eq!(r.cases, 6);
        assert_eq!(r.lost, 0, "every case ends in a comment");
        assert!(r.p50_ms > 0.0 && r.p95_ms >= r.p50_ms && r.max_ms >= r.p95_ms);
        assert_eq!(r.calls_per_indicator.len(), 3, "one figure per simulated source: {:?}", r.calls_per_indicator);
        // Every source looked up at least each distinct indicator once, and the cache kept repeats
        // below one call per indicator per case.
        for (source, calls) in &r.calls_per_indicator {
            assert!(*calls >= 1.0 && *calls <= 6.0, "{source}: {calls}");
        }
        assert!(r.peak_rss_mib > 0.0);
        // The cost table: every stage billed, DynamoDB and SQS counted.
        let c = &r.cost;
        for stage in ["intake", "collect", "synthesize", "writeback"] {
            assert!(c.lambda_gb_s_by_function.get(stage).is_some_and(|g| *g > 0.0), "{stage}: {:?}", c.lambda_gb_s_by_function);
        }
        assert!(c.dynamodb_wru > 0.0 && c.dynamodb_rru > 0.0 && c.sqs_requests > 0.0);
        assert!(c.per_1000_cases_usd["total_without_model"] > 0.0);
    }
}
