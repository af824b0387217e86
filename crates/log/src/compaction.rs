//! Compaction: reclaiming space of sealed segments that are mostly dead.
//!
//! Owns: choosing sealed segments where at least half the bytes belong to
//! deleted shards, expired spans or trimmed positions, and rewriting their
//! live frames into a new segment (id from a separate range starting at
//! [`COMPACT_BASE`], so it never collides with journal segments). Frames are
//! copied verbatim (checksums verified on the way), keeping positions and
//! timestamps. Crash safety: the output segment is fsynced, then its sidecar
//! (naming the source) is made durable, then in-memory spans switch, then the
//! source is removed. At startup an output without a sidecar, or whose source
//! still exists, is discarded, so either the source or the output is used,
//! never both and never a partial output.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::LogError;
use crate::engine::{Inner, SealedSeg};
use crate::fs::{segment_path, sidecar_name};
use crate::index::{self, FrameRef};

/// First id of compaction output segments.
pub const COMPACT_BASE: u64 = 1 << 62;

impl Inner {
    /// One compaction pass. Returns the number of segments rewritten.
    pub fn run_compaction(&self) -> Result<usize, LogError> {
        let _m = self.maintenance.lock().unwrap();
        let now = self.clock.now_ms();
        // Not worth rewriting a segment for less than this.
        let min_dead = (self.opts.segment_bytes / 16).max(1);
        let candidates: Vec<u64> = {
            let st = self.state.read().unwrap();
            st.sealed
                .iter()
                .filter(|(_, seg)| {
                    let dead: u64 = seg
                        .shards
                        .iter()
                        .filter(|(s, sp)| st.span_dead(*s, sp, now))
                        .map(|(_, sp)| sp.bytes)
                        .sum();
                    let total: u64 = seg.shards.iter().map(|(_, sp)| sp.bytes).sum();
                    // Wholly dead segments are for retention to delete.
                    dead < total && dead >= min_dead && dead * 2 >= total
                })
                .map(|(id, _)| *id)
                .collect()
        };
        let mut n = 0;
        for seg in candidates {
            self.compact_one(seg)?;
            n += 1;
        }
        Ok(n)
    }

    fn compact_one(&self, seg: u64) -> Result<(), LogError> {
        let idx = self.segment_index(seg)?;
        // Live frames per shard: a suffix of the shard's frames (timestamps
        // and positions only grow), so spans stay contiguous.
        let mut live: Vec<(u64, Vec<FrameRef>)> = {
            let st = self.state.read().unwrap();
            idx.by_shard
                .iter()
                .filter_map(|(s, refs)| {
                    let sh = st.shards.get(s)?;
                    let cutoff = self.cutoff(&st, sh);
                    let keep: Vec<FrameRef> = refs
                        .iter()
                        .filter(|r| r.ts >= cutoff && r.end_pos() > sh.floor)
                        .copied()
                        .collect();
                    (!keep.is_empty()).then_some((*s, keep))
                })
                .collect()
        };
        live.sort_by_key(|(s, _)| *s);
        let new_id = self.next_compact.fetch_add(1, Ordering::SeqCst);
        let path = segment_path(&self.dir, new_id);
        let res = (|| -> Result<(Vec<u8>, u64), LogError> {
            let out = self.fs.open_rw(&path)?;
            out.set_len(0)?;
            let src = self.segment_file(seg)?;
            let mut refs = Vec::new();
            let mut buf: Vec<u8> = Vec::with_capacity(4 << 20);
            let mut written = 0u64;
            let mut off = 0u64;
            for (s, frames) in &live {
                for r in frames {
                    let start = buf.len();
                    buf.resize(start + r.len as usize, 0);
                    src.read_exact_at(&mut buf[start..], r.offset)?;
                    crate::frame::verify_frame(&buf[start..]).map_err(|e| {
                        LogError::Io(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("compaction of segment {seg}: frame at {}: {e}", r.offset),
                        ))
                    })?;
                    refs.push((
                        *s,
                        FrameRef {
                            seg: new_id,
                            offset: off,
                            ..*r
                        },
                    ));
                    off += r.len as u64;
                    if buf.len() >= 4 << 20 {
                        out.write_all_at(&buf, written)?;
                        written += buf.len() as u64;
                        buf.clear();
                    }
                }
            }
            out.write_all_at(&buf, written)?;
            out.sync_data()?;
            let sidecar = index::encode_sidecar(new_id, off, seg, &refs);
            self.fs
                .write_atomic(&self.dir, &sidecar_name(new_id), &sidecar)?;
            Ok((sidecar, off))
        })();
        let (sidecar, new_len) = match res {
            Ok(x) => x,
            Err(e) => {
                let _ = self.fs.remove(&path);
                let _ = self.fs.remove(&self.dir.join(sidecar_name(new_id)));
                return Err(e);
            }
        };
        // Tips of shards whose data leaves with the source must survive.
        {
            let mut meta = self.meta.lock().unwrap();
            meta.write_snapshot(&self.snapshot_state())?;
        }
        let (summary, new_idx) = index::decode_full(&sidecar)?;
        {
            let mut st = self.state.write().unwrap();
            if let Some(old) = st.sealed.remove(&seg) {
                for (s, _) in &old.shards {
                    if let Some(sh) = st.shards.get_mut(s) {
                        let replacement = summary.shards.iter().find(|(x, _)| x == s).map(|x| x.1);
                        let spans = Arc::make_mut(&mut sh.spans);
                        if let Some(i) = spans.iter().position(|sp| sp.seg == seg) {
                            match replacement {
                                Some(r) => spans[i] = r,
                                None => {
                                    spans.remove(i);
                                }
                            }
                        }
                        debug_assert!(spans.windows(2).all(|w| w[0].end_pos <= w[1].first_pos));
                    }
                }
            }
            st.sealed.insert(
                new_id,
                SealedSeg {
                    len: new_len,
                    shards: summary.shards,
                },
            );
        }
        let w = new_idx.entries.max(1);
        self.indexes
            .lock()
            .unwrap()
            .insert(new_id, Arc::new(new_idx), w);
        self.indexes.lock().unwrap().remove(seg);
        self.files.lock().unwrap().remove(seg);
        let _ = self.fs.remove(&segment_path(&self.dir, seg));
        let _ = self.fs.remove(&self.dir.join(sidecar_name(seg)));
        self.fs.sync_dir(&self.dir)?;
        tracing::info!(seg, new_id, new_len, "compacted segment");
        Ok(())
    }
}
