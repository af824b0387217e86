//! Enhanced fan-out consumers: registration, description, listing,
//! deregistration, and their ARNs. Subscriptions live in `subscribe.rs`.

use std::collections::BTreeMap;

use eddy_wire::Value;
use serde::{Deserialize, Serialize};

use crate::control::input_tags;
use crate::error::{Result, StreamsError};
use crate::meta::{Meta, Status};
use crate::{Streams, effective_status, now_ms};

/// Consumers a stream may have (AWS's default; queues would count too).
pub const MAX_CONSUMERS_PER_STREAM: usize = 20;
/// Consumers that may be CREATING at once per account.
pub const MAX_CREATING_PER_ACCOUNT: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    pub name: String,
    pub created_ms: i64,
    pub status: Status,
    pub status_until_ms: Option<i64>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Consumer {
    pub fn effective_status(&self) -> Status {
        match (self.status, self.status_until_ms) {
            (Status::Creating, Some(until)) if until <= now_ms() => Status::Active,
            (Status::Deleting, Some(until)) if until <= now_ms() => Status::Deleting,
            (s, _) => s,
        }
    }

    /// Gone: deregistered and its DELETING time is over.
    fn is_gone(&self, now: i64) -> bool {
        self.status == Status::Deleting && self.status_until_ms.is_some_and(|u| u <= now)
    }
}

/// A consumer ARN taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerArn {
    pub stream: String,
    pub consumer: String,
    pub created_s: i64,
}

impl Streams {
    pub(crate) fn consumer_arn(&self, stream: &str, c: &Consumer) -> String {
        format!(
            "{}/consumer/{}:{}",
            self.stream_arn(stream),
            c.name,
            c.created_ms / 1000
        )
    }

    /// Parses `arn:aws:kinesis:<region>:<account>:stream/<s>/consumer/<c>:<epoch s>`.
    pub(crate) fn parse_consumer_arn(&self, arn: &str) -> Result<ConsumerArn> {
        let invalid = || StreamsError::InvalidArgument(format!("Invalid ConsumerARN: {arn}"));
        let (prefix, created) = arn.rsplit_once(':').ok_or_else(invalid)?;
        let created_s: i64 = created.parse().map_err(|_| invalid())?;
        let (stream_arn, consumer) = prefix.split_once("/consumer/").ok_or_else(invalid)?;
        let stream = self.name_from_arn(stream_arn)?;
        if consumer.is_empty() || consumer.contains('/') {
            return Err(invalid());
        }
        Ok(ConsumerArn {
            stream,
            consumer: consumer.to_string(),
            created_s,
        })
    }

    fn consumer_not_found(&self, stream: &str, consumer: &str) -> StreamsError {
        StreamsError::ResourceNotFound(format!(
            "Consumer {consumer} under stream {stream} not found for account {}.",
            self.account()
        ))
    }

    /// Finds (stream, consumer) from ConsumerARN, or StreamARN + ConsumerName.
    pub(crate) fn consumer_of(&self, m: &Meta, input: &Value) -> Result<(String, Consumer)> {
        let (stream, name, created_s) = match (
            input.str("ConsumerARN"),
            input.str("StreamARN"),
            input.str("ConsumerName"),
        ) {
            (Some(arn), _, _) => {
                let a = self.parse_consumer_arn(arn)?;
                (a.stream, a.consumer, Some(a.created_s))
            }
            (None, Some(stream_arn), Some(name)) => {
                (self.name_from_arn(stream_arn)?, name.to_string(), None)
            }
            _ => {
                return Err(StreamsError::InvalidArgument(
                    "Either ConsumerARN or both StreamARN and ConsumerName must be provided."
                        .into(),
                ));
            }
        };
        let s = m
            .streams
            .get(&stream)
            .ok_or_else(|| self.not_found(&stream))?;
        let now = now_ms();
        match s.consumers.get(&name) {
            Some(c) if !c.is_gone(now) && created_s.is_none_or(|t| t == c.created_ms / 1000) => {
                Ok((stream, c.clone()))
            }
            _ => Err(self.consumer_not_found(&stream, &name)),
        }
    }

    fn consumer_value(&self, stream: &str, c: &Consumer, with_stream: bool) -> Value {
        let mut v = Value::map()
            .with("ConsumerName", c.name.as_str())
            .with("ConsumerARN", self.consumer_arn(stream, c))
            .with("ConsumerStatus", c.effective_status().as_str())
            .with("ConsumerCreationTimestamp", Value::Timestamp(c.created_ms));
        if with_stream {
            v.set("StreamARN", self.stream_arn(stream));
        }
        v
    }

    pub(crate) fn register_stream_consumer(&self, input: &Value) -> Result<Value> {
        let stream = self.name_from_arn(input.str("StreamARN").unwrap_or_default())?;
        let name = input.str("ConsumerName").unwrap_or_default().to_string();
        let tags = input_tags(input);
        let mut m = self.write();
        let now = now_ms();
        let creating: usize = m
            .streams
            .values()
            .flat_map(|s| s.consumers.values())
            .filter(|c| c.effective_status() == Status::Creating)
            .count();
        let s = m
            .streams
            .get_mut(&stream)
            .ok_or_else(|| self.not_found(&stream))?;
        if !matches!(effective_status(s), Status::Active | Status::Updating) {
            return Err(StreamsError::ResourceInUse(format!(
                "Stream {stream} under account {} not ACTIVE, instead in state {}",
                self.account(),
                effective_status(s).as_str()
            )));
        }
        s.consumers.retain(|_, c| !c.is_gone(now));
        if s.consumers.contains_key(&name) {
            return Err(StreamsError::ResourceInUse(format!(
                "Consumer {name} under stream {stream} already exists for account {}.",
                self.account()
            )));
        }
        if s.consumers.len() >= MAX_CONSUMERS_PER_STREAM {
            return Err(StreamsError::LimitExceeded(format!(
                "Consumer limit of {MAX_CONSUMERS_PER_STREAM} for stream {stream} under account {} has been reached.",
                self.account()
            )));
        }
        if creating >= MAX_CREATING_PER_ACCOUNT {
            return Err(StreamsError::LimitExceeded(format!(
                "Rate exceeded: at most {MAX_CREATING_PER_ACCOUNT} consumers can be CREATING at once in account {}.",
                self.account()
            )));
        }
        let delay = self.config().transition.as_millis() as i64;
        let c = Consumer {
            name: name.clone(),
            created_ms: now,
            status: if delay == 0 {
                Status::Active
            } else {
                Status::Creating
            },
            status_until_ms: (delay > 0).then_some(now + delay),
            tags,
        };
        s.consumers.insert(name, c.clone());
        self.persist(&m)?;
        Ok(Value::map().with("Consumer", self.consumer_value(&stream, &c, false)))
    }

    pub(crate) fn describe_stream_consumer(&self, input: &Value) -> Result<Value> {
        let m = self.read();
        let (stream, c) = self.consumer_of(&m, input)?;
        Ok(Value::map().with(
            "ConsumerDescription",
            self.consumer_value(&stream, &c, true),
        ))
    }

    pub(crate) fn deregister_stream_consumer(&self, input: &Value) -> Result<Value> {
        let mut m = self.write();
        let (stream, c) = self.consumer_of(&m, input)?;
        if c.status == Status::Deleting {
            return Err(self.consumer_not_found(&stream, &c.name));
        }
        let delay = self.config().transition.as_millis() as i64;
        let s = m.streams.get_mut(&stream).expect("found above");
        if delay == 0 {
            s.consumers.remove(&c.name);
        } else if let Some(c) = s.consumers.get_mut(&c.name) {
            c.status = Status::Deleting;
            c.status_until_ms = Some(now_ms() + delay);
        }
        self.persist(&m)?;
        drop(m);
        self.end_subscriptions_of(&self.consumer_arn(&stream, &c));
        Ok(Value::Null)
    }

    pub(crate) fn list_stream_consumers(&self, input: &Value) -> Result<Value> {
        let (stream, after) = match input.str("NextToken") {
            Some(t) => {
                let (cursor, _) = self.open_page_token(t, "ListStreamConsumers")?;
                let (s, a) = cursor.split_once('\t').unwrap_or((cursor.as_str(), ""));
                (s.to_string(), Some(a.to_string()))
            }
            None => (
                self.name_from_arn(input.str("StreamARN").unwrap_or_default())?,
                None,
            ),
        };
        let limit = input.i64("MaxResults").unwrap_or(100).clamp(1, 100) as usize;
        let m = self.read();
        let s = m
            .streams
            .get(&stream)
            .ok_or_else(|| self.not_found(&stream))?;
        if let Some(ts) = input.timestamp("StreamCreationTimestamp")
            && ts / 1000 != s.created_ms / 1000
        {
            return Err(self.not_found(&stream));
        }
        let now = now_ms();
        let all: Vec<&Consumer> = s
            .consumers
            .values()
            .filter(|c| !c.is_gone(now))
            .filter(|c| after.as_deref().is_none_or(|a| c.name.as_str() > a))
            .collect();
        let has_more = all.len() > limit;
        let page: Vec<&Consumer> = all.into_iter().take(limit).collect();
        let list: Vec<Value> = page
            .iter()
            .map(|c| self.consumer_value(&stream, c, false))
            .collect();
        let mut out = Value::map().with("Consumers", list);
        if has_more {
            let last = page.last().map(|c| c.name.clone()).unwrap_or_default();
            out.set(
                "NextToken",
                self.page_token("ListStreamConsumers", &format!("{stream}\t{last}")),
            );
        }
        Ok(out)
    }

    /// Live consumers of a stream (for ConsumerCount and DeleteStream).
    pub(crate) fn consumer_count(s: &crate::meta::Stream) -> usize {
        let now = now_ms();
        s.consumers.values().filter(|c| !c.is_gone(now)).count()
    }
}
