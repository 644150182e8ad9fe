//! Sources for local runs: every source of the catalog. ATT&CK, related cases, the intel feed and
//! the CMDB export work offline (bundled samples unless `DOSSIER_INTEL_FEED_PATH` /
//! `DOSSIER_CMDB_EXPORT_PATH` name files); every HTTP source runs when `DOSSIER_<SOURCE>_KEY` is
//! set (base URL from `DOSSIER_<SOURCE>_URL`, quota from `DOSSIER_<SOURCE>_QUOTA`).

use std::sync::Arc;
use std::time::Duration;

use dossier_adapters::sources::catalog::{self, Shared, SourceSettings, ALL};
use dossier_core::sources::{Source, KNOWLEDGE_SOURCE};

use crate::samples::{CMDB_EXPORT, INTEL_FEED};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceSetupError(String);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// Names of every source, in fan-out order.
pub fn names() -> Vec<String> {
    ALL.iter().map(|s| s.to_string()).collect()
}

pub fn local_sources(shared: &Shared) -> Result<Vec<Arc<dyn Source>>, SourceSetupError> {
    let timeout = env("DOSSIER_SOURCE_TIMEOUT_MS").and_then(|v| v.parse().ok()).map(Duration::from_millis);
    ALL.iter()
        .map(|name| {
            let prefix = format!("DOSSIER_{}", name.to_ascii_uppercase().replace('-', "_"));
            let mut settings = SourceSettings {
                url: env(&format!("{prefix}_URL")),
                key: env(&format!("{prefix}_KEY")),
                quota: env(&format!("{prefix}_QUOTA")),
                timeout,
                ..SourceSettings::default()
            };
            match (env(&format!("{prefix}_PATH")), *name) {
                // A folder of runbooks, wiki exports and past reports.
                (Some(path), KNOWLEDGE_SOURCE) => {
                    settings.documents = dossier_adapters::knowledge::read_folder(std::path::Path::new(&path))
                        .map_err(|e| SourceSetupError(format!("DOSSIER_KNOWLEDGE_PATH: {e}")))?
                }
                (Some(path), _) => {
                    settings.data = Some(std::fs::read_to_string(&path).map_err(|e| SourceSetupError(format!("cannot read {path}: {e}")))?)
                }
                (None, "intel-feed") => settings.data = Some(INTEL_FEED.to_string()),
                (None, "cmdb-export") => settings.data = Some(CMDB_EXPORT.to_string()),
                (None, _) => {}
            }
            catalog::build(name, &settings, shared, &format!("set {prefix}_KEY")).map_err(|e| SourceSetupError(format!("{name}: {e}")))
        })
        .collect()
}
