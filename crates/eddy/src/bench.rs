//! `eddy bench`: a load generator for any Kinesis-compatible endpoint.
//!
//! It creates its own stream, runs the chosen phases, prints a summary and
//! deletes the stream. Requests go over raw HTTP/1.1 keep-alive connections
//! (one per worker) with prebuilt JSON bodies, so that the generator spends
//! as little CPU as possible: it usually shares the machine with the server
//! it measures.

mod body;
mod client;
mod phases;
mod report;
mod stats;
mod stream;

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use client::{Conn, Endpoint};
use phases::{Ctx, Drain, Throughput, Visibility};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// PutRecords throughput (records/s, MB/s).
    PutRecords,
    /// PutRecord throughput (records/s).
    PutRecord,
    /// GetRecords: read back everything written, all shards (MB/s).
    GetRecords,
    /// Put-to-visible latency at a fixed rate (p50/p99).
    Latency,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Endpoint to measure.
    #[arg(long, default_value = "http://127.0.0.1:4567")]
    pub endpoint: String,
    /// Shards of the stream the bench creates.
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// Bytes of data per record.
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Records per PutRecords request.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Concurrent workers (one connection each) for PutRecords and PutRecord.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seconds each timed phase runs (PutRecords, PutRecord, latency).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Records/s sent by the put-to-visible writer.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Records per GetRecords call (drain and put-to-visible reader).
    #[arg(long, default_value_t = 10000)]
    pub limit: u32,
    /// Pause between put-to-visible GetRecords polls, in ms (0: poll again
    /// as soon as an answer arrives).
    #[arg(long, default_value_t = 0)]
    pub poll_ms: u64,
    /// Longest the GetRecords drain may take, in seconds.
    #[arg(long, default_value_t = 120.0)]
    pub drain_timeout: f64,
    /// Phases to run, comma-separated, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "put-records,put-record,get-records,latency"
    )]
    pub phases: Vec<Phase>,
    /// Print the summary as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Everything a run measured.
#[derive(Serialize, Debug)]
pub struct Summary {
    pub endpoint: String,
    pub stream: String,
    pub shards: u32,
    pub record_size: usize,
    pub batch: usize,
    pub concurrency: usize,
    pub duration_s: f64,
    pub rate: u32,
    pub phases: Vec<Phase>,
    pub create_stream_ms: f64,
    pub put_records: Option<Throughput>,
    pub put_record: Option<Throughput>,
    /// Records written only to have something to drain (when the write
    /// phases were not chosen).
    pub prefill: Option<Throughput>,
    pub get_records: Option<Drain>,
    pub put_to_visible: Option<Visibility>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.shards >= 1, "--shards must be at least 1");
    anyhow::ensure!(args.batch >= 1, "--batch must be at least 1");
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    anyhow::ensure!(
        args.duration > 0.0 && args.duration.is_finite(),
        "--duration must be positive"
    );
    anyhow::ensure!(!args.phases.is_empty(), "--phases must name a phase");
    let ep = Endpoint::resolve(&args.endpoint).await?;
    let ctx = Ctx {
        ep: ep.clone(),
        stream: stream::unique_name(),
        record_size: args.record_size,
    };
    let mut admin = Conn::new(ep.clone());
    eprintln!(
        "eddy bench: {} stream {} ({} shards)",
        args.endpoint, ctx.stream, args.shards
    );
    let created = stream::create(&mut admin, &ctx.stream, args.shards)
        .await
        .with_context(|| format!("creating stream {} on {}", ctx.stream, args.endpoint))?;
    let mut summary = Summary {
        endpoint: args.endpoint.clone(),
        stream: ctx.stream.clone(),
        shards: args.shards,
        record_size: args.record_size,
        batch: args.batch,
        concurrency: args.concurrency,
        duration_s: args.duration,
        rate: args.rate,
        phases: args.phases.clone(),
        create_stream_ms: created.as_secs_f64() * 1000.0,
        put_records: None,
        put_record: None,
        prefill: None,
        get_records: None,
        put_to_visible: None,
    };
    let outcome = tokio::select! {
        r = run_phases(&args, &ctx, &mut admin, &mut summary) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let mut cleanup = Conn::new(ep);
    if let Err(e) = stream::delete(&mut cleanup, &ctx.stream).await {
        eprintln!("warning: could not delete stream {}: {e:#}", ctx.stream);
    }
    outcome?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", report::table(&summary));
    }
    Ok(())
}

async fn run_phases(
    args: &BenchArgs,
    ctx: &Ctx,
    admin: &mut Conn,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let duration = Duration::from_secs_f64(args.duration);
    let shards = stream::shards(admin, &ctx.stream).await?;
    for phase in &args.phases {
        match phase {
            Phase::PutRecords => {
                let bodies = phases::put_records_bodies(ctx, args.batch, args.concurrency);
                let r = phases::throughput(
                    ctx,
                    "PutRecords",
                    phases::PUT_RECORDS,
                    bodies,
                    args.batch as u64,
                    args.concurrency,
                    duration,
                )
                .await;
                summary.put_records = Some(r);
            }
            Phase::PutRecord => {
                let bodies = phases::put_record_bodies(ctx);
                let r = phases::throughput(
                    ctx,
                    "PutRecord",
                    phases::PUT_RECORD,
                    bodies,
                    1,
                    args.concurrency,
                    duration,
                )
                .await;
                summary.put_record = Some(r);
            }
            Phase::GetRecords => {
                let written = |t: &Option<Throughput>| t.as_ref().map_or(0, |t| t.records);
                let mut expected = written(&summary.put_records) + written(&summary.put_record);
                if expected == 0 {
                    let bodies = phases::put_records_bodies(ctx, args.batch, args.concurrency);
                    let r = phases::throughput(
                        ctx,
                        "prefill (PutRecords)",
                        phases::PUT_RECORDS,
                        bodies,
                        args.batch as u64,
                        args.concurrency,
                        duration,
                    )
                    .await;
                    expected = r.records;
                    summary.prefill = Some(r);
                }
                let r = phases::drain(
                    ctx,
                    &shards,
                    expected,
                    args.limit,
                    Duration::from_secs_f64(args.drain_timeout),
                )
                .await;
                summary.get_records = Some(r);
            }
            Phase::Latency => {
                // The shard that hash key 0 routes to; the writer uses an
                // explicit hash key so every record lands there.
                let shard = shards
                    .iter()
                    .find(|s| s.starting_hash_key == "0")
                    .unwrap_or(&shards[0]);
                let r = phases::visibility(
                    ctx,
                    shard,
                    args.rate,
                    duration,
                    Duration::from_millis(args.poll_ms),
                )
                .await?;
                summary.put_to_visible = Some(r);
            }
        }
    }
    Ok(())
}
