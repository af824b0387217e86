//! Hash keys: the 128-bit space partition keys map into, and the even split
//! of that space across shards.

/// MD5 of the UTF-8 partition key as a big-endian unsigned 128-bit integer
/// (PutRecords hashes a call's keys together with `eddy_md5x::hash_keys`).
pub use eddy_md5x::hash_key as hash_partition_key;

/// Parses a decimal hash key (already pattern-checked by the validator);
/// `None` if it exceeds 2^128 - 1.
pub fn parse_hash_key(s: &str) -> Option<u128> {
    s.parse::<u128>().ok()
}

/// The ranges of `n` shards splitting the whole space evenly, as AWS does:
/// width floor(2^128 / n), the last range ending at 2^128 - 1.
pub fn even_ranges(n: u32) -> Vec<(u128, u128)> {
    even_ranges_within(0, u128::MAX, n)
}

/// `n` contiguous ranges splitting `[start, end]` evenly, the last one
/// absorbing the remainder.
pub fn even_ranges_within(start: u128, end: u128, n: u32) -> Vec<(u128, u128)> {
    assert!(n >= 1 && start <= end);
    let n128 = n as u128;
    // Width of the whole range is end - start + 1, which may be 2^128.
    let width = if start == 0 && end == u128::MAX {
        // floor(2^128 / n) without overflow.
        if n == 1 {
            u128::MAX
        } else {
            (u128::MAX / n128) + u128::from(u128::MAX % n128 == n128 - 1)
        }
    } else {
        (end - start + 1) / n128
    };
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n128 {
        let s = start + width * i;
        let e = if i == n128 - 1 { end } else { s + width - 1 };
        out.push((s, e));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_ranges_cover_the_space_without_gaps() {
        for n in [1u32, 2, 3, 4, 5, 7, 10, 100] {
            let r = even_ranges(n);
            assert_eq!(r.len(), n as usize);
            assert_eq!(r[0].0, 0);
            assert_eq!(r.last().unwrap().1, u128::MAX);
            for w in r.windows(2) {
                assert_eq!(w[0].1 + 1, w[1].0);
            }
        }
    }

    #[test]
    fn four_shards_split_like_aws() {
        let r = even_ranges(4);
        assert_eq!(r[1].0.to_string(), "85070591730234615865843651857942052864");
        assert_eq!(r[0].1.to_string(), "85070591730234615865843651857942052863");
    }

    #[test]
    fn partition_key_hash_is_md5_big_endian() {
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(hash_partition_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
    }
}
