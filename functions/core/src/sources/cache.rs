//! The per-indicator answer cache (a DynamoDB table with a TTL).

use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::Indicator;
use crate::ports::{Clock, DocStore, Table};
use crate::sources::{IndicatorVerdict, Lookup};

/// Answers per (source, indicator), kept for a TTL: the same indicator in 100 cases is looked
/// up once. "Not found" is kept shorter (it may appear at the source any time).
#[derive(Clone)]
pub struct LookupCache {
    store: Arc<dyn DocStore>,
    clock: Arc<dyn Clock>,
    pub positive_ttl: Duration,
    pub negative_ttl: Duration,
}

#[derive(Serialize, Deserialize)]
struct Cached {
    expires_at_ms: i64,
    found: Option<IndicatorVerdict>,
}

impl LookupCache {
    pub fn new(store: Arc<dyn DocStore>, clock: Arc<dyn Clock>) -> LookupCache {
        LookupCache { store, clock, positive_ttl: Duration::from_secs(24 * 3600), negative_ttl: Duration::from_secs(6 * 3600) }
    }

    pub(super) fn key(indicator: &Indicator) -> String {
        // Sort keys are capped at 1 KB: long values (URLs) are keyed by their hash.
        if indicator.value.len() > 200 {
            format!("{}:sha256:{}", indicator.kind, hex::encode(sha2::Sha256::digest(indicator.value.as_bytes())))
        } else {
            format!("{}:{}", indicator.kind, indicator.value)
        }
    }

    /// A fresh cached answer. A cache that cannot be read is a miss, never an error.
    pub async fn get(&self, source: &str, indicator: &Indicator) -> Option<Lookup> {
        let doc = match self.store.get(Table::Cache, source, &Self::key(indicator)).await {
            Ok(d) => d?,
            Err(e) => {
                tracing::warn!(error = %e, "cache unavailable; looking up");
                return None;
            }
        };
        let cached: Cached = serde_json::from_str(&doc.body).ok()?;
        if cached.expires_at_ms <= self.clock.now_ms() {
            return None;
        }
        Some(cached.found.map_or(Lookup::NotFound, Lookup::Found))
    }

    /// Fresh cached answers for several indicators in one read (BatchGetItem), by cache key.
    pub async fn get_many(&self, source: &str, indicators: &[Indicator]) -> std::collections::HashMap<String, Lookup> {
        let keys: Vec<(String, String)> = indicators.iter().map(|i| (source.to_string(), Self::key(i))).collect();
        let docs = match self.store.get_many(Table::Cache, &keys).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cache unavailable; looking up");
                return std::collections::HashMap::new();
            }
        };
        let now = self.clock.now_ms();
        keys.into_iter()
            .zip(docs)
            .filter_map(|((_, key), doc)| {
                let cached: Cached = serde_json::from_str(&doc?.body).ok()?;
                (cached.expires_at_ms > now).then(|| (key, cached.found.map_or(Lookup::NotFound, Lookup::Found)))
            })
            .collect()
    }

    /// Stores answers now (a deferred report, which is not stored, must not lose what was
    /// answered). A cache that cannot be written costs lookups later, nothing else.
    pub async fn remember(&self, writes: Vec<crate::ports::Write>) {
        if writes.is_empty() {
            return;
        }
        if let Err(e) = self.store.put_all(writes).await {
            tracing::warn!(error = %e, "cache write failed");
        }
    }

    /// The write that caches one answer (until its TTL: found and unknown answers age apart).
    pub fn answer(&self, source: &str, indicator: &Indicator, lookup: &Lookup) -> Option<crate::ports::Write> {
        let ttl = match lookup {
            Lookup::Found(_) => self.positive_ttl,
            Lookup::NotFound => self.negative_ttl,
        };
        let expires_at_ms = self.clock.now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let found = match lookup {
            Lookup::Found(v) => Some(v.clone()),
            Lookup::NotFound => None,
        };
        let body = serde_json::to_string(&Cached { expires_at_ms, found }).ok()?;
        // A cache answer is nobody's versioned record: the newest simply replaces it.
        Some(
            crate::ports::Write::new(Table::Cache, source, Self::key(indicator), body, crate::ports::Condition::Overwrite)
                .expires(Some(expires_at_ms / 1000)),
        )
    }
}
