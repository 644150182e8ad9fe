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
    pub approver: String,
    pub url: String,
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
    async fn notify(&self, notice: &ApprovalNotice) -> Result<(), NotifyError>;
}
