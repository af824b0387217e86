//! File-system abstraction under the engine.
//!
//! Owns: the small set of file operations the engine performs ([`FileSystem`],
//! [`FileHandle`]) and the real implementation ([`RealFs`]) built on
//! positional I/O (`pread`/`pwrite`) and `fdatasync`. The simulated,
//! fault-injecting implementation used by tests lives in [`crate::simfs`].
//! Every durable state change of the engine goes through these traits, so a
//! simulated crash can discard exactly what was not made durable.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open file. All I/O is positional, so one handle can be shared by many
/// readers without a seek cursor.
#[allow(clippy::len_without_is_empty)]
pub trait FileHandle: Send + Sync + 'static {
    /// Reads up to `buf.len()` bytes at `offset`; returns the count (0 at EOF).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`. On error part of it may be written.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length.
    fn len(&self) -> io::Result<u64>;

    /// Reads exactly `buf.len()` bytes at `offset` or fails with `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(buf, offset)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"));
            }
            buf = &mut buf[n..];
            offset += n as u64;
        }
        Ok(())
    }
}

/// Directory-level operations. Paths are absolute (built from the engine dir).
pub trait FileSystem: Send + Sync + 'static {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Opens a file for reading and writing, creating it if missing.
    fn open_rw(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>>;
    /// Opens an existing file for reading.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>>;
    /// File names (not paths) in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Atomically replaces `to` with `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Reads a whole file.
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let f = self.open_read(path)?;
        let len = f.len()? as usize;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    /// Durably and atomically replaces `path` with `data`: write a temporary
    /// file, fsync it, rename it over `path`, fsync the directory.
    fn write_atomic(&self, dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
        let tmp = dir.join(format!("{name}.tmp"));
        let f = self.open_rw(&tmp)?;
        f.set_len(0)?;
        f.write_all_at(data, 0)?;
        f.sync_data()?;
        drop(f);
        self.rename(&tmp, &dir.join(name))?;
        self.sync_dir(dir)
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealFile(std::fs::File);

impl FileHandle for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl FileSystem for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn open_rw(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(RealFile(f)))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        Ok(Arc::new(RealFile(std::fs::File::open(path)?)))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            out.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
}

/// Path helpers for the engine's files.
pub(crate) fn segment_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("{seg:020}.seg"))
}
pub(crate) fn sidecar_name(seg: u64) -> String {
    format!("{seg:020}.idx")
}
