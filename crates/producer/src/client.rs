//! The two Kinesis calls the producer makes — PutRecords and ListShards —
//! behind [`KinesisApi`], so the dispatcher can be driven by fakes in tests.
//! [`SdkClient`] implements it with the official `aws-sdk-kinesis`, built
//! from the normal credential and region chain, with an optional endpoint
//! override (Eddy, LocalStack...).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use bytes::Bytes;

use crate::error::ClientError;
use crate::shard_map::ShardInfo;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One record of a PutRecords call.
#[derive(Debug, Clone)]
pub struct PutEntry {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Bytes,
}

/// Per-record answer of a PutRecords call, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    Ok {
        shard_id: String,
        sequence_number: String,
    },
    Failed {
        code: String,
        message: String,
    },
}

/// What the producer needs from Kinesis.
pub trait KinesisApi: Send + Sync + 'static {
    fn put_records<'a>(
        &'a self,
        stream: &'a str,
        entries: Vec<PutEntry>,
    ) -> BoxFuture<'a, Result<Vec<EntryResult>, ClientError>>;

    /// All shards of the stream (open and closed), every page.
    fn list_shards<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ShardInfo>, ClientError>>;
}

/// [`KinesisApi`] over `aws_sdk_kinesis::Client`.
#[derive(Clone, Debug)]
pub struct SdkClient {
    client: aws_sdk_kinesis::Client,
}

impl SdkClient {
    pub fn new(client: aws_sdk_kinesis::Client) -> SdkClient {
        SdkClient { client }
    }

    /// Loads credentials and region the usual way (environment, profile,
    /// IMDS...), optionally pointing at another endpoint. Without a region
    /// anywhere, `us-east-1` is assumed (Eddy does not care).
    pub async fn from_env(endpoint: Option<&str>) -> SdkClient {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(url) = endpoint {
            loader = loader.endpoint_url(url);
        }
        let shared = loader.load().await;
        let mut conf = aws_sdk_kinesis::config::Builder::from(&shared);
        if shared.region().is_none() {
            conf = conf.region(aws_sdk_kinesis::config::Region::new("us-east-1"));
        }
        SdkClient::new(aws_sdk_kinesis::Client::from_conf(conf.build()))
    }

    pub fn inner(&self) -> &aws_sdk_kinesis::Client {
        &self.client
    }
}

fn classify<E, R>(e: SdkError<E, R>) -> ClientError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match &e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            ClientError::from_code(err.code().unwrap_or("Unknown"), err.message().unwrap_or(""))
        }
        SdkError::ConstructionFailure(_) => ClientError::Fatal {
            code: "ConstructionFailure".into(),
            message: aws_smithy_display(&e),
        },
        _ => ClientError::Transient(aws_smithy_display(&e)),
    }
}

fn aws_smithy_display<E: std::error::Error + 'static>(e: &E) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

impl KinesisApi for SdkClient {
    fn put_records<'a>(
        &'a self,
        stream: &'a str,
        entries: Vec<PutEntry>,
    ) -> BoxFuture<'a, Result<Vec<EntryResult>, ClientError>> {
        Box::pin(async move {
            let n = entries.len();
            let records: Vec<PutRecordsRequestEntry> = entries
                .into_iter()
                .map(|e| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(e.partition_key)
                        .set_explicit_hash_key(e.explicit_hash_key)
                        .data(Blob::new(Vec::from(e.data)))
                        .build()
                        .expect("partition key and data are set")
                })
                .collect();
            let out = self
                .client
                .put_records()
                .stream_name(stream)
                .set_records(Some(records))
                .send()
                .await
                .map_err(classify)?;
            let results = out.records;
            if results.len() != n {
                return Err(ClientError::Transient(format!(
                    "PutRecords answered {} results for {n} records",
                    results.len()
                )));
            }
            Ok(results
                .into_iter()
                .map(|r| match (r.shard_id, r.sequence_number) {
                    (Some(shard_id), Some(sequence_number)) => EntryResult::Ok {
                        shard_id,
                        sequence_number,
                    },
                    _ => EntryResult::Failed {
                        code: r.error_code.unwrap_or_else(|| "InternalFailure".into()),
                        message: r.error_message.unwrap_or_default(),
                    },
                })
                .collect())
        })
    }

    fn list_shards<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ShardInfo>, ClientError>> {
        Box::pin(async move {
            let mut shards = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let req = match &token {
                    Some(t) => self.client.list_shards().next_token(t),
                    None => self.client.list_shards().stream_name(stream),
                };
                let out = req.send().await.map_err(classify)?;
                for s in out.shards.unwrap_or_default() {
                    let parse = |v: &str| {
                        v.parse::<u128>()
                            .map_err(|_| ClientError::Transient(format!("bad hash key {v:?}")))
                    };
                    let range = s
                        .hash_key_range
                        .as_ref()
                        .ok_or_else(|| ClientError::Transient("shard without hash range".into()))?;
                    shards.push(ShardInfo {
                        shard_id: Arc::from(s.shard_id.as_str()),
                        start: parse(range.starting_hash_key())?,
                        end: parse(range.ending_hash_key())?,
                        open: s
                            .sequence_number_range
                            .as_ref()
                            .is_none_or(|r| r.ending_sequence_number.is_none()),
                    });
                }
                match out.next_token {
                    Some(t) if !t.is_empty() => token = Some(t),
                    _ => break,
                }
            }
            Ok(shards)
        })
    }
}
