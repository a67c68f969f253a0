//! The metadata store on SQL, one code path for two engines: SQLite (the
//! embedded default) and PostgreSQL (several Kura nodes sharing one database).
//!
//! Both run the same DML text through sqlx's `Any` driver (`$N` placeholders,
//! which both accept; `ON CONFLICT`, `RETURNING`, keyset pagination). What
//! differs lives in [`Dialect`]: the schema (one migration directory per
//! engine, applied on open), how a write transaction begins, and the odd
//! function name (`group_concat` / `string_agg`).
//!
//! * SQLite (WAL, synchronous=FULL): reads go through a pool of read-only
//!   connections; writes through one writer connection, because SQLite admits
//!   one writer at a time anyway. Write transactions start with
//!   `BEGIN IMMEDIATE`, so another process on the same file (`kura gc`) waits
//!   for the lock (busy timeout) instead of failing a read-then-write upgrade.
//!   Writes that need not survive a power cut (upload leases, a new upload
//!   session, access times, done outbox rows) commit without their own WAL
//!   fsync ([`Relaxed`]); the next durable commit's fsync covers them, since
//!   the WAL is one ordered log.
//! * PostgreSQL: the write pool runs every statement and transaction
//!   SERIALIZABLE, so the read-then-write decisions that SQLite serializes with
//!   its single writer are checked by the database across nodes. A write the
//!   database aborts (40001 serialization failure, 40P01 deadlock) is run again
//!   from the start (`retry_write!`). Text keys use the C collation, so tag
//!   and repository order is byte order, as on SQLite and in the OCI spec.
//!
//! Transactions are short and never wait on blob I/O.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, FromRow, Row};

use crate::control::*;
use crate::error::{Result, StoreError};
use crate::meta::*;
use crate::now_millis;

/// SQLite migrations, applied in order: (version, SQL). Version 1 is re-run
/// on every open (it is all `IF NOT EXISTS`).
pub(crate) const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_scan.sql")),
    (3, include_str!("../migrations/sqlite/0003_iam.sql")),
    (4, include_str!("../migrations/sqlite/0004_public.sql")),
    (5, include_str!("../migrations/sqlite/0005_listing.sql")),
    (6, include_str!("../migrations/sqlite/0006_key_owner.sql")),
    (8, include_str!("../migrations/sqlite/0008_orphans.sql")),
];
/// PostgreSQL migrations. PostgreSQL support arrived with schema version 4, so
/// its first migration creates that schema at once.
pub(crate) const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (4, include_str!("../migrations/postgres/0004_schema.sql")),
    (5, include_str!("../migrations/postgres/0005_listing.sql")),
    (6, include_str!("../migrations/postgres/0006_key_owner.sql")),
    (8, include_str!("../migrations/postgres/0008_orphans.sql")),
];
/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 8;

/// How long a writer may hold an upload before another request may take it.
/// The holder renews it while it streams ([`MetaStore::upload_renew`]), so a
/// node that dies mid-upload blocks the upload for at most this long.
pub const LEASE_MS: i64 = 30 * 1000;

/// How often a write aborted by PostgreSQL (serialization failure, deadlock)
/// is tried again before the error reaches the caller.
pub(crate) const MAX_RETRIES: u32 = 40;

/// The SQL engine behind a [`SqlMetaStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// One SQLite file (embedded, one serving process).
    Sqlite,
    /// A PostgreSQL database shared by any number of nodes.
    Postgres,
}

/// Metadata in SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct SqlMetaStore {
    pub(crate) read: AnyPool,
    pub(crate) write: AnyPool,
    pub(crate) dialect: Dialect,
    /// Space released when a write finds the disk full (SQLite in the data directory).
    pub(crate) reserve: Option<std::sync::Arc<crate::space::DiskReserve>>,
}

/// The embedded store's historical name.
pub type SqliteMetaStore = SqlMetaStore;

/// The writer connection, taken for a write that need not be durable on its
/// own: on SQLite it runs with `synchronous = NORMAL` (no fsync at commit), so
/// a power cut may lose it, but never a durable commit made after it (they
/// share one ordered WAL) and never the database's consistency. Leases, the
/// row of a just-begun upload session (the client has been acknowledged no
/// bytes yet), access times and finished outbox rows are such writes; blobs,
/// manifests, tags, upload progress and every API change are not.
///
/// The connection goes back to the pool only after `synchronous = FULL` is
/// restored ([`Relaxed::done`]); dropped any other way (an error, a cancelled
/// request) it is closed instead, so a durable write can never run relaxed.
/// On PostgreSQL this is just a pooled write connection (its commits are
/// durable either way).
pub(crate) struct Relaxed {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
    sqlite: bool,
}

impl Relaxed {
    /// The connection to run the write on.
    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        self.conn.as_mut().expect("a relaxed writer is used before done()")
    }

    /// Restore durable commits and give the connection back.
    pub(crate) async fn done(mut self) -> Result<()> {
        if self.sqlite {
            self.conn().execute("PRAGMA synchronous = FULL").await?;
        }
        drop(self.conn.take());
        Ok(())
    }
}

impl Drop for Relaxed {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.sqlite {
                // Possibly still relaxed: close it; the pool opens a new
                // writer (synchronous = FULL) when next asked.
                drop(conn.detach());
            }
        }
    }
}

/// A write failure worth running the whole write again for.
pub(crate) trait Retryable: std::fmt::Display {
    fn retryable(&self) -> bool;
    /// The disk is full (worth one more try once the reserve is released).
    fn disk_full(&self) -> bool;
}

impl Retryable for StoreError {
    fn retryable(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => matches!(e.code().as_deref(), Some("40001" | "40P01")),
            _ => false,
        }
    }

    fn disk_full(&self) -> bool {
        self.is_disk_full()
    }
}

impl Retryable for PutManifestError {
    fn retryable(&self) -> bool {
        matches!(self, PutManifestError::Store(e) if e.retryable())
    }

    fn disk_full(&self) -> bool {
        matches!(self, PutManifestError::Store(e) if e.is_disk_full())
    }
}

/// Wait a little, longer on each attempt, with jitter, before a retried write.
pub(crate) async fn backoff(attempt: u32) {
    let base = 2u64.saturating_pow(attempt.min(6));
    let jitter = (uuid::Uuid::new_v4().as_u128() % 1000) as u64;
    tokio::time::sleep(Duration::from_micros(base * 500 + jitter * base)).await;
}

/// Run a write (an `async` block, re-created for each attempt) until it
/// succeeds, fails for good, or has been aborted by the database too often.
/// A write that finds the disk full releases the store's space reserve (see
/// [`crate::space`]) and runs again, once: so deletes and GC can always
/// record what they free.
macro_rules! retry_write {
    ($store:expr, $body:expr) => {{
        let mut attempt = 0u32;
        let mut freed = false;
        loop {
            match $body.await {
                Err(e) if attempt < MAX_RETRIES && crate::sql::Retryable::retryable(&e) => {
                    attempt += 1;
                    crate::sql::backoff(attempt).await;
                }
                Err(e) if !freed && crate::sql::Retryable::disk_full(&e) => {
                    freed = true;
                    if !$store.free_reserve(&e) {
                        break Err(e);
                    }
                }
                r => break r,
            }
        }
    }};
}
pub(crate) use retry_write;

impl SqlMetaStore {
    /// Open (creating and migrating) the SQLite database at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}", path.as_ref().display());
        const PRAGMAS: &str = "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 30000; PRAGMA synchronous = FULL;";
        let write = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .after_connect(|c, _| {
                Box::pin(async move {
                    c.execute(sqlx::raw_sql("PRAGMA journal_mode = WAL;")).await?;
                    c.execute(sqlx::raw_sql(PRAGMAS)).await?;
                    Ok(())
                })
            })
            .connect(&format!("{url}?mode=rwc"))
            .await?;
        let store = SqlMetaStore {
            read: write.clone(),
            write,
            dialect: Dialect::Sqlite,
            reserve: None,
        };
        store.migrate(SQLITE_MIGRATIONS).await?;
        // Statistics for the query planner, gathered where they are missing
        // or stale (bounded work per table, so a big database opens quickly).
        sqlx::raw_sql("PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;")
            .execute(&store.write)
            .await?;
        // Readers keep up to 8 MiB of pages each: a page of a 100k-image
        // listing touches a few hundred B-tree pages, most outside SQLite's
        // default 2 MiB cache.
        const READ_PRAGMAS: &str =
            "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 30000; PRAGMA synchronous = FULL; PRAGMA cache_size = -8192;";
        let read = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(60))
            .after_connect(|c, _| Box::pin(async move { c.execute(sqlx::raw_sql(READ_PRAGMAS)).await.map(|_| ()) }))
            .connect(&format!("{url}?mode=ro"))
            .await?;
        Ok(SqlMetaStore { read, ..store })
    }

    /// Connect to (and migrate) a PostgreSQL database, e.g.
    /// `postgres://kura@db.internal:5432/kura`. Any number of nodes may share it.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let write = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(60))
            .after_connect(|c, _| {
                Box::pin(async move {
                    c.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                        .await
                        .map(|_| ())
                })
            })
            .connect(url)
            .await?;
        let read = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(60))
            .connect(url)
            .await?;
        let store = SqlMetaStore {
            read,
            write,
            dialect: Dialect::Postgres,
            reserve: None,
        };
        store.migrate(POSTGRES_MIGRATIONS).await?;
        Ok(store)
    }

    /// Which engine this store runs on.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Release `reserve` when a write finds the disk full, and run the write
    /// again (see [`crate::space`]).
    pub fn with_reserve(mut self, reserve: std::sync::Arc<crate::space::DiskReserve>) -> Self {
        self.reserve = Some(reserve);
        self
    }

    /// A write failed with a full disk: count it, and release the reserve.
    /// True if that freed space (worth running the write again).
    pub(crate) fn free_reserve(&self, e: &dyn std::fmt::Display) -> bool {
        crate::space::note_disk_full("a metadata write", e);
        self.reserve.as_ref().is_some_and(|r| r.release())
    }

    /// Apply the migrations this database has not seen, each in its own
    /// transaction. On PostgreSQL an advisory lock keeps nodes that start
    /// together from migrating at once.
    pub(crate) async fn migrate(&self, migrations: &[(i64, &str)]) -> Result<()> {
        let mut conn = self.write.acquire().await?;
        if self.dialect == Dialect::Postgres {
            conn.execute("SELECT pg_advisory_lock(7403062651)").await?;
        }
        let result = async {
            conn.execute(sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
            ))
            .await?;
            let v: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_version")
                .fetch_optional(&mut *conn)
                .await?;
            let mut version = match v {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::Corrupt(format!(
                        "database schema version {v} is newer than this Kura"
                    )))
                }
                Some(v) => v,
                None => {
                    sqlx::query("INSERT INTO schema_version (version) VALUES (0)")
                        .execute(&mut *conn)
                        .await?;
                    0
                }
            };
            for (to, sql) in migrations {
                // SQLite's first schema is idempotent and re-applied on open.
                if version < *to || *to == 1 {
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    sqlx::raw_sql(sql).execute(&mut *tx).await?;
                    sqlx::query("UPDATE schema_version SET version = $1")
                        .bind(version.max(*to))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    version = version.max(*to);
                }
            }
            Ok(())
        }
        .await;
        if self.dialect == Dialect::Postgres {
            conn.execute("SELECT pg_advisory_unlock(7403062651)").await?;
        }
        result
    }

    /// Begin a write transaction the way this engine needs.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.write.begin().await?,
        })
    }

    /// The writer for one write that need not be durable on its own (see
    /// [`Relaxed`]).
    pub(crate) async fn relaxed(&self) -> Result<Relaxed> {
        let mut w = Relaxed {
            conn: Some(self.write.acquire().await?),
            sqlite: self.dialect == Dialect::Sqlite,
        };
        if w.sqlite {
            w.conn().execute("PRAGMA synchronous = NORMAL").await?;
        }
        Ok(w)
    }

    /// Run one statement as a relaxed write; returns the rows it affected.
    pub(crate) async fn execute_relaxed<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<u64> {
        let mut w = self.relaxed().await?;
        let affected = query.execute(w.conn()).await?.rows_affected();
        w.done().await?;
        Ok(affected)
    }

    /// The values of `values` that `select` (`SELECT col FROM t WHERE col IN`) finds.
    async fn known(&self, select: &str, values: &[String]) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for chunk in values.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("{select} ({})", marks.join(", "));
            let mut q = sqlx::query_scalar::<_, String>(&sql);
            for v in chunk {
                q = q.bind(v);
            }
            found.extend(q.fetch_all(&self.read).await?);
        }
        Ok(found)
    }

    /// Drop the job leases (`gc`, `lifecycle`) held by processes of this host
    /// that are no longer running: for the embedded setup at start-up, so a
    /// job killed mid-run does not block the next one. A `kura gc` still
    /// running beside the server keeps its lease. Returns the leases dropped.
    pub async fn clear_dead_job_leases(&self) -> Result<Vec<String>> {
        let host = crate::gc::host_name();
        let rows = sqlx::query("SELECT name, holder FROM leases")
            .fetch_all(&self.read)
            .await?;
        let mut cleared = Vec::new();
        for r in rows {
            let (name, holder): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            let mut parts = holder.splitn(3, ':');
            let (Some(h), Some(pid)) = (parts.next(), parts.next().and_then(|p| p.parse::<u32>().ok())) else {
                // A holder from before holders named their process: no
                // process of this version holds it.
                self.drop_lease(&name, &holder).await?;
                cleared.push(name);
                continue;
            };
            let alive = pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists();
            if h == host && !alive {
                self.drop_lease(&name, &holder).await?;
                cleared.push(name);
            }
        }
        Ok(cleared)
    }

    async fn drop_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Drop every upload lease. Only for the embedded single-process setup,
    /// at start-up: no other process can be writing an upload then.
    pub async fn clear_upload_leases(&self) -> Result<()> {
        sqlx::query("UPDATE uploads SET lease = NULL, lease_until = NULL WHERE lease IS NOT NULL")
            .execute(&self.write)
            .await?;
        Ok(())
    }
}

/// A HEAD refreshes a link's `touched_at` at most this often (GC grace periods
/// are far longer).
pub const TOUCH_EVERY_MS: i64 = 1_000;
/// How much later than a link's recorded `touched_at` its last HEAD may have
/// been: the registry skips a touch it made within [`TOUCH_EVERY_MS`] (per
/// node, in memory) and the store skips one within [`TOUCH_EVERY_MS`] of the
/// recorded time, so up to twice that. GC adds it to the grace period, so a
/// HEAD protects a link for at least the grace period.
pub const TOUCH_SLACK_MS: i64 = 2 * TOUCH_EVERY_MS;

/// Record a blob-store delete to do after the transaction commits.
async fn outbox(tx: &mut sqlx::Transaction<'_, sqlx::Any>, kind: &str, key: &str, now: i64) -> Result<PendingDelete> {
    let id: i64 =
        sqlx::query_scalar("INSERT INTO pending_deletes (kind, key, created_at) VALUES ($1, $2, $3) RETURNING id")
            .bind(kind)
            .bind(key)
            .bind(now)
            .fetch_one(&mut **tx)
            .await?;
    Ok(PendingDelete {
        id,
        kind: kind.to_string(),
        key: key.to_string(),
    })
}

const REPO_COLS: &str = "id, account, name, created_at, settings";

fn repo_from_row(r: &AnyRow) -> Result<RepoRow> {
    let settings: String = r.try_get("settings")?;
    Ok(RepoRow {
        id: r.try_get("id")?,
        account: r.try_get("account")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
        settings: serde_json::from_str(&settings)
            .map_err(|e| StoreError::Corrupt(format!("repository settings: {e}")))?,
    })
}

/// An image row with its tags (one string, newline-separated) and its size:
/// its own blobs, plus for an index the largest of its children's. `{TAGS}`
/// is the dialect's string aggregate (see [`SqlMetaStore::image_select`]).
const IMAGE_SELECT: &str = "SELECT m.digest, m.media_type, m.artifact_type, m.subject, m.pushed_at, m.last_pulled_at, \
     (SELECT {TAGS} FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest) AS tag_names, \
     CAST(COALESCE((SELECT SUM(b.size) FROM manifest_blobs mb JOIN blobs b ON b.digest = mb.blob_digest \
               WHERE mb.repo_id = m.repo_id AND mb.manifest_digest = m.digest), 0) \
     + COALESCE((SELECT MAX((SELECT SUM(b.size) FROM manifest_blobs mb JOIN blobs b ON b.digest = mb.blob_digest \
                             WHERE mb.repo_id = mc.repo_id AND mb.manifest_digest = mc.child_digest)) \
                 FROM manifest_children mc WHERE mc.repo_id = m.repo_id AND mc.parent_digest = m.digest), 0) AS BIGINT) AS total_size \
     FROM manifests m";

static IMAGE_SELECTS: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
    [
        IMAGE_SELECT.replace("{TAGS}", "group_concat(t.name, char(10))"),
        IMAGE_SELECT.replace("{TAGS}", "string_agg(t.name, chr(10))"),
    ]
});

impl SqlMetaStore {
    /// [`IMAGE_SELECT`] in this store's dialect.
    fn image_select(&self) -> &'static str {
        &IMAGE_SELECTS[(self.dialect == Dialect::Postgres) as usize]
    }
}

fn image_from_row(r: &AnyRow) -> Result<ImageRow> {
    let tags: Option<String> = r.try_get("tag_names")?;
    Ok(ImageRow {
        digest: r.try_get("digest")?,
        // Byte order, as the tag list: sorted here so the query can use the
        // (repo, digest) index instead of walking every tag of the repository.
        tags: tags
            .map(|t| {
                let mut v: Vec<String> = t.split('\n').map(String::from).collect();
                v.sort();
                v
            })
            .unwrap_or_default(),
        media_type: r.try_get("media_type")?,
        artifact_type: r.try_get("artifact_type")?,
        subject: r.try_get("subject")?,
        size: r.try_get("total_size")?,
        pushed_at: r.try_get("pushed_at")?,
        last_pulled_at: r.try_get("last_pulled_at")?,
    })
}

/// A blob row from a `SELECT digest, size, storage_key …`.
fn blob_from_row(r: &AnyRow) -> Result<BlobRow> {
    Ok(BlobRow {
        digest: r.try_get(0)?,
        size: r.try_get(1)?,
        storage_key: r.try_get(2)?,
    })
}

const UPLOAD_COLS: &str = "id, repo_id, handle, received, hash_state, started_at";

#[async_trait]
impl MetaStore for SqlMetaStore {
    async fn repo_get(&self, account: &str, name: &str) -> Result<Option<RepoRow>> {
        let row = sqlx::query(&format!(
            "SELECT {REPO_COLS} FROM repositories WHERE account = $1 AND name = $2"
        ))
        .bind(account)
        .bind(name)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(repo_from_row).transpose()
    }

    async fn repo_create(&self, account: &str, name: &str, settings: &RepoSettings) -> Result<Option<RepoRow>> {
        retry_write!(self, async {
            let json = serde_json::to_string(settings).map_err(|e| StoreError::Invalid(e.to_string()))?;
            let row = sqlx::query(&format!(
                "INSERT INTO repositories (account, name, created_at, settings) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (account, name) DO NOTHING RETURNING {REPO_COLS}"
            ))
            .bind(account)
            .bind(name)
            .bind(now_millis())
            .bind(json)
            .fetch_optional(&self.write)
            .await?;
            row.as_ref().map(repo_from_row).transpose()
        })
    }

    async fn repo_by_id(&self, repo: RepoId) -> Result<Option<RepoRow>> {
        let row = sqlx::query(&format!("SELECT {REPO_COLS} FROM repositories WHERE id = $1"))
            .bind(repo)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(repo_from_row).transpose()
    }

    async fn repo_get_or_create(&self, account: &str, name: &str) -> Result<RepoId> {
        retry_write!(self, async {
            if let Some(r) = self.repo_get(account, name).await? {
                return Ok(r.id);
            }
            if let Some(r) = self.repo_create(account, name, &RepoSettings::default()).await? {
                return Ok(r.id);
            }
            Ok(
                sqlx::query_scalar("SELECT id FROM repositories WHERE account = $1 AND name = $2")
                    .bind(account)
                    .bind(name)
                    .fetch_one(&self.write)
                    .await?,
            )
        })
    }

    async fn repo_list_rows(&self, account: &str, after: Option<&str>, limit: i64) -> Result<Vec<RepoRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {REPO_COLS} FROM repositories WHERE account = $1 AND name > $2 ORDER BY name LIMIT $3"
        ))
        .bind(account)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(repo_from_row).collect()
    }

    async fn repo_update_settings(&self, repo: RepoId, settings: &RepoSettings) -> Result<()> {
        retry_write!(self, async {
            let json = serde_json::to_string(settings).map_err(|e| StoreError::Invalid(e.to_string()))?;
            sqlx::query("UPDATE repositories SET settings = $2 WHERE id = $1")
                .bind(repo)
                .bind(json)
                .execute(&self.write)
                .await?;
            Ok(())
        })
    }

    async fn repo_delete(&self, repo: RepoId, force: bool) -> Result<DeleteRepo> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            if !force {
                let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM manifests WHERE repo_id = $1 LIMIT 1")
                    .bind(repo)
                    .fetch_optional(&mut *tx)
                    .await?;
                if any.is_some() {
                    return Ok(DeleteRepo::NotEmpty);
                }
            }
            // Children before parents, so no foreign key is ever left dangling.
            for sql in [
                "DELETE FROM tags WHERE repo_id = $1",
                "DELETE FROM manifest_children WHERE repo_id = $1",
                "DELETE FROM manifest_blobs WHERE repo_id = $1",
                "DELETE FROM manifests WHERE repo_id = $1",
                "DELETE FROM repo_blobs WHERE repo_id = $1",
                "DELETE FROM uploads WHERE repo_id = $1",
                "DELETE FROM repositories WHERE id = $1",
            ] {
                sqlx::query(sql).bind(repo).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(DeleteRepo::Deleted)
        })
    }

    async fn repo_list(&self, account: &str, after: Option<&str>, limit: i64) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT name FROM repositories WHERE account = $1 AND name > $2 ORDER BY name LIMIT $3")
                .bind(account)
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(&self.read)
                .await?,
        )
    }

    async fn blob_get(&self, repo: RepoId, digest: &str) -> Result<Option<BlobRow>> {
        let row = sqlx::query(
            "SELECT b.digest, b.size, b.storage_key FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest \
             WHERE rb.repo_id = $1 AND rb.digest = $2",
        )
        .bind(repo)
        .bind(digest)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(blob_from_row).transpose()
    }

    async fn blob_lookup(&self, digest: &str) -> Result<Option<BlobRow>> {
        let row = sqlx::query("SELECT digest, size, storage_key FROM blobs WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(blob_from_row).transpose()
    }

    async fn blob_commit(&self, repo: RepoId, blob: &BlobRow, upload: Option<(&str, &str)>) -> Result<BlobCommitted> {
        retry_write!(self, async {
            let now = now_millis();
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO blobs (digest, size, storage_key, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING",
            )
            .bind(&blob.digest)
            .bind(blob.size)
            .bind(&blob.storage_key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let key: String = sqlx::query_scalar("SELECT storage_key FROM blobs WHERE digest = $1")
                .bind(&blob.digest)
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO repo_blobs (repo_id, digest, created_at, touched_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (repo_id, digest) DO UPDATE SET touched_at = excluded.touched_at",
            )
            .bind(repo)
            .bind(&blob.digest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let mut cleanup = Vec::new();
            if let Some((id, handle)) = upload {
                sqlx::query("DELETE FROM uploads WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                cleanup.push(outbox(&mut tx, "upload", handle, now).await?);
            }
            if key != blob.storage_key {
                // Another upload of the same content won: ours is a spare copy.
                cleanup.push(outbox(&mut tx, "blob", &blob.storage_key, now).await?);
            }
            tx.commit().await?;
            Ok(BlobCommitted { key, cleanup })
        })
    }

    async fn pending_done(&self, id: i64) -> Result<()> {
        retry_write!(self, async {
            self.execute_relaxed(sqlx::query("DELETE FROM pending_deletes WHERE id = $1").bind(id))
                .await?;
            Ok(())
        })
    }

    async fn blob_touch(&self, repo: RepoId, digest: &str, now: i64) -> Result<()> {
        retry_write!(self, async {
            self.execute_relaxed(
                sqlx::query(
                    "UPDATE repo_blobs SET touched_at = $3 WHERE repo_id = $1 AND digest = $2 AND touched_at < $4",
                )
                .bind(repo)
                .bind(digest)
                .bind(now)
                .bind(now - TOUCH_EVERY_MS),
            )
            .await?;
            Ok(())
        })
    }

    async fn blob_mount(&self, to: RepoId, from: RepoId, digest: &str) -> Result<bool> {
        retry_write!(self, async {
            // One statement: the source link is read and the target link written
            // atomically, so GC cannot slip in between.
            let res = sqlx::query(
                "INSERT INTO repo_blobs (repo_id, digest, created_at, touched_at) \
                 SELECT $1, digest, $3, $3 FROM repo_blobs WHERE repo_id = $2 AND digest = $4 \
                 ON CONFLICT (repo_id, digest) DO UPDATE SET touched_at = excluded.touched_at",
            )
            .bind(to)
            .bind(from)
            .bind(now_millis())
            .bind(digest)
            .execute(&self.write)
            .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn blob_unlink(&self, repo: RepoId, digest: &str) -> Result<bool> {
        retry_write!(self, async {
            let res = sqlx::query("DELETE FROM repo_blobs WHERE repo_id = $1 AND digest = $2")
                .bind(repo)
                .bind(digest)
                .execute(&self.write)
                .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn upload_create(&self, u: &UploadRow) -> Result<()> {
        retry_write!(self, async {
            self.execute_relaxed(
                sqlx::query(
                    "INSERT INTO uploads (id, repo_id, handle, received, hash_state, started_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
                )
                .bind(&u.id)
                .bind(u.repo_id)
                .bind(&u.handle)
                .bind(u.offset)
                .bind(&u.hash_state)
                .bind(u.started_at),
            )
            .await?;
            Ok(())
        })
    }

    async fn upload_get(&self, id: &str) -> Result<Option<UploadRow>> {
        let row = sqlx::query(&format!("SELECT {UPLOAD_COLS} FROM uploads WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(UploadRow::from_row).transpose()?)
    }

    async fn upload_claim(&self, id: &str, expected: Option<i64>, lease: &str) -> Result<Claim> {
        retry_write!(self, async {
            let mut w = self.relaxed().await?;
            let now = now_millis();
            let sql = match expected {
                Some(_) => format!(
                    "UPDATE uploads SET lease = $2, lease_until = $3 WHERE id = $1 \
                     AND (lease IS NULL OR lease_until < $4) AND received = $5 RETURNING {UPLOAD_COLS}"
                ),
                None => format!(
                    "UPDATE uploads SET lease = $2, lease_until = $3 WHERE id = $1 \
                     AND (lease IS NULL OR lease_until < $4) RETURNING {UPLOAD_COLS}"
                ),
            };
            let mut q = sqlx::query(&sql).bind(id).bind(lease).bind(now + LEASE_MS).bind(now);
            if let Some(e) = expected {
                q = q.bind(e);
            }
            if let Some(row) = q.fetch_optional(w.conn()).await? {
                w.done().await?;
                return Ok(Claim::Taken(UploadRow::from_row(&row)?));
            }
            let cur: Option<i64> = sqlx::query_scalar("SELECT received FROM uploads WHERE id = $1")
                .bind(id)
                .fetch_optional(w.conn())
                .await?;
            w.done().await?;
            Ok(match cur {
                Some(off) => Claim::Conflict(off),
                None => Claim::Unknown,
            })
        })
    }

    async fn upload_advance(
        &self,
        id: &str,
        lease: &str,
        handle: &str,
        offset: i64,
        hash_state: &[u8],
    ) -> Result<bool> {
        retry_write!(self, async {
            let res = sqlx::query(
                "UPDATE uploads SET handle = $3, received = $4, hash_state = $5, lease = NULL, lease_until = NULL, updated_at = $6 \
                 WHERE id = $1 AND lease = $2",
            )
            .bind(id)
            .bind(lease)
            .bind(handle)
            .bind(offset)
            .bind(hash_state)
            .bind(now_millis())
            .execute(&self.write)
            .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn upload_release(&self, id: &str, lease: &str) -> Result<()> {
        retry_write!(self, async {
            self.execute_relaxed(
                sqlx::query("UPDATE uploads SET lease = NULL, lease_until = NULL WHERE id = $1 AND lease = $2")
                    .bind(id)
                    .bind(lease),
            )
            .await?;
            Ok(())
        })
    }

    async fn upload_renew(&self, id: &str, lease: &str) -> Result<bool> {
        retry_write!(self, async {
            let affected = self
                .execute_relaxed(
                    sqlx::query("UPDATE uploads SET lease_until = $3 WHERE id = $1 AND lease = $2")
                        .bind(id)
                        .bind(lease)
                        .bind(now_millis() + LEASE_MS),
                )
                .await?;
            Ok(affected > 0)
        })
    }

    async fn upload_delete(&self, id: &str) -> Result<bool> {
        retry_write!(self, async {
            let res = sqlx::query("DELETE FROM uploads WHERE id = $1")
                .bind(id)
                .execute(&self.write)
                .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn manifest_put(&self, repo: RepoId, m: &NewManifest, tags: &[TagWrite]) -> Result<(), PutManifestError> {
        retry_write!(self, async {
            let now = now_millis();
            let mut tx = self.begin_write().await?;
            let mut missing_blobs = Vec::new();
            for b in &m.blobs {
                let found: Option<i64> =
                    sqlx::query_scalar("SELECT 1 FROM repo_blobs WHERE repo_id = $1 AND digest = $2")
                        .bind(repo)
                        .bind(b)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(StoreError::from)?;
                if found.is_none() {
                    missing_blobs.push(b.clone());
                }
            }
            let mut missing_manifests = Vec::new();
            for c in &m.children {
                if c == &m.digest {
                    missing_manifests.push(c.clone());
                    continue;
                }
                let found: Option<i64> =
                    sqlx::query_scalar("SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2")
                        .bind(repo)
                        .bind(c)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(StoreError::from)?;
                if found.is_none() {
                    missing_manifests.push(c.clone());
                }
            }
            if !missing_blobs.is_empty() || !missing_manifests.is_empty() {
                return Err(PutManifestError::MissingReferences {
                    blobs: missing_blobs,
                    manifests: missing_manifests,
                });
            }
            sqlx::query(
                "INSERT INTO manifests (repo_id, digest, media_type, artifact_type, subject, annotations, size, body, pushed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repo_id, digest) DO NOTHING",
            )
            .bind(repo)
            .bind(&m.digest)
            .bind(&m.media_type)
            .bind(&m.artifact_type)
            .bind(&m.subject)
            .bind(&m.annotations)
            .bind(m.body.len() as i64)
            .bind(&m.body)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            for b in &m.blobs {
                sqlx::query("INSERT INTO manifest_blobs (repo_id, manifest_digest, blob_digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(repo)
                    .bind(&m.digest)
                    .bind(b)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
            }
            for c in &m.children {
                sqlx::query("INSERT INTO manifest_children (repo_id, parent_digest, child_digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(repo)
                    .bind(&m.digest)
                    .bind(c)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
            }
            for t in tags {
                // The immutability guard lives in the upsert itself, so two racing
                // pushes of an immutable tag cannot both win.
                let res = sqlx::query(
                    "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at \
                     WHERE $5 = 0 OR tags.digest = excluded.digest",
                )
                .bind(repo)
                .bind(&t.name)
                .bind(&m.digest)
                .bind(now)
                .bind(t.immutable as i64)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                if res.rows_affected() == 0 {
                    return Err(PutManifestError::TagImmutable(t.name.clone()));
                }
            }
            tx.commit().await.map_err(StoreError::from)?;
            Ok(())
        })
    }

    async fn manifest_touch_pull(&self, repo: RepoId, digest: &str, now: i64) -> Result<()> {
        retry_write!(self, async {
            self.execute_relaxed(
                sqlx::query(
                    "UPDATE manifests SET last_pulled_at = $3 WHERE repo_id = $1 AND digest = $2 \
                 AND (last_pulled_at IS NULL OR last_pulled_at < $4)",
                )
                .bind(repo)
                .bind(digest)
                .bind(now)
                .bind(now - 60_000),
            )
            .await?;
            Ok(())
        })
    }

    async fn image_list(
        &self,
        repo: RepoId,
        status: TagStatus,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ImageRow>> {
        let filter = match status {
            TagStatus::Any => "",
            TagStatus::Tagged => {
                " AND EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest)"
            }
            TagStatus::Untagged => {
                " AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest)"
            }
        };
        let rows = sqlx::query(&format!(
            "{} WHERE m.repo_id = $1 AND m.digest > $2{filter} ORDER BY m.digest LIMIT $3",
            self.image_select()
        ))
        .bind(repo)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(image_from_row).collect()
    }

    async fn image_get(&self, repo: RepoId, digest: &str) -> Result<Option<ImageRow>> {
        let row = sqlx::query(&format!(
            "{} WHERE m.repo_id = $1 AND m.digest = $2",
            self.image_select()
        ))
        .bind(repo)
        .bind(digest)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(image_from_row).transpose()
    }

    async fn manifest_children_of_repo(&self, repo: RepoId) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT child_digest FROM manifest_children WHERE repo_id = $1")
                .bind(repo)
                .fetch_all(&self.read)
                .await?,
        )
    }

    async fn tag_get(&self, repo: RepoId, tag: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT digest FROM tags WHERE repo_id = $1 AND name = $2")
                .bind(repo)
                .bind(tag)
                .fetch_optional(&self.read)
                .await?,
        )
    }

    async fn manifest_get(&self, repo: RepoId, key: ManifestKey<'_>) -> Result<Option<ManifestRow>> {
        let row = match key {
            ManifestKey::Digest(d) => {
                sqlx::query("SELECT digest, media_type, body FROM manifests WHERE repo_id = $1 AND digest = $2")
                    .bind(repo)
                    .bind(d)
                    .fetch_optional(&self.read)
                    .await?
            }
            ManifestKey::Tag(t) => {
                sqlx::query(
                    "SELECT m.digest, m.media_type, m.body FROM tags t JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest \
                     WHERE t.repo_id = $1 AND t.name = $2",
                )
                .bind(repo)
                .bind(t)
                .fetch_optional(&self.read)
                .await?
            }
        };
        row.map(|r| {
            Ok(ManifestRow {
                digest: r.try_get(0)?,
                media_type: r.try_get(1)?,
                body: r.try_get(2)?,
            })
        })
        .transpose()
    }

    async fn manifest_delete(&self, repo: RepoId, digest: &str) -> Result<DeleteManifest> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2")
                .bind(repo)
                .bind(digest)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Ok(DeleteManifest::Unknown);
            }
            let parents: Vec<String> =
                sqlx::query_scalar("SELECT parent_digest FROM manifest_children WHERE repo_id = $1 AND child_digest = $2 ORDER BY parent_digest")
                    .bind(repo)
                    .bind(digest)
                    .fetch_all(&mut *tx)
                    .await?;
            if !parents.is_empty() {
                return Ok(DeleteManifest::ReferencedBy(parents));
            }
            sqlx::query("DELETE FROM tags WHERE repo_id = $1 AND digest = $2")
                .bind(repo)
                .bind(digest)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM manifests WHERE repo_id = $1 AND digest = $2")
                .bind(repo)
                .bind(digest)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(DeleteManifest::Deleted)
        })
    }

    async fn tag_delete(&self, repo: RepoId, tag: &str) -> Result<bool> {
        retry_write!(self, async {
            let res = sqlx::query("DELETE FROM tags WHERE repo_id = $1 AND name = $2")
                .bind(repo)
                .bind(tag)
                .execute(&self.write)
                .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn tag_list(&self, repo: RepoId, after: Option<&str>, limit: i64) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT name FROM tags WHERE repo_id = $1 AND name > $2 ORDER BY name LIMIT $3")
                .bind(repo)
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(&self.read)
                .await?,
        )
    }

    async fn referrers(&self, repo: RepoId, subject: &str, artifact_type: Option<&str>) -> Result<Vec<Referrer>> {
        let rows = match artifact_type {
            Some(at) => {
                sqlx::query(
                    "SELECT digest, media_type, artifact_type, size, annotations FROM manifests \
                 WHERE repo_id = $1 AND subject = $2 AND artifact_type = $3 ORDER BY digest",
                )
                .bind(repo)
                .bind(subject)
                .bind(at)
                .fetch_all(&self.read)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT digest, media_type, artifact_type, size, annotations FROM manifests \
                 WHERE repo_id = $1 AND subject = $2 ORDER BY digest",
                )
                .bind(repo)
                .bind(subject)
                .fetch_all(&self.read)
                .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(Referrer {
                    digest: r.try_get(0)?,
                    media_type: r.try_get(1)?,
                    artifact_type: r.try_get(2)?,
                    size: r.try_get(3)?,
                    annotations: r.try_get(4)?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl ControlStore for SqlMetaStore {
    async fn account_ensure(&self, account: &str) -> Result<()> {
        retry_write!(self, async {
            sqlx::query("INSERT INTO accounts (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
                .bind(account)
                .bind(now_millis())
                .execute(&self.write)
                .await?;
            Ok(())
        })
    }

    async fn access_key_put(&self, k: &AccessKeyRow) -> Result<()> {
        retry_write!(self, async {
            sqlx::query(
                "INSERT INTO access_keys (access_key_id, account, principal_arn, principal_id, secret_sealed, status, session_token_hash, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (access_key_id) DO NOTHING",
            )
            .bind(&k.access_key_id)
            .bind(&k.account)
            .bind(&k.principal_arn)
            .bind(&k.principal_id)
            .bind(&k.secret_sealed)
            .bind(&k.status)
            .bind(&k.session_token_hash)
            .bind(k.expires_at)
            .bind(k.created_at)
            .execute(&self.write)
            .await?;
            Ok(())
        })
    }

    async fn access_key_get(&self, access_key_id: &str) -> Result<Option<AccessKeyRow>> {
        let row = sqlx::query(
            "SELECT access_key_id, account, principal_arn, COALESCE(principal_id, '') AS principal_id, secret_sealed, \
             status, session_token_hash, expires_at, created_at FROM access_keys WHERE access_key_id = $1",
        )
        .bind(access_key_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(AccessKeyRow::from_row).transpose()?)
    }

    async fn server_secret_get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn server_secret_get_or_put(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        retry_write!(self, async {
            sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(value)
                .execute(&self.write)
                .await?;
            Ok(sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.write)
                .await?)
        })
    }

    async fn resource_tags(&self, arn: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT key, value FROM resource_tags WHERE arn = $1 ORDER BY key")
            .bind(arn)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    async fn resource_tags_put(&self, arn: &str, tags: &[(String, String)]) -> Result<()> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            for (k, v) in tags {
                sqlx::query(
                    "INSERT INTO resource_tags (arn, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (arn, key) DO UPDATE SET value = excluded.value",
                )
                .bind(arn)
                .bind(k)
                .bind(v)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            self.bump_iam_generation().await?;
            Ok(())
        })
    }

    async fn resource_tags_remove(&self, arn: &str, keys: &[String]) -> Result<()> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            for k in keys {
                sqlx::query("DELETE FROM resource_tags WHERE arn = $1 AND key = $2")
                    .bind(arn)
                    .bind(k)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            self.bump_iam_generation().await?;
            Ok(())
        })
    }

    async fn template_put(&self, account: &str, prefix: &str, body: &str, create: bool) -> Result<bool> {
        retry_write!(self, async {
            let now = now_millis();
            let res = if create {
                sqlx::query(
                    "INSERT INTO creation_templates (account, prefix, body, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
                     ON CONFLICT (account, prefix) DO NOTHING",
                )
                .bind(account)
                .bind(prefix)
                .bind(body)
                .bind(now)
                .execute(&self.write)
                .await?
            } else {
                sqlx::query(
                    "UPDATE creation_templates SET body = $3, updated_at = $4 WHERE account = $1 AND prefix = $2",
                )
                .bind(account)
                .bind(prefix)
                .bind(body)
                .bind(now)
                .execute(&self.write)
                .await?
            };
            Ok(res.rows_affected() > 0)
        })
    }

    async fn template_get(&self, account: &str, prefix: &str) -> Result<Option<TemplateRow>> {
        let row = sqlx::query(
            "SELECT prefix, body, created_at, updated_at FROM creation_templates WHERE account = $1 AND prefix = $2",
        )
        .bind(account)
        .bind(prefix)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(TemplateRow::from_row).transpose()?)
    }

    async fn template_list(&self, account: &str, after: Option<&str>, limit: i64) -> Result<Vec<TemplateRow>> {
        let rows = sqlx::query(
            "SELECT prefix, body, created_at, updated_at FROM creation_templates \
             WHERE account = $1 AND prefix > $2 ORDER BY prefix LIMIT $3",
        )
        .bind(account)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(TemplateRow::from_row).collect::<Result<_, _>>()?)
    }

    async fn template_delete(&self, account: &str, prefix: &str) -> Result<Option<TemplateRow>> {
        retry_write!(self, async {
            let row = sqlx::query(
                "DELETE FROM creation_templates WHERE account = $1 AND prefix = $2 RETURNING prefix, body, created_at, updated_at",
            )
            .bind(account)
            .bind(prefix)
            .fetch_optional(&self.write)
            .await?;
            Ok(row.as_ref().map(TemplateRow::from_row).transpose()?)
        })
    }

    async fn setting_get(&self, account: &str, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM account_settings WHERE account = $1 AND name = $2")
                .bind(account)
                .bind(name)
                .fetch_optional(&self.read)
                .await?,
        )
    }

    async fn setting_put(&self, account: &str, name: &str, value: &str) -> Result<()> {
        retry_write!(self, async {
            sqlx::query(
                "INSERT INTO account_settings (account, name, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (account, name) DO UPDATE SET value = excluded.value",
            )
            .bind(account)
            .bind(name)
            .bind(value)
            .execute(&self.write)
            .await?;
            Ok(())
        })
    }

    async fn public_repo_put(&self, repo: RepoId, catalog_data: &str) -> Result<bool> {
        retry_write!(self, async {
            let now = now_millis();
            // INSERT ... SELECT with a WHERE: nothing is written for a repository
            // that does not exist (or was just deleted).
            let res = sqlx::query(
                "INSERT INTO public_repositories (repo_id, catalog_data, created_at, updated_at) \
                 SELECT id, $2, $3, $3 FROM repositories WHERE id = $1 \
                 ON CONFLICT (repo_id) DO UPDATE SET catalog_data = excluded.catalog_data, updated_at = excluded.updated_at",
            )
            .bind(repo)
            .bind(catalog_data)
            .bind(now)
            .execute(&self.write)
            .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn public_repo_get(&self, account: &str, name: &str) -> Result<Option<PublicRepoRow>> {
        let row = sqlx::query(
            "SELECT p.repo_id, r.account, r.name, p.catalog_data, p.created_at, p.updated_at \
             FROM public_repositories p JOIN repositories r ON r.id = p.repo_id \
             WHERE r.account = $1 AND r.name = $2",
        )
        .bind(account)
        .bind(name)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(PublicRepoRow::from_row).transpose()?)
    }

    async fn public_repo_list(&self, account: &str, after: Option<&str>, limit: i64) -> Result<Vec<PublicRepoRow>> {
        let rows = sqlx::query(
            "SELECT p.repo_id, r.account, r.name, p.catalog_data, p.created_at, p.updated_at \
             FROM public_repositories p JOIN repositories r ON r.id = p.repo_id \
             WHERE r.account = $1 AND r.name > $2 ORDER BY r.name LIMIT $3",
        )
        .bind(account)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(PublicRepoRow::from_row).collect::<Result<_, _>>()?)
    }

    async fn public_repo_remove(&self, repo: RepoId) -> Result<bool> {
        retry_write!(self, async {
            let res = sqlx::query("DELETE FROM public_repositories WHERE repo_id = $1")
                .bind(repo)
                .execute(&self.write)
                .await?;
            Ok(res.rows_affected() > 0)
        })
    }
}

#[async_trait]
impl crate::gc::MaintenanceStore for SqlMetaStore {
    async fn lease_acquire(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        retry_write!(self, async {
            let now = now_millis();
            let res = sqlx::query(
                "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
                 WHERE leases.until_ms < $4 OR leases.holder = excluded.holder",
            )
            .bind(name)
            .bind(holder)
            .bind(now + ttl_ms)
            .bind(now)
            .execute(&self.write)
            .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn lease_release(&self, name: &str, holder: &str) -> Result<()> {
        retry_write!(self, async {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(&self.write)
                .await?;
            Ok(())
        })
    }

    async fn lease_get(&self, name: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query("SELECT holder, until_ms FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        Ok(match row {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
            None => None,
        })
    }

    async fn uploads_known(&self, ids: &[String]) -> Result<Vec<String>> {
        self.known("SELECT id FROM uploads WHERE id IN", ids).await
    }

    async fn blob_keys_known(&self, keys: &[String]) -> Result<Vec<String>> {
        self.known("SELECT storage_key FROM blobs WHERE storage_key IN", keys)
            .await
    }

    async fn stale_uploads(&self, cutoff: i64, after: Option<&str>, limit: i64) -> Result<Vec<UploadRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {UPLOAD_COLS} FROM uploads WHERE updated_at < $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(cutoff)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(UploadRow::from_row).collect::<Result<_, _>>()?)
    }

    async fn upload_purge(&self, id: &str, cutoff: i64) -> Result<Option<crate::meta::PendingDelete>> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let handle: Option<String> = sqlx::query_scalar(
                "DELETE FROM uploads WHERE id = $1 AND updated_at < $2 \
                 AND (lease IS NULL OR lease_until < $3) RETURNING handle",
            )
            .bind(id)
            .bind(cutoff)
            .bind(now_millis())
            .fetch_optional(&mut *tx)
            .await?;
            let pending = match handle {
                Some(h) => Some(outbox(&mut tx, "upload", &h, now_millis()).await?),
                None => None,
            };
            tx.commit().await?;
            Ok(pending)
        })
    }

    async fn unreferenced_links(
        &self,
        cutoff: i64,
        after: Option<(RepoId, &str)>,
        limit: i64,
    ) -> Result<Vec<(RepoId, String, i64)>> {
        let (after_repo, after_digest) = after.unwrap_or((-1, ""));
        let rows = sqlx::query(
            "SELECT rb.repo_id, rb.digest, b.size FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest \
             WHERE rb.touched_at < $1 AND (rb.repo_id > $2 OR (rb.repo_id = $2 AND rb.digest > $3)) \
             AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.repo_id = rb.repo_id AND mb.blob_digest = rb.digest) \
             ORDER BY rb.repo_id, rb.digest LIMIT $4",
        )
        .bind(cutoff)
        .bind(after_repo)
        .bind(after_digest)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    async fn link_collect(&self, repo: RepoId, digest: &str, cutoff: i64) -> Result<bool> {
        retry_write!(self, async {
            // The conditions are re-checked in the DELETE itself: a manifest PUT
            // or a HEAD that committed since the scan keeps the link.
            let res = sqlx::query(
                "DELETE FROM repo_blobs WHERE repo_id = $1 AND digest = $2 AND touched_at < $3 \
                 AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.repo_id = $1 AND mb.blob_digest = $2)",
            )
            .bind(repo)
            .bind(digest)
            .bind(cutoff)
            .execute(&self.write)
            .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn blob_refs(&self, digest: &str) -> Result<(i64, i64)> {
        let links: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM repo_blobs WHERE digest = $1")
            .bind(digest)
            .fetch_one(&self.read)
            .await?;
        let manifests: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM manifest_blobs WHERE blob_digest = $1")
            .bind(digest)
            .fetch_one(&self.read)
            .await?;
        Ok((links, manifests))
    }

    async fn unreferenced_link_count(&self, digest: &str, cutoff: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM repo_blobs rb WHERE rb.digest = $1 AND rb.touched_at < $2 \
             AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.repo_id = rb.repo_id AND mb.blob_digest = rb.digest)",
        )
        .bind(digest)
        .bind(cutoff)
        .fetch_one(&self.read)
        .await?)
    }

    async fn unreferenced_blobs(&self, cutoff: i64, after: Option<&str>, limit: i64) -> Result<Vec<BlobRow>> {
        let rows = sqlx::query(
            "SELECT b.digest, b.size, b.storage_key FROM blobs b WHERE b.created_at < $1 AND b.digest > $2 \
             AND NOT EXISTS (SELECT 1 FROM repo_blobs rb WHERE rb.digest = b.digest) \
             AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = b.digest) \
             ORDER BY b.digest LIMIT $3",
        )
        .bind(cutoff)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(blob_from_row).collect()
    }

    async fn blob_collect(&self, digest: &str, cutoff: i64) -> Result<Option<crate::meta::PendingDelete>> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let key: Option<String> = sqlx::query_scalar(
                "DELETE FROM blobs WHERE digest = $1 AND created_at < $2 \
                 AND NOT EXISTS (SELECT 1 FROM repo_blobs rb WHERE rb.digest = $1) \
                 AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = $1) RETURNING storage_key",
            )
            .bind(digest)
            .bind(cutoff)
            .fetch_optional(&mut *tx)
            .await?;
            let pending = match key {
                Some(k) => Some(outbox(&mut tx, "blob", &k, now_millis()).await?),
                None => None,
            };
            tx.commit().await?;
            Ok(pending)
        })
    }

    async fn pending_deletes(&self, limit: i64) -> Result<Vec<crate::meta::PendingDelete>> {
        let rows = sqlx::query("SELECT id, kind, key FROM pending_deletes ORDER BY id LIMIT $1")
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(crate::meta::PendingDelete::from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn lifecycle_get(&self, repo: RepoId) -> Result<Option<crate::gc::LifecyclePolicyRow>> {
        let row = sqlx::query(
            "SELECT repo_id, policy, updated_at, last_evaluated_at FROM lifecycle_policies WHERE repo_id = $1",
        )
        .bind(repo)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(crate::gc::LifecyclePolicyRow::from_row).transpose()?)
    }

    async fn lifecycle_put(&self, repo: RepoId, policy: &str) -> Result<()> {
        retry_write!(self, async {
            sqlx::query(
                "INSERT INTO lifecycle_policies (repo_id, policy, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (repo_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
            )
            .bind(repo)
            .bind(policy)
            .bind(now_millis())
            .execute(&self.write)
            .await?;
            Ok(())
        })
    }

    async fn lifecycle_delete(&self, repo: RepoId) -> Result<Option<crate::gc::LifecyclePolicyRow>> {
        retry_write!(self, async {
            let row = sqlx::query(
                "DELETE FROM lifecycle_policies WHERE repo_id = $1 RETURNING repo_id, policy, updated_at, last_evaluated_at",
            )
            .bind(repo)
            .fetch_optional(&self.write)
            .await?;
            Ok(row.as_ref().map(crate::gc::LifecyclePolicyRow::from_row).transpose()?)
        })
    }

    async fn lifecycle_list(&self, after: Option<RepoId>, limit: i64) -> Result<Vec<crate::gc::LifecyclePolicyRow>> {
        let rows = sqlx::query(
            "SELECT repo_id, policy, updated_at, last_evaluated_at FROM lifecycle_policies WHERE repo_id > $1 ORDER BY repo_id LIMIT $2",
        )
        .bind(after.unwrap_or(-1))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(crate::gc::LifecyclePolicyRow::from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn lifecycle_evaluated(&self, repo: RepoId, at: i64) -> Result<()> {
        retry_write!(self, async {
            sqlx::query("UPDATE lifecycle_policies SET last_evaluated_at = $2 WHERE repo_id = $1")
                .bind(repo)
                .bind(at)
                .execute(&self.write)
                .await?;
            Ok(())
        })
    }

    async fn preview_start(&self, repo: RepoId, policy: &str) -> Result<bool> {
        retry_write!(self, async {
            let now = now_millis();
            // A preview stuck IN_PROGRESS for ten minutes (a crashed node) may be replaced.
            let res = sqlx::query(
                "INSERT INTO lifecycle_previews (repo_id, policy, status, results, started_at) VALUES ($1, $2, 'IN_PROGRESS', NULL, $3) \
                 ON CONFLICT (repo_id) DO UPDATE SET policy = excluded.policy, status = excluded.status, results = NULL, \
                 started_at = excluded.started_at \
                 WHERE lifecycle_previews.status <> 'IN_PROGRESS' OR lifecycle_previews.started_at < $4",
            )
            .bind(repo)
            .bind(policy)
            .bind(now)
            .bind(now - 600_000)
            .execute(&self.write)
            .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn preview_finish(&self, repo: RepoId, status: &str, results: Option<&str>) -> Result<()> {
        retry_write!(self, async {
            sqlx::query("UPDATE lifecycle_previews SET status = $2, results = $3 WHERE repo_id = $1")
                .bind(repo)
                .bind(status)
                .bind(results)
                .execute(&self.write)
                .await?;
            Ok(())
        })
    }

    async fn preview_get(&self, repo: RepoId) -> Result<Option<crate::gc::PreviewRow>> {
        let row = sqlx::query(
            "SELECT repo_id, policy, status, results, started_at FROM lifecycle_previews WHERE repo_id = $1",
        )
        .bind(repo)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(crate::gc::PreviewRow::from_row).transpose()?)
    }

    async fn audit_append(&self, e: &crate::gc::AuditEvent) -> Result<()> {
        retry_write!(self, async {
            sqlx::query(
                "INSERT INTO audit_events (at, account, event_name, source, detail) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(e.at)
            .bind(&e.account)
            .bind(&e.event_name)
            .bind(&e.source)
            .bind(&e.detail)
            .execute(&self.write)
            .await?;
            Ok(())
        })
    }

    async fn audit_list(&self, account: &str, after: i64, limit: i64) -> Result<Vec<crate::gc::AuditEvent>> {
        let rows = sqlx::query(
            "SELECT id, at, account, event_name, source, detail FROM audit_events WHERE account = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(account)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(crate::gc::AuditEvent::from_row)
            .collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn writer_synchronous(store: &SqlMetaStore) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.write)
            .await
            .unwrap()
    }

    /// A relaxed write never leaves the writer relaxed: `done()` restores
    /// FULL (2), and a writer dropped or cancelled mid-write is closed, so the
    /// next durable commit fsyncs.
    #[tokio::test]
    async fn relaxed_writes_leave_the_writer_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlMetaStore::open(dir.path().join("meta.db")).await.unwrap();
        assert_eq!(writer_synchronous(&store).await, 2);

        let mut w = store.relaxed().await.unwrap();
        let mode: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(w.conn())
            .await
            .unwrap();
        assert_eq!(mode, 1, "NORMAL while relaxed");
        w.done().await.unwrap();
        assert_eq!(writer_synchronous(&store).await, 2);

        // Dropped without done() (an error path).
        let w = store.relaxed().await.unwrap();
        drop(w);
        assert_eq!(writer_synchronous(&store).await, 2);

        // Cancelled while relaxed: a future that never finishes its write.
        let stalled = async {
            let mut w = store.relaxed().await.unwrap();
            let _ = sqlx::query("SELECT 1").execute(w.conn()).await;
            std::future::pending::<()>().await;
        };
        let _ = tokio::time::timeout(Duration::from_millis(50), stalled).await;
        assert_eq!(writer_synchronous(&store).await, 2);

        // The store's relaxed writes themselves.
        let repo = store.repo_get_or_create("123456789012", "relaxed/test").await.unwrap();
        let u = UploadRow {
            id: "u1".into(),
            repo_id: repo,
            handle: "u1".into(),
            offset: 0,
            hash_state: vec![],
            started_at: 0,
        };
        store.upload_create(&u).await.unwrap();
        assert!(matches!(
            store.upload_claim("u1", Some(0), "l1").await.unwrap(),
            Claim::Taken(_)
        ));
        assert!(store.upload_renew("u1", "l1").await.unwrap());
        assert!(matches!(
            store.upload_claim("u1", Some(0), "l2").await.unwrap(),
            Claim::Conflict(0)
        ));
        store.upload_release("u1", "l1").await.unwrap();
        assert_eq!(writer_synchronous(&store).await, 2);
    }
    /// A version-4 database gets the listing indexes on open (and keeps them
    /// across later opens), and image pages are planned on them: one index
    /// walk in digest order, not a table page per image.
    #[tokio::test]
    async fn listing_pages_read_covering_indexes_after_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = SqlMetaStore::open(&path).await.unwrap();
        // Make it look like a version-4 database.
        sqlx::raw_sql(
            "DROP INDEX manifests_listing; DROP INDEX tags_digest_name; \
             CREATE INDEX tags_digest ON tags(repo_id, digest); \
             DROP INDEX access_keys_by_principal_id; ALTER TABLE access_keys DROP COLUMN principal_id; \
             UPDATE schema_version SET version = 4;",
        )
        .execute(&store.write)
        .await
        .unwrap();
        drop(store);
        for _ in 0..2 {
            let store = SqlMetaStore::open(&path).await.unwrap();
            let version: i64 = sqlx::query_scalar("SELECT version FROM schema_version")
                .fetch_one(&store.read)
                .await
                .unwrap();
            assert_eq!(version, SCHEMA_VERSION);
            let indexes: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('tags', 'manifests') ORDER BY name",
            )
            .fetch_all(&store.read)
            .await
            .unwrap();
            assert!(indexes.contains(&"manifests_listing".to_string()), "{indexes:?}");
            assert!(indexes.contains(&"tags_digest_name".to_string()), "{indexes:?}");
            assert!(!indexes.contains(&"tags_digest".to_string()), "{indexes:?}");
            let plan: Vec<String> = sqlx::query(&format!(
                "EXPLAIN QUERY PLAN {} WHERE m.repo_id = 1 AND m.digest > '' ORDER BY m.digest LIMIT 101",
                store.image_select()
            ))
            .fetch_all(&store.read)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<String, _>(3).unwrap())
            .collect();
            let plan = plan.join("\n");
            assert!(plan.contains("COVERING INDEX manifests_listing"), "{plan}");
            assert!(plan.contains("COVERING INDEX tags_digest_name"), "{plan}");
        }
    }
}
