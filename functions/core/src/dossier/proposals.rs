//! Gated actions the evidence supports, and the policies that may approve some without a human.

use crate::config::Phase;
use crate::domain::{Action, ActionKind, Case, IndicatorKind, Proposal, Scope, Severity};
use crate::dossier::{Dossier, IndicatorFinding};
use crate::sources::VerdictLevel;

/// Gated actions the evidence supports; nothing in phase 1. Only allow-listed kinds, only
/// targets that are entities of this case, and only a target that carries the evidence named in
/// the reason: a host is isolated for a flagged file or destination seen on that host; nothing
/// seen only in free text (which anyone can write) is ever a reason.
pub fn propose_actions(case: &Case, dossier: &Dossier, phase: Phase) -> Vec<Proposal> {
    if !phase.proposes_actions() {
        return Vec::new();
    }
    let facts = &case.facts;
    let mut actions = Vec::new();
    let mut push = |kind: ActionKind, target: String, target_label: String, rationale: String| {
        actions.push(Proposal { kind, target, target_label, rationale })
    };
    let evidence: Vec<&IndicatorFinding> = dossier
        .indicators
        .iter()
        .filter(|f| f.worst == VerdictLevel::Malicious && f.scope == Scope::External && !f.free_text_only)
        .collect();
    let lab = dossier.hypotheses.iter().any(|h| h.text.starts_with("Authorised testing") && h.confidence >= 0.5);
    if facts.has_agent && !lab {
        // Hosts whose own alerts carry a flagged file or destination, most alerts first.
        let mut per_host: Vec<(String, usize, String)> = Vec::new();
        for g in &facts.groups {
            let e = &g.key_event;
            let Some(host) = &e.host else { continue };
            let carried = evidence.iter().find(|f| {
                e.sha256.as_deref() == Some(f.value.as_str())
                    || e.destination.as_deref().is_some_and(|d| d == f.value || d.starts_with(&format!("{}:", f.value)))
            });
            if let Some(f) = carried {
                match per_host.iter_mut().find(|(h, _, _)| h == host) {
                    Some(entry) => entry.1 += g.count,
                    None => per_host.push((host.clone(), g.count, format!("{} {}", f.kind, f.value))),
                }
            }
        }
        per_host.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        let more = per_host.len().saturating_sub(3);
        for (host, alerts, what) in per_host.into_iter().take(3) {
            let Some(ep) = case.endpoints.iter().find(|e| e.host_name.as_deref() == Some(host.as_str()) && e.endpoint_id.is_some()) else {
                continue;
            };
            let id = ep.endpoint_id.clone().unwrap_or_default();
            let others = if more > 0 { format!("; {more} more host(s) carry flagged evidence") } else { String::new() };
            push(
                ActionKind::IsolateEndpoint,
                id,
                host.clone(),
                format!("{host} has {alerts} alert(s) with {what}, flagged malicious{others}"),
            );
        }
    }
    // Files: flagged by intel or by XDR's own analysis, seen in telemetry.
    for f in dossier
        .indicators
        .iter()
        .filter(|f| f.kind == IndicatorKind::Sha256 && f.worst == VerdictLevel::Malicious && !f.free_text_only)
        .take(3)
    {
        if lab {
            break;
        }
        let why = f
            .verdicts
            .iter()
            .find(|v| v.verdict == VerdictLevel::Malicious)
            .map_or(String::new(), |v| format!("{}: {}", v.source, v.summary));
        push(ActionKind::BlockHash, f.value.clone(), f.value.clone(), format!("file flagged malicious ({why})"));
    }
    // An identity a directory reports compromised (Entra ID risk, Okta threats).
    for f in dossier.indicators.iter().filter(|f| f.kind == IndicatorKind::User && f.worst >= VerdictLevel::Suspicious).take(2) {
        let why = f
            .verdicts
            .iter()
            .filter(|v| v.verdict >= VerdictLevel::Suspicious)
            .map(|v| format!("{}: {}", v.source, v.summary))
            .collect::<Vec<_>>()
            .join("; ");
        push(ActionKind::DisableUser, f.value.clone(), f.value.clone(), format!("identity at risk ({why})"));
    }
    // A related case close enough to be the same intrusion: merging takes an approver.
    for r in dossier.related_cases.iter().filter(|r| r.merge).take(2) {
        push(ActionKind::MergeCases, r.case.incident_id.clone(), format!("incident {}", r.case.incident_id), r.reason.clone());
    }
    // Raising a severity an analyst set takes evidence they did not have: third-party intel.
    let new_evidence =
        evidence.iter().any(|f| f.verdicts.iter().any(|v| v.verdict == VerdictLevel::Malicious && !v.source.starts_with("XDR ")));
    let analyst_set = facts.analyst_severity.is_some();
    if dossier.severity > case.severity && case.severity != Severity::Unknown && !lab && (!analyst_set || new_evidence) {
        push(
            ActionKind::RaiseSeverity,
            dossier.severity.as_str().to_string(),
            format!("{} → {}", case.severity, dossier.severity),
            dossier.severity_reason.clone(),
        );
    }
    actions
}

/// "Approve `kind` when at least `min_malicious_engines` engines (VirusTotal) call its target
/// malicious": for `block_hash` the hash itself, for `raise_severity` an external indicator of
/// the case. Only these two kinds may be approved by policy (isolating a host or disabling a
/// person always takes a human), and only an action the rules propose from the evidence
/// themselves: a model's proposal never runs by policy, whatever the alert text asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoApprove {
    pub kind: ActionKind,
    pub min_malicious_engines: u64,
}

impl AutoApprove {
    /// `raise_severity:malicious_engines>=5`
    pub fn parse(text: &str) -> Result<AutoApprove, String> {
        let (kind, cond) = text
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("auto-approval rule `{text}` must look like raise_severity:malicious_engines>=5"))?;
        let kind: ActionKind = serde_json::from_value(serde_json::Value::String(kind.trim().to_string()))
            .map_err(|_| format!("`{kind}` is not an action kind"))?;
        if !matches!(kind, ActionKind::RaiseSeverity | ActionKind::BlockHash) {
            return Err(format!(
                "`{}` cannot be approved by policy: isolating an endpoint or disabling a user always waits for a person",
                kind.as_str()
            ));
        }
        let n = cond
            .trim()
            .strip_prefix("malicious_engines>=")
            .ok_or_else(|| format!("`{cond}`: the only condition is malicious_engines>=N"))?;
        let min_malicious_engines = n.trim().parse().map_err(|_| format!("`{n}` is not a number"))?;
        if min_malicious_engines == 0 {
            return Err("malicious_engines>=0 would approve everything".into());
        }
        Ok(AutoApprove { kind, min_malicious_engines })
    }

    pub fn describe(&self) -> String {
        format!("policy:{}:malicious_engines>={}", self.kind.as_str(), self.min_malicious_engines)
    }

    /// Whether the rule approves `action`: its kind, proposed by the rules from `evidence` (the
    /// deterministic dossier), and its own target's verdicts meet the threshold.
    pub fn allows(&self, action: &Action, rules_proposed: &[Proposal], evidence: &Dossier) -> bool {
        if action.kind != self.kind || !rules_proposed.iter().any(|p| p.id() == action.id) {
            return false;
        }
        let engines = |f: &IndicatorFinding| {
            f.verdicts
                .iter()
                .filter_map(|v| v.facts.iter().find(|(k, _)| k == "engines_malicious").and_then(|(_, n)| n.parse::<u64>().ok()))
                .max()
                .unwrap_or(0)
        };
        let target_findings: Vec<&IndicatorFinding> = match action.kind {
            ActionKind::BlockHash => {
                evidence.indicators.iter().filter(|f| f.kind.is_hash() && f.value.eq_ignore_ascii_case(&action.target)).collect()
            }
            ActionKind::RaiseSeverity => evidence.indicators.iter().filter(|f| !f.internal && !f.kind.is_entity()).collect(),
            ActionKind::IsolateEndpoint | ActionKind::DisableUser | ActionKind::MergeCases | ActionKind::OpenInvestigation => return false,
        };
        target_findings.into_iter().any(|f| engines(f) >= self.min_malicious_engines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_approval_rules_parse() {
        let r = AutoApprove::parse("raise_severity:malicious_engines>=5").unwrap();
        assert_eq!((r.kind, r.min_malicious_engines), (crate::domain::ActionKind::RaiseSeverity, 5));
        assert!(AutoApprove::parse("isolate_endpoint:always").is_err());
        for kind in ["isolate_endpoint", "disable_user"] {
            let e = AutoApprove::parse(&format!("{kind}:malicious_engines>=5")).unwrap_err();
            assert!(e.contains("always waits for a person"), "{e}");
        }
        assert!(AutoApprove::parse("nuke:malicious_engines>=1").is_err());
        assert!(AutoApprove::parse("block_hash:malicious_engines>=0").is_err());
    }
}
