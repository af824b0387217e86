//! Model-based test: random sequences of appends over many shards, reads,
//! time seeks, retention changes and passes, clock jumps, group deletes,
//! clean restarts and simulated crashes, checked against a plain in-memory
//! model of what must be readable.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use eddy_log::simfs::SimFs;
use eddy_log::{Durability, LogError, ShardAppend};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

#[derive(Default)]
struct ShardModel {
    group: u64,
    deleted: bool,
    /// (timestamp, seq) per position.
    recs: Vec<(i64, u64)>,
    /// Trim horizon pinned when retention changed.
    floor: u64,
}

struct Model {
    shards: HashMap<u64, ShardModel>,
    retention: HashMap<u64, i64>,
}

impl Model {
    fn cutoff(&self, shard: u64, now: i64) -> i64 {
        let g = self.shards[&shard].group;
        now - self.retention.get(&g).copied().unwrap_or(24 * 3600 * 1000)
    }
    fn first_at(&self, shard: u64, t: i64) -> u64 {
        let m = &self.shards[&shard];
        let p = m
            .recs
            .iter()
            .position(|(ts, _)| *ts >= t)
            .unwrap_or(m.recs.len()) as u64;
        p.max(m.floor).min(m.recs.len() as u64)
    }
}

fn run(seed: u64, ops: usize) {
    let rt = rt();
    let mut rng = StdRng::seed_from_u64(seed);
    let sim = SimFs::new(seed);
    let clock = ManualClock::new(1_000_000_000);
    let seg = [2048u64, 8192, 1 << 20][rng.gen_range(0..3)];
    let mut log = open_sim(&sim, clock.clone(), Durability::Fsync, seg);
    let mut model = Model {
        shards: HashMap::new(),
        retention: HashMap::new(),
    };
    let mut next_shard = 0u64;
    let mut seq = 0u64;
    for step in 0..ops {
        let live: Vec<u64> = {
            let mut v: Vec<u64> = model
                .shards
                .iter()
                .filter(|(_, m)| !m.deleted)
                .map(|(s, _)| *s)
                .collect();
            v.sort();
            v
        };
        let now = clock.0.load(std::sync::atomic::Ordering::SeqCst);
        let op = rng.gen_range(0..100);
        let ctx = format!("seed {seed} step {step} op {op}");
        if live.is_empty() || op < 8 {
            let group = rng.gen_range(0..4);
            log.create_shard(next_shard, group).unwrap();
            model.shards.insert(
                next_shard,
                ShardModel {
                    group,
                    ..Default::default()
                },
            );
            next_shard += 1;
        } else if op < 45 {
            let n = rng.gen_range(1..=3.min(live.len()));
            let mut picked = live.clone();
            picked.shuffle(&mut rng);
            picked.truncate(n);
            let batch: Vec<ShardAppend> = picked
                .iter()
                .map(|s| ShardAppend {
                    shard: *s,
                    records: (0..rng.gen_range(1..6))
                        .map(|_| {
                            seq += 1;
                            record(*s, seq)
                        })
                        .collect(),
                })
                .collect();
            let got = rt.block_on(log.append(batch.clone())).unwrap();
            for (sa, a) in batch.iter().zip(got) {
                let m = model.shards.get_mut(&sa.shard).unwrap();
                assert_eq!(a.first_position, m.recs.len() as u64, "{ctx}");
                let want_ts = m.recs.last().map_or(now, |l| l.0.max(now));
                assert_eq!(a.timestamp_ms, want_ts, "{ctx}");
                for r in &sa.records {
                    let k = std::str::from_utf8(&r.key).unwrap();
                    m.recs.push((
                        a.timestamp_ms,
                        k.split_once('/').unwrap().1.parse().unwrap(),
                    ));
                }
            }
        } else if op < 65 {
            let s = live[rng.gen_range(0..live.len())];
            let m = &model.shards[&s];
            let th = model.first_at(s, model.cutoff(s, now));
            let from = rng.gen_range(0..=m.recs.len() as u64 + 2);
            let max = rng.gen_range(1..20);
            let r = log.read(s, from, max, rng.gen_range(1..5000)).unwrap();
            let start = from.max(th);
            let avail = (m.recs.len() as u64).saturating_sub(start);
            if avail == 0 {
                assert!(r.records.is_empty(), "{ctx}");
                assert_eq!(r.next_position, start, "{ctx}");
            } else {
                assert!(
                    !r.records.is_empty() && r.records.len() <= max,
                    "{ctx} got {} max {max} start {start} th {th} len {} b {:?}",
                    r.records.len(),
                    m.recs.len(),
                    log.bounds(s)
                );
                for (i, rec) in r.records.iter().enumerate() {
                    let p = start + i as u64;
                    assert_eq!(rec.position, p, "{ctx}");
                    let (ts, sq) = m.recs[p as usize];
                    assert_eq!(rec.timestamp_ms, ts, "{ctx}");
                    assert_eq!(check_record(s, &rec.key, &rec.value), sq, "{ctx}");
                }
                assert_eq!(r.next_position, start + r.records.len() as u64, "{ctx}");
            }
            let b = log.bounds(s).unwrap();
            assert_eq!((b.trim_horizon, b.tip), (th, m.recs.len() as u64), "{ctx}");
            assert_eq!(b.last_timestamp_ms, m.recs.last().map(|r| r.0), "{ctx}");
        } else if op < 75 {
            let s = live[rng.gen_range(0..live.len())];
            let t = now - rng.gen_range(-10..200_000);
            let want = model.first_at(s, t.max(model.cutoff(s, now)));
            assert_eq!(
                log.position_at_time(s, t).unwrap(),
                want,
                "{ctx} t {t} now {now} cutoff {} floor {} recs {:?} b {:?}",
                model.cutoff(s, now),
                model.shards[&s].floor,
                model.shards[&s].recs,
                log.bounds(s)
            );
        } else if op < 83 {
            clock.advance(rng.gen_range(0..50_000));
        } else if op < 87 {
            let g = rng.gen_range(0..4);
            let ms = rng.gen_range(10_000..500_000);
            log.set_retention(g, Duration::from_millis(ms as u64))
                .unwrap();
            let ids: Vec<u64> = model.shards.keys().copied().collect();
            for s in ids {
                if model.shards[&s].group == g && !model.shards[&s].deleted {
                    let th = model.first_at(s, model.cutoff(s, now));
                    model.shards.get_mut(&s).unwrap().floor = th;
                }
            }
            model.retention.insert(g, ms);
        } else if op < 89 {
            log.run_retention().unwrap();
        } else if op < 91 {
            log.run_compaction().unwrap();
        } else if op < 93 {
            let g = rng.gen_range(0..4);
            log.delete_group(g).unwrap();
            for m in model.shards.values_mut() {
                if m.group == g {
                    m.deleted = true;
                }
            }
        } else if op < 96 {
            rt.block_on(log.shutdown()).unwrap();
            log = open_sim(&sim, clock.clone(), Durability::Fsync, seg);
        } else {
            drop(log);
            sim.crash();
            log = open_sim(&sim, clock.clone(), Durability::Fsync, seg);
        }
        for (s, m) in &model.shards {
            if m.deleted {
                assert!(
                    matches!(log.bounds(*s), Err(LogError::UnknownShard(_))),
                    "{ctx}"
                );
            }
        }
    }
    // Final full check of every live shard.
    let now = clock.0.load(std::sync::atomic::Ordering::SeqCst);
    for (s, m) in &model.shards {
        if m.deleted {
            continue;
        }
        let th = model.first_at(*s, model.cutoff(*s, now)) as usize;
        let got = read_all(&log, *s);
        assert_eq!(got.len(), m.recs.len() - th, "seed {seed} shard {s}");
        for (rec, (ts, sq)) in got.iter().zip(&m.recs[th..]) {
            assert_eq!(rec.timestamp_ms, *ts);
            assert_eq!(check_record(*s, &rec.key, &rec.value), *sq);
        }
    }
}

#[test]
fn random_operation_sequences_match_the_model() {
    for seed in 0..12 {
        run(seed, 400);
    }
}
