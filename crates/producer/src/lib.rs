//! `eddy-producer`: what the Kinesis Producer Library does, in Rust, for
//! Eddy and AWS Kinesis alike.
//!
//! [`Producer::send`] takes a user record and returns, once there is room
//! under the backpressure bounds, a [`PendingRecord`]: a future of the
//! record's fate (shard, sequence number, sub-sequence number when it was
//! aggregated) or of the final error after retries. Behind it one dispatcher
//! task per producer routes records to shards with a shard map from
//! ListShards, packs them into KPL aggregates (never mixing shards) and
//! PutRecords calls (≤ 500 records, ≤ 5 MiB), paces each shard with a token
//! bucket, and retries with backoff and jitter until the record's deadline.
//!
//! Modules:
//! - [`aggregation`]: the KPL wire format, encoder and deaggregator.
//! - [`shard_map`]: hash keys → open shards of a stream.
//! - [`client`]: the two Kinesis calls the producer makes, behind a trait
//!   (the AWS SDK in production, fakes in tests).
//! - [`config`]: every limit and default.
//! - [`error`]: error enums.
//! - `limiter`: per-shard token buckets.
//! - `dispatcher`: the task that owns buffers, batching, retries.
//! - [`producer`]: the public handle.
//! - [`metrics`](mod@metrics): metric names.

pub mod aggregation;
pub mod client;
mod completion;
pub mod config;
mod dispatcher;
pub mod error;
mod limiter;
pub mod metrics;
pub mod producer;
pub mod shard_map;

pub use aggregation::{DeaggregationError, deaggregate, deaggregate_in_range};
pub use client::{KinesisApi, SdkClient};
pub use config::ProducerConfig;
pub use error::{ClientError, PutError, SendError};
pub use producer::{PendingRecord, Producer, PutResult, Stats};

/// The 128-bit hash key Kinesis derives from a partition key.
pub use eddy_md5x::hash_key;

#[cfg(test)]
mod tests {
    #[test]
    fn hash_key_is_md5_big_endian() {
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(super::hash_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
    }
}
