//! Space reclamation by compaction: segments shared by deleted (or
//! expired) and live data are rewritten without the dead frames, and a
//! crash at any step of a compaction loses nothing that is live.

mod common;

use common::*;
use eddy_log::simfs::SimFs;
use eddy_log::{Durability, Log, LogError, ShardAppend};

const SEG: u64 = 64 << 10;

/// Shard 1 (group 10) and shard 2 (group 20) interleaved in every segment;
/// shard 1 writes 3x the bytes of shard 2.
fn fill(rt: &tokio::runtime::Runtime, log: &Log, rounds: u64) {
    log.create_shard(1, 10).unwrap();
    log.create_shard(2, 20).unwrap();
    for i in 0..rounds {
        rt.block_on(log.append(vec![
            ShardAppend {
                shard: 1,
                records: (0..3).map(|k| record(1, i * 3 + k)).collect(),
            },
            ShardAppend {
                shard: 2,
                records: vec![record(2, i)],
            },
        ]))
        .unwrap();
    }
}

fn check_shard2(log: &Log, rounds: u64, ctx: &str) {
    let got = read_all(log, 2);
    assert_eq!(got.len() as u64, rounds, "{ctx}");
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.position, i as u64, "{ctx}");
        assert_eq!(check_record(2, &r.key, &r.value), i as u64, "{ctx}");
    }
}

#[test]
fn deleting_a_group_reclaims_space_in_segments_shared_with_live_data() {
    let rt = rt();
    let sim = SimFs::new(1);
    let clock = ManualClock::new(1);
    let log = open_sim(&sim, clock.clone(), Durability::Fsync, SEG);
    fill(&rt, &log, 2000);
    let before = sim.bytes_with_suffix(".seg");
    log.delete_group(10).unwrap();
    assert_eq!(
        log.run_retention().unwrap(),
        0,
        "every segment still holds live data"
    );
    let n = log.run_compaction().unwrap();
    assert!(n > 3, "compacted {n} segments");
    let after = sim.bytes_with_suffix(".seg");
    assert!(after * 100 < before * 45, "before {before} after {after}");
    check_shard2(&log, 2000, "after compaction");
    assert!(matches!(
        log.read(1, 0, 1, 1),
        Err(LogError::UnknownShard(1))
    ));
    // Compacted segments are not compacted again (nothing dead left).
    assert_eq!(log.run_compaction().unwrap(), 0);
    drop(log);
    sim.crash();
    let log = open_sim(&sim, clock, Durability::Fsync, SEG);
    check_shard2(&log, 2000, "after crash");
    let a = rt
        .block_on(log.append(one(2, vec![record(2, 2000)])))
        .unwrap();
    assert_eq!(a[0].first_position, 2000);
}

#[test]
fn expired_data_is_compacted_away_while_unexpired_data_stays_readable() {
    let rt = rt();
    let sim = SimFs::new(2);
    let clock = ManualClock::new(1_000_000);
    let log = open_sim(&sim, clock.clone(), Durability::Fsync, SEG);
    log.create_shard(1, 10).unwrap();
    log.create_shard(2, 20).unwrap();
    log.set_retention(10, std::time::Duration::from_secs(60))
        .unwrap();
    for i in 0..2000 {
        rt.block_on(log.append(vec![
            ShardAppend {
                shard: 1,
                records: (0..3).map(|k| record(1, i * 3 + k)).collect(),
            },
            ShardAppend {
                shard: 2,
                records: vec![record(2, i)],
            },
        ]))
        .unwrap();
    }
    clock.advance(120_000);
    assert_eq!(log.bounds(1).unwrap().trim_horizon, 6000);
    let before = sim.bytes_with_suffix(".seg");
    assert!(log.run_compaction().unwrap() > 3);
    assert!(sim.bytes_with_suffix(".seg") * 100 < before * 45);
    check_shard2(&log, 2000, "after compaction");
    assert_eq!(log.bounds(1).unwrap().tip, 6000);
    rt.block_on(log.shutdown()).unwrap();
    let log = open_sim(&sim, clock, Durability::Fsync, SEG);
    check_shard2(&log, 2000, "after restart");
    let b = log.bounds(1).unwrap();
    assert_eq!((b.trim_horizon, b.tip), (6000, 6000));
}

#[test]
fn crash_at_every_step_of_a_compaction_loses_nothing_live() {
    let rt = rt();
    let mut completed = false;
    let mut step = 0;
    while !completed {
        let sim = SimFs::new(step);
        let clock = ManualClock::new(1);
        let log = open_sim(&sim, clock.clone(), Durability::Fsync, 16 << 10);
        fill(&rt, &log, 150);
        log.delete_group(10).unwrap();
        sim.crash_after_ops(step);
        let r = log.run_compaction();
        completed = sim.crash_pending();
        if completed {
            assert!(r.unwrap() > 0);
        }
        drop(log);
        sim.crash_after_ops(u64::MAX);
        sim.crash();
        let log = open_sim(&sim, clock.clone(), Durability::Fsync, 16 << 10);
        check_shard2(&log, 150, &format!("crash at op {step}"));
        assert!(!log.shard_exists(1));
        // Whatever state the crash left, compaction can finish afterwards.
        log.run_compaction().unwrap();
        check_shard2(&log, 150, &format!("recompacted after crash at op {step}"));
        step += 1;
        assert!(step < 2000, "compaction never completed");
    }
    eprintln!("compaction crashed at each of {step} file operations");
    assert!(step > 10, "only {step} crash points");
}

#[test]
fn an_idle_active_segment_is_sealed_so_deleted_data_is_reclaimed_within_minutes() {
    let rt = rt();
    let sim = SimFs::new(3);
    let clock = ManualClock::new(1);
    let cfg = eddy_log::LogConfig {
        dir: DIR.into(),
        durability: Durability::Fsync,
        clock,
    };
    let opts = eddy_log::Options {
        max_segment_age: std::time::Duration::from_millis(100),
        ..sim_options(&sim, 64 << 20)
    };
    let log = Log::open_with(cfg, opts).unwrap();
    log.create_shard(1, 10).unwrap();
    rt.block_on(log.append(one(1, (0..50).map(|q| record(1, q)).collect())))
        .unwrap();
    assert_eq!(log.segment_stats().0, 0);
    log.delete_group(10).unwrap();
    let t = std::time::Instant::now();
    while log.segment_stats().0 == 0 {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "active segment never sealed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let before = sim.bytes_with_suffix(".seg");
    assert!(before > 0);
    assert_eq!(log.run_retention().unwrap(), 1);
    assert_eq!(sim.bytes_with_suffix(".seg"), 0);
}
