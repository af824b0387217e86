//! The KPL aggregation format: many user records packed into one Kinesis
//! record. Owns the protobuf messages (hand-written `prost` structs, no
//! protoc), the size arithmetic that decides when an aggregate is full, the
//! encoder ([`Aggregate`]) and the decoder ([`deaggregate`]).
//!
//! Layout of an aggregated Kinesis record, byte for byte as the KPL writes it:
//! `F3 89 9A C2` ‖ protobuf `AggregatedRecord` ‖ MD5 of the protobuf bytes.
//! Partition keys and explicit hash keys are deduplicated into tables in
//! order of first use; each user record refers to them by index.

use std::collections::HashMap;

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;

/// The four bytes every aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// Length of the MD5 trailer.
pub const DIGEST_LEN: usize = 16;

/// `message AggregatedRecord` of the KPL's `messages.proto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<Record>,
}

/// `message Record` of the KPL's `messages.proto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "bytes", required, tag = "3")]
    pub data: Bytes,
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

/// `message Tag` of the KPL's `messages.proto` (read, never written).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Tag {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

fn varint_len(v: u64) -> usize {
    prost::encoding::encoded_len_varint(v)
}

/// Bytes a length-delimited field with a one-byte tag takes.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Field keys (tag << 3 | wire type) of the format's fields.
const KEY_PK_TABLE: u8 = 1 << 3 | 2;
const KEY_EHK_TABLE: u8 = 2 << 3 | 2;
const KEY_RECORDS: u8 = 3 << 3 | 2;
const KEY_PK_INDEX: u8 = 1 << 3;
const KEY_EHK_INDEX: u8 = 2 << 3;
const KEY_DATA: u8 = 3 << 3 | 2;

/// FxHash of a key (fast, not DoS-resistant: keys only index a table of one
/// aggregate, and a collision costs a duplicate table entry, nothing else).
fn fx(s: &str) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = s.len() as u64;
    let mut chunks = s.as_bytes().chunks_exact(8);
    for c in &mut chunks {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(c.try_into().expect("8 bytes"))).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K)
}

#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys")
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type IdMap = HashMap<u64, (u64, u32, u32), std::hash::BuildHasherDefault<IdHasher>>;

/// A deduplicated key table, encoded as it grows.
#[derive(Default)]
struct KeyTable {
    /// Encoded repeated-string entries, in index order.
    buf: Vec<u8>,
    /// fx hash → (index, offset of the key bytes in `buf`, length).
    index: IdMap,
    len: u64,
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable").field("len", &self.len).finish()
    }
}

impl KeyTable {
    /// Index of `key` if present; with a hash collision between different
    /// keys the newcomer is treated as absent (it gets its own entry).
    fn find(&self, key: &str) -> Option<u64> {
        let (i, at, n) = *self.index.get(&fx(key))?;
        (&self.buf[at as usize..(at + n) as usize] == key.as_bytes()).then_some(i)
    }

    /// Index `key` would get.
    fn index_of(&self, key: &str) -> (u64, bool) {
        match self.find(key) {
            Some(i) => (i, true),
            None => (self.len, false),
        }
    }

    /// Room for `n` entries of `entry_len` encoded bytes (at most `limit`).
    fn reserve(&mut self, n: usize, entry_len: usize, limit: usize) {
        self.buf.reserve((n * entry_len).min(limit));
        self.index.reserve(n);
    }

    fn push(&mut self, key: u8, s: &str) -> u64 {
        self.buf.push(key);
        prost::encoding::encode_varint(s.len() as u64, &mut self.buf);
        let at = self.buf.len() as u32;
        self.buf.extend_from_slice(s.as_bytes());
        let i = self.len;
        self.index.entry(fx(s)).or_insert((i, at, s.len() as u32));
        self.len += 1;
        i
    }
}

/// Growth in bytes, (index, already in the table) of the partition key and
/// explicit hash key, and the inner record's length.
struct Plan {
    grow: usize,
    pk: (u64, bool),
    ehk: Option<(u64, bool)>,
    inner: usize,
}

/// An aggregate under construction, encoded incrementally: the key tables
/// and the records are kept as protobuf bytes, in the field order the KPL
/// (and `prost`, for [`AggregatedRecord`]) writes them, so sealing is one
/// concatenation and one MD5. Sizes are exact: [`Aggregate::size_with`]
/// tells what the encoded record would weigh with one more user record.
#[derive(Debug, Default)]
pub struct Aggregate {
    pks: KeyTable,
    ehks: KeyTable,
    records: Vec<u8>,
    count: usize,
}

impl Aggregate {
    pub fn new() -> Aggregate {
        Aggregate::default()
    }

    /// Empties the aggregate, keeping its buffers for the next one.
    pub fn clear(&mut self) {
        for t in [&mut self.pks, &mut self.ehks] {
            t.buf.clear();
            t.index.clear();
            t.len = 0;
        }
        self.records.clear();
        self.count = 0;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded size of the whole aggregated record (magic, body, digest).
    pub fn size(&self) -> usize {
        MAGIC.len() + self.pks.buf.len() + self.ehks.buf.len() + self.records.len() + DIGEST_LEN
    }

    /// What adding a user record would do.
    fn plan(&self, partition_key: &str, explicit_hash_key: Option<&str>, data_len: usize) -> Plan {
        let mut grow = 0;
        let pk = self.pks.index_of(partition_key);
        if !pk.1 {
            grow += field_len(partition_key.len());
        }
        let mut inner = 1 + varint_len(pk.0) + field_len(data_len);
        let ehk = explicit_hash_key.map(|e| {
            let x = self.ehks.index_of(e);
            if !x.1 {
                grow += field_len(e.len());
            }
            inner += 1 + varint_len(x.0);
            x
        });
        Plan {
            grow: grow + field_len(inner),
            pk,
            ehk,
            inner,
        }
    }

    /// Size of the aggregated record if this user record were added.
    pub fn size_with(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data_len: usize,
    ) -> usize {
        self.size() + self.plan(partition_key, explicit_hash_key, data_len).grow
    }

    /// Size of an aggregated record holding only this user record.
    pub fn single_size(
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data_len: usize,
    ) -> usize {
        let mut inner = 1 + varint_len(0) + field_len(data_len);
        let mut body = field_len(partition_key.len());
        if let Some(ehk) = explicit_hash_key {
            body += field_len(ehk.len());
            inner += 1 + varint_len(0);
        }
        MAGIC.len() + body + field_len(inner) + DIGEST_LEN
    }

    /// Adds the user record if the aggregate stays within `limit` bytes (an
    /// empty aggregate takes any record); returns its index (the
    /// sub-sequence number it will have once put), or `None` when it does
    /// not fit.
    pub fn add_within(
        &mut self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data: &[u8],
        limit: usize,
    ) -> Option<u64> {
        let Plan {
            grow,
            pk: (pk_index, pk_known),
            ehk,
            inner,
        } = self.plan(partition_key, explicit_hash_key, data.len());
        if !self.is_empty() && self.size() + grow > limit {
            return None;
        }
        if self.is_empty() && limit < usize::MAX {
            self.reserve_for(limit, grow, partition_key.len(), explicit_hash_key);
        }
        if !pk_known {
            self.pks.push(KEY_PK_TABLE, partition_key);
        }
        if let (Some(e), Some((_, false))) = (explicit_hash_key, ehk) {
            self.ehks.push(KEY_EHK_TABLE, e);
        }
        let r = &mut self.records;
        r.push(KEY_RECORDS);
        prost::encoding::encode_varint(inner as u64, r);
        r.push(KEY_PK_INDEX);
        prost::encoding::encode_varint(pk_index, r);
        if let Some((i, _)) = ehk {
            r.push(KEY_EHK_INDEX);
            prost::encoding::encode_varint(i, r);
        }
        r.push(KEY_DATA);
        prost::encoding::encode_varint(data.len() as u64, r);
        r.extend_from_slice(data);
        let index = self.count as u64;
        self.count += 1;
        Some(index)
    }

    /// Sizes the buffers of an empty aggregate for `limit` bytes of records
    /// like the first (`grow` bytes each), so they do not grow by doubling
    /// and copying while the aggregate fills.
    fn reserve_for(
        &mut self,
        limit: usize,
        grow: usize,
        pk_len: usize,
        explicit_hash_key: Option<&str>,
    ) {
        let limit = limit.min(crate::config::limits::MAX_RECORD_BYTES);
        let n = (limit / grow.max(1)).max(1);
        self.records.reserve(limit);
        self.pks.reserve(n, field_len(pk_len), limit);
        if let Some(e) = explicit_hash_key {
            self.ehks.reserve(n, field_len(e.len()), limit);
        }
    }

    /// Adds a user record whatever the size; returns its index.
    pub fn add(
        &mut self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data: impl AsRef<[u8]>,
    ) -> u64 {
        self.add_within(partition_key, explicit_hash_key, data.as_ref(), usize::MAX)
            .expect("no limit")
    }

    /// Encodes the aggregated record: magic, protobuf, MD5 of the protobuf.
    pub fn encode(&self) -> Bytes {
        encode_all(&[self]).pop().expect("one")
    }

    /// Magic and protobuf, with room for the digest.
    fn encode_undigested(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.pks.buf);
        out.extend_from_slice(&self.ehks.buf);
        out.extend_from_slice(&self.records);
        out
    }
}

/// Encodes many aggregated records (as [`Aggregate::encode`] does each),
/// computing their MD5 trailers side by side.
pub fn encode_all(aggs: &[&Aggregate]) -> Vec<Bytes> {
    let mut outs: Vec<Vec<u8>> = aggs.iter().map(|a| a.encode_undigested()).collect();
    let mut digests = vec![[0u8; DIGEST_LEN]; outs.len()];
    let bodies: Vec<&[u8]> = outs.iter().map(|o| &o[MAGIC.len()..]).collect();
    eddy_md5x::digests(&bodies, &mut digests);
    for (o, d) in outs.iter_mut().zip(&digests) {
        o.extend_from_slice(d);
    }
    outs.into_iter().map(Bytes::from).collect()
}

/// One user record recovered from a Kinesis record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Bytes,
    /// Index within the aggregate; `None` for a record that was not aggregated.
    pub sub_sequence_number: Option<u64>,
}

/// Why an aggregated record (right magic, right digest) could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeaggregationError {
    #[error("aggregated record does not decode as protobuf: {0}")]
    Protobuf(String),
    #[error(
        "user record {record} refers to partition key {index}, but the table has {table} entries"
    )]
    PartitionKeyIndex {
        record: usize,
        index: u64,
        table: usize,
    },
    #[error(
        "user record {record} refers to explicit hash key {index}, but the table has {table} entries"
    )]
    ExplicitHashKeyIndex {
        record: usize,
        index: u64,
        table: usize,
    },
}

/// True when `data` carries the magic bytes and a matching MD5 trailer.
pub fn is_aggregated(data: &[u8]) -> bool {
    data.len() > MAGIC.len() + DIGEST_LEN && data[..MAGIC.len()] == MAGIC && {
        let (body, digest) = data[MAGIC.len()..].split_at(data.len() - MAGIC.len() - DIGEST_LEN);
        Md5::digest(body).as_slice() == digest
    }
}

/// Splits a Kinesis record into its user records, as the KCL does. A record
/// without the magic bytes, or whose digest does not match, is not an
/// aggregate: it comes back as one user record with the Kinesis record's
/// partition key and no sub-sequence number.
pub fn deaggregate(
    partition_key: &str,
    data: &Bytes,
) -> Result<Vec<UserRecord>, DeaggregationError> {
    if !is_aggregated(data) {
        return Ok(vec![UserRecord {
            partition_key: partition_key.to_string(),
            explicit_hash_key: None,
            data: data.clone(),
            sub_sequence_number: None,
        }]);
    }
    let body = data.slice(MAGIC.len()..data.len() - DIGEST_LEN);
    let message =
        AggregatedRecord::decode(body).map_err(|e| DeaggregationError::Protobuf(e.to_string()))?;
    let AggregatedRecord {
        partition_key_table: pks,
        explicit_hash_key_table: ehks,
        records,
    } = message;
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.into_iter().enumerate() {
        let pk = pks.get(r.partition_key_index as usize).ok_or(
            DeaggregationError::PartitionKeyIndex {
                record: i,
                index: r.partition_key_index,
                table: pks.len(),
            },
        )?;
        let ehk = match r.explicit_hash_key_index {
            None => None,
            Some(index) => Some(
                ehks.get(index as usize)
                    .ok_or(DeaggregationError::ExplicitHashKeyIndex {
                        record: i,
                        index,
                        table: ehks.len(),
                    })?
                    .clone(),
            ),
        };
        out.push(UserRecord {
            partition_key: pk.clone(),
            explicit_hash_key: ehk,
            data: r.data,
            sub_sequence_number: Some(i as u64),
        });
    }
    Ok(out)
}

/// Like [`deaggregate`], but keeps only user records whose hash key lies in
/// the shard's range `[start, end]` — the KCL's filter for aggregates that
/// landed in a shard created by resharding after they were built (the
/// producer re-sends the records that fall outside).
pub fn deaggregate_in_range(
    partition_key: &str,
    data: &Bytes,
    start: u128,
    end: u128,
) -> Result<Vec<UserRecord>, DeaggregationError> {
    let mut records = deaggregate(partition_key, data)?;
    if records.len() == 1 && records[0].sub_sequence_number.is_none() {
        return Ok(records);
    }
    records.retain(|r| {
        let h = match &r.explicit_hash_key {
            Some(ehk) => ehk
                .parse::<u128>()
                .unwrap_or_else(|_| crate::hash_key(&r.partition_key)),
            None => crate::hash_key(&r.partition_key),
        };
        (start..=end).contains(&h)
    });
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn aggregate_of(records: &[(String, Option<String>, Vec<u8>)]) -> Aggregate {
        let mut agg = Aggregate::new();
        for (pk, ehk, data) in records {
            agg.add(pk, ehk.as_deref(), data);
        }
        agg
    }

    #[test]
    fn a_cleared_aggregate_encodes_like_a_new_one() {
        let recs = |tag: u8| -> Vec<(String, Option<String>, Vec<u8>)> {
            (0..50usize)
                .map(|i| {
                    let ehk = (i % 3 == 0).then(|| format!("{}", i * 1000));
                    (format!("k{}-{tag}", i % 7), ehk, vec![tag; i])
                })
                .collect()
        };
        let mut reused = aggregate_of(&recs(1));
        reused.clear();
        assert!(reused.is_empty());
        for (pk, ehk, data) in recs(2) {
            reused.add(&pk, ehk.as_deref(), &data);
        }
        let fresh = aggregate_of(&recs(2));
        assert_eq!(reused.size(), fresh.size());
        assert_eq!(reused.encode(), fresh.encode());
    }

    #[test]
    fn encoding_many_aggregates_at_once_gives_the_bytes_of_encoding_each() {
        let aggs: Vec<Aggregate> = (0..20usize)
            .map(|n| {
                let recs: Vec<(String, Option<String>, Vec<u8>)> = (0..n * 3)
                    .map(|i| (format!("k{}", i % 5), None, vec![i as u8; i * 11 % 90]))
                    .collect();
                aggregate_of(&recs)
            })
            .collect();
        let refs: Vec<&Aggregate> = aggs.iter().collect();
        let all = encode_all(&refs);
        assert_eq!(all.len(), aggs.len());
        for (a, bytes) in aggs.iter().zip(&all) {
            let body = &bytes[4..bytes.len() - 16];
            assert_eq!(&bytes[bytes.len() - 16..], Md5::digest(body).as_slice());
            assert_eq!(bytes, &a.encode());
            assert_eq!(bytes.len(), a.size());
        }
    }

    #[test]
    fn encoded_record_starts_with_magic_and_ends_with_md5_of_the_protobuf() {
        let agg = aggregate_of(&[
            ("a".into(), None, b"x".to_vec()),
            ("b".into(), None, b"y".to_vec()),
        ]);
        let bytes = agg.encode();
        assert_eq!(bytes[..4], MAGIC);
        let body = &bytes[4..bytes.len() - 16];
        assert_eq!(&bytes[bytes.len() - 16..], Md5::digest(body).as_slice());
        let msg = AggregatedRecord::decode(body).unwrap();
        assert_eq!(msg.partition_key_table, vec!["a", "b"]);
        assert_eq!(msg.records.len(), 2);
    }

    #[test]
    fn known_aggregate_matches_bytes_written_by_hand_from_the_format() {
        // pk table ["k"], records [{pk 0, data "hi"}]
        let agg = aggregate_of(&[("k".into(), None, b"hi".to_vec())]);
        let body: Vec<u8> = vec![
            0x0A, 0x01, b'k', // partition_key_table[0] = "k"
            0x1A, 0x06, // records[0], 6 bytes
            0x08, 0x00, // partition_key_index = 0
            0x1A, 0x02, b'h', b'i', // data = "hi"
        ];
        let mut expected = MAGIC.to_vec();
        expected.extend_from_slice(&body);
        expected.extend_from_slice(&Md5::digest(&body));
        assert_eq!(agg.encode().as_ref(), expected.as_slice());
    }

    #[test]
    fn repeated_keys_share_one_table_entry() {
        let agg = aggregate_of(&[
            ("a".into(), Some("5".into()), b"1".to_vec()),
            ("b".into(), Some("5".into()), b"2".to_vec()),
            ("a".into(), None, b"3".to_vec()),
        ]);
        let msg = AggregatedRecord::decode(&agg.encode()[4..agg.size() - 16]).unwrap();
        assert_eq!(msg.partition_key_table, vec!["a", "b"]);
        assert_eq!(msg.explicit_hash_key_table, vec!["5"]);
        let idx: Vec<_> = msg
            .records
            .iter()
            .map(|r| (r.partition_key_index, r.explicit_hash_key_index))
            .collect();
        assert_eq!(idx, vec![(0, Some(0)), (1, Some(0)), (0, None)]);
    }

    #[test]
    fn plain_data_deaggregates_to_itself() {
        let data = Bytes::from_static(b"not an aggregate");
        let out = deaggregate("pk", &data).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, data);
        assert_eq!(out[0].partition_key, "pk");
        assert_eq!(out[0].sub_sequence_number, None);
    }

    #[test]
    fn magic_with_a_wrong_digest_is_treated_as_plain_data() {
        let agg = aggregate_of(&[("a".into(), None, b"x".to_vec())]);
        let mut bytes = agg.encode().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let bytes = Bytes::from(bytes);
        let out = deaggregate("outer", &bytes).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, bytes);
    }

    #[test]
    fn out_of_range_key_index_is_an_error() {
        let msg = AggregatedRecord {
            partition_key_table: vec!["a".into()],
            explicit_hash_key_table: vec![],
            records: vec![Record {
                partition_key_index: 3,
                explicit_hash_key_index: None,
                data: Bytes::from_static(b"x"),
                tags: vec![],
            }],
        };
        let body = msg.encode_to_vec();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&Md5::digest(&body));
        let err = deaggregate("outer", &Bytes::from(bytes)).unwrap_err();
        assert_eq!(
            err,
            DeaggregationError::PartitionKeyIndex {
                record: 0,
                index: 3,
                table: 1
            }
        );
    }

    #[test]
    fn range_filter_drops_user_records_hashed_outside_the_shard() {
        let agg = aggregate_of(&[
            ("a".into(), Some("10".into()), b"in".to_vec()),
            ("b".into(), Some("1000".into()), b"out".to_vec()),
        ]);
        let out = deaggregate_in_range("a", &agg.encode(), 0, 100).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, Bytes::from_static(b"in"));
        assert_eq!(out[0].sub_sequence_number, Some(0));
    }

    fn record_strategy() -> impl Strategy<Value = (String, Option<String>, Vec<u8>)> {
        (
            "[a-c]{1,3}",
            proptest::option::of("[0-9]{1,39}"),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
    }

    proptest! {
        #[test]
        fn tracked_size_equals_encoded_size_and_round_trips(records in proptest::collection::vec(record_strategy(), 1..60)) {
            let mut agg = Aggregate::new();
            let mut twin = Aggregate::new();
            for (pk, ehk, data) in &records {
                let predicted = agg.size_with(pk, ehk.as_deref(), data.len());
                if agg.is_empty() {
                    prop_assert_eq!(predicted, Aggregate::single_size(pk, ehk.as_deref(), data.len()));
                }
                agg.add(pk, ehk.as_deref(), data);
                prop_assert_eq!(agg.size(), predicted);
                if !twin.is_empty() {
                    prop_assert_eq!(twin.add_within(pk, ehk.as_deref(), data, predicted - 1), None);
                }
                prop_assert!(twin.add_within(pk, ehk.as_deref(), data, predicted).is_some());
            }
            prop_assert_eq!(twin.encode(), agg.encode());
            // The incremental encoding is prost's encoding of the message.
            let mut pks: Vec<String> = Vec::new();
            let mut ehks: Vec<String> = Vec::new();
            let mut msg = AggregatedRecord { partition_key_table: vec![], explicit_hash_key_table: vec![], records: vec![] };
            for (pk, ehk, data) in &records {
                let pki = pks.iter().position(|k| k == pk).unwrap_or_else(|| { pks.push(pk.clone()); pks.len() - 1 });
                let ehki = ehk.as_ref().map(|e| ehks.iter().position(|k| k == e).unwrap_or_else(|| { ehks.push(e.clone()); ehks.len() - 1 }) as u64);
                msg.records.push(Record { partition_key_index: pki as u64, explicit_hash_key_index: ehki, data: Bytes::from(data.clone()), tags: vec![] });
            }
            msg.partition_key_table = pks;
            msg.explicit_hash_key_table = ehks;
            let body = msg.encode_to_vec();
            let enc = agg.encode();
            prop_assert_eq!(&enc[4..enc.len() - 16], body.as_slice());
            let bytes = agg.encode();
            prop_assert_eq!(bytes.len(), agg.size());
            let out = deaggregate("outer", &bytes).unwrap();
            prop_assert_eq!(out.len(), records.len());
            for (i, (r, (pk, ehk, data))) in out.iter().zip(&records).enumerate() {
                prop_assert_eq!(&r.partition_key, pk);
                prop_assert_eq!(&r.explicit_hash_key, ehk);
                prop_assert_eq!(r.data.as_ref(), data.as_slice());
                prop_assert_eq!(r.sub_sequence_number, Some(i as u64));
            }
        }
    }
}
