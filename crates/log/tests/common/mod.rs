//! Shared helpers for the integration tests: a manual clock, engine
//! construction over the simulated file system, and self-checking records.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use eddy_log::fs::FileSystem;
use eddy_log::simfs::SimFs;
use eddy_log::{AppendRecord, Clock, Durability, Log, LogConfig, Options, ShardAppend};

pub struct ManualClock(pub AtomicI64);
impl ManualClock {
    pub fn new(t: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(t)))
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}
impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub const DIR: &str = "/sim/log";

pub fn sim_options(sim: &SimFs, segment_bytes: u64) -> Options {
    let fs: Arc<dyn FileSystem> = Arc::new(sim.mount());
    Options {
        segment_bytes,
        fs: Some(fs),
        maintenance_interval: Duration::from_secs(3600),
        max_open_files: 4,
        ..Options::default()
    }
}

pub fn open_sim(
    sim: &SimFs,
    clock: Arc<ManualClock>,
    durability: Durability,
    segment_bytes: u64,
) -> Log {
    let cfg = LogConfig {
        dir: DIR.into(),
        durability,
        clock,
    };
    Log::open_with(cfg, sim_options(sim, segment_bytes)).expect("open")
}

/// A self-describing record: key "shard/seq", value with a checksum-able
/// deterministic body of varying length.
pub fn record(shard: u64, seq: u64) -> AppendRecord {
    let len = (seq * 7919 % 300) as usize;
    let b = (seq % 251) as u8;
    let mut v = format!("{shard}/{seq}/").into_bytes();
    v.extend(std::iter::repeat_n(b, len));
    AppendRecord {
        key: Bytes::from(format!("{shard}/{seq}")),
        value: Bytes::from(v),
    }
}

/// Checks a record read back is exactly `record(shard, seq)` for some seq;
/// returns the seq.
pub fn check_record(shard: u64, key: &[u8], value: &[u8]) -> u64 {
    let k = std::str::from_utf8(key).expect("utf8 key");
    let (s, seq) = k.split_once('/').expect("key shape");
    assert_eq!(s.parse::<u64>().unwrap(), shard, "record of another shard");
    let seq: u64 = seq.parse().unwrap();
    let want = record(shard, seq);
    assert_eq!(&want.value[..], value, "record body corrupted");
    seq
}

pub fn one(shard: u64, recs: Vec<AppendRecord>) -> Vec<ShardAppend> {
    vec![ShardAppend {
        shard,
        records: recs,
    }]
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Reads everything readable of a shard.
pub fn read_all(log: &Log, shard: u64) -> Vec<eddy_log::LogRecord> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let r = log.read(shard, pos, 1000, 1 << 20).expect("read");
        if r.records.is_empty() {
            return out;
        }
        pos = r.next_position;
        out.extend(r.records);
    }
}
