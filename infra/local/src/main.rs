//! `dossier`: run Dossier locally. `demo` runs the bundled incidents offline; `run` runs one
//! recorded `get_incident_extra_data` reply; `serve` plays API Gateway + SQS around the real
//! handlers; `bench` measures; `chaos` breaks everything at once and counts what held.
//! Exit codes: 0 success, 1 the pipeline failed (or a chaos promise broke), 2 unusable input.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod cli;

use cli::print::{print_bench, print_chaos, print_cold_start};
use cli::{model, BadInput};

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
    /// Check this configuration: internal domains, the model, XDR, each configured source (one line
    /// each; exit 1 on any failure). Reads the same environment as `run` and `serve`.
    Doctor {
        /// Print one JSON object instead of lines.
        #[arg(long)]
        json: bool,
        /// Check deployed functions instead: files holding `aws lambda get-function-configuration`
        /// output (internal domains set, every secret ARN resolves, the Bedrock model answers).
        #[arg(long = "lambda-config")]
        lambda_config: Vec<PathBuf>,
        /// AWS endpoint for those checks (e.g. moto server); default: the AWS configuration.
        #[arg(long)]
        aws_endpoint: Option<String>,
    },
    /// Score the prompt and a model on the golden set (infra/local/golden): schema validity,
    /// repairs, fallbacks, grounding, technique recall and precision, leaked identifiers, tokens,
    /// latency, cost. Exit 1 unless it passes the thresholds in the README.
    Eval {
        /// Chat completions base URL (OpenAI-compatible) or the Anthropic API base URL; key from DOSSIER_LLM_KEY.
        #[arg(long)]
        llm_url: String,
        #[arg(long)]
        llm_model: String,
        /// `openai` (any OpenAI-compatible endpoint) or `anthropic`.
        #[arg(long, default_value = "openai")]
        provider: String,
        #[arg(long)]
        json: bool,
    },
    /// Run the whole pipeline on a recorded `get_incident_extra_data` reply. XDR writes are recorded, not sent.
    Run {
        /// File holding `{"reply": {"incident", "alerts", "network_artifacts", "file_artifacts"}}`.
        /// Give it more than once: the files run in order in one store, as successive incidents
        /// of one tenant (later ones see earlier ones as related).
        #[arg(long, required = true)]
        extra_data: Vec<PathBuf>,
        /// Print one JSON object per case on stdout, one per line.
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
        /// Each store and queue call takes what the region-local AWS service takes (DynamoDB
        /// 4/6/10 ms read/write/transaction, SQS send 10 ms, SQS → Lambda 16 ms; ±40 % jitter), on
        /// the embedded backend.
        #[arg(long, conflicts_with = "aws_endpoint")]
        aws_latency: bool,
        /// With --aws-latency: a DynamoDB read in ms (writes 1.5×, transactions 2.5×).
        #[arg(long, requires = "aws_latency")]
        ddb_ms: Option<u64>,
        /// With --aws-latency: an SQS SendMessage in ms.
        #[arg(long, requires = "aws_latency")]
        sqs_ms: Option<u64>,
        /// With --aws-latency: from a message's send to its function's invocation, in ms.
        #[arg(long, requires = "aws_latency")]
        trigger_ms: Option<u64>,
        /// Print every AWS call in order (stage, operation, table and key or queue) to stderr.
        #[arg(long)]
        trace_calls: bool,
        #[arg(long)]
        json: bool,
    },
    /// Break everything at once (faults in XDR, sources and model, workers dying between store
    /// writes, duplicate deliveries, approvers, resolved incidents, the reconciler) and count
    /// what held. Exits 1 when a promise broke.
    Chaos {
        #[arg(long, default_value_t = 100)]
        cases: usize,
        /// Share of calls to XDR, the sources and the model that fail.
        #[arg(long, default_value_t = 0.2)]
        fault_rate: f64,
        /// Share of store writes around which the worker dies.
        #[arg(long, default_value_t = 0.1)]
        crash_rate: f64,
        /// Share of messages delivered twice.
        #[arg(long, default_value_t = 0.2)]
        duplicate_rate: f64,
        /// Share of incidents XDR resolves while they are in flight.
        #[arg(long, default_value_t = 0.05)]
        resolve_rate: f64,
        /// Lease on claimed work (function timeouts are capped at it).
        #[arg(long)]
        lease_seconds: Option<u64>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// moto server (or AWS) instead of the embedded store and queue.
        #[arg(long)]
        aws_endpoint: Option<String>,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 900)]
        budget_seconds: u64,
        /// One JSON object on stdout.
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Chaos injects failures by the thousand: their warnings would drown the report.
    dossier_adapters::telemetry::init_local(if matches!(cli.command, Command::Chaos { .. }) { "error" } else { "warn" });
    let result = match cli.command {
        Command::Demo { json } => cli::demo::demo(json).await,
        Command::Eval { llm_url, llm_model, provider, json } => match cli::eval::model_for(&provider, &llm_url, &llm_model) {
            Ok(llm) => cli::eval::eval(llm).await.map(|report| {
                cli::eval::print(&report, json);
                if report.passes {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }),
            Err(e) => Err(e),
        },
        Command::Doctor { json, lambda_config, aws_endpoint } => cli::doctor::doctor(json, &lambda_config, aws_endpoint.as_deref())
            .await
            .map(|healthy| if healthy { ExitCode::SUCCESS } else { ExitCode::from(1) }),
        Command::Run { extra_data, json, tenant, aws_endpoint, llm_url, llm_model, html } => {
            cli::run::run(&extra_data, json, &tenant, aws_endpoint.as_deref(), model(llm_url.as_deref(), &llm_model), html.as_deref()).await
        }
        Command::Serve { addr, aws_endpoint, demo } => cli::serve::serve(addr, aws_endpoint.as_deref(), demo).await,
        Command::Chaos {
            cases,
            fault_rate,
            crash_rate,
            duplicate_rate,
            resolve_rate,
            lease_seconds,
            seed,
            aws_endpoint,
            budget_seconds,
            json,
        } => {
            let o = dossier_local::chaos::ChaosOptions {
                cases,
                fault_rate,
                crash_rate,
                duplicate_rate,
                resolve_rate,
                lease_seconds,
                seed,
                aws_endpoint,
                budget: Duration::from_secs(budget_seconds),
                progress: !json,
            };
            match dossier_local::chaos::run(&o).await {
                Ok(r) => {
                    print_chaos(&r, json);
                    Ok(if r.holds() { ExitCode::SUCCESS } else { ExitCode::from(1) })
                }
                Err(e) => Err(BadInput(format!("chaos: {e}"))),
            }
        }
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
        Command::Bench {
            kind: None,
            cases,
            xdr_ms,
            source_ms,
            sources,
            model_ms,
            writeback_ms,
            aws_endpoint,
            concurrency,
            aws_latency,
            ddb_ms,
            sqs_ms,
            trigger_ms,
            trace_calls,
            json,
        } => {
            let o = dossier_local::bench::BenchOptions {
                aws_latency: aws_latency.then(|| dossier_local::latency::AwsLatency::with(ddb_ms, sqs_ms, trigger_ms)),
                cases,
                xdr_ms,
                source_ms,
                sources,
                model_ms,
                writeback_ms,
                aws_endpoint,
                concurrency,
                progress: !json,
                trace_calls,
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
