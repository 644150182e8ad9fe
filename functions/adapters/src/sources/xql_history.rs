//! XDR data lake history through XQL: what the same host, user or IP did over the last 24 hours
//! and 7 days (process starts, network connections, failed logins). The query is a versioned
//! template; values are quoted, never spliced raw.
//!
//! XQL as XDR runs it: a query is started once and its execution id kept (in the cache table),
//! so a redelivered message resumes it instead of starting another and paying its compute units
//! twice; results are polled with backoff up to the lookup's budget, then the wait goes back to
//! the queue. XDR allows 4 API queries at a time per tenant, so the slots are counted per tenant
//! in the store (leased, so a worker that dies does not keep one), not per process. Results are
//! kept 15 minutes for the next case about the same entity. XDR documents no call to cancel a
//! query: one given up on expires on XDR's side, and its slot lease here.

use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

use crate::xdr::{XdrHttp, XqlOutcome};
use dossier_core::domain::{Indicator, IndicatorKind};
use dossier_core::ports::{StoreError, XdrError};
use dossier_core::sources::history::{history_verdict, is_history_entity};
use dossier_core::sources::{CallCounter, IndicatorSource, Lookup, LookupError};
use dossier_core::store::{XqlRun, XqlRuns};
use dossier_core::xql::xql_quote;

/// Named `xdr` as its configuration (`DOSSIER_XDR_URL` / `DOSSIER_XDR_KEY`).
pub const NAME: &str = "xdr";
pub const TEMPLATES_VERSION: &str = "xql-history-v2";
/// XDR runs at most this many API queries at once per tenant.
pub const TENANT_SLOTS: usize = 4;
/// A slot held longer than this is taken to be abandoned (its worker died).
pub const SLOT_LEASE_MS: i64 = 10 * 60 * 1000;
/// A started query not collected within this is taken to be gone on XDR's side.
const RUN_GIVE_UP_MS: i64 = 30 * 60 * 1000;
/// How long an answer about an entity's history is reused.
const RESULT_TTL_MS: i64 = 15 * 60 * 1000;

/// The filter that selects an entity's events.
fn entity_filter(indicator: &Indicator) -> Option<String> {
    let v = xql_quote(&indicator.value);
    Some(match indicator.kind {
        IndicatorKind::Hostname => format!("agent_hostname = {v}"),
        IndicatorKind::User => format!("actor_effective_username = {v}"),
        IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => format!("action_remote_ip = {v} or action_local_ip = {v}"),
        _ => return None,
    })
}

/// Template v2, run over 7 days: events by type with failed logons (4625) counted alongside,
/// and the same two counts for the last 24 hours — one query where v1 ran two.
pub fn history_query(indicator: &Indicator) -> Option<String> {
    Some(format!(
        "dataset = xdr_data | filter {} \
         | alter failed_logon = if(action_evtlog_event_id = 4625, 1, 0), recent = if(timestamp_diff(current_time(), _time, \"HOUR\") < 24, 1, 0) \
         | alter recent_failed = if(recent = 1 and failed_logon = 1, 1, 0) \
         | comp count() as events, sum(failed_logon) as failed_logons, sum(recent) as events_24h, sum(recent_failed) as failed_logons_24h by event_type \
         | limit 50",
        entity_filter(indicator)?
    ))
}

fn store_error(e: StoreError) -> LookupError {
    LookupError::Transport(format!("query state: {e}"))
}

pub struct XqlHistory {
    xdr: Arc<XdrHttp>,
    state: Option<XqlRuns>,
    /// First wait between result polls; it doubles up to 5 s.
    pub first_poll: Duration,
    /// Longest one lookup waits for a running query before the wait goes back to the queue.
    pub max_wait: Duration,
}

fn xdr_error(e: XdrError) -> LookupError {
    match e {
        XdrError::RateLimited(_) => LookupError::RateLimited { retry_after: Some(Duration::from_secs(30)) },
        XdrError::Unauthorized(m) | XdrError::Forbidden(m) | XdrError::NoLicence(m) => LookupError::Unauthorized(m),
        XdrError::Transport(m) | XdrError::Unreachable(m) => LookupError::Transport(m),
        XdrError::Server(m) => LookupError::Server(m),
        other => LookupError::BadReply(other.to_string()),
    }
}

impl XqlHistory {
    /// `state` shares started queries and the tenant's slots between workers (none: this
    /// process alone, as in local runs).
    pub fn new(xdr: Arc<XdrHttp>, state: Option<XqlRuns>) -> XqlHistory {
        XqlHistory { xdr, state, first_poll: Duration::from_millis(500), max_wait: Duration::from_secs(20) }
    }

    /// The rows of the history query for `key`: an answer kept from a recent run, the run
    /// already started (resumed), or a new run in a free slot.
    async fn rows(&self, key: &str, query: &str, calls: &CallCounter) -> Result<Vec<Value>, LookupError> {
        let counted = |n: u64| calls.add(u32::try_from(n).unwrap_or(u32::MAX));
        let before = self.xdr.requests_sent();
        let result = self.rows_uncounted(key, query).await;
        counted(self.xdr.requests_sent().saturating_sub(before));
        result
    }

    async fn rows_uncounted(&self, key: &str, query: &str) -> Result<Vec<Value>, LookupError> {
        let Some(state) = &self.state else {
            let id = self.xdr.start_xql_query(query, WEEK_MS).await.map_err(xdr_error)?;
            return self.collect(&id).await?.ok_or(LookupError::RateLimited { retry_after: Some(Duration::from_secs(10)) });
        };
        let now = state.clock.now_ms();
        let mut run = state.run(key).await.map_err(store_error)?.unwrap_or_default();
        if let Some(rows) = run.rows.clone().filter(|_| now - run.done_ms < RESULT_TTL_MS) {
            return Ok(rows);
        }
        // A run started long ago is gone on XDR's side; so is its slot lease by now.
        if run.execution_id.is_some() && now - run.started_ms > RUN_GIVE_UP_MS {
            run = XqlRun::default();
        }
        let (id, slot) = match (run.execution_id.clone(), run.slot) {
            (Some(id), Some(slot)) => (id, slot),
            _ => {
                let Some(slot) = state.claim_slot(key).await.map_err(store_error)? else {
                    // All of the tenant's query slots are busy: wait in the queue, not here.
                    return Err(LookupError::RateLimited { retry_after: Some(Duration::from_secs(15)) });
                };
                let id = match self.xdr.start_xql_query(query, WEEK_MS).await {
                    Ok(id) => id,
                    Err(e) => {
                        state.release_slot(slot, key).await.map_err(store_error)?;
                        return Err(xdr_error(e));
                    }
                };
                state
                    .save_run(
                        key,
                        &XqlRun { execution_id: Some(id.clone()), slot: Some(slot), started_ms: now, ..XqlRun::default() },
                        RUN_GIVE_UP_MS,
                    )
                    .await
                    .map_err(store_error)?;
                (id, slot)
            }
        };
        let outcome = self.collect(&id).await;
        match &outcome {
            // Still running: the execution id stays for the redelivered message to resume.
            Ok(None) => return Err(LookupError::RateLimited { retry_after: Some(Duration::from_secs(10)) }),
            Ok(Some(rows)) => {
                let done = XqlRun { rows: Some(rows.clone()), done_ms: state.clock.now_ms(), ..XqlRun::default() };
                state.save_run(key, &done, RESULT_TTL_MS).await.map_err(store_error)?;
            }
            // Failed for good (or XDR no longer knows the id): the next lookup starts afresh.
            Err(_) => state.save_run(key, &XqlRun::default(), 1).await.map_err(store_error)?,
        }
        state.release_slot(slot, key).await.map_err(store_error)?;
        outcome?.ok_or(LookupError::RateLimited { retry_after: Some(Duration::from_secs(10)) })
    }

    /// Polls a query with backoff until it ends or the lookup's budget runs out (`None`).
    async fn collect(&self, id: &str) -> Result<Option<Vec<Value>>, LookupError> {
        let started = tokio::time::Instant::now();
        let mut wait = self.first_poll;
        loop {
            match self.xdr.xql_status(id).await.map_err(xdr_error)? {
                Some(XqlOutcome::Rows(rows)) => return Ok(Some(rows)),
                Some(XqlOutcome::Stream(stream)) => return self.xdr.get_query_results_stream(&stream).await.map(Some).map_err(xdr_error),
                Some(XqlOutcome::Failed(why)) => return Err(LookupError::BadReply(format!("XQL query failed: {why}"))),
                None if started.elapsed() + wait > self.max_wait => return Ok(None),
                None => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

const WEEK_MS: i64 = 7 * 86_400 * 1000;

#[async_trait]
impl IndicatorSource for XqlHistory {
    fn name(&self) -> &'static str {
        NAME
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        is_history_entity(kind)
    }
    fn sends_externally(&self) -> bool {
        // The tenant's own data lake.
        false
    }

    async fn lookup(&self, indicator: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        let Some(query) = history_query(indicator) else { return Ok(Lookup::NotFound) };
        let tenant = self.state.as_ref().map_or("", |s| s.tenant.as_str());
        let key = format!("{tenant}#{TEMPLATES_VERSION}#{}:{}", indicator.kind.as_str(), indicator.value);
        let rows = self.rows(&key, &query, calls).await?;
        Ok(history_verdict(indicator, &rows, "XDR", TEMPLATES_VERSION, &query).map_or(Lookup::NotFound, Lookup::Found))
    }
}
