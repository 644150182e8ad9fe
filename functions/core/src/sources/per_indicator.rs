//! Runs an `IndicatorSource` over a case's indicators: filters, caches, spends shared quota, bounds time.

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::{Case, Indicator};
use crate::ports::Write;
use crate::ratelimit::{LimitError, RateLimit, RateLimiter};
use crate::sources::{CallCounter, Deferred, IndicatorSource, Lookup, LookupCache, LookupError, Source, SourceReport, SourceStatus};

/// Limits applied around a per-indicator source.
#[derive(Clone, Copy, Debug)]
pub struct LookupLimits {
    pub concurrency: usize,
    pub per_lookup_timeout: Duration,
    /// Most indicators looked up per case (the rest are named in the note).
    pub max_lookups: usize,
}

impl Default for LookupLimits {
    fn default() -> Self {
        LookupLimits { concurrency: 4, per_lookup_timeout: Duration::from_secs(10), max_lookups: 300 }
    }
}

/// Below this much time left in the budget a lookup is not started.
const MIN_LOOKUP_TIME: Duration = Duration::from_millis(250);

/// Quotas shared by every invocation of a source (e.g. VirusTotal public: 4/min and 500/day).
#[derive(Clone)]
pub struct Quota {
    pub limiter: RateLimiter,
    pub limits: Vec<RateLimit>,
}

/// Runs an `IndicatorSource` over a case's indicators: filters, caches, spends quota, bounds time.
pub struct PerIndicator<S> {
    pub inner: S,
    pub limits: LookupLimits,
    pub cache: Option<LookupCache>,
    pub quota: Option<Quota>,
    in_flight: InFlight,
}

/// Lookups of the same indicator running at once in this process (several cases of one burst
/// share their indicators): the first calls the source, the others wait for it and take its
/// answer from the turn itself (not from the store: a hundred waiters reading the cache one
/// after another, each under the turn, would queue behind each other's store round trips)
/// instead of spending quota on the same question.
#[derive(Default)]
struct InFlight(std::sync::Mutex<std::collections::HashMap<String, Arc<TurnLock>>>);

/// One indicator's turn, and the answer its first holder found.
type TurnLock = tokio::sync::Mutex<Option<Lookup>>;

/// Holds one indicator's turn; the map entry goes when the last holder or waiter is done.
struct Turn<'a> {
    in_flight: &'a InFlight,
    key: String,
    lock: Arc<TurnLock>,
}

impl InFlight {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<TurnLock>>> {
        // Every update is a single insert or remove: a poisoned map is still consistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn turn(&self, key: String) -> Turn<'_> {
        let lock = self.map().entry(key.clone()).or_default().clone();
        Turn { in_flight: self, key, lock }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut map = self.in_flight.map();
        // Ours and the map's: nobody else holds or waits for this indicator.
        if Arc::strong_count(&self.lock) <= 2 {
            map.remove(&self.key);
        }
    }
}

impl<S: IndicatorSource> PerIndicator<S> {
    pub fn new(inner: S) -> PerIndicator<S> {
        PerIndicator { inner, limits: LookupLimits::default(), cache: None, quota: None, in_flight: InFlight::default() }
    }
    pub fn with_limits(mut self, limits: LookupLimits) -> Self {
        self.limits = limits;
        self
    }
    pub fn with_cache(mut self, cache: LookupCache) -> Self {
        self.cache = Some(cache);
        self
    }
    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.quota = Some(quota);
        self
    }

    /// One indicator's answer. `cached` is what the cache held for it when the case's lookups
    /// began (read for all of them at once); a miss then is not read again: a lookup of the same
    /// indicator running meanwhile hands its answer over through the turn, and only one that
    /// finished in the moment between that read and this turn is repeated (a rare second call,
    /// where reading every miss twice cost every case a store round trip per indicator).
    /// Returns the answer, whether it came from the cache, and the write that caches a new one.
    async fn one(
        &self,
        ind: &Indicator,
        cached: Option<Lookup>,
        calls: &CallCounter,
        stop_at: Instant,
    ) -> (Result<Lookup, LookupError>, bool, Option<Write>) {
        if let Some(hit) = cached {
            return (Ok(hit), true, None);
        }
        let name = self.inner.name();
        // Without a cache a waiter would have no answer to read: no coalescing then.
        let turn = self.cache.as_ref().map(|_| self.in_flight.turn(LookupCache::key(ind)));
        let mut held = match &turn {
            Some(t) => Some(t.lock.lock().await),
            None => None,
        };
        // The holder before us found the answer: ours too, without asking the store again.
        if let Some(found) = held.as_ref().and_then(|h| h.as_ref()) {
            return (Ok(found.clone()), true, None);
        }
        if let Some(q) = &self.quota {
            for limit in &q.limits {
                match q.limiter.acquire(limit).await {
                    Ok(()) => {}
                    Err(LimitError::Exhausted { after, .. }) => {
                        return (Err(LookupError::RateLimited { retry_after: Some(after) }), false, None)
                    }
                    Err(LimitError::Store(e)) => return (Err(LookupError::Transport(format!("quota store: {e}"))), false, None),
                }
            }
        }
        // What is left of the budget after waiting for the turn and the quota: too little for a
        // lookup to answer, and none is started (the call and the quota would be spent for nothing).
        let left = stop_at.saturating_duration_since(Instant::now());
        if left < MIN_LOOKUP_TIME {
            return (Err(LookupError::Timeout), false, None);
        }
        let result = match tokio::time::timeout(self.limits.per_lookup_timeout.min(left), self.inner.lookup(ind, calls)).await {
            Ok(r) => r,
            Err(_) => Err(LookupError::Timeout),
        };
        let mut to_cache = None;
        if let (Some(cache), Ok(lookup)) = (&self.cache, &result) {
            to_cache = cache.answer(name, ind, lookup);
            if let Some(h) = held.as_mut() {
                **h = Some(lookup.clone());
            }
        }
        (result, false, to_cache)
    }
}

#[async_trait]
impl<S: IndicatorSource> Source for PerIndicator<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn enrich(&self, case: &Case) -> Result<SourceReport, Deferred> {
        self.enrich_within(case, Duration::from_secs(24 * 3600)).await
    }

    /// Lookups start only before `budget` runs out and each gets at most what is left of it;
    /// those not started are named in the note. The report, and the answers it carries for the
    /// cache, are ready by the end of the budget.
    async fn enrich_within(&self, case: &Case, budget: Duration) -> Result<SourceReport, Deferred> {
        let started = Instant::now();
        let stop_at = started.checked_add(budget).unwrap_or(started + Duration::from_secs(24 * 3600));
        let name = self.inner.name();
        let eligible: Vec<&Indicator> = case
            .indicators
            .iter()
            .filter(|i| self.inner.accepts(i.kind))
            // Second line of defence: internal indicators never reach an external service.
            .filter(|i| !(self.inner.sends_externally() && i.internal))
            .collect();
        if eligible.is_empty() {
            return Ok(SourceReport::skipped(name, "no indicator of a kind this source looks up"));
        }
        let over_cap = eligible.len().saturating_sub(self.limits.max_lookups);
        let lookups: Vec<Indicator> = eligible.into_iter().take(self.limits.max_lookups).cloned().collect();
        let calls = CallCounter::default();
        let calls_ref = &calls;
        // One read for every indicator's cached answer, not one each.
        let mut cached = match &self.cache {
            Some(cache) => cache.get_many(name, &lookups).await,
            None => std::collections::HashMap::new(),
        };
        let with_cached: Vec<(Indicator, Option<Lookup>)> = lookups
            .into_iter()
            .map(|ind| {
                let hit = cached.remove(&LookupCache::key(&ind));
                (ind, hit)
            })
            .collect();
        // `None`: not asked, the budget was spent.
        let results: Vec<(Indicator, Option<Result<Lookup, LookupError>>, bool, Option<Write>)> = stream::iter(with_cached)
            .map(|(ind, hit): (Indicator, Option<Lookup>)| async move {
                if hit.is_none() && stop_at.saturating_duration_since(Instant::now()) < MIN_LOOKUP_TIME {
                    return (ind, None, false, None);
                }
                let (r, cached, to_cache) = self.one(&ind, hit, calls_ref, stop_at).await;
                (ind, Some(r), cached, to_cache)
            })
            .buffer_unordered(self.limits.concurrency.max(1))
            .collect()
            .await;
        let mut report = SourceReport::skipped(name, "");
        report.note = None;
        report.calls = calls.get();
        let (mut found, mut not_found, mut timeouts, mut cached, mut unasked) = (0usize, 0usize, 0usize, 0usize, 0usize);
        let mut retry_after: Option<Duration> = None;
        for (ind, r, was_cached, to_cache) in results {
            cached += usize::from(was_cached);
            report.to_cache.extend(to_cache);
            let Some(r) = r else {
                unasked += 1;
                continue;
            };
            match r {
                Ok(Lookup::Found(v)) => {
                    found += 1;
                    report.verdicts.push(v);
                }
                Ok(Lookup::NotFound) => not_found += 1,
                Err(LookupError::RateLimited { retry_after: after }) => {
                    retry_after = Some(retry_after.unwrap_or_default().max(after.unwrap_or(Duration::from_secs(60))));
                }
                Err(e) => {
                    if e == LookupError::Timeout {
                        timeouts += 1;
                    }
                    if report.errors.len() < 10 {
                        report.errors.push(format!("{} {}: {e}", ind.kind, ind.value));
                    }
                }
            }
        }
        if let Some(after) = retry_after {
            // What was answered is cached now; the retry spends quota only on the rest.
            if let Some(cache) = &self.cache {
                cache.remember(std::mem::take(&mut report.to_cache)).await;
            }
            return Err(Deferred { source_name: name.to_string(), after, reason: "quota exhausted or rate limited by the source".into() });
        }
        report.verdicts.sort_by(|a, b| b.verdict.cmp(&a.verdict).then_with(|| a.value.cmp(&b.value)));
        let failed = report.errors.len();
        report.status = if found > 0 {
            SourceStatus::Ok
        } else if not_found > 0 {
            SourceStatus::NotFound
        } else if (timeouts > 0 || unasked > 0) && timeouts == failed {
            SourceStatus::TimedOut
        } else {
            SourceStatus::Error
        };
        let mut note = format!("{found} found, {not_found} unknown to the source");
        if cached > 0 {
            note.push_str(&format!(", {cached} from cache"));
        }
        if failed > 0 {
            note.push_str(&format!(", {failed} failed"));
        }
        if unasked > 0 {
            note.push_str(&format!(", {unasked} not looked up within the invocation's {:.1} s", budget.as_secs_f64()));
        }
        if over_cap > 0 {
            note.push_str(&format!(", {over_cap} not looked up (cap {})", self.limits.max_lookups));
        }
        report.note = Some(note);
        report.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{normalise, CaseKey, IncidentHint, IndicatorKind, InternalNames, Trigger};
    use crate::sources::{AttackSource, IntelFeed, VerdictLevel};

    fn case_with(indicators: Vec<Indicator>, techniques: Vec<&str>) -> Case {
        let mut c = Case::new(CaseKey::new("t", "1").unwrap(), Trigger::Local, IncidentHint::default(), 0, &Default::default());
        c.indicators = indicators;
        c.techniques = techniques.into_iter().map(str::to_string).collect();
        c
    }

    fn ind(kind: IndicatorKind, v: &str) -> Indicator {
        normalise(kind, v, &InternalNames::default()).unwrap()
    }

    struct Recording(std::sync::Mutex<Vec<String>>, Option<LookupError>);

    #[async_trait]
    impl IndicatorSource for Recording {
        fn name(&self) -> &'static str {
            "rec"
        }
        fn accepts(&self, kind: IndicatorKind) -> bool {
            kind.is_ip()
        }
        fn sends_externally(&self) -> bool {
            true
        }
        async fn lookup(&self, i: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
            calls.add(1);
            self.0.lock().unwrap().push(i.value.clone());
            match &self.1 {
                Some(e) => Err(e.clone()),
                None => Ok(Lookup::NotFound),
            }
        }
    }

    #[tokio::test]
    async fn internal_indicators_never_reach_external_sources() {
        let src = PerIndicator::new(Recording(Default::default(), None));
        let c = case_with(
            vec![ind(IndicatorKind::Ipv4, "10.0.0.1"), ind(IndicatorKind::Ipv4, "8.8.8.8"), ind(IndicatorKind::Hostname, "pc1")],
            vec![],
        );
        let r = src.enrich(&c).await.unwrap();
        assert_eq!(*src.inner.0.lock().unwrap(), vec!["8.8.8.8".to_string()]);
        assert_eq!((r.status, r.calls), (SourceStatus::NotFound, 1));
    }

    #[tokio::test]
    async fn rate_limit_defers_the_whole_source() {
        let src =
            PerIndicator::new(Recording(Default::default(), Some(LookupError::RateLimited { retry_after: Some(Duration::from_secs(30)) })));
        let c = case_with(vec![ind(IndicatorKind::Ipv4, "8.8.8.8")], vec![]);
        assert_eq!(src.enrich(&c).await.unwrap_err().after, Duration::from_secs(30));
    }

    #[tokio::test]
    async fn the_cache_answers_repeat_lookups_until_its_ttl() {
        use crate::embedded::{ManualClock, MemoryStore};
        let clock = Arc::new(ManualClock::new(0));
        let cache = LookupCache::new(Arc::new(MemoryStore::new()), clock.clone());
        let src = PerIndicator::new(Recording(Default::default(), None)).with_cache(cache);
        let c = case_with(vec![ind(IndicatorKind::Ipv4, "8.8.8.8")], vec![]);
        // The answer comes back for the cache, written where the report is (the enrich stage).
        let first = src.enrich(&c).await.unwrap();
        assert_eq!((first.calls, first.to_cache.len()), (1, 1));
        let cache = src.cache.as_ref().unwrap();
        cache.remember(first.to_cache).await;
        for _ in 0..100 {
            let r = src.enrich(&c).await.unwrap();
            assert_eq!((r.calls, r.status, r.to_cache.len()), (0, SourceStatus::NotFound, 0));
        }
        // Negative answers live 6 hours.
        clock.advance(Duration::from_secs(6 * 3600 + 1));
        assert_eq!(src.enrich(&c).await.unwrap().calls, 1);
        assert_eq!(src.inner.0.lock().unwrap().len(), 2);
    }

    /// Answers after a pause, so that lookups from several cases overlap.
    struct Slow(std::sync::atomic::AtomicU32, Duration);

    #[async_trait]
    impl IndicatorSource for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn accepts(&self, kind: IndicatorKind) -> bool {
            kind.is_ip()
        }
        fn sends_externally(&self) -> bool {
            true
        }
        async fn lookup(&self, _: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
            calls.add(1);
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(self.1).await;
            Ok(Lookup::NotFound)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_lookups_of_one_indicator_make_one_call() {
        use crate::embedded::MemoryStore;
        let cache = LookupCache::new(Arc::new(MemoryStore::new()), Arc::new(crate::ports::SystemClock));
        let src = PerIndicator::new(Slow(Default::default(), Duration::from_millis(30))).with_cache(cache);
        let c = case_with(vec![ind(IndicatorKind::Ipv4, "8.8.8.8"), ind(IndicatorKind::Ipv4, "9.9.9.9")], vec![]);
        let reports = futures_util::future::join_all((0..20).map(|_| src.enrich(&c))).await;
        assert_eq!(src.inner.0.load(std::sync::atomic::Ordering::SeqCst), 2, "one call per indicator for 20 concurrent cases");
        let calls: u32 = reports.iter().map(|r| r.as_ref().unwrap().calls).sum();
        assert_eq!(calls, 2);
        assert!(reports.iter().all(|r| r.as_ref().unwrap().status == SourceStatus::NotFound));
        assert!(src.in_flight.map().is_empty(), "no entry outlives its lookups");
        // Without a cache there is no answer to share: each case calls.
        let uncached = PerIndicator::new(Slow(Default::default(), Duration::from_millis(30)));
        futures_util::future::join_all((0..3).map(|_| uncached.enrich(&c))).await;
        assert_eq!(uncached.inner.0.load(std::sync::atomic::Ordering::SeqCst), 6);
    }

    /// A budget shorter than the lookups: the report comes when it ends, with the answers found
    /// by then (and their cache writes) and the rest named as not looked up.
    #[tokio::test]
    async fn a_spent_budget_reports_what_was_found_and_keeps_it_for_the_cache() {
        use crate::embedded::MemoryStore;
        let cache = LookupCache::new(Arc::new(MemoryStore::new()), Arc::new(crate::ports::SystemClock));
        let src = PerIndicator::new(Slow(Default::default(), Duration::from_millis(200)))
            .with_cache(cache)
            .with_limits(LookupLimits { concurrency: 1, ..LookupLimits::default() });
        let ips: Vec<Indicator> = (1..=8).map(|n| ind(IndicatorKind::Ipv4, &format!("8.8.8.{n}"))).collect();
        let r = src.enrich_within(&case_with(ips, vec![]), Duration::from_millis(500)).await.unwrap();
        let asked = src.inner.0.load(std::sync::atomic::Ordering::SeqCst) as usize;
        assert!((1..8).contains(&asked), "some asked, not all: {asked}");
        assert!(!r.to_cache.is_empty() && r.to_cache.len() <= asked, "answers found are kept for the cache: {}", r.to_cache.len());
        let note = r.note.unwrap();
        assert!(note.contains(&format!("{} not looked up within the invocation's 0.5 s", 8 - asked)), "{note}");
        assert_eq!(r.status, SourceStatus::NotFound, "what was answered still counts");
    }

    #[tokio::test]
    async fn an_exhausted_quota_defers_without_calling() {
        use crate::embedded::{ManualClock, MemoryStore};
        let clock = Arc::new(ManualClock::new(0));
        let limiter = RateLimiter::new(Arc::new(MemoryStore::new()), clock.clone());
        let quota = Quota { limiter, limits: vec![RateLimit { name: "rec-minute".into(), limit: 2, window: Duration::from_secs(60) }] };
        let src = PerIndicator::new(Recording(Default::default(), None))
            .with_quota(quota)
            .with_cache(LookupCache::new(Arc::new(MemoryStore::new()), clock.clone()))
            .with_limits(LookupLimits { concurrency: 1, ..LookupLimits::default() });
        let c = case_with(
            vec![ind(IndicatorKind::Ipv4, "8.8.8.8"), ind(IndicatorKind::Ipv4, "9.9.9.9"), ind(IndicatorKind::Ipv4, "1.1.1.1")],
            vec![],
        );
        let deferred = src.enrich(&c).await.unwrap_err();
        assert!(deferred.after <= Duration::from_secs(61), "{deferred:?}");
        assert_eq!(src.inner.0.lock().unwrap().len(), 2, "only the quota's worth of calls");
        // A deferred report is not stored, but what was answered is cached at once: the retry in
        // the next window asks only for the rest.
        clock.advance(Duration::from_secs(61));
        let r = src.enrich(&c).await.unwrap();
        assert_eq!((r.calls, src.inner.0.lock().unwrap().len()), (1, 3));
    }

    #[tokio::test]
    async fn attack_source_resolves_and_ranks_groups() {
        let c = case_with(vec![], vec!["T1059.001", "T1002", "T9999", "T1486"]);
        let r = AttackSource.enrich(&c).await.unwrap();
        assert_eq!(r.status, SourceStatus::Ok);
        let ids: Vec<_> = r.techniques.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, vec!["T1059.001", "T1560", "T1486"]);
        assert!(r.note.unwrap().contains("T9999"));
        assert!(!r.groups.is_empty());
    }

    #[tokio::test]
    async fn intel_feed_parses_and_matches() {
        let feed = IntelFeed::from_csv(
            "type,value,verdict,score,description,reference\nipv4,8.8.8.8,malicious,90,C2 server,https://intel.example/1\n",
        )
        .unwrap();
        let src = PerIndicator::new(feed);
        let r = src.enrich(&case_with(vec![ind(IndicatorKind::Ipv4, "8.8.8.8")], vec![])).await.unwrap();
        assert_eq!(r.verdicts[0].verdict, VerdictLevel::Malicious);
        assert_eq!(r.calls, 0);
        assert_eq!(IntelFeed::from_csv("ipv4,999.1.1.1,malicious,1,x").err().unwrap().line, 1);
        assert!(IntelFeed::from_csv("ipv4,8.8.8.8,evil,1,x").is_err());
    }
}
