//! The data plane: PutRecord, PutRecords, GetShardIterator, GetRecords.
//! Routing (partition key → hash key → open shard) happens under the
//! metadata read lock; storage calls happen after it is released.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eddy_log::{AppendRecord, ShardAppend};
use eddy_wire::{ItemSource, LazyList, Value, json_out};

use crate::error::{Result, StreamsError};
use crate::hashkey::{hash_partition_key, parse_hash_key};
use crate::meta::{Shard, Stream, parse_shard_id, shard_id, shard_id_bytes};
use crate::seqnum;
use crate::token::{IteratorToken, java_date};
use crate::{Streams, now_ms};

/// Shard iterators expire this long after they are issued.
pub const ITERATOR_TTL_MS: i64 = 300_000;
/// GetRecords answers at most this many bytes...
pub const GET_RECORDS_MAX_BYTES: usize = 10 * 1024 * 1024;
/// ...and this many records.
pub const GET_RECORDS_MAX_RECORDS: usize = 10_000;
/// PutRecords request data (data + partition keys) limit.
pub const PUT_RECORDS_MAX_BYTES: usize = 10 * 1024 * 1024;

/// One record routed to a shard.
struct Routed {
    log_id: u64,
    shard_index: u32,
}

/// What a put needs from the stream, copied out under the read lock.
struct PutTarget {
    tag: u64,
    max_record_bytes: usize,
    encrypted: bool,
    /// Open shards sorted by starting hash key: (start, end, log id, index).
    shards: Vec<(u128, u128, u64, u32)>,
}

impl PutTarget {
    fn of(stream: &Stream) -> PutTarget {
        let mut shards: Vec<_> = stream
            .open_shards()
            .map(|s| (s.start_hash, s.end_hash, s.log_id, s.index))
            .collect();
        shards.sort_unstable_by_key(|s| s.0);
        PutTarget {
            tag: stream.tag,
            max_record_bytes: stream.max_record_kib as usize * 1024,
            encrypted: stream.kms_key_id.is_some(),
            shards,
        }
    }

    fn route(&self, hash: u128) -> Result<Routed> {
        let i = self.shards.partition_point(|s| s.0 <= hash);
        match i.checked_sub(1).map(|i| self.shards[i]) {
            Some((_, end, log_id, shard_index)) if hash <= end => Ok(Routed {
                log_id,
                shard_index,
            }),
            // Open shards always cover the whole space; a gap is a bug.
            _ => Err(StreamsError::Internal(
                "no open shard covers the hash key".into(),
            )),
        }
    }
}

fn dry_run(input: &Value) -> Result<()> {
    if input.bool("DryRun") == Some(true) {
        return Err(StreamsError::DryRun(
            "Request would have succeeded, but DryRun flag is set.".into(),
        ));
    }
    Ok(())
}

/// Validates one record's key and size and returns its hash key. `entry`
/// is the 1-based index of the record in a PutRecords call (None for
/// PutRecord); it only shapes the error path, built on failure.
/// `None`: the hash key is the MD5 of the partition key, left to the caller
/// (PutRecords hashes all of a call's keys together, see `eddy-md5x`).
fn record_hash(
    entry_value: &Value,
    entry: Option<usize>,
    max_record_bytes: usize,
) -> Result<Option<u128>> {
    let path = || {
        entry
            .map(|i| format!("records.{i}.member."))
            .unwrap_or_default()
    };
    let entry = entry_value;
    let data_len = entry.blob("Data").map_or(0, Bytes::len);
    let key = entry.str("PartitionKey");
    let Some(key) = key else {
        return Err(StreamsError::Validation(format!(
            "1 validation error detected: Value null at '{}partitionKey' failed to satisfy constraint: Member must not be null",
            path()
        )));
    };
    if data_len + key.len() > max_record_bytes {
        return Err(StreamsError::Validation(format!(
            "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim={data_len} cap={data_len}]' at '{}data' failed to satisfy constraint: Member must have length less than or equal to {}",
            path(),
            max_record_bytes.saturating_sub(key.len())
        )));
    }
    match entry.str("ExplicitHashKey") {
        Some(ehk) => parse_hash_key(ehk).map(Some).ok_or_else(|| {
            StreamsError::InvalidArgument(format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {ehk}"
            ))
        }),
        None => Ok(None),
    }
}

/// What a record counts against limits: data plus partition key bytes.
fn record_size(entry: &Value) -> usize {
    entry.blob("Data").map_or(0, Bytes::len) + entry.str("PartitionKey").map_or(0, str::len)
}

/// Moves a validated entry's partition key and data out of the request
/// (no copy: both already live in buffers of their own).
fn append_record(entry: &mut Value) -> AppendRecord {
    let key = match entry.take("PartitionKey") {
        Some(Value::String(k)) => Bytes::from(k.into_bytes()),
        _ => Bytes::new(),
    };
    let value = match entry.take("Data") {
        Some(Value::Blob(b)) => b,
        _ => Bytes::new(),
    };
    AppendRecord { key, value }
}

impl Streams {
    fn write_throttle_message(&self, stream: &str, shard_index: u32) -> String {
        format!(
            "Rate exceeded for shard {} in stream {stream} under account {}.",
            shard_id(shard_index),
            self.account()
        )
    }

    fn put_target(&self, name: &str) -> Result<PutTarget> {
        let m = self.read();
        let stream = self.readable(&m, name)?;
        Ok(PutTarget::of(stream))
    }

    pub(crate) async fn put_record(&self, mut input: Value) -> Result<Value> {
        let name = self.stream_name(&input)?;
        // Held across routing and the append: a reshard waits for us.
        let gate = self.gate(&name);
        let _gate = gate.read().await;
        let target = self.put_target(&name)?;
        let hash = match record_hash(&input, None, target.max_record_bytes)? {
            Some(explicit) => explicit,
            None => hash_partition_key(input.str("PartitionKey").unwrap_or_default()),
        };
        dry_run(&input)?;
        let routed = target.route(hash)?;
        if !self
            .inner
            .limiter
            .admit_write(routed.log_id, record_size(&input))
        {
            return Err(StreamsError::ProvisionedThroughputExceeded(
                self.write_throttle_message(&name, routed.shard_index),
            ));
        }
        let appended = self
            .log()
            .append(vec![ShardAppend {
                shard: routed.log_id,
                records: vec![append_record(&mut input)],
            }])
            .await?;
        let seq = seqnum::encode(target.tag, routed.shard_index, appended[0].first_position);
        Ok(Value::map()
            .with("ShardId", shard_id(routed.shard_index))
            .with("SequenceNumber", seq)
            .with(
                "EncryptionType",
                if target.encrypted { "KMS" } else { "NONE" },
            ))
    }

    pub(crate) async fn put_records(&self, mut input: Value) -> Result<Value> {
        let name = self.stream_name(&input)?;
        let gate = self.gate(&name);
        let _gate = gate.read().await;
        let target = self.put_target(&name)?;
        let mut entries = match input.take("Records") {
            Some(Value::List(entries)) => entries,
            _ => Vec::new(),
        };
        let sizes: Vec<usize> = entries.iter().map(record_size).collect();
        let total: usize = sizes.iter().sum();
        let mut explicit = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            explicit.push(record_hash(e, Some(i + 1), target.max_record_bytes)?);
        }
        // The partition keys' MD5s, all of the call's at once (several per
        // instruction where the CPU allows).
        let keys: Vec<&str> = entries
            .iter()
            .zip(&explicit)
            .filter(|(_, h)| h.is_none())
            .map(|(e, _)| e.str("PartitionKey").unwrap_or_default())
            .collect();
        let mut hashed = vec![0u128; keys.len()];
        eddy_md5x::hash_keys(&keys, &mut hashed);
        let mut hashed = hashed.into_iter();
        let mut routes = Vec::with_capacity(entries.len());
        for h in explicit {
            let hash = h.unwrap_or_else(|| hashed.next().expect("one hash per key"));
            routes.push(target.route(hash)?);
        }
        if total > PUT_RECORDS_MAX_BYTES {
            return Err(StreamsError::InvalidArgument(
                "Records size exceeds 10 MB limit".into(),
            ));
        }
        dry_run(&input)?;
        // Group entries by shard (request order within each shard), admit
        // each group against its shard's limits under one lock, and append
        // the admitted records.
        let mut groups: Vec<(u64, Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<u64, usize> = HashMap::new();
        for (i, r) in routes.iter().enumerate() {
            let g = *group_of.entry(r.log_id).or_insert_with(|| {
                groups.push((r.log_id, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i);
        }
        let mut batches: Vec<ShardAppend> = Vec::with_capacity(groups.len());
        // Per entry: Some((batch, index in batch)) if admitted.
        let mut slot: Vec<Option<(usize, u64)>> = vec![None; entries.len()];
        for (log_id, members) in &groups {
            let group_sizes: Vec<usize> = members.iter().map(|&i| sizes[i]).collect();
            let admitted = self.inner.limiter.admit_writes(*log_id, &group_sizes);
            let mut records = Vec::with_capacity(members.len());
            for (&i, ok) in members.iter().zip(admitted) {
                if ok {
                    slot[i] = Some((batches.len(), records.len() as u64));
                    records.push(append_record(&mut entries[i]));
                }
            }
            if !records.is_empty() {
                batches.push(ShardAppend {
                    shard: *log_id,
                    records,
                });
            }
        }
        let appended = if batches.is_empty() {
            Vec::new()
        } else {
            self.log().append(batches).await?
        };
        let entries: Vec<std::result::Result<(u32, u64), String>> = routes
            .iter()
            .zip(&slot)
            .map(|(r, slot)| match slot {
                Some((b, k)) => Ok((r.shard_index, appended[*b].first_position + k)),
                None => Err(self.write_throttle_message(&name, r.shard_index)),
            })
            .collect();
        let failed = entries.iter().filter(|e| e.is_err()).count() as i64;
        let records = Value::Lazy(LazyList(Arc::new(PutResults {
            stream_tag: target.tag,
            entries,
        })));
        Ok(Value::map()
            .with("FailedRecordCount", failed)
            .with("Records", records)
            .with(
                "EncryptionType",
                if target.encrypted { "KMS" } else { "NONE" },
            ))
    }

    /// Where an iterator (or a subscription) of `kind` starts in a shard:
    /// (stream tag, shard, position), with AWS's errors for bad arguments.
    pub(crate) fn start_position(
        &self,
        name: &str,
        shard_arg: &str,
        kind: &str,
        starting: Option<&str>,
        timestamp: Option<i64>,
        caller: &str,
    ) -> Result<(u64, Shard, u64)> {
        let (tag, shard) = {
            let m = self.read();
            let stream = self.readable(&m, name)?;
            let shard = parse_shard_id(shard_arg)
                .and_then(|i| stream.shard(i))
                .cloned()
                .ok_or_else(|| {
                    StreamsError::ResourceNotFound(format!(
                        "Shard {shard_arg} in stream {name} under account {} does not exist",
                        self.account()
                    ))
                })?;
            (stream.tag, shard)
        };
        let needs_seq = matches!(kind, "AT_SEQUENCE_NUMBER" | "AFTER_SEQUENCE_NUMBER");
        match (needs_seq, starting) {
            (true, None) => {
                return Err(StreamsError::InvalidArgument(format!(
                    "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified {kind} and no StartingSequenceNumber."
                )));
            }
            (false, Some(_)) if kind != "AT_TIMESTAMP" => {
                return Err(StreamsError::InvalidArgument(format!(
                    "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified {kind} and also a StartingSequenceNumber."
                )));
            }
            _ => {}
        }
        let bounds = self.log().bounds(shard.log_id)?;
        let end = shard.ending_position.unwrap_or(u64::MAX);
        let position = match kind {
            "TRIM_HORIZON" => bounds.trim_horizon,
            "LATEST" => bounds.tip.min(end),
            "AT_TIMESTAMP" => {
                let Some(ts) = timestamp else {
                    return Err(StreamsError::InvalidArgument(
                        "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.".into(),
                    ));
                };
                let now = now_ms();
                if ts > now {
                    return Err(StreamsError::InvalidArgument(format!(
                        "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: {ts}, currentTimestampInMillis: {now}"
                    )));
                }
                self.log().position_at_time(shard.log_id, ts)?
            }
            _ => {
                let seq = starting.unwrap_or_default();
                let decoded = seqnum::decode(seq).ok_or_else(|| {
                    StreamsError::InvalidArgument(format!(
                        "StartingSequenceNumber {seq} used in {caller} on shard {shard_arg} in stream {name} under account {} is invalid.",
                        self.account()
                    ))
                })?;
                if decoded.stream_tag != tag {
                    return Err(StreamsError::InvalidArgument(format!(
                        "StartingSequenceNumber {seq} used in {caller} on shard {} in stream {name} under account {} is invalid because it did not come from this stream.",
                        shard.id(),
                        self.account()
                    )));
                }
                if decoded.shard_index != shard.index {
                    return Err(StreamsError::InvalidArgument(format!(
                        "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to a shard with {}",
                        shard_id(decoded.shard_index),
                        shard.id()
                    )));
                }
                match (decoded.point, kind == "AFTER_SEQUENCE_NUMBER") {
                    (None, true) => {
                        return Err(StreamsError::InvalidArgument(
                            "Invalid SequenceNumber for ShardIteratorType AFTER_SEQUENCE_NUMBER, SequenceNumber has reached max possible value for the shard.".into(),
                        ));
                    }
                    (None, false) => end,
                    (Some(point), true) => point,
                    (Some(point), false) => seqnum::SeqNo::at(point),
                }
            }
        };
        Ok((tag, shard, position))
    }

    pub(crate) fn get_shard_iterator(&self, input: &Value) -> Result<Value> {
        let name = self.stream_name(input)?;
        let (tag, shard, position) = self.start_position(
            &name,
            input.str("ShardId").unwrap_or_default(),
            input.str("ShardIteratorType").unwrap_or_default(),
            input.str("StartingSequenceNumber"),
            input.timestamp("Timestamp"),
            "GetShardIterator",
        )?;
        dry_run(input)?;
        let token = IteratorToken {
            issued_ms: now_ms(),
            stream_tag: tag,
            shard_index: shard.index,
            position,
            stream_name: name,
        };
        Ok(Value::map().with("ShardIterator", self.inner.signer.iterator(&token)))
    }

    pub(crate) fn get_records(&self, input: &Value) -> Result<Value> {
        let raw = input.str("ShardIterator").unwrap_or_default();
        let Some(it) = self.inner.signer.open_iterator(raw) else {
            return Err(StreamsError::InvalidArgument(
                "Invalid ShardIterator.".into(),
            ));
        };
        let now = now_ms();
        if now - it.issued_ms > ITERATOR_TTL_MS {
            return Err(StreamsError::ExpiredIterator(format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {ITERATOR_TTL_MS} milliseconds.",
                java_date(it.issued_ms),
                java_date(now)
            )));
        }
        let limit = input
            .i64("Limit")
            .map_or(GET_RECORDS_MAX_RECORDS, |l| l as usize);
        let (shard, encrypted, children) = {
            let m = self.read();
            let stream = match m.streams.get(&it.stream_name) {
                Some(s) if s.tag == it.stream_tag => self.readable(&m, &it.stream_name)?,
                _ => return Err(self.not_found(&it.stream_name)),
            };
            let shard = stream.shard(it.shard_index).cloned().ok_or_else(|| {
                StreamsError::ResourceNotFound(format!(
                    "Shard {} in stream {} under account {} does not exist",
                    shard_id(it.shard_index),
                    it.stream_name,
                    self.account()
                ))
            })?;
            let children = child_shards(stream, &shard);
            (shard, stream.kms_key_id.is_some(), children)
        };
        dry_run(input)?;
        if !self.inner.limiter.admit_read(shard.log_id) {
            return Err(StreamsError::ProvisionedThroughputExceeded(format!(
                "Rate exceeded for Shard - {}/{}/{}",
                self.account(),
                it.stream_name,
                shard.id()
            )));
        }
        let end = shard.ending_position.unwrap_or(u64::MAX);
        let want = limit.min((end.saturating_sub(it.position)).min(usize::MAX as u64) as usize);
        let read = if want == 0 {
            None
        } else {
            Some(
                self.log()
                    .read(shard.log_id, it.position, want, GET_RECORDS_MAX_BYTES)?,
            )
        };
        let bounds = self.log().bounds(shard.log_id)?;
        let (records, next) = match read {
            Some(r) => (r.records, r.next_position),
            None => (Vec::new(), it.position.max(bounds.trim_horizon)),
        };
        let returned: usize = records.iter().map(|r| r.key.len() + r.value.len()).sum();
        self.inner.limiter.charge_read(shard.log_id, returned);
        let last_ts = records.last().map(|r| r.timestamp_ms);
        let out = Value::Lazy(LazyList(Arc::new(RecordList {
            stream_tag: it.stream_tag,
            shard_index: shard.index,
            encrypted,
            records,
        })));
        let behind = match (next < bounds.tip, last_ts, bounds.last_timestamp_ms) {
            (false, _, _) => 0,
            (true, Some(ts), Some(tip_ts)) => (tip_ts - ts).max(0),
            (true, None, Some(tip_ts)) => (now - tip_ts).max(0),
            _ => 0,
        };
        let mut resp = Value::map()
            .with("Records", out)
            .with("MillisBehindLatest", behind);
        if next >= end {
            // End of a closed shard: no next iterator, the children instead.
            resp.set("ChildShards", children);
        } else {
            let token = IteratorToken {
                issued_ms: now,
                position: next,
                stream_name: it.stream_name,
                ..it
            };
            resp.set("NextShardIterator", self.inner.signer.iterator(&token));
        }
        Ok(resp)
    }

    /// Waits (without polling) until the shard behind `iterator` has data past
    /// the iterator's position, or `timeout` passes. For long polling and push.
    pub async fn wait_for_data(
        &self,
        log_id: u64,
        position: u64,
        timeout: Duration,
    ) -> Result<u64> {
        Ok(self.log().wait_for(log_id, position, timeout).await?)
    }
}

/// A stored record as the `Record` shape GetRecords and SubscribeToShard
/// answer with.
pub(crate) fn record_value(
    stream_tag: u64,
    shard_index: u32,
    r: eddy_log::LogRecord,
    encrypted: bool,
) -> Value {
    // Built as one vector (no per-member duplicate check): one of these per
    // record of every GetRecords answer and fan-out event.
    let mut members = Vec::with_capacity(5);
    members.push((
        "SequenceNumber".into(),
        seqnum::encode(stream_tag, shard_index, r.position).into(),
    ));
    members.push((
        "ApproximateArrivalTimestamp".into(),
        Value::Timestamp(r.timestamp_ms),
    ));
    members.push(("Data".into(), Value::Blob(r.value)));
    members.push((
        "PartitionKey".into(),
        String::from_utf8_lossy(&r.key).into_owned().into(),
    ));
    if encrypted {
        members.push(("EncryptionType".into(), "KMS".into()));
    }
    Value::Map(members)
}

/// The per-record results of a PutRecords answer: (shard, position) of each
/// stored record or the message of its throttling, written into the answer
/// as it is encoded (no document per record).
pub(crate) struct PutResults {
    pub stream_tag: u64,
    pub entries: Vec<std::result::Result<(u32, u64), String>>,
}

impl ItemSource for PutResults {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn item(&self, i: usize) -> Value {
        match &self.entries[i] {
            Ok((shard, position)) => Value::Map(vec![
                (
                    "SequenceNumber".into(),
                    seqnum::encode(self.stream_tag, *shard, *position).into(),
                ),
                ("ShardId".into(), shard_id(*shard).into()),
            ]),
            Err(message) => Value::map()
                .with("ErrorCode", "ProvisionedThroughputExceededException")
                .with("ErrorMessage", message.as_str()),
        }
    }

    /// Stored records only (failures take the generic path);
    /// `put_results_json_is_the_generic_encoding` checks the bytes.
    fn write_json(&self, i: usize, out: &mut Vec<u8>) -> bool {
        let Ok((shard, position)) = self.entries[i] else {
            return false;
        };
        out.extend_from_slice(b"{\"SequenceNumber\":");
        seqnum::write_json(out, self.stream_tag, shard, position);
        out.extend_from_slice(b",\"ShardId\":\"");
        out.extend_from_slice(&shard_id_bytes(shard));
        out.extend_from_slice(b"\"}");
        true
    }
}

/// The records of a GetRecords answer, written into the answer as it is
/// encoded: no document tree (a vector and two strings) per record.
pub(crate) struct RecordList {
    pub stream_tag: u64,
    pub shard_index: u32,
    pub encrypted: bool,
    pub records: Vec<eddy_log::LogRecord>,
}

impl ItemSource for RecordList {
    fn len(&self) -> usize {
        self.records.len()
    }

    fn item(&self, i: usize) -> Value {
        record_value(
            self.stream_tag,
            self.shard_index,
            self.records[i].clone(),
            self.encrypted,
        )
    }

    /// The members of [`record_value`], in its order, with the writers the
    /// generic encoder uses (`record_list_json_is_the_generic_encoding`
    /// checks the two agree).
    fn write_json(&self, i: usize, out: &mut Vec<u8>) -> bool {
        let r = &self.records[i];
        out.extend_from_slice(b"{\"SequenceNumber\":");
        seqnum::write_json(out, self.stream_tag, self.shard_index, r.position);
        out.extend_from_slice(b",\"ApproximateArrivalTimestamp\":");
        json_out::write_timestamp(out, r.timestamp_ms);
        out.extend_from_slice(b",\"Data\":");
        json_out::write_base64(out, &r.value);
        out.extend_from_slice(b",\"PartitionKey\":");
        json_out::write_str(out, &String::from_utf8_lossy(&r.key));
        if self.encrypted {
            out.extend_from_slice(b",\"EncryptionType\":\"KMS\"");
        }
        out.push(b'}');
        true
    }
}

/// The ChildShards of a closed shard: shards naming it as a parent.
pub(crate) fn child_shards(stream: &Stream, shard: &Shard) -> Vec<Value> {
    stream
        .shards
        .iter()
        .filter(|c| c.parent == Some(shard.index) || c.adjacent_parent == Some(shard.index))
        .map(|c| {
            let parents: Vec<Value> = c
                .parent
                .iter()
                .chain(c.adjacent_parent.iter())
                .map(|p| Value::from(shard_id(*p)))
                .collect();
            Value::map()
                .with("ShardId", c.id())
                .with("ParentShards", parents)
                .with(
                    "HashKeyRange",
                    Value::map()
                        .with("StartingHashKey", c.start_hash.to_string())
                        .with("EndingHashKey", c.end_hash.to_string()),
                )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(records: Value) -> Vec<u8> {
        let svc = eddy_wire::kinesis();
        let op = svc.operation("GetRecords").expect("GetRecords");
        let out = Value::map()
            .with("Records", records)
            .with("MillisBehindLatest", 0i64);
        svc.encode(op, eddy_wire::Protocol::Json, &out)
    }

    #[test]
    fn put_results_json_is_the_generic_encoding() {
        let results = PutResults {
            stream_tag: 98_765_432_109_876,
            entries: vec![
                Ok((0, 0)),
                Ok((7, 123_456)),
                Err(
                    "Rate exceeded for shard shardId-000000000003 in stream s under account 1."
                        .into(),
                ),
                Ok((u32::MAX, u64::MAX - 1)),
                Err("with \"quotes\"".into()),
            ],
        };
        let generic = Value::List((0..results.len()).map(|i| results.item(i)).collect());
        let direct = Value::Lazy(LazyList(Arc::new(results)));
        let svc = eddy_wire::kinesis();
        let op = svc.operation("PutRecords").expect("PutRecords");
        let encode = |records: Value| {
            let out = Value::map()
                .with("FailedRecordCount", 2i64)
                .with("Records", records);
            svc.encode(op, eddy_wire::Protocol::Json, &out)
        };
        let (a, b) = (encode(direct), encode(generic));
        assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
        assert!(String::from_utf8_lossy(&a).contains("shardId-004294967295"));
    }

    #[test]
    fn record_list_json_is_the_generic_encoding() {
        let keys: [&[u8]; 6] = [
            b"pk-1",
            b"quote\" and back\\slash",
            b"tab\tnewline\ncontrol\x01",
            "ünïcödé ✓".as_bytes(),
            b"not utf-8 \xff\xfe",
            b"",
        ];
        let datas: [&[u8]; 5] = [b"", b"a", b"ab", b"abc", &[0xfb; 100]];
        let stamps = [1_700_000_000_000, 1_700_000_000_500, 1_700_000_000_123, 0];
        let records: Vec<eddy_log::LogRecord> = (0..60)
            .map(|i| eddy_log::LogRecord {
                position: if i == 59 { u64::MAX - 1 } else { i as u64 * 7 },
                timestamp_ms: stamps[i % stamps.len()],
                key: Bytes::copy_from_slice(keys[i % keys.len()]),
                value: Bytes::copy_from_slice(datas[i % datas.len()]),
            })
            .collect();
        for encrypted in [false, true] {
            let list = RecordList {
                stream_tag: 12_345_678_901_234,
                shard_index: 42,
                encrypted,
                records: records.clone(),
            };
            let generic = Value::List((0..list.len()).map(|i| list.item(i)).collect());
            let direct = Value::Lazy(LazyList(Arc::new(list)));
            let (a, b) = (answer(direct), answer(generic));
            assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
            assert_eq!(a, b);
        }
    }
}
