//! Closure exports: a posted closure summary handed to a ServiceNow record and an e-mail, each
//! target once, every delivery or refusal recorded on the draft and audited.

use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

use super::Writeback;
use crate::domain::{CaseKey, Draft, Export};
use crate::ports::{ClosureExport, ClosureRecord, NotifyError};
use crate::stages::StageError;
use crate::store::{draft_sk, Change};
use crate::text::clean_text;

impl Writeback {
    /// Hands the closure summary to each target that has not had it, recording each delivery
    /// (or refusal) on the draft so a redelivered message sends nothing twice. A target that
    /// fails for now sends the message back; the others are not repeated. (A worker that dies
    /// between a delivery and its record delivers again: the ServiceNow target finds its record
    /// by correlation id and updates it; an e-mail is sent again.)
    pub(super) async fn export_closure(&self, key: &CaseKey, draft: &Draft) -> Result<(), StageError> {
        let pending: Vec<&Arc<dyn ClosureExport>> = self.exports.iter().filter(|e| !draft.exported_to(e.target())).collect();
        if pending.is_empty() {
            return Ok(());
        }
        let case = self.ctx.store.case(key).await?.map(|c| c.value);
        let record = ClosureRecord {
            case: key.clone(),
            title: case.as_ref().and_then(|c| c.incident_name.clone().or_else(|| c.alert_names.first().cloned())).unwrap_or_default(),
            severity: case.as_ref().map(|c| c.severity).unwrap_or_default(),
            resolution: case.as_ref().and_then(|c| c.resolution.clone()).unwrap_or_default(),
            summary: draft.comment.clone(),
        };
        let mut retry = None;
        for target in pending {
            let export = match target.export(&record).await {
                Ok(receipt) => Export { target: target.target().into(), delivered: true, detail: receipt, at_ms: self.ctx.now_ms() },
                Err(NotifyError::Retryable(why)) => {
                    warn!(target = target.target(), error = %why, "closure summary not handed on; will retry");
                    retry = Some(why);
                    continue;
                }
                Err(NotifyError::Refused(why)) => {
                    Export { target: target.target().into(), delivered: false, detail: why, at_ms: self.ctx.now_ms() }
                }
            };
            let event = self.ctx.event(
                key,
                if export.delivered { "closure.exported" } else { "closure.export_refused" },
                format!("{}: {}", export.target, clean_text(&export.detail, 300)),
            );
            self.ctx
                .store
                .update(&key.storage_id(), &draft_sk(&draft.id), |d: &mut Draft, commit| {
                    if !d.record_export(export.clone()) {
                        return Ok::<_, StageError>(Change::Keep(()));
                    }
                    commit.audit(&event)?;
                    Ok(Change::Write(()))
                })
                .await?;
        }
        match retry {
            Some(why) => {
                Err(StageError::RetryLater { reason: format!("closure summary not handed on: {why}"), after: Duration::from_secs(60) })
            }
            None => Ok(()),
        }
    }
}
