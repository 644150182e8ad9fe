//! `dossier run`: recorded `get_incident_extra_data` replies through the whole pipeline, one file
//! after the other in one store.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use dossier_core::embedded::RecordingXdr;
use dossier_core::ports::{Clock, SystemClock};
use dossier_core::stages::open_case;
use dossier_core::synthesis::LanguageModel;
use dossier_core::xdr::parse_extra_data;
use dossier_local::backend::no_webhooks;
use dossier_local::report::case_report;

use super::print::print_text;
use super::{case_for, config, pipeline, BadInput, RUN_BUDGET};

pub async fn run(
    paths: &[std::path::PathBuf],
    json: bool,
    tenant: &str,
    aws_endpoint: Option<&str>,
    model: Option<Arc<dyn LanguageModel>>,
    html: Option<&std::path::Path>,
) -> Result<ExitCode, BadInput> {
    // Read and validate every file fully before anything is stored.
    let mut files = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| BadInput(format!("cannot read {}: {e}", path.display())))?;
        let incidents = parse_extra_data(&text).map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
        files.push((text, incidents));
    }
    let mut config = config()?;
    config.enrich_deadline = config.enrich_deadline.min(Duration::from_secs(90));
    let xdr = Arc::new(match &files[..] {
        [(text, _)] => RecordingXdr::serving(text.clone()),
        _ => RecordingXdr::with_incidents(
            files.iter().flat_map(|(text, incidents)| incidents.iter().map(move |d| (d.incident.incident_id.clone(), text.clone()))),
        ),
    });
    let pipeline = pipeline(config, xdr.clone(), aws_endpoint, no_webhooks(), model).await?;
    // One file after the other, each settled before the next opens: as successive incidents.
    let mut keys = Vec::new();
    let mut settled = true;
    for (_, incidents) in &files {
        let now = SystemClock.now_ms();
        let mut batch = Vec::new();
        for data in incidents {
            let case = case_for(tenant, data, now)?;
            batch.push(case.key.clone());
            if let Err(e) = open_case(&pipeline.ctx, case).await {
                eprintln!("dossier: could not open the case: {e}");
                return Ok(ExitCode::from(1));
            }
        }
        settled &= match pipeline.run_until_settled(&batch, RUN_BUDGET).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("dossier: pipeline error: {e}");
                return Ok(ExitCode::from(1));
            }
        };
        keys.extend(batch);
    }
    // Several incidents: the hourly hunt runs once over them, as it would deployed.
    if files.len() > 1 {
        if let Err(e) = pipeline.hunt.run().await {
            eprintln!("dossier: hunt failed: {e}");
            return Ok(ExitCode::from(1));
        }
        settled &= pipeline.run_until_settled(&keys, RUN_BUDGET).await.unwrap_or(false);
    }
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
    for r in &reports {
        if json {
            println!("{r}");
        } else {
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
