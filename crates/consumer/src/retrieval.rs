//! Getting a shard's records: polling (GetShardIterator + GetRecords, paced
//! and backing off on throttling) or enhanced fan-out (SubscribeToShard).

use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::{
    ChildShard, Record, ShardIteratorType, StartingPosition, SubscribeToShardEventStream,
};
use tokio::time::Instant;

use crate::lease::Checkpoint;

/// Where to start reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    TrimHorizon,
    Latest,
    AtTimestamp(SystemTime),
    AtSequence(String),
    AfterSequence(String),
}

impl Position {
    pub fn from_checkpoint(cp: &Checkpoint, timestamp: Option<SystemTime>) -> Position {
        match cp {
            Checkpoint::TrimHorizon | Checkpoint::ShardEnd => Position::TrimHorizon,
            Checkpoint::Latest => Position::Latest,
            Checkpoint::AtTimestamp => match timestamp {
                Some(t) => Position::AtTimestamp(t),
                None => Position::TrimHorizon,
            },
            // At, not after: the rest of an aggregate may still be due; the
            // records up to the checkpoint are filtered out.
            Checkpoint::Sequence { sequence, .. } => Position::AtSequence(sequence.clone()),
        }
    }

    fn kind(&self) -> (ShardIteratorType, Option<String>, Option<DateTime>) {
        match self {
            Position::TrimHorizon => (ShardIteratorType::TrimHorizon, None, None),
            Position::Latest => (ShardIteratorType::Latest, None, None),
            Position::AtTimestamp(t) => (
                ShardIteratorType::AtTimestamp,
                None,
                Some(DateTime::from(*t)),
            ),
            Position::AtSequence(s) => (ShardIteratorType::AtSequenceNumber, Some(s.clone()), None),
            Position::AfterSequence(s) => (
                ShardIteratorType::AfterSequenceNumber,
                Some(s.clone()),
                None,
            ),
        }
    }
}

/// What one retrieval step produced.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<Record>,
    pub millis_behind_latest: Option<i64>,
    /// `Some` when the shard ended (closed, read to its end).
    pub end: Option<Vec<ChildShard>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    #[error("read throughput exceeded")]
    Throttled,
    #[error("{0}")]
    Other(String),
}

fn describe<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: &aws_sdk_kinesis::error::SdkError<E, R>,
) -> String {
    match e.code() {
        Some(c) => format!("{c}: {}", e.message().unwrap_or("")),
        None => format!("{e:?}"),
    }
}

pub(crate) enum Retriever {
    Polling {
        client: Client,
        stream: String,
        shard: String,
        position: Position,
        iterator: Option<String>,
        max_records: i32,
        interval: Duration,
        last_call: Option<Instant>,
    },
    FanOut {
        client: Client,
        consumer_arn: String,
        shard: String,
        position: Position,
        subscription:
            Option<Box<aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput>>,
    },
}

impl Retriever {
    /// Reads the next batch. Cancel-safe: dropping the future mid-way loses
    /// nothing (the position only advances when a batch is returned).
    pub async fn next(&mut self) -> Result<Batch, RetrievalError> {
        match self {
            Retriever::Polling {
                client,
                stream,
                shard,
                position,
                iterator,
                max_records,
                interval,
                last_call,
            } => {
                if let Some(t) = last_call {
                    tokio::time::sleep_until(*t + *interval).await;
                }
                *last_call = Some(Instant::now());
                if iterator.is_none() {
                    let (t, seq, ts) = position.kind();
                    let out = client
                        .get_shard_iterator()
                        .stream_name(stream.as_str())
                        .shard_id(shard.as_str())
                        .shard_iterator_type(t)
                        .set_starting_sequence_number(seq)
                        .set_timestamp(ts)
                        .send()
                        .await
                        .map_err(|e| classify(describe(&e)))?;
                    *iterator = out.shard_iterator;
                    if iterator.is_none() {
                        return Ok(Batch {
                            end: Some(Vec::new()),
                            ..Batch::default()
                        });
                    }
                }
                let it = iterator.clone().expect("iterator present");
                let out = match client
                    .get_records()
                    .shard_iterator(it)
                    .limit(*max_records)
                    .send()
                    .await
                {
                    Ok(o) => o,
                    Err(e) => {
                        let m = describe(&e);
                        if !m.starts_with("ProvisionedThroughputExceeded") {
                            // Start over from the last position.
                            *iterator = None;
                        }
                        return Err(classify(m));
                    }
                };
                if let Some(last) = out.records().last() {
                    *position = Position::AfterSequence(last.sequence_number().to_string());
                }
                *iterator = out.next_shard_iterator.clone();
                let end = if iterator.is_none() {
                    Some(out.child_shards().to_vec())
                } else {
                    None
                };
                Ok(Batch {
                    millis_behind_latest: out.millis_behind_latest,
                    records: out.records,
                    end,
                })
            }
            Retriever::FanOut {
                client,
                consumer_arn,
                shard,
                position,
                subscription,
            } => {
                if subscription.is_none() {
                    let (t, seq, ts) = position.kind();
                    let sp = StartingPosition::builder()
                        .r#type(t)
                        .set_sequence_number(seq)
                        .set_timestamp(ts)
                        .build()
                        .map_err(|e| RetrievalError::Other(e.to_string()))?;
                    let out = client
                        .subscribe_to_shard()
                        .consumer_arn(consumer_arn.as_str())
                        .shard_id(shard.as_str())
                        .starting_position(sp)
                        .send()
                        .await
                        .map_err(|e| classify(describe(&e)))?;
                    *subscription = Some(Box::new(out));
                }
                let sub = subscription.as_mut().expect("subscribed");
                match sub.event_stream.recv().await {
                    Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(ev))) => {
                        let cont = ev.continuation_sequence_number().to_string();
                        let end = if cont.is_empty() {
                            *subscription = None;
                            Some(ev.child_shards().to_vec())
                        } else {
                            *position = Position::AfterSequence(cont);
                            None
                        };
                        Ok(Batch {
                            millis_behind_latest: Some(ev.millis_behind_latest()),
                            records: ev.records,
                            end,
                        })
                    }
                    Ok(Some(_)) => Ok(Batch::default()),
                    Ok(None) => {
                        // The subscription ran its course: subscribe again.
                        *subscription = None;
                        Ok(Batch::default())
                    }
                    Err(e) => {
                        *subscription = None;
                        Err(RetrievalError::Other(format!("{e:?}")))
                    }
                }
            }
        }
    }
}

fn classify(message: String) -> RetrievalError {
    if message.starts_with("ProvisionedThroughputExceeded") || message.starts_with("LimitExceeded")
    {
        RetrievalError::Throttled
    } else {
        RetrievalError::Other(message)
    }
}
