//! Fault injection under the engine's file I/O (simulated file system):
//! crashes at random points with unsynced data lost and torn tails, failing
//! fsync, a full disk, and flipped bits. After each simulated crash,
//! recovery must yield every acknowledged record, intact and in order, and
//! must never serve a corrupted record.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use eddy_log::simfs::SimFs;
use eddy_log::{Durability, Log, LogError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Acknowledged appends: shard -> (first position, seqs).
type Acks = Arc<Mutex<Vec<(u64, u64, Vec<u64>)>>>;

fn verify_acked(log: &Log, acks: &[(u64, u64, Vec<u64>)], shards: u64, ctx: &str) {
    let mut got: HashMap<u64, Vec<u64>> = HashMap::new();
    for s in 0..shards {
        let recs = read_all(log, s);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.position, i as u64, "{ctx}: positions dense from 0");
        }
        got.insert(
            s,
            recs.iter()
                .map(|r| check_record(s, &r.key, &r.value))
                .collect(),
        );
    }
    for (s, first, seqs) in acks {
        let g = &got[s];
        for (i, seq) in seqs.iter().enumerate() {
            let p = *first as usize + i;
            assert!(p < g.len(), "{ctx}: acknowledged record {s}/{p} lost");
            assert_eq!(g[p], *seq, "{ctx}: acknowledged record {s}/{p} differs");
        }
    }
}

#[test]
fn crash_during_concurrent_appends_keeps_every_acknowledged_record() {
    let rt = rt();
    for seed in 0..10u64 {
        let sim = SimFs::new(seed);
        let clock = ManualClock::new(1);
        let acks: Acks = Arc::new(Mutex::new(Vec::new()));
        let shards = 6;
        for round in 0..3 {
            let log = open_sim(&sim, clock.clone(), Durability::Fsync, 16 << 10);
            if round == 0 {
                for s in 0..shards {
                    log.create_shard(s, 1).unwrap();
                }
            }
            verify_acked(
                &log,
                &acks.lock().unwrap(),
                shards,
                &format!("seed {seed} round {round}"),
            );
            let mut tasks = Vec::new();
            for w in 0..8u64 {
                let log = log.clone();
                let acks = acks.clone();
                tasks.push(rt.spawn(async move {
                    let mut i = 0u64;
                    loop {
                        let s = (w + i) % shards;
                        let base = (round * 8 + w) * 1_000_000 + i * 10;
                        let seqs: Vec<u64> = (0..(i % 4 + 1)).map(|k| base + k).collect();
                        let recs = seqs.iter().map(|q| record(s, *q)).collect();
                        match log.append(one(s, recs)).await {
                            Ok(a) => acks.lock().unwrap().push((s, a[0].first_position, seqs)),
                            Err(_) => return,
                        }
                        i += 1;
                    }
                }));
            }
            // Crash at a varying moment once appends are flowing.
            let want =
                acks.lock().unwrap().len() + 5 + (seed as usize * 7 + round as usize * 3) % 40;
            let t = std::time::Instant::now();
            while acks.lock().unwrap().len() < want && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_micros(200));
            }
            sim.crash();
            for t in tasks {
                rt.block_on(t).unwrap();
            }
            drop(log);
        }
        let log = open_sim(&sim, clock.clone(), Durability::Fsync, 16 << 10);
        let n = acks.lock().unwrap().len();
        assert!(
            n > 10,
            "seed {seed}: too few acknowledged appends ({n}) for a meaningful test"
        );
        verify_acked(
            &log,
            &acks.lock().unwrap(),
            shards,
            &format!("seed {seed} final"),
        );
    }
}

#[test]
fn failed_fsync_fails_the_append_and_its_data_never_resurfaces() {
    let rt = rt();
    let sim = SimFs::new(1);
    let clock = ManualClock::new(1);
    let log = open_sim(&sim, clock.clone(), Durability::Fsync, 1 << 20);
    log.create_shard(0, 1).unwrap();
    rt.block_on(log.append(one(0, vec![record(0, 1)]))).unwrap();
    sim.fail_next_fsyncs(1);
    let r = rt.block_on(log.append(one(0, vec![record(0, 2)])));
    assert!(matches!(r, Err(LogError::Io(_))), "{r:?}");
    assert_eq!(
        log.bounds(0).unwrap().tip,
        1,
        "failed append is not readable"
    );
    let a = rt.block_on(log.append(one(0, vec![record(0, 3)]))).unwrap();
    assert_eq!(a[0].first_position, 1);
    drop(log);
    sim.crash();
    let log = open_sim(&sim, clock, Durability::Fsync, 1 << 20);
    let seqs: Vec<u64> = read_all(&log, 0)
        .iter()
        .map(|r| check_record(0, &r.key, &r.value))
        .collect();
    assert_eq!(seqs, vec![1, 3]);
}

#[test]
fn full_disk_refuses_writes_then_recovers_when_space_returns() {
    let rt = rt();
    let sim = SimFs::new(2);
    let clock = ManualClock::new(1);
    let log = open_sim(&sim, clock.clone(), Durability::Fsync, 1 << 20);
    log.create_shard(0, 1).unwrap();
    rt.block_on(log.append(one(0, vec![record(0, 1)]))).unwrap();
    sim.set_enospc(true);
    for q in 2..5 {
        match rt.block_on(log.append(one(0, vec![record(0, q)]))) {
            Err(LogError::Io(e)) => {
                assert_eq!(e.raw_os_error().or(Some(libc::ENOSPC)), Some(libc::ENOSPC))
            }
            Err(LogError::Failed(_)) => {}
            other => panic!("append on a full disk: {other:?}"),
        }
    }
    assert_eq!(read_all(&log, 0).len(), 1);
    sim.set_enospc(false);
    let a = rt.block_on(log.append(one(0, vec![record(0, 9)]))).unwrap();
    assert_eq!(a[0].first_position, 1);
    drop(log);
    sim.crash();
    let log = open_sim(&sim, clock, Durability::Fsync, 1 << 20);
    let seqs: Vec<u64> = read_all(&log, 0)
        .iter()
        .map(|r| check_record(0, &r.key, &r.value))
        .collect();
    assert_eq!(seqs, vec![1, 9]);
}

#[test]
fn random_fsync_failures_full_disks_and_crashes_lose_only_unacknowledged_appends() {
    let rt = rt();
    for seed in 0..6u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let sim = SimFs::new(seed);
        let clock = ManualClock::new(1);
        let mut log = open_sim(&sim, clock.clone(), Durability::Fsync, 4096);
        let shards = 4;
        for s in 0..shards {
            log.create_shard(s, 1).unwrap();
        }
        // Model: exactly the acknowledged records, in order.
        let mut model: HashMap<u64, Vec<u64>> = (0..shards).map(|s| (s, Vec::new())).collect();
        let mut failures = 0;
        for step in 0..300u64 {
            match rng.gen_range(0..20) {
                0 => sim.fail_next_fsyncs(rng.gen_range(1..3)),
                1 => sim.set_enospc(true),
                2 | 3 => sim.set_enospc(false),
                4 => {
                    drop(log);
                    sim.set_enospc(false);
                    sim.fail_next_fsyncs(0);
                    sim.crash();
                    log = open_sim(&sim, clock.clone(), Durability::Fsync, 4096);
                }
                _ => {
                    let s = rng.gen_range(0..shards);
                    let seqs: Vec<u64> = (0..rng.gen_range(1..4)).map(|k| step * 10 + k).collect();
                    let recs = seqs.iter().map(|q| record(s, *q)).collect();
                    match rt.block_on(log.append(one(s, recs))) {
                        Ok(a) => {
                            let m = model.get_mut(&s).unwrap();
                            assert_eq!(
                                a[0].first_position,
                                m.len() as u64,
                                "seed {seed} step {step}"
                            );
                            m.extend(seqs);
                        }
                        Err(LogError::Io(_)) | Err(LogError::Failed(_)) => failures += 1,
                        Err(e) => panic!("seed {seed} step {step}: {e}"),
                    }
                }
            }
            if step % 25 == 0 {
                for s in 0..shards {
                    let got: Vec<u64> = read_all(&log, s)
                        .iter()
                        .map(|r| check_record(s, &r.key, &r.value))
                        .collect();
                    assert_eq!(&got, &model[&s], "seed {seed} step {step} shard {s}");
                }
            }
        }
        assert!(failures > 0, "seed {seed}: no fault was exercised");
        drop(log);
        sim.set_enospc(false);
        sim.fail_next_fsyncs(0);
        sim.crash();
        let log = open_sim(&sim, clock.clone(), Durability::Fsync, 4096);
        for s in 0..shards {
            let got: Vec<u64> = read_all(&log, s)
                .iter()
                .map(|r| check_record(s, &r.key, &r.value))
                .collect();
            assert_eq!(&got, &model[&s], "seed {seed} final shard {s}");
        }
    }
}

fn segments(sim: &SimFs, ext: &str) -> Vec<std::path::PathBuf> {
    sim.paths()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect()
}

#[test]
fn flipped_bit_in_sealed_data_is_reported_never_served() {
    let rt = rt();
    let sim = SimFs::new(3);
    let clock = ManualClock::new(1);
    let log = open_sim(&sim, clock.clone(), Durability::Fsync, 4096);
    log.create_shard(0, 1).unwrap();
    for q in 0..200 {
        rt.block_on(log.append(one(0, vec![record(0, q)]))).unwrap();
    }
    rt.block_on(log.shutdown()).unwrap();
    let segs = segments(&sim, "seg");
    assert!(segs.len() > 4);
    // Flip a bit in the middle of the second segment's data.
    let victim = &segs[1];
    let len = sim.file_len(victim).unwrap();
    assert!(sim.flip_bit(victim, len / 2, 3));
    let log = open_sim(&sim, clock, Durability::Fsync, 4096);
    let mut errors = 0;
    let mut served = 0;
    let tip = log.bounds(0).unwrap().tip;
    for p in 0..tip {
        match log.read(0, p, 1, 1 << 20) {
            Ok(r) => {
                for rec in &r.records {
                    assert_eq!(check_record(0, &rec.key, &rec.value), rec.position);
                    served += 1;
                }
            }
            Err(LogError::Io(e)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
                errors += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(errors >= 1, "the corrupted record was not detected");
    assert_eq!(served + errors, 200);
}

#[test]
fn flipped_bit_in_the_active_segment_is_cut_off_at_recovery() {
    let rt = rt();
    let sim = SimFs::new(4);
    let clock = ManualClock::new(1);
    let log = open_sim(&sim, clock.clone(), Durability::Fsync, 1 << 20);
    log.create_shard(0, 1).unwrap();
    for q in 0..100 {
        rt.block_on(log.append(one(0, vec![record(0, q)]))).unwrap();
    }
    drop(log);
    let seg = segments(&sim, "seg").pop().unwrap();
    let len = sim.file_len(&seg).unwrap();
    assert!(sim.flip_bit(&seg, len * 3 / 4, 5));
    sim.crash();
    let log = open_sim(&sim, clock, Durability::Fsync, 1 << 20);
    let got = read_all(&log, 0);
    assert!(got.len() < 100 && got.len() > 50, "recovered {}", got.len());
    for (i, r) in got.iter().enumerate() {
        assert_eq!(check_record(0, &r.key, &r.value), i as u64);
    }
    // New appends continue after the valid prefix.
    let a = rt
        .block_on(log.append(one(0, vec![record(0, 1000)])))
        .unwrap();
    assert_eq!(a[0].first_position, got.len() as u64);
}

#[test]
fn corrupted_sidecar_index_is_detected_and_rebuilt_from_the_segment() {
    let rt = rt();
    let sim = SimFs::new(5);
    let clock = ManualClock::new(1);
    let log = open_sim(&sim, clock.clone(), Durability::Fsync, 4096);
    log.create_shard(0, 1).unwrap();
    for q in 0..100 {
        rt.block_on(log.append(one(0, vec![record(0, q)]))).unwrap();
    }
    rt.block_on(log.shutdown()).unwrap();
    let idx = segments(&sim, "idx");
    assert!(idx.len() > 2);
    for (i, p) in idx.iter().enumerate() {
        let len = sim.file_len(p).unwrap();
        assert!(sim.flip_bit(p, (i as u64 * 37) % len, 1));
    }
    let log = open_sim(&sim, clock, Durability::Fsync, 4096);
    let got = read_all(&log, 0);
    assert_eq!(got.len(), 100);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(check_record(0, &r.key, &r.value), i as u64);
    }
}

#[test]
fn crash_without_fsync_durability_recovers_a_valid_prefix_of_each_shard() {
    let rt = rt();
    for (seed, d) in [
        (1u64, Durability::None),
        (2, Durability::Interval(Duration::from_millis(1))),
    ] {
        let sim = SimFs::new(seed);
        let clock = ManualClock::new(1);
        let log = open_sim(&sim, clock.clone(), d, 8192);
        for s in 0..3 {
            log.create_shard(s, 1).unwrap();
        }
        for q in 0..300u64 {
            rt.block_on(log.append(one(q % 3, vec![record(q % 3, q)])))
                .unwrap();
        }
        drop(log);
        sim.crash();
        let log = open_sim(&sim, clock, d, 8192);
        for s in 0..3u64 {
            let got = read_all(&log, s);
            for (i, r) in got.iter().enumerate() {
                assert_eq!(r.position, i as u64);
                assert_eq!(check_record(s, &r.key, &r.value), s + 3 * i as u64, "{d:?}");
            }
        }
    }
}

#[test]
fn positions_lost_to_corruption_are_skipped_by_reads_and_never_reused() {
    let rt = rt();
    let sim = SimFs::new(6);
    let clock = ManualClock::new(1);
    let log = open_sim(&sim, clock.clone(), Durability::Fsync, 4096);
    log.create_shard(2, 2).unwrap();
    for q in 0..40 {
        rt.block_on(log.append(one(2, vec![record(2, q)]))).unwrap();
    }
    log.create_shard(1, 1).unwrap();
    let mut n = 0;
    loop {
        rt.block_on(log.append(one(1, vec![record(1, n)]))).unwrap();
        n += 1;
        let last = segments(&sim, "seg").pop().unwrap();
        if n > 60 && sim.file_len(&last).unwrap() > 0 {
            break;
        }
    }
    // A retention pass records shard 1's tip in the metadata snapshot.
    log.delete_group(2).unwrap();
    assert!(log.run_retention().unwrap() > 0);
    drop(log);
    let last = segments(&sim, "seg").pop().unwrap();
    assert!(sim.flip_bit(&last, 50, 0));
    sim.crash();
    let log = open_sim(&sim, clock, Durability::Fsync, 4096);
    let have = read_all(&log, 1).len() as u64;
    assert!(have < n, "corrupt tail cut off");
    assert_eq!(log.bounds(1).unwrap().tip, n, "tip never goes back");
    let r = log.read(1, have, 10, 1 << 20).unwrap();
    assert!(r.records.is_empty());
    assert_eq!(
        r.next_position, n,
        "readers skip the lost range instead of stalling"
    );
    let a = rt.block_on(log.append(one(1, vec![record(1, n)]))).unwrap();
    assert_eq!(a[0].first_position, n);
}

#[test]
fn interval_durability_rewrites_data_whose_periodic_fsync_failed() {
    let rt = rt();
    let sim = SimFs::new(7);
    sim.set_torn_writes(false);
    let clock = ManualClock::new(1);
    let d = Durability::Interval(Duration::from_millis(5));
    let log = open_sim(&sim, clock.clone(), d, 1 << 20);
    log.create_shard(0, 1).unwrap();
    sim.fail_next_fsyncs(1);
    for q in 0..20 {
        rt.block_on(log.append(one(0, vec![record(0, q)]))).unwrap();
    }
    // Let the periodic fsync fail once and the engine recover.
    std::thread::sleep(Duration::from_millis(200));
    drop(log);
    sim.crash();
    let log = open_sim(&sim, clock, d, 1 << 20);
    let seqs: Vec<u64> = read_all(&log, 0)
        .iter()
        .map(|r| check_record(0, &r.key, &r.value))
        .collect();
    assert_eq!(seqs, (0..20).collect::<Vec<_>>());
}

#[test]
fn crash_at_every_file_operation_of_appends_and_rolls_keeps_acknowledged_records() {
    let rt = rt();
    let mut step = 0u64;
    loop {
        let sim = SimFs::new(step);
        let clock = ManualClock::new(1);
        let log = open_sim(&sim, clock.clone(), Durability::Fsync, 2048);
        for s in 0..3 {
            log.create_shard(s, 1).unwrap();
        }
        sim.crash_after_ops(step);
        let mut acked: Vec<Vec<u64>> = vec![Vec::new(); 3];
        for q in 0..60u64 {
            let s = q % 3;
            match rt.block_on(log.append(one(s, vec![record(s, q)]))) {
                Ok(a) => {
                    assert_eq!(a[0].first_position, acked[s as usize].len() as u64);
                    acked[s as usize].push(q);
                }
                Err(_) => break,
            }
        }
        let completed = sim.crash_pending();
        drop(log);
        sim.crash_after_ops(u64::MAX);
        sim.crash();
        let log = open_sim(&sim, clock, Durability::Fsync, 2048);
        let mut extra = 0;
        for s in 0..3u64 {
            let got: Vec<u64> = read_all(&log, s)
                .iter()
                .map(|r| check_record(s, &r.key, &r.value))
                .collect();
            let want = &acked[s as usize];
            assert!(
                got.len() >= want.len(),
                "crash at op {step}: shard {s} lost acknowledged records"
            );
            assert_eq!(
                &got[..want.len()],
                &want[..],
                "crash at op {step}: shard {s}"
            );
            extra += got.len() - want.len();
        }
        assert!(
            extra <= 1,
            "crash at op {step}: only the in-flight append may survive unacknowledged"
        );
        if completed {
            break;
        }
        step += 1;
        assert!(step < 5000);
    }
    assert!(step > 100, "only {step} crash points");
}

#[test]
fn crash_at_every_file_operation_of_metadata_changes_and_retention_keeps_what_was_acknowledged() {
    let rt = rt();
    let mut step = 0u64;
    loop {
        let sim = SimFs::new(step);
        let clock = ManualClock::new(1);
        let log = open_sim(&sim, clock.clone(), Durability::Fsync, 2048);
        log.create_shard(1, 1).unwrap();
        log.create_shard(2, 2).unwrap();
        for q in 0..60u64 {
            rt.block_on(log.append(vec![
                eddy_log::ShardAppend {
                    shard: 1,
                    records: vec![record(1, q)],
                },
                eddy_log::ShardAppend {
                    shard: 2,
                    records: vec![record(2, q)],
                },
            ]))
            .unwrap();
        }
        sim.crash_after_ops(step);
        let deleted = log.delete_group(2).is_ok();
        let _ = log.run_retention();
        let _ = log.run_compaction();
        let created = log.create_shard(3, 1).is_ok();
        let retention = log.set_retention(1, Duration::from_secs(3600)).is_ok();
        let completed = sim.crash_pending();
        drop(log);
        sim.crash_after_ops(u64::MAX);
        sim.crash();
        let log = open_sim(&sim, clock, Durability::Fsync, 2048);
        let ctx = format!("crash at op {step}");
        let got: Vec<u64> = read_all(&log, 1)
            .iter()
            .map(|r| check_record(1, &r.key, &r.value))
            .collect();
        assert_eq!(got, (0..60).collect::<Vec<_>>(), "{ctx}");
        assert_eq!(log.bounds(1).unwrap().tip, 60, "{ctx}");
        if deleted {
            assert!(!log.shard_exists(2), "{ctx}: acknowledged delete undone");
        } else if log.shard_exists(2) {
            assert_eq!(read_all(&log, 2).len(), 60, "{ctx}");
        }
        if created {
            assert!(log.shard_exists(3), "{ctx}: acknowledged create undone");
        }
        if retention {
            // 24 h default vs 1 h: after 2 h everything of group 1 is expired.
            let c = ManualClock::new(2 * 3600 * 1000);
            drop(log);
            let log = open_sim(&sim, c, Durability::Fsync, 2048);
            assert_eq!(
                log.bounds(1).unwrap().trim_horizon,
                60,
                "{ctx}: acknowledged retention undone"
            );
        }
        if completed {
            break;
        }
        step += 1;
        assert!(step < 5000);
    }
    assert!(step > 10, "only {step} crash points");
}
