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

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::error::{Result, StoreError};
use crate::meta::*;

/// SQLite migrations, applied in order: (version, SQL). Version 1 is re-run
/// on every open (it is all `IF NOT EXISTS`).
pub(crate) const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_scan.sql")),
    (3, include_str!("../migrations/sqlite/0003_iam.sql")),
    (4, include_str!("../migrations/sqlite/0004_public.sql")),
    (5, include_str!("../migrations/sqlite/0005_listing.sql")),
    (6, include_str!("../migrations/sqlite/0006_key_owner.sql")),
    (7, include_str!("../migrations/sqlite/0007_upload_owner.sql")),
    (8, include_str!("../migrations/sqlite/0008_orphans.sql")),
    (9, include_str!("../migrations/sqlite/0009_jobs.sql")),
    (10, include_str!("../migrations/sqlite/0010_events.sql")),
    (11, include_str!("../migrations/sqlite/0011_audit.sql")),
    (12, include_str!("../migrations/sqlite/0012_replication.sql")),
    (13, include_str!("../migrations/sqlite/0013_replication_backfills.sql")),
    (14, include_str!("../migrations/sqlite/0014_archive.sql")),
    (15, include_str!("../migrations/sqlite/0015_secrets.sql")),
    (16, include_str!("../migrations/sqlite/0016_pull_through_rules.sql")),
    (17, include_str!("../migrations/sqlite/0017_fetch_leases.sql")),
];
/// PostgreSQL migrations. PostgreSQL support arrived with schema version 4, so
/// its first migration creates that schema at once.
pub(crate) const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (4, include_str!("../migrations/postgres/0004_schema.sql")),
    (5, include_str!("../migrations/postgres/0005_listing.sql")),
    (6, include_str!("../migrations/postgres/0006_key_owner.sql")),
    (7, include_str!("../migrations/postgres/0007_upload_owner.sql")),
    (8, include_str!("../migrations/postgres/0008_orphans.sql")),
    (9, include_str!("../migrations/postgres/0009_jobs.sql")),
    (10, include_str!("../migrations/postgres/0010_events.sql")),
    (11, include_str!("../migrations/postgres/0011_audit.sql")),
    (12, include_str!("../migrations/postgres/0012_replication.sql")),
    (
        13,
        include_str!("../migrations/postgres/0013_replication_backfills.sql"),
    ),
    (14, include_str!("../migrations/postgres/0014_archive.sql")),
    (15, include_str!("../migrations/postgres/0015_secrets.sql")),
    (16, include_str!("../migrations/postgres/0016_pull_through_rules.sql")),
    (17, include_str!("../migrations/postgres/0017_fetch_leases.sql")),
];
/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 17;

/// An object a migration creates, to tell whether it was applied.
enum Probe {
    Table(&'static str),
    Column(&'static str, &'static str),
}

/// Migrations that landed on `main` after higher-numbered ones did: 0016 was
/// there before 0014 and 0015 (and 0017 before 0014), so a data directory or
/// database of those builds is stamped 16 or 17 without them. Both only add
/// objects, so on start each is checked by one object it creates and applied
/// if missing (`tests/fixtures/upgrade/v16` is such a database).
const LATE: &[(i64, Probe)] = &[
    (14, Probe::Column("manifests", "image_status")),
    (15, Probe::Table("secrets")),
];

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
                    // The busy timeout first: switching to WAL takes a lock,
                    // and without a timeout a writer elsewhere (the server,
                    // when a CLI opens the file) fails it at once.
                    c.execute(sqlx::raw_sql(PRAGMAS)).await?;
                    c.execute(sqlx::raw_sql("PRAGMA journal_mode = WAL;")).await?;
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
                    // IMMEDIATE on SQLite: the write lock from the start, so a
                    // server writing meanwhile makes this wait (busy timeout)
                    // instead of failing the read-to-write upgrade.
                    let mut tx = match self.dialect {
                        Dialect::Sqlite => sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?,
                        Dialect::Postgres => sqlx::Connection::begin(&mut *conn).await?,
                    };
                    sqlx::raw_sql(sql).execute(&mut *tx).await?;
                    sqlx::query("UPDATE schema_version SET version = $1")
                        .bind(version.max(*to))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    version = version.max(*to);
                }
            }
            // Migrations that reached `main` after higher-numbered ones: a
            // database stamped past them by such a build lacks them (see LATE).
            for (num, probe) in LATE {
                if version < *num || self.probe(&mut conn, probe).await? {
                    continue;
                }
                let Some((_, sql)) = migrations.iter().find(|(n, _)| n == num) else {
                    continue;
                };
                tracing::warn!(
                    migration = num,
                    schema_version = version,
                    "the database is stamped past migration {num} but lacks it (a build whose migrations \
                     landed out of order made it); applying it now"
                );
                let mut tx = match self.dialect {
                    Dialect::Sqlite => sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?,
                    Dialect::Postgres => sqlx::Connection::begin(&mut *conn).await?,
                };
                sqlx::raw_sql(sql).execute(&mut *tx).await?;
                tx.commit().await?;
            }
            Ok(())
        }
        .await;
        if self.dialect == Dialect::Postgres {
            conn.execute("SELECT pg_advisory_unlock(7403062651)").await?;
        }
        result
    }

    /// Whether the object `probe` names exists.
    async fn probe(&self, conn: &mut sqlx::pool::PoolConnection<sqlx::Any>, probe: &Probe) -> Result<bool> {
        let q = match (self.dialect, probe) {
            (Dialect::Sqlite, Probe::Table(t)) => {
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1")
                    .bind(*t)
            }
            (Dialect::Sqlite, Probe::Column(t, c)) => {
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2")
                    .bind(*t)
                    .bind(*c)
            }
            (Dialect::Postgres, Probe::Table(t)) => sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1",
            )
            .bind(*t),
            (Dialect::Postgres, Probe::Column(t, c)) => sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
            )
            .bind(*t)
            .bind(*c),
        };
        Ok(q.fetch_one(&mut **conn).await? > 0)
    }

    /// Begin a write transaction the way this engine needs.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.write.begin().await?,
        })
    }

    /// Begin a write transaction on a connection already taken (a
    /// [`Relaxed`] writer), the way this engine needs.
    pub(crate) async fn begin_on<'c>(
        &self,
        conn: &'c mut sqlx::AnyConnection,
    ) -> Result<sqlx::Transaction<'c, sqlx::Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await?,
            Dialect::Postgres => sqlx::Connection::begin(conn).await?,
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
    pub(crate) async fn known(&self, select: &str, values: &[String]) -> Result<Vec<String>> {
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
pub(crate) async fn outbox(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    kind: &str,
    key: &str,
    now: i64,
) -> Result<PendingDelete> {
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

pub(crate) const REPO_COLS: &str = "id, account, name, created_at, settings";

pub(crate) fn repo_from_row(r: &AnyRow) -> Result<RepoRow> {
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
pub(crate) const IMAGE_SELECT: &str = "SELECT m.digest, m.media_type, m.artifact_type, m.subject, m.pushed_at, m.last_pulled_at, \
     m.image_status, m.archived_at, m.activated_at, \
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
    pub(crate) fn image_select(&self) -> &'static str {
        &IMAGE_SELECTS[(self.dialect == Dialect::Postgres) as usize]
    }
}

pub(crate) fn image_from_row(r: &AnyRow) -> Result<ImageRow> {
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
        status: status_of(&r.try_get::<String, _>("image_status")?)?,
        archived_at: r.try_get("archived_at")?,
        activated_at: r.try_get("activated_at")?,
    })
}

/// An `image_status` column's value.
pub(crate) fn status_of(s: &str) -> Result<ImageStatus> {
    ImageStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown image status {s:?}")))
}

/// A blob row from a `SELECT digest, size, storage_key …`.
pub(crate) fn blob_from_row(r: &AnyRow) -> Result<BlobRow> {
    Ok(BlobRow {
        digest: r.try_get(0)?,
        size: r.try_get(1)?,
        storage_key: r.try_get(2)?,
    })
}

pub(crate) const UPLOAD_COLS: &str = "id, repo_id, handle, received, hash_state, started_at";

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
             DROP INDEX manifests_status; ALTER TABLE manifests DROP COLUMN image_status; \
             ALTER TABLE manifests DROP COLUMN archived_at; ALTER TABLE manifests DROP COLUMN activated_at; \
             CREATE INDEX tags_digest ON tags(repo_id, digest); \
             DROP INDEX access_keys_by_principal_id; ALTER TABLE access_keys DROP COLUMN principal_id; \
             DROP INDEX uploads_repo; DROP INDEX uploads_principal; ALTER TABLE uploads DROP COLUMN principal; \
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
            // Listing one storage status (DescribeImages' default: ACTIVE) is covered too.
            let plan: Vec<String> = sqlx::query(&format!(
                "EXPLAIN QUERY PLAN {} WHERE m.repo_id = 1 AND m.image_status = 'ACTIVE' AND m.digest > '' \
                 ORDER BY m.digest LIMIT 101",
                store.image_select()
            ))
            .fetch_all(&store.read)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<String, _>(3).unwrap())
            .collect();
            let plan = plan.join("\n");
            assert!(plan.contains("COVERING INDEX manifests_status"), "{plan}");
        }
    }

    /// A database a build with migrations out of order stamped 17 (0016 and
    /// 0017 on `main` before 0014 and 0015) gets 0014 and 0015 on open, and a
    /// complete one is left as it is.
    #[tokio::test]
    async fn migrations_that_landed_late_are_applied_to_a_database_stamped_past_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store = SqlMetaStore::open(&path).await.unwrap();
        sqlx::raw_sql(
            "DROP INDEX manifests_listing; DROP INDEX manifests_status; \
             ALTER TABLE manifests DROP COLUMN image_status; ALTER TABLE manifests DROP COLUMN archived_at; \
             ALTER TABLE manifests DROP COLUMN activated_at; \
             DROP TABLE secret_versions; DROP TABLE secrets; \
             UPDATE schema_version SET version = 17;",
        )
        .execute(&store.write)
        .await
        .unwrap();
        let repo = store.repo_get_or_create("123456789012", "late/app").await.unwrap();
        drop(store);
        for _ in 0..2 {
            let store = SqlMetaStore::open(&path).await.unwrap();
            let mut conn = store.write.acquire().await.unwrap();
            assert!(store.probe(&mut conn, &Probe::Table("secrets")).await.unwrap());
            assert!(store
                .probe(&mut conn, &Probe::Column("manifests", "image_status"))
                .await
                .unwrap());
            assert!(!store.probe(&mut conn, &Probe::Table("no_such_table")).await.unwrap());
            drop(conn);
            // The listing query (it reads image_status) works, and the data is kept.
            let images = sqlx::query(&format!("{} WHERE m.repo_id = $1", store.image_select()))
                .bind(repo)
                .fetch_all(&store.read)
                .await
                .unwrap();
            assert!(images.is_empty());
            assert_eq!(
                store.repo_get("123456789012", "late/app").await.unwrap().map(|r| r.id),
                Some(repo)
            );
        }
    }
}
