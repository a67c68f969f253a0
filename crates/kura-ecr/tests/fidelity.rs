//! ECR fidelity through the whole application (`POST /`, SigV4, the model's
//! validation, authorization): the places Kura used to answer unlike ECR
//! (lifecycle `lastEvaluatedAt`, the AWS-managed KMS key, the repository's
//! own `scanOnPush`, duplicate `Sid`s, ECR's messages, scan-finding pages),
//! pull-time update exclusions (stored, validated, and honoured by the data
//! plane's pull-time record) and the signing configuration (stored, echoed,
//! and an honest `DescribeImageSigningStatus`: Kura does not sign).

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use kura_oci::RepoName;
use kura_registry::Actor;
use kura_store::meta::{NewManifest, TagWrite};
use kura_store::{ControlStore, IamStore, MetaStore, ScanStore};
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;

use common::{ACCOUNT, KEY_ID, REGION, SECRET};

const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921";
const OTHER: &str = "210987654321";
const PROFILE: &str = "arn:aws:signer:us-east-1:123456789012:/signing-profiles/kura_profile";

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

    async fn call_signed(&self, op: &str, input: Value, region: &str) -> Resp {
        let body = serde_json::to_vec(&input).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "localhost:5000".parse().unwrap());
        headers.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
        headers.insert("x-amz-target", format!("{TARGET}.{op}").parse().unwrap());
        common::sign_post(
            &mut headers,
            &body,
            (KEY_ID, SECRET),
            region,
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

    async fn call(&self, op: &str, input: Value) -> Resp {
        self.call_signed(op, input, REGION).await
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
}

fn bad() -> StatusCode {
    StatusCode::BAD_REQUEST
}

// ---- Differences found ----

#[tokio::test]
async fn lifecycle_policy_reports_last_evaluated_at_epoch_zero_before_any_evaluation() {
    let t = T::new().await;
    t.call("CreateRepository", json!({"repositoryName": "app"})).await.ok();
    let policy = json!({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "untagged",
        "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1}, "action": {"type": "expire"}}]})
    .to_string();
    let put = t
        .call(
            "PutLifecyclePolicy",
            json!({"repositoryName": "app", "lifecyclePolicyText": policy}),
        )
        .await
        .ok();
    assert_eq!(put["lifecyclePolicyText"], policy.as_str());
    let got = t
        .call("GetLifecyclePolicy", json!({"repositoryName": "app"}))
        .await
        .ok();
    assert_eq!(got["lastEvaluatedAt"].as_f64(), Some(0.0), "{got}");
    let deleted = t
        .call("DeleteLifecyclePolicy", json!({"repositoryName": "app"}))
        .await
        .ok();
    assert_eq!(deleted["lastEvaluatedAt"].as_f64(), Some(0.0), "{deleted}");
    assert_eq!(deleted["lifecyclePolicyText"], policy.as_str());
}

#[tokio::test]
async fn kms_encryption_without_a_key_names_the_accounts_aws_managed_key() {
    let t = T::new().await;
    let kms = |name: &str, ty: &str| json!({"repositoryName": name, "encryptionConfiguration": {"encryptionType": ty}});
    let a = t.call("CreateRepository", kms("ra", "KMS")).await.ok();
    let key = a["repository"]["encryptionConfiguration"]["kmsKey"]
        .as_str()
        .unwrap_or_else(|| panic!("no kmsKey: {a}"))
        .to_string();
    let id = key
        .strip_prefix(&format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/"))
        .unwrap_or_else(|| panic!("{key}"));
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{key}");
    // The same key for every repository of the account, and for KMS_DSSE.
    let b = t.call("CreateRepository", kms("rb", "KMS_DSSE")).await.ok();
    assert_eq!(b["repository"]["encryptionConfiguration"]["kmsKey"], key.as_str());
    // DescribeRepositories shows what CreateRepository answered.
    let d = t
        .call("DescribeRepositories", json!({"repositoryNames": ["ra", "rb"]}))
        .await
        .ok();
    for r in d["repositories"].as_array().unwrap() {
        assert_eq!(r["encryptionConfiguration"]["kmsKey"], key.as_str(), "{r}");
    }
    // A key given is kept; AES256 has none.
    let mine = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555";
    let c = t
        .call(
            "CreateRepository",
            json!({"repositoryName": "rc", "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": mine}}),
        )
        .await
        .ok();
    assert_eq!(c["repository"]["encryptionConfiguration"]["kmsKey"], mine);
    let plain = t.call("CreateRepository", json!({"repositoryName": "rd"})).await.ok();
    assert_eq!(
        plain["repository"]["encryptionConfiguration"],
        json!({"encryptionType": "AES256"})
    );
}

#[tokio::test]
async fn repository_scanning_configuration_reports_the_repositorys_own_scan_on_push() {
    let t = T::new().await;
    t.call("CreateRepository", json!({"repositoryName": "plain"}))
        .await
        .ok();
    t.call(
        "CreateRepository",
        json!({"repositoryName": "flagged", "imageScanningConfiguration": {"scanOnPush": true}}),
    )
    .await
    .ok();
    t.call(
        "PutRegistryScanningConfiguration",
        json!({"scanType": "BASIC", "rules": [{"scanFrequency": "SCAN_ON_PUSH",
            "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}]}]}),
    )
    .await
    .ok();
    let out = t
        .call(
            "BatchGetRepositoryScanningConfiguration",
            json!({"repositoryNames": ["plain", "flagged"]}),
        )
        .await
        .ok();
    let configs = out["scanningConfigurations"].as_array().unwrap();
    let of = |n: &str| configs.iter().find(|c| c["repositoryName"] == n).unwrap().clone();
    assert_eq!(of("plain")["scanOnPush"], false, "{out}");
    assert_eq!(of("plain")["scanFrequency"], "SCAN_ON_PUSH", "{out}");
    assert_eq!(of("flagged")["scanOnPush"], true, "{out}");
    assert_eq!(of("flagged")["scanFrequency"], "SCAN_ON_PUSH", "{out}");
}

#[tokio::test]
async fn policies_with_a_repeated_sid_are_accepted_as_ecr_does() {
    let t = T::new().await;
    t.call("CreateRepository", json!({"repositoryName": "app"})).await.ok();
    let st = json!({"Sid": "Same", "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{OTHER}:root")}, "Action": "ecr:BatchGetImage"});
    let policy = json!({"Version": "2012-10-17", "Statement": [st, st]}).to_string();
    let out = t
        .call(
            "SetRepositoryPolicy",
            json!({"repositoryName": "app", "policyText": policy}),
        )
        .await
        .ok();
    assert_eq!(out["policyText"], policy.as_str());
    let reg = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "R", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{OTHER}:root")},
         "Action": "ecr:CreateRepository", "Resource": "*"},
        {"Sid": "R", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{OTHER}:root")},
         "Action": "ecr:ReplicateImage", "Resource": "*"}]})
    .to_string();
    t.call("PutRegistryPolicy", json!({"policyText": reg})).await.ok();
}

#[tokio::test]
async fn messages_are_in_ecrs_words() {
    let t = T::new().await;
    t.call("CreateRepository", json!({"repositoryName": "rr"})).await.ok();
    let m = t
        .call(
            "DescribeImages",
            json!({"repositoryName": "rr", "imageIds": [{"imageTag": "x"}]}),
        )
        .await
        .err(bad(), "ImageNotFoundException");
    assert_eq!(
        m,
        format!(
            "The image with imageId {{imageDigest:'null', imageTag:'x'}} does not exist within the repository \
             with name 'rr' in the registry with id '{ACCOUNT}'"
        )
    );
    for arn in [
        "not-an-arn",
        "arn:aws:s3:::bucket",
        &format!("arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/rr"),
    ] {
        let m = t
            .call("ListTagsForResource", json!({"resourceArn": arn}))
            .await
            .err(bad(), "InvalidParameterException");
        assert_eq!(
            m, "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN'",
            "{arn}"
        );
    }
    let m = t
        .call(
            "SetRepositoryPolicy",
            json!({"repositoryName": "rr", "policyText": "{\"Version\":\"2012-10-17\"}"}),
        )
        .await
        .err(bad(), "InvalidParameterException");
    let first =
        "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'. ";
    assert!(m.starts_with(first), "{m}");
    assert!(m[first.len()..].contains("Statement is required"), "{m}");
}

#[tokio::test]
async fn a_request_signed_for_another_region_gets_ecrs_error() {
    let t = T::new().await;
    let m = t
        .call_signed("DescribeRepositories", json!({}), "eu-west-1")
        .await
        .err(bad(), "InvalidSignatureException");
    assert_eq!(m, "Credential should be scoped to a valid region.");
    t.call("DescribeRepositories", json!({})).await.ok();
}

#[tokio::test]
async fn every_page_of_scan_findings_carries_the_status_and_the_metadata() {
    use kura_scan::matcher::{Finding, Severity};
    use kura_scan::types::{Package, PackageKind};
    use kura_scan::vulndb::Advisory;
    let t = T::new().await;
    let (repo, digest) = t.image(ACCOUNT, "scanned", "img", Some("v1")).await;
    let finding = |n: usize| Finding {
        advisory: Advisory {
            name: format!("CVE-2024-000{n}"),
            id: format!("CVE-2024-000{n}"),
            aliases: vec![],
            ecosystem: "Debian:12".into(),
            package: "openssl".into(),
            ranges: vec![],
            versions: vec![],
            vendor_severity: None,
            cvss: vec![],
            title: String::new(),
            description: String::new(),
            uri: String::new(),
            references: vec![],
            published: None,
            modified: None,
        },
        package: Package {
            kind: PackageKind::Dpkg,
            name: "openssl".into(),
            version: "3.0.0".into(),
            source_name: None,
            source_version: None,
            arch: None,
            path: "var/lib/dpkg/status".into(),
        },
        matched_version: "3.0.0".into(),
        severity: Severity::High,
    };
    let findings: Vec<Finding> = (1..=3).map(finding).collect();
    t.s.store.scan_start(repo, &digest, "BASIC", 1_000, None).await.unwrap();
    t.s.store
        .scan_finish(&kura_store::scan::ScanRow {
            repo_id: repo,
            digest: digest.clone(),
            status: "COMPLETE".into(),
            description: Some("The scan was completed successfully.".into()),
            scan_type: "BASIC".into(),
            requested_at: 1_000,
            completed_at: Some(2_000),
            vuln_import_id: None,
            vuln_updated_at: Some(1_500),
            inventory: None,
            findings: Some(serde_json::to_string(&findings).unwrap()),
            counts: Some(json!({"HIGH": 3}).to_string()),
        })
        .await
        .unwrap();
    let mut input = json!({"repositoryName": "scanned", "imageId": {"imageTag": "v1"}, "maxResults": 1});
    let mut pages = Vec::new();
    loop {
        let out = t.call("DescribeImageScanFindings", input.clone()).await.ok();
        pages.push(out.clone());
        match out.get("nextToken") {
            Some(n) => input["nextToken"] = n.clone(),
            None => break,
        }
    }
    assert_eq!(pages.len(), 3, "{pages:?}");
    for p in &pages {
        assert_eq!(p["imageScanStatus"]["status"], "COMPLETE", "{p}");
        let f = &p["imageScanFindings"];
        assert_eq!(f["findingSeverityCounts"], json!({"HIGH": 3}), "{p}");
        assert_eq!(f["imageScanCompletedAt"], json!(2.0), "{p}");
        assert_eq!(f["vulnerabilitySourceUpdatedAt"], json!(1.5), "{p}");
        assert_eq!(f["findings"].as_array().map(Vec::len), Some(1), "{p}");
    }
}

// ---- Pull-time update exclusions ----

fn user_actor(arn: &str) -> Actor {
    Actor {
        account: ACCOUNT.into(),
        principal_arn: arn.into(),
        principal_id: "AIDAEXAMPLE".into(),
        access_key_id: None,
        source_ip: None,
        user_agent: None,
    }
}

#[tokio::test]
async fn exclusions_are_registered_listed_and_deregistered_as_ecr_does() {
    let t = T::new().await;
    let scanner = format!("arn:aws:iam::{ACCOUNT}:role/scanners/trivy");
    let out = t
        .call("RegisterPullTimeUpdateExclusion", json!({"principalArn": scanner}))
        .await
        .ok();
    assert_eq!(out["principalArn"], scanner.as_str());
    assert!(out["createdAt"].as_f64().is_some_and(|c| c > 1.0e9), "{out}");
    let m = t
        .call("RegisterPullTimeUpdateExclusion", json!({"principalArn": scanner}))
        .await
        .err(bad(), "ExclusionAlreadyExistsException");
    assert!(m.contains(&scanner), "{m}");
    // The model's pattern: IAM users and roles only.
    for arn in [
        format!("arn:aws:iam::{ACCOUNT}:root"),
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/trivy/s"),
        "trivy".into(),
        format!("arn:aws:iam::{ACCOUNT}:role/{}", "x".repeat(200)),
    ] {
        let r = t
            .call("RegisterPullTimeUpdateExclusion", json!({"principalArn": arn}))
            .await;
        assert_eq!(r.status, bad(), "{arn}: {}", r.body);
        assert!(
            ["InvalidParameterException", "ValidationException"].contains(&r.body["__type"].as_str().unwrap_or("")),
            "{}",
            r.body
        );
    }
    let r = t.call("RegisterPullTimeUpdateExclusion", json!({})).await;
    assert_eq!(r.status, bad(), "{}", r.body);
    // Pages in ARN order.
    for i in 0..4 {
        t.call(
            "RegisterPullTimeUpdateExclusion",
            json!({"principalArn": format!("arn:aws:iam::{ACCOUNT}:user/u{i}")}),
        )
        .await
        .ok();
    }
    let mut input = json!({"maxResults": 2});
    let mut all = Vec::new();
    loop {
        let out = t.call("ListPullTimeUpdateExclusions", input.clone()).await.ok();
        let page = out["pullTimeUpdateExclusions"].as_array().unwrap().clone();
        assert!(page.len() <= 2);
        all.extend(page);
        match out.get("nextToken") {
            Some(n) => input["nextToken"] = n.clone(),
            None => break,
        }
    }
    let mut want: Vec<String> = (0..4).map(|i| format!("arn:aws:iam::{ACCOUNT}:user/u{i}")).collect();
    want.push(scanner.clone());
    want.sort();
    assert_eq!(all, want.iter().map(|w| json!(w)).collect::<Vec<_>>());
    t.call("ListPullTimeUpdateExclusions", json!({"maxResults": 1001}))
        .await
        .err(bad(), "InvalidParameterException");
    t.call("ListPullTimeUpdateExclusions", json!({"nextToken": "%%%"}))
        .await
        .err(bad(), "InvalidParameterException");
    let out = t
        .call("DeregisterPullTimeUpdateExclusion", json!({"principalArn": scanner}))
        .await
        .ok();
    assert_eq!(out, json!({"principalArn": scanner}));
    t.call("DeregisterPullTimeUpdateExclusion", json!({"principalArn": scanner}))
        .await
        .err(bad(), "ExclusionNotFoundException");
    // The registry's own: a registryId is not part of these operations.
    t.call("ListPullTimeUpdateExclusions", json!({"registryId": OTHER}))
        .await
        .err(bad(), "SerializationException");
    let theirs =
        t.s.store
            .setting_get(OTHER, kura_ecr::ops::exclusions::SETTING)
            .await
            .unwrap();
    assert_eq!(theirs, None);
}

#[tokio::test]
async fn at_most_100_exclusions() {
    let t = T::new().await;
    for i in 0..100 {
        t.call(
            "RegisterPullTimeUpdateExclusion",
            json!({"principalArn": format!("arn:aws:iam::{ACCOUNT}:user/u{i:03}")}),
        )
        .await
        .ok();
    }
    t.call(
        "RegisterPullTimeUpdateExclusion",
        json!({"principalArn": format!("arn:aws:iam::{ACCOUNT}:user/one-too-many")}),
    )
    .await
    .err(bad(), "LimitExceededException");
    let out = t.call("ListPullTimeUpdateExclusions", json!({})).await.ok();
    assert_eq!(out["pullTimeUpdateExclusions"].as_array().unwrap().len(), 100);
    assert!(out.get("nextToken").is_none(), "{out}");
}

/// The image's recorded pull time, once a pull's write has landed (the
/// registry records it off the request path).
async fn wait_pulled(t: &T, repo: i64, digest: &str) -> i64 {
    for _ in 0..500 {
        if let Some(p) = t.s.store.image_get(repo, digest).await.unwrap().unwrap().last_pulled_at {
            return p;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the pull time was never recorded");
}

#[tokio::test]
async fn a_pull_by_an_excluded_principal_leaves_the_pull_time() {
    let t = T::new().await;
    let (repo, digest) = t.image(ACCOUNT, "app", "img", Some("v1")).await;
    let scanner = format!("arn:aws:iam::{ACCOUNT}:user/scanner");
    t.call("RegisterPullTimeUpdateExclusion", json!({"principalArn": scanner}))
        .await
        .ok();
    let name: RepoName = "app".parse().unwrap();
    t.s.registry
        .get_manifest(ACCOUNT, &name, "v1", Some(&user_actor(&scanner)))
        .await
        .unwrap();
    // Had the excluded pull been recorded, its time would be before `mid`
    // and the store keeps the first write of a minute; had it only taken the
    // throttle's slot, the next pull would never be recorded.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let mid = kura_store::now_millis();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let d = t
        .call(
            "DescribeImages",
            json!({"repositoryName": "app", "imageIds": [{"imageTag": "v1"}]}),
        )
        .await
        .ok();
    assert!(d["imageDetails"][0].get("lastRecordedPullTime").is_none(), "{d}");
    let dev = user_actor(&format!("arn:aws:iam::{ACCOUNT}:user/dev"));
    t.s.registry
        .get_manifest(ACCOUNT, &name, "v1", Some(&dev))
        .await
        .unwrap();
    let pulled = wait_pulled(&t, repo, &digest).await;
    assert!(pulled > mid, "recorded {pulled}, excluded pull ended before {mid}");
    let d = t
        .call(
            "DescribeImages",
            json!({"repositoryName": "app", "imageIds": [{"imageTag": "v1"}]}),
        )
        .await
        .ok();
    assert!(d["imageDetails"][0]["lastRecordedPullTime"].as_f64().is_some(), "{d}");
}

#[tokio::test]
async fn a_role_exclusion_covers_its_sessions_and_deregistering_restores_recording() {
    let t = T::new().await;
    let (repo, digest) = t.image(ACCOUNT, "app", "img", Some("v1")).await;
    let role = format!("arn:aws:iam::{ACCOUNT}:role/scanners/trivy");
    t.call("RegisterPullTimeUpdateExclusion", json!({"principalArn": role}))
        .await
        .ok();
    let name: RepoName = "app".parse().unwrap();
    let session = user_actor(&format!("arn:aws:sts::{ACCOUNT}:assumed-role/trivy/scan-1"));
    t.s.registry
        .get_manifest(ACCOUNT, &name, "v1", Some(&session))
        .await
        .unwrap();
    t.call("DeregisterPullTimeUpdateExclusion", json!({"principalArn": role}))
        .await
        .ok();
    let mid = kura_store::now_millis();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // The same session, no longer excluded: recorded (the change is seen at
    // once on the node that made it).
    t.s.registry
        .get_manifest(ACCOUNT, &name, "v1", Some(&session))
        .await
        .unwrap();
    let pulled = wait_pulled(&t, repo, &digest).await;
    assert!(pulled > mid, "recorded {pulled} before {mid}");
}

// ---- Signing configuration ----

#[tokio::test]
async fn signing_configuration_is_validated_stored_and_echoed() {
    let t = T::new().await;
    let m = t
        .call("GetSigningConfiguration", json!({}))
        .await
        .err(bad(), "SigningConfigurationNotFoundException");
    assert!(m.contains(ACCOUNT), "{m}");
    t.call("DeleteSigningConfiguration", json!({}))
        .await
        .err(bad(), "SigningConfigurationNotFoundException");
    let config = json!({"rules": [
        {"signingProfileArn": PROFILE, "repositoryFilters": [{"filter": "prod/*", "filterType": "WILDCARD_MATCH"}]},
        {"signingProfileArn": PROFILE.replace("kura_profile", "other_profile")},
    ]});
    let out = t
        .call("PutSigningConfiguration", json!({"signingConfiguration": config}))
        .await
        .ok();
    assert_eq!(out, json!({"signingConfiguration": config}));
    let got = t.call("GetSigningConfiguration", json!({})).await.ok();
    assert_eq!(got, json!({"registryId": ACCOUNT, "signingConfiguration": config}));
    // Invalid inputs: ECR's error JSON, nothing stored.
    let rule = json!({"signingProfileArn": PROFILE});
    for bad_config in [
        json!({"rules": vec![rule.clone(); 11]}),
        json!({"rules": [{"signingProfileArn": "arn:aws:iam::123456789012:role/x"}]}),
        json!({"rules": [{"signingProfileArn": PROFILE, "repositoryFilters": []}]}),
        json!({"rules": [{"signingProfileArn": PROFILE,
            "repositoryFilters": [{"filter": "prod/*", "filterType": "WILDCARD"}]}]}),
        json!({"rules": [{"signingProfileArn": PROFILE,
            "repositoryFilters": [{"filter": "Prod/*", "filterType": "WILDCARD_MATCH"}]}]}),
        json!({"rules": [{}]}),
        json!({}),
        json!({"rules": [{"signingProfileArn": format!("{PROFILE}{}", "x".repeat(200))}]}),
    ] {
        let r = t
            .call("PutSigningConfiguration", json!({"signingConfiguration": bad_config}))
            .await;
        assert_eq!(r.status, bad(), "{bad_config}: {}", r.body);
        assert!(
            ["InvalidParameterException", "ValidationException"].contains(&r.body["__type"].as_str().unwrap_or("")),
            "{}",
            r.body
        );
    }
    assert_eq!(
        t.call("GetSigningConfiguration", json!({})).await.ok()["signingConfiguration"],
        config
    );
    // Not another registry's: these operations take no registryId.
    t.call(
        "PutSigningConfiguration",
        json!({"registryId": OTHER, "signingConfiguration": config}),
    )
    .await
    .err(bad(), "SerializationException");
    let deleted = t.call("DeleteSigningConfiguration", json!({})).await.ok();
    assert_eq!(deleted, json!({"registryId": ACCOUNT, "signingConfiguration": config}));
    t.call("GetSigningConfiguration", json!({}))
        .await
        .err(bad(), "SigningConfigurationNotFoundException");
    // An empty rule list is a configuration (min 0).
    t.call(
        "PutSigningConfiguration",
        json!({"signingConfiguration": {"rules": []}}),
    )
    .await
    .ok();
    assert_eq!(
        t.call("GetSigningConfiguration", json!({})).await.ok()["signingConfiguration"],
        json!({"rules": []})
    );
}

#[tokio::test]
async fn image_signing_status_says_kura_did_not_sign() {
    let t = T::new().await;
    let (_, before) = t.image(ACCOUNT, "prod/api", "before", Some("old")).await;
    let other_profile = PROFILE.replace("kura_profile", "other_profile");
    t.call(
        "PutSigningConfiguration",
        json!({"signingConfiguration": {"rules": [
            {"signingProfileArn": PROFILE, "repositoryFilters": [{"filter": "prod/*", "filterType": "WILDCARD_MATCH"}]},
            {"signingProfileArn": other_profile, "repositoryFilters": [{"filter": "prod/api", "filterType": "WILDCARD_MATCH"}]},
            {"signingProfileArn": PROFILE},
        ]}}),
    )
    .await
    .ok();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (_, after) = t.image(ACCOUNT, "prod/api", "after", Some("new")).await;
    let out = t
        .call(
            "DescribeImageSigningStatus",
            json!({"repositoryName": "prod/api", "imageId": {"imageTag": "new"}}),
        )
        .await
        .ok();
    assert_eq!(out["repositoryName"], "prod/api");
    assert_eq!(out["registryId"], ACCOUNT);
    assert_eq!(out["imageId"], json!({"imageDigest": after, "imageTag": "new"}));
    let statuses = out["signingStatuses"].as_array().unwrap();
    // One status per matching profile, each FAILED: nothing was signed.
    assert_eq!(statuses.len(), 2, "{out}");
    let profiles: Vec<&str> = statuses
        .iter()
        .map(|s| s["signingProfileArn"].as_str().unwrap())
        .collect();
    assert_eq!(profiles, vec![PROFILE, other_profile.as_str()]);
    for s in statuses {
        assert_eq!(s["status"], "FAILED", "{s}");
        assert_eq!(s["failureCode"], kura_ecr::ops::signing::NOT_SIGNED_CODE);
        assert!(s["failureReason"].as_str().unwrap().contains("does not sign"), "{s}");
    }
    // Pushed before the configuration: no status, as in ECR.
    let old = t
        .call(
            "DescribeImageSigningStatus",
            json!({"repositoryName": "prod/api", "imageId": {"imageDigest": before}}),
        )
        .await
        .ok();
    assert_eq!(old["signingStatuses"], json!([]), "{old}");
    // A missing image: ECR's error.
    let m = t
        .call(
            "DescribeImageSigningStatus",
            json!({"repositoryName": "prod/api", "imageId": {"imageTag": "nope"}}),
        )
        .await
        .err(bad(), "ImageNotFoundException");
    assert!(m.contains("{imageDigest:'null', imageTag:'nope'}"), "{m}");
    t.call(
        "DescribeImageSigningStatus",
        json!({"repositoryName": "nope", "imageId": {"imageTag": "new"}}),
    )
    .await
    .err(bad(), "RepositoryNotFoundException");
}

#[tokio::test]
async fn another_registrys_signing_status_needs_that_registrys_permission() {
    let t = T::new().await;
    t.image(ACCOUNT, "prod/api", "mine", Some("v1")).await;
    t.image(OTHER, "prod/api", "theirs", Some("v1")).await;
    let input = json!({"registryId": OTHER, "repositoryName": "prod/api", "imageId": {"imageTag": "v1"}});
    let m = t
        .call("DescribeImageSigningStatus", input.clone())
        .await
        .err(StatusCode::FORBIDDEN, "AccessDeniedException");
    assert!(m.contains("ecr:DescribeImageSigningStatus") && m.contains(OTHER), "{m}");
    t.s.store
        .resource_policy_put(
            &kura_ecr::authz::repository_arn(REGION, OTHER, "prod/api"),
            &json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
                "Action": "ecr:DescribeImageSigningStatus"}]})
            .to_string(),
        )
        .await
        .unwrap();
    let out = t.call("DescribeImageSigningStatus", input).await.ok();
    assert_eq!(out["registryId"], OTHER);
}
