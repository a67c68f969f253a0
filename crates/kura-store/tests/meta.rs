//! The shared metadata-store suites. Every suite runs against both engines:
//! SQLite, and PostgreSQL when `KURA_TEST_DATABASE_URL` names a server (a fresh
//! database per test; see `kura_store::testdb`).

use kura_store::control::*;
use kura_store::meta::*;
use kura_store::{ControlStore, MetaStore, SqliteMetaStore};

fn d(s: &str) -> String {
    kura_oci::Digest::sha256(s.as_bytes()).to_string()
}

fn tw(names: &[&str]) -> Vec<TagWrite> {
    names
        .iter()
        .map(|n| TagWrite {
            name: n.to_string(),
            immutable: false,
        })
        .collect()
}

fn blob(s: &str) -> BlobRow {
    BlobRow {
        digest: d(s),
        size: s.len() as i64,
        storage_key: format!("key-{s}"),
    }
}

fn manifest(name: &str, blobs: &[&str], children: &[&str], subject: Option<&str>, at: Option<&str>) -> NewManifest {
    NewManifest {
        digest: d(name),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: at.map(String::from),
        subject: subject.map(d),
        annotations: None,
        body: name.as_bytes().to_vec(),
        blobs: blobs.iter().map(|b| d(b)).collect(),
        children: children.iter().map(|c| d(c)).collect(),
    }
}

async fn suite(m: &dyn MetaStore) {
    // Repositories: idempotent creation, byte-order listing, per account.
    let r1 = m.repo_get_or_create("111111111111", "team/app").await.unwrap();
    assert_eq!(m.repo_get_or_create("111111111111", "team/app").await.unwrap(), r1);
    let r2 = m.repo_get_or_create("111111111111", "other").await.unwrap();
    m.repo_get_or_create("222222222222", "elsewhere").await.unwrap();
    assert_eq!(
        m.repo_list("111111111111", None, 10).await.unwrap(),
        vec!["other", "team/app"]
    );
    assert_eq!(
        m.repo_list("111111111111", Some("other"), 10).await.unwrap(),
        vec!["team/app"]
    );
    assert_eq!(m.repo_get("111111111111", "nope").await.unwrap(), None);

    // Blobs: commit grants access; the first storage key wins; mount; unlink.
    let first = m.blob_commit(r1, &blob("a"), None).await.unwrap();
    assert_eq!((first.key.as_str(), first.cleanup.len()), ("key-a", 0));
    let mut dup = blob("a");
    dup.storage_key = "key-a-second".into();
    let second = m.blob_commit(r1, &dup, None).await.unwrap();
    assert_eq!(second.key, "key-a", "the first copy keeps serving");
    assert_eq!(second.cleanup.len(), 1, "the losing copy is queued for deletion");
    assert_eq!(
        (second.cleanup[0].kind.as_str(), second.cleanup[0].key.as_str()),
        ("blob", "key-a-second")
    );
    m.pending_done(second.cleanup[0].id).await.unwrap();
    assert!(m.blob_get(r1, &d("a")).await.unwrap().is_some());
    assert!(m.blob_get(r2, &d("a")).await.unwrap().is_none());
    assert!(m.blob_lookup(&d("a")).await.unwrap().is_some());
    assert!(!m.blob_mount(r2, r1, &d("zzz")).await.unwrap());
    assert!(m.blob_mount(r2, r1, &d("a")).await.unwrap());
    assert!(m.blob_mount(r2, r1, &d("a")).await.unwrap(), "mounting twice is fine");
    assert!(m.blob_get(r2, &d("a")).await.unwrap().is_some());
    assert!(m.blob_unlink(r2, &d("a")).await.unwrap());
    assert!(!m.blob_unlink(r2, &d("a")).await.unwrap());

    // Uploads: claims honour the expected offset and the lease.
    let u = UploadRow {
        id: "up1".into(),
        repo_id: r1,
        handle: "h".into(),
        offset: 0,
        hash_state: vec![1, 2],
        started_at: 1,
    };
    m.upload_create(&u).await.unwrap();
    assert_eq!(m.upload_claim("nope", None, "l0").await.unwrap(), Claim::Unknown);
    assert_eq!(m.upload_claim("up1", Some(5), "l1").await.unwrap(), Claim::Conflict(0));
    let Claim::Taken(row) = m.upload_claim("up1", Some(0), "l1").await.unwrap() else {
        panic!("not taken")
    };
    assert_eq!(row, u);
    assert_eq!(
        m.upload_claim("up1", Some(0), "l2").await.unwrap(),
        Claim::Conflict(0),
        "held by l1"
    );
    assert!(
        !m.upload_advance("up1", "l2", "h", 10, &[3]).await.unwrap(),
        "wrong lease"
    );
    assert!(m.upload_renew("up1", "l1").await.unwrap(), "the holder renews");
    assert!(!m.upload_renew("up1", "l2").await.unwrap(), "another cannot");
    assert!(m.upload_advance("up1", "l1", "h2", 10, &[3]).await.unwrap());
    let got = m.upload_get("up1").await.unwrap().unwrap();
    assert_eq!(
        (got.offset, got.handle.as_str(), got.hash_state.as_slice()),
        (10, "h2", &[3u8][..])
    );
    let Claim::Taken(_) = m.upload_claim("up1", None, "l3").await.unwrap() else {
        panic!()
    };
    m.upload_release("up1", "l3").await.unwrap();
    assert!(matches!(
        m.upload_claim("up1", Some(10), "l4").await.unwrap(),
        Claim::Taken(_)
    ));
    // Committing a blob from an upload deletes the upload in the same transaction.
    let done = m.blob_commit(r1, &blob("b"), Some(("up1", "h2"))).await.unwrap();
    assert_eq!(
        done.cleanup
            .iter()
            .map(|p| (p.kind.as_str(), p.key.as_str()))
            .collect::<Vec<_>>(),
        vec![("upload", "h2")]
    );
    assert_eq!(m.upload_get("up1").await.unwrap(), None);
    assert!(!m.upload_delete("up1").await.unwrap());

    // Manifests: references are checked; tags upsert; deletes.
    let missing = m
        .manifest_put(r1, &manifest("m0", &["a", "nope"], &[], None, None), &tw(&["v0"]))
        .await;
    match missing {
        Err(PutManifestError::MissingReferences { blobs, manifests }) => {
            assert_eq!(blobs, vec![d("nope")]);
            assert!(manifests.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(m.manifest_get(r1, ManifestKey::Tag("v0")).await.unwrap().is_none());
    m.manifest_put(
        r1,
        &manifest("m1", &["a", "b"], &[], None, None),
        &tw(&["v1", "latest"]),
    )
    .await
    .unwrap();
    // The put reports the tags it moved, with their old digests (events use this).
    let moved = m
        .manifest_put(r1, &manifest("m2", &["a"], &[], None, None), &tw(&["latest"]))
        .await
        .unwrap();
    assert_eq!(
        moved,
        vec![TagMoved {
            tag: "latest".into(),
            old_digest: Some(d("m1"))
        }]
    );
    let again = m
        .manifest_put(r1, &manifest("m2", &["a"], &[], None, None), &tw(&["latest"]))
        .await
        .unwrap();
    assert!(again.is_empty(), "a tag already on the digest did not move");
    let got = m.manifest_get(r1, ManifestKey::Tag("latest")).await.unwrap().unwrap();
    assert_eq!(got.digest, d("m2"));
    assert_eq!(got.body, b"m2");
    assert_eq!(m.tag_list(r1, None, 10).await.unwrap(), vec!["latest", "v1"]);
    // Byte order: uppercase sorts before lowercase.
    m.manifest_put(r1, &manifest("m2", &["a"], &[], None, None), &tw(&["Zed", "_u"]))
        .await
        .unwrap();
    assert_eq!(
        m.tag_list(r1, None, 10).await.unwrap(),
        vec!["Zed", "_u", "latest", "v1"]
    );
    assert_eq!(m.tag_list(r1, Some("Zed"), 2).await.unwrap(), vec!["_u", "latest"]);

    // An index pins its children.
    m.manifest_put(r1, &manifest("idx", &[], &["m1", "m2"], None, None), &tw(&["multi"]))
        .await
        .unwrap();
    let missing_child = m
        .manifest_put(r1, &manifest("idx2", &[], &["m9"], None, None), &tw(&[]))
        .await;
    assert!(matches!(missing_child, Err(PutManifestError::MissingReferences { .. })));
    assert_eq!(
        m.manifest_delete(r1, &d("m1")).await.unwrap(),
        DeleteManifest::ReferencedBy(vec![d("idx")])
    );
    assert_eq!(
        m.manifest_delete(r1, &d("idx")).await.unwrap(),
        DeleteManifest::Deleted(vec!["multi".into()])
    );
    assert_eq!(
        m.manifest_delete(r1, &d("m1")).await.unwrap(),
        DeleteManifest::Deleted(vec!["v1".into()])
    );
    assert_eq!(m.manifest_delete(r1, &d("m1")).await.unwrap(), DeleteManifest::Unknown);
    assert_eq!(
        m.tag_list(r1, None, 10).await.unwrap(),
        vec!["Zed", "_u", "latest"],
        "v1 went with m1"
    );
    assert_eq!(m.tag_delete(r1, "Zed").await.unwrap(), Some(d("m2")));
    assert_eq!(m.tag_delete(r1, "Zed").await.unwrap(), None);
    assert!(m
        .manifest_get(r1, ManifestKey::Digest(&d("m2")))
        .await
        .unwrap()
        .is_some());

    // Referrers (a subject need not exist).
    m.manifest_put(
        r1,
        &manifest("sig", &["a"], &[], Some("m2"), Some("application/sig")),
        &tw(&[]),
    )
    .await
    .unwrap();
    m.manifest_put(
        r1,
        &manifest("sbom", &["a"], &[], Some("m2"), Some("application/sbom")),
        &tw(&[]),
    )
    .await
    .unwrap();
    m.manifest_put(r1, &manifest("dangling", &["a"], &[], Some("ghost"), None), &tw(&[]))
        .await
        .unwrap();
    assert_eq!(m.referrers(r1, &d("m2"), None).await.unwrap().len(), 2);
    let sig = m.referrers(r1, &d("m2"), Some("application/sig")).await.unwrap();
    assert_eq!(sig.len(), 1);
    assert_eq!(sig[0].digest, d("sig"));
    assert_eq!(m.referrers(r1, &d("ghost"), None).await.unwrap().len(), 1);
    assert!(m.referrers(r2, &d("m2"), None).await.unwrap().is_empty());

    // Immutable tags: the same digest may be re-pushed, another may not.
    let imm = vec![TagWrite {
        name: "prod".into(),
        immutable: true,
    }];
    m.manifest_put(r1, &manifest("m2", &["a"], &[], None, None), &imm)
        .await
        .unwrap();
    m.manifest_put(r1, &manifest("m2", &["a"], &[], None, None), &imm)
        .await
        .unwrap();
    let moved = m.manifest_put(r1, &manifest("m3", &["a"], &[], None, None), &imm).await;
    assert!(matches!(moved, Err(PutManifestError::TagImmutable(t)) if t == "prod"));
    assert_eq!(m.tag_get(r1, "prod").await.unwrap(), Some(d("m2")));
    assert!(
        m.manifest_get(r1, ManifestKey::Digest(&d("m3")))
            .await
            .unwrap()
            .is_none(),
        "the failed put stored nothing"
    );

    // Images: tags, sizes (sum of referenced blobs), tag status filters, pull time.
    let img = m.image_get(r1, &d("m2")).await.unwrap().unwrap();
    assert_eq!(img.tags, vec!["_u", "latest", "prod"]);
    assert_eq!(img.size, 1, "blob a is one byte");
    assert_eq!(img.last_pulled_at, None);
    m.manifest_touch_pull(r1, &d("m2"), 1_000_000).await.unwrap();
    assert_eq!(
        m.image_get(r1, &d("m2")).await.unwrap().unwrap().last_pulled_at,
        Some(1_000_000)
    );
    let tagged = m.image_list(r1, TagStatus::Tagged, None, 100).await.unwrap();
    assert_eq!(
        tagged.iter().map(|i| i.digest.clone()).collect::<Vec<_>>(),
        vec![d("m2")]
    );
    let untagged = m.image_list(r1, TagStatus::Untagged, None, 100).await.unwrap();
    assert_eq!(untagged.len(), 3, "sig, sbom, dangling");
    let all = m.image_list(r1, TagStatus::Any, None, 2).await.unwrap();
    let rest = m
        .image_list(r1, TagStatus::Any, Some(&all[1].digest), 100)
        .await
        .unwrap();
    assert_eq!(all.len() + rest.len(), 4);

    // Settings and deletion.
    let settings = RepoSettings {
        image_tag_mutability: "IMMUTABLE".into(),
        ..Default::default()
    };
    m.repo_update_settings(r1, &settings).await.unwrap();
    assert_eq!(
        m.repo_get("111111111111", "team/app").await.unwrap().unwrap().settings,
        settings
    );
    assert!(m
        .repo_create("111111111111", "team/app", &settings)
        .await
        .unwrap()
        .is_none());
    assert_eq!(m.repo_delete(r1, false).await.unwrap(), DeleteRepo::NotEmpty);
    assert_eq!(m.repo_delete(r1, true).await.unwrap(), DeleteRepo::Deleted);
    assert!(m.repo_get("111111111111", "team/app").await.unwrap().is_none());
    assert_eq!(m.repo_delete(r2, false).await.unwrap(), DeleteRepo::Deleted);
}

async fn control_suite(c: &dyn ControlStore) {
    c.account_ensure("123456789012").await.unwrap();
    c.account_ensure("123456789012").await.unwrap();
    let key = AccessKeyRow {
        access_key_id: "AKIATEST".into(),
        account: "123456789012".into(),
        principal_arn: "arn:aws:iam::123456789012:root".into(),
        principal_id: "123456789012".into(),
        secret_sealed: vec![1, 2, 3],
        status: "Active".into(),
        session_token_hash: None,
        expires_at: None,
        created_at: 1_700_000_000_123,
    };
    c.access_key_put(&key).await.unwrap();
    assert_eq!(c.access_key_get("AKIATEST").await.unwrap(), Some(key));
    assert_eq!(c.access_key_get("nope").await.unwrap(), None);
    assert_eq!(c.server_secret_get_or_put("k", b"first").await.unwrap(), b"first");
    assert_eq!(c.server_secret_get_or_put("k", b"second").await.unwrap(), b"first");

    let arn = "arn:aws:ecr:us-east-1:123456789012:repository/x";
    c.resource_tags_put(arn, &[("b".into(), "2".into()), ("a".into(), "1".into())])
        .await
        .unwrap();
    c.resource_tags_put(arn, &[("a".into(), "one".into())]).await.unwrap();
    assert_eq!(
        c.resource_tags(arn).await.unwrap(),
        vec![("a".into(), "one".into()), ("b".into(), "2".into())]
    );
    c.resource_tags_remove(arn, &["a".into(), "zz".into()]).await.unwrap();
    assert_eq!(c.resource_tags(arn).await.unwrap(), vec![("b".into(), "2".into())]);

    assert!(c.template_put("123456789012", "ROOT", "{}", true).await.unwrap());
    assert!(!c.template_put("123456789012", "ROOT", "{}", true).await.unwrap());
    assert!(!c.template_put("123456789012", "team", "{}", false).await.unwrap());
    assert!(c.template_put("123456789012", "team", "{\"x\":1}", true).await.unwrap());
    assert!(c
        .template_put("123456789012", "team", "{\"x\":2}", false)
        .await
        .unwrap());
    assert_eq!(
        c.template_get("123456789012", "team").await.unwrap().unwrap().body,
        "{\"x\":2}"
    );
    let all = c.template_list("123456789012", None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|t| t.prefix.as_str()).collect::<Vec<_>>(),
        vec!["ROOT", "team"]
    );
    assert_eq!(
        c.template_list("123456789012", Some("ROOT"), 10).await.unwrap().len(),
        1
    );
    assert!(c.template_delete("123456789012", "team").await.unwrap().is_some());
    assert!(c.template_delete("123456789012", "team").await.unwrap().is_none());

    assert_eq!(
        c.setting_get("123456789012", "BASIC_SCAN_TYPE_VERSION").await.unwrap(),
        None
    );
    c.setting_put("123456789012", "BASIC_SCAN_TYPE_VERSION", "AWS_NATIVE")
        .await
        .unwrap();
    c.setting_put("123456789012", "BASIC_SCAN_TYPE_VERSION", "CLAIR")
        .await
        .unwrap();
    assert_eq!(
        c.setting_get("123456789012", "BASIC_SCAN_TYPE_VERSION")
            .await
            .unwrap()
            .as_deref(),
        Some("CLAIR")
    );
}

#[tokio::test]
async fn sqlite_control_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let m = SqliteMetaStore::open(dir.path().join("meta.db")).await.unwrap();
    control_suite(&m).await;
}

/// Public marks (ECR Public): put/replace, lookup by name, listing by name per
/// account with pagination, removal, and the mark going with its repository.
async fn public_suite<S: MetaStore + ControlStore>(s: &S) {
    let settings = RepoSettings::default();
    let a = s
        .repo_create("123456789012", "pub/a", &settings)
        .await
        .unwrap()
        .unwrap();
    let b = s
        .repo_create("123456789012", "pub/b", &settings)
        .await
        .unwrap()
        .unwrap();
    let private = s
        .repo_create("123456789012", "private", &settings)
        .await
        .unwrap()
        .unwrap();
    let other = s
        .repo_create("210987654321", "pub/a", &settings)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.public_repo_get("123456789012", "pub/a").await.unwrap(), None);

    assert!(s.public_repo_put(a.id, r#"{"description":"first"}"#).await.unwrap());
    assert!(s.public_repo_put(b.id, "{}").await.unwrap());
    assert!(s.public_repo_put(other.id, "{}").await.unwrap());
    assert!(!s.public_repo_put(999_999, "{}").await.unwrap(), "no such repository");
    let got = s.public_repo_get("123456789012", "pub/a").await.unwrap().unwrap();
    assert_eq!(
        (
            got.repo_id,
            got.account.as_str(),
            got.name.as_str(),
            got.catalog_data.as_str()
        ),
        (a.id, "123456789012", "pub/a", r#"{"description":"first"}"#)
    );
    assert!(got.created_at > 0 && got.updated_at >= got.created_at);

    // Putting again replaces the catalog data and keeps the creation time.
    assert!(s.public_repo_put(a.id, r#"{"description":"second"}"#).await.unwrap());
    let again = s.public_repo_get("123456789012", "pub/a").await.unwrap().unwrap();
    assert_eq!(again.catalog_data, r#"{"description":"second"}"#);
    assert_eq!(again.created_at, got.created_at);
    assert_eq!(s.public_repo_get("123456789012", "private").await.unwrap(), None);

    // Listing: this account's public repositories only, by name, paginated.
    let names = |rows: Vec<PublicRepoRow>| rows.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(
        names(s.public_repo_list("123456789012", None, 10).await.unwrap()),
        vec!["pub/a", "pub/b"]
    );
    assert_eq!(
        names(s.public_repo_list("123456789012", None, 1).await.unwrap()),
        vec!["pub/a"]
    );
    assert_eq!(
        names(s.public_repo_list("123456789012", Some("pub/a"), 10).await.unwrap()),
        vec!["pub/b"]
    );
    assert_eq!(
        names(s.public_repo_list("210987654321", None, 10).await.unwrap()),
        vec!["pub/a"]
    );

    // Removing the mark leaves the repository; deleting the repository
    // removes the mark, and a new repository of the same name is private.
    assert!(s.public_repo_remove(b.id).await.unwrap());
    assert!(!s.public_repo_remove(b.id).await.unwrap());
    assert!(s.repo_get("123456789012", "pub/b").await.unwrap().is_some());
    assert_eq!(s.public_repo_get("123456789012", "pub/b").await.unwrap(), None);
    assert_eq!(s.repo_delete(a.id, true).await.unwrap(), DeleteRepo::Deleted);
    assert_eq!(s.public_repo_get("123456789012", "pub/a").await.unwrap(), None);
    s.repo_create("123456789012", "pub/a", &settings)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.public_repo_get("123456789012", "pub/a").await.unwrap(), None);
    assert!(s.public_repo_list("123456789012", None, 10).await.unwrap().is_empty());
    assert!(s.public_repo_get("210987654321", "pub/a").await.unwrap().is_some());
    assert_eq!(s.repo_delete(private.id, false).await.unwrap(), DeleteRepo::Deleted);
}

#[tokio::test]
async fn sqlite_public_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let m = SqliteMetaStore::open(dir.path().join("meta.db")).await.unwrap();
    public_suite(&m).await;
}

#[tokio::test]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let m = SqliteMetaStore::open(dir.path().join("meta.db")).await.unwrap();
    suite(&m).await;
}

#[tokio::test]
async fn sqlite_store_survives_reopen_and_clears_leases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    {
        let m = SqliteMetaStore::open(&path).await.unwrap();
        let r = m.repo_get_or_create("1", "x").await.unwrap();
        let u = UploadRow {
            id: "u".into(),
            repo_id: r,
            handle: "h".into(),
            offset: 0,
            hash_state: vec![],
            started_at: 0,
        };
        m.upload_create(&u).await.unwrap();
        assert!(matches!(
            m.upload_claim("u", None, "dead-node").await.unwrap(),
            Claim::Taken(_)
        ));
    }
    let m = SqliteMetaStore::open(&path).await.unwrap();
    assert_eq!(
        m.upload_claim("u", None, "l").await.unwrap(),
        Claim::Conflict(0),
        "still leased"
    );
    m.clear_upload_leases().await.unwrap();
    assert!(matches!(m.upload_claim("u", None, "l").await.unwrap(), Claim::Taken(_)));
    assert!(m.repo_get("1", "x").await.unwrap().is_some());
}

/// The scan store: imports become visible only when complete and replace older advisories
/// of the same ecosystems; the 24-hour scan quota is one conditional upsert; a scan goes
/// with its image.
async fn scan_suite<S: MetaStore + kura_store::ScanStore>(s: &S) {
    use kura_store::scan::*;
    let row = |eco: &str, pkg: &str, name: &str| AdvisoryRow {
        ecosystem: eco.into(),
        package: pkg.into(),
        name: name.into(),
        data: format!("{{\"name\":\"{name}\"}}"),
    };
    let summary = |id: i64, ecos: &[&str]| VulnImportRow {
        id,
        origin: "test".into(),
        started_at: 1,
        completed_at: None,
        kinds: "OSV".into(),
        records: 1,
        advisories: 1,
        ecosystems: serde_json::to_string(ecos).unwrap(),
    };
    let i1 = s.vuln_import_begin("one.json", 1000).await.unwrap();
    s.vuln_import_add(
        i1,
        &[row("Debian:12", "perl", "CVE-1"), row("PyPI", "requests", "CVE-2")],
    )
    .await
    .unwrap();
    assert!(
        s.vuln_lookup("Debian:12", "perl").await.unwrap().is_empty(),
        "invisible until complete"
    );
    assert!(s.vuln_imports().await.unwrap().is_empty());
    s.vuln_import_finish(i1, &summary(i1, &["Debian:12", "PyPI"]), 2000)
        .await
        .unwrap();
    assert_eq!(s.vuln_lookup("Debian:12", "perl").await.unwrap().len(), 1);
    // A second import covering Debian only replaces Debian's advisories, keeps PyPI's.
    let i2 = s.vuln_import_begin("two.json", 3000).await.unwrap();
    s.vuln_import_add(
        i2,
        &[row("Debian:12", "perl", "CVE-3"), row("Debian:12", "perl", "CVE-4")],
    )
    .await
    .unwrap();
    s.vuln_import_finish(i2, &summary(i2, &["Debian:12"]), 4000)
        .await
        .unwrap();
    let perl = s.vuln_lookup("Debian:12", "perl").await.unwrap();
    assert_eq!(perl.len(), 2);
    assert!(perl.iter().all(|p| !p.contains("CVE-1")), "{perl:?}");
    assert_eq!(s.vuln_lookup("PyPI", "requests").await.unwrap().len(), 1);
    let imports = s.vuln_imports().await.unwrap();
    assert_eq!(imports.iter().map(|i| i.id).collect::<Vec<_>>(), vec![i2, i1]);
    assert_eq!(imports[0].completed_at, Some(4000));
    // An import that never completes is purged and stays invisible.
    let i3 = s.vuln_import_begin("crashed.json", 5000).await.unwrap();
    s.vuln_import_add(i3, &[row("npm", "lodash", "CVE-5")]).await.unwrap();
    assert_eq!(s.vuln_import_purge_incomplete(6000).await.unwrap(), 1);
    assert!(s.vuln_lookup("npm", "lodash").await.unwrap().is_empty());

    // Layer index cache.
    assert_eq!(s.layer_index_get("sha256:l", 1).await.unwrap(), None);
    s.layer_index_put("sha256:l", 1, b"{}", 1).await.unwrap();
    s.layer_index_put("sha256:l", 1, b"{}", 2).await.unwrap();
    assert_eq!(
        s.layer_index_get("sha256:l", 1).await.unwrap().as_deref(),
        Some(&b"{}"[..])
    );
    assert_eq!(s.layer_index_get("sha256:l", 2).await.unwrap(), None);

    // Scans: only for images that exist; quota; finish; summaries; deletion.
    let r = s.repo_get_or_create("333333333333", "scan/me").await.unwrap();
    s.blob_commit(r, &blob("layer"), None).await.unwrap();
    s.manifest_put(r, &manifest("img", &["layer"], &[], None, None), &tw(&["v1"]))
        .await
        .unwrap();
    let img = d("img");
    let day = 24 * 3600 * 1000;
    assert_eq!(
        s.scan_start(r, &d("ghost"), "BASIC", 10, None).await.unwrap(),
        ScanStart::QuotaExceeded,
        "no image, no scan"
    );
    assert_eq!(
        s.scan_start(r, &img, "BASIC", 10, None).await.unwrap(),
        ScanStart::Started
    );
    assert_eq!(
        s.scan_start(r, &img, "BASIC", 20, Some(day)).await.unwrap(),
        ScanStart::QuotaExceeded
    );
    assert_eq!(s.scans_stalled(15, 10).await.unwrap().len(), 1);
    let mut done = s.scan_get(r, &img).await.unwrap().unwrap();
    assert_eq!((done.status.as_str(), done.requested_at), ("IN_PROGRESS", 10));
    done.status = "COMPLETE".into();
    done.completed_at = Some(30);
    done.vuln_import_id = Some(i1);
    done.inventory = Some("{}".into());
    done.findings = Some("[]".into());
    done.counts = Some("{\"HIGH\":1}".into());
    s.scan_finish(&done).await.unwrap();
    assert_eq!(s.scan_get(r, &img).await.unwrap().unwrap().status, "COMPLETE");
    let sums = s.scan_summaries(r, &[img.clone(), d("ghost")]).await.unwrap();
    assert_eq!(sums.len(), 1);
    assert_eq!(
        (sums[0].inventory.as_deref(), sums[0].counts.as_deref()),
        (None, Some("{\"HIGH\":1}"))
    );
    // Matched against import 1: due for re-matching against import 2, not against 1.
    assert_eq!(s.scans_to_rematch(i2, None, 10).await.unwrap().len(), 1);
    assert!(s.scans_to_rematch(i1, None, 10).await.unwrap().is_empty());
    assert!(s
        .scans_to_rematch(i2, Some((r, img.as_str())), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.scan_start(r, &img, "BASIC", 10 + day, Some(day)).await.unwrap(),
        ScanStart::Started
    );
    s.manifest_delete(r, &img).await.unwrap();
    assert_eq!(s.scan_get(r, &img).await.unwrap(), None, "the scan goes with the image");
}

#[tokio::test]
async fn sqlite_scan_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let m = SqliteMetaStore::open(dir.path().join("meta.db")).await.unwrap();
    scan_suite(&m).await;
}

fn entity(account: &str, kind: &str, name: &str, id: &str) -> kura_store::iam::IamEntity {
    kura_store::iam::IamEntity {
        account: account.into(),
        kind: kind.into(),
        name: name.into(),
        id: id.into(),
        path: "/".into(),
        arn: format!("arn:aws:iam::{account}:{kind}/{name}"),
        body: "{}".into(),
        created_at: 1,
    }
}

async fn iam_suite<S: ControlStore + kura_store::IamStore>(s: &S) {
    use kura_store::iam::{kind, rel};
    let a = "111111111111";
    let b = "222222222222";
    s.account_ensure(a).await.unwrap();
    // Names are unique per account and kind, in any case.
    assert!(s
        .iam_entity_create(&entity(a, kind::USER, "Alice", "AIDA1"))
        .await
        .unwrap());
    assert!(!s
        .iam_entity_create(&entity(a, kind::USER, "alice", "AIDA2"))
        .await
        .unwrap());
    assert!(s
        .iam_entity_create(&entity(b, kind::USER, "alice", "AIDA3"))
        .await
        .unwrap());
    assert!(s
        .iam_entity_create(&entity(a, kind::ROLE, "alice", "AROA1"))
        .await
        .unwrap());
    assert!(s
        .iam_entity_create(&entity(a, kind::USER, "bob", "AIDA4"))
        .await
        .unwrap());
    let got = s.iam_entity_get(a, kind::USER, "ALICE").await.unwrap().unwrap();
    assert_eq!((got.name.as_str(), got.id.as_str()), ("Alice", "AIDA1"));
    assert!(s.iam_entity_get(a, kind::GROUP, "alice").await.unwrap().is_none());
    // Listing pages by name.
    let all = s.iam_entity_list(a, kind::USER, None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["Alice", "bob"]
    );
    let page = s.iam_entity_list(a, kind::USER, Some("Alice"), 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].name, "bob");
    // Compare-and-swap updates.
    assert!(s
        .iam_entity_update(a, kind::USER, "alice", "{}", r#"{"v":1}"#)
        .await
        .unwrap());
    assert!(!s
        .iam_entity_update(a, kind::USER, "alice", "{}", r#"{"v":2}"#)
        .await
        .unwrap());
    assert_eq!(
        s.iam_entity_get(a, kind::USER, "alice").await.unwrap().unwrap().body,
        r#"{"v":1}"#
    );
    // Inline policies go with their owner.
    s.iam_inline_put(a, kind::USER, "alice", "p1", "doc1").await.unwrap();
    s.iam_inline_put(a, kind::USER, "alice", "p1", "doc1b").await.unwrap();
    s.iam_inline_put(a, kind::USER, "alice", "p0", "doc0").await.unwrap();
    assert_eq!(
        s.iam_inline_list(a, kind::USER, "Alice").await.unwrap(),
        [
            ("p0".to_string(), "doc0".to_string()),
            ("p1".to_string(), "doc1b".to_string())
        ]
    );
    assert_eq!(
        s.iam_inline_get(a, kind::USER, "alice", "p1").await.unwrap().as_deref(),
        Some("doc1b")
    );
    assert!(s.iam_inline_delete(a, kind::USER, "alice", "p0").await.unwrap());
    assert!(!s.iam_inline_delete(a, kind::USER, "alice", "p0").await.unwrap());
    // Links both ways.
    let pol = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly";
    assert!(s
        .iam_link_add(a, rel::ATTACHED, kind::USER, "alice", pol)
        .await
        .unwrap());
    assert!(!s
        .iam_link_add(a, rel::ATTACHED, kind::USER, "ALICE", pol)
        .await
        .unwrap());
    assert!(s
        .iam_link_add(a, rel::ATTACHED, kind::ROLE, "alice", pol)
        .await
        .unwrap());
    assert!(s.iam_link_add(a, rel::MEMBER, kind::USER, "bob", "devs").await.unwrap());
    assert_eq!(
        s.iam_links_from(a, rel::ATTACHED, kind::USER, "alice").await.unwrap(),
        [pol]
    );
    assert_eq!(
        s.iam_links_to(a, rel::ATTACHED, pol).await.unwrap(),
        [
            ("role".to_string(), "alice".to_string()),
            ("user".to_string(), "alice".to_string())
        ]
    );
    assert!(s
        .iam_link_remove(a, rel::ATTACHED, kind::ROLE, "alice", pol)
        .await
        .unwrap());
    assert!(!s
        .iam_link_remove(a, rel::ATTACHED, kind::ROLE, "alice", pol)
        .await
        .unwrap());
    assert_eq!(
        s.iam_links_from(a, rel::MEMBER, kind::USER, "bob").await.unwrap(),
        ["devs"]
    );
    // Deleting an entity removes its inline policies.
    assert!(s.iam_entity_delete(a, kind::USER, "ALICE").await.unwrap());
    assert!(!s.iam_entity_delete(a, kind::USER, "alice").await.unwrap());
    assert!(s.iam_inline_list(a, kind::USER, "alice").await.unwrap().is_empty());
    assert!(s
        .iam_entity_create(&entity(a, kind::USER, "alice", "AIDA5"))
        .await
        .unwrap());
    assert!(s.iam_inline_get(a, kind::USER, "alice", "p1").await.unwrap().is_none());

    // Entities by unique id, within their account only.
    let alice = s.iam_entity_by_id(a, "AIDA5").await.unwrap().unwrap();
    assert_eq!((alice.kind.as_str(), alice.name.as_str()), (kind::USER, "alice"));
    assert!(s.iam_entity_by_id("999999999999", "AIDA5").await.unwrap().is_none());
    assert!(
        s.iam_entity_by_id(a, "AIDA1").await.unwrap().is_none(),
        "the deleted alice"
    );
    assert!(s.iam_entity_by_id(a, "aida5").await.unwrap().is_none(), "ids are exact");

    // Access keys by owner id; temporary credentials are not listed.
    let user_arn = format!("arn:aws:iam::{a}:user/alice");
    let put = |id: &'static str, owner: &'static str, temp: bool| {
        let row = AccessKeyRow {
            access_key_id: id.into(),
            account: a.into(),
            principal_arn: user_arn.clone(),
            principal_id: owner.into(),
            secret_sealed: vec![1],
            status: "Active".into(),
            session_token_hash: temp.then(|| "h".to_string()),
            expires_at: temp.then_some(5),
            created_at: 1,
        };
        async move { s.access_key_put(&row).await.unwrap() }
    };
    put("AKIAONE", "AIDA5", false).await;
    put("AKIATWO", "AIDA5", false).await;
    put("ASIATEMP", "AIDA5", true).await;
    // The same ARN with another owner (an earlier alice) is not alice's.
    put("AKIAOLD", "AIDA1", false).await;
    let keys = s.access_keys_of("AIDA5").await.unwrap();
    let mut ids: Vec<_> = keys.iter().map(|k| k.access_key_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["AKIAONE", "AKIATWO"]);
    assert_eq!(
        s.access_key_get("AKIAONE").await.unwrap().unwrap().principal_id,
        "AIDA5"
    );

    // Deleting a role's sessions takes only that role's temporary keys.
    put("ASIAR1", "AROAROLE1:s1", true).await;
    put("ASIAR2", "AROAROLE1:other", true).await;
    put("ASIAR10", "AROAROLE10:s1", true).await;
    put("AKIAR1", "AROAROLE1", false).await;
    assert_eq!(s.access_keys_delete_sessions("AROAROLE1").await.unwrap(), 2);
    assert!(s.access_key_get("ASIAR1").await.unwrap().is_none());
    assert!(s.access_key_get("ASIAR2").await.unwrap().is_none());
    assert!(s.access_key_get("ASIAR10").await.unwrap().is_some());
    assert!(s.access_key_get("AKIAR1").await.unwrap().is_some());
    assert_eq!(s.access_keys_delete_sessions("AROAROLE1").await.unwrap(), 0);
    for id in ["ASIAR10", "AKIAR1", "AKIAOLD"] {
        assert!(s.access_key_delete(id).await.unwrap());
    }
    assert!(s.access_key_set_status("AKIAONE", "Inactive").await.unwrap());
    assert_eq!(s.access_key_get("AKIAONE").await.unwrap().unwrap().status, "Inactive");
    assert!(!s.access_key_set_status("AKIANONE", "Inactive").await.unwrap());
    assert!(s.access_key_delete("AKIATWO").await.unwrap());
    assert!(!s.access_key_delete("AKIATWO").await.unwrap());
    assert_eq!(s.access_keys_purge_expired(6).await.unwrap(), 1);
    assert!(s.access_key_get("ASIATEMP").await.unwrap().is_none());

    // Every change to what decisions read moves the generation on.
    let g0 = s.iam_generation().await.unwrap();
    s.iam_inline_put(a, kind::USER, "alice", "p9", "doc").await.unwrap();
    let g1 = s.iam_generation().await.unwrap();
    assert!(g1 > g0);
    s.resource_tags_put("arn:x", &[("k".into(), "v".into())]).await.unwrap();
    let g2 = s.iam_generation().await.unwrap();
    assert!(g2 > g1);
    s.resource_tags_remove("arn:x", &["k".into()]).await.unwrap();
    assert!(s.iam_generation().await.unwrap() > g2);

    // Resource policies.
    let arn = "arn:aws:ecr:us-east-1:111111111111:repository/app";
    let g3 = s.iam_generation().await.unwrap();
    assert!(s.resource_policy_get(arn).await.unwrap().is_none());
    s.resource_policy_put(arn, "p1").await.unwrap();
    s.resource_policy_put(arn, "p2").await.unwrap();
    assert_eq!(s.resource_policy_get(arn).await.unwrap().unwrap().policy, "p2");
    assert_eq!(s.resource_policy_delete(arn).await.unwrap().unwrap().policy, "p2");
    assert!(s.resource_policy_delete(arn).await.unwrap().is_none());
    assert!(s.iam_generation().await.unwrap() > g3);
}

#[tokio::test]
async fn sqlite_iam_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let m = SqliteMetaStore::open(&dir.path().join("meta.db")).await.unwrap();
    iam_suite(&m).await;
}

#[tokio::test]
async fn postgres_control_store_conforms() {
    if let Some(m) = kura_store::testdb::postgres("postgres_control_store_conforms").await {
        control_suite(&m).await;
    }
}

#[tokio::test]
async fn postgres_public_store_conforms() {
    if let Some(m) = kura_store::testdb::postgres("postgres_public_store_conforms").await {
        public_suite(&m).await;
    }
}

#[tokio::test]
async fn postgres_store_conforms() {
    if let Some(m) = kura_store::testdb::postgres("postgres_store_conforms").await {
        suite(&m).await;
    }
}

#[tokio::test]
async fn postgres_scan_store_conforms() {
    if let Some(m) = kura_store::testdb::postgres("postgres_scan_store_conforms").await {
        scan_suite(&m).await;
    }
}

#[tokio::test]
async fn postgres_iam_store_conforms() {
    if let Some(m) = kura_store::testdb::postgres("postgres_iam_store_conforms").await {
        iam_suite(&m).await;
    }
}

/// Races the database must decide (several nodes share one PostgreSQL; on
/// SQLite the single writer decides): concurrent pushes of one immutable tag,
/// GC collecting a link while a manifest that references it is put, racing
/// claims of one upload; and byte-order (C collation) tag listing.
async fn concurrency_suite<S: MetaStore + kura_store::MaintenanceStore + Clone + 'static>(s: &S) {
    let repo = s.repo_get_or_create("111111111111", "race").await.unwrap();
    s.blob_commit(repo, &blob("layer"), None).await.unwrap();

    // 50 different manifests pushed at once under one immutable tag: one wins.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let m = manifest(&format!("m{i}"), &["layer"], &[], None, None);
            let tag = TagWrite {
                name: "v1".into(),
                immutable: true,
            };
            (i, s.manifest_put(repo, &m, &[tag]).await)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, Ok(_)) => winners.push(i),
            (_, Err(PutManifestError::TagImmutable(t))) => assert_eq!(t, "v1"),
            (_, Err(e)) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one push of an immutable tag succeeds");
    assert_eq!(
        s.tag_get(repo, "v1").await.unwrap(),
        Some(d(&format!("m{}", winners[0])))
    );

    // GC against a manifest PUT: whichever commits first, the link of a blob
    // that a stored manifest references is never collected.
    for round in 0..10 {
        let name = format!("gc-race-{round}");
        s.blob_commit(repo, &blob(&name), None).await.unwrap();
        let (a, b) = (s.clone(), s.clone());
        let m = manifest(&format!("gc-m-{round}"), &[&name], &[], None, None);
        let put = tokio::spawn(async move { a.manifest_put(repo, &m, &[]).await });
        let digest = d(&name);
        let gc = tokio::spawn(async move { b.link_collect(repo, &digest, i64::MAX).await.unwrap() });
        let (put, collected) = (put.await.unwrap(), gc.await.unwrap());
        match put {
            Ok(_) => {
                assert!(!collected, "round {round}: a referenced link was collected");
                assert!(s.blob_get(repo, &d(&name)).await.unwrap().is_some());
            }
            Err(PutManifestError::MissingReferences { blobs, .. }) => {
                assert!(collected, "round {round}: refused without a collection");
                assert_eq!(blobs, vec![d(&name)]);
            }
            Err(e) => panic!("round {round}: {e:?}"),
        }
    }

    // Racing claims of one upload: exactly one writer at a time.
    let u = UploadRow {
        id: "race-upload".into(),
        repo_id: repo,
        handle: "h".into(),
        offset: 0,
        hash_state: vec![1],
        started_at: 1,
    };
    s.upload_create(&u).await.unwrap();
    let mut claims = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        claims.push(tokio::spawn(async move {
            s.upload_claim("race-upload", Some(0), &format!("lease-{i}"))
                .await
                .unwrap()
        }));
    }
    let mut taken = 0;
    for c in claims {
        match c.await.unwrap() {
            Claim::Taken(_) => taken += 1,
            Claim::Conflict(0) => {}
            other => panic!("unexpected claim result {other:?}"),
        }
    }
    assert_eq!(taken, 1, "one claim wins");

    // Tags list in byte order (C collation), whatever the server's locale.
    let mut names = vec!["b", "B", "a", "A", "_x", "a-b", "a.b", "a_b", "Z9", "z"];
    for n in &names {
        let m = manifest(&format!("order-{n}"), &["layer"], &[], None, None);
        let t = TagWrite {
            name: n.to_string(),
            immutable: false,
        };
        s.manifest_put(repo, &m, &[t]).await.unwrap();
    }
    names.push("v1");
    names.sort();
    assert_eq!(s.tag_list(repo, None, 100).await.unwrap(), names);
    assert_eq!(s.tag_list(repo, Some("a"), 3).await.unwrap(), vec!["a-b", "a.b", "a_b"]);
}

#[tokio::test]
async fn sqlite_concurrency_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let m = SqliteMetaStore::open(dir.path().join("meta.db")).await.unwrap();
    concurrency_suite(&m).await;
}

#[tokio::test]
async fn postgres_concurrency_conforms() {
    if let Some(m) = kura_store::testdb::postgres("postgres_concurrency_conforms").await {
        concurrency_suite(&m).await;
    }
}

/// Open upload sessions are capped per repository and per principal, by the
/// store in the statement that opens one; a refused open writes nothing.
async fn upload_caps_suite(m: &dyn MetaStore) {
    let a = m.repo_get_or_create("123456789012", "caps/a").await.unwrap();
    let b = m.repo_get_or_create("123456789012", "caps/b").await.unwrap();
    let row = |id: &str, repo| UploadRow {
        id: id.into(),
        repo_id: repo,
        handle: id.into(),
        offset: 0,
        hash_state: vec![],
        started_at: 1,
    };
    let limits = UploadLimits {
        per_repository: 2,
        per_principal: 3,
    };
    let open = |id: &'static str, repo, who: &'static str| {
        let r = row(id, repo);
        async move { m.upload_open(&r, Some(who), limits).await.unwrap() }
    };
    assert_eq!(open("1", a, "alice").await, UploadOpen::Opened);
    assert_eq!(open("2", a, "bob").await, UploadOpen::Opened);
    assert_eq!(open("3", a, "bob").await, UploadOpen::RepositoryFull(2));
    assert!(m.upload_get("3").await.unwrap().is_none());
    assert_eq!(open("4", b, "alice").await, UploadOpen::Opened);
    assert_eq!(open("5", b, "alice").await, UploadOpen::Opened);
    assert_eq!(
        m.upload_open(&row("6", a), Some("carol"), limits).await.unwrap(),
        UploadOpen::RepositoryFull(2)
    );
    let c = m.repo_get_or_create("123456789012", "caps/c").await.unwrap();
    assert_eq!(open("7", c, "alice").await, UploadOpen::PrincipalFull(3));
    assert!(m.upload_delete("4").await.unwrap());
    assert_eq!(open("8", c, "alice").await, UploadOpen::Opened);
    // No caps, no principal: always opens.
    m.upload_create(&row("9", a)).await.unwrap();
    assert!(m.upload_get("9").await.unwrap().is_some());
}

#[tokio::test]
async fn sqlite_upload_caps_conform() {
    let dir = tempfile::tempdir().unwrap();
    let m = SqliteMetaStore::open(dir.path().join("meta.db")).await.unwrap();
    upload_caps_suite(&m).await;
}

#[tokio::test]
async fn postgres_upload_caps_conform() {
    if let Some(m) = kura_store::testdb::postgres("postgres_upload_caps_conform").await {
        upload_caps_suite(&m).await;
    }
}
