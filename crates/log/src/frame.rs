//! Batch frame format: the unit of data written to segment files.
//!
//! Owns: encoding one shard's batch of records as a checksummed frame and
//! decoding/validating it. Layout (little endian), 44-byte header then payload:
//!
//! ```text
//! 0  magic u32 = FRAME_MAGIC      4  kind u8 (1 = data), 3 reserved zero bytes
//! 8  shard u64                    16 first_position u64
//! 24 timestamp_ms i64             32 record count u32
//! 36 payload_len u32              40 crc32c u32 of bytes 0..40 and the payload
//! payload: per record  key_len u32, value_len u32, key, value
//! ```
//! All records of a frame share the timestamp and have consecutive positions.

use bytes::Bytes;

use crate::AppendRecord;

pub const FRAME_MAGIC: u32 = 0xEDD1_F4A3;
pub const HEADER_LEN: usize = 44;
pub const KIND_DATA: u8 = 1;
/// Largest key + value of one record.
pub const MAX_RECORD_BYTES: usize = 16 << 20;
/// Largest frame payload; batches larger than this are split into frames.
pub const MAX_FRAME_PAYLOAD: usize = 32 << 20;
/// Per-record overhead inside the payload.
pub const RECORD_OVERHEAD: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub shard: u64,
    pub first_pos: u64,
    pub ts: i64,
    pub count: u32,
    pub payload_len: u32,
}

impl FrameHeader {
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("truncated frame")]
    Truncated,
    #[error("bad frame magic or kind")]
    BadMagic,
    #[error("frame length out of bounds")]
    BadLength,
    #[error("frame checksum mismatch")]
    BadChecksum,
    #[error("frame payload does not match its record count")]
    BadPayload,
}

/// Payload size of `records` (without header).
pub fn payload_len(records: &[AppendRecord]) -> usize {
    records
        .iter()
        .map(|r| RECORD_OVERHEAD + r.key.len() + r.value.len())
        .sum()
}

/// Appends one frame for `records` to `out`. Caller ensures the payload is
/// at most [`MAX_FRAME_PAYLOAD`].
pub fn encode_frame(
    out: &mut Vec<u8>,
    shard: u64,
    first_pos: u64,
    ts: i64,
    records: &[AppendRecord],
) {
    let plen = payload_len(records);
    assert!(plen <= MAX_FRAME_PAYLOAD, "frame payload too large");
    let start = out.len();
    out.reserve(HEADER_LEN + plen);
    out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    out.extend_from_slice(&[KIND_DATA, 0, 0, 0]);
    out.extend_from_slice(&shard.to_le_bytes());
    out.extend_from_slice(&first_pos.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    out.extend_from_slice(&(plen as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for r in records {
        out.extend_from_slice(&(r.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.key);
        out.extend_from_slice(&r.value);
    }
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&out[start..start + 40]),
        &out[start + HEADER_LEN..],
    );
    out[start + 40..start + 44].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len() - start, HEADER_LEN + plen);
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Parses a header (no checksum check): magic, kind and length sanity.
pub fn decode_header(b: &[u8]) -> Result<FrameHeader, FrameError> {
    if b.len() < HEADER_LEN {
        return Err(FrameError::Truncated);
    }
    if u32_at(b, 0) != FRAME_MAGIC || b[4] != KIND_DATA || b[5..8] != [0, 0, 0] {
        return Err(FrameError::BadMagic);
    }
    let h = FrameHeader {
        shard: u64_at(b, 8),
        first_pos: u64_at(b, 16),
        ts: u64_at(b, 24) as i64,
        count: u32_at(b, 32),
        payload_len: u32_at(b, 36),
    };
    let plen = h.payload_len as usize;
    if plen > MAX_FRAME_PAYLOAD || h.count == 0 || (h.count as usize) * RECORD_OVERHEAD > plen {
        return Err(FrameError::BadLength);
    }
    Ok(h)
}

/// Validates a complete frame (`b` starts at the frame; may be longer) and
/// returns its header. Checks magic, lengths, checksum and record layout.
pub fn verify_frame(b: &[u8]) -> Result<FrameHeader, FrameError> {
    let h = decode_header(b)?;
    let len = h.frame_len();
    if b.len() < len {
        return Err(FrameError::Truncated);
    }
    let want = u32_at(b, 40);
    let got = crc32c::crc32c_append(crc32c::crc32c(&b[..40]), &b[HEADER_LEN..len]);
    if want != got {
        return Err(FrameError::BadChecksum);
    }
    // Record layout must exactly fill the payload.
    let mut o = HEADER_LEN;
    for _ in 0..h.count {
        if o + RECORD_OVERHEAD > len {
            return Err(FrameError::BadPayload);
        }
        let kl = u32_at(b, o) as usize;
        let vl = u32_at(b, o + 4) as usize;
        o += RECORD_OVERHEAD;
        if kl + vl > len - o {
            return Err(FrameError::BadPayload);
        }
        o += kl + vl;
    }
    if o != len {
        return Err(FrameError::BadPayload);
    }
    Ok(h)
}

/// Decodes the records of a verified frame held in `frame` (exactly the
/// frame's bytes, or a longer buffer starting at it). Keys and values are
/// zero-copy slices of `frame`. Calls `f(index, key, value)` per record;
/// stops early when `f` returns false.
pub fn for_each_record(
    frame: &Bytes,
    h: &FrameHeader,
    mut f: impl FnMut(u32, Bytes, Bytes) -> bool,
) {
    let mut o = HEADER_LEN;
    for i in 0..h.count {
        let kl = u32_at(frame, o) as usize;
        let vl = u32_at(frame, o + 4) as usize;
        o += RECORD_OVERHEAD;
        let key = frame.slice(o..o + kl);
        let value = frame.slice(o + kl..o + kl + vl);
        o += kl + vl;
        if !f(i, key, value) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn recs(v: &[(Vec<u8>, Vec<u8>)]) -> Vec<AppendRecord> {
        v.iter()
            .map(|(k, v)| AppendRecord {
                key: Bytes::from(k.clone()),
                value: Bytes::from(v.clone()),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn frame_roundtrips_any_records(
            shard: u64, pos in 0u64..u64::MAX / 2, ts: i64,
            data in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..40), proptest::collection::vec(any::<u8>(), 0..200)), 1..20)
        ) {
            let r = recs(&data);
            let mut out = vec![1, 2, 3];
            encode_frame(&mut out, shard, pos, ts, &r);
            let h = verify_frame(&out[3..]).unwrap();
            prop_assert_eq!(h, FrameHeader { shard, first_pos: pos, ts, count: r.len() as u32, payload_len: payload_len(&r) as u32 });
            prop_assert_eq!(h.frame_len(), out.len() - 3);
            let b = Bytes::from(out[3..].to_vec());
            let mut got = Vec::new();
            for_each_record(&b, &h, |_, k, v| { got.push((k.to_vec(), v.to_vec())); true });
            prop_assert_eq!(got, data);
        }

        #[test]
        fn any_single_bit_flip_is_detected(
            data in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..10), proptest::collection::vec(any::<u8>(), 0..50)), 1..5),
            bit in any::<prop::sample::Index>(),
        ) {
            let r = recs(&data);
            let mut out = Vec::new();
            encode_frame(&mut out, 7, 100, 5, &r);
            let i = bit.index(out.len() * 8);
            out[i / 8] ^= 1 << (i % 8);
            prop_assert!(verify_frame(&out).is_err());
        }

        #[test]
        fn every_truncation_is_detected(
            data in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..10), proptest::collection::vec(any::<u8>(), 0..50)), 1..5),
            cut in any::<prop::sample::Index>(),
        ) {
            let r = recs(&data);
            let mut out = Vec::new();
            encode_frame(&mut out, 7, 100, 5, &r);
            let n = cut.index(out.len());
            prop_assert!(verify_frame(&out[..n]).is_err());
        }
    }

    #[test]
    fn garbage_and_zeroes_are_not_frames() {
        assert_eq!(verify_frame(&[0u8; 100]), Err(FrameError::BadMagic));
        assert_eq!(verify_frame(&[0u8; 10]), Err(FrameError::Truncated));
    }
}
