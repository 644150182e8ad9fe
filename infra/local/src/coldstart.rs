//! `dossier bench cold-start`: starts each function's release binary against a local Lambda
//! Runtime API emulator and measures init (process start → first `GET .../invocation/next`, i.e.
//! clients built and secrets read from Secrets Manager on moto) and peak RSS at that point, plus
//! the zipped size of each binary as it would be deployed (`bootstrap` in a zip).

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The functions the template deploys, by binary name.
pub const FUNCTIONS: &[&str] = &["intake", "collect", "enrich", "synthesize", "writeback", "approve", "poller"];

#[derive(Clone, Debug, Serialize)]
pub struct ColdStart {
    pub function: String,
    /// Median over the runs.
    pub init_ms: f64,
    /// Highest over the runs (VmHWM when the function first asks for work).
    pub peak_rss_mib: f64,
    /// Median on-CPU time of init here (every thread, a full core), and what it becomes at the
    /// template's memory size if init gets that size's share of a vCPU.
    pub init_cpu_ms: f64,
    pub init_cpu_ms_at_memory: f64,
    pub zip_bytes: u64,
}

pub struct ColdStartOptions {
    /// Where the release binaries are: `<dir>/<function>` (cargo build --release) or
    /// `<dir>/<function>/bootstrap` (cargo lambda build --release).
    pub bin_dir: PathBuf,
    pub aws_endpoint: String,
    pub runs: usize,
}

fn binary(dir: &Path, function: &str) -> Option<PathBuf> {
    [dir.join(function).join("bootstrap"), dir.join(function)].into_iter().find(|p| p.is_file())
}

/// Size of `bootstrap` zipped at the default level, as `sam build`/`cargo lambda` would ship it.
fn zip_bytes(bin: &Path) -> Result<u64, String> {
    let dir = std::env::temp_dir().join(format!("dossier-zip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let bootstrap = dir.join("bootstrap");
    let zip = dir.join("function.zip");
    std::fs::copy(bin, &bootstrap).map_err(|e| format!("copy {}: {e}", bin.display()))?;
    std::fs::remove_file(&zip).ok();
    let status = std::process::Command::new("zip")
        .args(["-q", "-j"])
        .arg(&zip)
        .arg(&bootstrap)
        .status()
        .map_err(|e| format!("zip (install the zip package): {e}"))?;
    if !status.success() {
        return Err(format!("zip exited with {status}"));
    }
    let size = std::fs::metadata(&zip).map_err(|e| e.to_string())?.len();
    std::fs::remove_dir_all(&dir).ok();
    Ok(size)
}

/// The Runtime API, enough for init: each `GET /next` is reported and then held open (the
/// process is measured and killed while it waits, as Lambda would freeze it).
async fn runtime_api() -> Result<(String, mpsc::UnboundedReceiver<()>), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        if req.uri().path().ends_with("/runtime/invocation/next") {
                            tx.send(()).ok();
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, Infallible>(Response::builder().status(202).body(Full::new(Bytes::from_static(b"{}"))).unwrap_or_default())
                    }
                });
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await.ok();
            });
        }
    });
    Ok((addr.to_string(), rx))
}

/// The environment the template gives each function, pointed at moto and at local URLs.
fn environment(function: &str, api: &str, endpoint: &str) -> Vec<(String, String)> {
    let vars: Vec<(&str, String)> = vec![
        ("AWS_LAMBDA_RUNTIME_API", api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", format!("dossier-{function}")),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/dossier-{function}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "cold-start".into()),
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("RUST_LOG", "warn".into()),
        ("DOSSIER_CASES_TABLE", "cold-cases".into()),
        ("DOSSIER_EFFECTS_TABLE", "cold-effects".into()),
        ("DOSSIER_REPORTS_TABLE", "cold-reports".into()),
        ("DOSSIER_AUDIT_TABLE", "cold-audit".into()),
        ("DOSSIER_CACHE_TABLE", "cold-cache".into()),
        ("DOSSIER_PUBLIC_BASE_URL", "https://dossier.example".into()),
        ("DOSSIER_APPROVERS", "soc-lead".into()),
        ("DOSSIER_WEBHOOK_SECRET_ARN", "cold/webhook".into()),
        ("DOSSIER_LINK_KEY_SECRET_ARN", "cold/link-key".into()),
        ("DOSSIER_SNAPSHOT_KEY_SECRET_ARN", "cold/snapshot-key".into()),
        ("DOSSIER_XDR_URL", "https://api-tenant.xdr.us.paloaltonetworks.com".into()),
        ("DOSSIER_XDR_SECRET_ARN", "cold/xdr".into()),
        ("DOSSIER_LLM_PROVIDER", "openai".into()),
        ("DOSSIER_LLM_URL", "https://llm.example/v1".into()),
        ("DOSSIER_LLM_MODEL", "gpt-4o-mini".into()),
        ("DOSSIER_LLM_SECRET_ARN", "cold/llm".into()),
        ("DOSSIER_SOURCE", "virustotal".into()),
        ("DOSSIER_VIRUSTOTAL_SECRET_ARN", "cold/virustotal".into()),
        ("DOSSIER_SOURCES", "attack,virustotal".into()),
    ];
    // The template names the image's CA bundle in SSL_CERT_FILE; here, this machine's.
    let ca_bundle = ["/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/ca-bundle.pem"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .map(|p| ("SSL_CERT_FILE".to_string(), p.to_string()));
    let queues = ["collect", "synthesize", "writeback", "enrich_virustotal", "enrich_attack"]
        .iter()
        .map(|q| (format!("QUEUE_URL_{}", q.to_ascii_uppercase()), format!("{endpoint}/000000000000/cold-{q}")));
    vars.into_iter().map(|(k, v)| (k.to_string(), v)).chain(queues).chain(ca_bundle).collect()
}

async fn provision_secrets(endpoint: &str) -> Result<(), String> {
    let sdk = dossier_adapters::aws::sdk_config_for(endpoint).await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let secrets = [
        ("cold/webhook", "cold-start-webhook-secret".to_string()),
        ("cold/link-key", serde_json::json!({"current": {"id": "k1", "secret": "cold-start-link-key-0123456789abcdef"}}).to_string()),
        ("cold/snapshot-key", "cold-start-snapshot-key-0123456789abcdef".to_string()),
        ("cold/xdr", "7:cold-start-xdr-key".to_string()),
        ("cold/llm", "sk-cold-start".to_string()),
        ("cold/virustotal", "cold-start-vt-key".to_string()),
    ];
    for (name, value) in secrets {
        dossier_adapters::provision::ensure_secret(&client, name, &value).await?;
    }
    Ok(())
}

pub async fn run(o: &ColdStartOptions) -> Result<Vec<ColdStart>, String> {
    provision_secrets(&o.aws_endpoint).await?;
    let (api, mut next_calls) = runtime_api().await?;
    let mut out = Vec::new();
    for function in FUNCTIONS {
        let bin = binary(&o.bin_dir, function).ok_or_else(|| {
            format!("no release binary for {function} in {} (cargo build --release --workspace --bins)", o.bin_dir.display())
        })?;
        let mut inits = Vec::new();
        let mut cpus = Vec::new();
        let mut peak = 0.0f64;
        for _ in 0..o.runs.max(1) {
            while next_calls.try_recv().is_ok() {}
            let started = Instant::now();
            let mut child = tokio::process::Command::new(&bin)
                .env_clear()
                .envs(environment(function, &api, &o.aws_endpoint))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("start {}: {e}", bin.display()))?;
            let pid = child.id().unwrap_or(0);
            let ready = tokio::time::timeout(Duration::from_secs(10), next_calls.recv()).await;
            let init = started.elapsed();
            peak = peak.max(crate::bench::peak_rss_mib_of(&pid.to_string()));
            cpus.push(crate::bench::cpu_ms_of(&pid.to_string()));
            child.start_kill().ok();
            let output = child.wait_with_output().await.map_err(|e| e.to_string())?;
            if !matches!(ready, Ok(Some(()))) {
                let stderr = String::from_utf8_lossy(&output.stderr);
                return Err(format!("{function} did not reach /next within 10 s: {}", stderr.chars().take(600).collect::<String>()));
            }
            inits.push(init.as_secs_f64() * 1000.0);
        }
        inits.sort_by(f64::total_cmp);
        cpus.sort_by(f64::total_cmp);
        let init_cpu_ms = cpus[cpus.len() / 2];
        let share = (crate::cost::FULL_VCPU_MB / crate::cost::memory_mb(function)).max(1.0);
        out.push(ColdStart {
            function: function.to_string(),
            init_ms: inits[inits.len() / 2],
            peak_rss_mib: peak,
            init_cpu_ms,
            init_cpu_ms_at_memory: init_cpu_ms * share,
            zip_bytes: zip_bytes(&bin)?,
        });
    }
    Ok(out)
}
