//! `kura migrate`: copy an embedded registry (SQLite + blobs in the data
//! directory) to PostgreSQL + S3, then verify the copy.
//!
//! The source must not change meanwhile: `kura migrate` takes the data
//! directory's lock exclusively, so it refuses to start while `kura serve`
//! runs there, and a `kura serve` started during the migration refuses to
//! start (see `backup::serve_lock`).
//!
//! What is copied: every table both schemas have (accounts, IAM, policies,
//! repositories, manifests, tags, scan results and the vulnerability
//! database, events, secrets, replication, audit, jobs…), except the rows
//! that belong to the running process only (upload sessions, queued deletes,
//! leases). Tables go in foreign-key order. Blobs are streamed from the data
//! directory into the bucket (through the S3 blob store, so the keys are the
//! ones `kura serve` writes), each hashed on the way and recorded in the
//! `blobs` table only once stored.
//!
//! Resuming: every insert is `ON CONFLICT DO NOTHING`, a blob whose row is
//! already in PostgreSQL is skipped, and `<data-dir>/migrate-state.json`
//! records the target and the tables finished, so a migration killed at any
//! point is run again with the same command and completes (a blob stored in
//! the bucket whose row was not yet written is an orphan GC deletes later).
//! A target database that holds data from anything else is refused.
//!
//! Verification, at the end of every run: row counts of every copied table
//! equal on both sides, every blob in the bucket is read back and hashed
//! against its digest and size, and every manifest body hashes to its digest.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use kura_oci::{Digest, Hasher};
use kura_store::{BlobStore, FsBlobStore, SqlMetaStore};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Row, ValueRef};

use crate::backup::Output;
use crate::progress::{note, Progress};

/// Tables not copied: the schema's own bookkeeping, and rows that belong to
/// the process that wrote them.
const SKIPPED: &[&str] = &[
    "_sqlx_migrations",
    "schema_version",
    "uploads",
    "pending_deletes",
    "leases",
    "fetch_leases",
];
/// Single-row counters the PostgreSQL schema seeds: replaced by the source's.
const SEEDED: &[&str] = &["iam_generation", "event_generation"];
/// Rows per INSERT (PostgreSQL takes at most 65535 parameters).
const BATCH_PARAMS: usize = 30_000;
const STATE_FILE: &str = "migrate-state.json";

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The embedded registry's data directory (the source; its server must be stopped).
    #[arg(long, env = "KURA_DATA_DIR", default_value = "./kura-data")]
    data_dir: PathBuf,
    /// The PostgreSQL database to copy the metadata into (`postgres://user@host:5432/db`).
    #[arg(long)]
    to: String,
    #[command(flatten)]
    blob: crate::BlobArgs,
    /// Summary format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    /// Tests only: sleep this many milliseconds after each blob (so a test can
    /// kill the migration part-way).
    #[arg(long, env = "KURA_MIGRATE_BLOB_DELAY_MS", default_value_t = 0, hide = true)]
    blob_delay_ms: u64,
}

/// `<data-dir>/migrate-state.json`.
#[derive(Default, Serialize, Deserialize)]
struct State {
    /// sha256 of the target's URL, endpoint, bucket and prefix.
    target: String,
    /// Tables copied completely.
    tables_done: BTreeSet<String>,
}

/// What was copied and checked.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    tables: BTreeMap<String, i64>,
    blobs: u64,
    blob_bytes: u64,
    blobs_copied: u64,
    resumed: bool,
    verified: bool,
    seconds: f64,
}

/// A SQLite value on its way to PostgreSQL.
enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
}

pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    crate::init_logging("text");
    let start = std::time::Instant::now();
    let bucket = args.blob.s3_bucket.clone().filter(|b| !b.is_empty());
    if bucket.is_none() {
        bail!("kura migrate needs the target bucket: --s3-bucket (and the S3 settings `kura serve` takes)");
    }
    let dir = &args.data_dir;
    let db = dir.join("meta.db");
    if !db.is_file() {
        bail!("{} holds no Kura database (meta.db)", dir.display());
    }
    let _lock = crate::backup::exclusive_lock(dir)?;
    // Bring the source to this version's schema (both sides then match).
    SqlMetaStore::open(&db).await.context("opening the source database")?;
    let mut src = SqliteConnectOptions::new()
        .filename(&db)
        .read_only(true)
        .connect()
        .await
        .context("opening the source database")?;
    let source_blobs = FsBlobStore::open(dir.join("blobs"))
        .await
        .context("opening the source blob store")?;
    SqlMetaStore::connect(&args.to, 2)
        .await
        .context("connecting to the target PostgreSQL database (and creating its schema)")?;
    let pg = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(60))
        .connect(&args.to)
        .await
        .context("connecting to the target PostgreSQL database")?;
    let store = crate::StoreArgs {
        data_dir: dir.clone(),
        database_url: None,
        database_max_connections: 1,
        log_format: "text".into(),
        disk_reserve_mib: 0,
        blob: args.blob.clone(),
    };
    let target_blobs = crate::open_blob_store(&store).await?;

    let fingerprint = {
        let mut h = Hasher::new(kura_oci::Algorithm::Sha256);
        let b = &args.blob;
        for part in [
            args.to.as_str(),
            b.s3_endpoint.as_deref().unwrap_or(""),
            b.s3_bucket.as_deref().unwrap_or(""),
            b.s3_prefix.as_str(),
        ] {
            h.update(part.as_bytes());
            h.update(b"\n");
        }
        h.finish().hex().to_string()
    };
    let state_path = dir.join(STATE_FILE);
    let mut state: State = match std::fs::read(&state_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("reading {}", state_path.display()))?,
        Err(_) => State::default(),
    };
    let resumed = state.target == fingerprint;
    if !resumed {
        state = State {
            target: fingerprint,
            tables_done: BTreeSet::new(),
        };
    }

    let tables = table_order(&mut src, &pg).await?;
    if !resumed {
        for t in &tables {
            if SEEDED.contains(&t.as_str()) {
                continue;
            }
            let any: bool = sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 FROM \"{t}\")"))
                .fetch_one(&pg)
                .await?;
            if any {
                bail!("the target database already holds data (table {t}): kura migrate copies into an empty database");
            }
        }
    } else {
        note(args.quiet, "migrate: resuming an interrupted migration to this target");
    }
    save_state(&state_path, &state)?;

    // Rows to copy, for progress.
    let mut src_counts = BTreeMap::new();
    for t in &tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{t}\""))
            .fetch_one(&mut src)
            .await?;
        src_counts.insert(t.clone(), n);
    }
    let todo: i64 = tables
        .iter()
        .filter(|t| !state.tables_done.contains(*t) && t.as_str() != "blobs")
        .map(|t| src_counts[t])
        .sum();
    let mut rows_progress = Progress::new("migrate: metadata rows", todo as u64, 0, args.quiet);
    let mut blob_stats = (0u64, 0u64, 0u64);
    for t in &tables {
        if state.tables_done.contains(t) {
            continue;
        }
        if t == "blobs" {
            blob_stats = copy_blobs(&args, &mut src, &pg, &source_blobs, target_blobs.as_ref()).await?;
        } else {
            copy_table(&mut src, &pg, t, &mut rows_progress).await?;
        }
        state.tables_done.insert(t.clone());
        save_state(&state_path, &state)?;
    }
    rows_progress.finish();
    reset_identities(&pg).await?;

    // Verify.
    for t in &tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{t}\""))
            .fetch_one(&pg)
            .await?;
        if n != src_counts[t] {
            bail!(
                "verification failed: table {t} has {} rows in the source, {n} in PostgreSQL",
                src_counts[t]
            );
        }
    }
    let (blobs, blob_bytes) = verify_blobs(&args, &pg, target_blobs.as_ref()).await?;
    verify_manifests(&pg).await?;
    let summary = Summary {
        tables: src_counts,
        blobs,
        blob_bytes,
        blobs_copied: blob_stats.2,
        resumed,
        verified: true,
        seconds: start.elapsed().as_secs_f64(),
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string(&summary)?),
        Output::Text => println!(
            "migrated {} tables ({} rows) and {} blobs ({} bytes; {} copied in this run) to PostgreSQL + S3; \
             counts and digests verified in {:.1}s. Start the new nodes with the same master key ({}).",
            summary.tables.len(),
            summary.tables.values().sum::<i64>(),
            blobs,
            blob_bytes,
            summary.blobs_copied,
            summary.seconds,
            dir.join("master.key").display()
        ),
    }
    Ok(())
}

fn save_state(path: &Path, state: &State) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The tables both schemas have (minus [`SKIPPED`]), parents before children.
async fn table_order(src: &mut SqliteConnection, pg: &PgPool) -> anyhow::Result<Vec<String>> {
    let sqlite: HashSet<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            .fetch_all(&mut *src)
            .await?
            .into_iter()
            .collect();
    let mut tables: BTreeSet<String> =
        sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")
            .fetch_all(pg)
            .await?
            .into_iter()
            .filter(|t: &String| sqlite.contains(t) && !SKIPPED.contains(&t.as_str()))
            .collect();
    let fks = sqlx::query(
        "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c \
         WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace",
    )
    .fetch_all(pg)
    .await?;
    let mut parents: HashMap<String, HashSet<String>> = HashMap::new();
    for r in fks {
        let (child, parent): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        if child != parent && tables.contains(&parent) {
            parents.entry(child).or_default().insert(parent);
        }
    }
    let mut order = Vec::new();
    while !tables.is_empty() {
        let ready: Vec<String> = tables
            .iter()
            .filter(|t| parents.get(*t).is_none_or(|ps| ps.iter().all(|p| !tables.contains(p))))
            .cloned()
            .collect();
        if ready.is_empty() {
            bail!("the target schema's foreign keys form a cycle among {tables:?}");
        }
        for t in ready {
            tables.remove(&t);
            order.push(t);
        }
    }
    Ok(order)
}

/// Columns of a PostgreSQL table that the SQLite table has too, with their
/// PostgreSQL types.
async fn columns(src: &mut SqliteConnection, pg: &PgPool, table: &str) -> anyhow::Result<Vec<(String, String)>> {
    let sqlite: HashSet<String> = sqlx::query(&format!("PRAGMA table_info(\"{table}\")"))
        .fetch_all(&mut *src)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("name"))
        .collect::<Result<_, _>>()?;
    let rows = sqlx::query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(pg)
    .await?;
    let mut cols = Vec::new();
    for r in rows {
        let (name, ty): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        if sqlite.contains(&name) {
            cols.push((name, ty));
        }
    }
    if cols.is_empty() {
        bail!("table {table}: no column in common between the source and the target");
    }
    Ok(cols)
}

fn read_value(row: &sqlx::sqlite::SqliteRow, i: usize) -> anyhow::Result<Value> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let kind = sqlx::TypeInfo::name(&*raw.type_info()).to_ascii_uppercase();
    Ok(match kind.as_str() {
        "INTEGER" | "BOOLEAN" | "INT8" | "BIGINT" => Value::Int(row.try_get(i)?),
        "REAL" => Value::Real(row.try_get(i)?),
        "BLOB" => Value::Bytes(row.try_get(i)?),
        _ => Value::Text(row.try_get(i)?),
    })
}

/// The placeholder `$n` for a PostgreSQL column of type `ty` (the value is
/// bound as [`bind`] chooses by the same type).
fn placeholder(ty: &str, n: usize) -> String {
    match ty {
        "bigint" | "integer" | "smallint" => format!("${n}::bigint"),
        "bytea" => format!("${n}"),
        "double precision" | "real" => format!("${n}::double precision"),
        "text" => format!("${n}"),
        _ => format!("${n}::text::{ty}"),
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Bind `v` for a PostgreSQL column of type `ty`.
fn bind<'q>(q: PgQuery<'q>, v: Value, ty: &str, col: &str) -> anyhow::Result<PgQuery<'q>> {
    Ok(match ty {
        "bigint" | "integer" | "smallint" => {
            let x: Option<i64> = match v {
                Value::Null => None,
                Value::Int(i) => Some(i),
                Value::Real(f) if f.fract() == 0.0 => Some(f as i64),
                Value::Text(s) => Some(
                    s.parse()
                        .with_context(|| format!("column {col}: {s:?} is not an integer"))?,
                ),
                _ => bail!("column {col}: a value that is not an integer"),
            };
            q.bind(x)
        }
        "bytea" => {
            let x: Option<Vec<u8>> = match v {
                Value::Null => None,
                Value::Bytes(b) => Some(b),
                Value::Text(s) => Some(s.into_bytes()),
                _ => bail!("column {col}: a number where bytes belong"),
            };
            q.bind(x)
        }
        "double precision" | "real" => {
            let x: Option<f64> = match v {
                Value::Null => None,
                Value::Int(i) => Some(i as f64),
                Value::Real(f) => Some(f),
                _ => bail!("column {col}: a value that is not a number"),
            };
            q.bind(x)
        }
        _ => {
            let x: Option<String> = match v {
                Value::Null => None,
                Value::Int(i) => Some(i.to_string()),
                Value::Real(f) => Some(f.to_string()),
                Value::Text(s) => Some(s),
                Value::Bytes(b) => {
                    Some(String::from_utf8(b).map_err(|_| anyhow::anyhow!("column {col}: bytes that are not text"))?)
                }
            };
            q.bind(x)
        }
    })
}

/// Copy one table, in batches by rowid.
async fn copy_table(
    src: &mut SqliteConnection,
    pg: &PgPool,
    table: &str,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let cols = columns(src, pg, table).await?;
    let unique: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = $1::regclass AND indisunique)")
            .bind(table)
            .fetch_one(pg)
            .await?;
    if !unique || SEEDED.contains(&table) {
        // Nothing to detect rows of an earlier, interrupted run by: start over.
        sqlx::query(&format!("DELETE FROM \"{table}\"")).execute(pg).await?;
    }
    let list = cols
        .iter()
        .map(|(c, _)| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let per_batch = (BATCH_PARAMS / cols.len()).clamp(1, 1000) as i64;
    let mut after = i64::MIN;
    loop {
        let rows = sqlx::query(&format!(
            "SELECT rowid, {list} FROM \"{table}\" WHERE rowid > ? ORDER BY rowid LIMIT ?"
        ))
        .bind(after)
        .bind(per_batch)
        .fetch_all(&mut *src)
        .await
        .with_context(|| format!("reading table {table}"))?;
        let Some(last) = rows.last() else { break };
        after = last.try_get(0)?;
        let mut sql = format!("INSERT INTO \"{table}\" ({list}) VALUES ");
        let mut n = 0;
        for (r, _) in rows.iter().enumerate() {
            if r > 0 {
                sql.push_str(", ");
            }
            let phs: Vec<String> = cols
                .iter()
                .map(|(_, ty)| {
                    n += 1;
                    placeholder(ty, n)
                })
                .collect();
            sql.push_str(&format!("({})", phs.join(", ")));
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        let mut q = sqlx::query::<sqlx::Postgres>(&sql);
        for row in &rows {
            for (i, (name, ty)) in cols.iter().enumerate() {
                let v = read_value(row, i + 1).with_context(|| format!("reading table {table}"))?;
                q = bind(q, v, ty, &format!("{table}.{name}"))?;
            }
        }
        q.execute(pg)
            .await
            .with_context(|| format!("writing table {table} to PostgreSQL"))?;
        progress.add(rows.len() as u64, 0);
    }
    Ok(())
}

/// Stream every blob the target does not have yet into the bucket, then
/// record it. Returns (blobs, bytes, copied now).
async fn copy_blobs(
    args: &MigrateArgs,
    src: &mut SqliteConnection,
    pg: &PgPool,
    from: &FsBlobStore,
    to: &dyn BlobStore,
) -> anyhow::Result<(u64, u64, u64)> {
    let rows = sqlx::query("SELECT digest, size, storage_key, created_at FROM blobs ORDER BY digest")
        .fetch_all(&mut *src)
        .await?;
    let have: HashSet<String> = sqlx::query_scalar("SELECT digest FROM blobs")
        .fetch_all(pg)
        .await?
        .into_iter()
        .collect();
    let mut todo = Vec::new();
    let (mut n, mut bytes) = (0u64, 0u64);
    for r in &rows {
        let (digest, size, key, created): (String, i64, String, i64) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        n += 1;
        bytes += size.max(0) as u64;
        if !have.contains(&digest) {
            todo.push((digest, size, key, created));
        }
    }
    let total: u64 = todo.iter().map(|t| t.1.max(0) as u64).sum();
    if todo.len() < rows.len() {
        note(
            args.quiet,
            &format!(
                "migrate: {} of {} blobs are in the target already",
                rows.len() - todo.len(),
                rows.len()
            ),
        );
    }
    let mut progress = Progress::new("migrate: blobs", todo.len() as u64, total, args.quiet);
    let mut copied = 0;
    for (digest, size, key, created) in todo {
        let want = Digest::from_str(&digest).with_context(|| format!("bad digest {digest:?} in the source"))?;
        let stream = from
            .read(&key, None)
            .await
            .with_context(|| format!("reading blob {digest} from the data directory"))?;
        let hasher = Arc::new(Mutex::new(Hasher::new(want.algorithm())));
        let h2 = hasher.clone();
        let body = stream
            .inspect(move |c| {
                if let Ok(c) = c {
                    h2.lock().unwrap().update(c);
                }
            })
            .boxed();
        let upload = format!("migrate-{}", uuid::Uuid::new_v4().simple());
        let handle = to.begin(&upload).await.context("starting an S3 upload")?;
        let (handle, len) = to
            .append(&handle, 0, body)
            .await
            .with_context(|| format!("uploading blob {digest} to S3"))?;
        let got = hasher.lock().unwrap().finish();
        if got != want || len != size as u64 {
            let _ = to.abort(&handle).await;
            bail!(
                "blob {digest} in the data directory is damaged: {len} bytes with digest {got}, expected {size} bytes"
            );
        }
        let new_key = to
            .commit(&handle, len, &want)
            .await
            .with_context(|| format!("storing blob {digest} in S3"))?;
        sqlx::query(
            "INSERT INTO blobs (digest, size, storage_key, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&digest)
        .bind(size)
        .bind(&new_key)
        .bind(created)
        .execute(pg)
        .await
        .context("recording a blob in PostgreSQL")?;
        if let Err(e) = to.abort(&handle).await {
            tracing::warn!(error = %e, "could not drop a finished S3 upload; GC will");
        }
        copied += 1;
        progress.add(1, size as u64);
        if args.blob_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.blob_delay_ms)).await;
        }
    }
    progress.finish();
    Ok((n, bytes, copied))
}

/// Identity columns continue after the copied ids.
async fn reset_identities(pg: &PgPool) -> anyhow::Result<()> {
    let rows = sqlx::query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND is_identity = 'YES'",
    )
    .fetch_all(pg)
    .await?;
    for r in rows {
        let (t, c): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('\"{t}\"', '{c}'), COALESCE((SELECT MAX(\"{c}\") FROM \"{t}\"), 0) + 1, false)"
        ))
        .execute(pg)
        .await
        .with_context(|| format!("moving the identity of {t}.{c} past the copied rows"))?;
    }
    Ok(())
}

/// Read every blob back from the bucket and hash it.
async fn verify_blobs(args: &MigrateArgs, pg: &PgPool, to: &dyn BlobStore) -> anyhow::Result<(u64, u64)> {
    let rows = sqlx::query("SELECT digest, size, storage_key FROM blobs ORDER BY digest")
        .fetch_all(pg)
        .await?;
    let total: u64 = rows
        .iter()
        .map(|r| r.try_get::<i64, _>(1).unwrap_or(0).max(0) as u64)
        .sum();
    let mut progress = Progress::new("migrate: verifying blobs", rows.len() as u64, total, args.quiet);
    for r in &rows {
        let (digest, size, key): (String, i64, String) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let want = Digest::from_str(&digest)?;
        let mut h = Hasher::new(want.algorithm());
        let mut len = 0u64;
        let mut s = to
            .read(&key, None)
            .await
            .with_context(|| format!("verification failed: blob {digest} is not in the bucket"))?;
        while let Some(c) = s.next().await {
            let c = c.with_context(|| format!("reading blob {digest} back from S3"))?;
            len += c.len() as u64;
            h.update(&c);
        }
        if h.finish() != want || len != size as u64 {
            bail!(
                "verification failed: blob {digest} in the bucket has {len} bytes and digest {}",
                h.finish()
            );
        }
        progress.add(1, len);
    }
    progress.finish();
    Ok((rows.len() as u64, total))
}

/// Every manifest body in PostgreSQL hashes to its digest.
async fn verify_manifests(pg: &PgPool) -> anyhow::Result<()> {
    let mut rows = sqlx::query("SELECT digest, body FROM manifests").fetch(pg);
    while let Some(r) = rows.next().await {
        let r = r?;
        let (digest, body): (String, Vec<u8>) = (r.try_get(0)?, r.try_get(1)?);
        let want = Digest::from_str(&digest)?;
        if Digest::of(want.algorithm(), &body) != want {
            bail!("verification failed: manifest {digest}'s body in PostgreSQL does not match its digest");
        }
    }
    Ok(())
}
