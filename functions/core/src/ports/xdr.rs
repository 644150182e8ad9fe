//! The calls Dossier makes to Cortex XDR, and to the identity provider for `disable_user`.

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdrError {
    #[error("XDR rejected the API key (HTTP 401): check the key, its id and the clock: {0}")]
    Unauthorized(String),
    #[error("XDR tenant lacks the licence this call needs (HTTP 402): {0}")]
    NoLicence(String),
    #[error("the API key's role lacks a permission (HTTP 403): {0}")]
    Forbidden(String),
    #[error("XDR does not know this object: {0}")]
    NotFound(String),
    #[error("XDR rate limit reached: {0}")]
    RateLimited(String),
    #[error("XDR server error: {0}")]
    Server(String),
    #[error("XDR refused the request (HTTP 4xx): {0}")]
    Rejected(String),
    /// The request never left (connection refused, DNS): nothing happened at XDR.
    #[error("XDR unreachable: {0}")]
    Unreachable(String),
    /// The request left and no answer came back (timeout, reset): it may have been applied.
    #[error("XDR did not answer: {0}")]
    Transport(String),
    #[error("XDR answered something unusable: {0}")]
    BadReply(String),
    #[error("XDR is not configured: {0}")]
    NotConfigured(String),
}

impl XdrError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, XdrError::RateLimited(_) | XdrError::Server(_) | XdrError::Transport(_) | XdrError::Unreachable(_))
    }

    /// Whether XDR provably did not apply a write that failed so: refused before processing
    /// (4xx, 429) or never reached. A 5xx, a timeout or an unreadable answer may hide a write
    /// that happened.
    pub fn proves_nothing_written(&self) -> bool {
        matches!(
            self,
            XdrError::Unauthorized(_)
                | XdrError::NoLicence(_)
                | XdrError::Forbidden(_)
                | XdrError::NotFound(_)
                | XdrError::RateLimited(_)
                | XdrError::Rejected(_)
                | XdrError::Unreachable(_)
                | XdrError::NotConfigured(_)
        )
    }
}

/// An incident (3.x) or case (5.x) as a listing returns it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IncidentRef {
    pub incident_id: String,
    pub status: Option<String>,
    pub severity: crate::domain::Severity,
    pub description: String,
    pub creation_ms: Option<i64>,
    pub modification_ms: Option<i64>,
}

/// The calls Dossier makes to Cortex XDR.
#[async_trait]
pub trait XdrApi: Send + Sync {
    /// Incidents (3.x `incidents/get_incidents`) or cases (5.x `case/search`) modified in
    /// `[from_ms, to_ms]`, oldest first, all pages.
    async fn list_modified(&self, from_ms: i64, to_ms: i64) -> Result<Vec<IncidentRef>, XdrError>;
    /// `incidents/get_incident_extra_data`: the raw reply body, parsed by `crate::xdr`.
    async fn get_incident_extra_data(&self, incident_id: &str) -> Result<String, XdrError>;
    /// `incidents/update_incident` with `update_data.comment` (`comment_action: "add"`).
    async fn add_comment(&self, incident_id: &str, text: &str) -> Result<(), XdrError>;
    /// `incidents/update_incident` with `update_data.manual_severity`.
    async fn set_severity(&self, incident_id: &str, severity: &str) -> Result<(), XdrError>;
    /// `endpoints/isolate` for one endpoint, linked to the incident; returns XDR's action id.
    async fn isolate_endpoint(&self, endpoint_id: &str, incident_id: &str) -> Result<String, XdrError>;
    /// `hash_exceptions/blocklist` for one SHA-256, linked to the incident. Already listed is success.
    async fn block_hash(&self, sha256: &str, comment: &str, incident_id: &str) -> Result<(), XdrError>;
    /// `actions/get_action_status`: endpoint id → status.
    async fn action_status(&self, action_id: &str) -> Result<Vec<(String, String)>, XdrError>;

    /// Read-back before a retried comment: whether a comment carrying `marker` is already on the
    /// incident. `None` where the API cannot read comments back (3.x has no such call).
    async fn comment_exists(&self, incident_id: &str, marker: &str) -> Result<Option<bool>, XdrError>;

    /// Read-back before a retried isolation: whether the endpoint is isolated or isolating
    /// (`endpoints/get_endpoint` `is_isolated`).
    async fn endpoint_isolated(&self, endpoint_id: &str) -> Result<Option<bool>, XdrError>;

    /// Read-back before a retried severity change: the incident's manual severity, if set.
    async fn manual_severity(&self, incident_id: &str) -> Result<Option<String>, XdrError>;
}

/// Disabling an identity (Okta suspend, Entra ID `accountEnabled = false`).
#[async_trait]
pub trait IdentityAdmin: Send + Sync {
    /// Which directory acts (recorded with the result).
    fn name(&self) -> &str;
    /// Returns what the directory answered, in words.
    async fn disable_user(&self, user: &str) -> Result<String, XdrError>;
    /// Read-back before a retried disable: whether the account is already disabled.
    async fn is_disabled(&self, user: &str) -> Result<Option<bool>, XdrError>;
}
