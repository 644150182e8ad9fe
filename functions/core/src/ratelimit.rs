//! Rate limits shared by every concurrent invocation: a fixed-window counter kept in the store
//! and moved forward with conditional writes. An exhausted window defers the message to the
//! window's end (it is not failed, so nothing is lost under a burst).

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

use crate::ports::{Clock, DocStore, PutOutcome, ReplaceOutcome, StoreError, Table};

/// At most `limit` calls per `window`, for everyone sharing `name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub name: String,
    pub limit: u32,
    pub window: Duration,
}

#[derive(Serialize, Deserialize)]
struct Window {
    start_ms: i64,
    used: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("rate limit `{name}` exhausted; next window in {after:?}")]
    Exhausted { name: String, after: Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct RateLimiter {
    store: Arc<dyn DocStore>,
    clock: Arc<dyn Clock>,
}

const PK: &str = "ratelimit";
const CONFLICT_RETRIES: usize = 16;

impl RateLimiter {
    pub fn new(store: Arc<dyn DocStore>, clock: Arc<dyn Clock>) -> RateLimiter {
        RateLimiter { store, clock }
    }

    /// Takes one call from the current window, or says how long to wait.
    pub async fn acquire(&self, limit: &RateLimit) -> Result<(), LimitError> {
        let window_ms = i64::try_from(limit.window.as_millis()).unwrap_or(i64::MAX).max(1);
        for _ in 0..CONFLICT_RETRIES {
            let now = self.clock.now_ms();
            let fresh = Window { start_ms: now, used: 1 };
            let Some(doc) = self.store.get(Table::Cases, PK, &limit.name).await? else {
                match self.store.put_new(Table::Cases, PK, &limit.name, &encode(&fresh), None).await? {
                    PutOutcome::Written => return Ok(()),
                    PutOutcome::AlreadyExists => continue,
                }
            };
            let current: Window = serde_json::from_str(&doc.body)
                .map_err(|e| StoreError::Corrupt { key: format!("{PK}/{}", limit.name), reason: e.to_string() })?;
            let next = if now >= current.start_ms + window_ms {
                fresh
            } else if current.used < limit.limit {
                Window { start_ms: current.start_ms, used: current.used + 1 }
            } else {
                let wait = u64::try_from(current.start_ms + window_ms - now).unwrap_or(0);
                // A little spread so the waiting messages do not all come back in the same millisecond.
                let spread = u64::from(crate::signing::new_nonce().as_bytes()[0] % 16) * 25;
                return Err(LimitError::Exhausted { name: limit.name.clone(), after: Duration::from_millis(wait + spread) });
            };
            match self.store.replace(Table::Cases, PK, &limit.name, &encode(&next), doc.version).await? {
                ReplaceOutcome::Written => return Ok(()),
                ReplaceOutcome::Conflict => continue,
            }
        }
        Err(StoreError::Unavailable(format!("rate limit {} under heavy contention", limit.name)).into())
    }
}

fn encode(w: &Window) -> String {
    serde_json::to_string(w).expect("window serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::{ManualClock, MemoryStore};

    #[tokio::test]
    async fn allows_the_limit_per_window_then_defers_to_the_window_end() {
        let clock = Arc::new(ManualClock::new(0));
        let rl = RateLimiter::new(Arc::new(MemoryStore::new()), clock.clone());
        let limit = RateLimit { name: "xdr".into(), limit: 3, window: Duration::from_secs(60) };
        for _ in 0..3 {
            rl.acquire(&limit).await.unwrap();
        }
        clock.advance(Duration::from_secs(20));
        match rl.acquire(&limit).await {
            Err(LimitError::Exhausted { after, .. }) => {
                assert!(after >= Duration::from_secs(40) && after < Duration::from_secs(41), "{after:?}")
            }
            other => panic!("{other:?}"),
        }
        clock.advance(Duration::from_secs(40));
        rl.acquire(&limit).await.unwrap();
    }

    #[tokio::test]
    async fn concurrent_callers_never_exceed_the_limit() {
        let clock = Arc::new(ManualClock::new(0));
        let rl = RateLimiter::new(Arc::new(MemoryStore::new()), clock);
        let limit = RateLimit { name: "xdr".into(), limit: 10, window: Duration::from_secs(60) };
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (rl, limit) = (rl.clone(), limit.clone());
            tasks.push(tokio::spawn(async move { rl.acquire(&limit).await.is_ok() }));
        }
        let mut granted = 0;
        for t in tasks {
            if t.await.unwrap() {
                granted += 1;
            }
        }
        assert_eq!(granted, 10);
    }
}
