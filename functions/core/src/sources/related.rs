//! Related cases from Dossier's own index: other recent cases sharing indicators, hosts or users.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::domain::{Case, CaseKey, IndicatorKind};
use crate::ports::{Condition, DocStore, StoreError, Table, Write};
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
    /// Close enough to be one intrusion: the dossier suggests merging (a gated action).
    #[serde(default)]
    pub merge: bool,
}

/// Within this many hours, shared evidence can make two cases one intrusion.
pub const MERGE_WINDOW_HOURS: f64 = 72.0;

impl RelatedCase {
    /// Two external indicators in common, or one and the same host or user, within the merge
    /// window: the same intrusion seen twice, not a coincidence of commodity infrastructure.
    pub fn merge_worthy(external: usize, entities: usize, hours_apart: f64) -> bool {
        hours_apart <= MERGE_WINDOW_HOURS && (external >= 2 || (external >= 1 && entities >= 1))
    }
}

/// The index is per tenant: a case never lists another tenant's case.
fn index_pk(tenant: &str, kind: IndicatorKind, value: &str) -> String {
    format!("idx#{tenant}#{kind}:{value}")
}

/// Whether an indicator can relate two cases: not a process name, not overlong, and not an
/// address every host has (loopback, link-local, reserved ranges).
fn relatable(ind: &crate::domain::Indicator) -> bool {
    use std::net::IpAddr;
    if ind.kind == IndicatorKind::Process || ind.value.len() > 512 {
        return false;
    }
    match ind.value.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) if ind.kind.is_ip() => !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified()),
        Ok(IpAddr::V6(v6)) if ind.kind.is_ip() => !(v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80),
        _ => crate::domain::Scope::of(ind.kind, &ind.value, ind.internal) != crate::domain::Scope::Reserved,
    }
}

/// A recent case as the hunt sees it: when, how severe, where, and what it carried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecentCase {
    pub case: CaseKey,
    pub at_ms: i64,
    pub severity: crate::domain::Severity,
    /// External indicators, as `kind value`.
    pub external: Vec<String>,
    pub hosts: Vec<String>,
    pub techniques: Vec<String>,
}

/// How long a case stays in the hunt's window.
const RECENT_TTL_MS: i64 = 7 * 86_400_000;
/// The item listing every tenant that has had a case (a set; the hunt reads it).
pub const TENANTS_PK: &str = "tenants";
pub const TENANTS_SK: &str = "all";

pub fn recent_pk(tenant: &str) -> String {
    format!("recent#{tenant}")
}

/// Tenants this process has already put in the tenant set: a warm function adds each once,
/// not once per case (adding twice changes nothing, so a cold start adding again is harmless).
#[derive(Default)]
pub struct KnownTenants(std::sync::Mutex<BTreeSet<String>>);

impl KnownTenants {
    fn is_new(&self, tenant: &str) -> bool {
        !self.0.lock().unwrap_or_else(|p| p.into_inner()).contains(tenant)
    }

    fn remember(&self, tenant: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(tenant.to_string());
    }
}

/// Lists a collected case where later cases and the hunt look: the tenant's recent cases and
/// the related-case index under each of its relatable indicators. All are records nobody
/// versions, rewritten whole on a redelivery, so they go as one batch (one round trip).
pub async fn index_case(store: &dyn DocStore, case: &Case, now_ms: i64, known: &KnownTenants) -> Result<(), StoreError> {
    let recent = RecentCase {
        case: case.key.clone(),
        at_ms: case.hint.created_at_ms.unwrap_or(now_ms),
        severity: case.severity,
        external: case
            .indicators
            .iter()
            .filter(|i| !i.internal && !i.kind.is_entity() && relatable(i))
            .take(50)
            .map(|i| format!("{} {}", i.kind, i.value))
            .collect(),
        hosts: case.indicators.iter().filter(|i| i.kind == IndicatorKind::Hostname).take(20).map(|i| i.value.clone()).collect(),
        techniques: case.all_technique_ids(),
    };
    let recent = serde_json::to_string(&recent).map_err(|e| StoreError::Rejected(e.to_string()))?;
    let mut writes = vec![Write::new(Table::Cases, recent_pk(&case.key.tenant), case.key.storage_id(), recent, Condition::Overwrite)
        .expires(Some((now_ms + RECENT_TTL_MS) / 1000))];
    let entry =
        IndexEntry { case: case.key.clone(), at_ms: case.hint.created_at_ms.unwrap_or(now_ms), techniques: case.all_technique_ids() };
    let body = serde_json::to_string(&entry).map_err(|e| StoreError::Rejected(e.to_string()))?;
    let mut indexed = BTreeSet::new();
    for ind in case.indicators.iter().filter(|i| relatable(i)).take(INDEX_CAP) {
        let pk = index_pk(&case.key.tenant, ind.kind, &ind.value);
        if indexed.insert(pk.clone()) {
            writes.push(
                Write::new(Table::Cases, pk, case.key.storage_id(), body.clone(), Condition::Overwrite)
                    .expires(Some((now_ms + INDEX_TTL_MS) / 1000)),
            );
        }
    }
    store.put_all(writes).await?;
    if known.is_new(&case.key.tenant) {
        store.add_to_set(Table::Cases, TENANTS_PK, TENANTS_SK, &case.key.tenant).await?;
        known.remember(&case.key.tenant);
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
        // Per related case: its entry, what it shares, and how many of those are external
        // indicators and how many hosts, users or internal addresses.
        let mut by_case: BTreeMap<String, (IndexEntry, Vec<String>, usize, usize)> = BTreeMap::new();
        let mut errors = Vec::new();
        for ind in case.indicators.iter().filter(|i| relatable(i)).take(INDEX_CAP) {
            match self.store.query(Table::Cases, &index_pk(&case.key.tenant, ind.kind, &ind.value), "").await {
                Ok(docs) => {
                    for d in docs.into_iter().filter(|d| d.sk != case.key.storage_id()).take(50) {
                        let Ok(entry) = serde_json::from_str::<IndexEntry>(&d.body) else { continue };
                        if entry.case.tenant != case.key.tenant {
                            continue;
                        }
                        let slot = by_case.entry(d.sk).or_insert_with(|| (entry, Vec::new(), 0, 0));
                        slot.1.push(format!("{} {}", ind.kind, ind.value));
                        if ind.internal || ind.kind.is_entity() {
                            slot.3 += 1;
                        } else {
                            slot.2 += 1;
                        }
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
            .map(|(entry, shared, external, entities)| {
                let techniques: Vec<String> = entry.techniques.iter().filter(|t| mine.contains(t)).cloned().collect();
                let hours = (at - entry.at_ms).abs() as f64 / 3_600_000.0;
                let proximity = if hours <= 24.0 {
                    1.0
                } else if hours <= MERGE_WINDOW_HOURS {
                    0.7
                } else if hours <= 168.0 {
                    0.4
                } else {
                    0.1
                };
                // External indicators say the most, then the same host or user, then techniques.
                let score = ((external as f64).min(3.0) / 3.0 * 0.5
                    + (entities as f64).min(2.0) / 2.0 * 0.2
                    + (techniques.len() as f64).min(3.0) / 3.0 * 0.15
                    + proximity * 0.15)
                    .min(1.0);
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
                    merge: RelatedCase::merge_worthy(external, entities, hours),
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
