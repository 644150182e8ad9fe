//! `dossier demo`: the bundled sample incidents end to end, offline.

use std::process::ExitCode;
use std::sync::Arc;

use dossier_core::embedded::RecordingXdr;
use dossier_core::ports::{Clock, SystemClock};
use dossier_core::stages::open_case;
use dossier_core::xdr::parse_extra_data;
use dossier_local::backend::no_webhooks;
use dossier_local::report::case_report;
use dossier_local::samples::SAMPLES;

use super::print::print_text;
use super::{case_for, config, pipeline, BadInput, RUN_BUDGET};

pub async fn demo(json: bool) -> Result<ExitCode, BadInput> {
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
