//! One contract suite per port, run against the embedded implementation and the AWS adapter on
//! moto server: the local CLI and the deployed functions rely on the same semantics.

use std::sync::Arc;
use std::time::Duration;

use dossier_adapters::dynamo::{DynamoStore, TableNames};
use dossier_adapters::provision;
use dossier_adapters::sqs::SqsQueue;
use dossier_adapters::xdr::{AuthKind, Generation, XdrCredentials, XdrHttp};
use dossier_core::embedded::{MemoryQueue, MemoryStore};
use dossier_core::ports::{
    Condition, DocStore, PutOutcome, Queue, QueueConsumer, QueueName, ReplaceOutcome, StoreError, SystemClock, Table, Write, WriteOutcome,
    XdrApi,
};
use dossier_tests::{moto_endpoint, unique_prefix};

async fn moto_store(test: &str) -> DynamoStore {
    let sdk = dossier_adapters::aws::sdk_config_for(&moto_endpoint()).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let tables = TableNames::prefixed(&unique_prefix(test));
    provision::ensure_tables(&client, &tables).await.expect("create tables");
    DynamoStore::new(client, tables)
}

// ------------------------------------------------------------------------------------ DocStore

async fn doc_store_contract(store: &dyn DocStore) {
    // put_new writes once; the second is refused and changes nothing.
    assert_eq!(store.put_new(Table::Cases, "t#1", "case", r#"{"a":1}"#, None).await.unwrap(), PutOutcome::Written);
    assert_eq!(store.put_new(Table::Cases, "t#1", "case", r#"{"a":2}"#, None).await.unwrap(), PutOutcome::AlreadyExists);
    let doc = store.get(Table::Cases, "t#1", "case").await.unwrap().unwrap();
    assert_eq!((doc.body.as_str(), doc.version), (r#"{"a":1}"#, 1));
    // Versioned replace: the expected version wins once, a stale version conflicts.
    assert_eq!(store.replace(Table::Cases, "t#1", "case", r#"{"a":3}"#, 1).await.unwrap(), ReplaceOutcome::Written);
    assert_eq!(store.replace(Table::Cases, "t#1", "case", r#"{"a":4}"#, 1).await.unwrap(), ReplaceOutcome::Conflict);
    let doc = store.get(Table::Cases, "t#1", "case").await.unwrap().unwrap();
    assert_eq!((doc.body.as_str(), doc.version), (r#"{"a":3}"#, 2));
    // Replacing a missing item is a conflict, not a create.
    assert_eq!(store.replace(Table::Cases, "t#1", "nothing", "{}", 1).await.unwrap(), ReplaceOutcome::Conflict);
    assert!(store.get(Table::Cases, "t#1", "nothing").await.unwrap().is_none());
    // Query by prefix, in sort-key order, without other partitions or prefixes.
    for sk in ["source#b", "source#a", "draft#1"] {
        store.put_new(Table::Cases, "t#1", sk, "{}", None).await.unwrap();
    }
    store.put_new(Table::Cases, "t#2", "source#c", "{}", None).await.unwrap();
    let sks: Vec<String> = store.query(Table::Cases, "t#1", "source#").await.unwrap().into_iter().map(|d| d.sk).collect();
    assert_eq!(sks, vec!["source#a", "source#b"]);
    assert_eq!(store.query(Table::Cases, "t#1", "").await.unwrap().len(), 4);
    // Tables are separate.
    assert!(store.get(Table::Audit, "t#1", "case").await.unwrap().is_none());
    assert_eq!(store.put_new(Table::Audit, "t#1", "case", "{}", Some(1_900_000_000)).await.unwrap(), PutOutcome::Written);

    // A commit writes all or nothing, and names the write whose condition failed.
    let w = |table, pk: &str, sk: &str, body: &str, c| Write::new(table, pk, sk, body, c);
    let conflicting = vec![
        w(Table::Effects, "t#1", "draft#1", r#"{"d":1}"#, Condition::Absent),
        w(Table::Cases, "t#1", "case", r#"{"a":9}"#, Condition::Version(1)),
        w(Table::Audit, "t#1", "000#x", "{}", Condition::Absent),
    ];
    assert_eq!(store.write(conflicting).await.unwrap(), WriteOutcome::Conflict { index: 1 });
    assert!(store.get(Table::Effects, "t#1", "draft#1").await.unwrap().is_none(), "nothing of a conflicting commit is written");
    assert!(store.get(Table::Audit, "t#1", "000#x").await.unwrap().is_none());
    let fine = vec![
        w(Table::Effects, "t#1", "draft#1", r#"{"d":1}"#, Condition::Absent),
        w(Table::Cases, "t#1", "case", r#"{"a":9}"#, Condition::Version(2)),
        w(Table::Audit, "t#1", "000#x", "{}", Condition::Absent),
    ];
    assert_eq!(store.write(fine).await.unwrap(), WriteOutcome::Written);
    assert_eq!(store.get(Table::Cases, "t#1", "case").await.unwrap().unwrap().version, 3);
    // A record created at a given version (the version of the change it was committed with):
    // once only, and a copy of it at any other version conflicts.
    let at = |v| vec![w(Table::Effects, "t#1", "draft#2", r#"{"d":2}"#, Condition::AbsentAt(v))];
    assert_eq!(store.write(at(4)).await.unwrap(), WriteOutcome::Written);
    assert_eq!(store.get(Table::Effects, "t#1", "draft#2").await.unwrap().unwrap().version, 4);
    assert_eq!(store.write(at(5)).await.unwrap(), WriteOutcome::Conflict { index: 0 }, "it exists: created once");
    assert_eq!(store.replace(Table::Effects, "t#1", "draft#2", r#"{"d":3}"#, 1).await.unwrap(), ReplaceOutcome::Conflict);
    assert_eq!(store.replace(Table::Effects, "t#1", "draft#2", r#"{"d":3}"#, 4).await.unwrap(), ReplaceOutcome::Written);
    assert_eq!(store.get(Table::Effects, "t#1", "draft#2").await.unwrap().unwrap().version, 5);
    assert!(matches!(
        store.write(vec![w(Table::Effects, "t#1", "draft#3", "{}", Condition::AbsentAt(0))]).await,
        Err(StoreError::Rejected(_))
    ));
    // Overwrite ignores what is there (cache answers).
    assert_eq!(store.write(vec![w(Table::Cache, "src", "k", "1", Condition::Overwrite)]).await.unwrap(), WriteOutcome::Written);
    assert_eq!(store.write(vec![w(Table::Cache, "src", "k", "2", Condition::Overwrite)]).await.unwrap(), WriteOutcome::Written);
    assert_eq!(store.get(Table::Cache, "src", "k").await.unwrap().unwrap().body, "2");
    // The same key twice in one commit is refused outright.
    let twice = vec![w(Table::Cache, "src", "k", "3", Condition::Overwrite), w(Table::Cache, "src", "k", "4", Condition::Overwrite)];
    assert!(store.write(twice).await.is_err());

    // Unconditional batches: more items than one BatchWriteItem takes, over two tables, an
    // existing item overwritten; every item readable at version 1.
    let mut batch: Vec<Write> =
        (0..30).map(|i| w(Table::Cache, "batch", &format!("k{i:02}"), &format!("{i}"), Condition::Overwrite)).collect();
    batch.push(w(Table::Cases, "idx#t#ipv4:203.0.113.9", "t#1", "entry", Condition::Overwrite));
    batch.push(w(Table::Cache, "src", "k", "overwritten", Condition::Overwrite));
    store.put_all(batch).await.unwrap();
    let batched = store.query(Table::Cache, "batch", "k").await.unwrap();
    assert_eq!(batched.len(), 30);
    assert!(batched.iter().enumerate().all(|(i, d)| d.body == i.to_string() && d.version == 1), "{batched:?}");
    assert_eq!(store.get(Table::Cases, "idx#t#ipv4:203.0.113.9", "t#1").await.unwrap().unwrap().body, "entry");
    assert_eq!(store.get(Table::Cache, "src", "k").await.unwrap().unwrap().body, "overwritten");
    store.put_all(vec![w(Table::Cache, "src", "k", "2", Condition::Overwrite)]).await.unwrap();
    store.put_all(Vec::new()).await.unwrap();
    // A batch has no conditions and no key twice: such a batch is refused whole.
    let conditional =
        vec![w(Table::Cache, "batch", "new", "x", Condition::Overwrite), w(Table::Cases, "t#1", "case", "{}", Condition::Version(3))];
    assert!(matches!(store.put_all(conditional).await, Err(StoreError::Rejected(_))));
    let doubled =
        vec![w(Table::Cache, "batch", "new", "x", Condition::Overwrite), w(Table::Cache, "batch", "new", "y", Condition::Overwrite)];
    assert!(matches!(store.put_all(doubled).await, Err(StoreError::Rejected(_))));
    assert!(store.get(Table::Cache, "batch", "new").await.unwrap().is_none(), "nothing of a refused batch is written");
    assert_eq!(store.get(Table::Cases, "t#1", "case").await.unwrap().unwrap().body, r#"{"a":9}"#);

    // Several items at once, in the order asked, missing ones as None.
    let keys = vec![("src".to_string(), "k".to_string()), ("src".to_string(), "none".to_string()), ("t#1".to_string(), "case".to_string())];
    let got = store.get_many(Table::Cache, &keys).await.unwrap();
    assert_eq!(got.iter().map(|d| d.as_ref().map(|d| d.body.clone())).collect::<Vec<_>>(), vec![Some("2".to_string()), None, None]);

    // A set: adding twice is adding once; the members come back whole.
    assert_eq!(store.add_to_set(Table::Reports, "t#1", "fan-in", "attack").await.unwrap(), vec!["attack"]);
    assert_eq!(store.add_to_set(Table::Reports, "t#1", "fan-in", "vt").await.unwrap(), vec!["attack", "vt"]);
    assert_eq!(store.add_to_set(Table::Reports, "t#1", "fan-in", "attack").await.unwrap(), vec!["attack", "vt"]);
    assert_eq!(store.set_members(Table::Reports, "t#1", "fan-in").await.unwrap(), vec!["attack", "vt"]);
    assert!(store.set_members(Table::Reports, "t#1", "none").await.unwrap().is_empty());
    // A set does not show up among the documents of its partition.
    store.put_new(Table::Reports, "t#1", "source#attack", "{}", None).await.unwrap();
    assert_eq!(store.query(Table::Reports, "t#1", "").await.unwrap().len(), 1);

    // A counter takes units up to its limit, then refuses.
    for n in 1..=3 {
        assert_eq!(store.count_up(Table::Cache, "ratelimit", "x#0", 3, 1_900_000_000).await.unwrap(), Some(n));
    }
    assert_eq!(store.count_up(Table::Cache, "ratelimit", "x#0", 3, 1_900_000_000).await.unwrap(), None);

    // The due index lists items with a due time, earliest first, up to `until`; a write without
    // one takes the item out.
    let due = |pk: &str, at: Option<i64>, c| Write::new(Table::Effects, pk, "action#a", "{}", c).due(at);
    store.write(vec![due("d#1", Some(5_000), Condition::Absent)]).await.unwrap();
    store.write(vec![due("d#2", Some(3_000), Condition::Absent)]).await.unwrap();
    store.write(vec![due("d#3", Some(9_000), Condition::Absent)]).await.unwrap();
    let listed = |items: Vec<dossier_core::ports::DueItem>| items.into_iter().map(|d| (d.pk, d.due_at_ms)).collect::<Vec<_>>();
    assert_eq!(listed(store.due(Table::Effects, 6_000, 10).await.unwrap()), vec![("d#2".into(), 3_000), ("d#1".into(), 5_000)]);
    assert_eq!(listed(store.due(Table::Effects, 6_000, 1).await.unwrap()), vec![("d#2".into(), 3_000)]);
    store.write(vec![due("d#2", None, Condition::Version(1))]).await.unwrap();
    assert_eq!(listed(store.due(Table::Effects, 10_000, 10).await.unwrap()), vec![("d#1".into(), 5_000), ("d#3".into(), 9_000)]);
    assert!(store.due(Table::Cache, 10_000, 10).await.unwrap().is_empty(), "only tables with a due index list anything");
}

async fn doc_store_races(store: Arc<dyn DocStore>) {
    // Ten writers race to create the same item: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(
            async move { store.put_new(Table::Cases, "race#1", "case", &format!("{{\"w\":{i}}}"), None).await.unwrap() },
        ));
    }
    let mut written = 0;
    for t in tasks {
        if t.await.unwrap() == PutOutcome::Written {
            written += 1;
        }
    }
    assert_eq!(written, 1);
    // Ten writers race to move version 1 forward: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.replace(Table::Cases, "race#1", "case", &format!("{{\"r\":{i}}}"), 1).await.unwrap() }));
    }
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap() == ReplaceOutcome::Written {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    // Writers race to claim one item with a transaction that also records who won (as a claim
    // and its audit record do): exactly one wins, and a loser's cancelled transaction undoes
    // nothing of the winner's (an emulator that restores a snapshot taken before the winner
    // wrote makes a committed claim vanish, and the next worker claims it again). Tables of some
    // size, so that a snapshot takes long enough to be overtaken.
    for table in [Table::Effects, Table::Audit] {
        let filler: Vec<Write> =
            (0..100).map(|i| Write::new(table, format!("filler#{i}"), "c", "x".repeat(2000), Condition::Overwrite)).collect();
        for chunk in filler.chunks(25) {
            assert_eq!(store.write(chunk.to_vec()).await.unwrap(), WriteOutcome::Written);
        }
    }
    for round in 0..5 {
        let item = format!("claim#{round}");
        store.put_new(Table::Effects, &item, "a", "{}", None).await.unwrap();
        let mut tasks = Vec::new();
        for w in 0..6 {
            let (store, item) = (store.clone(), item.clone());
            tasks.push(tokio::spawn(async move {
                let claim = Write::new(Table::Effects, item.clone(), "a", format!("{{\"owner\":{w}}}"), Condition::Version(1));
                let record = Write::new(Table::Audit, item, format!("claimed-by#{w}"), "{}", Condition::Absent);
                (w, store.write(vec![claim, record]).await.unwrap())
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            if let (w, WriteOutcome::Written) = t.await.unwrap() {
                winners.push(w);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let doc = store.get(Table::Effects, &item, "a").await.unwrap().unwrap();
        assert_eq!((doc.version, doc.body), (2, format!("{{\"owner\":{}}}", winners[0])), "round {round}: the winner's claim was undone");
        let records = store.query(Table::Audit, &item, "claimed-by#").await.unwrap();
        assert_eq!(records.len(), 1, "round {round}: the winner's record was undone or a loser's kept");
    }
}

#[tokio::test]
async fn doc_store_embedded() {
    doc_store_contract(&MemoryStore::new()).await;
    doc_store_races(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn doc_store_dynamodb_on_moto() {
    doc_store_contract(&moto_store("docstore").await).await;
    doc_store_races(Arc::new(moto_store("docrace").await)).await;
}

#[tokio::test]
async fn dynamodb_rejects_oversized_and_reports_missing_tables() {
    let store = moto_store("limits").await;
    let big = "x".repeat(500 * 1024);
    let err = store.put_new(Table::Cases, "t#1", "big", &big, None).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let sdk = dossier_adapters::aws::sdk_config_for(&moto_endpoint()).await;
    let missing = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), TableNames::prefixed("no-such-"));
    let err = missing.get(Table::Cases, "a", "b").await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
}

// --------------------------------------------------------------------------------------- Queue

/// What the contract needs beyond the ports: reading the DLQ.
#[async_trait::async_trait]
trait DeadLetters {
    async fn dead_letters(&self, queue: &QueueName) -> Vec<String>;
}

#[async_trait::async_trait]
impl DeadLetters for MemoryQueue {
    async fn dead_letters(&self, queue: &QueueName) -> Vec<String> {
        MemoryQueue::dead_letters(self, queue)
    }
}

struct MotoDeadLetters {
    client: aws_sdk_sqs::Client,
    prefix: String,
}

#[async_trait::async_trait]
impl DeadLetters for MotoDeadLetters {
    async fn dead_letters(&self, queue: &QueueName) -> Vec<String> {
        let url = provision::dlq_url(&self.client, &self.prefix, queue).await.unwrap();
        let out = self.client.receive_message().queue_url(url).max_number_of_messages(10).send().await.unwrap();
        out.messages().iter().filter_map(|m| m.body().map(str::to_string)).collect()
    }
}

async fn receive_within(consumer: &dyn QueueConsumer, q: &QueueName, wait: Duration) -> Vec<dossier_core::ports::Delivery> {
    let until = std::time::Instant::now() + wait;
    loop {
        let got = consumer.receive(q, 10, Duration::ZERO).await.unwrap();
        if !got.is_empty() || std::time::Instant::now() >= until {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn queue_contract<Q: Queue + QueueConsumer>(q: &Q, dlq: &dyn DeadLetters) {
    let collect = QueueName::collect();
    // Send, receive, invisible while in flight, ack deletes.
    q.send(&collect, "m1", Duration::ZERO).await.unwrap();
    let got = receive_within(q, &collect, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].body.as_str(), got[0].receive_count), ("m1", 1));
    assert!(q.receive(&collect, 10, Duration::ZERO).await.unwrap().is_empty(), "in flight messages are invisible");
    q.ack(&got[0]).await.unwrap();
    // retry_later(0) makes it visible again with a higher receive count.
    q.send(&collect, "m2", Duration::ZERO).await.unwrap();
    let first = receive_within(q, &collect, Duration::from_secs(2)).await;
    q.retry_later(&first[0], Duration::ZERO).await.unwrap();
    let second = receive_within(q, &collect, Duration::from_secs(2)).await;
    assert_eq!((second[0].body.as_str(), second[0].receive_count), ("m2", 2));
    q.ack(&second[0]).await.unwrap();
    // A delayed message is not visible before its delay.
    q.send(&collect, "later", Duration::from_secs(2)).await.unwrap();
    assert!(q.receive(&collect, 10, Duration::ZERO).await.unwrap().is_empty());
    let later = receive_within(q, &collect, Duration::from_secs(5)).await;
    assert_eq!(later[0].body, "later");
    q.ack(&later[0]).await.unwrap();
    // Long polling: a receive waiting on an empty queue gets a message sent meanwhile, and one
    // whose delay ends meanwhile; with nothing coming it returns empty.
    assert!(q.receive(&collect, 10, Duration::from_secs(1)).await.unwrap().is_empty());
    let (waited, ()) = tokio::join!(q.receive(&collect, 10, Duration::from_secs(10)), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        q.send(&collect, "while waiting", Duration::ZERO).await.unwrap();
    });
    let waited = waited.unwrap();
    assert_eq!(waited.len(), 1);
    assert_eq!(waited[0].body, "while waiting");
    q.ack(&waited[0]).await.unwrap();
    q.send(&collect, "delayed while waiting", Duration::from_secs(1)).await.unwrap();
    let waited = q.receive(&collect, 10, Duration::from_secs(10)).await.unwrap();
    assert_eq!(waited.len(), 1);
    assert_eq!(waited[0].body, "delayed while waiting");
    q.ack(&waited[0]).await.unwrap();
    // Redrive: after the receive limit the message moves to the DLQ intact.
    let body = r#"{"v":1,"type":"collect","case":{"tenant":"t","incident_id":"poison"}}"#;
    q.send(&collect, body, Duration::ZERO).await.unwrap();
    for attempt in 1..=provision::MAX_RECEIVE_COUNT {
        let got = receive_within(q, &collect, Duration::from_secs(2)).await;
        assert_eq!(got.len(), 1, "attempt {attempt}");
        q.retry_later(&got[0], Duration::ZERO).await.unwrap();
    }
    assert!(receive_within(q, &collect, Duration::from_millis(500)).await.is_empty());
    assert_eq!(dlq.dead_letters(&collect).await, vec![body.to_string()]);
}

#[tokio::test]
async fn queue_embedded() {
    let q = MemoryQueue::new(Arc::new(SystemClock), Duration::from_secs(30), provision::MAX_RECEIVE_COUNT);
    queue_contract(&q, &q).await;
}

#[tokio::test]
async fn queue_sqs_on_moto() {
    let sdk = dossier_adapters::aws::sdk_config_for(&moto_endpoint()).await;
    let client = aws_sdk_sqs::Client::new(&sdk);
    let prefix = unique_prefix("queue");
    let urls = provision::ensure_queues(&client, &prefix, &[QueueName::collect()], 30).await.unwrap();
    let dlq = MotoDeadLetters { client: client.clone(), prefix };
    queue_contract(&SqsQueue::new(client, urls), &dlq).await;
}

#[tokio::test]
async fn secrets_manager_on_moto() {
    use dossier_core::ports::{SecretError, SecretStore};
    let sdk = dossier_adapters::aws::sdk_config_for(&moto_endpoint()).await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = format!("{}webhook", unique_prefix("secret"));
    client.create_secret().name(&name).secret_string("s3cret-value").send().await.unwrap();
    let store = dossier_adapters::secrets::SecretsManager::new(client);
    assert_eq!(store.get_secret(&name).await.unwrap(), "s3cret-value");
    assert!(matches!(store.get_secret("does-not-exist").await, Err(SecretError::NotFound(_))));
    // The embedded twin behaves the same.
    let mem = dossier_core::embedded::MemorySecrets::new([(name.clone(), "s3cret-value".to_string())]);
    assert_eq!(mem.get_secret(&name).await.unwrap(), "s3cret-value");
    assert!(matches!(mem.get_secret("does-not-exist").await, Err(SecretError::NotFound(_))));
}

/// The snapshot key is read in the background from Secrets Manager: the cell fills once it is
/// in, and stays empty (nothing carried, every consumer reads the store) for a secret that is
/// missing or too short to be a key, or without one configured.
#[tokio::test]
async fn the_snapshot_key_fills_in_the_background_or_stays_empty() {
    use dossier_adapters::wiring::snapshot_key_in_background;
    let sdk = dossier_adapters::aws::sdk_config_for(&moto_endpoint()).await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let prefix = unique_prefix("snapshot");
    let (good, short) = (format!("{prefix}key"), format!("{prefix}short"));
    client.create_secret().name(&good).secret_string("0123456789abcdef0123456789abcdef-snapshot").send().await.unwrap();
    client.create_secret().name(&short).secret_string("too-short").send().await.unwrap();
    let store: Arc<dyn dossier_core::ports::SecretStore> = Arc::new(dossier_adapters::secrets::SecretsManager::new(client));
    // Read only once the function serves (here: when told).
    let (serving, started) = tokio::sync::oneshot::channel::<()>();
    let filled = snapshot_key_in_background(store.clone(), Some(good), async move {
        started.await.ok();
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(filled.get().is_none(), "not read before the function serves");
    serving.send(()).unwrap();
    let empty = [
        snapshot_key_in_background(store.clone(), Some(short), std::future::ready(())),
        snapshot_key_in_background(store.clone(), Some(format!("{prefix}missing")), std::future::ready(())),
        snapshot_key_in_background(store, None, std::future::ready(())),
    ];
    for _ in 0..100 {
        if filled.get().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let key = filled.get().expect("the key was read");
    let tag = key.tag("snapshot", &[b"1", b"body"]);
    assert!(key.check_tag("snapshot", &[b"1", b"body"], &tag));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(empty.iter().all(|c| c.get().is_none()), "no key from a short, a missing or no secret");
}

// -------------------------------------------------------------------------------------- XdrApi

const DEMO_INCIDENT: &str = include_str!("../../../../infra/local/samples/xdr/demo_powershell_stager.json");

/// The demo incident under `id`, last modified at `modified_ms`.
fn recorded_incident(id: &str, modified_ms: i64) -> String {
    let mut v: serde_json::Value = serde_json::from_str(DEMO_INCIDENT).unwrap();
    v["reply"]["incident"]["incident_id"] = id.into();
    v["reply"]["incident"]["creation_time"] = (modified_ms - 1_000).into();
    v["reply"]["incident"]["modification_time"] = modified_ms.into();
    v.to_string()
}

/// What Dossier relies on from XDR, the same for the real client against a tenant and for the
/// in-memory twin the local runs use.
async fn xdr_contract(xdr: &dyn XdrApi) {
    // Listed by modification time inside the window, oldest first.
    let listed: Vec<String> = xdr.list_modified(T0 + 2_000, T0 + 4_000).await.unwrap().into_iter().map(|i| i.incident_id).collect();
    assert_eq!(listed, vec!["30", "20"], "window [2000, 4000], oldest first");
    assert_eq!(xdr.list_modified(T0, T0 + 2_500).await.unwrap().len(), 2, "10 and 30");
    assert!(xdr.list_modified(T0 + 9_000, T0 + 10_000).await.unwrap().is_empty());
    // Extra data of a known incident; an unknown one is an error that retrying does not mend.
    let data = dossier_core::xdr::parse_extra_data(&xdr.get_incident_extra_data("20").await.unwrap()).unwrap();
    assert_eq!(data[0].incident.incident_id, "20");
    assert!(xdr.get_incident_extra_data("404").await.is_err_and(|e| !e.is_retryable()));
    // A severity set reads back; an isolation shows on the endpoint; a second block is no error.
    xdr.set_severity("20", "high").await.unwrap();
    assert_eq!(xdr.manual_severity("20").await.unwrap().as_deref(), Some("high"));
    assert_eq!(xdr.manual_severity("10").await.unwrap(), None);
    assert_eq!(xdr.endpoint_isolated("ep-1").await.unwrap(), Some(false));
    let action = xdr.isolate_endpoint("ep-1", "20").await.unwrap();
    assert!(!action.is_empty());
    assert_eq!(xdr.endpoint_isolated("ep-1").await.unwrap(), Some(true));
    assert_eq!(xdr.endpoint_isolated("ep-2").await.unwrap(), Some(false));
    assert!(xdr.action_status(&action).await.unwrap().iter().all(|(_, s)| s == "COMPLETED_SUCCESSFULLY"));
    let hash = "03bd9a94482f180bb047626cb2f27ccf8daa0e201345480b43585580e09c311b";
    xdr.block_hash(hash, "approved", "20").await.unwrap();
    xdr.block_hash(hash, "approved again", "20").await.unwrap();
    // A comment posted reads back where the API can read comments back (3.x cannot: `None`).
    xdr.add_comment("20", "[dossier:t#20:d1] text").await.unwrap();
    assert!(matches!(xdr.comment_exists("20", "[dossier:t#20:d1]").await.unwrap(), None | Some(true)));
    assert_ne!(xdr.comment_exists("20", "[dossier:t#20:other]").await.unwrap(), Some(true));
}

/// A moment in milliseconds (XDR's epochs), the incidents' times counted from it.
const T0: i64 = 1_790_000_000_000;

fn contract_incidents() -> Vec<String> {
    vec![recorded_incident("10", T0 + 1_000), recorded_incident("20", T0 + 3_500), recorded_incident("30", T0 + 2_200)]
}

#[tokio::test]
async fn xdr_twin() {
    let twin = dossier_core::embedded::RecordingXdr::with_incidents(contract_incidents().into_iter().map(|raw| {
        (serde_json::from_str::<serde_json::Value>(&raw).unwrap()["reply"]["incident"]["incident_id"].as_str().unwrap().to_string(), raw)
    }));
    xdr_contract(&twin).await;
}

#[tokio::test]
async fn xdr_client_against_a_strict_tenant() {
    let tenant = dossier_tests::xdr_tenant::XdrTenant::start("7", "tenant-key", &contract_incidents()).await;
    let creds =
        XdrCredentials { api_key: "tenant-key".into(), api_key_id: "7".into(), auth: AuthKind::Advanced, generation: Generation::V3 };
    let xdr = XdrHttp::new(&tenant.server.url(), creds, Duration::from_secs(5));
    xdr_contract(&xdr).await;
    assert_eq!(tenant.comments("20"), vec!["[dossier:t#20:d1] text"]);
}
