//! The outside world of a chaos run: an XDR tenant that keeps what was done to it (comments,
//! isolations, severities, block list) and fails on purpose, threat-intel sources and a model
//! that fail on purpose. The counters say what really happened, whatever Dossier recorded.

use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dossier_core::domain::{ActionKind, Indicator, IndicatorKind};
use dossier_core::ports::{IdentityAdmin, IncidentRef, XdrApi, XdrError};
use dossier_core::sources::{CallCounter, IndicatorSource, IndicatorVerdict, Lookup, LookupError, VerdictLevel};
use dossier_core::synthesis::{LanguageModel, LlmError, LlmRequest, LlmResponse};

use super::faults::Dice;
use crate::backend::current_invocation;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A change XDR (or the identity provider) applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub incident: String,
    pub kind: ActionKind,
    pub target: String,
    /// The same action's change was already applied: a duplicate execution.
    pub repeated: bool,
}

/// One comment XDR accepted, and the invocation that sent it.
#[derive(Clone, Debug)]
pub struct Post {
    pub marker: Option<String>,
    pub invocation: Option<u64>,
}

/// How a call goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Refused before anything happened.
    Server,
    RateLimited,
    Unreachable,
    /// Applied, then the answer was lost: the caller cannot know.
    LostAnswer,
}

/// The XDR tenant. Every incident is the bundled demo incident under its own id; incidents with
/// an odd id behave like a 5.x tenant (comments can be read back), even ones like 3.x (they
/// cannot).
pub struct World {
    dice: Arc<Dice>,
    fault_rate: f64,
    template: String,
    posts: Mutex<Vec<Post>>,
    comments: Mutex<HashMap<String, Vec<String>>>,
    isolated: Mutex<HashSet<String>>,
    severity: Mutex<HashMap<String, String>>,
    blocked: Mutex<HashSet<String>>,
    disabled: Mutex<HashSet<String>>,
    changes: Mutex<Vec<Change>>,
    applied: Mutex<HashSet<(String, ActionKind, String)>>,
    resolved: Mutex<HashSet<String>>,
}

const ID_PLACEHOLDER: &str = "chaos-incident-id";

impl World {
    pub fn new(sample: &str, dice: Arc<Dice>, fault_rate: f64) -> Result<World, String> {
        let mut v: Value = serde_json::from_str(sample).map_err(|e| format!("sample: {e}"))?;
        v["reply"]["incident"]["incident_id"] = json!(ID_PLACEHOLDER);
        Ok(World {
            dice,
            fault_rate,
            template: v.to_string(),
            posts: Mutex::default(),
            comments: Mutex::default(),
            isolated: Mutex::default(),
            severity: Mutex::default(),
            blocked: Mutex::default(),
            disabled: Mutex::default(),
            changes: Mutex::default(),
            applied: Mutex::default(),
            resolved: Mutex::default(),
        })
    }

    fn fault(&self) -> Option<Fault> {
        if !self.dice.chance(self.fault_rate) {
            return None;
        }
        Some([Fault::Server, Fault::RateLimited, Fault::Unreachable, Fault::LostAnswer][self.dice.pick(4)])
    }

    /// A fault before the call (nothing happens): the error to answer.
    fn refused(f: Fault) -> XdrError {
        match f {
            Fault::Server => XdrError::Server("HTTP 500: Internal Server Error".into()),
            Fault::RateLimited => XdrError::RateLimited("HTTP 429: Too Many Requests".into()),
            Fault::Unreachable => XdrError::Unreachable("connection refused".into()),
            Fault::LostAnswer => XdrError::Transport("timed out".into()),
        }
    }

    /// Runs a write under the fault plan: refused before, or applied with its answer lost.
    fn write<T>(&self, apply: impl FnOnce() -> T) -> Result<T, XdrError> {
        match self.fault() {
            None => Ok(apply()),
            Some(Fault::LostAnswer) => {
                apply();
                Err(Self::refused(Fault::LostAnswer))
            }
            Some(f) => Err(Self::refused(f)),
        }
    }

    fn change(&self, incident: &str, kind: ActionKind, target: &str, effective: bool) {
        let key = (incident.to_string(), kind, target.to_string());
        let repeated = !lock(&self.applied).insert(key);
        if effective || repeated {
            lock(&self.changes).push(Change { incident: incident.into(), kind, target: target.into(), repeated: repeated && effective });
        }
    }

    pub fn posts(&self) -> Vec<Post> {
        lock(&self.posts).clone()
    }

    pub fn changes(&self) -> Vec<Change> {
        lock(&self.changes).clone()
    }

    pub fn comments_of(&self, incident: &str) -> Vec<String> {
        lock(&self.comments).get(incident).cloned().unwrap_or_default()
    }

    /// XDR resolves an incident (an analyst closed it).
    pub fn resolve(&self, incident: &str) {
        lock(&self.resolved).insert(incident.to_string());
    }

    fn reads_back(incident: &str) -> bool {
        incident.parse::<u64>().is_ok_and(|n| n % 2 == 1)
    }
}

/// The `[dossier:…]` marker in a comment.
pub fn marker_of(text: &str) -> Option<String> {
    let start = text.find("[dossier:")?;
    let end = text[start..].find(']')?;
    Some(text[start..=start + end].to_string())
}

#[async_trait]
impl XdrApi for World {
    async fn list_modified(&self, _from_ms: i64, _to_ms: i64) -> Result<Vec<IncidentRef>, XdrError> {
        Ok(Vec::new())
    }

    async fn get_incident_extra_data(&self, incident_id: &str) -> Result<String, XdrError> {
        match self.fault() {
            None => {
                let status = if lock(&self.resolved).contains(incident_id) { "resolved_threat_handled" } else { "new" };
                Ok(self.template.replace(ID_PLACEHOLDER, incident_id).replacen(
                    "\"status\": \"new\"",
                    &format!("\"status\": \"{status}\""),
                    1,
                ))
            }
            // A malformed body: the reply cut in half.
            Some(Fault::LostAnswer) => Ok(self.template[..self.template.len() / 2].to_string()),
            Some(f) => Err(Self::refused(f)),
        }
    }

    async fn add_comment(&self, incident_id: &str, text: &str) -> Result<(), XdrError> {
        self.write(|| {
            lock(&self.posts).push(Post { marker: marker_of(text), invocation: current_invocation() });
            lock(&self.comments).entry(incident_id.to_string()).or_default().push(text.to_string());
        })
    }

    async fn set_severity(&self, incident_id: &str, severity: &str) -> Result<(), XdrError> {
        self.write(|| {
            let before = lock(&self.severity).insert(incident_id.to_string(), severity.to_string());
            self.change(incident_id, ActionKind::RaiseSeverity, severity, before.as_deref() != Some(severity));
        })
    }

    async fn isolate_endpoint(&self, endpoint_id: &str, incident_id: &str) -> Result<String, XdrError> {
        self.write(|| {
            // Isolating again starts a second response action on the endpoint.
            lock(&self.isolated).insert(endpoint_id.to_string());
            self.change(incident_id, ActionKind::IsolateEndpoint, endpoint_id, true);
            format!("isolation-{incident_id}")
        })
    }

    async fn block_hash(&self, sha256: &str, _comment: &str, incident_id: &str) -> Result<(), XdrError> {
        self.write(|| {
            // A hash already listed stays listed: XDR changes nothing.
            let new = lock(&self.blocked).insert(sha256.to_string());
            self.change(incident_id, ActionKind::BlockHash, sha256, new);
        })
    }

    async fn action_status(&self, _action_id: &str) -> Result<Vec<(String, String)>, XdrError> {
        Ok(vec![("chaos-endpoint".into(), "COMPLETED_SUCCESSFULLY".into())])
    }

    async fn comment_exists(&self, incident_id: &str, marker: &str) -> Result<Option<bool>, XdrError> {
        if !Self::reads_back(incident_id) {
            return Ok(None);
        }
        if let Some(f) = self.fault().filter(|f| *f != Fault::LostAnswer) {
            return Err(Self::refused(f));
        }
        Ok(Some(self.comments_of(incident_id).iter().any(|c| c.contains(marker))))
    }

    async fn endpoint_isolated(&self, endpoint_id: &str) -> Result<Option<bool>, XdrError> {
        if let Some(f) = self.fault().filter(|f| *f != Fault::LostAnswer) {
            return Err(Self::refused(f));
        }
        Ok(Some(lock(&self.isolated).contains(endpoint_id)))
    }

    async fn manual_severity(&self, incident_id: &str) -> Result<Option<String>, XdrError> {
        if let Some(f) = self.fault().filter(|f| *f != Fault::LostAnswer) {
            return Err(Self::refused(f));
        }
        Ok(lock(&self.severity).get(incident_id).cloned())
    }
}

/// The identity provider side of the world (`disable_user`).
pub struct Directory(pub Arc<World>);

#[async_trait]
impl IdentityAdmin for Directory {
    fn name(&self) -> &str {
        "chaos-directory"
    }
    async fn disable_user(&self, user: &str) -> Result<String, XdrError> {
        let world = &self.0;
        world.write(|| {
            let new = lock(&world.disabled).insert(user.to_string());
            world.change("directory", ActionKind::DisableUser, user, new);
            format!("{user} suspended")
        })
    }
    async fn is_disabled(&self, user: &str) -> Result<Option<bool>, XdrError> {
        Ok(Some(lock(&self.0.disabled).contains(user)))
    }
}

/// A threat-intel source that fails on purpose and otherwise flags what it is asked about: hashes
/// malicious with an engine count (so the block-hash policy can approve), the rest suspicious.
pub struct ChaosIntel {
    pub name: &'static str,
    pub dice: Arc<Dice>,
    pub fault_rate: f64,
}

#[async_trait]
impl IndicatorSource for ChaosIntel {
    fn name(&self) -> &'static str {
        self.name
    }
    fn accepts(&self, kind: IndicatorKind) -> bool {
        matches!(kind, IndicatorKind::Ipv4 | IndicatorKind::Domain | IndicatorKind::Sha256 | IndicatorKind::Url)
    }
    fn sends_externally(&self) -> bool {
        true
    }
    async fn lookup(&self, ind: &Indicator, calls: &CallCounter) -> Result<Lookup, LookupError> {
        calls.add(1);
        if self.dice.chance(self.fault_rate) {
            return Err(match self.dice.pick(4) {
                0 => LookupError::Server("HTTP 500".into()),
                1 => LookupError::RateLimited { retry_after: Some(Duration::from_secs(30)) },
                2 => LookupError::Timeout,
                _ => LookupError::BadReply("expected value at line 1 column 1".into()),
            });
        }
        Ok(Lookup::Found(match ind.kind {
            IndicatorKind::Sha256 => {
                IndicatorVerdict::new(ind, VerdictLevel::Malicious, "12/70 engines flag it").fact("engines_malicious", "12")
            }
            _ => IndicatorVerdict::new(ind, VerdictLevel::Suspicious, "seen in a chaos campaign"),
        }))
    }
}

/// A model that fails on purpose; its other answers are not a valid dossier either, so the
/// deterministic fallback carries every case.
pub struct ChaosModel {
    pub dice: Arc<Dice>,
    pub fault_rate: f64,
}

#[async_trait]
impl LanguageModel for ChaosModel {
    fn id(&self) -> &str {
        "chaos-model"
    }
    async fn complete(&self, _req: &LlmRequest) -> Result<LlmResponse, LlmError> {
        if self.dice.chance(self.fault_rate) {
            return Err(match self.dice.pick(3) {
                0 => LlmError::Unavailable("HTTP 503".into()),
                1 => LlmError::RateLimited("HTTP 429".into()),
                _ => LlmError::Timeout,
            });
        }
        Ok(LlmResponse { text: "{\"summary\": \"truncated".into(), input_tokens: 100, output_tokens: 5 })
    }
}
