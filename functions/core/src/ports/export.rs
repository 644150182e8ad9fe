//! Where a closed case's summary goes besides XDR: a ticket (ServiceNow), an e-mail (SES).

use async_trait::async_trait;

use crate::domain::{CaseKey, Severity};
use crate::ports::NotifyError;

/// What a closed case hands on: its identity, how XDR resolved it and the closure summary.
#[derive(Clone, Debug, PartialEq)]
pub struct ClosureRecord {
    pub case: CaseKey,
    pub title: String,
    pub severity: Severity,
    pub resolution: String,
    /// The closure draft (executive summary, root cause, lessons), as posted to XDR.
    pub summary: String,
}

impl ClosureRecord {
    /// One id per case for systems that correlate by a key (ServiceNow `correlation_id`).
    pub fn correlation_id(&self) -> String {
        format!("dossier:{}#{}", self.case.tenant, self.case.incident_id)
    }
}

#[async_trait]
pub trait ClosureExport: Send + Sync {
    /// `servicenow`, `email`: recorded on the closure draft once delivered.
    fn target(&self) -> &str;
    /// Delivers the record; the receipt says where it went (a ticket number, recipients).
    async fn export(&self, record: &ClosureRecord) -> Result<String, NotifyError>;
}
