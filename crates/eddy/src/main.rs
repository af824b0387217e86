//! `eddy`: one binary for the whole platform. Subcommands: `serve` runs the
//! Kinesis-compatible endpoint; `bench` drives load against any endpoint.

mod bench;
mod config;
mod put;
mod tail;

use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "eddy",
    version,
    about = "Kinesis-compatible streaming data platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Kinesis Data Streams API.
    Serve(config::ServeArgs),
    /// Measure an endpoint (Eddy or any Kinesis-compatible one).
    Bench(bench::BenchArgs),
    /// Send records from stdin or files through the producer library.
    Put(put::PutArgs),
    /// Print every record of a stream as JSON lines, alone or as one worker of a consumer group.
    Tail(tail::TailArgs),
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDDY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tune_allocator();
    match cli.command {
        Command::Serve(args) => {
            init_tracing();
            let started = Instant::now();
            let cfg = config::ServeConfig::resolve(args)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(serve(cfg, started))
        }
        Command::Bench(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(bench::run(args))
        }
        Command::Put(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(put::run(args))
        }
        Command::Tail(args) => {
            init_tracing();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(tail::run(args))
        }
    }
}

async fn serve(cfg: config::ServeConfig, started: Instant) -> anyhow::Result<()> {
    // Parse the embedded service models (a few ms) while storage opens, not
    // during the first request.
    let models = std::thread::spawn(|| {
        eddy_wire::kinesis();
        eddy_wire::dynamodb();
    });
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let mut log_cfg = eddy_log::LogConfig::new(cfg.data_dir.join("log"));
    log_cfg.durability = cfg.durability;
    let log = eddy_log::Log::open(log_cfg).context("opening the storage engine")?;
    let mut scfg = eddy_streams::StreamsConfig::new(cfg.data_dir.join("meta"));
    scfg.region = cfg.region.clone();
    scfg.account_id = cfg.account_id.clone();
    scfg.transition = cfg.transition;
    scfg.shard_limit = cfg.shard_limit;
    scfg.limits = cfg.limits;
    scfg.on_demand_stream_limit = cfg.on_demand_stream_limit;
    scfg.scaling = cfg.scaling;
    let streams =
        eddy_streams::Streams::open(scfg, log.clone()).context("opening stream metadata")?;
    streams.spawn_autoscaler();
    let dynamo = eddy_dynamo::Dynamo::open(cfg.data_dir.join("dynamo"))
        .context("opening DynamoDB tables")?;
    let app = eddy_server::App::new(streams, dynamo);
    let server = eddy_server::Server::bind(cfg.listen, app)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let addr = server.local_addr()?;
    models
        .join()
        .map_err(|_| anyhow::anyhow!("parsing the embedded service models failed"))?;
    tracing::info!(
        %addr,
        data_dir = %cfg.data_dir.display(),
        durability = ?cfg.durability,
        region = %cfg.region,
        account = %cfg.account_id,
        shard_limits = cfg.limits.enabled,
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        "eddy is listening on http://{addr}"
    );
    server.run(shutdown_signal()).await?;
    tracing::info!("shutting down: flushing storage");
    log.shutdown().await.context("flushing storage")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("signal received");
}

/// glibc's malloc serves blocks above a moving threshold (128 KiB to start)
/// with a fresh mmap and gives the top of the heap back above another: every
/// multi-megabyte GetRecords answer and log read then costs page faults and
/// zeroing on the way in and munmap on the way out (~12% of the server's CPU
/// when draining a stream; the producer's multi-megabyte PutRecords bodies
/// in `eddy put` likewise). Fixed thresholds keep such buffers in the heap
/// for reuse; memory use at idle is unchanged, and at most 64 MiB of free heap
/// is kept after a burst. Other allocators and libcs are left alone.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}
