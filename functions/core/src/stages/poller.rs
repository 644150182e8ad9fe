//! poller: the door for classic XDR, which has no incident webhook. Reads incidents modified
//! since the watermark (minus a safety lag, so late-indexed changes are read again), opens one
//! case per incident however often it is seen, and moves the watermark.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use super::intake::is_resolved;
use super::{open_case, Context, StageError};
use crate::domain::{Case, CaseKey, IncidentHint, Trigger};
use crate::messages::Message;
use crate::ports::{QueueName, XdrApi};
use crate::store::Watermarks;

pub struct Poller {
    ctx: Context,
    xdr: Arc<dyn XdrApi>,
    /// Changes are read again for this long after the watermark (XDR indexes with a delay).
    pub safety_lag: Duration,
    /// How far back the very first poll looks.
    pub first_lookback: Duration,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PollReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub seen: usize,
    pub opened: usize,
    pub already_known: usize,
    pub skipped: usize,
    pub resolved: usize,
}

impl Poller {
    pub fn new(ctx: Context, xdr: Arc<dyn XdrApi>) -> Poller {
        Poller { ctx, xdr, safety_lag: Duration::from_secs(120), first_lookback: Duration::from_secs(15 * 60) }
    }

    pub async fn poll(&self) -> Result<PollReport, StageError> {
        let now = self.ctx.now_ms();
        let tenant = self.ctx.config.default_tenant.clone();
        let watermarks = Watermarks(&self.ctx.store);
        let stored = watermarks.get(&tenant).await?;
        let lag = i64::try_from(self.safety_lag.as_millis()).unwrap_or(0);
        let from_ms = match stored {
            Some((to_ms, _)) => to_ms - lag,
            None => now - i64::try_from(self.first_lookback.as_millis()).unwrap_or(0),
        };
        let incidents = self.xdr.list_modified(from_ms, now).await?;
        let mut report = PollReport { from_ms, to_ms: now, seen: incidents.len(), ..PollReport::default() };
        for inc in incidents {
            let key = match CaseKey::new(&tenant, &inc.incident_id) {
                Ok(k) => k,
                Err(e) => {
                    warn!(incident = %inc.incident_id, error = %e, "incident id not usable; skipped");
                    report.skipped += 1;
                    continue;
                }
            };
            let status = inc.status.clone().unwrap_or_default();
            let known = self.ctx.store.case(&key).await?;
            if is_resolved(&status) {
                // The closure path, once per case: the closure stage records the resolution and
                // drafts its note once however often the poller sees it.
                if known.as_ref().is_some_and(|c| c.value.resolution.is_none()) {
                    self.ctx
                        .send(&QueueName::synthesize(), &Message::Close { case: key.clone(), resolution: status.clone() }, Duration::ZERO)
                        .await?;
                }
                report.resolved += 1;
                continue;
            }
            if let Err(reason) = self.ctx.config.admit(inc.severity, inc.status.as_deref()) {
                info!(incident = %inc.incident_id, %reason, "incident skipped by the rollout filter");
                report.skipped += 1;
                continue;
            }
            if known.is_some() {
                report.already_known += 1;
                continue;
            }
            let hint = IncidentHint {
                severity: inc.severity,
                description: inc.description.clone(),
                created_at_ms: inc.creation_ms,
                status: inc.status.clone(),
                ..Default::default()
            };
            if open_case(&self.ctx, Case::new(key, Trigger::Poller, hint, now, &self.ctx.config.budgets)).await? {
                report.opened += 1;
            } else {
                report.already_known += 1;
            }
        }
        if !watermarks.advance(&tenant, stored, now).await? {
            info!("another poll moved the watermark first");
        }
        info!(seen = report.seen, opened = report.opened, skipped = report.skipped, resolved = report.resolved, "poll done");
        Ok(report)
    }
}
