//! What the user implements (a record processor) and what it is handed: user
//! records and a checkpointer bound to the shard's lease.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::Mutex;

use crate::lease::{Checkpoint, Lease, LeaseError, LeaseStore};

/// One user record: a Kinesis record, or one record of a KPL aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub shard_id: String,
    pub sequence_number: String,
    /// Index within a KPL aggregate; `None` for a plain record.
    pub sub_sequence_number: Option<u64>,
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Bytes,
    pub approximate_arrival_timestamp: Option<SystemTime>,
}

impl UserRecord {
    /// The position a checkpoint at this record stores.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint::at(
            self.sequence_number.clone(),
            self.sub_sequence_number.unwrap_or(0),
        )
    }
}

/// Handed to [`RecordProcessor::initialize`].
#[derive(Debug, Clone)]
pub struct InitializeInput {
    pub shard_id: String,
    /// The checkpoint processing starts after.
    pub checkpoint: Checkpoint,
}

/// One batch for [`RecordProcessor::process_records`].
#[derive(Debug, Clone)]
pub struct ProcessRecordsInput {
    pub shard_id: String,
    pub records: Vec<UserRecord>,
    pub millis_behind_latest: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Another worker holds the lease now: stop processing this shard.
    #[error("lease for shard {0} was lost")]
    LeaseLost(String),
    #[error("checkpoint for shard {shard}: {message}")]
    Failed { shard: String, message: String },
    #[error("SHARD_END may only be checkpointed when the shard has ended")]
    NotAtShardEnd,
    #[error("nothing to checkpoint yet")]
    NothingToCheckpoint,
}

/// The state a held lease shares between the renewer and the checkpointer:
/// both update the item under its counter, so they take turns.
pub(crate) struct HeldLease<S> {
    pub lease: Mutex<Lease>,
    pub store: Arc<S>,
    pub worker_id: String,
    /// Another worker asked for this lease (graceful steal): checkpoint once
    /// more, then hand it over.
    pub handing_off: AtomicBool,
    /// We stole this lease: wait for the previous owner to hand it over.
    pub awaiting_handoff: AtomicBool,
}

/// What a failed conditional update turned out to mean.
pub(crate) enum Reread {
    /// Still ours (someone handing it to us changed the counter): retry.
    Mine,
    /// Another worker asked for it and we may still checkpoint.
    HandingOff,
    Lost,
}

impl<S: LeaseStore> HeldLease<S> {
    pub fn new(lease: Lease, store: Arc<S>, worker_id: &str) -> HeldLease<S> {
        HeldLease {
            lease: Mutex::new(lease),
            store,
            worker_id: worker_id.to_string(),
            handing_off: AtomicBool::new(false),
            awaiting_handoff: AtomicBool::new(false),
        }
    }

    pub fn is_handing_off(&self) -> bool {
        self.handing_off.load(Ordering::SeqCst)
    }

    /// After a failed condition: reads the item and adopts it as our view
    /// when it is still ours or being handed off by us.
    pub async fn reread(&self, lease: &mut Lease) -> Reread {
        match self.store.get_lease(&lease.lease_key).await {
            Ok(Some(l)) if l.lease_owner.as_deref() == Some(&self.worker_id) => {
                *lease = l;
                Reread::Mine
            }
            Ok(Some(l)) if l.checkpoint_owner.as_deref() == Some(&self.worker_id) => {
                *lease = l;
                self.handing_off.store(true, Ordering::SeqCst);
                Reread::HandingOff
            }
            _ => Reread::Lost,
        }
    }

    pub async fn checkpoint(&self, cp: Checkpoint) -> Result<(), CheckpointError> {
        let mut lease = self.lease.lock().await;
        let mut result = self.store.update_checkpoint(&lease, &cp).await;
        if let Err(LeaseError::ConditionFailed(_)) = &result
            && !matches!(self.reread(&mut lease).await, Reread::Lost)
        {
            result = self.store.update_checkpoint(&lease, &cp).await;
        }
        match result {
            Ok(new) => {
                *lease = new;
                Ok(())
            }
            Err(e) => {
                metrics::counter!("eddy_consumer_checkpoint_failures", "shard" => lease.lease_key.clone())
                    .increment(1);
                match e {
                    LeaseError::ConditionFailed(k) => Err(CheckpointError::LeaseLost(k)),
                    LeaseError::Store(m) => Err(CheckpointError::Failed {
                        shard: lease.lease_key.clone(),
                        message: m,
                    }),
                }
            }
        }
    }

    /// Ends our side of a hand-off: the new owner may start.
    pub async fn complete_handoff(&self) {
        let mut lease = self.lease.lock().await;
        match self.store.complete_handoff(&lease).await {
            Ok(new) => *lease = new,
            Err(e) => tracing::debug!(shard = %lease.lease_key, "completing hand-off: {e}"),
        }
    }
}

/// Writes checkpoints for one shard. Checkpoints are conditional on the
/// lease: once another worker took it, they fail with
/// [`CheckpointError::LeaseLost`].
pub struct Checkpointer {
    pub(crate) shard_id: String,
    pub(crate) write: Box<dyn CheckpointWriter>,
    /// The last record handed to the processor.
    pub(crate) last_delivered: Option<Checkpoint>,
    pub(crate) at_shard_end: bool,
    pub(crate) last_written: Option<Checkpoint>,
    /// A checkpoint found the lease taken by another worker.
    pub(crate) lost: bool,
}

pub(crate) trait CheckpointWriter: Send + Sync {
    fn write(
        &self,
        cp: Checkpoint,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), CheckpointError>> + Send + '_>>;
}

impl<S: LeaseStore> CheckpointWriter for Arc<HeldLease<S>> {
    fn write(
        &self,
        cp: Checkpoint,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), CheckpointError>> + Send + '_>> {
        Box::pin(self.checkpoint(cp))
    }
}

impl Checkpointer {
    pub fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// Checkpoints at the last record delivered so far.
    pub async fn checkpoint(&mut self) -> Result<(), CheckpointError> {
        let cp = self
            .last_delivered
            .clone()
            .ok_or(CheckpointError::NothingToCheckpoint)?;
        self.write(cp).await
    }

    /// Checkpoints at a given record (everything up to it is processed).
    pub async fn checkpoint_at(&mut self, record: &UserRecord) -> Result<(), CheckpointError> {
        self.write(record.checkpoint()).await
    }

    /// Checkpoints SHARD_END: only from [`RecordProcessor::shard_ended`].
    pub async fn checkpoint_shard_end(&mut self) -> Result<(), CheckpointError> {
        if !self.at_shard_end {
            return Err(CheckpointError::NotAtShardEnd);
        }
        self.write(Checkpoint::ShardEnd).await
    }

    async fn write(&mut self, cp: Checkpoint) -> Result<(), CheckpointError> {
        if self.last_written.as_ref() == Some(&cp) {
            return Ok(());
        }
        match self.write.write(cp.clone()).await {
            Ok(()) => {
                self.last_written = Some(cp);
                Ok(())
            }
            Err(e) => {
                if matches!(e, CheckpointError::LeaseLost(_)) {
                    self.lost = true;
                }
                Err(e)
            }
        }
    }
}

/// The user's code for one shard. One instance per shard lease; methods are
/// called in order: `initialize`, `process_records`*, then exactly one of
/// `shard_ended`, `lease_lost` or `shutdown_requested`.
pub trait RecordProcessor: Send + 'static {
    fn initialize(&mut self, input: InitializeInput) -> impl Future<Output = ()> + Send;

    fn process_records(
        &mut self,
        input: ProcessRecordsInput,
        checkpointer: &mut Checkpointer,
    ) -> impl Future<Output = ()> + Send;

    /// Another worker took the lease: checkpointing is no longer possible.
    fn lease_lost(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The shard was read to its end; must checkpoint SHARD_END (the default
    /// does) or the children are never processed.
    fn shard_ended(&mut self, checkpointer: &mut Checkpointer) -> impl Future<Output = ()> + Send {
        async move {
            if let Err(e) = checkpointer.checkpoint_shard_end().await {
                tracing::warn!("checkpointing SHARD_END: {e}");
            }
        }
    }

    /// The worker is shutting down: the last chance to checkpoint (the
    /// default checkpoints the last delivered record).
    fn shutdown_requested(
        &mut self,
        checkpointer: &mut Checkpointer,
    ) -> impl Future<Output = ()> + Send {
        async move {
            match checkpointer.checkpoint().await {
                Ok(()) | Err(CheckpointError::NothingToCheckpoint) => {}
                Err(e) => tracing::warn!("final checkpoint: {e}"),
            }
        }
    }
}
