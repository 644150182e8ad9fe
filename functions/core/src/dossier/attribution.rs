//! Who might be behind a case: actor, campaign and malware names the threat-intel sources give
//! for the case's indicators, merged with the ATT&CK groups ranked by how distinctive the
//! techniques they share with the case are (rare techniques count, commonplace ones do not).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::comment::untrusted;
use crate::domain::{attack, Attribution, Naming, Technique};
use crate::dossier::{Dossier, IndicatorFinding};
use crate::sources::intel_facts;

/// What a named actor, campaign or malware family is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NamedKind {
    ThreatActor,
    Campaign,
    Malware,
}

impl NamedKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::ThreatActor => "threat actor",
            Self::Campaign => "campaign",
            Self::Malware => "malware family",
        }
    }
}

/// A name threat intel associates with the case's indicators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedActor {
    pub name: String,
    pub kind: NamedKind,
    /// The sources that gave the name.
    pub sources: Vec<String>,
    /// The indicators it was given for.
    pub indicators: Vec<String>,
    /// The ATT&CK group of that name or alias, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack_group: Option<String>,
    /// For malware: the ATT&CK software of that name (`S0331 Agent Tesla`) and the groups known
    /// to use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack_software: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub software_groups: Vec<String>,
}

/// At most this many names are kept per case (most corroborated first).
const MAX_NAMED: usize = 8;

/// The names threat intel gives for the case's indicators, most corroborated first.
pub fn named_actors(indicators: &[IndicatorFinding]) -> Vec<NamedActor> {
    let mut by_name: BTreeMap<(NamedKind, String), NamedActor> = BTreeMap::new();
    for finding in indicators {
        for verdict in &finding.verdicts {
            for (fact, kind) in [
                (intel_facts::ACTORS, NamedKind::ThreatActor),
                (intel_facts::CAMPAIGNS, NamedKind::Campaign),
                (intel_facts::MALWARE, NamedKind::Malware),
            ] {
                let Some(names) = verdict.facts.iter().find(|(k, _)| k == fact).map(|(_, v)| v) else { continue };
                for name in intel_facts::split(names) {
                    let entry = by_name.entry((kind, name.to_ascii_lowercase())).or_insert_with(|| {
                        let software = (kind == NamedKind::Malware).then(|| attack().software_named(name)).flatten();
                        NamedActor {
                            name: name.to_string(),
                            kind,
                            sources: Vec::new(),
                            indicators: Vec::new(),
                            attack_group: (kind == NamedKind::ThreatActor)
                                .then(|| attack().group_named(name).map(|g| g.id.clone()))
                                .flatten(),
                            attack_software: software.map(|s| format!("{} {}", s.id, s.name)),
                            software_groups: software.map(|s| s.groups.clone()).unwrap_or_default(),
                        }
                    });
                    if !entry.sources.contains(&verdict.source) {
                        entry.sources.push(verdict.source.clone());
                    }
                    let shown = format!("{} {}", finding.kind, finding.value);
                    if !entry.indicators.contains(&shown) {
                        entry.indicators.push(shown);
                    }
                }
            }
        }
    }
    let mut named: Vec<NamedActor> = by_name.into_values().collect();
    named.sort_by(|a, b| {
        (b.sources.len() + b.indicators.len())
            .cmp(&(a.sources.len() + a.indicators.len()))
            .then(a.kind.cmp(&b.kind))
            .then(a.name.cmp(&b.name))
    });
    named.truncate(MAX_NAMED);
    named
}

/// ATT&CK groups ranked for the case's techniques, with the groups intel names ranked first.
pub fn attribute(techniques: &[Technique], named: &[NamedActor]) -> Attribution {
    let mut by_group: BTreeMap<String, Naming> = BTreeMap::new();
    for n in named {
        // A group named outright (strength 2 per source), or one known to use the malware intel
        // names (1: commodity malware has many users).
        let direct = n.attack_group.iter().map(|id| (id, 2, None));
        let via =
            n.software_groups.iter().map(|id| (id, 1, n.attack_software.as_deref().map(|s| s.split_once(' ').map_or(s, |(_, name)| name))));
        for (id, strength, software) in direct.chain(via) {
            let naming = by_group.entry(id.clone()).or_default();
            for s in &n.sources {
                let label = software.map_or(s.clone(), |sw| format!("{s} (uses {sw})"));
                if !naming.sources.contains(&label) {
                    naming.sources.push(label);
                    naming.strength += strength;
                }
            }
        }
    }
    let ids: Vec<String> = techniques.iter().map(|t| t.id.clone()).collect();
    attack().attribution(&ids, &by_group, 5)
}

/// Who threat intel names (actors, campaigns, malware), then who the model names and why, for
/// the comment (intel and model text made safe to show).
pub(super) fn actor_lines(d: &Dossier) -> Vec<String> {
    let named = d.named_actors.iter().take(5).map(|n| {
        let group = match (&n.attack_group, &n.attack_software) {
            (Some(g), _) => format!("; ATT&CK {g}"),
            (None, Some(s)) => {
                let a = crate::domain::attack();
                let users: Vec<String> =
                    n.software_groups.iter().map(|id| a.group(id).map_or(id.clone(), |g| format!("{} ({id})", g.name))).collect();
                format!("; ATT&CK {s}, used by {}", users.join(", "))
            }
            _ => String::new(),
        };
        format!(
            "{} ({}{group}) — named by {} for {}",
            untrusted(&n.name, 100),
            n.kind.label(),
            n.sources.join(", "),
            untrusted(&n.indicators.iter().take(3).cloned().collect::<Vec<_>>().join(", "), 300)
        )
    });
    let model = d.actor_notes.iter().take(5).map(|(n, b)| format!("{}: {} (model's reading)", untrusted(n, 100), untrusted(b, 300)));
    named.chain(model).collect()
}

/// ATT&CK groups ranked by the distinctive techniques they share, with what drives each score,
/// and the techniques left out as commonplace.
pub(super) fn group_lines(d: &Dossier) -> Vec<String> {
    let known = crate::domain::attack().known_groups();
    let mut lines: Vec<String> = d
        .actors
        .iter()
        .take(5)
        .map(|g| {
            let drivers = g.drivers.iter().map(|t| format!("{} (used by {} of {known} groups)", t.id, t.groups)).collect::<Vec<_>>();
            let common: Vec<&str> = g.shared.iter().filter(|t| !g.drivers.iter().any(|d| &d.id == *t)).map(String::as_str).collect();
            let mut line = format!("{} ({})", g.name, g.id);
            if !g.named_by.is_empty() {
                line.push_str(&format!(" — named by {}", g.named_by.join(", ")));
            }
            if drivers.is_empty() {
                line.push_str(&match g.shared.len() {
                    0 => "; shares none of the case's techniques".to_string(),
                    n => format!("; shares {n} of the case's {} technique(s), all commonplace", d.techniques.len()),
                });
            } else {
                line.push_str(&format!(": technique score {:.0}/100, driven by {}", g.score * 100.0, drivers.join(", ")));
            }
            if !common.is_empty() && !drivers.is_empty() {
                line.push_str(&format!("; also {}", common.join(", ")));
            }
            line
        })
        .collect();
    // One technique never names a group: saying it is commonplace would be noise.
    if !d.commonplace_techniques.is_empty() && d.techniques.len() >= 2 {
        let list = d.commonplace_techniques.iter().map(|t| format!("{} ({})", t.id, t.groups)).collect::<Vec<_>>().join(", ");
        lines.push(if d.actors.is_empty() {
            format!("No group stands out: every technique seen is used by a quarter or more of the {known} known groups — {list}.")
        } else {
            format!("Not counted (used by a quarter or more of the {known} known groups): {list}.")
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{IndicatorKind, Scope};
    use crate::dossier::SourceVerdict;
    use crate::sources::VerdictLevel;

    fn finding(value: &str, verdicts: Vec<SourceVerdict>) -> IndicatorFinding {
        IndicatorFinding {
            kind: IndicatorKind::Ipv4,
            value: value.into(),
            internal: false,
            scope: Scope::External,
            seen_in: vec!["action_remote_ip".into()],
            free_text_only: false,
            worst: VerdictLevel::Malicious,
            verdicts,
        }
    }

    fn said(source: &str, facts: &[(&str, &str)]) -> SourceVerdict {
        SourceVerdict {
            source: source.into(),
            verdict: VerdictLevel::Malicious,
            summary: String::new(),
            link: None,
            facts: facts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn intel_names_merge_across_sources_and_rank_their_group_first() {
        let findings = vec![
            finding("203.0.113.7", vec![said("recordedfuture", &[("actors", "APT28; Sandworm Team"), ("malware", "X-Agent")])]),
            finding("198.51.100.9", vec![said("gti", &[("actors", "apt28"), ("campaigns", "Operation Pawn Storm")])]),
        ];
        let named = named_actors(&findings);
        let apt28 = named.iter().find(|n| n.name.eq_ignore_ascii_case("apt28")).expect("APT28");
        assert_eq!(apt28.sources, ["recordedfuture", "gti"]);
        assert_eq!(apt28.indicators.len(), 2);
        assert_eq!(apt28.attack_group.as_deref(), Some("G0007"));
        assert_eq!(named[0].name, "APT28", "the most corroborated first");
        assert!(named.iter().any(|n| n.kind == NamedKind::Campaign && n.name == "Operation Pawn Storm"));
        assert!(named.iter().any(|n| n.kind == NamedKind::Malware && n.attack_group.is_none()));
        let x_agent = named.iter().find(|n| n.name == "X-Agent").unwrap();
        assert_eq!(x_agent.attack_software, None, "X-Agent is CHOPSTICK's alias, not an ATT&CK software name");

        // Commonplace techniques only: no group on overlap, but the groups intel names stay, first.
        let a = attack();
        let techniques: Vec<Technique> = ["T1566.001", "T1059.001", "T1105"].iter().filter_map(|id| a.technique(id).cloned()).collect();
        let ranked = attribute(&techniques, &named);
        let ids: Vec<&str> = ranked.groups.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(ids[0], "G0007");
        assert_eq!(ranked.groups[0].named_by, ["recordedfuture", "gti"]);
        assert!(ids.iter().all(|id| ["G0007", "G0034"].contains(id)), "{ids:?}");
    }
}
