//! The producer against a fake Kinesis (shard map, per-record failures,
//! latency, resharding on demand): batching limits, retries, deadlines,
//! aggregation per shard, ordering, backpressure, shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_producer::client::{BoxFuture, EntryResult, PutEntry};
use eddy_producer::shard_map::ShardInfo;
use eddy_producer::{
    ClientError, KinesisApi, Producer, ProducerConfig, PutError, SendError, deaggregate, hash_key,
};

type Failer = Box<dyn FnMut(&PutEntry, u64) -> Option<&'static str> + Send>;

#[derive(Default)]
struct State {
    shards: Vec<ShardInfo>,
    /// Per shard id: (partition key, data) of stored Kinesis records.
    stored: HashMap<String, Vec<(String, Option<String>, Bytes)>>,
    requests: Vec<usize>,
    request_bytes: Vec<usize>,
    calls: u64,
    fail: Option<Failer>,
    list_error: Option<ClientError>,
    /// Per stream: data of every stored user record (aggregates opened).
    by_stream: HashMap<String, Vec<Bytes>>,
}

#[derive(Clone, Default)]
struct Fake {
    state: Arc<Mutex<State>>,
    latency: Duration,
}

fn shards(n: u128) -> Vec<ShardInfo> {
    let step = u128::MAX / n;
    (0..n)
        .map(|i| ShardInfo {
            shard_id: format!("shardId-{i:012}").into(),
            start: i * step,
            end: if i == n - 1 {
                u128::MAX
            } else {
                (i + 1) * step - 1
            },
            open: true,
        })
        .collect()
}

impl Fake {
    fn new(n: u128) -> Fake {
        let f = Fake::default();
        f.state.lock().unwrap().shards = shards(n);
        f
    }
    fn stored_user_records(&self) -> Vec<(String, String, Bytes)> {
        let st = self.state.lock().unwrap();
        let mut out = Vec::new();
        for (shard, recs) in &st.stored {
            for (pk, _, data) in recs {
                for u in deaggregate(pk, data).unwrap() {
                    out.push((shard.clone(), u.partition_key, u.data));
                }
            }
        }
        out
    }
}

impl KinesisApi for Fake {
    fn put_records<'a>(
        &'a self,
        stream: &'a str,
        entries: Vec<PutEntry>,
    ) -> BoxFuture<'a, Result<Vec<EntryResult>, ClientError>> {
        Box::pin(async move {
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency).await;
            }
            let mut st = self.state.lock().unwrap();
            st.calls += 1;
            let call = st.calls;
            st.requests.push(entries.len());
            st.request_bytes.push(
                entries
                    .iter()
                    .map(|e| e.data.len() + e.partition_key.len())
                    .sum(),
            );
            let mut out = Vec::new();
            for e in entries {
                if let Some(code) = st.fail.as_mut().and_then(|f| f(&e, call)) {
                    out.push(EntryResult::Failed {
                        code: code.into(),
                        message: "injected".into(),
                    });
                    continue;
                }
                let h = match &e.explicit_hash_key {
                    Some(k) => k.parse::<u128>().unwrap(),
                    None => hash_key(&e.partition_key),
                };
                let shard = st
                    .shards
                    .iter()
                    .find(|s| s.open && s.start <= h && h <= s.end)
                    .unwrap()
                    .shard_id
                    .to_string();
                let users = deaggregate(&e.partition_key, &e.data).unwrap();
                st.by_stream
                    .entry(stream.to_string())
                    .or_default()
                    .extend(users.into_iter().map(|u| u.data));
                let list = st.stored.entry(shard.clone()).or_default();
                list.push((e.partition_key, e.explicit_hash_key, e.data));
                out.push(EntryResult::Ok {
                    shard_id: shard,
                    sequence_number: format!("{:020}", list.len()),
                });
            }
            Ok(out)
        })
    }

    fn list_shards<'a>(
        &'a self,
        _stream: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ShardInfo>, ClientError>> {
        Box::pin(async move {
            let st = self.state.lock().unwrap();
            match &st.list_error {
                Some(e) => Err(e.clone()),
                None => Ok(st.shards.clone()),
            }
        })
    }
}

fn config() -> ProducerConfig {
    ProducerConfig {
        max_buffered_time: Duration::from_millis(20),
        retry_base_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(50),
        rate_limit_percent: None,
        ..ProducerConfig::default()
    }
}

async fn send_all(
    p: &Producer,
    n: usize,
    key: impl Fn(usize) -> String,
) -> Vec<Result<eddy_producer::PutResult, PutError>> {
    let mut pending = Vec::new();
    for i in 0..n {
        pending.push(
            p.send("s", &key(i), Bytes::from(format!("record-{i}")))
                .await
                .unwrap(),
        );
    }
    let mut out = Vec::new();
    for f in pending {
        out.push(f.await);
    }
    out
}

#[tokio::test]
async fn put_records_calls_stay_within_500_records_and_the_byte_limit() {
    let fake = Fake::new(4);
    let p = Producer::new(
        fake.clone(),
        ProducerConfig {
            max_bytes_per_request: 20_000,
            ..config()
        },
    );
    let res = send_all(&p, 3000, |i| format!("k{i}")).await;
    assert!(res.iter().all(|r| r.is_ok()));
    let st = fake.state.lock().unwrap();
    assert!(st.requests.iter().all(|&n| n <= 500), "{:?}", st.requests);
    assert!(
        st.request_bytes.iter().all(|&b| b <= 20_000),
        "{:?}",
        st.request_bytes
    );
    assert_eq!(st.requests.iter().sum::<usize>(), 3000);
    assert!(
        st.requests.len() < 100,
        "records should be batched, got {} calls",
        st.requests.len()
    );
}

#[tokio::test]
async fn partial_failures_are_retried_until_every_record_is_stored_once() {
    let fake = Fake::new(2);
    let mut n = 0u64;
    fake.state.lock().unwrap().fail = Some(Box::new(move |_, call| {
        n += 1;
        (call <= 3 && n.is_multiple_of(3)).then_some("ProvisionedThroughputExceededException")
    }));
    let p = Producer::new(fake.clone(), config());
    let res = send_all(&p, 600, |i| format!("k{i}")).await;
    assert!(res.iter().all(|r| r.is_ok()));
    assert!(res.iter().any(|r| r.as_ref().unwrap().attempts > 1));
    let stored = fake.stored_user_records();
    assert_eq!(stored.len(), 600);
    let mut datas: Vec<_> = stored.iter().map(|s| s.2.clone()).collect();
    datas.sort();
    datas.dedup();
    assert_eq!(datas.len(), 600);
    let stats = p.stats();
    assert!(stats.retries > 0 && stats.throttles > 0, "{stats:?}");
    assert_eq!(stats.user_records_put, 600);
}

#[tokio::test]
async fn a_record_that_keeps_failing_expires_at_its_ttl_with_the_last_error() {
    let fake = Fake::new(1);
    fake.state.lock().unwrap().fail = Some(Box::new(|_, _| {
        Some("ProvisionedThroughputExceededException")
    }));
    let p = Producer::new(
        fake.clone(),
        ProducerConfig {
            record_ttl: Duration::from_millis(300),
            ..config()
        },
    );
    let t0 = Instant::now();
    let r = p
        .send("s", "k", Bytes::from_static(b"x"))
        .await
        .unwrap()
        .await;
    let elapsed = t0.elapsed();
    match r {
        Err(PutError::Expired {
            attempts,
            last_error,
            ..
        }) => {
            assert!(attempts >= 2, "{attempts}");
            assert!(
                last_error.contains("ProvisionedThroughputExceeded"),
                "{last_error}"
            );
        }
        other => panic!("expected expiry, got {other:?}"),
    }
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert_eq!(p.stats().failed, 1);
}

#[tokio::test]
async fn aggregates_hold_only_records_of_the_shard_they_are_put_to() {
    let fake = Fake::new(8);
    let p = Producer::new(
        fake.clone(),
        ProducerConfig {
            aggregation: true,
            ..config()
        },
    );
    let res = send_all(&p, 5000, |i| format!("key-{i}")).await;
    assert!(res.iter().all(|r| r.is_ok()));
    assert!(
        res.iter()
            .any(|r| r.as_ref().unwrap().sub_sequence_number.is_some())
    );
    let st = fake.state.lock().unwrap();
    let kinesis_records: usize = st.stored.values().map(|v| v.len()).sum();
    assert!(
        kinesis_records < 500,
        "5000 user records should pack into few aggregates, got {kinesis_records}"
    );
    let mut users = 0;
    for (shard, recs) in &st.stored {
        let info = st.shards.iter().find(|s| &*s.shard_id == shard).unwrap();
        for (pk, _, data) in recs {
            for u in deaggregate(pk, data).unwrap() {
                users += 1;
                let h = hash_key(&u.partition_key);
                assert!(
                    info.start <= h && h <= info.end,
                    "user record {} in wrong shard {shard}",
                    u.partition_key
                );
            }
        }
    }
    assert_eq!(users, 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_sent_from_many_tasks_to_two_streams_reach_their_own_stream_once() {
    // Senders on several threads (each with its own copy of the stream
    // names), aggregates of both streams filled, put and reused many times.
    let fake = Fake::new(4);
    let p = Producer::new(
        fake.clone(),
        ProducerConfig {
            aggregation: true,
            aggregation_max_bytes: 4096,
            ..config()
        },
    );
    let per_task = 3000;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 0..per_task {
                let stream = if (i + t) % 3 == 0 { "one" } else { "two" };
                let data = Bytes::from(format!("{stream}/{t}/{i}"));
                pending.push(p.send(stream, format!("k{t}-{i}"), data).await.unwrap());
            }
            for f in pending {
                f.await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    p.shutdown().await;
    let st = fake.state.lock().unwrap();
    let mut total = 0;
    for (stream, datas) in &st.by_stream {
        let mut seen: Vec<&Bytes> = datas.iter().collect();
        total += seen.len();
        for d in &seen {
            let text = std::str::from_utf8(d).unwrap();
            assert!(
                text.starts_with(&format!("{stream}/")),
                "{text} put to {stream}"
            );
        }
        let n = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), n, "duplicates in {stream}");
    }
    assert_eq!(total, 4 * per_task);
    assert_eq!(p.stats().user_records_put, 4 * per_task as u64);
}

#[tokio::test]
async fn ordered_mode_keeps_each_partition_keys_records_in_order_despite_failures() {
    let fake = Fake::new(2);
    let mut n = 0u64;
    fake.state.lock().unwrap().fail = Some(Box::new(move |_, _| {
        n += 1;
        n.is_multiple_of(4).then_some("InternalFailure")
    }));
    let p = Producer::new(
        fake.clone(),
        ProducerConfig {
            ordered: true,
            ..config()
        },
    );
    let res = send_all(&p, 400, |i| format!("k{}", i % 5)).await;
    assert!(res.iter().all(|r| r.is_ok()));
    let st = fake.state.lock().unwrap();
    for recs in st.stored.values() {
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (pk, _, data) in recs {
            let i: usize = std::str::from_utf8(data)
                .unwrap()
                .trim_start_matches("record-")
                .parse()
                .unwrap();
            if let Some(prev) = last.insert(pk, i) {
                assert!(prev < i, "key {pk}: record {i} stored after {prev}");
            }
        }
    }
}

#[tokio::test]
async fn fail_fast_send_refuses_beyond_the_outstanding_bound() {
    let fake = Fake {
        latency: Duration::from_millis(300),
        ..Fake::new(1)
    };
    let p = Producer::new(
        fake.clone(),
        ProducerConfig {
            max_outstanding_records: 10,
            fail_fast: true,
            ..config()
        },
    );
    let mut pending = Vec::new();
    for i in 0..10 {
        pending.push(
            p.send("s", &format!("k{i}"), Bytes::from_static(b"x"))
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        p.send("s", "k", Bytes::from_static(b"x")).await.err(),
        Some(SendError::Full)
    );
    for f in pending {
        f.await.unwrap();
    }
    p.send("s", "k", Bytes::from_static(b"x"))
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test]
async fn waiting_send_blocks_until_room_is_freed() {
    let fake = Fake {
        latency: Duration::from_millis(200),
        ..Fake::new(1)
    };
    let p = Producer::new(
        fake.clone(),
        ProducerConfig {
            max_outstanding_records: 5,
            ..config()
        },
    );
    let mut pending = Vec::new();
    for i in 0..5 {
        pending.push(
            p.send("s", &format!("k{i}"), Bytes::from_static(b"x"))
                .await
                .unwrap(),
        );
    }
    let t0 = Instant::now();
    let sixth = p.send("s", "k", Bytes::from_static(b"x")).await.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(150),
        "send did not wait: {:?}",
        t0.elapsed()
    );
    for f in pending {
        f.await.unwrap();
    }
    sixth.await.unwrap();
}

#[tokio::test]
async fn a_lone_record_waits_about_the_max_buffered_time() {
    let fake = Fake::new(1);
    let p = Producer::new(
        fake.clone(),
        ProducerConfig {
            max_buffered_time: Duration::from_millis(150),
            ..config()
        },
    );
    let t0 = Instant::now();
    p.send("s", "k", Bytes::from_static(b"x"))
        .await
        .unwrap()
        .await
        .unwrap();
    let e = t0.elapsed();
    assert!(
        e >= Duration::from_millis(140) && e < Duration::from_secs(2),
        "{e:?}"
    );
}

#[tokio::test]
async fn shutdown_completes_every_record_in_flight() {
    let fake = Fake {
        latency: Duration::from_millis(100),
        ..Fake::new(3)
    };
    let p = Producer::new(
        fake.clone(),
        ProducerConfig {
            aggregation: true,
            max_buffered_time: Duration::from_secs(30),
            ..config()
        },
    );
    let mut pending = Vec::new();
    for i in 0..2000 {
        pending.push(
            p.send("s", &format!("k{i}"), Bytes::from(vec![b'x'; 100]))
                .await
                .unwrap(),
        );
    }
    let t0 = Instant::now();
    p.shutdown().await;
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "shutdown should not wait for the buffered time"
    );
    assert_eq!(p.outstanding(), 0);
    for f in pending {
        f.await.unwrap();
    }
    assert_eq!(fake.stored_user_records().len(), 2000);
    assert_eq!(
        p.send("s", "k", Bytes::new()).await.err(),
        Some(SendError::Closed)
    );
}

#[tokio::test]
async fn unknown_stream_fails_records_with_the_service_error() {
    let fake = Fake::new(1);
    fake.state.lock().unwrap().list_error = Some(ClientError::Fatal {
        code: "ResourceNotFoundException".into(),
        message: "Stream s not found".into(),
    });
    let p = Producer::new(fake.clone(), config());
    match p
        .send("s", "k", Bytes::from_static(b"x"))
        .await
        .unwrap()
        .await
    {
        Err(PutError::Rejected { code, .. }) => assert_eq!(code, "ResourceNotFoundException"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn aggregate_landing_in_a_split_child_resends_only_records_outside_it() {
    // The producer learns a 1-shard map; the fake then splits the shard
    // without telling it, so aggregates land in a child.
    let fake = Fake::new(1);
    let p = Producer::new(
        fake.clone(),
        ProducerConfig {
            aggregation: true,
            ..config()
        },
    );
    p.send("s", "warmup", Bytes::from_static(b"w"))
        .await
        .unwrap()
        .await
        .unwrap();
    {
        let mut st = fake.state.lock().unwrap();
        st.shards[0].open = false;
        let mid = u128::MAX / 2;
        st.shards.push(ShardInfo {
            shard_id: "shardId-000000000001".into(),
            start: 0,
            end: mid,
            open: true,
        });
        st.shards.push(ShardInfo {
            shard_id: "shardId-000000000002".into(),
            start: mid + 1,
            end: u128::MAX,
            open: true,
        });
    }
    let res = send_all(&p, 1000, |i| format!("key-{i}")).await;
    assert!(res.iter().all(|r| r.is_ok()));
    // Every user record, filtered by its shard's range as a KCL consumer
    // does, is present exactly once, in the shard owning its hash.
    let st = fake.state.lock().unwrap();
    let mut seen: HashMap<Bytes, usize> = HashMap::new();
    for (shard, recs) in &st.stored {
        let info = st.shards.iter().find(|s| &*s.shard_id == shard).unwrap();
        for (pk, _, data) in recs {
            for u in eddy_producer::deaggregate_in_range(pk, data, info.start, info.end).unwrap() {
                *seen.entry(u.data).or_default() += 1;
            }
        }
    }
    for i in 0..1000 {
        assert_eq!(
            seen.get(&Bytes::from(format!("record-{i}"))),
            Some(&1),
            "record {i}"
        );
    }
    for r in &res {
        let r = r.as_ref().unwrap();
        assert_ne!(&*r.shard_id, "shardId-000000000000");
    }
    assert!(
        p.stats().retries > 0,
        "some user records must have been outside the child they landed in"
    );
}
