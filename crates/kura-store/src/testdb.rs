//! Throwaway databases for the shared store suites (tests only, but public so
//! every crate's tests can run on PostgreSQL too).
//!
//! `KURA_TEST_DATABASE_URL` names a PostgreSQL server (an admin URL such as
//! `postgres://postgres@127.0.0.1:5433/postgres`, as `scripts/with-postgres-s3`
//! exports); each call creates a fresh database on it. Without the variable
//! the PostgreSQL runs are skipped, unless `KURA_REQUIRE_PG=1` makes that an
//! error (CI sets it).

use sqlx::Connection;

use crate::error::{Result, StoreError};
use crate::sql::SqlMetaStore;

/// The test server's admin URL, if one is configured.
fn server_url() -> Option<String> {
    std::env::var("KURA_TEST_DATABASE_URL").ok().filter(|v| !v.is_empty())
}

/// A store on a new, empty PostgreSQL database, or `None` (with a note on
/// stderr) when no test server is configured.
pub async fn postgres(test: &str) -> Option<SqlMetaStore> {
    let Some(admin) = server_url() else {
        assert!(
            std::env::var("KURA_REQUIRE_PG").as_deref() != Ok("1"),
            "KURA_REQUIRE_PG=1 but KURA_TEST_DATABASE_URL is not set"
        );
        eprintln!("{test}: PostgreSQL run skipped: set KURA_TEST_DATABASE_URL (scripts/with-postgres-s3 does)");
        return None;
    };
    Some(fresh(&admin).await.expect("creating a test database"))
}

/// Create a database named after a new UUID on the server `admin` points at,
/// and open a store on it.
pub async fn fresh(admin: &str) -> Result<SqlMetaStore> {
    let name = format!("kura_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = retry_io(|| sqlx::postgres::PgConnection::connect(admin)).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin, String::new()),
    };
    let (server, _db) = base
        .rsplit_once('/')
        .filter(|(s, _)| s.contains("://"))
        .ok_or_else(|| StoreError::Invalid(format!("not a database URL: {admin}")))?;
    let url = format!("{server}/{name}{query}");
    let mut attempt = 0;
    loop {
        match SqlMetaStore::connect(&url, 8).await {
            Err(StoreError::Db(sqlx::Error::Io(e))) if attempt < IO_RETRIES => {
                attempt += 1;
                eprintln!("test database {name}: connecting failed ({e}); retrying ({attempt}/{IO_RETRIES})");
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempt as u64)).await;
            }
            other => return other,
        }
    }
}

/// How often a test harness retries a connection the server closed at once.
/// A shared test server under a full CI run (hundreds of databases, two cores)
/// has been seen to close a new connection before its first message; that is
/// the test server's hiccup, not the code under test, so it gets a few more tries.
const IO_RETRIES: u32 = 5;

async fn retry_io<T, F, Fut>(mut connect: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, sqlx::Error>>,
{
    let mut attempt = 0;
    loop {
        match connect().await {
            Err(sqlx::Error::Io(e)) if attempt < IO_RETRIES => {
                attempt += 1;
                eprintln!("test database server: connecting failed ({e}); retrying ({attempt}/{IO_RETRIES})");
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempt as u64)).await;
            }
            other => return other.map_err(Into::into),
        }
    }
}

/// The store a test harness should use: a fresh PostgreSQL database when
/// `KURA_TEST_DATABASE_URL` is set (so whole test files run on both engines),
/// else SQLite at `sqlite_path`.
pub async fn from_env_or_sqlite(sqlite_path: impl AsRef<std::path::Path>) -> SqlMetaStore {
    match server_url() {
        Some(url) => fresh(&url).await.expect("creating a test database"),
        None => SqlMetaStore::open(sqlite_path).await.expect("opening SQLite"),
    }
}
