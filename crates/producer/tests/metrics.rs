//! The producer's metrics through the `metrics` facade, captured by a
//! recorder installed for this test process: user and Kinesis records put,
//! retries and throttles, errors by kind, buffering time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use eddy_producer::client::{BoxFuture, EntryResult, PutEntry};
use eddy_producer::metrics as m;
use eddy_producer::shard_map::ShardInfo;
use eddy_producer::{ClientError, KinesisApi, Producer, ProducerConfig};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// name{labels} -> counter total, or histogram sample count.
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

impl metrics::HistogramFn for Cell {
    fn record(&self, _: f64) {
        *self.0.lock().unwrap().entry(self.1.clone()).or_default() += 1.0;
    }
}

impl metrics::GaugeFn for Cell {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, _: f64) {}
}

fn name(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
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

/// One shard; the first attempt of every third record is throttled;
/// stream "gone" does not exist.
#[derive(Default)]
struct Fake {
    n: Mutex<u64>,
}

impl KinesisApi for Fake {
    fn put_records<'a>(
        &'a self,
        _stream: &'a str,
        entries: Vec<PutEntry>,
    ) -> BoxFuture<'a, Result<Vec<EntryResult>, ClientError>> {
        Box::pin(async move {
            let mut n = self.n.lock().unwrap();
            Ok(entries
                .iter()
                .map(|_| {
                    *n += 1;
                    if n.is_multiple_of(3) && *n < 300 {
                        EntryResult::Failed {
                            code: "ProvisionedThroughputExceededException".into(),
                            message: "Rate exceeded".into(),
                        }
                    } else {
                        EntryResult::Ok {
                            shard_id: "shardId-000000000000".into(),
                            sequence_number: format!("{n:020}"),
                        }
                    }
                })
                .collect())
        })
    }

    fn list_shards<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ShardInfo>, ClientError>> {
        Box::pin(async move {
            if stream == "gone" {
                return Err(ClientError::Fatal {
                    code: "ResourceNotFoundException".into(),
                    message: "no such stream".into(),
                });
            }
            Ok(vec![ShardInfo {
                shard_id: "shardId-000000000000".into(),
                start: 0,
                end: u128::MAX,
                open: true,
            }])
        })
    }
}

#[tokio::test]
async fn puts_retries_throttles_errors_and_buffering_time_are_counted() {
    let values: Values = Arc::default();
    metrics::set_global_recorder(Capture(values.clone())).unwrap();
    let p = Producer::new(
        Fake::default(),
        ProducerConfig {
            aggregation: false,
            max_buffered_time: Duration::from_millis(10),
            retry_base_delay: Duration::from_millis(2),
            rate_limit_percent: None,
            ..ProducerConfig::default()
        },
    );
    let mut pending = Vec::new();
    for i in 0..300 {
        pending.push(
            p.send("s", format!("k{i}"), Bytes::from_static(b"0123456789"))
                .await
                .unwrap(),
        );
    }
    for f in pending {
        f.await.unwrap();
    }
    assert!(
        p.send("gone", "k", Bytes::from_static(b"x"))
            .await
            .unwrap()
            .await
            .is_err()
    );
    p.shutdown().await;
    let v = values.lock().unwrap();
    let get = |k: &str| v.get(k).copied().unwrap_or(0.0);
    assert_eq!(
        get(&format!("{}{{stream=s}}", m::USER_RECORDS_PUT)),
        300.0,
        "{v:?}"
    );
    assert_eq!(
        get(&format!("{}{{stream=s}}", m::KINESIS_RECORDS_PUT)),
        300.0
    );
    assert_eq!(get(&format!("{}{{stream=s}}", m::USER_BYTES_PUT)), 3000.0);
    let throttles = get(&format!("{}{{stream=s}}", m::THROTTLES));
    assert!(throttles >= 90.0, "{v:?}");
    assert_eq!(get(&format!("{}{{stream=s}}", m::RETRIES)), throttles);
    assert!(get(&format!("{}{{stream=s}}", m::REQUESTS)) >= 2.0);
    assert!(get(&format!("{}{{stream=s}}", m::BUFFERING_TIME)) >= 1.0);
    assert_eq!(
        get(&format!("{}{{kind=rejected,stream=gone}}", m::ERRORS)),
        1.0,
        "{v:?}"
    );
    assert_eq!(get(&format!("{}{{stream=s}}", m::SHARD_MAP_REFRESHES)), 1.0);
}
