//! Structured JSON logs for Lambda (CloudWatch), one line per event, spans carrying the case key.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// JSON logs at `RUST_LOG` (default `info`) on stdout. Call once at the top of `main`.
pub fn init_json() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    init_json_to(filter, std::io::stdout);
}

/// The Lambda log format, written to `writer`: the log-hygiene test captures exactly what
/// CloudWatch would receive.
pub fn init_json_to<W>(filter: EnvFilter, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let result = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .try_init();
    if result.is_err() {
        tracing::debug!("logging already initialised");
    }
}

/// Human-readable logs on stderr for the local CLI (default `warn`, so stdout stays clean).
pub fn init_local(default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let result = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
    if result.is_err() {
        tracing::debug!("logging already initialised");
    }
}

/// Metrics as EMF lines on stdout, next to the JSON logs; CloudWatch Logs extracts them.
pub struct StdoutEmf;

impl dossier_core::metrics::Metrics for StdoutEmf {
    fn emit(&self, function: &str, set: dossier_core::metrics::MetricSet) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let line = dossier_core::metrics::emf_line(function, &set, now_ms);
        use std::io::Write;
        // One write per line under the stdout lock, so a record never interleaves with a log line.
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").is_err() {
            tracing::debug!("stdout closed; metric dropped");
        }
    }
}
