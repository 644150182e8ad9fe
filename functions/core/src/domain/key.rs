//! The case key: one case per (tenant, XDR incident id).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies a case: one per (tenant, XDR incident id).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CaseKey {
    pub tenant: String,
    pub incident_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidKey {
    pub field: &'static str,
    pub reason: &'static str,
}

impl CaseKey {
    pub fn new(tenant: &str, incident_id: &str) -> Result<CaseKey, InvalidKey> {
        let check = |field: &'static str, v: &str| {
            if v.is_empty() {
                Err(InvalidKey { field, reason: "must not be empty" })
            } else if v.len() > 64 {
                Err(InvalidKey { field, reason: "longer than 64 characters" })
            } else if !v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
                Err(InvalidKey { field, reason: "only letters, digits, '-', '_' and '.' are allowed" })
            } else if !v.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                // `..` and `.x` would walk URL paths when the id is put into an XDR path.
                Err(InvalidKey { field, reason: "must start with a letter or a digit" })
            } else {
                Ok(())
            }
        };
        check("tenant", tenant)?;
        check("incident id", incident_id)?;
        Ok(CaseKey { tenant: tenant.to_string(), incident_id: incident_id.to_string() })
    }

    /// The partition key used in storage: `tenant#incident`.
    pub fn storage_id(&self) -> String {
        format!("{}#{}", self.tenant, self.incident_id)
    }

    /// The key back from [`CaseKey::storage_id`].
    pub fn from_storage_id(id: &str) -> Result<CaseKey, InvalidKey> {
        let (tenant, incident) = id.split_once('#').ok_or(InvalidKey { field: "storage id", reason: "expected tenant#incident" })?;
        CaseKey::new(tenant, incident)
    }
}

impl fmt::Display for CaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.incident_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_keys_are_validated() {
        assert!(CaseKey::new("acme", "42").is_ok());
        assert_eq!(CaseKey::new("", "1").unwrap_err().field, "tenant");
        assert!(CaseKey::new("acme", "1#2").is_err());
        assert!(CaseKey::new("acme", "..").is_err(), "no dot-only ids: they reach URL paths");
        assert!(CaseKey::new("acme", &"9".repeat(65)).is_err());
        assert_eq!(CaseKey::new("acme", "42").unwrap().storage_id(), "acme#42");
        assert_eq!(CaseKey::from_storage_id("acme#42"), CaseKey::new("acme", "42"));
        assert!(CaseKey::from_storage_id("acme").is_err() && CaseKey::from_storage_id("acme#4#2").is_err());
    }
}
