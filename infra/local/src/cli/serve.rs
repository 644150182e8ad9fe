//! `dossier serve`: API Gateway and SQS played around the real handlers.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use dossier_adapters::xdr::{XdrCredentials, XdrHttp};
use dossier_core::embedded::RecordingXdr;
use dossier_core::ports::{Clock, SystemClock, XdrApi};
use dossier_core::stages::open_case;
use dossier_core::xdr::{parse_extra_data, WebhookSecrets};
use dossier_local::samples::SAMPLES;

use super::{case_for, config, env, model, pipeline, BadInput, RUN_BUDGET};

pub async fn serve(addr: SocketAddr, aws_endpoint: Option<&str>, seed_demo: bool) -> Result<ExitCode, BadInput> {
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
