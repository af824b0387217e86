//! Per-shard pacing: a token bucket for records and one for bytes, each
//! refilled at the shard limit times the configured percentage, holding at
//! most one second's worth. A record may take the bucket into debt (so a
//! record bigger than the bucket still goes), which the refill repays.

use std::time::{Duration, Instant};

use crate::config::limits;

#[derive(Debug)]
pub(crate) struct ShardLimiter {
    records: f64,
    bytes: f64,
    records_rate: f64,
    bytes_rate: f64,
    last: Instant,
}

impl ShardLimiter {
    pub(crate) fn new(percent: f64, now: Instant) -> ShardLimiter {
        let f = percent / 100.0;
        ShardLimiter {
            records: limits::SHARD_RECORDS_PER_SEC * f,
            bytes: limits::SHARD_BYTES_PER_SEC * f,
            records_rate: limits::SHARD_RECORDS_PER_SEC * f,
            bytes_rate: limits::SHARD_BYTES_PER_SEC * f,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.records = (self.records + dt * self.records_rate).min(self.records_rate);
        self.bytes = (self.bytes + dt * self.bytes_rate).min(self.bytes_rate);
    }

    /// Takes one record of `bytes` if both buckets are positive; otherwise
    /// returns how long until they are.
    pub(crate) fn try_take(&mut self, bytes: usize, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.records > 0.0 && self.bytes > 0.0 {
            self.records -= 1.0;
            self.bytes -= bytes as f64;
            return Ok(());
        }
        let wait_r = if self.records > 0.0 {
            0.0
        } else {
            (1.0 - self.records) / self.records_rate
        };
        let wait_b = if self.bytes > 0.0 {
            0.0
        } else {
            (1.0 - self.bytes) / self.bytes_rate
        };
        Err(Duration::from_secs_f64(wait_r.max(wait_b)).max(Duration::from_millis(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_one_seconds_worth_then_paces() {
        let t0 = Instant::now();
        let mut l = ShardLimiter::new(100.0, t0);
        for _ in 0..1000 {
            l.try_take(10, t0).unwrap();
        }
        let wait = l.try_take(10, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(2), "{wait:?}");
        // after 100 ms, about 100 records more
        let t1 = t0 + Duration::from_millis(100);
        let mut n = 0;
        while l.try_take(10, t1).is_ok() {
            n += 1;
        }
        assert!((99..=101).contains(&n), "{n}");
    }

    #[test]
    fn byte_bucket_limits_large_records() {
        let t0 = Instant::now();
        let mut l = ShardLimiter::new(100.0, t0);
        l.try_take(1024 * 1024, t0).unwrap();
        let wait = l.try_take(1, t0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait < Duration::from_millis(5),
            "{wait:?}"
        );
        l.try_take(1024 * 1024, t0 + Duration::from_secs(1))
            .unwrap();
    }
}
