//! The record's shape: identities, redaction of every secret, trimming of
//! policy-sized blobs, resources.

use kura_audit::record::{build, user_identity};
use kura_audit::redact::HIDDEN;
use kura_audit::{CallRecord, Caller};
use serde_json::{json, Value};

const ACCOUNT: &str = "123456789012";

fn root() -> Caller {
    Caller {
        account: ACCOUNT.into(),
        principal_arn: format!("arn:aws:iam::{ACCOUNT}:root"),
        principal_id: ACCOUNT.into(),
        access_key_id: "AKIAROOT".into(),
        token_issued_at: None,
    }
}

fn call(source: &str, name: &str, params: Value, response: Value) -> CallRecord {
    CallRecord {
        time_ms: 1_700_000_000_123,
        event_source: source.into(),
        event_name: name.into(),
        aws_region: "eu-west-1".into(),
        caller: Some(root()),
        source_ip: Some(std::net::IpAddr::from([127, 0, 0, 1])),
        user_agent: Some("aws-cli/2.0".into()),
        request_parameters: Some(params),
        response_elements: Some(response),
        request_id: "rid-1".into(),
        claimed_access_key_id: None,
        error_code: None,
        error_message: None,
        read_only: false,
        status: 200,
    }
}

fn record(c: &CallRecord) -> Value {
    serde_json::from_str(&build(c, false, "999999999999").record).unwrap()
}

/// Guards: the CloudTrail fields every record carries, with their names and
/// values (eventVersion … recipientAccountId).
#[test]
fn a_record_has_cloudtrails_fields() {
    let c = call(
        "ecr.amazonaws.com",
        "CreateRepository",
        json!({"repositoryName": "team/app"}),
        json!({"repository": {"repositoryName": "team/app"}}),
    );
    let row = build(&c, false, "999999999999");
    let r: Value = serde_json::from_str(&row.record).unwrap();
    assert_eq!(r["eventVersion"], "1.08");
    assert_eq!(r["eventTime"], "2023-11-14T22:13:20Z");
    assert_eq!(r["eventSource"], "ecr.amazonaws.com");
    assert_eq!(r["eventName"], "CreateRepository");
    assert_eq!(r["awsRegion"], "eu-west-1");
    assert_eq!(r["sourceIPAddress"], "127.0.0.1");
    assert_eq!(r["userAgent"], "aws-cli/2.0");
    assert_eq!(r["requestParameters"]["repositoryName"], "team/app");
    assert_eq!(r["responseElements"]["repository"]["repositoryName"], "team/app");
    assert_eq!(r["requestID"], "rid-1");
    assert_eq!(r["eventID"], row.event_id.as_str());
    assert_eq!(r["readOnly"], false);
    assert_eq!(r["eventType"], "AwsApiCall");
    assert_eq!(r["managementEvent"], true);
    assert_eq!(r["eventCategory"], "Management");
    assert_eq!(r["recipientAccountId"], ACCOUNT);
    assert_eq!(r["resources"][0]["type"], "AWS::ECR::Repository");
    assert_eq!(
        r["resources"][0]["ARN"],
        format!("arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/team/app")
    );
    assert!(r.get("errorCode").is_none());
    assert_eq!(row.account, ACCOUNT);
    assert_eq!(row.username.as_deref(), Some("root"));
    assert_eq!(row.access_key_id.as_deref(), Some("AKIAROOT"));
    assert_eq!(
        row.resources,
        vec![("AWS::ECR::Repository".to_string(), "team/app".to_string())]
    );
}

/// Guards: errors are recorded; a read's answer is not; a data event is
/// marked as one.
#[test]
fn errors_reads_and_data_events() {
    let mut c = call(
        "ecr.amazonaws.com",
        "DescribeRepositories",
        json!({}),
        json!({"repositories": []}),
    );
    c.read_only = true;
    c.error_code = Some("RepositoryNotFoundException".into());
    c.error_message = Some("nope".into());
    let r = record(&c);
    assert_eq!(r["errorCode"], "RepositoryNotFoundException");
    assert_eq!(r["errorMessage"], "nope");
    assert_eq!(r["readOnly"], true);
    assert_eq!(r["responseElements"], Value::Null);
    let r: Value = serde_json::from_str(&build(&c, true, "999999999999").record).unwrap();
    assert_eq!(r["eventCategory"], "Data");
    assert_eq!(r["managementEvent"], false);
}

/// Guards: userIdentity for each principal type (Root, IAMUser,
/// AssumedRole with sessionContext) and for an unidentified caller; and the
/// Username LookupEvents matches.
#[test]
fn identity_types() {
    let (id, user) = user_identity(Some(&root()), None);
    assert_eq!(id["type"], "Root");
    assert_eq!(id["principalId"], ACCOUNT);
    assert_eq!(id["arn"], format!("arn:aws:iam::{ACCOUNT}:root"));
    assert_eq!(id["accountId"], ACCOUNT);
    assert_eq!(id["accessKeyId"], "AKIAROOT");
    assert_eq!(user.as_deref(), Some("root"));

    let alice = Caller {
        principal_arn: format!("arn:aws:iam::{ACCOUNT}:user/team/alice"),
        principal_id: "AIDAALICE".into(),
        access_key_id: "AKIAALICE".into(),
        ..root()
    };
    let (id, user) = user_identity(Some(&alice), None);
    assert_eq!(id["type"], "IAMUser");
    assert_eq!(id["userName"], "alice");
    assert_eq!(id["principalId"], "AIDAALICE");
    assert_eq!(user.as_deref(), Some("alice"));

    let session = Caller {
        principal_arn: format!("arn:aws:sts::{ACCOUNT}:assumed-role/deployer/ci-42"),
        principal_id: "AROADEPLOYER:ci-42".into(),
        access_key_id: "ASIASESSION".into(),
        token_issued_at: Some(1_700_000_000_000),
        ..root()
    };
    let (id, user) = user_identity(Some(&session), None);
    assert_eq!(id["type"], "AssumedRole");
    assert_eq!(id["principalId"], "AROADEPLOYER:ci-42");
    assert_eq!(id["accessKeyId"], "ASIASESSION");
    let issuer = &id["sessionContext"]["sessionIssuer"];
    assert_eq!(issuer["type"], "Role");
    assert_eq!(issuer["principalId"], "AROADEPLOYER");
    assert_eq!(issuer["arn"], format!("arn:aws:iam::{ACCOUNT}:role/deployer"));
    assert_eq!(issuer["userName"], "deployer");
    assert_eq!(
        id["sessionContext"]["attributes"]["creationDate"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(user.as_deref(), Some("ci-42"));

    let (id, user) = user_identity(None, None);
    assert_eq!(id, json!({"type": "Unknown"}));
    assert_eq!(user, None);
}

/// Guards: a call nobody was identified for lands in the fallback account.
#[test]
fn unidentified_calls_go_to_the_fallback_account() {
    let mut c = call("ecr.amazonaws.com", "DescribeRepositories", json!({}), json!({}));
    c.caller = None;
    let row = build(&c, false, "999999999999");
    assert_eq!(row.account, "999999999999");
    assert_eq!(row.username, None);
    assert_eq!(row.access_key_id, None);
    // A failed authentication that claimed a key: Unknown, with that key
    // (LookupEvents' AccessKeyId finds it).
    c.claimed_access_key_id = Some("AKIACLAIMED".into());
    let row = build(&c, false, "999999999999");
    assert_eq!(row.access_key_id.as_deref(), Some("AKIACLAIMED"));
    let r: Value = serde_json::from_str(&row.record).unwrap();
    assert_eq!(
        r["userIdentity"],
        json!({"type": "Unknown", "accessKeyId": "AKIACLAIMED"})
    );
}

/// Guards: no secret value reaches a record — CreateAccessKey's secret,
/// AssumeRole's credentials, GetAuthorizationToken's token, a download URL,
/// passwords, a layer part, a connection's auth parameters.
#[test]
fn secrets_never_reach_the_record() {
    let secrets = [
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "FwoGZXIvYXdzEXAMPLESESSIONTOKEN",
        "QVdTOmV5SnBZWE",
        "hunter2-password",
        "bGF5ZXIgcGFydCBieXRlcw==",
        "api-key-value-secret",
        "oauth-client-secret",
        "header-secret-value",
        "https://x/v2/r/blobs/sha256:1?X-Kura-Download=signed",
    ];
    let calls = [
        call(
            "iam.amazonaws.com",
            "CreateAccessKey",
            json!({"UserName": "alice"}),
            json!({"accessKey": {"accessKeyId": "AKIAX", "secretAccessKey": secrets[0], "status": "Active"}}),
        ),
        call(
            "sts.amazonaws.com",
            "AssumeRole",
            json!({"RoleArn": "arn:aws:iam::1:role/r", "RoleSessionName": "s"}),
            json!({"credentials": {"accessKeyId": "ASIAX", "secretAccessKey": secrets[0], "sessionToken": secrets[1]}}),
        ),
        call(
            "sts.amazonaws.com",
            "GetCallerIdentity",
            json!({"SessionToken": secrets[1]}),
            json!({}),
        ),
        call(
            "ecr.amazonaws.com",
            "GetAuthorizationToken",
            json!({}),
            json!({"authorizationData": [{"authorizationToken": secrets[2], "proxyEndpoint": "http://x"}]}),
        ),
        call(
            "ecr-public.amazonaws.com",
            "GetAuthorizationToken",
            json!({}),
            json!({"authorizationData": {"authorizationToken": secrets[2]}}),
        ),
        call(
            "iam.amazonaws.com",
            "CreateLoginProfile",
            json!({"UserName": "alice", "Password": secrets[3]}),
            json!({}),
        ),
        call(
            "iam.amazonaws.com",
            "ChangePassword",
            json!({"OldPassword": secrets[3], "NewPassword": secrets[3]}),
            json!({}),
        ),
        call(
            "ecr.amazonaws.com",
            "UploadLayerPart",
            json!({"repositoryName": "r", "uploadId": "u", "partFirstByte": 0, "partLastByte": 10, "layerPartBlob": secrets[4]}),
            json!({}),
        ),
        call(
            "events.amazonaws.com",
            "CreateConnection",
            json!({
            "Name": "hook", "AuthorizationType": "API_KEY",
            "AuthParameters": {
                "ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": secrets[5]},
                "BasicAuthParameters": {"Username": "bob", "Password": secrets[3]},
                "OAuthParameters": {"ClientParameters": {"ClientID": "id", "ClientSecret": secrets[6]}, "AuthorizationEndpoint": "https://a", "HttpMethod": "POST"},
                "InvocationHttpParameters": {"HeaderParameters": [{"Key": "X-Secret", "Value": secrets[7], "IsValueSecret": true}]}
            }}),
            json!({"ConnectionArn": "arn:aws:events:eu-west-1:1:connection/hook"}),
        ),
        call(
            "ecr.amazonaws.com",
            "GetDownloadUrlForLayer",
            json!({"repositoryName": "r", "layerDigest": "sha256:1"}),
            json!({"downloadUrl": secrets[8]}),
        ),
    ];
    for c in &calls {
        let row = build(c, false, ACCOUNT);
        for s in secrets {
            assert!(
                !row.record.contains(s),
                "{}: the record holds a secret: {}",
                c.event_name,
                row.record
            );
        }
    }
    let r = record(&calls[0]);
    assert_eq!(r["responseElements"]["accessKey"]["secretAccessKey"], HIDDEN);
    assert_eq!(r["responseElements"]["accessKey"]["accessKeyId"], "AKIAX");
    let r = record(&calls[8]);
    let auth = &r["requestParameters"]["AuthParameters"];
    assert_eq!(auth["ApiKeyAuthParameters"]["ApiKeyName"], "x-api-key");
    assert_eq!(auth["ApiKeyAuthParameters"]["ApiKeyValue"], HIDDEN);
    assert_eq!(auth["BasicAuthParameters"]["Username"], "bob");
    assert_eq!(
        auth["InvocationHttpParameters"]["HeaderParameters"][0]["Key"],
        "X-Secret"
    );
    assert_eq!(r["resources"][0]["type"], "AWS::Events::Connection");
}

/// Guards: policy-sized blobs (policy texts, lifecycle policies, manifests,
/// IAM policy documents) become a marker with their size and hash; short
/// ones stay; huge answers are left out.
#[test]
fn policy_sized_blobs_are_trimmed() {
    let big = format!(
        "{{\"Version\":\"2012-10-17\",\"Statement\":[{}]}}",
        "{\"Effect\":\"Allow\"},".repeat(200)
    );
    for (name, key) in [
        ("SetRepositoryPolicy", "policyText"),
        ("PutLifecyclePolicy", "lifecyclePolicyText"),
        ("PutImage", "imageManifest"),
        ("PutRolePolicy", "PolicyDocument"),
        ("CreateRole", "AssumeRolePolicyDocument"),
    ] {
        let r = record(&call(
            "ecr.amazonaws.com",
            name,
            json!({"repositoryName": "r", key: big}),
            json!({}),
        ));
        let v = r["requestParameters"][key].as_str().unwrap();
        assert!(
            v.starts_with(&format!("[trimmed: {} bytes, sha256:", big.len())),
            "{name}: {v}"
        );
    }
    let small = "{\"rules\":[]}";
    let r = record(&call(
        "ecr.amazonaws.com",
        "PutLifecyclePolicy",
        json!({"lifecyclePolicyText": small}),
        json!({}),
    ));
    assert_eq!(r["requestParameters"]["lifecyclePolicyText"], small);
    let huge = json!({"images": vec![json!({"imageManifest": "x".repeat(200)}); 50]});
    let r = record(&call("ecr.amazonaws.com", "BatchDeleteImage", json!({}), huge));
    assert_eq!(r["responseElements"], Value::Null, "a large answer is not recorded");
}
