//! `eddy tail`: prints every record of a stream as JSON lines, following
//! resharding (parents before children), through the consumer library. With
//! `--group APP` it is one worker of consumer group APP: leases and
//! checkpoints live in the DynamoDB table APP, so several `eddy tail --group`
//! processes share the shards and take over from each other.

use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use aws_sdk_kinesis::config::Credentials;
use base64::Engine;
use eddy_consumer::{
    CheckpointError, Checkpointer, ConsumerConfig, DynamoLeaseStore, InitialPosition,
    InitializeInput, MemoryLeaseStore, ProcessRecordsInput, RecordProcessor, RetrievalMode,
    UserRecord, Worker,
};

#[derive(clap::Args)]
pub struct TailArgs {
    /// The stream to read.
    #[arg(long)]
    pub stream: String,
    /// Kinesis endpoint URL (Eddy or any Kinesis-compatible one); without it,
    /// the AWS endpoint of the configured region.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Where to start: trim-horizon, latest or at-timestamp:T (T in RFC 3339
    /// or epoch seconds). With --group it applies only when the group has no
    /// checkpoints yet.
    #[arg(long, default_value = "trim-horizon")]
    pub from: String,
    /// Read through enhanced fan-out (SubscribeToShard) instead of GetRecords.
    #[arg(long)]
    pub efo: bool,
    /// Consumer group: share the shards with the other workers of this
    /// application through the lease table named after it.
    #[arg(long)]
    pub group: Option<String>,
    /// DynamoDB endpoint for the lease table (default: --endpoint).
    #[arg(long)]
    pub dynamodb_endpoint: Option<String>,
    /// This worker's id in the lease table (default: host and process id).
    #[arg(long)]
    pub worker_id: Option<String>,
    /// A lease not renewed for this long may be taken over (milliseconds).
    #[arg(long, default_value_t = 10_000)]
    pub lease_duration_ms: u64,
    /// How often the shard list is read to find new shards (milliseconds).
    #[arg(long, default_value_t = 10_000)]
    pub shard_sync_ms: u64,
}

fn parse_from(s: &str) -> anyhow::Result<InitialPosition> {
    match s {
        "trim-horizon" | "TRIM_HORIZON" => Ok(InitialPosition::TrimHorizon),
        "latest" | "LATEST" => Ok(InitialPosition::Latest),
        _ => {
            let Some(t) = s.strip_prefix("at-timestamp:") else {
                bail!("--from takes trim-horizon, latest or at-timestamp:T, not {s:?}");
            };
            let dt = match t.parse::<f64>() {
                Ok(secs) => aws_sdk_kinesis::primitives::DateTime::from_secs_f64(secs),
                Err(_) => aws_sdk_kinesis::primitives::DateTime::from_str(
                    t,
                    aws_sdk_kinesis::primitives::DateTimeFormat::DateTime,
                )
                .with_context(|| format!("{t:?} is neither RFC 3339 nor epoch seconds"))?,
            };
            Ok(InitialPosition::AtTimestamp(
                SystemTime::try_from(dt).context("timestamp out of range")?,
            ))
        }
    }
}

/// One JSON line per user record.
pub fn record_json(r: &UserRecord) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    o.insert("shardId".into(), r.shard_id.clone().into());
    o.insert("sequenceNumber".into(), r.sequence_number.clone().into());
    if let Some(sub) = r.sub_sequence_number {
        o.insert("subSequenceNumber".into(), sub.into());
    }
    o.insert("partitionKey".into(), r.partition_key.clone().into());
    if let Some(t) = r.approximate_arrival_timestamp {
        let millis = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let dt = aws_sdk_kinesis::primitives::DateTime::from_millis(millis);
        if let Ok(s) = dt.fmt(aws_sdk_kinesis::primitives::DateTimeFormat::DateTime) {
            o.insert("approximateArrivalTimestamp".into(), s.into());
        }
    }
    match std::str::from_utf8(&r.data) {
        Ok(s) => {
            o.insert("data".into(), s.into());
        }
        Err(_) => {
            o.insert(
                "data".into(),
                base64::engine::general_purpose::STANDARD
                    .encode(&r.data)
                    .into(),
            );
            o.insert("dataEncoding".into(), "base64".into());
        }
    }
    serde_json::Value::Object(o)
}

/// Events for whoever watches a group worker (stderr, one JSON line each).
fn event(kind: &str, shard: &str, extra: Option<(&str, String)>) {
    let mut o = serde_json::json!({ "event": kind, "shardId": shard });
    if let Some((k, v)) = extra {
        o[k] = v.into();
    }
    eprintln!("{o}");
}

struct Printer {
    shard: String,
}

impl RecordProcessor for Printer {
    async fn initialize(&mut self, input: InitializeInput) {
        self.shard = input.shard_id.clone();
        event(
            "start",
            &input.shard_id,
            Some((
                "checkpoint",
                format!(
                    "{}/{}",
                    input.checkpoint.as_attribute(),
                    input.checkpoint.sub_sequence()
                ),
            )),
        );
    }

    async fn process_records(&mut self, input: ProcessRecordsInput, cp: &mut Checkpointer) {
        {
            let mut out = std::io::stdout().lock();
            for r in &input.records {
                // A closed stdout (e.g. `| head`) ends the process.
                if writeln!(out, "{}", record_json(r)).is_err() {
                    std::process::exit(0);
                }
            }
            if out.flush().is_err() {
                std::process::exit(0);
            }
        }
        match cp.checkpoint().await {
            Ok(()) => {}
            Err(CheckpointError::LeaseLost(_)) => {}
            Err(e) => tracing::warn!("checkpoint: {e}"),
        }
    }

    async fn lease_lost(&mut self) {
        event("leaseLost", &self.shard, None);
    }

    async fn shutdown_requested(&mut self, cp: &mut Checkpointer) {
        match cp.checkpoint().await {
            Ok(()) | Err(CheckpointError::NothingToCheckpoint) => {}
            Err(e) => tracing::warn!("final checkpoint: {e}"),
        }
        event("shutdown", &self.shard, None);
    }

    async fn shard_ended(&mut self, cp: &mut Checkpointer) {
        match cp.checkpoint_shard_end().await {
            Ok(()) => event("shardEnd", &self.shard, None),
            Err(e) => tracing::warn!("checkpointing SHARD_END: {e}"),
        }
    }
}

fn dummy_credentials_if_unset(endpoint: Option<&str>) -> Option<Credentials> {
    let has_env = std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        || std::env::var_os("AWS_PROFILE").is_some();
    (endpoint.is_some() && !has_env)
        .then(|| Credentials::new("eddy", "eddy", None, None, "eddy-tail"))
}

async fn sdk_config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    if let Some(c) = dummy_credentials_if_unset(endpoint) {
        loader = loader.credentials_provider(c);
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        return shared
            .into_builder()
            .region(aws_config::Region::new("us-east-1"))
            .build();
    }
    shared
}

pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let initial = parse_from(&args.from)?;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk_config(args.endpoint.as_deref()).await);
    // Fail fast on a wrong name or endpoint rather than retrying forever.
    kinesis
        .describe_stream_summary()
        .stream_name(&args.stream)
        .send()
        .await
        .map_err(|e| {
            use aws_sdk_kinesis::error::ProvideErrorMetadata;
            match e.code() {
                Some(c) => anyhow::anyhow!("{c}: {}", e.message().unwrap_or("")),
                None => anyhow::anyhow!("{e:?}"),
            }
        })
        .with_context(|| format!("reading stream {}", args.stream))?;
    let worker_id = args.worker_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        format!(
            "{host}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        )
    });
    let app = args
        .group
        .clone()
        .unwrap_or_else(|| format!("eddy-tail-{}", std::process::id()));
    let mut cfg = ConsumerConfig::new(&app, &args.stream, &worker_id)
        .with_lease_duration(Duration::from_millis(args.lease_duration_ms));
    cfg.initial_position = initial;
    cfg.shard_sync_interval = Duration::from_millis(args.shard_sync_ms);
    if args.efo {
        cfg.retrieval = RetrievalMode::FanOut {
            consumer_name: app.clone(),
        };
    }
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let factory = || Printer {
        shard: String::new(),
    };
    match &args.group {
        Some(group) => {
            let ddb_endpoint = args
                .dynamodb_endpoint
                .as_deref()
                .or(args.endpoint.as_deref());
            let ddb = aws_sdk_dynamodb::Client::new(&sdk_config(ddb_endpoint).await);
            let store = DynamoLeaseStore::new(ddb, group);
            Worker::new(cfg, kinesis, store, factory)
                .run(shutdown)
                .await?;
        }
        None => {
            // One worker alone: leases in memory, nothing to share.
            Worker::new(cfg, kinesis.clone(), MemoryLeaseStore::new(), factory)
                .run(shutdown)
                .await?;
            if args.efo {
                // This process's own consumer: do not leave it registered.
                let arn = kinesis
                    .describe_stream_summary()
                    .stream_name(&args.stream)
                    .send()
                    .await
                    .ok()
                    .and_then(|s| s.stream_description_summary)
                    .map(|d| d.stream_arn);
                if let Some(arn) = arn
                    && let Err(e) = kinesis
                        .deregister_stream_consumer()
                        .stream_arn(arn)
                        .consumer_name(&app)
                        .send()
                        .await
                {
                    tracing::warn!("deregistering consumer {app}: {e}");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(data: &[u8], sub: Option<u64>) -> UserRecord {
        UserRecord {
            shard_id: "shardId-000000000001".into(),
            sequence_number: "49590338271490256608559692538361571095921575989136588818".into(),
            sub_sequence_number: sub,
            partition_key: "k".into(),
            explicit_hash_key: None,
            data: bytes::Bytes::copy_from_slice(data),
            approximate_arrival_timestamp: Some(
                SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            ),
        }
    }

    #[test]
    fn text_records_print_as_text_and_binary_as_base64() {
        let t = record_json(&rec(b"hello", None));
        assert_eq!(t["data"], "hello");
        assert!(t.get("dataEncoding").is_none());
        assert!(t.get("subSequenceNumber").is_none());
        assert_eq!(t["approximateArrivalTimestamp"], "2023-11-14T22:13:20.123Z");
        let b = record_json(&rec(&[0xff, 0x00, 0xfe], Some(3)));
        assert_eq!(b["data"], "/wD+");
        assert_eq!(b["dataEncoding"], "base64");
        assert_eq!(b["subSequenceNumber"], 3);
    }

    #[test]
    fn from_accepts_the_three_forms() {
        assert_eq!(
            parse_from("trim-horizon").unwrap(),
            InitialPosition::TrimHorizon
        );
        assert_eq!(parse_from("latest").unwrap(), InitialPosition::Latest);
        assert_eq!(
            parse_from("at-timestamp:1700000000").unwrap(),
            InitialPosition::AtTimestamp(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
            )
        );
        assert_eq!(
            parse_from("at-timestamp:2023-11-14T22:13:20Z").unwrap(),
            InitialPosition::AtTimestamp(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
            )
        );
        assert!(parse_from("yesterday").is_err());
    }
}
