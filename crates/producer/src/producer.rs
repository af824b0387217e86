//! The public handle: [`Producer::send`] validates a record, waits for room
//! under the outstanding-records/bytes bounds (or fails fast), hands it to
//! the dispatcher task and returns a [`PendingRecord`]. [`Producer::flush`]
//! and [`Producer::shutdown`] wait for everything outstanding.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::client::KinesisApi;
use crate::config::{ProducerConfig, limits};
use crate::dispatcher::{Command, Dispatcher, UserRec};
use crate::error::{PutError, SendError};

/// Where a record was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    pub shard_id: Arc<str>,
    pub sequence_number: Arc<str>,
    /// Index within the aggregate, for an aggregated record.
    pub sub_sequence_number: Option<u64>,
    /// PutRecords calls this record took part in.
    pub attempts: u32,
}

/// The future result of one `send`.
#[must_use = "a PendingRecord resolves to the record's fate"]
pub struct PendingRecord {
    rx: crate::completion::Receiver,
}

impl PendingRecord {
    /// The result if the record has completed, without waiting; `None`
    /// while it is still on its way.
    pub fn try_result(&mut self) -> Option<Result<PutResult, PutError>> {
        self.rx.try_take()
    }
}

impl Future for PendingRecord {
    type Output = Result<PutResult, PutError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.rx.poll(cx)
    }
}

/// The backpressure bounds. Permits are taken in `send` and given back in
/// bulk when records complete (no permit object per record).
#[derive(Debug)]
pub(crate) struct Bounds {
    pub records: Semaphore,
    pub bytes: Semaphore,
}

/// Counters for progress displays (the `metrics` facade carries the same
/// for exporters), and the bounds.
#[derive(Debug)]
pub(crate) struct Counters {
    pub bounds: Bounds,
    pub outstanding: AtomicU64,
    pub user_records_put: AtomicU64,
    pub user_bytes_put: AtomicU64,
    pub kinesis_records_put: AtomicU64,
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttles: AtomicU64,
    pub failed: AtomicU64,
    /// Buffers of aggregates whose records were put, for new aggregates.
    pub recycled: std::sync::Mutex<Recycled>,
}

/// Aggregates (emptied) and user-record lists (empty) whose records were
/// put, given back by the request tasks for the dispatcher to fill again:
/// fresh buffers of this size cost page faults as they are first written.
#[derive(Default)]
pub(crate) struct Recycled {
    pub buffers: Vec<(crate::aggregation::Aggregate, Vec<UserRec>)>,
}

impl std::fmt::Debug for Recycled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recycled")
            .field("buffers", &self.buffers.len())
            .finish()
    }
}

/// Most aggregate buffers kept for reuse.
pub(crate) const MAX_RECYCLED: usize = 256;

/// A snapshot of the producer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub outstanding: u64,
    pub user_records_put: u64,
    pub user_bytes_put: u64,
    pub kinesis_records_put: u64,
    pub requests: u64,
    pub retries: u64,
    pub throttles: u64,
    pub failed: u64,
}

struct Inner {
    tx: mpsc::Sender<Command>,
    config: ProducerConfig,
    closed: AtomicBool,
    counters: Arc<Counters>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// A producer; cheap to clone, all clones share one dispatcher.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

/// Capacity of the channel from `send` to the dispatcher; records beyond it
/// wait in `send` (the outstanding bounds hold in any case).
const COMMAND_CHANNEL: usize = 16 * 1024;
/// Stream names remembered by each sending thread (the cache is cleared
/// beyond it).
const MAX_CACHED_STREAM_NAMES: usize = 16;

impl Producer {
    /// Starts a producer on the current tokio runtime.
    pub fn new(client: impl KinesisApi, config: ProducerConfig) -> Producer {
        let config = config.normalized();
        let (tx, rx) = mpsc::channel(COMMAND_CHANNEL);
        let counters = Arc::new(Counters {
            bounds: Bounds {
                records: Semaphore::new(config.max_outstanding_records),
                bytes: Semaphore::new(config.max_outstanding_bytes),
            },
            outstanding: AtomicU64::new(0),
            user_records_put: AtomicU64::new(0),
            user_bytes_put: AtomicU64::new(0),
            kinesis_records_put: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            recycled: Default::default(),
        });
        let dispatcher = Dispatcher::new(Arc::new(client), config.clone(), counters.clone());
        let task = tokio::spawn(dispatcher.run(rx));
        Producer {
            inner: Arc::new(Inner {
                tx,
                config,
                closed: AtomicBool::new(false),
                counters,
                task: Mutex::new(Some(task)),
            }),
        }
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.inner.config
    }

    /// Sends a record routed by the MD5 of its partition key. (An owned
    /// `String` key is moved, not copied.)
    pub async fn send(
        &self,
        stream: &str,
        partition_key: impl Into<String>,
        data: Bytes,
    ) -> Result<PendingRecord, SendError> {
        self.send_with_hash_key(stream, partition_key, None, data)
            .await
    }

    /// Sends a record; an explicit hash key (decimal, < 2^128) overrides the
    /// partition key's hash for routing.
    pub async fn send_with_hash_key(
        &self,
        stream: &str,
        partition_key: impl Into<String>,
        explicit_hash_key: Option<&str>,
        data: Bytes,
    ) -> Result<PendingRecord, SendError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(SendError::Closed);
        }
        let partition_key: String = partition_key.into();
        // Bytes bound characters from above: count only long keys.
        let n = partition_key.len();
        if n == 0
            || (n > limits::MAX_PARTITION_KEY_CHARS
                && partition_key.chars().count() > limits::MAX_PARTITION_KEY_CHARS)
        {
            return Err(SendError::PartitionKey(partition_key.chars().count()));
        }
        let hash = match explicit_hash_key {
            Some(ehk) => ehk
                .parse::<u128>()
                .ok()
                .filter(|_| ehk.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| SendError::ExplicitHashKey(ehk.to_string()))?,
            // The dispatcher hashes partition keys, many at a time.
            None => 0,
        };
        let size = data.len() + partition_key.len();
        if size > limits::MAX_RECORD_BYTES {
            return Err(SendError::TooLarge(size));
        }
        let inner = &*self.inner;
        let bounds = &inner.counters.bounds;
        if inner.config.fail_fast {
            let r = bounds.records.try_acquire().map_err(|_| SendError::Full)?;
            match bounds.bytes.try_acquire_many(size as u32) {
                Ok(b) => b.forget(),
                Err(_) => return Err(SendError::Full),
            }
            r.forget();
        } else {
            // Without waiting when there is room (no acquire future); a
            // semaphore with waiters has no permits left, so this does not
            // overtake them.
            match bounds.records.try_acquire() {
                Ok(p) => p.forget(),
                Err(_) => bounds
                    .records
                    .acquire()
                    .await
                    .map_err(|_| SendError::Closed)?
                    .forget(),
            }
            match bounds.bytes.try_acquire_many(size as u32) {
                Ok(p) => p.forget(),
                Err(_) => bounds
                    .bytes
                    .acquire_many(size as u32)
                    .await
                    .map_err(|_| SendError::Closed)?
                    .forget(),
            }
        }
        let now = Instant::now();
        let (reply, rx) = crate::completion::slot();
        let rec = UserRec {
            stream: self.stream_name(stream),
            partition_key,
            explicit_hash_key: explicit_hash_key.map(Box::from),
            hash,
            data,
            arrived: now,
            deadline: now + inner.config.record_ttl,
            not_before: now,
            attempts: 0,
            last_error: None,
            reply,
            bound_bytes: size as u32,
        };
        inner.counters.outstanding.fetch_add(1, Ordering::AcqRel);
        // Without a send future (and its copy of the record) when the
        // channel has room, as it has but when the dispatcher falls behind.
        let sent = match inner.tx.try_send(Command::Record(rec)) {
            // A send that never waits still gives the runtime its turn now
            // and then, as the channel's send future would, so a sending
            // loop does not starve the dispatcher and request tasks.
            Ok(()) => {
                tokio::task::coop::consume_budget().await;
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(cmd)) => inner.tx.send(cmd).await.map_err(|_| ()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
        };
        if sent.is_err() {
            inner.counters.outstanding.fetch_sub(1, Ordering::AcqRel);
            bounds.records.add_permits(1);
            bounds.bytes.add_permits(size);
            return Err(SendError::Closed);
        }
        Ok(PendingRecord { rx })
    }

    /// The name of a stream as an `Arc` of the calling thread's own (one
    /// allocation per stream and thread, not per record): records of one
    /// thread share it, and threads do not contend on one `Arc`'s counts.
    fn stream_name(&self, stream: &str) -> Arc<str> {
        thread_local! {
            static NAMES: std::cell::RefCell<Vec<Arc<str>>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        NAMES.with(|names| {
            let mut names = names.borrow_mut();
            if let Some(a) = names.iter().find(|a| ***a == *stream) {
                return a.clone();
            }
            if names.len() >= MAX_CACHED_STREAM_NAMES {
                names.clear();
            }
            let a: Arc<str> = Arc::from(stream);
            names.push(a.clone());
            a
        })
    }

    /// Sends everything buffered now and waits until no record is
    /// outstanding (records sent meanwhile extend the wait, as the KPL's
    /// flushSync does).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Command::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Refuses new records, waits for every outstanding one to complete
    /// (each within its TTL), and stops the dispatcher.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let _ = self.inner.tx.send(Command::Shutdown).await;
        let task = self.inner.task.lock().await.take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Records accepted and not yet completed.
    pub fn outstanding(&self) -> u64 {
        self.inner.counters.outstanding.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            outstanding: l(&c.outstanding),
            user_records_put: l(&c.user_records_put),
            user_bytes_put: l(&c.user_bytes_put),
            kinesis_records_put: l(&c.kinesis_records_put),
            requests: l(&c.requests),
            retries: l(&c.retries),
            throttles: l(&c.throttles),
            failed: l(&c.failed),
        }
    }
}
