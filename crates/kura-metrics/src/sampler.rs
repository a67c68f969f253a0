//! The sampler: a task that every `every` reads what no request path
//! counts — job queue depth by kind and state (dead jobs are the dead
//! letters), the freshness of the vulnerability data and of scans, whether
//! the database and blob store answer, the schema version, the free space
//! of the data directory's filesystem and the pull-through cache's
//! counters — and sets the gauges.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kura_registry::PullThroughStats;
use kura_store::SqlMetaStore;

use crate::names;
use crate::ready::Probes;

/// What the sampler reads.
pub struct Sources {
    pub probes: Probes,
    /// The data directory (its filesystem's free space), if blobs or the database live there.
    pub data_dir: Option<PathBuf>,
    pub pull_through: Option<Arc<PullThroughStats>>,
}

/// Start the sampler; it runs until the process ends.
pub fn spawn(sources: Sources, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = BTreeSet::new();
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            sample(&sources, &mut seen).await;
        }
    })
}

fn sampler_error(source: &'static str, e: &dyn std::fmt::Display) {
    tracing::debug!(source, error = %e, "a metrics sample failed");
    metrics::counter!(names::SAMPLER_ERRORS, "source" => source).increment(1);
}

fn ms_to_secs(ms: Option<i64>) -> f64 {
    ms.map_or(0.0, |ms| ms as f64 / 1000.0)
}

/// One round (public for tests).
pub async fn sample(s: &Sources, seen: &mut BTreeSet<(String, String)>) {
    let r = s.probes.check().await;
    metrics::gauge!(names::DB_UP).set(if r.database.is_ok() { 1.0 } else { 0.0 });
    metrics::gauge!(names::BLOB_UP).set(if r.blob_store.is_ok() { 1.0 } else { 0.0 });
    metrics::gauge!(names::SCHEMA_CURRENT).set(SqlMetaStore::expected_schema_version() as f64);
    if let Ok(v) = r.database {
        metrics::gauge!(names::SCHEMA_VERSION).set(v as f64);
        let meta = &s.probes.meta;
        match meta.job_counts().await {
            Ok(counts) => {
                let now: BTreeSet<(String, String)> =
                    counts.iter().map(|c| (c.kind.clone(), c.state.clone())).collect();
                // Kinds and states that emptied read 0, not their last value.
                for (kind, state) in seen.difference(&now) {
                    metrics::gauge!(names::JOBS, "kind" => kind.clone(), "state" => state.clone()).set(0.0);
                }
                for c in &counts {
                    metrics::gauge!(names::JOBS, "kind" => c.kind.clone(), "state" => c.state.clone())
                        .set(c.count as f64);
                }
                seen.extend(now);
            }
            Err(e) => sampler_error("jobs", &e),
        }
        match meta.newest_vuln_import_ms().await {
            Ok(ms) => metrics::gauge!(names::VULNDB_IMPORTED).set(ms_to_secs(ms)),
            Err(e) => sampler_error("vulndb", &e),
        }
        match meta.newest_scan_ms().await {
            Ok(ms) => metrics::gauge!(names::SCAN_COMPLETED).set(ms_to_secs(ms)),
            Err(e) => sampler_error("scans", &e),
        }
    }
    if let Some(dir) = &s.data_dir {
        match disk_space(dir) {
            Ok((free, size)) => {
                metrics::gauge!(names::DISK_FREE).set(free as f64);
                metrics::gauge!(names::DISK_SIZE).set(size as f64);
            }
            Err(e) => sampler_error("disk", &e),
        }
    }
    metrics::counter!(names::DISK_FULL).absolute(kura_store::space::disk_full_events());
    if let Some(p) = &s.pull_through {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        metrics::counter!(names::PTC_HITS).absolute(get(&p.hits));
        metrics::counter!(names::PTC_MISSES).absolute(get(&p.misses));
        metrics::counter!(names::PTC_ERRORS).absolute(get(&p.errors));
        metrics::counter!(names::PTC_FETCHES).absolute(get(&p.upstream_fetches));
        metrics::counter!(names::PTC_BYTES).absolute(get(&p.upstream_bytes));
        metrics::counter!(names::PTC_STALE).absolute(get(&p.stale_served));
    }
}

/// (bytes available to an unprivileged user, filesystem size) of `dir`'s filesystem.
pub fn disk_space(dir: &std::path::Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_space_of_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (free, size) = disk_space(dir.path()).unwrap();
        assert!(size > 0 && free <= size, "{free} {size}");
        let err = disk_space(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
