//! collect: fetch the incident's extra data from XDR, extract indicators, fan out to the sources
//! and set the fan-in deadline.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn, Instrument};

use super::{Context, Deadline, MessageHandler, StageError};
use crate::domain::{Case, CaseKey, CaseStatus};
use crate::extract::extract;
use crate::messages::{Message, SynthesisReason};
use crate::ports::{QueueName, XdrApi, XdrError};
use crate::store::{Commit, Committed, Versioned};
use crate::xdr::{parse_extra_data, ExtraData};

pub struct Collect {
    ctx: Context,
    xdr: Arc<dyn XdrApi>,
    known_tenants: crate::sources::KnownTenants,
}

impl Collect {
    pub fn new(ctx: Context, xdr: Arc<dyn XdrApi>) -> Collect {
        Collect { ctx, xdr, known_tenants: Default::default() }
    }

    async fn collect(&self, key: &CaseKey) -> Result<(), StageError> {
        // 10 requests/minute per tenant, shared by every invocation: wait in the queue, not in
        // XDR. The token is taken while the case is read (one round trip, not two); a redelivery
        // of a case collected already spends one it does not use, a rare cost.
        let limit = self.ctx.config.xdr_extra_data_limit.clone();
        let (stored, token) = tokio::join!(self.ctx.store.case(key), self.ctx.limits.acquire(&limit));
        let Some(stored) = stored? else {
            return Err(StageError::BadMessage(format!("no case {key}")));
        };
        match stored.value.status {
            CaseStatus::Received | CaseStatus::Collecting => {}
            // A redelivery after the commit: the worker before may have died before its fan-out
            // or its related-case index. While enriching the fan-out is sent again (consumers
            // dedupe); once collected at all, the index is written again (the same items).
            _ => {
                let case = &stored.value;
                if case.status == CaseStatus::Enriching {
                    self.fan_out(case, stored.version).await?;
                }
                if let Some(collected_at) = case.entered(CaseStatus::Enriching) {
                    crate::sources::index_case(self.ctx.store.docs().as_ref(), case, collected_at, &self.known_tenants).await?;
                }
                return Ok(());
            }
        }
        if let Err(e) = token {
            self.waiting(&stored).await?;
            return Err(e.into());
        }
        let raw = match self.xdr.get_incident_extra_data(&key.incident_id).await {
            Ok(raw) => raw,
            Err(XdrError::RateLimited(reason)) => {
                self.waiting(&stored).await?;
                return Err(StageError::RetryLater { reason: format!("XDR rate limit: {reason}"), after: limit.window });
            }
            Err(e) if e.is_retryable() => {
                warn!(error = %e, "extra data not available yet; will retry");
                self.waiting(&stored).await?;
                return Err(e.into());
            }
            Err(e) => return self.ctx.fail_case(key, format!("XDR get_incident_extra_data failed: {e}")).await,
        };
        let data = match parse_extra_data(&raw) {
            Ok(list) => pick(list, &key.incident_id),
            Err(e) => return self.unusable(stored, format!("XDR extra data unusable: {e}")).await,
        };
        // XDR already resolved it (a duplicate, a false positive): the closure path only, never
        // a dossier.
        if let Some(status) = data.incident.status.as_deref().filter(|s| super::intake::is_resolved(s)) {
            let mut case = stored.value;
            if case.resolve(status, self.ctx.now_ms()) {
                let mut commit = Commit::new();
                commit.save(&case, stored.version)?;
                commit.audit(&self.ctx.event(key, "incident.resolved", format!("XDR status {status} when collected: no dossier")))?;
                self.ctx.store.commit(commit).await?;
            }
            info!(%status, "incident already resolved in XDR; closed without a dossier");
            return Ok(());
        }
        let config = self.ctx.config.clone();
        let now = self.ctx.now_ms();
        let deadline = now + i64::try_from(config.enrich_deadline.as_millis()).unwrap_or(i64::MAX / 4);
        let stored_version = stored.version;
        let mut case = stored.value;
        // What the tenant's own data shows it owns is internal from the first lookup on.
        let learned = crate::extract::learned_suffixes(&data);
        let names = config.internal_names.with_learned(&learned);
        apply_extra_data(&mut case, &data, extract(&data, &names), config.max_indicators);
        case.internal_suffixes = learned;
        if !case.collected(config.sources.clone(), deadline, now) {
            return Ok(());
        }
        let mut commit = Commit::new();
        commit.save(&case, stored_version)?;
        commit.audit(&self.ctx.event(key, "xdr.get_incident_extra_data", format!("{} bytes", raw.len())))?;
        commit.audit(&self.ctx.event(
            key,
            "case.collected",
            format!(
                "{} alert(s), {} indicator(s), {} source(s) asked",
                case.alert_count,
                case.indicators.len(),
                case.expected_sources.len()
            ),
        ))?;
        // The commit before the fan-out: a message never describes a case the store does not
        // hold (a commit lost to a resolution or another delivery sends nothing).
        if let Committed::Conflict { .. } = self.ctx.store.commit(commit).await? {
            info!("collected by another worker");
            return Ok(());
        }
        info!(indicators = case.indicators.len(), techniques = case.techniques.len(), alerts = case.alert_count, "collected");
        self.fan_out(&case, stored_version + 1).await?;
        // The related-case index is not on the way to the dossier: after the hand-off.
        crate::sources::index_case(self.ctx.store.docs().as_ref(), &case, now, &self.known_tenants).await?;
        Ok(())
    }

    /// XDR answered something unusable: counted on the case; tried again later, or the case
    /// ends with the reason.
    async fn unusable(&self, stored: Versioned<Case>, reason: String) -> Result<(), StageError> {
        let mut case = stored.value;
        let ended = case.collect_failed(&reason, self.ctx.now_ms(), &self.ctx.config.budgets);
        let mut commit = Commit::new();
        commit.save(&case, stored.version)?;
        commit.audit(&self.ctx.event(&case.key, if ended { "case.failed" } else { "xdr.unusable" }, reason.clone()))?;
        self.ctx.store.commit(commit).await?;
        if ended {
            warn!(%reason, "case failed");
            return Ok(());
        }
        Err(StageError::RetryLater { reason, after: Duration::from_secs(30) })
    }

    /// Collect must wait for XDR: the case says so (once), so its budget is the collect budget.
    async fn waiting(&self, stored: &Versioned<Case>) -> Result<(), StageError> {
        if stored.value.status != CaseStatus::Received {
            return Ok(());
        }
        let mut case = stored.value.clone();
        if case.collecting(self.ctx.now_ms(), &self.ctx.config.budgets) {
            let mut commit = Commit::new();
            commit.save(&case, stored.version)?;
            self.ctx.store.commit(commit).await?;
        }
        Ok(())
    }

    /// Sends each source its message (with the case as collected at `version`, when small
    /// enough to carry) and the deadline message, side by side.
    async fn fan_out(&self, case: &Case, version: u64) -> Result<(), StageError> {
        let now = self.ctx.now_ms();
        let snapshot = self.ctx.snapshot(case, version);
        let delay = Duration::from_millis(u64::try_from(case.enrich_deadline_ms.unwrap_or(now) - now).unwrap_or(0))
            .min(crate::ports::MAX_QUEUE_DELAY);
        let mut messages: Vec<(QueueName, Message, Duration)> = case
            .expected_sources
            .iter()
            .map(|s| {
                let message = Message::Enrich { case: case.key.clone(), source: s.clone(), snapshot: snapshot.clone() };
                (QueueName::enrich(s), message, Duration::ZERO)
            })
            .collect();
        messages.push((QueueName::synthesize(), Message::Synthesize { case: case.key.clone(), reason: SynthesisReason::Deadline }, delay));
        self.ctx.send_all(messages).await
    }
}

#[async_trait]
impl MessageHandler for Collect {
    async fn handle(&self, body: &str, _deadline: Deadline) -> Result<(), StageError> {
        let Message::Collect { case } = Message::parse(body)? else {
            return Err(StageError::BadMessage("collect accepts only `collect` messages".into()));
        };
        let span = tracing::info_span!("case", case = %case, stage = "collect");
        self.collect(&case).instrument(span).await
    }
}

/// The incident we asked for (a multi-incident reply may hold several).
fn pick(mut list: Vec<ExtraData>, incident_id: &str) -> ExtraData {
    match list.iter().position(|d| d.incident.incident_id == incident_id) {
        Some(i) => list.swap_remove(i),
        None => list.swap_remove(0),
    }
}

/// Writes what collect learned onto the case, merging the webhook's hints.
pub fn apply_extra_data(case: &mut Case, data: &ExtraData, extraction: crate::extract::Extraction, max_indicators: usize) {
    // Every fact comes from XDR's answer. What the webhook said (endpoint ids, users, text) was a
    // hint for the door only: a caller must not choose the targets or the words of a dossier.
    // Polled cases and minimal webhooks learn the creation time from XDR (for time-to-dossier).
    if case.hint.created_at_ms.is_none() {
        case.hint.created_at_ms = data.incident.creation_ms;
    }
    let mut indicators = extraction.indicators;
    // Keep external indicators first when the cap bites: they are what sources can enrich.
    indicators.sort_by_key(|i| (i.internal, i.kind, i.value.clone()));
    case.indicators_dropped = indicators.len().saturating_sub(max_indicators);
    indicators.truncate(max_indicators);
    case.indicators = indicators;
    case.inferred_techniques = crate::extract::infer(&data.alerts, &extraction.techniques);
    case.techniques = extraction.techniques;
    case.endpoints = extraction.endpoints;
    case.incident_name = data.incident.name.clone();
    case.description = crate::redact::credentials(&data.incident.description);
    if data.incident.severity != crate::domain::Severity::Unknown {
        case.severity = data.incident.severity;
    }
    case.xdr_url = data.incident.xdr_url.clone();
    case.facts = crate::extract::facts(data);
    case.alert_count = case.facts.xdr_alert_count;
    let mut names: Vec<String> = data.alerts.iter().filter_map(|a| a.name.clone()).collect();
    names.dedup();
    names.truncate(20);
    case.alert_names = names;
    case.first_alert_ms = data.alerts.iter().filter_map(|a| a.detection_ms).min();
    // Credentials go before anything is cut or stored: a truncated password is still one.
    let text = |a: &crate::xdr::Alert, field: &str| {
        a.fields
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| crate::text::clean_text(&crate::redact::credentials(v), crate::domain::MAX_ALERT_TEXT))
    };
    let mut digests: Vec<crate::domain::AlertDigest> = data
        .alerts
        .iter()
        .take(crate::domain::MAX_ALERT_DIGESTS)
        .map(|a| crate::domain::AlertDigest {
            name: crate::text::clean_text(a.name.as_deref().unwrap_or(""), 200),
            category: crate::text::clean_text(a.category.as_deref().unwrap_or(""), 100),
            severity: a.severity,
            time_ms: a.detection_ms,
            host: a.host_name.as_deref().map(str::to_ascii_lowercase),
            user: a.user_name.clone(),
            action: a.action.clone(),
            command_line: text(a, "actor_process_command_line").or_else(|| text(a, "causality_actor_process_command_line")),
            description: text(a, "description"),
        })
        .collect();
    digests.sort_by_key(|d| d.time_ms.unwrap_or(i64::MAX));
    case.alerts = digests;
    case.parse_warnings = data.warnings.iter().take(20).cloned().collect();
}
