//! The replication suite ([`kura_store::ReplicationStore`]): status rows and
//! backfills, on SQLite and, when `KURA_TEST_DATABASE_URL` names a server,
//! PostgreSQL (a fresh database per test; see `kura_store::testdb`).

use kura_store::meta::{NewManifest, TagWrite};
use kura_store::replication::{backfill_status as bs, BackfillItem, ReplKey};
use kura_store::{MetaStore, ReplicationStore, SqliteMetaStore};

const SRC: &str = "111111111111";
const OTHER: &str = "222222222222";
const DEST: &str = "333333333333";

fn d(s: &str) -> String {
    kura_oci::Digest::sha256(s.as_bytes()).to_string()
}

async fn image(m: &dyn MetaStore, repo: i64, name: &str, tag: &str) -> String {
    let digest = d(name);
    m.manifest_put(
        repo,
        &NewManifest {
            digest: digest.clone(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            artifact_type: None,
            subject: None,
            annotations: None,
            body: name.as_bytes().to_vec(),
            blobs: vec![],
            children: vec![],
        },
        &[TagWrite {
            name: tag.into(),
            immutable: false,
        }],
    )
    .await
    .unwrap();
    digest
}

fn key<'a>(repo_id: i64, digest: &'a str, region: &'a str) -> ReplKey<'a> {
    ReplKey {
        repo_id,
        digest,
        region,
        registry_id: DEST,
    }
}

fn item(repo_id: i64, repository: &str, digest: &str, tag: Option<&str>) -> BackfillItem {
    BackfillItem {
        repo_id,
        repository: repository.into(),
        digest: digest.into(),
        tag: tag.map(String::from),
    }
}

/// Status rows: insert, update (attempts, failure, kept checkpoint), list
/// order, nothing written for a missing repository, gone with the repository.
async fn status_rows<S: MetaStore + ReplicationStore>(s: &S) {
    let repo = s.repo_get_or_create(SRC, "prod/api").await.unwrap();
    let a = image(s, repo, "a", "v1").await;
    s.repl_status_set(key(repo, &a, "eu-west-1"), "IN_PROGRESS", None, false)
        .await
        .unwrap();
    s.repl_progress_set(key(repo, &a, "eu-west-1"), r#"{"blob":"x"}"#)
        .await
        .unwrap();
    s.repl_status_set(
        key(repo, &a, "eu-west-1"),
        "FAILED",
        Some(("REPLICATION_PERMISSION_DENIED", "no policy")),
        true,
    )
    .await
    .unwrap();
    let row = s.repl_status_get(key(repo, &a, "eu-west-1")).await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.failure_code.as_deref(), row.reason.as_deref()),
        ("FAILED", Some("REPLICATION_PERMISSION_DENIED"), Some("no policy"))
    );
    assert_eq!((row.attempts, row.progress.as_str()), (1, r#"{"blob":"x"}"#));
    s.repl_status_set(key(repo, &a, "ap-northeast-1"), "COMPLETE", None, true)
        .await
        .unwrap();
    let list = s.repl_status_list(repo, &a).await.unwrap();
    assert_eq!(
        list.iter().map(|r| r.region.as_str()).collect::<Vec<_>>(),
        ["ap-northeast-1", "eu-west-1"]
    );
    assert!(s.repl_status_list(repo, &d("other")).await.unwrap().is_empty());
    // A missing repository: nothing recorded, no error.
    s.repl_status_set(key(repo + 1000, &a, "eu-west-1"), "COMPLETE", None, false)
        .await
        .unwrap();
    assert!(s.repl_status_list(repo + 1000, &a).await.unwrap().is_empty());
    // Rows go with their repository.
    assert_eq!(
        s.repo_delete(repo, true).await.unwrap(),
        kura_store::meta::DeleteRepo::Deleted
    );
    assert!(s.repl_status_list(repo, &a).await.unwrap().is_empty());
}

/// Backfills: one running per account and destination, status moves, the
/// items' outcomes from the status rows (an image gone is FAILED), settling
/// to COMPLETE only when every item is final, counts, results with filter
/// and paging, listing per account.
async fn backfills<S: MetaStore + ReplicationStore>(s: &S) {
    let repo = s.repo_get_or_create(SRC, "prod/api").await.unwrap();
    let web = s.repo_get_or_create(SRC, "prod/web").await.unwrap();
    let a = image(s, repo, "a", "v1").await;
    let b = image(s, repo, "b", "v2").await;
    let c = image(s, web, "c", "v3").await;
    let gone = d("gone");

    let id1 = "6f1c3bde-0000-4000-8000-000000000001";
    let bf = s
        .repl_backfill_create(id1, SRC, "eu-west-1", DEST)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (bf.id.as_str(), bf.status.as_str(), bf.ended_at),
        (id1, bs::PREPARING, None)
    );
    // One running backfill per destination; another destination, or
    // another account, is free.
    assert!(s
        .repl_backfill_create("6f1c3bde-0000-4000-8000-000000000002", SRC, "eu-west-1", DEST)
        .await
        .unwrap()
        .is_none());
    let id3 = "6f1c3bde-0000-4000-8000-000000000003";
    assert!(s
        .repl_backfill_create(id3, SRC, "ap-northeast-1", DEST)
        .await
        .unwrap()
        .is_some());
    let id4 = "6f1c3bde-0000-4000-8000-000000000004";
    assert!(s
        .repl_backfill_create(id4, OTHER, "eu-west-1", DEST)
        .await
        .unwrap()
        .is_some());
    assert!(s.repl_backfill_get(OTHER, id1).await.unwrap().is_none(), "per account");
    let listed = s.repl_backfill_list(SRC, None, 10).await.unwrap();
    assert_eq!(listed.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(), [id1, id3]);
    let page = s.repl_backfill_list(SRC, Some(listed[0].seq), 10).await.unwrap();
    assert_eq!(page.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(), [id3]);

    // Items: queued images (the replicate job writes their status rows).
    for (r, dg) in [(repo, &a), (repo, &b), (web, &c)] {
        s.repl_status_set(key(r, dg, "eu-west-1"), "IN_PROGRESS", None, false)
            .await
            .unwrap();
    }
    let items = [
        item(repo, "prod/api", &a, Some("v1")),
        item(repo, "prod/api", &b, Some("v2")),
        item(web, "prod/web", &c, None),
        item(repo, "prod/api", &gone, None),
    ];
    s.repl_backfill_items_add(id1, &items).await.unwrap();
    s.repl_backfill_items_add(id1, &items[..1]).await.unwrap(); // idempotent
    s.repl_backfill_cursor_set(id1, r#"{"repository":"prod/web"}"#)
        .await
        .unwrap();
    assert_eq!(
        s.repl_backfill_get(SRC, id1).await.unwrap().unwrap().cursor,
        r#"{"repository":"prod/web"}"#
    );
    let p = s.repl_backfill_progress(id1).await.unwrap();
    assert_eq!((p.total, p.completed, p.failed), (4, 0, 1));
    assert_eq!(p.failure_codes, ["IMAGE_NOT_FOUND"]);

    // PREPARING does not settle, even with items final.
    s.repl_status_set(key(repo, &a, "eu-west-1"), "COMPLETE", None, true)
        .await
        .unwrap();
    s.repl_status_set(
        key(repo, &b, "eu-west-1"),
        "FAILED",
        Some(("IMAGE_TAG_IMMUTABLE", "tag v2 exists")),
        true,
    )
    .await
    .unwrap();
    assert_eq!(s.repl_backfill_settle(SRC).await.unwrap(), 0);
    // Status moves only from the given statuses.
    assert!(!s
        .repl_backfill_transition(SRC, id1, &[bs::STOPPING], bs::STOPPED, None)
        .await
        .unwrap());
    assert!(!s
        .repl_backfill_transition(OTHER, id1, &[bs::PREPARING], bs::IN_PROGRESS, None)
        .await
        .unwrap());
    assert!(s
        .repl_backfill_transition(SRC, id1, &[bs::PREPARING], bs::IN_PROGRESS, None)
        .await
        .unwrap());
    // c is still IN_PROGRESS (retrying with a failure code): not settled.
    s.repl_status_set(
        key(web, &c, "eu-west-1"),
        "IN_PROGRESS",
        Some(("DESTINATION_UNAVAILABLE", "connection refused")),
        true,
    )
    .await
    .unwrap();
    assert_eq!(s.repl_backfill_settle(SRC).await.unwrap(), 0);
    let p = s.repl_backfill_progress(id1).await.unwrap();
    assert_eq!((p.total, p.completed, p.failed), (4, 1, 2));
    assert_eq!(p.failure_codes, ["IMAGE_NOT_FOUND", "IMAGE_TAG_IMMUTABLE"]);
    // Results: only final ones, by repository then digest, filtered, paged.
    let all = s.repl_backfill_results(id1, None, None, 10).await.unwrap();
    let mut want = vec![
        ("prod/api".to_string(), a.clone(), "COMPLETE"),
        ("prod/api".to_string(), b.clone(), "FAILED"),
        ("prod/api".to_string(), gone.clone(), "FAILED"),
    ];
    want.sort();
    assert_eq!(
        all.iter()
            .map(|r| (r.repository.clone(), r.digest.clone(), r.status.as_str()))
            .collect::<Vec<_>>(),
        want
    );
    let failed = s.repl_backfill_results(id1, Some("FAILED"), None, 10).await.unwrap();
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|r| r.status == "FAILED" && r.failure_code.is_some()));
    let first = s.repl_backfill_results(id1, None, None, 1).await.unwrap();
    let rest = s
        .repl_backfill_results(id1, None, Some((&first[0].repository, &first[0].digest)), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    assert!(!rest.contains(&first[0]));
    let ok = all.iter().find(|r| r.digest == a).unwrap();
    assert_eq!((ok.tag.as_deref(), ok.failure_code.as_deref()), (Some("v1"), None));

    // The last item final: settled COMPLETE, and the destination is free again.
    s.repl_status_set(key(web, &c, "eu-west-1"), "COMPLETE", None, true)
        .await
        .unwrap();
    let again = "6f1c3bde-0000-4000-8000-000000000005";
    assert!(
        s.repl_backfill_create(again, SRC, "eu-west-1", DEST)
            .await
            .unwrap()
            .is_some(),
        "creating settles the finished backfill first"
    );
    let done = s.repl_backfill_get(SRC, id1).await.unwrap().unwrap();
    assert_eq!(done.status, bs::COMPLETE);
    assert!(done.ended_at.is_some_and(|e| e >= done.started_at));
    assert_eq!(s.repl_backfill_progress(id1).await.unwrap().completed, 2);

    // Stopping: a final status ends it; an empty IN_PROGRESS one settles at once.
    assert!(s
        .repl_backfill_transition(SRC, again, bs::RUNNING, bs::STOPPED, None)
        .await
        .unwrap());
    let stopped = s.repl_backfill_get(SRC, again).await.unwrap().unwrap();
    assert_eq!(stopped.status, bs::STOPPED);
    assert!(stopped.ended_at.is_some());
    assert!(s
        .repl_backfill_transition(SRC, id3, &[bs::PREPARING], bs::IN_PROGRESS, None)
        .await
        .unwrap());
    assert_eq!(s.repl_backfill_settle(SRC).await.unwrap(), 1);
    assert_eq!(
        s.repl_backfill_get(SRC, id3).await.unwrap().unwrap().status,
        bs::COMPLETE
    );
    // A failure code is kept with FAILED.
    assert!(s
        .repl_backfill_transition(OTHER, id4, bs::RUNNING, bs::FAILED, Some("CONFIGURATION_CHANGED"))
        .await
        .unwrap());
    let f = s.repl_backfill_get(OTHER, id4).await.unwrap().unwrap();
    assert_eq!(
        (f.status.as_str(), f.failure_code.as_deref()),
        (bs::FAILED, Some("CONFIGURATION_CHANGED"))
    );

    // A repository deleted after its images were queued: those items FAILED.
    assert_eq!(
        s.repo_delete(web, true).await.unwrap(),
        kura_store::meta::DeleteRepo::Deleted
    );
    let p = s.repl_backfill_progress(id1).await.unwrap();
    assert_eq!((p.total, p.completed, p.failed), (4, 1, 3));
}

#[tokio::test]
async fn sqlite_status_rows() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteMetaStore::open(dir.path().join("meta.db")).await.unwrap();
    status_rows(&s).await;
}

#[tokio::test]
async fn postgres_status_rows() {
    if let Some(s) = kura_store::testdb::postgres("postgres_status_rows").await {
        status_rows(&s).await;
    }
}

#[tokio::test]
async fn sqlite_backfills() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteMetaStore::open(dir.path().join("meta.db")).await.unwrap();
    backfills(&s).await;
}

#[tokio::test]
async fn postgres_backfills() {
    if let Some(s) = kura_store::testdb::postgres("postgres_backfills").await {
        backfills(&s).await;
    }
}
