//! Behaviour of the public API over the simulated file system and a manual
//! clock (plus one test on the real file system).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use eddy_log::simfs::SimFs;
use eddy_log::{AppendRecord, Durability, Log, LogConfig, LogError, ShardAppend};

#[test]
fn appends_get_dense_positions_and_read_back_in_order() {
    let rt = rt();
    let sim = SimFs::new(1);
    let clock = ManualClock::new(1_000);
    let log = open_sim(&sim, clock.clone(), Durability::Fsync, 1 << 20);
    log.create_shard(1, 10).unwrap();
    log.create_shard(2, 10).unwrap();
    let mut seq = 0;
    for i in 0..50u64 {
        let recs: Vec<_> = (0..i % 5 + 1)
            .map(|_| {
                seq += 1;
                record(1, seq)
            })
            .collect();
        let n = recs.len() as u64;
        let a = rt
            .block_on(log.append(vec![
                ShardAppend {
                    shard: 1,
                    records: recs,
                },
                ShardAppend {
                    shard: 2,
                    records: vec![record(2, i)],
                },
            ]))
            .unwrap();
        assert_eq!(a[1].first_position, i);
        let b = log.bounds(1).unwrap();
        assert_eq!(b.tip, a[0].first_position + n);
        clock.advance(1);
    }
    let all = read_all(&log, 1);
    assert_eq!(all.len() as u64, seq);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.position, i as u64);
        assert_eq!(check_record(1, &r.key, &r.value), i as u64 + 1);
    }
    assert!(
        all.windows(2)
            .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms)
    );
    assert_eq!(read_all(&log, 2).len(), 50);
}

#[test]
fn timestamps_never_decrease_even_when_the_clock_goes_back() {
    let rt = rt();
    let sim = SimFs::new(2);
    let clock = ManualClock::new(10_000);
    let log = open_sim(&sim, clock.clone(), Durability::Fsync, 1 << 20);
    log.create_shard(1, 1).unwrap();
    let a = rt.block_on(log.append(one(1, vec![record(1, 1)]))).unwrap()[0];
    clock.set(5_000);
    let b = rt.block_on(log.append(one(1, vec![record(1, 2)]))).unwrap()[0];
    assert_eq!(a.timestamp_ms, 10_000);
    assert_eq!(b.timestamp_ms, 10_000);
    assert_eq!(log.bounds(1).unwrap().last_timestamp_ms, Some(10_000));
}

#[test]
fn read_limits_records_and_bytes_but_returns_at_least_one_record() {
    let rt = rt();
    let sim = SimFs::new(3);
    let log = open_sim(&sim, ManualClock::new(1), Durability::None, 1 << 20);
    log.create_shard(1, 1).unwrap();
    let recs: Vec<_> = (0..100).map(|s| record(1, s)).collect();
    rt.block_on(log.append(one(1, recs))).unwrap();
    let r = log.read(1, 10, 7, usize::MAX).unwrap();
    assert_eq!(r.records.len(), 7);
    assert_eq!(r.records[0].position, 10);
    assert_eq!(r.next_position, 17);
    let r = log.read(1, 10, 1000, 1).unwrap();
    assert_eq!(
        r.records.len(),
        1,
        "at least one record even if larger than max_bytes"
    );
    let r = log.read(1, 100, 10, 1000).unwrap();
    assert!(r.records.is_empty());
    assert_eq!(r.next_position, 100);
    let r = log.read(1, 500, 10, 1000).unwrap();
    assert!(r.records.is_empty());
}

#[test]
fn position_at_time_finds_first_record_at_or_after_across_sealed_segments() {
    let rt = rt();
    let sim = SimFs::new(4);
    let clock = ManualClock::new(1_000);
    // Tiny segments: most data is in sealed segments found via sidecars.
    let log = open_sim(&sim, clock.clone(), Durability::Fsync, 4096);
    log.create_shard(7, 1).unwrap();
    log.create_shard(8, 1).unwrap();
    let mut times = Vec::new();
    for i in 0..200u64 {
        let a = rt
            .block_on(log.append(vec![
                ShardAppend {
                    shard: 7,
                    records: vec![record(7, i)],
                },
                ShardAppend {
                    shard: 8,
                    records: vec![record(8, i), record(8, i + 1000)],
                },
            ]))
            .unwrap();
        times.push(a[0].timestamp_ms);
        clock.advance(if i % 3 == 0 { 5 } else { 0 });
    }
    assert!(
        log.segment_stats().0 > 5,
        "expected several sealed segments"
    );
    for probe in [
        0, 999, 1_000, 1_001, 1_005, 1_100, 1_200, 1_335, 1_336, 5_000,
    ] {
        let want = times
            .iter()
            .position(|t| *t >= probe)
            .unwrap_or(times.len()) as u64;
        assert_eq!(
            log.position_at_time(7, probe).unwrap(),
            want,
            "probe {probe}"
        );
    }
}

#[test]
fn wait_for_wakes_when_data_becomes_readable_and_times_out_otherwise() {
    let rt = rt();
    let sim = SimFs::new(5);
    let log = open_sim(&sim, ManualClock::new(1), Durability::Fsync, 1 << 20);
    log.create_shard(1, 1).unwrap();
    rt.block_on(async {
        let t = tokio::time::Instant::now();
        assert_eq!(
            log.wait_for(1, 0, Duration::from_millis(50)).await.unwrap(),
            0
        );
        assert!(t.elapsed() >= Duration::from_millis(50));
        let l2 = log.clone();
        let waiter = tokio::spawn(async move { l2.wait_for(1, 0, Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        log.append(one(1, vec![record(1, 1)])).await.unwrap();
        assert_eq!(waiter.await.unwrap().unwrap(), 1);
        let l3 = log.clone();
        let waiter = tokio::spawn(async move { l3.wait_for(1, 5, Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        log.delete_group(1).unwrap();
        assert!(matches!(
            waiter.await.unwrap(),
            Err(LogError::UnknownShard(1))
        ));
    });
}

#[test]
fn retention_hides_expired_data_at_once_and_reclaims_whole_segments() {
    let rt = rt();
    let sim = SimFs::new(6);
    let clock = ManualClock::new(1_000_000);
    let log = open_sim(&sim, clock.clone(), Durability::Fsync, 8192);
    log.create_shard(1, 1).unwrap();
    log.set_retention(1, Duration::from_secs(100)).unwrap();
    for i in 0..300u64 {
        rt.block_on(log.append(one(1, vec![record(1, i)]))).unwrap();
        clock.advance(1_000); // 1 s per record
    }
    // now = 1_300_000; cutoff = 1_200_000: records with ts >= 1_200_000 (i >= 200) remain.
    let b = log.bounds(1).unwrap();
    assert_eq!(b.trim_horizon, 200);
    assert_eq!(b.tip, 300);
    let r = log.read(1, 0, 5, 1 << 20).unwrap();
    assert_eq!(r.records[0].position, 200);
    let before = log.segment_stats().0;
    let deleted = log.run_retention().unwrap();
    assert!(deleted > 0 && log.segment_stats().0 < before);
    assert_eq!(log.bounds(1).unwrap().trim_horizon, 200);
    assert_eq!(read_all(&log, 1).len(), 100);
    // Everything expires; tip and last timestamp survive a restart.
    clock.advance(1_000_000);
    log.run_retention().unwrap();
    assert_eq!(log.bounds(1).unwrap().trim_horizon, 300);
    rt.block_on(log.shutdown()).unwrap();
    let log = open_sim(&sim, clock.clone(), Durability::Fsync, 8192);
    let b = log.bounds(1).unwrap();
    assert_eq!((b.trim_horizon, b.tip), (300, 300));
    assert!(b.last_timestamp_ms.is_some());
    let a = rt
        .block_on(log.append(one(1, vec![record(1, 300)])))
        .unwrap();
    assert_eq!(a[0].first_position, 300, "positions are never reused");
}

#[test]
fn deleting_a_group_hides_its_shards_and_reclaims_their_segments() {
    let rt = rt();
    let sim = SimFs::new(7);
    let clock = ManualClock::new(1);
    let log = open_sim(&sim, clock.clone(), Durability::Fsync, 4096);
    log.create_shard(1, 100).unwrap();
    log.create_shard(2, 100).unwrap();
    log.create_shard(3, 200).unwrap();
    for i in 0..100 {
        rt.block_on(log.append(vec![
            ShardAppend {
                shard: 1,
                records: vec![record(1, i)],
            },
            ShardAppend {
                shard: 2,
                records: vec![record(2, i)],
            },
        ]))
        .unwrap();
    }
    for i in 0..5 {
        rt.block_on(log.append(one(3, vec![record(3, i)]))).unwrap();
    }
    let sealed = log.segment_stats().0;
    assert!(sealed > 3);
    log.delete_group(100).unwrap();
    assert!(!log.shard_exists(1));
    assert!(matches!(
        log.read(1, 0, 10, 100),
        Err(LogError::UnknownShard(1))
    ));
    assert!(matches!(log.bounds(2), Err(LogError::UnknownShard(2))));
    assert!(matches!(
        rt.block_on(log.append(one(1, vec![record(1, 0)]))),
        Err(LogError::UnknownShard(1))
    ));
    assert!(log.run_retention().unwrap() >= sealed - 1);
    assert_eq!(read_all(&log, 3).len(), 5);
    // Ids are never reused, even across restarts.
    assert!(matches!(
        log.create_shard(1, 5),
        Err(LogError::ShardExists(1))
    ));
    drop(log);
    sim.crash();
    let log = open_sim(&sim, clock, Durability::Fsync, 4096);
    assert!(!log.shard_exists(2));
    assert!(matches!(
        log.create_shard(2, 5),
        Err(LogError::ShardExists(2))
    ));
    assert_eq!(read_all(&log, 3).len(), 5);
}

#[test]
fn oversized_records_and_unknown_shards_are_rejected() {
    let rt = rt();
    let sim = SimFs::new(8);
    let log = open_sim(&sim, ManualClock::new(1), Durability::Fsync, 1 << 20);
    log.create_shard(1, 1).unwrap();
    let big = AppendRecord {
        key: Bytes::new(),
        value: Bytes::from(vec![0u8; eddy_log::MAX_RECORD_BYTES + 1]),
    };
    assert!(matches!(
        rt.block_on(log.append(one(1, vec![big]))),
        Err(LogError::TooLarge(_))
    ));
    assert!(matches!(
        rt.block_on(log.append(one(9, vec![record(9, 1)]))),
        Err(LogError::UnknownShard(9))
    ));
    assert!(matches!(
        log.read(9, 0, 1, 1),
        Err(LogError::UnknownShard(9))
    ));
    assert!(matches!(
        log.create_shard(1, 1),
        Err(LogError::ShardExists(1))
    ));
    assert_eq!(log.bounds(1).unwrap().tip, 0);
}

#[test]
fn concurrent_appends_share_fsyncs() {
    let rt = rt();
    let sim = SimFs::new(9);
    let log = open_sim(&sim, ManualClock::new(1), Durability::Fsync, 64 << 20);
    for s in 0..16 {
        log.create_shard(s, 1).unwrap();
    }
    let before = sim.fsync_count();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..64u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..20 {
                    log.append(one(t % 16, vec![record(t % 16, t * 100 + i)]))
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let syncs = sim.fsync_count() - before;
    assert!(
        syncs < 64 * 20,
        "{syncs} fsyncs for 1280 appends: no group commit"
    );
    let total: usize = (0..16).map(|s| read_all(&log, s).len()).sum();
    assert_eq!(total, 1280);
}

#[test]
fn open_files_stay_bounded_while_reading_many_segments() {
    let rt = rt();
    let sim = SimFs::new(10);
    let log = open_sim(&sim, ManualClock::new(1), Durability::None, 2048);
    log.create_shard(1, 1).unwrap();
    for i in 0..300 {
        rt.block_on(log.append(one(1, vec![record(1, i)]))).unwrap();
    }
    assert!(log.segment_stats().0 > 20);
    assert_eq!(read_all(&log, 1).len(), 300);
    assert!(
        log.segment_stats().1 <= 4,
        "open files: {}",
        log.segment_stats().1
    );
}

#[test]
fn clean_restart_on_the_real_file_system_keeps_everything() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let mut seq = 0;
    for round in 0..3 {
        let log = Log::open_with(
            LogConfig::new(dir.path()),
            eddy_log::Options {
                segment_bytes: 16 << 10,
                ..Default::default()
            },
        )
        .unwrap();
        if round == 0 {
            log.create_shard(1, 1).unwrap();
        }
        assert_eq!(log.bounds(1).unwrap().tip, seq);
        for _ in 0..100 {
            let a = rt
                .block_on(log.append(one(1, vec![record(1, seq)])))
                .unwrap();
            assert_eq!(a[0].first_position, seq);
            seq += 1;
        }
        let all = read_all(&log, 1);
        assert_eq!(all.len() as u64, seq);
        for r in &all {
            assert_eq!(check_record(1, &r.key, &r.value), r.position);
        }
        rt.block_on(log.shutdown()).unwrap();
        assert!(matches!(
            rt.block_on(log.append(one(1, vec![record(1, 0)]))),
            Err(LogError::Closed)
        ));
    }
}

#[test]
fn readers_see_intact_data_while_segments_roll_expire_and_compact_concurrently() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let rt = rt();
    let sim = SimFs::new(11);
    let clock = ManualClock::new(1_000_000);
    let log = open_sim(&sim, clock.clone(), Durability::Fsync, 8192);
    log.create_shard(1, 1).unwrap(); // long retention
    log.create_shard(2, 2).unwrap(); // expires quickly
    log.set_retention(2, Duration::from_secs(5)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for _ in 0..2 {
        let (log, stop) = (log.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for s in [1u64, 2] {
                    let mut pos = 0;
                    loop {
                        let r = log
                            .read(s, pos, 50, 1 << 16)
                            .expect("read during maintenance");
                        if r.records.is_empty() {
                            break;
                        }
                        for rec in &r.records {
                            assert!(rec.position >= pos);
                            assert_eq!(check_record(s, &rec.key, &rec.value), rec.position);
                        }
                        pos = r.next_position;
                        reads += 1;
                    }
                }
            }
            reads
        }));
    }
    {
        let (log, stop) = (log.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut passes = 0;
            while !stop.load(Ordering::Relaxed) {
                log.run_retention().unwrap();
                log.run_compaction().unwrap();
                passes += 1;
            }
            passes
        }));
    }
    for i in 0..1500u64 {
        rt.block_on(log.append(vec![
            ShardAppend {
                shard: 1,
                records: vec![record(1, i)],
            },
            ShardAppend {
                shard: 2,
                records: (0..3).map(|k| record(2, i * 3 + k)).collect(),
            },
        ]))
        .unwrap();
        clock.advance(10);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        assert!(t.join().unwrap() > 0);
    }
    assert_eq!(read_all(&log, 1).len(), 1500);
    let b = log.bounds(2).unwrap();
    assert_eq!(b.tip, 4500);
    assert_eq!(
        b.trim_horizon, 3000,
        "records older than 5 s expired: {b:?}"
    );
}

#[test]
fn a_directory_is_used_by_one_engine_at_a_time() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(LogConfig::new(dir.path())).unwrap();
    assert!(matches!(
        Log::open(LogConfig::new(dir.path())),
        Err(LogError::Failed(_))
    ));
    rt.block_on(log.shutdown()).unwrap();
    let again = Log::open(LogConfig::new(dir.path())).unwrap();
    drop(again);
    // Dropping the last handle stops the engine and releases the directory.
    Log::open(LogConfig::new(dir.path())).unwrap();
}

#[test]
fn thousands_of_shards_survive_a_crash_with_few_open_files() {
    let rt = rt();
    let sim = SimFs::new(12);
    let clock = ManualClock::new(1);
    let log = open_sim(&sim, clock.clone(), Durability::Fsync, 256 << 10);
    let n = 5000u64; // more than the metadata log holds before a snapshot
    for s in 0..n {
        log.create_shard(s, s % 7).unwrap();
    }
    for round in 0..3 {
        let batch = (0..n)
            .map(|s| ShardAppend {
                shard: s,
                records: vec![record(s, round)],
            })
            .collect();
        let a = rt.block_on(log.append(batch)).unwrap();
        assert!(a.iter().all(|a| a.first_position == round));
    }
    drop(log);
    sim.crash();
    let log = open_sim(&sim, clock, Durability::Fsync, 256 << 10);
    for s in (0..n).step_by(97) {
        let got = read_all(&log, s);
        assert_eq!(got.len(), 3, "shard {s}");
        for r in &got {
            assert_eq!(check_record(s, &r.key, &r.value), r.position);
        }
    }
    assert!(log.shard_exists(n - 1));
    assert!(log.segment_stats().1 <= 4, "open files bounded by the LRU");
    assert!(matches!(
        log.create_shard(n - 1, 0),
        Err(LogError::ShardExists(_))
    ));
}
