//! The worker: shard discovery, the lease loop, and one task per held shard
//! feeding the user's record processor.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::{ChildShard, ConsumerStatus, Record, Shard};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::coordinator::LeaseCoordinator;
use crate::lease::{Checkpoint, Lease, LeaseError, LeaseStore, covered_by};
use crate::processor::{
    Checkpointer, HeldLease, InitializeInput, ProcessRecordsInput, RecordProcessor, UserRecord,
};
use crate::retrieval::{Position, RetrievalError, Retriever};

/// Where a new application starts reading shards that have no ancestors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialPosition {
    TrimHorizon,
    Latest,
    AtTimestamp(SystemTime),
}

/// How records are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetrievalMode {
    /// GetRecords.
    Polling,
    /// SubscribeToShard through a registered consumer of this name.
    FanOut { consumer_name: String },
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The application: names the lease table (and the EFO consumer by default).
    pub application_name: String,
    pub stream_name: String,
    /// Unique per worker.
    pub worker_id: String,
    pub initial_position: InitialPosition,
    pub retrieval: RetrievalMode,
    /// A lease not renewed for this long may be taken by another worker.
    pub lease_duration: Duration,
    /// How often held leases are renewed (a third of the lease duration by default).
    pub renew_interval: Duration,
    /// How often the table is scanned for leases to take.
    pub take_interval: Duration,
    /// How often the stream's shards are listed to find new ones.
    pub shard_sync_interval: Duration,
    /// Least time between two GetRecords calls on one shard (5/s is the limit).
    pub poll_interval: Duration,
    pub max_records: i32,
    /// How often a child shard checks whether its parents have finished.
    pub parent_check_interval: Duration,
}

impl ConsumerConfig {
    pub fn new(
        application_name: impl Into<String>,
        stream_name: impl Into<String>,
        worker_id: impl Into<String>,
    ) -> ConsumerConfig {
        ConsumerConfig {
            application_name: application_name.into(),
            stream_name: stream_name.into(),
            worker_id: worker_id.into(),
            initial_position: InitialPosition::TrimHorizon,
            retrieval: RetrievalMode::Polling,
            lease_duration: Duration::from_secs(10),
            renew_interval: Duration::from_millis(3333),
            take_interval: Duration::from_secs(5),
            shard_sync_interval: Duration::from_secs(10),
            poll_interval: Duration::from_millis(250),
            max_records: 10_000,
            parent_check_interval: Duration::from_millis(500),
        }
    }

    /// Sets the lease duration and the intervals derived from it.
    pub fn with_lease_duration(mut self, d: Duration) -> ConsumerConfig {
        self.lease_duration = d;
        self.renew_interval = d / 3;
        self.take_interval = d / 2;
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("kinesis: {0}")]
    Kinesis(String),
}

fn kinesis_error<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: aws_sdk_kinesis::error::SdkError<E, R>,
) -> ConsumerError {
    match e.code() {
        Some(c) => ConsumerError::Kinesis(format!("{c}: {}", e.message().unwrap_or(""))),
        None => ConsumerError::Kinesis(format!("{e:?}")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    LeaseLost,
    Shutdown,
    /// Another worker asked for the lease: final checkpoint, then hand over.
    HandOff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    ShardEnded,
    LeaseLost,
    Shutdown,
    HandedOff,
}

struct ShardTask<S> {
    held: Arc<HeldLease<S>>,
    stop: watch::Sender<Stop>,
    handle: JoinHandle<Outcome>,
}

impl<S> Drop for ShardTask<S> {
    /// A worker dropped mid-way stops its shards at once, as if it crashed
    /// (no final checkpoint); graceful stops go through the stop signal.
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Runs record processors made by `factory` over the shards this worker
/// holds leases for.
pub struct Worker<S, F> {
    cfg: Arc<ConsumerConfig>,
    kinesis: Client,
    store: Arc<S>,
    factory: Arc<F>,
}

struct Shared<S> {
    cfg: Arc<ConsumerConfig>,
    kinesis: Client,
    store: Arc<S>,
    consumer_arn: Option<String>,
}

impl<S, F, P> Worker<S, F>
where
    S: LeaseStore,
    F: Fn() -> P + Send + Sync + 'static,
    P: RecordProcessor,
{
    pub fn new(cfg: ConsumerConfig, kinesis: Client, store: S, factory: F) -> Worker<S, F> {
        Worker {
            cfg: Arc::new(cfg),
            kinesis,
            store: Arc::new(store),
            factory: Arc::new(factory),
        }
    }

    /// Runs until `shutdown` resolves; then asks every processor for a final
    /// checkpoint and releases the leases. Dropping the returned future
    /// instead stops everything at once, like a crash: no final checkpoints,
    /// and the leases are taken over only after the lease duration.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ConsumerError> {
        let cfg = self.cfg.clone();
        self.store.ensure_table().await?;
        let consumer_arn = match &cfg.retrieval {
            RetrievalMode::Polling => None,
            RetrievalMode::FanOut { consumer_name } => {
                Some(ensure_consumer(&self.kinesis, &cfg.stream_name, consumer_name).await?)
            }
        };
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            kinesis: self.kinesis.clone(),
            store: self.store.clone(),
            consumer_arn,
        });
        let mut coord =
            LeaseCoordinator::new(self.store.clone(), &cfg.worker_id, cfg.lease_duration);
        let mut tasks: HashMap<String, ShardTask<S>> = HashMap::new();
        tokio::pin!(shutdown);
        let tick = cfg
            .renew_interval
            .min(cfg.take_interval)
            .min(Duration::from_millis(500));
        let mut next_sync = Instant::now();
        let mut next_take = Instant::now();
        let mut next_renew = Instant::now() + cfg.renew_interval;
        loop {
            let now = Instant::now();
            if now >= next_sync {
                if let Err(e) = sync_shards(&shared).await {
                    tracing::warn!("listing shards: {e}");
                }
                next_sync = now + cfg.shard_sync_interval;
            }
            if now >= next_renew {
                for key in coord.renew_leases(now.into_std()).await {
                    if let Some(t) = tasks.get(&key) {
                        let stop = if t.held.is_handing_off() {
                            tracing::info!(shard = %key, worker = %cfg.worker_id, "handing lease over");
                            Stop::HandOff
                        } else {
                            tracing::info!(shard = %key, worker = %cfg.worker_id, "lease lost");
                            Stop::LeaseLost
                        };
                        let _ = t.stop.send(stop);
                    }
                }
                next_renew = now + cfg.renew_interval;
            }
            // Reap finished shard tasks.
            let done: Vec<String> = tasks
                .iter()
                .filter(|(_, t)| t.handle.is_finished())
                .map(|(k, _)| k.clone())
                .collect();
            for key in done {
                let mut t = tasks.remove(&key).expect("present");
                match (&mut t.handle).await {
                    Ok(Outcome::ShardEnded) => {
                        coord.forget(&key);
                        // Children may be ready now.
                        next_take = now;
                    }
                    Ok(Outcome::LeaseLost | Outcome::HandedOff) => coord.forget(&key),
                    Ok(Outcome::Shutdown) => {}
                    Err(e) => {
                        tracing::error!(shard = %key, "shard task failed: {e}");
                        coord.forget(&key);
                    }
                }
            }
            if now >= next_take {
                match coord.take_leases(now.into_std()).await {
                    Ok(taken) => {
                        for key in taken {
                            tracing::info!(shard = %key, worker = %cfg.worker_id, "lease taken");
                        }
                    }
                    Err(e) => tracing::warn!("taking leases: {e}"),
                }
                next_take = now + cfg.take_interval;
            }
            // Start processing held leases that have no task.
            for key in coord.held_keys() {
                if tasks.contains_key(&key) {
                    continue;
                }
                let held = coord.held(&key).expect("held");
                let (stop, stop_rx) = watch::channel(Stop::Running);
                let processor = (self.factory)();
                let handle =
                    tokio::spawn(run_shard(shared.clone(), held.clone(), processor, stop_rx));
                tasks.insert(key, ShardTask { held, stop, handle });
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(tick) => {}
            }
        }
        // Graceful shutdown: final checkpoints, then give the leases back.
        for t in tasks.values() {
            let _ = t.stop.send(Stop::Shutdown);
        }
        for (key, mut t) in tasks {
            let _ = (&mut t.handle).await;
            coord.release(&key).await;
        }
        for key in coord.held_keys() {
            coord.release(&key).await;
        }
        Ok(())
    }
}

async fn ensure_consumer(
    kinesis: &Client,
    stream: &str,
    consumer_name: &str,
) -> Result<String, ConsumerError> {
    let summary = kinesis
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .map_err(kinesis_error)?;
    let stream_arn = summary
        .stream_description_summary()
        .map(|s| s.stream_arn().to_string())
        .ok_or_else(|| ConsumerError::Kinesis("no stream description".into()))?;
    match kinesis
        .register_stream_consumer()
        .stream_arn(&stream_arn)
        .consumer_name(consumer_name)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if e.code() == Some("ResourceInUseException") => {}
        Err(e) => return Err(kinesis_error(e)),
    }
    for _ in 0..300 {
        let d = kinesis
            .describe_stream_consumer()
            .stream_arn(&stream_arn)
            .consumer_name(consumer_name)
            .send()
            .await
            .map_err(kinesis_error)?;
        if let Some(c) = d.consumer_description()
            && c.consumer_status() == &ConsumerStatus::Active
        {
            return Ok(c.consumer_arn().to_string());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(ConsumerError::Kinesis(format!(
        "consumer {consumer_name} did not become ACTIVE"
    )))
}

async fn list_shards(kinesis: &Client, stream: &str) -> Result<Vec<Shard>, ConsumerError> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let req = match &token {
            Some(t) => kinesis.list_shards().next_token(t),
            None => kinesis.list_shards().stream_name(stream),
        };
        let out = req.send().await.map_err(kinesis_error)?;
        shards.extend(out.shards().iter().cloned());
        match out.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    shards.sort_by(|a, b| a.shard_id().cmp(b.shard_id()));
    Ok(shards)
}

/// The leases that a shard listing calls for, given the leases that exist:
/// parents before children; shards descending from leased shards start at
/// TRIM_HORIZON, others at the initial position (at LATEST, closed shards
/// without leased ancestors are skipped).
pub fn leases_for_new_shards(
    shards: &[Shard],
    existing: &HashSet<String>,
    initial: InitialPosition,
) -> Vec<Lease> {
    let mut known: HashSet<String> = existing.clone();
    let mut out = Vec::new();
    for shard in shards {
        let id = shard.shard_id();
        if known.contains(id) {
            continue;
        }
        let parents: Vec<String> = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
            .into_iter()
            .flatten()
            .map(str::to_string)
            .collect();
        let has_leased_parent = parents.iter().any(|p| known.contains(p));
        let closed = shard
            .sequence_number_range()
            .and_then(|r| r.ending_sequence_number())
            .is_some();
        let checkpoint = if has_leased_parent {
            Checkpoint::TrimHorizon
        } else {
            match initial {
                InitialPosition::TrimHorizon => Checkpoint::TrimHorizon,
                InitialPosition::Latest if closed => continue,
                InitialPosition::Latest => Checkpoint::Latest,
                InitialPosition::AtTimestamp(_) => Checkpoint::AtTimestamp,
            }
        };
        let mut lease = Lease::new(id, checkpoint);
        lease.parent_shard_ids = parents;
        if let Some(r) = shard.hash_key_range() {
            lease.starting_hash_key = Some(r.starting_hash_key().to_string());
            lease.ending_hash_key = Some(r.ending_hash_key().to_string());
        }
        known.insert(id.to_string());
        out.push(lease);
    }
    out
}

async fn sync_shards<S: LeaseStore>(shared: &Shared<S>) -> Result<(), ConsumerError> {
    let shards = list_shards(&shared.kinesis, &shared.cfg.stream_name).await?;
    let existing: HashSet<String> = shared
        .store
        .list_leases()
        .await?
        .into_iter()
        .map(|l| l.lease_key)
        .collect();
    for lease in leases_for_new_shards(&shards, &existing, shared.cfg.initial_position) {
        shared.store.create_lease_if_not_exists(&lease).await?;
    }
    Ok(())
}

/// Leases for the children named at a shard's end (before the next listing
/// would find them).
async fn create_child_leases<S: LeaseStore>(store: &S, children: &[ChildShard]) {
    for c in children {
        let mut lease = Lease::new(c.shard_id(), Checkpoint::TrimHorizon);
        lease.parent_shard_ids = c.parent_shards().to_vec();
        if let Some(r) = c.hash_key_range() {
            lease.starting_hash_key = Some(r.starting_hash_key().to_string());
            lease.ending_hash_key = Some(r.ending_hash_key().to_string());
        }
        if let Err(e) = store.create_lease_if_not_exists(&lease).await {
            tracing::warn!(shard = %c.shard_id(), "creating child lease: {e}");
        }
    }
}

/// Splits Kinesis records into user records for the shard's hash range,
/// dropping those already covered by `after`.
pub fn user_records(
    shard_id: &str,
    records: &[Record],
    range: (u128, u128),
    after: &Checkpoint,
) -> Vec<UserRecord> {
    let mut out = Vec::new();
    for r in records {
        let pk = r.partition_key().unwrap_or_default();
        let data = bytes::Bytes::copy_from_slice(r.data().as_ref());
        let arrival = r
            .approximate_arrival_timestamp()
            .and_then(|t| SystemTime::try_from(*t).ok());
        let parts = match eddy_producer::deaggregate_in_range(pk, &data, range.0, range.1) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(
                    shard = shard_id,
                    sequence = r.sequence_number(),
                    "undecodable aggregate delivered as is: {e}"
                );
                vec![eddy_producer::aggregation::UserRecord {
                    partition_key: pk.to_string(),
                    explicit_hash_key: None,
                    data: data.clone(),
                    sub_sequence_number: None,
                }]
            }
        };
        for p in parts {
            if covered_by(
                after,
                r.sequence_number(),
                p.sub_sequence_number.unwrap_or(0),
            ) {
                continue;
            }
            out.push(UserRecord {
                shard_id: shard_id.to_string(),
                sequence_number: r.sequence_number().to_string(),
                sub_sequence_number: p.sub_sequence_number,
                partition_key: p.partition_key,
                explicit_hash_key: p.explicit_hash_key,
                data: p.data,
                approximate_arrival_timestamp: arrival,
            });
        }
    }
    out
}

/// Waits until `wait` resolves or the stop signal changes; `false` on stop.
async fn or_stop<T>(stop: &mut watch::Receiver<Stop>, wait: impl Future<Output = T>) -> Option<T> {
    if *stop.borrow() != Stop::Running {
        return None;
    }
    tokio::select! {
        biased;
        _ = stop.changed() => None,
        v = wait => Some(v),
    }
}

async fn run_shard<S: LeaseStore, P: RecordProcessor>(
    shared: Arc<Shared<S>>,
    held: Arc<HeldLease<S>>,
    mut processor: P,
    mut stop: watch::Receiver<Stop>,
) -> Outcome {
    let stopped = |stop: &watch::Receiver<Stop>| match *stop.borrow() {
        Stop::LeaseLost => Outcome::LeaseLost,
        Stop::HandOff => Outcome::HandedOff,
        _ => Outcome::Shutdown,
    };
    // A stolen lease: wait until the previous owner checkpointed and handed
    // it over (or for a lease duration, if it died meanwhile).
    if held
        .awaiting_handoff
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        let key = held.lease.lock().await.lease_key.clone();
        let deadline = Instant::now() + shared.cfg.lease_duration;
        loop {
            match shared.store.get_lease(&key).await {
                Ok(Some(l)) if l.lease_owner.as_deref() != Some(&shared.cfg.worker_id) => {
                    return Outcome::LeaseLost;
                }
                Ok(Some(l)) if l.checkpoint_owner.is_none() => {
                    *held.lease.lock().await = l;
                    break;
                }
                Ok(Some(l)) if Instant::now() >= deadline => {
                    // The previous owner is gone: take it for good.
                    let mut view = held.lease.lock().await;
                    match shared.store.take_lease(&l, &shared.cfg.worker_id).await {
                        Ok(new) => {
                            *view = new;
                            break;
                        }
                        Err(_) => return Outcome::LeaseLost,
                    }
                }
                Ok(_) | Err(_) => {}
            }
            if or_stop(&mut stop, tokio::time::sleep(Duration::from_millis(100)))
                .await
                .is_none()
            {
                return stopped(&stop);
            }
        }
    }
    let lease = held.lease.lock().await.clone();
    let shard_id = lease.lease_key.clone();
    if lease.checkpoint.is_shard_end() {
        return Outcome::ShardEnded;
    }
    // Children wait for every parent to reach SHARD_END.
    'parents: loop {
        let mut pending = false;
        for p in &lease.parent_shard_ids {
            match shared.store.get_lease(p).await {
                Ok(Some(pl)) if !pl.checkpoint.is_shard_end() => pending = true,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(shard = %shard_id, parent = %p, "reading parent lease: {e}");
                    pending = true;
                }
            }
        }
        if !pending {
            break 'parents;
        }
        if or_stop(
            &mut stop,
            tokio::time::sleep(shared.cfg.parent_check_interval),
        )
        .await
        .is_none()
        {
            let o = stopped(&stop);
            if o == Outcome::HandedOff {
                held.complete_handoff().await;
            }
            return o;
        }
    }
    let start = lease.checkpoint.clone();
    let timestamp = match shared.cfg.initial_position {
        InitialPosition::AtTimestamp(t) => Some(t),
        _ => None,
    };
    processor
        .initialize(InitializeInput {
            shard_id: shard_id.clone(),
            checkpoint: start.clone(),
        })
        .await;
    let position = Position::from_checkpoint(&start, timestamp);
    let mut retriever = match &shared.consumer_arn {
        None => Retriever::Polling {
            client: shared.kinesis.clone(),
            stream: shared.cfg.stream_name.clone(),
            shard: shard_id.clone(),
            position,
            iterator: None,
            max_records: shared.cfg.max_records,
            interval: shared.cfg.poll_interval,
            last_call: None,
        },
        Some(arn) => Retriever::FanOut {
            client: shared.kinesis.clone(),
            consumer_arn: arn.clone(),
            shard: shard_id.clone(),
            position,
            subscription: None,
        },
    };
    let mut checkpointer = Checkpointer {
        shard_id: shard_id.clone(),
        write: Box::new(held.clone()),
        last_delivered: None,
        at_shard_end: false,
        last_written: None,
        lost: false,
    };
    let range = lease.hash_range();
    let mut backoff = Duration::from_millis(100);
    let outcome = loop {
        let Some(batch) = or_stop(&mut stop, retriever.next()).await else {
            break stopped(&stop);
        };
        let batch = match batch {
            Ok(b) => {
                backoff = Duration::from_millis(100);
                b
            }
            Err(e) => {
                if matches!(e, RetrievalError::Throttled) {
                    metrics::counter!("eddy_consumer_read_throttles", "shard" => shard_id.clone())
                        .increment(1);
                } else {
                    tracing::warn!(shard = %shard_id, "reading records: {e}");
                }
                let jitter = Duration::from_millis(rand::random::<u64>() % 100);
                if or_stop(&mut stop, tokio::time::sleep(backoff + jitter))
                    .await
                    .is_none()
                {
                    break stopped(&stop);
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Some(ms) = batch.millis_behind_latest {
            metrics::gauge!("eddy_consumer_millis_behind_latest", "shard" => shard_id.clone())
                .set(ms as f64);
        }
        let records = user_records(&shard_id, &batch.records, range, &start);
        if !records.is_empty() {
            let n = records.len();
            checkpointer.last_delivered = records.last().map(UserRecord::checkpoint);
            processor
                .process_records(
                    ProcessRecordsInput {
                        shard_id: shard_id.clone(),
                        records,
                        millis_behind_latest: batch.millis_behind_latest,
                    },
                    &mut checkpointer,
                )
                .await;
            metrics::counter!("eddy_consumer_records_processed", "shard" => shard_id.clone())
                .increment(n as u64);
            if checkpointer.lost {
                break Outcome::LeaseLost;
            }
            if held.is_handing_off() {
                break Outcome::HandedOff;
            }
        }
        if let Some(children) = batch.end {
            checkpointer.at_shard_end = true;
            loop {
                processor.shard_ended(&mut checkpointer).await;
                if checkpointer.lost {
                    break;
                }
                if held.lease.lock().await.checkpoint.is_shard_end() {
                    create_child_leases(&*shared.store, &children).await;
                    return Outcome::ShardEnded;
                }
                tracing::error!(
                    shard = %shard_id,
                    "the record processor did not checkpoint SHARD_END; retrying"
                );
                if or_stop(&mut stop, tokio::time::sleep(Duration::from_secs(1)))
                    .await
                    .is_none()
                {
                    break;
                }
            }
            break if checkpointer.lost {
                Outcome::LeaseLost
            } else {
                stopped(&stop)
            };
        }
    };
    match outcome {
        Outcome::LeaseLost => processor.lease_lost().await,
        Outcome::Shutdown => processor.shutdown_requested(&mut checkpointer).await,
        Outcome::HandedOff => {
            processor.shutdown_requested(&mut checkpointer).await;
            held.complete_handoff().await;
        }
        Outcome::ShardEnded => {}
    }
    outcome
}
