//! Configuration from the environment (what the SAM template sets on each function). Secrets are
//! never in the environment: only their ARNs or names.

use std::time::Duration;

use dossier_core::config::{Phase, PipelineConfig};
use dossier_core::domain::InternalNames;
use dossier_core::domain::Severity;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

pub fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

pub fn required(name: &'static str) -> Result<String, ConfigError> {
    var(name).ok_or(ConfigError::Missing(name))
}

fn list(name: &'static str) -> Option<Vec<String>> {
    var(name).map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

fn number(name: &'static str) -> Result<Option<u64>, ConfigError> {
    var(name)
        .map(|v| v.parse::<u64>().map_err(|_| ConfigError::Invalid { name, reason: format!("`{v}` is not a whole number") }))
        .transpose()
}

/// Approver sign-in (`DOSSIER_OIDC_ISSUER` with `DOSSIER_OIDC_CLIENT_ID`), or none. The
/// provider returns to `<DOSSIER_PUBLIC_BASE_URL>/approve/callback`, which must be registered
/// with it as a redirect URI.
pub fn oidc_settings(public_base_url: &str) -> Result<Option<dossier_core::signin::OidcSettings>, ConfigError> {
    match (var("DOSSIER_OIDC_ISSUER"), var("DOSSIER_OIDC_CLIENT_ID")) {
        (None, None) => Ok(None),
        (Some(issuer), Some(client_id)) => {
            if !issuer.starts_with("https://") && !issuer.starts_with("http://127.0.0.1") && !issuer.starts_with("http://localhost") {
                return Err(ConfigError::Invalid { name: "DOSSIER_OIDC_ISSUER", reason: "must be an https:// URL".into() });
            }
            Ok(Some(dossier_core::signin::OidcSettings {
                issuer,
                client_id,
                redirect_uri: format!("{}/approve/callback", public_base_url.trim_end_matches('/')),
            }))
        }
        (Some(_), None) => Err(ConfigError::Missing("DOSSIER_OIDC_CLIENT_ID")),
        (None, Some(_)) => Err(ConfigError::Missing("DOSSIER_OIDC_ISSUER")),
    }
}

/// The pipeline settings, starting from the defaults.
pub fn pipeline_config() -> Result<PipelineConfig, ConfigError> {
    let mut c = PipelineConfig::default();
    if let Some(t) = var("DOSSIER_DEFAULT_TENANT") {
        c.default_tenant = t;
    }
    if let Some(p) = number("DOSSIER_PHASE")? {
        if !(1..=3).contains(&p) {
            return Err(ConfigError::Invalid { name: "DOSSIER_PHASE", reason: "must be 1, 2 or 3".into() });
        }
        c.phase = Phase(p as u8);
    }
    if let Some(s) = var("DOSSIER_MIN_SEVERITY") {
        let sev = Severity::parse(&s);
        if sev == Severity::Unknown && !s.eq_ignore_ascii_case("unknown") {
            return Err(ConfigError::Invalid {
                name: "DOSSIER_MIN_SEVERITY",
                reason: format!("`{s}` is not informational, low, medium, high or critical"),
            });
        }
        c.min_severity = sev;
    }
    if let Some(s) = list("DOSSIER_ACCEPT_STATUSES") {
        c.accept_statuses = s;
    }
    if let Some(d) = list("DOSSIER_INTERNAL_DOMAINS") {
        c.internal_names =
            InternalNames { domain_suffixes: d.into_iter().map(|s| s.trim_start_matches('.').to_ascii_lowercase()).collect() };
    }
    if let Some(s) = list("DOSSIER_SOURCES") {
        c.sources = s;
    }
    if let Some(s) = number("DOSSIER_ENRICH_DEADLINE_SECONDS")? {
        c.enrich_deadline = Duration::from_secs(s);
    }
    if let Some(u) = var("DOSSIER_PUBLIC_BASE_URL") {
        c.public_base_url = u;
    }
    c.approver_signin = var("DOSSIER_OIDC_ISSUER").is_some();
    if let Some(a) = list("DOSSIER_APPROVERS") {
        c.approvers = a;
    }
    if let Some(n) = number("DOSSIER_XDR_EXTRA_DATA_PER_MINUTE")? {
        c.xdr_extra_data_limit.limit = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    }
    if let Some(rules) = list("DOSSIER_AUTO_APPROVE") {
        c.auto_approve = rules
            .iter()
            .map(|r| dossier_core::dossier::AutoApprove::parse(r))
            .collect::<Result<_, _>>()
            .map_err(|reason| ConfigError::Invalid { name: "DOSSIER_AUTO_APPROVE", reason })?;
    }
    if let Some(h) = number("DOSSIER_LINK_TTL_HOURS")? {
        c.link_ttl = Duration::from_secs(h * 3600);
    }
    if let Some(s) = number("DOSSIER_WRITE_LEASE_SECONDS")? {
        c.write_lease = Duration::from_secs(s);
    }
    if let Some(s) = number("DOSSIER_LLM_TIMEOUT_SECONDS")? {
        c.model_timeout = Duration::from_secs(s.max(1));
    }
    if let Some(s) = number("DOSSIER_SYNTHESIS_RESERVE_SECONDS")? {
        c.synthesis_reserve = Duration::from_secs(s);
    }
    if let Some(p) = var("DOSSIER_LLM_PRICE_USD_PER_MTOK") {
        c.model_price = Some(
            dossier_core::config::ModelPrice::parse(&p)
                .map_err(|reason| ConfigError::Invalid { name: "DOSSIER_LLM_PRICE_USD_PER_MTOK", reason })?,
        );
    }
    Ok(c)
}
