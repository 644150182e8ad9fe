//! The poller, the door for XDR tenants without an incident webhook: what it reads (incidents
//! modified since the watermark, less a safety lag), that it opens each incident once however
//! often it sees it, that resolved incidents close known cases and open nothing, and that the
//! rollout filter holds at this door too.

use std::sync::Arc;
use std::time::Duration;

use dossier_core::config::PipelineConfig;
use dossier_core::domain::{CaseKey, Severity};
use dossier_core::embedded::RecordingXdr;
use dossier_core::ports::{Clock, SystemClock};
use dossier_core::signing::{LinkSigner, SigningKey};
use dossier_core::sources::{AttackSource, Source};
use dossier_core::stages::Poller;
use dossier_local::backend::{Backend, LocalPipeline, PipelineParts};

const DEMO: &str = include_str!("../../../infra/local/samples/xdr/demo_powershell_stager.json");

/// The demo incident under another id, last modified `ago` before now, with this status.
fn incident(id: &str, ago: Duration, status: &str, severity: &str) -> (String, String) {
    let mut v: serde_json::Value = serde_json::from_str(DEMO).unwrap();
    let modified = SystemClock.now_ms() - i64::try_from(ago.as_millis()).unwrap();
    let inc = &mut v["reply"]["incident"];
    inc["incident_id"] = id.into();
    inc["creation_time"] = (modified - 60_000).into();
    inc["modification_time"] = modified.into();
    inc["status"] = status.into();
    inc["severity"] = severity.into();
    (id.to_string(), v.to_string())
}

fn pipeline(xdr: Arc<RecordingXdr>, config: PipelineConfig) -> LocalPipeline {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sources: Vec<Arc<dyn Source>> = vec![Arc::new(AttackSource)];
    LocalPipeline::new(PipelineParts {
        backend: Backend::embedded(clock.clone()),
        config,
        clock,
        xdr,
        sources,
        signer: Arc::new(LinkSigner::new(vec![SigningKey { id: "k".into(), secret: vec![3; 32] }]).unwrap()),
        webhook_secrets: dossier_local::backend::no_webhooks(),
        model: None,
        identity: None,
        notifiers: Vec::new(),
    })
}

fn key(id: &str) -> CaseKey {
    CaseKey::new("default", id).unwrap()
}

#[tokio::test]
async fn each_incident_in_the_window_is_opened_once() {
    let minute = Duration::from_secs(60);
    let xdr = Arc::new(RecordingXdr::with_incidents([
        incident("101", minute, "new", "high"),
        incident("102", 5 * minute, "under_investigation", "medium"),
        // Before the first poll's 15-minute look-back: not read.
        incident("103", 40 * minute, "new", "high"),
        // Resolved before Dossier ever saw it: nothing to open or close.
        incident("104", minute, "resolved_false_positive", "high"),
    ]));
    let p = pipeline(xdr.clone(), PipelineConfig::default());
    let poller = Poller::new(p.ctx.clone(), xdr.clone());
    let first = poller.poll().await.unwrap();
    assert_eq!((first.seen, first.opened, first.resolved, first.already_known), (3, 2, 1, 0), "{first:?}");
    for id in ["101", "102"] {
        assert!(p.case(&key(id)).await.unwrap().is_some(), "{id} opened");
    }
    for id in ["103", "104"] {
        assert!(p.case(&key(id)).await.unwrap().is_none(), "{id} must not be opened");
    }
    // The next poll reads again from the watermark less the safety lag: 101 (a minute ago) is
    // seen again and is not opened twice; 102 (five minutes ago) is behind the window now.
    let second = poller.poll().await.unwrap();
    assert_eq!(second.from_ms, first.to_ms - 120_000);
    assert_eq!((second.seen, second.opened, second.already_known), (2, 0, 1), "{second:?}");
}

#[tokio::test]
async fn a_known_case_that_xdr_resolved_is_closed_once() {
    let xdr = Arc::new(RecordingXdr::with_incidents([incident("201", Duration::from_secs(30), "new", "high")]));
    let p = pipeline(xdr.clone(), PipelineConfig::default());
    assert_eq!(Poller::new(p.ctx.clone(), xdr.clone()).poll().await.unwrap().opened, 1);
    assert!(p.run_until_settled(&[key("201")], Duration::from_secs(30)).await.unwrap());
    // An analyst resolves it in XDR; the next poll sees the change.
    let resolved = Arc::new(RecordingXdr::with_incidents([incident("201", Duration::from_secs(5), "resolved_true_positive", "high")]));
    let report = Poller::new(p.ctx.clone(), resolved.clone()).poll().await.unwrap();
    assert_eq!((report.resolved, report.opened), (1, 0));
    assert!(p.run_until_settled(&[key("201")], Duration::from_secs(30)).await.unwrap());
    let case = p.case(&key("201")).await.unwrap().unwrap();
    assert_eq!(case.resolution.as_deref(), Some("resolved_true_positive"));
}

#[tokio::test]
async fn the_rollout_filter_holds_at_the_poller_too() {
    let xdr = Arc::new(RecordingXdr::with_incidents([
        incident("301", Duration::from_secs(30), "new", "low"),
        incident("302", Duration::from_secs(30), "new", "critical"),
    ]));
    let p = pipeline(xdr.clone(), PipelineConfig { min_severity: Severity::High, ..PipelineConfig::default() });
    let report = Poller::new(p.ctx.clone(), xdr).poll().await.unwrap();
    assert_eq!((report.opened, report.skipped), (1, 1), "{report:?}");
    assert!(p.case(&key("301")).await.unwrap().is_none());
}
