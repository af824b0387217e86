//! `eddy-md5x`: MD5 of many messages at once. Kinesis routes every record by
//! the MD5 of its partition key (the server hashes the keys of each
//! PutRecords call; the producer hashes keys and every aggregate's KPL
//! trailer); one message's MD5 is a
//! serial chain of dependent steps, but independent messages can go side by
//! side: with AVX-512 sixteen messages are digested in the time of about
//! two. Without AVX-512 (or for a handful of messages) each message goes
//! through the `md-5` crate. Results are plain MD5 either way (tests compare
//! against `md-5` for every length across block boundaries).

use md5::{Digest, Md5};

/// Fewer messages than this are digested one by one.
#[cfg(target_arch = "x86_64")]
const MIN_PARALLEL: usize = 3;

/// MD5 digests of `msgs`, in order, into `out` (same length).
pub fn digests(msgs: &[&[u8]], out: &mut [[u8; 16]]) {
    assert_eq!(msgs.len(), out.len(), "one digest per message");
    #[cfg(target_arch = "x86_64")]
    if msgs.len() >= MIN_PARALLEL && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        unsafe { x86::digests_avx512(msgs, out) };
        return;
    }
    digests_one_by_one(msgs, out);
}

fn digests_one_by_one(msgs: &[&[u8]], out: &mut [[u8; 16]]) {
    for (m, o) in msgs.iter().zip(out.iter_mut()) {
        *o = Md5::digest(m).into();
    }
}

/// The 128-bit hash key Kinesis derives from a partition key: its MD5 read
/// as a big-endian unsigned integer.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// The 128-bit hash keys (MD5, big-endian) of many partition keys.
pub fn hash_keys(keys: &[&str], out: &mut [u128]) {
    assert_eq!(keys.len(), out.len(), "one hash per key");
    let msgs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let mut d = vec![[0u8; 16]; keys.len()];
    digests(&msgs, &mut d);
    for (o, d) in out.iter_mut().zip(d) {
        *o = u128::from_be_bytes(d);
    }
}

const IV: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// A message cut into 64-byte blocks: its whole blocks are read in place,
/// the last bytes with the padding and length are copied into `tail`.
struct Blocks<'a> {
    msg: &'a [u8],
    whole: usize,
    total: usize,
    tail: [u8; 128],
}

impl<'a> Blocks<'a> {
    fn new(msg: &'a [u8]) -> Blocks<'a> {
        let whole = msg.len() / 64;
        let rest = &msg[whole * 64..];
        let mut tail = [0u8; 128];
        tail[..rest.len()].copy_from_slice(rest);
        tail[rest.len()] = 0x80;
        let tail_blocks = if rest.len() < 56 { 1 } else { 2 };
        let end = tail_blocks * 64;
        tail[end - 8..end].copy_from_slice(&((msg.len() as u64).wrapping_mul(8)).to_le_bytes());
        Blocks {
            msg,
            whole,
            total: whole + tail_blocks,
            tail,
        }
    }

    fn block(&self, i: usize) -> &[u8] {
        if i < self.whole {
            &self.msg[i * 64..i * 64 + 64]
        } else {
            let j = (i - self.whole) * 64;
            &self.tail[j..j + 64]
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Blocks, IV};
    use std::arch::x86_64::*;

    const LANES: usize = 16;

    struct Lane<'a> {
        job: usize,
        next: usize,
        blocks: Blocks<'a>,
    }

    /// Sixteen messages at a time, each in its own 32-bit lane; a lane whose
    /// message is done takes the next one.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn digests_avx512(msgs: &[&[u8]], out: &mut [[u8; 16]]) {
        let mut lanes: [Option<Lane>; LANES] = Default::default();
        // State words a, b, c, d of every lane.
        let mut state = [[0u32; LANES]; 4];
        // The current block of every lane: lane * 16 + word.
        let mut words = [0u32; LANES * 16];
        let mut next_job = 0;
        loop {
            let mut active = 0;
            for (l, lane) in lanes.iter_mut().enumerate() {
                if lane.is_none() && next_job < msgs.len() {
                    *lane = Some(Lane {
                        job: next_job,
                        next: 0,
                        blocks: Blocks::new(msgs[next_job]),
                    });
                    next_job += 1;
                    for (s, iv) in state.iter_mut().zip(IV) {
                        s[l] = iv;
                    }
                }
                if let Some(lane) = lane {
                    active += 1;
                    let block = lane.blocks.block(lane.next);
                    for (w, b) in words[l * 16..l * 16 + 16]
                        .iter_mut()
                        .zip(block.chunks_exact(4))
                    {
                        *w = u32::from_le_bytes(b.try_into().expect("4 bytes"));
                    }
                }
            }
            if active == 0 {
                return;
            }
            // SAFETY: AVX-512F is enabled for this function.
            unsafe { compress16(&mut state, &words) };
            for (l, slot) in lanes.iter_mut().enumerate() {
                let Some(lane) = slot else { continue };
                lane.next += 1;
                if lane.next == lane.blocks.total {
                    let o = &mut out[lane.job];
                    for (i, s) in state.iter().enumerate() {
                        o[i * 4..i * 4 + 4].copy_from_slice(&s[l].to_le_bytes());
                    }
                    *slot = None;
                }
            }
        }
    }

    /// One MD5 block step in each of sixteen lanes.
    #[target_feature(enable = "avx512f")]
    unsafe fn compress16(state: &mut [[u32; LANES]; 4], words: &[u32; LANES * 16]) {
        // SAFETY: the loads and stores stay inside `state` (16 u32 each)
        // and the gathers inside `words` (indices < 256).
        unsafe {
            let a0 = _mm512_loadu_si512(state[0].as_ptr().cast());
            let b0 = _mm512_loadu_si512(state[1].as_ptr().cast());
            let c0 = _mm512_loadu_si512(state[2].as_ptr().cast());
            let d0 = _mm512_loadu_si512(state[3].as_ptr().cast());
            let lane_base = _mm512_setr_epi32(
                0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240,
            );
            let base = words.as_ptr().cast::<i32>();
            let mut m = [_mm512_setzero_si512(); 16];
            for (i, v) in m.iter_mut().enumerate() {
                let idx = _mm512_add_epi32(lane_base, _mm512_set1_epi32(i as i32));
                *v = _mm512_i32gather_epi32::<4>(idx, base);
            }
            let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
            macro_rules! step {
                ($f:literal, $a:ident, $b:ident, $c:ident, $d:ident, $w:expr, $k:expr, $s:literal) => {
                    let f = _mm512_ternarylogic_epi32::<$f>($b, $c, $d);
                    let t = _mm512_add_epi32(
                        _mm512_add_epi32($a, f),
                        _mm512_add_epi32(m[$w], _mm512_set1_epi32($k as i32)),
                    );
                    $a = _mm512_add_epi32($b, _mm512_rol_epi32::<$s>(t));
                };
            }
            // F = b ? c : d; G = d ? b : c; H = b ^ c ^ d; I = c ^ (b | !d).
            macro_rules! f {
                ($($w:expr, $k:expr, $s:literal);*) => {
                    f!(@ a b c d; $($w, $k, $s);*);
                };
                (@ $a:ident $b:ident $c:ident $d:ident; $w:expr, $k:expr, $s:literal $(; $rw:expr, $rk:expr, $rs:literal)*) => {
                    step!(0xCA, $a, $b, $c, $d, $w, $k, $s);
                    f!(@ $d $a $b $c; $($rw, $rk, $rs);*);
                };
                (@ $a:ident $b:ident $c:ident $d:ident;) => {};
            }
            macro_rules! g {
                ($($w:expr, $k:expr, $s:literal);*) => {
                    g!(@ a b c d; $($w, $k, $s);*);
                };
                (@ $a:ident $b:ident $c:ident $d:ident; $w:expr, $k:expr, $s:literal $(; $rw:expr, $rk:expr, $rs:literal)*) => {
                    step!(0xE4, $a, $b, $c, $d, $w, $k, $s);
                    g!(@ $d $a $b $c; $($rw, $rk, $rs);*);
                };
                (@ $a:ident $b:ident $c:ident $d:ident;) => {};
            }
            macro_rules! h {
                ($($w:expr, $k:expr, $s:literal);*) => {
                    h!(@ a b c d; $($w, $k, $s);*);
                };
                (@ $a:ident $b:ident $c:ident $d:ident; $w:expr, $k:expr, $s:literal $(; $rw:expr, $rk:expr, $rs:literal)*) => {
                    step!(0x96, $a, $b, $c, $d, $w, $k, $s);
                    h!(@ $d $a $b $c; $($rw, $rk, $rs);*);
                };
                (@ $a:ident $b:ident $c:ident $d:ident;) => {};
            }
            macro_rules! i {
                ($($w:expr, $k:expr, $s:literal);*) => {
                    i!(@ a b c d; $($w, $k, $s);*);
                };
                (@ $a:ident $b:ident $c:ident $d:ident; $w:expr, $k:expr, $s:literal $(; $rw:expr, $rk:expr, $rs:literal)*) => {
                    step!(0x39, $a, $b, $c, $d, $w, $k, $s);
                    i!(@ $d $a $b $c; $($rw, $rk, $rs);*);
                };
                (@ $a:ident $b:ident $c:ident $d:ident;) => {};
            }
            f!(
                0, 0xd76aa478u32, 7; 1, 0xe8c7b756u32, 12; 2, 0x242070dbu32, 17; 3, 0xc1bdceeeu32, 22;
                4, 0xf57c0fafu32, 7; 5, 0x4787c62au32, 12; 6, 0xa8304613u32, 17; 7, 0xfd469501u32, 22;
                8, 0x698098d8u32, 7; 9, 0x8b44f7afu32, 12; 10, 0xffff5bb1u32, 17; 11, 0x895cd7beu32, 22;
                12, 0x6b901122u32, 7; 13, 0xfd987193u32, 12; 14, 0xa679438eu32, 17; 15, 0x49b40821u32, 22
            );
            g!(
                1, 0xf61e2562u32, 5; 6, 0xc040b340u32, 9; 11, 0x265e5a51u32, 14; 0, 0xe9b6c7aau32, 20;
                5, 0xd62f105du32, 5; 10, 0x02441453u32, 9; 15, 0xd8a1e681u32, 14; 4, 0xe7d3fbc8u32, 20;
                9, 0x21e1cde6u32, 5; 14, 0xc33707d6u32, 9; 3, 0xf4d50d87u32, 14; 8, 0x455a14edu32, 20;
                13, 0xa9e3e905u32, 5; 2, 0xfcefa3f8u32, 9; 7, 0x676f02d9u32, 14; 12, 0x8d2a4c8au32, 20
            );
            h!(
                5, 0xfffa3942u32, 4; 8, 0x8771f681u32, 11; 11, 0x6d9d6122u32, 16; 14, 0xfde5380cu32, 23;
                1, 0xa4beea44u32, 4; 4, 0x4bdecfa9u32, 11; 7, 0xf6bb4b60u32, 16; 10, 0xbebfbc70u32, 23;
                13, 0x289b7ec6u32, 4; 0, 0xeaa127fau32, 11; 3, 0xd4ef3085u32, 16; 6, 0x04881d05u32, 23;
                9, 0xd9d4d039u32, 4; 12, 0xe6db99e5u32, 11; 15, 0x1fa27cf8u32, 16; 2, 0xc4ac5665u32, 23
            );
            i!(
                0, 0xf4292244u32, 6; 7, 0x432aff97u32, 10; 14, 0xab9423a7u32, 15; 5, 0xfc93a039u32, 21;
                12, 0x655b59c3u32, 6; 3, 0x8f0ccc92u32, 10; 10, 0xffeff47du32, 15; 1, 0x85845dd1u32, 21;
                8, 0x6fa87e4fu32, 6; 15, 0xfe2ce6e0u32, 10; 6, 0xa3014314u32, 15; 13, 0x4e0811a1u32, 21;
                4, 0xf7537e82u32, 6; 11, 0xbd3af235u32, 10; 2, 0x2ad7d2bbu32, 15; 9, 0xeb86d391u32, 21
            );
            _mm512_storeu_si512(state[0].as_mut_ptr().cast(), _mm512_add_epi32(a, a0));
            _mm512_storeu_si512(state[1].as_mut_ptr().cast(), _mm512_add_epi32(b, b0));
            _mm512_storeu_si512(state[2].as_mut_ptr().cast(), _mm512_add_epi32(c, c0));
            _mm512_storeu_si512(state[3].as_mut_ptr().cast(), _mm512_add_epi32(d, d0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(msgs: &[Vec<u8>]) -> Vec<[u8; 16]> {
        msgs.iter().map(|m| Md5::digest(m).into()).collect()
    }

    fn ours(msgs: &[Vec<u8>]) -> Vec<[u8; 16]> {
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        let mut out = vec![[0u8; 16]; msgs.len()];
        digests(&refs, &mut out);
        out
    }

    #[test]
    fn every_length_around_block_boundaries_matches_md5() {
        // Lengths 0..=300 side by side: whole blocks, one and two padding
        // blocks, lanes finishing at different steps and taking new work.
        let msgs: Vec<Vec<u8>> = (0..=300usize)
            .map(|n| (0..n).map(|i| (i * 7 + n) as u8).collect())
            .collect();
        assert_eq!(ours(&msgs), reference(&msgs));
    }

    #[test]
    fn known_digests() {
        let msgs = vec![
            b"".to_vec(),
            b"a".to_vec(),
            b"abc".to_vec(),
            b"message digest".to_vec(),
        ];
        let hex: Vec<String> = ours(&msgs).iter().map(hex::encode).collect();
        assert_eq!(
            hex,
            [
                "d41d8cd98f00b204e9800998ecf8427e",
                "0cc175b9c0f1b6a831c399e269772661",
                "900150983cd24fb0d6963f7d28e17f72",
                "f96b697d7cb7938d525a2f31aaf161d0",
            ]
        );
    }

    #[test]
    fn hash_keys_are_md5_big_endian() {
        let keys = ["a", "b", "partition-key-1", "", "ü"];
        let mut out = [0u128; 5];
        hash_keys(&keys, &mut out);
        for (k, h) in keys.iter().zip(out) {
            assert_eq!(h, hash_key(k), "{k}");
        }
    }

    proptest! {
        #[test]
        fn any_messages_digest_as_md5_does(
            msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..40)
        ) {
            prop_assert_eq!(ours(&msgs), reference(&msgs));
        }
    }
}
