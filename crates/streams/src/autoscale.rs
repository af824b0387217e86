//! On-demand scaling: ON_DEMAND streams reshape themselves.
//!
//! Every `scale_interval` a background task looks at each ACTIVE on-demand
//! stream: a shard whose smoothed write rate (see `limits::Usage`) reaches
//! 80% of the per-shard limit, or that is being throttled, is split at the
//! middle of its hash range; the stream is also split up to its minimum
//! capacity (AWS's initial 4 MiB/s, or the warm throughput asked for with
//! UpdateStreamWarmThroughput). Adjacent shards that both stayed under 10%
//! for `merge_after` are merged back, never below the minimum. Splits and
//! merges are the same ones SplitShard and MergeShards make, under the
//! stream's gate, so no record is lost or duplicated.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::meta::Status;
use crate::{Streams, effective_status};

/// AWS's initial on-demand write capacity, in shards (4 MiB/s).
pub const ON_DEMAND_MIN_SHARDS: usize = 4;
const HOT: f64 = 0.8;
const COLD: f64 = 0.1;

#[derive(Debug, Clone, Copy)]
pub struct ScalingConfig {
    pub interval: Duration,
    pub merge_after: Duration,
}

impl Default for ScalingConfig {
    fn default() -> ScalingConfig {
        ScalingConfig {
            interval: Duration::from_secs(1),
            merge_after: Duration::from_secs(900),
        }
    }
}

/// (index, log id, start, end) of an open shard.
type OpenShard = (u32, u64, u128, u128);

impl Streams {
    /// Starts the on-demand scaler on the current tokio runtime.
    pub fn spawn_autoscaler(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let cfg = this.config().scaling;
            let mut cold_since: HashMap<u64, Instant> = HashMap::new();
            let mut tick = tokio::time::interval(cfg.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.autoscale_once(&mut cold_since, cfg.merge_after).await;
            }
        })
    }

    /// The minimum open shards of an on-demand stream.
    fn min_shards(&self, warm_mibps: Option<i64>) -> usize {
        let per_shard_mib = self.config().limits.write_bytes_per_sec / (1024.0 * 1024.0);
        let warm = warm_mibps.map_or(0, |w| (w as f64 / per_shard_mib).ceil() as usize);
        warm.max(ON_DEMAND_MIN_SHARDS)
    }

    /// One pass of the scaler. Public for tests.
    pub async fn autoscale_once(
        &self,
        cold_since: &mut HashMap<u64, Instant>,
        merge_after: Duration,
    ) {
        let streams: Vec<(String, usize, Vec<OpenShard>)> = {
            let m = self.read();
            m.streams
                .values()
                .filter(|s| s.on_demand && effective_status(s) == Status::Active)
                .map(|s| {
                    let mut open: Vec<OpenShard> = s
                        .open_shards()
                        .map(|sh| (sh.index, sh.log_id, sh.start_hash, sh.end_hash))
                        .collect();
                    open.sort_by_key(|o| o.2);
                    (
                        s.name.clone(),
                        self.min_shards(s.warm_throughput_mibps),
                        open,
                    )
                })
                .collect()
        };
        let limits = self.config().limits;
        let now = Instant::now();
        for (name, min, open) in streams {
            let usage: Vec<_> = open.iter().map(|o| self.inner.limiter.usage(o.1)).collect();
            let load = |u: &crate::limits::Usage| {
                (u.bytes / limits.write_bytes_per_sec).max(u.records / limits.write_records_per_sec)
            };
            tracing::debug!(
                stream = %name,
                loads = ?usage.iter().map(|u| (load(u), u.throttled)).collect::<Vec<_>>(),
                "on-demand check"
            );
            let mut splits: Vec<OpenShard> = open
                .iter()
                .zip(&usage)
                .filter(|(_, u)| load(u) >= HOT || u.throttled >= 1.0)
                .map(|(o, _)| *o)
                .collect();
            // Below the minimum capacity: split the widest shards.
            if open.len() + splits.len() < min {
                let mut by_width: Vec<OpenShard> = open.clone();
                by_width.sort_by_key(|o| std::cmp::Reverse(o.3 - o.2));
                for o in by_width {
                    if open.len() + splits.len() >= min {
                        break;
                    }
                    if !splits.iter().any(|s| s.0 == o.0) {
                        splits.push(o);
                    }
                }
            }
            if !splits.is_empty() {
                if let Err(e) = self.scale_split(&name, &splits).await {
                    tracing::warn!(stream = %name, error = %e, "on-demand split");
                }
                continue;
            }
            // Merges: one adjacent cold pair per pass, never below the minimum.
            for (o, u) in open.iter().zip(&usage) {
                if load(u) < COLD {
                    cold_since.entry(o.1).or_insert(now);
                } else {
                    cold_since.remove(&o.1);
                }
            }
            if open.len() <= min {
                continue;
            }
            let cold_long = |o: &OpenShard| {
                cold_since
                    .get(&o.1)
                    .is_some_and(|t| now.duration_since(*t) >= merge_after)
            };
            if let Some(pair) = open
                .windows(2)
                .find(|w| cold_long(&w[0]) && cold_long(&w[1]))
            {
                let (a, b) = (pair[0], pair[1]);
                if let Err(e) = self.scale_merge(&name, a, b).await {
                    tracing::warn!(stream = %name, error = %e, "on-demand merge");
                }
                cold_since.remove(&a.1);
                cold_since.remove(&b.1);
                self.inner.limiter.forget(a.1);
                self.inner.limiter.forget(b.1);
            }
        }
    }

    async fn scale_split(&self, name: &str, shards: &[OpenShard]) -> crate::Result<()> {
        let gate = self.gate(name);
        let _no_puts = gate.write().await;
        let mut m = self.write();
        if !m
            .streams
            .get(name)
            .is_some_and(|s| s.on_demand && effective_status(s) == Status::Active)
        {
            return Ok(());
        }
        let mut done = 0;
        for &(index, log_id, start, end) in shards {
            let still_open = m.streams[name].shard(index).is_some_and(|s| s.is_open());
            if !still_open || end - start < 2 || self.check_shard_limit(&m, 1).is_err() {
                continue;
            }
            let mid = start + (end - start) / 2 + 1;
            self.split_at(&mut m, name, index, mid)?;
            self.inner.limiter.forget(log_id);
            done += 1;
        }
        if done > 0 {
            tracing::info!(stream = %name, splits = done, "on-demand scaling up");
            self.persist(&m)?;
        }
        Ok(())
    }

    async fn scale_merge(&self, name: &str, a: OpenShard, b: OpenShard) -> crate::Result<()> {
        let gate = self.gate(name);
        let _no_puts = gate.write().await;
        let mut m = self.write();
        let s = match m.streams.get(name) {
            Some(s) if s.on_demand && effective_status(s) == Status::Active => s,
            _ => return Ok(()),
        };
        let both_open = [a.0, b.0]
            .iter()
            .all(|i| s.shard(*i).is_some_and(|sh| sh.is_open()));
        if !both_open {
            return Ok(());
        }
        self.merge_pair(&mut m, name, a.0, b.0)?;
        tracing::info!(stream = %name, "on-demand scaling down");
        self.persist(&m)
    }
}
