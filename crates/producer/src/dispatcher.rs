//! The dispatcher: one task per producer that owns every buffer. It routes
//! user records to shards by the stream's shard map, packs them into
//! aggregates (one shard each) or plain Kinesis records, gathers those into
//! PutRecords calls, paces shards, spawns the calls (bounded by
//! `max_inflight_requests`), and takes back what failed: retries with
//! backoff and jitter until the record's deadline, refreshes the shard map
//! when a result names another shard than predicted.
//!
//! Bounds: user records are bounded by the producer's semaphores; the
//! completion and shard-map channels by the number of tasks that can write
//! to them (one message per request task / refresh task).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::aggregation::Aggregate;
use crate::client::{EntryResult, KinesisApi, PutEntry};
use crate::config::ProducerConfig;
use crate::error::{ClientError, PutError};
use crate::limiter::ShardLimiter;
use crate::metrics as m;
use crate::producer::{Counters, PutResult};
use crate::shard_map::{ShardInfo, ShardMap};

#[allow(clippy::large_enum_variant)] // records are the common case
pub(crate) enum Command {
    Record(UserRec),
    Flush(oneshot::Sender<()>),
    Shutdown,
}

/// A user record on its way.
pub(crate) struct UserRec {
    pub stream: Arc<str>,
    pub partition_key: String,
    pub explicit_hash_key: Option<Box<str>>,
    /// The hash key: the explicit one, or the partition key's MD5, which
    /// the dispatcher computes for many records at once when they arrive.
    pub hash: u128,
    pub data: Bytes,
    pub arrived: Instant,
    pub deadline: Instant,
    pub not_before: Instant,
    pub attempts: u32,
    pub last_error: Option<Box<str>>,
    pub reply: crate::completion::Completer,
    /// Its share of the byte bound (one record permit is implied), given
    /// back when the record completes.
    pub bound_bytes: u32,
}

/// One Kinesis record: a plain user record or an aggregate.
struct KRecord {
    shard: Arc<str>,
    partition_key: String,
    explicit_hash_key: Option<String>,
    /// The payload of a plain record; empty for an aggregate.
    data: Bytes,
    /// The aggregate, encoded by the request task for each attempt (MD5 and
    /// copying run there, in parallel, not in the dispatcher; the encoded
    /// bytes go to the client unshared, so it need not copy them).
    pending: Option<Aggregate>,
    /// Encoded size of the payload.
    data_len: usize,
    users: Vec<UserRec>,
    aggregated: bool,
    oldest: Instant,
    deadline: Instant,
    not_before: Instant,
}

impl KRecord {
    fn size(&self) -> usize {
        self.data_len + self.partition_key.len()
    }
}

/// Resolves a successful record; the caller lowers `outstanding` for a
/// whole batch at once.
fn succeed(u: UserRec, res: PutResult) {
    u.reply.send(Ok(res));
}

/// Gives back `records` records and `bytes` bytes of the bounds and lowers
/// the outstanding count.
fn release(counters: &Counters, records: u64, bytes: u64) {
    counters.outstanding.fetch_sub(records, Ordering::AcqRel);
    counters.bounds.records.add_permits(records as usize);
    counters.bounds.bytes.add_permits(bytes as usize);
}

fn complete(counters: &Counters, u: UserRec, res: Result<PutResult, PutError>) {
    if let Err(e) = &res {
        counters.failed.fetch_add(1, Ordering::Relaxed);
        let kind = match e {
            PutError::Expired { .. } => "expired",
            PutError::Rejected { .. } => "rejected",
            PutError::Shutdown => "shutdown",
        };
        metrics::counter!(m::ERRORS, "stream" => u.stream.to_string(), "kind" => kind).increment(1);
    }
    let bytes = u.bound_bytes as u64;
    u.reply.send(res);
    release(counters, 1, bytes);
}

fn expire(counters: &Counters, u: UserRec, now: Instant) {
    let err = PutError::Expired {
        elapsed: now.saturating_duration_since(u.arrived),
        attempts: u.attempts,
        last_error: u
            .last_error
            .as_deref()
            .unwrap_or("none (still buffered)")
            .to_string(),
    };
    complete(counters, u, Err(err));
}

struct ShardBuf {
    info: ShardInfo,
    agg: Aggregate,
    agg_users: Vec<UserRec>,
    agg_oldest: Instant,
    ready: VecDeque<KRecord>,
    limiter: Option<ShardLimiter>,
}

struct Misrouted {
    krec: KRecord,
    actual: String,
    sequence_number: Arc<str>,
}

struct StreamState {
    name: Arc<str>,
    map: Option<ShardMap>,
    /// Hash ranges of every shard ListShards named, closed ones too.
    ranges: HashMap<Arc<str>, (u128, u128)>,
    shards: Vec<ShardBuf>,
    /// Waiting to be routed (no map yet, or after a map change).
    unrouted: VecDeque<UserRec>,
    /// Waiting for their retry time.
    backoff: Vec<UserRec>,
    /// Aggregates that landed in another shard, judged after the refresh.
    misrouted: Vec<Misrouted>,
    refreshing: bool,
    refresh_wanted: bool,
    /// A result showed the map is stale: send nothing more for the stream
    /// until the refreshed map has re-routed what is buffered (fewer
    /// aggregates built for a shard that no longer exists).
    hold: bool,
    refresh_not_before: Instant,
    map_loaded: Instant,
    refresh_failures: u32,
    batch: Vec<KRecord>,
    batch_bytes: usize,
    rr: usize,
}

impl StreamState {
    /// Holding stops mattering when ListShards keeps failing: records then
    /// go by the old map rather than wait for their deadline.
    fn refreshing_failed_too_often(&self) -> bool {
        self.refresh_failures >= 3
    }
}

struct Completion {
    stream: Arc<str>,
    /// Predicted shards of the records in the call (for ordered mode).
    shards: Vec<Arc<str>>,
    failed: Vec<(KRecord, ClientError)>,
    misrouted: Vec<Misrouted>,
    stale_map: bool,
}

struct MapAnswer {
    stream: Arc<str>,
    result: Result<Vec<ShardInfo>, ClientError>,
}

pub(crate) struct Dispatcher {
    client: Arc<dyn KinesisApi>,
    config: ProducerConfig,
    counters: Arc<Counters>,
    streams: HashMap<Arc<str>, StreamState, FxBuild>,
    /// (a record's name `Arc`, the dispatcher's own copy of that name):
    /// records are matched to their stream by pointer, without reading the
    /// name through their `Arc`, whose counts the sending threads keep
    /// changing (reading it would miss the cache for every record).
    seen_names: Vec<(Arc<str>, Arc<str>)>,
    slots: Arc<Semaphore>,
    inflight_requests: usize,
    inflight_shards: HashMap<Arc<str>, usize>,
    done_tx: mpsc::Sender<Completion>,
    done_rx: Option<mpsc::Receiver<Completion>>,
    map_tx: mpsc::Sender<MapAnswer>,
    map_rx: Option<mpsc::Receiver<MapAnswer>>,
    flush_waiters: Vec<oneshot::Sender<()>>,
    closing: bool,
    next_wake: Option<Instant>,
}

/// Map refreshes that may be in flight at once (one per stream); refresh
/// tasks beyond it wait to deliver.
const MAP_CHANNEL: usize = 64;
/// Commands taken from the channel per wake-up.
const COMMAND_BATCH: usize = 1024;
/// Distinct name `Arc`s of records remembered by the dispatcher.
const SEEN_NAMES: usize = 16;

/// FxHash for the table of stream names looked up for every record (names
/// are the application's own; no need for SipHash's DoS resistance).
#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 59));
    }
    fn write_u8(&mut self, v: u8) {
        self.add(v as u64);
    }
    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxBuild = std::hash::BuildHasherDefault<FxHasher>;

impl Dispatcher {
    pub(crate) fn new(
        client: Arc<dyn KinesisApi>,
        config: ProducerConfig,
        counters: Arc<Counters>,
    ) -> Dispatcher {
        let (done_tx, done_rx) = mpsc::channel(config.max_inflight_requests);
        let (map_tx, map_rx) = mpsc::channel(MAP_CHANNEL);
        Dispatcher {
            client,
            slots: Arc::new(Semaphore::new(config.max_inflight_requests)),
            config,
            counters,
            streams: HashMap::default(),
            seen_names: Vec::new(),
            inflight_requests: 0,
            inflight_shards: HashMap::new(),
            done_tx,
            done_rx: Some(done_rx),
            map_tx,
            map_rx: Some(map_rx),
            flush_waiters: Vec::new(),
            closing: false,
            next_wake: None,
        }
    }

    pub(crate) async fn run(mut self, mut cmds: mpsc::Receiver<Command>) {
        let mut done_rx = self.done_rx.take().expect("run once");
        let mut map_rx = self.map_rx.take().expect("run once");
        let mut buf = Vec::with_capacity(COMMAND_BATCH);
        let mut cmds_open = true;
        loop {
            let wake = self
                .next_wake
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                Some(c) = done_rx.recv() => self.on_completion(c),
                Some(a) = map_rx.recv() => self.on_map(a),
                n = cmds.recv_many(&mut buf, COMMAND_BATCH), if cmds_open => {
                    if n == 0 {
                        cmds_open = false;
                        self.closing = true;
                    }
                    hash_partition_keys(&mut buf);
                    for c in buf.drain(..) {
                        match c {
                            Command::Record(u) => self.on_record(u),
                            Command::Flush(tx) => self.flush_waiters.push(tx),
                            Command::Shutdown => self.closing = true,
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            // Drain whatever else is ready before pumping, so one pump covers
            // many events.
            while let Ok(c) = done_rx.try_recv() {
                self.on_completion(c);
            }
            self.pump(Instant::now());
            let idle = self.counters.outstanding.load(Ordering::Acquire) == 0;
            if idle {
                for w in self.flush_waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            if self.closing && idle && self.inflight_requests == 0 {
                break;
            }
        }
        cmds.close();
        // Anything that raced into the channel after the last look.
        while let Ok(c) = cmds.try_recv() {
            match c {
                Command::Record(u) => complete(&self.counters, u, Err(PutError::Shutdown)),
                Command::Flush(tx) => {
                    let _ = tx.send(());
                }
                Command::Shutdown => {}
            }
        }
        for w in self.flush_waiters.drain(..) {
            let _ = w.send(());
        }
    }

    fn stream(&mut self, name: &Arc<str>) -> &mut StreamState {
        self.streams
            .entry(name.clone())
            .or_insert_with(|| StreamState {
                name: name.clone(),
                map: None,
                ranges: HashMap::new(),
                shards: Vec::new(),
                unrouted: VecDeque::new(),
                backoff: Vec::new(),
                misrouted: Vec::new(),
                refreshing: false,
                refresh_wanted: true,
                hold: false,
                refresh_not_before: Instant::now(),
                map_loaded: Instant::now(),
                refresh_failures: 0,
                batch: Vec::new(),
                batch_bytes: 0,
                rr: 0,
            })
    }

    fn on_record(&mut self, u: UserRec) {
        let i = match self
            .seen_names
            .iter()
            .position(|(seen, _)| Arc::ptr_eq(seen, &u.stream))
        {
            Some(i) => i,
            None => {
                let own = match self.streams.get_key_value(&*u.stream) {
                    Some((own, _)) => own.clone(),
                    None => {
                        let own: Arc<str> = Arc::from(&*u.stream);
                        self.stream(&own);
                        own
                    }
                };
                if self.seen_names.len() >= SEEN_NAMES {
                    self.seen_names.clear();
                }
                self.seen_names.push((u.stream.clone(), own));
                self.seen_names.len() - 1
            }
        };
        let own = &self.seen_names[i].1;
        let s = self.streams.get_mut(own).expect("made above");
        if s.map.is_some() && s.unrouted.is_empty() {
            route(s, u, &self.config, &self.counters);
        } else {
            s.unrouted.push_back(u);
        }
    }

    fn backoff_delay(&self, attempts: u32) -> Duration {
        let base = self.config.retry_base_delay.as_secs_f64();
        let cap = self.config.retry_max_delay.as_secs_f64();
        let d = (base * 2f64.powi(attempts.saturating_sub(1).min(20) as i32)).min(cap);
        // Equal jitter: half fixed, half random.
        Duration::from_secs_f64(d / 2.0 + rand::thread_rng().gen_range(0.0..=d / 2.0))
    }

    fn on_completion(&mut self, c: Completion) {
        self.inflight_requests -= 1;
        if self.config.ordered {
            for sh in &c.shards {
                if let Some(n) = self.inflight_shards.get_mut(sh) {
                    *n -= 1;
                    if *n == 0 {
                        self.inflight_shards.remove(sh);
                    }
                }
            }
        }
        let now = Instant::now();
        let ordered = self.config.ordered;
        let mut to_backoff: Vec<UserRec> = Vec::new();
        let mut ordered_retry: Vec<KRecord> = Vec::new();
        for (mut k, err) in c.failed {
            match &err {
                ClientError::Fatal { code, message } => {
                    for u in k.users {
                        complete(
                            &self.counters,
                            u,
                            Err(PutError::Rejected {
                                code: code.clone(),
                                message: message.clone(),
                            }),
                        );
                    }
                    continue;
                }
                ClientError::Throttled(_) => {
                    self.counters.throttles.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(m::THROTTLES, "stream" => c.stream.to_string()).increment(1);
                }
                ClientError::Transient(_) => {}
            }
            let msg = err.to_string();
            let n = k.users.len() as u64;
            self.counters.retries.fetch_add(n, Ordering::Relaxed);
            metrics::counter!(m::RETRIES, "stream" => c.stream.to_string()).increment(n);
            let attempts = k.users.iter().map(|u| u.attempts).max().unwrap_or(1);
            let delay = self.backoff_delay(attempts);
            if ordered {
                for u in &mut k.users {
                    u.last_error = Some(msg.as_str().into());
                }
                k.not_before = now + delay;
                ordered_retry.push(k);
            } else {
                for mut u in k.users {
                    u.last_error = Some(msg.as_str().into());
                    u.not_before = now + delay;
                    to_backoff.push(u);
                }
            }
        }
        let config = self.config.clone();
        let s = self.stream(&c.stream);
        s.backoff.extend(to_backoff);
        for k in ordered_retry.into_iter().rev() {
            match s.shards.iter_mut().find(|b| b.info.shard_id == k.shard) {
                Some(b) => b.ready.push_front(k),
                None => {
                    for mut u in k.users.into_iter().rev() {
                        u.not_before = k.not_before;
                        s.unrouted.push_front(u);
                    }
                }
            }
        }
        if !c.misrouted.is_empty() || c.stale_map {
            s.refresh_wanted = true;
            s.hold = true;
            s.refresh_not_before = now;
        }
        s.misrouted.extend(c.misrouted);
        let _ = config;
    }

    fn on_map(&mut self, a: MapAnswer) {
        let now = Instant::now();
        let config = self.config.clone();
        let counters = self.counters.clone();
        let backoff = self.backoff_delay(
            self.streams
                .get(&a.stream)
                .map_or(1, |s| s.refresh_failures + 1),
        );
        self.stream(&a.stream);
        let s = self.streams.get_mut(&a.stream).expect("just made");
        s.refreshing = false;
        let all = match a.result {
            Ok(all) if all.iter().any(|x| x.open) => all,
            Ok(_) => {
                s.refresh_failures += 1;
                s.refresh_wanted = true;
                s.refresh_not_before = now + backoff;
                return;
            }
            Err(ClientError::Fatal { code, message }) => {
                // No such stream, no access...: everything waiting for a map
                // fails; a later record asks again.
                if s.map.is_none() {
                    for u in s.unrouted.drain(..).chain(s.backoff.drain(..)) {
                        complete(
                            &counters,
                            u,
                            Err(PutError::Rejected {
                                code: code.clone(),
                                message: message.clone(),
                            }),
                        );
                    }
                }
                s.refresh_wanted = s.map.is_some() || !s.misrouted.is_empty();
                s.refresh_not_before = now + backoff;
                return;
            }
            Err(e) => {
                tracing::debug!(stream = %s.name, error = %e, "ListShards failed; retrying");
                s.refresh_failures += 1;
                s.refresh_wanted = true;
                s.refresh_not_before = now + backoff;
                for u in s.unrouted.iter_mut() {
                    u.last_error = Some(format!("ListShards: {e}").into());
                }
                return;
            }
        };
        metrics::counter!(m::SHARD_MAP_REFRESHES, "stream" => s.name.to_string()).increment(1);
        s.refresh_failures = 0;
        s.hold = false;
        s.map_loaded = now;
        for sh in &all {
            s.ranges.insert(sh.shard_id.clone(), (sh.start, sh.end));
        }
        let map = ShardMap::new(all);
        let same = s
            .map
            .as_ref()
            .is_some_and(|old| old.shards() == map.shards());
        if !same {
            // Take every buffered record back and route it again by the new
            // map, oldest first.
            let mut back: Vec<UserRec> = Vec::new();
            for k in s.batch.drain(..) {
                if config.ordered
                    && let Some(n) = self.inflight_shards.get_mut(&k.shard)
                {
                    *n -= 1;
                    if *n == 0 {
                        self.inflight_shards.remove(&k.shard);
                    }
                }
                back.extend(k.users);
            }
            s.batch_bytes = 0;
            for b in s.shards.drain(..) {
                for k in b.ready {
                    back.extend(k.users);
                }
                back.extend(b.agg_users);
            }
            back.sort_by_key(|u| u.arrived);
            for u in back.into_iter().rev() {
                s.unrouted.push_front(u);
            }
            s.shards = map
                .shards()
                .iter()
                .map(|info| ShardBuf {
                    info: info.clone(),
                    agg: Aggregate::new(),
                    agg_users: Vec::new(),
                    agg_oldest: now,
                    ready: VecDeque::new(),
                    limiter: config.rate_limit_percent.map(|p| ShardLimiter::new(p, now)),
                })
                .collect();
            s.map = Some(map);
        }
        // Judge aggregates that landed in another shard than predicted: user
        // records inside that shard's range are stored there (a KCL-style
        // consumer keeps them); the rest are sent again.
        for mis in std::mem::take(&mut s.misrouted) {
            let range = s.ranges.get(mis.actual.as_str()).copied();
            let Misrouted {
                krec,
                actual,
                sequence_number,
            } = mis;
            let actual: Arc<str> = Arc::from(actual.as_str());
            let mut put = 0u64;
            for (i, mut u) in krec.users.into_iter().enumerate() {
                match range {
                    Some((lo, hi)) if (lo..=hi).contains(&u.hash) => {
                        put += 1;
                        let attempts = u.attempts;

                        complete(
                            &counters,
                            u,
                            Ok(PutResult {
                                shard_id: actual.clone(),
                                sequence_number: sequence_number.clone(),
                                sub_sequence_number: Some(i as u64),
                                attempts,
                            }),
                        );
                    }
                    _ => {
                        u.last_error = Some(Box::from(format!(
                            "aggregate landed in {actual}, outside the record's shard"
                        )));
                        counters.retries.fetch_add(1, Ordering::Relaxed);
                        s.unrouted.push_back(u);
                    }
                }
            }
            counters.user_records_put.fetch_add(put, Ordering::Relaxed);
        }
    }

    /// Routes, seals, collects and sends whatever is due; sets `next_wake`.
    fn pump(&mut self, now: Instant) {
        let force = self.closing || !self.flush_waiters.is_empty();
        let config = self.config.clone();
        let mbt = config.max_buffered_time;
        let mut wake: Option<Instant> = None;
        let mut wake_at = |t: Instant| {
            wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
        };
        let names: Vec<Arc<str>> = self.streams.keys().cloned().collect();
        for name in names {
            // Shard map refresh.
            let refresh = {
                let s = self.streams.get_mut(&name).expect("listed");
                if !s.refreshing
                    && s.map.is_some()
                    && now.saturating_duration_since(s.map_loaded) >= config.shard_map_ttl
                {
                    s.refresh_wanted = true;
                }
                let waiting = s.map.is_none() && (!s.unrouted.is_empty() || !s.backoff.is_empty());
                if !s.refreshing && (s.refresh_wanted || waiting) {
                    if now >= s.refresh_not_before {
                        s.refreshing = true;
                        s.refresh_wanted = false;
                        true
                    } else {
                        wake_at(s.refresh_not_before);
                        false
                    }
                } else {
                    false
                }
            };
            if refresh {
                let client = self.client.clone();
                let tx = self.map_tx.clone();
                let stream = name.clone();
                let timeout = config.request_timeout;
                tokio::spawn(async move {
                    let result =
                        match tokio::time::timeout(timeout, client.list_shards(&stream)).await {
                            Ok(r) => r,
                            Err(_) => Err(ClientError::Transient("ListShards timed out".into())),
                        };
                    let _ = tx.send(MapAnswer { stream, result }).await;
                });
            }
            let s = self.streams.get_mut(&name).expect("listed");
            // Backoff → unrouted when due; expire what is past its deadline.
            if !s.backoff.is_empty() {
                let mut i = 0;
                while i < s.backoff.len() {
                    let u = &s.backoff[i];
                    if u.deadline <= now {
                        let u = s.backoff.swap_remove(i);
                        expire(&self.counters, u, now);
                    } else if u.not_before <= now {
                        let u = s.backoff.swap_remove(i);
                        s.unrouted.push_back(u);
                    } else {
                        wake_at(u.not_before.min(u.deadline));
                        i += 1;
                    }
                }
            }
            if s.map.is_none() {
                // Waiting for ListShards; still honour deadlines.
                let mut keep = VecDeque::with_capacity(s.unrouted.len());
                for u in s.unrouted.drain(..) {
                    if u.deadline <= now {
                        expire(&self.counters, u, now);
                    } else {
                        wake_at(u.deadline);
                        keep.push_back(u);
                    }
                }
                s.unrouted = keep;
                continue;
            }
            while let Some(u) = s.unrouted.pop_front() {
                if u.deadline <= now {
                    expire(&self.counters, u, now);
                } else if u.not_before > now {
                    s.backoff.push(u);
                } else {
                    route(s, u, &config, &self.counters);
                }
            }
            // Seal aggregates that waited long enough.
            for b in s.shards.iter_mut() {
                if !b.agg_users.is_empty() {
                    let due = b.agg_oldest + mbt;
                    if force || due <= now {
                        seal(b);
                    } else {
                        wake_at(due);
                    }
                }
            }
            // Collect ready Kinesis records into PutRecords calls.
            let n = s.shards.len();
            if n == 0 || (s.hold && !s.refreshing_failed_too_often()) {
                continue;
            }
            let start = s.rr % n;
            s.rr = s.rr.wrapping_add(1);
            let StreamState {
                name: sname,
                shards,
                unrouted,
                batch,
                batch_bytes,
                ..
            } = s;
            for j in 0..n {
                let b = &mut shards[(start + j) % n];
                while let Some(k) = b.ready.front() {
                    if k.deadline <= now {
                        let k = b.ready.pop_front().expect("front");
                        for u in k.users {
                            if u.deadline <= now {
                                expire(&self.counters, u, now);
                            } else {
                                unrouted.push_back(u);
                            }
                        }
                        continue;
                    }
                    if k.not_before > now {
                        wake_at(k.not_before);
                        break;
                    }
                    if config.ordered && self.inflight_shards.contains_key(&b.info.shard_id) {
                        break;
                    }
                    if let Some(l) = b.limiter.as_mut()
                        && let Err(wait) = l.try_take(k.size(), now)
                    {
                        wake_at(now + wait);
                        break;
                    }
                    let k = b.ready.pop_front().expect("front");
                    if config.ordered {
                        *self
                            .inflight_shards
                            .entry(b.info.shard_id.clone())
                            .or_insert(0) += 1;
                    }
                    if batch.len() >= config.max_records_per_request
                        || *batch_bytes + k.size() > config.max_bytes_per_request
                    {
                        // Full: send it (or keep it if no slot, the record
                        // waits at the front of its shard).
                        if !send_batch(
                            sname,
                            batch,
                            batch_bytes,
                            &self.slots,
                            &mut self.inflight_requests,
                            &self.client,
                            &self.done_tx,
                            &self.counters,
                            &config,
                        ) {
                            if config.ordered
                                && let Some(c) = self.inflight_shards.get_mut(&b.info.shard_id)
                            {
                                *c -= 1;
                                if *c == 0 {
                                    self.inflight_shards.remove(&b.info.shard_id);
                                }
                            }
                            b.ready.push_front(k);
                            break;
                        }
                    }
                    *batch_bytes += k.size();
                    batch.push(k);
                    if config.ordered {
                        break;
                    }
                }
            }
            // Re-routed records (expired aggregates) go next time.
            if !s.unrouted.is_empty() {
                wake_at(now);
            }
            if let Some(oldest) = s.batch.iter().map(|k| k.oldest).min() {
                let due = oldest + mbt;
                let full = s.batch.len() >= config.max_records_per_request;
                if force || full || due <= now {
                    if !send_batch(
                        &s.name,
                        &mut s.batch,
                        &mut s.batch_bytes,
                        &self.slots,
                        &mut self.inflight_requests,
                        &self.client,
                        &self.done_tx,
                        &self.counters,
                        &config,
                    ) {
                        // No slot: a completion will wake us.
                    }
                } else {
                    wake_at(due);
                }
            }
        }
        self.next_wake = wake;
    }
}

/// Computes the hash keys of records routed by their partition keys, many
/// side by side (`send` leaves them to the dispatcher).
fn hash_partition_keys(cmds: &mut [Command]) {
    let mut keys: Vec<&str> = Vec::with_capacity(cmds.len());
    for c in cmds.iter() {
        if let Command::Record(u) = c
            && u.explicit_hash_key.is_none()
        {
            keys.push(&u.partition_key);
        }
    }
    let mut hashes = vec![0u128; keys.len()];
    eddy_md5x::hash_keys(&keys, &mut hashes);
    let mut hashes = hashes.into_iter();
    for c in cmds.iter_mut() {
        if let Command::Record(u) = c
            && u.explicit_hash_key.is_none()
        {
            u.hash = hashes.next().expect("one hash per key");
        }
    }
}

/// Puts a user record into its shard's buffer.
fn route(s: &mut StreamState, u: UserRec, config: &ProducerConfig, counters: &Counters) {
    let map = s.map.as_ref().expect("routed with a map");
    let Some(i) = map.route(u.hash) else {
        // A gap in the map (mid-reshard): ask again and retry shortly.
        s.refresh_wanted = true;
        let mut u = u;
        u.not_before = Instant::now() + config.retry_base_delay;
        u.last_error = Some("no open shard owns the record's hash key".into());
        s.backoff.push(u);
        return;
    };
    let b = &mut s.shards[i];
    if !config.aggregation {
        b.ready.push_back(plain(b.info.shard_id.clone(), u));
        return;
    }
    let ehk = u.explicit_hash_key.as_deref();
    if Aggregate::single_size(&u.partition_key, ehk, u.data.len()) > config.aggregation_max_bytes {
        b.ready.push_back(plain(b.info.shard_id.clone(), u));
        return;
    }
    if b.agg_users.len() >= config.aggregation_max_count {
        seal(b);
    }
    if b.agg_users.is_empty() && b.agg_users.capacity() == 0 {
        // A new aggregate: in the buffers of one already put, if any.
        let reuse = counters
            .recycled
            .lock()
            .expect("not poisoned")
            .buffers
            .pop();
        if let Some((agg, users)) = reuse {
            b.agg = agg;
            b.agg_users = users;
        }
    }
    // The Kinesis record's size counts its partition key: the first user
    // record's.
    let limit = |b: &ShardBuf| {
        let outer_pk = b
            .agg_users
            .first()
            .map_or(u.partition_key.len(), |f| f.partition_key.len());
        config.aggregation_max_bytes.saturating_sub(outer_pk)
    };
    let lim = limit(b);
    if b.agg
        .add_within(&u.partition_key, ehk, &u.data[..], lim)
        .is_none()
    {
        seal(b);
        let lim = limit(b);
        b.agg
            .add_within(&u.partition_key, ehk, &u.data[..], lim)
            .expect("an empty aggregate takes any record");
    }
    if b.agg_users.is_empty() {
        // Room for as many records like this one as the aggregate takes,
        // counting only their data and up to 8 bytes of framing each (key
        // table entries may be shared): rather too much room than a
        // doubling copy.
        let each = u.data.len() + 8;
        b.agg_users
            .reserve((config.aggregation_max_bytes / each).min(config.aggregation_max_count));
        b.agg_oldest = u.arrived;
    } else {
        b.agg_oldest = b.agg_oldest.min(u.arrived);
    }
    b.agg_users.push(u);
}

fn plain(shard: Arc<str>, u: UserRec) -> KRecord {
    KRecord {
        shard,
        partition_key: u.partition_key.clone(),
        explicit_hash_key: u.explicit_hash_key.as_deref().map(str::to_string),
        data: u.data.clone(),
        data_len: u.data.len(),
        pending: None,
        aggregated: false,
        oldest: u.arrived,
        deadline: u.deadline,
        not_before: u.not_before,
        users: vec![u],
    }
}

/// Turns the shard's open aggregate into a ready Kinesis record (a lone user
/// record goes plain, as the KPL does).
fn seal(b: &mut ShardBuf) {
    let agg = std::mem::take(&mut b.agg);
    let mut users = std::mem::take(&mut b.agg_users);
    if users.is_empty() {
        return;
    }
    if users.len() == 1 {
        let u = users.pop().expect("one");
        b.ready.push_back(plain(b.info.shard_id.clone(), u));
        return;
    }
    let first = &users[0];
    let k = KRecord {
        shard: b.info.shard_id.clone(),
        partition_key: first.partition_key.clone(),
        // Route by the first record's hash, which the shard owns.
        explicit_hash_key: Some(first.hash.to_string()),
        data: Bytes::new(),
        data_len: agg.size(),
        pending: Some(agg),
        aggregated: true,
        oldest: b.agg_oldest,
        deadline: users.iter().map(|u| u.deadline).min().expect("non-empty"),
        not_before: users.iter().map(|u| u.not_before).max().expect("non-empty"),
        users,
    };
    b.ready.push_back(k);
}

/// Spawns a PutRecords call for the stream's batch if a request slot is
/// free; returns false (batch kept) otherwise.
#[allow(clippy::too_many_arguments)]
fn send_batch(
    name: &Arc<str>,
    batch: &mut Vec<KRecord>,
    batch_bytes: &mut usize,
    slots: &Arc<Semaphore>,
    inflight: &mut usize,
    client: &Arc<dyn KinesisApi>,
    done_tx: &mpsc::Sender<Completion>,
    counters: &Arc<Counters>,
    config: &ProducerConfig,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    let Ok(permit) = slots.clone().try_acquire_owned() else {
        return false;
    };
    *inflight += 1;
    let mut batch = std::mem::take(batch);
    *batch_bytes = 0;
    let now = Instant::now();
    let hist = metrics::histogram!(m::BUFFERING_TIME, "stream" => name.to_string());
    for k in batch.iter_mut() {
        for u in k.users.iter_mut() {
            u.attempts += 1;
        }
        if k.users.iter().all(|u| u.attempts == 1) {
            hist.record(now.saturating_duration_since(k.oldest).as_secs_f64());
        }
    }
    let client = client.clone();
    let done_tx = done_tx.clone();
    let counters = counters.clone();
    let stream = name.clone();
    let timeout = config.request_timeout;
    tokio::spawn(async move {
        let c = put_batch(&*client, stream, batch, &counters, timeout).await;
        let _ = done_tx.send(c).await;
        drop(permit);
    });
    true
}

/// One PutRecords call and the sorting of its answer.
async fn put_batch(
    client: &dyn KinesisApi,
    stream: Arc<str>,
    batch: Vec<KRecord>,
    counters: &Counters,
    timeout: Duration,
) -> Completion {
    // Aggregates encoded together: their MD5 trailers go side by side.
    let aggs: Vec<&Aggregate> = batch.iter().filter_map(|k| k.pending.as_ref()).collect();
    let mut encoded = crate::aggregation::encode_all(&aggs).into_iter();
    let entries: Vec<PutEntry> = batch
        .iter()
        .map(|k| PutEntry {
            partition_key: k.partition_key.clone(),
            explicit_hash_key: k.explicit_hash_key.clone(),
            data: match &k.pending {
                Some(_) => encoded.next().expect("one encoding per aggregate"),
                None => k.data.clone(),
            },
        })
        .collect();
    let shards: Vec<Arc<str>> = batch.iter().map(|k| k.shard.clone()).collect();
    counters.requests.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(m::REQUESTS, "stream" => stream.to_string()).increment(1);
    let answer = match tokio::time::timeout(timeout, client.put_records(&stream, entries)).await {
        Ok(a) => a,
        Err(_) => Err(ClientError::Transient("PutRecords timed out".into())),
    };
    let mut c = Completion {
        stream: stream.clone(),
        shards,
        failed: Vec::new(),
        misrouted: Vec::new(),
        stale_map: false,
    };
    let results = match answer {
        Ok(r) => r,
        Err(e) => {
            c.failed = batch.into_iter().map(|k| (k, e.clone())).collect();
            return c;
        }
    };
    let (mut users_put, mut bytes_put, mut kinesis_put) = (0u64, 0u64, 0u64);
    let mut bound_bytes = 0u64;
    for (k, r) in batch.into_iter().zip(results) {
        match r {
            EntryResult::Ok {
                shard_id,
                sequence_number,
            } => {
                if k.aggregated && *k.shard != *shard_id {
                    c.misrouted.push(Misrouted {
                        krec: k,
                        actual: shard_id,
                        sequence_number: Arc::from(sequence_number.as_str()),
                    });
                    kinesis_put += 1;
                    continue;
                }
                if *k.shard != *shard_id {
                    c.stale_map = true;
                }
                kinesis_put += 1;
                let shard: Arc<str> = if *k.shard == *shard_id {
                    k.shard.clone()
                } else {
                    Arc::from(shard_id.as_str())
                };
                let seq: Arc<str> = Arc::from(sequence_number.as_str());
                let aggregated = k.aggregated;
                let mut users = k.users;
                for (i, u) in users.drain(..).enumerate() {
                    users_put += 1;
                    bytes_put += u.data.len() as u64;
                    bound_bytes += u.bound_bytes as u64;
                    let attempts = u.attempts;
                    succeed(
                        u,
                        PutResult {
                            shard_id: shard.clone(),
                            sequence_number: seq.clone(),
                            sub_sequence_number: aggregated.then_some(i as u64),
                            attempts,
                        },
                    );
                }
                if let Some(mut agg) = k.pending {
                    agg.clear();
                    let mut r = counters.recycled.lock().expect("not poisoned");
                    if r.buffers.len() < crate::producer::MAX_RECYCLED {
                        r.buffers.push((agg, users));
                    }
                }
            }
            EntryResult::Failed { code, message } => {
                let e = ClientError::from_code(&code, &message);
                // A per-record failure is never final by itself: Kinesis
                // answers only throttling and internal failures per record.
                let e = match e {
                    ClientError::Fatal { .. } => {
                        ClientError::Transient(format!("{code}: {message}"))
                    }
                    e => e,
                };
                c.failed.push((k, e));
            }
        }
    }
    release(counters, users_put, bound_bytes);
    counters
        .user_records_put
        .fetch_add(users_put, Ordering::Relaxed);
    counters
        .user_bytes_put
        .fetch_add(bytes_put, Ordering::Relaxed);
    counters
        .kinesis_records_put
        .fetch_add(kinesis_put, Ordering::Relaxed);
    metrics::counter!(m::USER_RECORDS_PUT, "stream" => stream.to_string()).increment(users_put);
    metrics::counter!(m::USER_BYTES_PUT, "stream" => stream.to_string()).increment(bytes_put);
    metrics::counter!(m::KINESIS_RECORDS_PUT, "stream" => stream.to_string())
        .increment(kinesis_put);
    c
}
