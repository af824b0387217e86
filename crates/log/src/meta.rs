//! Engine metadata: shards, groups, retention, deletions.
//!
//! Owns: the durable catalogue ([`MetaState`]) kept as a snapshot file
//! (`meta.snap`, replaced atomically: write temp, fsync, rename, fsync dir)
//! plus an append-only operation log (`meta.log`, each entry
//! `len u32, crc32c u32, op`, fdatasync'd before the caller returns). The
//! snapshot also records each shard's tip and last timestamp as a floor, so a
//! shard whose segments were all deleted by retention keeps its positions.
//! Replay is idempotent, so a crash between writing a snapshot and resetting
//! the log is harmless.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fs::{FileHandle, FileSystem};
use crate::{GroupId, ShardId};

pub const DEFAULT_RETENTION_MS: u64 = 24 * 3600 * 1000;
const SNAP: &str = "meta.snap";
const LOG: &str = "meta.log";
const SNAP_MAGIC: u32 = 0xEDD1_5A4B;
/// Log entries after which the log is folded into a new snapshot.
const LOG_COMPACT_ENTRIES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaOp {
    CreateShard {
        shard: ShardId,
        group: GroupId,
    },
    SetRetention {
        group: GroupId,
        ms: u64,
    },
    DeleteGroup {
        group: GroupId,
    },
    DeleteShard {
        shard: ShardId,
    },
    /// Positions below `floor` are never readable again (recorded when a
    /// retention change would otherwise bring expired data back).
    Trim {
        shard: ShardId,
        floor: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupMeta {
    pub retention_ms: u64,
    pub deleted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardMeta {
    pub group: GroupId,
    pub deleted: bool,
    pub tip_floor: u64,
    pub last_ts_floor: Option<i64>,
    pub trim_floor: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaState {
    pub groups: HashMap<GroupId, GroupMeta>,
    pub shards: HashMap<ShardId, ShardMeta>,
}

impl MetaState {
    /// Applies an op; idempotent.
    pub fn apply(&mut self, op: MetaOp) {
        match op {
            MetaOp::CreateShard { shard, group } => {
                self.shards.entry(shard).or_insert(ShardMeta {
                    group,
                    deleted: false,
                    tip_floor: 0,
                    last_ts_floor: None,
                    trim_floor: 0,
                });
                // A deleted group id may be used again by new shards; the
                // deleted shards stay deleted.
                self.groups
                    .entry(group)
                    .or_insert(GroupMeta {
                        retention_ms: DEFAULT_RETENTION_MS,
                        deleted: false,
                    })
                    .deleted = false;
            }
            MetaOp::SetRetention { group, ms } => {
                self.groups
                    .entry(group)
                    .or_insert(GroupMeta {
                        retention_ms: ms,
                        deleted: false,
                    })
                    .retention_ms = ms;
            }
            MetaOp::DeleteGroup { group } => {
                self.groups
                    .entry(group)
                    .or_insert(GroupMeta {
                        retention_ms: DEFAULT_RETENTION_MS,
                        deleted: true,
                    })
                    .deleted = true;
                for s in self.shards.values_mut() {
                    if s.group == group {
                        s.deleted = true;
                    }
                }
            }
            MetaOp::DeleteShard { shard } => {
                if let Some(s) = self.shards.get_mut(&shard) {
                    s.deleted = true;
                }
            }
            MetaOp::Trim { shard, floor } => {
                if let Some(s) = self.shards.get_mut(&shard) {
                    s.trim_floor = s.trim_floor.max(floor);
                }
            }
        }
    }

    pub fn shard_live(&self, shard: ShardId) -> bool {
        self.shards
            .get(&shard)
            .is_some_and(|s| !s.deleted && !self.groups.get(&s.group).is_some_and(|g| g.deleted))
    }

    pub fn retention_ms(&self, group: GroupId) -> u64 {
        self.groups
            .get(&group)
            .map_or(DEFAULT_RETENTION_MS, |g| g.retention_ms)
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&SNAP_MAGIC.to_le_bytes());
        b.extend_from_slice(&(self.groups.len() as u64).to_le_bytes());
        let mut groups: Vec<_> = self.groups.iter().collect();
        groups.sort_by_key(|g| *g.0);
        for (id, g) in groups {
            b.extend_from_slice(&id.to_le_bytes());
            b.extend_from_slice(&g.retention_ms.to_le_bytes());
            b.push(g.deleted as u8);
        }
        b.extend_from_slice(&(self.shards.len() as u64).to_le_bytes());
        let mut shards: Vec<_> = self.shards.iter().collect();
        shards.sort_by_key(|s| *s.0);
        for (id, s) in shards {
            b.extend_from_slice(&id.to_le_bytes());
            b.extend_from_slice(&s.group.to_le_bytes());
            b.push(s.deleted as u8);
            b.extend_from_slice(&s.tip_floor.to_le_bytes());
            b.push(s.last_ts_floor.is_some() as u8);
            b.extend_from_slice(&s.last_ts_floor.unwrap_or(0).to_le_bytes());
            b.extend_from_slice(&s.trim_floor.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> io::Result<MetaState> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "corrupt meta snapshot");
        if b.len() < 8 {
            return Err(bad());
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
            return Err(bad());
        }
        let mut r = Reader { b: body, o: 0 };
        if r.u32()? != SNAP_MAGIC {
            return Err(bad());
        }
        let mut st = MetaState::default();
        for _ in 0..r.u64()? {
            let id = r.u64()?;
            let retention_ms = r.u64()?;
            let deleted = r.u8()? != 0;
            st.groups.insert(
                id,
                GroupMeta {
                    retention_ms,
                    deleted,
                },
            );
        }
        for _ in 0..r.u64()? {
            let id = r.u64()?;
            let group = r.u64()?;
            let deleted = r.u8()? != 0;
            let tip_floor = r.u64()?;
            let has = r.u8()? != 0;
            let ts = r.u64()? as i64;
            let trim_floor = r.u64()?;
            st.shards.insert(
                id,
                ShardMeta {
                    group,
                    deleted,
                    tip_floor,
                    last_ts_floor: has.then_some(ts),
                    trim_floor,
                },
            );
        }
        Ok(st)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    o: usize,
}
impl Reader<'_> {
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.o + n > self.b.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "short meta record",
            ));
        }
        self.o += n;
        Ok(&self.b[self.o - n..self.o])
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
}

fn encode_op(op: MetaOp) -> [u8; 17] {
    let (tag, a, b) = match op {
        MetaOp::CreateShard { shard, group } => (1u8, shard, group),
        MetaOp::SetRetention { group, ms } => (2, group, ms),
        MetaOp::DeleteGroup { group } => (3, group, 0),
        MetaOp::DeleteShard { shard } => (4, shard, 0),
        MetaOp::Trim { shard, floor } => (5, shard, floor),
    };
    let mut out = [0u8; 17];
    out[0] = tag;
    out[1..9].copy_from_slice(&a.to_le_bytes());
    out[9..17].copy_from_slice(&b.to_le_bytes());
    out
}

fn decode_op(b: &[u8]) -> Option<MetaOp> {
    if b.len() != 17 {
        return None;
    }
    let a = u64::from_le_bytes(b[1..9].try_into().unwrap());
    let c = u64::from_le_bytes(b[9..17].try_into().unwrap());
    Some(match b[0] {
        1 => MetaOp::CreateShard { shard: a, group: c },
        2 => MetaOp::SetRetention { group: a, ms: c },
        3 => MetaOp::DeleteGroup { group: a },
        4 => MetaOp::DeleteShard { shard: a },
        5 => MetaOp::Trim { shard: a, floor: c },
        _ => return None,
    })
}

/// The durable metadata store. Not thread-safe by itself: the engine keeps
/// it behind a mutex.
pub struct MetaStore {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    log: Arc<dyn FileHandle>,
    log_len: u64,
    log_entries: usize,
}

impl MetaStore {
    /// Loads snapshot + log (truncating a torn log tail).
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> io::Result<(MetaStore, MetaState)> {
        let mut st = match fs.read_all(&dir.join(SNAP)) {
            Ok(b) => MetaState::decode(&b)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => MetaState::default(),
            Err(e) => return Err(e),
        };
        let log = fs.open_rw(&dir.join(LOG))?;
        let len = log.len()? as usize;
        let mut b = vec![0u8; len];
        log.read_exact_at(&mut b, 0)?;
        let mut o = 0usize;
        let mut entries = 0;
        while o + 8 <= len {
            let n = u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(b[o + 4..o + 8].try_into().unwrap());
            if o + 8 + n > len || crc32c::crc32c(&b[o + 8..o + 8 + n]) != crc {
                break;
            }
            let Some(op) = decode_op(&b[o + 8..o + 8 + n]) else {
                break;
            };
            st.apply(op);
            entries += 1;
            o += 8 + n;
        }
        if o != len {
            tracing::warn!(valid = o, len, "truncating torn metadata log tail");
            log.set_len(o as u64)?;
            log.sync_data()?;
        }
        Ok((
            MetaStore {
                fs,
                dir: dir.to_path_buf(),
                log,
                log_len: o as u64,
                log_entries: entries,
            },
            st,
        ))
    }

    /// Durably records `op` (fdatasync before returning).
    pub fn append(&mut self, op: MetaOp) -> io::Result<()> {
        let body = encode_op(op);
        let mut rec = Vec::with_capacity(8 + body.len());
        rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        rec.extend_from_slice(&body);
        let r = self
            .log
            .write_all_at(&rec, self.log_len)
            .and_then(|_| self.log.sync_data());
        if let Err(e) = r {
            // Drop whatever part of the entry may have landed.
            let _ = self.log.set_len(self.log_len);
            return Err(e);
        }
        self.log_len += rec.len() as u64;
        self.log_entries += 1;
        Ok(())
    }

    pub fn wants_snapshot(&self) -> bool {
        self.log_entries >= LOG_COMPACT_ENTRIES
    }

    /// Durably replaces the snapshot with `st` and empties the log.
    pub fn write_snapshot(&mut self, st: &MetaState) -> io::Result<()> {
        self.fs.write_atomic(&self.dir, SNAP, &st.encode())?;
        self.log.set_len(0)?;
        self.log.sync_data()?;
        self.log_len = 0;
        self.log_entries = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simfs::SimFs;

    #[test]
    fn ops_survive_crash_once_appended_and_snapshot_plus_log_replays() {
        let sim = SimFs::new(1);
        let dir = Path::new("/d");
        let fs: Arc<dyn FileSystem> = Arc::new(sim.mount());
        let (mut m, mut st) = MetaStore::open(fs.clone(), dir).unwrap();
        fs.sync_dir(dir).unwrap();
        for op in [
            MetaOp::CreateShard { shard: 1, group: 9 },
            MetaOp::SetRetention { group: 9, ms: 5 },
            MetaOp::CreateShard { shard: 2, group: 8 },
            MetaOp::Trim { shard: 2, floor: 4 },
        ] {
            m.append(op).unwrap();
            st.apply(op);
        }
        st.shards.get_mut(&1).unwrap().tip_floor = 77;
        m.write_snapshot(&st).unwrap();
        m.append(MetaOp::DeleteGroup { group: 8 }).unwrap();
        st.apply(MetaOp::DeleteGroup { group: 8 });
        sim.crash();
        let (_, got) = MetaStore::open(Arc::new(sim.mount()), dir).unwrap();
        assert_eq!(got, st);
        assert!(!got.shard_live(2));
        assert!(got.shard_live(1));
        assert_eq!(got.retention_ms(9), 5);
    }
}
