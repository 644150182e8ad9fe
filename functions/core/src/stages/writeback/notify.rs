//! Telling approvers: each approver's signed link on every personal channel (and on shared ones
//! when approvers sign in), retried with a growing delay, every delivery recorded on the action.

use std::time::Duration;
use tracing::warn;

use super::Writeback;
use crate::domain::{Action, ActionStatus, CaseKey, Notification};
use crate::messages::Message;
use crate::ports::{ApprovalNotice, NotifyError, QueueName};
use crate::stages::StageError;
use crate::store::{action_sk, Change, Versioned};
use crate::text::clean_text;

/// Delivery attempts per approver and channel before a notification is recorded as failed.
const NOTIFY_ATTEMPTS: u32 = 5;

/// Who a shared channel's announcement is recorded for.
const EVERY_APPROVER: &str = "every approver";

impl Writeback {
    /// Sends each approver's link on every channel not yet delivered; failures come back with a
    /// growing delay and, after the last attempt, stay on the action as failed deliveries.
    pub(super) async fn notify(&self, key: &CaseKey, action_id: &str, attempt: u32) -> Result<(), StageError> {
        let Some(Versioned { value: action, .. }) = self.ctx.store.action(key, action_id).await? else { return Ok(()) };
        if action.status != ActionStatus::Proposed || action.notified {
            return Ok(());
        }
        let case = self.ctx.store.case(key).await?.map(|c| c.value);
        let title = case.as_ref().and_then(|c| c.incident_name.clone().or_else(|| c.alert_names.first().cloned())).unwrap_or_default();
        let severity = case.as_ref().map(|c| c.severity).unwrap_or_default();
        let notice = |approver: String, url: Option<String>, expires_at_ms: i64| ApprovalNotice {
            case: key.clone(),
            title: clean_text(&title, 200),
            severity,
            action: action.kind.describe().to_string(),
            target: action.target_label.clone(),
            rationale: clean_text(&action.rationale, 400),
            approver,
            url,
            expires_at_ms,
        };
        let delivered = |approver: &str, channel: &str| {
            action.notifications.iter().any(|d| d.delivered && d.approver == approver && d.channel == channel)
        };
        let mut results = Vec::new();
        for n in &self.notifiers {
            // A link alone decides unless approvers sign in: only personal channels carry links
            // then; a shared channel is told once per action that each approver got theirs.
            if n.personal() || self.ctx.config.approver_signin {
                for link in &action.links {
                    if delivered(&link.approver, n.channel()) {
                        continue;
                    }
                    let outcome = n.notify(&notice(link.approver.clone(), Some(link.url.clone()), link.expires_at_ms)).await;
                    results.push((link.approver.clone(), n.channel().to_string(), outcome));
                }
            } else if !action.links.is_empty() && !delivered(EVERY_APPROVER, n.channel()) {
                let approvers: Vec<&str> = action.links.iter().map(|l| l.approver.as_str()).collect();
                let expires = action.links.iter().map(|l| l.expires_at_ms).max().unwrap_or_default();
                let outcome = n.notify(&notice(approvers.join(", "), None, expires)).await;
                results.push((EVERY_APPROVER.to_string(), n.channel().to_string(), outcome));
            }
        }
        let now = self.ctx.now_ms();
        let mut retry = false;
        let mut recorded: Vec<Notification> = Vec::new();
        for (approver, channel, outcome) in results {
            let (delivered, detail) = match outcome {
                Ok(()) => (true, "delivered".to_string()),
                Err(NotifyError::Retryable(m)) if attempt < NOTIFY_ATTEMPTS => {
                    retry = true;
                    warn!(%channel, error = %m, attempt, "approval notice not delivered; will retry");
                    continue;
                }
                Err(e) => (false, e.to_string()),
            };
            recorded.push(Notification { approver, channel, delivered, detail, at_ms: now });
        }
        let undelivered = if self.notifiers.is_empty() {
            Some("no notification channel is configured (DOSSIER_NOTIFY): the link was not sent")
        } else if !self.ctx.config.approver_signin && !self.notifiers.iter().any(|n| n.personal()) {
            Some("only shared channels are configured and approvers do not sign in: the link was not sent (add email or slack_dm to DOSSIER_NOTIFY, or set DOSSIER_OIDC_ISSUER)")
        } else {
            None
        };
        if let Some(why) = undelivered {
            warn!(action = action_id, "{why}");
            recorded.extend(action.links.iter().map(|l| Notification {
                approver: l.approver.clone(),
                channel: "none".into(),
                delivered: false,
                detail: why.into(),
                at_ms: now,
            }));
        }
        let events: Vec<_> = recorded
            .iter()
            .map(|r| self.ctx.event(key, "approval.notified", format!("{action_id} to {} by {}: {}", r.approver, r.channel, r.detail)))
            .collect();
        self.ctx
            .store
            .update(&key.storage_id(), &action_sk(action_id), |a: &mut Action, commit| {
                if a.status != ActionStatus::Proposed {
                    return Ok::<_, StageError>(Change::Keep(()));
                }
                a.record_notifications(recorded.clone(), !retry);
                for e in &events {
                    commit.audit(e)?;
                }
                Ok(Change::Write(()))
            })
            .await?;
        if retry {
            let delay = Duration::from_secs(30 * u64::from(attempt));
            let again = Message::Notify { case: key.clone(), action_id: action_id.to_string(), attempt: attempt + 1 };
            self.ctx.send(&QueueName::writeback(), &again, delay).await?;
        }
        Ok(())
    }
}
