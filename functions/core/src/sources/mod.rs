//! Enrichment sources behind one port. Each source reports a `SourceReport` per case: verdicts
//! per indicator (threat intel, assets, identities), technique context (ATT&CK), related cases,
//! or why it had nothing to say.

mod attack;
mod cache;
mod feeds;
pub mod history;
mod knowledge;
mod model;
mod per_indicator;
mod related;

use async_trait::async_trait;
pub use attack::{AttackSource, ATTACK_SOURCE};
pub use cache::LookupCache;
pub use feeds::{CmdbExport, FeedError, IntelFeed, CMDB_EXPORT_SOURCE, INTEL_FEED_SOURCE};
pub use model::*;
pub use per_indicator::{LookupLimits, PerIndicator, Quota};

use crate::domain::Case;

pub use knowledge::{knowledge_query, remember_closure, KnowledgeSource, KNOWLEDGE_SOURCE};
pub use related::{
    index_case, recent_pk, KnownTenants, RecentCase, RelatedCase, RelatedCases, RELATED_CASES_SOURCE, TENANTS_PK, TENANTS_SK,
};

/// A source the deployment has not configured (no key): it reports `skipped` with the reason.
pub struct NotConfigured {
    pub name: String,
    pub reason: String,
}

#[async_trait]
impl Source for NotConfigured {
    fn name(&self) -> &str {
        &self.name
    }
    async fn enrich(&self, _case: &Case) -> Result<SourceReport, Deferred> {
        Ok(SourceReport::skipped(&self.name, self.reason.clone()))
    }
}
