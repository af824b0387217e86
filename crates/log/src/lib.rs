//! `eddy-log`: the storage engine under every Eddy shard.
//!
//! Owns: appending batches of opaque records (key + value) to many shards,
//! group commit under a configurable durability, reads by position and by
//! arrival time, waiting for new data, retention per group (a group is what
//! the Data Streams layer calls a stream), crash recovery.
//! Knows nothing of AWS: positions are plain `u64` counters per shard that the
//! layer above turns into sequence numbers.
//!
//! THE PUBLIC API BELOW IS A CONTRACT used by `eddy-streams`; the bodies are
//! being implemented (see issue "Storage engine").

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

/// Engine-level shard identity, allocated by the caller; never reused.
pub type ShardId = u64;
/// Retention group (a stream). Retention and deletion apply per group.
pub type GroupId = u64;

/// What "acknowledged" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// An append completes only after its data is fdatasync'd (default).
    Fsync,
    /// Appends complete once written; the engine fsyncs every interval.
    Interval(Duration),
    /// Page cache only (tests and benchmarks).
    None,
}

/// Source of wall-clock time in milliseconds since the Unix epoch.
/// Tests substitute a manual clock to exercise retention.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

#[derive(Clone)]
pub struct LogConfig {
    pub dir: PathBuf,
    pub durability: Durability,
    /// Wall clock used to stamp arrival times and to expire data.
    pub clock: std::sync::Arc<dyn Clock>,
}

/// One record to append. `key` and `value` are opaque to the engine.
#[derive(Debug, Clone)]
pub struct AppendRecord {
    pub key: Bytes,
    pub value: Bytes,
}

/// The records for one shard within an [`Log::append`] call.
#[derive(Debug, Clone)]
pub struct ShardAppend {
    pub shard: ShardId,
    pub records: Vec<AppendRecord>,
}

/// Where the records of one [`ShardAppend`] landed: record `i` has position
/// `first_position + i`; all share `timestamp_ms` (arrival time, never
/// decreasing within a shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first_position: u64,
    pub timestamp_ms: i64,
}

/// A stored record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub position: u64,
    pub timestamp_ms: i64,
    pub key: Bytes,
    pub value: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    pub records: Vec<LogRecord>,
    /// Position to continue from (one past the last returned record, or the
    /// effective start if nothing was returned).
    pub next_position: u64,
}

/// Readable range of a shard: positions `trim_horizon..tip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardBounds {
    /// First readable (unexpired) position.
    pub trim_horizon: u64,
    /// Next position to be written (one past the newest durable record).
    pub tip: u64,
    /// Arrival time of the newest record, if any was ever written.
    pub last_timestamp_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("unknown shard {0}")]
    UnknownShard(ShardId),
    #[error("shard {0} already exists")]
    ShardExists(ShardId),
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage is refusing writes after an unrecoverable error: {0}")]
    Failed(String),
    #[error("record too large: {0} bytes")]
    TooLarge(usize),
    #[error("storage engine is shut down")]
    Closed,
}

/// The engine. Cheap to clone (shared handle); all methods take `&self` and
/// are safe to call from many tasks and threads at once.
#[derive(Clone)]
pub struct Log {
    _private: (),
}

impl Log {
    /// Opens (creating if needed) the engine in `config.dir`, running crash
    /// recovery. Logs the durability in force.
    pub fn open(config: LogConfig) -> Result<Log, LogError> {
        let _ = config;
        todo!("storage engine")
    }

    /// Registers a new, empty shard in retention group `group`. Durable when
    /// it returns. Errors with `ShardExists` if the id was ever used.
    pub fn create_shard(&self, shard: ShardId, group: GroupId) -> Result<(), LogError> {
        let _ = (shard, group);
        todo!()
    }

    /// Appends the given batches (any number of shards; a shard may appear
    /// once per call). Completes when everything is durable under the
    /// configured durability; concurrent calls share fsyncs (group commit).
    /// Returns one `Appended` per input `ShardAppend`, in order. On error
    /// nothing of this call is acknowledged (it may or may not survive).
    /// Records become readable (and waiters wake) only once durable.
    pub async fn append(&self, batch: Vec<ShardAppend>) -> Result<Vec<Appended>, LogError> {
        let _ = batch;
        todo!()
    }

    /// Reads up to `max_records` records and about `max_bytes` of key+value
    /// bytes (at least one record if any is available) starting at `from`.
    /// A `from` below the trim horizon starts at the trim horizon; a `from`
    /// at or past the tip returns nothing. Never blocks writers.
    pub fn read(
        &self,
        shard: ShardId,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadResult, LogError> {
        let _ = (shard, from, max_records, max_bytes);
        todo!()
    }

    /// The readable range of a shard.
    pub fn bounds(&self, shard: ShardId) -> Result<ShardBounds, LogError> {
        let _ = shard;
        todo!()
    }

    /// Position of the first readable record whose arrival time is at or
    /// after `timestamp_ms` (the tip if there is none). O(log n).
    pub fn position_at_time(&self, shard: ShardId, timestamp_ms: i64) -> Result<u64, LogError> {
        let _ = (shard, timestamp_ms);
        todo!()
    }

    /// Waits until the shard's tip is greater than `position` (data at
    /// `position` is readable), or the timeout passes, or the shard is
    /// deleted. Returns the tip at wake-up. No polling.
    pub async fn wait_for(
        &self,
        shard: ShardId,
        position: u64,
        timeout: Duration,
    ) -> Result<u64, LogError> {
        let _ = (shard, position, timeout);
        todo!()
    }

    /// Sets how long data of `group` stays readable (24 h to 8,760 h in the
    /// Data Streams layer; any positive duration here). Durable when it
    /// returns. Groups default to 24 h.
    pub fn set_retention(&self, group: GroupId, retention: Duration) -> Result<(), LogError> {
        let _ = (group, retention);
        todo!()
    }

    /// Deletes a whole group: its shards stop being readable at once and
    /// their disk space is reclaimed in the background. Durable when it
    /// returns.
    pub fn delete_group(&self, group: GroupId) -> Result<(), LogError> {
        let _ = group;
        todo!()
    }

    /// Flushes and fsyncs everything, stops background work. Further calls
    /// fail with `Closed`.
    pub async fn shutdown(&self) -> Result<(), LogError> {
        todo!()
    }
}
