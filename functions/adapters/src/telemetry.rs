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
pub fn init_local() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let result = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
    if result.is_err() {
        tracing::debug!("logging already initialised");
    }
}
