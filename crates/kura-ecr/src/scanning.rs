//! Image scanning on Kura: when to scan (the registry's and the repository's scanning
//! configuration), running scans in a bounded worker pool, re-matching on new vulnerability
//! data, and the ECR scanning operations.
//!
//! A scan reads the image's layers from the blob store as streams into
//! [`kura_scan::inventory::index_layer`] (cached per layer digest in the store), merges them,
//! catalogs packages, and matches them against the advisories of completed
//! `kura vulndb import`s. The image's inventory is kept with the scan, so new vulnerability
//! data re-matches without reading layers again (CONTINUOUS_SCAN).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use kura_registry::{Actor, EventKind, EventListener, EventType, ImageEvent, Registry};
use kura_scan::inventory::{self, LayerIndex, Limits};
use kura_scan::matcher::{self, Finding};
use kura_scan::vulndb::{self, Advisory};
use kura_scan::{Inventory, PackageKind};
use kura_store::meta::{ManifestKey, RepoId, RepoRow};
use kura_store::scan::{AdvisoryRow, ScanRow, ScanStart, VulnImportRow};
use kura_store::{ControlStore, MetaStore, ScanStore, StoreError};
use serde_json::{json, Value};

use kura_aws::json::ts;

/// Version of the serialized [`LayerIndex`] kept per layer; bump when its shape changes.
pub const LAYER_INDEX_FORMAT: i64 = 1;
/// A manual scan may run once per image per this period (ECR: 24 hours).
pub const MANUAL_SCAN_QUOTA_MS: i64 = 24 * 3600 * 1000;
/// The account setting that holds the registry scanning configuration (JSON).
pub const REGISTRY_SCANNING_SETTING: &str = "registry-scanning-configuration";

const COMPLETE_DESCRIPTION: &str = "The scan was completed successfully.";
const UNSUPPORTED_DESCRIPTION: &str =
    "UnsupportedImageError: The operating system and/or package manager are not supported.";

/// Scanner settings.
#[derive(Clone, Debug)]
pub struct ScanSettings {
    /// Scans running at once.
    pub workers: usize,
    /// A scan taking longer fails.
    pub timeout: Duration,
    /// Caps for reading hostile layers.
    pub limits: Limits,
    /// How often to look for new vulnerability imports and stalled scans.
    pub poll_every: Duration,
}

impl Default for ScanSettings {
    fn default() -> Self {
        ScanSettings {
            workers: 2,
            timeout: Duration::from_secs(15 * 60),
            limits: Limits::default(),
            poll_every: Duration::from_secs(30),
        }
    }
}

/// What the registry's scanning configuration says about one repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    /// `BASIC` or `ENHANCED`.
    pub scan_type: String,
    /// `SCAN_ON_PUSH`, `CONTINUOUS_SCAN` or `MANUAL`.
    pub frequency: String,
    /// The rule filters that matched.
    pub filters: Vec<Value>,
}

impl Effective {
    /// Does a push trigger a scan?
    pub fn on_push(&self) -> bool {
        self.frequency == "SCAN_ON_PUSH" || self.frequency == "CONTINUOUS_SCAN"
    }
}

/// The registry scanning configuration stored for `account` (BASIC, no rules by default).
pub async fn registry_config(control: &dyn ControlStore, account: &str) -> Result<Value, StoreError> {
    Ok(control
        .setting_get(account, REGISTRY_SCANNING_SETTING)
        .await?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| json!({"scanType": "BASIC", "rules": []})))
}

/// Apply a registry scanning configuration to a repository.
pub fn effective(config: &Value, repo: &RepoRow) -> Effective {
    let scan_type = config["scanType"].as_str().unwrap_or("BASIC").to_string();
    let rank = |f: &str| match f {
        "CONTINUOUS_SCAN" => 3,
        "SCAN_ON_PUSH" => 2,
        _ => 1,
    };
    let mut best: Option<(String, Vec<Value>)> = None;
    for rule in config["rules"].as_array().into_iter().flatten() {
        let freq = rule["scanFrequency"].as_str().unwrap_or("MANUAL");
        let matched: Vec<Value> = rule["repositoryFilters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| {
                f["filter"]
                    .as_str()
                    .is_some_and(|p| kura_store::meta::wildcard_match(p, &repo.name))
            })
            .cloned()
            .collect();
        if !matched.is_empty() && best.as_ref().is_none_or(|(f, _)| rank(freq) > rank(f)) {
            best = Some((freq.to_string(), matched));
        }
    }
    let (mut frequency, filters) = best.unwrap_or_else(|| ("MANUAL".to_string(), Vec::new()));
    // With basic scanning the repository's own scanOnPush still applies.
    if scan_type == "BASIC" && frequency == "MANUAL" && repo.settings.scan_on_push {
        frequency = "SCAN_ON_PUSH".into();
    }
    Effective {
        scan_type,
        frequency,
        filters,
    }
}

/// Is this manifest an image the scanner can read (not an index, not an artifact)?
pub fn scannable(media_type: &str, body: &[u8]) -> bool {
    match media_type {
        "application/vnd.docker.distribution.manifest.v2+json" => true,
        "application/vnd.oci.image.manifest.v1+json" => {
            let v: Value = serde_json::from_slice(body).unwrap_or_default();
            let config = v.pointer("/config/mediaType").and_then(Value::as_str).unwrap_or("");
            v.get("artifactType").is_none()
                && matches!(
                    config,
                    "application/vnd.oci.image.config.v1+json" | "application/vnd.docker.container.image.v1+json"
                )
        }
        _ => false,
    }
}

/// Runs scans in the background, bounded by a worker pool.
#[derive(Clone)]
pub struct Scanner {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: kura_jobs::Queue,
    meta: Arc<dyn MetaStore>,
    scans: Arc<dyn ScanStore>,
    control: Arc<dyn ControlStore>,
    registry: Arc<Registry>,
    permits: tokio::sync::Semaphore,
    settings: ScanSettings,
    /// The newest completed import the re-matcher has handled.
    rematched: AtomicI64,
}

/// The result of one scan.
struct Outcome {
    status: &'static str,
    description: String,
    inventory: Option<Inventory>,
}

impl Scanner {
    /// A scanner over the stores and the data-plane service; its scans run
    /// as `scan` jobs on `jobs` ([`ScanJob`]).
    pub fn new(
        jobs: kura_jobs::Queue,
        meta: Arc<dyn MetaStore>,
        scans: Arc<dyn ScanStore>,
        control: Arc<dyn ControlStore>,
        registry: Arc<Registry>,
        settings: ScanSettings,
    ) -> Self {
        Scanner {
            inner: Arc::new(Inner {
                jobs,
                meta,
                scans,
                control,
                registry,
                permits: tokio::sync::Semaphore::new(settings.workers.max(1)),
                settings,
                rematched: AtomicI64::new(-1),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ScanStore> {
        &self.inner.scans
    }

    /// One sweep (the periodic `scan-sweep` job): re-match images under
    /// CONTINUOUS_SCAN when a new import completed, and queue again scans a
    /// stopped node left `IN_PROGRESS` without a job.
    pub async fn poll_once(&self) -> Result<(), StoreError> {
        let now = kura_store::now_millis();
        let stale = now - self.inner.settings.timeout.as_millis() as i64 * 2;
        for row in self.inner.scans.scans_stalled(stale, 100).await? {
            if self
                .inner
                .scans
                .scan_start(row.repo_id, &row.digest, &row.scan_type, now, None)
                .await?
                == ScanStart::Started
            {
                self.queue_scan(row.repo_id, &row.digest, &row.scan_type).await?;
            }
        }
        let Some(latest) = self.inner.scans.vuln_imports().await?.into_iter().next() else {
            return Ok(());
        };
        if self.inner.rematched.load(Ordering::Relaxed) >= latest.id {
            return Ok(());
        }
        self.rematch_continuous(&latest).await?;
        self.inner.rematched.store(latest.id, Ordering::Relaxed);
        Ok(())
    }

    /// Re-match every completed scan of a repository under CONTINUOUS_SCAN against `import`.
    async fn rematch_continuous(&self, import: &VulnImportRow) -> Result<(), StoreError> {
        let mut after: Option<(RepoId, String)> = None;
        let mut configs: BTreeMap<String, Value> = BTreeMap::new();
        loop {
            let rows = self
                .inner
                .scans
                .scans_to_rematch(import.id, after.as_ref().map(|(r, d)| (*r, d.as_str())), 200)
                .await?;
            let Some(last) = rows.last() else { break };
            after = Some((last.repo_id, last.digest.clone()));
            for row in rows {
                let Some(repo) = self.inner.meta.repo_by_id(row.repo_id).await? else {
                    continue;
                };
                if !configs.contains_key(&repo.account) {
                    let c = registry_config(self.inner.control.as_ref(), &repo.account).await?;
                    configs.insert(repo.account.clone(), c);
                }
                let eff = effective(&configs[&repo.account], &repo);
                if eff.frequency != "CONTINUOUS_SCAN" {
                    continue;
                }
                let Some(inv) = row
                    .inventory
                    .as_deref()
                    .and_then(|s| serde_json::from_str::<Inventory>(s).ok())
                else {
                    continue;
                };
                let enhanced = eff.scan_type == "ENHANCED";
                self.finish(
                    row.repo_id,
                    &row.digest,
                    &eff.scan_type,
                    Outcome {
                        status: "COMPLETE",
                        description: COMPLETE_DESCRIPTION.into(),
                        inventory: Some(inv),
                    },
                    enhanced,
                    false,
                )
                .await?;
                tracing::info!(repo = %repo.name, digest = %row.digest, import = import.id, "image re-matched (continuous scan)");
            }
        }
        Ok(())
    }

    /// Queue a scan whose row is already `IN_PROGRESS`, as a `scan` job (one
    /// queued or running job per image: a burst of requests scans once).
    pub async fn queue_scan(&self, repo: RepoId, digest: &str, scan_type: &str) -> Result<i64, StoreError> {
        let payload = ScanPayload {
            repo_id: repo,
            digest: digest.to_string(),
            scan_type: scan_type.to_string(),
        };
        self.inner
            .jobs
            .enqueue(
                kura_jobs::NewJob::new(SCAN_JOB, payload)
                    .unique_key(format!("{SCAN_JOB}:{repo}:{digest}"))
                    .max_attempts(3),
            )
            .await
    }

    /// Run one scan now and record it (the `scan` job's work). A scan that
    /// fails (unreadable image, timeout) is recorded FAILED; `Err` is a store
    /// failure, worth a retry.
    pub async fn run_scan(&self, repo: RepoId, digest: &str, scan_type: &str) -> Result<(), StoreError> {
        let _permit = self.inner.permits.acquire().await;
        let enhanced = scan_type == "ENHANCED";
        let outcome = match tokio::time::timeout(self.inner.settings.timeout, self.inventory_of(repo, digest)).await {
            Ok(Ok(o)) => o,
            Ok(Err(reason)) => Outcome {
                status: "FAILED",
                description: reason,
                inventory: None,
            },
            Err(_) => Outcome {
                status: "FAILED",
                description: format!(
                    "The scan did not finish within {} seconds",
                    self.inner.settings.timeout.as_secs()
                ),
                inventory: None,
            },
        };
        self.finish(repo, digest, scan_type, outcome, enhanced, true).await
    }

    /// Read the image and catalog it; `Err` is a FAILED scan's description.
    async fn inventory_of(&self, repo: RepoId, digest: &str) -> Result<Outcome, String> {
        let store_err = |e: StoreError| format!("ScanError: {e}");
        let m = self
            .inner
            .meta
            .manifest_get(repo, ManifestKey::Digest(digest))
            .await
            .map_err(store_err)?
            .ok_or_else(|| "ImageNotFound: the image was deleted".to_string())?;
        if !scannable(&m.media_type, &m.body) {
            return Ok(Outcome {
                status: "UNSUPPORTED_IMAGE",
                description: "UnsupportedImageError: The image type is not supported.".into(),
                inventory: None,
            });
        }
        let v: Value = serde_json::from_slice(&m.body).map_err(|e| format!("ScanError: manifest: {e}"))?;
        let mut indexes = Vec::new();
        for layer in v["layers"].as_array().into_iter().flatten() {
            let (Some(ld), Some(lt)) = (layer["digest"].as_str(), layer["mediaType"].as_str()) else {
                continue;
            };
            if !is_tar_layer(lt) {
                continue;
            }
            indexes.push(self.layer_index(repo, ld).await?);
        }
        let view = inventory::merge(&indexes);
        let inv = inventory::catalog(&view);
        Ok(Outcome {
            status: "COMPLETE",
            description: COMPLETE_DESCRIPTION.into(),
            inventory: Some(inv),
        })
    }

    /// A layer's index: from the cache, or read from the blob store as a stream.
    async fn layer_index(&self, repo: RepoId, digest: &str) -> Result<LayerIndex, String> {
        let scans = &self.inner.scans;
        if let Some(bytes) = scans
            .layer_index_get(digest, LAYER_INDEX_FORMAT)
            .await
            .map_err(|e| format!("ScanError: {e}"))?
        {
            if let Ok(ix) = serde_json::from_slice::<LayerIndex>(&bytes) {
                return Ok(ix);
            }
        }
        let stream = match self
            .inner
            .meta
            .blob_get(repo, digest)
            .await
            .map_err(|e| format!("ScanError: {e}"))?
        {
            Some(blob) => self
                .inner
                .registry
                .blobs()
                .read(&blob.storage_key, None)
                .await
                .map_err(|e| format!("ScanError: layer {digest}: {e}"))?,
            // A pull-through cache holds an image's manifest before its layers: read the
            // layer through the registry, which fetches it from the upstream (once).
            None => self.layer_through_registry(repo, digest).await?,
        };
        let reader = tokio_util::io::StreamReader::new(stream.map_err(std::io::Error::other));
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        let limits = self.inner.settings.limits.clone();
        let ix = tokio::task::spawn_blocking(move || inventory::index_layer(bridge, &limits))
            .await
            .map_err(|e| format!("ScanError: {e}"))?
            .map_err(|e| format!("ScanError: layer {digest}: {e}"))?;
        if let Ok(bytes) = serde_json::to_vec(&ix) {
            let _ = scans
                .layer_index_put(digest, LAYER_INDEX_FORMAT, &bytes, kura_store::now_millis())
                .await;
        }
        Ok(ix)
    }

    /// A layer the repository does not hold yet, read as a client would: a
    /// pull-through cache repository fetches it from its upstream.
    async fn layer_through_registry(&self, repo: RepoId, digest: &str) -> Result<kura_store::ByteStream, String> {
        let missing = || format!("ScanError: layer {digest} is not in the repository");
        let row = self
            .inner
            .meta
            .repo_by_id(repo)
            .await
            .map_err(|e| format!("ScanError: {e}"))?
            .ok_or_else(missing)?;
        let name: kura_oci::RepoName = row.name.parse().map_err(|_| missing())?;
        let read = self
            .inner
            .registry
            .get_blob(&row.account, &name, digest, None, false)
            .await
            .map_err(|e| format!("ScanError: layer {digest}: {e}"))?;
        if let Some(body) = read.body {
            return Ok(body);
        }
        // Stored meanwhile and answered with a redirect to the blob store: read it from there.
        let blob = self
            .inner
            .meta
            .blob_get(repo, digest)
            .await
            .map_err(|e| format!("ScanError: {e}"))?
            .ok_or_else(missing)?;
        self.inner
            .registry
            .blobs()
            .read(&blob.storage_key, None)
            .await
            .map_err(|e| format!("ScanError: layer {digest}: {e}"))
    }

    /// Match and record.
    async fn finish(
        &self,
        repo: RepoId,
        digest: &str,
        scan_type: &str,
        outcome: Outcome,
        enhanced: bool,
        store_inventory: bool,
    ) -> Result<(), StoreError> {
        let now = kura_store::now_millis();
        let import = self.inner.scans.vuln_imports().await?.into_iter().next();
        let mut status = outcome.status;
        let mut description = outcome.description;
        let mut findings = Vec::new();
        if let Some(inv) = &outcome.inventory {
            let supported = inv.distro.is_some() || (enhanced && !inv.packages.is_empty());
            if !supported {
                status = "UNSUPPORTED_IMAGE";
                description = UNSUPPORTED_DESCRIPTION.into();
            } else {
                findings = self.match_inventory(inv, enhanced).await?;
            }
        }
        let counts = counts_of(&findings);
        let row = ScanRow {
            repo_id: repo,
            digest: digest.to_string(),
            status: status.to_string(),
            description: Some(description),
            scan_type: scan_type.to_string(),
            requested_at: 0,
            completed_at: Some(now),
            vuln_import_id: Some(import.as_ref().map(|i| i.id).unwrap_or(0)),
            vuln_updated_at: import.as_ref().and_then(|i| i.completed_at),
            inventory: if store_inventory {
                outcome.inventory.as_ref().and_then(|i| serde_json::to_string(i).ok())
            } else {
                None
            },
            findings: Some(serde_json::to_string(&findings).unwrap_or_else(|_| "[]".into())),
            counts: Some(serde_json::to_string(&counts).unwrap_or_else(|_| "{}".into())),
        };
        self.inner.scans.scan_finish(&row).await?;
        tracing::info!(%digest, status, findings = findings.len(), "image scan finished");
        // EventBridge's "ECR Image Scan" comes from the registry's scan event
        // (kura-events); CloudTrail has no record of a scan's completion.
        if let Some(repo_row) = self.inner.meta.repo_by_id(repo).await? {
            let counts = counts.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            let actor = Actor::scanner(repo_row.account.clone());
            self.inner
                .registry
                .scan_completed(&repo_row.account, &repo_row.name, digest, status, counts, &actor)
                .await;
        }
        Ok(())
    }

    async fn match_inventory(&self, inv: &Inventory, enhanced: bool) -> Result<Vec<Finding>, StoreError> {
        let mut found: BTreeMap<(String, String), Vec<Advisory>> = BTreeMap::new();
        for (eco, pkg) in matcher::queries(inv, enhanced) {
            let rows = self.inner.scans.vuln_lookup(&eco, &pkg).await?;
            let list: Vec<Advisory> = rows.iter().filter_map(|r| serde_json::from_str(r).ok()).collect();
            if !list.is_empty() {
                found.insert((eco, pkg), list);
            }
        }
        Ok(matcher::match_inventory(inv, enhanced, &found))
    }
}

fn is_tar_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

/// Scan on push: the scanner listens for `ImagePushed` (and only that) and
/// queues the scan as a durable job; the job runs it.
#[async_trait::async_trait]
impl EventListener for Scanner {
    async fn on_event(&self, event: &ImageEvent) {
        let EventKind::ImagePushed { digest, media_type, .. } = &event.kind else {
            return;
        };
        if !matches!(
            media_type.as_str(),
            "application/vnd.docker.distribution.manifest.v2+json" | "application/vnd.oci.image.manifest.v1+json"
        ) {
            return;
        }
        // Inline, before the push is answered: once the push is acknowledged
        // its scan is a durable job (or a started scan the sweep restarts).
        let (account, name) = (&event.account, &event.repository);
        let repo = match self.inner.meta.repo_get(account, name).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "scan on push: repository unreadable");
                return;
            }
        };
        let config = match registry_config(self.inner.control.as_ref(), &repo.account).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "scan on push: no scanning configuration");
                return;
            }
        };
        let eff = effective(&config, &repo);
        if !eff.on_push() {
            return;
        }
        let now = kura_store::now_millis();
        match self
            .inner
            .scans
            .scan_start(repo.id, digest, &eff.scan_type, now, None)
            .await
        {
            Ok(ScanStart::Started) => {
                if let Err(e) = self.queue_scan(repo.id, digest, &eff.scan_type).await {
                    // The stalled-scan sweep queues it later.
                    tracing::warn!(error = %e, %digest, "scan on push could not be queued");
                }
            }
            Ok(ScanStart::QuotaExceeded) => {}
            Err(e) => tracing::warn!(error = %e, "scan on push could not start"),
        }
    }

    fn wants(&self, ty: EventType) -> bool {
        ty == EventType::ImagePushed
    }
}

/// The job kind of image scans.
pub const SCAN_JOB: &str = "scan";

/// What a scan job carries.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ScanPayload {
    /// The repository's row id.
    pub repo_id: RepoId,
    /// The image.
    pub digest: String,
    /// `BASIC` or `ENHANCED`.
    pub scan_type: String,
}

/// The job kind of the scanner's periodic sweep ([`Scanner::poll_once`],
/// every `--scan-poll-interval`).
pub const SWEEP_JOB: &str = "scan-sweep";

/// Runs `scan-sweep` jobs.
pub struct SweepJob(pub Scanner);

#[async_trait::async_trait]
impl kura_jobs::JobHandler for SweepJob {
    fn kind(&self) -> &str {
        SWEEP_JOB
    }

    async fn run(&self, _job: &kura_jobs::Job) -> Result<(), kura_jobs::JobError> {
        self.0.poll_once().await?;
        Ok(())
    }
}

/// Runs `scan` jobs ([`Scanner::run_scan`]). At-least-once: a scan cut off
/// by a crash runs again and records one result.
pub struct ScanJob(pub Scanner);

#[async_trait::async_trait]
impl kura_jobs::JobHandler for ScanJob {
    fn kind(&self) -> &str {
        SCAN_JOB
    }

    async fn run(&self, job: &kura_jobs::Job) -> Result<(), kura_jobs::JobError> {
        let p: ScanPayload = kura_jobs::payload(job)?;
        self.0.run_scan(p.repo_id, &p.digest, &p.scan_type).await?;
        Ok(())
    }
}

// ----- vulnerability data import ----------------------------------------------------------------

/// Import vulnerability data from `path` into the store (`kura vulndb import`). Advisories are
/// written in batches; the import becomes visible when it completes.
pub async fn import_vulndb(scans: &dyn ScanStore, path: &std::path::Path) -> anyhow::Result<VulnImportRow> {
    import_vulndb_with_progress(scans, path, std::sync::Arc::new(|_: VulnImportProgress| {})).await
}

/// Where an import stands: JSON documents read of the input's total (files
/// of a directory, members of a zip; a plain file is one) and advisories read.
#[derive(Clone, Copy, Debug, Default)]
pub struct VulnImportProgress {
    pub documents_done: u64,
    pub documents_total: u64,
    pub advisories: u64,
}

/// [`import_vulndb`], calling `progress` once the number of documents is
/// known, after each document, and every 2000 advisories.
pub async fn import_vulndb_with_progress(
    scans: &dyn ScanStore,
    path: &std::path::Path,
    progress: std::sync::Arc<dyn Fn(VulnImportProgress) + Send + Sync>,
) -> anyhow::Result<VulnImportRow> {
    let started = kura_store::now_millis();
    let id = scans.vuln_import_begin(&path.display().to_string(), started).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<AdvisoryRow>>(4);
    let p = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || {
        let state = std::cell::Cell::new(VulnImportProgress::default());
        let mut batch = Vec::with_capacity(2000);
        let mut sink = |a: Advisory| -> Result<(), vulndb::VulnDbError> {
            let mut st = state.get();
            st.advisories += 1;
            state.set(st);
            if st.advisories % 2000 == 0 {
                progress(st);
            }
            let data = serde_json::to_string(&a).map_err(|e| vulndb::VulnDbError::Io(std::io::Error::other(e)))?;
            batch.push(AdvisoryRow {
                ecosystem: a.ecosystem,
                package: a.package,
                name: a.name,
                data,
            });
            if batch.len() >= 2000 {
                let full = std::mem::take(&mut batch);
                tx.blocking_send(full)
                    .map_err(|_| vulndb::VulnDbError::Io(std::io::Error::other("import stopped")))?;
            }
            Ok(())
        };
        let summary = vulndb::import_path_with_progress(&p, &mut sink, &mut |done, total| {
            let mut st = state.get();
            st.documents_done = done;
            st.documents_total = total;
            state.set(st);
            progress(st);
        })?;
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        Ok::<_, vulndb::VulnDbError>(summary)
    });
    while let Some(rows) = rx.recv().await {
        scans.vuln_import_add(id, &rows).await?;
    }
    let summary = reader.await??;
    let row = VulnImportRow {
        id,
        origin: path.display().to_string(),
        started_at: started,
        completed_at: Some(kura_store::now_millis()),
        kinds: summary.kinds.iter().map(|k| k.label()).collect::<Vec<_>>().join(","),
        records: summary.records as i64,
        advisories: summary.advisories as i64,
        ecosystems: serde_json::to_string(&summary.ecosystems)?,
    };
    scans.vuln_import_finish(id, &row, kura_store::now_millis()).await?;
    Ok(row)
}

// ----- rendering ----------------------------------------------------------------------------------

/// `imageScanStatus` as ECR shows it.
pub fn status_json(row: &ScanRow) -> Value {
    let mut v = json!({"status": row.status});
    if let Some(d) = &row.description {
        v["description"] = json!(d);
    } else if row.status == "IN_PROGRESS" {
        v["description"] = json!("The scan is in progress.");
    }
    v
}

/// `imageScanFindingsSummary` for DescribeImages (only for finished scans).
pub fn summary_json(row: &ScanRow) -> Option<Value> {
    if row.status == "IN_PROGRESS" {
        return None;
    }
    let mut v = json!({});
    if let Some(c) = row.completed_at {
        v["imageScanCompletedAt"] = ts(c);
    }
    if let Some(u) = row.vuln_updated_at {
        v["vulnerabilitySourceUpdatedAt"] = ts(u);
    }
    if row.status == "COMPLETE" {
        v["findingSeverityCounts"] = row
            .counts
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_else(|| json!({}));
    }
    Some(v)
}

fn package_manager(kind: PackageKind) -> &'static str {
    match kind {
        PackageKind::Dpkg | PackageKind::Apk | PackageKind::Rpm => "OS",
        PackageKind::Python => "PYTHONPKG",
        PackageKind::Npm => "NODEPKG",
        PackageKind::Go => "GOBINARY",
        PackageKind::Cargo => "CARGO",
        PackageKind::Maven => "JAR",
    }
}

/// A basic-scan finding (`findings`).
pub fn basic_finding(f: &Finding) -> Value {
    let mut attrs = vec![
        json!({"key": "package_version", "value": f.package.version}),
        json!({"key": "package_name", "value": f.package.name}),
    ];
    if let Some(src) = &f.package.source_name {
        if src != &f.package.name {
            attrs.push(json!({"key": "source_package_name", "value": src}));
        }
    }
    if let Some(fixed) = f.advisory.fixed_version() {
        attrs.push(json!({"key": "fixed_version", "value": fixed}));
    }
    for c in &f.advisory.cvss {
        let major = c.version.split('.').next().unwrap_or("3");
        attrs.push(json!({"key": format!("CVSS{major}_VECTOR"), "value": c.vector}));
        attrs.push(json!({"key": format!("CVSS{major}_SCORE"), "value": format!("{:.1}", c.score)}));
    }
    let description = if f.advisory.description.is_empty() {
        f.advisory.title.clone()
    } else {
        f.advisory.description.clone()
    };
    json!({
        "name": f.advisory.name,
        "description": description,
        "uri": f.advisory.uri,
        "severity": f.severity.as_str(),
        "attributes": attrs,
    })
}

/// Context for rendering enhanced findings.
pub struct ImageContext<'a> {
    /// Region.
    pub region: &'a str,
    /// Registry (account).
    pub account: &'a str,
    /// Repository.
    pub repo: &'a str,
    /// Image digest.
    pub digest: &'a str,
    /// Tags.
    pub tags: &'a [String],
    /// Pushed (ms).
    pub pushed_at: i64,
    /// When the finding was recorded (ms).
    pub observed_at: i64,
}

/// An enhanced finding (`enhancedFindings`), Amazon Inspector's shape.
pub fn enhanced_finding(f: &Finding, img: &ImageContext<'_>) -> Value {
    use sha2::Digest as _;
    let key = format!(
        "{}/{}/{}/{}/{}",
        img.account, img.repo, img.digest, f.advisory.name, f.package.name
    );
    let id = hex::encode(&sha2::Sha256::digest(key.as_bytes())[..16]);
    let best = matcher::best_cvss(&f.advisory.cvss);
    let source = match f.package.kind {
        PackageKind::Dpkg if f.advisory.uri.contains("security-tracker.debian.org") => "DEBIAN_CVE",
        PackageKind::Apk => "ALPINE_SECDB",
        _ => "OSV",
    };
    let mut pkg = json!({
        "name": f.package.name,
        "version": f.package.version,
        "packageManager": package_manager(f.package.kind),
        "filePath": f.package.path,
    });
    if let Some(a) = &f.package.arch {
        pkg["arch"] = json!(a);
    }
    if let Some(fixed) = f.advisory.fixed_version() {
        pkg["fixedInVersion"] = json!(fixed);
    }
    let mut details = json!({
        "cvss": f.advisory.cvss.iter().map(|c| json!({"baseScore": c.score, "scoringVector": c.vector, "source": source, "version": c.version})).collect::<Vec<_>>(),
        "referenceUrls": f.advisory.references,
        "relatedVulnerabilities": f.advisory.aliases,
        "source": source,
        "sourceUrl": f.advisory.uri,
        "vulnerabilityId": f.advisory.name,
        "vulnerablePackages": [pkg],
    });
    if let Some(v) = &f.advisory.vendor_severity {
        details["vendorSeverity"] = json!(v);
    }
    let fixed = f.advisory.fixed_version();
    let mut out = json!({
        "awsAccountId": img.account,
        "description": if f.advisory.description.is_empty() { &f.advisory.title } else { &f.advisory.description },
        "findingArn": format!("arn:aws:inspector2:{}:{}:finding/{id}", img.region, img.account),
        "firstObservedAt": ts(img.observed_at),
        "lastObservedAt": ts(img.observed_at),
        "updatedAt": ts(img.observed_at),
        "packageVulnerabilityDetails": details,
        "remediation": {"recommendation": {"text": match fixed {
            Some(v) => format!("Upgrade {} to version {v} or later.", f.package.name),
            None => "None provided".to_string(),
        }}},
        "resources": [{
            "id": format!("arn:aws:ecr:{}:{}:repository/{}/{}", img.region, img.account, img.repo, img.digest),
            "type": "AWS_ECR_CONTAINER_IMAGE",
            "details": {"awsEcrContainerImage": {
                "imageHash": img.digest,
                "imageTags": img.tags,
                "pushedAt": ts(img.pushed_at),
                "registry": img.account,
                "repositoryName": img.repo,
            }},
        }],
        "severity": f.severity.as_str(),
        "status": "ACTIVE",
        "title": format!("{} - {}", f.advisory.name, f.package.name),
        "type": "PACKAGE_VULNERABILITY",
        "fixAvailable": if fixed.is_some() { "YES" } else { "NO" },
        "exploitAvailable": "NO",
    });
    if let Some(c) = best {
        out["score"] = json!(c.score);
        out["scoreDetails"] = json!({"cvss": {"score": c.score, "scoreSource": source, "scoringVector": c.vector, "version": c.version, "adjustments": []}});
    }
    out
}

/// Severity counts as a map for responses.
pub fn counts_of(findings: &[Finding]) -> BTreeMap<&'static str, u64> {
    let mut counts = BTreeMap::new();
    for f in findings {
        *counts.entry(f.severity.as_str()).or_default() += 1;
    }
    counts
}
