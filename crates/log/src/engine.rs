//! Shared engine state and the read side.
//!
//! Owns: the in-memory catalogue ([`State`]: per-shard tips, spans of sealed
//! segments, frame refs of the active segment, watch channels), the bounded
//! caches of open segment files and loaded sidecar indexes, reads by position
//! and by time, trim-horizon computation, metadata operations, and the
//! retention pass that deletes dead segments.
//!
//! Locking: `state` is a `RwLock` held only for in-memory lookups and
//! updates, never across I/O. Lock order: `meta` mutex, then `state`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio::sync::watch;

use crate::fs::{FileHandle, FileSystem, segment_path, sidecar_name};
use crate::index::{self, FrameRef, SegIndex, Span};
use crate::meta::{MetaOp, MetaState, MetaStore};
use crate::{
    Clock, Durability, GroupId, LogError, LogRecord, Options, ReadResult, ShardBounds, ShardId,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TipSignal {
    pub tip: u64,
    pub gone: bool,
    pub closed: bool,
}

pub(crate) struct ShardState {
    pub group: GroupId,
    /// One past the newest durable record.
    pub tip: u64,
    pub last_ts: Option<i64>,
    /// Positions below this are never readable again (see `MetaOp::Trim`).
    pub floor: u64,
    /// Data in sealed segments, by position (copy-on-write).
    pub spans: Arc<Vec<Span>>,
    /// Frames in the active (unsealed) segment, by position.
    pub recent: Vec<FrameRef>,
    pub tx: watch::Sender<TipSignal>,
}

impl ShardState {
    pub fn new(group: GroupId, tip: u64, last_ts: Option<i64>) -> ShardState {
        let (tx, _) = watch::channel(TipSignal {
            tip,
            gone: false,
            closed: false,
        });
        ShardState {
            group,
            tip,
            last_ts,
            floor: 0,
            spans: Arc::new(Vec::new()),
            recent: Vec::new(),
            tx,
        }
    }
}

pub(crate) struct SealedSeg {
    /// Sealed length: bytes past it are never read.
    pub len: u64,
    pub shards: Vec<(ShardId, Span)>,
}

#[derive(Default)]
pub(crate) struct State {
    /// Live shards only (deleted ones are removed; the catalogue remembers ids).
    pub shards: HashMap<ShardId, ShardState>,
    pub meta: MetaState,
    pub sealed: BTreeMap<u64, SealedSeg>,
    pub closed: bool,
}

impl State {
    /// Whether a shard's data in a sealed span can never be read again:
    /// the shard is deleted, or the span is expired or below the trim floor.
    pub fn span_dead(&self, shard: ShardId, span: &Span, now: i64) -> bool {
        match self.shards.get(&shard) {
            None => true,
            Some(sh) => {
                let ret = self.meta.retention_ms(sh.group).min(i64::MAX as u64 / 2) as i64;
                span.last_ts < now.saturating_sub(ret) || span.end_pos <= sh.floor
            }
        }
    }
}

/// A small LRU map keyed by segment id, bounded by total weight.
pub(crate) struct Lru<V: Clone> {
    map: HashMap<u64, (V, u64, usize)>,
    tick: u64,
    weight: usize,
    cap: usize,
}

impl<V: Clone> Lru<V> {
    pub fn new(cap: usize) -> Self {
        Lru {
            map: HashMap::new(),
            tick: 0,
            weight: 0,
            cap,
        }
    }
    pub fn get(&mut self, k: u64) -> Option<V> {
        self.tick += 1;
        let t = self.tick;
        self.map.get_mut(&k).map(|e| {
            e.1 = t;
            e.0.clone()
        })
    }
    pub fn insert(&mut self, k: u64, v: V, w: usize) {
        self.tick += 1;
        if let Some(old) = self.map.insert(k, (v, self.tick, w)) {
            self.weight -= old.2;
        }
        self.weight += w;
        while self.weight > self.cap && self.map.len() > 1 {
            let (&victim, _) = self.map.iter().min_by_key(|e| e.1.1).unwrap();
            let old = self.map.remove(&victim).unwrap();
            self.weight -= old.2;
        }
        debug_assert!(self.map.len() <= 1 || self.weight <= self.cap);
    }
    pub fn remove(&mut self, k: u64) {
        if let Some(old) = self.map.remove(&k) {
            self.weight -= old.2;
        }
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

pub(crate) struct Inner {
    pub dir: PathBuf,
    pub fs: Arc<dyn FileSystem>,
    pub clock: Arc<dyn Clock>,
    pub durability: Durability,
    pub opts: Options,
    pub state: RwLock<State>,
    pub meta: Mutex<MetaStore>,
    pub files: Mutex<Lru<Arc<dyn FileHandle>>>,
    pub indexes: Mutex<Lru<Arc<SegIndex>>>,
    /// Next id for a compaction output segment.
    pub next_compact: std::sync::atomic::AtomicU64,
    /// Serializes retention and compaction passes.
    pub maintenance: Mutex<()>,
}

/// Where a read continues after the in-memory lookup.
enum Source {
    Sealed(Span),
    Recent(Vec<FrameRef>),
}

/// Result of a time seek done under the lock.
enum Seek {
    Known(u64),
    InSpan(Span),
}

fn corrupt(msg: String) -> LogError {
    LogError::Io(io::Error::new(io::ErrorKind::InvalidData, msg))
}

impl Inner {
    pub fn live_shard<'a>(
        &self,
        st: &'a State,
        shard: ShardId,
    ) -> Result<&'a ShardState, LogError> {
        if st.closed {
            return Err(LogError::Closed);
        }
        st.shards.get(&shard).ok_or(LogError::UnknownShard(shard))
    }

    pub fn cutoff(&self, st: &State, sh: &ShardState) -> i64 {
        let ret = st.meta.retention_ms(sh.group).min(i64::MAX as u64 / 2) as i64;
        self.clock.now_ms().saturating_sub(ret)
    }

    /// First position with timestamp >= `t`, clamped to physically present
    /// data; may need a sealed segment's index.
    fn seek_locked(sh: &ShardState, t: i64) -> Seek {
        let si = index::span_for_time(&sh.spans, t);
        if let Some(s) = sh.spans.get(si) {
            if s.first_ts >= t {
                return Seek::Known(s.first_pos);
            }
            return Seek::InSpan(*s);
        }
        let ri = index::frame_for_time(&sh.recent, t);
        Seek::Known(sh.recent.get(ri).map_or(sh.tip, |r| r.first_pos))
    }

    pub fn segment_file(&self, seg: u64) -> io::Result<Arc<dyn FileHandle>> {
        if let Some(f) = self.files.lock().unwrap().get(seg) {
            return Ok(f);
        }
        let f = self.fs.open_read(&segment_path(&self.dir, seg))?;
        self.files.lock().unwrap().insert(seg, f.clone(), 1);
        Ok(f)
    }

    pub fn segment_index(&self, seg: u64) -> io::Result<Arc<SegIndex>> {
        if let Some(i) = self.indexes.lock().unwrap().get(seg) {
            return Ok(i);
        }
        let b = self.fs.read_all(&self.dir.join(sidecar_name(seg)))?;
        let idx = match index::decode_full(&b) {
            Ok((_, idx)) => idx,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => self.rebuild_index(seg, &e)?,
            Err(e) => return Err(e),
        };
        let idx = Arc::new(idx);
        self.indexes
            .lock()
            .unwrap()
            .insert(seg, idx.clone(), idx.entries.max(1));
        Ok(idx)
    }

    /// Rebuilds a sealed segment's sidecar by scanning the segment (used
    /// when the sidecar's entries fail verification).
    fn rebuild_index(&self, seg: u64, why: &io::Error) -> io::Result<SegIndex> {
        tracing::error!(seg, error = %why, "sidecar index corrupt; rebuilding from segment");
        let len = self.state.read().unwrap().sealed.get(&seg).map(|s| s.len);
        let Some(len) = len else {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        };
        let file = self.segment_file(seg)?;
        let (refs, valid) = crate::recovery::scan(file.as_ref(), seg, Some(len))?;
        if valid < len {
            tracing::error!(
                seg,
                valid,
                len,
                "sealed segment has invalid frames; serving the valid prefix"
            );
        }
        let b = index::encode_sidecar(seg, valid, index::NO_SOURCE, &refs);
        if let Err(e) = self.fs.write_atomic(&self.dir, &sidecar_name(seg), &b) {
            tracing::warn!(seg, error = %e, "could not rewrite sidecar index");
        }
        Ok(index::decode_full(&b)?.1)
    }

    /// Resolves a time seek that fell inside a sealed span.
    fn seek_in_span(&self, shard: ShardId, span: &Span, t: i64) -> Result<u64, LogError> {
        let idx = self.segment_index(span.seg)?;
        let refs = idx
            .by_shard
            .get(&shard)
            .ok_or_else(|| corrupt(format!("segment {} index lacks shard {shard}", span.seg)))?;
        let i = index::frame_for_time(refs, t);
        Ok(refs.get(i).map_or(span.end_pos, |r| r.first_pos))
    }

    /// First readable position at or after time `t` (and after the trim
    /// horizon). Returns (position, tip).
    pub fn position_at_time(&self, shard: ShardId, t: i64) -> Result<(u64, u64), LogError> {
        let (seek, t, tip, floor) = {
            let st = self.state.read().unwrap();
            let sh = self.live_shard(&st, shard)?;
            let t = t.max(self.cutoff(&st, sh));
            (Self::seek_locked(sh, t), t, sh.tip, sh.floor)
        };
        let pos = match seek {
            Seek::Known(p) => p,
            Seek::InSpan(span) => self.seek_in_span(shard, &span, t)?,
        };
        Ok((pos.max(floor).min(tip), tip))
    }

    pub fn bounds(&self, shard: ShardId) -> Result<ShardBounds, LogError> {
        let (th, tip) = self.with_retry(|| self.position_at_time(shard, i64::MIN))?;
        let st = self.state.read().unwrap();
        let sh = self.live_shard(&st, shard)?;
        Ok(ShardBounds {
            trim_horizon: th,
            tip,
            last_timestamp_ms: sh.last_ts,
        })
    }

    /// Retries an operation that raced with segment deletion by retention.
    pub fn with_retry<T>(&self, f: impl Fn() -> Result<T, LogError>) -> Result<T, LogError> {
        let mut n = 0;
        loop {
            match f() {
                Err(LogError::Io(e)) if e.kind() == io::ErrorKind::NotFound && n < 3 => n += 1,
                r => return r,
            }
        }
    }

    pub fn read(
        &self,
        shard: ShardId,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadResult, LogError> {
        self.with_retry(|| self.read_once(shard, from, max_records, max_bytes))
    }

    fn read_once(
        &self,
        shard: ShardId,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadResult, LogError> {
        let (th, _) = self.position_at_time(shard, i64::MIN)?;
        let start = from.max(th);
        let empty = ReadResult {
            records: Vec::new(),
            next_position: start,
        };
        if max_records == 0 {
            return Ok(empty);
        }
        let tip;
        let source = {
            let st = self.state.read().unwrap();
            let sh = self.live_shard(&st, shard)?;
            if start >= sh.tip {
                return Ok(empty);
            }
            tip = sh.tip;
            let si = index::span_for_pos(&sh.spans, start);
            if let Some(s) = sh.spans.get(si) {
                Source::Sealed(*s)
            } else {
                let ri = index::frame_for_pos(&sh.recent, start);
                let mut recs = 0usize;
                let mut bytes = 0usize;
                let mut out = Vec::new();
                for r in &sh.recent[ri..] {
                    if recs >= max_records || bytes >= max_bytes || out.len() >= 4096 {
                        break;
                    }
                    recs += r.count as usize;
                    bytes += r.len as usize;
                    out.push(*r);
                }
                Source::Recent(out)
            }
        };
        let refs: Vec<FrameRef> = match source {
            Source::Recent(v) => v,
            Source::Sealed(span) => {
                let idx = self.segment_index(span.seg)?;
                let all = idx.by_shard.get(&shard).ok_or_else(|| {
                    corrupt(format!("segment {} index lacks shard {shard}", span.seg))
                })?;
                let i = index::frame_for_pos(all, start);
                let mut recs = 0usize;
                let mut bytes = 0usize;
                let mut out = Vec::new();
                for r in &all[i..] {
                    if recs >= max_records || bytes >= max_bytes || out.len() >= 4096 {
                        break;
                    }
                    recs += r.count as usize;
                    bytes += r.len as usize;
                    out.push(*r);
                }
                out
            }
        };
        let mut records = Vec::new();
        let mut bytes = 0usize;
        let mut next = start;
        let mut i = 0;
        'outer: while i < refs.len() {
            // Coalesce physically contiguous frames into one pread (<= 4 MiB).
            let mut j = i + 1;
            let mut len = refs[i].len as u64;
            while j < refs.len()
                && refs[j].seg == refs[i].seg
                && refs[j].offset == refs[i].offset + len
                && len + (refs[j].len as u64) <= 4 << 20
            {
                len += refs[j].len as u64;
                j += 1;
            }
            let file = self.segment_file(refs[i].seg)?;
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, refs[i].offset)?;
            let buf = Bytes::from(buf);
            for r in &refs[i..j] {
                let o = (r.offset - refs[i].offset) as usize;
                let fb = buf.slice(o..o + r.len as usize);
                let h = crate::frame::verify_frame(&fb)
                    .map_err(|e| corrupt(format!("segment {} offset {}: {e}", r.seg, r.offset)))?;
                if h.shard != shard
                    || h.first_pos != r.first_pos
                    || h.count != r.count
                    || h.ts != r.ts
                {
                    return Err(corrupt(format!(
                        "segment {} offset {}: frame does not match index",
                        r.seg, r.offset
                    )));
                }
                let mut full = false;
                crate::frame::for_each_record(&fb, &h, |k, key, value| {
                    let pos = h.first_pos + k as u64;
                    if pos < next {
                        return true;
                    }
                    if records.len() >= max_records
                        || (!records.is_empty() && bytes + key.len() + value.len() > max_bytes)
                    {
                        full = true;
                        return false;
                    }
                    bytes += key.len() + value.len();
                    records.push(LogRecord {
                        position: pos,
                        timestamp_ms: h.ts,
                        key,
                        value,
                    });
                    next = pos + 1;
                    true
                });
                if full {
                    break 'outer;
                }
            }
            i = j;
        }
        // Positions are dense except across data lost in a crash under
        // `Durability::None`/`Interval` or cut off as corrupt: skip such gaps
        // rather than returning nothing forever.
        debug_assert!(records.windows(2).all(|w| w[0].position < w[1].position));
        if records.is_empty() {
            next = refs.first().map_or(tip, |r| r.first_pos.max(start));
        }
        Ok(ReadResult {
            records,
            next_position: next,
        })
    }

    pub fn create_shard(&self, shard: ShardId, group: GroupId) -> Result<(), LogError> {
        let mut meta = self.meta.lock().unwrap();
        {
            let st = self.state.read().unwrap();
            if st.closed {
                return Err(LogError::Closed);
            }
            if st.meta.shards.contains_key(&shard) {
                return Err(LogError::ShardExists(shard));
            }
        }
        let op = MetaOp::CreateShard { shard, group };
        meta.append(op)?;
        let mut st = self.state.write().unwrap();
        st.meta.apply(op);
        st.shards.insert(shard, ShardState::new(group, 0, None));
        drop(st);
        self.maybe_snapshot(&mut meta);
        Ok(())
    }

    pub fn set_retention(&self, group: GroupId, ms: u64) -> Result<(), LogError> {
        let mut meta = self.meta.lock().unwrap();
        if self.state.read().unwrap().closed {
            return Err(LogError::Closed);
        }
        // Data already expired must not come back when retention grows: pin
        // each shard's current trim horizon first.
        let shards: Vec<ShardId> = {
            let st = self.state.read().unwrap();
            st.shards
                .iter()
                .filter(|(_, sh)| sh.group == group)
                .map(|(id, _)| *id)
                .collect()
        };
        for shard in shards {
            let (th, _) = self.with_retry(|| self.position_at_time(shard, i64::MIN))?;
            let floor = self
                .state
                .read()
                .unwrap()
                .shards
                .get(&shard)
                .map_or(th, |sh| sh.floor);
            if th > floor {
                let op = MetaOp::Trim { shard, floor: th };
                meta.append(op)?;
                let mut st = self.state.write().unwrap();
                st.meta.apply(op);
                if let Some(sh) = st.shards.get_mut(&shard) {
                    sh.floor = th;
                }
            }
        }
        let op = MetaOp::SetRetention {
            group,
            ms: ms.max(1),
        };
        meta.append(op)?;
        self.state.write().unwrap().meta.apply(op);
        self.maybe_snapshot(&mut meta);
        Ok(())
    }

    /// Deletes a group (`Some`) or a single shard.
    pub fn delete(&self, op: MetaOp) -> Result<(), LogError> {
        let mut meta = self.meta.lock().unwrap();
        if self.state.read().unwrap().closed {
            return Err(LogError::Closed);
        }
        meta.append(op)?;
        let mut st = self.state.write().unwrap();
        st.meta.apply(op);
        let dead: Vec<ShardId> = st
            .shards
            .keys()
            .copied()
            .filter(|s| !st.meta.shard_live(*s))
            .collect();
        for s in dead {
            if let Some(sh) = st.shards.remove(&s) {
                sh.tx.send_modify(|t| t.gone = true);
            }
        }
        drop(st);
        self.maybe_snapshot(&mut meta);
        Ok(())
    }

    fn maybe_snapshot(&self, meta: &mut MetaStore) {
        if meta.wants_snapshot()
            && let Err(e) = meta.write_snapshot(&self.snapshot_state())
        {
            tracing::warn!(error = %e, "metadata snapshot failed; will retry");
        }
    }

    /// The catalogue with each live shard's current tip as its floor.
    pub fn snapshot_state(&self) -> MetaState {
        let st = self.state.read().unwrap();
        let mut m = st.meta.clone();
        for (id, sh) in &st.shards {
            if let Some(s) = m.shards.get_mut(id) {
                s.tip_floor = sh.tip;
                s.last_ts_floor = sh.last_ts;
            }
        }
        m
    }

    /// One retention pass: deletes sealed segments in which every shard's
    /// data is expired or deleted. Returns the number deleted.
    pub fn run_retention(&self) -> Result<usize, LogError> {
        let _m = self.maintenance.lock().unwrap();
        let now = self.clock.now_ms();
        let dead: Vec<u64> = {
            let st = self.state.read().unwrap();
            st.sealed
                .iter()
                .filter(|(_, seg)| {
                    seg.shards
                        .iter()
                        .all(|(s, span)| st.span_dead(*s, span, now))
                })
                .map(|(id, _)| *id)
                .collect()
        };
        if dead.is_empty() {
            return Ok(0);
        }
        // Tips must outlive the data: persist them before deleting segments.
        {
            let mut meta = self.meta.lock().unwrap();
            meta.write_snapshot(&self.snapshot_state())?;
        }
        let dead_set: HashSet<u64> = dead.iter().copied().collect();
        {
            let mut st = self.state.write().unwrap();
            for id in &dead {
                if let Some(seg) = st.sealed.remove(id) {
                    for (s, _) in seg.shards {
                        if let Some(sh) = st.shards.get_mut(&s) {
                            Arc::make_mut(&mut sh.spans).retain(|sp| !dead_set.contains(&sp.seg));
                        }
                    }
                }
            }
        }
        for id in &dead {
            self.files.lock().unwrap().remove(*id);
            self.indexes.lock().unwrap().remove(*id);
            // Segment first: a sidecar without its segment is ignored at startup.
            let _ = self.fs.remove(&segment_path(&self.dir, *id));
            let _ = self.fs.remove(&self.dir.join(sidecar_name(*id)));
        }
        self.fs.sync_dir(&self.dir)?;
        tracing::info!(segments = dead.len(), "retention deleted segments");
        Ok(dead.len())
    }
}

impl Inner {
    /// Number of sealed segments and open file handles (for tests/metrics).
    pub fn stats(&self) -> (usize, usize) {
        let sealed = self.state.read().unwrap().sealed.len();
        (sealed, self.files.lock().unwrap().len())
    }
}

#[cfg(test)]
mod tests {
    use super::Lru;

    #[test]
    fn lru_stays_within_its_weight_and_evicts_least_recently_used() {
        let mut l = Lru::new(3);
        l.insert(1, "a", 1);
        l.insert(2, "b", 1);
        l.insert(3, "c", 1);
        assert_eq!(l.get(1), Some("a")); // 2 is now the oldest
        l.insert(4, "d", 1);
        assert_eq!(l.len(), 3);
        assert_eq!(l.get(2), None);
        assert_eq!(l.get(1), Some("a"));
        l.insert(5, "e", 3); // heavy entry evicts all others
        assert_eq!(l.len(), 1);
        assert_eq!(l.get(5), Some("e"));
        l.remove(5);
        assert_eq!(l.len(), 0);
    }
}
