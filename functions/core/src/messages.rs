//! Messages between stages. They carry keys, and at most a small snapshot of the record the
//! sender just wrote (so the next stage need not read it back); every consumer is idempotent to
//! redelivery.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::domain::CaseKey;
use crate::signing::LinkSigner;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SynthesisReason {
    /// The last expected source reported.
    AllReported,
    /// The fan-in deadline fired; missing sources are marked timed out.
    Deadline,
}

/// A record as its sender committed it: the stored body, the version it got, and a tag under
/// the pipeline's snapshot key (a secret only the functions that send or read snapshots hold).
/// A consumer uses it instead of reading the record back: enrich reads the case collect fanned
/// out; write-back claims the draft synthesis created, a conditional write at this version (a
/// stale snapshot is a conflict, then a read). Whoever can send to a queue without the key can
/// still name a case, never dictate its content: an untagged or altered snapshot is ignored and
/// the store decides.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u64,
    /// The record's JSON as written, raw inside the message: neither escaped into a string on
    /// the way out nor unescaped on the way in. (Sent before it was raw, it is a JSON string
    /// whose tag does not verify: ignored.)
    pub body: Box<RawValue>,
    /// Absent on messages sent before snapshots were tagged: such a copy reads as untagged
    /// (ignored), never as a malformed message.
    #[serde(default)]
    pub tag: String,
}

/// The MAC purpose of snapshot tags (never valid as a link or a cookie).
const SNAPSHOT_PURPOSE: &str = "snapshot";

/// A record that may ride on a message. Its kind is part of the tag: a case's tag never
/// verifies a draft, nor a draft's a case.
pub trait Carried: Serialize + serde::de::DeserializeOwned {
    const KIND: &'static str;
}

impl Carried for crate::domain::Case {
    const KIND: &'static str = "case";
}

impl Carried for crate::domain::Draft {
    const KIND: &'static str = "draft";
}

impl PartialEq for Snapshot {
    fn eq(&self, other: &Snapshot) -> bool {
        (self.version, self.body.get(), &self.tag) == (other.version, other.body.get(), &other.tag)
    }
}

impl Eq for Snapshot {}

impl Snapshot {
    /// Bodies up to this size ride on the message (SQS bills each 64 KB of a message as one
    /// request); a larger record is read by the consumer instead.
    pub const MAX_BYTES: usize = 48 * 1024;

    pub fn of<R: Carried>(record: &R, version: u64, key: &LinkSigner) -> Option<Snapshot> {
        let body = serde_json::value::to_raw_value(record).ok()?;
        if body.get().len() > Self::MAX_BYTES {
            return None;
        }
        let tag = key.tag(SNAPSHOT_PURPOSE, &[R::KIND.as_bytes(), version.to_string().as_bytes(), body.get().as_bytes()]);
        Some(Snapshot { version, body, tag })
    }

    /// The record, or `None` if its tag does not verify or it does not read as one (then the
    /// consumer reads the store).
    pub fn value<R: Carried>(&self, key: &LinkSigner) -> Option<crate::store::Versioned<R>> {
        let version = self.version.to_string();
        let parts: [&[u8]; 3] = [R::KIND.as_bytes(), version.as_bytes(), self.body.get().as_bytes()];
        if !key.check_tag(SNAPSHOT_PURPOSE, &parts, &self.tag) {
            return None;
        }
        serde_json::from_str(self.body.get()).ok().map(|value| crate::store::Versioned { value, version: self.version })
    }
}

/// Read with [`Message::parse`]: the derived reader alone skips the records messages carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Collect {
        case: CaseKey,
    },
    Enrich {
        case: CaseKey,
        source: String,
        /// The case as collected (read apart from the message: see `read_envelope`).
        #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
        snapshot: Option<Snapshot>,
    },
    Synthesize {
        case: CaseKey,
        reason: SynthesisReason,
    },
    WriteComment {
        case: CaseKey,
        draft_id: String,
        /// The draft as created (read apart from the message: see `read_envelope`).
        #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
        snapshot: Option<Snapshot>,
    },
    ExecuteAction {
        case: CaseKey,
        action_id: String,
    },
    /// Poll the XDR status of an executed response action (isolation), `attempt` so far.
    CheckAction {
        case: CaseKey,
        action_id: String,
        attempt: u32,
    },
    /// Tell the approvers of an action (their signed links), `attempt` so far.
    Notify {
        case: CaseKey,
        action_id: String,
        attempt: u32,
    },
    /// XDR resolved the incident: draft the closure comment.
    Close {
        case: CaseKey,
        resolution: String,
    },
}

pub const MESSAGE_VERSION: u32 = 1;

/// A message on the wire: `{"v":1,"deferred":2,"type":"enrich",…}`.
#[derive(Serialize)]
struct Envelope<'a> {
    v: u32,
    /// Times this message was sent again to wait (a quota, a lease, a deadline).
    #[serde(skip_serializing_if = "is_zero")]
    deferred: u32,
    #[serde(flatten)]
    message: &'a Message,
}

/// Reads an envelope in one pass over the body, each field kept as written; the message is then
/// read from its small fields, and a carried record only copied (a tagged message enum read
/// whole would buffer every string, the record included, and unescape and copy it again).
fn read_envelope(body: &str) -> Result<(u32, u32, Message), MessageError> {
    let malformed = |e: String| MessageError::Malformed(e);
    let mut fields: std::collections::HashMap<String, Box<RawValue>> = serde_json::from_str(body).map_err(|e| malformed(e.to_string()))?;
    let mut number = |name: &str, required: bool| -> Result<u32, MessageError> {
        match fields.remove(name) {
            Some(raw) => serde_json::from_str::<u32>(raw.get()).map_err(|_| malformed(format!("`{name}` is not a count"))),
            None if required => Err(malformed(format!("missing field `{name}`"))),
            None => Ok(0),
        }
    };
    let v = number("v", true)?;
    let deferred = number("deferred", false)?;
    // A carried record that does not read as one is no record: the consumer reads the store.
    let carried: Option<Snapshot> = fields.remove("snapshot").and_then(|raw| serde_json::from_str(raw.get()).ok());
    let rest = fields
        .into_iter()
        .map(|(name, raw)| serde_json::from_str::<serde_json::Value>(raw.get()).map(|value| (name, value)))
        .collect::<Result<serde_json::Map<String, serde_json::Value>, _>>()
        .map_err(|e| malformed(e.to_string()))?;
    let mut message = Message::deserialize(serde_json::Value::Object(rest)).map_err(|e| malformed(e.to_string()))?;
    if let Message::Enrich { snapshot, .. } | Message::WriteComment { snapshot, .. } = &mut message {
        *snapshot = carried;
    }
    Ok((v, deferred, message))
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message is not a Dossier message: {0}")]
    Malformed(String),
    #[error("message version {0} is not supported (expected {MESSAGE_VERSION})")]
    Version(u32),
    #[error("message was deferred {0} times; it waits no longer")]
    DeferredTooOften(u32),
}

impl Message {
    pub fn case(&self) -> &CaseKey {
        match self {
            Message::Collect { case }
            | Message::Enrich { case, .. }
            | Message::Synthesize { case, .. }
            | Message::WriteComment { case, .. }
            | Message::ExecuteAction { case, .. }
            | Message::Close { case, .. }
            | Message::CheckAction { case, .. }
            | Message::Notify { case, .. } => case,
        }
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(&Envelope { v: MESSAGE_VERSION, deferred: 0, message: self }).expect("messages serialise")
    }

    /// The body to send again when a message waits: the same message, its deferral counted.
    pub fn deferred(body: &str, max_deferrals: u32) -> Result<String, MessageError> {
        let (v, deferred, message) = read_envelope(body)?;
        if deferred >= max_deferrals {
            return Err(MessageError::DeferredTooOften(deferred));
        }
        serde_json::to_string(&Envelope { v, deferred: deferred + 1, message: &message })
            .map_err(|e| MessageError::Malformed(e.to_string()))
    }

    pub fn parse(body: &str) -> Result<Message, MessageError> {
        Self::parse_counted(body).map(|(message, _)| message)
    }

    /// The message and how often it was sent again to wait so far.
    pub fn parse_counted(body: &str) -> Result<(Message, u32), MessageError> {
        let (v, deferred, message) = read_envelope(body)?;
        if v != MESSAGE_VERSION {
            return Err(MessageError::Version(v));
        }
        // Keys inside a message are validated like keys at the door.
        let case = message.case();
        CaseKey::new(&case.tenant, &case.incident_id).map_err(|e| MessageError::Malformed(e.to_string()))?;
        Ok((message, deferred))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let m = Message::Enrich { case: CaseKey::new("acme", "7").unwrap(), source: "virustotal".into(), snapshot: None };
        let body = m.to_body();
        assert!(body.contains("\"v\":1"));
        assert_eq!(Message::parse(&body).unwrap(), m);
        assert!(matches!(Message::parse("{}"), Err(MessageError::Malformed(_))));
        assert!(matches!(Message::parse(&body.replace("\"v\":1", "\"v\":9")), Err(MessageError::Version(9))));
        assert!(Message::parse(&body.replace("\"7\"", "\"7#x\"")).is_err());
        let again = Message::deferred(&body, 2).unwrap();
        assert_eq!(Message::parse(&again).unwrap(), m, "a deferred message is the same message");
        let twice = Message::deferred(&again, 2).unwrap();
        assert_eq!(Message::deferred(&twice, 2), Err(MessageError::DeferredTooOften(2)));
    }

    /// A record for the tests, and another kind with the same shape.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Note(serde_json::Value);
    impl Carried for Note {
        const KIND: &'static str = "note";
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Other(serde_json::Value);
    impl Carried for Other {
        const KIND: &'static str = "other";
    }

    fn key(fill: u8) -> LinkSigner {
        LinkSigner::new(vec![crate::signing::SigningKey { id: "s1".into(), secret: vec![fill; 32] }]).unwrap()
    }

    #[test]
    fn a_snapshot_is_read_only_as_tagged() {
        let record = Note(serde_json::json!({"comment": "as created", "quote": "\"q\""}));
        let s = Snapshot::of(&record, 3, &key(1)).unwrap();
        assert!(s.value::<Other>(&key(1)).is_none(), "another kind of record");
        assert_eq!(s.value::<Note>(&key(1)).unwrap().value, record);
        assert_eq!(s.value::<Note>(&key(1)).unwrap().version, 3);
        assert!(s.value::<Note>(&key(2)).is_none(), "another key");
        let altered = Snapshot { body: raw(&s.body.get().replace("as created", "FORGED")), ..s.clone() };
        assert!(altered.value::<Note>(&key(1)).is_none(), "altered body");
        assert!(Snapshot { version: 4, ..s.clone() }.value::<Note>(&key(1)).is_none(), "another version");
        assert!(Snapshot { tag: String::new(), ..s }.value::<Note>(&key(1)).is_none(), "untagged");
    }

    #[test]
    fn the_wire_format_holds_and_a_deferred_message_keeps_its_record() {
        // As sent before the envelope was read in one pass (messages in flight at a deploy).
        let body = r#"{"v":1,"deferred":1,"type":"enrich","case":{"tenant":"acme","incident_id":"7"},"source":"otx","snapshot":{"version":2,"body":{"comment":"q\""},"tag":"t"}}"#;
        let (m, deferred) = Message::parse_counted(body).unwrap();
        assert_eq!(deferred, 1);
        let Message::Enrich { snapshot: Some(s), .. } = &m else { panic!("{m:?}") };
        assert_eq!((s.version, s.body.get(), s.tag.as_str()), (2, r#"{"comment":"q\""}"#, "t"));
        assert!(m.to_body().contains(r#""body":{"comment":"q\""}"#), "the record rides raw: {}", m.to_body());
        assert_eq!(Message::parse(&m.to_body()).unwrap(), m);
        let again = Message::deferred(body, 5).unwrap();
        assert_eq!(Message::parse_counted(&again).unwrap(), (m, 2));
        // A record that does not read as one, or on a message that carries none, is no record.
        for odd in [
            r#"{"v":1,"type":"collect","case":{"tenant":"a","incident_id":"1"},"snapshot":5}"#,
            r#"{"v":1,"type":"enrich","case":{"tenant":"a","incident_id":"1"},"source":"otx","snapshot":{"body":{}}}"#,
        ] {
            let m = Message::parse(odd).unwrap_or_else(|e| panic!("{odd}: {e}"));
            assert!(!m.to_body().contains("snapshot"), "{odd}");
        }
        for bad in [
            r#"{"v":"1","type":"collect","case":{"tenant":"a","incident_id":"1"}}"#,
            r#"{"type":"collect","case":{"tenant":"a","incident_id":"1"}}"#,
            r#"{"v":1,"deferred":-1,"type":"collect","case":{"tenant":"a","incident_id":"1"}}"#,
            "[]",
        ] {
            assert!(matches!(Message::parse(bad), Err(MessageError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn a_message_with_an_untagged_snapshot_still_parses() {
        let body =
            r#"{"v":1,"type":"enrich","case":{"tenant":"acme","incident_id":"7"},"source":"otx","snapshot":{"version":2,"body":{}}}"#;
        let Ok(Message::Enrich { snapshot: Some(s), .. }) = Message::parse(body) else { panic!("{body}") };
        assert!(s.tag.is_empty() && s.value::<Note>(&key(1)).is_none());
    }

    #[test]
    fn a_record_sent_as_a_string_before_records_rode_raw_is_ignored_not_refused() {
        let record = Note(serde_json::json!({"comment": "as created"}));
        let s = Snapshot::of(&record, 3, &key(1)).unwrap();
        // The same body and its genuine tag, as the previous release wrote them.
        let as_string = serde_json::to_string(s.body.get()).unwrap();
        let body = format!(
            r#"{{"v":1,"type":"write_comment","case":{{"tenant":"acme","incident_id":"7"}},"draft_id":"d","snapshot":{{"version":3,"body":{as_string},"tag":"{}"}}}}"#,
            s.tag
        );
        let Ok(Message::WriteComment { snapshot: Some(old), .. }) = Message::parse(&body) else { panic!("{body}") };
        assert!(old.value::<Note>(&key(1)).is_none(), "read from the store instead");
    }

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).unwrap()
    }

    #[test]
    fn the_size_cap_counts_the_record_as_json() {
        // The record rides raw: its JSON, escapes included, is what counts.
        let quotes = "\"".repeat(Snapshot::MAX_BYTES / 2);
        assert!(Snapshot::of(&Note(quotes.into()), 1, &key(1)).is_none(), "each quote is two bytes of JSON");
        let s = Snapshot::of(&Note("x".repeat(Snapshot::MAX_BYTES - 2).into()), 1, &key(1)).expect("two quotes: at the cap");
        let m = Message::Enrich { case: CaseKey::new("acme", "7").unwrap(), source: "otx".into(), snapshot: Some(s) };
        assert!(m.to_body().len() < Snapshot::MAX_BYTES + 1024);
    }
}
