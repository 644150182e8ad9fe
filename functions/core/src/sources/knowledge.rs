//! The knowledge source: runbooks, wiki pages and past incident reports that fit the case,
//! retrieved by what the case is about (its techniques, alert names, processes and kind), with
//! the tenant's own posted closure summaries searched alongside. Internal names never go into a
//! query to an external knowledge base.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::domain::{attack, Case, CaseKey, IndicatorKind};
use crate::knowledge::{KnowledgeIndex, Passage, RetrieveError, Retriever, Section};
use crate::ports::{DocStore, PutOutcome, StoreError, Table};
use crate::sources::{Deferred, Source, SourceReport, SourceStatus};

pub const KNOWLEDGE_SOURCE: &str = "knowledge";
/// Passages cited per case.
const PASSAGES: usize = 3;
/// Past closure summaries searched per case (the newest).
const PAST_REPORTS: usize = 200;
/// How long a closure summary stays searchable.
const PAST_REPORT_TTL_MS: i64 = 365 * 86_400_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PastReport {
    document: String,
    section: String,
    text: String,
}

fn past_reports_pk(tenant: &str) -> String {
    format!("kb#{tenant}")
}

/// Keeps a posted closure summary searchable for later cases of the tenant.
pub async fn remember_closure(store: &dyn DocStore, key: &CaseKey, summary: &str, now_ms: i64) -> Result<(), StoreError> {
    let report = PastReport {
        document: format!("closure of incident {}", key.incident_id),
        section: "closure summary".into(),
        text: crate::text::clean_text(summary, 4000),
    };
    let body = serde_json::to_string(&report).map_err(|e| StoreError::Rejected(e.to_string()))?;
    match store
        .put_new(Table::Cases, &past_reports_pk(&key.tenant), &key.storage_id(), &body, Some((now_ms + PAST_REPORT_TTL_MS) / 1000))
        .await?
    {
        PutOutcome::Written | PutOutcome::AlreadyExists => Ok(()),
    }
}

/// What the case is about, as a retrieval query: technique ids and names, alert names, process
/// names and the incident kind. Host and user names are left out of external queries.
pub fn knowledge_query(case: &Case, external: bool) -> String {
    let a = attack();
    let mut terms: Vec<String> = Vec::new();
    for id in case.all_technique_ids() {
        terms.push(id.clone());
        if let Some(t) = a.technique(&id) {
            terms.push(t.name.clone());
        }
    }
    terms.extend(case.alert_names.iter().take(5).cloned());
    terms.push(case.facts.kind.as_str().to_string());
    for i in &case.indicators {
        match i.kind {
            IndicatorKind::Process => terms.push(i.value.clone()),
            IndicatorKind::Hostname | IndicatorKind::User if !external => terms.push(i.value.clone()),
            _ => {}
        }
    }
    crate::text::clean_text(&terms.join(" "), 1000)
}

pub struct KnowledgeSource {
    pub retriever: Arc<dyn Retriever>,
    /// Where posted closure summaries are kept (none: runbooks only).
    pub store: Option<Arc<dyn DocStore>>,
}

impl KnowledgeSource {
    async fn past_reports(&self, tenant: &str, query: &str) -> Result<Vec<Passage>, StoreError> {
        let Some(store) = &self.store else { return Ok(Vec::new()) };
        let docs = store.query(Table::Cases, &past_reports_pk(tenant), "").await?;
        let reports: Vec<Section> = docs
            .iter()
            .rev()
            .take(PAST_REPORTS)
            .filter_map(|d| serde_json::from_str::<PastReport>(&d.body).ok())
            .map(|r| Section { document: r.document, section: r.section, text: r.text })
            .collect();
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        Ok(KnowledgeIndex::from_sections(reports).search(query, PASSAGES))
    }
}

#[async_trait]
impl Source for KnowledgeSource {
    fn name(&self) -> &str {
        KNOWLEDGE_SOURCE
    }

    async fn enrich(&self, case: &Case) -> Result<SourceReport, Deferred> {
        let started = std::time::Instant::now();
        let query = knowledge_query(case, self.retriever.external());
        let mut report = SourceReport::skipped(KNOWLEDGE_SOURCE, "");
        let mut passages = match self.retriever.retrieve(&query, PASSAGES).await {
            Ok(p) => p,
            Err(RetrieveError::Retryable(why)) => {
                return Err(Deferred { source_name: KNOWLEDGE_SOURCE.into(), after: std::time::Duration::from_secs(30), reason: why })
            }
            Err(RetrieveError::Refused(why)) => {
                report.status = SourceStatus::Error;
                report.errors.push(why.clone());
                report.note = Some(format!("knowledge base refused the query: {why}"));
                return Ok(report);
            }
        };
        report.calls = u32::from(self.retriever.external());
        let past = match self.past_reports(&case.key.tenant, &query).await {
            Ok(p) => p,
            Err(e) => {
                report.errors.push(format!("past reports: {e}"));
                Vec::new()
            }
        };
        passages.extend(past);
        passages.sort_by(|a, b| b.score.total_cmp(&a.score));
        passages.dedup_by(|a, b| a.document == b.document && a.section == b.section);
        passages.truncate(PASSAGES);
        report.status = if passages.is_empty() { SourceStatus::NotFound } else { SourceStatus::Ok };
        report.note = Some(match passages.first() {
            Some(p) => format!("{} passage(s); best: {} § {}", passages.len(), p.document, p.section),
            None => "no runbook or past report fits".into(),
        });
        report.passages = passages;
        report.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{normalise, IncidentHint, InternalNames, Trigger};

    /// A query to an external knowledge base never carries a host or user name; a local index
    /// (inside the function) may use them.
    #[test]
    fn internal_names_stay_out_of_external_queries() {
        let names = InternalNames::default();
        let mut case = Case::new(CaseKey::new("acme", "1").unwrap(), Trigger::Local, IncidentHint::default(), 0, &Default::default());
        case.alert_names = vec!["Suspicious PowerShell Command Line".into()];
        case.indicators = [
            (IndicatorKind::Hostname, "fin-ws-0231"),
            (IndicatorKind::User, "CORP\\j.doe"),
            (IndicatorKind::Process, "powershell.exe"),
            (IndicatorKind::Ipv4, "10.20.31.45"),
        ]
        .iter()
        .filter_map(|(k, v)| normalise(*k, v, &names))
        .collect();
        let external = knowledge_query(&case, true);
        for secret in ["fin-ws-0231", "j.doe", "10.20.31.45"] {
            assert!(!external.to_lowercase().contains(secret), "`{secret}` in an external query: {external}");
        }
        assert!(external.contains("powershell.exe") && external.contains("Suspicious PowerShell Command Line"), "{external}");
        let local = knowledge_query(&case, false);
        assert!(local.contains("fin-ws-0231"), "{local}");
    }
}
