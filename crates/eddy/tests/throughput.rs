//! AWS's throughput model: per-shard write and read limits and
//! control-plane rates, observed through aws-sdk-kinesis without retries.

mod common;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use common::{Eddy, code, create_stream, message};

fn entries(n: usize, key: &str, size: usize) -> Vec<PutRecordsRequestEntry> {
    (0..n)
        .map(|_| {
            PutRecordsRequestEntry::builder()
                .partition_key(key)
                .data(Blob::new(vec![b'x'; size]))
                .build()
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn writes_over_a_shards_record_rate_fail_per_entry() {
    let eddy = Eddy::start_with(&["--durability", "none"]);
    let k = eddy.client_without_retries();
    create_stream(&k, "t", 2).await;
    // 1,000 records per second per shard, with one second of burst: the
    // third batch of 500 to one shard is refused entry by entry.
    let mut failed = 0;
    let mut ok = 0;
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let out = k
            .put_records()
            .stream_name("t")
            .set_records(Some(entries(500, "b", 10)))
            .send()
            .await
            .unwrap();
        failed += out.failed_record_count().unwrap_or(0);
        for r in out.records() {
            match r.error_code() {
                Some(c) => {
                    assert_eq!(c, "ProvisionedThroughputExceededException");
                    let shard = "shardId-000000000001"; // md5("b") is in the upper half
                    let expected = format!(
                        "Rate exceeded for shard {shard} in stream t under account 000000000000."
                    );
                    assert_eq!(r.error_message(), Some(expected.as_str()));
                    assert!(r.sequence_number().is_none());
                }
                None => ok += 1,
            }
        }
    }
    // A token bucket never admits more than its burst plus what refilled
    // meanwhile, however slow this machine is...
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = 1000.0 + 1000.0 * elapsed;
    assert!(
        ok as f64 <= allowed + 1.0,
        "{ok} admitted in {elapsed:.3} s, at most {allowed:.0} allowed"
    );
    assert_eq!(ok + failed as usize, 1500);
    assert!(ok >= 1000, "a second's worth goes through: {ok}");
    // ...and on a machine that sends 1,500 records well within a second,
    // about a third are refused.
    if elapsed < 0.3 {
        assert!(failed >= 200, "{failed} refused in {elapsed:.3} s");
    }
    // The other shard is not affected.
    let other = k
        .put_record()
        .stream_name("t")
        .partition_key("a")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.shard_id(), "shardId-000000000000");
}

#[tokio::test]
async fn writes_over_a_shards_byte_rate_are_throttled() {
    let eddy = Eddy::start_with(&["--durability", "none"]);
    let k = eddy.client_without_retries();
    create_stream(&k, "t", 1).await;
    // 3 x 400 KiB = 1.2 MiB > 1 MiB of burst.
    let out = k
        .put_records()
        .stream_name("t")
        .set_records(Some(entries(3, "k", 400 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count(), Some(1));
    assert!(
        out.records()[2].error_code().is_some(),
        "the entry past the limit fails, in request order"
    );
}

#[tokio::test]
async fn reads_over_the_shards_call_rate_are_throttled() {
    // One call per second (AWS: 5), so that a slow machine still outpaces it.
    let eddy = Eddy::start_with(&["--durability", "none", "--shard-read-calls-per-sec", "1"]);
    let k = eddy.client_without_retries();
    create_stream(&k, "t", 1).await;
    let it = k
        .get_shard_iterator()
        .stream_name("t")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap();
    let mut iterator = it.shard_iterator().unwrap().to_string();
    let mut throttled = None;
    for _ in 0..8 {
        match k.get_records().shard_iterator(&iterator).send().await {
            Ok(out) => iterator = out.next_shard_iterator().unwrap().to_string(),
            Err(e) => {
                throttled = Some(e);
                break;
            }
        }
    }
    let e = throttled.expect("a second call within a second is throttled");
    assert_eq!(code(&e), "ProvisionedThroughputExceededException");
    assert_eq!(
        message(&e),
        "Rate exceeded for Shard - 000000000000/t/shardId-000000000000"
    );
}

#[tokio::test]
async fn control_plane_calls_over_their_rate_get_limit_exceeded() {
    let eddy = Eddy::start();
    let k = eddy.client_without_retries();
    k.describe_limits().send().await.unwrap();
    let e = k.describe_limits().send().await.unwrap_err();
    assert_eq!(code(&e), "LimitExceededException");
    assert_eq!(message(&e), "Rate exceeded for account 000000000000.");
    // A second later the account may call again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    k.describe_limits().send().await.unwrap();
}

#[tokio::test]
async fn configured_shard_rates_replace_aws_defaults() {
    let eddy = Eddy::start_with(&["--durability", "none", "--shard-write-records-per-sec", "1"]);
    let k = eddy.client_without_retries();
    create_stream(&k, "t", 1).await;
    let out = k
        .put_records()
        .stream_name("t")
        .set_records(Some(entries(15, "k", 1)))
        .send()
        .await
        .unwrap();
    assert!(
        out.failed_record_count().unwrap() >= 13,
        "one record per second: {:?}",
        out.failed_record_count()
    );
    // PutRecord on a hot shard fails as a whole.
    let hot = k
        .put_record()
        .stream_name("t")
        .partition_key("k")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&hot), "ProvisionedThroughputExceededException");
    assert_eq!(
        message(&hot),
        "Rate exceeded for shard shardId-000000000000 in stream t under account 000000000000."
    );
    let off = Eddy::start_with(&["--durability", "none", "--shard-limits", "off"]);
    let k = off.client_without_retries();
    create_stream(&k, "t", 1).await;
    for _ in 0..4 {
        let out = k
            .put_records()
            .stream_name("t")
            .set_records(Some(entries(500, "k", 1)))
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
    }
}
