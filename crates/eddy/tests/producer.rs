//! The producer library and `eddy put` against a real `eddy serve`:
//! per-key ordering and retries under enforced shard limits, resharding
//! while producing, shutdown with records in flight, and the command line
//! (summary, JSON partition keys, exit code).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_kinesis::types::{ScalingType, ShardIteratorType};
use bytes::Bytes;
use common::{Eddy, create_stream};
use eddy_producer::{Producer, ProducerConfig, SdkClient, deaggregate_in_range, hash_key};

/// A user record read back: shard, partition key, data, and whether it came
/// inside an aggregate.
#[derive(Debug, Clone)]
struct Got {
    shard: String,
    partition_key: String,
    /// The data as text (lossy for binary data) and its length in bytes.
    data: String,
    len: usize,
}

/// Reads every shard (open and closed) from TRIM_HORIZON to its tip,
/// deaggregating with each shard's hash range as a KCL consumer does.
/// Returns the user records and how many aggregates held user records
/// outside their shard's range (dropped by the filter).
async fn read_all(k: &aws_sdk_kinesis::Client, stream: &str) -> (Vec<Got>, usize) {
    let shards = k
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap()
        .shards()
        .to_vec();
    let mut out = Vec::new();
    let mut straddling = 0;
    for sh in shards {
        let range = sh.hash_key_range().unwrap();
        let (lo, hi): (u128, u128) = (
            range.starting_hash_key().parse().unwrap(),
            range.ending_hash_key().parse().unwrap(),
        );
        let mut it = k
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(sh.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator
            .unwrap();
        loop {
            let r = match k
                .get_records()
                .shard_iterator(&it)
                .limit(10_000)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) if common::code(&e) == "ProvisionedThroughputExceededException" => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => panic!("GetRecords: {e:?}"),
            };
            for rec in r.records() {
                let data = Bytes::from(rec.data().as_ref().to_vec());
                let pk = rec.partition_key().unwrap_or_default();
                let all = eddy_producer::deaggregate(pk, &data).unwrap();
                let kept = deaggregate_in_range(pk, &data, lo, hi).unwrap();
                if kept.len() != all.len() {
                    straddling += 1;
                }
                for u in kept {
                    out.push(Got {
                        shard: sh.shard_id().to_string(),
                        partition_key: u.partition_key,
                        len: u.data.len(),
                        data: String::from_utf8_lossy(&u.data).into_owned(),
                    });
                }
            }
            match r.next_shard_iterator() {
                Some(next) if !(r.records().is_empty() && r.millis_behind_latest() == Some(0)) => {
                    it = next.to_string()
                }
                _ => break,
            }
        }
    }
    (out, straddling)
}

fn config() -> ProducerConfig {
    ProducerConfig {
        max_buffered_time: Duration::from_millis(20),
        retry_base_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(200),
        ..ProducerConfig::default()
    }
}

/// Asserts each of `0..n` (as `prefix-i`) is present exactly once.
fn assert_exactly_once(got: &[Got], n: usize) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for g in got {
        *count.entry(g.data.as_str()).or_default() += 1;
    }
    for i in 0..n {
        let key = format!("r-{i}");
        assert_eq!(count.get(key.as_str()).copied(), Some(1), "record {key}");
    }
    assert_eq!(got.len(), n, "extra records");
}

#[tokio::test]
async fn throttled_records_are_retried_until_each_is_stored_once() {
    // A tight limit and pacing off, so the producer is throttled often.
    let eddy = Eddy::start_with(&["--shard-write-records-per-sec", "300"]);
    let k = eddy.client();
    create_stream(&k, "thr", 1).await;
    let p = Producer::new(
        SdkClient::new(k.clone()),
        ProducerConfig {
            rate_limit_percent: None,
            ..config()
        },
    );
    let n = 900;
    let mut pending = Vec::new();
    for i in 0..n {
        pending.push(
            p.send("thr", &format!("key-{i}"), Bytes::from(format!("r-{i}")))
                .await
                .unwrap(),
        );
    }
    let mut retried = 0;
    for f in pending {
        if f.await.unwrap().attempts > 1 {
            retried += 1;
        }
    }
    let stats = p.stats();
    p.shutdown().await;
    assert!(
        stats.throttles > 0 && retried > 0,
        "the limit should have throttled: {stats:?}"
    );
    let (got, _) = read_all(&k, "thr").await;
    assert_exactly_once(&got, n);
}

#[tokio::test]
async fn ordered_aggregates_keep_each_keys_order_under_throttling() {
    let eddy = Eddy::start_with(&["--shard-write-bytes-per-sec", "12000"]);
    let k = eddy.client();
    create_stream(&k, "ord", 2).await;
    let p = Producer::new(
        SdkClient::new(k.clone()),
        ProducerConfig {
            ordered: true,
            aggregation: true,
            aggregation_max_bytes: 3000,
            rate_limit_percent: None,
            ..config()
        },
    );
    let n = 400;
    let pad = "x".repeat(90);
    let mut pending = Vec::new();
    for i in 0..n {
        pending.push(
            p.send(
                "ord",
                &format!("key-{}", i % 8),
                Bytes::from(format!("r-{i} {pad}")),
            )
            .await
            .unwrap(),
        );
    }
    for f in pending {
        f.await.unwrap();
    }
    let stats = p.stats();
    p.shutdown().await;
    assert!(
        stats.throttles > 0 && stats.retries > 0,
        "the limit should have throttled: {stats:?}"
    );
    let (mut got, _) = read_all(&k, "ord").await;
    for g in got.iter_mut() {
        g.data.truncate(g.data.find(' ').unwrap());
    }
    assert_exactly_once(&got, n);
    let mut last: HashMap<&str, usize> = HashMap::new();
    for g in &got {
        let i: usize = g.data[2..].parse().unwrap();
        if let Some(prev) = last.insert(&g.partition_key, i) {
            assert!(prev < i, "{}: {} after {}", g.partition_key, i, prev);
        }
    }
}

#[tokio::test]
async fn resharding_while_producing_delivers_every_record_once_in_its_own_shard() {
    let eddy = Eddy::start_with(&["--shard-limits", "off"]);
    let k = eddy.client();
    create_stream(&k, "rs", 2).await;
    let p = Producer::new(
        SdkClient::new(k.clone()),
        ProducerConfig {
            aggregation: true,
            rate_limit_percent: None,
            ..config()
        },
    );
    let n = 12_000;
    let producer = p.clone();
    let writer = tokio::spawn(async move {
        let mut pending = Vec::new();
        for i in 0..n {
            pending.push(
                producer
                    .send("rs", &format!("pk-{i}"), Bytes::from(format!("r-{i}")))
                    .await
                    .unwrap(),
            );
            if i % 500 == 0 {
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }
        let mut results = Vec::new();
        for f in pending {
            results.push(f.await.unwrap());
        }
        results
    });
    tokio::time::sleep(Duration::from_millis(60)).await;
    k.update_shard_count()
        .stream_name("rs")
        .target_shard_count(4)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    let open: Vec<_> = k
        .list_shards()
        .stream_name("rs")
        .send()
        .await
        .unwrap()
        .shards()
        .to_vec();
    let victim = open
        .iter()
        .rfind(|s| {
            s.sequence_number_range()
                .unwrap()
                .ending_sequence_number()
                .is_none()
        })
        .unwrap();
    let r = victim.hash_key_range().unwrap();
    let (lo, hi): (u128, u128) = (
        r.starting_hash_key().parse().unwrap(),
        r.ending_hash_key().parse().unwrap(),
    );
    k.split_shard()
        .stream_name("rs")
        .shard_to_split(victim.shard_id())
        .new_starting_hash_key((lo + (hi - lo) / 2).to_string())
        .send()
        .await
        .unwrap();
    let results = writer.await.unwrap();
    p.shutdown().await;
    let (got, straddling) = read_all(&k, "rs").await;
    eprintln!("aggregates that held records of another shard (filtered, re-sent): {straddling}");
    assert_exactly_once(&got, n);
    // Every record, as a consumer keeps it, is in the shard owning its hash,
    // and that is the shard the producer reported.
    let shards: HashMap<String, (u128, u128)> = k
        .list_shards()
        .stream_name("rs")
        .send()
        .await
        .unwrap()
        .shards()
        .iter()
        .map(|s| {
            let r = s.hash_key_range().unwrap();
            (
                s.shard_id().to_string(),
                (
                    r.starting_hash_key().parse().unwrap(),
                    r.ending_hash_key().parse().unwrap(),
                ),
            )
        })
        .collect();
    assert!(
        shards.len() >= 7,
        "2 + 4 + 2 shards expected, got {}",
        shards.len()
    );
    let mut reported: HashMap<String, String> = HashMap::new();
    for (i, r) in results.iter().enumerate() {
        reported.insert(format!("r-{i}"), r.shard_id.to_string());
    }
    for g in &got {
        let (lo, hi) = shards[&g.shard];
        let h = hash_key(&g.partition_key);
        assert!(
            lo <= h && h <= hi,
            "{} in {} outside its range",
            g.data,
            g.shard
        );
        assert_eq!(
            reported[&g.data], g.shard,
            "{}: reported shard differs from where it is",
            g.data
        );
    }
    assert!(
        p.stats().kinesis_records_put < n as u64 / 5,
        "records should have been aggregated"
    );
}

#[tokio::test]
async fn shutdown_with_records_in_flight_loses_none() {
    let eddy = Eddy::start_with(&["--shard-limits", "off"]);
    let k = eddy.client();
    create_stream(&k, "sd", 3).await;
    let p = Producer::new(
        SdkClient::new(k.clone()),
        ProducerConfig {
            aggregation: true,
            max_buffered_time: Duration::from_secs(10),
            ..config()
        },
    );
    let n = 5000;
    let mut pending = Vec::new();
    for i in 0..n {
        pending.push(
            p.send("sd", &format!("pk-{i}"), Bytes::from(format!("r-{i}")))
                .await
                .unwrap(),
        );
    }
    assert!(p.outstanding() > 0);
    p.shutdown().await;
    assert_eq!(p.outstanding(), 0);
    for f in pending {
        f.await.unwrap();
    }
    let (got, _) = read_all(&k, "sd").await;
    assert_exactly_once(&got, n);
}

fn eddy_put(eddy: &Eddy, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("put")
        .args(["--endpoint", &eddy.endpoint(), "--max-buffered-ms", "20"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn eddy_put_sends_each_line_keyed_by_the_json_field_and_summarizes() {
    let eddy = Eddy::start();
    let mut input = String::new();
    for i in 0..300 {
        if i % 50 == 7 {
            input.push_str(&format!("{{\"n\":{i}}}\n")); // no key field
        } else {
            input.push_str(&format!("{{\"user\":\"u{}\",\"n\":{i}}}\n", i % 13));
        }
    }
    input.push('\n'); // empty lines are skipped
    let out = eddy_put(
        &eddy,
        &[
            "--stream",
            "cli",
            "--create-shards",
            "3",
            "--partition-key-field",
            "user",
            "--json",
        ],
        input.as_bytes(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["records"], 300);
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["keyless_lines"], 6);
    let k = eddy.client();
    let (got, _) = read_all(&k, "cli").await;
    assert_eq!(got.len(), 300);
    for g in &got {
        let v: serde_json::Value = serde_json::from_str(&g.data).unwrap();
        match v.get("user") {
            Some(u) => assert_eq!(u.as_str().unwrap(), g.partition_key),
            None => assert_eq!(g.partition_key.len(), 16, "random key"),
        }
    }
}

#[tokio::test]
async fn eddy_put_aggregates_and_fixed_key_keeps_line_order() {
    let eddy = Eddy::start();
    let input: String = (0..500).map(|i| format!("r-{i}\n")).collect();
    let out = eddy_put(
        &eddy,
        &[
            "--stream",
            "agg",
            "--create-shards",
            "2",
            "--aggregate",
            "--ordered",
            "--partition-key",
            "one",
        ],
        input.as_bytes(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("put 500 of 500 records"), "{stdout}");
    let k = eddy.client();
    let (got, _) = read_all(&k, "agg").await;
    assert_exactly_once(&got, 500);
    let order: Vec<&str> = got.iter().map(|g| g.data.as_str()).collect();
    let expected: Vec<String> = (0..500).map(|i| format!("r-{i}")).collect();
    assert_eq!(
        order,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn eddy_put_exits_nonzero_when_records_fail() {
    let eddy = Eddy::start();
    let out = eddy_put(&eddy, &["--stream", "missing"], b"a\nb\n");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("put 0 of 2 records"), "{stdout}");
    assert!(stderr.contains("ResourceNotFoundException"), "{stderr}");
    assert!(stderr.contains("2 of 2 records failed"), "{stderr}");
}

#[tokio::test]
async fn eddy_put_bench_sends_n_synthetic_records_of_the_given_size() {
    let eddy = Eddy::start();
    let out = eddy_put(
        &eddy,
        &[
            "--stream",
            "b",
            "--create-shards",
            "2",
            "--aggregate",
            "--bench",
            "2001",
            "--record-size",
            "37",
            "--json",
        ],
        b"",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["records"], 2001);
    assert_eq!(summary["bytes"], 2001 * 37);
    let k = eddy.client();
    let (got, _) = read_all(&k, "b").await;
    assert_eq!(got.len(), 2001);
    assert!(got.iter().all(|g| g.len == 37));
}
