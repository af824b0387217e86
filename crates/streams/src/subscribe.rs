//! SubscribeToShard: push delivery to enhanced fan-out consumers.
//!
//! A subscription is a task that reads the shard from its starting position
//! and pushes `SubscribeToShardEvent`s into a small bounded channel (the
//! server turns them into event-stream frames). It never polls: when it is
//! caught up it waits on the engine's notification for new durable data,
//! and sends an empty event every few seconds so the client's continuation
//! point keeps moving. It ends after five minutes, at the end of a closed
//! shard (with ChildShards and a null ContinuationSequenceNumber), when the
//! client goes away, or when it is replaced or its consumer deregistered
//! (with an exception event).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use eddy_wire::Value;
use tokio::sync::{mpsc, watch};

use crate::data::{child_shards, record_value};
use crate::error::{Result, StreamsError};
use crate::meta::Status;
use crate::{Streams, seqnum};

/// How long one subscription lasts (AWS: 5 minutes).
pub const SUBSCRIPTION_LIFETIME: Duration = Duration::from_secs(300);
/// A second subscription of the same consumer to the same shard within this
/// time is refused; after it, the new one replaces the old.
pub const RESUBSCRIBE_GUARD: Duration = Duration::from_secs(5);
/// An empty event is sent after this long without data.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Cancellation code for a quiet end (shutdown), not an exception.
const END: &str = "";
/// Per-event bounds.
const EVENT_MAX_RECORDS: usize = 10_000;
const EVENT_MAX_BYTES: usize = 2 * 1024 * 1024;
/// Per consumer per shard read rate when limits are on (AWS: 2 MiB/s).
const PUSH_BYTES_PER_SEC: f64 = 2.0 * 1024.0 * 1024.0;

/// What a subscription pushes.
#[derive(Debug)]
pub enum Push {
    /// A `SubscribeToShardEvent` (shape of that name).
    Event(Value),
    /// An exception event; the stream ends after it.
    Error(StreamsError),
}

pub(crate) struct Active {
    id: u64,
    started: Instant,
    cancel: watch::Sender<Option<(&'static str, String)>>,
}

#[derive(Default)]
pub(crate) struct Registry {
    active: HashMap<(String, u32), Active>,
    next_id: u64,
}

impl Streams {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Ends every subscription of a consumer (deregistered or stream deleted).
    pub(crate) fn end_subscriptions_of(&self, consumer_arn: &str) {
        let mut reg = self.registry();
        reg.active.retain(|(arn, _), a| {
            if arn == consumer_arn {
                let _ = a.cancel.send(Some((
                    "ResourceNotFoundException",
                    format!("Consumer {consumer_arn} is no longer registered."),
                )));
                false
            } else {
                true
            }
        });
    }

    /// Ends every subscription cleanly (server shutdown): clients see the
    /// stream end and resubscribe elsewhere or later.
    pub fn end_all_subscriptions(&self) {
        let mut reg = self.registry();
        for (_, a) in reg.active.drain() {
            let _ = a.cancel.send(Some((END, String::new())));
        }
    }

    /// Starts a subscription; errors before the first event are returned
    /// here (the server answers them as ordinary errors).
    pub async fn subscribe(&self, input: &Value) -> Result<mpsc::Receiver<Push>> {
        let consumer_arn = input.str("ConsumerARN").unwrap_or_default().to_string();
        let shard_arg = input.str("ShardId").unwrap_or_default();
        let start = input.get("StartingPosition");
        let kind = start.and_then(|p| p.str("Type")).unwrap_or_default();
        let (stream, consumer) = {
            let m = self.read();
            self.consumer_of(&m, &Value::map().with("ConsumerARN", consumer_arn.as_str()))?
        };
        if consumer.effective_status() != Status::Active {
            return Err(StreamsError::ResourceInUse(format!(
                "Consumer {consumer_arn} with creation timestamp {} under stream: {stream} , account {} is not in ACTIVE status.",
                consumer.created_ms,
                self.account()
            )));
        }
        let (tag, shard, position) = self.start_position(
            &stream,
            shard_arg,
            kind,
            start.and_then(|p| p.str("SequenceNumber")),
            start.and_then(|p| p.timestamp("Timestamp")),
            "SubscribeToShard",
        )?;
        if input.bool("DryRun") == Some(true) {
            return Err(StreamsError::DryRun(
                "Request would have succeeded, but DryRun flag is set.".into(),
            ));
        }
        let key = (consumer_arn.clone(), shard.index);
        let (cancel_tx, cancel_rx) = watch::channel(None);
        let id = {
            let mut reg = self.registry();
            if let Some(old) = reg.active.get(&key) {
                if old.started.elapsed() < RESUBSCRIBE_GUARD && !old.cancel.is_closed() {
                    return Err(StreamsError::ResourceInUse(format!(
                        "Another active subscription exists for this consumer: {consumer_arn}, shard: {}.",
                        shard.id()
                    )));
                }
                let _ = old.cancel.send(Some((
                    "ResourceInUseException",
                    format!("Another subscription for consumer {consumer_arn} and shard {} replaced this one.", shard.id()),
                )));
            }
            reg.next_id += 1;
            let id = reg.next_id;
            reg.active.insert(
                key.clone(),
                Active {
                    id,
                    started: Instant::now(),
                    cancel: cancel_tx,
                },
            );
            id
        };
        let (tx, rx) = mpsc::channel(2);
        let this = self.clone();
        tokio::spawn(async move {
            let pump = Pump {
                streams: this.clone(),
                stream,
                tag,
                shard_index: shard.index,
                log_id: shard.log_id,
                position,
            };
            if let Err(e) = pump.run(&tx, cancel_rx).await {
                let _ = tx.send(Push::Error(e)).await;
            }
            let mut reg = this.registry();
            if reg.active.get(&key).is_some_and(|a| a.id == id) {
                reg.active.remove(&key);
            }
        });
        Ok(rx)
    }
}

struct Pump {
    streams: Streams,
    stream: String,
    tag: u64,
    shard_index: u32,
    log_id: u64,
    position: u64,
}

impl Pump {
    async fn run(
        mut self,
        tx: &mpsc::Sender<Push>,
        mut cancel: watch::Receiver<Option<(&'static str, String)>>,
    ) -> Result<()> {
        let deadline = Instant::now() + SUBSCRIPTION_LIFETIME;
        let limits = self.streams.config().limits;
        let mut tokens = PUSH_BYTES_PER_SEC;
        let mut refilled = Instant::now();
        let mut first = true;
        let mut changes = self.streams.inner.changes.subscribe();
        loop {
            if let Some((code, msg)) = cancel.borrow().clone() {
                if code == END {
                    return Ok(());
                }
                return Err(error_of(code, msg));
            }
            // The shard as it is now: closing or deletion may have happened.
            let (end, encrypted, children) = {
                let m = self.streams.read();
                let s = match m.streams.get(&self.stream) {
                    Some(s)
                        if s.tag == self.tag
                            && matches!(
                                crate::effective_status(s),
                                Status::Active | Status::Updating
                            ) =>
                    {
                        s
                    }
                    _ => return Err(self.streams.not_found(&self.stream)),
                };
                let shard = s
                    .shard(self.shard_index)
                    .expect("shards are never removed from a live stream");
                (
                    shard.ending_position,
                    s.kms_key_id.is_some(),
                    child_shards(s, shard),
                )
            };
            let end_pos = end.unwrap_or(u64::MAX);
            let want = EVENT_MAX_RECORDS
                .min(end_pos.saturating_sub(self.position).min(usize::MAX as u64) as usize);
            let records = if want > 0 {
                let r =
                    self.streams
                        .log()
                        .read(self.log_id, self.position, want, EVENT_MAX_BYTES)?;
                self.position = r.next_position;
                r.records
            } else {
                Vec::new()
            };
            let bounds = self.streams.log().bounds(self.log_id)?;
            let at_end = self.position >= end_pos;
            if !records.is_empty() || first || at_end {
                first = false;
                let bytes: usize = records.iter().map(|r| r.key.len() + r.value.len()).sum();
                let behind = match (records.last(), bounds.last_timestamp_ms) {
                    (Some(last), Some(tip)) if self.position < bounds.tip => {
                        (tip - last.timestamp_ms).max(0)
                    }
                    _ => 0,
                };
                let list: Vec<Value> = records
                    .into_iter()
                    .map(|r| record_value(self.tag, self.shard_index, r, encrypted))
                    .collect();
                let mut event = Value::map()
                    .with("Records", list)
                    .with("MillisBehindLatest", behind);
                if at_end {
                    event.set("ChildShards", children);
                } else {
                    // Resuming AFTER this number continues exactly here.
                    event.set(
                        "ContinuationSequenceNumber",
                        seqnum::encode_point(self.tag, self.shard_index, self.position),
                    );
                }
                if tx.send(Push::Event(event)).await.is_err() {
                    return Ok(()); // the client went away
                }
                if at_end {
                    return Ok(());
                }
                if limits.enabled {
                    let now = Instant::now();
                    tokens = (tokens
                        + now.duration_since(refilled).as_secs_f64() * PUSH_BYTES_PER_SEC)
                        .min(PUSH_BYTES_PER_SEC);
                    refilled = now;
                    tokens -= bytes as f64;
                    if tokens < 0.0 {
                        tokio::time::sleep(Duration::from_secs_f64(-tokens / PUSH_BYTES_PER_SEC))
                            .await;
                    }
                }
                if self.position < bounds.tip.min(end_pos) {
                    continue; // more is already there
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            let wait = HEARTBEAT.min(deadline - now);
            tokio::select! {
                tip = self.streams.wait_for_data(self.log_id, self.position, wait) => {
                    let tip = tip?;
                    if tip <= self.position {
                        // Quiet: a heartbeat keeps the continuation point fresh.
                        first = true;
                    }
                }
                _ = cancel.changed() => {}
                _ = changes.changed() => {}
                _ = tx.closed() => return Ok(()),
            }
        }
    }
}

fn error_of(code: &str, msg: String) -> StreamsError {
    match code {
        "ResourceInUseException" => StreamsError::ResourceInUse(msg),
        _ => StreamsError::ResourceNotFound(msg),
    }
}
