//! The consumer library against a real `eddy serve`, with its lease table on
//! dynalite: every record processed, checkpoints in the KCL's item shape,
//! restart resuming after the checkpoint, resharding order, enhanced fan-out,
//! KPL deaggregation, and `eddy tail` printing JSON lines.

mod common;
mod consumer_common;
#[path = "../../consumer/tests/support/store_conditions.rs"]
mod store_conditions;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use bytes::Bytes;
use common::{Eddy, create_stream};
use consumer_common::{Dynalite, wait_until};
use eddy_consumer::{
    Checkpointer, ConsumerConfig, DynamoLeaseStore, InitializeInput, ProcessRecordsInput,
    RecordProcessor, RetrievalMode, Worker,
};
use tokio::sync::oneshot;

/// Everything a test's processors saw, in order.
#[derive(Default, Clone)]
struct Seen(Arc<Mutex<Vec<Event>>>);

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Init(String, String),
    Record {
        shard: String,
        seq: String,
        sub: Option<u64>,
        data: String,
        pk: String,
    },
    ShardEnd(String),
}

impl Seen {
    fn data(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Record { data, .. } => Some(data.clone()),
                _ => None,
            })
            .collect()
    }
    fn records(&self) -> usize {
        self.data().len()
    }
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}

struct Collect {
    seen: Seen,
    shard: String,
}

impl RecordProcessor for Collect {
    async fn initialize(&mut self, input: InitializeInput) {
        self.shard = input.shard_id.clone();
        self.seen.0.lock().unwrap().push(Event::Init(
            input.shard_id,
            input.checkpoint.as_attribute().to_string(),
        ));
    }

    async fn process_records(&mut self, input: ProcessRecordsInput, cp: &mut Checkpointer) {
        {
            let mut seen = self.seen.0.lock().unwrap();
            for r in &input.records {
                seen.push(Event::Record {
                    shard: r.shard_id.clone(),
                    seq: r.sequence_number.clone(),
                    sub: r.sub_sequence_number,
                    data: String::from_utf8(r.data.to_vec()).unwrap(),
                    pk: r.partition_key.clone(),
                });
            }
        }
        cp.checkpoint().await.unwrap();
    }

    async fn shard_ended(&mut self, cp: &mut Checkpointer) {
        cp.checkpoint_shard_end().await.unwrap();
        self.seen
            .0
            .lock()
            .unwrap()
            .push(Event::ShardEnd(self.shard.clone()));
    }
}

fn config(app: &str, stream: &str, worker: &str) -> ConsumerConfig {
    let mut cfg =
        ConsumerConfig::new(app, stream, worker).with_lease_duration(Duration::from_millis(1500));
    cfg.shard_sync_interval = Duration::from_millis(300);
    cfg.parent_check_interval = Duration::from_millis(100);
    cfg.poll_interval = Duration::from_millis(210);
    cfg
}

/// Runs a worker in the background; dropping the sender stops it.
fn spawn_worker(
    cfg: ConsumerConfig,
    eddy: &Eddy,
    ddb: aws_sdk_dynamodb::Client,
    seen: &Seen,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = oneshot::channel::<()>();
    let store = DynamoLeaseStore::new(ddb, cfg.application_name.clone());
    let seen = seen.clone();
    let w = Worker::new(cfg, eddy.client(), store, move || Collect {
        seen: seen.clone(),
        shard: String::new(),
    });
    let h = tokio::spawn(async move {
        w.run(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (tx, h)
}

async fn put(k: &aws_sdk_kinesis::Client, stream: &str, pk: &str, data: &str) {
    k.put_record()
        .stream_name(stream)
        .partition_key(pk)
        .data(Blob::new(data.as_bytes().to_vec()))
        .send()
        .await
        .unwrap();
}

async fn lease_item(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    shard: &str,
) -> HashMap<String, AttributeValue> {
    ddb.get_item()
        .table_name(table)
        .key("leaseKey", AttributeValue::S(shard.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("lease item exists")
}

#[tokio::test]
async fn the_lease_table_on_eddy_enforces_the_kcl_conditions() {
    let eddy = Eddy::start();
    let store = DynamoLeaseStore::new(eddy.dynamodb_client(), "conditions");
    store_conditions::check_store_conditions(&store).await;
}

#[tokio::test]
async fn the_lease_table_on_dynalite_enforces_the_kcl_conditions() {
    let Some(dyn_) = Dynalite::start() else {
        return;
    };
    let store = DynamoLeaseStore::new(dyn_.client(), "conditions");
    store_conditions::check_store_conditions(&store).await;
    // The items carry the KCL's attribute names and types.
    let item = lease_item(&dyn_.client(), "conditions", "c-0").await;
    assert!(item["leaseCounter"].as_n().is_ok());
    assert_eq!(item["leaseOwner"].as_s().unwrap(), "w3");
    assert!(item["checkpointSubSequenceNumber"].as_n().is_ok());
    assert!(item["ownerSwitchesSinceCheckpoint"].as_n().is_ok());
    assert_eq!(item["parentShardId"].as_ss().unwrap(), &["p-0", "p-1"]);
    assert!(!item.contains_key("checkpointOwner"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_processed_once_and_a_restart_resumes_after_the_checkpoint() {
    let Some(dyn_) = Dynalite::start() else {
        return;
    };
    let eddy = Eddy::start();
    let ddb = dyn_.client();
    resume_after_checkpoint(&eddy, ddb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_lease_table_on_eddy_a_restart_resumes_after_the_checkpoint() {
    let eddy = Eddy::start();
    let ddb = eddy.dynamodb_client();
    resume_after_checkpoint(&eddy, ddb).await;
}

async fn resume_after_checkpoint(eddy: &Eddy, ddb: aws_sdk_dynamodb::Client) {
    let k = eddy.client();
    create_stream(&k, "s", 2).await;
    for i in 0..20 {
        put(&k, "s", &format!("pk-{i}"), &format!("first-{i}")).await;
    }
    // One KPL aggregate of five user records, all hashed (explicitly) into
    // the first shard, as the KPL builds them.
    let mut agg = eddy_producer::aggregation::Aggregate::new();
    for i in 0..5 {
        agg.add(
            &format!("agg-{i}"),
            Some(&(1000 + i).to_string()),
            Bytes::from(format!("agg-{i}")),
        );
    }
    k.put_record()
        .stream_name("s")
        .partition_key("a")
        .explicit_hash_key("1000")
        .data(Blob::new(agg.encode().to_vec()))
        .send()
        .await
        .unwrap();

    let seen = Seen::default();
    let (stop, h) = spawn_worker(config("app", "s", "w1"), eddy, ddb.clone(), &seen);
    wait_until(20, "25 records", || seen.records() >= 25).await;
    drop(stop);
    h.await.unwrap();
    let mut got = seen.data();
    got.sort();
    let mut want: Vec<String> = (0..20)
        .map(|i| format!("first-{i}"))
        .chain((0..5).map(|i| format!("agg-{i}")))
        .collect();
    want.sort();
    assert_eq!(got, want, "each record exactly once");
    // The aggregate came out as user records with sub-sequence numbers and
    // their own partition keys.
    let aggs: Vec<(Option<u64>, String)> = seen
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Record { sub, pk, data, .. } if data.starts_with("agg-") => {
                assert_eq!(pk, data);
                Some((sub, data))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        aggs.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (0..5).map(Some).collect::<Vec<_>>()
    );

    // The lease items have the KCL's shape: checkpoint at the last record,
    // released owner after a clean shutdown.
    let last_per_shard: HashMap<String, (String, u64)> = seen
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Record {
                shard, seq, sub, ..
            } => Some((shard, (seq, sub.unwrap_or(0)))),
            _ => None,
        })
        .collect();
    for (shard, (seq, sub)) in &last_per_shard {
        let item = lease_item(&ddb, "app", shard).await;
        assert_eq!(item["checkpoint"].as_s().unwrap(), seq);
        assert_eq!(
            item["checkpointSubSequenceNumber"].as_n().unwrap(),
            &sub.to_string()
        );
        assert_eq!(item["ownerSwitchesSinceCheckpoint"].as_n().unwrap(), "0");
        assert!(item["leaseCounter"].as_n().unwrap().parse::<u64>().unwrap() > 1);
        assert!(
            !item.contains_key("leaseOwner"),
            "released on shutdown: {item:?}"
        );
    }

    // New records; a new worker of the same application sees only those.
    for i in 0..10 {
        put(&k, "s", &format!("pk-{i}"), &format!("second-{i}")).await;
    }
    let seen2 = Seen::default();
    let (stop, h) = spawn_worker(config("app", "s", "w2"), eddy, ddb.clone(), &seen2);
    wait_until(20, "10 new records", || seen2.records() >= 10).await;
    // Give it time to (wrongly) deliver anything old.
    tokio::time::sleep(Duration::from_millis(800)).await;
    drop(stop);
    h.await.unwrap();
    let mut got = seen2.data();
    got.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("second-{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    assert!(
        seen2
            .events()
            .iter()
            .any(|e| matches!(e, Event::Init(_, cp) if cp.starts_with("4"))),
        "initialized from a sequence-number checkpoint"
    );
}

/// Processes everything but checkpoints only up to `upto` (exclusive): a
/// worker about to die between processing and checkpointing.
struct CheckpointUpTo {
    seen: Seen,
    upto: usize,
}

impl RecordProcessor for CheckpointUpTo {
    async fn initialize(&mut self, input: InitializeInput) {
        self.seen.0.lock().unwrap().push(Event::Init(
            input.shard_id,
            input.checkpoint.as_attribute().to_string(),
        ));
    }

    async fn process_records(&mut self, input: ProcessRecordsInput, cp: &mut Checkpointer) {
        let mut last_ok = None;
        for r in &input.records {
            let data = String::from_utf8(r.data.to_vec()).unwrap();
            let i: usize = data.trim_start_matches("d-").parse().unwrap();
            self.seen.0.lock().unwrap().push(Event::Record {
                shard: r.shard_id.clone(),
                seq: r.sequence_number.clone(),
                sub: r.sub_sequence_number,
                data,
                pk: r.partition_key.clone(),
            });
            if i < self.upto {
                last_ok = Some(r.clone());
            }
        }
        if let Some(r) = last_ok {
            cp.checkpoint_at(&r).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_processed_but_not_checkpointed_by_a_dead_worker_are_redelivered_once() {
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "d", 1).await;
    for i in 0..15 {
        put(&k, "d", "p", &format!("d-{i}")).await;
    }
    let ddb = eddy.dynamodb_client();
    let cfg = config("dies", "d", "w1");
    let store = DynamoLeaseStore::new(ddb.clone(), "dies");
    let seen1 = Seen::default();
    let w1 = {
        let seen = seen1.clone();
        Worker::new(cfg, eddy.client(), store.clone(), move || CheckpointUpTo {
            seen: seen.clone(),
            upto: 10,
        })
    };
    // Never told to stop: it "dies" (dropped) without a final checkpoint or
    // releasing its lease.
    let h1 = tokio::spawn(async move { w1.run(std::future::pending()).await.unwrap() });
    wait_until(20, "w1 processed 15", || seen1.records() >= 15).await;
    h1.abort();
    let _ = h1.await;
    for i in 15..20 {
        put(&k, "d", "p", &format!("d-{i}")).await;
    }
    // The successor waits out the lease, then resumes after d-9.
    let started = std::time::Instant::now();
    let seen2 = Seen::default();
    let (stop, h2) = spawn_worker(config("dies", "d", "w2"), &eddy, ddb, &seen2);
    wait_until(20, "w2 caught up", || seen2.records() >= 10).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "a live-looking lease is not taken before the lease duration"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(stop);
    h2.await.unwrap();
    let redelivered: Vec<String> = seen2.data();
    assert_eq!(
        redelivered,
        (10..20).map(|i| format!("d-{i}")).collect::<Vec<_>>(),
        "exactly the records after the last checkpoint, in order"
    );
}

/// Splits and merges while consuming; `efo` picks SubscribeToShard.
async fn parents_before_children(efo: bool) {
    let Some(dyn_) = Dynalite::start() else {
        return;
    };
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "r", 1).await;
    for i in 0..10 {
        put(&k, "r", &format!("k{i}"), &format!("gen0-{i}")).await;
    }
    let mut cfg = config("reshard", "r", "w1");
    if efo {
        cfg.retrieval = RetrievalMode::FanOut {
            consumer_name: "reshard-app".into(),
        };
    }
    let seen = Seen::default();
    let (stop, h) = spawn_worker(cfg, &eddy, dyn_.client(), &seen);
    wait_until(20, "generation 0", || seen.records() >= 10).await;
    let mid = (u128::MAX / 2).to_string();
    k.split_shard()
        .stream_name("r")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(&mid)
        .send()
        .await
        .unwrap();
    for i in 0..10 {
        put(&k, "r", &format!("k{i}"), &format!("gen1-{i}")).await;
    }
    k.merge_shards()
        .stream_name("r")
        .shard_to_merge("shardId-000000000001")
        .adjacent_shard_to_merge("shardId-000000000002")
        .send()
        .await
        .unwrap();
    for i in 0..10 {
        put(&k, "r", &format!("k{i}"), &format!("gen2-{i}")).await;
    }
    wait_until(30, "all three generations", || seen.records() >= 30).await;
    drop(stop);
    h.await.unwrap();
    let mut got = seen.data();
    got.sort();
    let mut want: Vec<String> = (0..3)
        .flat_map(|g| (0..10).map(move |i| format!("gen{g}-{i}")))
        .collect();
    want.sort();
    assert_eq!(got, want);
    // Order: a shard's records come after its parents ended.
    let events = seen.events();
    let pos = |e: &Event| events.iter().position(|x| x == e).unwrap();
    let end_of = |s: &str| pos(&Event::ShardEnd(s.to_string()));
    let first_record_of = |s: &str| {
        events
            .iter()
            .position(|e| matches!(e, Event::Record { shard, .. } if shard == s))
            .unwrap()
    };
    for child in ["shardId-000000000001", "shardId-000000000002"] {
        assert!(end_of("shardId-000000000000") < first_record_of(child));
    }
    let merged = "shardId-000000000003";
    assert!(end_of("shardId-000000000001") < first_record_of(merged));
    assert!(end_of("shardId-000000000002") < first_record_of(merged));
    for e in &events {
        if let Event::Record { shard, data, .. } = e {
            let expected = match shard.as_str() {
                "shardId-000000000000" => "gen0",
                "shardId-000000000003" => "gen2",
                _ => "gen1",
            };
            assert!(data.starts_with(expected), "{data} on {shard}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_processes_children_only_after_their_parents_ended() {
    parents_before_children(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_processes_children_only_after_their_parents_ended() {
    parents_before_children(true).await;
}

/// Reads `n` JSON lines from a running `eddy tail` (and any that follow
/// within 700 ms), then stops it with SIGTERM.
fn tail_lines(args: &[&str], n: usize) -> Vec<serde_json::Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("tail")
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_REGION", "us-east-1")
        .env("EDDY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    while out.len() < n {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("eddy tail prints in time");
        out.push(serde_json::from_str(&line).unwrap());
    }
    // Nothing more (no duplicates, nothing that should have been dropped).
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(700)) {
        out.push(serde_json::from_str(&line).unwrap());
    }
    // SIGTERM: a clean stop (final checkpoints, consumer deregistered).
    let status = Command::new("kill")
        .args(["-15", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success(), "eddy tail exits cleanly");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_every_record_as_a_json_line() {
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "t", 3).await;
    for i in 0..12 {
        put(&k, "t", &format!("key-{i}"), &format!("text-{i}")).await;
    }
    k.put_record()
        .stream_name("t")
        .partition_key("bin")
        .data(Blob::new(vec![0xff, 0xfe, 0x00]))
        .send()
        .await
        .unwrap();
    let mut agg = eddy_producer::aggregation::Aggregate::new();
    agg.add("u0", Some("7"), Bytes::from_static(b"user-0"));
    agg.add("u1", Some("8"), Bytes::from_static(b"user-1"));
    // A user record hashed to another shard: dropped, as the KCL does.
    let other_shard = (u128::MAX / 3 * 2).to_string();
    agg.add("u2", Some(&other_shard), Bytes::from_static(b"user-2"));
    k.put_record()
        .stream_name("t")
        .partition_key("a")
        .explicit_hash_key("7")
        .data(Blob::new(agg.encode().to_vec()))
        .send()
        .await
        .unwrap();
    let ep = eddy.endpoint();
    for efo in [false, true] {
        let mut args = vec!["--stream", "t", "--endpoint", &ep];
        if efo {
            args.push("--efo");
        }
        let lines = tokio::task::spawn_blocking({
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            move || tail_lines(&args.iter().map(String::as_str).collect::<Vec<_>>(), 15)
        })
        .await
        .unwrap();
        assert_eq!(lines.len(), 15, "efo={efo}: {lines:?}");
        let mut texts: Vec<&str> = lines
            .iter()
            .filter(|l| l.get("dataEncoding").is_none())
            .map(|l| l["data"].as_str().unwrap())
            .collect();
        texts.sort();
        let mut want: Vec<String> = (0..12).map(|i| format!("text-{i}")).collect();
        want.push("user-0".into());
        want.push("user-1".into());
        want.sort();
        assert_eq!(texts, want, "efo={efo}");
        let bin = lines
            .iter()
            .find(|l| l["partitionKey"] == "bin")
            .expect("binary record");
        assert_eq!(bin["data"], "//4A");
        assert_eq!(bin["dataEncoding"], "base64");
        for l in &lines {
            assert!(l["shardId"].as_str().unwrap().starts_with("shardId-"));
            assert!(l["sequenceNumber"].as_str().unwrap().len() > 20);
            assert!(
                l["approximateArrivalTimestamp"]
                    .as_str()
                    .unwrap()
                    .ends_with('Z')
            );
            let aggregated = l["data"].as_str().unwrap().starts_with("user-");
            assert_eq!(l.get("subSequenceNumber").is_some(), aggregated, "{l}");
        }
        let u1 = lines.iter().find(|l| l["data"] == "user-1").unwrap();
        assert_eq!(u1["subSequenceNumber"], 1);
        assert_eq!(u1["partitionKey"], "u1");
        assert!(!lines.iter().any(|l| l["data"] == "user-2"));
    }
    let consumers = k
        .list_stream_consumers()
        .stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/t")
        .send()
        .await
        .unwrap();
    assert!(
        consumers.consumers().is_empty(),
        "--efo deregisters its consumer on exit: {consumers:?}"
    );
}

#[test]
fn tail_of_a_missing_stream_fails_with_the_error() {
    let eddy = Eddy::start();
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["tail", "--stream", "nope", "--endpoint", &eddy.endpoint()])
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ResourceNotFoundException"), "{err}");
    assert!(err.contains("nope"), "{err}");
}
