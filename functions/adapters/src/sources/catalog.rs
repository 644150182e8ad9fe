//! Every source by name, built from its settings: one place that knows how to make each, used by
//! the deployed enrich functions (keys from Secrets Manager) and by the local CLI (keys from
//! `DOSSIER_<SOURCE>_KEY`). A source without what it needs reports `skipped` with the reason.

use std::sync::Arc;
use std::time::Duration;

use dossier_core::knowledge::{KnowledgeIndex, Retriever};
use dossier_core::ports::{Clock, DocStore};
use dossier_core::ratelimit::{RateLimit, RateLimiter};
use dossier_core::sources::{
    AttackSource, IndicatorSource, IntelFeed, LookupCache, LookupLimits, NotConfigured, PerIndicator, Quota, Source, ATTACK_SOURCE,
    INTEL_FEED_SOURCE,
};
use dossier_core::sources::{CmdbExport, KnowledgeSource, RelatedCases, CMDB_EXPORT_SOURCE, KNOWLEDGE_SOURCE, RELATED_CASES_SOURCE};

use super::{
    abuseipdb, gti, msgraph, okta, otx, qualys, recordedfuture, sentinel, servicenow, shodan, splunk, tenable, virustotal, xql_history,
};
use crate::xdr::{XdrCredentials, XdrHttp};

/// Every source Dossier knows, in fan-out order.
pub const ALL: &[&str] = &[
    ATTACK_SOURCE,
    RELATED_CASES_SOURCE,
    KNOWLEDGE_SOURCE,
    INTEL_FEED_SOURCE,
    CMDB_EXPORT_SOURCE,
    virustotal::NAME,
    otx::NAME,
    abuseipdb::NAME,
    shodan::NAME,
    recordedfuture::NAME,
    gti::NAME,
    servicenow::NAME,
    tenable::NAME,
    qualys::NAME,
    okta::NAME,
    msgraph::NAME,
    xql_history::NAME,
    splunk::NAME,
    sentinel::NAME,
];

/// What one source is given.
#[derive(Clone, Debug, Default)]
pub struct SourceSettings {
    pub url: Option<String>,
    /// The API key or credentials (format per source; see the README).
    pub key: Option<String>,
    /// File content for file-backed sources (intel feed, CMDB export).
    pub data: Option<String>,
    /// Shared quotas, e.g. `4/min,500/day`; the source's documented default when absent.
    pub quota: Option<String>,
    pub timeout: Option<Duration>,
    /// Documents for folder-backed sources (the knowledge source): (path, content).
    pub documents: Vec<(String, String)>,
    /// A knowledge base to query instead of documents (Bedrock, deployed).
    pub retriever: Option<RetrieverHandle>,
}

/// A retriever in settings (printable without its internals).
#[derive(Clone)]
pub struct RetrieverHandle(pub Arc<dyn Retriever>);

impl std::fmt::Debug for RetrieverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetrieverHandle")
    }
}

/// What every source may share: the store (cache, quotas, related-case index) and the clock.
#[derive(Clone)]
pub struct Shared {
    pub store: Arc<dyn DocStore>,
    pub clock: Arc<dyn Clock>,
    /// Cache answers per indicator (needs the cache table).
    pub cache: bool,
}

/// Parses `4/min,500/day` (also `/s`, `/h`, `/<n>s`) into limits named after the source.
pub fn parse_quota(source: &str, text: &str) -> Result<Vec<RateLimit>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (n, per) = part.split_once('/').ok_or_else(|| format!("quota `{part}` must look like 4/min"))?;
            let limit: u32 = n.trim().parse().map_err(|_| format!("quota `{part}`: `{n}` is not a count"))?;
            let window = match per.trim() {
                "s" | "sec" | "second" => Duration::from_secs(1),
                "min" | "minute" => Duration::from_secs(60),
                "h" | "hour" => Duration::from_secs(3600),
                "day" | "d" => Duration::from_secs(86_400),
                other => Duration::from_secs(
                    other
                        .strip_suffix('s')
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| format!("quota `{part}`: unknown window `{other}`"))?,
                ),
            };
            Ok(RateLimit { name: format!("{source}-{limit}-per-{}s", window.as_secs()), limit, window })
        })
        .collect()
}

/// Documented free-tier limits, used unless the deployment says otherwise.
fn default_quota(source: &str) -> &'static str {
    match source {
        "virustotal" => "4/min,500/day",
        "abuseipdb" => "1000/day",
        "shodan" => "1/s",
        // Qualys's Standard API tier: 300 calls an hour (X-RateLimit-Limit).
        "qualys" => "300/h",
        // Log Analytics: 200 queries per 30 seconds per user.
        "sentinel" => "200/30s",
        _ => "",
    }
}

fn per_indicator<S: IndicatorSource + 'static>(
    inner: S,
    name: &str,
    settings: &SourceSettings,
    shared: &Shared,
) -> Result<Arc<dyn Source>, String> {
    let timeout = settings.timeout.unwrap_or(Duration::from_secs(10));
    let mut src = PerIndicator::new(inner).with_limits(LookupLimits { per_lookup_timeout: timeout * 3, ..LookupLimits::default() });
    if shared.cache {
        src = src.with_cache(LookupCache::new(shared.store.clone(), shared.clock.clone()));
    }
    let quota = parse_quota(name, settings.quota.as_deref().unwrap_or(default_quota(name)))?;
    if !quota.is_empty() {
        src = src.with_quota(Quota { limiter: RateLimiter::new(shared.store.clone(), shared.clock.clone()), limits: quota });
    }
    Ok(Arc::new(src))
}

/// Builds `name`. `how_to_configure` completes the "not configured" reason (e.g. "set DOSSIER_OTX_KEY").
pub fn build(name: &str, settings: &SourceSettings, shared: &Shared, how_to_configure: &str) -> Result<Arc<dyn Source>, String> {
    let not_configured = |what: &str| -> Result<Arc<dyn Source>, String> {
        Ok(Arc::new(NotConfigured { name: name.to_string(), reason: format!("not configured: {what} ({how_to_configure})") }))
    };
    let timeout = settings.timeout.unwrap_or(Duration::from_secs(10));
    let url = |default: &str| settings.url.clone().unwrap_or_else(|| default.to_string());
    match name {
        ATTACK_SOURCE => Ok(Arc::new(AttackSource)),
        RELATED_CASES_SOURCE => Ok(Arc::new(RelatedCases { store: shared.store.clone() })),
        KNOWLEDGE_SOURCE => {
            let retriever: Arc<dyn Retriever> =
                match (&settings.retriever, settings.documents.is_empty()) {
                    (Some(r), _) => r.0.clone(),
                    (None, false) => Arc::new(KnowledgeIndex::build(&settings.documents)),
                    (None, true) => return Ok(Arc::new(NotConfigured {
                        name: name.to_string(),
                        reason:
                            "not configured: no runbook folder or knowledge base (set DOSSIER_KNOWLEDGE_PATH or DOSSIER_KNOWLEDGE_BASE_ID)"
                                .into(),
                    })),
                };
            // Past closure summaries of the tenant are searched alongside.
            Ok(Arc::new(KnowledgeSource { retriever, store: Some(shared.store.clone()) }))
        }
        INTEL_FEED_SOURCE => match &settings.data {
            Some(text) => per_indicator(
                IntelFeed::parse(text).map_err(|e| e.to_string())?,
                name,
                settings,
                &Shared { cache: false, ..shared.clone() },
            ),
            None => not_configured("no feed file"),
        },
        CMDB_EXPORT_SOURCE => match &settings.data {
            Some(text) => per_indicator(
                CmdbExport::from_csv(text).map_err(|e| e.to_string())?,
                name,
                settings,
                &Shared { cache: false, ..shared.clone() },
            ),
            None => not_configured("no CMDB export file"),
        },
        _ => {
            let Some(key) = settings.key.clone().filter(|k| !k.trim().is_empty()) else { return not_configured("no key") };
            let key = key.trim().to_string();
            match name {
                "virustotal" => {
                    per_indicator(virustotal::VirusTotal::new(&url(virustotal::DEFAULT_BASE_URL), key, timeout), name, settings, shared)
                }
                "otx" => per_indicator(otx::Otx::new(&url(otx::DEFAULT_BASE_URL), key, timeout), name, settings, shared),
                "abuseipdb" => {
                    per_indicator(abuseipdb::AbuseIpDb::new(&url(abuseipdb::DEFAULT_BASE_URL), key, timeout), name, settings, shared)
                }
                "shodan" => per_indicator(shodan::Shodan::new(&url(shodan::DEFAULT_BASE_URL), key, timeout), name, settings, shared),
                "tenable" => per_indicator(tenable::Tenable::new(&url(tenable::DEFAULT_BASE_URL), key, timeout), name, settings, shared),
                "servicenow" => match &settings.url {
                    Some(u) => per_indicator(servicenow::ServiceNow::new(u, &key, timeout), name, settings, shared),
                    None => not_configured("no instance URL"),
                },
                "recordedfuture" => per_indicator(
                    recordedfuture::RecordedFuture::new(&url(recordedfuture::DEFAULT_BASE_URL), key, timeout),
                    name,
                    settings,
                    shared,
                ),
                "gti" => per_indicator(gti::Gti::new(&url(gti::DEFAULT_BASE_URL), key, timeout), name, settings, shared),
                "qualys" => per_indicator(qualys::Qualys::new(&url(qualys::DEFAULT_BASE_URL), &key, timeout)?, name, settings, shared),
                "splunk" => match &settings.url {
                    // History is per case and moment: not cached between cases.
                    Some(u) => {
                        per_indicator(splunk::Splunk::new(u, key, timeout), name, settings, &Shared { cache: false, ..shared.clone() })
                    }
                    None => not_configured("no management URL"),
                },
                "sentinel" => {
                    let creds: sentinel::SentinelCredentials = serde_json::from_str(&key).map_err(|_| {
                        "the sentinel key must be JSON {\"tenant_id\", \"client_id\", \"client_secret\", \"workspace_id\"}".to_string()
                    })?;
                    per_indicator(
                        sentinel::Sentinel::new(&url(sentinel::DEFAULT_BASE_URL), creds, timeout),
                        name,
                        settings,
                        &Shared { cache: false, ..shared.clone() },
                    )
                }
                "okta" => match &settings.url {
                    Some(u) => per_indicator(okta::Okta::new(u, key, timeout), name, settings, shared),
                    None => not_configured("no org URL"),
                },
                "msgraph" => {
                    let creds: msgraph::GraphCredentials = serde_json::from_str(&key)
                        .map_err(|_| "the msgraph key must be JSON {\"tenant_id\", \"client_id\", \"client_secret\"}".to_string())?;
                    per_indicator(msgraph::MsGraph::new(&url(msgraph::DEFAULT_BASE_URL), creds, timeout), name, settings, shared)
                }
                "xdr" => match &settings.url {
                    Some(u) => {
                        let creds = XdrCredentials::from_secret(&key)?;
                        // Query slots and started queries are shared through the cache table, so
                        // every worker of the tenant counts the same four slots.
                        let tenant = u.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
                        let state = shared.cache.then(|| {
                            dossier_core::store::XqlRuns::new(
                                shared.store.clone(),
                                shared.clock.clone(),
                                tenant,
                                xql_history::TENANT_SLOTS,
                                xql_history::SLOT_LEASE_MS,
                            )
                        });
                        let mut history = xql_history::XqlHistory::new(Arc::new(XdrHttp::new(u, creds, timeout)), state);
                        // Inside the runner's per-lookup budget (3 × timeout), with room to record.
                        history.max_wait = timeout * 2;
                        per_indicator(history, name, settings, &Shared { cache: false, ..shared.clone() })
                    }
                    None => not_configured("no tenant URL"),
                },
                other => {
                    Ok(Arc::new(NotConfigured { name: other.to_string(), reason: "no adapter for this source in this version".into() }))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse() {
        let q = parse_quota("virustotal", "4/min, 500/day").unwrap();
        assert_eq!((q[0].limit, q[0].window, q[1].window), (4, Duration::from_secs(60), Duration::from_secs(86_400)));
        assert_eq!(parse_quota("x", "10/90s").unwrap()[0].window, Duration::from_secs(90));
        assert!(parse_quota("x", "many").is_err());
        assert!(parse_quota("x", "").unwrap().is_empty());
    }
}
