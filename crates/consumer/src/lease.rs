//! Leases: the KCL's lease item, the store interface with its conditional
//! updates, and an in-memory store with the same conditions (for tests and
//! for a single worker that needs no shared table, like plain `eddy tail`).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

/// Where a shard's processing stands: a sentinel or a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    TrimHorizon,
    Latest,
    AtTimestamp,
    /// The shard was read to its end and every record processed.
    ShardEnd,
    /// The last processed user record: sequence number and sub-sequence
    /// number (0 for a record that was not aggregated).
    Sequence {
        sequence: String,
        sub_sequence: u64,
    },
}

impl Checkpoint {
    pub fn at(sequence: impl Into<String>, sub_sequence: u64) -> Checkpoint {
        Checkpoint::Sequence {
            sequence: sequence.into(),
            sub_sequence,
        }
    }

    /// The `checkpoint` attribute's text.
    pub fn as_attribute(&self) -> &str {
        match self {
            Checkpoint::TrimHorizon => "TRIM_HORIZON",
            Checkpoint::Latest => "LATEST",
            Checkpoint::AtTimestamp => "AT_TIMESTAMP",
            Checkpoint::ShardEnd => "SHARD_END",
            Checkpoint::Sequence { sequence, .. } => sequence,
        }
    }

    /// The `checkpointSubSequenceNumber` attribute.
    pub fn sub_sequence(&self) -> u64 {
        match self {
            Checkpoint::Sequence { sub_sequence, .. } => *sub_sequence,
            _ => 0,
        }
    }

    pub fn from_attributes(checkpoint: &str, sub_sequence: u64) -> Checkpoint {
        match checkpoint {
            "TRIM_HORIZON" => Checkpoint::TrimHorizon,
            "LATEST" => Checkpoint::Latest,
            "AT_TIMESTAMP" => Checkpoint::AtTimestamp,
            "SHARD_END" => Checkpoint::ShardEnd,
            s => Checkpoint::at(s, sub_sequence),
        }
    }

    pub fn is_shard_end(&self) -> bool {
        matches!(self, Checkpoint::ShardEnd)
    }
}

/// Orders decimal sequence numbers (up to 128 bits and beyond) without parsing.
pub fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// True when user record (`sequence`, `sub_sequence`) is at or before `cp`,
/// i.e. was already processed when `cp` was written.
pub fn covered_by(cp: &Checkpoint, sequence: &str, sub_sequence: u64) -> bool {
    match cp {
        Checkpoint::Sequence {
            sequence: s,
            sub_sequence: ss,
        } => match compare_sequence_numbers(sequence, s) {
            Ordering::Less => true,
            Ordering::Equal => sub_sequence <= *ss,
            Ordering::Greater => false,
        },
        Checkpoint::ShardEnd => true,
        _ => false,
    }
}

/// One lease item, with the KCL's attribute names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// `leaseKey`: the shard id.
    pub lease_key: String,
    /// `leaseOwner`: the worker id holding the lease, if any.
    pub lease_owner: Option<String>,
    /// `leaseCounter`: bumped by every change; the condition of every update.
    pub lease_counter: u64,
    /// `checkpoint` + `checkpointSubSequenceNumber`.
    pub checkpoint: Checkpoint,
    /// `ownerSwitchesSinceCheckpoint`.
    pub owner_switches_since_checkpoint: u64,
    /// `parentShardId` (SS).
    pub parent_shard_ids: Vec<String>,
    /// `startingHashKey` / `endingHashKey` of the shard.
    pub starting_hash_key: Option<String>,
    pub ending_hash_key: Option<String>,
    /// `checkpointOwner` (graceful hand-off in KCL 3; cleared on take).
    pub checkpoint_owner: Option<String>,
}

impl Lease {
    pub fn new(shard_id: impl Into<String>, checkpoint: Checkpoint) -> Lease {
        Lease {
            lease_key: shard_id.into(),
            lease_owner: None,
            lease_counter: 0,
            checkpoint,
            owner_switches_since_checkpoint: 0,
            parent_shard_ids: Vec::new(),
            starting_hash_key: None,
            ending_hash_key: None,
            checkpoint_owner: None,
        }
    }

    /// The shard's hash key range (the whole space when unknown).
    pub fn hash_range(&self) -> (u128, u128) {
        let start = self
            .starting_hash_key
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let end = self
            .ending_hash_key
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(u128::MAX);
        (start, end)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The conditional check failed: someone else changed the lease (for the
    /// holder, the lease is lost).
    #[error("conditional check failed on lease {0}")]
    ConditionFailed(String),
    #[error("lease table: {0}")]
    Store(String),
}

impl LeaseError {
    pub fn is_condition_failed(&self) -> bool {
        matches!(self, LeaseError::ConditionFailed(_))
    }
}

/// The lease table operations, each with the KCL's condition. Every update
/// that succeeds returns the lease as now stored.
pub trait LeaseStore: Send + Sync + 'static {
    /// Creates the table if it does not exist and waits until it is usable.
    fn ensure_table(&self) -> impl Future<Output = Result<(), LeaseError>> + Send;
    /// All leases (consistent scan, every page).
    fn list_leases(&self) -> impl Future<Output = Result<Vec<Lease>, LeaseError>> + Send;
    /// One lease (consistent read).
    fn get_lease(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Lease>, LeaseError>> + Send;
    /// PutItem with `Expected{leaseKey: Exists=false}`. `Ok(false)` when it
    /// already existed.
    fn create_lease_if_not_exists(
        &self,
        lease: &Lease,
    ) -> impl Future<Output = Result<bool, LeaseError>> + Send;
    /// Renew: `Expected{leaseCounter=N, leaseOwner=owner}`, PUT leaseCounter N+1.
    fn renew_lease(&self, lease: &Lease) -> impl Future<Output = Result<Lease, LeaseError>> + Send;
    /// Take: `Expected{leaseCounter=N}`, PUT leaseOwner and leaseCounter N+1,
    /// ADD ownerSwitchesSinceCheckpoint 1, DELETE checkpointOwner.
    fn take_lease(
        &self,
        lease: &Lease,
        owner: &str,
    ) -> impl Future<Output = Result<Lease, LeaseError>> + Send;
    /// Graceful steal (KCL 3's hand-off): `Expected{leaseCounter=N,
    /// leaseOwner=current}`, PUT leaseOwner=`new_owner`,
    /// checkpointOwner=current and leaseCounter N+1. The current owner may
    /// still checkpoint (as checkpointOwner) and then completes the hand-off.
    fn request_handoff(
        &self,
        lease: &Lease,
        new_owner: &str,
    ) -> impl Future<Output = Result<Lease, LeaseError>> + Send;
    /// Ends a hand-off: `Expected{leaseCounter=N, checkpointOwner=owner}`,
    /// DELETE checkpointOwner, PUT leaseCounter N+1.
    fn complete_handoff(
        &self,
        lease: &Lease,
    ) -> impl Future<Output = Result<Lease, LeaseError>> + Send;
    /// Evict (release): `Expected{leaseOwner=owner}`, DELETE leaseOwner, PUT
    /// leaseCounter N+1.
    fn evict_lease(&self, lease: &Lease) -> impl Future<Output = Result<Lease, LeaseError>> + Send;
    /// Checkpoint: `Expected{leaseCounter=N, leaseOwner=owner,
    /// checkpointOwner=as seen (absent, or the owner handing off)}`, PUT
    /// checkpoint, checkpointSubSequenceNumber, ownerSwitchesSinceCheckpoint=0
    /// and leaseCounter N+1.
    fn update_checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<Lease, LeaseError>> + Send;
}

/// In-memory lease table with the same conditions as the DynamoDB one.
#[derive(Default)]
pub struct MemoryLeaseStore {
    leases: Mutex<HashMap<String, Lease>>,
}

impl MemoryLeaseStore {
    pub fn new() -> MemoryLeaseStore {
        MemoryLeaseStore::default()
    }

    fn update(
        &self,
        key: &str,
        check: impl FnOnce(&Lease) -> bool,
        change: impl FnOnce(&mut Lease),
    ) -> Result<Lease, LeaseError> {
        let mut leases = self.leases.lock().unwrap();
        match leases.get_mut(key) {
            Some(l) if check(l) => {
                change(l);
                Ok(l.clone())
            }
            _ => Err(LeaseError::ConditionFailed(key.to_string())),
        }
    }
}

impl LeaseStore for MemoryLeaseStore {
    async fn ensure_table(&self) -> Result<(), LeaseError> {
        Ok(())
    }

    async fn list_leases(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut v: Vec<Lease> = self.leases.lock().unwrap().values().cloned().collect();
        v.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
        Ok(v)
    }

    async fn get_lease(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        Ok(self.leases.lock().unwrap().get(key).cloned())
    }

    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let mut leases = self.leases.lock().unwrap();
        if leases.contains_key(&lease.lease_key) {
            return Ok(false);
        }
        leases.insert(lease.lease_key.clone(), lease.clone());
        Ok(true)
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.update(
            &lease.lease_key,
            |l| l.lease_counter == lease.lease_counter && l.lease_owner == lease.lease_owner,
            |l| l.lease_counter += 1,
        )
    }

    async fn take_lease(&self, lease: &Lease, owner: &str) -> Result<Lease, LeaseError> {
        self.update(
            &lease.lease_key,
            |l| l.lease_counter == lease.lease_counter,
            |l| {
                l.lease_owner = Some(owner.to_string());
                l.lease_counter += 1;
                l.owner_switches_since_checkpoint += 1;
                l.checkpoint_owner = None;
            },
        )
    }

    async fn request_handoff(&self, lease: &Lease, new_owner: &str) -> Result<Lease, LeaseError> {
        self.update(
            &lease.lease_key,
            |l| l.lease_counter == lease.lease_counter && l.lease_owner == lease.lease_owner,
            |l| {
                l.checkpoint_owner = l.lease_owner.take();
                l.lease_owner = Some(new_owner.to_string());
                l.lease_counter += 1;
                l.owner_switches_since_checkpoint += 1;
            },
        )
    }

    async fn complete_handoff(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.update(
            &lease.lease_key,
            |l| {
                l.lease_counter == lease.lease_counter
                    && lease.checkpoint_owner.is_some()
                    && l.checkpoint_owner == lease.checkpoint_owner
            },
            |l| {
                l.checkpoint_owner = None;
                l.lease_counter += 1;
            },
        )
    }

    async fn evict_lease(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.update(
            &lease.lease_key,
            |l| l.lease_owner == lease.lease_owner,
            |l| {
                l.lease_owner = None;
                l.lease_counter += 1;
            },
        )
    }

    async fn update_checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> Result<Lease, LeaseError> {
        self.update(
            &lease.lease_key,
            |l| {
                l.lease_counter == lease.lease_counter
                    && l.lease_owner == lease.lease_owner
                    && l.checkpoint_owner == lease.checkpoint_owner
            },
            |l| {
                l.checkpoint = checkpoint.clone();
                l.owner_switches_since_checkpoint = 0;
                l.lease_counter += 1;
            },
        )
    }
}
