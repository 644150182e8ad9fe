//! The one reqwest client configuration every HTTP adapter uses: rustls+ring with the process's
//! shared trust roots, timeouts, a user agent.

use std::time::Duration;

pub fn client(timeout: Duration) -> reqwest::Client {
    crate::aws::install_crypto_provider();
    reqwest::Client::builder()
        .tls_backend_preconfigured(crate::tls::client_config())
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .user_agent(concat!("dossier/", env!("CARGO_PKG_VERSION")))
        .build()
        // Building only fails if the TLS backend cannot initialise: nothing can work then.
        .expect("HTTP client builds")
}

/// `Retry-After` in seconds (the HTTP-date form is rare on these APIs and treated as absent).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}
