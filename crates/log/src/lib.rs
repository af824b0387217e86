//! `eddy-log`: the storage engine under every Eddy shard.
//!
//! Owns: appending batches of opaque records (key + value) to many shards,
//! group commit under a configurable durability, reads by position and by
//! arrival time, waiting for new data, retention per group (a group is what
//! the Data Streams layer calls a stream), crash recovery.
//! Knows nothing of AWS: positions are plain `u64` counters per shard that the
//! layer above turns into sequence numbers.
//!
//! THE PUBLIC API BELOW IS A CONTRACT used by `eddy-streams`.
//!
//! Design: `docs/adr/0001-storage-engine.md`. Modules:
//! - [`frame`]: checksummed batch frame format;
//! - `index`: frame references, spans, persisted sidecar indexes;
//! - `meta`: durable catalogue (shards, groups, retention, deletions);
//! - `writer`: the single writer thread, group commit, segment roll, failure
//!   handling;
//! - `engine`: shared state, reads, seeks, retention pass;
//! - `compaction`: rewriting mostly-dead sealed segments;
//! - `recovery`: startup and crash recovery;
//! - [`fs`]: file-system trait + real implementation; [`simfs`]: simulated,
//!   fault-injecting implementation for tests.

mod compaction;
mod engine;
pub mod frame;
pub mod fs;
mod index;
mod meta;
mod recovery;
pub mod simfs;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, oneshot};

use crate::engine::Inner;
use crate::fs::FileSystem;
use crate::meta::MetaOp;
use crate::writer::{Request, Writer};

pub use crate::frame::MAX_RECORD_BYTES;

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

/// The system wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
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

impl LogConfig {
    /// Defaults: `Durability::Fsync`, `SystemClock`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogConfig {
            dir: dir.into(),
            durability: Durability::Fsync,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Engine tuning knobs beyond [`LogConfig`] (all have sensible defaults).
#[derive(Clone)]
pub struct Options {
    /// A segment is sealed and a new one started past this size.
    pub segment_bytes: u64,
    /// File system to use; `None` means the real one. Tests inject
    /// [`simfs::SimFs`].
    pub fs: Option<Arc<dyn FileSystem>>,
    /// How often the background retention pass runs.
    pub maintenance_interval: Duration,
    /// Open segment files kept for reads (LRU).
    pub max_open_files: usize,
    /// Sealed-segment index entries kept in memory (LRU, ~40 B each).
    pub index_cache_entries: usize,
    /// Bytes of appends queued for the writer before `append` waits.
    pub max_inflight_bytes: usize,
    /// The active segment is sealed once it has held data this long, so
    /// retention and compaction reach its data within minutes.
    pub max_segment_age: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: 64 << 20,
            fs: None,
            maintenance_interval: Duration::from_secs(30),
            max_open_files: 64,
            index_cache_entries: 1 << 20,
            max_inflight_bytes: 256 << 20,
            max_segment_age: Duration::from_secs(300),
        }
    }
}

/// Threads and the request channel; dropping the last handle stops them.
struct Control {
    tx: RwLock<Option<std::sync::mpsc::Sender<Request>>>,
    permits: Arc<Semaphore>,
    permit_cap: u32,
    writer: Mutex<Option<JoinHandle<()>>>,
    bg_stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    bg: Mutex<Option<JoinHandle<()>>>,
    /// Directory lock, released at shutdown or drop.
    dir_lock: Mutex<Option<std::fs::File>>,
}

impl Drop for Control {
    fn drop(&mut self) {
        // Closing the channel makes the writer fsync and exit; closing the
        // stop channel ends the retention thread. Waiting for both means a
        // new engine on the same directory never overlaps this one.
        self.tx.write().unwrap().take();
        self.bg_stop.lock().unwrap().take();
        if let Some(h) = self.writer.lock().unwrap().take() {
            let _ = h.join();
        }
        if let Some(h) = self.bg.lock().unwrap().take() {
            let _ = h.join();
        }
    }
}

/// Exclusive lock on the engine directory (real file system only), so two
/// engines (threads or processes) never write the same journal.
fn lock_dir(dir: &std::path::Path) -> Result<std::fs::File, LogError> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))?;
    // SAFETY: flock on a file descriptor we own, valid for the call.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        return Err(LogError::Failed(format!(
            "{} is in use by another engine: {}",
            dir.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(f)
}

/// The engine. Cheap to clone (shared handle); all methods take `&self` and
/// are safe to call from many tasks and threads at once.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
    ctl: Arc<Control>,
}

impl Log {
    /// Opens (creating if needed) the engine in `config.dir`, running crash
    /// recovery. Logs the durability in force.
    pub fn open(config: LogConfig) -> Result<Log, LogError> {
        Log::open_with(config, Options::default())
    }

    /// [`Log::open`] with explicit [`Options`].
    pub fn open_with(config: LogConfig, options: Options) -> Result<Log, LogError> {
        assert!(options.segment_bytes > 0 && options.max_inflight_bytes >= 1024);
        let started = std::time::Instant::now();
        let dir_lock = match options.fs {
            None => Some(lock_dir(&config.dir)?),
            Some(_) => None,
        };
        let (inner, active) = recovery::recover(&config, &options)?;
        let (shards, sealed) = {
            let st = inner.state.read().unwrap();
            (st.shards.len(), st.sealed.len())
        };
        tracing::info!(
            dir = %config.dir.display(),
            durability = ?config.durability,
            shards,
            sealed_segments = sealed,
            active_segment = active.seg,
            recovery_ms = started.elapsed().as_millis() as u64,
            "eddy-log opened"
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = Writer::new(inner.clone(), rx, active);
        let wh = std::thread::Builder::new()
            .name("eddy-log-writer".into())
            .spawn(move || writer.run())?;
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let bg_inner = inner.clone();
        let interval = options.maintenance_interval;
        let bh = std::thread::Builder::new()
            .name("eddy-log-retention".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stop_rx.recv_timeout(interval)
                {
                    if let Err(e) = bg_inner.run_retention() {
                        tracing::warn!(error = %e, "retention pass failed; will retry");
                    }
                    if let Err(e) = bg_inner.run_compaction() {
                        tracing::warn!(error = %e, "compaction pass failed; will retry");
                    }
                }
            })?;
        let permit_cap = (options.max_inflight_bytes / 1024).min(u32::MAX as usize >> 4) as u32;
        Ok(Log {
            inner,
            ctl: Arc::new(Control {
                tx: RwLock::new(Some(tx)),
                permits: Arc::new(Semaphore::new(permit_cap as usize)),
                permit_cap,
                writer: Mutex::new(Some(wh)),
                bg_stop: Mutex::new(Some(stop_tx)),
                bg: Mutex::new(Some(bh)),
                dir_lock: Mutex::new(dir_lock),
            }),
        })
    }

    /// Registers a new, empty shard in retention group `group`. Durable when
    /// it returns. Errors with `ShardExists` if the id was ever used.
    pub fn create_shard(&self, shard: ShardId, group: GroupId) -> Result<(), LogError> {
        self.inner.create_shard(shard, group)
    }

    /// Whether `shard` exists and is not deleted.
    pub fn shard_exists(&self, shard: ShardId) -> bool {
        self.inner.state.read().unwrap().shards.contains_key(&shard)
    }

    /// Deletes one shard (its data stops being readable at once; space is
    /// reclaimed in the background). Durable when it returns.
    pub fn delete_shard(&self, shard: ShardId) -> Result<(), LogError> {
        if !self.shard_exists(shard) {
            return Err(LogError::UnknownShard(shard));
        }
        self.inner.delete(MetaOp::DeleteShard { shard })
    }

    /// Appends the given batches (any number of shards; a shard may appear
    /// once per call). Completes when everything is durable under the
    /// configured durability; concurrent calls share fsyncs (group commit).
    /// Returns one `Appended` per input `ShardAppend`, in order. On error
    /// nothing of this call is acknowledged (it may or may not survive).
    /// Records become readable (and waiters wake) only once durable.
    pub async fn append(&self, batch: Vec<ShardAppend>) -> Result<Vec<Appended>, LogError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut bytes = 0usize;
        for sa in &batch {
            for r in &sa.records {
                let n = r.key.len() + r.value.len();
                if n > MAX_RECORD_BYTES {
                    return Err(LogError::TooLarge(n));
                }
                bytes += n + frame::RECORD_OVERHEAD;
            }
            bytes += frame::HEADER_LEN;
        }
        {
            let st = self.inner.state.read().unwrap();
            if st.closed {
                return Err(LogError::Closed);
            }
            if let Some(sa) = batch.iter().find(|sa| !st.shards.contains_key(&sa.shard)) {
                return Err(LogError::UnknownShard(sa.shard));
            }
        }
        let n = ((bytes / 1024) as u32 + 1).min(self.ctl.permit_cap);
        let permit = self
            .ctl
            .permits
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| LogError::Closed)?;
        let (reply, rx) = oneshot::channel();
        {
            let tx = self.ctl.tx.read().unwrap();
            let tx = tx.as_ref().ok_or(LogError::Closed)?;
            tx.send(Request::Append {
                batch,
                bytes,
                reply,
                _permit: permit,
            })
            .map_err(|_| LogError::Closed)?;
        }
        let (result, spent) = rx.await.map_err(|_| LogError::Closed)?;
        drop(spent);
        result
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
        self.inner.read(shard, from, max_records, max_bytes)
    }

    /// The readable range of a shard.
    pub fn bounds(&self, shard: ShardId) -> Result<ShardBounds, LogError> {
        self.inner.bounds(shard)
    }

    /// Position of the first readable record whose arrival time is at or
    /// after `timestamp_ms` (the tip if there is none). O(log n).
    pub fn position_at_time(&self, shard: ShardId, timestamp_ms: i64) -> Result<u64, LogError> {
        self.inner
            .with_retry(|| self.inner.position_at_time(shard, timestamp_ms))
            .map(|(p, _)| p)
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
        let mut rx = {
            let st = self.inner.state.read().unwrap();
            self.inner.live_shard(&st, shard)?.tx.subscribe()
        };
        let waited = tokio::time::timeout(
            timeout,
            rx.wait_for(|t| t.gone || t.closed || t.tip > position),
        )
        .await
        .map(|r| r.map(|s| *s));
        let sig = match waited {
            Ok(Ok(sig)) => sig,
            Ok(Err(_)) => return Err(LogError::UnknownShard(shard)),
            Err(_) => *rx.borrow(),
        };
        if sig.closed {
            Err(LogError::Closed)
        } else if sig.gone {
            Err(LogError::UnknownShard(shard))
        } else {
            Ok(sig.tip)
        }
    }

    /// Sets how long data of `group` stays readable (24 h to 8,760 h in the
    /// Data Streams layer; any positive duration here). Durable when it
    /// returns. Groups default to 24 h.
    pub fn set_retention(&self, group: GroupId, retention: Duration) -> Result<(), LogError> {
        self.inner
            .set_retention(group, retention.as_millis().min(u64::MAX as u128) as u64)
    }

    /// Deletes a whole group: its shards stop being readable at once and
    /// their disk space is reclaimed in the background. Durable when it
    /// returns.
    pub fn delete_group(&self, group: GroupId) -> Result<(), LogError> {
        self.inner.delete(MetaOp::DeleteGroup { group })
    }

    /// Runs one retention pass now (it also runs in the background every
    /// `Options::maintenance_interval`). Returns the segments deleted.
    pub fn run_retention(&self) -> Result<usize, LogError> {
        self.inner.run_retention()
    }

    /// Runs one compaction pass now: sealed segments that are at least half
    /// dead (deleted shards, expired data) are rewritten without the dead
    /// frames. Also runs in the background. Returns the segments rewritten.
    pub fn run_compaction(&self) -> Result<usize, LogError> {
        self.inner.run_compaction()
    }

    /// (sealed segments, open segment file handles): for tests and metrics.
    pub fn segment_stats(&self) -> (usize, usize) {
        self.inner.stats()
    }

    /// Flushes and fsyncs everything, stops background work. Further calls
    /// fail with `Closed`.
    pub async fn shutdown(&self) -> Result<(), LogError> {
        let tx = self
            .ctl
            .tx
            .write()
            .unwrap()
            .take()
            .ok_or(LogError::Closed)?;
        let (reply, rx) = oneshot::channel();
        let sent = tx.send(Request::Shutdown { reply }).is_ok();
        drop(tx);
        let res = if sent {
            rx.await.unwrap_or(Err(LogError::Closed))
        } else {
            Err(LogError::Closed)
        };
        if let Some(h) = self.ctl.writer.lock().unwrap().take() {
            let _ = h.join();
        }
        self.ctl.bg_stop.lock().unwrap().take();
        if let Some(h) = self.ctl.bg.lock().unwrap().take() {
            let _ = h.join();
        }
        {
            let mut st = self.inner.state.write().unwrap();
            st.closed = true;
            for sh in st.shards.values() {
                sh.tx.send_modify(|t| t.closed = true);
            }
        }
        // Persist tips as floors so a clean restart needs no scanning beyond
        // the active segment.
        let snap = self.inner.snapshot_state();
        self.inner.meta.lock().unwrap().write_snapshot(&snap)?;
        self.ctl.dir_lock.lock().unwrap().take();
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_handle_is_clone_send_sync_and_append_future_is_send() {
        fn clone_send_sync<T: Clone + Send + Sync + 'static>() {}
        clone_send_sync::<Log>();
        fn send<T: Send>(_: &T) {}
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(LogConfig::new(dir.path())).unwrap();
        let fut = log.append(Vec::new());
        send(&fut);
        let waiter = log.wait_for(0, 0, Duration::from_millis(1));
        send(&waiter);
    }
}
