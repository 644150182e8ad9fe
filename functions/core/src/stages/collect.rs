//! collect: fetch the incident's extra data from XDR, extract indicators, fan out to the sources
//! and set the fan-in deadline.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn, Instrument};

use super::{Context, MessageHandler, StageError};
use crate::case::{Case, CaseKey, CaseStatus};
use crate::extract::{extract, Collector, Endpoint};
use crate::indicator::IndicatorKind;
use crate::messages::{Message, SynthesisReason};
use crate::ports::{QueueName, XdrApi, XdrError};
use crate::repo::{Change, CASE_SK};
use crate::xdr::{parse_extra_data, ExtraData};

pub struct Collect {
    ctx: Context,
    xdr: Arc<dyn XdrApi>,
}

impl Collect {
    pub fn new(ctx: Context, xdr: Arc<dyn XdrApi>) -> Collect {
        Collect { ctx, xdr }
    }

    async fn collect(&self, key: &CaseKey) -> Result<(), StageError> {
        let Some(case) = self.ctx.repo.case(key).await? else {
            return Err(StageError::BadMessage(format!("no case {key}")));
        };
        match case.status {
            CaseStatus::Received | CaseStatus::Collecting => {}
            // A redelivery after the fan-out was (maybe partly) sent: send it again, consumers dedupe.
            CaseStatus::Enriching => return self.fan_out(&case).await,
            _ => return Ok(()),
        }
        if case.status == CaseStatus::Received {
            self.transition(key, CaseStatus::Collecting, |_| {}).await?;
        }
        let now = self.ctx.now_ms();
        // 10 requests/minute per tenant, shared by every invocation: wait in the queue, not in XDR.
        let limit = self.ctx.config.xdr_extra_data_limit.clone();
        self.ctx.limits.acquire(&limit).await?;
        let raw = match self.xdr.get_incident_extra_data(&key.incident_id).await {
            Ok(raw) => raw,
            Err(XdrError::RateLimited(reason)) => {
                return Err(StageError::RetryLater { reason: format!("XDR rate limit: {reason}"), after: limit.window })
            }
            Err(e) if e.is_retryable() => {
                warn!(error = %e, "extra data not available yet; will retry");
                return Err(e.into());
            }
            Err(e) => return self.ctx.fail_case(key, format!("XDR get_incident_extra_data failed: {e}")).await,
        };
        self.ctx.audit(key, "xdr.get_incident_extra_data", format!("{} bytes", raw.len())).await?;
        let data = match parse_extra_data(&raw) {
            Ok(list) => pick(list, &key.incident_id),
            Err(e) => return self.ctx.fail_case(key, format!("XDR extra data unusable: {e}")).await,
        };
        let config = self.ctx.config.clone();
        let extraction = extract(&data, &config.internal_names);
        let deadline = now + i64::try_from(config.enrich_deadline.as_millis()).unwrap_or(i64::MAX);
        let updated = self
            .transition(key, CaseStatus::Enriching, |c| {
                apply_extra_data(c, &data, extraction.clone(), config.max_indicators);
                c.expected_sources = config.sources.clone();
                c.enrich_deadline_ms = Some(deadline);
            })
            .await?;
        if let Some(case) = updated {
            crate::offline::index_case(self.ctx.store.as_ref(), &case, now).await?;
            info!(indicators = case.indicators.len(), techniques = case.techniques.len(), alerts = case.alert_count, "collected");
            self.fan_out(&case).await?;
        }
        Ok(())
    }

    /// Moves the case forward if it is still where we expect it; returns the new case, or `None`
    /// if another worker moved it first.
    async fn transition(&self, key: &CaseKey, to: CaseStatus, mut apply: impl FnMut(&mut Case)) -> Result<Option<Case>, StageError> {
        let now = self.ctx.now_ms();
        let result = self
            .ctx
            .repo
            .update(key, CASE_SK, |c: &mut Case| {
                if c.move_to(to, now).is_err() {
                    return Ok::<_, StageError>(Change::Keep(None));
                }
                apply(c);
                Ok(Change::Write(Some(c.clone())))
            })
            .await?;
        Ok(result.flatten())
    }

    async fn fan_out(&self, case: &Case) -> Result<(), StageError> {
        for source in &case.expected_sources {
            self.ctx
                .send(&QueueName::enrich(source), &Message::Enrich { case: case.key.clone(), source: source.clone() }, Duration::ZERO)
                .await?;
        }
        let now = self.ctx.now_ms();
        let delay = Duration::from_millis(u64::try_from(case.enrich_deadline_ms.unwrap_or(now) - now).unwrap_or(0))
            .min(crate::ports::MAX_QUEUE_DELAY);
        self.ctx
            .send(&QueueName::synthesize(), &Message::Synthesize { case: case.key.clone(), reason: SynthesisReason::Deadline }, delay)
            .await
    }
}

#[async_trait]
impl MessageHandler for Collect {
    async fn handle(&self, body: &str) -> Result<(), StageError> {
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
    let names = crate::indicator::InternalNames::default();
    let mut c = Collector::new(&names);
    for t in case.hint.mitre_techniques.iter() {
        c.scan_techniques(t);
    }
    for u in &case.hint.user_ids {
        c.add(IndicatorKind::User, u, "webhook.user_ids");
    }
    let (hint_indicators, hint_techniques) = c.finish();
    // Polled cases and minimal webhooks learn the creation time from XDR (for time-to-dossier).
    if case.hint.created_at_ms.is_none() {
        case.hint.created_at_ms = data.incident.creation_ms;
    }
    let mut indicators = extraction.indicators;
    for i in hint_indicators {
        if !indicators.iter().any(|x| x.kind == i.kind && x.value == i.value) {
            indicators.push(i);
        }
    }
    // Keep external indicators first when the cap bites: they are what sources can enrich.
    indicators.sort_by_key(|i| (i.internal, i.kind, i.value.clone()));
    case.indicators_dropped = indicators.len().saturating_sub(max_indicators);
    indicators.truncate(max_indicators);
    case.indicators = indicators;
    let mut techniques = extraction.techniques;
    for t in hint_techniques {
        if !techniques.contains(&t) {
            techniques.push(t);
        }
    }
    case.inferred_techniques = crate::attack_rules::infer(&data.alerts, &techniques);
    case.techniques = techniques;
    let mut endpoints = extraction.endpoints;
    for id in &case.hint.endpoint_ids {
        if !endpoints.iter().any(|e| e.endpoint_id.as_deref() == Some(id)) {
            endpoints.push(Endpoint { endpoint_id: Some(id.clone()), host_name: None });
        }
    }
    case.endpoints = endpoints;
    case.incident_name = data.incident.name.clone();
    if case.hint.description.is_empty() {
        case.hint.description = data.incident.description.clone();
    }
    if data.incident.severity != crate::xdr::Severity::Unknown {
        case.severity = data.incident.severity;
    }
    case.xdr_url = data.incident.xdr_url.clone();
    case.alert_count = data.alerts_total;
    let mut names: Vec<String> = data.alerts.iter().filter_map(|a| a.name.clone()).collect();
    names.dedup();
    names.truncate(20);
    case.alert_names = names;
    case.first_alert_ms = data.alerts.iter().filter_map(|a| a.detection_ms).min();
    let text = |a: &crate::xdr::Alert, field: &str| {
        a.fields.iter().find(|(k, _)| k == field).map(|(_, v)| crate::dossier::clean_text(v, crate::case::MAX_ALERT_TEXT))
    };
    let mut digests: Vec<crate::case::AlertDigest> = data
        .alerts
        .iter()
        .take(crate::case::MAX_ALERT_DIGESTS)
        .map(|a| crate::case::AlertDigest {
            name: crate::dossier::clean_text(a.name.as_deref().unwrap_or(""), 200),
            category: crate::dossier::clean_text(a.category.as_deref().unwrap_or(""), 100),
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
