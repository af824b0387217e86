//! The lease table's conditional updates, checked the same way against any
//! `LeaseStore` (the in-memory one, and DynamoDB-speaking servers).

use eddy_consumer::{Checkpoint, Lease, LeaseStore};

/// Runs on an empty table; uses lease keys `c-0` and `c-1`.
pub async fn check_store_conditions<S: LeaseStore>(s: &S) {
    s.ensure_table().await.unwrap();
    let mut l = Lease::new("c-0", Checkpoint::TrimHorizon);
    l.parent_shard_ids = vec!["p-0".into(), "p-1".into()];
    l.starting_hash_key = Some("0".into());
    l.ending_hash_key = Some("170141183460469231731687303715884105727".into());
    assert!(s.create_lease_if_not_exists(&l).await.unwrap());
    assert!(
        !s.create_lease_if_not_exists(&Lease::new("c-0", Checkpoint::Latest))
            .await
            .unwrap(),
        "create does not overwrite"
    );
    let got = s.get_lease("c-0").await.unwrap().unwrap();
    assert_eq!(got, l, "round trip of every attribute");
    assert!(s.get_lease("nope").await.unwrap().is_none());

    // Take, renew, checkpoint: each bumps the counter; stale views fail.
    let w1 = s.take_lease(&got, "w1").await.unwrap();
    assert_eq!(w1.lease_owner.as_deref(), Some("w1"));
    assert_eq!(w1.lease_counter, got.lease_counter + 1);
    assert_eq!(w1.owner_switches_since_checkpoint, 1);
    let w1 = s.renew_lease(&w1).await.unwrap();
    assert!(
        s.take_lease(&got, "w9")
            .await
            .unwrap_err()
            .is_condition_failed()
    );
    let w1 = s
        .update_checkpoint(&w1, &Checkpoint::at("123456789012345678901234567890", 4))
        .await
        .unwrap();
    assert_eq!(w1.owner_switches_since_checkpoint, 0);
    assert_eq!(
        s.get_lease("c-0").await.unwrap().unwrap().checkpoint,
        Checkpoint::at("123456789012345678901234567890", 4)
    );

    // Graceful steal: w2 asks, w1 may still checkpoint as checkpointOwner
    // (with a fresh view), nobody else may, then w1 hands over.
    let asked = s.request_handoff(&w1, "w2").await.unwrap();
    assert_eq!(asked.lease_owner.as_deref(), Some("w2"));
    assert_eq!(asked.checkpoint_owner.as_deref(), Some("w1"));
    assert!(
        s.renew_lease(&w1).await.unwrap_err().is_condition_failed(),
        "w1's own view is stale"
    );
    assert!(
        s.update_checkpoint(&w1, &Checkpoint::at("2", 0))
            .await
            .unwrap_err()
            .is_condition_failed()
    );
    let mut not_handing_off = asked.clone();
    not_handing_off.checkpoint_owner = None;
    assert!(
        s.update_checkpoint(&not_handing_off, &Checkpoint::at("2", 0))
            .await
            .unwrap_err()
            .is_condition_failed(),
        "only the worker handing off checkpoints during a hand-off"
    );
    let last = s
        .update_checkpoint(&asked, &Checkpoint::at("123456789012345678901234567891", 0))
        .await
        .unwrap();
    let done = s.complete_handoff(&last).await.unwrap();
    assert_eq!(done.checkpoint_owner, None);
    assert_eq!(done.lease_owner.as_deref(), Some("w2"));
    assert!(
        s.update_checkpoint(&last, &Checkpoint::at("9", 0))
            .await
            .unwrap_err()
            .is_condition_failed(),
        "after the hand-off, the old owner's checkpoints fail"
    );
    let w2 = s.renew_lease(&done).await.unwrap();

    // Evict releases; a released lease can be taken at once.
    let free = s.evict_lease(&w2).await.unwrap();
    assert_eq!(free.lease_owner, None);
    s.take_lease(&free, "w3").await.unwrap();

    // Listing returns every lease.
    s.create_lease_if_not_exists(&Lease::new("c-1", Checkpoint::ShardEnd))
        .await
        .unwrap();
    let keys: Vec<String> = s
        .list_leases()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.lease_key)
        .collect();
    assert_eq!(keys, ["c-0", "c-1"]);
}
