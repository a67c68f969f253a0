//! GC tests over real stores: what it collects, what it must never collect,
//! crash recovery through the outbox, the upload purger, and the race of GC
//! against concurrent pushes, HEAD-then-reference pushes and deletes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kura_gc::{collect, GcOptions};
use kura_oci::{Digest, RepoName};
use kura_registry::error::RegistryError;
use kura_registry::request::Mount;
use kura_registry::service::{Body, StartOutcome};
use kura_registry::{Actor, Registry, RegistryConfig};
use kura_store::sql::TOUCH_SLACK_MS;
use kura_store::{BlobStore, FsBlobStore, MaintenanceStore, MetaStore, SqlMetaStore};
use rand::Rng;

const ACCOUNT: &str = "000000000000";

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<SqlMetaStore>,
    blobs: Arc<FsBlobStore>,
    reg: Arc<Registry>,
    root: std::path::PathBuf,
}

/// The stores for one test: SQLite, or a fresh PostgreSQL database when
/// `KURA_TEST_DATABASE_URL` is set (CI runs this file both ways).
async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await);
    let blobs = Arc::new(
        FsBlobStore::open(dir.path().join("blobs"))
            .await
            .unwrap()
            .without_fsync(),
    );
    let reg = Arc::new(Registry::new(store.clone(), blobs.clone(), RegistryConfig::default()));
    Env {
        root: dir.path().join("blobs"),
        _dir: dir,
        store,
        blobs,
        reg,
    }
}

fn body(data: Vec<u8>) -> Body {
    futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(data))]).boxed()
}

fn actor() -> Actor {
    Actor::anonymous(ACCOUNT)
}

fn name(s: &str) -> RepoName {
    s.parse().unwrap()
}

async fn push_blob(reg: &Registry, repo: &str, data: &[u8]) -> String {
    let d = Digest::sha256(data);
    let out = reg
        .start_upload(
            ACCOUNT,
            &name(repo),
            None,
            Some(d.as_str()),
            &actor(),
            body(data.to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(out, StartOutcome::Created(d.clone()));
    d.to_string()
}

fn manifest(config: (&str, usize), layers: &[(&str, usize)]) -> Vec<u8> {
    serde_json_like(config, layers).into_bytes()
}

/// A minimal OCI manifest, written by hand to keep the test free of extra crates.
fn serde_json_like(config: (&str, usize), layers: &[(&str, usize)]) -> String {
    let ls: Vec<String> = layers
        .iter()
        .map(|(d, s)| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{s}}}"#))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
        config.0,
        config.1,
        ls.join(",")
    )
}

async fn read_all(reg: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    let r = reg
        .get_blob(ACCOUNT, &name(repo), digest, None, false)
        .await
        .unwrap_or_else(|e| panic!("{digest}: {e:?}"));
    let mut out = Vec::new();
    let mut s = r.body.unwrap();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

fn files_under(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            n += files_under(&p);
        } else {
            n += 1;
        }
    }
    n
}

fn opts(grace_ms: u64) -> GcOptions {
    GcOptions {
        grace: Duration::from_millis(grace_ms),
        upload_max_age: Duration::from_secs(3600),
        dry_run: false,
        batch: 7,
        now_ms: None,
        progress: Default::default(),
    }
}

#[tokio::test]
async fn collects_only_unreferenced_blobs_and_reports_it() {
    let e = env().await;
    let cfg = push_blob(&e.reg, "app", b"{}").await;
    let layer = push_blob(&e.reg, "app", &[1u8; 1000]).await;
    let m = manifest((&cfg, 2), &[(&layer, 1000)]);
    e.reg
        .put_manifest(ACCOUNT, &name("app"), "v1", &[], None, m, &actor())
        .await
        .unwrap();
    let orphan = push_blob(&e.reg, "app", &[2u8; 5000]).await;
    // The same layer, pushed to a second repository and never referenced there.
    push_blob(&e.reg, "other", &[1u8; 1000]).await;
    // Links are kept for the grace period plus the HEAD-touch slack.
    tokio::time::sleep(Duration::from_millis(20 + TOUCH_SLACK_MS as u64)).await;

    // Within the grace period nothing goes.
    let r = collect(e.store.as_ref(), e.store.as_ref(), e.blobs.as_ref(), &opts(60_000))
        .await
        .unwrap();
    assert_eq!((r.links_removed, r.blobs_deleted), (0, 0));

    let dry = collect(
        e.store.as_ref(),
        e.store.as_ref(),
        e.blobs.as_ref(),
        &GcOptions {
            dry_run: true,
            ..opts(0)
        },
    )
    .await
    .unwrap();
    assert!(dry.dry_run);
    assert_eq!(
        (dry.links_removed, dry.blobs_deleted, dry.bytes_freed),
        (2, 1, 5000),
        "{dry:?}"
    );
    assert_eq!(
        read_all(&e.reg, "app", &orphan).await.len(),
        5000,
        "a dry run deletes nothing"
    );

    let files_before = files_under(&e.root);
    let r = collect(e.store.as_ref(), e.store.as_ref(), e.blobs.as_ref(), &opts(0))
        .await
        .unwrap();
    assert_eq!((r.links_removed, r.blobs_deleted, r.bytes_freed), (2, 1, 5000), "{r:?}");
    assert_eq!(files_under(&e.root), files_before - 1, "the orphan's bytes are gone");
    let err = e
        .reg
        .get_blob(ACCOUNT, &name("app"), &orphan, None, true)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::BlobUnknown { .. }), "{err:?}");
    // The shared layer lost its unreferenced link in "other" but stays for "app".
    assert!(matches!(
        e.reg
            .get_blob(ACCOUNT, &name("other"), &layer, None, true)
            .await
            .unwrap_err(),
        RegistryError::BlobUnknown { .. }
    ));
    assert_eq!(read_all(&e.reg, "app", &layer).await, vec![1u8; 1000]);

    // Deleting the image releases its blobs.
    let row = e.reg.get_manifest(ACCOUNT, &name("app"), "v1", None).await.unwrap();
    e.reg
        .delete_manifest(ACCOUNT, &name("app"), &row.digest, &actor())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5 + TOUCH_SLACK_MS as u64)).await;
    let r = collect(e.store.as_ref(), e.store.as_ref(), e.blobs.as_ref(), &opts(0))
        .await
        .unwrap();
    assert_eq!((r.links_removed, r.blobs_deleted, r.bytes_freed), (2, 2, 1002), "{r:?}");
    assert_eq!(files_under(&e.root), 0);
}

#[tokio::test]
async fn a_head_protects_a_link_for_the_grace_period() {
    let e = env().await;
    let d = push_blob(&e.reg, "app", b"layer").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // A client checks the blob exists (and will reference it without uploading).
    e.reg.get_blob(ACCOUNT, &name("app"), &d, None, true).await.unwrap();
    let r = collect(e.store.as_ref(), e.store.as_ref(), e.blobs.as_ref(), &opts(1000))
        .await
        .unwrap();
    assert_eq!(r.links_removed, 0, "touched by the HEAD");
    let m = manifest((&d, 5), &[]);
    e.reg
        .put_manifest(ACCOUNT, &name("app"), "v1", &[], None, m, &actor())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = collect(e.store.as_ref(), e.store.as_ref(), e.blobs.as_ref(), &opts(1000))
        .await
        .unwrap();
    assert_eq!(r.blobs_deleted, 0, "referenced by a manifest");
    assert_eq!(read_all(&e.reg, "app", &d).await, b"layer");
}

#[tokio::test]
async fn a_crash_between_metadata_commit_and_blob_delete_leaves_work_for_the_next_run() {
    let e = env().await;
    let d = push_blob(&e.reg, "app", b"doomed").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cutoff = kura_store::now_millis();
    let repo = e.store.repo_get(ACCOUNT, "app").await.unwrap().unwrap();
    assert!(e.store.link_collect(repo.id, &d, cutoff).await.unwrap());
    // The row goes and the delete is queued ... and then the process dies.
    let pending = e.store.blob_collect(&d, cutoff).await.unwrap().expect("collectable");
    assert_eq!(pending.kind, "blob");
    assert!(
        e.blobs.stat(&pending.key).await.unwrap().is_some(),
        "orphan bytes remain after the crash"
    );
    assert!(matches!(
        e.reg.get_blob(ACCOUNT, &name("app"), &d, None, true).await.unwrap_err(),
        RegistryError::BlobUnknown { .. }
    ));
    // The next run finishes it.
    let r = collect(e.store.as_ref(), e.store.as_ref(), e.blobs.as_ref(), &opts(0))
        .await
        .unwrap();
    assert_eq!(r.store_deletes, 1);
    assert!(e.blobs.stat(&pending.key).await.unwrap().is_none());
    assert!(e.store.pending_deletes(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn abandoned_uploads_are_purged_after_their_age() {
    let e = env().await;
    let StartOutcome::Started(st) = e
        .reg
        .start_upload(ACCOUNT, &name("app"), None, None, &actor(), body(vec![]))
        .await
        .unwrap()
    else {
        panic!("expected a session")
    };
    e.reg
        .patch_upload(ACCOUNT, &name("app"), &st.id, None, None, body(vec![7u8; 4096]))
        .await
        .unwrap();
    assert_eq!(files_under(&e.root.join("uploads")), 1);
    let young = collect(e.store.as_ref(), e.store.as_ref(), e.blobs.as_ref(), &opts(0))
        .await
        .unwrap();
    assert_eq!(young.uploads_purged, 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let old = GcOptions {
        upload_max_age: Duration::from_millis(10),
        ..opts(0)
    };
    let r = collect(e.store.as_ref(), e.store.as_ref(), e.blobs.as_ref(), &old)
        .await
        .unwrap();
    assert_eq!(r.uploads_purged, 1);
    assert_eq!(files_under(&e.root.join("uploads")), 0);
    let err = e.reg.upload_status(ACCOUNT, &name("app"), &st.id).await.unwrap_err();
    assert!(matches!(err, RegistryError::UploadUnknown { .. }), "{err:?}");
}

#[tokio::test]
async fn only_one_gc_runs_at_a_time() {
    let e = env().await;
    assert!(e.store.lease_acquire("gc", "someone-else", 60_000).await.unwrap());
    let r = collect(e.store.as_ref(), e.store.as_ref(), e.blobs.as_ref(), &opts(0))
        .await
        .unwrap();
    assert!(r.skipped);
    e.store.lease_release("gc", "someone-else").await.unwrap();
    assert!(
        !collect(e.store.as_ref(), e.store.as_ref(), e.blobs.as_ref(), &opts(0))
            .await
            .unwrap()
            .skipped
    );
}

/// Pushes (some reusing blobs they only HEADed), deletes and GC run together;
/// afterwards every tagged image must pull completely.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_races_pushes_heads_and_deletes_without_losing_a_tagged_image() {
    let e = env().await;
    let stop = Arc::new(AtomicBool::new(false));
    let collected = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    // A few shared layers that pushers reference after a HEAD, like real clients.
    let mut shared = Vec::new();
    for i in 0..6u8 {
        let data = vec![i; 3000 + i as usize];
        shared.push((push_blob(&e.reg, "seed", &data).await, data));
    }
    let shared = Arc::new(shared);

    let mut tasks = Vec::new();
    for w in 0..3 {
        let (reg, stop, shared, retries) = (e.reg.clone(), stop.clone(), shared.clone(), retries.clone());
        tasks.push(tokio::spawn(async move {
            let repo = format!("team/w{w}");
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let cfg = format!("{{\"w\":{w},\"i\":{i}}}").into_bytes();
                let own = format!("layer {w} {i}").repeat(50).into_bytes();
                let (sd, sdata) = shared[(i as usize + w) % shared.len()].clone();
                let c = push_blob(&reg, &repo, &cfg).await;
                let l = push_blob(&reg, &repo, &own).await;
                // Mount the shared layer from the seed repository (a link), then
                // HEAD it and reference it without uploading.
                let _ = reg
                    .start_upload(
                        ACCOUNT,
                        &name(&repo),
                        Some(&Mount {
                            digest: sd.clone(),
                            from: name("seed"),
                        }),
                        None,
                        &actor(),
                        body(vec![]),
                    )
                    .await;
                if reg.get_blob(ACCOUNT, &name(&repo), &sd, None, true).await.is_err() {
                    push_blob(&reg, &repo, &sdata).await;
                }
                let jitter = rand::rng().random_range(0..30);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
                let m = manifest((&c, cfg.len()), &[(&l, own.len()), (&sd, sdata.len())]);
                let tag = format!("t{}", i % 5);
                match reg
                    .put_manifest(ACCOUNT, &name(&repo), &tag, &[], None, m.clone(), &actor())
                    .await
                {
                    Ok(_) => {}
                    Err(RegistryError::MissingReferences { .. }) => {
                        // GC won the race for a link older than the grace period:
                        // the client uploads again and retries, as clients do.
                        retries.fetch_add(1, Ordering::Relaxed);
                        push_blob(&reg, &repo, &cfg).await;
                        push_blob(&reg, &repo, &own).await;
                        push_blob(&reg, &repo, &sdata).await;
                        reg.put_manifest(ACCOUNT, &name(&repo), &tag, &[], None, m, &actor())
                            .await
                            .unwrap();
                    }
                    Err(err) => panic!("push failed: {err:?}"),
                }
            }
        }));
    }
    {
        // A deleter untags and deletes images.
        let (reg, stop) = (e.reg.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let w = rand::rng().random_range(0..3);
                let t = rand::rng().random_range(0..5);
                let repo = name(&format!("team/w{w}"));
                if let Ok(m) = reg.get_manifest(ACCOUNT, &repo, &format!("t{t}"), None).await {
                    if rand::rng().random_bool(0.5) {
                        let _ = reg.delete_manifest(ACCOUNT, &repo, &m.digest, &actor()).await;
                    } else {
                        let _ = reg.delete_manifest(ACCOUNT, &repo, &format!("t{t}"), &actor()).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }));
    }
    {
        // GC, continuously, with a grace period longer than a pusher's HEAD-to-PUT gap.
        let (store, blobs, stop, collected) = (e.store.clone(), e.blobs.clone(), stop.clone(), collected.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = collect(store.as_ref(), store.as_ref(), blobs.as_ref(), &opts(150))
                    .await
                    .unwrap();
                collected.fetch_add(r.blobs_deleted, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    // Every tagged image pulls completely, byte for byte.
    let mut images = 0;
    for w in 0..3 {
        let repo = format!("team/w{w}");
        let (tags, _) = e.reg.list_tags(ACCOUNT, &name(&repo), None, None).await.unwrap();
        for t in tags {
            let m = e.reg.get_manifest(ACCOUNT, &name(&repo), &t, None).await.unwrap();
            let info = kura_oci::manifest::inspect(&m.body, None).unwrap();
            for d in &info.blobs {
                let bytes = read_all(&e.reg, &repo, d.as_str()).await;
                assert_eq!(&Digest::sha256(&bytes), d, "{repo}:{t} blob {d} is intact");
            }
            images += 1;
        }
    }
    assert!(images > 0, "some images survived the deleter");
    assert!(
        collected.load(Ordering::Relaxed) > 0,
        "GC really collected during the race"
    );
    eprintln!(
        "race: {images} tagged images intact, {} blobs collected, {} pushes retried after GC won",
        collected.load(Ordering::Relaxed),
        retries.load(Ordering::Relaxed)
    );
}

/// A throttled HEAD still protects its link for the whole grace period: the
/// first HEAD records a touch, a second HEAD half a second later is skipped
/// by the once-a-second throttle, and GC just inside the grace period after
/// the second HEAD must keep the link. (Before, GC measured the grace from
/// the recorded touch and dropped the link up to a second early.)
#[tokio::test]
async fn a_throttled_head_protects_a_link_for_at_least_the_grace_period() {
    let e = env().await;
    let d = push_blob(&e.reg, "app", b"layer").await;
    // Make the upload's own touch old, so only the HEADs protect the link.
    let repo = e.store.repo_get(ACCOUNT, "app").await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    e.reg.get_blob(ACCOUNT, &name("app"), &d, None, true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let last_head = kura_store::now_millis();
    e.reg.get_blob(ACCOUNT, &name("app"), &d, None, true).await.unwrap();
    let grace = 60_000u64;
    // GC running 1 ms before the grace period after the last HEAD ends.
    let inside = GcOptions {
        now_ms: Some(last_head + grace as i64 - 1),
        ..opts(grace)
    };
    let r = collect(e.store.as_ref(), e.store.as_ref(), e.blobs.as_ref(), &inside)
        .await
        .unwrap();
    assert_eq!(r.links_removed, 0, "the last HEAD's grace period is not over: {r:?}");
    assert!(e.store.blob_get(repo.id, &d).await.unwrap().is_some());
    // Well past it (grace plus the slack), the link goes.
    let past = GcOptions {
        now_ms: Some(last_head + grace as i64 + TOUCH_SLACK_MS + 1),
        ..opts(grace)
    };
    let r = collect(e.store.as_ref(), e.store.as_ref(), e.blobs.as_ref(), &past)
        .await
        .unwrap();
    assert_eq!(r.links_removed, 1, "{r:?}");
}

fn set_age(path: &std::path::Path, age: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - age).unwrap();
}

/// Files no row names (a crash between writing a blob file and recording
/// it, or an upload file whose session row is gone) are deleted once older
/// than the grace period; a fresh orphan, a live upload's file and a recorded
/// blob's file stay, however old. (Before, GC never listed the blob store
/// and such files stayed forever.)
#[tokio::test]
async fn orphan_files_older_than_the_grace_period_are_swept() {
    let e = env().await;
    let grace = Duration::from_secs(3600);
    let old = grace + Duration::from_secs(60);
    // A recorded blob, its file made old.
    let kept = push_blob(&e.reg, "app", b"recorded").await;
    let kept_row = e.store.blob_lookup(&kept).await.unwrap().unwrap();
    set_age(&e.root.join("blobs").join(&kept_row.storage_key), old);
    // A live upload session with bytes, its file made old.
    let StartOutcome::Started(live) = e
        .reg
        .start_upload(ACCOUNT, &name("app"), None, None, &actor(), body(vec![]))
        .await
        .unwrap()
    else {
        panic!("expected a session")
    };
    e.reg
        .patch_upload(ACCOUNT, &name("app"), &live.id, None, None, body(vec![3u8; 100]))
        .await
        .unwrap();
    set_age(&e.root.join("uploads").join(&live.id), old);
    // Orphans: blob files with no row (as a crash after commit leaves them), one old, one fresh.
    let plant = |data: &[u8], id: &str| {
        let key = FsBlobStore::key_for(&Digest::sha256(data), id);
        let path = e.root.join("blobs").join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        path
    };
    let old_orphan = plant(b"crashed before its row", "00000000-dead-4000-8000-000000000001");
    set_age(&old_orphan, old);
    let fresh_orphan = plant(b"being recorded right now", "00000000-dead-4000-8000-000000000002");
    // An upload file whose session row is gone, old.
    let old_upload = e.root.join("uploads").join("00000000-dead-4000-8000-000000000003");
    std::fs::write(&old_upload, vec![5u8; 4096]).unwrap();
    set_age(&old_upload, old);

    let opts = GcOptions { grace, ..opts(0) };
    let dry = collect(
        e.store.as_ref(),
        e.store.as_ref(),
        e.blobs.as_ref(),
        &GcOptions {
            dry_run: true,
            ..opts.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.orphans_deleted, 2, "{dry:?}");
    assert!(old_orphan.exists() && old_upload.exists(), "a dry run deletes nothing");

    let r = collect(e.store.as_ref(), e.store.as_ref(), e.blobs.as_ref(), &opts)
        .await
        .unwrap();
    assert_eq!(r.orphans_deleted, 2, "{r:?}");
    assert_eq!(r.orphan_bytes_freed, 4096 + b"crashed before its row".len() as u64);
    assert!(!old_orphan.exists(), "the old orphan blob file is gone");
    assert!(!old_upload.exists(), "the old orphan upload file is gone");
    assert!(fresh_orphan.exists(), "a fresh orphan is within its grace period");
    assert!(
        e.root.join("uploads").join(&live.id).exists(),
        "a live upload keeps its file"
    );
    assert_eq!(read_all(&e.reg, "app", &kept).await, b"recorded");
    // The live upload still finishes.
    let d = Digest::sha256(&[3u8; 100]);
    e.reg
        .finish_upload(ACCOUNT, &name("app"), &live.id, d.as_str(), None, None)
        .await
        .unwrap();
}

/// A GC killed mid-run must not stop GC for long: the lease it held lasts
/// 30 s (it was 10 minutes), an embedded start-up clears the leases of its
/// own dead processes at once, and a run that finds the lease held is
/// skipped (and logs who holds it until when).
#[tokio::test]
async fn a_dead_runs_gc_lease_is_short_and_cleared_at_start_up() {
    let e = env().await;
    // The lease a running GC holds is short.
    let during = kura_store::gc::with_job_lease(e.store.as_ref(), "gc", async {
        Ok(e.store.lease_get("gc").await.unwrap().unwrap())
    })
    .await
    .unwrap();
    let kura_store::gc::Leased::Ran((holder, until)) = during else {
        panic!("the lease was free")
    };
    assert!(
        until - kura_store::now_millis() <= kura_store::gc::JOB_LEASE_MS,
        "{until}"
    );
    assert!(holder.starts_with(&format!("{}:{}:", kura_store::gc::host_name(), std::process::id())));
    assert_eq!(e.store.lease_get("gc").await.unwrap(), None, "released after the run");

    // A run killed with kill -9: its lease stays behind, and other runs skip.
    let dead = format!("{}:{}:x", kura_store::gc::host_name(), u32::MAX - 7);
    assert!(e
        .store
        .lease_acquire("gc", &dead, kura_store::gc::JOB_LEASE_MS)
        .await
        .unwrap());
    let r = collect(e.store.as_ref(), e.store.as_ref(), e.blobs.as_ref(), &opts(0))
        .await
        .unwrap();
    assert!(r.skipped);
    // A live process's lease (a `kura gc` running beside the server) is kept.
    let live = format!("{}:1:y", kura_store::gc::host_name());
    assert!(e.store.lease_acquire("lifecycle", &live, 60_000).await.unwrap());
    // The embedded start-up clears the dead process's lease; GC runs at once.
    let cleared = e.store.clear_dead_job_leases().await.unwrap();
    assert_eq!(cleared, vec!["gc".to_string()]);
    assert!(e.store.lease_get("lifecycle").await.unwrap().is_some());
    let r = collect(e.store.as_ref(), e.store.as_ref(), e.blobs.as_ref(), &opts(0))
        .await
        .unwrap();
    assert!(!r.skipped);
}

/// A run reports its six steps in order, and what each looked at: the
/// unreferenced link in step 4, the blob in step 5.
#[tokio::test]
async fn progress_reports_each_step_in_order() {
    let e = env().await;
    push_blob(&e.reg, "app", &[7u8; 300]).await;
    tokio::time::sleep(Duration::from_millis(20 + TOUCH_SLACK_MS as u64)).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let opts = GcOptions {
        progress: kura_gc::GcProgress::new(move |step| s.lock().unwrap().push(step)),
        ..opts(0)
    };
    let r = collect(e.store.as_ref(), e.store.as_ref(), e.blobs.as_ref(), &opts)
        .await
        .unwrap();
    assert_eq!((r.links_removed, r.blobs_deleted), (1, 1));
    let seen = seen.lock().unwrap();
    let steps: Vec<u32> = seen.iter().map(|s| s.step).collect();
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{steps:?}");
    let mut distinct = steps.clone();
    distinct.dedup();
    assert_eq!(distinct, [1, 2, 3, 4, 5, 6]);
    assert!(seen.iter().all(|s| s.steps == 6));
    let looked = |n: u32| seen.iter().filter(|s| s.step == n).map(|s| s.items).max().unwrap();
    assert_eq!(looked(4), 1, "the link");
    assert_eq!(looked(5), 1, "the blob");
}
