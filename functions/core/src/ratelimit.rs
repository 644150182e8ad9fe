//! Rate limits shared by every concurrent invocation: a fixed-window counter kept in the store
//! and moved forward with conditional writes. An exhausted window defers the message to the
//! window's end (it is not failed, so nothing is lost under a burst).

use std::sync::Arc;
use std::time::Duration;

use crate::ports::{Clock, DocStore, StoreError, Table};

/// At most `limit` calls per `window`, for everyone sharing `name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub name: String,
    pub limit: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("rate limit `{name}` exhausted; next window in {after:?}")]
    Exhausted { name: String, after: Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Windows kept in the cache table (`ratelimit` / `<name>#<window start ms>`), expiring by TTL.
#[derive(Clone)]
pub struct RateLimiter {
    store: Arc<dyn DocStore>,
    clock: Arc<dyn Clock>,
}

const PK: &str = "ratelimit";

impl RateLimiter {
    pub fn new(store: Arc<dyn DocStore>, clock: Arc<dyn Clock>) -> RateLimiter {
        RateLimiter { store, clock }
    }

    /// Takes one call from the current window (one conditional update), or says how long to wait.
    pub async fn acquire(&self, limit: &RateLimit) -> Result<(), LimitError> {
        let window_ms = i64::try_from(limit.window.as_millis()).unwrap_or(i64::MAX / 4).max(1);
        let now = self.clock.now_ms();
        let start = now - now.rem_euclid(window_ms);
        let end = start + window_ms;
        let sk = format!("{}#{start}", limit.name);
        let expires_at_s = (end + window_ms) / 1000 + 1;
        if self.store.count_up(Table::Cache, PK, &sk, u64::from(limit.limit), expires_at_s).await?.is_some() {
            return Ok(());
        }
        let wait = u64::try_from(end - now).unwrap_or(0);
        // A little spread so the waiting messages do not all come back in the same millisecond.
        let spread = u64::from(crate::random::new_nonce().as_bytes()[0] % 16) * 25;
        Err(LimitError::Exhausted { name: limit.name.clone(), after: Duration::from_millis(wait + spread) })
    }
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
