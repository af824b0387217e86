//! On-demand streams scale themselves: sustained load above a shard's limit
//! makes Eddy split hot shards until throttling stops; quiet shards merge
//! back; warm throughput pre-scales. Nothing is lost on the way.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, ShardIteratorType, StreamMode, StreamModeDetails,
};
use common::{Eddy, code};

async fn open_shards(k: &aws_sdk_kinesis::Client, stream: &str) -> usize {
    let out = k.list_shards().stream_name(stream).send().await.unwrap();
    out.shards()
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .unwrap()
                .ending_sequence_number()
                .is_none()
        })
        .count()
}

async fn create_on_demand(k: &aws_sdk_kinesis::Client, name: &str) {
    k.create_stream()
        .stream_name(name)
        .stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::OnDemand)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Every record of every shard, ignoring order.
async fn read_everything(k: &aws_sdk_kinesis::Client, stream: &str) -> Vec<String> {
    let shards = k.list_shards().stream_name(stream).send().await.unwrap();
    let mut out = Vec::new();
    for s in shards.shards() {
        let mut it = k
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(s.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator
            .unwrap();
        loop {
            let r = k.get_records().shard_iterator(&it).send().await.unwrap();
            out.extend(
                r.records()
                    .iter()
                    .map(|r| String::from_utf8(r.data().as_ref().to_vec()).unwrap()),
            );
            match r.next_shard_iterator() {
                Some(n) if !r.records().is_empty() => it = n.to_string(),
                _ => break,
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_on_demand_streams_split_until_throttling_stops_and_merge_when_quiet() {
    let eddy = Eddy::start_with(&[
        "--durability",
        "none",
        "--shard-write-records-per-sec",
        "50",
        "--shard-read-calls-per-sec",
        "1000",
        "--on-demand-scale-interval-ms",
        "200",
        "--on-demand-merge-after-secs",
        "2",
    ]);
    let k = eddy.client_without_retries();
    create_on_demand(&k, "od").await;
    assert_eq!(
        open_shards(&k, "od").await,
        4,
        "AWS's initial on-demand capacity"
    );

    // Up to ~400 records/s over random keys: each of 4 shards at twice its
    // 50/s limit (still at it if this machine only manages half the rate).
    let mut pending: Vec<String> = Vec::new();
    let mut acked: HashSet<String> = HashSet::new();
    let mut next = 0u64;
    let started = Instant::now();
    let mut throttled_late = 0;
    let mut sent_late = 0;
    while started.elapsed() < Duration::from_secs(12) {
        let tick = Instant::now();
        for _ in 0..20 {
            pending.push(format!("rec-{next}"));
            next += 1;
        }
        let batch: Vec<String> = std::mem::take(&mut pending);
        let entries: Vec<_> = batch
            .iter()
            .map(|d| {
                PutRecordsRequestEntry::builder()
                    .partition_key(d)
                    .data(Blob::new(d.clone()))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = k
            .put_records()
            .stream_name("od")
            .set_records(Some(entries))
            .send()
            .await
            .unwrap();
        for (d, r) in batch.into_iter().zip(out.records()) {
            if r.error_code().is_some() {
                pending.push(d); // retried in the next batch: nothing is dropped
            } else {
                acked.insert(d);
            }
        }
        if started.elapsed() > Duration::from_secs(9) {
            throttled_late += out.failed_record_count().unwrap_or(0);
            sent_late += out.records().len() as i32;
        }
        tokio::time::sleep(Duration::from_millis(50).saturating_sub(tick.elapsed())).await;
    }
    let grown = open_shards(&k, "od").await;
    // How far it grows depends on the rate this machine sustained; it must
    // have split, and (below) the splits must have ended the throttling.
    assert!(grown > 4, "hot shards were split: {grown} open");
    assert!(
        throttled_late * 20 <= sent_late,
        "throttling stopped once the stream had grown: {throttled_late} of {sent_late} throttled at the end"
    );
    // Flush the retries.
    while !pending.is_empty() {
        let batch: Vec<String> = std::mem::take(&mut pending);
        let entries: Vec<_> = batch
            .iter()
            .map(|d| {
                PutRecordsRequestEntry::builder()
                    .partition_key(d)
                    .data(Blob::new(d.clone()))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = k
            .put_records()
            .stream_name("od")
            .set_records(Some(entries))
            .send()
            .await
            .unwrap();
        for (d, r) in batch.into_iter().zip(out.records()) {
            if r.error_code().is_some() {
                pending.push(d);
            } else {
                acked.insert(d);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Quiet: cold neighbours merge back down to the minimum.
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_shards(&k, "od").await > 4 {
        assert!(Instant::now() < deadline, "quiet shards merge back to 4");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let read = read_everything(&k, "od").await;
    let unique: HashSet<&String> = read.iter().collect();
    assert_eq!(unique.len(), read.len(), "no record stored twice");
    assert_eq!(
        unique.len(),
        acked.len(),
        "every acknowledged record is readable"
    );
    assert!(acked.iter().all(|d| unique.contains(d)));
}

#[tokio::test]
async fn warm_throughput_prescales_and_modes_switch_both_ways() {
    let eddy = Eddy::start_with(&[
        "--durability",
        "none",
        "--on-demand-scale-interval-ms",
        "100",
    ]);
    let k = eddy.client();
    create_on_demand(&k, "w").await;
    let split = k
        .split_shard()
        .stream_name("w")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("1000")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&split), "ValidationException");
    let out = k
        .update_stream_warm_throughput()
        .stream_name("w")
        .warm_throughput_mibps(10)
        .send()
        .await
        .unwrap();
    assert_eq!(out.warm_throughput().unwrap().target_mibps(), Some(10));
    assert_eq!(out.warm_throughput().unwrap().current_mibps(), Some(4));
    let deadline = Instant::now() + Duration::from_secs(20);
    while open_shards(&k, "w").await < 10 {
        assert!(
            Instant::now() < deadline,
            "warm throughput of 10 MiB/s pre-scales to 10 shards"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/w";
    k.update_stream_mode()
        .stream_arn(arn)
        .stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::Provisioned)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let same = k
        .update_stream_mode()
        .stream_arn(arn)
        .stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::Provisioned)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&same), "InvalidArgumentException");
    // Provisioned streams can be resharded by hand again.
    k.update_shard_count()
        .stream_name("w")
        .target_shard_count(5)
        .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
        .send()
        .await
        .unwrap();
    assert_eq!(open_shards(&k, "w").await, 5);
}
