//! Resharding: SplitShard, MergeShards and UpdateShardCount.
//!
//! Every reshard closes parent shards and opens children. A parent's
//! `ending_position` is its tip at the moment it closes; to make that exact,
//! a reshard holds the stream's write gate, which waits for in-flight puts to
//! finish and holds new ones back (puts hold the read side across routing
//! and the append). So no record lands in a parent after it closed, and none
//! is lost or duplicated across the boundary.
//!
//! UpdateShardCount is a sequence of the same splits and merges (as AWS does
//! it, producing short-lived intermediate shards), so the lineage always has
//! at most two parents per shard, and merged parents are always adjacent.

use eddy_wire::Value;

use crate::error::{Result, StreamsError};
use crate::hashkey::even_ranges;
use crate::meta::{Meta, Shard, Status, parse_shard_id};
use crate::{Streams, effective_status, now_ms};

/// Most open shards a stream may have (AWS's per-stream UpdateShardCount bound).
pub const MAX_SHARDS_PER_STREAM: usize = 10_000;
/// UpdateShardCount calls allowed per stream per rolling 24 hours.
pub const MAX_SCALINGS_PER_DAY: usize = 10;

impl Streams {
    /// Checks that the stream exists, is ACTIVE and provisioned.
    fn reshardable(&self, m: &Meta, name: &str) -> Result<()> {
        let s = m.streams.get(name).ok_or_else(|| self.not_found(name))?;
        if effective_status(s) != Status::Active {
            return Err(StreamsError::ResourceInUse(format!(
                "Stream {name} under account {} not ACTIVE, instead in state {}",
                self.account(),
                effective_status(s).as_str()
            )));
        }
        if s.on_demand {
            return Err(StreamsError::Validation(format!(
                "This operation is not supported for stream {name} under account {} because it is in ON_DEMAND mode.",
                self.account()
            )));
        }
        Ok(())
    }

    fn open_shard_of(&self, m: &Meta, name: &str, id: &str, verb: &str) -> Result<Shard> {
        let s = &m.streams[name];
        let shard = parse_shard_id(id)
            .and_then(|i| s.shard(i))
            .cloned()
            .ok_or_else(|| {
                StreamsError::ResourceNotFound(format!(
                    "Could not find shard {id} in stream {name} under account {}.",
                    self.account()
                ))
            })?;
        if !shard.is_open() {
            return Err(StreamsError::ResourceInUse(format!(
                "Shard {id} in stream {name} under account {} has already been merged or split, and thus is not eligible for {verb}.",
                self.account()
            )));
        }
        Ok(shard)
    }

    pub(crate) fn check_shard_limit(&self, m: &Meta, additional: u32) -> Result<()> {
        let current: u32 = m
            .streams
            .values()
            .map(|s| s.open_shards().count() as u32)
            .sum();
        if current.saturating_add(additional) > self.config().shard_limit {
            return Err(StreamsError::LimitExceeded(format!(
                "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {current}. Limit: {}. Number of additional shards that would have resulted from this request: {additional}. Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits.",
                self.account(),
                self.config().region,
                self.config().shard_limit
            )));
        }
        Ok(())
    }

    /// Closes an open shard at its current tip.
    fn close(&self, m: &mut Meta, name: &str, index: u32, now: i64) -> Result<()> {
        let s = m.streams.get_mut(name).expect("checked by caller");
        let shard = s
            .shards
            .iter_mut()
            .find(|sh| sh.index == index)
            .expect("checked by caller");
        assert!(shard.is_open(), "closing a closed shard");
        let tip = self.log().bounds(shard.log_id)?.tip;
        shard.ending_position = Some(tip);
        shard.closed_ms = Some(now);
        Ok(())
    }

    /// Opens a new shard over `[start, end]` with the given parents.
    fn open_child(
        &self,
        m: &mut Meta,
        name: &str,
        range: (u128, u128),
        parent: u32,
        adjacent_parent: Option<u32>,
        now: i64,
    ) -> Result<u32> {
        let log_id = m.next_log_shard;
        m.next_log_shard += 1;
        let s = m.streams.get_mut(name).expect("checked by caller");
        self.log().create_shard(log_id, s.group)?;
        let index = s.next_shard_index;
        s.next_shard_index += 1;
        s.shards.push(Shard {
            index,
            log_id,
            start_hash: range.0,
            end_hash: range.1,
            parent: Some(parent),
            adjacent_parent,
            created_ms: now,
            ending_position: None,
            closed_ms: None,
        });
        Ok(index)
    }

    /// Splits open shard `index` so that `new_start` begins the right child.
    /// Returns (left, right) child indexes.
    pub(crate) fn split_at(
        &self,
        m: &mut Meta,
        name: &str,
        index: u32,
        new_start: u128,
    ) -> Result<(u32, u32)> {
        let now = now_ms();
        let (start, end) = {
            let sh = m.streams[name].shard(index).expect("checked by caller");
            (sh.start_hash, sh.end_hash)
        };
        debug_assert!(start < new_start && new_start <= end);
        self.close(m, name, index, now)?;
        let left = self.open_child(m, name, (start, new_start - 1), index, None, now)?;
        let right = self.open_child(m, name, (new_start, end), index, None, now)?;
        Ok((left, right))
    }

    /// Merges two adjacent open shards; `a` becomes ParentShardId and `b`
    /// AdjacentParentShardId of the child. Returns the child index.
    pub(crate) fn merge_pair(&self, m: &mut Meta, name: &str, a: u32, b: u32) -> Result<u32> {
        let now = now_ms();
        let (ra, rb) = {
            let s = &m.streams[name];
            let sa = s.shard(a).expect("checked");
            let sb = s.shard(b).expect("checked");
            ((sa.start_hash, sa.end_hash), (sb.start_hash, sb.end_hash))
        };
        debug_assert!(ra.1.checked_add(1) == Some(rb.0) || rb.1.checked_add(1) == Some(ra.0));
        self.close(m, name, a, now)?;
        self.close(m, name, b, now)?;
        self.open_child(m, name, (ra.0.min(rb.0), ra.1.max(rb.1)), a, Some(b), now)
    }

    pub(crate) async fn split_shard(&self, input: &Value) -> Result<Value> {
        let name = self.stream_name(input)?;
        let gate = self.gate(&name);
        let _no_puts = gate.write().await;
        let mut m = self.write();
        self.reshardable(&m, &name)?;
        let id = input.str("ShardToSplit").unwrap_or_default();
        let shard = self.open_shard_of(&m, &name, id, "splitting")?;
        let key_text = input.str("NewStartingHashKey").unwrap_or_default();
        let key = key_text.parse::<u128>().ok();
        let valid =
            key.is_some_and(|k| k > shard.start_hash.saturating_add(1) && k < shard.end_hash);
        let Some(key) = key.filter(|_| valid) else {
            return Err(StreamsError::InvalidArgument(format!(
                "NewStartingHashKey {key_text} used in SplitShard() on shard {id} in stream {name} under account {} is not both greater than one plus the shard's StartingHashKey {} and less than the shard's EndingHashKey {}.",
                self.account(),
                shard.start_hash,
                shard.end_hash
            )));
        };
        self.check_shard_limit(&m, 1)?;
        self.split_at(&mut m, &name, shard.index, key)?;
        self.begin_transition(&mut m, &name, Status::Updating)?;
        Ok(Value::Null)
    }

    pub(crate) async fn merge_shards(&self, input: &Value) -> Result<Value> {
        let name = self.stream_name(input)?;
        let gate = self.gate(&name);
        let _no_puts = gate.write().await;
        let mut m = self.write();
        self.reshardable(&m, &name)?;
        let a_id = input.str("ShardToMerge").unwrap_or_default();
        let b_id = input.str("AdjacentShardToMerge").unwrap_or_default();
        let a = self.open_shard_of(&m, &name, a_id, "merging")?;
        let b = self.open_shard_of(&m, &name, b_id, "merging")?;
        let adjacent = a.end_hash.checked_add(1) == Some(b.start_hash)
            || b.end_hash.checked_add(1) == Some(a.start_hash);
        if !adjacent {
            return Err(StreamsError::InvalidArgument(format!(
                "Shards {a_id} and {b_id} in stream {name} under account {} are not an adjacent pair of shards eligible for merging",
                self.account()
            )));
        }
        self.merge_pair(&mut m, &name, a.index, b.index)?;
        self.begin_transition(&mut m, &name, Status::Updating)?;
        Ok(Value::Null)
    }

    pub(crate) async fn update_shard_count(&self, input: &Value) -> Result<Value> {
        let name = self.stream_name(input)?;
        let target = input.i64("TargetShardCount").unwrap_or_default();
        let gate = self.gate(&name);
        let _no_puts = gate.write().await;
        let mut m = self.write();
        self.reshardable(&m, &name)?;
        let now = now_ms();
        let current = m.streams[&name].open_shards().count() as i64;
        let account = self.account().to_string();
        let limit_err = |why: String| {
            StreamsError::LimitExceeded(format!(
                "UpdateShardCount request for stream {name} under account {account} failed: {why}"
            ))
        };
        if target > current * 2 {
            return Err(limit_err(format!(
                "the target shard count {target} is more than double the current open shard count {current}."
            )));
        }
        if target * 2 < current {
            return Err(limit_err(format!(
                "the target shard count {target} is less than half the current open shard count {current}."
            )));
        }
        if target as usize > MAX_SHARDS_PER_STREAM {
            return Err(limit_err(format!(
                "the target shard count {target} is more than the per-stream maximum of {MAX_SHARDS_PER_STREAM}."
            )));
        }
        let day_ago = now - 24 * 3600 * 1000;
        let recent = m.streams[&name]
            .scalings_ms
            .iter()
            .filter(|&&t| t > day_ago)
            .count();
        if recent >= MAX_SCALINGS_PER_DAY {
            return Err(limit_err(format!(
                "the stream was already scaled {recent} times in the last 24 hours (limit {MAX_SCALINGS_PER_DAY})."
            )));
        }
        let target = target as u32;
        self.check_shard_limit(&m, target.saturating_sub(current as u32))?;
        let ranges = even_ranges(target);
        // 1. Split every open shard at each target boundary strictly inside it.
        let boundaries: Vec<u128> = ranges.iter().skip(1).map(|r| r.0).collect();
        let mut open: Vec<(u128, u128, u32)> = m.streams[&name]
            .open_shards()
            .map(|s| (s.start_hash, s.end_hash, s.index))
            .collect();
        open.sort_unstable();
        let mut pieces: Vec<(u128, u128, u32)> = Vec::new();
        for (start, end, index) in open {
            let mut cur = (start, end, index);
            for &b in boundaries.iter().filter(|&&b| b > start && b <= end) {
                let (left, right) = self.split_at(&mut m, &name, cur.2, b)?;
                pieces.push((cur.0, b - 1, left));
                cur = (b, cur.1, right);
            }
            pieces.push(cur);
        }
        // 2. Merge the pieces inside each target range, left to right.
        let mut i = 0;
        for (rs, re) in ranges {
            let mut acc: Option<(u128, u32)> = None; // (end of merged so far, index)
            while i < pieces.len() && pieces[i].1 <= re {
                debug_assert!(pieces[i].0 >= rs);
                acc = Some(match acc {
                    None => (pieces[i].1, pieces[i].2),
                    Some((_, idx)) => (
                        pieces[i].1,
                        self.merge_pair(&mut m, &name, idx, pieces[i].2)?,
                    ),
                });
                i += 1;
            }
            debug_assert_eq!(acc.map(|a| a.0), Some(re), "target range fully covered");
        }
        debug_assert_eq!(i, pieces.len());
        let s = m.streams.get_mut(&name).expect("checked");
        s.scalings_ms.retain(|&t| t > day_ago);
        s.scalings_ms.push(now);
        self.begin_transition(&mut m, &name, Status::Updating)?;
        Ok(Value::map()
            .with("StreamName", name.as_str())
            .with("StreamARN", self.stream_arn(&name))
            .with("CurrentShardCount", current)
            .with("TargetShardCount", target))
    }
}
