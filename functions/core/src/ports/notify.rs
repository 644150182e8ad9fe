//! Telling approvers: Slack, Microsoft Teams, e-mail.

use async_trait::async_trait;

/// What an approver is told: the case, the action, and their signed link.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalNotice {
    pub case: crate::domain::CaseKey,
    pub title: String,
    pub severity: crate::domain::Severity,
    pub action: String,
    pub target: String,
    pub rationale: String,
    /// The approver this notice is for; on a shared channel that gets no links, all of them.
    pub approver: String,
    /// The approver's signed link; none on a shared channel while the link alone proves who
    /// decides (no approver sign-in): anyone in the channel could use it.
    pub url: Option<String>,
    pub expires_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("delivery failed, will retry: {0}")]
    Retryable(String),
    #[error("delivery refused: {0}")]
    Refused(String),
}

/// Slack, Microsoft Teams, e-mail.
#[async_trait]
pub trait Notifier: Send + Sync {
    fn channel(&self) -> &str;
    /// Whether a message reaches only the approver it is addressed to (an e-mail, a direct
    /// message), not a channel others read.
    fn personal(&self) -> bool;
    async fn notify(&self, notice: &ApprovalNotice) -> Result<(), NotifyError>;
}
