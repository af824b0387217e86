//! Indexes: where each shard's frames are.
//!
//! Owns: [`FrameRef`] (one frame's location and positions), [`Span`] (a
//! shard's range inside one sealed segment), binary searches over them, and
//! the persisted per-segment sidecar index (`NNN.idx`) written when a
//! segment is sealed. Sidecar layout (little endian):
//!
//! ```text
//! header (48 B): magic u32, version u32, segment u64, segment_len u64,
//!                source u64 (segment this one compacts, u64::MAX if none),
//!                n_shards u32, n_entries u32, summary_crc u32, entries_crc u32
//! summaries (56 B each, sorted by shard): shard u64, first_pos u64, end_pos u64,
//!                first_ts i64, last_ts i64, bytes u64, entry_start u32, entry_count u32
//! entries (32 B each, grouped by shard, by position): offset u64, len u32,
//!                count u32, first_pos u64, ts i64
//! ```
//! `summary_crc` covers the first 40 header bytes and the summaries, so
//! startup reads and verifies only the header and summaries;
//! `entries_crc` is verified when a segment's index is loaded for reads.

use std::collections::HashMap;
use std::io;

use crate::ShardId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef {
    pub seg: u64,
    pub offset: u64,
    pub len: u32,
    pub count: u32,
    pub first_pos: u64,
    pub ts: i64,
}

impl FrameRef {
    pub fn end_pos(&self) -> u64 {
        self.first_pos + self.count as u64
    }
}

/// A shard's data inside one sealed segment: positions `first_pos..end_pos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub seg: u64,
    pub first_pos: u64,
    pub end_pos: u64,
    pub first_ts: i64,
    pub last_ts: i64,
    /// Bytes of this shard's frames in the segment.
    pub bytes: u64,
}

/// Index of the first frame that holds `pos` or starts after it.
pub fn frame_for_pos(refs: &[FrameRef], pos: u64) -> usize {
    refs.partition_point(|r| r.end_pos() <= pos)
}
/// Index of the first frame with timestamp >= `ts`.
pub fn frame_for_time(refs: &[FrameRef], ts: i64) -> usize {
    refs.partition_point(|r| r.ts < ts)
}
/// Index of the first span holding `pos` or starting after it.
pub fn span_for_pos(spans: &[Span], pos: u64) -> usize {
    spans.partition_point(|s| s.end_pos <= pos)
}
/// Index of the first span whose last timestamp is >= `ts`.
pub fn span_for_time(spans: &[Span], ts: i64) -> usize {
    spans.partition_point(|s| s.last_ts < ts)
}

pub const SIDECAR_MAGIC: u32 = 0xEDD1_1DC5;
const VERSION: u32 = 1;
const HDR: usize = 48;
const SUM: usize = 56;
/// `source` value of a segment written by the journal (not a compaction).
pub const NO_SOURCE: u64 = u64::MAX;
const ENT: usize = 32;

/// The per-shard summary of a sealed segment (what startup loads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarSummary {
    pub seg: u64,
    pub seg_len: u64,
    /// The segment this one replaces (compaction output), if any.
    pub source: Option<u64>,
    pub shards: Vec<(ShardId, Span)>,
}

/// A sealed segment's full index (what reads load, cached).
#[derive(Debug)]
pub struct SegIndex {
    pub by_shard: HashMap<ShardId, Vec<FrameRef>>,
    pub entries: usize,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("sidecar index: {msg}"))
}

/// Encodes a sidecar. `entries` must be the segment's frames; they are
/// grouped by shard keeping their (position) order.
pub fn encode_sidecar(
    seg: u64,
    seg_len: u64,
    source: u64,
    entries: &[(ShardId, FrameRef)],
) -> Vec<u8> {
    let mut sorted: Vec<&(ShardId, FrameRef)> = entries.iter().collect();
    sorted.sort_by_key(|(s, r)| (*s, r.first_pos)); // stable, by position
    let mut sums: Vec<(ShardId, Span, u32, u32)> = Vec::new();
    for (i, (s, r)) in sorted.iter().enumerate() {
        debug_assert_eq!(r.seg, seg);
        match sums.last_mut() {
            Some((ls, span, _, cnt)) if ls == s => {
                debug_assert_eq!(span.end_pos, r.first_pos, "positions dense in segment");
                span.end_pos = r.end_pos();
                span.last_ts = r.ts;
                span.bytes += r.len as u64;
                *cnt += 1;
            }
            _ => sums.push((
                *s,
                Span {
                    seg,
                    first_pos: r.first_pos,
                    end_pos: r.end_pos(),
                    first_ts: r.ts,
                    last_ts: r.ts,
                    bytes: r.len as u64,
                },
                i as u32,
                1,
            )),
        }
    }
    let mut out = Vec::with_capacity(HDR + sums.len() * SUM + sorted.len() * ENT);
    out.extend_from_slice(&SIDECAR_MAGIC.to_le_bytes());
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&seg.to_le_bytes());
    out.extend_from_slice(&seg_len.to_le_bytes());
    out.extend_from_slice(&source.to_le_bytes());
    out.extend_from_slice(&(sums.len() as u32).to_le_bytes());
    out.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    for (s, sp, start, cnt) in &sums {
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(&sp.first_pos.to_le_bytes());
        out.extend_from_slice(&sp.end_pos.to_le_bytes());
        out.extend_from_slice(&sp.first_ts.to_le_bytes());
        out.extend_from_slice(&sp.last_ts.to_le_bytes());
        out.extend_from_slice(&sp.bytes.to_le_bytes());
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&cnt.to_le_bytes());
    }
    let ent_start = out.len();
    for (_, r) in &sorted {
        out.extend_from_slice(&r.offset.to_le_bytes());
        out.extend_from_slice(&r.len.to_le_bytes());
        out.extend_from_slice(&r.count.to_le_bytes());
        out.extend_from_slice(&r.first_pos.to_le_bytes());
        out.extend_from_slice(&r.ts.to_le_bytes());
    }
    let sum_crc = crc32c::crc32c_append(crc32c::crc32c(&out[..40]), &out[HDR..ent_start]);
    let ent_crc = crc32c::crc32c(&out[ent_start..]);
    out[40..44].copy_from_slice(&sum_crc.to_le_bytes());
    out[44..48].copy_from_slice(&ent_crc.to_le_bytes());
    out
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Parses the header; returns (seg, seg_len, n_shards, n_entries).
pub fn decode_sidecar_header(b: &[u8]) -> io::Result<(u64, u64, usize, usize)> {
    if b.len() < HDR || u32_at(b, 0) != SIDECAR_MAGIC || u32_at(b, 4) != VERSION {
        return Err(bad("bad header"));
    }
    Ok((
        u64_at(b, 8),
        u64_at(b, 16),
        u32_at(b, 32) as usize,
        u32_at(b, 36) as usize,
    ))
}

/// Header length in bytes.
pub const SIDECAR_HEADER_LEN: usize = HDR;

/// Bytes of header + summaries, given the header.
pub fn summary_bytes(n_shards: usize) -> usize {
    HDR + n_shards * SUM
}

/// Decodes and verifies header + summaries (`b` may hold more).
pub fn decode_summary(b: &[u8]) -> io::Result<SidecarSummary> {
    let (seg, seg_len, ns, _ne) = decode_sidecar_header(b)?;
    let end = summary_bytes(ns);
    if b.len() < end {
        return Err(bad("truncated summary"));
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..40]), &b[HDR..end]);
    if crc != u32_at(b, 40) {
        return Err(bad("summary checksum mismatch"));
    }
    let mut shards = Vec::with_capacity(ns);
    for i in 0..ns {
        let o = HDR + i * SUM;
        let span = Span {
            seg,
            first_pos: u64_at(b, o + 8),
            end_pos: u64_at(b, o + 16),
            first_ts: u64_at(b, o + 24) as i64,
            last_ts: u64_at(b, o + 32) as i64,
            bytes: u64_at(b, o + 40),
        };
        if span.end_pos <= span.first_pos || span.last_ts < span.first_ts {
            return Err(bad("inconsistent summary"));
        }
        shards.push((u64_at(b, o), span));
    }
    let source = u64_at(b, 24);
    Ok(SidecarSummary {
        seg,
        seg_len,
        source: (source != NO_SOURCE).then_some(source),
        shards,
    })
}

/// Decodes and verifies a whole sidecar.
pub fn decode_full(b: &[u8]) -> io::Result<(SidecarSummary, SegIndex)> {
    let sum = decode_summary(b)?;
    let (_, _, ns, ne) = decode_sidecar_header(b)?;
    let es = summary_bytes(ns);
    if b.len() != es + ne * ENT {
        return Err(bad("bad length"));
    }
    if crc32c::crc32c(&b[es..]) != u32_at(b, 44) {
        return Err(bad("entries checksum mismatch"));
    }
    let mut by_shard = HashMap::with_capacity(ns);
    for i in 0..ns {
        let o = HDR + i * SUM;
        let shard = u64_at(b, o);
        let start = u32_at(b, o + 48) as usize;
        let cnt = u32_at(b, o + 52) as usize;
        if start + cnt > ne {
            return Err(bad("entry range out of bounds"));
        }
        let mut refs = Vec::with_capacity(cnt);
        for j in start..start + cnt {
            let e = es + j * ENT;
            refs.push(FrameRef {
                seg: sum.seg,
                offset: u64_at(b, e),
                len: u32_at(b, e + 8),
                count: u32_at(b, e + 12),
                first_pos: u64_at(b, e + 16),
                ts: u64_at(b, e + 24) as i64,
            });
        }
        let span = sum.shards[i].1;
        let ok = refs.first().is_some_and(|r| r.first_pos == span.first_pos)
            && refs.last().is_some_and(|r| r.end_pos() == span.end_pos)
            && refs
                .windows(2)
                .all(|w| w[0].end_pos() == w[1].first_pos && w[0].ts <= w[1].ts)
            && refs.iter().all(|r| r.offset + r.len as u64 <= sum.seg_len)
            && refs.iter().map(|r| r.len as u64).sum::<u64>() == span.bytes;
        if !ok {
            return Err(bad("entries disagree with summary"));
        }
        by_shard.insert(shard, refs);
    }
    Ok((
        sum,
        SegIndex {
            by_shard,
            entries: ne,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(shards: &[(u64, Vec<(u32, i64)>)], seg: u64) -> (Vec<(ShardId, FrameRef)>, u64) {
        // Interleave frames of the shards round-robin, as the journal does.
        let mut out = Vec::new();
        let mut off = 0u64;
        let mut pos: HashMap<u64, u64> = HashMap::new();
        let maxlen = shards.iter().map(|s| s.1.len()).max().unwrap_or(0);
        for i in 0..maxlen {
            for (s, frames) in shards {
                if let Some((count, ts)) = frames.get(i) {
                    let p = pos.entry(*s).or_insert(1000);
                    let r = FrameRef {
                        seg,
                        offset: off,
                        len: 50,
                        count: *count,
                        first_pos: *p,
                        ts: *ts,
                    };
                    *p += *count as u64;
                    off += 50;
                    out.push((*s, r));
                }
            }
        }
        (out, off)
    }

    fn shards_strategy() -> impl Strategy<Value = Vec<(u64, Vec<(u32, i64)>)>> {
        proptest::collection::btree_map(
            any::<u64>(),
            proptest::collection::vec((1u32..10, 0i64..5), 1..30).prop_map(|v| {
                let mut t = 0;
                v.into_iter()
                    .map(|(c, d)| {
                        t += d;
                        (c, t)
                    })
                    .collect::<Vec<_>>()
            }),
            1..8,
        )
        .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        #[test]
        fn sidecar_roundtrips_and_summaries_match_entries(shards in shards_strategy(), seg in 0u64..1000) {
            let (entries, len) = build(&shards, seg);
            let b = encode_sidecar(seg, len, NO_SOURCE, &entries);
            let (sum, idx) = decode_full(&b).unwrap();
            prop_assert_eq!(sum.clone(), decode_summary(&b[..summary_bytes(shards.len())]).unwrap());
            prop_assert_eq!(sum.source, None);
            prop_assert_eq!(decode_summary(&encode_sidecar(seg, len, 5, &entries)).unwrap().source, Some(5));
            prop_assert_eq!(sum.seg_len, len);
            for (s, _) in &shards {
                let want: Vec<FrameRef> = entries.iter().filter(|(x, _)| x == s).map(|(_, r)| *r).collect();
                prop_assert_eq!(&idx.by_shard[s], &want);
                let span = sum.shards.iter().find(|(x, _)| x == s).unwrap().1;
                prop_assert_eq!(span.first_pos, want[0].first_pos);
                prop_assert_eq!(span.end_pos, want.last().unwrap().end_pos());
            }
        }

        #[test]
        fn sidecar_corruption_is_detected(shards in shards_strategy(), bit in any::<prop::sample::Index>()) {
            let (entries, len) = build(&shards, 3);
            let mut b = encode_sidecar(3, len, 9, &entries);
            let i = bit.index(b.len() * 8);
            b[i / 8] ^= 1 << (i % 8);
            prop_assert!(decode_full(&b).is_err());
        }

        #[test]
        fn searches_find_the_frame_holding_a_position_and_the_first_at_a_time(
            frames in proptest::collection::vec((1u32..10, 0i64..3), 1..50), probe in 0u64..600, tprobe in -1i64..200,
        ) {
            let mut refs = Vec::new();
            let (mut p, mut t) = (0u64, 0i64);
            for (c, d) in frames { t += d; refs.push(FrameRef { seg: 0, offset: 0, len: 1, count: c, first_pos: p, ts: t }); p += c as u64; }
            let i = frame_for_pos(&refs, probe);
            // linear model
            let want = refs.iter().position(|r| r.end_pos() > probe).unwrap_or(refs.len());
            prop_assert_eq!(i, want);
            if i < refs.len() { prop_assert!(refs[i].first_pos <= probe.max(refs[i].first_pos)); }
            let j = frame_for_time(&refs, tprobe);
            let wantj = refs.iter().position(|r| r.ts >= tprobe).unwrap_or(refs.len());
            prop_assert_eq!(j, wantj);
        }
    }
}
