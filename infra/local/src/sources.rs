//! Sources for local runs: ATT&CK and the bundled intel feed offline, and every HTTP source whose
//! `DOSSIER_<SOURCE>_KEY` is set (base URL from `DOSSIER_<SOURCE>_URL`).

use std::sync::Arc;
use std::time::Duration;

use dossier_adapters::virustotal::{self, VirusTotal};
use dossier_core::sources::{AttackSource, IntelFeed, LookupLimits, NotConfigured, PerIndicator, Source};

use crate::samples::INTEL_FEED;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceSetupError(String);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

pub fn local_sources() -> Result<Vec<Arc<dyn Source>>, SourceSetupError> {
    let feed_text = match env("DOSSIER_INTEL_FEED_PATH") {
        Some(path) => std::fs::read_to_string(&path).map_err(|e| SourceSetupError(format!("cannot read intel feed {path}: {e}")))?,
        None => INTEL_FEED.to_string(),
    };
    let feed = IntelFeed::from_csv(&feed_text).map_err(|e| SourceSetupError(e.to_string()))?;
    let virustotal: Arc<dyn Source> = match env("DOSSIER_VIRUSTOTAL_KEY") {
        Some(key) => {
            let url = env("DOSSIER_VIRUSTOTAL_URL").unwrap_or_else(|| virustotal::DEFAULT_BASE_URL.to_string());
            let timeout =
                env("DOSSIER_SOURCE_TIMEOUT_MS").and_then(|v| v.parse().ok()).map_or(Duration::from_secs(10), Duration::from_millis);
            Arc::new(PerIndicator {
                inner: VirusTotal::new(&url, key, timeout),
                limits: LookupLimits { per_lookup_timeout: timeout, ..LookupLimits::default() },
            })
        }
        None => Arc::new(NotConfigured { name: virustotal::NAME.into(), reason: "not configured (set DOSSIER_VIRUSTOTAL_KEY)".into() }),
    };
    Ok(vec![Arc::new(AttackSource), Arc::new(PerIndicator { inner: feed, limits: LookupLimits::default() }), virustotal])
}
