//! enrich: one source, one case (carried on the message as collected). Records the source's
//! report with its audit record (the first one stands) while adding the source to the case's
//! fan-in set in one atomic step; the worker that completes the set hands the case to
//! synthesis. Enrich writes only reports, the fan-in set and the lookup cache: never the case.

use crate::metrics::{Metric, MetricSet};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn, Instrument};

use super::{Context, Deadline, MessageHandler, StageError};
use crate::domain::{Case, CaseKey, CaseStatus};
use crate::messages::{Message, Snapshot, SynthesisReason};
use crate::ports::QueueName;
use crate::sources::{Source, SourceReport, SourceStatus};

pub struct Enrich {
    ctx: Context,
    sources: BTreeMap<String, Arc<dyn Source>>,
}

impl Enrich {
    /// A deployed enrich function holds one source; the local runner holds them all.
    pub fn new(ctx: Context, sources: Vec<Arc<dyn Source>>) -> Enrich {
        Enrich { ctx, sources: sources.into_iter().map(|s| (s.name().to_string(), s)).collect() }
    }

    async fn enrich(&self, key: &CaseKey, source_name: &str, snapshot: Option<Snapshot>, deadline: Deadline) -> Result<(), StageError> {
        let source = self
            .sources
            .get(source_name)
            .ok_or_else(|| StageError::BadMessage(format!("this function does not serve source `{source_name}`")))?;
        let now = self.ctx.now_ms();
        // The case as collect fanned it out (its indicators do not change after collection).
        // Past the fan-in deadline synthesis may have begun: then the stored case decides.
        let carried = self
            .ctx
            .carried::<Case>(snapshot)
            .map(|v| v.value)
            .filter(|c| c.key == *key && c.status == CaseStatus::Enriching && c.enrich_deadline_ms.is_some_and(|d| now < d));
        let case = match carried {
            Some(c) => c,
            None => match self.ctx.store.case(key).await? {
                Some(stored) => stored.value,
                None => return Err(StageError::BadMessage(format!("no case {key}"))),
            },
        };
        if !matches!(case.status, CaseStatus::Enriching) {
            // Synthesis already has what it will use: spending quota now would change nothing.
            info!(source = source_name, status = %case.status, "case past enrichment; source not asked");
            return Ok(());
        }
        // The source gets what is left of the invocation, minus a little for the writes, and
        // reports what it found a second before that (its answers then reach the cache); the
        // outer bound is for a source that cannot stop early.
        let budget = deadline.remaining(now).saturating_sub(Duration::from_secs(2));
        let source_budget = budget.saturating_sub(Duration::from_secs(1));
        let mut report = match tokio::time::timeout(budget, source.enrich_within(&case, source_budget)).await {
            Ok(Ok(r)) => r,
            Ok(Err(deferred)) => {
                info!(source = source_name, after = ?deferred.after, "source deferred");
                return Err(StageError::RetryLater { reason: deferred.to_string(), after: deferred.after });
            }
            Err(_) => {
                let mut r = SourceReport::skipped(source_name, format!("no answer within this invocation's {} s", budget.as_secs()));
                r.status = SourceStatus::TimedOut;
                r
            }
        };
        // The report with its audit record, and the answers for the shared cache, side by side.
        let to_cache = std::mem::take(&mut report.to_cache);
        let mut event = self.ctx.event(
            key,
            "source.reported",
            format!("{source_name}: {} ({} calls, {} ms)", report.status.as_str(), report.calls, report.latency_ms),
        );
        event.once_key = Some(format!("source.reported#{source_name}"));
        // The report, the fan-in and the cache side by side: the source joins the set while its
        // report is being stored, and whoever sees the set complete sends at once (synthesis
        // that finds a report not stored yet reads again moments later; it claims the work
        // once). A failed write leaves the message to come back: every step is idempotent.
        let fan_in = async {
            let reported = self.ctx.store.join_fan_in(key, source_name).await?;
            if case.missing_sources(&reported).is_empty() {
                let all = Message::Synthesize { case: key.clone(), reason: SynthesisReason::AllReported };
                self.ctx.send(&QueueName::synthesize(), &all, Duration::ZERO).await?;
            }
            Ok::<_, StageError>(())
        };
        let (stored, fanned_in, ()) = tokio::join!(self.ctx.store.report(key, &report, &event), fan_in, self.remember(to_cache));
        if stored? {
            self.reported(&report);
        }
        fanned_in
    }

    /// Answers for the shared cache. Losing them costs lookups later, never the report.
    async fn remember(&self, to_cache: Vec<crate::ports::Write>) {
        if to_cache.is_empty() {
            return;
        }
        if let Err(e) = self.ctx.store.docs().put_all(to_cache).await {
            warn!(error = %e, "cache write failed");
        }
    }

    /// The first stored report of a source: logged and counted once.
    fn reported(&self, report: &SourceReport) {
        let name = report.source.as_str();
        info!(source = name, status = report.status.as_str(), calls = report.calls, latency_ms = report.latency_ms, "source reported");
        let failed = matches!(report.status, SourceStatus::Error | SourceStatus::TimedOut);
        self.ctx.metric(
            MetricSet::new(vec![
                Metric::count("SourceErrors", f64::from(u8::from(failed))),
                Metric::count("SourceCalls", f64::from(report.calls)),
                Metric::ms("SourceLatency", i64::try_from(report.latency_ms).unwrap_or(i64::MAX)),
            ])
            .with_dimension("Source", name),
        );
    }
}

#[async_trait]
impl MessageHandler for Enrich {
    async fn handle(&self, body: &str, deadline: Deadline) -> Result<(), StageError> {
        let Message::Enrich { case, source, snapshot } = Message::parse(body)? else {
            return Err(StageError::BadMessage("enrich accepts only `enrich` messages".into()));
        };
        let span = tracing::info_span!("case", case = %case, stage = "enrich", source = %source);
        self.enrich(&case, &source, snapshot, deadline).instrument(span).await
    }
}
