//! `eddy-consumer`: what the Kinesis Client Library does, in Rust.
//!
//! A [`Worker`] shares a stream's shards with the other workers of its
//! application through a lease table (the KCL's schema and conditional
//! updates, over the DynamoDB API: [`DynamoLeaseStore`]), runs one
//! [`RecordProcessor`] per held shard, and checkpoints where the processor
//! says (sequence + sub-sequence number), so a restart resumes after the last
//! checkpoint. Children of a resharded shard are processed only after all
//! their parents checkpointed SHARD_END. Records are read by polling
//! (GetRecords) or enhanced fan-out (SubscribeToShard); KPL aggregates are
//! split into user records, dropping those outside the shard's hash range.
//!
//! Metrics (through the `metrics` facade): `eddy_consumer_millis_behind_latest`
//! (gauge per shard), `eddy_consumer_records_processed` (counter per shard),
//! `eddy_consumer_leases_held` (gauge), `eddy_consumer_checkpoint_failures`
//! (counter per shard), `eddy_consumer_read_throttles` (counter per shard:
//! throttled reads, each followed by an exponential back-off).

pub mod coordinator;
pub mod dynamo;
pub mod lease;
pub mod processor;
pub mod retrieval;
pub mod worker;

pub use coordinator::{LeaseCoordinator, select_leases_to_take};
pub use dynamo::DynamoLeaseStore;
pub use lease::{Checkpoint, Lease, LeaseError, LeaseStore, MemoryLeaseStore};
pub use processor::{
    CheckpointError, Checkpointer, InitializeInput, ProcessRecordsInput, RecordProcessor,
    UserRecord,
};
pub use retrieval::Position;
pub use worker::{ConsumerConfig, ConsumerError, InitialPosition, RetrievalMode, Worker};
