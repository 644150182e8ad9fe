//! The poller door: each incident becomes exactly one case however often it is seen; the
//! watermark moves forward with a safety lag; resolved incidents take the closure path.

use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dossier_core::config::PipelineConfig;
use dossier_core::domain::Severity;
use dossier_core::domain::{CaseKey, Trigger};
use dossier_core::embedded::{ManualClock, MemoryQueue, MemoryStore};
use dossier_core::ports::{Clock, IncidentRef, QueueName, XdrApi, XdrError};
use dossier_core::stages::{Context, Poller};

struct Listing {
    incidents: Mutex<Vec<IncidentRef>>,
    windows: Mutex<Vec<(i64, i64)>>,
}

#[async_trait]
impl XdrApi for Listing {
    async fn list_modified(&self, from_ms: i64, to_ms: i64) -> Result<Vec<IncidentRef>, XdrError> {
        self.windows.lock().unwrap().push((from_ms, to_ms));
        Ok(self.incidents.lock().unwrap().clone())
    }
    async fn get_incident_extra_data(&self, _: &str) -> Result<String, XdrError> {
        Err(XdrError::NotConfigured("not in this test".into()))
    }
    async fn add_comment(&self, _: &str, _: &str) -> Result<(), XdrError> {
        Err(XdrError::NotConfigured("not in this test".into()))
    }
    async fn set_severity(&self, _: &str, _: &str) -> Result<(), XdrError> {
        Err(XdrError::NotConfigured("not in this test".into()))
    }
    async fn isolate_endpoint(&self, _: &str, _: &str) -> Result<String, XdrError> {
        Err(XdrError::NotConfigured("not in this test".into()))
    }
    async fn block_hash(&self, _: &str, _: &str, _: &str) -> Result<(), XdrError> {
        Err(XdrError::NotConfigured("not in this test".into()))
    }
    async fn action_status(&self, _: &str) -> Result<Vec<(String, String)>, XdrError> {
        Err(XdrError::NotConfigured("not in this test".into()))
    }
    async fn comment_exists(&self, _: &str, _: &str) -> Result<Option<bool>, XdrError> {
        Err(XdrError::NotConfigured("not in this test".into()))
    }
    async fn endpoint_isolated(&self, _: &str) -> Result<Option<bool>, XdrError> {
        Err(XdrError::NotConfigured("not in this test".into()))
    }
    async fn manual_severity(&self, _: &str) -> Result<Option<String>, XdrError> {
        Err(XdrError::NotConfigured("not in this test".into()))
    }
}

fn inc(id: &str, status: &str, severity: Severity) -> IncidentRef {
    IncidentRef {
        incident_id: id.into(),
        status: Some(status.into()),
        severity,
        description: format!("incident {id}"),
        creation_ms: Some(1),
        modification_ms: Some(2),
    }
}

#[tokio::test]
async fn each_incident_becomes_one_case_and_the_watermark_moves_with_a_lag() {
    let clock = Arc::new(ManualClock::new(10_000_000));
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new(clock.clone(), Duration::from_secs(30), 5));
    let config = PipelineConfig { min_severity: Severity::Medium, ..PipelineConfig::default() };
    let ctx = Context::new(store, queue.clone(), clock.clone(), Arc::new(config), "poller");
    let xdr = Arc::new(Listing {
        incidents: Mutex::new(vec![
            inc("1", "new", Severity::High),
            inc("2", "under_investigation", Severity::Medium),
            inc("3", "new", Severity::Low),
            inc("4", "resolved_true_positive", Severity::High),
        ]),
        windows: Mutex::default(),
    });
    let poller = Poller::new(ctx.clone(), xdr.clone());

    let first = poller.poll().await.unwrap();
    assert_eq!((first.seen, first.opened, first.skipped, first.resolved, first.already_known), (4, 2, 1, 1, 0));
    let case = ctx.store.case(&CaseKey::new("default", "1").unwrap()).await.unwrap().unwrap().value;
    assert_eq!(case.trigger, Trigger::Poller);
    assert_eq!(case.hint.severity, Severity::High);
    assert!(ctx.store.case(&CaseKey::new("default", "3").unwrap()).await.unwrap().is_none(), "below the rollout minimum");
    assert_eq!(queue.depth(&QueueName::collect()), 2);

    // The same incidents seen again (overlapping windows): no new case, no new message.
    clock.advance(Duration::from_secs(60));
    let second = poller.poll().await.unwrap();
    assert_eq!((second.opened, second.already_known), (0, 2));
    assert_eq!(queue.depth(&QueueName::collect()), 2);

    let windows = xdr.windows.lock().unwrap().clone();
    assert_eq!(windows[0], (10_000_000 - 15 * 60 * 1000, 10_000_000), "first poll looks back 15 minutes");
    assert_eq!(windows[1], (10_000_000 - 120_000, 10_060_000), "then from the watermark minus the safety lag");
    assert_eq!(clock.now_ms(), 10_060_000);
}
