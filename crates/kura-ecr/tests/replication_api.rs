//! The replication API as ECR answers it, through the whole application
//! (`POST /`, SigV4, the model's validation, authorization): the
//! configuration's validation with ECR's messages and its `DescribeRegistry`
//! echo, `DescribeImageReplicationStatus` over the status rows, and
//! replication backfills (start, list, describe results, stop, one running
//! per destination), with the backfill job run by hand in place of a runner.
//! Runs on PostgreSQL too when `KURA_TEST_DATABASE_URL` is set.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use kura_jobs::JobHandler;
use kura_replication::backfill::{BackfillJob, BACKFILL_JOB};
use kura_store::meta::{NewManifest, TagWrite};
use kura_store::replication::ReplKey;
use kura_store::{ControlStore, IamStore, JobStore, MetaStore, ReplicationStore};
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;

use common::{ACCOUNT, KEY_ID, REGION, SECRET};

const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921";
const OTHER: &str = "210987654321";
const DEST: &str = "111111111111";

struct T {
    s: common::Server,
}

struct Resp {
    status: StatusCode,
    body: Value,
}

impl Resp {
    fn ok(self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        self.body
    }

    /// The error's message, after checking its status and type.
    fn err(&self, status: StatusCode, kind: &str) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["__type"], kind, "{}", self.body);
        self.body["message"].as_str().unwrap_or_default().to_string()
    }
}

impl T {
    async fn new() -> T {
        let s = common::server().await;
        s.store.account_ensure(OTHER).await.unwrap();
        T { s }
    }

    async fn call(&self, op: &str, input: Value) -> Resp {
        let body = serde_json::to_vec(&input).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "localhost:5000".parse().unwrap());
        headers.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
        headers.insert("x-amz-target", format!("{TARGET}.{op}").parse().unwrap());
        common::sign_post(
            &mut headers,
            &body,
            (KEY_ID, SECRET),
            REGION,
            "ecr",
            std::time::SystemTime::now(),
        );
        let mut b = Request::builder().method(Method::POST).uri("/");
        *b.headers_mut().unwrap() = headers;
        let resp = self
            .s
            .app
            .clone()
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// An image (a manifest without blobs) in `account`'s `repo`, created if need be.
    async fn image(&self, account: &str, repo: &str, name: &str, tag: Option<&str>) -> (i64, String) {
        let id = self.s.store.repo_get_or_create(account, repo).await.unwrap();
        let body = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "n": name})
            .to_string()
            .into_bytes();
        let digest = kura_oci::Digest::sha256(&body).to_string();
        let tags: Vec<TagWrite> = tag
            .map(|t| TagWrite {
                name: t.into(),
                immutable: false,
            })
            .into_iter()
            .collect();
        self.s
            .store
            .manifest_put(
                id,
                &NewManifest {
                    digest: digest.clone(),
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    artifact_type: None,
                    subject: None,
                    annotations: None,
                    body,
                    blobs: vec![],
                    children: vec![],
                },
                &tags,
            )
            .await
            .unwrap();
        (id, digest)
    }

    async fn set_status(&self, repo: i64, digest: &str, region: &str, status: &str, failure: Option<(&str, &str)>) {
        self.s
            .store
            .repl_status_set(
                ReplKey {
                    repo_id: repo,
                    digest,
                    region,
                    registry_id: DEST,
                },
                status,
                failure,
                false,
            )
            .await
            .unwrap();
    }

    /// Claim and run the queued backfill jobs, as a runner would; how many ran.
    async fn run_backfills(&self) -> usize {
        let store = self.s.store.clone();
        let handler = BackfillJob::new(self.s.ecr.jobs().clone(), store.clone(), store.clone(), store.clone());
        let jobs = store
            .job_claim(&[BACKFILL_JOB.to_string()], "test", 60_000, 10)
            .await
            .unwrap();
        for j in &jobs {
            handler.run(j).await.unwrap();
            assert!(store.job_complete(j.id, "test").await.unwrap());
        }
        jobs.len()
    }

    /// The queued replicate jobs' payloads.
    async fn replicate_jobs(&self) -> Vec<Value> {
        self.s
            .store
            .job_list(None, Some(kura_replication::REPLICATE_JOB), 0, 1000)
            .await
            .unwrap()
            .iter()
            .map(|j| serde_json::from_str(&j.payload).unwrap())
            .collect()
    }
}

fn dest(region: &str, registry: &str) -> Value {
    json!({"region": region, "registryId": registry})
}

fn rule(dests: Vec<Value>) -> Value {
    json!({"destinations": dests})
}

fn filtered(dests: Vec<Value>, filter: &str, kind: &str) -> Value {
    json!({"destinations": dests, "repositoryFilters": [{"filter": filter, "filterType": kind}]})
}

async fn put(t: &T, rules: Vec<Value>) -> Resp {
    t.call(
        "PutReplicationConfiguration",
        json!({"replicationConfiguration": {"rules": rules}}),
    )
    .await
}

#[tokio::test]
async fn configuration_is_validated_as_ecr_does() {
    let t = T::new().await;
    let bad = StatusCode::BAD_REQUEST;
    let invalid = "InvalidParameterException";
    // More than 10 rules.
    let m = put(&t, vec![rule(vec![dest("eu-west-1", DEST)]); 11])
        .await
        .err(bad, invalid);
    assert!(
        m.contains("replicationConfiguration") && m.contains("limit of 10"),
        "{m}"
    );
    // More than 25 unique destinations (the same one twice counts once).
    let mut many: Vec<Value> = (0..26)
        .map(|i| dest("eu-west-1", &format!("{:012}", 100 + i)))
        .collect();
    let m = put(&t, vec![rule(many.clone())]).await.err(bad, invalid);
    assert!(m.contains("limit of 25"), "{m}");
    many.truncate(25);
    many.push(dest("eu-west-1", "000000000100"));
    put(&t, vec![rule(many)]).await.ok();
    // The source registry itself, with ECR's exact message.
    let m = put(&t, vec![rule(vec![dest("eu-west-1", DEST), dest(REGION, ACCOUNT)])])
        .await
        .err(bad, invalid);
    assert_eq!(
        m,
        "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: \
         'Replication destination cannot be the same as the source registry'"
    );
    // Same account in another region, another account in this region: fine.
    put(&t, vec![rule(vec![dest("eu-west-1", ACCOUNT), dest(REGION, DEST)])])
        .await
        .ok();
    // Filters of 2 to 256 characters.
    for f in ["a".to_string(), "a".repeat(257)] {
        let m = put(&t, vec![filtered(vec![dest("eu-west-1", DEST)], &f, "PREFIX_MATCH")])
            .await
            .err(bad, invalid);
        assert!(
            m.contains("filter") && m.contains("between 2 and 256"),
            "{}: {m}",
            f.len()
        );
    }
    put(
        &t,
        vec![filtered(
            vec![dest("eu-west-1", DEST)],
            &"a".repeat(256),
            "PREFIX_MATCH",
        )],
    )
    .await
    .ok();
    // PREFIX_MATCH only.
    let m = put(&t, vec![filtered(vec![dest("eu-west-1", DEST)], "prod", "WILDCARD")])
        .await
        .err(bad, invalid);
    assert!(m.contains("filterType") && m.contains("PREFIX_MATCH"), "{m}");
    // A malformed destination.
    let m = put(&t, vec![rule(vec![dest("eu-west-1", "12")])])
        .await
        .err(bad, invalid);
    assert!(m.contains("registryId"), "{m}");
    // Nothing refused was stored: the last accepted configuration stands.
    let reg = t.call("DescribeRegistry", json!({})).await.ok();
    assert_eq!(
        reg["replicationConfiguration"]["rules"][0]["repositoryFilters"][0]["filter"],
        "a".repeat(256)
    );
}

#[tokio::test]
async fn describe_registry_echoes_the_configuration() {
    let t = T::new().await;
    let reg = t.call("DescribeRegistry", json!({})).await.ok();
    assert_eq!(
        reg,
        json!({"registryId": ACCOUNT, "replicationConfiguration": {"rules": []}})
    );
    let config = json!({"rules": [
        {"destinations": [{"region": "eu-west-1", "registryId": DEST}],
         "repositoryFilters": [{"filter": "prod/", "filterType": "PREFIX_MATCH"}]},
        {"destinations": [{"region": "ap-northeast-1", "registryId": ACCOUNT}]},
    ]});
    let out = t
        .call(
            "PutReplicationConfiguration",
            json!({"replicationConfiguration": config}),
        )
        .await
        .ok();
    assert_eq!(out, json!({"replicationConfiguration": config}));
    let reg = t.call("DescribeRegistry", json!({})).await.ok();
    assert_eq!(reg, json!({"registryId": ACCOUNT, "replicationConfiguration": config}));
    // Another account's registry is its own (and empty).
    assert_eq!(stored_config(&t, OTHER).await, json!({"rules": []}));
    // Empty rules: replication off, echoed as such.
    put(&t, vec![]).await.ok();
    let reg = t.call("DescribeRegistry", json!({})).await.ok();
    assert_eq!(reg["replicationConfiguration"], json!({"rules": []}));
}

/// What the store holds for an account (read through the configuration's own loader).
async fn stored_config(t: &T, account: &str) -> Value {
    let c = kura_replication::ReplicationConfiguration::load(t.s.store.as_ref() as &dyn ControlStore, account)
        .await
        .unwrap();
    serde_json::to_value(c).unwrap()
}

#[tokio::test]
async fn image_replication_status_lists_the_status_rows() {
    let t = T::new().await;
    let (repo, digest) = t.image(ACCOUNT, "prod/api", "a", Some("v1")).await;
    let by_tag = json!({"repositoryName": "prod/api", "imageId": {"imageTag": "v1"}});
    let out = t.call("DescribeImageReplicationStatus", by_tag.clone()).await.ok();
    assert_eq!(
        out,
        json!({"repositoryName": "prod/api", "imageId": {"imageDigest": digest, "imageTag": "v1"},
               "replicationStatuses": []})
    );
    t.set_status(repo, &digest, "eu-west-1", "COMPLETE", None).await;
    t.set_status(
        repo,
        &digest,
        "ap-northeast-1",
        "FAILED",
        Some(("REPLICATION_PERMISSION_DENIED", "no registry policy")),
    )
    .await;
    let out = t
        .call(
            "DescribeImageReplicationStatus",
            json!({"repositoryName": "prod/api", "imageId": {"imageDigest": digest}}),
        )
        .await
        .ok();
    assert_eq!(out["imageId"], json!({"imageDigest": digest}));
    assert_eq!(
        out["replicationStatuses"],
        json!([
            {"region": "ap-northeast-1", "registryId": DEST, "status": "FAILED",
             "failureCode": "REPLICATION_PERMISSION_DENIED"},
            {"region": "eu-west-1", "registryId": DEST, "status": "COMPLETE"},
        ])
    );
    // A missing image, tag or repository: ECR's errors.
    let bad = StatusCode::BAD_REQUEST;
    let m = t
        .call(
            "DescribeImageReplicationStatus",
            json!({"repositoryName": "prod/api", "imageId": {"imageTag": "nope"}}),
        )
        .await
        .err(bad, "ImageNotFoundException");
    assert!(m.contains("prod/api") && m.contains(ACCOUNT), "{m}");
    let zero = format!("sha256:{}", "0".repeat(64));
    t.call(
        "DescribeImageReplicationStatus",
        json!({"repositoryName": "prod/api", "imageId": {"imageDigest": zero}}),
    )
    .await
    .err(bad, "ImageNotFoundException");
    t.call(
        "DescribeImageReplicationStatus",
        json!({"repositoryName": "ghost", "imageId": {"imageTag": "v1"}}),
    )
    .await
    .err(bad, "RepositoryNotFoundException");
}

#[tokio::test]
async fn another_registrys_statuses_need_that_registrys_permission() {
    let t = T::new().await;
    // The same repository name and tag in both accounts, with different rows.
    let (mine, my_digest) = t.image(ACCOUNT, "prod/api", "mine", Some("v1")).await;
    let (theirs, their_digest) = t.image(OTHER, "prod/api", "theirs", Some("v1")).await;
    t.set_status(mine, &my_digest, "eu-west-1", "COMPLETE", None).await;
    t.set_status(theirs, &their_digest, "ap-northeast-1", "IN_PROGRESS", None)
        .await;
    let input = json!({"registryId": OTHER, "repositoryName": "prod/api", "imageId": {"imageTag": "v1"}});
    // Authorized against OTHER (which grants nothing): denied, not answered
    // from the caller's own registry.
    let m = t
        .call("DescribeImageReplicationStatus", input.clone())
        .await
        .err(StatusCode::FORBIDDEN, "AccessDeniedException");
    assert!(
        m.contains("ecr:DescribeImageReplicationStatus") && m.contains(OTHER),
        "{m}"
    );
    for (op, input) in [
        ("ListReplicationBackfills", json!({"registryId": OTHER})),
        (
            "StartReplicationBackfill",
            json!({"registryId": OTHER, "destination": dest("eu-west-1", DEST)}),
        ),
    ] {
        t.call(op, input)
            .await
            .err(StatusCode::FORBIDDEN, "AccessDeniedException");
    }
    // Without registryId: the caller's own image.
    let own = t
        .call(
            "DescribeImageReplicationStatus",
            json!({"repositoryName": "prod/api", "imageId": {"imageTag": "v1"}}),
        )
        .await
        .ok();
    assert_eq!(own["imageId"]["imageDigest"], my_digest.as_str());
    assert_eq!(own["replicationStatuses"][0]["region"], "eu-west-1");
    // OTHER's repository policy lets ACCOUNT read it: OTHER's rows.
    t.s.store
        .resource_policy_put(
            &kura_ecr::authz::repository_arn(REGION, OTHER, "prod/api"),
            &json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
                "Action": "ecr:DescribeImageReplicationStatus"}]})
            .to_string(),
        )
        .await
        .unwrap();
    let out = t.call("DescribeImageReplicationStatus", input).await.ok();
    assert_eq!(out["imageId"]["imageDigest"], their_digest.as_str());
    assert_eq!(
        out["replicationStatuses"],
        json!([{"region": "ap-northeast-1", "registryId": DEST, "status": "IN_PROGRESS"}])
    );
}

#[tokio::test]
async fn backfills_queue_the_existing_images_and_report_their_outcome() {
    let t = T::new().await;
    let bad = StatusCode::BAD_REQUEST;
    let (api, a) = t.image(ACCOUNT, "prod/api", "a", Some("v1")).await;
    let (_, b) = t.image(ACCOUNT, "prod/api", "b", None).await;
    let (web, c) = t.image(ACCOUNT, "prod/web", "c", Some("latest")).await;
    t.image(ACCOUNT, "dev/tool", "d", Some("v1")).await;
    let to = dest("eu-west-1", DEST);

    // No configuration names the destination yet.
    let m = t
        .call("StartReplicationBackfill", json!({"destination": to}))
        .await
        .err(bad, "InvalidParameterException");
    assert!(m.contains("destination") && m.contains(DEST), "{m}");
    put(&t, vec![filtered(vec![to.clone()], "prod/", "PREFIX_MATCH")])
        .await
        .ok();
    let m = t
        .call(
            "StartReplicationBackfill",
            json!({"destination": dest("us-west-2", DEST)}),
        )
        .await
        .err(bad, "InvalidParameterException");
    assert!(m.contains("us-west-2"), "{m}");

    let started = t
        .call("StartReplicationBackfill", json!({"destination": to}))
        .await
        .ok();
    let id = started["replicationBackfillId"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(started["registryId"], ACCOUNT);
    assert_eq!(started["destination"], to);
    assert_eq!(started["status"], "PREPARING");
    assert!(started["startedAt"].as_f64().is_some_and(|s| s > 1.0e9));
    // One running backfill per destination.
    let m = t
        .call("StartReplicationBackfill", json!({"destination": to}))
        .await
        .err(bad, "ReplicationBackfillInProgressException");
    assert!(m.contains("eu-west-1"), "{m}");
    let list = t.call("ListReplicationBackfills", json!({})).await.ok();
    assert_eq!(list["registryId"], ACCOUNT);
    assert_eq!(list["backfills"].as_array().unwrap().len(), 1);
    assert_eq!(list["backfills"][0]["status"], "PREPARING");
    assert_eq!(list["backfills"][0]["progress"]["totalReplicationCount"], 0);

    // The job queues the covered repositories' images, each once, marked
    // with the backfill, and they are IN_PROGRESS for the destination.
    assert_eq!(t.run_backfills().await, 1);
    let mut queued: Vec<(String, String)> = t
        .replicate_jobs()
        .await
        .iter()
        .map(|p| {
            assert_eq!(p["backfill"], id.as_str());
            assert_eq!(p["destination"], to);
            (
                p["repository"].as_str().unwrap().to_string(),
                p["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    queued.sort();
    let mut want = vec![
        ("prod/api".to_string(), a.clone()),
        ("prod/api".to_string(), b.clone()),
        ("prod/web".to_string(), c.clone()),
    ];
    want.sort();
    assert_eq!(queued, want, "dev/tool is not covered by the rule");
    let st = t
        .call(
            "DescribeImageReplicationStatus",
            json!({"repositoryName": "prod/web", "imageId": {"imageTag": "latest"}}),
        )
        .await
        .ok();
    assert_eq!(st["replicationStatuses"][0]["status"], "IN_PROGRESS");
    let r = t
        .call(
            "DescribeReplicationBackfillResults",
            json!({"replicationBackfillId": id}),
        )
        .await
        .ok();
    assert_eq!(r["status"], "IN_PROGRESS");
    assert_eq!(
        r["progress"],
        json!({"totalReplicationCount": 3, "completedReplicationCount": 0,
               "failedReplicationCount": 0, "failureCodes": []})
    );
    assert_eq!(r["results"], json!([]));
    assert!(r.get("endedAt").is_none());

    // The replicate jobs' outcomes (written here as the job writes them).
    t.set_status(api, &a, "eu-west-1", "COMPLETE", None).await;
    t.set_status(
        api,
        &b,
        "eu-west-1",
        "FAILED",
        Some(("REPLICATION_PERMISSION_DENIED", "no registry policy")),
    )
    .await;
    let r = t
        .call(
            "DescribeReplicationBackfillResults",
            json!({"replicationBackfillId": id}),
        )
        .await
        .ok();
    assert_eq!(r["status"], "IN_PROGRESS", "prod/web is still replicating");
    assert_eq!(r["progress"]["completedReplicationCount"], 1);
    assert_eq!(r["progress"]["failedReplicationCount"], 1);
    assert_eq!(r["progress"]["failureCodes"], json!(["REPLICATION_PERMISSION_DENIED"]));
    t.set_status(web, &c, "eu-west-1", "COMPLETE", None).await;
    let r = t
        .call(
            "DescribeReplicationBackfillResults",
            json!({"replicationBackfillId": id}),
        )
        .await
        .ok();
    assert_eq!(r["status"], "COMPLETE");
    assert!(r["endedAt"].as_f64().is_some());
    assert_eq!(r["registryId"], ACCOUNT);
    assert_eq!(r["destination"], to);
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let of = |d: &str| {
        results
            .iter()
            .find(|x| x["imageId"]["imageDigest"] == d)
            .unwrap()
            .clone()
    };
    assert_eq!(
        of(&a),
        json!({"repositoryName": "prod/api", "imageId": {"imageDigest": a, "imageTag": "v1"}, "status": "COMPLETE"})
    );
    assert_eq!(
        of(&b),
        json!({"repositoryName": "prod/api", "imageId": {"imageDigest": b}, "status": "FAILED",
               "failureCode": "REPLICATION_PERMISSION_DENIED"})
    );
    // Filtered and paged.
    let failed = t
        .call(
            "DescribeReplicationBackfillResults",
            json!({"replicationBackfillId": id, "resultStatusFilter": "FAILED"}),
        )
        .await
        .ok();
    assert_eq!(failed["results"].as_array().unwrap().len(), 1);
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut input = json!({"replicationBackfillId": id, "maxResults": 2});
        if let Some(tk) = &token {
            input["nextToken"] = json!(tk);
        }
        let page = t.call("DescribeReplicationBackfillResults", input).await.ok();
        let rs = page["results"].as_array().unwrap();
        assert!(rs.len() <= 2);
        seen.extend(
            rs.iter()
                .map(|x| x["imageId"]["imageDigest"].as_str().unwrap().to_string()),
        );
        match page["nextToken"].as_str() {
            Some(tk) => token = Some(tk.to_string()),
            None => break,
        }
    }
    seen.sort();
    let mut all = vec![a.clone(), b.clone(), c.clone()];
    all.sort();
    assert_eq!(seen, all);
    t.call(
        "DescribeReplicationBackfillResults",
        json!({"replicationBackfillId": id, "nextToken": "!!"}),
    )
    .await
    .err(bad, "InvalidParameterException");

    // Finished: stopping is refused; a new backfill may start, and stopped
    // while preparing, its job queues nothing more.
    let m = t
        .call("StopReplicationBackfill", json!({"replicationBackfillId": id}))
        .await
        .err(bad, "ReplicationBackfillInvalidStatusException");
    assert!(m.contains("COMPLETE"), "{m}");
    let second = t
        .call("StartReplicationBackfill", json!({"destination": to}))
        .await
        .ok();
    let id2 = second["replicationBackfillId"].as_str().unwrap().to_string();
    assert_ne!(id2, id);
    let stopped = t
        .call("StopReplicationBackfill", json!({"replicationBackfillId": id2}))
        .await
        .ok();
    assert_eq!(stopped["status"], "STOPPING");
    assert_eq!(stopped["replicationBackfillId"], id2.as_str());
    assert_eq!(stopped["destination"], to);
    // Still running until its job sees it: the destination stays taken.
    t.call("StartReplicationBackfill", json!({"destination": to}))
        .await
        .err(bad, "ReplicationBackfillInProgressException");
    assert_eq!(t.run_backfills().await, 1);
    let r = t
        .call(
            "DescribeReplicationBackfillResults",
            json!({"replicationBackfillId": id2}),
        )
        .await
        .ok();
    assert_eq!(r["status"], "STOPPED");
    assert!(r["endedAt"].as_f64().is_some());
    assert_eq!(
        r["progress"]["totalReplicationCount"], 0,
        "nothing queued after the stop"
    );
    t.call("StopReplicationBackfill", json!({"replicationBackfillId": id2}))
        .await
        .err(bad, "ReplicationBackfillInvalidStatusException");

    // Listed in start order, paged.
    let list = t.call("ListReplicationBackfills", json!({})).await.ok();
    let ids: Vec<&str> = list["backfills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["replicationBackfillId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str(), id2.as_str()]);
    assert_eq!(list["backfills"][0]["progress"]["completedReplicationCount"], 2);
    let p1 = t.call("ListReplicationBackfills", json!({"maxResults": 1})).await.ok();
    assert_eq!(p1["backfills"][0]["replicationBackfillId"], id.as_str());
    let p2 = t
        .call(
            "ListReplicationBackfills",
            json!({"maxResults": 1, "nextToken": p1["nextToken"]}),
        )
        .await
        .ok();
    assert_eq!(p2["backfills"][0]["replicationBackfillId"], id2.as_str());
    assert!(p2.get("nextToken").is_none());

    // Unknown ids, and another account's id, are not found.
    let ghost = "01234567-89ab-cdef-0123-456789abcdef";
    for op in ["StopReplicationBackfill", "DescribeReplicationBackfillResults"] {
        let m = t
            .call(op, json!({"replicationBackfillId": ghost}))
            .await
            .err(bad, "ReplicationBackfillNotFoundException");
        assert!(m.contains(ghost) && m.contains(ACCOUNT), "{m}");
    }
    let theirs = kura_replication::backfill::start(
        t.s.ecr.jobs(),
        t.s.store.as_ref() as &dyn ReplicationStore,
        OTHER,
        &kura_replication::Destination {
            region: "eu-west-1".into(),
            registry_id: DEST.into(),
        },
    )
    .await
    .unwrap()
    .unwrap();
    t.call(
        "DescribeReplicationBackfillResults",
        json!({"replicationBackfillId": theirs.id}),
    )
    .await
    .err(bad, "ReplicationBackfillNotFoundException");
}

/// Push a real image (config and one layer) through the data-plane service;
/// its manifest digest and bytes.
async fn push_image(t: &T, account: &str, repo: &str, tag: &str, layer: &[u8]) -> (String, Vec<u8>) {
    use futures::StreamExt;
    let name: kura_oci::RepoName = repo.parse().unwrap();
    let actor = kura_registry::Actor::service(account, "test");
    t.s.store.repo_get_or_create(account, repo).await.unwrap();
    let blob = |data: Vec<u8>| {
        let digest = kura_oci::Digest::sha256(&data).to_string();
        let registry = t.s.registry.clone();
        let (name, actor) = (name.clone(), actor.clone());
        async move {
            let bytes = bytes::Bytes::from(data);
            let body: kura_registry::service::Body =
                futures::stream::once(async move { Ok::<_, std::io::Error>(bytes) }).boxed();
            registry
                .start_upload(account, &name, None, Some(&digest), &actor, body)
                .await
                .unwrap();
            digest
        }
    };
    let config = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#);
    let cd = blob(config.clone().into_bytes()).await;
    let ld = blob(layer.to_vec()).await;
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
    }))
    .unwrap();
    let out =
        t.s.registry
            .put_manifest(
                account,
                &name,
                tag,
                &[],
                Some("application/vnd.oci.image.manifest.v1+json"),
                manifest.clone(),
                &actor,
            )
            .await
            .unwrap();
    (out.digest.to_string(), manifest)
}

/// The whole path with the engine's replicate job: images pushed before the
/// configuration reach another account of this deployment through a
/// backfill, which then reports them COMPLETE.
#[tokio::test]
async fn a_backfill_replicates_existing_images_with_the_replicate_job() {
    let t = T::new().await;
    let (d1, m1) = push_image(&t, ACCOUNT, "prod/api", "v1", b"layer one").await;
    let (d2, m2) = push_image(&t, ACCOUNT, "prod/api", "v2", b"layer two").await;
    put(&t, vec![rule(vec![dest(REGION, OTHER)])]).await.ok();
    // OTHER lets ACCOUNT replicate into it.
    t.s.store
        .resource_policy_put(
            &kura_authz::registry_arn(REGION, OTHER),
            &json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
                "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
                "Resource": format!("arn:aws:ecr:{REGION}:{OTHER}:repository/*")}]})
            .to_string(),
        )
        .await
        .unwrap();
    let started = t
        .call("StartReplicationBackfill", json!({"destination": dest(REGION, OTHER)}))
        .await
        .ok();
    let id = started["replicationBackfillId"].as_str().unwrap().to_string();
    assert_eq!(t.run_backfills().await, 1);

    // Run the queued replicate jobs as a runner would.
    let store = t.s.store.clone();
    let replicator = kura_replication::job::Replicator::new(
        t.s.registry.clone(),
        t.s.ecr.authz().clone(),
        store.clone(),
        store.clone(),
        t.s.ecr.jobs().clone(),
        kura_replication::peer::Peers::new(REGION, Default::default(), None, std::time::Duration::from_secs(5)),
        std::time::Duration::from_millis(10),
    );
    let jobs = store
        .job_claim(&[kura_replication::REPLICATE_JOB.to_string()], "test", 60_000, 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2);
    for j in &jobs {
        replicator.run(j).await.unwrap();
        assert!(store.job_complete(j.id, "test").await.unwrap());
    }

    let r = t
        .call(
            "DescribeReplicationBackfillResults",
            json!({"replicationBackfillId": id}),
        )
        .await
        .ok();
    assert_eq!(r["status"], "COMPLETE", "{r}");
    assert_eq!(r["progress"]["completedReplicationCount"], 2);
    assert_eq!(r["progress"]["failedReplicationCount"], 0);
    // Byte-exact in the destination account, under the tags.
    let dest_repo = store.repo_get(OTHER, "prod/api").await.unwrap().unwrap();
    for (tag, digest, body) in [("v1", &d1, &m1), ("v2", &d2, &m2)] {
        let got = store
            .manifest_get(dest_repo.id, kura_store::meta::ManifestKey::Tag(tag))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got.body, body);
        assert_eq!(&got.digest, digest);
    }
    let st = t
        .call(
            "DescribeImageReplicationStatus",
            json!({"repositoryName": "prod/api", "imageId": {"imageTag": "v2"}}),
        )
        .await
        .ok();
    assert_eq!(
        st["replicationStatuses"],
        json!([{"region": REGION, "registryId": OTHER, "status": "COMPLETE"}])
    );
}

/// A manifest put straight into the store (children and subject as given).
async fn raw_manifest(
    t: &T,
    repo: i64,
    name: &str,
    children: &[&str],
    subject: Option<&str>,
    tag: Option<&str>,
) -> String {
    let body = json!({"schemaVersion": 2, "n": name}).to_string().into_bytes();
    let digest = kura_oci::Digest::sha256(&body).to_string();
    let tags: Vec<TagWrite> = tag
        .map(|t| TagWrite {
            name: t.into(),
            immutable: false,
        })
        .into_iter()
        .collect();
    t.s.store
        .manifest_put(
            repo,
            &NewManifest {
                digest: digest.clone(),
                media_type: "application/vnd.oci.image.index.v1+json".into(),
                artifact_type: None,
                subject: subject.map(String::from),
                annotations: None,
                body,
                blobs: vec![],
                children: children.iter().map(|c| c.to_string()).collect(),
            },
            &tags,
        )
        .await
        .unwrap();
    digest
}

/// The job pages through more images than one page, queues an index without
/// its children and an image without its referrer (they go with it), resumes
/// after its cursor, and an IN_PROGRESS backfill stops at once.
#[tokio::test]
async fn backfill_job_pages_groups_and_resumes() {
    let t = T::new().await;
    let bad = StatusCode::BAD_REQUEST;
    let mut many = Vec::new();
    for i in 0..150 {
        many.push(t.image(ACCOUNT, "prod/many", &format!("m{i}"), None).await.1);
    }
    many.sort();
    let grouped = t.s.store.repo_get_or_create(ACCOUNT, "prod/grouped").await.unwrap();
    let c1 = raw_manifest(&t, grouped, "child1", &[], None, None).await;
    let c2 = raw_manifest(&t, grouped, "child2", &[], None, None).await;
    let index = raw_manifest(&t, grouped, "index", &[&c1, &c2], None, Some("multi")).await;
    let (_, plain) = t.image(ACCOUNT, "prod/grouped", "plain", Some("v1")).await;
    let _sig = raw_manifest(&t, grouped, "signature", &[], Some(&plain), None).await;
    let (one, two) = (dest("eu-west-1", DEST), dest("ap-northeast-1", DEST));
    put(&t, vec![rule(vec![one.clone(), two.clone()])]).await.ok();

    let id1 = t
        .call("StartReplicationBackfill", json!({"destination": one}))
        .await
        .ok()["replicationBackfillId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(t.run_backfills().await, 1);
    let r = t
        .call(
            "DescribeReplicationBackfillResults",
            json!({"replicationBackfillId": id1}),
        )
        .await
        .ok();
    assert_eq!(r["status"], "IN_PROGRESS");
    assert_eq!(
        r["progress"]["totalReplicationCount"], 152,
        "150 images, the index (children with it) and the signed image (its referrer with it)"
    );
    let grouped_jobs: Vec<String> = t
        .replicate_jobs()
        .await
        .iter()
        .filter(|p| p["repository"] == "prod/grouped")
        .map(|p| p["digest"].as_str().unwrap().to_string())
        .collect();
    let mut want = vec![index.clone(), plain.clone()];
    want.sort();
    let mut got = grouped_jobs.clone();
    got.sort();
    assert_eq!(got, want);

    // Stopping an IN_PROGRESS backfill: STOPPED at once, and the destination is free.
    let stopped = t
        .call("StopReplicationBackfill", json!({"replicationBackfillId": id1}))
        .await
        .ok();
    assert_eq!(stopped["status"], "STOPPED");
    t.call("StopReplicationBackfill", json!({"replicationBackfillId": id1}))
        .await
        .err(bad, "ReplicationBackfillInvalidStatusException");

    // A job that restarts after its cursor queues only what follows it.
    let id2 = t
        .call("StartReplicationBackfill", json!({"destination": two}))
        .await
        .ok()["replicationBackfillId"]
        .as_str()
        .unwrap()
        .to_string();
    let cursor = json!({"repository": "prod/many", "digest": many[99]}).to_string();
    t.s.store.repl_backfill_cursor_set(&id2, &cursor).await.unwrap();
    assert_eq!(t.run_backfills().await, 1);
    let r = t
        .call(
            "DescribeReplicationBackfillResults",
            json!({"replicationBackfillId": id2}),
        )
        .await
        .ok();
    // prod/grouped sorts before prod/many: already done by the run before the restart.
    assert_eq!(r["progress"]["totalReplicationCount"], 50);
    let after: Vec<String> = t
        .replicate_jobs()
        .await
        .iter()
        .filter(|p| p["destination"] == two)
        .map(|p| p["digest"].as_str().unwrap().to_string())
        .collect();
    let mut after_sorted = after.clone();
    after_sorted.sort();
    assert_eq!(after_sorted, many[100..].to_vec());
}
