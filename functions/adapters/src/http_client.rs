//! The one HTTP layer every vendor adapter uses: the reqwest client configuration (rustls+ring
//! with the process's shared trust roots, timeouts, a user agent), one classification of an HTTP
//! answer, and one retry with jittered exponential backoff. Each adapter maps [`Status`] onto its
//! own error type; none classifies status codes itself.

use std::future::Future;
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

/// What an HTTP status means to a caller, the same for every vendor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Success,
    /// 401: the credentials were refused.
    Unauthorized,
    /// 402: the licence or plan does not cover the call.
    PaymentRequired,
    /// 403: the credentials lack a permission.
    Forbidden,
    NotFound,
    /// 429: wait (as long as the vendor says) and try again.
    RateLimited,
    /// 5xx (Anthropic's "overloaded" 529 included): the vendor failed; retrying can help.
    Server,
    /// Any other 4xx: the request is wrong; retrying cannot help.
    Rejected,
    /// 1xx/3xx: nothing these APIs answer.
    Unexpected,
}

pub fn classify(status: u16) -> Status {
    match status {
        200..=299 => Status::Success,
        401 => Status::Unauthorized,
        402 => Status::PaymentRequired,
        403 => Status::Forbidden,
        404 => Status::NotFound,
        429 => Status::RateLimited,
        500..=599 => Status::Server,
        400..=499 => Status::Rejected,
        _ => Status::Unexpected,
    }
}

/// An answer: its status, classified, the wait the vendor asked for, and the body.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub status: Status,
    pub retry_after: Option<Duration>,
    pub body: String,
}

impl Reply {
    /// The start of the body without control characters, for an error message.
    pub fn short_body(&self) -> String {
        self.body.chars().filter(|c| !c.is_control()).take(200).collect()
    }
}

/// Why no answer came. The difference matters for writes: a request that never left changed
/// nothing; one that left may have been applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoAnswer {
    /// The connection never opened (refused, DNS, TLS): nothing was sent.
    NotSent(String),
    /// Sent, and the answer did not come in time.
    TimedOut,
    /// Sent, and the connection broke or the body could not be read.
    Broken(String),
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoAnswer::NotSent(why) => write!(f, "not sent: {why}"),
            NoAnswer::TimedOut => f.write_str("timed out"),
            NoAnswer::Broken(why) => write!(f, "no answer: {why}"),
        }
    }
}

fn no_answer(e: &reqwest::Error) -> NoAnswer {
    // reqwest's Display names the URL, which may carry a key in its query: keep the kind only.
    let kind = if e.is_body() || e.is_decode() { "reading the body failed" } else { "request failed" };
    if e.is_timeout() {
        NoAnswer::TimedOut
    } else if e.is_connect() {
        NoAnswer::NotSent("connection failed".into())
    } else {
        NoAnswer::Broken(kind.into())
    }
}

/// Sends one request and reads the whole answer.
pub async fn exchange(req: reqwest::RequestBuilder) -> Result<Reply, NoAnswer> {
    let resp = req.send().await.map_err(|e| no_answer(&e))?;
    let code = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    let body = resp.text().await.map_err(|e| no_answer(&e))?;
    Ok(Reply { code, status: classify(code), retry_after, body })
}

/// How long the vendor asked to wait: `Retry-After` in seconds (the HTTP-date form is rare on
/// these APIs and treated as absent), Qualys's `X-RateLimit-ToWait-Sec`, or Okta's
/// `X-Rate-Limit-Reset` (the UTC epoch second the limit resets). Vendors that send none
/// (VirusTotal) get the caller's default.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(secs) = header("retry-after").or_else(|| header("x-ratelimit-towait-sec")).and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    let reset = header("x-rate-limit-reset").and_then(|v| v.parse::<u64>().ok())?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    // At least a second: the reset second itself may still be limited.
    Some(Duration::from_secs(reset.saturating_sub(now).max(1)))
}

/// Calls `call` up to `attempts` times while `retryable` says another try can help, waiting
/// `base`, 2×`base`, 4×`base`… plus up to `base` of random jitter in between (so workers that
/// failed together do not retry together).
pub async fn retry<T, E, F, Fut>(attempts: u32, base: Duration, retryable: impl Fn(&E) -> bool, mut call: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if attempt < attempts && retryable(&e) => {
                let wait = backoff(base, attempt);
                tracing::warn!(attempt, wait_ms = wait.as_millis() as u64, error = %e, "call failed; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn backoff(base: Duration, attempt: u32) -> Duration {
    let mut jitter = [0u8; 2];
    getrandom::getrandom(&mut jitter).ok();
    let fraction = f64::from(u16::from_le_bytes(jitter)) / f64::from(u16::MAX);
    base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1))) + base.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_one_meaning() {
        assert_eq!(classify(200), Status::Success);
        assert_eq!(classify(204), Status::Success);
        assert_eq!(classify(401), Status::Unauthorized);
        assert_eq!(classify(402), Status::PaymentRequired);
        assert_eq!(classify(403), Status::Forbidden);
        assert_eq!(classify(404), Status::NotFound);
        assert_eq!(classify(429), Status::RateLimited);
        assert_eq!(classify(503), Status::Server);
        assert_eq!(classify(529), Status::Server);
        assert_eq!(classify(500), Status::Server);
        assert_eq!(classify(502), Status::Server);
        assert_eq!(classify(400), Status::Rejected);
        assert_eq!(classify(422), Status::Rejected);
        assert_eq!(classify(302), Status::Unexpected);
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let base = Duration::from_millis(100);
        for attempt in 1..=4 {
            let wait = backoff(base, attempt);
            let floor = base * 2u32.pow(attempt - 1);
            assert!(wait >= floor && wait <= floor + base, "attempt {attempt}: {wait:?}");
        }
    }

    #[tokio::test]
    async fn retries_only_what_can_help_and_stops_at_the_limit() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r: Result<(), String> = retry(
            3,
            Duration::from_millis(1),
            |e: &String| e == "again",
            || async {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err("again".to_string())
            },
        )
        .await;
        assert_eq!((r, calls.load(std::sync::atomic::Ordering::Relaxed)), (Err("again".into()), 3));
        calls.store(0, std::sync::atomic::Ordering::Relaxed);
        let r: Result<(), String> = retry(
            3,
            Duration::from_millis(1),
            |e: &String| e == "again",
            || async {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err("final".to_string())
            },
        )
        .await;
        assert_eq!((r, calls.load(std::sync::atomic::Ordering::Relaxed)), (Err("final".into()), 1));
    }
}
