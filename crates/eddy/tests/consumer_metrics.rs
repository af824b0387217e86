//! The consumer's metrics (through the `metrics` facade, captured by a
//! recorder installed for this test process), read throttling against
//! Eddy's default read limits, and a checkpoint that finds its lease taken.

mod common;
mod consumer_common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use common::{Eddy, create_stream};
use consumer_common::{Dynalite, wait_until};
use eddy_consumer::{
    CheckpointError, Checkpointer, ConsumerConfig, DynamoLeaseStore, InitializeInput, LeaseStore,
    ProcessRecordsInput, RecordProcessor, Worker,
};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// name{label=value,...} -> last gauge value or counter total.
type Values = Arc<Mutex<HashMap<String, f64>>>;

struct Capture(Values);

struct Cell(Values, String);

impl metrics::CounterFn for Cell {
    fn increment(&self, v: u64) {
        *self.0.lock().unwrap().entry(self.1.clone()).or_default() += v as f64;
    }
    fn absolute(&self, v: u64) {
        self.0.lock().unwrap().insert(self.1.clone(), v as f64);
    }
}

impl metrics::GaugeFn for Cell {
    fn increment(&self, v: f64) {
        *self.0.lock().unwrap().entry(self.1.clone()).or_default() += v;
    }
    fn decrement(&self, v: f64) {
        *self.0.lock().unwrap().entry(self.1.clone()).or_default() -= v;
    }
    fn set(&self, v: f64) {
        self.0.lock().unwrap().insert(self.1.clone(), v);
    }
}

impl metrics::HistogramFn for Cell {
    fn record(&self, _: f64) {}
}

fn name(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Cell(self.0.clone(), name(key))))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Cell(self.0.clone(), name(key))))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Cell(self.0.clone(), name(key))))
    }
}

/// Counts records; checkpoints after each batch, noting failures.
struct Count {
    records: Arc<AtomicUsize>,
    lost: Arc<AtomicUsize>,
}

impl RecordProcessor for Count {
    async fn initialize(&mut self, _: InitializeInput) {}

    async fn process_records(&mut self, input: ProcessRecordsInput, cp: &mut Checkpointer) {
        self.records
            .fetch_add(input.records.len(), Ordering::SeqCst);
        if let Err(CheckpointError::LeaseLost(_)) = cp.checkpoint().await {
            self.lost.fetch_add(1, Ordering::SeqCst);
        }
    }
}

const SHARD0: &str = "shardId-000000000000";
const SHARD1: &str = "shardId-000000000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_progress_throttling_leases_and_failed_checkpoints() {
    let values: Values = Arc::default();
    metrics::set_global_recorder(Capture(values.clone())).unwrap();
    let Some(dyn_) = Dynalite::start() else {
        return;
    };
    // Read limits on (the default): 5 GetRecords per second per shard.
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "m", 2).await;
    // Explicit hash keys: "1" lands in shard 0, the top of the range in shard 1.
    let put = |ehk: &'static str, n: usize| {
        let k = k.clone();
        async move {
            for i in 0..n {
                k.put_record()
                    .stream_name("m")
                    .partition_key("p")
                    .explicit_hash_key(ehk)
                    .data(Blob::new(format!("{ehk}-{i}")))
                    .send()
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let top = "340282366920938463463374607431768211455";

    let mut cfg =
        ConsumerConfig::new("metrics-app", "m", "w1").with_lease_duration(Duration::from_secs(120));
    // Polls as fast as it can: only the back-off keeps it within the limit.
    cfg.poll_interval = Duration::ZERO;
    cfg.shard_sync_interval = Duration::from_millis(300);
    cfg.take_interval = Duration::from_millis(200);
    let store = DynamoLeaseStore::new(dyn_.client(), "metrics-app");
    let records = Arc::new(AtomicUsize::new(0));
    let lost = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let worker = {
        let (records, lost) = (records.clone(), lost.clone());
        Worker::new(
            cfg,
            eddy.client_without_retries(),
            store.clone(),
            move || Count {
                records: records.clone(),
                lost: lost.clone(),
            },
        )
    };
    let run = tokio::spawn(async move {
        worker
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    tokio::join!(put("1", 15), put(top, 15));
    wait_until(20, "30 records", || records.load(Ordering::SeqCst) >= 30).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        records.load(Ordering::SeqCst),
        30,
        "exactly once despite throttling"
    );

    let get = |name: &str| values.lock().unwrap().get(name).copied();
    let processed = |s: &str| get(&format!("eddy_consumer_records_processed{{shard={s}}}"));
    assert_eq!(processed(SHARD0), Some(15.0));
    assert_eq!(processed(SHARD1), Some(15.0));
    assert_eq!(get("eddy_consumer_leases_held{}"), Some(2.0));
    for s in [SHARD0, SHARD1] {
        let behind = get(&format!("eddy_consumer_millis_behind_latest{{shard={s}}}"));
        assert!(behind.is_some_and(|v| v >= 0.0), "{s}: {behind:?}");
    }
    let throttles: f64 = [SHARD0, SHARD1]
        .iter()
        .filter_map(|s| get(&format!("eddy_consumer_read_throttles{{shard={s}}}")))
        .sum();
    eprintln!("throttled reads: {throttles}");
    assert!(throttles > 0.0, "polling without pause gets throttled");
    // Backing off (100 ms doubling): a few per second per shard, not a flood.
    assert!(
        throttles < 200.0,
        "{throttles} throttled reads: no back-off"
    );

    // Someone takes shard 0's lease behind the worker's back (no hand-off):
    // its next checkpoint fails and it stops processing the shard.
    let l = store.get_lease(SHARD0).await.unwrap().unwrap();
    store.take_lease(&l, "thief").await.unwrap();
    put("1", 1).await;
    wait_until(10, "a failed checkpoint", || {
        lost.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(
        get(&format!(
            "eddy_consumer_checkpoint_failures{{shard={SHARD0}}}"
        )),
        Some(1.0)
    );
    put("1", 3).await;
    put(top, 2).await;
    wait_until(10, "shard 1's new records", || {
        records.load(Ordering::SeqCst) >= 33
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        records.load(Ordering::SeqCst),
        33,
        "nothing more from the lost shard"
    );
    wait_until(5, "one lease held", || {
        get("eddy_consumer_leases_held{}") == Some(1.0)
    })
    .await;
    drop(tx);
    run.await.unwrap();
}
