//! Incident and alert severity, as XDR grades it.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Unknown,
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Accepts `high`, `HIGH`, `SEV_040_HIGH`, `3`-style scores are not guessed.
    pub fn parse(raw: &str) -> Severity {
        let v = raw.trim().to_ascii_lowercase();
        if v.contains("critical") {
            Severity::Critical
        } else if v.contains("high") {
            Severity::High
        } else if v.contains("medium") || v == "med" {
            Severity::Medium
        } else if v.contains("low") {
            Severity::Low
        } else if v.contains("info") {
            Severity::Informational
        } else {
            Severity::Unknown
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Informational => "informational",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
