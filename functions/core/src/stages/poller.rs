//! poller: the door for classic XDR, which has no incident webhook. Reads incidents modified
//! since the watermark (minus a safety lag, so late-indexed changes are read again), opens one
//! case per incident however often it is seen, and moves the watermark.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use super::{open_case, Context, StageError};
use crate::case::{Case, CaseKey, IncidentHint, Trigger};
use crate::ports::{PutOutcome, ReplaceOutcome, Table, XdrApi};

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

#[derive(Serialize, Deserialize)]
struct Watermark {
    to_ms: i64,
}

const PK: &str = "poller";

impl Poller {
    pub fn new(ctx: Context, xdr: Arc<dyn XdrApi>) -> Poller {
        Poller { ctx, xdr, safety_lag: Duration::from_secs(120), first_lookback: Duration::from_secs(15 * 60) }
    }

    fn watermark_sk(&self) -> String {
        format!("watermark#{}", self.ctx.config.default_tenant)
    }

    pub async fn poll(&self) -> Result<PollReport, StageError> {
        let now = self.ctx.now_ms();
        let sk = self.watermark_sk();
        let stored = self.ctx.store.get(Table::Cases, PK, &sk).await?;
        let lag = i64::try_from(self.safety_lag.as_millis()).unwrap_or(0);
        let from_ms = match &stored {
            Some(doc) => serde_json::from_str::<Watermark>(&doc.body).map(|w| w.to_ms - lag).unwrap_or(now - lag),
            None => now - i64::try_from(self.first_lookback.as_millis()).unwrap_or(0),
        };
        let incidents = self.xdr.list_modified(from_ms, now).await?;
        let mut report = PollReport { from_ms, to_ms: now, seen: incidents.len(), ..PollReport::default() };
        for inc in incidents {
            let key = match CaseKey::new(&self.ctx.config.default_tenant, &inc.incident_id) {
                Ok(k) => k,
                Err(e) => {
                    warn!(incident = %inc.incident_id, error = %e, "incident id not usable; skipped");
                    report.skipped += 1;
                    continue;
                }
            };
            let status = inc.status.clone().unwrap_or_default();
            let lower = status.to_ascii_lowercase();
            if lower.starts_with("resolved") || lower == "closed" {
                // The closure path: a resolve-comment draft for the analyst, once per case.
                if self.ctx.repo.case(&key).await?.is_some() {
                    self.ctx.audit(&key, "incident.resolved", format!("XDR status {status}")).await?;
                    self.ctx
                        .send(
                            &crate::ports::QueueName::synthesize(),
                            &crate::messages::Message::Close { case: key.clone(), resolution: status.clone() },
                            Duration::ZERO,
                        )
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
            let hint = IncidentHint {
                severity: inc.severity,
                description: inc.description.clone(),
                created_at_ms: inc.creation_ms,
                status: inc.status.clone(),
                ..Default::default()
            };
            if self.ctx.repo.case(&key).await?.is_some() {
                report.already_known += 1;
                continue;
            }
            if open_case(&self.ctx, Case::new(key, Trigger::Poller, hint, now)).await? {
                report.opened += 1;
            } else {
                report.already_known += 1;
            }
        }
        // Moves forward only: two overlapping polls cannot move it back.
        let body = serde_json::to_string(&Watermark { to_ms: now }).expect("watermark serialises");
        match stored {
            None => {
                if self.ctx.store.put_new(Table::Cases, PK, &sk, &body, None).await? == PutOutcome::AlreadyExists {
                    info!("another poll set the first watermark");
                }
            }
            Some(doc) => {
                let previous = serde_json::from_str::<Watermark>(&doc.body).map(|w| w.to_ms).unwrap_or(0);
                if previous < now && self.ctx.store.replace(Table::Cases, PK, &sk, &body, doc.version).await? == ReplaceOutcome::Conflict {
                    info!("another poll moved the watermark first");
                }
            }
        }
        info!(seen = report.seen, opened = report.opened, skipped = report.skipped, resolved = report.resolved, "poll done");
        Ok(report)
    }
}
