//! `eddy serve` settings: flags, then `EDDY_*` environment variables, then an
//! optional TOML file, then defaults (in that order of precedence).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use eddy_log::Durability;
use serde::Deserialize;

#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "EDDY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:4567].
    #[arg(long, env = "EDDY_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where data lives [default: ./eddy-data].
    #[arg(long, env = "EDDY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// fsync (acknowledged means fdatasync'd), interval, or none [default: fsync].
    #[arg(long, env = "EDDY_DURABILITY")]
    pub durability: Option<String>,
    /// With --durability interval: how often to fsync [default: 100].
    #[arg(long, env = "EDDY_FSYNC_INTERVAL_MS")]
    pub fsync_interval_ms: Option<u64>,
    /// Region used in ARNs [default: us-east-1].
    #[arg(long, env = "EDDY_REGION")]
    pub region: Option<String>,
    /// Account id used in ARNs [default: 000000000000].
    #[arg(long, env = "EDDY_ACCOUNT_ID")]
    pub account_id: Option<String>,
    /// How long streams stay CREATING/UPDATING/DELETING, in ms [default: 0].
    #[arg(long, env = "EDDY_TRANSITION_MS")]
    pub transition_ms: Option<u64>,
    /// Account shard limit (DescribeLimits) [default: 20000].
    #[arg(long, env = "EDDY_SHARD_LIMIT")]
    pub shard_limit: Option<u32>,
    /// Account limit of ON_DEMAND streams (DescribeLimits) [default: 50].
    #[arg(long, env = "EDDY_ON_DEMAND_STREAM_LIMIT")]
    pub on_demand_stream_limit: Option<u32>,
    /// Enforce AWS's throughput limits (per shard and control plane): on or off [default: on].
    #[arg(long, env = "EDDY_SHARD_LIMITS")]
    pub shard_limits: Option<String>,
    /// Per-shard write limit in bytes per second [default: 1048576].
    #[arg(long, env = "EDDY_SHARD_WRITE_BYTES_PER_SEC")]
    pub shard_write_bytes_per_sec: Option<f64>,
    /// Per-shard write limit in records per second [default: 1000].
    #[arg(long, env = "EDDY_SHARD_WRITE_RECORDS_PER_SEC")]
    pub shard_write_records_per_sec: Option<f64>,
    /// Per-shard read limit in bytes per second [default: 2097152].
    #[arg(long, env = "EDDY_SHARD_READ_BYTES_PER_SEC")]
    pub shard_read_bytes_per_sec: Option<f64>,
    /// Per-shard GetRecords calls per second [default: 5].
    #[arg(long, env = "EDDY_SHARD_READ_CALLS_PER_SEC")]
    pub shard_read_calls_per_sec: Option<f64>,
    /// How often on-demand streams are checked for hot and cold shards, in ms [default: 1000].
    #[arg(long, env = "EDDY_ON_DEMAND_SCALE_INTERVAL_MS")]
    pub on_demand_scale_interval_ms: Option<u64>,
    /// How long adjacent on-demand shards must stay cold before they merge, in seconds [default: 900].
    #[arg(long, env = "EDDY_ON_DEMAND_MERGE_AFTER_SECS")]
    pub on_demand_merge_after_secs: Option<u64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    durability: Option<String>,
    fsync_interval_ms: Option<u64>,
    region: Option<String>,
    account_id: Option<String>,
    transition_ms: Option<u64>,
    shard_limit: Option<u32>,
    shard_limits: Option<String>,
    on_demand_stream_limit: Option<u32>,
    shard_write_bytes_per_sec: Option<f64>,
    shard_write_records_per_sec: Option<f64>,
    shard_read_bytes_per_sec: Option<f64>,
    shard_read_calls_per_sec: Option<f64>,
    on_demand_scale_interval_ms: Option<u64>,
    on_demand_merge_after_secs: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub region: String,
    pub account_id: String,
    pub transition: Duration,
    pub shard_limit: u32,
    pub on_demand_stream_limit: u32,
    pub limits: eddy_streams::limits::Limits,
    pub scaling: eddy_streams::ScalingConfig,
}

impl ServeConfig {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        let file: FileConfig = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let interval = args
            .fsync_interval_ms
            .or(file.fsync_interval_ms)
            .unwrap_or(100);
        let durability = match args
            .durability
            .or(file.durability)
            .as_deref()
            .unwrap_or("fsync")
        {
            "fsync" => Durability::Fsync,
            "interval" => Durability::Interval(Duration::from_millis(interval.max(1))),
            "none" => Durability::None,
            other => bail!("unknown durability '{other}': expected fsync, interval or none"),
        };
        let account_id = args
            .account_id
            .or(file.account_id)
            .unwrap_or_else(|| "000000000000".into());
        if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            bail!("account id must be 12 digits, got '{account_id}'");
        }
        let defaults = eddy_streams::limits::Limits::default();
        let enabled = match args
            .shard_limits
            .or(file.shard_limits)
            .as_deref()
            .unwrap_or("on")
        {
            "on" | "true" => true,
            "off" | "false" => false,
            other => bail!("unknown shard-limits '{other}': expected on or off"),
        };
        let rate = |name: &str, v: Option<f64>, d: f64| -> anyhow::Result<f64> {
            let v = v.unwrap_or(d);
            if !(v.is_finite() && v > 0.0) {
                bail!("{name} must be a positive number, got {v}");
            }
            Ok(v)
        };
        let limits = eddy_streams::limits::Limits {
            enabled,
            write_bytes_per_sec: rate(
                "shard-write-bytes-per-sec",
                args.shard_write_bytes_per_sec
                    .or(file.shard_write_bytes_per_sec),
                defaults.write_bytes_per_sec,
            )?,
            write_records_per_sec: rate(
                "shard-write-records-per-sec",
                args.shard_write_records_per_sec
                    .or(file.shard_write_records_per_sec),
                defaults.write_records_per_sec,
            )?,
            read_bytes_per_sec: rate(
                "shard-read-bytes-per-sec",
                args.shard_read_bytes_per_sec
                    .or(file.shard_read_bytes_per_sec),
                defaults.read_bytes_per_sec,
            )?,
            read_calls_per_sec: rate(
                "shard-read-calls-per-sec",
                args.shard_read_calls_per_sec
                    .or(file.shard_read_calls_per_sec),
                defaults.read_calls_per_sec,
            )?,
        };
        let scaling = eddy_streams::ScalingConfig {
            interval: Duration::from_millis(
                args.on_demand_scale_interval_ms
                    .or(file.on_demand_scale_interval_ms)
                    .unwrap_or(1000)
                    .max(10),
            ),
            merge_after: Duration::from_secs(
                args.on_demand_merge_after_secs
                    .or(file.on_demand_merge_after_secs)
                    .unwrap_or(900),
            ),
        };
        Ok(ServeConfig {
            on_demand_stream_limit: args
                .on_demand_stream_limit
                .or(file.on_demand_stream_limit)
                .unwrap_or(50),
            scaling,
            limits,
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:4567".parse().expect("valid")),
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("eddy-data")),
            durability,
            region: args
                .region
                .or(file.region)
                .unwrap_or_else(|| "us-east-1".into()),
            account_id,
            transition: Duration::from_millis(
                args.transition_ms.or(file.transition_ms).unwrap_or(0),
            ),
            shard_limit: args.shard_limit.or(file.shard_limit).unwrap_or(20_000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eddy.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nregion = \"eu-west-1\"\ndurability = \"none\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            region: Some("ap-south-1".into()),
            ..Default::default()
        };
        let cfg = ServeConfig::resolve(args).unwrap();
        assert_eq!(cfg.listen.port(), 9999);
        assert_eq!(cfg.region, "ap-south-1");
        assert_eq!(cfg.durability, Durability::None);
        assert_eq!(cfg.account_id, "000000000000");
        assert_eq!(cfg.data_dir, PathBuf::from("eddy-data"));
    }

    #[test]
    fn bad_durability_and_account_are_refused() {
        let args = ServeArgs {
            durability: Some("sometimes".into()),
            ..Default::default()
        };
        assert!(ServeConfig::resolve(args).is_err());
        let args = ServeArgs {
            account_id: Some("12".into()),
            ..Default::default()
        };
        assert!(ServeConfig::resolve(args).is_err());
    }
}
