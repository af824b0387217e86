//! Resharding through aws-sdk-kinesis: split, merge, UpdateShardCount under
//! continuous writes, and reading everything back following lineage.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ScalingType, Shard, ShardIteratorType};
use common::{Eddy, code, create_stream, message};

async fn shards(k: &aws_sdk_kinesis::Client, stream: &str) -> Vec<Shard> {
    k.list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap()
        .shards()
        .to_vec()
}

/// Reads one shard to its end (closed) or to the current tip (open).
/// Returns the data in order and, for a closed shard, its children.
async fn drain(
    k: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
) -> (Vec<String>, Option<Vec<String>>) {
    let mut it = k
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let mut out = Vec::new();
    loop {
        let r = k.get_records().shard_iterator(&it).send().await.unwrap();
        for rec in r.records() {
            out.push(String::from_utf8(rec.data().as_ref().to_vec()).unwrap());
        }
        match r.next_shard_iterator() {
            None => {
                let children = r
                    .child_shards()
                    .iter()
                    .map(|c| c.shard_id().to_string())
                    .collect();
                return (out, Some(children));
            }
            Some(next) => {
                assert!(
                    r.child_shards().is_empty(),
                    "ChildShards only at the end of a closed shard"
                );
                if r.records().is_empty() {
                    return (out, None);
                }
                it = next.to_string();
            }
        }
    }
}

/// Reads the whole stream in lineage order: a shard only after its parents.
async fn read_by_lineage(k: &aws_sdk_kinesis::Client, stream: &str) -> Vec<(String, Vec<String>)> {
    let all = shards(k, stream).await;
    let by_id: HashMap<String, Shard> = all
        .iter()
        .map(|s| (s.shard_id().to_string(), s.clone()))
        .collect();
    let mut done: HashSet<String> = HashSet::new();
    let mut order = Vec::new();
    while done.len() < all.len() {
        let ready: Vec<&Shard> = all
            .iter()
            .filter(|s| !done.contains(s.shard_id()))
            .filter(|s| {
                [s.parent_shard_id(), s.adjacent_parent_shard_id()]
                    .into_iter()
                    .flatten()
                    .all(|p| done.contains(p) || !by_id.contains_key(p))
            })
            .collect();
        assert!(!ready.is_empty(), "lineage has no cycle");
        for s in ready {
            let (data, children) = drain(k, stream, s.shard_id()).await;
            if s.sequence_number_range()
                .unwrap()
                .ending_sequence_number()
                .is_some()
            {
                let children = children.expect("a closed shard ends with ChildShards");
                assert!(!children.is_empty());
                for c in &children {
                    let child = &by_id[c];
                    assert!(
                        child.parent_shard_id() == Some(s.shard_id())
                            || child.adjacent_parent_shard_id() == Some(s.shard_id())
                    );
                }
            } else {
                assert!(
                    children.is_none(),
                    "an open shard always has a next iterator"
                );
            }
            done.insert(s.shard_id().to_string());
            order.push((s.shard_id().to_string(), data));
        }
    }
    order
}

#[tokio::test]
async fn split_and_merge_follow_aws_rules() {
    let eddy = Eddy::start();
    let k = eddy.client();
    create_stream(&k, "s", 2).await;
    k.put_record()
        .stream_name("s")
        .partition_key("a")
        .data(Blob::new("before"))
        .send()
        .await
        .unwrap();

    let bad = k
        .split_shard()
        .stream_name("s")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&bad), "InvalidArgumentException");
    assert_eq!(
        message(&bad),
        "NewStartingHashKey 1 used in SplitShard() on shard shardId-000000000000 in stream s under account 000000000000 is not both greater than one plus the shard's StartingHashKey 0 and less than the shard's EndingHashKey 170141183460469231731687303715884105727."
    );
    k.split_shard()
        .stream_name("s")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("85070591730234615865843651857942052864")
        .send()
        .await
        .unwrap();
    let list = shards(&k, "s").await;
    assert_eq!(list.len(), 4);
    let parent = &list[0];
    assert!(
        parent
            .sequence_number_range()
            .unwrap()
            .ending_sequence_number()
            .is_some()
    );
    assert_eq!(list[2].parent_shard_id(), Some("shardId-000000000000"));
    assert_eq!(
        list[3].hash_key_range().unwrap().starting_hash_key(),
        "85070591730234615865843651857942052864"
    );

    let again = k
        .split_shard()
        .stream_name("s")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("85070591730234615865843651857942052864")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&again), "ResourceInUseException");

    let not_adjacent = k
        .merge_shards()
        .stream_name("s")
        .shard_to_merge("shardId-000000000002")
        .adjacent_shard_to_merge("shardId-000000000001")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        message(&not_adjacent),
        "Shards shardId-000000000002 and shardId-000000000001 in stream s under account 000000000000 are not an adjacent pair of shards eligible for merging"
    );
    k.merge_shards()
        .stream_name("s")
        .shard_to_merge("shardId-000000000003")
        .adjacent_shard_to_merge("shardId-000000000001")
        .send()
        .await
        .unwrap();
    let list = shards(&k, "s").await;
    let merged = list.last().unwrap();
    assert_eq!(merged.parent_shard_id(), Some("shardId-000000000003"));
    assert_eq!(
        merged.adjacent_parent_shard_id(),
        Some("shardId-000000000001")
    );
    let missing = k
        .merge_shards()
        .stream_name("s")
        .shard_to_merge("shardId-000000000099")
        .adjacent_shard_to_merge("shardId-000000000001")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&missing), "ResourceNotFoundException");

    // The record written before the split is still readable from the closed parent,
    // whose end names its children.
    let (data, children) = drain(&k, "s", "shardId-000000000000").await;
    assert_eq!(data, ["before"]);
    assert_eq!(
        children.unwrap(),
        ["shardId-000000000002", "shardId-000000000003"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_under_writes_loses_and_duplicates_nothing() {
    let eddy = Eddy::start_with(&["--durability", "none", "--shard-limits", "off"]);
    let k = eddy.client();
    create_stream(&k, "s", 1).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let k = k.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut acked: Vec<(String, String)> = Vec::new(); // (partition key, data)
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let entries: Vec<_> = (0..20)
                    .map(|i| {
                        PutRecordsRequestEntry::builder()
                            .partition_key(format!("key-{}", (n + i) % 13))
                            .data(Blob::new(format!("{}", n + i)))
                            .build()
                            .unwrap()
                    })
                    .collect();
                let out = k
                    .put_records()
                    .stream_name("s")
                    .set_records(Some(entries))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(out.failed_record_count(), Some(0));
                for i in 0..20 {
                    acked.push((format!("key-{}", (n + i) % 13), format!("{}", n + i)));
                }
                n += 20;
            }
            acked
        })
    };
    for target in [2, 4, 3, 2, 1] {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let out = k
            .update_shard_count()
            .stream_name("s")
            .target_shard_count(target)
            .scaling_type(ScalingType::UniformScaling)
            .send()
            .await
            .unwrap();
        assert_eq!(out.target_shard_count(), Some(target));
        let open: Vec<_> = shards(&k, "s")
            .await
            .into_iter()
            .filter(|s| {
                s.sequence_number_range()
                    .unwrap()
                    .ending_sequence_number()
                    .is_none()
            })
            .collect();
        assert_eq!(open.len(), target as usize);
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.unwrap();
    assert!(acked.len() > 100, "writes went on during scaling");

    // 1 -> 3 would be more than double... and 3 -> 1 less than half.
    k.update_shard_count()
        .stream_name("s")
        .target_shard_count(2)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .unwrap();
    k.update_shard_count()
        .stream_name("s")
        .target_shard_count(3)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .unwrap();
    let refused = k
        .update_shard_count()
        .stream_name("s")
        .target_shard_count(1)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&refused), "LimitExceededException");
    assert!(
        message(&refused).contains("less than half the current open shard count 3"),
        "{}",
        message(&refused)
    );

    let order = read_by_lineage(&k, "s").await;
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut seen = HashSet::new();
    let key_of: HashMap<&str, &str> = acked
        .iter()
        .map(|(k, d)| (d.as_str(), k.as_str()))
        .collect();
    for (_, data) in &order {
        for d in data {
            assert!(seen.insert(d.clone()), "record {d} read twice");
            per_key
                .entry(key_of[d.as_str()].to_string())
                .or_default()
                .push(d.parse().unwrap());
        }
    }
    assert_eq!(
        seen.len(),
        acked.len(),
        "every acknowledged record is read back"
    );
    for (key, values) in per_key {
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "per-key order holds across reshards for {key}"
        );
    }
}
