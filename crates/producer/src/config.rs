//! Every limit and default of the producer, in one place. Defaults follow
//! the KPL's where it has one.

use std::time::Duration;

/// Kinesis limits (AWS's; Eddy enforces the same).
pub mod limits {
    /// Records per PutRecords call.
    pub const MAX_RECORDS_PER_REQUEST: usize = 500;
    /// Bytes (data + partition keys) per PutRecords call.
    pub const MAX_BYTES_PER_REQUEST: usize = 5 * 1024 * 1024;
    /// Bytes (data + partition key) per Kinesis record.
    pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
    /// Partition key length in Unicode characters.
    pub const MAX_PARTITION_KEY_CHARS: usize = 256;
    /// Per-shard write limits per second.
    pub const SHARD_RECORDS_PER_SEC: f64 = 1000.0;
    pub const SHARD_BYTES_PER_SEC: f64 = 1024.0 * 1024.0;
}

/// How the producer batches, paces, retries and bounds memory.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Pack user records into KPL aggregates.
    pub aggregation: bool,
    /// Largest aggregated record, in bytes (KPL: AggregationMaxSize).
    pub aggregation_max_bytes: usize,
    /// Most user records per aggregate (KPL: AggregationMaxCount).
    pub aggregation_max_count: usize,
    /// Longest a record waits in buffers before it is sent
    /// (KPL: RecordMaxBufferedTime).
    pub max_buffered_time: Duration,
    /// Records per PutRecords call (≤ 500).
    pub max_records_per_request: usize,
    /// Bytes per PutRecords call (≤ 5 MiB).
    pub max_bytes_per_request: usize,
    /// Concurrent PutRecords calls (KPL: MaxConnections).
    pub max_inflight_requests: usize,
    /// Deadline of each record from `send`; past it the record fails with
    /// [`crate::PutError::Expired`] (KPL: RecordTtl).
    pub record_ttl: Duration,
    /// Per-shard pacing, as a percentage of the shard limits (KPL:
    /// RateLimit). `None` disables pacing.
    pub rate_limit_percent: Option<f64>,
    /// First retry delay; doubles each attempt up to `retry_max_delay`, with
    /// jitter.
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    /// Keep records of a shard (and so of each partition key) in order: at
    /// most one Kinesis record per shard in flight; a failed one is retried
    /// before anything behind it.
    pub ordered: bool,
    /// Backpressure: most user records accepted and not yet completed.
    pub max_outstanding_records: usize,
    /// Backpressure: most bytes of user data accepted and not yet completed.
    pub max_outstanding_bytes: usize,
    /// When the bounds are reached, fail `send` with
    /// [`crate::SendError::Full`] instead of waiting.
    pub fail_fast: bool,
    /// Refresh shard maps at least this often even without a misrouted
    /// result.
    pub shard_map_ttl: Duration,
    /// Timeout of each PutRecords / ListShards call.
    pub request_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            aggregation: false,
            aggregation_max_bytes: 51_200,
            aggregation_max_count: 4_294_967_295,
            max_buffered_time: Duration::from_millis(100),
            max_records_per_request: limits::MAX_RECORDS_PER_REQUEST,
            max_bytes_per_request: limits::MAX_BYTES_PER_REQUEST,
            max_inflight_requests: 24,
            record_ttl: Duration::from_secs(30),
            rate_limit_percent: Some(150.0),
            retry_base_delay: Duration::from_millis(50),
            retry_max_delay: Duration::from_secs(2),
            ordered: false,
            max_outstanding_records: 200_000,
            max_outstanding_bytes: 512 * 1024 * 1024,
            fail_fast: false,
            shard_map_ttl: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl ProducerConfig {
    /// Clamps values to the Kinesis limits and to sane minimums.
    pub(crate) fn normalized(mut self) -> Self {
        self.max_records_per_request = self
            .max_records_per_request
            .clamp(1, limits::MAX_RECORDS_PER_REQUEST);
        self.max_bytes_per_request = self
            .max_bytes_per_request
            .clamp(1, limits::MAX_BYTES_PER_REQUEST);
        self.aggregation_max_bytes = self
            .aggregation_max_bytes
            .clamp(64, limits::MAX_RECORD_BYTES);
        self.aggregation_max_count = self.aggregation_max_count.max(1);
        self.max_inflight_requests = self.max_inflight_requests.max(1);
        self.max_outstanding_records = self
            .max_outstanding_records
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        self.max_outstanding_bytes = self
            .max_outstanding_bytes
            .clamp(limits::MAX_RECORD_BYTES, u32::MAX as usize);
        self
    }
}
