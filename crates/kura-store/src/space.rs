//! Running out of disk space without wedging.
//!
//! A full disk must never leave Kura unable to free space: deleting an image
//! and collecting garbage are database writes, and SQLite needs room in its
//! WAL (and its file) to record them; after a restart the WAL starts empty,
//! so even a delete fails with `database or disk is full`. Kura therefore
//! keeps a [`DiskReserve`]: a file of a fixed size (64 MiB by default) in the
//! data directory, allocated while there is room. The first time the
//! metadata store meets a full disk it deletes the file and runs the write
//! again, so deletes and GC go on. While the reserve is released the
//! filesystem blob store refuses new upload bytes (a 503 the client retries),
//! so pushes cannot eat the room meant for freeing space; once GC has freed
//! enough (twice the reserve), the file is allocated again and uploads resume.
//!
//! Every full-disk failure is counted ([`disk_full_events`]) and logged as an
//! error with `event = "disk_full"`.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::StoreError;

/// The reserve file's name in the data directory.
pub const RESERVE_FILE: &str = "space.reserve";

static DISK_FULL_EVENTS: AtomicU64 = AtomicU64::new(0);

/// Full-disk failures this process has met (for a metrics endpoint).
pub fn disk_full_events() -> u64 {
    DISK_FULL_EVENTS.load(Ordering::Relaxed)
}

/// Count and log a full-disk failure met while doing `what`.
pub fn note_disk_full(what: &str, error: &dyn std::fmt::Display) {
    let n = DISK_FULL_EVENTS.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::error!(event = "disk_full", total = n, during = what, error = %error, "storage is full");
}

/// True for an I/O error that means "no space left" (ENOSPC, or EDQUOT: a quota).
pub fn io_is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(28 | 122))
}

impl StoreError {
    /// The storage is out of space: SQLite's `SQLITE_FULL` (13), PostgreSQL's
    /// `disk_full` (53100), or ENOSPC/EDQUOT from the blob store.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io(e) => io_is_full(e),
            StoreError::Db(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("13" | "53100")) || e.message().contains("database or disk is full")
            }
            StoreError::Db(sqlx::Error::Io(e)) => io_is_full(e),
            _ => false,
        }
    }
}

/// A file of reserved space in the data directory (see the module docs).
#[derive(Debug)]
pub struct DiskReserve {
    path: PathBuf,
    bytes: u64,
    /// Serialises release and restore within the process.
    lock: Mutex<()>,
}

impl DiskReserve {
    /// The reserve of `bytes` in `dir` (0 turns it off). Allocates the file
    /// now if it is missing and the disk has room for it and as much again.
    pub fn open(dir: &Path, bytes: u64) -> Self {
        let r = DiskReserve {
            path: dir.join(RESERVE_FILE),
            bytes,
            lock: Mutex::new(()),
        };
        if bytes > 0 && !r.held() && !r.restore() {
            tracing::warn!(path = %r.path.display(), bytes, "the disk is too full to allocate the space reserve; uploads wait until space is freed");
        }
        r
    }

    /// The reserve file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the reserve is off (size 0).
    pub fn disabled(&self) -> bool {
        self.bytes == 0
    }

    /// The reserve file exists at its full size.
    pub fn held(&self) -> bool {
        fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.bytes)
    }

    /// Delete the reserve file; true if that freed space now (false when it
    /// was off or already gone, e.g. released by another process).
    pub fn release(&self) -> bool {
        if self.disabled() {
            return false;
        }
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        match fs::remove_file(&self.path) {
            Ok(()) => {
                tracing::warn!(event = "disk_reserve_released", path = %self.path.display(), bytes = self.bytes,
                    "the disk is full: released the space reserve so deletes and GC can run; uploads are refused until GC frees space");
                true
            }
            Err(_) => false,
        }
    }

    /// Whether new upload bytes may be written: the reserve is held, or could
    /// be allocated again now (the disk has room for it and as much again).
    pub fn ensure(&self) -> bool {
        self.disabled() || self.held() || self.restore()
    }

    /// Allocate the reserve file if the disk has room for it and as much
    /// again; true if it is held afterwards.
    pub fn restore(&self) -> bool {
        if self.disabled() {
            return true;
        }
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.held() {
            return true;
        }
        let Some(free) = free_bytes(self.path.parent().unwrap_or(Path::new("."))) else {
            return false;
        };
        if free < self.bytes.saturating_mul(2) {
            return false;
        }
        match allocate(&self.path, self.bytes) {
            Ok(()) => {
                tracing::info!(event = "disk_reserve_allocated", path = %self.path.display(), bytes = self.bytes, "space reserve allocated");
                true
            }
            Err(e) => {
                let _ = fs::remove_file(&self.path);
                tracing::warn!(path = %self.path.display(), error = %e, "could not allocate the space reserve");
                false
            }
        }
    }
}

/// Bytes available to this (unprivileged) process on the filesystem of `dir`.
#[cfg(target_os = "linux")]
fn free_bytes(dir: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(not(target_os = "linux"))]
fn free_bytes(_dir: &Path) -> Option<u64> {
    Some(u64::MAX)
}

/// Create `path` with `bytes` of real (not sparse) blocks, durably.
fn allocate(path: &Path, bytes: u64) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let file = opts.open(&tmp)?;
    #[cfg(target_os = "linux")]
    let allocated = rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, bytes).is_ok();
    #[cfg(not(target_os = "linux"))]
    let allocated = false;
    if !allocated {
        // No fallocate here: write zeros.
        let zeros = vec![0u8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            io::Write::write_all(&mut &file, &zeros[..n])?;
            left -= n as u64;
        }
    }
    file.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        let r = DiskReserve::open(dir.path(), 1 << 20);
        assert!(r.held());
        assert!(r.release());
        assert!(!r.held());
        assert!(!r.release(), "a second release frees nothing");
        assert!(r.ensure(), "room enough: allocated again");
        assert!(r.held());
        let off = DiskReserve::open(dir.path(), 0);
        assert!(off.ensure() && !off.release());
    }

    #[test]
    fn full_errors_are_recognised() {
        let e = StoreError::Io(io::Error::from_raw_os_error(28));
        assert!(e.is_disk_full());
        assert!(!StoreError::Io(io::Error::from(io::ErrorKind::BrokenPipe)).is_disk_full());
    }
}
