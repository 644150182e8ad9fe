//! hunt: a scheduled look across each tenant's recent low- and medium-severity cases for
//! clusters that together look like a campaign — one external indicator on three or more hosts,
//! or the same distinctive technique chain on three or more hosts. Each new cluster gets one
//! proposal: a note on every case of the cluster (posted by writeback, once each) and a gated
//! `open_investigation` action on the newest case. XDR's public API documents no call to open an
//! investigation for a set of incidents, so approving it posts the decision to each of them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use super::{Context, StageError};
use crate::domain::{attack, Action, ActionKind, CaseKey, Draft, DraftKind, Proposal, Severity, COMMONPLACE_SHARE};
use crate::messages::Message;
use crate::ports::{PutOutcome, QueueName, Table};
use crate::signing::LinkSigner;
use crate::sources::{recent_pk, RecentCase, TENANTS_PK, TENANTS_SK};
use crate::store::{Commit, Committed};

/// Hosts (or cases, where hosts are unknown) a pattern must span to be a cluster.
pub const CLUSTER_MIN_HOSTS: usize = 3;
/// Proposals per tenant and run, most cases first.
const MAX_CLUSTERS: usize = 5;
/// How long a cluster's proposal marker is kept (the same cluster is not proposed again).
const PROPOSED_TTL_MS: i64 = 30 * 86_400_000;

/// A set of cases that together look like one campaign, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    /// Stable across runs: what the cases share, hashed with the tenant.
    pub id: String,
    /// `domain evil.example` or `techniques T1003.001, T1021.002`.
    pub shared: String,
    pub cases: Vec<CaseKey>,
    pub hosts: Vec<String>,
}

/// The clusters among recent cases (pure; tested). Only cases XDR rated low or medium (or not
/// at all): a high or critical case is worked on its own already.
pub fn find_clusters(tenant: &str, recent: &[RecentCase]) -> Vec<Cluster> {
    let quiet: Vec<&RecentCase> = recent.iter().filter(|r| r.severity <= Severity::Medium).collect();
    let a = attack();
    let distinctive = |t: &String| (a.groups_using(t) as f64) < COMMONPLACE_SHARE * a.known_groups() as f64;
    let mut by_pattern: BTreeMap<String, Vec<&RecentCase>> = BTreeMap::new();
    for r in &quiet {
        for e in &r.external {
            by_pattern.entry(e.clone()).or_default().push(r);
        }
        let mut chain: Vec<String> = r.techniques.iter().filter(|t| distinctive(t)).cloned().collect();
        chain.sort();
        chain.dedup();
        if chain.len() >= 2 {
            by_pattern.entry(format!("techniques {}", chain.join(", "))).or_default().push(r);
        }
    }
    let mut clusters: Vec<Cluster> = Vec::new();
    for (shared, cases) in by_pattern {
        let hosts: BTreeSet<String> = cases.iter().flat_map(|r| r.hosts.iter().cloned()).collect();
        let spread = if hosts.is_empty() { cases.len() } else { hosts.len() };
        if spread < CLUSTER_MIN_HOSTS || cases.len() < 2 {
            continue;
        }
        let mut keys: Vec<CaseKey> = cases.iter().map(|r| r.case.clone()).collect();
        keys.sort_by(|x, y| x.incident_id.cmp(&y.incident_id));
        keys.dedup();
        // The same cases for two reasons: one cluster (the indicator reads better than the chain).
        if clusters.iter().any(|c| c.cases == keys) {
            continue;
        }
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{tenant}|{shared}").as_bytes());
        clusters.push(Cluster { id: hex::encode(&digest[..6]), shared, cases: keys, hosts: hosts.into_iter().collect() });
    }
    clusters.sort_by(|x, y| y.cases.len().cmp(&x.cases.len()).then(x.shared.cmp(&y.shared)));
    clusters.truncate(MAX_CLUSTERS);
    clusters
}

/// What one hunt run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HuntReport {
    pub tenants: usize,
    pub clusters: usize,
    pub proposed: usize,
}

pub struct Hunt {
    ctx: Context,
    signer: Arc<LinkSigner>,
}

impl Hunt {
    pub fn new(ctx: Context, signer: Arc<LinkSigner>) -> Hunt {
        Hunt { ctx, signer }
    }

    pub async fn run(&self) -> Result<HuntReport, StageError> {
        let docs = self.ctx.store.docs();
        let tenants = docs.set_members(Table::Cases, TENANTS_PK, TENANTS_SK).await?;
        let mut report = HuntReport { tenants: tenants.len(), ..HuntReport::default() };
        for tenant in &tenants {
            let recent: Vec<RecentCase> =
                docs.query(Table::Cases, &recent_pk(tenant), "").await?.iter().filter_map(|d| serde_json::from_str(&d.body).ok()).collect();
            for cluster in find_clusters(tenant, &recent) {
                report.clusters += 1;
                match self.propose(tenant, &cluster, &recent).await {
                    Ok(true) => report.proposed += 1,
                    Ok(false) => {}
                    // One cluster failing does not stop the others; the next run tries it again.
                    Err(e) => warn!(tenant = %tenant, cluster = %cluster.id, error = %e, "campaign proposal not made; next run"),
                }
            }
        }
        info!(tenants = report.tenants, clusters = report.clusters, proposed = report.proposed, "hunt done");
        Ok(report)
    }

    /// Notes on every case of the cluster and the gated action on the newest, once per cluster:
    /// everything is created under fixed ids first (a re-run after a crash finds them), the
    /// marker that closes the cluster last.
    async fn propose(&self, tenant: &str, cluster: &Cluster, recent: &[RecentCase]) -> Result<bool, StageError> {
        let marker_pk = format!("campaign#{tenant}");
        if self.ctx.store.docs().get(Table::Cases, &marker_pk, &cluster.id).await?.is_some() {
            return Ok(false);
        }
        let now = self.ctx.now_ms();
        let budgets = self.ctx.config.budgets;
        let newest = cluster
            .cases
            .iter()
            .max_by_key(|k| recent.iter().find(|r| &r.case == *k).map_or(0, |r| r.at_ms))
            .cloned()
            .ok_or_else(|| StageError::BadMessage("an empty cluster".into()))?;
        let incidents: Vec<&str> = cluster.cases.iter().map(|k| k.incident_id.as_str()).collect();
        let hosts = if cluster.hosts.is_empty() { String::new() } else { format!(" on {}", cluster.hosts.join(", ")) };
        let text = format!(
            "[Dossier] Possible campaign — automated suggestion (no AI) — pending analyst review\n\
             Incidents {} share {}{hosts}. Each was rated low or medium on its own; together they look like one campaign.\n\
             Suggested: open one investigation for all of them (an approver decides on incident {}: Cortex XDR's API has no call to do so; the decision is posted to each incident).",
            incidents.join(", "),
            cluster.shared,
            newest.incident_id
        );
        let draft_id = format!("campaign-{}", cluster.id);
        let mut messages = Vec::new();
        for key in &cluster.cases {
            let draft = Draft::new(
                key,
                &draft_id,
                DraftKind::Note,
                format!("{text}\n{}", crate::dossier::draft_marker(key, &draft_id)),
                now,
                &budgets,
            );
            let mut commit = Commit::new();
            commit.create(&draft)?;
            commit.audit(&self.ctx.event(key, "campaign.suggested", format!("cluster {}: {}", cluster.id, cluster.shared)))?;
            match self.ctx.store.commit(commit).await? {
                Committed::Written | Committed::Conflict { .. } => {}
            }
            messages.push((
                QueueName::writeback(),
                Message::WriteComment { case: key.clone(), draft_id: draft_id.clone(), snapshot: None },
                Duration::ZERO,
            ));
        }
        let proposal = Proposal {
            kind: ActionKind::OpenInvestigation,
            target: incidents.join(","),
            target_label: format!("incidents {}", incidents.join(", ")),
            rationale: format!("{} across {} incident(s){hosts}", cluster.shared, incidents.len()),
        };
        let expires = now.saturating_add(i64::try_from(self.ctx.config.link_ttl.as_millis()).unwrap_or(i64::MAX / 4));
        let mut action = Action::proposed(&newest, proposal, now, expires, &budgets);
        action.links = super::approval_links(&self.ctx.config, &self.signer, &newest, &action.id, expires, Severity::Medium);
        if action.links.is_empty() {
            action.record_notifications(Vec::new(), true);
        }
        let mut commit = Commit::new();
        commit.create(&action)?;
        commit.audit(&self.ctx.event(&newest, "action.proposed", format!("{} by the hunt: {}", action.id, cluster.shared)))?;
        if let Committed::Written = self.ctx.store.commit(commit).await? {
            if !action.links.is_empty() {
                messages.push((
                    QueueName::writeback(),
                    Message::Notify { case: newest.clone(), action_id: action.id.clone(), attempt: 1 },
                    Duration::ZERO,
                ));
            }
        }
        self.ctx.send_all(messages).await?;
        match self.ctx.store.docs().put_new(Table::Cases, &marker_pk, &cluster.id, "{}", Some((now + PROPOSED_TTL_MS) / 1000)).await? {
            PutOutcome::Written => Ok(true),
            PutOutcome::AlreadyExists => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recent(id: &str, severity: Severity, host: &str, external: &[&str], techniques: &[&str]) -> RecentCase {
        RecentCase {
            case: CaseKey::new("acme", id).unwrap(),
            at_ms: id.parse::<i64>().unwrap_or(0),
            severity,
            external: external.iter().map(|s| s.to_string()).collect(),
            hosts: vec![host.to_string()],
            techniques: techniques.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn one_indicator_on_three_hosts_is_a_cluster_two_hosts_or_high_cases_are_not() {
        let c2 = "domain c2.example.net";
        let cases = vec![
            recent("1", Severity::Low, "ws-1", &[c2], &[]),
            recent("2", Severity::Low, "ws-2", &[c2], &[]),
            recent("3", Severity::Medium, "ws-3", &[c2, "ipv4 203.0.113.9"], &[]),
            recent("4", Severity::High, "ws-4", &[c2], &[]),
            recent("5", Severity::Low, "ws-5", &["ipv4 203.0.113.9"], &[]),
        ];
        let clusters = find_clusters("acme", &cases);
        assert_eq!(clusters.len(), 1, "{clusters:?}");
        assert_eq!(clusters[0].shared, c2);
        assert_eq!(
            clusters[0].cases.iter().map(|k| k.incident_id.as_str()).collect::<Vec<_>>(),
            ["1", "2", "3"],
            "the high case is worked on its own"
        );
        assert_eq!(clusters[0].id, find_clusters("acme", &cases)[0].id, "stable across runs");
        assert_ne!(clusters[0].id, find_clusters("globex", &cases)[0].id, "per tenant");
    }

    #[test]
    fn a_distinctive_technique_chain_on_three_hosts_is_a_cluster_commonplace_ones_are_not() {
        let rare = ["T1486", "T1490"];
        let common = ["T1059.001", "T1105", "T1027"];
        let cases: Vec<RecentCase> = (1..=3).map(|i| recent(&i.to_string(), Severity::Low, &format!("srv-{i}"), &[], &rare)).collect();
        assert_eq!(find_clusters("acme", &cases)[0].shared, "techniques T1486, T1490");
        let cases: Vec<RecentCase> = (1..=3).map(|i| recent(&i.to_string(), Severity::Low, &format!("ws-{i}"), &[], &common)).collect();
        assert!(find_clusters("acme", &cases).is_empty(), "PowerShell and downloads on three hosts is every Tuesday");
    }
}
