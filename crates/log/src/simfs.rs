//! Simulated file system with fault injection (for tests; no real I/O).
//!
//! Owns: an in-memory model of files, directory entries and what is durable,
//! plus the faults tests inject: a crash (everything not fsynced is lost, the
//! unsynced tail of an appended file may survive in part: a torn write),
//! failing `fdatasync` (EIO, with Linux semantics: the dirty range is marked
//! clean but never reaches the disk unless rewritten), a full disk (ENOSPC,
//! after writing part of the buffer), and flipped bits.
//!
//! Model: each inode has `data` (what reads see) and `durable` (what survives
//! a crash). `sync_data` copies data to durable. Directory entries have a
//! current and a durable map; `sync_dir` makes the current one durable.
//! After [`SimFs::crash`] every handle opened before it fails with EIO, so an
//! engine still running cannot touch the post-crash state.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::fs::{FileHandle, FileSystem};

#[derive(Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Range whose dirty pages were dropped by a failed fsync: it reads as
    /// written but will not reach the disk unless written again.
    stale: Option<(usize, usize)>,
}

#[derive(Default)]
struct State {
    epoch: u64,
    names: HashMap<PathBuf, Arc<Mutex<Inode>>>,
    durable_names: HashMap<PathBuf, Arc<Mutex<Inode>>>,
    fail_fsyncs: u32,
    enospc: bool,
    torn: bool,
    rng: u64,
    fsyncs: u64,
    /// Crash automatically when this many more mutating operations start.
    crash_countdown: Option<u64>,
}

impl State {
    /// Counts a mutating operation; crashes (and fails it) when due.
    fn mutate(&mut self) -> io::Result<()> {
        if let Some(n) = self.crash_countdown {
            if n == 0 {
                self.crash_countdown = None;
                self.crash();
                return Err(crashed());
            }
            self.crash_countdown = Some(n - 1);
        }
        Ok(())
    }

    fn crash(&mut self) {
        self.epoch += 1;
        let durable: Vec<(PathBuf, Arc<Mutex<Inode>>)> = self
            .durable_names
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut names = HashMap::new();
        for (path, inode) in durable {
            let ino = inode.lock().unwrap();
            let mut content = ino.durable.clone();
            let d = content.len();
            if self.torn && ino.data.len() > d && ino.data[..d] == content[..] {
                let extra = ino.data.len() - d;
                let keep = (self.next_rand() % (extra as u64 + 1)) as usize;
                let mut tail = ino.data[d..d + keep].to_vec();
                if let Some((s, e)) = ino.stale {
                    // Pages dropped by a failed fsync never reach the disk.
                    for (i, b) in tail.iter_mut().enumerate() {
                        if (s..e).contains(&(d + i)) {
                            *b = 0;
                        }
                    }
                }
                content.extend_from_slice(&tail);
            }
            names.insert(
                path,
                Arc::new(Mutex::new(Inode {
                    data: content.clone(),
                    durable: content,
                    stale: None,
                })),
            );
        }
        self.durable_names = names.clone();
        self.names = names;
    }

    fn next_rand(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The simulated file system. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct SimFs {
    st: Arc<Mutex<State>>,
    /// Epoch this view was mounted at (see [`SimFs::mount`]); `None` = any.
    mount: Option<u64>,
}

fn crashed() -> io::Error {
    io::Error::other("simulated crash: handle from before the crash")
}

impl SimFs {
    /// A new, empty file system; `seed` drives torn-write lengths.
    pub fn new(seed: u64) -> SimFs {
        let fs = SimFs::default();
        {
            let mut st = fs.st.lock().unwrap();
            st.rng = seed;
            st.torn = true;
        }
        fs
    }

    /// Simulates power loss: only durable directory entries and durable file
    /// contents survive; if torn writes are enabled, a random prefix of each
    /// file's unsynced appended tail survives too. Old handles go dead.
    pub fn crash(&self) {
        self.st.lock().unwrap().crash();
    }

    /// Crashes automatically when the `n`-th mutating file operation from
    /// now starts (that operation fails): a crash at an exact point.
    pub fn crash_after_ops(&self, n: u64) {
        self.st.lock().unwrap().crash_countdown = Some(n);
    }

    /// Whether a crash scheduled by [`SimFs::crash_after_ops`] is still pending.
    pub fn crash_pending(&self) -> bool {
        self.st.lock().unwrap().crash_countdown.is_some()
    }

    /// Total bytes of current files whose name ends with `suffix`.
    pub fn bytes_with_suffix(&self, suffix: &str) -> u64 {
        let st = self.st.lock().unwrap();
        st.names
            .iter()
            .filter(|(p, _)| p.to_string_lossy().ends_with(suffix))
            .map(|(_, i)| i.lock().unwrap().data.len() as u64)
            .sum()
    }

    /// A view for one engine instance: once a crash happens, every operation
    /// through this view fails, as if the process had died with the machine.
    pub fn mount(&self) -> SimFs {
        let epoch = self.st.lock().unwrap().epoch;
        SimFs {
            st: self.st.clone(),
            mount: Some(epoch),
        }
    }

    fn lock_fs(&self) -> io::Result<std::sync::MutexGuard<'_, State>> {
        let st = self.st.lock().unwrap();
        if self.mount.is_some_and(|m| m != st.epoch) {
            return Err(crashed());
        }
        Ok(st)
    }

    fn lock_fs_mut(&self) -> io::Result<std::sync::MutexGuard<'_, State>> {
        let mut st = self.lock_fs()?;
        st.mutate()?;
        Ok(st)
    }

    /// Enables or disables torn tails on crash (default on).
    pub fn set_torn_writes(&self, on: bool) {
        self.st.lock().unwrap().torn = on;
    }
    /// The next `n` fsyncs fail with EIO.
    pub fn fail_next_fsyncs(&self, n: u32) {
        self.st.lock().unwrap().fail_fsyncs = n;
    }
    /// While on, writes fail with ENOSPC (after writing part of the buffer).
    pub fn set_enospc(&self, on: bool) {
        self.st.lock().unwrap().enospc = on;
    }
    /// Number of successful fsyncs so far.
    pub fn fsync_count(&self) -> u64 {
        self.st.lock().unwrap().fsyncs
    }
    /// Flips one bit of a file, in both its current and durable contents.
    /// Returns false if the file or offset does not exist.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> bool {
        let st = self.st.lock().unwrap();
        let Some(ino) = st.names.get(path) else {
            return false;
        };
        let mut ino = ino.lock().unwrap();
        let o = offset as usize;
        if o >= ino.data.len() {
            return false;
        }
        ino.data[o] ^= 1 << (bit % 8);
        if o < ino.durable.len() {
            ino.durable[o] ^= 1 << (bit % 8);
        }
        true
    }
    /// Current length of a file, if it exists.
    pub fn file_len(&self, path: &Path) -> Option<u64> {
        let st = self.st.lock().unwrap();
        st.names
            .get(path)
            .map(|i| i.lock().unwrap().data.len() as u64)
    }
    /// Paths of all current files.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.st.lock().unwrap().names.keys().cloned().collect();
        v.sort();
        v
    }
}

struct SimFile {
    st: Arc<Mutex<State>>,
    inode: Arc<Mutex<Inode>>,
    epoch: u64,
}

impl SimFile {
    fn check(&self) -> io::Result<std::sync::MutexGuard<'_, State>> {
        let st = self.st.lock().unwrap();
        if st.epoch != self.epoch {
            return Err(crashed());
        }
        Ok(st)
    }
    fn check_mut(&self) -> io::Result<std::sync::MutexGuard<'_, State>> {
        let mut st = self.check()?;
        st.mutate()?;
        Ok(st)
    }
}

impl FileHandle for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let _st = self.check()?;
        let ino = self.inode.lock().unwrap();
        let o = offset as usize;
        if o >= ino.data.len() {
            return Ok(0);
        }
        let n = buf.len().min(ino.data.len() - o);
        buf[..n].copy_from_slice(&ino.data[o..o + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let st = self.check_mut()?;
        let mut ino = self.inode.lock().unwrap();
        let o = offset as usize;
        let (n, err) = if st.enospc {
            (
                buf.len() / 2,
                Some(io::Error::from_raw_os_error(libc::ENOSPC)),
            )
        } else {
            (buf.len(), None)
        };
        if ino.data.len() < o + n {
            ino.data.resize(o + n, 0);
        }
        ino.data[o..o + n].copy_from_slice(&buf[..n]);
        if let Some((s, e)) = ino.stale {
            let (ws, we) = (o, o + n);
            ino.stale = if ws <= s && we >= e {
                None
            } else if ws <= s && we > s {
                Some((we, e))
            } else if ws < e && we >= e {
                Some((s, ws))
            } else {
                Some((s, e))
            };
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.check_mut()?;
        let mut ino = self.inode.lock().unwrap();
        if st.fail_fsyncs > 0 {
            st.fail_fsyncs -= 1;
            // Linux: the dirty pages are marked clean without being written.
            let d = ino.durable.len();
            if ino.data.len() > d {
                ino.stale = Some((d, ino.data.len()));
            }
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        st.fsyncs += 1;
        let mut new = ino.data.clone();
        if let Some((s, e)) = ino.stale.take() {
            for i in s..e.min(new.len()) {
                new[i] = ino.durable.get(i).copied().unwrap_or(0);
            }
        }
        ino.durable = new;
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let _st = self.check_mut()?;
        let mut ino = self.inode.lock().unwrap();
        let l = len as usize;
        ino.data.resize(l, 0);
        if let Some((s, e)) = ino.stale {
            ino.stale = if s >= l { None } else { Some((s, e.min(l))) };
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let _st = self.check()?;
        Ok(self.inode.lock().unwrap().data.len() as u64)
    }
}

impl FileSystem for SimFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn open_rw(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let mut st = self.lock_fs_mut()?;
        let inode = st.names.entry(path.to_path_buf()).or_default().clone();
        Ok(Arc::new(SimFile {
            st: self.st.clone(),
            inode,
            epoch: st.epoch,
        }))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn FileHandle>> {
        let st = self.lock_fs()?;
        let inode = st
            .names
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(Arc::new(SimFile {
            st: self.st.clone(),
            inode,
            epoch: st.epoch,
        }))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.lock_fs()?;
        Ok(st
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock_fs_mut()?;
        st.names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock_fs_mut()?;
        let ino = st
            .names
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        st.names.insert(to.to_path_buf(), ino);
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock_fs_mut()?;
        if st.fail_fsyncs > 0 {
            st.fail_fsyncs -= 1;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        st.durable_names.retain(|p, _| p.parent() != Some(dir));
        let cur: Vec<_> = st
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, i)| (p.clone(), i.clone()))
            .collect();
        st.durable_names.extend(cur);
        Ok(())
    }
}
