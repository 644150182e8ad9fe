//! MITRE ATT&CK Enterprise v18.1, embedded (see `data/attack/ORIGIN.md`).
//!
//! Parsed once on first use; lookups by technique ID, tactic order for narratives, and the groups
//! whose known techniques overlap a case's.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

const TECHNIQUES: &str = include_str!("../../data/attack/enterprise-techniques.csv");
const TACTICS: &str = include_str!("../../data/attack/enterprise-tactics.csv");
const RETIRED: &str = include_str!("../../data/attack/enterprise-techniques-retired.csv");
const GROUP_TECHNIQUES: &str = include_str!("../../data/attack/groups-techniques.csv");

pub const ATTACK_VERSION: &str = "18.1";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Technique {
    pub id: String,
    pub name: String,
    /// Display names in matrix order.
    pub tactics: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tactic {
    pub id: String,
    pub name: String,
    pub order: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub aliases: Vec<String>,
    pub techniques: Vec<String>,
}

/// A group whose known techniques overlap the case's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupMatch {
    pub id: String,
    pub name: String,
    pub shared: Vec<String>,
    /// Share of the case's techniques this group is known to use, 0..1.
    pub score: f64,
}

/// A technique inferred from alert content by a rule (when XDR cited none), with the evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferredTechnique {
    pub id: String,
    pub rule: String,
    pub about: String,
    /// Where it matched, bounded: `actor_process_command_line: powershell.exe -enc …`.
    pub evidence: String,
}

/// How a cited technique ID resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved<'a> {
    Active(&'a Technique),
    /// Retired ID with its replacement, when MITRE names one.
    Retired {
        name: &'a str,
        replaced_by: Option<&'a Technique>,
    },
    Unknown,
}

pub struct Attack {
    techniques: HashMap<String, Technique>,
    retired: HashMap<String, (String, Option<String>)>,
    tactics: Vec<Tactic>,
    groups: Vec<Group>,
    /// Technique id → indices of the groups known to use exactly it.
    users: HashMap<String, Vec<usize>>,
    /// Parent technique id → indices of the groups known to use one of its sub-techniques.
    sub_users: HashMap<String, Vec<usize>>,
}

/// The embedded tables, parsed on first use.
pub fn attack() -> &'static Attack {
    static A: OnceLock<Attack> = OnceLock::new();
    A.get_or_init(Attack::parse_embedded)
}

/// The data rows of an embedded table (its header skipped).
fn rows(csv: &str) -> impl Iterator<Item = Vec<String>> {
    // The tables are compiled in and checked by a test: a malformed one fails the build's tests.
    crate::text::csv_records(csv).unwrap_or_default().into_iter().skip(1).map(|(_, r)| r)
}

impl Attack {
    fn parse_embedded() -> Attack {
        let techniques = rows(TECHNIQUES)
            .filter(|r| r.len() >= 3)
            .map(|r| {
                let t = Technique {
                    id: r[0].to_string(),
                    name: r[1].to_string(),
                    tactics: r[2].split(';').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                };
                (t.id.clone(), t)
            })
            .collect();
        let retired = rows(RETIRED)
            .filter(|r| r.len() >= 4)
            .map(|r| (r[0].to_string(), (r[1].to_string(), (!r[3].is_empty()).then(|| r[3].to_string()))))
            .collect();
        let mut tactics: Vec<Tactic> = rows(TACTICS)
            .filter(|r| r.len() >= 4)
            .map(|r| Tactic { id: r[0].to_string(), name: r[2].to_string(), order: r[3].trim().parse().unwrap_or(u32::MAX) })
            .collect();
        tactics.sort_by_key(|t| t.order);
        let mut by_group: BTreeMap<String, Group> = BTreeMap::new();
        for r in rows(GROUP_TECHNIQUES).filter(|r| r.len() >= 4) {
            let g = by_group.entry(r[0].to_string()).or_insert_with(|| Group {
                id: r[0].to_string(),
                name: r[1].to_string(),
                aliases: r[2].split(';').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                techniques: Vec::new(),
            });
            g.techniques.push(r[3].to_string());
        }
        let groups: Vec<Group> = by_group.into_values().collect();
        let mut users: HashMap<String, Vec<usize>> = HashMap::new();
        let mut sub_users: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, g) in groups.iter().enumerate() {
            for t in &g.techniques {
                users.entry(t.clone()).or_default().push(i);
                if let Some((parent, _)) = t.split_once('.') {
                    sub_users.entry(parent.to_string()).or_default().push(i);
                }
            }
        }
        for list in users.values_mut().chain(sub_users.values_mut()) {
            list.dedup();
        }
        Attack { techniques, retired, tactics, groups, users, sub_users }
    }

    pub fn technique(&self, id: &str) -> Option<&Technique> {
        self.techniques.get(id)
    }

    pub fn resolve(&self, id: &str) -> Resolved<'_> {
        if let Some(t) = self.techniques.get(id) {
            return Resolved::Active(t);
        }
        match self.retired.get(id) {
            Some((name, replaced)) => Resolved::Retired { name, replaced_by: replaced.as_deref().and_then(|r| self.techniques.get(r)) },
            None => Resolved::Unknown,
        }
    }

    /// Position of a tactic (by display name) in the Enterprise matrix.
    pub fn tactic_order(&self, name: &str) -> u32 {
        self.tactics.iter().find(|t| t.name == name).map_or(u32::MAX, |t| t.order)
    }

    pub fn tactics(&self) -> &[Tactic] {
        &self.tactics
    }

    pub fn technique_count(&self) -> usize {
        self.techniques.len()
    }

    /// Groups ranked by how much of the case's technique set they are known to use. A
    /// sub-technique in the case also matches a group that uses its parent, and vice versa.
    /// One shared technique says nothing about an actor: at least two must overlap.
    pub fn groups_overlapping(&self, case_techniques: &[String], limit: usize) -> Vec<GroupMatch> {
        const MIN_SHARED: usize = 2;
        if case_techniques.len() < MIN_SHARED {
            return Vec::new();
        }
        // Per group, the case techniques it uses, from the index (no group x technique scan).
        let mut shared: Vec<Vec<String>> = vec![Vec::new(); self.groups.len()];
        let mut users = Vec::new();
        for ct in case_techniques {
            self.users_of(ct, &mut users);
            for &g in &users {
                shared[g].push(ct.clone());
            }
        }
        let mut ranked: Vec<(usize, Vec<String>)> = shared.into_iter().enumerate().filter(|(_, s)| s.len() >= MIN_SHARED).collect();
        // Higher overlap first; among equals, groups with a narrower repertoire are more specific.
        let size = |i: usize| self.groups[i].techniques.len();
        ranked.sort_by(|(a, a_shared), (b, b_shared)| {
            b_shared.len().cmp(&a_shared.len()).then(size(*a).cmp(&size(*b))).then_with(|| self.groups[*a].id.cmp(&self.groups[*b].id))
        });
        ranked
            .into_iter()
            .take(limit)
            .map(|(i, shared)| {
                let g = &self.groups[i];
                GroupMatch { id: g.id.clone(), name: g.name.clone(), score: shared.len() as f64 / case_techniques.len() as f64, shared }
            })
            .collect()
    }

    /// How many groups are known to use a technique (or its parent or a sub-technique of it):
    /// the fewer, the more a technique says about who is behind a case.
    pub fn groups_using(&self, technique: &str) -> usize {
        let mut users = Vec::new();
        self.users_of(technique, &mut users);
        users.len()
    }

    /// Indices of the groups that use `technique`, its parent or one of its sub-techniques,
    /// sorted and distinct, into `out`.
    fn users_of(&self, technique: &str, out: &mut Vec<usize>) {
        out.clear();
        let none = Vec::new();
        let exact = self.users.get(technique).unwrap_or(&none);
        let via_sub = self.sub_users.get(technique).unwrap_or(&none);
        let via_parent = technique.split_once('.').and_then(|(p, _)| self.users.get(p)).unwrap_or(&none);
        out.extend(exact.iter().chain(via_sub).chain(via_parent).copied());
        out.sort_unstable();
        out.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_complete() {
        let a = attack();
        assert_eq!(a.technique_count(), 691);
        assert_eq!(a.tactics().len(), 14);
        assert_eq!(a.groups.len(), 168);
        assert!(TECHNIQUES.lines().chain(GROUP_TECHNIQUES.lines()).all(|l| !l.contains('"')));
    }

    /// The definition the index must agree with: a group uses `t` if it uses `t`, a
    /// sub-technique of `t`, or `t`'s parent.
    fn uses_by_scan(g: &Group, t: &str) -> bool {
        let parent = |x: &str| x.split_once('.').map_or(x, |(p, _)| p).to_string();
        g.techniques.iter().any(|gt| gt == t || parent(gt) == t || parent(t) == *gt)
    }

    #[test]
    fn the_group_index_agrees_with_a_scan_for_every_technique() {
        let a = attack();
        let mut ids: Vec<&String> = a.techniques.keys().collect();
        ids.sort();
        for t in &ids {
            let scanned = a.groups.iter().filter(|g| uses_by_scan(g, t)).count();
            assert_eq!(a.groups_using(t), scanned, "{t}");
        }
        let powershell = a.groups_using("T1059.001");
        assert!(powershell > 10 && a.groups_using("T1059") > powershell);
        assert_eq!(a.groups_using("T9999"), 0);
        // Overlaps: the same groups, shares and order as a scan.
        for case in [vec!["T1059.001", "T1027", "T1566.001"], vec!["T1486", "T1490", "T1059", "T1021.001"]] {
            let case: Vec<String> = case.into_iter().map(str::to_string).collect();
            let got = a.groups_overlapping(&case, usize::MAX);
            assert!(!got.is_empty());
            let mut want: Vec<(&str, Vec<String>)> = a
                .groups
                .iter()
                .map(|g| (g.id.as_str(), case.iter().filter(|t| uses_by_scan(g, t)).cloned().collect::<Vec<_>>()))
                .filter(|(_, s)| s.len() >= 2)
                .collect();
            want.sort_by_key(|(id, _)| *id);
            let mut got_pairs: Vec<(&str, Vec<String>)> = got.iter().map(|m| (m.id.as_str(), m.shared.clone())).collect();
            got_pairs.sort_by_key(|(id, _)| *id);
            assert_eq!(got_pairs, want);
            assert!(got.windows(2).all(|w| w[0].score >= w[1].score), "ranked by overlap");
        }
    }

    #[test]
    fn resolves_active_and_retired_ids() {
        let a = attack();
        let ps = a.technique("T1059.001").unwrap();
        assert_eq!(ps.name, "PowerShell");
        assert_eq!(ps.tactics, vec!["Execution"]);
        match a.resolve("T1002") {
            Resolved::Retired { name, replaced_by } => {
                assert_eq!(name, "Data Compressed");
                assert_eq!(replaced_by.unwrap().id, "T1560");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.resolve("T9999"), Resolved::Unknown);
        assert!(a.tactic_order("Reconnaissance") < a.tactic_order("Impact"));
    }

    #[test]
    fn group_overlap_is_ranked() {
        let a = attack();
        let m = a.groups_overlapping(&["T1059.001".into(), "T1003.001".into(), "T1486".into()], 5);
        assert_eq!(m.len(), 5);
        assert!(m[0].score >= m[4].score);
        assert!(m.iter().all(|g| g.shared.len() >= 2));
        assert!(a.groups_overlapping(&["T1204.002".into()], 5).is_empty(), "one technique is no basis");
    }
}
