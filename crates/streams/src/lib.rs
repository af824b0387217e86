//! `eddy-streams`: the Kinesis Data Streams domain.
//!
//! Owns: streams and their shards (hash ranges, lineage, open/closed),
//! sequence numbers, shard iterators, tags, settings and policies, and the
//! rules of every Data Streams operation, including AWS's semantic errors.
//! Requests arrive already decoded and validated against the service model
//! (by `eddy-wire`) as a [`Value`]; records are stored in `eddy-log`.
//!
//! Concurrency: metadata sits behind one `RwLock`. Data-plane calls take the
//! read lock only to route records or resolve an iterator and release it
//! before touching storage; control-plane calls take the write lock, change
//! the metadata, persist it (atomically, fsynced) and release it.

mod autoscale;
mod consumers;
mod control;
mod data;
pub mod error;
pub mod hashkey;
pub mod limits;
pub mod meta;
mod reshard;
pub mod seqnum;
pub mod subscribe;
pub mod token;

use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eddy_log::Log;
use eddy_wire::Value;

pub use autoscale::ScalingConfig;
pub use error::{Result, StreamsError};
use meta::{Meta, MetaStore, Status, Stream};
use token::Signer;

/// Settings of the Data Streams service.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// Directory for the metadata file (the log has its own directory).
    pub data_dir: PathBuf,
    pub region: String,
    pub account_id: String,
    /// How long streams stay CREATING / UPDATING / DELETING (0: at once).
    pub transition: Duration,
    /// Account shard limit reported by DescribeLimits and enforced.
    pub shard_limit: u32,
    pub on_demand_stream_limit: u32,
    /// Per-shard and control-plane throughput limits.
    pub limits: limits::Limits,
    /// How on-demand streams scale.
    pub scaling: autoscale::ScalingConfig,
}

impl StreamsConfig {
    pub fn new(data_dir: PathBuf) -> StreamsConfig {
        StreamsConfig {
            data_dir,
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            transition: Duration::ZERO,
            shard_limit: 20_000,
            on_demand_stream_limit: 50,
            limits: limits::Limits::default(),
            scaling: autoscale::ScalingConfig::default(),
        }
    }
}

/// The Data Streams service. Cheap to clone.
#[derive(Clone)]
pub struct Streams {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: StreamsConfig,
    log: Log,
    meta: RwLock<Meta>,
    store: MetaStore,
    signer: Signer,
    limiter: limits::Limiter,
    subscriptions: std::sync::Mutex<subscribe::Registry>,
    /// Bumped on every metadata change, so subscriptions notice a shard
    /// closing (or a stream going away) at once.
    changes: tokio::sync::watch::Sender<u64>,
    /// Per-stream gates: puts hold the read side across routing and append,
    /// reshards the write side (see `reshard.rs`).
    gates: RwLock<std::collections::HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The operations this crate serves, by wire name.
pub const OPERATIONS: &[&str] = &[
    "AddTagsToStream",
    "CreateStream",
    "DecreaseStreamRetentionPeriod",
    "DeleteResourcePolicy",
    "DeleteStream",
    "DeregisterStreamConsumer",
    "DescribeAccountSettings",
    "DescribeLimits",
    "DescribeStream",
    "DescribeStreamConsumer",
    "DescribeStreamSummary",
    "DisableEnhancedMonitoring",
    "EnableEnhancedMonitoring",
    "GetRecords",
    "GetResourcePolicy",
    "GetShardIterator",
    "IncreaseStreamRetentionPeriod",
    "ListShards",
    "ListStreamConsumers",
    "ListStreams",
    "ListTagsForResource",
    "ListTagsForStream",
    "MergeShards",
    "PutRecord",
    "PutRecords",
    "PutResourcePolicy",
    "RegisterStreamConsumer",
    "RemoveTagsFromStream",
    "SplitShard",
    "StartStreamEncryption",
    "StopStreamEncryption",
    "SubscribeToShard",
    "TagResource",
    "UntagResource",
    "UpdateAccountSettings",
    "UpdateMaxRecordSize",
    "UpdateShardCount",
    "UpdateStreamMode",
    "UpdateStreamRecordDistributionStrategy",
    "UpdateStreamWarmThroughput",
];

impl Streams {
    /// Opens the service over an opened storage engine, loading (or creating)
    /// the metadata and settling streams left in a transitional state.
    pub fn open(cfg: StreamsConfig, log: Log) -> std::io::Result<Streams> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        let store = MetaStore::new(&cfg.data_dir);
        let meta = match store.load()? {
            Some(m) => m,
            None => {
                let m = Meta::new(rand::random());
                store.save(&m)?;
                m
            }
        };
        let signer = Signer::new(meta.secret);
        let cfg_limits = cfg.limits;
        let streams = Streams {
            inner: Arc::new(Inner {
                cfg,
                log,
                meta: RwLock::new(meta),
                store,
                signer,
                gates: Default::default(),
                limiter: limits::Limiter::new(cfg_limits),
                subscriptions: Default::default(),
                changes: tokio::sync::watch::Sender::new(0),
            }),
        };
        streams.recover()?;
        Ok(streams)
    }

    fn recover(&self) -> std::io::Result<()> {
        let mut m = self.write();
        let before = m.clone();
        for g in std::mem::take(&mut m.deleted_groups) {
            if let Err(e) = self.inner.log.delete_group(g) {
                tracing::warn!(group = g, error = %e, "re-applying a stream deletion");
            }
        }
        // Transitions that were in flight when we stopped are over now.
        let names: Vec<String> = m.streams.keys().cloned().collect();
        for name in names {
            self.settle_locked(&mut m, &name, i64::MAX);
        }
        // Written only if recovery changed something (a start should not
        // cost two fsyncs for nothing).
        if *m != before {
            self.inner.store.save(&m)?;
        }
        Ok(())
    }

    pub fn config(&self) -> &StreamsConfig {
        &self.inner.cfg
    }

    pub fn log(&self) -> &Log {
        &self.inner.log
    }

    /// Runs one operation. `op` must be one of [`OPERATIONS`].
    /// The input is taken by value so that PutRecord(s) can move record data
    /// and partition keys into the log instead of copying them.
    pub async fn handle(&self, op: &str, input: Value) -> Result<Value> {
        self.admit_control(op, &input)?;
        match op {
            "PutRecord" => self.put_record(input).await,
            "PutRecords" => self.put_records(input).await,
            "GetRecords" => self.get_records(&input),
            "GetShardIterator" => self.get_shard_iterator(&input),
            "SplitShard" => self.split_shard(&input).await,
            "MergeShards" => self.merge_shards(&input).await,
            "UpdateShardCount" => self.update_shard_count(&input).await,
            _ => self.control(op, &input),
        }
    }

    /// Control-plane rate limits (LimitExceededException), per account or
    /// per stream as AWS counts them. Data-plane calls are limited per shard
    /// in `data.rs` instead.
    fn admit_control(&self, op: &str, input: &Value) -> Result<()> {
        if matches!(op, "PutRecord" | "PutRecords" | "GetRecords")
            || !self.inner.limiter.limits().enabled
        {
            return Ok(());
        }
        let stream = input.str("StreamName").map(str::to_string).or_else(|| {
            input
                .str("StreamARN")
                .and_then(|a| self.name_from_arn(a).ok())
        });
        let (rate, per_stream) = match op {
            // 5 per second per account per open shard: count it per shard.
            "GetShardIterator" => (5.0, true),
            _ => limits::CONTROL_RATES
                .iter()
                .find(|(name, _, _)| *name == op)
                .map_or((5.0, false), |&(_, r, s)| (r, s)),
        };
        let scope = match (op, per_stream, &stream) {
            ("GetShardIterator", _, Some(s)) => {
                format!("{s}/{}", input.str("ShardId").unwrap_or_default())
            }
            (_, true, Some(s)) => s.clone(),
            _ => String::new(),
        };
        if self.inner.limiter.admit_control(op, &scope, rate) {
            return Ok(());
        }
        Err(StreamsError::LimitExceeded(match stream {
            Some(s) => format!(
                "Rate exceeded for stream {s} under account {}.",
                self.account()
            ),
            None => format!("Rate exceeded for account {}.", self.account()),
        }))
    }

    /// The gate of a stream (see `reshard.rs`).
    pub(crate) fn gate(&self, name: &str) -> Arc<tokio::sync::RwLock<()>> {
        // Read-mostly: puts share the read lock; only a stream's first put
        // takes the write lock to create its gate.
        if let Some(g) = self
            .inner
            .gates
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return g.clone();
        }
        let mut gates = self.inner.gates.write().unwrap_or_else(|p| p.into_inner());
        gates.entry(name.to_string()).or_default().clone()
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Meta> {
        self.inner.meta.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Meta> {
        self.inner.meta.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Persists the metadata; called with the write lock held after a change.
    pub(crate) fn persist(&self, meta: &Meta) -> Result<()> {
        self.inner.changes.send_modify(|v| *v += 1);
        self.inner.store.save(meta).map_err(|e| {
            tracing::error!(error = %e, "persisting stream metadata");
            StreamsError::Internal(format!("Internal service failure: {e}"))
        })
    }

    pub(crate) fn account(&self) -> &str {
        &self.inner.cfg.account_id
    }

    pub(crate) fn stream_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:kinesis:{}:{}:stream/{}",
            self.inner.cfg.region, self.inner.cfg.account_id, name
        )
    }

    /// The stream named by `StreamName` and/or `StreamARN` in `input`.
    pub(crate) fn stream_name(&self, input: &Value) -> Result<String> {
        let name = input.str("StreamName");
        let arn = input.str("StreamARN");
        match (name, arn) {
            (None, None) => Err(StreamsError::InvalidArgument(
                "Either StreamName or StreamARN should be provided.".into(),
            )),
            (Some(n), None) => Ok(n.to_string()),
            (n, Some(arn)) => {
                let from_arn = self.name_from_arn(arn)?;
                if let Some(n) = n
                    && n != from_arn
                {
                    return Err(StreamsError::InvalidArgument(format!(
                        "StreamARN {arn} and StreamName {n} refer to different streams."
                    )));
                }
                Ok(from_arn)
            }
        }
    }

    /// Parses `arn:aws:kinesis:<region>:<account>:stream/<name>`; an ARN of
    /// another region or account names no stream here.
    pub(crate) fn name_from_arn(&self, arn: &str) -> Result<String> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let invalid = || StreamsError::InvalidArgument(format!("Invalid StreamARN: {arn}"));
        if parts.len() != 6 || parts[0] != "arn" || parts[2] != "kinesis" {
            return Err(invalid());
        }
        let Some(rest) = parts[5].strip_prefix("stream/") else {
            return Err(invalid());
        };
        let name = rest.split('/').next().unwrap_or_default();
        if name.is_empty() {
            return Err(invalid());
        }
        if parts[3] != self.inner.cfg.region || parts[4] != self.inner.cfg.account_id {
            return Err(StreamsError::ResourceNotFound(format!(
                "Stream {name} under account {} not found.",
                parts[4]
            )));
        }
        Ok(name.to_string())
    }

    pub(crate) fn not_found(&self, name: &str) -> StreamsError {
        StreamsError::ResourceNotFound(format!(
            "Stream {name} under account {} not found.",
            self.account()
        ))
    }

    /// Applies the end of a transitional status if it is due at `now`.
    /// Returns true if the metadata changed.
    pub(crate) fn settle_locked(&self, m: &mut Meta, name: &str, now: i64) -> bool {
        let Some(s) = m.streams.get_mut(name) else {
            return false;
        };
        let Some(until) = s.status_until_ms else {
            return false;
        };
        if until > now {
            return false;
        }
        s.status_until_ms = None;
        match s.status {
            Status::Creating | Status::Updating => s.status = Status::Active,
            Status::Deleting => {
                let group = s.group;
                m.streams.remove(name);
                m.deleted_groups.push(group);
            }
            Status::Active => {}
        }
        true
    }

    /// Puts a stream into a transitional status for the configured time.
    /// With no transition time the change is immediate (`Status::Active`, or
    /// removal for DELETING). Returns after persisting.
    pub(crate) fn begin_transition(&self, m: &mut Meta, name: &str, status: Status) -> Result<()> {
        let delay = self.inner.cfg.transition;
        if let Some(s) = m.streams.get_mut(name) {
            s.status = status;
            s.status_until_ms = Some(now_ms() + delay.as_millis() as i64);
        }
        if delay.is_zero() {
            self.settle_locked(m, name, i64::MAX);
        }
        self.persist(m)?;
        self.apply_deletions(m);
        if !delay.is_zero() {
            let this = self.clone();
            let name = name.to_string();
            let handle = tokio::runtime::Handle::try_current();
            if let Ok(h) = handle {
                h.spawn(async move {
                    tokio::time::sleep(delay).await;
                    let mut m = this.write();
                    if this.settle_locked(&mut m, &name, now_ms()) {
                        if let Err(e) = this.persist(&m) {
                            tracing::error!(error = %e, "settling stream status");
                        }
                        this.apply_deletions(&mut m);
                    }
                });
            }
        }
        Ok(())
    }

    /// Hands pending group deletions to the engine (after they were persisted).
    fn apply_deletions(&self, m: &mut Meta) {
        if m.deleted_groups.is_empty() {
            return;
        }
        let mut failed = Vec::new();
        for g in std::mem::take(&mut m.deleted_groups) {
            if let Err(e) = self.inner.log.delete_group(g) {
                tracing::warn!(group = g, error = %e, "deleting stream data; will retry at start");
                failed.push(g);
            }
        }
        if !failed.is_empty() {
            m.deleted_groups = failed;
            let _ = self.persist(m);
        }
    }

    /// Looks up a stream that data-plane calls may use (ACTIVE or UPDATING).
    pub(crate) fn readable<'m>(&self, m: &'m Meta, name: &str) -> Result<&'m Stream> {
        match m.streams.get(name) {
            Some(s) if matches!(effective_status(s), Status::Active | Status::Updating) => Ok(s),
            _ => Err(self.not_found(name)),
        }
    }
}

/// The status a reader should see, accounting for a transition whose end is
/// due but not yet applied by the timer.
pub(crate) fn effective_status(s: &Stream) -> Status {
    match (s.status, s.status_until_ms) {
        (Status::Creating | Status::Updating, Some(until)) if until <= now_ms() => Status::Active,
        (st, _) => st,
    }
}
