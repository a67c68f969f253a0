//! The data directory: private modes, and the space reserve.
//!
//! Everything Kura keeps on disk is readable by its own user only: the
//! directory and the ones it makes are 0700, the database (and its WAL and
//! shared-memory files, which SQLite creates with the database's mode), the
//! master key, blob and upload files are 0600. A directory made by an older
//! version or by hand with looser modes is tightened at start-up, with a log
//! line. (Blob files written with looser modes by an older version stay as
//! they are, but sit in 0700 directories no other user can enter.)

use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use kura_store::DiskReserve;

/// Files of the data directory that must be 0600 when present.
const PRIVATE_FILES: &[&str] = &[
    "meta.db",
    "meta.db-wal",
    "meta.db-shm",
    "master.key",
    kura_store::space::RESERVE_FILE,
];
/// Directories of the data directory that must be 0700 when present.
const PRIVATE_DIRS: &[&str] = &["blobs", "blobs/blobs", "blobs/uploads"];

/// Create the data directory (0700) or tighten an existing one, its database,
/// key and blob directories. With `sqlite`, create an empty database file
/// with mode 0600 if there is none, so SQLite's own files inherit it.
pub fn prepare(dir: &Path, sqlite: bool) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    tighten(dir, 0o700)?;
    for d in PRIVATE_DIRS {
        tighten(&dir.join(d), 0o700)?;
    }
    for f in PRIVATE_FILES {
        tighten(&dir.join(f), 0o600)?;
    }
    if sqlite {
        let db = dir.join("meta.db");
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&db)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", db.display())),
        }
    }
    Ok(())
}

/// Remove group and other permissions from `path` (if it exists and has any).
fn tighten(path: &Path, mode: u32) -> anyhow::Result<()> {
    let Ok(meta) = fs::metadata(path) else {
        return Ok(());
    };
    let old = meta.permissions().mode() & 0o7777;
    if old & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("restricting the mode of {}", path.display()))?;
        tracing::info!(path = %path.display(), from = format!("{old:o}"), to = format!("{mode:o}"), "tightened the mode of a data-directory entry");
    }
    Ok(())
}

static RESERVE: OnceLock<Arc<DiskReserve>> = OnceLock::new();

/// The process's space reserve in `dir` (`mib` MiB; 0 turns it off).
pub fn reserve(dir: &Path, mib: u64) -> Arc<DiskReserve> {
    RESERVE
        .get_or_init(|| Arc::new(DiskReserve::open(dir, mib.saturating_mul(1 << 20))))
        .clone()
}

/// Allocate the reserve again if it was released and the disk has room now
/// (after a GC run).
pub async fn restore_reserve() {
    if let Some(r) = RESERVE.get().cloned() {
        let _ = tokio::task::spawn_blocking(move || r.restore()).await;
    }
}
