//! The audit trail through the whole application (`app()` + `oneshot`):
//! every protocol's calls are recorded with their caller, secrets never
//! reach a record, failed authentication is recorded, the data plane's
//! writes are (and its reads only behind the switch), and CloudTrail's
//! `LookupEvents` is authorized by IAM and sees one account only.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use kura_audit::{AuditRecorder, CloudTrail, RecorderOptions};
use kura_auth::seal::MasterKey;
use kura_ecr::auth::seal_secret;
use kura_ecr::calls::AuditHook;
use kura_oci::Digest;
use kura_store::control::AccessKeyRow;
use kura_store::ControlStore;
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;

use common::{ACCOUNT, KEY_ID, REGION, SECRET};

const OTHER: &str = "210987654321";
const OTHER_KEY_ID: &str = "AKIAOTHERACCOUNTKEY1";
const OTHER_SECRET: &str = "otherAccountSecretKey/0123456789abcdefgh";
const HOST: &str = "localhost:5000";
const CT: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents";

struct T {
    s: common::Server,
    app: axum::Router,
}

struct Resp {
    status: StatusCode,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    fn xml(&self, tag: &str) -> String {
        let open = format!("<{tag}>");
        let start = self
            .body
            .find(&open)
            .unwrap_or_else(|| panic!("no <{tag}> in {}", self.body))
            + open.len();
        let end = self.body[start..].find(&format!("</{tag}>")).unwrap() + start;
        self.body[start..end].to_string()
    }
}

async fn setup(data_reads: bool) -> T {
    let s = common::server().await;
    let master = MasterKey::load_or_create(&s.dir.path().join("master.key")).unwrap();
    s.store.account_ensure(OTHER).await.unwrap();
    s.store
        .access_key_put(&AccessKeyRow {
            access_key_id: OTHER_KEY_ID.into(),
            account: OTHER.into(),
            principal_arn: format!("arn:aws:iam::{OTHER}:root"),
            principal_id: OTHER.into(),
            secret_sealed: seal_secret(&master, OTHER_KEY_ID, OTHER_SECRET),
            status: "Active".into(),
            session_token_hash: None,
            expires_at: None,
            created_at: kura_store::now_millis(),
        })
        .await
        .unwrap();
    // As `kura serve` installs it: the recorder on the AWS pipeline and on
    // the data-plane guard, CloudTrail's LookupEvents as a service.
    let recorder = Arc::new(AuditRecorder::start(s.store.clone(), RecorderOptions::new(ACCOUNT)));
    s.ecr.set_audit(AuditHook {
        recorder: recorder.clone(),
        data_reads,
    });
    let options = kura_ecr::AppOptions {
        services: vec![Arc::new(CloudTrail::new(
            s.store.clone(),
            s.ecr.authz().clone(),
            REGION,
        ))],
        recorder: Some(recorder),
        ..Default::default()
    };
    let app = kura_ecr::app_with(s.ecr.clone(), s.registry.clone(), options);
    T { s, app }
}

#[derive(Clone)]
struct Creds {
    id: String,
    secret: String,
    token: Option<String>,
}

fn root() -> Creds {
    Creds {
        id: KEY_ID.into(),
        secret: SECRET.into(),
        token: None,
    }
}

fn other_root() -> Creds {
    Creds {
        id: OTHER_KEY_ID.into(),
        secret: OTHER_SECRET.into(),
        token: None,
    }
}

fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

impl T {
    async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned();
        Resp { status, body }
    }

    async fn post(&self, creds: &Creds, service: &str, target: Option<&str>, body: Vec<u8>) -> Resp {
        let mut headers = HeaderMap::new();
        headers.insert("host", HOST.parse().unwrap());
        headers.insert("user-agent", "aws-cli/2.15 audit-test".parse().unwrap());
        match target {
            Some(t) => {
                headers.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
                headers.insert("x-amz-target", t.parse().unwrap());
            }
            None => {
                headers.insert(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8".parse().unwrap(),
                );
            }
        }
        if let Some(t) = &creds.token {
            headers.insert("x-amz-security-token", t.parse().unwrap());
        }
        common::sign_post(
            &mut headers,
            &body,
            (&creds.id, &creds.secret),
            REGION,
            service,
            SystemTime::now(),
        );
        let mut b = Request::builder().method(Method::POST).uri("/");
        *b.headers_mut().unwrap() = headers;
        self.send(b.body(Body::from(body)).unwrap()).await
    }

    async fn ecr(&self, creds: &Creds, op: &str, input: Value) -> Resp {
        let target = format!("AmazonEC2ContainerRegistry_V20150921.{op}");
        self.post(creds, "ecr", Some(&target), serde_json::to_vec(&input).unwrap())
            .await
    }

    async fn query(&self, creds: &Creds, service: &str, action: &str, params: &[(&str, &str)]) -> Resp {
        let version = if service == "sts" { "2011-06-15" } else { "2010-05-08" };
        let mut all = vec![("Action", action), ("Version", version)];
        all.extend_from_slice(params);
        let r = self.post(creds, service, None, form(&all).into_bytes()).await;
        r
    }

    async fn lookup(&self, creds: &Creds, input: Value) -> Resp {
        self.post(creds, "cloudtrail", Some(CT), serde_json::to_vec(&input).unwrap())
            .await
    }

    /// The records of an event name in `creds`' account (as the root of that account).
    async fn events(&self, creds: &Creds, name: &str) -> Vec<Value> {
        let r = self
            .lookup(
                creds,
                json!({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": name}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.json()["Events"].as_array().unwrap().clone()
    }

    async fn dp(&self, method: Method, uri: &str, auth: &str, body: Vec<u8>, ct: Option<&str>) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", HOST)
            .header("authorization", auth)
            .header("user-agent", "skopeo/1.13");
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        self.send(b.body(Body::from(body)).unwrap()).await
    }

    async fn basic(&self) -> String {
        let v = self.ecr(&root(), "GetAuthorizationToken", json!({})).await.json();
        format!(
            "Basic {}",
            v["authorizationData"][0]["authorizationToken"].as_str().unwrap()
        )
    }

    async fn push_blob(&self, auth: &str, repo: &str, data: &[u8]) -> String {
        let d = Digest::sha256(data).to_string();
        let r = self
            .dp(Method::POST, &format!("/v2/{repo}/blobs/uploads/"), auth, vec![], None)
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        let r = self
            .dp(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                auth,
                data.to_vec(),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        d
    }
}

fn record(e: &Value) -> Value {
    serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap()
}

/// Guards: an ECR call is recorded with the caller's identity (Root, arn,
/// account, access key), user agent, request and response, and
/// LookupEvents by EventName finds it.
#[tokio::test]
async fn an_api_call_is_recorded_with_its_caller() {
    let t = setup(false).await;
    let r = t
        .ecr(&root(), "CreateRepository", json!({"repositoryName": "team/app"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let events = t.events(&root(), "CreateRepository").await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["Username"], "root");
    assert_eq!(e["AccessKeyId"], KEY_ID);
    assert_eq!(e["EventSource"], "ecr.amazonaws.com");
    assert_eq!(e["Resources"][0]["ResourceName"], "team/app");
    let rec = record(e);
    assert_eq!(rec["userIdentity"]["type"], "Root");
    assert_eq!(rec["userIdentity"]["arn"], format!("arn:aws:iam::{ACCOUNT}:root"));
    assert_eq!(rec["userIdentity"]["accountId"], ACCOUNT);
    assert_eq!(rec["userIdentity"]["accessKeyId"], KEY_ID);
    assert_eq!(rec["userAgent"], "aws-cli/2.15 audit-test");
    assert_eq!(rec["awsRegion"], REGION);
    assert_eq!(rec["requestParameters"], json!({"repositoryName": "team/app"}));
    assert_eq!(rec["responseElements"]["repository"]["repositoryName"], "team/app");
    assert_eq!(rec["recipientAccountId"], ACCOUNT);
    // An error is recorded with its code.
    t.ecr(&root(), "DeleteRepository", json!({"repositoryName": "nope"}))
        .await;
    let rec = record(&t.events(&root(), "DeleteRepository").await[0]);
    assert_eq!(rec["errorCode"], "RepositoryNotFoundException");
    // LookupEvents records itself (read-only, the CloudTrail source).
    let rec = record(&t.events(&root(), "LookupEvents").await[0]);
    assert_eq!(rec["eventSource"], "cloudtrail.amazonaws.com");
    assert_eq!(rec["readOnly"], true);
}

/// Guards: IAM users and role sessions are recorded as IAMUser and
/// AssumedRole (with sessionContext); CreateAccessKey's secret and
/// AssumeRole's credentials never reach a record; nor does
/// GetAuthorizationToken's token, nor a password.
#[tokio::test]
async fn identities_and_no_secrets() {
    let t = setup(false).await;
    assert_eq!(
        t.query(&root(), "iam", "CreateUser", &[("UserName", "alice")])
            .await
            .status,
        StatusCode::OK
    );
    let k = t
        .query(&root(), "iam", "CreateAccessKey", &[("UserName", "alice")])
        .await;
    let alice = Creds {
        id: k.xml("AccessKeyId"),
        secret: k.xml("SecretAccessKey"),
        token: None,
    };
    let p = t
        .query(
            &root(),
            "iam",
            "CreateLoginProfile",
            &[("UserName", "alice"), ("Password", "Hunter2-Passw0rd!")],
        )
        .await;
    let allow = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:*","sts:AssumeRole"],"Resource":"*"}]}"#;
    t.query(
        &root(),
        "iam",
        "PutUserPolicy",
        &[("UserName", "alice"), ("PolicyName", "p"), ("PolicyDocument", allow)],
    )
    .await;
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:user/alice"}},"Action":"sts:AssumeRole"}}]}}"#
    );
    let r = t
        .query(
            &root(),
            "iam",
            "CreateRole",
            &[("RoleName", "deployer"), ("AssumeRolePolicyDocument", &trust)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    t.query(
        &root(),
        "iam",
        "PutRolePolicy",
        &[("RoleName", "deployer"), ("PolicyName", "p"), ("PolicyDocument", allow)],
    )
    .await;
    let r = t
        .query(
            &alice,
            "sts",
            "AssumeRole",
            &[
                ("RoleArn", &format!("arn:aws:iam::{ACCOUNT}:role/deployer")),
                ("RoleSessionName", "ci-42"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let session = Creds {
        id: r.xml("AccessKeyId"),
        secret: r.xml("SecretAccessKey"),
        token: Some(r.xml("SessionToken")),
    };
    let tok = t.ecr(&session, "GetAuthorizationToken", json!({})).await.json();
    let token = tok["authorizationData"][0]["authorizationToken"]
        .as_str()
        .unwrap()
        .to_string();
    t.ecr(&alice, "DescribeRepositories", json!({})).await;

    // Identities.
    let rec = record(&t.events(&root(), "DescribeRepositories").await[0]);
    assert_eq!(rec["userIdentity"]["type"], "IAMUser");
    assert_eq!(rec["userIdentity"]["userName"], "alice");
    assert_eq!(rec["userIdentity"]["accessKeyId"], alice.id.as_str());
    let e = &t.events(&root(), "AssumeRole").await[0];
    assert_eq!(e["EventSource"], "sts.amazonaws.com");
    assert_eq!(e["Username"], "alice");
    let e = &t.events(&root(), "GetAuthorizationToken").await[0];
    assert_eq!(e["Username"], "ci-42");
    let rec = record(e);
    assert_eq!(rec["userIdentity"]["type"], "AssumedRole");
    assert_eq!(rec["userIdentity"]["accessKeyId"], session.id.as_str());
    assert_eq!(
        rec["userIdentity"]["sessionContext"]["sessionIssuer"]["userName"],
        "deployer"
    );
    assert_eq!(rec["userIdentity"]["sessionContext"]["sessionIssuer"]["type"], "Role");
    assert!(rec["userIdentity"]["sessionContext"]["attributes"]["creationDate"].is_string());

    // No secret anywhere in the trail (CreateLoginProfile is not built:
    // refused, and recorded with the password it carried).
    assert!(p.body.contains("InvalidAction"), "{}", p.body);
    let all = t.s.store.as_ref();
    let mut text = String::new();
    let mut input = json!({"MaxResults": 50});
    loop {
        let v = kura_audit::lookup::lookup_events(all, ACCOUNT, REGION, &input, kura_store::now_millis() + 1000)
            .await
            .unwrap()
            .unwrap();
        text.push_str(&v.to_string());
        match v.get("NextToken") {
            Some(n) => input["NextToken"] = n.clone(),
            None => break,
        }
    }
    assert!(text.contains("CreateAccessKey") && text.contains("CreateLoginProfile"));
    for secret in [
        &alice.secret,
        &session.secret,
        session.token.as_ref().unwrap(),
        &token,
        &"Hunter2-Passw0rd!".to_string(),
    ] {
        assert!(!text.contains(secret.as_str()), "a secret is in the trail: {secret}");
    }
}

/// Guards: a failed authentication (a wrong secret for an existing key) is
/// recorded, with the error and the claimed key, under the deployment's
/// account (identity Unknown: nobody was authenticated); a request with no
/// credentials at all is not anyone's call.
#[tokio::test]
async fn failed_authentication_is_recorded() {
    let t = setup(false).await;
    let bad = Creds {
        secret: "not-the-secret".into(),
        ..root()
    };
    let r = t.ecr(&bad, "DescribeImages", json!({"repositoryName": "x"})).await;
    assert_eq!(r.json()["__type"], "InvalidSignatureException");
    let events = t.events(&root(), "DescribeImages").await;
    assert_eq!(events.len(), 1);
    let rec = record(&events[0]);
    assert_eq!(rec["errorCode"], "InvalidSignatureException");
    assert_eq!(rec["userIdentity"]["accessKeyId"], KEY_ID);
    // An unknown key: recorded in the deployment's account, identity unknown.
    let nobody = Creds {
        id: "AKIANOSUCHKEY0000000".into(),
        secret: "x".into(),
        token: None,
    };
    t.ecr(&nobody, "ListImages", json!({"repositoryName": "x"})).await;
    let rec = record(&t.events(&root(), "ListImages").await[0]);
    assert_eq!(rec["userIdentity"]["type"], "Unknown");
    assert_eq!(rec["errorCode"], "UnrecognizedClientException");
}

/// Guards: LookupEvents needs `cloudtrail:LookupEvents` (IAM), and an
/// account sees only its own records.
#[tokio::test]
async fn lookup_is_authorized_and_per_account() {
    let t = setup(false).await;
    t.ecr(&root(), "CreateRepository", json!({"repositoryName": "mine"}))
        .await;
    t.query(&root(), "iam", "CreateUser", &[("UserName", "bob")]).await;
    let k = t.query(&root(), "iam", "CreateAccessKey", &[("UserName", "bob")]).await;
    let bob = Creds {
        id: k.xml("AccessKeyId"),
        secret: k.xml("SecretAccessKey"),
        token: None,
    };
    let r = t.lookup(&bob, json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.json()["__type"], "AccessDeniedException");
    let allow = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"cloudtrail:LookupEvents","Resource":"*"}]}"#;
    t.query(
        &root(),
        "iam",
        "PutUserPolicy",
        &[("UserName", "bob"), ("PolicyName", "ct"), ("PolicyDocument", allow)],
    )
    .await;
    assert_eq!(t.events(&bob, "CreateRepository").await.len(), 1);
    // The other account sees none of it, and its own calls only.
    assert!(t.events(&other_root(), "CreateRepository").await.is_empty());
    t.ecr(&other_root(), "CreateRepository", json!({"repositoryName": "theirs"}))
        .await;
    let theirs = t.events(&other_root(), "CreateRepository").await;
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["Resources"][0]["ResourceName"], "theirs");
    // Bad input: CloudTrail's error types.
    let r = t.lookup(&root(), json!({"MaxResults": 99})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["__type"], "InvalidMaxResultsException");
    let r = t.lookup(&root(), json!({"NextToken": "forged"})).await;
    assert_eq!(r.json()["__type"], "InvalidNextTokenException");
    let r = t.lookup(&root(), json!({"StartTime": 10, "EndTime": 5})).await;
    assert_eq!(r.json()["__type"], "InvalidTimeRangeException");
    let r = t
        .lookup(
            &root(),
            json!({"LookupAttributes": [{"AttributeKey": "Nope", "AttributeValue": "x"}]}),
        )
        .await;
    assert_eq!(r.json()["__type"], "InvalidLookupAttributesException");
    let r = t
        .post(
            &root(),
            "cloudtrail",
            Some("com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.CreateTrail"),
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(r.json()["__type"], "UnknownOperationException");
    let r = t.post(&root(), "cloudtrail", Some(CT), b"{not json".to_vec()).await;
    assert_eq!(r.json()["__type"], "SerializationException");
    // Signed for another service: refused.
    let r = t.post(&root(), "ecr", Some(CT), b"{}".to_vec()).await;
    assert_eq!(r.json()["__type"], "InvalidSignatureException", "{}", r.body);
}

/// Guards: the data plane's writes are recorded (InitiateLayerUpload,
/// CompleteLayerUpload, PutImage, BatchDeleteImage) with the registry
/// token's identity and the client's user agent; pulls only with
/// data_reads on, as data events.
#[tokio::test]
async fn data_plane_writes_are_recorded_reads_behind_the_switch() {
    for reads in [false, true] {
        let t = setup(reads).await;
        t.ecr(&root(), "CreateRepository", json!({"repositoryName": "app"}))
            .await;
        let auth = t.basic().await;
        let cfg = br#"{"architecture":"amd64","os":"linux"}"#;
        let c = t.push_blob(&auth, "app", cfg).await;
        let layer = b"layer".repeat(100);
        let l = t.push_blob(&auth, "app", &layer).await;
        let m = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": cfg.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}]});
        let r = t
            .dp(
                Method::PUT,
                "/v2/app/manifests/v1",
                &auth,
                serde_json::to_vec(&m).unwrap(),
                Some("application/vnd.oci.image.manifest.v1+json"),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(
            t.dp(Method::GET, "/v2/app/manifests/v1", &auth, vec![], None)
                .await
                .status,
            StatusCode::OK
        );
        let puts = t.events(&root(), "PutImage").await;
        assert_eq!(puts.len(), 1);
        let rec = record(&puts[0]);
        assert_eq!(rec["userIdentity"]["type"], "Root");
        assert_eq!(rec["userIdentity"]["accessKeyId"], KEY_ID);
        assert_eq!(rec["userAgent"], "skopeo/1.13");
        assert_eq!(rec["requestParameters"]["repositoryName"], "app");
        assert_eq!(rec["requestParameters"]["imageTag"], "v1");
        assert_eq!(puts[0]["Resources"][0]["ResourceName"], "app");
        assert_eq!(t.events(&root(), "InitiateLayerUpload").await.len(), 4);
        let pulls = t.events(&root(), "BatchGetImage").await;
        if reads {
            assert_eq!(pulls.len(), 1);
            assert_eq!(record(&pulls[0])["eventCategory"], "Data");
        } else {
            assert!(pulls.is_empty(), "pulls are not recorded without the switch");
        }
        let d = Digest::sha256(&serde_json::to_vec(&m).unwrap()).to_string();
        assert_eq!(
            t.dp(Method::DELETE, &format!("/v2/app/manifests/{d}"), &auth, vec![], None)
                .await
                .status,
            StatusCode::ACCEPTED
        );
        assert_eq!(t.events(&root(), "BatchDeleteImage").await.len(), 1);
        // A refused token is no one's write.
        let bad = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("AWS:forged")
        );
        t.dp(Method::POST, "/v2/app/blobs/uploads/", &bad, vec![], None).await;
        assert_eq!(t.events(&root(), "InitiateLayerUpload").await.len(), 4);
    }
}
