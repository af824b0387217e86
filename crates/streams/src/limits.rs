//! Throughput limits, as AWS enforces them: per shard (writes: bytes and
//! records per second; reads: GetRecords calls and bytes per second) and per
//! control-plane operation (calls per second per account or per stream).
//!
//! Data-plane accounting is per shard: each shard has its own small mutex
//! over its token buckets, found through a read-mostly map, so concurrent
//! puts to different shards never contend on one lock. Buckets hold one
//! second of tokens (AWS's burst); the read-bytes bucket may go into debt, so
//! after a 10 MiB GetRecords the next calls are throttled for ~5 s, as on AWS.
//!
//! The same per-shard counters feed on-demand scaling (`usage`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// Per-shard and control-plane rates. `enabled = false` turns every limit off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub enabled: bool,
    pub write_bytes_per_sec: f64,
    pub write_records_per_sec: f64,
    pub read_bytes_per_sec: f64,
    pub read_calls_per_sec: f64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            enabled: true,
            write_bytes_per_sec: 1024.0 * 1024.0,
            write_records_per_sec: 1000.0,
            read_bytes_per_sec: 2.0 * 1024.0 * 1024.0,
            read_calls_per_sec: 5.0,
        }
    }
}

/// A token bucket refilled continuously at `rate` per second up to `rate`
/// (one second of burst).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: rate,
            at: now,
        }
    }

    fn refill(&mut self, rate: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(rate);
        self.at = now;
    }
}

/// Exponentially decayed usage (per second), for on-demand scaling.
#[derive(Debug, Clone, Copy)]
struct Rate {
    value: f64,
    at: Instant,
}

impl Rate {
    /// Time constant of the decay: "hot" means hot for several seconds.
    const TAU_SECS: f64 = 5.0;

    fn add(&mut self, amount: f64, now: Instant) {
        self.decay(now);
        self.value += amount / Self::TAU_SECS;
    }

    fn decay(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.value *= (-dt / Self::TAU_SECS).exp();
        self.at = now;
    }
}

#[derive(Debug)]
struct ShardState {
    write_bytes: Bucket,
    write_records: Bucket,
    read_bytes: Bucket,
    read_calls: Bucket,
    /// Bytes/s and records/s written, and throttled writes/s, smoothed.
    bytes_rate: Rate,
    records_rate: Rate,
    throttled_rate: Rate,
}

/// What a shard has been doing lately, per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub bytes: f64,
    pub records: f64,
    pub throttled: f64,
}

pub struct Limiter {
    limits: Limits,
    shards: RwLock<HashMap<u64, Arc<Mutex<ShardState>>>>,
    control: Mutex<HashMap<(String, String), Bucket>>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Limiter {
        Limiter {
            limits,
            shards: RwLock::default(),
            control: Mutex::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn shard(&self, log_id: u64) -> Arc<Mutex<ShardState>> {
        if let Some(s) = self
            .shards
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&log_id)
        {
            return s.clone();
        }
        let now = Instant::now();
        let l = self.limits;
        let zero = Rate {
            value: 0.0,
            at: now,
        };
        self.shards
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(log_id)
            .or_insert_with(|| {
                Arc::new(Mutex::new(ShardState {
                    write_bytes: Bucket::full(l.write_bytes_per_sec, now),
                    write_records: Bucket::full(l.write_records_per_sec, now),
                    read_bytes: Bucket::full(l.read_bytes_per_sec, now),
                    read_calls: Bucket::full(l.read_calls_per_sec, now),
                    bytes_rate: zero,
                    records_rate: zero,
                    throttled_rate: zero,
                }))
            })
            .clone()
    }

    /// Tries to admit one record of `bytes` to a shard; false = throttled.
    pub fn admit_write(&self, log_id: u64, bytes: usize) -> bool {
        self.admit_writes(log_id, &[bytes])[0]
    }

    /// Admits records of the given sizes to one shard, in order, under one
    /// lock acquisition; `result[i]` says whether record `i` passed. Always
    /// accounts usage (for on-demand scaling), even with limits off.
    pub fn admit_writes(&self, log_id: u64, sizes: &[usize]) -> Vec<bool> {
        let shard = self.shard(log_id);
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let l = self.limits;
        let mut result = Vec::with_capacity(sizes.len());
        let (mut bytes_in, mut records_in, mut throttled) = (0usize, 0usize, 0usize);
        if l.enabled {
            s.write_bytes.refill(l.write_bytes_per_sec, now);
            s.write_records.refill(l.write_records_per_sec, now);
        }
        for &bytes in sizes {
            // A record larger than a second of bytes (streams may allow up
            // to 10 MiB) passes when the bucket is full and leaves it in
            // debt, so large records flow at the average rate.
            let ok = !l.enabled
                || ((s.write_bytes.tokens >= bytes as f64
                    || s.write_bytes.tokens >= l.write_bytes_per_sec)
                    && s.write_records.tokens >= 1.0);
            if ok {
                if l.enabled {
                    s.write_bytes.tokens -= bytes as f64;
                    s.write_records.tokens -= 1.0;
                }
                bytes_in += bytes;
                records_in += 1;
            } else {
                throttled += 1;
            }
            result.push(ok);
        }
        if records_in > 0 {
            s.bytes_rate.add(bytes_in as f64, now);
            s.records_rate.add(records_in as f64, now);
        }
        if throttled > 0 {
            s.throttled_rate.add(throttled as f64, now);
        }
        result
    }

    /// Admits a GetRecords call on a shard; false = throttled.
    pub fn admit_read(&self, log_id: u64) -> bool {
        let l = self.limits;
        if !l.enabled {
            return true;
        }
        let shard = self.shard(log_id);
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        s.read_calls.refill(l.read_calls_per_sec, now);
        s.read_bytes.refill(l.read_bytes_per_sec, now);
        if s.read_calls.tokens < 1.0 || s.read_bytes.tokens <= 0.0 {
            return false;
        }
        s.read_calls.tokens -= 1.0;
        true
    }

    /// Charges the bytes a GetRecords call returned (may go into debt).
    pub fn charge_read(&self, log_id: u64, bytes: usize) {
        if !self.limits.enabled {
            return;
        }
        let shard = self.shard(log_id);
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        s.read_bytes.tokens -= bytes as f64;
    }

    /// Recent write usage of a shard, per second.
    pub fn usage(&self, log_id: u64) -> Usage {
        let shard = self.shard(log_id);
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        s.bytes_rate.decay(now);
        s.records_rate.decay(now);
        s.throttled_rate.decay(now);
        Usage {
            bytes: s.bytes_rate.value,
            records: s.records_rate.value,
            throttled: s.throttled_rate.value,
        }
    }

    /// Forgets a shard (closed or deleted).
    pub fn forget(&self, log_id: u64) {
        self.shards
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&log_id);
    }

    /// Admits a control-plane call of `op` within `scope` (the account, or a
    /// stream) at `rate` calls per second; false = over the limit.
    pub fn admit_control(&self, op: &str, scope: &str, rate: f64) -> bool {
        if !self.limits.enabled {
            return true;
        }
        let now = Instant::now();
        let mut c = self.control.lock().unwrap_or_else(|p| p.into_inner());
        let b = c
            .entry((op.to_string(), scope.to_string()))
            .or_insert_with(|| Bucket::full(rate, now));
        b.refill(rate, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// AWS's control-plane rates: (operation, calls per second, per stream?).
/// Operations not listed here use 5 per second per account.
pub const CONTROL_RATES: &[(&str, f64, bool)] = &[
    ("ListShards", 1000.0, true),
    ("DescribeStream", 10.0, false),
    ("DescribeStreamSummary", 20.0, false),
    ("DescribeLimits", 1.0, false),
    ("UpdateShardCount", 10.0, false),
    ("ListStreams", 5.0, false),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Limits {
        Limits {
            enabled: true,
            write_bytes_per_sec: 1000.0,
            write_records_per_sec: 10.0,
            read_bytes_per_sec: 100.0,
            read_calls_per_sec: 2.0,
        }
    }

    #[test]
    fn writes_beyond_a_second_of_tokens_are_throttled_per_shard() {
        let l = Limiter::new(small());
        let admitted = (0..15).filter(|_| l.admit_write(1, 10)).count();
        assert_eq!(admitted, 10, "one second of records is the burst");
        assert!(l.admit_write(2, 10), "another shard has its own bucket");
        assert!(
            l.admit_write(3, 2000),
            "a record larger than the byte bucket passes when it is full"
        );
        assert!(!l.admit_write(3, 1), "and leaves the bucket in debt");
    }

    #[test]
    fn batch_admission_matches_one_by_one_admission() {
        let l = Limiter::new(small());
        let batch = l.admit_writes(1, &[10; 15]);
        assert_eq!(batch.iter().filter(|ok| **ok).count(), 10);
        assert!(
            batch[..10].iter().all(|ok| *ok),
            "the first records of a batch win, in order"
        );
        assert!(l.usage(1).records > 0.0 && l.usage(1).throttled > 0.0);
    }

    #[test]
    fn disabled_limits_admit_everything_but_still_measure_usage() {
        let l = Limiter::new(Limits {
            enabled: false,
            ..small()
        });
        assert!((0..1000).all(|_| l.admit_write(1, 10)));
        assert!(l.usage(1).records > 0.0);
        assert!((0..100).all(|_| l.admit_read(1)));
        assert!(l.admit_control("CreateStream", "acct", 1.0));
        assert!(l.admit_control("CreateStream", "acct", 1.0));
    }

    #[test]
    fn a_large_read_throttles_reads_until_its_debt_is_repaid() {
        let l = Limiter::new(small());
        assert!(l.admit_read(1));
        l.charge_read(1, 500);
        assert!(!l.admit_read(1), "in debt after reading 5 seconds' worth");
    }

    #[test]
    fn control_plane_calls_are_limited_per_scope() {
        let l = Limiter::new(small());
        assert!(l.admit_control("DescribeLimits", "a", 1.0));
        assert!(!l.admit_control("DescribeLimits", "a", 1.0));
        assert!(l.admit_control("DescribeLimits", "b", 1.0));
    }
}
