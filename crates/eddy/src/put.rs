//! `eddy put`: a command-line producer on the `eddy-producer` library.
//!
//! Reads records from stdin or files, one line per record (the newline is
//! not part of the data; empty lines are skipped), and sends them to a
//! stream through the library (batching, optional KPL aggregation, retries).
//! Partition keys: `--partition-key KEY` for every record; or
//! `--partition-key-field FIELD` to take a JSON line's top-level field
//! (strings as they are, other values as JSON text), falling back to a
//! random key for lines without it; otherwise a random key per record.
//!
//! `--bench N` sends N synthetic records of `--record-size` bytes (default
//! 100) with random partition keys instead of reading input: the producer
//! benchmark of docs/benchmarks.md.
//!
//! Progress (records/s, MB/s, retries) goes to stderr once a second when it
//! is a terminal (or with `--progress`); a summary ends the run, on stdout.
//! The exit code is 1 if any record finally failed.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use eddy_producer::{PendingRecord, Producer, ProducerConfig, SdkClient};
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

#[derive(clap::Args, Debug)]
pub struct PutArgs {
    /// Stream to write to.
    #[arg(long)]
    pub stream: String,
    /// Endpoint URL (Eddy, or any Kinesis-compatible one); without it the
    /// normal AWS endpoint of the configured region is used. Credentials
    /// and region come from the usual AWS chain (environment, profile...).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Pack records into KPL aggregates.
    #[arg(long)]
    pub aggregate: bool,
    /// Partition key of every record.
    #[arg(long, conflicts_with = "partition_key_field")]
    pub partition_key: Option<String>,
    /// Top-level field of each JSON line to use as partition key.
    #[arg(long)]
    pub partition_key_field: Option<String>,
    /// Input files, read in order ("-" is stdin); stdin when none.
    pub files: Vec<PathBuf>,
    /// Send N synthetic records instead of reading input (benchmark).
    #[arg(long, value_name = "N", conflicts_with_all = ["files", "partition_key", "partition_key_field"])]
    pub bench: Option<u64>,
    /// Bytes per synthetic record (with --bench).
    #[arg(long, default_value_t = 100, requires = "bench")]
    pub record_size: usize,
    /// Create the stream with this many shards if it does not exist.
    #[arg(long, value_name = "SHARDS")]
    pub create_shards: Option<i32>,
    /// Longest a record waits in buffers, in ms (RecordMaxBufferedTime).
    #[arg(long, default_value_t = 100)]
    pub max_buffered_ms: u64,
    /// Record deadline in seconds (RecordTtl).
    #[arg(long, default_value_t = 30)]
    pub ttl_secs: u64,
    /// Per-shard pacing as a percentage of the shard limits; 0 disables it.
    #[arg(long, default_value_t = 150.0)]
    pub rate_limit: f64,
    /// Keep each partition key's records in order.
    #[arg(long)]
    pub ordered: bool,
    /// Largest aggregate in bytes.
    #[arg(long, default_value_t = 51_200)]
    pub aggregation_max_bytes: usize,
    /// Most records accepted and not yet completed.
    #[arg(long, default_value_t = 200_000)]
    pub max_outstanding: usize,
    /// Concurrent PutRecords calls.
    #[arg(long, default_value_t = 24)]
    pub max_connections: usize,
    /// Show progress even when stderr is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Lines handed from the reader thread to the sender, per message.
const LINES_PER_CHUNK: usize = 1024;
/// Chunks in flight between reader thread and sender.
const READ_AHEAD_CHUNKS: usize = 16;
/// Pending results kept before the oldest is awaited.
const RESULT_QUEUE: usize = 256 * 1024;
/// Concurrent record generators with --bench.
const BENCH_GENERATORS: u64 = 2;
/// First failures printed in full.
const ERRORS_SHOWN: u64 = 10;

#[derive(Debug, Default, serde::Serialize)]
struct Summary {
    records: u64,
    bytes: u64,
    failed: u64,
    keyless_lines: u64,
    kinesis_records: u64,
    put_records_calls: u64,
    retries: u64,
    throttles: u64,
    seconds: f64,
    records_per_sec: f64,
    mb_per_sec: f64,
}

/// Results in send order: completed ones are taken from the front as the
/// run goes (no task or channel per record); at most `RESULT_QUEUE` wait.
#[derive(Default)]
struct Results {
    pending: std::collections::VecDeque<PendingRecord>,
    failed: u64,
}

impl Results {
    fn record(&mut self, r: Result<eddy_producer::PutResult, eddy_producer::PutError>) {
        if let Err(e) = r {
            self.failed += 1;
            if self.failed <= ERRORS_SHOWN {
                eprintln!("eddy put: record failed: {e}");
            }
        }
    }

    async fn push(&mut self, p: PendingRecord) {
        self.pending.push_back(p);
        while let Some(front) = self.pending.front_mut() {
            match front.try_result() {
                Some(r) => {
                    self.pending.pop_front();
                    self.record(r);
                }
                None if self.pending.len() > RESULT_QUEUE => {
                    let p = self.pending.pop_front().expect("front");
                    let r = p.await;
                    self.record(r);
                }
                None => break,
            }
        }
    }

    async fn finish(mut self) -> u64 {
        while let Some(p) = self.pending.pop_front() {
            let r = p.await;
            self.record(r);
        }
        self.failed
    }
}

/// 16 random hex digits (as `format!("{:016x}")`, without the formatting
/// machinery).
fn random_key(rng: &mut impl Rng) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let v = rng.r#gen::<u64>();
    let mut key = String::with_capacity(16);
    for i in (0..16).rev() {
        key.push(HEX[(v >> (i * 4)) as usize & 0xf] as char);
    }
    key
}

fn key_from_json(line: &[u8], field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    match v.get(field)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.chars().take(256).collect()),
        serde_json::Value::Null | serde_json::Value::String(_) => None,
        other => Some(other.to_string().chars().take(256).collect()),
    }
}

/// Reads input lines on a thread, in chunks, through a bounded channel.
fn spawn_reader(files: Vec<PathBuf>, tx: mpsc::Sender<std::io::Result<Vec<Vec<u8>>>>) {
    std::thread::spawn(move || {
        let inputs = if files.is_empty() {
            vec![PathBuf::from("-")]
        } else {
            files
        };
        for path in inputs {
            let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
                Box::new(std::io::BufReader::with_capacity(1 << 20, std::io::stdin()))
            } else {
                match std::fs::File::open(&path) {
                    Ok(f) => Box::new(std::io::BufReader::with_capacity(1 << 20, f)),
                    Err(e) => {
                        let e = std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            };
            let mut chunk = Vec::with_capacity(LINES_PER_CHUNK);
            for line in reader.split(b'\n') {
                match line {
                    Ok(mut l) => {
                        if l.last() == Some(&b'\r') {
                            l.pop();
                        }
                        if l.is_empty() {
                            continue;
                        }
                        chunk.push(l);
                        if chunk.len() == LINES_PER_CHUNK {
                            if tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err() {
                                return;
                            }
                            chunk.reserve(LINES_PER_CHUNK);
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
            if !chunk.is_empty() && tx.blocking_send(Ok(chunk)).is_err() {
                return;
            }
        }
    });
}

async fn ensure_stream(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shards: i32,
) -> anyhow::Result<()> {
    if client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .is_err()
    {
        client
            .create_stream()
            .stream_name(stream)
            .shard_count(shards)
            .send()
            .await
            .with_context(|| format!("creating stream {stream}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .with_context(|| format!("describing stream {stream}"))?;
        let status = d
            .stream_description_summary()
            .map(|s| s.stream_status().as_str().to_string());
        if status.as_deref() == Some("ACTIVE") {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "stream {stream} did not become ACTIVE"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn progress_line(s: &eddy_producer::Stats, elapsed: f64, last: &mut (f64, u64, u64)) -> String {
    let dt = (elapsed - last.0).max(1e-6);
    let rps = (s.user_records_put - last.1) as f64 / dt;
    let mbps = (s.user_bytes_put - last.2) as f64 / dt / 1e6;
    *last = (elapsed, s.user_records_put, s.user_bytes_put);
    format!(
        "{:>7.1}s  {} records  {:.0} records/s  {:.2} MB/s  retries {}  throttles {}  failed {}  outstanding {}",
        elapsed, s.user_records_put, rps, mbps, s.retries, s.throttles, s.failed, s.outstanding
    )
}

pub async fn run(args: PutArgs) -> anyhow::Result<()> {
    let client = SdkClient::from_env(args.endpoint.as_deref()).await;
    if let Some(shards) = args.create_shards {
        ensure_stream(client.inner(), &args.stream, shards).await?;
    }
    let config = ProducerConfig {
        aggregation: args.aggregate,
        aggregation_max_bytes: args.aggregation_max_bytes,
        max_buffered_time: Duration::from_millis(args.max_buffered_ms),
        record_ttl: Duration::from_secs(args.ttl_secs),
        rate_limit_percent: (args.rate_limit > 0.0).then_some(args.rate_limit),
        ordered: args.ordered,
        max_outstanding_records: args.max_outstanding,
        max_inflight_requests: args.max_connections,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, config);
    let started = Instant::now();

    // Progress display.
    let show = args.progress || std::io::stderr().is_terminal();
    let ticker = show.then(|| {
        let p = producer.clone();
        tokio::spawn(async move {
            let mut last = (0.0, 0u64, 0u64);
            let tty = std::io::stderr().is_terminal();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let line = progress_line(&p.stats(), started.elapsed().as_secs_f64(), &mut last);
                let mut err = std::io::stderr().lock();
                if tty {
                    let _ = write!(err, "\r\x1b[2K{line}");
                } else {
                    let _ = writeln!(err, "{line}");
                }
                let _ = err.flush();
            }
        })
    });

    let mut summary = Summary::default();
    let mut results = Results::default();
    let mut bench_failed = 0u64;
    let mut rng = rand::thread_rng();
    let stream = args.stream.clone();
    let mut input_error = None;
    if let Some(n) = args.bench {
        // Random buffers; records are slices of them (no copy per record).
        let size = args.record_size.max(1);
        let span = 4096usize;
        // Generators on the runtime's workers, so making records is not
        // bound to one thread; each slices its own buffer (as each
        // connection of a server would read into its own).
        let mut gens = Vec::new();
        for g in 0..BENCH_GENERATORS {
            let count = n / BENCH_GENERATORS + u64::from(g < n % BENCH_GENERATORS);
            let mut buf = vec![0u8; size * span];
            rng.fill(&mut buf[..]);
            let buf = Bytes::from(buf);
            let (producer, stream) = (producer.clone(), stream.clone());
            gens.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::from_entropy();
                let mut results = Results::default();
                for i in 0..count {
                    let at = (i as usize % span) * size;
                    let key = random_key(&mut rng);
                    let p = producer
                        .send(&stream, key, buf.slice(at..at + size))
                        .await?;
                    results.push(p).await;
                }
                anyhow::Ok((count, results.finish().await))
            }));
        }
        for g in gens {
            let (count, failed) = g.await.context("generator")??;
            summary.records += count;
            summary.bytes += count * size as u64;
            bench_failed += failed;
        }
    } else {
        let (tx, mut rx) = mpsc::channel(READ_AHEAD_CHUNKS);
        spawn_reader(args.files.clone(), tx);
        while let Some(chunk) = rx.recv().await {
            let lines = match chunk {
                Ok(lines) => lines,
                Err(e) => {
                    input_error = Some(e);
                    break;
                }
            };
            for line in lines {
                let key = match (&args.partition_key, &args.partition_key_field) {
                    (Some(k), _) => k.clone(),
                    (None, Some(field)) => key_from_json(&line, field).unwrap_or_else(|| {
                        summary.keyless_lines += 1;
                        random_key(&mut rng)
                    }),
                    (None, None) => random_key(&mut rng),
                };
                summary.bytes += line.len() as u64;
                let p = producer
                    .send(&stream, key, Bytes::from(line))
                    .await
                    .with_context(|| format!("record {}", summary.records + 1))?;
                summary.records += 1;
                results.push(p).await;
            }
        }
    }
    producer.shutdown().await;
    summary.failed = results.finish().await + bench_failed;
    if let Some(t) = ticker {
        t.abort();
        if std::io::stderr().is_terminal() {
            eprintln!();
        }
    }
    let st = producer.stats();
    summary.seconds = started.elapsed().as_secs_f64();
    summary.kinesis_records = st.kinesis_records_put;
    summary.put_records_calls = st.requests;
    summary.retries = st.retries;
    summary.throttles = st.throttles;
    summary.records_per_sec = (summary.records - summary.failed) as f64 / summary.seconds;
    summary.mb_per_sec = st.user_bytes_put as f64 / summary.seconds / 1e6;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "put {} of {} records ({:.1} MB) to {} in {:.2} s: {:.0} records/s, {:.2} MB/s",
            summary.records - summary.failed,
            summary.records,
            summary.bytes as f64 / 1e6,
            args.stream,
            summary.seconds,
            summary.records_per_sec,
            summary.mb_per_sec
        );
        println!(
            "{} Kinesis records in {} PutRecords calls; {} retries, {} throttles, {} failed{}",
            summary.kinesis_records,
            summary.put_records_calls,
            summary.retries,
            summary.throttles,
            summary.failed,
            if summary.keyless_lines > 0 {
                format!(
                    "; {} lines without the key field got random keys",
                    summary.keyless_lines
                )
            } else {
                String::new()
            }
        );
    }
    if let Some(e) = input_error {
        return Err(e).context("reading input");
    }
    anyhow::ensure!(
        summary.failed == 0,
        "{} of {} records failed",
        summary.failed,
        summary.records
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_keys_are_16_lowercase_hex_digits() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..100 {
            let k = random_key(&mut rng);
            assert_eq!(k.len(), 16);
            let v = u64::from_str_radix(&k, 16).unwrap();
            assert_eq!(k, format!("{v:016x}"));
        }
    }

    #[test]
    fn json_field_becomes_the_partition_key() {
        assert_eq!(
            key_from_json(br#"{"user":"ann","n":1}"#, "user").as_deref(),
            Some("ann")
        );
        assert_eq!(
            key_from_json(br#"{"user":42}"#, "user").as_deref(),
            Some("42")
        );
        assert_eq!(key_from_json(br#"{"other":1}"#, "user"), None);
        assert_eq!(key_from_json(br#"{"user":""}"#, "user"), None);
        assert_eq!(key_from_json(b"not json", "user"), None);
    }
}
