//! One append-only journal per table: the table's metadata first, then
//! item mutations. Every record is framed `[len u32 LE][crc32c u32 LE]
//! [JSON payload]` and fsync'd before the write is acknowledged. Replay
//! stops at the first truncated or corrupt frame (a torn tail after a
//! crash) and cuts the file there. Compaction rewrites the live state to a
//! temporary file, fsyncs it and renames it over the journal.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::attr::Item;
use crate::table::TableMeta;

const HEADER: usize = 8;
/// Frames larger than this are corrupt (items are at most 400 KB).
const MAX_FRAME: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// The table's metadata (first record; later ones replace it).
    Table(Box<TableMeta>),
    /// An item written whole (put, or the result of an update).
    Put(Item),
    /// An item deleted, named by its key attributes.
    Delete(Item),
    /// Several changes made atomically (BatchWriteItem on one table, a
    /// transaction's writes to one table).
    Batch(Vec<Record>),
}

pub struct Journal {
    file: File,
    path: PathBuf,
    /// Length of the valid journal.
    len: u64,
}

fn frame(rec: &Record) -> Vec<u8> {
    let payload = serde_json::to_vec(rec).expect("records serialise");
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `records` to `path` atomically: a temporary file, fsync'd, then
/// renamed over `path`, then the directory fsync'd.
fn write_atomically(path: &Path, records: impl Iterator<Item = Record>) -> io::Result<(File, u64)> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&tmp)?;
    let mut buf = Vec::new();
    for rec in records {
        buf.extend_from_slice(&frame(&rec));
        if buf.len() > 1 << 20 {
            f.write_all(&buf)?;
            buf.clear();
        }
    }
    f.write_all(&buf)?;
    f.sync_all()?;
    let len = f.metadata()?.len();
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    let file = OpenOptions::new().append(true).open(path)?;
    Ok((file, len))
}

impl Journal {
    /// Creates a new journal holding `meta`, durably.
    pub fn create(path: &Path, meta: &TableMeta) -> io::Result<Journal> {
        let (file, len) =
            write_atomically(path, std::iter::once(Record::Table(Box::new(meta.clone()))))?;
        Ok(Journal {
            file,
            path: path.to_path_buf(),
            len,
        })
    }

    /// Opens a journal and returns its valid records. A torn or corrupt
    /// tail is cut off (and reported in the log).
    pub fn open(path: &Path) -> io::Result<(Journal, Vec<Record>)> {
        let mut data = Vec::new();
        File::open(path)?.read_to_end(&mut data)?;
        let mut records = Vec::new();
        let mut pos = 0usize;
        while pos < data.len() {
            let Some(rec) = decode_at(&data, pos) else {
                break;
            };
            records.push(rec.0);
            pos = rec.1;
        }
        if pos < data.len() {
            tracing::warn!(
                path = %path.display(),
                valid = pos,
                dropped = data.len() - pos,
                "dynamo journal: dropping a torn or corrupt tail"
            );
            let f = OpenOptions::new().write(true).open(path)?;
            f.set_len(pos as u64)?;
            f.sync_all()?;
        }
        let file = OpenOptions::new().append(true).open(path)?;
        Ok((
            Journal {
                file,
                path: path.to_path_buf(),
                len: pos as u64,
            },
            records,
        ))
    }

    /// Appends one record and makes it durable.
    pub fn append(&mut self, rec: &Record) -> io::Result<()> {
        let bytes = frame(rec);
        let r = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = r {
            // Leave no half-written frame behind for the next append.
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Replaces the journal with `records` (compaction), atomically.
    pub fn rewrite(&mut self, records: impl Iterator<Item = Record>) -> io::Result<()> {
        let (file, len) = write_atomically(&self.path, records)?;
        self.file = file;
        self.len = len;
        Ok(())
    }

    /// Bytes in the journal.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Deletes the journal (the table is gone), durably.
    pub fn remove(self) -> io::Result<()> {
        fs::remove_file(&self.path)?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

fn decode_at(data: &[u8], pos: usize) -> Option<(Record, usize)> {
    let head = data.get(pos..pos + HEADER)?;
    let len = u32::from_le_bytes(head[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    if len > MAX_FRAME {
        return None;
    }
    let payload = data.get(pos + HEADER..pos + HEADER + len)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    let rec = serde_json::from_slice(payload).ok()?;
    Some((rec, pos + HEADER + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;

    fn meta() -> TableMeta {
        TableMeta::for_tests("leases", "leaseKey")
    }

    fn put(k: &str, counter: &str) -> Record {
        let mut item = Item::new();
        item.insert("leaseKey".into(), Attr::S(k.into()));
        item.insert("leaseCounter".into(), Attr::N(counter.into()));
        Record::Put(item)
    }

    #[test]
    fn records_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.journal");
        let mut j = Journal::create(&path, &meta()).unwrap();
        j.append(&put("a", "1")).unwrap();
        j.append(&put("a", "2")).unwrap();
        drop(j);
        let (_, recs) = Journal::open(&path).unwrap();
        assert_eq!(
            recs,
            vec![
                Record::Table(Box::new(meta())),
                put("a", "1"),
                put("a", "2")
            ]
        );
    }

    #[test]
    fn truncated_tail_is_dropped_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.journal");
        let mut j = Journal::create(&path, &meta()).unwrap();
        j.append(&put("a", "1")).unwrap();
        let good = j.len();
        j.append(&put("b", "1")).unwrap();
        drop(j);
        // A crash in the middle of the last write: half of its frame.
        let full = fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(good + (full - good) / 2).unwrap();
        drop(f);

        let (mut j, recs) = Journal::open(&path).unwrap();
        assert_eq!(recs, vec![Record::Table(Box::new(meta())), put("a", "1")]);
        assert_eq!(fs::metadata(&path).unwrap().len(), good);
        j.append(&put("c", "1")).unwrap();
        drop(j);
        let (_, recs) = Journal::open(&path).unwrap();
        assert_eq!(
            recs,
            vec![
                Record::Table(Box::new(meta())),
                put("a", "1"),
                put("c", "1")
            ]
        );
    }

    #[test]
    fn a_torn_batch_is_lost_whole_never_in_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.journal");
        let mut j = Journal::create(&path, &meta()).unwrap();
        let good = j.len();
        let batch = Record::Batch(vec![put("a", "1"), put("b", "1"), put("c", "1")]);
        j.append(&batch).unwrap();
        drop(j);
        let (_, recs) = Journal::open(&path).unwrap();
        assert_eq!(recs, vec![Record::Table(Box::new(meta())), batch]);
        let data = fs::read(&path).unwrap();
        let full = data.len() as u64;
        for cut in [good + 4, good + 9, full - 1] {
            fs::write(&path, &data[..cut as usize]).unwrap();
            let (_, recs) = Journal::open(&path).unwrap();
            assert_eq!(recs, vec![Record::Table(Box::new(meta()))], "cut at {cut}");
        }
    }

    #[test]
    fn frame_with_bad_checksum_ends_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.journal");
        let mut j = Journal::create(&path, &meta()).unwrap();
        j.append(&put("a", "1")).unwrap();
        let good = j.len();
        j.append(&put("b", "1")).unwrap();
        drop(j);
        let mut data = fs::read(&path).unwrap();
        let last = data.len() - 3;
        data[last] ^= 0x5a; // flip bits inside the last payload
        fs::write(&path, &data).unwrap();

        let (_, recs) = Journal::open(&path).unwrap();
        assert_eq!(recs, vec![Record::Table(Box::new(meta())), put("a", "1")]);
        assert_eq!(fs::metadata(&path).unwrap().len(), good);
    }

    #[test]
    fn rewrite_replaces_the_history_with_the_live_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.journal");
        let mut j = Journal::create(&path, &meta()).unwrap();
        for i in 0..100 {
            j.append(&put("a", &i.to_string())).unwrap();
        }
        let before = j.len();
        j.rewrite([Record::Table(Box::new(meta())), put("a", "99")].into_iter())
            .unwrap();
        assert!(j.len() < before / 5, "{} vs {before}", j.len());
        j.append(&put("b", "1")).unwrap();
        drop(j);
        let (_, recs) = Journal::open(&path).unwrap();
        assert_eq!(
            recs,
            vec![
                Record::Table(Box::new(meta())),
                put("a", "99"),
                put("b", "1")
            ]
        );
        assert!(!path.with_extension("tmp").exists());
    }
}
