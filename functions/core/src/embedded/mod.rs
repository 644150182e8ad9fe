//! In-memory implementations of the ports with the semantics of the AWS ones: conditional writes,
//! at-least-once delivery with visibility timeouts, delays and a dead-letter queue per queue.
//! Used by the local CLI and by tests; the contract tests run the same suite against both.

mod queue;
mod store;
mod xdr;

pub use queue::MemoryQueue;
pub use store::MemoryStore;
pub use xdr::{RecordingXdr, XdrWrite};

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::ports::{Clock, SecretError, SecretStore};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-written (every update is a
    // single insert), so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Secrets from a map (local runs read them from the environment into this).
#[derive(Default)]
pub struct MemorySecrets {
    values: HashMap<String, String>,
}

impl MemorySecrets {
    pub fn new(values: impl IntoIterator<Item = (String, String)>) -> MemorySecrets {
        MemorySecrets { values: values.into_iter().collect() }
    }
}

#[async_trait]
impl SecretStore for MemorySecrets {
    async fn get_secret(&self, id: &str) -> Result<String, SecretError> {
        self.values.get(id).cloned().ok_or_else(|| SecretError::NotFound(id.to_string()))
    }
}

/// A clock tests move by hand.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(start_ms))
    }
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(i64::try_from(by.as_millis()).unwrap_or(0), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
