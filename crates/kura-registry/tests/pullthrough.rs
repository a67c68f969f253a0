//! The pull-through cache's data path against an in-test upstream that
//! counts its fetches and can pause, fail or corrupt them: single flight
//! (one upstream fetch per manifest and blob under a burst, on one node and
//! across two registries sharing a database), the tee (bytes reach a client
//! before the upstream finished), the tag refresh window (HEAD first), stale
//! serving, refused corrupt content, the OCI errors of uncached content, and
//! the events. Runs on PostgreSQL when `KURA_TEST_DATABASE_URL` is set.

mod ptc_support;
use ptc_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cold_burst_fetches_each_manifest_and_blob_once() {
    let e = env(Duration::from_secs(3600)).await;
    let (digest, blobs) = e.fake.image("1.27", "a", 64 * 1024);
    // The layer's download pauses after its first chunk until every request joined it.
    let gate = Arc::new(Semaphore::new(0));
    *e.fake.gate.lock().unwrap() = Some(gate.clone());
    gate.add_permits(1); // for the config blob (one chunk, its last)

    let e = Arc::new(e);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let e = e.clone();
        tasks.push(tokio::spawn(async move { e.manifest("1.27").await.unwrap() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), digest);
    }
    assert_eq!(
        e.fake.manifest_gets.load(Ordering::SeqCst),
        1,
        "one manifest fetch for 50 pulls"
    );

    for (i, b) in blobs.iter().enumerate() {
        let joined_before = e.stat(|s| &s.joined);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (e, b) = (e.clone(), b.clone());
            tasks.push(tokio::spawn(async move { e.blob(&b).await.unwrap() }));
        }
        if i == 1 {
            // 49 requests joined the download under way (none read the store after it).
            until("49 joiners", || e.stat(|s| &s.joined) >= joined_before + 49).await;
            assert_eq!(
                e.fake.finished.load(Ordering::SeqCst),
                1,
                "the layer is still downloading"
            );
            gate.add_permits(1);
        }
        for t in tasks {
            let got = t.await.unwrap();
            assert_eq!(Digest::sha256(&got).to_string(), *b);
        }
        // The clients have it once verified; it is recorded right after.
        until_stored(&e, b).await;
    }
    assert_eq!(
        e.fake.blob_gets.load(Ordering::SeqCst),
        2,
        "one fetch per blob for 50 pulls each"
    );
    assert_eq!(e.stat(|s| &s.upstream_fetches), 3);

    // Warm: served from the cache, no upstream call, counted as hits.
    let hits = e.stat(|s| &s.hits);
    assert_eq!(e.manifest(&digest).await.unwrap(), digest);
    assert_eq!(e.blob(&blobs[1]).await.unwrap().len(), 64 * 1024);
    assert_eq!(e.fake.manifest_gets.load(Ordering::SeqCst), 1);
    assert_eq!(e.fake.blob_gets.load(Ordering::SeqCst), 2);
    assert!(e.stat(|s| &s.hits) >= hits + 2);
    let config_len = e.fake.blobs.lock().unwrap()[&blobs[0]].len() as u64;
    assert_eq!(e.stat(|s| &s.upstream_bytes), 64 * 1024 + config_len);

    // The repository was created, and the cache's "push" was announced once.
    let events = e.events.0.lock().unwrap().clone();
    let pushes: Vec<_> = events
        .iter()
        .filter(|ev| matches!(&ev.kind, EventKind::ImagePushed { digest: d, tags, .. } if *d == digest && tags == &["1.27"]))
        .collect();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].actor.principal_arn, Actor::PULL_THROUGH_CACHE);
    assert_eq!(pushes[0].repository, REPO);
    let synced: Vec<_> = events
        .iter()
        .filter_map(|ev| match &ev.kind {
            EventKind::PullThroughCacheAction {
                sync_status,
                ecr_repository_prefix,
                upstream_registry_url,
                digest: Some(d),
                ..
            } => Some((
                sync_status.clone(),
                ecr_repository_prefix.clone(),
                upstream_registry_url.clone(),
                d.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        synced,
        vec![(
            "SUCCESS".to_string(),
            "hub".to_string(),
            "upstream.test".to_string(),
            digest.clone()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_bytes_reach_the_client_before_the_upstream_finishes() {
    let e = env(Duration::from_secs(3600)).await;
    let (_, blobs) = e.fake.image("v1", "tee", 8 * 1024);
    // The upstream pauses before the layer's last chunk.
    let gate = Arc::new(Semaphore::new(0));
    *e.fake.gate.lock().unwrap() = Some(gate.clone());
    e.manifest("v1").await.unwrap();
    assert_eq!(
        e.fake.blob_gets.load(Ordering::SeqCst),
        0,
        "blobs are fetched when pulled"
    );

    let read = e
        .reg
        .get_blob(ACCOUNT, &name(REPO), &blobs[1], None, false)
        .await
        .unwrap();
    assert_eq!(read.blob.size, 8 * 1024);
    let mut body = read.body.unwrap();
    let first = tokio::time::timeout(BOUND, body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // Some bytes (as many as the spool holds short of the last chunk), never the whole blob.
    assert!(!first.is_empty() && first.len() < 8 * 1024, "{} bytes", first.len());
    // The client has bytes; the upstream has not finished, and nothing is visible yet.
    assert_eq!(
        e.fake.finished.load(Ordering::SeqCst),
        0,
        "the upstream is still sending"
    );
    assert!(
        !e.stored(&blobs[1]).await,
        "nothing is visible before the digest is checked"
    );
    gate.add_permits(1);
    let mut all = first.to_vec();
    while let Some(chunk) = body.next().await {
        all.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(Digest::sha256(&all).to_string(), blobs[1]);
    assert_eq!(e.fake.finished.load(Ordering::SeqCst), 1);
    until_stored(&e, &blobs[1]).await;
    // Served from the store now.
    assert_eq!(e.blob(&blobs[1]).await.unwrap(), all);
    assert_eq!(e.fake.blob_gets.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_chunk_is_sent_once_verified_before_the_blob_is_committed() {
    let fake = Fake::default();
    fake.size_mode.store(1, Ordering::SeqCst);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let meta: Arc<dyn MetaStore> = Arc::new(kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await);
    let gate = Arc::new(Semaphore::new(0));
    let store = Arc::new(GatedCommit {
        inner: FsBlobStore::open(dir.path().join("blobs"))
            .await
            .unwrap()
            .without_fsync(),
        gate: gate.clone(),
        commits: AtomicUsize::new(0),
    });
    let e = node_on(
        meta,
        dir,
        Arc::new(fake),
        Duration::from_secs(3600),
        false,
        store.clone(),
    )
    .await;
    let (_, blobs) = e.fake.image("v1", "early", 300 * 1024);
    gate.add_permits(1); // the config blob
    e.manifest("v1").await.unwrap();
    assert_eq!(e.blob(&blobs[0]).await.unwrap().len(), "{\"seed\":\"early\"}".len());
    until("the config's commit", || store.commits.load(Ordering::SeqCst) == 1).await;

    // The layer: every byte reaches the client while its commit is held back.
    let got = tokio::time::timeout(BOUND, e.blob(&blobs[1]))
        .await
        .expect("the client gets the whole blob before the store commits it")
        .unwrap();
    assert_eq!(Digest::sha256(&got).to_string(), blobs[1]);
    until("the layer's commit to start", || {
        store.commits.load(Ordering::SeqCst) == 2
    })
    .await;
    assert!(!e.stored(&blobs[1]).await, "not recorded before the commit");
    gate.add_permits(1);
    until_stored(&e, &blobs[1]).await;
    assert_eq!(e.blob(&blobs[1]).await.unwrap(), got);
    assert_eq!(e.fake.blob_gets.load(Ordering::SeqCst), 2, "one fetch per blob");
}

#[tokio::test]
async fn wrong_digest_is_refused_and_nothing_is_stored() {
    let e = env(Duration::from_secs(3600)).await;
    let (digest, blobs) = e.fake.image("v1", "bad", 4000);
    e.manifest("v1").await.unwrap();
    e.fake.corrupt.store(true, Ordering::SeqCst);
    let err = e.blob(&blobs[1]).await.unwrap_err();
    assert!(err.contains("digest"), "{err}");
    assert!(!e.stored(&blobs[1]).await);
    assert!(e.stat(|s| &s.errors) >= 1);
    // A later pull fetches again (nothing bad was cached) and gets the right bytes.
    e.fake.corrupt.store(false, Ordering::SeqCst);
    let got = e.blob(&blobs[1]).await.unwrap();
    assert_eq!(Digest::sha256(&got).to_string(), blobs[1]);
    assert_eq!(e.fake.blob_gets.load(Ordering::SeqCst), 2);

    // A manifest whose bytes do not match the digest asked for: 502, not stored.
    let m = e.fake.manifests.lock().unwrap().get(&digest).cloned().unwrap();
    let other = e
        .fake
        .manifest(Some("v2"), OCI, [m.1.to_vec(), b"\n".to_vec()].concat());
    e.fake.corrupt.store(true, Ordering::SeqCst);
    let (status, _, body) = e.http(Method::GET, &format!("/v2/{REPO}/manifests/{other}")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("upstream.test/library/app"),
        "{body}"
    );
    let (status, _, _) = e.http(Method::GET, &format!("/v2/{REPO}/manifests/v2")).await;
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "a tag whose manifest does not match its claimed digest"
    );
    let repo = e.meta.repo_get(ACCOUNT, REPO).await.unwrap().unwrap();
    let none = e
        .meta
        .manifest_get(repo.id, kura_store::meta::ManifestKey::Digest(&other))
        .await
        .unwrap();
    assert!(none.is_none());
}

#[tokio::test]
async fn tag_is_not_checked_again_within_the_interval_and_digests_never() {
    let e = env(Duration::from_secs(3600)).await;
    let (d1, _) = e.fake.image("v1", "one", 10);
    assert_eq!(e.manifest("v1").await.unwrap(), d1);
    // The upstream moves the tag: within the interval the cache keeps its own.
    let (d2, _) = e.fake.image("v1", "two", 10);
    assert_ne!(d1, d2);
    for _ in 0..3 {
        assert_eq!(e.manifest("v1").await.unwrap(), d1);
        assert_eq!(e.manifest(&d1).await.unwrap(), d1);
    }
    assert_eq!(e.fake.heads.load(Ordering::SeqCst), 0);
    assert_eq!(e.fake.manifest_gets.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn tag_is_refreshed_after_the_interval_head_first() {
    let e = env(Duration::from_millis(50)).await;
    let (d1, _) = e.fake.image("v1", "one", 10);
    assert_eq!(e.manifest("v1").await.unwrap(), d1);
    tokio::time::sleep(Duration::from_millis(120)).await;
    // Unchanged upstream: a HEAD, no GET.
    assert_eq!(e.manifest("v1").await.unwrap(), d1);
    assert_eq!(e.fake.heads.load(Ordering::SeqCst), 1);
    assert_eq!(e.fake.manifest_gets.load(Ordering::SeqCst), 1);
    // Moved upstream: picked up after the interval.
    let (d2, _) = e.fake.image("v1", "two", 10);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(e.manifest("v1").await.unwrap(), d2);
    assert_eq!(e.fake.heads.load(Ordering::SeqCst), 2);
    assert_eq!(e.fake.manifest_gets.load(Ordering::SeqCst), 2);
    // The old image stays cached by digest.
    assert_eq!(e.manifest(&d1).await.unwrap(), d1);
    assert_eq!(e.fake.manifest_gets.load(Ordering::SeqCst), 2);
    assert!(e.stat(|s| &s.refreshes) >= 2);
    let moved = e.events.0.lock().unwrap().iter().any(|ev| {
        matches!(&ev.kind, EventKind::TagChanged { tag, old_digest: Some(o), new_digest: Some(n) }
            if tag == "v1" && *o == d1 && *n == d2)
    });
    assert!(moved, "the tag move is an event");
}

#[tokio::test]
async fn cached_content_is_served_when_the_upstream_fails() {
    let e = env(Duration::ZERO).await;
    let (d1, blobs) = e.fake.image("v1", "one", 100);
    assert_eq!(e.manifest("v1").await.unwrap(), d1);
    e.blob(&blobs[0]).await.unwrap();
    *e.fake.fail.lock().unwrap() = Some(UpstreamError::Unavailable {
        message: "connection refused".into(),
    });
    // Stale tag: served, counted.
    assert_eq!(e.manifest("v1").await.unwrap(), d1);
    assert_eq!(e.stat(|s| &s.stale_served), 1);
    let failed = e.events.0.lock().unwrap().iter().any(|ev| {
        matches!(&ev.kind, EventKind::PullThroughCacheAction { sync_status, failure_code: Some(c), .. }
            if sync_status == "FAILED" && c == "UPSTREAM_UNAVAILABLE")
    });
    assert!(failed);
    // By digest and cached blobs: no upstream needed.
    let (status, _, _) = e.http(Method::GET, &format!("/v2/{REPO}/manifests/{d1}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = e.http(Method::GET, &format!("/v2/{REPO}/blobs/{}", blobs[0])).await;
    assert_eq!(status, StatusCode::OK);

    // Uncached: a clear OCI error naming the upstream and the problem.
    let (status, _, body) = e.http(Method::GET, &format!("/v2/{REPO}/manifests/v9")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("upstream.test/library/app") && msg.contains("connection refused"),
        "{msg}"
    );
    let (status, _, body) = e.http(Method::GET, &format!("/v2/{REPO}/blobs/{}", blobs[1])).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    // 429 from the upstream: 429 TOOMANYREQUESTS with its Retry-After.
    *e.fake.fail.lock().unwrap() = Some(UpstreamError::TooManyRequests {
        message: "pull rate limit".into(),
        retry_after_secs: Some(17),
    });
    let (status, headers, body) = e.http(Method::GET, &format!("/v2/{REPO}/manifests/v9")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    assert_eq!(headers.get("retry-after").unwrap(), "17");
    // Denied upstream credentials: a gateway error, not the client's 401/403.
    *e.fake.fail.lock().unwrap() = Some(UpstreamError::Denied {
        message: "bad token".into(),
    });
    let (status, _, body) = e.http(Method::HEAD, &format!("/v2/{REPO}/manifests/v9")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    // Unknown upstream content: the spec's 404.
    *e.fake.fail.lock().unwrap() = None;
    let (status, _, body) = e.http(Method::GET, &format!("/v2/{REPO}/manifests/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["errors"][0]["code"], "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn index_children_are_fetched_when_pulled() {
    let e = env(Duration::from_secs(3600)).await;
    let (child, _) = e.fake.image("child", "c", 10);
    let index = json!({
        "schemaVersion": 2, "mediaType": INDEX,
        "manifests": [{"mediaType": OCI, "digest": child, "size": 300,
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    });
    let idx = e
        .fake
        .manifest(Some("multi"), INDEX, serde_json::to_vec(&index).unwrap());
    assert_eq!(e.manifest("multi").await.unwrap(), idx);
    assert_eq!(
        e.fake.manifest_gets.load(Ordering::SeqCst),
        1,
        "children are not fetched with the index"
    );
    assert_eq!(e.manifest(&child).await.unwrap(), child);
    assert_eq!(e.fake.manifest_gets.load(Ordering::SeqCst), 2);
    // Once stored, the child is the index's like a pushed one: it cannot be
    // deleted while the index lists it.
    let err = e
        .reg
        .delete_image(
            ACCOUNT,
            &name(REPO),
            &child,
            kura_registry::service::DeleteCause::Request,
            &pull(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kura_registry::error::RegistryError::ReferencedBy { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn fetched_blobs_become_references_of_their_manifest() {
    let e = env(Duration::from_secs(3600)).await;
    let (digest, blobs) = e.fake.image("v1", "refs", 5000);
    e.manifest("v1").await.unwrap();
    let repo = e.meta.repo_get(ACCOUNT, REPO).await.unwrap().unwrap();
    let size = |e: &Env| {
        let (meta, digest) = (e.meta.clone(), digest.clone());
        async move { meta.image_get(repo.id, &digest).await.unwrap().unwrap().size }
    };
    // Nothing fetched yet: the image names no stored blob.
    assert_eq!(size(&e).await, 0);
    for b in &blobs {
        e.blob(b).await.unwrap();
        until_stored(&e, b).await;
    }
    // Both blobs are the manifest's references now (what GC keeps and sizes count).
    let config_len = e.fake.blobs.lock().unwrap()[&blobs[0]].len() as i64;
    let want = 5000 + config_len;
    tokio::time::timeout(BOUND, async {
        while size(&e).await != want {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the image's size reaches {want}"));
}

#[tokio::test]
async fn only_covered_repositories_of_the_rule_account_fetch() {
    let e = env(Duration::from_secs(3600)).await;
    let (d, blobs) = e.fake.image("v1", "x", 10);
    // Another repository name (no rule): the plain 404s, no upstream call.
    let (status, _, body) = e.http(Method::GET, "/v2/other/app/manifests/v1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["errors"][0]["code"], "NAME_UNKNOWN");
    let (status, _, _) = e.http(Method::GET, &format!("/v2/other/app/blobs/{}", blobs[0])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Another account with the same name: no rule there.
    let err = e
        .reg
        .get_manifest("999999999999", &name(REPO), "v1", None)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        kura_registry::error::RegistryError::RepositoryUnknown { .. }
    ));
    // A covered name with no image pulled yet: a blob GET creates no repository.
    let (status, _, body) = e.http(Method::GET, &format!("/v2/{REPO}/blobs/{}", blobs[0])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["errors"][0]["code"], "NAME_UNKNOWN");
    assert!(e.meta.repo_get(ACCOUNT, REPO).await.unwrap().is_none());
    // A name that is the prefix itself, or only looks like it.
    let (status, _, _) = e.http(Method::GET, "/v2/hubx/app/manifests/v1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Malformed references and digests: refused before any upstream call.
    let (status, _, body) = e.http(Method::GET, &format!("/v2/{REPO}/blobs/sha256:zz")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, _) = e.http(Method::GET, &format!("/v2/{REPO}/manifests/sha256:12")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e.fake.manifest_gets.load(Ordering::SeqCst), 0);
    assert_eq!(e.fake.blob_gets.load(Ordering::SeqCst), 0);
    // The covered name does fetch; a blob the upstream lacks is the spec's 404.
    let (status, _, _) = e.http(Method::GET, &format!("/v2/{REPO}/manifests/{d}")).await;
    assert_eq!(status, StatusCode::OK);
    // Over HTTP, a cold blob is the spec's 200 with its length and digest.
    let req = Request::builder()
        .uri(format!("/v2/{REPO}/blobs/{}", blobs[1]))
        .body(Body::empty())
        .unwrap();
    let resp = app(e.reg.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["docker-content-digest"], blobs[1].as_str());
    assert_eq!(resp.headers()["content-length"], "10");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(Digest::sha256(&bytes).to_string(), blobs[1]);
    let missing = Digest::sha256(b"not upstream").to_string();
    let (status, _, body) = e.http(Method::GET, &format!("/v2/{REPO}/blobs/{missing}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["errors"][0]["code"], "BLOB_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_one_database_fetch_once() {
    let a = env(Duration::from_secs(3600)).await;
    let b = node(
        a.meta.clone(),
        a.dir.clone(),
        a.fake.clone(),
        Duration::from_secs(3600),
        false,
    )
    .await;
    let (digest, blobs) = a.fake.image("v1", "cluster", 32 * 1024);
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let n = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { n.manifest("v1").await.unwrap() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), digest);
    }
    assert_eq!(
        a.fake.manifest_gets.load(Ordering::SeqCst),
        1,
        "one manifest fetch across both nodes"
    );

    // The layer: node A downloads (paused after its first chunk); node B's
    // requests wait for it through the database, then read the store.
    let gate = Arc::new(Semaphore::new(0));
    *a.fake.gate.lock().unwrap() = Some(gate.clone());
    let layer = blobs[1].clone();
    let waits_before = b.stat(|s| &s.remote_waits);
    // Either node may have fetched the manifest above; from here on node B fetches nothing.
    let fetches_before = b.stat(|s| &s.upstream_fetches);
    let mut on_a = Vec::new();
    for _ in 0..5 {
        let (n, l) = (a.clone(), layer.clone());
        on_a.push(tokio::spawn(async move { n.blob(&l).await.unwrap() }));
    }
    until("node A's download", || a.fake.blob_gets.load(Ordering::SeqCst) == 1).await;
    let mut on_b = Vec::new();
    for _ in 0..5 {
        let (n, l) = (b.clone(), layer.clone());
        on_b.push(tokio::spawn(async move { n.blob(&l).await.unwrap() }));
    }
    until("node B waiting on the lease", || {
        b.stat(|s| &s.remote_waits) == waits_before + 1
    })
    .await;
    assert_eq!(
        a.fake.finished.load(Ordering::SeqCst),
        0,
        "node A's download is still paused"
    );
    gate.add_permits(100);
    for t in on_a.into_iter().chain(on_b) {
        let got = t.await.unwrap();
        assert_eq!(Digest::sha256(&got).to_string(), layer);
    }
    assert_eq!(
        a.fake.blob_gets.load(Ordering::SeqCst),
        1,
        "one blob fetch across both nodes"
    );
    assert_eq!(b.stat(|s| &s.upstream_fetches), fetches_before);
}

#[tokio::test]
async fn a_lapsed_lease_of_a_dead_node_is_taken_over() {
    let e = env(Duration::from_secs(3600)).await;
    let (_, blobs) = e.fake.image("v1", "dead", 10);
    e.manifest("v1").await.unwrap();
    let repo = e.meta.repo_get(ACCOUNT, REPO).await.unwrap().unwrap();
    // A node took the blob's lease and died: it lapses (here: 1 ms).
    let key = format!("blob:{}:{}", repo.id, blobs[0]);
    let taken = e.meta.fetch_lease_take(&key, "dead-node", 1).await.unwrap();
    assert_eq!(taken, kura_store::meta::LeaseTake::Taken);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let got = tokio::time::timeout(BOUND, e.blob(&blobs[0])).await.unwrap().unwrap();
    assert_eq!(Digest::sha256(&got).to_string(), blobs[0]);
    assert_eq!(e.fake.blob_gets.load(Ordering::SeqCst), 1);
    // The lease is given back once the blob is committed, just after the client has it.
    tokio::time::timeout(BOUND, async {
        while e.meta.fetch_lease_get(&key).await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("released after the fetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_whose_client_left_frees_its_lease_at_once() {
    let e = Arc::new(env(Duration::from_secs(3600)).await);
    let (digest, _) = e.fake.image("v1", "gone", 10);
    let gate = Arc::new(Semaphore::new(0));
    *e.fake.manifest_gate.lock().unwrap() = Some(gate.clone());
    let first = {
        let e = e.clone();
        tokio::spawn(async move { e.manifest("v1").await })
    };
    until("the first fetch", || e.fake.manifest_gets.load(Ordering::SeqCst) == 1).await;
    let key = format!("manifest:{ACCOUNT}:{REPO}:v1");
    let (_, expires_at) = e
        .meta
        .fetch_lease_get(&key)
        .await
        .unwrap()
        .expect("the fetch holds the lease");
    // The client goes away mid-fetch: the lease is released, not left to lapse.
    first.abort();
    tokio::time::timeout(BOUND, async {
        while e.meta.fetch_lease_get(&key).await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the lease is released");
    assert!(
        kura_store::now_millis() < expires_at,
        "released before it would have lapsed"
    );
    // The next pull fetches and succeeds.
    gate.add_permits(10);
    assert_eq!(
        tokio::time::timeout(BOUND, e.manifest("v1")).await.unwrap().unwrap(),
        digest
    );
}

#[tokio::test]
async fn blobs_without_a_length_are_served_and_a_false_length_is_refused() {
    let e = env(Duration::from_secs(3600)).await;
    let (_, blobs) = e.fake.image("v1", "len", 3000);
    e.manifest("v1").await.unwrap();
    // No Content-Length upstream: the client gets the blob once it is stored.
    e.fake.size_mode.store(0, Ordering::SeqCst);
    let got = e.blob(&blobs[1]).await.unwrap();
    assert_eq!(Digest::sha256(&got).to_string(), blobs[1]);
    assert!(e.stored(&blobs[1]).await);
    // A length that does not match the bytes: refused, nothing stored.
    e.fake.size_mode.store(2, Ordering::SeqCst);
    let err = e.blob(&blobs[0]).await.unwrap_err();
    assert!(err.contains("declared"), "{err}");
    assert!(!e.stored(&blobs[0]).await);
    assert_eq!(e.fake.blob_gets.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_are_prefetched_and_the_push_is_announced_when_they_are_stored() {
    let e = env_with(Duration::from_secs(3600), true).await;
    let (digest, blobs) = e.fake.image("v1", "pre", 5000);
    let gate = Arc::new(Semaphore::new(0));
    *e.fake.gate.lock().unwrap() = Some(gate.clone());
    gate.add_permits(1); // the config blob's (one chunk, its last)
    assert_eq!(e.manifest("v1").await.unwrap(), digest);
    // The layer is downloading (paused): the tag is there, the push not announced yet.
    until("the config blob", || e.fake.finished.load(Ordering::SeqCst) == 1).await;
    let pushed = |e: &Env| {
        e.events
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|ev| matches!(&ev.kind, EventKind::ImagePushed { digest: d, .. } if *d == digest))
            .count()
    };
    assert_eq!(pushed(&e), 0, "not announced before its layers are stored");
    // The blobs download concurrently: the one that took the single permit is
    // stored, the other is paused before its last chunk.
    let paused = tokio::time::timeout(BOUND, async {
        loop {
            match (e.stored(&blobs[0]).await, e.stored(&blobs[1]).await) {
                (true, _) => return 1,
                (_, true) => return 0,
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
    .await
    .expect("one blob stored");
    assert!(!e.stored(&blobs[paused]).await);
    assert!(e.stored(&blobs[1 - paused]).await);
    // A client pulling the paused blob joins the prefetch.
    let joined = e.stat(|s| &s.joined);
    let read = e
        .reg
        .get_blob(ACCOUNT, &name(REPO), &blobs[paused], None, false)
        .await
        .unwrap();
    assert_eq!(e.stat(|s| &s.joined), joined + 1);
    gate.add_permits(1);
    let mut body = read.body.unwrap();
    let mut got = Vec::new();
    while let Some(c) = body.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(Digest::sha256(&got).to_string(), blobs[paused]);
    until("the push announced", || pushed(&e) == 1).await;
    assert!(e.stored(&blobs[0]).await && e.stored(&blobs[1]).await);
    assert_eq!(e.fake.blob_gets.load(Ordering::SeqCst), 2, "one fetch per blob");
}
