//! enrich: one source, one case. Records the source's report once (first write wins) and moves
//! the case to synthesis when every expected source has reported.

use crate::metrics::{Metric, MetricSet};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, Instrument};

use super::{Context, MessageHandler, StageError};
use crate::case::{CaseKey, CaseStatus};
use crate::messages::{Message, SynthesisReason};
use crate::ports::{PutOutcome, QueueName};
use crate::repo::source_sk;
use crate::sources::Source;

pub struct Enrich {
    ctx: Context,
    sources: BTreeMap<String, Arc<dyn Source>>,
}

impl Enrich {
    /// A deployed enrich function holds one source; the local runner holds them all.
    pub fn new(ctx: Context, sources: Vec<Arc<dyn Source>>) -> Enrich {
        Enrich { ctx, sources: sources.into_iter().map(|s| (s.name().to_string(), s)).collect() }
    }

    async fn enrich(&self, key: &CaseKey, source_name: &str) -> Result<(), StageError> {
        let source = self
            .sources
            .get(source_name)
            .ok_or_else(|| StageError::BadMessage(format!("this function does not serve source `{source_name}`")))?;
        let Some(case) = self.ctx.repo.case(key).await? else {
            return Err(StageError::BadMessage(format!("no case {key}")));
        };
        let already = self.ctx.repo.exists(key, &source_sk(source_name)).await?;
        if !already {
            let mut report = match source.enrich(&case).await {
                Ok(r) => r,
                Err(deferred) => {
                    info!(source = source_name, after = ?deferred.after, "source deferred");
                    return Err(StageError::RetryLater { reason: deferred.to_string(), after: deferred.after });
                }
            };
            if case.status != CaseStatus::Enriching {
                // Synthesis already started (deadline): keep the result, say it came late.
                let note = report.note.take().unwrap_or_default();
                report.note = Some(format!("{note} (arrived after synthesis started)").trim().to_string());
            }
            let outcome = self.ctx.repo.record_source(key, &report).await?;
            if outcome == PutOutcome::Written {
                info!(
                    source = source_name,
                    status = report.status.as_str(),
                    calls = report.calls,
                    latency_ms = report.latency_ms,
                    "source reported"
                );
                let failed = matches!(report.status, crate::sources::SourceStatus::Error | crate::sources::SourceStatus::TimedOut);
                self.ctx.metric(
                    MetricSet::new(vec![
                        Metric::count("SourceErrors", f64::from(u8::from(failed))),
                        Metric::count("SourceCalls", f64::from(report.calls)),
                        Metric::ms("SourceLatency", i64::try_from(report.latency_ms).unwrap_or(i64::MAX)),
                    ])
                    .with_dimension("Source", source_name),
                );
                self.ctx
                    .audit(
                        key,
                        "source.reported",
                        format!("{}: {} ({} calls, {} ms)", source_name, report.status.as_str(), report.calls, report.latency_ms),
                    )
                    .await?;
            }
        }
        self.check_complete(key).await
    }

    /// Fan-in: anyone who sees all sources present may send; synthesis claims the work once.
    async fn check_complete(&self, key: &CaseKey) -> Result<(), StageError> {
        let Some(progress) = self.ctx.repo.case_head(key).await? else {
            return Ok(());
        };
        if progress.status != CaseStatus::Enriching {
            return Ok(());
        }
        if progress.all_reported(&self.ctx.repo.reported_sources(key).await?) {
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
}

#[async_trait]
impl MessageHandler for Enrich {
    async fn handle(&self, body: &str) -> Result<(), StageError> {
        let Message::Enrich { case, source } = Message::parse(body)? else {
            return Err(StageError::BadMessage("enrich accepts only `enrich` messages".into()));
        };
        let span = tracing::info_span!("case", case = %case, stage = "enrich", source = %source);
        self.enrich(&case, &source).instrument(span).await
    }
}
