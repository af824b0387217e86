//! The measured phases: PutRecords and PutRecord throughput, GetRecords
//! drain, and put-to-visible latency at a fixed rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use tokio::task::JoinSet;

use super::body;
use super::client::{Conn, Endpoint, Outcome};
use super::stats::{Counters, CpuMeter, ErrorTally, Failure, Progress, Quantiles, backoff};
use super::stream::{self, Shard};

pub const PUT_RECORDS: &str = "Kinesis_20131202.PutRecords";
pub const PUT_RECORD: &str = "Kinesis_20131202.PutRecord";
pub const GET_RECORDS: &str = "Kinesis_20131202.GetRecords";
/// How long the put-to-visible reader keeps looking for acknowledged records
/// after the last send.
pub const VISIBILITY_GRACE: Duration = Duration::from_secs(3);

/// Result of a timed write phase.
#[derive(Serialize, Debug, Clone)]
pub struct Throughput {
    pub requests: u64,
    /// Records acknowledged (failed records of a PutRecords are not counted).
    pub records: u64,
    pub failed_records: u64,
    pub seconds: f64,
    pub records_per_s: f64,
    /// Payload megabytes (10^6 bytes of record data) per second.
    pub mb_per_s: f64,
    /// Per-request latency (send to full answer).
    pub request_latency: Option<Quantiles>,
    pub errors: Vec<ErrorTally>,
    /// CPU cores the load generator itself used during the phase.
    pub generator_cpu_cores: Option<f64>,
}

/// Result of reading back everything that was written.
#[derive(Serialize, Debug, Clone)]
pub struct Drain {
    pub calls: u64,
    pub records: u64,
    pub expected_records: u64,
    /// Whether every shard was read to its tip before the time limit.
    pub complete: bool,
    pub bytes: u64,
    pub seconds: f64,
    pub records_per_s: f64,
    pub mb_per_s: f64,
    pub errors: Vec<ErrorTally>,
    /// CPU cores the load generator itself used during the phase.
    pub generator_cpu_cores: Option<f64>,
}

/// Result of the put-to-visible phase.
#[derive(Serialize, Debug, Clone)]
pub struct Visibility {
    pub target_rate: u32,
    pub shard: String,
    /// Records scheduled (rate x duration).
    pub planned: u64,
    /// Records sent (fewer than planned when the server could not keep up:
    /// the writers stop one second after the planned end).
    pub sent: u64,
    pub acknowledged: u64,
    pub seen: u64,
    /// Acknowledged records the reader never saw within the grace period.
    pub missing: u64,
    /// Achieved send rate (records/s).
    pub send_rate: f64,
    /// Time from sending PutRecord to receiving the GetRecords answer that
    /// contains the record.
    pub latency: Option<Quantiles>,
    /// PutRecord round trip (send to acknowledgement).
    pub ack_latency: Option<Quantiles>,
    pub get_records_calls: u64,
    pub empty_polls: u64,
    pub throttled_polls: u64,
    pub errors: Vec<ErrorTally>,
    /// CPU cores the load generator itself used during the phase.
    pub generator_cpu_cores: Option<f64>,
}

/// Shared settings of all phases.
pub struct Ctx {
    pub ep: Arc<Endpoint>,
    pub stream: String,
    pub record_size: usize,
}

/// Runs `concurrency` workers, each on its own connection, sending the
/// prebuilt bodies round-robin until `duration` has passed.
pub async fn throughput(
    ctx: &Ctx,
    label: &'static str,
    target: &'static str,
    bodies: Arc<Vec<Bytes>>,
    records_per_body: u64,
    concurrency: usize,
    duration: Duration,
) -> Throughput {
    let counters = Arc::new(Counters::default());
    let failed = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(label, counters.clone(), Some(duration));
    // Connect everyone before the clock starts.
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let mut c = Conn::new(ctx.ep.clone());
        if let Err(e) = c.warm().await {
            counters
                .errors
                .add("transport".into(), || format!("connect: {e:#}"));
        }
        conns.push(c);
    }
    let start = Instant::now();
    let cpu = CpuMeter::start();
    let deadline = start + duration;
    let record_size = ctx.record_size as u64;
    let mut set = JoinSet::new();
    for (w, mut conn) in conns.into_iter().enumerate() {
        let bodies = bodies.clone();
        let counters = counters.clone();
        let failed = failed.clone();
        set.spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut i = w;
            let mut attempt = 0;
            while Instant::now() < deadline {
                let body = bodies[i % bodies.len()].clone();
                i += concurrency;
                let t = Instant::now();
                let outcome = conn.call(target, body).await;
                match outcome {
                    Outcome::Ok(b) => {
                        lat.push(t.elapsed().as_micros() as u64);
                        let bad = if records_per_body > 1 {
                            body::find_u64(&b, "FailedRecordCount")
                                .unwrap_or(0)
                                .min(records_per_body)
                        } else {
                            0
                        };
                        let ok = records_per_body - bad;
                        counters.add(1, ok, ok * record_size);
                        if bad > 0 {
                            failed.fetch_add(bad, Ordering::Relaxed);
                            let code = body::find_string(&b, "ErrorCode").unwrap_or_default();
                            counters.errors.add(
                                format!("PutRecords answer with FailedRecordCount > 0 ({code})"),
                                || body::find_string(&b, "ErrorMessage").unwrap_or_default(),
                            );
                            attempt += 1;
                            tokio::time::sleep(backoff(&Failure::Throttled, attempt)).await;
                        } else {
                            attempt = 0;
                        }
                    }
                    other => {
                        counters.requests.fetch_add(1, Ordering::Relaxed);
                        failed.fetch_add(records_per_body, Ordering::Relaxed);
                        let f = counters.errors.record(&other);
                        attempt += 1;
                        tokio::time::sleep(backoff(&f, attempt)).await;
                    }
                }
            }
            lat
        });
    }
    let mut lat = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(mut l) = r {
            lat.append(&mut l);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    progress.finish().await;
    let records = counters.records.load(Ordering::Relaxed);
    Throughput {
        requests: counters.requests.load(Ordering::Relaxed),
        records,
        failed_records: failed.load(Ordering::Relaxed),
        seconds,
        records_per_s: records as f64 / seconds,
        mb_per_s: counters.bytes.load(Ordering::Relaxed) as f64 / seconds / 1e6,
        request_latency: Quantiles::from_micros(lat),
        errors: counters.errors.tallies(),
        generator_cpu_cores: cpu.cores(),
    }
}

pub fn put_records_bodies(ctx: &Ctx, batch: usize, concurrency: usize) -> Arc<Vec<Bytes>> {
    let n = (concurrency * 2).clamp(4, 64);
    Arc::new(
        (0..n)
            .map(|i| body::put_records_body(&ctx.stream, batch, ctx.record_size, i as u64))
            .collect(),
    )
}

pub fn put_record_bodies(ctx: &Ctx) -> Arc<Vec<Bytes>> {
    Arc::new(
        (0..4096)
            .map(|i| body::put_record_body(&ctx.stream, ctx.record_size, i))
            .collect(),
    )
}

/// Reads every shard from TRIM_HORIZON to its tip (one connection per
/// shard, `limit` records per GetRecords), at most for `max_time`.
pub async fn drain(
    ctx: &Ctx,
    shards: &[Shard],
    expected: u64,
    limit: u32,
    max_time: Duration,
) -> Drain {
    let counters = Arc::new(Counters::default());
    let progress = Progress::start("GetRecords drain", counters.clone(), None);
    let start = Instant::now();
    let cpu = CpuMeter::start();
    let deadline = start + max_time;
    let mut set = JoinSet::new();
    for shard in shards {
        let counters = counters.clone();
        let ep = ctx.ep.clone();
        let stream = ctx.stream.clone();
        let shard = shard.id.clone();
        set.spawn(async move {
            let mut conn = Conn::new(ep);
            let mut it =
                match stream::shard_iterator(&mut conn, &stream, &shard, "TRIM_HORIZON").await {
                    Ok(it) => it,
                    Err(e) => {
                        counters
                            .errors
                            .add("GetShardIterator".into(), || format!("{e:#}"));
                        return false;
                    }
                };
            let mut attempt = 0;
            loop {
                if Instant::now() > deadline {
                    return false;
                }
                let req = json!({"ShardIterator": it, "Limit": limit});
                let body = Bytes::from(serde_json::to_vec(&req).expect("JSON"));
                match conn.call(GET_RECORDS, body).await {
                    Outcome::Ok(b) => {
                        attempt = 0;
                        let scan = body::scan_get_records(&b);
                        counters.add(1, scan.records, scan.data_bytes);
                        match scan.next_iterator {
                            None => return true,
                            Some(next) => it = next,
                        }
                        if scan.records == 0 && scan.millis_behind.unwrap_or(0) == 0 {
                            return true;
                        }
                    }
                    other => {
                        counters.requests.fetch_add(1, Ordering::Relaxed);
                        let f = counters.errors.record(&other);
                        attempt += 1;
                        tokio::time::sleep(backoff(&f, attempt)).await;
                    }
                }
            }
        });
    }
    let mut complete = true;
    while let Some(r) = set.join_next().await {
        complete &= r.unwrap_or(false);
    }
    let seconds = start.elapsed().as_secs_f64();
    progress.finish().await;
    let records = counters.records.load(Ordering::Relaxed);
    let bytes = counters.bytes.load(Ordering::Relaxed);
    Drain {
        calls: counters.requests.load(Ordering::Relaxed),
        records,
        expected_records: expected,
        complete: complete && records >= expected,
        bytes,
        seconds,
        records_per_s: records as f64 / seconds,
        mb_per_s: bytes as f64 / seconds / 1e6,
        errors: counters.errors.tallies(),
        generator_cpu_cores: cpu.cores(),
    }
}

/// Writers send PutRecord at `rate` records/s (open loop: each record has a
/// scheduled send time, spread over a few connections so one slow
/// acknowledgement does not delay the next send) to one shard; a reader
/// loops GetRecords on that shard from LATEST and notes, for each record,
/// the time from sending its PutRecord to receiving the GetRecords answer
/// that holds it.
pub async fn visibility(
    ctx: &Ctx,
    shard: &Shard,
    rate: u32,
    duration: Duration,
    poll_interval: Duration,
) -> anyhow::Result<Visibility> {
    let rate = rate.max(1);
    let total = ((rate as f64 * duration.as_secs_f64()).round() as usize).max(1);
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let writers = (rate as usize).div_ceil(64).clamp(4, 32);
    let counters = Arc::new(Counters::default());
    let mut admin = Conn::new(ctx.ep.clone());
    let mut it = stream::shard_iterator(&mut admin, &ctx.stream, &shard.id, "LATEST").await?;
    drop(admin);
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..total as u64)
            .map(|id| {
                body::latency_body(&ctx.stream, id, ctx.record_size, &shard.starting_hash_key)
            })
            .collect(),
    );
    // Send time of each record in µs since t0, plus one; 0 = not sent or failed.
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let progress = Progress::start("put-to-visible", counters.clone(), Some(duration));

    let mut conns = Vec::with_capacity(writers);
    for _ in 0..writers {
        let mut c = Conn::new(ctx.ep.clone());
        c.warm().await?;
        conns.push(c);
    }
    let mut reader_conn = Conn::new(ctx.ep.clone());
    reader_conn.warm().await?;
    let t0 = Instant::now() + Duration::from_millis(20);
    let cpu = CpuMeter::start();
    let writers_done = Arc::new(AtomicBool::new(false));

    // Reader.
    let reader = {
        let sent = sent.clone();
        let counters = counters.clone();
        let writers_done = writers_done.clone();
        tokio::spawn(async move {
            let mut conn = reader_conn;
            let mut seen = vec![false; sent.len()];
            let mut seen_count = 0u64;
            let mut samples = Vec::with_capacity(sent.len());
            let (mut calls, mut empty, mut throttled) = (0u64, 0u64, 0u64);
            let mut done: Option<(Instant, u64)> = None;
            let mut attempt = 0;
            loop {
                if done.is_none() && writers_done.load(Ordering::Acquire) {
                    let acked = sent
                        .iter()
                        .filter(|s| s.load(Ordering::Relaxed) != 0)
                        .count() as u64;
                    done = Some((Instant::now(), acked));
                }
                if let Some((at, acked)) = done
                    && (seen_count >= acked || at.elapsed() > VISIBILITY_GRACE)
                {
                    break;
                }
                let req = json!({"ShardIterator": it, "Limit": 10000});
                let body = Bytes::from(serde_json::to_vec(&req).expect("JSON"));
                calls += 1;
                match conn.call(GET_RECORDS, body).await {
                    Outcome::Ok(b) => {
                        attempt = 0;
                        let now = Instant::now().saturating_duration_since(t0).as_micros() as u64;
                        let mut n = 0;
                        for data in body::data_fields(&b) {
                            n += 1;
                            let Some(id) = body::latency_id(data) else {
                                continue;
                            };
                            let id = id as usize;
                            if id >= sent.len() || seen[id] {
                                continue;
                            }
                            let s = sent[id].load(Ordering::Acquire);
                            if s == 0 {
                                continue;
                            }
                            seen[id] = true;
                            seen_count += 1;
                            samples.push(now.saturating_sub(s - 1));
                        }
                        if n == 0 {
                            empty += 1;
                        }
                        match body::find_string(&b, "NextShardIterator") {
                            Some(next) => it = next,
                            None => break,
                        }
                        if !poll_interval.is_zero() {
                            tokio::time::sleep(poll_interval).await;
                        }
                    }
                    other => {
                        let f = counters.errors.record(&other);
                        if f == Failure::Throttled {
                            throttled += 1;
                        }
                        attempt += 1;
                        tokio::time::sleep(backoff(&f, attempt)).await;
                    }
                }
            }
            (samples, seen_count, calls, empty, throttled)
        })
    };

    // Writers.
    let give_up = t0 + duration + Duration::from_secs(1);
    let attempted = Arc::new(AtomicU64::new(0));
    let ack_lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total)));
    let mut set = JoinSet::new();
    for (w, mut conn) in conns.into_iter().enumerate() {
        let bodies = bodies.clone();
        let sent = sent.clone();
        let counters = counters.clone();
        let ack_lat = ack_lat.clone();
        let attempted = attempted.clone();
        let record_size = ctx.record_size as u64;
        set.spawn(async move {
            let mut lat = Vec::with_capacity(total / writers + 1);
            for id in (w..total).step_by(writers) {
                tokio::time::sleep_until((t0 + period * id as u32).into()).await;
                let t = Instant::now();
                if t > give_up {
                    // The server cannot keep up with the rate: stop rather
                    // than run on; the achieved send rate tells.
                    break;
                }
                attempted.fetch_add(1, Ordering::Relaxed);
                let at = t.saturating_duration_since(t0).as_micros() as u64;
                sent[id].store(at + 1, Ordering::Release);
                let outcome = conn.call(PUT_RECORD, bodies[id].clone()).await;
                match outcome {
                    Outcome::Ok(_) => {
                        lat.push(t.elapsed().as_micros() as u64);
                        counters.add(1, 1, record_size);
                    }
                    other => {
                        sent[id].store(0, Ordering::Release);
                        counters.requests.fetch_add(1, Ordering::Relaxed);
                        counters.errors.record(&other);
                    }
                }
            }
            ack_lat.lock().expect("lock").append(&mut lat);
        });
    }
    while set.join_next().await.is_some() {}
    let send_secs = Instant::now().saturating_duration_since(t0).as_secs_f64();
    let sent_count = attempted.load(Ordering::Relaxed);
    writers_done.store(true, Ordering::Release);
    let (samples, seen, calls, empty, throttled) = reader.await?;
    progress.finish().await;
    let acknowledged = sent
        .iter()
        .filter(|s| s.load(Ordering::Relaxed) != 0)
        .count() as u64;
    let ack = std::mem::take(&mut *ack_lat.lock().expect("lock"));
    Ok(Visibility {
        target_rate: rate,
        shard: shard.id.clone(),
        planned: total as u64,
        sent: sent_count,
        acknowledged,
        seen,
        missing: acknowledged.saturating_sub(seen),
        send_rate: sent_count as f64 / send_secs.max(1e-9),
        latency: Quantiles::from_micros(samples),
        ack_latency: Quantiles::from_micros(ack),
        get_records_calls: calls,
        empty_polls: empty,
        throttled_polls: throttled,
        errors: counters.errors.tallies(),
        generator_cpu_cores: cpu.cores(),
    })
}
