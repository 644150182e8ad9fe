//! TLS settings shared by every reqwest client (XDR, sources, model, notifiers, identity): the
//! system's trust roots are read and parsed once per process, not once per client (about 3 ms
//! apiece at cold start). The AWS SDK caches its own copy the same way.
//!
//! `SSL_CERT_FILE` names the trust store when set; the template points it at the Lambda image's
//! CA bundle, so neither reader also walks the hashed certificate directory, which repeats the
//! bundle file by file. A private CA (an on-premises CMDB) goes into that bundle.

use std::sync::{Arc, OnceLock};

/// TLS settings for reqwest clients: the system's roots, HTTP/1.1, ring.
pub fn client_config() -> rustls::ClientConfig {
    static CONFIG: OnceLock<rustls::ClientConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            if !found.errors.is_empty() {
                tracing::warn!(errors = ?found.errors, "some root certificates could not be read");
            }
            let mut roots = rustls::RootCertStore::empty();
            let (valid, invalid) = roots.add_parsable_certificates(found.certs);
            if valid == 0 {
                tracing::warn!(invalid, "no usable root certificates: HTTPS calls will fail verification");
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap_or_else(|e| unreachable!("ring supports TLS 1.2 and 1.3: {e}"))
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            config
        })
        .clone()
}
