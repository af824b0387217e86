//! The durable metadata of the Data Streams service: streams, shards (with
//! lineage), tags, settings, policies. Small and read-mostly, so it is kept
//! in memory and persisted whole, atomically (write a temporary file, fsync
//! it, rename it over `streams.json`, fsync the directory), on every change.
//! Record data never lives here: it lives in `eddy-log`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Creating,
    Active,
    Updating,
    Deleting,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "CREATING",
            Status::Active => "ACTIVE",
            Status::Updating => "UPDATING",
            Status::Deleting => "DELETING",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Per-stream counter: `shardId-{index:012}`.
    pub index: u32,
    /// Engine-level shard id in `eddy-log`.
    pub log_id: u64,
    /// Hash key range, inclusive (stored as decimal strings: JSON numbers
    /// cannot carry 128 bits portably).
    #[serde(with = "u128_string")]
    pub start_hash: u128,
    #[serde(with = "u128_string")]
    pub end_hash: u128,
    pub parent: Option<u32>,
    pub adjacent_parent: Option<u32>,
    pub created_ms: i64,
    /// Set when the shard is closed by a reshard: positions below it belong
    /// to the shard; nothing is written after it.
    pub ending_position: Option<u64>,
    pub closed_ms: Option<i64>,
}

impl Shard {
    pub fn id(&self) -> String {
        shard_id(self.index)
    }
    pub fn is_open(&self) -> bool {
        self.ending_position.is_none()
    }
}

pub fn shard_id(index: u32) -> String {
    String::from_utf8(shard_id_bytes(index).to_vec()).expect("ASCII")
}

/// `shardId-` and twelve zero-padded digits, built by hand: PutRecords
/// names a shard per record, and `format!` with a padded field reallocates
/// on the way.
pub fn shard_id_bytes(index: u32) -> [u8; 20] {
    let mut id = *b"shardId-000000000000";
    crate::seqnum::fixed_width(&mut id[8..], u64::from(index));
    id
}

pub fn parse_shard_id(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("shardId-").unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    pub name: String,
    /// Random per incarnation of the name; part of every sequence number.
    pub tag: u64,
    /// Retention group in `eddy-log`.
    pub group: u64,
    pub created_ms: i64,
    pub status: Status,
    /// When a transitional status (CREATING/UPDATING/DELETING) ends.
    pub status_until_ms: Option<i64>,
    pub on_demand: bool,
    pub retention_hours: u32,
    pub shards: Vec<Shard>,
    pub next_shard_index: u32,
    pub tags: BTreeMap<String, String>,
    pub shard_level_metrics: BTreeSet<String>,
    pub kms_key_id: Option<String>,
    pub max_record_kib: u32,
    pub warm_throughput_mibps: Option<i64>,
    pub distribution_strategy: Option<String>,
    pub policy: Option<String>,
    /// When UpdateShardCount ran (ms), for the per-day scaling limit.
    #[serde(default)]
    pub scalings_ms: Vec<i64>,
    /// Enhanced fan-out consumers by name.
    #[serde(default)]
    pub consumers: BTreeMap<String, crate::consumers::Consumer>,
}

impl Stream {
    pub fn open_shards(&self) -> impl Iterator<Item = &Shard> {
        self.shards.iter().filter(|s| s.is_open())
    }
    /// Shards still worth listing at `now`: open ones, and closed ones whose
    /// data may still be within retention.
    pub fn listed_shards(&self, now: i64) -> impl Iterator<Item = &Shard> {
        let retention_ms = self.retention_hours as i64 * 3600 * 1000;
        self.shards
            .iter()
            .filter(move |s| s.closed_ms.is_none_or(|c| c + retention_ms > now))
    }

    pub fn shard(&self, index: u32) -> Option<&Shard> {
        self.shards.iter().find(|s| s.index == index)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSettings {
    pub commitment_status: Option<String>,
    pub commitment_started_ms: Option<i64>,
    pub commitment_ended_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub format: u32,
    /// Secret for tokens (iterators, pagination); kept so tokens survive restarts.
    pub secret: [u8; 32],
    pub next_group: u64,
    pub next_log_shard: u64,
    pub streams: BTreeMap<String, Stream>,
    pub account: AccountSettings,
    /// Log groups whose deletion may not have reached the engine yet;
    /// re-applied at start.
    pub deleted_groups: Vec<u64>,
}

impl Meta {
    pub fn new(secret: [u8; 32]) -> Meta {
        Meta {
            format: 1,
            secret,
            next_group: 1,
            next_log_shard: 1,
            streams: BTreeMap::new(),
            account: AccountSettings::default(),
            deleted_groups: Vec::new(),
        }
    }
}

/// Where the metadata file lives and how it is replaced.
pub struct MetaStore {
    path: PathBuf,
    dir: PathBuf,
}

impl MetaStore {
    pub fn new(dir: &Path) -> MetaStore {
        MetaStore {
            path: dir.join("streams.json"),
            dir: dir.to_path_buf(),
        }
    }

    pub fn load(&self) -> std::io::Result<Option<Meta>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Atomically replaces the file with `meta`; durable when it returns.
    pub fn save(&self, meta: &Meta) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ids_are_twelve_zero_padded_digits_and_parse_back() {
        for index in [0, 7, 1234, u32::MAX] {
            let id = shard_id(index);
            assert_eq!(id, format!("shardId-{index:012}"));
            assert_eq!(parse_shard_id(&id), Some(index));
        }
    }
}
