//! Request bodies, built once before a phase starts so that the generator
//! spends its time sending rather than encoding, and cheap scanners for the
//! few response fields the bench needs (a full JSON parse of a 10,000-record
//! GetRecords answer would cost the generator more CPU than it is worth on a
//! machine it shares with the server under test).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde_json::json;

/// First bytes of every put-to-visible record: marks the record as ours and is
/// followed by its id (u64, little endian).
pub const LATENCY_MAGIC: &[u8; 4] = b"EDYL";
/// Bytes taken by the magic and the id at the start of a latency record.
pub const LATENCY_HEADER: usize = 12;

/// Deterministic filler bytes (xorshift64*): incompressible enough that a
/// server cannot profit from repeated patterns, reproducible between runs.
pub fn payload(seed: u64, size: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(size);
    out
}

/// A PutRecords body with `batch` records of `record_size` bytes each; every
/// record has its own partition key so records spread over all shards.
pub fn put_records_body(stream: &str, batch: usize, record_size: usize, seed: u64) -> Bytes {
    let records: Vec<_> = (0..batch)
        .map(|i| {
            let n = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
            json!({
                "Data": B64.encode(payload(n, record_size)),
                "PartitionKey": format!("pk-{n}"),
            })
        })
        .collect();
    let body = json!({ "StreamName": stream, "Records": records });
    Bytes::from(serde_json::to_vec(&body).expect("a JSON value always serialises"))
}

/// A PutRecord body with one record of `record_size` bytes.
pub fn put_record_body(stream: &str, record_size: usize, seed: u64) -> Bytes {
    let body = json!({
        "StreamName": stream,
        "Data": B64.encode(payload(seed, record_size)),
        "PartitionKey": format!("pk-{seed}"),
    });
    Bytes::from(serde_json::to_vec(&body).expect("a JSON value always serialises"))
}

/// Payload of put-to-visible record `id`: magic, id, filler up to
/// `record_size` (at least [`LATENCY_HEADER`] bytes).
pub fn latency_payload(id: u64, record_size: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(record_size.max(LATENCY_HEADER));
    data.extend_from_slice(LATENCY_MAGIC);
    data.extend_from_slice(&id.to_le_bytes());
    if record_size > LATENCY_HEADER {
        data.extend_from_slice(&payload(id, record_size - LATENCY_HEADER));
    }
    data
}

/// A PutRecord body for put-to-visible record `id`, routed with an explicit
/// hash key so that it lands on the shard the reader watches.
pub fn latency_body(stream: &str, id: u64, record_size: usize, hash_key: &str) -> Bytes {
    let body = json!({
        "StreamName": stream,
        "Data": B64.encode(latency_payload(id, record_size)),
        "PartitionKey": "latency",
        "ExplicitHashKey": hash_key,
    });
    Bytes::from(serde_json::to_vec(&body).expect("a JSON value always serialises"))
}

/// The id carried by a put-to-visible record, from its base64 `Data` text;
/// `None` for any record that is not one of ours.
pub fn latency_id(data_b64: &[u8]) -> Option<u64> {
    // 16 base64 characters encode exactly the 12 header bytes.
    let head = data_b64.get(..16)?;
    let mut buf = [0u8; 12];
    let n = B64.decode_slice(head, &mut buf).ok()?;
    if n != 12 || &buf[..4] != LATENCY_MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(buf[4..12].try_into().expect("8 bytes")))
}

/// Decoded length of a base64 text (padding and stray escapes ignored).
pub fn base64_decoded_len(text: &[u8]) -> u64 {
    // Usual case first: no escapes, padding only at the end.
    if memchr::memchr(b'\\', text).is_none() {
        let padding = text.iter().rev().take(2).filter(|&&b| b == b'=').count();
        return ((text.len() - padding) * 3 / 4) as u64;
    }
    let chars = text.iter().filter(|&&b| b != b'\\' && b != b'=').count() as u64;
    chars * 3 / 4
}

/// Position just after a `"key"` that is followed by optional whitespace,
/// a colon and optional whitespace, for the match at `at` (the position of
/// the opening quote of the key); `None` if that match is not a key.
fn after_key(body: &[u8], at: usize, key_len: usize) -> Option<usize> {
    let mut i = at + key_len;
    while i < body.len() && body[i].is_ascii_whitespace() {
        i += 1;
    }
    if body.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    while i < body.len() && body[i].is_ascii_whitespace() {
        i += 1;
    }
    Some(i)
}

/// Position of the value of the last `"key":` in the body. Top-level
/// fields of the answers the bench reads appear once, usually after the
/// records, so searching backwards finds them fastest.
fn find_value(body: &[u8], key: &str) -> Option<usize> {
    let needle = format!("\"{key}\"");
    let finder = memchr::memmem::FinderRev::new(needle.as_bytes());
    let mut end = body.len();
    while let Some(at) = finder.rfind(&body[..end]) {
        if let Some(i) = after_key(body, at, needle.len()) {
            return Some(i);
        }
        end = at;
    }
    None
}

/// An unsigned integer field anywhere in the body.
pub fn find_u64(body: &[u8], key: &str) -> Option<u64> {
    let i = find_value(body, key)?;
    let digits = body[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[i..i + digits]).ok()?.parse().ok()
}

/// A string field anywhere in the body (JSON escapes decoded); `None` when
/// absent or `null`.
pub fn find_string(body: &[u8], key: &str) -> Option<String> {
    let i = find_value(body, key)?;
    if body.get(i) != Some(&b'"') {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(&body[i..]);
    serde::Deserialize::deserialize(&mut de).ok()
}

/// The raw (still base64, possibly with `\/` escapes) text of every `Data`
/// field in a GetRecords answer, in order.
pub fn data_fields(body: &[u8]) -> DataFields<'_> {
    DataFields {
        body,
        pos: 0,
        finder: memchr::memmem::Finder::new(DATA_KEY),
    }
}

const DATA_KEY: &[u8] = b"\"Data\"";

pub struct DataFields<'a> {
    body: &'a [u8],
    pos: usize,
    finder: memchr::memmem::Finder<'static>,
}

impl<'a> Iterator for DataFields<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let at = self.pos + self.finder.find(&self.body[self.pos..])?;
            self.pos = at + 1;
            let Some(i) = after_key(self.body, at, DATA_KEY.len()) else {
                continue;
            };
            if self.body.get(i) != Some(&b'"') {
                continue;
            }
            let start = i + 1;
            let len = memchr::memchr(b'"', &self.body[start..])?;
            self.pos = start + len + 1;
            return Some(&self.body[start..start + len]);
        }
    }
}

/// What the bench needs from a GetRecords answer.
#[derive(Debug, Default, PartialEq)]
pub struct GetRecordsScan {
    pub records: u64,
    pub data_bytes: u64,
    pub next_iterator: Option<String>,
    pub millis_behind: Option<u64>,
}

pub fn scan_get_records(body: &[u8]) -> GetRecordsScan {
    let mut scan = GetRecordsScan::default();
    for data in data_fields(body) {
        scan.records += 1;
        scan.data_bytes += base64_decoded_len(data);
    }
    scan.next_iterator = find_string(body, "NextShardIterator");
    scan.millis_behind = find_u64(body, "MillisBehindLatest");
    scan
}

/// The error code of an AWS JSON error body (`__type`, without any namespace
/// prefix), or a short excerpt of the body when it has none.
pub fn error_code(body: &[u8]) -> String {
    if let Some(t) = find_string(body, "__type") {
        return t.rsplit('#').next().unwrap_or(&t).to_string();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(80)]);
    if text.is_empty() {
        "empty body".to_string()
    } else {
        text.into_owned()
    }
}

/// The human message of an AWS JSON error body, if any.
pub fn error_message(body: &[u8]) -> Option<String> {
    find_string(body, "message").or_else(|| find_string(body, "Message"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_requested_size_and_is_reproducible() {
        assert_eq!(payload(7, 100).len(), 100);
        assert_eq!(payload(7, 3).len(), 3);
        assert_eq!(payload(7, 100), payload(7, 100));
        assert_ne!(payload(7, 100), payload(8, 100));
    }

    #[test]
    fn put_records_body_holds_batch_of_records_with_distinct_keys() {
        let body = put_records_body("s1", 500, 100, 3);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["StreamName"], "s1");
        let recs = v["Records"].as_array().unwrap();
        assert_eq!(recs.len(), 500);
        let keys: std::collections::HashSet<_> =
            recs.iter().map(|r| r["PartitionKey"].clone()).collect();
        assert_eq!(keys.len(), 500);
        for r in recs {
            let data = B64.decode(r["Data"].as_str().unwrap()).unwrap();
            assert_eq!(data.len(), 100);
        }
    }

    #[test]
    fn put_record_body_holds_one_record_of_requested_size() {
        let body = put_record_body("s1", 42, 9);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["StreamName"], "s1");
        assert_eq!(B64.decode(v["Data"].as_str().unwrap()).unwrap().len(), 42);
        assert!(v["PartitionKey"].is_string());
    }

    #[test]
    fn latency_body_round_trips_its_id_and_targets_the_hash_key() {
        let body = latency_body("s", 123_456_789, 100, "0");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["ExplicitHashKey"], "0");
        let data = v["Data"].as_str().unwrap();
        assert_eq!(B64.decode(data).unwrap().len(), 100);
        assert_eq!(latency_id(data.as_bytes()), Some(123_456_789));
    }

    #[test]
    fn latency_records_smaller_than_header_still_carry_the_id() {
        let data = B64.encode(latency_payload(5, 1));
        assert_eq!(latency_id(data.as_bytes()), Some(5));
    }

    #[test]
    fn latency_id_rejects_foreign_records() {
        let data = B64.encode(payload(1, 100));
        assert_eq!(latency_id(data.as_bytes()), None);
        assert_eq!(latency_id(b"abc"), None);
    }

    #[test]
    fn failed_record_count_is_found_with_or_without_whitespace() {
        assert_eq!(
            find_u64(
                br#"{"FailedRecordCount":3,"Records":[]}"#,
                "FailedRecordCount"
            ),
            Some(3)
        );
        assert_eq!(
            find_u64(b"{ \"FailedRecordCount\" : 0 }", "FailedRecordCount"),
            Some(0)
        );
        assert_eq!(find_u64(br#"{"Records":[]}"#, "FailedRecordCount"), None);
    }

    #[test]
    fn get_records_scan_counts_records_bytes_and_reads_iterator() {
        let recs: Vec<_> = (0..3)
            .map(|i| {
                json!({"Data": B64.encode(payload(i, 100)), "PartitionKey": "k",
                       "SequenceNumber": "1", "ApproximateArrivalTimestamp": 1.5})
            })
            .collect();
        let v = json!({"Records": recs, "NextShardIterator": "it/2+=", "MillisBehindLatest": 0});
        for text in [
            serde_json::to_vec(&v).unwrap(),
            serde_json::to_vec_pretty(&v).unwrap(),
        ] {
            let scan = scan_get_records(&text);
            assert_eq!(
                scan,
                GetRecordsScan {
                    records: 3,
                    data_bytes: 300,
                    next_iterator: Some("it/2+=".into()),
                    millis_behind: Some(0),
                }
            );
        }
    }

    #[test]
    fn data_scan_ignores_the_word_data_used_as_a_value() {
        let body = br#"{"Records":[{"PartitionKey":"Data","Data":"QUJD","SequenceNumber":"1"}]}"#;
        let fields: Vec<_> = data_fields(body).collect();
        assert_eq!(fields, vec![&b"QUJD"[..]]);
    }

    #[test]
    fn get_records_scan_handles_empty_answer_and_closed_shard() {
        let scan =
            scan_get_records(br#"{"Records":[],"NextShardIterator":null,"MillisBehindLatest":0}"#);
        assert_eq!(scan.records, 0);
        assert_eq!(scan.next_iterator, None);
    }

    #[test]
    fn escaped_slashes_do_not_change_decoded_length() {
        let plain = B64.encode([0xffu8; 30]);
        assert!(plain.contains('/'));
        let escaped = plain.replace('/', "\\/");
        assert_eq!(base64_decoded_len(escaped.as_bytes()), 30);
        assert_eq!(base64_decoded_len(B64.encode([1u8; 31]).as_bytes()), 31);
    }

    #[test]
    fn error_code_strips_namespace() {
        assert_eq!(
            error_code(br#"{"__type":"com.amazonaws.kinesis#ProvisionedThroughputExceededException","message":"Rate exceeded"}"#),
            "ProvisionedThroughputExceededException"
        );
        assert_eq!(
            error_message(br#"{"__type":"X","message":"Rate exceeded"}"#).as_deref(),
            Some("Rate exceeded")
        );
        assert_eq!(error_code(b""), "empty body");
    }
}
