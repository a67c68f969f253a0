//! The Secrets Manager operations over a real store (SQLite, or PostgreSQL with
//! KURA_TEST_DATABASE_URL), called the way the pipeline calls them after authentication and
//! model validation, as trusted calls of one account. Each test names what it guards.

use std::sync::Arc;

use kura_auth::seal::MasterKey;
use kura_secrets::{Ctx, Secrets};
use kura_store::secrets::SecretCommit;
use kura_store::{SecretsStore, SqlMetaStore};
use serde_json::{json, Value};

const A: &str = "111111111111";
const B: &str = "222222222222";
const REGION: &str = "us-east-1";
const TOKEN1: &str = "11111111-1111-4111-8111-111111111111";
const TOKEN2: &str = "22222222-2222-4222-8222-222222222222";
const CREDS: &str = r#"{"username":"kura","accessToken":"dckr_pat_s3cr3t-value"}"#;

struct T {
    sm: Secrets,
    store: Arc<SqlMetaStore>,
    _dir: tempfile::TempDir,
}

async fn setup() -> T {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await);
    let sm = Secrets::new(store.clone(), MasterKey::generate(), REGION);
    T { sm, store, _dir: dir }
}

async fn ok(t: &T, account: &str, op: &str, input: Value) -> Value {
    t.sm.call(Ctx::trusted(account), op, &input)
        .await
        .unwrap_or_else(|e| panic!("{op}: {e}"))
}

async fn err(t: &T, account: &str, op: &str, input: Value) -> (String, String) {
    match t.sm.call(Ctx::trusted(account), op, &input).await {
        Ok(v) => panic!("{op} succeeded: {v}"),
        Err(e) => (e.kind.to_string(), e.message),
    }
}

fn is_arn(arn: &str, account: &str, name: &str) -> bool {
    let prefix = format!("arn:aws:secretsmanager:{REGION}:{account}:secret:{name}-");
    arn.strip_prefix(&prefix)
        .is_some_and(|s| s.len() == 6 && s.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Create, read (by name, full ARN, partial ARN), put (AWSCURRENT moves, AWSPREVIOUS
/// follows), read by stage and version id, update, describe. (Acceptance: CRUD, ARNs with a
/// 6-character suffix, lookup by name or ARN, version ids and stages.)
#[tokio::test]
async fn create_read_put_update_describe() {
    let t = setup().await;
    let name = "ecr-pullthroughcache/hub";
    let c = ok(
        &t,
        A,
        "CreateSecret",
        json!({"Name": name, "SecretString": CREDS, "ClientRequestToken": TOKEN1, "Description": "Docker Hub"}),
    )
    .await;
    let arn = c["ARN"].as_str().unwrap().to_string();
    assert!(is_arn(&arn, A, name), "{arn}");
    assert_eq!(
        (c["Name"].as_str(), c["VersionId"].as_str()),
        (Some(name), Some(TOKEN1))
    );

    for id in [
        name.to_string(),
        arn.clone(),
        format!("arn:aws:secretsmanager:{REGION}:{A}:secret:{name}"),
    ] {
        let g = ok(&t, A, "GetSecretValue", json!({"SecretId": id})).await;
        assert_eq!(g["SecretString"], CREDS, "{id}");
        assert_eq!(g["ARN"], arn.as_str());
        assert_eq!(g["VersionStages"], json!(["AWSCURRENT"]));
        assert!(g.get("SecretBinary").is_none());
    }
    // Another region's ARN names nothing here.
    let other = arn.replace(REGION, "eu-west-1");
    assert_eq!(
        err(&t, A, "GetSecretValue", json!({"SecretId": other})).await.0,
        "ResourceNotFoundException"
    );

    let p = ok(
        &t,
        A,
        "PutSecretValue",
        json!({"SecretId": name, "SecretString": "v2", "ClientRequestToken": TOKEN2}),
    )
    .await;
    assert_eq!(p["VersionStages"], json!(["AWSCURRENT"]));
    let g = ok(&t, A, "GetSecretValue", json!({"SecretId": name})).await;
    assert_eq!(
        (g["SecretString"].as_str(), g["VersionId"].as_str()),
        (Some("v2"), Some(TOKEN2))
    );
    let prev = ok(
        &t,
        A,
        "GetSecretValue",
        json!({"SecretId": name, "VersionStage": "AWSPREVIOUS"}),
    )
    .await;
    assert_eq!(prev["SecretString"], CREDS);
    let by_id = ok(&t, A, "GetSecretValue", json!({"SecretId": name, "VersionId": TOKEN1})).await;
    assert_eq!(by_id["VersionStages"], json!(["AWSPREVIOUS"]));
    let (k, m) = err(
        &t,
        A,
        "GetSecretValue",
        json!({"SecretId": name, "VersionId": TOKEN1, "VersionStage": "AWSCURRENT"}),
    )
    .await;
    assert_eq!(k, "ResourceNotFoundException", "{m}");

    // A custom label leaves AWSCURRENT where it is.
    ok(
        &t,
        A,
        "PutSecretValue",
        json!({"SecretId": name, "SecretString": "staged", "VersionStages": ["blue"]}),
    )
    .await;
    assert_eq!(
        ok(&t, A, "GetSecretValue", json!({"SecretId": name})).await["SecretString"],
        "v2"
    );
    assert_eq!(
        ok(
            &t,
            A,
            "GetSecretValue",
            json!({"SecretId": name, "VersionStage": "blue"})
        )
        .await["SecretString"],
        "staged"
    );

    let u = ok(
        &t,
        A,
        "UpdateSecret",
        json!({"SecretId": arn, "SecretString": "v3", "Description": "new"}),
    )
    .await;
    let v3 = u["VersionId"].as_str().unwrap().to_string();
    let d = ok(&t, A, "DescribeSecret", json!({"SecretId": name})).await;
    assert_eq!(d["Description"], "new");
    assert_eq!(d["ARN"], arn.as_str());
    let stages = d["VersionIdsToStages"].as_object().unwrap();
    assert_eq!(stages[&v3], json!(["AWSCURRENT"]));
    assert_eq!(stages[TOKEN2], json!(["AWSPREVIOUS"]));
    assert!(
        !stages.contains_key(TOKEN1),
        "a version without labels is not listed: {d}"
    );
    assert!(d["LastAccessedDate"].is_number() && d["CreatedDate"].is_number() && d.get("DeletedDate").is_none());

    // Description only: no new version.
    let u = ok(&t, A, "UpdateSecret", json!({"SecretId": name, "Description": "only"})).await;
    assert!(u.get("VersionId").is_none());
    assert_eq!(
        ok(&t, A, "GetSecretValue", json!({"SecretId": name})).await["SecretString"],
        "v3"
    );

    // A binary secret comes back as base64, never as a string.
    ok(
        &t,
        A,
        "CreateSecret",
        json!({"Name": "bin", "SecretBinary": "AAEC/w=="}),
    )
    .await;
    let g = ok(&t, A, "GetSecretValue", json!({"SecretId": "bin"})).await;
    assert_eq!(g["SecretBinary"], "AAEC/w==");
    assert!(g.get("SecretString").is_none());
    // A secret without a value has no current version.
    ok(&t, A, "CreateSecret", json!({"Name": "empty"})).await;
    let (k, m) = err(&t, A, "GetSecretValue", json!({"SecretId": "empty"})).await;
    assert_eq!(
        (k.as_str(), m.contains("AWSCURRENT")),
        ("ResourceNotFoundException", true),
        "{m}"
    );
}

/// The idempotency token: the same token and value again change nothing; the same token with
/// another value is `ResourceExistsException`; a taken name likewise. Refusals of bad input.
#[tokio::test]
async fn errors_and_idempotency() {
    let t = setup().await;
    let c = json!({"Name": "s", "SecretString": "a", "ClientRequestToken": TOKEN1});
    let first = ok(&t, A, "CreateSecret", c.clone()).await;
    let again = ok(&t, A, "CreateSecret", c).await;
    assert_eq!(first["ARN"], again["ARN"]);
    let (k, _) = err(&t, A, "CreateSecret", json!({"Name": "s", "SecretString": "b"})).await;
    assert_eq!(k, "ResourceExistsException");
    let (k, _) = err(
        &t,
        A,
        "CreateSecret",
        json!({"Name": "s", "SecretString": "b", "ClientRequestToken": TOKEN1}),
    )
    .await;
    assert_eq!(k, "ResourceExistsException");

    let put = json!({"SecretId": "s", "SecretString": "x", "ClientRequestToken": TOKEN2});
    ok(&t, A, "PutSecretValue", put.clone()).await;
    ok(&t, A, "PutSecretValue", put).await;
    let d = ok(&t, A, "DescribeSecret", json!({"SecretId": "s"})).await;
    assert_eq!(d["VersionIdsToStages"].as_object().unwrap().len(), 2, "{d}");
    let (k, m) = err(
        &t,
        A,
        "PutSecretValue",
        json!({"SecretId": "s", "SecretString": "other", "ClientRequestToken": TOKEN2}),
    )
    .await;
    assert_eq!(k, "ResourceExistsException", "{m}");

    let cases = [
        ("CreateSecret", json!({"Name": "bad name"}), "InvalidParameterException"),
        ("CreateSecret", json!({"Name": "a:b"}), "InvalidParameterException"),
        (
            "CreateSecret",
            json!({"Name": "both", "SecretString": "a", "SecretBinary": "AA=="}),
            "InvalidParameterException",
        ),
        (
            "CreateSecret",
            json!({"Name": "k", "KmsKeyId": "arn:aws:kms:us-east-1:111111111111:key/x"}),
            "InvalidParameterException",
        ),
        (
            "CreateSecret",
            json!({"Name": "r", "AddReplicaRegions": [{"Region": "eu-west-1"}]}),
            "InvalidRequestException",
        ),
        (
            "CreateSecret",
            json!({"Name": "t", "Tags": [{"Key": "aws:x", "Value": "1"}]}),
            "InvalidParameterException",
        ),
        (
            "CreateSecret",
            json!({"Name": "t", "Tags": [{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}]}),
            "InvalidParameterException",
        ),
        ("PutSecretValue", json!({"SecretId": "s"}), "InvalidParameterException"),
        (
            "PutSecretValue",
            json!({"SecretId": "nope", "SecretString": "x"}),
            "ResourceNotFoundException",
        ),
        (
            "DescribeSecret",
            json!({"SecretId": "nope"}),
            "ResourceNotFoundException",
        ),
        (
            "DescribeSecret",
            json!({"SecretId": "arn:aws:ecr:us-east-1:111111111111:repository/s"}),
            "ResourceNotFoundException",
        ),
        (
            "DeleteSecret",
            json!({"SecretId": "s", "RecoveryWindowInDays": 6}),
            "InvalidParameterException",
        ),
        (
            "DeleteSecret",
            json!({"SecretId": "s", "RecoveryWindowInDays": 31}),
            "InvalidParameterException",
        ),
        (
            "DeleteSecret",
            json!({"SecretId": "s", "RecoveryWindowInDays": 7, "ForceDeleteWithoutRecovery": true}),
            "InvalidParameterException",
        ),
        ("ListSecrets", json!({"NextToken": "zz"}), "InvalidNextTokenException"),
        (
            "ListSecrets",
            json!({"NextToken": hex::encode("name|asc|1")}),
            "InvalidNextTokenException",
        ),
        (
            "RotateSecret",
            json!({"SecretId": "s"}),
            "UnsupportedOperationException",
        ),
    ];
    for (op, input, want) in cases {
        let (k, m) = err(&t, A, op, input.clone()).await;
        assert_eq!(k, want, "{op} {input}: {m}");
    }
    // Nothing above changed the secret.
    assert_eq!(
        ok(&t, A, "GetSecretValue", json!({"SecretId": "s"})).await["SecretString"],
        "x"
    );
}

/// Deletion with a recovery window: the value cannot be read, the secret is listed only with
/// IncludePlannedDeletion, its name cannot be taken, RestoreSecret brings it back. Forced
/// deletion removes it at once; a secret made again under the name has another ARN, and the
/// old ARN finds nothing (a stale ARN never reaches the new secret). A window that has
/// passed makes the secret absent. (Acceptance: deleted keys.)
#[tokio::test]
async fn deletion_recovery_and_stale_arns() {
    let t = setup().await;
    let c = ok(&t, A, "CreateSecret", json!({"Name": "d", "SecretString": "one"})).await;
    let old_arn = c["ARN"].as_str().unwrap().to_string();
    let del = ok(
        &t,
        A,
        "DeleteSecret",
        json!({"SecretId": "d", "RecoveryWindowInDays": 7}),
    )
    .await;
    let when = del["DeletionDate"].as_f64().unwrap();
    let now = kura_store::now_millis() as f64 / 1000.0;
    assert!((when - now - 7.0 * 86400.0).abs() < 120.0, "{del}");
    for (op, input) in [
        ("GetSecretValue", json!({"SecretId": "d"})),
        ("PutSecretValue", json!({"SecretId": "d", "SecretString": "x"})),
        ("UpdateSecret", json!({"SecretId": "d", "Description": "x"})),
        ("DeleteSecret", json!({"SecretId": "d"})),
        ("CreateSecret", json!({"Name": "d", "SecretString": "x"})),
    ] {
        let (k, m) = err(&t, A, op, input).await;
        assert_eq!(k, "InvalidRequestException", "{op}: {m}");
    }
    let d = ok(&t, A, "DescribeSecret", json!({"SecretId": "d"})).await;
    assert!(d["DeletedDate"].is_number(), "{d}");
    assert_eq!(ok(&t, A, "ListSecrets", json!({})).await["SecretList"], json!([]));
    let l = ok(&t, A, "ListSecrets", json!({"IncludePlannedDeletion": true})).await;
    assert_eq!(l["SecretList"][0]["Name"], "d");
    assert!(t.sm.reader().read_secret_string(A, "d").await.unwrap().is_none());

    ok(&t, A, "RestoreSecret", json!({"SecretId": "d"})).await;
    assert_eq!(
        ok(&t, A, "GetSecretValue", json!({"SecretId": "d"})).await["SecretString"],
        "one"
    );
    assert!(ok(&t, A, "DescribeSecret", json!({"SecretId": "d"}))
        .await
        .get("DeletedDate")
        .is_none());

    ok(
        &t,
        A,
        "DeleteSecret",
        json!({"SecretId": old_arn, "ForceDeleteWithoutRecovery": true}),
    )
    .await;
    assert_eq!(
        err(&t, A, "DescribeSecret", json!({"SecretId": "d"})).await.0,
        "ResourceNotFoundException"
    );
    let again = ok(&t, A, "CreateSecret", json!({"Name": "d", "SecretString": "two"})).await;
    let new_arn = again["ARN"].as_str().unwrap();
    assert_ne!(new_arn, old_arn);
    // The old full ARN no longer resolves... to anything but by its name part, which is
    // `d-XXXXXX`, not `d`: not found.
    assert_eq!(
        err(&t, A, "GetSecretValue", json!({"SecretId": old_arn})).await.0,
        "ResourceNotFoundException"
    );
    assert_eq!(
        ok(&t, A, "GetSecretValue", json!({"SecretId": new_arn})).await["SecretString"],
        "two"
    );

    // A recovery window that has passed: the secret is gone to every read, and its name free.
    ok(&t, A, "DeleteSecret", json!({"SecretId": "d"})).await;
    let mut row = t.store.secret_by_name(A, "d", 0).await.unwrap().unwrap();
    row.purge_at = Some(kura_store::now_millis() - 1);
    let commit = SecretCommit {
        row,
        insert: None,
        relabel: vec![],
        remove: vec![],
    };
    assert!(t.store.secret_commit(&commit).await.unwrap());
    assert_eq!(
        err(&t, A, "DescribeSecret", json!({"SecretId": "d"})).await.0,
        "ResourceNotFoundException"
    );
    let l = ok(&t, A, "ListSecrets", json!({"IncludePlannedDeletion": true})).await;
    assert_eq!(l["SecretList"], json!([]));
    // The purge job's query removes the row (and only it).
    assert_eq!(
        t.store.secrets_purge_expired(kura_store::now_millis()).await.unwrap(),
        1
    );
    assert!(t.store.secret_by_name(A, "d", 0).await.unwrap().is_none());
    assert_eq!(ok(&t, A, "ListSecrets", json!({})).await["SecretList"], json!([]));
    ok(&t, A, "CreateSecret", json!({"Name": "d", "SecretString": "three"})).await;
    assert_eq!(
        ok(&t, A, "GetSecretValue", json!({"SecretId": "d"})).await["SecretString"],
        "three"
    );
    assert_eq!(
        t.store.secrets_purge_expired(kura_store::now_millis()).await.unwrap(),
        0
    );
}

/// Another account's secret: by name it does not exist; by its ARN the call is denied (no
/// cross-account access without resource policies); lists never show it; the reader of B
/// finds nothing. (Acceptance: cross-account.)
#[tokio::test]
async fn another_accounts_secret_is_invisible() {
    let t = setup().await;
    let arn = ok(
        &t,
        A,
        "CreateSecret",
        json!({"Name": "shared", "SecretString": "a-only"}),
    )
    .await["ARN"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        err(&t, B, "GetSecretValue", json!({"SecretId": "shared"})).await.0,
        "ResourceNotFoundException"
    );
    for op in [
        "GetSecretValue",
        "DescribeSecret",
        "DeleteSecret",
        "RestoreSecret",
        "UpdateSecret",
    ] {
        let (k, m) = err(&t, B, op, json!({"SecretId": arn})).await;
        assert_eq!(k, "AccessDeniedException", "{op}: {m}");
        assert!(!m.contains("a-only"));
    }
    let (k, _) = err(&t, B, "PutSecretValue", json!({"SecretId": arn, "SecretString": "b"})).await;
    assert_eq!(k, "AccessDeniedException");
    // B's own secret of the same name is another secret.
    ok(
        &t,
        B,
        "CreateSecret",
        json!({"Name": "shared", "SecretString": "b-only"}),
    )
    .await;
    assert_eq!(
        ok(&t, B, "GetSecretValue", json!({"SecretId": "shared"})).await["SecretString"],
        "b-only"
    );
    assert_eq!(
        ok(&t, A, "GetSecretValue", json!({"SecretId": arn})).await["SecretString"],
        "a-only"
    );
    let l = ok(&t, B, "ListSecrets", json!({})).await;
    assert_eq!(l["SecretList"].as_array().unwrap().len(), 1);
    assert!(l["SecretList"][0]["ARN"].as_str().unwrap().contains(B));

    let reader = t.sm.reader();
    assert_eq!(
        reader.read_secret_string(A, &arn).await.unwrap().as_deref(),
        Some("a-only")
    );
    assert_eq!(
        reader.read_secret_string(A, "shared").await.unwrap().as_deref(),
        Some("a-only")
    );
    assert_eq!(reader.read_secret_string(B, &arn).await.unwrap(), None);
    assert_eq!(
        reader.read_secret_string(B, "shared").await.unwrap().as_deref(),
        Some("b-only")
    );
    assert_eq!(reader.read_secret_string(A, "missing").await.unwrap(), None);
    assert_eq!(
        reader.read_secret_string(A, "arn:aws:secretsmanager:x").await.unwrap(),
        None
    );
    ok(&t, A, "CreateSecret", json!({"Name": "bin", "SecretBinary": "AAEC"})).await;
    assert_eq!(reader.read_secret_string(A, "bin").await.unwrap(), None);
}

/// Values are sealed at rest: the stored bytes do not hold the plaintext, a sealed value
/// moved to another version (or secret) does not open there, and another master key opens
/// nothing. (Acceptance: sealed with the master key.)
#[tokio::test]
async fn values_are_sealed_at_rest() {
    let t = setup().await;
    let plain = "hunter2-very-secret-token";
    let a = ok(&t, A, "CreateSecret", json!({"Name": "x", "SecretString": plain})).await;
    ok(&t, A, "CreateSecret", json!({"Name": "y", "SecretString": "other"})).await;
    let arn = a["ARN"].as_str().unwrap();
    let xv = t.store.secret_versions(arn).await.unwrap();
    assert_eq!(xv.len(), 1);
    let raw = &xv[0].sealed;
    assert!(!raw.windows(plain.len()).any(|w| w == plain.as_bytes()));

    // Swap x's sealed value into y's version: y no longer opens.
    let y = t.store.secret_by_name(A, "y", 0).await.unwrap().unwrap();
    let yv = t.store.secret_versions(&y.arn).await.unwrap();
    let mut forged = yv[0].clone();
    forged.sealed = raw.clone();
    forged.version_id = "33333333-3333-4333-8333-333333333333".into();
    forged.stages = "[\"AWSCURRENT\"]".into();
    let commit = SecretCommit {
        row: y.clone(),
        insert: Some(forged),
        relabel: vec![(yv[0].version_id.clone(), "[]".into())],
        remove: vec![],
    };
    assert!(t.store.secret_commit(&commit).await.unwrap());
    let (k, m) = err(&t, A, "GetSecretValue", json!({"SecretId": "y"})).await;
    assert_eq!(k, "DecryptionFailure", "{m}");
    assert!(!m.contains(plain));
    assert!(t.sm.reader().read_secret_string(A, "y").await.is_err());

    let other = Secrets::new(t.store.clone(), MasterKey::generate(), REGION);
    let e = other
        .call(Ctx::trusted(A), "GetSecretValue", &json!({"SecretId": "x"}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, "DecryptionFailure");
}

/// ListSecrets: filters, sorting, paging with an opaque token; the per-account quota.
#[tokio::test]
async fn list_filters_paging_and_quota() {
    let t = setup().await;
    for (i, n) in [
        "ecr-pullthroughcache/a",
        "ecr-pullthroughcache/b",
        "app/db",
        "app/api",
        "zz",
    ]
    .iter()
    .enumerate()
    {
        ok(
            &t,
            A,
            "CreateSecret",
            json!({"Name": n, "SecretString": "v", "Description": format!("Secret number {i}"),
                   "Tags": [{"Key": "team", "Value": if i % 2 == 0 { "red" } else { "blue" }}]}),
        )
        .await;
    }
    let names = |v: &Value| -> Vec<String> {
        v["SecretList"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Name"].as_str().unwrap().to_string())
            .collect()
    };
    let l = ok(
        &t,
        A,
        "ListSecrets",
        json!({"Filters": [{"Key": "name", "Values": ["ecr-pullthroughcache/"]}]}),
    )
    .await;
    assert_eq!(names(&l), ["ecr-pullthroughcache/a", "ecr-pullthroughcache/b"]);
    assert!(l["SecretList"][0]["SecretVersionsToStages"].is_object());
    let l = ok(
        &t,
        A,
        "ListSecrets",
        json!({"Filters": [{"Key": "tag-value", "Values": ["red"]}, {"Key": "name", "Values": ["!ecr"]}],
               "SortBy": "name"}),
    )
    .await;
    assert_eq!(names(&l), ["app/db", "zz"]);

    let mut got = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut input = json!({"MaxResults": 2, "SortBy": "name", "SortOrder": "desc"});
        if let Some(t) = &token {
            input["NextToken"] = json!(t);
        }
        let page = ok(&t, A, "ListSecrets", input).await;
        assert!(page["SecretList"].as_array().unwrap().len() <= 2);
        got.extend(names(&page));
        match page["NextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(
        got,
        [
            "zz",
            "ecr-pullthroughcache/b",
            "ecr-pullthroughcache/a",
            "app/db",
            "app/api"
        ]
    );
    // A token of one sort is not valid for another.
    let page = ok(&t, A, "ListSecrets", json!({"MaxResults": 2, "SortBy": "name"})).await;
    let (k, _) = err(
        &t,
        A,
        "ListSecrets",
        json!({"MaxResults": 2, "NextToken": page["NextToken"]}),
    )
    .await;
    assert_eq!(k, "InvalidNextTokenException");

    let limited = t.sm.clone().with_max_secrets(5);
    let e = limited
        .call(Ctx::trusted(A), "CreateSecret", &json!({"Name": "sixth"}))
        .await
        .unwrap_err();
    assert_eq!(e.kind, "LimitExceededException");
    // Another account has its own quota.
    limited
        .call(Ctx::trusted(B), "CreateSecret", &json!({"Name": "sixth"}))
        .await
        .unwrap();
}

/// Concurrent PutSecretValue calls on one secret: every version is stored, and the labels
/// stay consistent (exactly one AWSCURRENT, one AWSPREVIOUS): the compare-and-set on the
/// secret's revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_keep_labels_consistent() {
    let t = setup().await;
    ok(&t, A, "CreateSecret", json!({"Name": "c", "SecretString": "v0"})).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let sm = t.sm.clone();
        tasks.push(tokio::spawn(async move {
            sm.call(
                Ctx::trusted(A),
                "PutSecretValue",
                &json!({"SecretId": "c", "SecretString": format!("v{}", i + 1)}),
            )
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let row = t.store.secret_by_name(A, "c", 0).await.unwrap().unwrap();
    assert_eq!(row.revision, 10);
    let versions = t.store.secret_versions(&row.arn).await.unwrap();
    assert_eq!(versions.len(), 11);
    let count = |label: &str| versions.iter().filter(|v| v.stages.contains(label)).count();
    assert_eq!((count("AWSCURRENT"), count("AWSPREVIOUS")), (1, 1));
    let current = ok(&t, A, "GetSecretValue", json!({"SecretId": "c"})).await;
    assert_ne!(current["SecretString"], "v0");
}

/// TagResource merges (a key's value replaced), UntagResource removes, both refused on a
/// secret scheduled for deletion and across accounts; ListSecretVersionIds lists labelled
/// versions newest first (deprecated ones on request), in pages.
#[tokio::test]
async fn tags_and_version_ids() {
    let t = setup().await;
    ok(
        &t,
        A,
        "CreateSecret",
        json!({"Name": "t", "SecretString": "v0", "Tags": [{"Key": "a", "Value": "1"}]}),
    )
    .await;
    ok(
        &t,
        A,
        "TagResource",
        json!({"SecretId": "t", "Tags": [{"Key": "a", "Value": "2"}, {"Key": "b", "Value": "3"}]}),
    )
    .await;
    let d = ok(&t, A, "DescribeSecret", json!({"SecretId": "t"})).await;
    assert_eq!(
        d["Tags"],
        json!([{"Key": "a", "Value": "2"}, {"Key": "b", "Value": "3"}])
    );
    ok(&t, A, "UntagResource", json!({"SecretId": "t", "TagKeys": ["a", "zz"]})).await;
    let d = ok(&t, A, "DescribeSecret", json!({"SecretId": "t"})).await;
    assert_eq!(d["Tags"], json!([{"Key": "b", "Value": "3"}]));
    let (k, _) = err(
        &t,
        A,
        "TagResource",
        json!({"SecretId": "t", "Tags": [{"Key": "aws:x", "Value": "1"}]}),
    )
    .await;
    assert_eq!(k, "InvalidParameterException");
    let arn = d["ARN"].as_str().unwrap();
    let (k, _) = err(
        &t,
        B,
        "TagResource",
        json!({"SecretId": arn, "Tags": [{"Key": "x", "Value": "1"}]}),
    )
    .await;
    assert_eq!(k, "AccessDeniedException");

    for i in 1..=3 {
        ok(
            &t,
            A,
            "PutSecretValue",
            json!({"SecretId": "t", "SecretString": format!("v{i}")}),
        )
        .await;
    }
    let l = ok(&t, A, "ListSecretVersionIds", json!({"SecretId": "t"})).await;
    let stages: Vec<Value> = l["Versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["VersionStages"].clone())
        .collect();
    assert_eq!(stages, [json!(["AWSCURRENT"]), json!(["AWSPREVIOUS"])]);
    let all = ok(
        &t,
        A,
        "ListSecretVersionIds",
        json!({"SecretId": "t", "IncludeDeprecated": true}),
    )
    .await;
    assert_eq!(all["Versions"].as_array().unwrap().len(), 4);
    let p1 = ok(
        &t,
        A,
        "ListSecretVersionIds",
        json!({"SecretId": "t", "IncludeDeprecated": true, "MaxResults": 3}),
    )
    .await;
    assert_eq!(p1["Versions"].as_array().unwrap().len(), 3);
    let p2 = ok(
        &t,
        A,
        "ListSecretVersionIds",
        json!({"SecretId": "t", "IncludeDeprecated": true, "MaxResults": 3, "NextToken": p1["NextToken"]}),
    )
    .await;
    assert_eq!(p2["Versions"].as_array().unwrap().len(), 1);
    assert!(p2.get("NextToken").is_none());
    let (k, _) = err(
        &t,
        A,
        "ListSecretVersionIds",
        json!({"SecretId": "t", "NextToken": "abc"}),
    )
    .await;
    assert_eq!(k, "InvalidNextTokenException");

    ok(&t, A, "DeleteSecret", json!({"SecretId": "t"})).await;
    let (k, _) = err(
        &t,
        A,
        "TagResource",
        json!({"SecretId": "t", "Tags": [{"Key": "c", "Value": "1"}]}),
    )
    .await;
    assert_eq!(k, "InvalidRequestException");
}
