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

/// An aggregate under construction. Sizes are tracked exactly, so
/// [`Aggregate::size_with`] tells what the encoded record would weigh with
/// one more user record before it is added.
#[derive(Debug, Default)]
pub struct Aggregate {
    pk_index: HashMap<String, u64>,
    ehk_index: HashMap<String, u64>,
    message: AggregatedRecord,
    /// Encoded length of `message` (without magic and digest).
    body_len: usize,
}

impl Aggregate {
    pub fn new() -> Aggregate {
        Aggregate::default()
    }

    pub fn len(&self) -> usize {
        self.message.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.message.records.is_empty()
    }

    /// Encoded size of the whole aggregated record (magic, body, digest).
    pub fn size(&self) -> usize {
        MAGIC.len() + self.body_len + DIGEST_LEN
    }

    fn body_growth(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data_len: usize,
    ) -> usize {
        let mut grow = 0;
        let pk_index = match self.pk_index.get(partition_key) {
            Some(i) => *i,
            None => {
                grow += field_len(partition_key.len());
                self.pk_index.len() as u64
            }
        };
        let mut inner = 1 + varint_len(pk_index);
        if let Some(ehk) = explicit_hash_key {
            let ehk_index = match self.ehk_index.get(ehk) {
                Some(i) => *i,
                None => {
                    grow += field_len(ehk.len());
                    self.ehk_index.len() as u64
                }
            };
            inner += 1 + varint_len(ehk_index);
        }
        inner += field_len(data_len);
        grow + field_len(inner)
    }

    /// Size of the aggregated record if this user record were added.
    pub fn size_with(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data_len: usize,
    ) -> usize {
        self.size() + self.body_growth(partition_key, explicit_hash_key, data_len)
    }

    /// Adds a user record; returns its index (the sub-sequence number it will
    /// have once put).
    pub fn add(
        &mut self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data: Bytes,
    ) -> u64 {
        self.body_len += self.body_growth(partition_key, explicit_hash_key, data.len());
        let pk_index = match self.pk_index.get(partition_key) {
            Some(i) => *i,
            None => {
                let i = self.message.partition_key_table.len() as u64;
                self.message
                    .partition_key_table
                    .push(partition_key.to_string());
                self.pk_index.insert(partition_key.to_string(), i);
                i
            }
        };
        let explicit_hash_key_index = explicit_hash_key.map(|ehk| match self.ehk_index.get(ehk) {
            Some(i) => *i,
            None => {
                let i = self.message.explicit_hash_key_table.len() as u64;
                self.message.explicit_hash_key_table.push(ehk.to_string());
                self.ehk_index.insert(ehk.to_string(), i);
                i
            }
        });
        let index = self.message.records.len() as u64;
        self.message.records.push(Record {
            partition_key_index: pk_index,
            explicit_hash_key_index,
            data,
            tags: Vec::new(),
        });
        index
    }

    /// Encodes the aggregated record: magic, protobuf, MD5 of the protobuf.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.size());
        out.extend_from_slice(&MAGIC);
        self.message
            .encode(&mut out)
            .expect("a Vec grows as needed");
        debug_assert_eq!(out.len(), MAGIC.len() + self.body_len);
        let digest = Md5::digest(&out[MAGIC.len()..]);
        out.extend_from_slice(&digest);
        Bytes::from(out)
    }
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
            agg.add(pk, ehk.as_deref(), Bytes::from(data.clone()));
        }
        agg
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
            for (pk, ehk, data) in &records {
                let predicted = agg.size_with(pk, ehk.as_deref(), data.len());
                agg.add(pk, ehk.as_deref(), Bytes::from(data.clone()));
                prop_assert_eq!(agg.size(), predicted);
            }
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
