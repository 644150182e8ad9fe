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
const GROUP_SOFTWARE: &str = include_str!("../../data/attack/groups-software.csv");

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

/// A group whose known techniques overlap the case's, scored by how telling the shared
/// techniques are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupMatch {
    pub id: String,
    pub name: String,
    /// The case's techniques this group is known to use, most distinctive first.
    pub shared: Vec<String>,
    /// 0..1: the weight of the shared techniques over the weight of the case's techniques, each
    /// weighted by how few groups use it (inverse group frequency); commonplace techniques weigh
    /// nothing. 0 when the group shares none that is not commonplace.
    pub score: f64,
    /// The shared techniques that are not commonplace, with how many groups use each: what the
    /// score rests on.
    #[serde(default)]
    pub drivers: Vec<TechniqueUse>,
    /// Threat-intel sources that name this group (or an alias) for the case's indicators.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named_by: Vec<String>,
}

/// How many ATT&CK groups are known to use a technique.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TechniqueUse {
    pub id: String,
    pub groups: usize,
}

/// How threat intel names a group for a case: the naming sources, and how strongly (a source
/// naming the actor outright counts 2, one naming malware the group is known to use 1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Naming {
    pub sources: Vec<String>,
    pub strength: u32,
}

/// Groups ranked for a case, and the techniques left out of the ranking as commonplace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    pub groups: Vec<GroupMatch>,
    /// Case techniques used by so many groups that they say nothing about who is behind it.
    pub commonplace: Vec<TechniqueUse>,
    /// Groups in the embedded table (the base of the `groups` counts).
    pub known_groups: usize,
}

/// A technique used by at least this share of all groups is commonplace: alone it attributes
/// nothing (PowerShell, ingress tool transfer and obfuscation are each used by about half).
pub const COMMONPLACE_SHARE: f64 = 0.25;

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
    /// Software (malware, tools) by normalised name: its id, name and the groups known to use it.
    software: HashMap<String, Software>,
}

/// ATT&CK software and the groups known to use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Software {
    pub id: String,
    pub name: String,
    /// Group ids.
    pub groups: Vec<String>,
}

/// `Agent Tesla`, `agenttesla`, `AgentTesla` → `agenttesla`.
fn software_key(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
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
        let mut software: HashMap<String, Software> = HashMap::new();
        for r in rows(GROUP_SOFTWARE).filter(|r| r.len() >= 4) {
            let entry = software.entry(software_key(&r[3])).or_insert_with(|| Software {
                id: r[2].to_string(),
                name: r[3].to_string(),
                groups: Vec::new(),
            });
            if !entry.groups.contains(&r[0]) {
                entry.groups.push(r[0].to_string());
            }
        }
        Attack { techniques, retired, tactics, groups, users, sub_users, software }
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

    /// Groups ranked by how telling the case techniques they share are. A sub-technique in
    /// the case also matches a group that uses its parent, and vice versa. A group must share at
    /// least two techniques, one of them not commonplace: overlap on techniques half of all
    /// groups use is no basis for naming anyone.
    pub fn groups_overlapping(&self, case_techniques: &[String], limit: usize) -> Attribution {
        self.attribution(case_techniques, &BTreeMap::new(), limit)
    }

    /// As `groups_overlapping`, with the groups threat intel names for the case's indicators
    /// (group id → how it is named): those rank first, the more strongly named first, whatever
    /// techniques they share.
    pub fn attribution(&self, case_techniques: &[String], named: &BTreeMap<String, Naming>, limit: usize) -> Attribution {
        const MIN_SHARED: usize = 2;
        let known_groups = self.groups.len();
        let mut users = Vec::new();
        // Per case technique: its users and its weight ln(G / n); unknown to every group: no weight.
        let mut used: Vec<(String, usize, f64)> = Vec::new();
        let mut shared: Vec<Vec<usize>> = vec![Vec::new(); known_groups];
        for ct in case_techniques {
            self.users_of(ct, &mut users);
            if users.is_empty() || used.iter().any(|(id, _, _)| id == ct) {
                continue;
            }
            let idx = used.len();
            used.push((ct.clone(), users.len(), (known_groups as f64 / users.len() as f64).ln()));
            for &g in &users {
                shared[g].push(idx);
            }
        }
        let is_commonplace = |n: usize| n as f64 >= COMMONPLACE_SHARE * known_groups as f64;
        let commonplace: Vec<TechniqueUse> =
            used.iter().filter(|(_, n, _)| is_commonplace(*n)).map(|(id, n, _)| TechniqueUse { id: id.clone(), groups: *n }).collect();
        // Commonplace techniques weigh nothing: they are reported apart, never as a match.
        let weight = |t: usize| if is_commonplace(used[t].1) { 0.0 } else { used[t].2 };
        let total: f64 = (0..used.len()).map(weight).sum();
        let mut ranked: Vec<(usize, f64, Vec<usize>)> = shared
            .into_iter()
            .enumerate()
            .filter(|(g, s)| {
                named.contains_key(&self.groups[*g].id) || (s.len() >= MIN_SHARED && s.iter().any(|&t| !is_commonplace(used[t].1)))
            })
            .map(|(g, mut s)| {
                s.sort_by(|a, b| used[*b].2.total_cmp(&used[*a].2).then(used[*a].0.cmp(&used[*b].0)));
                let shared_weight: f64 = s.iter().map(|&t| weight(t)).sum();
                (g, if total > 0.0 { shared_weight / total } else { 0.0 }, s)
            })
            .collect();
        // Named by more intel sources first, then higher score, then more techniques shared; among
        // equals, groups with a narrower
        // repertoire are more specific.
        let size = |i: usize| self.groups[i].techniques.len();
        let is_named = |i: usize| named.get(&self.groups[i].id).map_or(0, |n| n.strength);
        ranked.sort_by(|(a, a_score, a_shared), (b, b_score, b_shared)| {
            is_named(*b)
                .cmp(&is_named(*a))
                .then(b_score.total_cmp(a_score))
                .then(b_shared.len().cmp(&a_shared.len()))
                .then(size(*a).cmp(&size(*b)))
                .then_with(|| self.groups[*a].id.cmp(&self.groups[*b].id))
        });
        let groups = ranked
            .into_iter()
            .take(limit)
            .map(|(i, score, s)| {
                let g = &self.groups[i];
                GroupMatch {
                    id: g.id.clone(),
                    name: g.name.clone(),
                    shared: s.iter().map(|&t| used[t].0.clone()).collect(),
                    score,
                    drivers: s
                        .iter()
                        .filter(|&&t| !is_commonplace(used[t].1))
                        .map(|&t| TechniqueUse { id: used[t].0.clone(), groups: used[t].1 })
                        .collect(),
                    named_by: named.get(&g.id).map(|n| n.sources.clone()).unwrap_or_default(),
                }
            })
            .collect();
        Attribution { groups, commonplace, known_groups }
    }

    /// The group a threat-intel source names, by its ATT&CK name or one of its aliases
    /// (case-insensitive).
    pub fn group_named(&self, name: &str) -> Option<&Group> {
        let name = name.trim();
        self.groups.iter().find(|g| g.name.eq_ignore_ascii_case(name) || g.aliases.iter().any(|a| a.eq_ignore_ascii_case(name)))
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.id == id)
    }

    /// The ATT&CK software of a malware or tool name intel gives (spacing and case ignored).
    pub fn software_named(&self, name: &str) -> Option<&Software> {
        let key = software_key(name);
        (key.len() >= 3).then(|| self.software.get(&key)).flatten()
    }

    /// The case techniques a group is known to use.
    pub fn shared_with(&self, group_id: &str, case_techniques: &[String]) -> Vec<String> {
        let Some(i) = self.groups.iter().position(|g| g.id == group_id) else { return Vec::new() };
        let mut users = Vec::new();
        case_techniques
            .iter()
            .filter(|t| {
                self.users_of(t, &mut users);
                users.contains(&i)
            })
            .cloned()
            .collect()
    }

    pub fn known_groups(&self) -> usize {
        self.groups.len()
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
        // Overlaps: the same groups and shares as a scan (at least two shared, one of them not
        // commonplace), ranked by score.
        for case in [vec!["T1059.001", "T1027", "T1566.001", "T1021.001"], vec!["T1486", "T1490", "T1059", "T1021.001"]] {
            let case: Vec<String> = case.into_iter().map(str::to_string).collect();
            let got = a.groups_overlapping(&case, usize::MAX);
            assert!(!got.groups.is_empty());
            let commonplace = |t: &str| a.groups_using(t) as f64 >= COMMONPLACE_SHARE * a.known_groups() as f64;
            let mut want: Vec<(&str, Vec<String>)> = a
                .groups
                .iter()
                .map(|g| (g.id.as_str(), case.iter().filter(|t| uses_by_scan(g, t)).cloned().collect::<Vec<_>>()))
                .filter(|(_, s)| s.len() >= 2 && s.iter().any(|t| !commonplace(t)))
                .collect();
            want.sort_by_key(|(id, _)| *id);
            let mut got_pairs: Vec<(&str, Vec<String>)> = got
                .groups
                .iter()
                .map(|m| {
                    let mut s = m.shared.clone();
                    s.sort_by_key(|t| case.iter().position(|c| c == t));
                    (m.id.as_str(), s)
                })
                .collect();
            got_pairs.sort_by_key(|(id, _)| *id);
            assert_eq!(got_pairs, want);
            assert!(got.groups.windows(2).all(|w| w[0].score >= w[1].score), "ranked by score");
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
        assert_eq!(m.groups.len(), 5);
        assert!(m.groups[0].score >= m.groups[4].score);
        assert!(m.groups.iter().all(|g| g.shared.len() >= 2 && g.drivers.iter().any(|d| d.id == "T1486")));
        assert!(a.groups_overlapping(&["T1204.002".into()], 5).groups.is_empty(), "one technique is no basis");
    }

    /// The demo's chain: five techniques each used by about half of all groups. No group may
    /// come out "100 %" on that; none is named at all, and the techniques are reported as
    /// commonplace instead.
    #[test]
    fn commonplace_techniques_name_no_group() {
        let a = attack();
        let chain: Vec<String> = ["T1566.001", "T1059.001", "T1204.002", "T1027", "T1105"].map(String::from).to_vec();
        let m = a.groups_overlapping(&chain, 5);
        assert!(m.groups.is_empty(), "{:?}", m.groups.iter().map(|g| &g.name).collect::<Vec<_>>());
        assert_eq!(m.commonplace.len(), 5);
        assert!(m.commonplace.iter().all(|t| t.groups > 60), "{:?}", m.commonplace);
        // One rare technique added: the groups that use it rank, and it is what drives them.
        let mut with_rare = chain.clone();
        with_rare.push("T1486".into());
        let m = a.groups_overlapping(&with_rare, 5);
        assert!(!m.groups.is_empty());
        for g in &m.groups {
            assert_eq!(g.drivers.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["T1486"], "{}", g.name);
            assert!(g.score > 0.0 && g.score <= 1.0);
            assert_eq!(g.shared[0], "T1486", "rarest first");
        }
    }

    #[test]
    fn software_names_lead_to_the_groups_that_use_it() {
        let a = attack();
        let tesla = a.software_named("agenttesla").expect("Agent Tesla");
        assert_eq!((tesla.id.as_str(), tesla.name.as_str()), ("S0331", "Agent Tesla"));
        assert_eq!(tesla.groups, ["G0083", "G1018"]);
        assert!(a.software_named("msil").is_none() && a.software_named("x").is_none());
    }

    #[test]
    fn groups_are_found_by_name_or_alias() {
        let a = attack();
        let apt28 = a.group_named("apt28").expect("APT28");
        assert_eq!(apt28.id, "G0007");
        assert_eq!(a.group_named("Fancy Bear").map(|g| g.id.as_str()), Some("G0007"));
        assert!(a.group_named("No Such Group").is_none());
    }
}
