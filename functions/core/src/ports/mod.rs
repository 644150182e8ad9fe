//! Ports: what the core needs from the outside world. Adapters implement them (AWS SDK, HTTP);
//! `crate::embedded` implements them in memory with the same semantics, and one contract suite
//! runs over both.

mod export;
mod notify;
mod oidc;
mod queue;
mod store;
mod xdr;

pub use export::*;
pub use notify::*;
pub use oidc::*;
pub use queue::*;
pub use store::*;
pub use xdr::*;

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret `{0}` not found")]
    NotFound(String),
    #[error("secret store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn get_secret(&self, id: &str) -> Result<String, SecretError>;
}

pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;

    /// How long `d` of this clock's time lasts on the wall clock (a compressed test clock runs
    /// faster): what to sleep to wait for it.
    fn wall(&self, d: std::time::Duration) -> std::time::Duration {
        d
    }
}

/// The real wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }
}
