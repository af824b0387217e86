//! The control plane: every operation that changes or describes streams
//! without moving records. One table maps wire names to handlers.

use std::collections::{BTreeMap, BTreeSet};

use eddy_wire::{Key, Value};

use crate::error::{Result, StreamsError};
use crate::hashkey::even_ranges;
use crate::meta::{Meta, Shard, Status, Stream, parse_shard_id, shard_id};
use crate::seqnum;
use crate::{Streams, effective_status, now_ms};

type Handler = fn(&Streams, &Value) -> Result<Value>;

/// Control-plane operations by wire name.
const HANDLERS: &[(&str, Handler)] = &[
    ("CreateStream", Streams::create_stream),
    ("DeleteStream", Streams::delete_stream),
    ("DescribeStream", Streams::describe_stream),
    ("DescribeStreamSummary", Streams::describe_stream_summary),
    ("ListStreams", Streams::list_streams),
    ("ListShards", Streams::list_shards),
    ("IncreaseStreamRetentionPeriod", Streams::increase_retention),
    ("DecreaseStreamRetentionPeriod", Streams::decrease_retention),
    ("AddTagsToStream", Streams::add_tags_to_stream),
    ("RemoveTagsFromStream", Streams::remove_tags_from_stream),
    ("ListTagsForStream", Streams::list_tags_for_stream),
    ("TagResource", Streams::tag_resource),
    ("UntagResource", Streams::untag_resource),
    ("ListTagsForResource", Streams::list_tags_for_resource),
    (
        "EnableEnhancedMonitoring",
        Streams::enable_enhanced_monitoring,
    ),
    (
        "DisableEnhancedMonitoring",
        Streams::disable_enhanced_monitoring,
    ),
    ("StartStreamEncryption", Streams::start_stream_encryption),
    ("StopStreamEncryption", Streams::stop_stream_encryption),
    ("DescribeLimits", Streams::describe_limits),
    (
        "DescribeAccountSettings",
        Streams::describe_account_settings,
    ),
    ("UpdateAccountSettings", Streams::update_account_settings),
    ("UpdateStreamMode", Streams::update_stream_mode),
    ("UpdateMaxRecordSize", Streams::update_max_record_size),
    (
        "UpdateStreamWarmThroughput",
        Streams::update_stream_warm_throughput,
    ),
    (
        "UpdateStreamRecordDistributionStrategy",
        Streams::update_distribution_strategy,
    ),
    ("PutResourcePolicy", Streams::put_resource_policy),
    ("GetResourcePolicy", Streams::get_resource_policy),
    ("DeleteResourcePolicy", Streams::delete_resource_policy),
    ("RegisterStreamConsumer", Streams::register_stream_consumer),
    ("DescribeStreamConsumer", Streams::describe_stream_consumer),
    (
        "DeregisterStreamConsumer",
        Streams::deregister_stream_consumer,
    ),
    ("ListStreamConsumers", Streams::list_stream_consumers),
];

const ALL_METRICS: [&str; 7] = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];
const MAX_TAGS: usize = 50;
const DEFAULT_SHARD_COUNT: u32 = 4;
const DEFAULT_RETENTION_HOURS: u32 = 24;
const MAX_RETENTION_HOURS: i64 = 8760;
const DEFAULT_MAX_RECORD_KIB: u32 = 1024;

fn seconds(ms: i64) -> Value {
    Value::Timestamp(ms)
}

fn mode_details(s: &Stream) -> Value {
    Value::map().with(
        "StreamMode",
        if s.on_demand {
            "ON_DEMAND"
        } else {
            "PROVISIONED"
        },
    )
}

fn tags_list(tags: &BTreeMap<String, String>) -> Vec<Value> {
    tags.iter()
        .map(|(k, v)| {
            Value::map()
                .with("Key", k.as_str())
                .with("Value", v.as_str())
        })
        .collect()
}

/// The `Tags` map of a request (CreateStream, RegisterStreamConsumer).
pub(crate) fn input_tags(input: &Value) -> BTreeMap<String, String> {
    input
        .get("Tags")
        .and_then(Value::as_map)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

pub(crate) fn shard_value(stream: &Stream, s: &Shard) -> Value {
    let mut range = Value::map().with(
        "StartingSequenceNumber",
        seqnum::encode_point(stream.tag, s.index, 0),
    );
    if s.ending_position.is_some() {
        range.set(
            "EndingSequenceNumber",
            seqnum::encode_ending(stream.tag, s.index),
        );
    }
    Value::map()
        .with("ShardId", s.id())
        .with("ParentShardId", s.parent.map(shard_id))
        .with("AdjacentParentShardId", s.adjacent_parent.map(shard_id))
        .with(
            "HashKeyRange",
            Value::map()
                .with("StartingHashKey", s.start_hash.to_string())
                .with("EndingHashKey", s.end_hash.to_string()),
        )
        .with("SequenceNumberRange", range)
}

impl Streams {
    pub(crate) fn control(&self, op: &str, input: &Value) -> Result<Value> {
        let handler = HANDLERS
            .iter()
            .find(|(name, _)| *name == op)
            .map(|(_, h)| *h)
            .ok_or_else(|| StreamsError::Internal(format!("operation {op} is not served here")))?;
        handler(self, input)
    }

    fn in_use(&self, s: &Stream) -> StreamsError {
        StreamsError::ResourceInUse(format!(
            "Stream {} under account {} not ACTIVE, instead in state {}",
            s.name,
            self.account(),
            effective_status(s).as_str()
        ))
    }

    /// The named stream, which must exist (in any state but gone).
    fn existing<'m>(&self, m: &'m Meta, name: &str) -> Result<&'m Stream> {
        m.streams.get(name).ok_or_else(|| self.not_found(name))
    }

    /// Runs `f` on the named stream, which must be ACTIVE, under the write
    /// lock; persists the change.
    fn modify_active(
        &self,
        input: &Value,
        f: impl FnOnce(&mut Stream) -> Result<()>,
    ) -> Result<String> {
        let name = self.stream_name(input)?;
        let mut m = self.write();
        let s = m
            .streams
            .get_mut(&name)
            .ok_or_else(|| self.not_found(&name))?;
        if effective_status(s) != Status::Active {
            return Err(self.in_use(s));
        }
        f(s)?;
        self.persist(&m)?;
        Ok(name)
    }

    /// Like `modify_active`, then moves the stream through UPDATING.
    fn update_active(
        &self,
        input: &Value,
        f: impl FnOnce(&mut Stream) -> Result<()>,
    ) -> Result<String> {
        let name = self.stream_name(input)?;
        let mut m = self.write();
        let s = m
            .streams
            .get_mut(&name)
            .ok_or_else(|| self.not_found(&name))?;
        if effective_status(s) != Status::Active {
            return Err(self.in_use(s));
        }
        f(s)?;
        self.begin_transition(&mut m, &name, Status::Updating)?;
        Ok(name)
    }

    fn open_shard_count(m: &Meta) -> u32 {
        m.streams
            .values()
            .map(|s| s.open_shards().count() as u32)
            .sum()
    }

    fn shard_limit_error(&self, current: u32, additional: u32) -> StreamsError {
        StreamsError::LimitExceeded(format!(
            "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {current}. Limit: {}. Number of additional shards that would have resulted from this request: {additional}. Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits.",
            self.account(),
            self.config().region,
            self.config().shard_limit
        ))
    }

    fn create_stream(&self, input: &Value) -> Result<Value> {
        let name = input.str("StreamName").unwrap_or_default().to_string();
        let on_demand = input
            .get("StreamModeDetails")
            .and_then(|d| d.str("StreamMode"))
            == Some("ON_DEMAND");
        let count = match input.i64("ShardCount") {
            Some(n) if on_demand => {
                return Err(StreamsError::InvalidArgument(format!(
                    "ShardCount {n} is not supported for streams in ON_DEMAND mode."
                )));
            }
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
            None => DEFAULT_SHARD_COUNT,
        };
        let tags = input_tags(input);
        if tags.len() > MAX_TAGS {
            return Err(StreamsError::InvalidArgument(format!(
                "Failed to create stream {name} under account {} because a stream cannot have more than {MAX_TAGS} tags.",
                self.account()
            )));
        }
        let mut m = self.write();
        if m.streams.contains_key(&name) {
            return Err(StreamsError::ResourceInUse(format!(
                "Stream {name} under account {} already exists.",
                self.account()
            )));
        }
        let current = Self::open_shard_count(&m);
        if current.saturating_add(count) > self.config().shard_limit {
            return Err(self.shard_limit_error(current, count));
        }
        if on_demand {
            let od = m.streams.values().filter(|s| s.on_demand).count() as u32;
            if od >= self.config().on_demand_stream_limit {
                return Err(StreamsError::LimitExceeded(format!(
                    "This request would exceed the on-demand stream limit for the account {} in {}. Limit: {}.",
                    self.account(),
                    self.config().region,
                    self.config().on_demand_stream_limit
                )));
            }
        }
        let created = now_ms();
        let group = m.next_group;
        m.next_group += 1;
        let mut shards = Vec::with_capacity(count as usize);
        for (i, (start, end)) in even_ranges(count).into_iter().enumerate() {
            let log_id = m.next_log_shard;
            m.next_log_shard += 1;
            shards.push(Shard {
                index: i as u32,
                log_id,
                start_hash: start,
                end_hash: end,
                parent: None,
                adjacent_parent: None,
                created_ms: created,
                ending_position: None,
                closed_ms: None,
            });
        }
        // Storage first: if we crash before the metadata lands, the engine
        // holds empty orphan shards, never a stream without storage.
        for s in &shards {
            self.log().create_shard(s.log_id, group)?;
        }
        self.log().set_retention(
            group,
            std::time::Duration::from_secs(DEFAULT_RETENTION_HOURS as u64 * 3600),
        )?;
        let stream = Stream {
            name: name.clone(),
            tag: rand::random::<u64>() % seqnum::TAG_LIMIT,
            group,
            created_ms: created,
            status: Status::Creating,
            status_until_ms: None,
            on_demand,
            retention_hours: DEFAULT_RETENTION_HOURS,
            next_shard_index: count,
            shards,
            tags,
            shard_level_metrics: BTreeSet::new(),
            kms_key_id: None,
            max_record_kib: input
                .i64("MaxRecordSizeInKiB")
                .map_or(DEFAULT_MAX_RECORD_KIB, |k| k as u32),
            warm_throughput_mibps: input.i64("WarmThroughputMiBps").filter(|_| on_demand),
            distribution_strategy: input.str("RecordDistributionStrategy").map(str::to_string),
            policy: None,
            scalings_ms: Vec::new(),
            consumers: BTreeMap::new(),
        };
        m.streams.insert(name.clone(), stream);
        self.begin_transition(&mut m, &name, Status::Creating)?;
        Ok(Value::Null)
    }

    fn delete_stream(&self, input: &Value) -> Result<Value> {
        let name = self.stream_name(input)?;
        let mut m = self.write();
        let s = self.existing(&m, &name)?;
        if effective_status(s) == Status::Deleting {
            return Err(self.not_found(&name));
        }
        if Self::consumer_count(s) > 0 && input.bool("EnforceConsumerDeletion") != Some(true) {
            return Err(StreamsError::ResourceInUse(format!(
                "Stream {name} under account {} has registered consumers. Deregister them first or set EnforceConsumerDeletion.",
                self.account()
            )));
        }
        let arns: Vec<String> = s
            .consumers
            .values()
            .map(|c| self.consumer_arn(&name, c))
            .collect();
        self.begin_transition(&mut m, &name, Status::Deleting)?;
        drop(m);
        for arn in arns {
            self.end_subscriptions_of(&arn);
        }
        Ok(Value::Null)
    }

    fn summary_fields(&self, s: &Stream) -> Value {
        let mut v = Value::map()
            .with("StreamName", s.name.as_str())
            .with("StreamARN", self.stream_arn(&s.name))
            .with("StreamStatus", effective_status(s).as_str())
            .with("StreamModeDetails", mode_details(s))
            .with("RetentionPeriodHours", s.retention_hours)
            .with("StreamCreationTimestamp", seconds(s.created_ms))
            .with(
                "EnhancedMonitoring",
                vec![
                    Value::map().with(
                        "ShardLevelMetrics",
                        s.shard_level_metrics
                            .iter()
                            .map(Value::from)
                            .collect::<Vec<_>>(),
                    ),
                ],
            )
            .with(
                "EncryptionType",
                if s.kms_key_id.is_some() {
                    "KMS"
                } else {
                    "NONE"
                },
            );
        if let Some(k) = &s.kms_key_id {
            v.set("KeyId", k.as_str());
        }
        v
    }

    fn describe_stream(&self, input: &Value) -> Result<Value> {
        let name = self.stream_name(input)?;
        let m = self.read();
        let s = self.existing(&m, &name)?;
        let limit = input.i64("Limit").unwrap_or(100).clamp(1, 100) as usize;
        let after = input.str("ExclusiveStartShardId").and_then(parse_shard_id);
        let mut shards: Vec<&Shard> = s
            .listed_shards(now_ms())
            .filter(|sh| after.is_none_or(|a| sh.index > a))
            .collect();
        shards.sort_by_key(|sh| sh.index);
        let has_more = shards.len() > limit;
        let list: Vec<Value> = shards
            .into_iter()
            .take(limit)
            .map(|sh| shard_value(s, sh))
            .collect();
        let desc = self
            .summary_fields(s)
            .with("Shards", list)
            .with("HasMoreShards", has_more);
        Ok(Value::map().with("StreamDescription", desc))
    }

    fn describe_stream_summary(&self, input: &Value) -> Result<Value> {
        let name = self.stream_name(input)?;
        let m = self.read();
        let s = self.existing(&m, &name)?;
        let mut d = self
            .summary_fields(s)
            .with("OpenShardCount", s.open_shards().count())
            .with("ConsumerCount", Self::consumer_count(s))
            .with("MaxRecordSizeInKiB", s.max_record_kib);
        if let Some(w) = s.warm_throughput_mibps {
            d.set(
                "WarmThroughput",
                Value::map().with("TargetMiBps", w).with("CurrentMiBps", w),
            );
        }
        if let Some(ds) = &s.distribution_strategy {
            d.set("RecordDistributionStrategy", ds.as_str());
        }
        Ok(Value::map().with("StreamDescriptionSummary", d))
    }

    fn list_streams(&self, input: &Value) -> Result<Value> {
        let limit = input.i64("Limit").unwrap_or(100).clamp(1, 100) as usize;
        let after = match input.str("NextToken") {
            Some(t) => Some(self.open_page_token(t, "ListStreams")?.0),
            None => input.str("ExclusiveStartStreamName").map(str::to_string),
        };
        let m = self.read();
        let mut streams: Vec<&Stream> = m
            .streams
            .values()
            .filter(|s| after.as_deref().is_none_or(|a| s.name.as_str() > a))
            .collect();
        streams.sort_by(|a, b| a.name.cmp(&b.name));
        let has_more = streams.len() > limit;
        streams.truncate(limit);
        let names: Vec<Value> = streams
            .iter()
            .map(|s| Value::from(s.name.as_str()))
            .collect();
        let summaries: Vec<Value> = streams
            .iter()
            .map(|s| {
                Value::map()
                    .with("StreamName", s.name.as_str())
                    .with("StreamARN", self.stream_arn(&s.name))
                    .with("StreamStatus", effective_status(s).as_str())
                    .with("StreamModeDetails", mode_details(s))
                    .with("StreamCreationTimestamp", seconds(s.created_ms))
            })
            .collect();
        let mut out = Value::map()
            .with("StreamNames", names)
            .with("HasMoreStreams", has_more)
            .with("StreamSummaries", summaries);
        if has_more {
            let last = streams.last().map(|s| s.name.clone()).unwrap_or_default();
            out.set("NextToken", self.page_token("ListStreams", &last));
        }
        Ok(out)
    }

    /// A pagination token: `what`, a cursor, and the issue time, signed.
    pub(crate) fn page_token(&self, what: &str, cursor: &str) -> String {
        let payload = format!("{what}\n{}\n{cursor}", now_ms());
        self.inner.signer.seal(payload.as_bytes())
    }

    /// Opens a pagination token issued by `page_token(what, ..)`: the cursor
    /// and the issue time. Tokens last 300 seconds.
    pub(crate) fn open_page_token(&self, token: &str, what: &str) -> Result<(String, i64)> {
        let invalid = || StreamsError::InvalidArgument(format!("Invalid NextToken: {token}"));
        let raw = self.inner.signer.open(token).ok_or_else(invalid)?;
        let text = String::from_utf8(raw).map_err(|_| invalid())?;
        let mut parts = text.splitn(3, '\n');
        let (Some(w), Some(ts), Some(cursor)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        let ts: i64 = ts.parse().map_err(|_| invalid())?;
        if w != what {
            return Err(invalid());
        }
        if now_ms() - ts > 300_000 {
            return Err(StreamsError::ExpiredNextToken(format!(
                "The timestamp sent in the NextToken {token} has expired."
            )));
        }
        Ok((cursor.to_string(), ts))
    }

    fn list_shards(&self, input: &Value) -> Result<Value> {
        let has_stream = input.get("StreamName").is_some() || input.get("StreamARN").is_some();
        let token = input.str("NextToken");
        let (name, after, filter) = match (token, has_stream) {
            (Some(_), true) => {
                return Err(StreamsError::InvalidArgument(
                    "NextToken and StreamName cannot be provided together.".into(),
                ));
            }
            (None, false) => {
                return Err(StreamsError::InvalidArgument(
                    "Either NextToken or StreamName should be provided.".into(),
                ));
            }
            (Some(t), false) => {
                let (cursor, _) = self.open_page_token(t, "ListShards")?;
                // cursor: stream \t last shard index \t filter type \t filter timestamp
                let mut p = cursor.split('\t');
                let name = p.next().unwrap_or_default().to_string();
                let after: Option<u32> = p.next().and_then(|s| s.parse().ok());
                let ftype = p.next().unwrap_or("FROM_TRIM_HORIZON").to_string();
                let fts: Option<i64> = p.next().and_then(|s| s.parse().ok());
                (name, after, (ftype, fts))
            }
            (None, true) => {
                let name = self.stream_name(input)?;
                let f = input.get("ShardFilter");
                let ftype = f
                    .and_then(|f| f.str("Type"))
                    .unwrap_or("FROM_TRIM_HORIZON")
                    .to_string();
                let mut after = input.str("ExclusiveStartShardId").and_then(parse_shard_id);
                if ftype == "AFTER_SHARD_ID" {
                    let Some(id) = f.and_then(|f| f.str("ShardId")) else {
                        return Err(StreamsError::InvalidArgument(
                            "Must specify ShardId parameter for ShardFilter of type AFTER_SHARD_ID.".into(),
                        ));
                    };
                    after = parse_shard_id(id);
                }
                let fts = f.and_then(|f| f.timestamp("Timestamp"));
                if matches!(ftype.as_str(), "AT_TIMESTAMP" | "FROM_TIMESTAMP") && fts.is_none() {
                    return Err(StreamsError::InvalidArgument(format!(
                        "Must specify Timestamp parameter for ShardFilter of type {ftype}."
                    )));
                }
                (name, after, (ftype, fts))
            }
        };
        let limit = input.i64("MaxResults").unwrap_or(1000).clamp(1, 1000) as usize;
        let m = self.read();
        let s = self.existing(&m, &name)?;
        if let Some(ts) = input.timestamp("StreamCreationTimestamp")
            && ts != s.created_ms
        {
            return Err(self.not_found(&name));
        }
        let (ftype, fts) = filter;
        let listed: Vec<u32> = s.listed_shards(now_ms()).map(|sh| sh.index).collect();
        let mut shards: Vec<&Shard> = s
            .listed_shards(now_ms())
            .filter(|sh| after.is_none_or(|a| sh.index > a))
            .filter(|sh| match ftype.as_str() {
                "AT_LATEST" => sh.is_open(),
                // The oldest shards still in retention: no listed parent.
                "AT_TRIM_HORIZON" => {
                    sh.parent.is_none_or(|p| !listed.contains(&p))
                        && sh.adjacent_parent.is_none_or(|p| !listed.contains(&p))
                }
                "AT_TIMESTAMP" => {
                    let t = fts.unwrap_or(0);
                    sh.created_ms <= t && sh.closed_ms.is_none_or(|c| c > t)
                        || (sh.is_open() && sh.created_ms > t && sh.parent.is_none())
                }
                "FROM_TIMESTAMP" => sh.closed_ms.is_none_or(|c| c >= fts.unwrap_or(0)),
                _ => true,
            })
            .collect();
        shards.sort_by_key(|sh| sh.index);
        let has_more = shards.len() > limit;
        shards.truncate(limit);
        let list: Vec<Value> = shards.iter().map(|sh| shard_value(s, sh)).collect();
        let mut out = Value::map().with("Shards", list);
        if has_more {
            let last = shards.last().map(|sh| sh.index).unwrap_or_default();
            let cursor = format!(
                "{name}\t{last}\t{ftype}\t{}",
                fts.map(|t| t.to_string()).unwrap_or_default()
            );
            out.set("NextToken", self.page_token("ListShards", &cursor));
        }
        Ok(out)
    }

    fn change_retention(&self, input: &Value, increase: bool) -> Result<Value> {
        let hours = input.i64("RetentionPeriodHours").unwrap_or_default();
        if hours < DEFAULT_RETENTION_HOURS as i64 {
            return Err(StreamsError::InvalidArgument(format!(
                "Minimum allowed retention period is 24 hours. Requested retention period ({hours} hours) is too short."
            )));
        }
        if hours > MAX_RETENTION_HOURS {
            return Err(StreamsError::InvalidArgument(format!(
                "Maximum allowed retention period is 8760 hours. Requested retention period ({hours} hours) is too long."
            )));
        }
        let mut group = 0;
        self.modify_active(input, |s| {
            let current = s.retention_hours as i64;
            if increase && hours < current {
                return Err(StreamsError::InvalidArgument(format!(
                    "Requested retention period ({hours} hours) for stream {} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API.",
                    s.name
                )));
            }
            if !increase && hours > current {
                return Err(StreamsError::InvalidArgument(format!(
                    "Requested retention period ({hours} hours) for stream {} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API.",
                    s.name
                )));
            }
            s.retention_hours = hours as u32;
            group = s.group;
            Ok(())
        })?;
        self.log()
            .set_retention(group, std::time::Duration::from_secs(hours as u64 * 3600))?;
        Ok(Value::Null)
    }

    fn increase_retention(&self, input: &Value) -> Result<Value> {
        self.change_retention(input, true)
    }

    fn decrease_retention(&self, input: &Value) -> Result<Value> {
        self.change_retention(input, false)
    }

    fn add_tags(&self, s: &mut Stream, tags: &[(Key, Value)]) -> Result<()> {
        let mut merged = s.tags.clone();
        for (k, v) in tags {
            merged.insert(k.to_string(), v.as_str().unwrap_or_default().to_string());
        }
        if merged.len() > MAX_TAGS {
            return Err(StreamsError::LimitExceeded(format!(
                "Failed to add tags to stream {} under account {} because a given stream cannot have more than {MAX_TAGS} tags associated with it.",
                s.name,
                self.account()
            )));
        }
        s.tags = merged;
        Ok(())
    }

    fn add_tags_to_stream(&self, input: &Value) -> Result<Value> {
        let tags = input
            .get("Tags")
            .and_then(Value::as_map)
            .unwrap_or_default();
        self.modify_active(input, |s| self.add_tags(s, tags))?;
        Ok(Value::Null)
    }

    fn remove_tags_from_stream(&self, input: &Value) -> Result<Value> {
        let keys = input.list("TagKeys").unwrap_or_default();
        self.modify_active(input, |s| {
            for k in keys {
                s.tags.remove(k.as_str().unwrap_or_default());
            }
            Ok(())
        })?;
        Ok(Value::Null)
    }

    fn list_tags_for_stream(&self, input: &Value) -> Result<Value> {
        let name = self.stream_name(input)?;
        let m = self.read();
        let s = self.existing(&m, &name)?;
        let start = input.str("ExclusiveStartTagKey");
        let limit = input.i64("Limit").unwrap_or(50).clamp(1, 50) as usize;
        let tags: Vec<(&String, &String)> = s
            .tags
            .iter()
            .filter(|(k, _)| start.is_none_or(|st| k.as_str() > st))
            .collect();
        let has_more = tags.len() > limit;
        let list: Vec<Value> = tags
            .into_iter()
            .take(limit)
            .map(|(k, v)| {
                Value::map()
                    .with("Key", k.as_str())
                    .with("Value", v.as_str())
            })
            .collect();
        Ok(Value::map()
            .with("Tags", list)
            .with("HasMoreTags", has_more))
    }

    /// A stream name from a ResourceARN (stream ARNs only, for now).
    fn resource_stream(&self, input: &Value) -> Result<String> {
        let arn = input.str("ResourceARN").unwrap_or_default();
        self.name_from_arn(arn)
    }

    /// Runs `f` on the tags of the stream or consumer a ResourceARN names.
    fn with_resource_tags<T>(
        &self,
        input: &Value,
        write: bool,
        f: impl FnOnce(&mut BTreeMap<String, String>) -> Result<T>,
    ) -> Result<T> {
        let arn = input.str("ResourceARN").unwrap_or_default();
        if arn.contains("/consumer/") {
            let mut m = self.write();
            let (stream, c) = self.consumer_of(&m, &Value::map().with("ConsumerARN", arn))?;
            let consumer = m
                .streams
                .get_mut(&stream)
                .and_then(|s| s.consumers.get_mut(&c.name))
                .expect("found above");
            let out = f(&mut consumer.tags)?;
            if write {
                self.persist(&m)?;
            }
            return Ok(out);
        }
        let name = self.resource_stream(input)?;
        if !write {
            let m = self.read();
            let mut tags = self.existing(&m, &name)?.tags.clone();
            return f(&mut tags);
        }
        let mut out = None;
        self.modify_active(&Value::map().with("StreamName", name), |s| {
            out = Some(f(&mut s.tags)?);
            Ok(())
        })?;
        Ok(out.expect("set by the closure"))
    }

    fn tag_resource(&self, input: &Value) -> Result<Value> {
        let tags = input
            .get("Tags")
            .and_then(Value::as_map)
            .unwrap_or_default();
        self.with_resource_tags(input, true, |t| {
            let mut merged = t.clone();
            for (k, v) in tags {
                merged.insert(k.to_string(), v.as_str().unwrap_or_default().to_string());
            }
            if merged.len() > MAX_TAGS {
                return Err(StreamsError::LimitExceeded(format!(
                    "Failed to tag resource {} because a resource cannot have more than {MAX_TAGS} tags.",
                    input.str("ResourceARN").unwrap_or_default()
                )));
            }
            *t = merged;
            Ok(())
        })?;
        Ok(Value::Null)
    }

    fn untag_resource(&self, input: &Value) -> Result<Value> {
        let keys = input.list("TagKeys").unwrap_or_default();
        self.with_resource_tags(input, true, |t| {
            for k in keys {
                t.remove(k.as_str().unwrap_or_default());
            }
            Ok(())
        })?;
        Ok(Value::Null)
    }

    fn list_tags_for_resource(&self, input: &Value) -> Result<Value> {
        let tags = self.with_resource_tags(input, false, |t| Ok(tags_list(t)))?;
        Ok(Value::map().with("Tags", tags))
    }

    fn set_metrics(&self, input: &Value, enable: bool) -> Result<Value> {
        let requested: BTreeSet<String> = input
            .list("ShardLevelMetrics")
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_str)
            .flat_map(|m| {
                if m == "ALL" {
                    ALL_METRICS.to_vec()
                } else {
                    vec![m]
                }
            })
            .map(str::to_string)
            .collect();
        let mut before = BTreeSet::new();
        let mut after = BTreeSet::new();
        let name = self.modify_active(input, |s| {
            before = s.shard_level_metrics.clone();
            if enable {
                s.shard_level_metrics.extend(requested.iter().cloned());
            } else {
                s.shard_level_metrics.retain(|m| !requested.contains(m));
            }
            after = s.shard_level_metrics.clone();
            Ok(())
        })?;
        let list = |set: &BTreeSet<String>| set.iter().map(Value::from).collect::<Vec<_>>();
        Ok(Value::map()
            .with("StreamName", name.as_str())
            .with("StreamARN", self.stream_arn(&name))
            .with("CurrentShardLevelMetrics", list(&before))
            .with("DesiredShardLevelMetrics", list(&after)))
    }

    fn enable_enhanced_monitoring(&self, input: &Value) -> Result<Value> {
        self.set_metrics(input, true)
    }

    fn disable_enhanced_monitoring(&self, input: &Value) -> Result<Value> {
        self.set_metrics(input, false)
    }

    fn start_stream_encryption(&self, input: &Value) -> Result<Value> {
        if input.str("EncryptionType") != Some("KMS") {
            return Err(StreamsError::InvalidArgument(
                "Invalid EncryptionType. Only KMS is supported by StartStreamEncryption.".into(),
            ));
        }
        let key = input.str("KeyId").unwrap_or_default().to_string();
        self.update_active(input, |s| {
            s.kms_key_id = Some(key);
            Ok(())
        })?;
        Ok(Value::Null)
    }

    fn stop_stream_encryption(&self, input: &Value) -> Result<Value> {
        self.update_active(input, |s| {
            s.kms_key_id = None;
            Ok(())
        })?;
        Ok(Value::Null)
    }

    fn describe_limits(&self, _input: &Value) -> Result<Value> {
        let m = self.read();
        let od = m.streams.values().filter(|s| s.on_demand).count();
        Ok(Value::map()
            .with("ShardLimit", self.config().shard_limit)
            .with("OpenShardCount", Self::open_shard_count(&m))
            .with("OnDemandStreamCount", od)
            .with(
                "OnDemandStreamCountLimit",
                self.config().on_demand_stream_limit,
            ))
    }

    fn describe_account_settings(&self, _input: &Value) -> Result<Value> {
        let m = self.read();
        let a = &m.account;
        let mut out = Value::map();
        if let Some(status) = &a.commitment_status {
            let mut c = Value::map().with("Status", status.as_str());
            if let Some(t) = a.commitment_started_ms {
                c.set("StartedAt", seconds(t));
                // AWS commits for at least 24 hours.
                c.set("EarliestAllowedEndAt", seconds(t + 24 * 3600 * 1000));
            }
            if let Some(t) = a.commitment_ended_ms {
                c.set("EndedAt", seconds(t));
            }
            out.set("MinimumThroughputBillingCommitment", c);
        }
        Ok(out)
    }

    fn update_account_settings(&self, input: &Value) -> Result<Value> {
        let status = input
            .get("MinimumThroughputBillingCommitment")
            .and_then(|c| c.str("Status"))
            .unwrap_or_default()
            .to_string();
        {
            let mut m = self.write();
            let now = now_ms();
            let a = &mut m.account;
            match status.as_str() {
                "ENABLED" => {
                    if a.commitment_status.as_deref() != Some("ENABLED") {
                        a.commitment_started_ms = Some(now);
                        a.commitment_ended_ms = None;
                    }
                }
                _ => {
                    if a.commitment_status.as_deref() == Some("ENABLED") {
                        a.commitment_ended_ms = Some(now);
                    }
                }
            }
            a.commitment_status = Some(status);
            self.persist(&m)?;
        }
        self.describe_account_settings(&Value::map())
    }

    fn update_stream_mode(&self, input: &Value) -> Result<Value> {
        let on_demand = input
            .get("StreamModeDetails")
            .and_then(|d| d.str("StreamMode"))
            == Some("ON_DEMAND");
        let warm = input.i64("WarmThroughputMiBps");
        {
            let m = self.read();
            let name = self.stream_name(input)?;
            let s = self.existing(&m, &name)?;
            if s.on_demand == on_demand {
                return Err(StreamsError::InvalidArgument(format!(
                    "Stream {name} under account {} is already in {} mode.",
                    self.account(),
                    if on_demand {
                        "ON_DEMAND"
                    } else {
                        "PROVISIONED"
                    }
                )));
            }
        }
        self.update_active(input, |s| {
            s.on_demand = on_demand;
            s.warm_throughput_mibps = if on_demand { warm } else { None };
            Ok(())
        })?;
        Ok(Value::Null)
    }

    fn update_max_record_size(&self, input: &Value) -> Result<Value> {
        let kib = input
            .i64("MaxRecordSizeInKiB")
            .unwrap_or(DEFAULT_MAX_RECORD_KIB as i64) as u32;
        self.update_active(input, |s| {
            s.max_record_kib = kib;
            Ok(())
        })?;
        Ok(Value::Null)
    }

    fn update_stream_warm_throughput(&self, input: &Value) -> Result<Value> {
        let target = input.i64("WarmThroughputMiBps").unwrap_or_default();
        let per_shard_mib = self.config().limits.write_bytes_per_sec / (1024.0 * 1024.0);
        let mut current = 0;
        let name = self.update_active(input, |s| {
            if !s.on_demand {
                return Err(StreamsError::InvalidArgument(format!(
                    "Warm throughput can only be configured for streams in ON_DEMAND mode. Stream {} is in PROVISIONED mode.",
                    s.name
                )));
            }
            // Capacity in place now: open shards at the per-shard write rate.
            current = (s.open_shards().count() as f64 * per_shard_mib).floor() as i64;
            s.warm_throughput_mibps = Some(target);
            Ok(())
        })?;
        Ok(Value::map()
            .with("StreamARN", self.stream_arn(&name))
            .with("StreamName", name.as_str())
            .with(
                "WarmThroughput",
                Value::map()
                    .with("TargetMiBps", target)
                    .with("CurrentMiBps", current),
            ))
    }

    fn update_distribution_strategy(&self, input: &Value) -> Result<Value> {
        let strategy = input
            .str("RecordDistributionStrategy")
            .unwrap_or_default()
            .to_string();
        self.update_active(input, |s| {
            s.distribution_strategy = Some(strategy);
            Ok(())
        })?;
        Ok(Value::Null)
    }

    fn put_resource_policy(&self, input: &Value) -> Result<Value> {
        let name = self.resource_stream(input)?;
        let policy = input.str("Policy").unwrap_or_default().to_string();
        if serde_json::from_str::<serde_json::Value>(&policy)
            .map(|v| v.is_object())
            .ok()
            != Some(true)
        {
            return Err(StreamsError::InvalidArgument(
                "Invalid policy document: the policy must be a JSON object.".into(),
            ));
        }
        self.modify_active(&Value::map().with("StreamName", name), |s| {
            s.policy = Some(policy);
            Ok(())
        })?;
        Ok(Value::Null)
    }

    fn get_resource_policy(&self, input: &Value) -> Result<Value> {
        let name = self.resource_stream(input)?;
        let m = self.read();
        let s = self.existing(&m, &name)?;
        Ok(Value::map().with("Policy", s.policy.clone().unwrap_or_else(|| "{}".into())))
    }

    fn delete_resource_policy(&self, input: &Value) -> Result<Value> {
        let name = self.resource_stream(input)?;
        self.modify_active(&Value::map().with("StreamName", name), |s| {
            s.policy = None;
            Ok(())
        })?;
        Ok(Value::Null)
    }
}
