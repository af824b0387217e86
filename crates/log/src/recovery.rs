//! Startup and crash recovery.
//!
//! Owns: rebuilding the in-memory state from disk. Steps:
//! 1. load the metadata snapshot + log (torn log tail truncated);
//! 2. remove leftovers (`*.tmp`, sidecars whose segment is gone);
//! 3. for every sealed segment (one with a sidecar), read and verify only
//!    the sidecar's header and per-shard summary (checksummed), and check
//!    the segment file is at least as long as the sidecar says; data past
//!    the sealed length is never looked at;
//! 4. scan only segments without a valid sidecar (normally just the active
//!    one): validate frame by frame (magic, lengths, crc32c, record layout,
//!    position continuity), truncate at the first invalid frame (torn tail),
//!    and seal any such segment that is not the last;
//! 5. tips are the maximum of the snapshot floor and the data found.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use crate::compaction::COMPACT_BASE;

use crate::engine::{Inner, Lru, SealedSeg, ShardState, State};
use crate::frame::{self, HEADER_LEN};
use crate::fs::{FileHandle, segment_path, sidecar_name};
use crate::index::{self, FrameRef, SidecarSummary};
use crate::meta::MetaStore;
use crate::writer::ActiveInit;
use crate::{LogConfig, LogError, Options, ShardId};

/// Reads and verifies a sealed segment's summary.
fn load_summary(
    inner_fs: &dyn crate::fs::FileSystem,
    dir: &std::path::Path,
    seg: u64,
) -> io::Result<SidecarSummary> {
    let f = inner_fs.open_read(&dir.join(sidecar_name(seg)))?;
    let mut hdr = [0u8; index::SIDECAR_HEADER_LEN];
    f.read_exact_at(&mut hdr, 0)?;
    let (s, _, ns, _) = index::decode_sidecar_header(&hdr)?;
    if s != seg {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "sidecar names another segment",
        ));
    }
    let mut b = vec![0u8; index::summary_bytes(ns)];
    f.read_exact_at(&mut b, 0)?;
    index::decode_summary(&b)
}

/// Scans a segment's frames from the start; returns the valid frames and
/// the length of the valid prefix.
pub(crate) fn scan(
    file: &dyn FileHandle,
    seg: u64,
    limit: Option<u64>,
) -> io::Result<(Vec<(ShardId, FrameRef)>, u64)> {
    let mut len = file.len()? as usize;
    if let Some(l) = limit {
        len = len.min(l as usize);
    }
    let mut b = vec![0u8; len];
    file.read_exact_at(&mut b, 0)?;
    let mut o = 0usize;
    let mut refs = Vec::new();
    let mut next: HashMap<ShardId, (u64, i64)> = HashMap::new();
    while o + HEADER_LEN <= len {
        let Ok(h) = frame::verify_frame(&b[o..]) else {
            break;
        };
        if let Some(&(np, lt)) = next.get(&h.shard)
            && (h.first_pos != np || h.ts < lt)
        {
            tracing::error!(
                seg,
                offset = o,
                "frame breaks position/time order; treating as end of valid data"
            );
            break;
        }
        next.insert(h.shard, (h.first_pos + h.count as u64, h.ts));
        refs.push((
            h.shard,
            FrameRef {
                seg,
                offset: o as u64,
                len: h.frame_len() as u32,
                count: h.count,
                first_pos: h.first_pos,
                ts: h.ts,
            },
        ));
        o += h.frame_len();
    }
    Ok((refs, o as u64))
}

pub(crate) fn recover(
    config: &LogConfig,
    opts: &Options,
) -> Result<(Arc<Inner>, ActiveInit), LogError> {
    let fs = opts
        .fs
        .clone()
        .unwrap_or_else(|| Arc::new(crate::fs::RealFs));
    let dir = config.dir.clone();
    fs.create_dir_all(&dir)?;
    let (meta_store, meta) = MetaStore::open(fs.clone(), &dir)?;
    let names = fs.list(&dir)?;
    let mut segs = BTreeSet::new();
    let mut idxs = HashSet::new();
    for n in &names {
        if n.ends_with(".tmp") {
            let _ = fs.remove(&dir.join(n));
        } else if let Some(id) = n.strip_suffix(".seg").and_then(|s| s.parse::<u64>().ok()) {
            segs.insert(id);
        } else if let Some(id) = n.strip_suffix(".idx").and_then(|s| s.parse::<u64>().ok()) {
            idxs.insert(id);
        }
    }
    for id in idxs.iter().filter(|i| !segs.contains(i)) {
        let _ = fs.remove(&dir.join(sidecar_name(*id)));
    }

    let mut st = State {
        meta,
        ..State::default()
    };
    // data_end: end of the last accepted data per shard (continuity check).
    let mut data_end: HashMap<ShardId, u64> = HashMap::new();
    for (id, m) in &st.meta.shards {
        if st.meta.shard_live(*id) {
            let mut sh = ShardState::new(m.group, m.tip_floor, m.last_ts_floor);
            sh.floor = m.trim_floor;
            st.shards.insert(*id, sh);
        }
    }
    let last = segs.iter().copied().filter(|s| *s < COMPACT_BASE).max();
    let mut next_compact = COMPACT_BASE;
    let mut active: Option<ActiveInit> = None;
    let mut indexes = Lru::new(opts.index_cache_entries);
    for &seg in &segs {
        let path = segment_path(&dir, seg);
        if seg >= COMPACT_BASE {
            next_compact = next_compact.max(seg + 1);
            // A compaction output is complete only once its sidecar is
            // durable, and authoritative only once its source is gone.
            let drop_it = match load_summary(fs.as_ref(), &dir, seg) {
                Ok(sum) => sum.source.is_some_and(|src| segs.contains(&src)),
                Err(_) => !idxs.contains(&seg),
            };
            if drop_it {
                tracing::warn!(seg, "removing unfinished compaction output");
                fs.remove(&path)?;
                let _ = fs.remove(&dir.join(sidecar_name(seg)));
                continue;
            }
        }
        let file = fs.open_rw(&path)?;
        let flen = file.len()?;
        let summary = if idxs.contains(&seg) {
            match load_summary(fs.as_ref(), &dir, seg) {
                Ok(s) if s.seg_len <= flen => Some(s),
                Ok(s) => {
                    tracing::error!(
                        seg,
                        want = s.seg_len,
                        have = flen,
                        "segment shorter than its index; rescanning"
                    );
                    None
                }
                Err(e) => {
                    tracing::error!(seg, error = %e, "invalid sidecar index; rescanning segment");
                    None
                }
            }
        } else {
            None
        };
        let summary = match summary {
            Some(s) => s,
            None => {
                let (refs, valid) = scan(file.as_ref(), seg, None)?;
                if valid < flen {
                    tracing::warn!(seg, valid, len = flen, "truncating invalid segment tail");
                    file.set_len(valid)?;
                    file.sync_data()?;
                }
                if Some(seg) == last {
                    // It becomes the active segment again: a stale sidecar
                    // must not describe it after the next crash.
                    if idxs.contains(&seg) {
                        fs.remove(&dir.join(sidecar_name(seg)))?;
                        fs.sync_dir(&dir)?;
                    }
                    active = Some(ActiveInit {
                        seg,
                        file,
                        len: valid,
                        refs,
                    });
                    continue;
                }
                let b = index::encode_sidecar(seg, valid, index::NO_SOURCE, &refs);
                fs.write_atomic(&dir, &sidecar_name(seg), &b)?;
                let (s, idx) = index::decode_full(&b)?;
                let w = idx.entries.max(1);
                indexes.insert(seg, Arc::new(idx), w);
                s
            }
        };
        for (s, span) in summary.shards.iter().copied() {
            if let Some(sh) = st.shards.get_mut(&s) {
                Arc::make_mut(&mut sh.spans).push(span);
            }
        }
        st.sealed.insert(
            seg,
            SealedSeg {
                len: summary.seg_len,
                shards: summary.shards,
            },
        );
    }
    // Spans by position (compaction outputs have ids out of position order);
    // an overlap can only come from a damaged segment: keep the first.
    for (id, sh) in st.shards.iter_mut() {
        let spans = Arc::make_mut(&mut sh.spans);
        spans.sort_by_key(|sp| (sp.first_pos, sp.seg));
        let end = data_end.entry(*id).or_insert(0);
        spans.retain(|sp| {
            if sp.first_pos < *end {
                tracing::error!(seg = sp.seg, shard = id, "overlapping span ignored");
                return false;
            }
            *end = sp.end_pos;
            true
        });
        if let Some(l) = spans.last() {
            sh.tip = sh.tip.max(l.end_pos);
            sh.last_ts = Some(sh.last_ts.map_or(l.last_ts, |t| t.max(l.last_ts)));
        }
    }
    let active = match active {
        Some(mut a) => {
            for (s, r) in &a.refs {
                if let Some(sh) = st.shards.get_mut(s) {
                    let end = data_end.entry(*s).or_insert(0);
                    if r.first_pos < *end {
                        continue;
                    }
                    *end = r.end_pos();
                    sh.tip = sh.tip.max(r.end_pos());
                    sh.last_ts = Some(sh.last_ts.map_or(r.ts, |l| l.max(r.ts)));
                    sh.recent.push(*r);
                }
            }
            a.refs.retain(|(_, r)| r.len > 0);
            a
        }
        None => {
            let seg = last.map_or(0, |l| l + 1);
            let file = fs.open_rw(&segment_path(&dir, seg))?;
            file.set_len(0)?;
            fs.sync_dir(&dir)?;
            ActiveInit {
                seg,
                file,
                len: 0,
                refs: Vec::new(),
            }
        }
    };
    let inner = Arc::new(Inner {
        dir,
        fs,
        clock: config.clock.clone(),
        durability: config.durability,
        opts: opts.clone(),
        state: RwLock::new(st),
        meta: Mutex::new(meta_store),
        files: Mutex::new(Lru::new(opts.max_open_files.max(1))),
        indexes: Mutex::new(indexes),
        next_compact: AtomicU64::new(next_compact),
        maintenance: Mutex::new(()),
    });
    Ok((inner, active))
}
