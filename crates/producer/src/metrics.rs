//! Metric names, recorded through the `metrics` facade: install any
//! recorder (e.g. a Prometheus exporter) to export them. Counters end in
//! `_total`; all carry a `stream` label.

/// User records that were put successfully.
pub const USER_RECORDS_PUT: &str = "eddy_producer_user_records_put_total";
/// Kinesis records (aggregates count once) that were put successfully.
pub const KINESIS_RECORDS_PUT: &str = "eddy_producer_kinesis_records_put_total";
/// Bytes of user data put successfully.
pub const USER_BYTES_PUT: &str = "eddy_producer_user_bytes_put_total";
/// PutRecords calls made.
pub const REQUESTS: &str = "eddy_producer_put_records_requests_total";
/// User records sent again after a failed attempt.
pub const RETRIES: &str = "eddy_producer_retries_total";
/// Kinesis records refused with ProvisionedThroughputExceeded (or a
/// throttled call).
pub const THROTTLES: &str = "eddy_producer_throttles_total";
/// User records that finally failed, labelled by `kind`
/// (`expired`, `rejected`, `shutdown`).
pub const ERRORS: &str = "eddy_producer_errors_total";
/// Seconds from `send` until the record's first PutRecords call.
pub const BUFFERING_TIME: &str = "eddy_producer_buffering_time_seconds";
/// Shard map refreshes (ListShards).
pub const SHARD_MAP_REFRESHES: &str = "eddy_producer_shard_map_refreshes_total";
