//! Domain rules that need control of time or of the engine, driven through
//! `Streams::handle` with a real storage engine under a manual clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use eddy_log::{Clock, Log, LogConfig};
use eddy_streams::token::{IteratorToken, Signer};
use eddy_streams::{Streams, StreamsConfig};
use eddy_wire::Value;

struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn open(dir: &std::path::Path, clock: Arc<ManualClock>) -> Streams {
    let mut cfg = LogConfig::new(dir.join("log"));
    cfg.durability = eddy_log::Durability::None;
    cfg.clock = clock;
    let log = Log::open(cfg).unwrap();
    Streams::open(StreamsConfig::new(dir.join("meta")), log).unwrap()
}

async fn put(s: &Streams, data: &str) -> Value {
    s.handle(
        "PutRecord",
        Value::map()
            .with("StreamName", "s")
            .with("PartitionKey", "k")
            .with("Data", Bytes::from(data.to_string())),
    )
    .await
    .unwrap()
}

async fn trim_horizon_records(s: &Streams) -> Vec<Value> {
    let it = s
        .handle(
            "GetShardIterator",
            Value::map()
                .with("StreamName", "s")
                .with("ShardId", "shardId-000000000000")
                .with("ShardIteratorType", "TRIM_HORIZON"),
        )
        .await
        .unwrap();
    let out = s
        .handle(
            "GetRecords",
            Value::map().with("ShardIterator", it.str("ShardIterator").unwrap()),
        )
        .await
        .unwrap();
    out.items("Records").unwrap()
}

#[tokio::test]
async fn records_past_retention_stop_being_readable() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock(AtomicI64::new(now())));
    let s = open(dir.path(), clock.clone());
    s.handle(
        "CreateStream",
        Value::map()
            .with("StreamName", "s")
            .with("ShardCount", 1i64),
    )
    .await
    .unwrap();
    put(&s, "old").await;
    clock.0.fetch_add(23 * 3600 * 1000, Ordering::SeqCst);
    put(&s, "new").await;
    assert_eq!(trim_horizon_records(&s).await.len(), 2);
    // 24 h after the first record, only the second is within retention.
    clock.0.fetch_add(2 * 3600 * 1000, Ordering::SeqCst);
    let left = trim_horizon_records(&s).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].blob("Data").unwrap().as_ref(), b"new");
    // Longer retention keeps what is still there for longer.
    s.handle(
        "IncreaseStreamRetentionPeriod",
        Value::map()
            .with("StreamName", "s")
            .with("RetentionPeriodHours", 168i64),
    )
    .await
    .unwrap();
    clock.0.fetch_add(48 * 3600 * 1000, Ordering::SeqCst);
    assert_eq!(trim_horizon_records(&s).await.len(), 1);
}

#[tokio::test]
async fn iterators_expire_after_five_minutes_with_aws_message() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Arc::new(ManualClock(AtomicI64::new(now()))));
    s.handle(
        "CreateStream",
        Value::map()
            .with("StreamName", "s")
            .with("ShardCount", 1i64),
    )
    .await
    .unwrap();
    // Read the token secret the way the service does, then forge an old iterator.
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("meta/streams.json")).unwrap())
            .unwrap();
    let secret: Vec<u8> = meta["secret"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    let signer = Signer::new(secret.try_into().unwrap());
    let tag = meta["streams"]["s"]["tag"].as_u64().unwrap();
    let old = signer.iterator(&IteratorToken {
        issued_ms: now() - 301_000,
        stream_tag: tag,
        shard_index: 0,
        position: 0,
        stream_name: "s".into(),
    });
    let err = s
        .handle("GetRecords", Value::map().with("ShardIterator", old))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "ExpiredIteratorException");
    let msg = err.to_string();
    assert!(
        msg.starts_with("Iterator expired. The iterator was created at time "),
        "{msg}"
    );
    assert!(
        msg.ends_with(
            " which is further in the future than the tolerated delay of 300000 milliseconds."
        ),
        "{msg}"
    );
}

#[tokio::test]
async fn deleting_a_stream_makes_its_name_reusable_with_fresh_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Arc::new(ManualClock(AtomicI64::new(now()))));
    s.handle(
        "CreateStream",
        Value::map()
            .with("StreamName", "s")
            .with("ShardCount", 1i64),
    )
    .await
    .unwrap();
    let old = put(&s, "before").await;
    s.handle("DeleteStream", Value::map().with("StreamName", "s"))
        .await
        .unwrap();
    s.handle(
        "CreateStream",
        Value::map()
            .with("StreamName", "s")
            .with("ShardCount", 1i64),
    )
    .await
    .unwrap();
    assert!(trim_horizon_records(&s).await.is_empty());
    // A sequence number of the old incarnation is refused.
    let err = s
        .handle(
            "GetShardIterator",
            Value::map()
                .with("StreamName", "s")
                .with("ShardId", "shardId-000000000000")
                .with("ShardIteratorType", "AT_SEQUENCE_NUMBER")
                .with("StartingSequenceNumber", old.str("SequenceNumber").unwrap()),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("because it did not come from this stream."),
        "{err}"
    );
}
