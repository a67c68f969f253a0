//! The job-table suite ([`kura_store::JobStore`]), on SQLite and, when
//! `KURA_TEST_DATABASE_URL` names a server, PostgreSQL (a fresh database per
//! test; see `kura_store::testdb`).

use std::collections::HashSet;
use std::time::Duration;

use kura_store::jobs::{FailAction, JobState, NewJobRow};
use kura_store::{now_millis, JobStore, SqliteMetaStore};

fn job(kind: &str, payload: &str) -> NewJobRow {
    NewJobRow {
        kind: kind.into(),
        payload: payload.into(),
        run_after: 0,
        max_attempts: 3,
        ..Default::default()
    }
}

fn kinds(k: &[&str]) -> Vec<String> {
    k.iter().map(|s| s.to_string()).collect()
}

/// Let a lease given with `lease_ms = 0` lapse (lease_until < now).
async fn lapse() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

/// Enqueue, claim, heartbeat, complete, fail (retry and dead), unique keys,
/// lanes, list, retry and purge: each assertion fails if that rule broke.
async fn suite(s: &dyn JobStore) {
    // A bad job is refused, not stored.
    assert!(s.job_enqueue(&job("", "{}")).await.is_err());
    assert!(s.job_enqueue(&job("a", "not json")).await.is_err());

    // Enqueue and claim: only due jobs of the asked kinds, each once.
    let a1 = s.job_enqueue(&job("a", r#"{"n":1}"#)).await.unwrap();
    let b1 = s.job_enqueue(&job("b", "{}")).await.unwrap();
    let later = s
        .job_enqueue(&NewJobRow {
            run_after: now_millis() + 3_600_000,
            ..job("a", "{}")
        })
        .await
        .unwrap();
    assert!(a1 < b1 && b1 < later, "ids ascend in enqueue order");
    let got = s.job_claim(&kinds(&["a"]), "n1", 30_000, 10).await.unwrap();
    assert_eq!(
        got.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![a1],
        "only due jobs of kind a"
    );
    let j = &got[0];
    assert_eq!(
        (j.state.as_str(), j.attempts, j.lease_owner.as_deref()),
        ("running", 1, Some("n1"))
    );
    assert_eq!(j.payload, r#"{"n":1}"#);
    assert!(j.lease_until.unwrap() > now_millis() + 20_000);
    assert!(
        s.job_claim(&kinds(&["a"]), "n2", 30_000, 10).await.unwrap().is_empty(),
        "a job under a live lease is not claimed again"
    );

    // Heartbeat extends only the owner's lease.
    assert!(s.job_heartbeat(a1, "n1", 60_000).await.unwrap());
    assert!(!s.job_heartbeat(a1, "n2", 60_000).await.unwrap());
    assert!(s.job_get(a1).await.unwrap().unwrap().lease_until.unwrap() > now_millis() + 50_000);
    // Release: only the owner; the job is claimable at once (the attempt counts).
    assert!(!s.job_release(a1, "n2").await.unwrap());
    assert!(s.job_release(a1, "n1").await.unwrap());
    let got = s.job_claim(&kinds(&["a"]), "n1", 30_000, 10).await.unwrap();
    assert_eq!(
        (got[0].id, got[0].attempts),
        (a1, 2),
        "a released job is claimable again"
    );

    // Complete: only by the owner; done is final.
    assert!(!s.job_complete(a1, "n2").await.unwrap());
    assert!(s.job_complete(a1, "n1").await.unwrap());
    let done = s.job_get(a1).await.unwrap().unwrap();
    assert_eq!(done.state, "done");
    assert!(done.finished_at.is_some());
    assert!(!s.job_complete(a1, "n1").await.unwrap(), "completing twice is refused");
    assert!(
        !s.job_heartbeat(a1, "n1", 1000).await.unwrap(),
        "a finished job has no lease"
    );

    // A lapsed lease: another owner claims it; the first loses it.
    let got = s.job_claim(&kinds(&["b"]), "n1", 0, 10).await.unwrap();
    assert_eq!(got[0].id, b1);
    lapse().await;
    let got = s.job_claim(&kinds(&["b"]), "n2", 30_000, 10).await.unwrap();
    assert_eq!(got.len(), 1, "a running job whose lease lapsed is claimable");
    assert_eq!((got[0].attempts, got[0].lease_owner.as_deref()), (2, Some("n2")));
    assert!(
        !s.job_heartbeat(b1, "n1", 30_000).await.unwrap(),
        "the old owner lost it"
    );
    assert!(!s.job_complete(b1, "n1").await.unwrap());
    assert_eq!(
        s.job_fail(b1, "n1", "late", FailAction::RetryAt(0)).await.unwrap(),
        None
    );

    // Fail: retry at a time (queued, not due before), then dead when attempts run out.
    assert_eq!(
        s.job_fail(b1, "n2", "boom", FailAction::RetryAt(now_millis() + 3_600_000))
            .await
            .unwrap(),
        Some(JobState::Queued)
    );
    let row = s.job_get(b1).await.unwrap().unwrap();
    assert_eq!(
        (row.state.as_str(), row.last_error.as_deref()),
        ("queued", Some("boom"))
    );
    assert!(
        s.job_claim(&kinds(&["b"]), "n1", 30_000, 10).await.unwrap().is_empty(),
        "not before run_after"
    );
    let c = s
        .job_enqueue(&NewJobRow {
            max_attempts: 2,
            ..job("c", "{}")
        })
        .await
        .unwrap();
    s.job_claim(&kinds(&["c"]), "n1", 30_000, 10).await.unwrap();
    assert_eq!(
        s.job_fail(c, "n1", "e1", FailAction::RetryAt(0)).await.unwrap(),
        Some(JobState::Queued)
    );
    s.job_claim(&kinds(&["c"]), "n1", 30_000, 10).await.unwrap();
    assert_eq!(
        s.job_fail(c, "n1", "e2", FailAction::RetryAt(0)).await.unwrap(),
        Some(JobState::Dead),
        "the last attempt failed: dead"
    );
    let dead = s.job_get(c).await.unwrap().unwrap();
    assert!(
        s.job_claim(&kinds(&["c"]), "n1", 30_000, 10).await.unwrap().is_empty(),
        "dead is final"
    );
    assert_eq!(
        (dead.state.as_str(), dead.attempts, dead.last_error.as_deref()),
        ("dead", 2, Some("e2"))
    );
    assert!(dead.finished_at.is_some());
    // A fatal error is dead at once.
    let f = s.job_enqueue(&job("f", "{}")).await.unwrap();
    s.job_claim(&kinds(&["f"]), "n1", 30_000, 10).await.unwrap();
    assert_eq!(
        s.job_fail(f, "n1", "bad input", FailAction::Dead).await.unwrap(),
        Some(JobState::Dead)
    );
    // A runner that dies during the last attempt: dead, not claimed forever.
    let z = s
        .job_enqueue(&NewJobRow {
            max_attempts: 1,
            ..job("z", "{}")
        })
        .await
        .unwrap();
    s.job_claim(&kinds(&["z"]), "n1", 0, 10).await.unwrap();
    lapse().await;
    assert!(s.job_claim(&kinds(&["z"]), "n2", 30_000, 10).await.unwrap().is_empty());
    assert_eq!(s.job_get(z).await.unwrap().unwrap().state, "dead");

    // List by state and kind, paged by id.
    let dead_ids: Vec<i64> = s
        .job_list(Some(JobState::Dead), None, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(dead_ids, vec![c, f, z]);
    assert_eq!(
        s.job_list(Some(JobState::Dead), Some("f"), 0, 10).await.unwrap()[0].id,
        f
    );
    assert_eq!(s.job_list(None, None, 0, 2).await.unwrap().len(), 2);
    assert_eq!(
        s.job_list(None, None, c, 100).await.unwrap()[0].id,
        f,
        "paged after an id"
    );

    // Retry a dead job: queued again with fresh attempts; not a live one.
    assert!(!s.job_retry(b1).await.unwrap(), "only dead jobs are retried");
    assert!(s.job_retry(c).await.unwrap());
    let again = s.job_claim(&kinds(&["c"]), "n1", 30_000, 10).await.unwrap();
    assert_eq!((again[0].id, again[0].attempts), (c, 1));
    s.job_complete(c, "n1").await.unwrap();

    // Unique keys: one queued or running job per key; a new one after it finished.
    let keyed = |k: &str| NewJobRow {
        unique_key: Some(k.into()),
        ..job("u", "{}")
    };
    let u1 = s.job_enqueue(&keyed("repo/1")).await.unwrap();
    assert_eq!(s.job_enqueue(&keyed("repo/1")).await.unwrap(), u1, "queued: no-op");
    let u2 = s.job_enqueue(&keyed("repo/2")).await.unwrap();
    assert_ne!(u1, u2);
    let got = s.job_claim(&kinds(&["u"]), "n1", 30_000, 1).await.unwrap();
    assert_eq!(got[0].id, u1);
    assert_eq!(s.job_enqueue(&keyed("repo/1")).await.unwrap(), u1, "running: no-op");
    s.job_complete(u1, "n1").await.unwrap();
    let u3 = s.job_enqueue(&keyed("repo/1")).await.unwrap();
    assert!(u3 > u1, "finished: a new job");
    // A `once` key: no new job even after the first finished.
    let once = NewJobRow {
        once: true,
        ..keyed("every:gc:42")
    };
    let o1 = s.job_enqueue(&once).await.unwrap();
    let got = s.job_claim(&kinds(&["u"]), "n1", 30_000, 10).await.unwrap();
    for j in &got {
        s.job_complete(j.id, "n1").await.unwrap();
    }
    assert!(got.iter().any(|j| j.id == o1));
    assert_eq!(s.job_enqueue(&once).await.unwrap(), o1, "a once key runs once");
    // A dead keyed job is not retried while another job holds its key.
    let k1 = s
        .job_enqueue(&NewJobRow {
            max_attempts: 1,
            ..keyed("k")
        })
        .await
        .unwrap();
    s.job_claim(&kinds(&["u"]), "n1", 30_000, 10).await.unwrap();
    s.job_fail(k1, "n1", "x", FailAction::Dead).await.unwrap();
    let k2 = s.job_enqueue(&keyed("k")).await.unwrap();
    assert!(!s.job_retry(k1).await.unwrap());
    let got = s.job_claim(&kinds(&["u"]), "n1", 30_000, 10).await.unwrap();
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![k2]);
    s.job_complete(k2, "n1").await.unwrap();
    assert!(s.job_retry(k1).await.unwrap());

    // Lanes: one job of a lane at a time, in id order; other lanes and
    // lane-less jobs are not held up; a retry waiting holds its lane; a dead
    // job does not.
    let lane = |l: &str, p: &str| NewJobRow {
        lane: Some(l.into()),
        ..job("l", p)
    };
    let l1 = s
        .job_enqueue(&NewJobRow {
            max_attempts: 2,
            ..lane("r1", r#"{"i":1}"#)
        })
        .await
        .unwrap();
    let l2 = s.job_enqueue(&lane("r1", r#"{"i":2}"#)).await.unwrap();
    let l3 = s.job_enqueue(&lane("r1", r#"{"i":3}"#)).await.unwrap();
    let m1 = s.job_enqueue(&lane("r2", "{}")).await.unwrap();
    let free = s.job_enqueue(&job("l", "{}")).await.unwrap();
    let got: Vec<i64> = s
        .job_claim(&kinds(&["l"]), "n1", 30_000, 10)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(got, vec![l1, m1, free], "the head of each lane, and lane-less jobs");
    assert!(s.job_claim(&kinds(&["l"]), "n2", 30_000, 10).await.unwrap().is_empty());
    s.job_fail(l1, "n1", "slow target", FailAction::RetryAt(now_millis() + 1_500))
        .await
        .unwrap();
    assert!(
        s.job_claim(&kinds(&["l"]), "n2", 30_000, 10).await.unwrap().is_empty(),
        "a job waiting for its retry holds its lane"
    );
    // Its retry comes due: it runs again (still first in its lane) and dies.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let got = loop {
        let got = s.job_claim(&kinds(&["l"]), "n2", 30_000, 10).await.unwrap();
        if !got.is_empty() || std::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![l1]);
    assert_eq!(
        s.job_fail(l1, "n2", "still down", FailAction::RetryAt(0))
            .await
            .unwrap(),
        Some(JobState::Dead)
    );
    // Dead: its lane moves on to l2, then l3.
    let got = s.job_claim(&kinds(&["l"]), "n2", 30_000, 10).await.unwrap();
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![l2]);
    s.job_complete(l2, "n2").await.unwrap();
    let got = s.job_claim(&kinds(&["l"]), "n2", 30_000, 10).await.unwrap();
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![l3]);

    // Purge: finished jobs before the cutoff only.
    let before = s.job_list(Some(JobState::Done), None, 0, 1000).await.unwrap().len();
    assert!(before > 0);
    assert_eq!(s.job_purge(JobState::Done, 0).await.unwrap(), 0);
    assert_eq!(
        s.job_purge(JobState::Done, now_millis() + 1).await.unwrap() as usize,
        before
    );
    assert!(s
        .job_list(Some(JobState::Done), None, 0, 1000)
        .await
        .unwrap()
        .is_empty());
    assert!(!s
        .job_list(Some(JobState::Dead), None, 0, 1000)
        .await
        .unwrap()
        .is_empty());
    assert!(s.job_purge(JobState::Queued, now_millis()).await.is_err());
    assert!(s.job_get(l3).await.unwrap().is_some(), "a running job is never purged");
}

#[tokio::test]
async fn sqlite_job_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteMetaStore::open(dir.path().join("meta.db")).await.unwrap();
    suite(&s).await;
}

#[tokio::test]
async fn postgres_job_store_conforms() {
    if let Some(s) = kura_store::testdb::postgres("postgres_job_store_conforms").await {
        suite(&s).await;
    }
}

/// Many claimers racing for many jobs: each job is claimed by exactly one
/// (fails if two claimers ever get the same job under a live lease: on
/// PostgreSQL that is what `FOR UPDATE SKIP LOCKED` guards).
async fn claim_race<S: JobStore + Clone>(s: &S) {
    let mut ids = HashSet::new();
    for i in 0..200 {
        ids.insert(s.job_enqueue(&job("race", &format!(r#"{{"i":{i}}}"#))).await.unwrap());
    }
    let mut tasks = Vec::new();
    for c in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("claimer-{c}");
            let mut mine = Vec::new();
            loop {
                let got = s.job_claim(&kinds(&["race"]), &owner, 60_000, 7).await.unwrap();
                if got.is_empty() {
                    break;
                }
                for j in got {
                    assert!(s.job_complete(j.id, &owner).await.unwrap());
                    mine.push(j.id);
                }
            }
            mine
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.extend(t.await.unwrap());
    }
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(seen.len(), unique.len(), "a job was claimed twice");
    assert_eq!(unique, ids, "every job was claimed");
}

#[tokio::test]
async fn sqlite_claims_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteMetaStore::open(dir.path().join("meta.db")).await.unwrap();
    claim_race(&s).await;
}

#[tokio::test]
async fn postgres_claims_never_overlap() {
    if let Some(s) = kura_store::testdb::postgres("postgres_claims_never_overlap").await {
        claim_race(&s).await;
    }
}

/// A burst of identical enqueues from many connections at once (a push
/// storm asking for one scan): one job, every caller gets its id (fails if
/// the unique key let two in, or a caller saw the conflict as an error).
async fn enqueue_burst<S: JobStore + Clone>(s: &S) {
    for round in 0..5 {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.job_enqueue(&NewJobRow {
                    unique_key: Some(format!("scan:1:sha256:{round}")),
                    ..job("scan", "{}")
                })
                .await
                .unwrap()
            }));
        }
        let mut ids = HashSet::new();
        for t in tasks {
            ids.insert(t.await.unwrap());
        }
        assert_eq!(ids.len(), 1, "one job per key: {ids:?}");
    }
    assert_eq!(s.job_list(None, Some("scan"), 0, 100).await.unwrap().len(), 5);
}

#[tokio::test]
async fn sqlite_enqueue_burst_makes_one_job() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteMetaStore::open(dir.path().join("meta.db")).await.unwrap();
    enqueue_burst(&s).await;
}

#[tokio::test]
async fn postgres_enqueue_burst_makes_one_job() {
    if let Some(s) = kura_store::testdb::postgres("postgres_enqueue_burst_makes_one_job").await {
        enqueue_burst(&s).await;
    }
}
