//! Sequence numbers: AWS-shaped 56-digit decimal strings that encode where a
//! record lives, so AT_SEQUENCE_NUMBER seeks without scanning.
//!
//! Layout (decimal digits): `49` | stream tag (14) | shard index (10) |
//! point (20) | `0000000000` (10, reserved). The point counts the records of
//! the shard up to and including the one named: record at position `p` has
//! point `p + 1`, and point 0 is "before the first record" (the shard's
//! StartingSequenceNumber). So AFTER_SEQUENCE_NUMBER of any number, including
//! a ContinuationSequenceNumber before anything was delivered, is simply
//! position = point. Within a shard the number
//! grows with the position, so numeric order is append order, and the stream
//! tag (random per stream incarnation) tells a number from another stream
//! (or from a deleted stream of the same name) apart. A closed shard's
//! EndingSequenceNumber uses position `99999999999999999999`, above every
//! real position (positions are u64, at most 20 digits).

pub const TAG_LIMIT: u64 = 100_000_000_000_000; // 10^14
const ENDING_POSITION_DIGITS: &str = "99999999999999999999";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqNo {
    pub stream_tag: u64,
    pub shard_index: u32,
    /// Records up to and including this one (see the module docs); `None`
    /// is the "end of a closed shard" marker.
    pub point: Option<u64>,
}

impl SeqNo {
    /// Position an AT_SEQUENCE_NUMBER iterator starts from.
    pub fn at(point: u64) -> u64 {
        point.saturating_sub(1)
    }
}

/// The sequence number of the record at `position`.
pub fn encode(stream_tag: u64, shard_index: u32, position: u64) -> String {
    encode_point(stream_tag, shard_index, position + 1)
}

/// The sequence number of a point: records before `point` are behind it.
pub fn encode_point(stream_tag: u64, shard_index: u32, point: u64) -> String {
    layout(stream_tag, shard_index, Some(point))
}

pub fn encode_ending(stream_tag: u64, shard_index: u32) -> String {
    layout(stream_tag, shard_index, None)
}

/// Writes the 56 digits into one exact-size buffer: one allocation per
/// number (PutRecords and GetRecords make one per record; `format!` with
/// padded fields cost several reallocations and most of a microsecond).
fn layout(stream_tag: u64, shard_index: u32, point: Option<u64>) -> String {
    // Every byte is an ASCII digit.
    String::from_utf8(digits(stream_tag, shard_index, point).to_vec()).expect("ASCII digits")
}

/// The sequence number of the record at `position` as a JSON string,
/// written straight into a GetRecords answer.
pub fn write_json(out: &mut Vec<u8>, stream_tag: u64, shard_index: u32, position: u64) {
    out.push(b'"');
    out.extend_from_slice(&digits(stream_tag, shard_index, Some(position + 1)));
    out.push(b'"');
}

fn digits(stream_tag: u64, shard_index: u32, point: Option<u64>) -> [u8; 56] {
    assert!(stream_tag < TAG_LIMIT, "stream tag has 14 digits");
    let mut digits = [b'0'; 56];
    digits[0] = b'4';
    digits[1] = b'9';
    fixed_width(&mut digits[2..16], stream_tag);
    fixed_width(&mut digits[16..26], u64::from(shard_index));
    match point {
        Some(point) => fixed_width(&mut digits[26..46], point),
        None => digits[26..46].copy_from_slice(ENDING_POSITION_DIGITS.as_bytes()),
    }
    digits
}

/// `value` as zero-padded decimal filling `out` exactly (the callers' widths
/// hold every value their fields can take).
pub(crate) fn fixed_width(out: &mut [u8], mut value: u64) {
    // Two digits per division: a GetRecords answer formats 10,000 of these.
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";
    let mut end = out.len();
    while end >= 2 {
        let pair = (value % 100) as usize * 2;
        value /= 100;
        out[end - 2..end].copy_from_slice(&PAIRS[pair..pair + 2]);
        end -= 2;
    }
    if end == 1 {
        out[0] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    debug_assert_eq!(value, 0, "value wider than its field");
}

/// Decodes a sequence number; `None` if it is not one of ours.
pub fn decode(s: &str) -> Option<SeqNo> {
    let b = s.as_bytes();
    if b.len() != 56 || !b.iter().all(u8::is_ascii_digit) || !s.starts_with("49") {
        return None;
    }
    if &s[46..] != "0000000000" {
        return None;
    }
    let stream_tag: u64 = s[2..16].parse().ok()?;
    let shard_index: u32 = s[16..26].parse().ok()?;
    let pos = &s[26..46];
    let point = if pos == ENDING_POSITION_DIGITS {
        None
    } else {
        Some(pos.parse::<u64>().ok()?)
    };
    Some(SeqNo {
        stream_tag,
        shard_index,
        point,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_round_trip_and_order_by_position() {
        let a = encode(12345, 7, 9);
        let b = encode(12345, 7, 10);
        assert_eq!(a.len(), 56);
        assert!(a < b, "same-length decimal strings order numerically");
        assert_eq!(
            decode(&a),
            Some(SeqNo {
                stream_tag: 12345,
                shard_index: 7,
                point: Some(10)
            })
        );
        let end = encode_ending(12345, 7);
        assert!(b < end);
        assert_eq!(decode(&end).unwrap().point, None);
        assert_eq!(
            decode(&encode(1, 2, u64::MAX - 1)).unwrap().point,
            Some(u64::MAX)
        );
        assert!(
            encode_point(1, 2, 0) < encode(1, 2, 0),
            "the shard start is before its first record"
        );
        assert_eq!(SeqNo::at(0), 0);
        assert_eq!(SeqNo::at(10), 9);
    }

    #[test]
    fn digits_are_the_documented_zero_padded_fields() {
        for (tag, shard, point) in [
            (0, 0, 0),
            (1, 2, 3),
            (TAG_LIMIT - 1, u32::MAX, u64::MAX),
            (
                98_765_432_101_234,
                4_000_000_000,
                12_345_678_901_234_567_890,
            ),
        ] {
            assert_eq!(
                encode_point(tag, shard, point),
                format!("49{tag:014}{shard:010}{point:020}0000000000")
            );
        }
        assert_eq!(
            encode_ending(5, 6),
            format!("49{:014}{:010}{}0000000000", 5, 6, "9".repeat(20))
        );
    }

    #[test]
    fn foreign_numbers_are_rejected() {
        assert_eq!(decode("1"), None);
        assert_eq!(decode(&"4".repeat(56)), None);
        let mut s = encode(1, 1, 1);
        s.replace_range(55..56, "1");
        assert_eq!(decode(&s), None);
    }
}
