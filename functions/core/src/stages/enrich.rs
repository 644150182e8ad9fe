//! enrich: one source, one case. Records the source's report (the first one stands), adds the
//! source to the case's fan-in set in one atomic step, and the worker that completes the set
//! hands the case to synthesis. Enrich writes only reports and the fan-in set: never the case.

use crate::metrics::{Metric, MetricSet};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, Instrument};

use super::{Context, Deadline, MessageHandler, StageError};
use crate::domain::{CaseKey, CaseStatus};
use crate::messages::{Message, SynthesisReason};
use crate::ports::QueueName;
use crate::sources::{Source, SourceReport, SourceStatus};
use crate::store::Commit;

pub struct Enrich {
    ctx: Context,
    sources: BTreeMap<String, Arc<dyn Source>>,
}

impl Enrich {
    /// A deployed enrich function holds one source; the local runner holds them all.
    pub fn new(ctx: Context, sources: Vec<Arc<dyn Source>>) -> Enrich {
        Enrich { ctx, sources: sources.into_iter().map(|s| (s.name().to_string(), s)).collect() }
    }

    async fn enrich(&self, key: &CaseKey, source_name: &str, deadline: Deadline) -> Result<(), StageError> {
        let source = self
            .sources
            .get(source_name)
            .ok_or_else(|| StageError::BadMessage(format!("this function does not serve source `{source_name}`")))?;
        let Some(case) = self.ctx.store.case(key).await? else {
            return Err(StageError::BadMessage(format!("no case {key}")));
        };
        let case = case.value;
        if !matches!(case.status, CaseStatus::Enriching) {
            // Synthesis already has what it will use: spending quota now would change nothing.
            info!(source = source_name, status = %case.status, "case past enrichment; source not asked");
            return Ok(());
        }
        // The source gets what is left of the invocation, minus a little for the writes.
        let budget = deadline.remaining(self.ctx.now_ms()).saturating_sub(Duration::from_secs(2));
        let report = match tokio::time::timeout(budget, source.enrich(&case)).await {
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
        let (first, reported) = self.ctx.store.report(key, &report).await?;
        if first {
            self.reported(key, &report).await?;
        }
        // Fan-in: the set is the same however often a report arrives; whoever sees it complete
        // sends, and synthesis claims the work once.
        if case.expected_sources.iter().all(|s| reported.contains(s)) {
            self.ctx
                .send(
                    &QueueName::synthesize(),
                    &Message::Synthesize { case: key.clone(), reason: SynthesisReason::AllReported },
                    Duration::ZERO,
                )
                .await?;
        }
        Ok(())
    }

    async fn reported(&self, key: &CaseKey, report: &SourceReport) -> Result<(), StageError> {
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
        let mut event = self.ctx.event(
            key,
            "source.reported",
            format!("{name}: {} ({} calls, {} ms)", report.status.as_str(), report.calls, report.latency_ms),
        );
        event.once_key = Some(format!("source.reported#{name}"));
        let mut commit = Commit::new();
        commit.audit(&event)?;
        self.ctx.store.commit(commit).await?;
        Ok(())
    }
}

#[async_trait]
impl MessageHandler for Enrich {
    async fn handle(&self, body: &str, deadline: Deadline) -> Result<(), StageError> {
        let Message::Enrich { case, source } = Message::parse(body)? else {
            return Err(StageError::BadMessage("enrich accepts only `enrich` messages".into()));
        };
        let span = tracing::info_span!("case", case = %case, stage = "enrich", source = %source);
        self.enrich(&case, &source, deadline).instrument(span).await
    }
}
