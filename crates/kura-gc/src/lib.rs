//! Online garbage collection.
//!
//! GC reads only the metadata store (never a listing of the blob store) and
//! runs while the registry serves pushes and pulls: no global lock, no
//! read-only mode. One run, under the `gc` lease so one node at a time:
//!
//! 1. delete upload files no `uploads` row names (older than `grace`): they
//!    free space without a database write, so they come first (a full disk);
//! 2. finish blob-store deletes left in the outbox by an earlier crash;
//! 3. purge uploads untouched for `upload_max_age` (row and bytes);
//! 4. drop repository links to blobs that no manifest of the repository
//!    references and that nobody uploaded, mounted or HEADed within `grace`;
//! 5. delete blobs that no link and no manifest references (created before
//!    `grace`): the row goes first, with an outbox entry, in one transaction;
//!    the bytes go after the commit;
//! 6. delete blob files no `blobs` row names (older than `grace`): what a
//!    crash between writing a blob and recording it leaves.
//!
//! The lease lasts 30 s and is renewed every 10 s while the run goes on, so a
//! run killed mid-way blocks the next one (on any node) for at most 30 s; a
//! skipped run logs who holds the lease.
//!
//! A HEAD refreshes a link's `touched_at` at most once a second (in the
//! registry and again in the store), so the last HEAD may be up to
//! [`kura_store::sql::TOUCH_SLACK_MS`] later than the recorded touch: GC keeps
//! a link for `grace` plus that slack, at least `grace` after the last HEAD.
//!
//! An orphan file is deleted only when no `uploads` row names its upload and
//! then no `blobs` row names its key, read in that order: an upload being
//! finished keeps its `uploads` row until the transaction that inserts the
//! `blobs` row, so a file is never taken between the two.
//!
//! Why it is safe against "GC decides X is garbage while a client HEADs X,
//! skips the upload and PUTs a manifest that references X": the HEAD refreshes
//! the link's `touched_at`, the manifest PUT checks the link and inserts its
//! `manifest_blobs` rows in one transaction, and GC's delete re-checks "not
//! touched within grace and not referenced" inside the DELETE statement. The
//! database serialises the two: either the manifest commits first (GC's
//! condition fails) or GC commits first (the manifest PUT finds no link and
//! answers MANIFEST_BLOB_UNKNOWN, and the client uploads again); a tagged
//! image can never point at a deleted blob. Blob bytes live under a key unique
//! to the upload that wrote them, so deleting a collected blob's bytes can
//! never remove a newer upload of the same content.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kura_store::gc::{format_ms, with_job_lease, Leased};
use kura_store::meta::PendingDelete;
use kura_store::sql::TOUCH_SLACK_MS;
use kura_store::{BlobStore, MaintenanceStore, MetaStore, StoreError, StoredKind, StoredObject};
use serde::Serialize;

/// GC settings.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// How long an unreferenced link or blob is left alone after its last
    /// upload, mount or HEAD (default 1 hour).
    pub grace: Duration,
    /// Uploads untouched this long are abandoned (default 24 hours).
    pub upload_max_age: Duration,
    /// Count, delete nothing.
    pub dry_run: bool,
    /// Rows per batch.
    pub batch: i64,
    /// The run's "now" in ms (tests; `None`: the clock). Leases use the clock.
    pub now_ms: Option<i64>,
    /// Told where the run stands (`kura gc` shows it on stderr).
    pub progress: GcProgress,
}

/// Where a run stands: step `step` of `steps` (the numbered steps of the
/// module docs), and how many rows or files that step has looked at so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcStep {
    pub step: u32,
    pub steps: u32,
    pub name: &'static str,
    pub items: u64,
}

/// A callback for [`GcStep`]s (none by default).
#[derive(Clone, Default)]
pub struct GcProgress(Option<Arc<dyn Fn(GcStep) + Send + Sync>>);

impl GcProgress {
    pub fn new(f: impl Fn(GcStep) + Send + Sync + 'static) -> Self {
        GcProgress(Some(Arc::new(f)))
    }

    fn report(&self, step: u32, name: &'static str, items: u64) {
        if let Some(f) = &self.0 {
            f(GcStep {
                step,
                steps: 6,
                name,
                items,
            });
        }
    }
}

impl std::fmt::Debug for GcProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "GcProgress(set)"
        } else {
            "GcProgress(none)"
        })
    }
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(3600),
            upload_max_age: Duration::from_secs(24 * 3600),
            dry_run: false,
            batch: 500,
            now_ms: None,
            progress: GcProgress::default(),
        }
    }
}

/// What a run did (or, dry, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Nothing was done: another node holds the GC lease.
    pub skipped: bool,
    /// Counted only.
    pub dry_run: bool,
    /// Abandoned uploads purged.
    pub uploads_purged: u64,
    /// Repository links dropped.
    pub links_removed: u64,
    /// Blobs deleted.
    pub blobs_deleted: u64,
    /// Bytes of the deleted blobs.
    pub bytes_freed: u64,
    /// Outbox deletes completed (including ones left by a crash).
    pub store_deletes: u64,
    /// Outbox deletes that failed (left for the next run).
    pub store_delete_failures: u64,
    /// Files no row names that were deleted (upload data and blobs).
    pub orphans_deleted: u64,
    /// Bytes of those files.
    pub orphan_bytes_freed: u64,
}

const LEASE: &str = "gc";

/// One GC run over the stores.
pub async fn collect(
    meta: &dyn MetaStore,
    maint: &dyn MaintenanceStore,
    blobs: &dyn BlobStore,
    opts: &GcOptions,
) -> Result<GcReport, StoreError> {
    let mut report = GcReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    if opts.dry_run {
        run(meta, maint, blobs, opts, &mut report).await?;
    } else {
        let outcome = with_job_lease(maint, LEASE, run(meta, maint, blobs, opts, &mut report)).await?;
        match outcome {
            Leased::Ran(()) => {}
            Leased::Held(by, until) => {
                tracing::info!(holder = %by, until = %format_ms(until), "GC skipped: lease held by {by} until {}", format_ms(until));
                return Ok(GcReport {
                    skipped: true,
                    ..Default::default()
                });
            }
        }
    }
    tracing::info!(
        dry_run = report.dry_run,
        uploads_purged = report.uploads_purged,
        links_removed = report.links_removed,
        blobs_deleted = report.blobs_deleted,
        bytes_freed = report.bytes_freed,
        store_deletes = report.store_deletes,
        store_delete_failures = report.store_delete_failures,
        orphans_deleted = report.orphans_deleted,
        orphan_bytes_freed = report.orphan_bytes_freed,
        "garbage collection finished"
    );
    Ok(report)
}

async fn drain(
    meta: &dyn MetaStore,
    blobs: &dyn BlobStore,
    pending: &[PendingDelete],
    report: &mut GcReport,
) -> Result<(), StoreError> {
    for p in pending {
        let res = match p.kind.as_str() {
            "upload" => blobs.abort(&p.key).await,
            _ => blobs.delete(&p.key).await,
        };
        match res {
            Ok(()) => {
                meta.pending_done(p.id).await?;
                report.store_deletes += 1;
            }
            Err(e) => {
                tracing::warn!(key = %p.key, error = %e, "blob-store delete failed; left for the next run");
                report.store_delete_failures += 1;
            }
        }
    }
    Ok(())
}

/// Delete the listed objects of `kind` older than `cutoff` that no row
/// names (see the module docs for the order of the checks).
async fn sweep(
    maint: &dyn MaintenanceStore,
    blobs: &dyn BlobStore,
    kind: StoredKind,
    cutoff: i64,
    opts: &GcOptions,
    report: &mut GcReport,
) -> Result<(), StoreError> {
    let (step, name) = match kind {
        StoredKind::Upload => (1, "upload files no session names"),
        StoredKind::Blob => (6, "blob files no row names"),
    };
    opts.progress.report(step, name, 0);
    let mut listed = 0u64;
    let mut listing = blobs.list_stored(kind);
    let mut done = false;
    while !done {
        let mut batch: Vec<StoredObject> = Vec::new();
        while batch.len() < opts.batch.max(1) as usize {
            match listing.next().await {
                Some(o) => {
                    let o = o?;
                    listed += 1;
                    if o.modified_ms < cutoff {
                        batch.push(o);
                    }
                }
                None => {
                    done = true;
                    break;
                }
            }
        }
        let ids: Vec<String> = batch.iter().map(|o| o.upload_id.clone()).collect();
        let live: HashSet<String> = maint.uploads_known(&ids).await?.into_iter().collect();
        batch.retain(|o| !live.contains(&o.upload_id));
        if kind == StoredKind::Blob {
            let keys: Vec<String> = batch.iter().map(|o| o.key.clone()).collect();
            let named: HashSet<String> = maint.blob_keys_known(&keys).await?.into_iter().collect();
            batch.retain(|o| !named.contains(&o.key));
        }
        for o in &batch {
            if !opts.dry_run {
                if let Err(e) = blobs.delete_stored(o).await {
                    tracing::warn!(key = %o.key, error = %e, "deleting an orphan file failed; left for the next run");
                    continue;
                }
                tracing::info!(key = %o.key, bytes = o.size, "deleted a file no row names");
            }
            report.orphans_deleted += 1;
            report.orphan_bytes_freed += o.size;
        }
        opts.progress.report(step, name, listed);
    }
    Ok(())
}

async fn run(
    meta: &dyn MetaStore,
    maint: &dyn MaintenanceStore,
    blobs: &dyn BlobStore,
    opts: &GcOptions,
    report: &mut GcReport,
) -> Result<(), StoreError> {
    let now = opts.now_ms.unwrap_or_else(kura_store::now_millis);
    let cutoff = now - opts.grace.as_millis() as i64;
    // A link's last HEAD may be up to TOUCH_SLACK_MS later than its touch.
    let link_cutoff = cutoff - TOUCH_SLACK_MS;

    // 1. Upload files no session names: space back without a database write.
    sweep(maint, blobs, StoredKind::Upload, cutoff, opts, report).await?;

    // 2. The outbox: deletes an earlier run or upload did not finish.
    opts.progress.report(2, "unfinished blob-store deletes", 0);
    if !opts.dry_run {
        let mut seen = 0;
        loop {
            let pending = maint.pending_deletes(opts.batch).await?;
            let before = report.store_deletes;
            drain(meta, blobs, &pending, report).await?;
            seen += pending.len() as u64;
            opts.progress.report(2, "unfinished blob-store deletes", seen);
            if pending.len() < opts.batch as usize || report.store_deletes == before {
                break;
            }
        }
    }

    // 3. Abandoned uploads.
    let upload_cutoff = now - opts.upload_max_age.as_millis() as i64;
    let mut after: Option<String> = None;
    let mut seen = 0;
    opts.progress.report(3, "abandoned uploads", 0);
    loop {
        let stale = maint.stale_uploads(upload_cutoff, after.as_deref(), opts.batch).await?;
        seen += stale.len() as u64;
        for u in &stale {
            if opts.dry_run {
                report.uploads_purged += 1;
            } else if let Some(p) = maint.upload_purge(&u.id, upload_cutoff).await? {
                report.uploads_purged += 1;
                drain(meta, blobs, &[p], report).await?;
            }
        }
        opts.progress.report(3, "abandoned uploads", seen);
        match stale.last() {
            Some(l) if stale.len() == opts.batch as usize => after = Some(l.id.clone()),
            _ => break,
        }
    }

    // 4. Links no manifest uses and nobody touched within the grace period.
    let mut after: Option<(i64, String)> = None;
    let mut dry_links: Vec<String> = Vec::new();
    let mut seen = 0;
    opts.progress.report(4, "unreferenced repository links", 0);
    loop {
        let links = maint
            .unreferenced_links(link_cutoff, after.as_ref().map(|(r, d)| (*r, d.as_str())), opts.batch)
            .await?;
        seen += links.len() as u64;
        for (repo, digest, _) in &links {
            if opts.dry_run {
                report.links_removed += 1;
                dry_links.push(digest.clone());
            } else if maint.link_collect(*repo, digest, link_cutoff).await? {
                report.links_removed += 1;
            }
        }
        opts.progress.report(4, "unreferenced repository links", seen);
        match links.last() {
            Some((r, d, _)) if links.len() == opts.batch as usize => after = Some((*r, d.clone())),
            _ => break,
        }
    }

    // 5. Blobs nothing references.
    let mut after: Option<String> = None;
    let mut seen = 0;
    opts.progress.report(5, "unreferenced blobs", 0);
    loop {
        let candidates = maint.unreferenced_blobs(cutoff, after.as_deref(), opts.batch).await?;
        seen += candidates.len() as u64;
        for b in &candidates {
            if opts.dry_run {
                report.blobs_deleted += 1;
                report.bytes_freed += b.size as u64;
            } else if let Some(p) = maint.blob_collect(&b.digest, cutoff).await? {
                report.blobs_deleted += 1;
                report.bytes_freed += b.size as u64;
                drain(meta, blobs, &[p], report).await?;
            }
        }
        opts.progress.report(5, "unreferenced blobs", seen);
        match candidates.last() {
            Some(l) if candidates.len() == opts.batch as usize => after = Some(l.digest.clone()),
            _ => break,
        }
    }
    // 6. Blob files no row names (a crash between writing and recording).
    sweep(maint, blobs, StoredKind::Blob, cutoff, opts, report).await?;
    if opts.dry_run {
        // Blobs whose every link the dry run would drop, and no manifest uses.
        dry_links.sort();
        dry_links.dedup();
        for d in dry_links {
            let (links, manifests) = maint.blob_refs(&d).await?;
            if manifests == 0 && links > 0 {
                let candidate_links = maint.unreferenced_link_count(&d, link_cutoff).await?;
                if candidate_links == links {
                    if let Some(b) = meta.blob_lookup(&d).await? {
                        report.blobs_deleted += 1;
                        report.bytes_freed += b.size as u64;
                    }
                }
            }
        }
    }
    Ok(())
}
