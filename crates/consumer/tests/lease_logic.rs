//! Lease logic against the in-memory lease table: conditional updates, fair
//! shares, expiry and takeover, stealing, shard discovery order, and the
//! record filtering the KCL does (deaggregation, hash range, checkpoint).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{HashKeyRange, Record, SequenceNumberRange, Shard};
use bytes::Bytes;
use eddy_consumer::lease::{compare_sequence_numbers, covered_by};
use eddy_consumer::worker::{leases_for_new_shards, user_records};
use eddy_consumer::{
    Checkpoint, InitialPosition, Lease, LeaseCoordinator, LeaseStore, MemoryLeaseStore,
    select_leases_to_take,
};

#[path = "support/store_conditions.rs"]
mod store_conditions;

const DURATION: Duration = Duration::from_secs(10);

fn owned(key: &str, owner: Option<&str>) -> Lease {
    let mut l = Lease::new(key, Checkpoint::TrimHorizon);
    l.lease_owner = owner.map(str::to_string);
    l
}

async fn store_with(keys: &[&str]) -> Arc<MemoryLeaseStore> {
    let s = Arc::new(MemoryLeaseStore::new());
    for k in keys {
        assert!(
            s.create_lease_if_not_exists(&Lease::new(*k, Checkpoint::TrimHorizon))
                .await
                .unwrap()
        );
    }
    s
}

#[tokio::test]
async fn updates_fail_once_someone_else_changed_the_lease() {
    let s = store_with(&["a"]).await;
    assert!(
        !s.create_lease_if_not_exists(&Lease::new("a", Checkpoint::Latest))
            .await
            .unwrap(),
        "create does not overwrite"
    );
    let l = s.get_lease("a").await.unwrap().unwrap();
    let mine = s.take_lease(&l, "w1").await.unwrap();
    assert_eq!(mine.lease_counter, l.lease_counter + 1);
    assert_eq!(mine.owner_switches_since_checkpoint, 1);
    // w2 takes it with the counter it saw: w1's stale view no longer works.
    let theirs = s.take_lease(&mine, "w2").await.unwrap();
    assert!(
        s.renew_lease(&mine)
            .await
            .unwrap_err()
            .is_condition_failed()
    );
    assert!(
        s.update_checkpoint(&mine, &Checkpoint::at("1", 0))
            .await
            .unwrap_err()
            .is_condition_failed()
    );
    // The taker's view works, and a checkpoint resets owner switches.
    let cp = s
        .update_checkpoint(&theirs, &Checkpoint::at("5", 2))
        .await
        .unwrap();
    assert_eq!(cp.checkpoint, Checkpoint::at("5", 2));
    assert_eq!(cp.owner_switches_since_checkpoint, 0);
    // A take with an old counter fails too.
    assert!(
        s.take_lease(&theirs, "w3")
            .await
            .unwrap_err()
            .is_condition_failed()
    );
    let freed = s.evict_lease(&cp).await.unwrap();
    assert_eq!(freed.lease_owner, None);
}

#[tokio::test]
async fn the_memory_store_enforces_the_kcl_conditions() {
    store_conditions::check_store_conditions(&MemoryLeaseStore::new()).await;
}

#[tokio::test]
async fn a_stolen_lease_moves_only_after_its_owner_hands_it_over() {
    let s = store_with(&["s0", "s1"]).await;
    let t0 = Instant::now();
    let mut w1 = LeaseCoordinator::new(s.clone(), "w1", DURATION);
    let mut w2 = LeaseCoordinator::new(s.clone(), "w2", DURATION);
    w1.take_leases(t0).await.unwrap();
    let stolen = w2.take_leases(t0).await.unwrap();
    assert_eq!(stolen.len(), 1);
    let l = s.get_lease(&stolen[0]).await.unwrap().unwrap();
    assert_eq!(l.lease_owner.as_deref(), Some("w2"));
    assert_eq!(
        l.checkpoint_owner.as_deref(),
        Some("w1"),
        "w1 may still checkpoint it"
    );
    assert_eq!(w1.renew_leases(t0).await, stolen, "w1 lets it go");
    // w2 keeps renewing it meanwhile, also after w1 checkpoints through it.
    assert!(w2.renew_leases(t0).await.is_empty());
    let mut view = s.get_lease(&stolen[0]).await.unwrap().unwrap();
    view = s
        .update_checkpoint(&view, &Checkpoint::at("77", 0))
        .await
        .unwrap();
    s.complete_handoff(&view).await.unwrap();
    assert!(
        w2.renew_leases(t0).await.is_empty(),
        "the hand-off's counter changes are not a loss"
    );
    assert_eq!(w2.held_keys(), stolen);
}

#[test]
fn a_new_worker_takes_free_leases_up_to_a_fair_share() {
    let all: Vec<Lease> = (0..4).map(|i| owned(&format!("s{i}"), None)).collect();
    let taken = select_leases_to_take(&all, |_| false, "w1", 1);
    assert_eq!(taken.len(), 4, "alone, a worker takes everything");

    let mut all: Vec<Lease> = (0..3)
        .map(|i| owned(&format!("s{i}"), Some("w1")))
        .collect();
    all.extend((3..6).map(|i| owned(&format!("s{i}"), None)));
    let taken = select_leases_to_take(&all, |_| false, "w2", 1);
    assert_eq!(taken.len(), 3, "two workers, six leases: three each");
    assert!(taken.iter().all(|l| l.lease_owner.is_none()));
}

#[test]
fn finished_shards_are_neither_counted_nor_taken() {
    let mut done = owned("s0", None);
    done.checkpoint = Checkpoint::ShardEnd;
    let all = vec![done, owned("s1", Some("w1")), owned("s2", None)];
    let taken = select_leases_to_take(&all, |_| false, "w2", 1);
    assert_eq!(
        taken
            .iter()
            .map(|l| l.lease_key.as_str())
            .collect::<Vec<_>>(),
        ["s2"]
    );
}

#[test]
fn expired_leases_of_a_dead_worker_are_taken() {
    let all: Vec<Lease> = (0..4)
        .map(|i| owned(&format!("s{i}"), Some("dead")))
        .collect();
    assert!(select_leases_to_take(&all, |_| false, "w1", 1).len() < 4);
    let taken = select_leases_to_take(&all, |_| true, "w1", 1);
    assert_eq!(taken.len(), 4);
}

#[test]
fn a_worker_steals_one_lease_at_a_time_from_the_most_loaded() {
    let all: Vec<Lease> = (0..4)
        .map(|i| owned(&format!("s{i}"), Some("w1")))
        .collect();
    let taken = select_leases_to_take(&all, |_| false, "w2", 1);
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].lease_owner.as_deref(), Some("w1"));
    // Balanced (or within one): nothing to steal.
    let all = vec![
        owned("s0", Some("w1")),
        owned("s1", Some("w1")),
        owned("s2", Some("w2")),
    ];
    assert!(select_leases_to_take(&all, |_| false, "w2", 1).is_empty());
}

#[tokio::test]
async fn a_dead_workers_leases_are_taken_only_after_the_lease_duration() {
    let s = store_with(&["s0", "s1", "s2", "s3"]).await;
    let t0 = Instant::now();
    let mut w1 = LeaseCoordinator::new(s.clone(), "w1", DURATION);
    let mut w2 = LeaseCoordinator::new(s.clone(), "w2", DURATION);
    assert_eq!(w1.take_leases(t0).await.unwrap().len(), 4);
    // w2 arrives: sees live leases, steals one for a start.
    assert_eq!(w2.take_leases(t0).await.unwrap().len(), 1);
    assert_eq!(w1.renew_leases(t0).await.len(), 1, "w1 notices the theft");
    assert_eq!(w1.held_keys().len(), 3);
    // w2 keeps stealing until the split is even.
    w2.take_leases(t0 + Duration::from_secs(1)).await.unwrap();
    w1.renew_leases(t0 + Duration::from_secs(1)).await;
    assert_eq!(w1.held_keys().len(), 2);
    assert_eq!(w2.held_keys().len(), 2);
    w2.take_leases(t0 + Duration::from_secs(2)).await.unwrap();
    assert_eq!(w2.held_keys().len(), 2, "balanced: no more stealing");
    // w1 dies (stops renewing). Before the lease duration: nothing moves.
    w2.renew_leases(t0 + Duration::from_secs(5)).await;
    w2.take_leases(t0 + Duration::from_secs(5)).await.unwrap();
    assert_eq!(w2.held_keys().len(), 2);
    // After it: w2 takes everything.
    w2.renew_leases(t0 + Duration::from_secs(13)).await;
    w2.take_leases(t0 + Duration::from_secs(13)).await.unwrap();
    assert_eq!(w2.held_keys(), ["s0", "s1", "s2", "s3"]);
    for l in s.list_leases().await.unwrap() {
        assert_eq!(l.lease_owner.as_deref(), Some("w2"));
    }
}

#[tokio::test]
async fn renewed_leases_never_expire_for_others() {
    let s = store_with(&["s0", "s1"]).await;
    let t0 = Instant::now();
    let mut w1 = LeaseCoordinator::new(s.clone(), "w1", DURATION);
    let mut w2 = LeaseCoordinator::new(s.clone(), "w2", DURATION);
    w1.take_leases(t0).await.unwrap();
    w2.take_leases(t0).await.unwrap();
    assert_eq!(w2.held_keys().len(), 1, "w2 stole one");
    assert_eq!(w1.renew_leases(t0).await.len(), 1);
    for step in 1..10 {
        let now = t0 + Duration::from_secs(4 * step);
        assert!(w1.renew_leases(now).await.is_empty());
        assert!(w2.renew_leases(now).await.is_empty());
        w2.take_leases(now).await.unwrap();
        assert_eq!(w2.held_keys().len(), 1, "w2 never takes w1's renewed lease");
    }
}

#[tokio::test]
async fn a_released_lease_is_free_at_once() {
    let s = store_with(&["s0", "s1"]).await;
    let t0 = Instant::now();
    let mut w1 = LeaseCoordinator::new(s.clone(), "w1", DURATION);
    let mut w2 = LeaseCoordinator::new(s.clone(), "w2", DURATION);
    w1.take_leases(t0).await.unwrap();
    w1.release("s0").await;
    w1.release("s1").await;
    assert_eq!(w2.take_leases(t0).await.unwrap().len(), 2);
}

fn shard(id: &str, parents: &[&str], range: (u128, u128), closed: bool) -> Shard {
    Shard::builder()
        .shard_id(id)
        .set_parent_shard_id(parents.first().map(|s| s.to_string()))
        .set_adjacent_parent_shard_id(parents.get(1).map(|s| s.to_string()))
        .hash_key_range(
            HashKeyRange::builder()
                .starting_hash_key(range.0.to_string())
                .ending_hash_key(range.1.to_string())
                .build()
                .unwrap(),
        )
        .sequence_number_range(
            SequenceNumberRange::builder()
                .starting_sequence_number("1")
                .set_ending_sequence_number(closed.then(|| "9".to_string()))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

#[test]
fn discovered_shards_get_leases_parents_first_and_children_from_the_start() {
    let half = u128::MAX / 2;
    let shards = vec![
        shard("shardId-000000000000", &[], (0, u128::MAX), true),
        shard(
            "shardId-000000000001",
            &["shardId-000000000000"],
            (0, half),
            true,
        ),
        shard(
            "shardId-000000000002",
            &["shardId-000000000000"],
            (half + 1, u128::MAX),
            false,
        ),
        shard(
            "shardId-000000000003",
            &["shardId-000000000001"],
            (0, half),
            false,
        ),
    ];
    let at_th = leases_for_new_shards(&shards, &HashSet::new(), InitialPosition::TrimHorizon);
    let keys: Vec<&str> = at_th.iter().map(|l| l.lease_key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "shardId-000000000000",
            "shardId-000000000001",
            "shardId-000000000002",
            "shardId-000000000003"
        ]
    );
    assert_eq!(at_th[2].parent_shard_ids, ["shardId-000000000000"]);
    assert_eq!(at_th[2].hash_range(), (half + 1, u128::MAX));
    assert!(
        at_th
            .iter()
            .all(|l| l.checkpoint == Checkpoint::TrimHorizon)
    );

    // At LATEST, closed shards are skipped and open ones start at LATEST.
    let at_latest = leases_for_new_shards(&shards, &HashSet::new(), InitialPosition::Latest);
    let keys: Vec<(&str, &Checkpoint)> = at_latest
        .iter()
        .map(|l| (l.lease_key.as_str(), &l.checkpoint))
        .collect();
    assert_eq!(
        keys,
        [
            ("shardId-000000000002", &Checkpoint::Latest),
            ("shardId-000000000003", &Checkpoint::Latest)
        ]
    );

    // Later, a new child of a leased shard reads from its start.
    let existing: HashSet<String> = ["shardId-000000000002".to_string()].into();
    let mut more = shards.clone();
    more.push(shard(
        "shardId-000000000004",
        &["shardId-000000000002"],
        (half + 1, u128::MAX),
        false,
    ));
    let new = leases_for_new_shards(&more[2..], &existing, InitialPosition::Latest);
    let child = new
        .iter()
        .find(|l| l.lease_key == "shardId-000000000004")
        .unwrap();
    assert_eq!(child.checkpoint, Checkpoint::TrimHorizon);
}

fn record(seq: &str, pk: &str, data: Bytes) -> Record {
    Record::builder()
        .sequence_number(seq)
        .partition_key(pk)
        .data(Blob::new(data.to_vec()))
        .build()
        .unwrap()
}

#[test]
fn aggregates_split_into_user_records_and_those_outside_the_shard_are_dropped() {
    let half = u128::MAX / 2;
    let low = (half / 2).to_string();
    let high = (half + 10).to_string();
    let mut agg = eddy_producer::aggregation::Aggregate::new();
    agg.add("a", Some(&low), Bytes::from_static(b"low-0"));
    agg.add("b", Some(&high), Bytes::from_static(b"high-1"));
    agg.add("c", Some(&low), Bytes::from_static(b"low-2"));
    let recs = vec![
        record("100", "x", Bytes::from_static(b"plain")),
        record("200", "a", agg.encode()),
    ];
    let out = user_records(
        "shardId-000000000001",
        &recs,
        (0, half),
        &Checkpoint::TrimHorizon,
    );
    let got: Vec<(&str, Option<u64>, &[u8])> = out
        .iter()
        .map(|r| {
            (
                r.sequence_number.as_str(),
                r.sub_sequence_number,
                &r.data[..],
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("100", None, &b"plain"[..]),
            ("200", Some(0), &b"low-0"[..]),
            ("200", Some(2), &b"low-2"[..]),
        ]
    );
    assert_eq!(out[1].partition_key, "a");
}

#[test]
fn records_up_to_the_checkpoint_are_skipped_on_resume() {
    let mut agg = eddy_producer::aggregation::Aggregate::new();
    for i in 0..4 {
        agg.add("k", None, Bytes::from(format!("u{i}")));
    }
    let recs = vec![
        record("99", "x", Bytes::from_static(b"before")),
        record("100", "k", agg.encode()),
        record("101", "x", Bytes::from_static(b"after")),
    ];
    // Checkpointed in the middle of the aggregate.
    let out = user_records("s", &recs, (0, u128::MAX), &Checkpoint::at("100", 1));
    let data: Vec<&[u8]> = out.iter().map(|r| &r.data[..]).collect();
    assert_eq!(data, [&b"u2"[..], b"u3", b"after"]);
    // A plain record's checkpoint (sub-sequence 0) skips exactly it.
    let out = user_records("s", &recs[2..], (0, u128::MAX), &Checkpoint::at("101", 0));
    assert!(out.is_empty());
}

#[test]
fn sequence_numbers_compare_as_big_decimals() {
    use std::cmp::Ordering::*;
    let a = "49753691917840190000000001000000000000000000120000000000";
    let b = "49753691917840190000000001000000000000000000130000000000";
    assert_eq!(compare_sequence_numbers(a, b), Less);
    assert_eq!(compare_sequence_numbers("99", "100"), Less);
    assert_eq!(compare_sequence_numbers(b, b), Equal);
    assert!(covered_by(&Checkpoint::at(b, 0), a, 7));
    assert!(!covered_by(&Checkpoint::at(a, 0), a, 1));
    assert!(!covered_by(&Checkpoint::TrimHorizon, a, 0));
}
