//! `kura backup` and `kura restore`: a consistent copy of a running embedded
//! registry (SQLite metadata + filesystem blobs) and its restore into a new
//! data directory.
//!
//! A backup directory holds `meta.db` (an online snapshot taken with SQLite's
//! `VACUUM INTO`, which reads one transaction's view of the database while the
//! server keeps writing), `blobs/<storage key>` for every blob row of that
//! snapshot, `master.key` (it seals the secrets in the database: the backup is
//! as sensitive as the data directory) and `backup.json`, written last, so a
//! backup without it is incomplete and `kura restore` refuses it.
//!
//! Consistency with GC: blob bytes are deleted only by garbage collection
//! (after its transaction deleted the row) and by the clean-up of a spare
//! upload copy that no row names. The backup holds the `gc` lease from before
//! the snapshot until the last blob is copied, so no GC run (of the server's
//! background jobs or a `kura gc`) can delete a blob the snapshot names
//! meanwhile; a GC run in progress is waited for, and one due meanwhile is
//! skipped (it logs that the lease is held). Pushes go on: what they write
//! after the snapshot is not in the backup. Every blob is hashed while it is
//! copied and must match its digest, and every manifest's blobs must be in
//! the copy, or the backup fails.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use kura_oci::{Digest, Hasher};
use kura_store::gc::{with_job_lease, Leased};
use kura_store::{BlobStore, Dialect, FsBlobStore};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};

use crate::progress::{note, Progress};

/// The backup format this version writes and reads.
const FORMAT: u32 = 1;
/// The lease GC runs under (kura_gc's).
const GC_LEASE: &str = "gc";
/// Rows of the snapshot that only mean something to the process that wrote
/// them: upload sessions (their bytes are not copied), queued deletes of
/// bytes not copied, and leases (the backup's own `gc` lease among them).
const TRANSIENT_TABLES: &[&str] = &["uploads", "pending_deletes", "leases", "fetch_leases"];

/// How a command prints its summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A few lines for people (`table` is accepted too).
    #[value(alias = "table")]
    Text,
    /// One JSON object.
    Json,
}

#[derive(clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    store: crate::StoreArgs,
    /// The backup directory to create (must not exist, or be empty).
    out: PathBuf,
    /// How long to wait for a GC run in progress to finish before giving up.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// Summary format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    /// Tests only: sleep this many milliseconds after each blob (so a test can
    /// act while the backup holds its snapshot).
    #[arg(long, env = "KURA_BACKUP_BLOB_DELAY_MS", default_value_t = 0, hide = true)]
    blob_delay_ms: u64,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The data directory to restore into (must not exist, or be empty).
    #[arg(long, env = "KURA_DATA_DIR")]
    data_dir: PathBuf,
    /// The backup directory (made by `kura backup`).
    backup: PathBuf,
    /// Summary format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

/// `backup.json`: what the backup holds, for `kura restore` to check.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BackupInfo {
    format: u32,
    kura_version: String,
    created_at_ms: i64,
    /// sha256 of `meta.db`.
    meta_sha256: String,
    repositories: i64,
    manifests: i64,
    tags: i64,
    blobs: u64,
    blob_bytes: u64,
    master_key: bool,
}

/// The summary both commands print.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    path: String,
    repositories: i64,
    manifests: i64,
    tags: i64,
    blobs: u64,
    blob_bytes: u64,
    seconds: f64,
}

fn print_summary(what: &str, s: &Summary, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string(s)?),
        Output::Text => println!(
            "{what} {}: {} repositories, {} manifests, {} tags, {} blobs ({} bytes) in {:.1}s",
            s.path, s.repositories, s.manifests, s.tags, s.blobs, s.blob_bytes, s.seconds
        ),
    }
    Ok(())
}

/// A directory that must be new: created (0700) if absent, refused unless empty.
fn new_dir(dir: &Path, what: &str) -> anyhow::Result<()> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("{what} {} is not empty: refusing to write into it", dir.display());
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display())),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

async fn sqlite(path: &Path, read_only: bool) -> anyhow::Result<SqliteConnection> {
    let conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(read_only)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(conn)
}

async fn count(conn: &mut SqliteConnection, table: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(conn)
        .await?)
}

/// The blob rows of a database: (digest, size, storage key).
async fn blob_rows(conn: &mut SqliteConnection) -> anyhow::Result<Vec<(String, i64, String)>> {
    let rows = sqlx::query("SELECT digest, size, storage_key FROM blobs ORDER BY digest")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// The sha256 of a file, as lower-case hex.
fn file_sha256(path: &Path) -> anyhow::Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = Hasher::new(kura_oci::Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish().hex().to_string())
}

/// A file created with mode 0600 (its directories 0700).
fn private_file(path: &Path) -> anyhow::Result<fs::File> {
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

fn copy_private(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let mut out = private_file(dst)?;
    let mut inp = fs::File::open(src).with_context(|| format!("reading {}", src.display()))?;
    std::io::copy(&mut inp, &mut out).with_context(|| format!("copying {}", src.display()))?;
    out.sync_all()?;
    Ok(())
}

/// Copy the bytes of `stream` to the new file `dst`, checking they are the
/// blob `digest` of `size` bytes.
async fn write_verified(mut stream: kura_store::ByteStream, digest: &str, size: i64, dst: &Path) -> anyhow::Result<()> {
    let want = Digest::from_str(digest).with_context(|| format!("bad digest {digest:?} in the database"))?;
    let mut hasher = Hasher::new(want.algorithm());
    let mut out = private_file(dst)?;
    let mut len = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("reading blob {digest}"))?;
        hasher.update(&chunk);
        len += chunk.len() as u64;
        out.write_all(&chunk)
            .with_context(|| format!("writing {}", dst.display()))?;
    }
    out.sync_all()?;
    let got = hasher.finish();
    if got != want || len != size as u64 {
        let _ = fs::remove_file(dst);
        bail!("blob {digest}: read {len} bytes with digest {got}, expected {size} bytes: the stored copy is damaged");
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// `kura backup`.
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    crate::init_logging(&args.store.log_format);
    if args.store.database_url.as_deref().is_some_and(|u| !u.is_empty())
        || args.store.blob.s3_bucket.as_deref().is_some_and(|b| !b.is_empty())
    {
        bail!(
            "kura backup copies an embedded registry (SQLite and blobs in the data directory); \
             with PostgreSQL or S3 use their own tools (pg_dump or PITR, bucket versioning or replication): see README"
        );
    }
    let db = args.store.data_dir.join("meta.db");
    if !db.is_file() {
        bail!("{} holds no Kura database (meta.db)", args.store.data_dir.display());
    }
    let (meta, blobs) = crate::open_stores(&args.store).await?;
    if meta.dialect() != Dialect::Sqlite {
        bail!("kura backup needs the embedded (SQLite) store");
    }
    new_dir(&args.out, "backup directory")?;
    let deadline = tokio::time::Instant::now() + args.wait;
    let mut waited = false;
    let summary = loop {
        let run = with_job_lease(meta.as_ref(), GC_LEASE, async {
            copy_out(&args, &db, blobs.as_ref())
                .await
                .map_err(|e| kura_store::StoreError::Invalid(format!("{e:#}")))
        })
        .await;
        match run {
            Ok(Leased::Ran(s)) => break s,
            Ok(Leased::Held(by, until)) => {
                if tokio::time::Instant::now() >= deadline {
                    let _ = fs::remove_dir(&args.out);
                    bail!(
                        "GC still holds its lease ({by}, until {until} ms) after {:?}: try again later",
                        args.wait
                    );
                }
                if !waited {
                    note(
                        args.quiet,
                        &format!("backup: waiting for a GC run to finish (lease held by {by})"),
                    );
                    waited = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&args.out);
                return Err(anyhow::anyhow!(e).context("backup failed; the partial backup was removed"));
            }
        }
    };
    print_summary("backup", &summary, args.output)
}

/// The backup proper, under the GC lease.
async fn copy_out(args: &BackupArgs, db: &Path, blobs: &dyn BlobStore) -> anyhow::Result<Summary> {
    let start = std::time::Instant::now();
    let out = &args.out;
    let snap = out.join("meta.db");
    // The online snapshot: one read transaction's view of the live database.
    {
        let mut live = sqlite(db, false).await?;
        sqlx::query("VACUUM INTO ?")
            .bind(snap.to_string_lossy().to_string())
            .execute(&mut live)
            .await
            .context("snapshotting the database (VACUUM INTO)")?;
        live.close().await?;
    }
    fs::set_permissions(&snap, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let mut conn = sqlite(&snap, false).await?;
    for t in TRANSIENT_TABLES {
        sqlx::query(&format!("DELETE FROM {t}")).execute(&mut conn).await?;
    }
    let rows = blob_rows(&mut conn).await?;
    // Every manifest's blobs must be rows of the snapshot (the schema's
    // foreign keys say so; checked, since the copy depends on it).
    let dangling: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM manifest_blobs mb WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = mb.blob_digest)",
    )
    .fetch_one(&mut conn)
    .await?;
    if dangling > 0 {
        bail!("the snapshot has {dangling} manifest references to blobs it does not hold");
    }
    let (repositories, manifests, tags) = (
        count(&mut conn, "repositories").await?,
        count(&mut conn, "manifests").await?,
        count(&mut conn, "tags").await?,
    );
    conn.close().await?;
    let total: u64 = rows.iter().map(|r| r.1.max(0) as u64).sum();
    let mut progress = Progress::new("backup: blobs", rows.len() as u64, total, args.quiet);
    for (digest, size, key) in &rows {
        let stream = blobs
            .read(key, None)
            .await
            .with_context(|| format!("reading blob {digest} (key {key}) from the live store"))?;
        write_verified(stream, digest, *size, &out.join("blobs").join(key)).await?;
        progress.add(1, *size as u64);
        if args.blob_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.blob_delay_ms)).await;
        }
    }
    progress.finish();
    let key_file = args.store.data_dir.join("master.key");
    let master_key = key_file.is_file();
    if master_key {
        copy_private(&key_file, &out.join("master.key"))?;
    }
    let info = BackupInfo {
        format: FORMAT,
        kura_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at_ms: kura_store::now_millis(),
        meta_sha256: file_sha256(&snap)?,
        repositories,
        manifests,
        tags,
        blobs: rows.len() as u64,
        blob_bytes: total,
        master_key,
    };
    // Written last: its presence marks a complete backup.
    let mut f = private_file(&out.join("backup.json"))?;
    f.write_all(serde_json::to_string_pretty(&info)?.as_bytes())?;
    f.sync_all()?;
    sync_dir(out);
    Ok(Summary {
        path: out.display().to_string(),
        repositories,
        manifests,
        tags,
        blobs: info.blobs,
        blob_bytes: total,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// `kura restore`.
pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    crate::init_logging("text");
    let info_path = args.backup.join("backup.json");
    let info: BackupInfo = serde_json::from_slice(&fs::read(&info_path).with_context(|| {
        format!(
            "{} is not a complete Kura backup (no backup.json)",
            args.backup.display()
        )
    })?)
    .with_context(|| format!("reading {}", info_path.display()))?;
    if info.format != FORMAT {
        bail!("backup format {} is not one this version reads ({FORMAT})", info.format);
    }
    let snap = args.backup.join("meta.db");
    let sum = file_sha256(&snap)?;
    if sum != info.meta_sha256 {
        bail!(
            "{} does not match backup.json (sha256 {sum}, expected {}): the backup is damaged",
            snap.display(),
            info.meta_sha256
        );
    }
    new_dir(&args.data_dir, "data directory")?;
    match restore_into(&args, &info).await {
        Ok(s) => print_summary("restored", &s, args.output),
        Err(e) => {
            // The directory was empty: leave nothing half-restored behind.
            if let Ok(entries) = fs::read_dir(&args.data_dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        fs::remove_dir_all(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                }
            }
            Err(e.context("restore failed; the data directory was emptied again"))
        }
    }
}

async fn restore_into(args: &RestoreArgs, info: &BackupInfo) -> anyhow::Result<Summary> {
    let start = std::time::Instant::now();
    let dir = &args.data_dir;
    let db = dir.join("meta.db");
    copy_private(&args.backup.join("meta.db"), &db)?;
    let mut conn = sqlite(&db, true).await?;
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await?;
    if check != "ok" {
        bail!("the backup's database fails SQLite's integrity check: {check}");
    }
    let rows = blob_rows(&mut conn).await?;
    let (repositories, manifests, tags) = (
        count(&mut conn, "repositories").await?,
        count(&mut conn, "manifests").await?,
        count(&mut conn, "tags").await?,
    );
    conn.close().await?;
    if rows.len() as u64 != info.blobs
        || (repositories, manifests, tags) != (info.repositories, info.manifests, info.tags)
    {
        bail!("the backup's database does not hold what backup.json lists");
    }
    let total: u64 = rows.iter().map(|r| r.1.max(0) as u64).sum();
    let mut progress = Progress::new("restore: blobs", rows.len() as u64, total, args.quiet);
    let blob_dir = dir.join("blobs").join("blobs");
    for (digest, size, key) in &rows {
        let src = args.backup.join("blobs").join(key);
        let file = tokio::fs::File::open(&src)
            .await
            .with_context(|| format!("blob {digest} is missing from the backup ({})", src.display()))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 16).boxed();
        write_verified(stream, digest, *size, &blob_dir.join(key)).await?;
        progress.add(1, *size as u64);
    }
    progress.finish();
    if info.master_key {
        copy_private(&args.backup.join("master.key"), &dir.join("master.key"))?;
    }
    sync_dir(dir);
    // Open it as `kura serve` will: migrations (a backup of an older version)
    // and the blob store's layout.
    kura_store::SqlMetaStore::open(&db)
        .await
        .context("opening the restored database")?;
    FsBlobStore::open(dir.join("blobs"))
        .await
        .context("opening the restored blob store")?;
    Ok(Summary {
        path: dir.display().to_string(),
        repositories,
        manifests,
        tags,
        blobs: rows.len() as u64,
        blob_bytes: total,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The lock file that tells `kura serve` and `kura migrate` apart: a server
/// holds it shared, a migration exclusively.
fn lock_file(data_dir: &Path) -> anyhow::Result<fs::File> {
    let path = data_dir.join("kura.lock");
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Taken by `kura serve` on an embedded data directory for its lifetime:
/// fails while `kura migrate` copies the directory.
pub fn serve_lock(data_dir: &Path) -> anyhow::Result<fs::File> {
    let f = lock_file(data_dir)?;
    match f.try_lock_shared() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => bail!(
            "kura migrate is copying {}: the data directory stays read-only until it ends",
            data_dir.display()
        ),
        Err(fs::TryLockError::Error(e)) => Err(e).context("locking the data directory"),
    }
}

/// Taken by `kura migrate`: fails while a server runs on the directory.
pub fn exclusive_lock(data_dir: &Path) -> anyhow::Result<fs::File> {
    let f = lock_file(data_dir)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => bail!(
            "a kura server is running on {}: stop it first (the source must not change while it is migrated)",
            data_dir.display()
        ),
        Err(fs::TryLockError::Error(e)) => Err(e).context("locking the data directory"),
    }
}

/// [`serve_lock`] for an embedded store (no lock with PostgreSQL: the data
/// directory is not the source of truth there).
pub fn serve_lock_for(store: &crate::StoreArgs) -> anyhow::Result<Option<fs::File>> {
    if store.database_url.as_deref().is_some_and(|u| !u.is_empty()) {
        return Ok(None);
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&store.data_dir)
        .with_context(|| format!("creating data directory {}", store.data_dir.display()))?;
    serve_lock(&store.data_dir).map(Some)
}
