//! The ATT&CK source: names and tactics of the case's techniques, and the groups that use them.

use async_trait::async_trait;

use crate::domain::{attack, Case, Resolved};
use crate::sources::{Deferred, Source, SourceReport, SourceStatus};

/// MITRE ATT&CK (embedded v18.1): names and tactics of the case's techniques, overlapping groups.
pub struct AttackSource;

pub const ATTACK_SOURCE: &str = "attack";

#[async_trait]
impl Source for AttackSource {
    fn name(&self) -> &str {
        ATTACK_SOURCE
    }

    async fn enrich(&self, case: &Case) -> Result<SourceReport, Deferred> {
        let ids = case.all_technique_ids();
        if ids.is_empty() {
            return Ok(SourceReport::skipped(ATTACK_SOURCE, "no ATT&CK technique cited by XDR or inferred from the alerts"));
        }
        let a = attack();
        let mut report = SourceReport::skipped(ATTACK_SOURCE, "");
        let mut notes = Vec::new();
        let mut active_ids = Vec::new();
        for id in &ids {
            match a.resolve(id) {
                Resolved::Active(t) => {
                    active_ids.push(t.id.clone());
                    report.techniques.push(t.clone());
                }
                Resolved::Retired { name, replaced_by: Some(t) } => {
                    notes.push(format!("{id} ({name}) is retired; read as {} {}", t.id, t.name));
                    active_ids.push(t.id.clone());
                    report.techniques.push(t.clone());
                }
                Resolved::Retired { name, replaced_by: None } => notes.push(format!("{id} ({name}) is deprecated without replacement")),
                Resolved::Unknown => notes.push(format!("{id} is not an ATT&CK v{} Enterprise technique", crate::domain::ATTACK_VERSION)),
            }
        }
        report.groups = a.groups_overlapping(&active_ids, 5).groups;
        report.status = if report.techniques.is_empty() { SourceStatus::NotFound } else { SourceStatus::Ok };
        report.note = Some(if notes.is_empty() {
            format!("{} technique(s) resolved, {} group(s) sharing distinctive ones", report.techniques.len(), report.groups.len())
        } else {
            notes.join("; ")
        });
        Ok(report)
    }
}
