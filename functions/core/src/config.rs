//! Settings every stage reads, with the defaults a first deployment gets.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::domain::Severity;
use crate::domain::{Budgets, InternalNames};
use crate::dossier::AutoApprove;
use crate::ratelimit::RateLimit;

/// Rollout phases (DESIGN.md): 1 read-only dossier, 2 also proposes gated actions, 3 co-pilot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase(pub u8);

impl Phase {
    pub fn proposes_actions(self) -> bool {
        self.0 >= 2
    }
}

#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Tenant used when a request does not name one.
    pub default_tenant: String,
    pub phase: Phase,
    /// Incidents below this severity are acknowledged and skipped at the door.
    pub min_severity: Severity,
    /// Incident statuses accepted at the door (case-insensitive). Empty: any status that is not
    /// resolved or closed.
    pub accept_statuses: Vec<String>,
    pub internal_names: InternalNames,
    /// Sources the collect stage fans out to, by name.
    pub sources: Vec<String>,
    /// Fan-in deadline: synthesis starts then even if a source never answered.
    pub enrich_deadline: Duration,
    /// Base of approval links, e.g. `https://abc.execute-api.eu-west-1.amazonaws.com`.
    pub public_base_url: String,
    /// Who gets an approval link.
    pub approvers: Vec<String>,
    /// Approvers sign in (OpenID Connect) before deciding, so a link proves nothing by itself and
    /// may be posted to a shared channel. Without it links go only to personal channels.
    pub approver_signin: bool,
    pub link_ttl: Duration,
    /// Lease on an in-flight external write (comment, action) before another worker may retry it.
    pub write_lease: Duration,
    /// Most indicators stored on a case (DynamoDB items are capped at 400 KB).
    pub max_indicators: usize,
    /// `incidents/get_incident_extra_data` is limited to 10 requests/minute per tenant.
    pub xdr_extra_data_limit: RateLimit,
    /// Policies that approve an action without a human, recorded as approved by policy.
    pub auto_approve: Vec<AutoApprove>,
    /// The model's list price, for the cost-per-case estimate (none: no cost metric).
    pub model_price: Option<ModelPrice>,
    /// How long cases and actions may stay in each status before the reconciler acts.
    pub budgets: Budgets,
    /// Kept free at the end of a synthesis invocation for the deterministic fallback and the
    /// writes: the model gets what remains of the deadline minus this.
    pub synthesis_reserve: Duration,
    /// Longest single model call.
    pub model_timeout: Duration,
}

/// USD per million tokens, as the provider lists them for the configured model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelPrice {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl ModelPrice {
    /// `"<input>,<output>"` in USD per million tokens, e.g. `3,15`.
    pub fn parse(text: &str) -> Result<ModelPrice, String> {
        let usage = || format!("`{text}`: expected `<input>,<output>` USD per million tokens, e.g. `3,15`");
        let (input, output) = text.split_once(',').ok_or_else(usage)?;
        let number = |v: &str| v.trim().parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0).ok_or_else(usage);
        Ok(ModelPrice { input_per_mtok: number(input)?, output_per_mtok: number(output)? })
    }

    /// Estimated cost of one call, in USD.
    pub fn cost_usd(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_per_mtok + output_tokens as f64 * self.output_per_mtok) / 1_000_000.0
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            default_tenant: "default".into(),
            phase: Phase(2),
            min_severity: Severity::Unknown,
            accept_statuses: Vec::new(),
            internal_names: InternalNames::default(),
            sources: vec![crate::sources::ATTACK_SOURCE.into()],
            enrich_deadline: Duration::from_secs(90),
            public_base_url: "http://127.0.0.1:3000".into(),
            approvers: vec!["soc-approver@example.com".into()],
            approver_signin: false,
            link_ttl: Duration::from_secs(24 * 3600),
            write_lease: Duration::from_secs(120),
            max_indicators: 2000,
            xdr_extra_data_limit: RateLimit { name: "xdr-extra-data".into(), limit: 10, window: Duration::from_secs(60) },
            auto_approve: Vec::new(),
            model_price: None,
            budgets: Budgets::default(),
            synthesis_reserve: Duration::from_secs(15),
            model_timeout: Duration::from_secs(60),
        }
    }
}

impl PipelineConfig {
    /// Approvers for a case of this severity. An entry is `id` or `id:min_severity`
    /// (`lead@corp.example:high` is only asked for high and critical cases).
    pub fn approvers_for(&self, severity: Severity) -> Vec<String> {
        self.approvers
            .iter()
            .filter_map(|entry| match entry.rsplit_once(':') {
                Some((id, min)) if !id.is_empty() && Severity::parse(min) != Severity::Unknown => {
                    (severity >= Severity::parse(min)).then(|| id.to_string())
                }
                _ => Some(entry.clone()),
            })
            .collect()
    }

    /// The rollout filter at the door: `Err(reason)` when the incident is to be skipped.
    pub fn admit(&self, severity: Severity, status: Option<&str>) -> Result<(), String> {
        if severity < self.min_severity {
            return Err(format!("severity {severity} is below the rollout minimum {}", self.min_severity));
        }
        let Some(status) = status.map(str::trim).filter(|s| !s.is_empty()) else { return Ok(()) };
        if self.accept_statuses.is_empty() {
            let s = status.to_ascii_lowercase();
            if s.starts_with("resolved") || s == "closed" {
                return Err(format!("status {status} is closed; the closure path handles it"));
            }
            return Ok(());
        }
        if self.accept_statuses.iter().any(|a| a.eq_ignore_ascii_case(status)) {
            Ok(())
        } else {
            Err(format!("status {status} is not among the accepted statuses ({})", self.accept_statuses.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_prices_parse_and_price_a_call() {
        let p = ModelPrice::parse(" 3 , 15 ").unwrap();
        assert_eq!(p, ModelPrice { input_per_mtok: 3.0, output_per_mtok: 15.0 });
        assert!((p.cost_usd(1_000_000, 100_000) - 4.5).abs() < 1e-12);
        for bad in ["3", "3,x", "-1,2", "inf,1", ""] {
            assert!(ModelPrice::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn approvers_are_routed_by_severity() {
        let c = PipelineConfig {
            approvers: vec!["soc@corp.example".into(), "lead@corp.example:high".into(), "ciso@corp.example:critical".into()],
            ..PipelineConfig::default()
        };
        assert_eq!(c.approvers_for(Severity::Medium), vec!["soc@corp.example"]);
        assert_eq!(c.approvers_for(Severity::High), vec!["soc@corp.example", "lead@corp.example"]);
        assert_eq!(c.approvers_for(Severity::Critical).len(), 3);
    }

    #[test]
    fn rollout_filter() {
        let mut c = PipelineConfig { min_severity: Severity::Medium, ..PipelineConfig::default() };
        assert!(c.admit(Severity::High, Some("new")).is_ok());
        assert!(c.admit(Severity::Low, Some("new")).unwrap_err().contains("below the rollout minimum"));
        assert!(c.admit(Severity::High, Some("resolved_false_positive")).is_err());
        assert!(c.admit(Severity::High, None).is_ok());
        c.accept_statuses = vec!["new".into(), "In Progress".into()];
        assert!(c.admit(Severity::High, Some("in progress")).is_ok());
        assert!(c.admit(Severity::High, Some("under_investigation")).unwrap_err().contains("not among"));
    }
}
