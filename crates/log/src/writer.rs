//! The single writer thread: group commit into the active segment.
//!
//! Owns: the active segment file, assigning positions and timestamps,
//! encoding frames, one write + one fdatasync per commit group, publishing
//! tips (only after data is durable under the configured durability),
//! rolling/sealing segments (sidecar index), and recovering from write and
//! fsync failures by discarding the unacknowledged tail and rolling.
//!
//! Requests arrive on a channel whose capacity is bounded by a byte
//! semaphore held by each request until it completes.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::engine::{Inner, SealedSeg};
use crate::frame::{self, MAX_FRAME_PAYLOAD, RECORD_OVERHEAD};
use crate::fs::{FileHandle, segment_path, sidecar_name};
use crate::index::{self, FrameRef};
use crate::{Appended, Durability, LogError, ShardAppend, ShardId};

/// Upper bound of bytes gathered into one commit group.
const MAX_GROUP_BYTES: usize = 16 << 20;
/// Upper bound of requests gathered into one commit group.
const MAX_GROUP_REQUESTS: usize = 4096;

/// The answer to an append, with the request's records handed back: the
/// caller's thread drops them, so their buffers are freed where they were
/// allocated (freeing them here costs the allocator cross-thread locking on
/// the single writer thread, which every append waits for).
pub(crate) type Reply = oneshot::Sender<(Result<Vec<Appended>, LogError>, Vec<ShardAppend>)>;

pub(crate) enum Request {
    Append {
        batch: Vec<ShardAppend>,
        bytes: usize,
        reply: Reply,
        _permit: OwnedSemaphorePermit,
    },
    Shutdown {
        reply: oneshot::Sender<Result<(), LogError>>,
    },
}

/// Where recovery left the active segment.
pub(crate) struct ActiveInit {
    pub seg: u64,
    pub file: Arc<dyn FileHandle>,
    pub len: u64,
    pub refs: Vec<(ShardId, FrameRef)>,
}

pub(crate) struct Writer {
    inner: Arc<Inner>,
    rx: Receiver<Request>,
    seg: u64,
    file: Arc<dyn FileHandle>,
    /// End of acknowledged data in the active segment.
    len: u64,
    /// End of fdatasync'd data.
    synced: u64,
    seg_refs: Vec<(ShardId, FrameRef)>,
    buf: Vec<u8>,
    failed: Option<String>,
    last_sync: Instant,
    /// When the active segment got its first data.
    seg_started: Instant,
}

fn io_copy(e: &io::Error) -> LogError {
    LogError::Io(io::Error::new(e.kind(), e.to_string()))
}

impl Writer {
    pub fn new(inner: Arc<Inner>, rx: Receiver<Request>, a: ActiveInit) -> Writer {
        Writer {
            inner,
            rx,
            seg: a.seg,
            file: a.file,
            len: a.len,
            synced: a.len,
            seg_refs: a.refs,
            buf: Vec::new(),
            failed: None,
            last_sync: Instant::now(),
            seg_started: Instant::now(),
        }
    }

    pub fn run(mut self) {
        loop {
            // Wake for a due interval fsync, or to seal a segment that has
            // been open too long (so retention and compaction can reach its
            // data within minutes even when traffic is low).
            let mut deadline: Option<Instant> = None;
            if let Durability::Interval(d) = self.inner.durability
                && self.synced < self.len
            {
                deadline = Some(self.last_sync + d);
            }
            if self.len > 0 {
                let age = self.seg_started + self.inner.opts.max_segment_age;
                deadline = Some(deadline.map_or(age, |d| d.min(age)));
            }
            let first = match deadline {
                Some(dl) => match self
                    .rx
                    .recv_timeout(dl.saturating_duration_since(Instant::now()))
                {
                    Ok(r) => r,
                    Err(RecvTimeoutError::Timeout) => {
                        self.on_timer();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                },
            };
            let mut group = Vec::new();
            let mut bytes = 0;
            let mut shutdown = None;
            let mut next = Some(first);
            while let Some(r) = next.take() {
                match r {
                    Request::Append {
                        batch,
                        bytes: b,
                        reply,
                        _permit,
                    } => {
                        bytes += b;
                        group.push((batch, reply, _permit));
                    }
                    Request::Shutdown { reply } => {
                        shutdown = Some(reply);
                        break;
                    }
                }
                if bytes < MAX_GROUP_BYTES && group.len() < MAX_GROUP_REQUESTS {
                    next = self.rx.try_recv().ok();
                }
            }
            if !group.is_empty() {
                self.commit(group);
            }
            if let Durability::Interval(d) = self.inner.durability
                && self.synced < self.len
                && self.last_sync.elapsed() >= d
            {
                self.periodic_sync();
            }
            if let Some(reply) = shutdown {
                // Seal on a clean shutdown so the next start scans nothing.
                if let Err(e) = self.roll() {
                    tracing::warn!(error = %e, "sealing at shutdown failed");
                }
                let r = self.final_sync();
                let _ = reply.send(r);
                return;
            }
        }
        let _ = self.final_sync();
    }

    fn on_timer(&mut self) {
        if let Durability::Interval(d) = self.inner.durability
            && self.synced < self.len
            && self.last_sync.elapsed() >= d
        {
            self.periodic_sync();
        }
        if self.len > 0 && self.seg_started.elapsed() >= self.inner.opts.max_segment_age {
            if let Err(e) = self.roll() {
                tracing::warn!(error = %e, "sealing an aged segment failed; will retry");
            }
            // Retry later rather than spinning on a failing roll.
            self.seg_started = Instant::now();
        }
    }

    fn final_sync(&mut self) -> Result<(), LogError> {
        if self.synced < self.len {
            self.file.sync_data().map_err(|e| {
                tracing::error!(error = %e, "final fsync failed");
                LogError::Io(e)
            })?;
            self.synced = self.len;
        }
        Ok(())
    }

    fn periodic_sync(&mut self) {
        self.last_sync = Instant::now();
        match self.file.sync_data() {
            Ok(()) => self.synced = self.len,
            Err(e) => {
                tracing::error!(error = %e, seg = self.seg, "periodic fsync failed; rewriting unsynced data");
                // After a failed fsync the dirty pages may be dropped: write the
                // acknowledged-but-unsynced range again from the page cache.
                let n = (self.len - self.synced) as usize;
                let mut b = vec![0u8; n];
                let r = self
                    .file
                    .read_exact_at(&mut b, self.synced)
                    .and_then(|_| self.file.write_all_at(&b, self.synced))
                    .and_then(|_| self.file.sync_data());
                match r {
                    Ok(()) => self.synced = self.len,
                    Err(e) => self.on_io_error(&e),
                }
            }
        }
    }

    /// Discards anything past the acknowledged end and moves to a fresh
    /// segment, so data whose durability is unknown is never relied upon.
    fn on_io_error(&mut self, e: &io::Error) {
        tracing::error!(error = %e, seg = self.seg, len = self.len, "storage write failed; discarding unacknowledged tail");
        let truncated = self
            .file
            .set_len(self.len)
            .and_then(|_| self.file.sync_data());
        if truncated.is_ok() {
            self.synced = self.len;
        }
        let rolled = self.roll();
        match (truncated, rolled) {
            (Ok(()), _) | (_, Ok(())) => self.failed = None,
            (Err(a), Err(b)) => {
                let msg = format!("cannot truncate ({a}) or roll ({b}) after: {e}");
                tracing::error!("{msg}; refusing writes until storage recovers");
                self.failed = Some(msg);
            }
        }
    }

    fn commit(&mut self, group: Vec<(Vec<ShardAppend>, Reply, OwnedSemaphorePermit)>) {
        if let Some(msg) = self.failed.clone() {
            self.on_io_error(&io::Error::other(msg.clone()));
            if let Some(msg) = self.failed.clone() {
                for (batch, reply, _) in group {
                    let _ = reply.send((Err(LogError::Failed(msg.clone())), batch));
                }
                return;
            }
        }
        self.buf.clear();
        let mut pending: Vec<(ShardId, FrameRef)> = Vec::new();
        let mut results: Vec<Result<Vec<Appended>, LogError>> = Vec::with_capacity(group.len());
        let now = self.inner.clock.now_ms();
        {
            let st = self.inner.state.read().unwrap();
            let mut overlay: HashMap<ShardId, (u64, Option<i64>)> = HashMap::new();
            for (batch, _, _) in &group {
                if st.closed {
                    results.push(Err(LogError::Closed));
                    continue;
                }
                if let Some(sa) = batch.iter().find(|sa| !st.shards.contains_key(&sa.shard)) {
                    results.push(Err(LogError::UnknownShard(sa.shard)));
                    continue;
                }
                let mut out = Vec::with_capacity(batch.len());
                for sa in batch {
                    let sh = &st.shards[&sa.shard];
                    let (next, last) = overlay.entry(sa.shard).or_insert((sh.tip, sh.last_ts));
                    let ts = last.map_or(now, |l| l.max(now));
                    out.push(Appended {
                        first_position: *next,
                        timestamp_ms: ts,
                    });
                    let recs = &sa.records;
                    let mut i = 0;
                    while i < recs.len() {
                        let mut j = i;
                        let mut plen = 0;
                        while j < recs.len() {
                            let sz = RECORD_OVERHEAD + recs[j].key.len() + recs[j].value.len();
                            if j > i && plen + sz > MAX_FRAME_PAYLOAD {
                                break;
                            }
                            plen += sz;
                            j += 1;
                        }
                        let off = self.buf.len();
                        frame::encode_frame(&mut self.buf, sa.shard, *next, ts, &recs[i..j]);
                        pending.push((
                            sa.shard,
                            FrameRef {
                                seg: 0,
                                offset: off as u64,
                                len: (self.buf.len() - off) as u32,
                                count: (j - i) as u32,
                                first_pos: *next,
                                ts,
                            },
                        ));
                        *next += (j - i) as u64;
                        i = j;
                    }
                    if !recs.is_empty() {
                        *last = Some(ts);
                    }
                }
                results.push(Ok(out));
            }
        }
        if !self.buf.is_empty() {
            if self.len > 0
                && self.len + self.buf.len() as u64 > self.inner.opts.segment_bytes
                && let Err(e) = self.roll()
            {
                tracing::warn!(error = %e, "segment roll failed; continuing in current segment");
            }
            let base = self.len;
            if base == 0 {
                self.seg_started = Instant::now();
            }
            let mut r = self.file.write_all_at(&self.buf, base);
            if r.is_ok() && self.inner.durability == Durability::Fsync {
                r = self.file.sync_data();
            }
            if let Err(e) = r {
                self.on_io_error(&e);
                for ((batch, reply, _), res) in group.into_iter().zip(results) {
                    let _ = reply.send((res.and(Err(io_copy(&e))), batch));
                }
                return;
            }
            self.len += self.buf.len() as u64;
            if self.inner.durability == Durability::Fsync {
                self.synced = self.len;
                self.last_sync = Instant::now();
            }
            for p in &mut pending {
                p.1.seg = self.seg;
                p.1.offset += base;
            }
            self.publish(&pending);
            self.seg_refs.extend_from_slice(&pending);
        }
        for ((batch, reply, _), res) in group.into_iter().zip(results) {
            let _ = reply.send((res, batch));
        }
    }

    fn publish(&self, pending: &[(ShardId, FrameRef)]) {
        let mut st = self.inner.state.write().unwrap();
        let mut touched = Vec::new();
        for (s, r) in pending {
            if let Some(sh) = st.shards.get_mut(s) {
                debug_assert_eq!(sh.tip, r.first_pos, "positions are dense");
                debug_assert!(
                    sh.last_ts.is_none_or(|l| l <= r.ts),
                    "timestamps never decrease"
                );
                sh.recent.push(*r);
                sh.tip = r.end_pos();
                sh.last_ts = Some(r.ts);
                if touched.last() != Some(s) {
                    touched.push(*s);
                }
            }
        }
        for s in touched {
            if let Some(sh) = st.shards.get(&s) {
                let tip = sh.tip;
                sh.tx.send_modify(|t| t.tip = tip);
            }
        }
    }

    /// Seals the active segment (fsync, sidecar index) and starts the next.
    /// Only switches once the sidecar is durable, so recovery never scans
    /// past the sealed length of a segment.
    fn roll(&mut self) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        let fs = &self.inner.fs;
        let dir = &self.inner.dir;
        if self.synced < self.len {
            self.file.sync_data()?;
            self.synced = self.len;
        }
        let new_id = self.seg + 1;
        let new_path = segment_path(dir, new_id);
        let sidecar = index::encode_sidecar(self.seg, self.len, index::NO_SOURCE, &self.seg_refs);
        let res = (|| {
            let f = fs.open_rw(&new_path)?;
            f.set_len(0)?;
            fs.sync_dir(dir)?;
            fs.write_atomic(dir, &sidecar_name(self.seg), &sidecar)?;
            Ok(f)
        })();
        let f = match res {
            Ok(f) => f,
            Err(e) => {
                let _ = fs.remove(&new_path);
                return Err(e);
            }
        };
        let (summary, idx) = index::decode_full(&sidecar).expect("sidecar just encoded");
        {
            let mut st = self.inner.state.write().unwrap();
            for (s, span) in &summary.shards {
                if let Some(sh) = st.shards.get_mut(s) {
                    let k = sh.recent.partition_point(|r| r.seg == self.seg);
                    debug_assert!(sh.recent[k..].iter().all(|r| r.seg != self.seg));
                    sh.recent.drain(..k);
                    std::sync::Arc::make_mut(&mut sh.spans).push(*span);
                }
            }
            st.sealed.insert(
                self.seg,
                SealedSeg {
                    len: self.len,
                    shards: summary.shards,
                },
            );
        }
        let w = idx.entries.max(1);
        self.inner
            .indexes
            .lock()
            .unwrap()
            .insert(self.seg, Arc::new(idx), w);
        tracing::debug!(seg = self.seg, len = self.len, "sealed segment");
        self.seg = new_id;
        self.file = f;
        self.len = 0;
        self.synced = 0;
        self.seg_refs.clear();
        self.seg_started = Instant::now();
        Ok(())
    }
}
