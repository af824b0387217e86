//! Opaque, tamper-evident tokens handed to clients: shard iterators and
//! pagination tokens. A token is base64 of a small binary payload followed by
//! a truncated HMAC-SHA256 under a per-installation secret, so a forged or
//! altered token is rejected and tokens survive restarts.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const MAC_LEN: usize = 16;
const ITERATOR_VERSION: u8 = 1;

#[derive(Clone)]
pub struct Signer {
    secret: [u8; 32],
}

/// What a shard iterator points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IteratorToken {
    pub issued_ms: i64,
    pub stream_tag: u64,
    pub shard_index: u32,
    pub position: u64,
    pub stream_name: String,
}

impl Signer {
    pub fn new(secret: [u8; 32]) -> Signer {
        Signer { secret }
    }

    fn mac(&self, payload: &[u8]) -> [u8; MAC_LEN] {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        m.update(payload);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// Signs `payload` into a base64 token.
    pub fn seal(&self, payload: &[u8]) -> String {
        let mut buf = Vec::with_capacity(payload.len() + MAC_LEN);
        buf.extend_from_slice(payload);
        buf.extend_from_slice(&self.mac(payload));
        STANDARD.encode(buf)
    }

    /// Verifies a token and returns its payload.
    pub fn open(&self, token: &str) -> Option<Vec<u8>> {
        let raw = STANDARD.decode(token).ok()?;
        if raw.len() < MAC_LEN {
            return None;
        }
        let (payload, mac) = raw.split_at(raw.len() - MAC_LEN);
        // Constant-time comparison through the hmac crate.
        let mut m = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        m.update(payload);
        m.verify_truncated_left(mac).ok()?;
        Some(payload.to_vec())
    }

    pub fn iterator(&self, t: &IteratorToken) -> String {
        let mut p = Vec::with_capacity(32 + t.stream_name.len());
        p.push(ITERATOR_VERSION);
        p.extend_from_slice(&t.issued_ms.to_be_bytes());
        p.extend_from_slice(&t.stream_tag.to_be_bytes());
        p.extend_from_slice(&t.shard_index.to_be_bytes());
        p.extend_from_slice(&t.position.to_be_bytes());
        p.extend_from_slice(t.stream_name.as_bytes());
        self.seal(&p)
    }

    pub fn open_iterator(&self, token: &str) -> Option<IteratorToken> {
        // AWS accepts an iterator wrapped in literal double quotes.
        let token = token
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(token);
        let p = self.open(token)?;
        if p.len() < 29 || p[0] != ITERATOR_VERSION {
            return None;
        }
        let issued_ms = i64::from_be_bytes(p[1..9].try_into().ok()?);
        let stream_tag = u64::from_be_bytes(p[9..17].try_into().ok()?);
        let shard_index = u32::from_be_bytes(p[17..21].try_into().ok()?);
        let position = u64::from_be_bytes(p[21..29].try_into().ok()?);
        let stream_name = String::from_utf8(p[29..].to_vec()).ok()?;
        Some(IteratorToken {
            issued_ms,
            stream_tag,
            shard_index,
            position,
            stream_name,
        })
    }
}

/// Formats epoch milliseconds as Java's `Date.toString()` in UTC, the form
/// AWS uses in ExpiredIteratorException: `Thu Jan 22 01:22:02 UTC 2015`.
pub fn java_date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60,
        y
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm; written here to avoid a date crate for one
/// message).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new([7u8; 32])
    }

    #[test]
    fn iterators_round_trip() {
        let t = IteratorToken {
            issued_ms: 1_700_000_000_123,
            stream_tag: 42,
            shard_index: 3,
            position: 99,
            stream_name: "my-stream".into(),
        };
        let s = signer().iterator(&t);
        assert!(s.len() <= 512);
        assert_eq!(signer().open_iterator(&s), Some(t.clone()));
        assert_eq!(signer().open_iterator(&format!("\"{s}\"")), Some(t));
    }

    #[test]
    fn altered_or_foreign_iterators_are_rejected() {
        let t = IteratorToken {
            issued_ms: 1,
            stream_tag: 2,
            shard_index: 3,
            position: 4,
            stream_name: "s".into(),
        };
        let s = signer().iterator(&t);
        let mut raw = STANDARD.decode(&s).unwrap();
        raw[5] ^= 1;
        assert_eq!(signer().open_iterator(&STANDARD.encode(&raw)), None);
        assert_eq!(Signer::new([8u8; 32]).open_iterator(&s), None);
        assert_eq!(signer().open_iterator("garbage"), None);
        assert_eq!(signer().open_iterator(""), None);
    }

    #[test]
    fn java_dates_match_aws_messages() {
        // 2015-01-22T01:22:02Z
        assert_eq!(java_date(1_421_889_722_000), "Thu Jan 22 01:22:02 UTC 2015");
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
    }
}
