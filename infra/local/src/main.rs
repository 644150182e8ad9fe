//! `dossier`: run Dossier locally. `demo` runs the bundled incidents offline; `run` runs one
//! recorded `get_incident_extra_data` reply; `serve` plays API Gateway + SQS around the real
//! handlers. Exit codes: 0 success, 1 the pipeline failed, 2 unusable input.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use dossier_adapters::llm::OpenAiCompatible;
use dossier_adapters::xdr::{XdrCredentials, XdrHttp};
use dossier_core::config::PipelineConfig;
use dossier_core::domain::{Case, CaseKey, IncidentHint, Trigger};
use dossier_core::embedded::RecordingXdr;
use dossier_core::ports::{Clock, SystemClock, XdrApi};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::stages::open_case;
use dossier_core::synthesis::LanguageModel;
use dossier_core::xdr::WebhookSecrets;
use dossier_core::xdr::{parse_extra_data, ExtraData};
use dossier_local::backend::{no_webhooks, Backend, LocalPipeline, PipelineParts};
use dossier_local::report::case_report;
use dossier_local::samples::SAMPLES;

#[derive(Parser)]
#[command(name = "dossier", version, about = "AI case enrichment for Cortex XDR, run locally")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum BenchKind {
    /// Init time and peak RSS of each function's release binary against a local Lambda Runtime
    /// API, with its secrets on moto; zipped binary sizes.
    ColdStart {
        /// `cargo build --release --workspace --bins` output, or `target/lambda` from cargo lambda.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        /// moto server (or AWS) holding the functions' secrets, e.g. http://127.0.0.1:5000.
        #[arg(long)]
        aws_endpoint: String,
        /// Starts per function; the median init time is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the bundled sample incidents end to end, offline, and print each dossier.
    Demo {
        /// Print one JSON report per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the whole pipeline on a recorded `get_incident_extra_data` reply. XDR writes are recorded, not sent.
    Run {
        /// File holding `{"reply": {"incident", "alerts", "network_artifacts", "file_artifacts"}}`.
        #[arg(long)]
        extra_data: PathBuf,
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Use the AWS adapters against this endpoint (e.g. moto server) instead of the embedded backend.
        #[arg(long)]
        aws_endpoint: Option<String>,
        /// OpenAI-compatible chat completions base URL (e.g. http://127.0.0.1:8080/v1); key from DOSSIER_LLM_KEY.
        #[arg(long)]
        llm_url: Option<String>,
        #[arg(long, default_value = "gpt-4o-mini")]
        llm_model: String,
        /// Also write the full dossier as an HTML page here.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Measure: N cases through the pipeline against simulated dependencies with set latencies.
    Bench {
        #[command(subcommand)]
        kind: Option<BenchKind>,
        #[arg(long, default_value_t = 100)]
        cases: usize,
        #[arg(long, default_value_t = 200)]
        xdr_ms: u64,
        /// Latency of each simulated threat-intel source (they run in parallel).
        #[arg(long, default_value_t = 300)]
        source_ms: u64,
        #[arg(long, default_value_t = 5)]
        sources: usize,
        /// Model latency; 0 = no model (deterministic dossier).
        #[arg(long, default_value_t = 800)]
        model_ms: u64,
        #[arg(long, default_value_t = 100)]
        writeback_ms: u64,
        #[arg(long)]
        aws_endpoint: Option<String>,
        /// Messages handled at once per queue, like a function's Lambda concurrency at batch size 1
        /// (the template reserves less only where a tenant quota needs it; the bench lifts quotas).
        #[arg(long, default_value_t = 100)]
        concurrency: usize,
        #[arg(long)]
        json: bool,
    },
    /// Serve POST /webhook and GET|POST /approve, with the queue consumers in-process.
    Serve {
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
        #[arg(long)]
        aws_endpoint: Option<String>,
        /// Seed the bundled demo cases first and print each approval link as `approval: <url>`.
        #[arg(long)]
        demo: bool,
    },
}

/// Input problems: exit 2 with the message.
struct BadInput(String);

#[tokio::main]
async fn main() -> ExitCode {
    dossier_adapters::telemetry::init_local();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { json } => demo(json).await,
        Command::Run { extra_data, json, tenant, aws_endpoint, llm_url, llm_model, html } => {
            run(&extra_data, json, &tenant, aws_endpoint.as_deref(), model(llm_url.as_deref(), &llm_model), html.as_deref()).await
        }
        Command::Serve { addr, aws_endpoint, demo } => serve(addr, aws_endpoint.as_deref(), demo).await,
        Command::Bench { kind: Some(BenchKind::ColdStart { bin_dir, aws_endpoint, runs, json }), .. } => {
            let o = dossier_local::coldstart::ColdStartOptions { bin_dir, aws_endpoint, runs };
            match dossier_local::coldstart::run(&o).await {
                Ok(report) => {
                    print_cold_start(&report, json);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(BadInput(format!("bench cold-start: {e}"))),
            }
        }
        Command::Bench { kind: None, cases, xdr_ms, source_ms, sources, model_ms, writeback_ms, aws_endpoint, concurrency, json } => {
            let o = dossier_local::bench::BenchOptions {
                cases,
                xdr_ms,
                source_ms,
                sources,
                model_ms,
                writeback_ms,
                aws_endpoint,
                concurrency,
                progress: !json,
            };
            match dossier_local::bench::run(&o).await {
                Ok(r) => {
                    if json {
                        println!("{}", serde_json::to_string(&r).unwrap_or_default());
                    } else {
                        print_bench(&r);
                    }
                    if r.lost > 0 {
                        Ok(ExitCode::from(1))
                    } else {
                        Ok(ExitCode::SUCCESS)
                    }
                }
                Err(e) => Err(BadInput(format!("bench: {e}"))),
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(BadInput(msg)) => {
            eprintln!("dossier: {msg}");
            ExitCode::from(2)
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// Local link key: `DOSSIER_LINK_KEY` if set, else a fresh random key (links die with the process).
fn local_signer() -> Result<Arc<LinkSigner>, BadInput> {
    match env("DOSSIER_LINK_KEY") {
        Some(text) => LinkSigner::from_secret(&text).map(Arc::new).map_err(|e| BadInput(format!("DOSSIER_LINK_KEY: {e}"))),
        None => {
            let mut secret = vec![0u8; 32];
            getrandom::getrandom(&mut secret).map_err(|e| BadInput(format!("no OS randomness for a link key: {e}")))?;
            LinkSigner::new(vec![SigningKey { id: "local".into(), secret }]).map(Arc::new).map_err(|e| BadInput(e.to_string()))
        }
    }
}

fn config() -> Result<PipelineConfig, BadInput> {
    dossier_adapters::env::pipeline_config().map_err(|e| BadInput(e.to_string()))
}

async fn backend(aws_endpoint: Option<&str>, clock: Arc<dyn Clock>, sources: &[String]) -> Result<Backend, BadInput> {
    match aws_endpoint {
        None => Ok(Backend::embedded(clock)),
        Some(ep) => Backend::aws(ep, &env("DOSSIER_RESOURCE_PREFIX").unwrap_or_else(|| "dossier-".into()), sources)
            .await
            .map_err(|e| BadInput(format!("AWS endpoint {ep}: {e}"))),
    }
}

/// Slack / Teams from `DOSSIER_SLACK_WEBHOOK_URL` / `DOSSIER_TEAMS_WEBHOOK_URL`.
fn local_notifiers() -> Vec<Arc<dyn dossier_core::ports::Notifier>> {
    let mut out: Vec<Arc<dyn dossier_core::ports::Notifier>> = Vec::new();
    if let Some(url) = env("DOSSIER_SLACK_WEBHOOK_URL") {
        out.push(Arc::new(dossier_adapters::notify::SlackWebhook::new(url, Duration::from_secs(10))));
    }
    if let Some(url) = env("DOSSIER_TEAMS_WEBHOOK_URL") {
        out.push(Arc::new(dossier_adapters::notify::TeamsWebhook::new(url, Duration::from_secs(10))));
    }
    out
}

/// An OpenAI-compatible model when a URL is given.
fn model(url: Option<&str>, name: &str) -> Option<Arc<dyn LanguageModel>> {
    let timeout = env("DOSSIER_LLM_TIMEOUT_SECONDS").and_then(|t| t.parse().ok()).map_or(Duration::from_secs(60), Duration::from_secs);
    url.map(|u| Arc::new(OpenAiCompatible::new(u, env("DOSSIER_LLM_KEY"), name, timeout)) as Arc<dyn LanguageModel>)
}

async fn pipeline(
    config: PipelineConfig,
    xdr: Arc<dyn XdrApi>,
    aws_endpoint: Option<&str>,
    webhook_secrets: WebhookSecrets,
    model: Option<Arc<dyn LanguageModel>>,
) -> Result<LocalPipeline, BadInput> {
    let names = dossier_local::sources::names();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backend = backend(aws_endpoint, clock.clone(), &names).await?;
    let shared = dossier_adapters::sources::catalog::Shared { store: backend.store.clone(), clock: clock.clone(), cache: true };
    let sources = dossier_local::sources::local_sources(&shared).map_err(|e| BadInput(e.to_string()))?;
    Ok(LocalPipeline::new(PipelineParts {
        backend,
        config,
        clock,
        xdr,
        sources,
        signer: local_signer()?,
        webhook_secrets,
        model,
        identity: None,
        notifiers: local_notifiers(),
    }))
}

fn case_for(tenant: &str, data: &ExtraData, now_ms: i64) -> Result<Case, BadInput> {
    let key = CaseKey::new(tenant, &data.incident.incident_id).map_err(|e| BadInput(e.to_string()))?;
    let hint = IncidentHint {
        severity: data.incident.severity,
        description: data.incident.description.clone(),
        created_at_ms: data.incident.creation_ms,
        ..Default::default()
    };
    Ok(Case::new(key, Trigger::Local, hint, now_ms, &Default::default()))
}

const RUN_BUDGET: Duration = Duration::from_secs(600);

async fn run(
    path: &std::path::Path,
    json: bool,
    tenant: &str,
    aws_endpoint: Option<&str>,
    model: Option<Arc<dyn LanguageModel>>,
    html: Option<&std::path::Path>,
) -> Result<ExitCode, BadInput> {
    let text = std::fs::read_to_string(path).map_err(|e| BadInput(format!("cannot read {}: {e}", path.display())))?;
    // Validate fully before anything is stored.
    let incidents = parse_extra_data(&text).map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
    let mut config = config()?;
    config.enrich_deadline = config.enrich_deadline.min(Duration::from_secs(90));
    let xdr = Arc::new(RecordingXdr::serving(text.clone()));
    let pipeline = pipeline(config, xdr.clone(), aws_endpoint, no_webhooks(), model).await?;
    let now = SystemClock.now_ms();
    let mut keys = Vec::new();
    for data in &incidents {
        let case = case_for(tenant, data, now)?;
        keys.push(case.key.clone());
        if let Err(e) = open_case(&pipeline.ctx, case).await {
            eprintln!("dossier: could not open the case: {e}");
            return Ok(ExitCode::from(1));
        }
    }
    let settled = match pipeline.run_until_settled(&keys, RUN_BUDGET).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dossier: pipeline error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    if let (Some(out), Some(key)) = (html, keys.first()) {
        match dossier_local::report::html_page(&pipeline, key).await {
            Ok(page) => std::fs::write(out, page).map_err(|e| BadInput(format!("cannot write {}: {e}", out.display())))?,
            Err(e) => {
                eprintln!("dossier: cannot render the page: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    let writes = xdr.writes();
    let mut reports = Vec::new();
    for key in &keys {
        match case_report(&pipeline, key, &writes).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("dossier: cannot read case {key}: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    if json {
        let out = if reports.len() == 1 { reports.remove(0) } else { serde_json::json!({ "cases": reports }) };
        println!("{out}");
    } else {
        for r in &reports {
            print_text(r);
        }
    }
    let failed = reports.iter().any(|r| r["case"]["status"] == "failed");
    if !settled || failed {
        eprintln!("dossier: {}", if settled { "the case failed; see case.failure" } else { "the pipeline did not settle in time" });
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_cold_start(report: &[dossier_local::coldstart::ColdStart], json: bool) {
    if json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
        return;
    }
    println!("{:<12} {:>9} {:>14} {:>12}", "function", "init ms", "peak RSS MiB", "zip bytes");
    for c in report {
        println!("{:<12} {:>9.1} {:>14.1} {:>12}", c.function, c.init_ms, c.peak_rss_mib, c.zip_bytes);
    }
}

fn print_bench(r: &dossier_local::bench::BenchReport) {
    println!("backend              {}", r.backend);
    println!("cases                {} ({} lost)", r.cases, r.lost);
    println!("webhook→comment p50  {:.1} ms", r.p50_ms);
    println!("webhook→comment p95  {:.1} ms", r.p95_ms);
    println!("critical path        {:.1} ms (XDR + source rounds of 4 lookups + model + write-back)", r.critical_path_ms);
    println!("overhead             {:.1} %", r.overhead_pct);
    println!("sequential would be  {:.1} ms ({:.1}x the p50)", r.sequential_ms, r.sequential_ratio);
    println!("CPU per case         {:.2} ms", r.cpu_ms_per_case);
    println!("peak RSS             {:.1} MiB", r.peak_rss_mib);
    let mut calls: Vec<_> = r.calls_per_indicator.iter().collect();
    calls.sort_by(|a, b| a.0.cmp(b.0));
    for (s, c) in calls {
        println!("calls per indicator  {s}: {c:.2} (all cases together: concurrent lookups of one indicator wait for the first, repeats come from the cache)");
    }
    println!("wall time            {:.0} ms", r.wall_ms);
}

fn print_text(r: &serde_json::Value) {
    let case = &r["case"];
    println!(
        "━━━ Incident {} (tenant {}) — {} ━━━",
        case["incident_id"].as_str().unwrap_or(""),
        case["tenant"].as_str().unwrap_or(""),
        case["status"].as_str().unwrap_or("")
    );
    if let Some(f) = case["failure"].as_str() {
        println!("FAILED: {f}");
    }
    println!("{}", r["dossier"]["comment"].as_str().unwrap_or("(no dossier)"));
    let actions = r["actions"].as_array().cloned().unwrap_or_default();
    if !actions.is_empty() {
        println!("\nApproval links (one per approver; GET shows a confirmation page, POST decides):");
        for a in actions {
            for link in a["approvals"].as_array().cloned().unwrap_or_default() {
                println!(
                    "  {} {} → {}",
                    a["kind"].as_str().unwrap_or(""),
                    a["target_label"].as_str().unwrap_or(""),
                    link["approver"].as_str().unwrap_or("")
                );
                println!("  approval: {}", link["url"].as_str().unwrap_or(""));
            }
        }
    }
    let writes = r["xdr_writes"].as_array().map_or(0, Vec::len);
    println!("\nXDR writes recorded (not sent): {writes}\n");
}

async fn demo(json: bool) -> Result<ExitCode, BadInput> {
    let mut replies = Vec::new();
    let mut cases = Vec::new();
    let now = SystemClock.now_ms();
    for s in SAMPLES {
        let data = parse_extra_data(s.extra_data).map_err(|e| BadInput(format!("bundled sample {} is broken: {e}", s.name)))?;
        for d in data {
            replies.push((d.incident.incident_id.clone(), s.extra_data.to_string()));
            cases.push((s, case_for("demo", &d, now)?));
        }
    }
    let xdr = Arc::new(RecordingXdr::with_incidents(replies));
    let pipeline = pipeline(config()?, xdr.clone(), None, no_webhooks(), None).await?;
    let mut keys = Vec::new();
    for (_, case) in &cases {
        keys.push(case.key.clone());
        if let Err(e) = open_case(&pipeline.ctx, case.clone()).await {
            eprintln!("dossier: could not open the case: {e}");
            return Ok(ExitCode::from(1));
        }
    }
    match pipeline.run_until_settled(&keys, RUN_BUDGET).await {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("dossier: the demo did not settle in time");
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            eprintln!("dossier: pipeline error: {e}");
            return Ok(ExitCode::from(1));
        }
    }
    let writes = xdr.writes();
    for (sample, case) in &cases {
        let report = match case_report(&pipeline, &case.key, &writes).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("dossier: {e}");
                return Ok(ExitCode::from(1));
            }
        };
        if json {
            println!("{report}");
        } else {
            println!("Sample `{}`: {}", sample.name, sample.about);
            print_text(&report);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(addr: SocketAddr, aws_endpoint: Option<&str>, seed_demo: bool) -> Result<ExitCode, BadInput> {
    let secret = env("DOSSIER_WEBHOOK_SECRET")
        .ok_or_else(|| BadInput("set DOSSIER_WEBHOOK_SECRET (the shared secret webhook callers send)".into()))?;
    let default_tenant = env("DOSSIER_DEFAULT_TENANT").unwrap_or_else(|| "default".into());
    let secrets = WebhookSecrets::parse(&secret, &default_tenant).map_err(|e| BadInput(format!("DOSSIER_WEBHOOK_SECRET: {e}")))?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| BadInput(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| BadInput(e.to_string()))?;
    let mut config = config()?;
    if env("DOSSIER_PUBLIC_BASE_URL").is_none() {
        config.public_base_url = format!("http://{bound}");
    }
    let xdr: Arc<dyn XdrApi> = match (env("DOSSIER_XDR_URL"), env("DOSSIER_XDR_KEY")) {
        (Some(url), Some(key)) => {
            Arc::new(XdrHttp::new(&url, XdrCredentials::from_secret(&key).map_err(BadInput)?, Duration::from_secs(20)))
        }
        _ => {
            eprintln!("dossier: no DOSSIER_XDR_URL/DOSSIER_XDR_KEY: serving the bundled sample incidents and recording XDR writes");
            let mut replies = Vec::new();
            for s in SAMPLES {
                for d in parse_extra_data(s.extra_data).map_err(|e| BadInput(e.to_string()))? {
                    replies.push((d.incident.incident_id, s.extra_data.to_string()));
                }
            }
            Arc::new(RecordingXdr::with_incidents(replies))
        }
    };
    let pipeline = Arc::new(
        pipeline(
            config,
            xdr,
            aws_endpoint,
            secrets,
            model(env("DOSSIER_LLM_URL").as_deref(), &env("DOSSIER_LLM_MODEL").unwrap_or_else(|| "gpt-4o-mini".into())),
        )
        .await?,
    );
    if seed_demo {
        let now = SystemClock.now_ms();
        let mut keys = Vec::new();
        for s in SAMPLES {
            for d in parse_extra_data(s.extra_data).map_err(|e| BadInput(e.to_string()))? {
                let case = case_for("demo", &d, now)?;
                keys.push(case.key.clone());
                open_case(&pipeline.ctx, case).await.map_err(|e| BadInput(format!("seeding the demo: {e}")))?;
            }
        }
        pipeline.run_until_settled(&keys, RUN_BUDGET).await.map_err(|e| BadInput(format!("seeding the demo: {e}")))?;
        for key in &keys {
            for a in pipeline.ctx.store.actions(key).await.map_err(|e| BadInput(e.to_string()))? {
                for l in a.value.links {
                    println!("approval: {}", l.url);
                }
            }
        }
    }
    println!("listening: http://{bound}");
    dossier_local::server::serve(pipeline, listener, Duration::from_millis(50)).await;
    Ok(ExitCode::SUCCESS)
}
