//! Related cases from Dossier's own index: other recent cases sharing indicators, hosts or users.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::domain::{Case, CaseKey, IndicatorKind};
use crate::ports::{DocStore, PutOutcome, StoreError, Table};
use crate::sources::{Deferred, Source, SourceReport, SourceStatus};

pub const RELATED_CASES_SOURCE: &str = "related-cases";
/// How long an indicator keeps pointing at a case.
const INDEX_TTL_MS: i64 = 30 * 86_400_000;
/// Most indicators indexed / looked up per case.
const INDEX_CAP: usize = 200;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct IndexEntry {
    case: CaseKey,
    at_ms: i64,
    techniques: Vec<String>,
}

/// A case that shares something with this one, and why it is listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelatedCase {
    pub case: CaseKey,
    pub shared_indicators: Vec<String>,
    pub shared_techniques: Vec<String>,
    pub hours_apart: f64,
    pub score: f64,
    pub reason: String,
}

fn index_pk(kind: IndicatorKind, value: &str) -> String {
    format!("idx#{kind}:{value}")
}

/// Indexes a case under its indicators, hosts and users (written by collect).
pub async fn index_case(store: &dyn DocStore, case: &Case, now_ms: i64) -> Result<(), StoreError> {
    let entry =
        IndexEntry { case: case.key.clone(), at_ms: case.hint.created_at_ms.unwrap_or(now_ms), techniques: case.all_technique_ids() };
    let body = serde_json::to_string(&entry).map_err(|e| StoreError::Rejected(e.to_string()))?;
    for ind in case.indicators.iter().filter(|i| i.kind != IndicatorKind::Process && i.value.len() <= 512).take(INDEX_CAP) {
        match store
            .put_new(Table::Cases, &index_pk(ind.kind, &ind.value), &case.key.storage_id(), &body, Some((now_ms + INDEX_TTL_MS) / 1000))
            .await?
        {
            PutOutcome::Written | PutOutcome::AlreadyExists => {}
        }
    }
    Ok(())
}

/// Recent cases sharing indicators, hosts or users with this one; shared techniques and time
/// proximity raise the score, and each carries its reason.
pub struct RelatedCases {
    pub store: Arc<dyn DocStore>,
}

#[async_trait]
impl Source for RelatedCases {
    fn name(&self) -> &str {
        RELATED_CASES_SOURCE
    }

    async fn enrich(&self, case: &Case) -> Result<SourceReport, Deferred> {
        let started = std::time::Instant::now();
        let mut by_case: BTreeMap<String, (IndexEntry, Vec<String>)> = BTreeMap::new();
        let mut errors = Vec::new();
        for ind in case.indicators.iter().filter(|i| i.kind != IndicatorKind::Process && i.value.len() <= 512).take(INDEX_CAP) {
            match self.store.query(Table::Cases, &index_pk(ind.kind, &ind.value), "").await {
                Ok(docs) => {
                    for d in docs.into_iter().filter(|d| d.sk != case.key.storage_id()).take(50) {
                        let Ok(entry) = serde_json::from_str::<IndexEntry>(&d.body) else { continue };
                        by_case.entry(d.sk).or_insert_with(|| (entry, Vec::new())).1.push(format!("{} {}", ind.kind, ind.value));
                    }
                }
                Err(e) if errors.len() < 5 => errors.push(e.to_string()),
                Err(_) => {}
            }
        }
        let mine = case.all_technique_ids();
        let at = case.hint.created_at_ms.unwrap_or(case.received_at_ms);
        let mut related: Vec<RelatedCase> = by_case
            .into_values()
            .map(|(entry, shared)| {
                let techniques: Vec<String> = entry.techniques.iter().filter(|t| mine.contains(t)).cloned().collect();
                let hours = (at - entry.at_ms).abs() as f64 / 3_600_000.0;
                let proximity = if hours <= 24.0 {
                    1.0
                } else if hours <= 168.0 {
                    0.5
                } else {
                    0.1
                };
                let score = (shared.len() as f64).min(5.0) / 5.0 * 0.6 + (techniques.len() as f64).min(3.0) / 3.0 * 0.25 + proximity * 0.15;
                let mut reason = format!("shares {}", shared.iter().take(3).cloned().collect::<Vec<_>>().join(", "));
                if shared.len() > 3 {
                    reason.push_str(&format!(" and {} more", shared.len() - 3));
                }
                if !techniques.is_empty() {
                    reason.push_str(&format!("; same techniques {}", techniques.join(", ")));
                }
                reason.push_str(&format!("; {hours:.0} h apart"));
                RelatedCase {
                    case: entry.case,
                    shared_indicators: shared,
                    shared_techniques: techniques,
                    hours_apart: hours,
                    score,
                    reason,
                }
            })
            .collect();
        related.sort_by(|a, b| b.score.total_cmp(&a.score));
        related.truncate(10);
        let mut report = SourceReport::skipped(RELATED_CASES_SOURCE, "");
        report.status = if related.is_empty() { SourceStatus::NotFound } else { SourceStatus::Ok };
        report.note = Some(format!("{} related case(s) in the last 30 days", related.len()));
        report.errors = errors;
        report.related_cases = related;
        report.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }
}
