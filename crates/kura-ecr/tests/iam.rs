//! Router tests of the IAM and STS Query API: form parsing, the XML answers,
//! error codes, delete conflicts, authorization of IAM calls, and the
//! AssumeRole decision (trust policy allows / denies / cross-account needs
//! an identity policy too), through `kura_ecr::app` and `oneshot` over real
//! SQLite and filesystem stores in a temp dir.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use kura_auth::seal::MasterKey;
use kura_ecr::auth::seal_secret;
use kura_store::control::AccessKeyRow;
use kura_store::ControlStore;
use tower::ServiceExt;

mod common;

use common::{ACCOUNT, KEY_ID, REGION, SECRET};

const OTHER: &str = "210987654321";
const OTHER_KEY_ID: &str = "AKIAKURATESTROOTKEY2";
const OTHER_SECRET: &str = "kuraOtherSecretKey/0123456789abcdefghijK";
const IAM_NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// Credentials to sign with.
#[derive(Clone, Debug)]
struct Creds {
    id: String,
    secret: String,
    token: Option<String>,
}

impl Creds {
    fn new(id: &str, secret: &str) -> Self {
        Creds {
            id: id.into(),
            secret: secret.into(),
            token: None,
        }
    }
}

struct T {
    app: Router,
    _dir: tempfile::TempDir,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    /// The text of the first `<tag>` element.
    fn get(&self, tag: &str) -> Option<String> {
        first(&self.body, tag)
    }

    /// An error answer: status, code, the ErrorResponse shape; its message.
    fn assert_error(&self, status: StatusCode, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(self.body.starts_with("<ErrorResponse xmlns="), "{}", self.body);
        assert_eq!(self.get("Type").as_deref(), Some("Sender"), "{}", self.body);
        assert_eq!(self.get("Code").as_deref(), Some(code), "{}", self.body);
        assert!(self.get("RequestId").is_some_and(|r| !r.is_empty()), "{}", self.body);
        assert_eq!(self.headers.get("content-type").unwrap(), "text/xml");
        let msg = self.get("Message").unwrap_or_default();
        assert!(!msg.is_empty(), "{}", self.body);
        msg
    }
}

/// The unescaped text of the first `<tag>…</tag>` in `xml`.
fn first(xml: &str, tag: &str) -> Option<String> {
    all(xml, tag).into_iter().next()
}

/// The unescaped texts of every `<tag>…</tag>` in `xml`.
fn all(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(
            after[..j]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &after[j + close.len()..];
    }
    out
}

/// Undo IAM's URL-encoding of policy documents.
fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn form_encode(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| {
            let enc = |s: &str| {
                s.bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect::<String>()
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

const ALLOW_ALL_IAM: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:*","Resource":"*"}]}"#;

fn trust_for(principal: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{principal}"}},"Action":"sts:AssumeRole"}}]}}"#
    )
}

async fn setup_with(max_session_secs: Option<u64>) -> T {
    let s = common::server_with(|c| {
        if let Some(m) = max_session_secs {
            c.max_session_secs = m;
        }
    })
    .await;
    // A second account with its own root key, for cross-account calls.
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
    T {
        app: s.app,
        _dir: s.dir,
    }
}

async fn setup() -> T {
    setup_with(None).await
}

fn root() -> Creds {
    Creds::new(KEY_ID, SECRET)
}

fn other_root() -> Creds {
    Creds::new(OTHER_KEY_ID, OTHER_SECRET)
}

impl T {
    /// A Query request signed for `service` (None: unsigned).
    async fn raw(&self, service: &str, creds: Option<&Creds>, body: String) -> Resp {
        let mut headers = HeaderMap::new();
        headers.insert("host", "localhost:5000".parse().unwrap());
        headers.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8".parse().unwrap(),
        );
        if let Some(c) = creds {
            if let Some(t) = &c.token {
                headers.insert("x-amz-security-token", t.parse().unwrap());
            }
            common::sign_post(
                &mut headers,
                body.as_bytes(),
                (&c.id, &c.secret),
                REGION,
                service,
                SystemTime::now(),
            );
        }
        let mut b = Request::builder().method(Method::POST).uri("/");
        *b.headers_mut().unwrap() = headers;
        let resp = self
            .app
            .clone()
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        Resp { status, headers, body }
    }

    async fn iam_as(&self, creds: &Creds, action: &str, params: &[(&str, &str)]) -> Resp {
        let mut all = vec![("Action", action), ("Version", "2010-05-08")];
        all.extend_from_slice(params);
        self.raw("iam", Some(creds), form_encode(&all)).await
    }

    async fn sts_as(&self, creds: &Creds, action: &str, params: &[(&str, &str)]) -> Resp {
        let mut all = vec![("Action", action), ("Version", "2011-06-15")];
        all.extend_from_slice(params);
        self.raw("sts", Some(creds), form_encode(&all)).await
    }

    /// An IAM call as the root that must succeed; checks the envelope.
    async fn iam(&self, action: &str, params: &[(&str, &str)]) -> Resp {
        let r = self.iam_as(&root(), action, params).await;
        assert_ok(&r, action, IAM_NS);
        r
    }

    /// A new user with an access key: its credentials.
    async fn user_with_key(&self, name: &str) -> Creds {
        self.iam("CreateUser", &[("UserName", name)]).await;
        let k = self.iam("CreateAccessKey", &[("UserName", name)]).await;
        Creds::new(&k.get("AccessKeyId").unwrap(), &k.get("SecretAccessKey").unwrap())
    }
}

fn assert_ok(r: &Resp, action: &str, ns: &str) {
    assert_eq!(r.status, StatusCode::OK, "{action}: {}", r.body);
    assert_eq!(r.headers.get("content-type").unwrap(), "text/xml");
    assert!(
        r.body.starts_with(&format!("<{action}Response xmlns=\"{ns}\">")),
        "{}",
        r.body
    );
    assert!(r.body.ends_with(&format!("</{action}Response>")), "{}", r.body);
    assert!(r.get("RequestId").is_some_and(|id| !id.is_empty()), "{}", r.body);
}

#[tokio::test]
async fn users_access_keys_and_the_xml_shape() {
    let t = setup().await;
    let r = t.iam("CreateUser", &[("UserName", "alice"), ("Path", "/team/")]).await;
    assert!(r
        .body
        .contains("<CreateUserResult><User><Path>/team/</Path><UserName>alice</UserName><UserId>AIDA"));
    let id = r.get("UserId").unwrap();
    assert_eq!(id.len(), 20);
    assert!(id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    assert_eq!(r.get("Arn").unwrap(), format!("arn:aws:iam::{ACCOUNT}:user/team/alice"));
    let created = r.get("CreateDate").unwrap();
    assert!(
        created.len() == 20 && created.ends_with('Z') && &created[10..11] == "T",
        "{created}"
    );

    // Names are unique whatever their case.
    let dup = t.iam_as(&root(), "CreateUser", &[("UserName", "ALICE")]).await;
    dup.assert_error(StatusCode::CONFLICT, "EntityAlreadyExists");
    t.iam_as(&root(), "GetUser", &[("UserName", "nobody")])
        .await
        .assert_error(StatusCode::NOT_FOUND, "NoSuchEntity");
    t.iam_as(&root(), "CreateUser", &[("UserName", "bad name")])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "ValidationError");
    t.iam_as(&root(), "CreateUser", &[])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "ValidationError");
    t.iam_as(&root(), "FlyToTheMoon", &[])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "InvalidAction");
    let unsigned = t
        .raw(
            "iam",
            None,
            form_encode(&[("Action", "ListUsers"), ("Version", "2010-05-08")]),
        )
        .await;
    unsigned.assert_error(StatusCode::FORBIDDEN, "MissingAuthenticationToken");
    let forged = Creds::new(KEY_ID, "not-the-secret-not-the-secret-not-the-se");
    t.iam_as(&forged, "ListUsers", &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "SignatureDoesNotMatch");
    t.iam_as(&Creds::new("AKIANOSUCHKEY0000000", SECRET), "ListUsers", &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "InvalidClientTokenId");

    let k = t.iam("CreateAccessKey", &[("UserName", "alice")]).await;
    assert_eq!(k.get("UserName").as_deref(), Some("alice"));
    assert_eq!(k.get("Status").as_deref(), Some("Active"));
    let key_id = k.get("AccessKeyId").unwrap();
    assert!(key_id.starts_with("AKIA") && key_id.len() == 20);
    let alice = Creds::new(&key_id, &k.get("SecretAccessKey").unwrap());
    assert_eq!(alice.secret.len(), 40);

    // The new key authenticates as the user.
    let who = t.sts_as(&alice, "GetCallerIdentity", &[]).await;
    assert_ok(&who, "GetCallerIdentity", STS_NS);
    assert_eq!(
        who.get("Arn").unwrap(),
        format!("arn:aws:iam::{ACCOUNT}:user/team/alice")
    );
    assert_eq!(who.get("UserId").unwrap(), id);
    assert_eq!(who.get("Account").unwrap(), ACCOUNT);
    let me = t.sts_as(&root(), "GetCallerIdentity", &[]).await;
    assert_eq!(me.get("Arn").unwrap(), format!("arn:aws:iam::{ACCOUNT}:root"));
    assert_eq!(me.get("UserId").unwrap(), ACCOUNT);

    // GetUser without a name is the caller (alice may read herself only
    // with a policy; the root may).
    let root_user = t.iam("GetUser", &[]).await;
    assert_eq!(root_user.get("Arn").unwrap(), format!("arn:aws:iam::{ACCOUNT}:root"));

    t.iam("CreateAccessKey", &[("UserName", "alice")]).await;
    t.iam_as(&root(), "CreateAccessKey", &[("UserName", "alice")])
        .await
        .assert_error(StatusCode::CONFLICT, "LimitExceeded");
    let list = t.iam("ListAccessKeys", &[("UserName", "alice")]).await;
    let ids = all(&list.body, "AccessKeyId");
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&key_id));
    assert_eq!(list.get("IsTruncated").as_deref(), Some("false"));
    let page = t
        .iam("ListAccessKeys", &[("UserName", "alice"), ("MaxItems", "1")])
        .await;
    assert_eq!(all(&page.body, "AccessKeyId").len(), 1);
    assert_eq!(page.get("IsTruncated").as_deref(), Some("true"));
    let marker = page.get("Marker").unwrap();
    let rest = t
        .iam("ListAccessKeys", &[("UserName", "alice"), ("Marker", &marker)])
        .await;
    assert_eq!(all(&rest.body, "AccessKeyId").len(), 1);
    assert_ne!(all(&rest.body, "AccessKeyId"), all(&page.body, "AccessKeyId"));

    // Inactive keys stop authenticating.
    t.iam(
        "UpdateAccessKey",
        &[("UserName", "alice"), ("AccessKeyId", &key_id), ("Status", "Inactive")],
    )
    .await;
    t.sts_as(&alice, "GetCallerIdentity", &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "InvalidClientTokenId");
    t.iam_as(
        &root(),
        "UpdateAccessKey",
        &[("UserName", "alice"), ("AccessKeyId", &key_id), ("Status", "Sleepy")],
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "ValidationError");

    // A user with keys cannot be deleted.
    let msg = t
        .iam_as(&root(), "DeleteUser", &[("UserName", "alice")])
        .await
        .assert_error(StatusCode::CONFLICT, "DeleteConflict");
    assert!(msg.contains("access keys"), "{msg}");
    for id in ids {
        t.iam("DeleteAccessKey", &[("UserName", "alice"), ("AccessKeyId", &id)])
            .await;
    }
    t.iam_as(
        &root(),
        "DeleteAccessKey",
        &[("UserName", "alice"), ("AccessKeyId", &key_id)],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "NoSuchEntity");
    let del = t.iam("DeleteUser", &[("UserName", "alice")]).await;
    assert!(!del.body.contains("<DeleteUserResult>"), "{}", del.body);
    t.iam_as(&root(), "GetUser", &[("UserName", "alice")])
        .await
        .assert_error(StatusCode::NOT_FOUND, "NoSuchEntity");
}

#[tokio::test]
async fn list_users_pages_with_markers() {
    let t = setup().await;
    for n in ["carol", "Bob", "alice", "dave"] {
        t.iam("CreateUser", &[("UserName", n)]).await;
    }
    let mut names = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut params = vec![("MaxItems", "3")];
        if let Some(m) = &marker {
            params.push(("Marker", m.as_str()));
        }
        let r = t.iam("ListUsers", &params).await;
        names.extend(all(&r.body, "UserName"));
        match r.get("IsTruncated").as_deref() {
            Some("true") => marker = r.get("Marker"),
            Some("false") => break,
            other => panic!("IsTruncated {other:?}"),
        }
    }
    assert_eq!(names, vec!["alice", "Bob", "carol", "dave"]);
    t.iam_as(&root(), "ListUsers", &[("MaxItems", "0")])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "ValidationError");
}

#[tokio::test]
async fn inline_policies_round_trip_and_block_deletion() {
    let t = setup().await;
    t.iam("CreateUser", &[("UserName", "alice")]).await;
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Pull","Effect":"Allow","Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"],"Resource":"arn:aws:ecr:us-east-1:123456789012:repository/app/*"}]}"#;
    t.iam(
        "PutUserPolicy",
        &[("UserName", "alice"), ("PolicyName", "pull"), ("PolicyDocument", doc)],
    )
    .await;
    let got = t
        .iam("GetUserPolicy", &[("UserName", "alice"), ("PolicyName", "pull")])
        .await;
    assert_eq!(got.get("UserName").as_deref(), Some("alice"));
    assert_eq!(got.get("PolicyName").as_deref(), Some("pull"));
    let encoded = got.get("PolicyDocument").unwrap();
    assert!(
        encoded.starts_with("%7B%22Version%22"),
        "IAM URL-encodes documents: {encoded}"
    );
    assert_eq!(url_decode(&encoded), doc);
    let names = t.iam("ListUserPolicies", &[("UserName", "alice")]).await;
    assert_eq!(all(&names.body, "member"), vec!["pull"]);

    // Malformed documents are refused with the parser's reason.
    let bad = t
        .iam_as(
            &root(),
            "PutUserPolicy",
            &[
                ("UserName", "alice"),
                ("PolicyName", "bad"),
                (
                    "PolicyDocument",
                    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Maybe","Action":"*","Resource":"*"}]}"#,
                ),
            ],
        )
        .await;
    let msg = bad.assert_error(StatusCode::BAD_REQUEST, "MalformedPolicyDocument");
    assert!(msg.contains("Effect"), "{msg}");
    // An identity policy may not name a principal.
    let with_principal = t
        .iam_as(
            &root(),
            "PutUserPolicy",
            &[
                ("UserName", "alice"),
                ("PolicyName", "p"),
                ("PolicyDocument", &trust_for("*")),
            ],
        )
        .await;
    with_principal.assert_error(StatusCode::BAD_REQUEST, "MalformedPolicyDocument");
    t.iam_as(
        &root(),
        "PutUserPolicy",
        &[("UserName", "ghost"), ("PolicyName", "p"), ("PolicyDocument", doc)],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "NoSuchEntity");

    let msg = t
        .iam_as(&root(), "DeleteUser", &[("UserName", "alice")])
        .await
        .assert_error(StatusCode::CONFLICT, "DeleteConflict");
    assert!(msg.contains("policies"), "{msg}");
    t.iam("DeleteUserPolicy", &[("UserName", "alice"), ("PolicyName", "pull")])
        .await;
    t.iam_as(
        &root(),
        "GetUserPolicy",
        &[("UserName", "alice"), ("PolicyName", "pull")],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "NoSuchEntity");
    t.iam("DeleteUser", &[("UserName", "alice")]).await;
}

#[tokio::test]
async fn iam_calls_are_authorized_by_policies() {
    let t = setup().await;
    let bob = t.user_with_key("bob").await;
    let denied = t.iam_as(&bob, "CreateUser", &[("UserName", "mallory")]).await;
    let msg = denied.assert_error(StatusCode::FORBIDDEN, "AccessDenied");
    assert!(
        msg.contains(&format!("arn:aws:iam::{ACCOUNT}:user/bob")) && msg.contains("iam:CreateUser"),
        "{msg}"
    );
    // Bob may not even read himself without a policy.
    t.iam_as(&bob, "GetUser", &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "AccessDenied");

    // Through a group's inline policy, bob becomes an IAM admin.
    t.iam("CreateGroup", &[("GroupName", "admins")]).await;
    t.iam("AddUserToGroup", &[("GroupName", "admins"), ("UserName", "bob")])
        .await;
    t.iam(
        "PutGroupPolicy",
        &[
            ("GroupName", "admins"),
            ("PolicyName", "iam"),
            ("PolicyDocument", ALLOW_ALL_IAM),
        ],
    )
    .await;
    let ok = t.iam_as(&bob, "CreateUser", &[("UserName", "carol")]).await;
    assert_ok(&ok, "CreateUser", IAM_NS);
    let me = t.iam_as(&bob, "GetUser", &[]).await;
    assert_ok(&me, "GetUser", IAM_NS);
    assert_eq!(me.get("UserName").as_deref(), Some("bob"));

    // A resource-level deny on one user.
    t.iam(
        "PutUserPolicy",
        &[
            ("UserName", "bob"),
            ("PolicyName", "not-carol"),
            (
                "PolicyDocument",
                &format!(
                    r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Action":"iam:DeleteUser","Resource":"arn:aws:iam::{ACCOUNT}:user/carol"}}]}}"#
                ),
            ),
        ],
    )
    .await;
    t.iam_as(&bob, "DeleteUser", &[("UserName", "carol")])
        .await
        .assert_error(StatusCode::FORBIDDEN, "AccessDenied");

    // Principal tags (aws:PrincipalTag) from TagUser reach the decision.
    t.iam("CreateUser", &[("UserName", "dora")]).await;
    let k = t.iam("CreateAccessKey", &[("UserName", "dora")]).await;
    let dora = Creds::new(&k.get("AccessKeyId").unwrap(), &k.get("SecretAccessKey").unwrap());
    t.iam(
        "PutUserPolicy",
        &[
            ("UserName", "dora"),
            ("PolicyName", "by-tag"),
            (
                "PolicyDocument",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:ListUsers","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/team":"platform"}}}]}"#,
            ),
        ],
    )
    .await;
    t.iam_as(&dora, "ListUsers", &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "AccessDenied");
    t.iam(
        "TagUser",
        &[
            ("UserName", "dora"),
            ("Tags.member.1.Key", "team"),
            ("Tags.member.1.Value", "platform"),
            ("Tags.member.2.Key", "tier"),
            ("Tags.member.2.Value", "gold"),
        ],
    )
    .await;
    assert_ok(&t.iam_as(&dora, "ListUsers", &[]).await, "ListUsers", IAM_NS);
    let tags = t.iam("ListUserTags", &[("UserName", "dora")]).await;
    assert_eq!(all(&tags.body, "Key"), vec!["team", "tier"]);
    assert_eq!(all(&tags.body, "Value"), vec!["platform", "gold"]);
    t.iam("UntagUser", &[("UserName", "dora"), ("TagKeys.member.1", "team")])
        .await;
    let tags = t.iam("ListUserTags", &[("UserName", "dora")]).await;
    assert_eq!(all(&tags.body, "Key"), vec!["tier"]);
    t.iam_as(&dora, "ListUsers", &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "AccessDenied");
}

#[tokio::test]
async fn groups_members_and_conflicts() {
    let t = setup().await;
    t.iam("CreateUser", &[("UserName", "alice")]).await;
    let g = t.iam("CreateGroup", &[("GroupName", "devs")]).await;
    assert!(g.get("GroupId").unwrap().starts_with("AGPA"));
    t.iam_as(&root(), "CreateGroup", &[("GroupName", "DEVS")])
        .await
        .assert_error(StatusCode::CONFLICT, "EntityAlreadyExists");
    t.iam("AddUserToGroup", &[("GroupName", "devs"), ("UserName", "alice")])
        .await;
    let got = t.iam("GetGroup", &[("GroupName", "devs")]).await;
    assert!(
        got.body.contains("<Group><Path>/</Path><GroupName>devs</GroupName>"),
        "{}",
        got.body
    );
    assert_eq!(all(&got.body, "UserName"), vec!["alice"]);
    let for_user = t.iam("ListGroupsForUser", &[("UserName", "alice")]).await;
    assert_eq!(all(&for_user.body, "GroupName"), vec!["devs"]);
    let groups = t.iam("ListGroups", &[]).await;
    assert_eq!(all(&groups.body, "GroupName"), vec!["devs"]);

    let msg = t
        .iam_as(&root(), "DeleteGroup", &[("GroupName", "devs")])
        .await
        .assert_error(StatusCode::CONFLICT, "DeleteConflict");
    assert!(msg.contains("remove users"), "{msg}");
    t.iam_as(&root(), "DeleteUser", &[("UserName", "alice")])
        .await
        .assert_error(StatusCode::CONFLICT, "DeleteConflict");
    t.iam("RemoveUserFromGroup", &[("GroupName", "devs"), ("UserName", "alice")])
        .await;
    t.iam(
        "AttachGroupPolicy",
        &[
            ("GroupName", "devs"),
            (
                "PolicyArn",
                "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
            ),
        ],
    )
    .await;
    let attached = t.iam("ListAttachedGroupPolicies", &[("GroupName", "devs")]).await;
    assert_eq!(
        all(&attached.body, "PolicyName"),
        vec!["AmazonEC2ContainerRegistryReadOnly"]
    );
    let msg = t
        .iam_as(&root(), "DeleteGroup", &[("GroupName", "devs")])
        .await
        .assert_error(StatusCode::CONFLICT, "DeleteConflict");
    assert!(msg.contains("detach"), "{msg}");
    t.iam(
        "DetachGroupPolicy",
        &[
            ("GroupName", "devs"),
            (
                "PolicyArn",
                "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
            ),
        ],
    )
    .await;
    t.iam("DeleteGroup", &[("GroupName", "devs")]).await;
    t.iam("DeleteUser", &[("UserName", "alice")]).await;
}

#[tokio::test]
async fn managed_policies_versions_and_attachments() {
    let t = setup().await;
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:DescribeRepositories","Resource":"*"}]}"#;
    let p = t
        .iam(
            "CreatePolicy",
            &[
                ("PolicyName", "describe"),
                ("PolicyDocument", doc),
                ("Description", "d"),
            ],
        )
        .await;
    let arn = p.get("Arn").unwrap();
    assert_eq!(arn, format!("arn:aws:iam::{ACCOUNT}:policy/describe"));
    assert!(p.get("PolicyId").unwrap().starts_with("ANPA"));
    assert_eq!(p.get("DefaultVersionId").as_deref(), Some("v1"));
    assert_eq!(p.get("AttachmentCount").as_deref(), Some("0"));
    t.iam_as(
        &root(),
        "CreatePolicy",
        &[("PolicyName", "describe"), ("PolicyDocument", doc)],
    )
    .await
    .assert_error(StatusCode::CONFLICT, "EntityAlreadyExists");
    t.iam_as(
        &root(),
        "CreatePolicy",
        &[("PolicyName", "broken"), ("PolicyDocument", "{\"Statement\": 7}")],
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "MalformedPolicyDocument");

    let v = t
        .iam("GetPolicyVersion", &[("PolicyArn", &arn), ("VersionId", "v1")])
        .await;
    assert_eq!(url_decode(&v.get("Document").unwrap()), doc);
    assert_eq!(v.get("IsDefaultVersion").as_deref(), Some("true"));

    // AWS's managed ECR policies are listed and readable.
    let aws = t.iam("ListPolicies", &[("Scope", "AWS")]).await;
    let aws_arns = all(&aws.body, "Arn");
    assert_eq!(aws_arns.len(), 3, "{}", aws.body);
    assert!(aws_arns.contains(&"arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser".to_string()));
    let local = t.iam("ListPolicies", &[("Scope", "Local")]).await;
    assert_eq!(all(&local.body, "Arn"), vec![arn.clone()]);
    let every = t.iam("ListPolicies", &[]).await;
    assert_eq!(all(&every.body, "Arn").len(), 4);
    let full = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryFullAccess";
    let g = t.iam("GetPolicy", &[("PolicyArn", full)]).await;
    assert_eq!(
        g.get("PolicyName").as_deref(),
        Some("AmazonEC2ContainerRegistryFullAccess")
    );
    let gv = t
        .iam("GetPolicyVersion", &[("PolicyArn", full), ("VersionId", "v1")])
        .await;
    assert!(url_decode(&gv.get("Document").unwrap()).contains("ecr:*"));
    t.iam_as(
        &root(),
        "GetPolicy",
        &[("PolicyArn", "arn:aws:iam::aws:policy/AdministratorAccessNope")],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "NoSuchEntity");

    // Attached: counted, listed, and it blocks deletion.
    t.iam("CreateUser", &[("UserName", "alice")]).await;
    t.iam("AttachUserPolicy", &[("UserName", "alice"), ("PolicyArn", &arn)])
        .await;
    t.iam_as(
        &root(),
        "AttachUserPolicy",
        &[
            ("UserName", "alice"),
            ("PolicyArn", &format!("arn:aws:iam::{OTHER}:policy/describe")),
        ],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "NoSuchEntity");
    let p = t.iam("GetPolicy", &[("PolicyArn", &arn)]).await;
    assert_eq!(p.get("AttachmentCount").as_deref(), Some("1"));
    let only = t.iam("ListPolicies", &[("OnlyAttached", "true")]).await;
    assert_eq!(all(&only.body, "Arn"), vec![arn.clone()]);
    let attached = t.iam("ListAttachedUserPolicies", &[("UserName", "alice")]).await;
    assert_eq!(all(&attached.body, "PolicyArn"), vec![arn.clone()]);
    let ents = t.iam("ListEntitiesForPolicy", &[("PolicyArn", &arn)]).await;
    assert_eq!(all(&ents.body, "UserName"), vec!["alice"]);
    let msg = t
        .iam_as(&root(), "DeletePolicy", &[("PolicyArn", &arn)])
        .await
        .assert_error(StatusCode::CONFLICT, "DeleteConflict");
    assert!(msg.contains("attached"), "{msg}");

    // Versions: up to five; the default cannot be deleted.
    let doc2 = doc.replace("DescribeRepositories", "ListImages");
    for _ in 0..4 {
        t.iam("CreatePolicyVersion", &[("PolicyArn", &arn), ("PolicyDocument", &doc2)])
            .await;
    }
    t.iam_as(
        &root(),
        "CreatePolicyVersion",
        &[("PolicyArn", &arn), ("PolicyDocument", &doc2)],
    )
    .await
    .assert_error(StatusCode::CONFLICT, "LimitExceeded");
    let vs = t.iam("ListPolicyVersions", &[("PolicyArn", &arn)]).await;
    assert_eq!(all(&vs.body, "VersionId"), vec!["v5", "v4", "v3", "v2", "v1"]);
    t.iam_as(
        &root(),
        "DeletePolicyVersion",
        &[("PolicyArn", &arn), ("VersionId", "v1")],
    )
    .await
    .assert_error(StatusCode::CONFLICT, "DeleteConflict");
    t.iam("SetDefaultPolicyVersion", &[("PolicyArn", &arn), ("VersionId", "v3")])
        .await;
    let p = t.iam("GetPolicy", &[("PolicyArn", &arn)]).await;
    assert_eq!(p.get("DefaultVersionId").as_deref(), Some("v3"));
    for v in ["v1", "v2", "v4", "v5"] {
        t.iam("DeletePolicyVersion", &[("PolicyArn", &arn), ("VersionId", v)])
            .await;
    }
    t.iam("DetachUserPolicy", &[("UserName", "alice"), ("PolicyArn", &arn)])
        .await;
    t.iam_as(
        &root(),
        "DetachUserPolicy",
        &[("UserName", "alice"), ("PolicyArn", &arn)],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "NoSuchEntity");
    t.iam("DeletePolicy", &[("PolicyArn", &arn)]).await;
    t.iam_as(&root(), "GetPolicy", &[("PolicyArn", &arn)])
        .await
        .assert_error(StatusCode::NOT_FOUND, "NoSuchEntity");
}

/// A role `name` trusting `principal`; its ARN.
async fn role(t: &T, name: &str, principal: &str) -> String {
    let r = t
        .iam(
            "CreateRole",
            &[("RoleName", name), ("AssumeRolePolicyDocument", &trust_for(principal))],
        )
        .await;
    assert!(r.get("RoleId").unwrap().starts_with("AROA"));
    assert_eq!(r.get("MaxSessionDuration").as_deref(), Some("3600"));
    r.get("Arn").unwrap()
}

fn session_creds(r: &Resp) -> Creds {
    Creds {
        id: r.get("AccessKeyId").unwrap(),
        secret: r.get("SecretAccessKey").unwrap(),
        token: r.get("SessionToken"),
    }
}

#[tokio::test]
async fn roles_trust_policies_and_conflicts() {
    let t = setup().await;
    let arn = role(&t, "deploy", &format!("arn:aws:iam::{ACCOUNT}:root")).await;
    assert_eq!(arn, format!("arn:aws:iam::{ACCOUNT}:role/deploy"));
    let got = t.iam("GetRole", &[("RoleName", "deploy")]).await;
    let trust = url_decode(&got.get("AssumeRolePolicyDocument").unwrap());
    assert_eq!(trust, trust_for(&format!("arn:aws:iam::{ACCOUNT}:root")));
    // A trust policy is a resource policy: it must name a principal.
    t.iam_as(
        &root(),
        "CreateRole",
        &[("RoleName", "r2"), ("AssumeRolePolicyDocument", ALLOW_ALL_IAM)],
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "MalformedPolicyDocument");
    t.iam_as(
        &root(),
        "CreateRole",
        &[
            ("RoleName", "r3"),
            ("AssumeRolePolicyDocument", &trust_for("*")),
            ("MaxSessionDuration", "60"),
        ],
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "ValidationError");
    t.iam(
        "UpdateAssumeRolePolicy",
        &[("RoleName", "deploy"), ("PolicyDocument", &trust_for(ACCOUNT))],
    )
    .await;
    let roles = t.iam("ListRoles", &[]).await;
    assert_eq!(all(&roles.body, "RoleName"), vec!["deploy"]);
    t.iam(
        "TagRole",
        &[
            ("RoleName", "deploy"),
            ("Tags.member.1.Key", "env"),
            ("Tags.member.1.Value", "prod"),
        ],
    )
    .await;
    let tags = t.iam("ListRoleTags", &[("RoleName", "deploy")]).await;
    assert_eq!(all(&tags.body, "Value"), vec!["prod"]);
    t.iam("UpdateRole", &[("RoleName", "deploy"), ("MaxSessionDuration", "7200")])
        .await;
    let got = t.iam("GetRole", &[("RoleName", "deploy")]).await;
    assert_eq!(got.get("MaxSessionDuration").as_deref(), Some("7200"));
    assert_eq!(all(&got.body, "Key"), vec!["env"]);
    t.iam("UntagRole", &[("RoleName", "deploy"), ("TagKeys.member.1", "env")])
        .await;
    let tags = t.iam("ListRoleTags", &[("RoleName", "deploy")]).await;
    assert!(all(&tags.body, "Key").is_empty(), "{}", tags.body);
    // STS calls Kura does not implement are refused, not faked.
    t.sts_as(&root(), "GetSessionToken", &[])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "InvalidAction");

    t.iam(
        "PutRolePolicy",
        &[
            ("RoleName", "deploy"),
            ("PolicyName", "iam"),
            ("PolicyDocument", ALLOW_ALL_IAM),
        ],
    )
    .await;
    t.iam(
        "AttachRolePolicy",
        &[
            ("RoleName", "deploy"),
            (
                "PolicyArn",
                "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser",
            ),
        ],
    )
    .await;
    let msg = t
        .iam_as(&root(), "DeleteRole", &[("RoleName", "deploy")])
        .await
        .assert_error(StatusCode::CONFLICT, "DeleteConflict");
    assert!(msg.contains("policies"), "{msg}");
    t.iam("DeleteRolePolicy", &[("RoleName", "deploy"), ("PolicyName", "iam")])
        .await;
    t.iam_as(&root(), "DeleteRole", &[("RoleName", "deploy")])
        .await
        .assert_error(StatusCode::CONFLICT, "DeleteConflict");
    t.iam(
        "DetachRolePolicy",
        &[
            ("RoleName", "deploy"),
            (
                "PolicyArn",
                "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser",
            ),
        ],
    )
    .await;
    t.iam("DeleteRole", &[("RoleName", "deploy")]).await;
    t.iam_as(&root(), "GetRole", &[("RoleName", "deploy")])
        .await
        .assert_error(StatusCode::NOT_FOUND, "NoSuchEntity");
}

#[tokio::test]
async fn assume_role_follows_the_trust_policy() {
    let t = setup().await;
    let alice = t.user_with_key("alice").await;
    let bob = t.user_with_key("bob").await;
    let role_arn = role(&t, "deploy", &format!("arn:aws:iam::{ACCOUNT}:user/alice")).await;
    t.iam(
        "PutRolePolicy",
        &[
            ("RoleName", "deploy"),
            ("PolicyName", "iam"),
            ("PolicyDocument", ALLOW_ALL_IAM),
        ],
    )
    .await;

    // The trust policy names alice: no identity policy needed in the account.
    let r = t
        .sts_as(
            &alice,
            "AssumeRole",
            &[("RoleArn", &role_arn), ("RoleSessionName", "ci-run")],
        )
        .await;
    assert_ok(&r, "AssumeRole", STS_NS);
    let session = session_creds(&r);
    assert!(session.id.starts_with("ASIA") && session.id.len() == 20);
    assert_eq!(session.secret.len(), 40);
    assert!(session.token.as_ref().is_some_and(|t| t.len() >= 100));
    let assumed = format!("arn:aws:sts::{ACCOUNT}:assumed-role/deploy/ci-run");
    assert_eq!(r.get("Arn").unwrap(), assumed);
    let assumed_id = r.get("AssumedRoleId").unwrap();
    assert!(
        assumed_id.starts_with("AROA") && assumed_id.ends_with(":ci-run"),
        "{assumed_id}"
    );
    let exp = r.get("Expiration").unwrap();
    let exp_secs = kura_iam::parse_date(&exp).unwrap() / 1000;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((exp_secs - now - 3600).abs() < 10, "default session: an hour ({exp})");

    // The session is the role: its identity and its permissions.
    let who = t.sts_as(&session, "GetCallerIdentity", &[]).await;
    assert_eq!(who.get("Arn").unwrap(), assumed);
    assert_eq!(who.get("UserId").unwrap(), assumed_id);
    assert_ok(&t.iam_as(&session, "ListUsers", &[]).await, "ListUsers", IAM_NS);
    t.iam_as(&alice, "ListUsers", &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "AccessDenied");
    // Without the session token the key is refused.
    let tokenless = Creds::new(&session.id, &session.secret);
    t.sts_as(&tokenless, "GetCallerIdentity", &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "InvalidClientTokenId");

    // Bob is not in the trust policy: even an identity policy allowing
    // sts:AssumeRole does not get him in.
    let msg = t
        .sts_as(&bob, "AssumeRole", &[("RoleArn", &role_arn), ("RoleSessionName", "x1")])
        .await
        .assert_error(StatusCode::FORBIDDEN, "AccessDenied");
    assert_eq!(
        msg,
        format!("User: arn:aws:iam::{ACCOUNT}:user/bob is not authorized to perform: sts:AssumeRole on resource: {role_arn}")
    );
    t.iam(
        "PutUserPolicy",
        &[
            ("UserName", "bob"),
            ("PolicyName", "assume"),
            (
                "PolicyDocument",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}"#,
            ),
        ],
    )
    .await;
    t.sts_as(&bob, "AssumeRole", &[("RoleArn", &role_arn), ("RoleSessionName", "x1")])
        .await
        .assert_error(StatusCode::FORBIDDEN, "AccessDenied");

    // A trust policy naming the account delegates to identity policies:
    // bob (with one) may, alice (without) may not.
    t.iam(
        "UpdateAssumeRolePolicy",
        &[("RoleName", "deploy"), ("PolicyDocument", &trust_for(ACCOUNT))],
    )
    .await;
    assert_ok(
        &t.sts_as(&bob, "AssumeRole", &[("RoleArn", &role_arn), ("RoleSessionName", "x1")])
            .await,
        "AssumeRole",
        STS_NS,
    );
    t.sts_as(
        &alice,
        "AssumeRole",
        &[("RoleArn", &role_arn), ("RoleSessionName", "x2")],
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "AccessDenied");
    // The account root, trusted through its account, may too.
    let r = t
        .sts_as(
            &root(),
            "AssumeRole",
            &[("RoleArn", &role_arn), ("RoleSessionName", "x3")],
        )
        .await;
    assert_ok(&r, "AssumeRole", STS_NS);

    // Unknown roles, bad input, durations beyond the role's limit.
    t.sts_as(
        &bob,
        "AssumeRole",
        &[
            ("RoleArn", &format!("arn:aws:iam::{ACCOUNT}:role/nope")),
            ("RoleSessionName", "x1"),
        ],
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "AccessDenied");
    t.sts_as(&bob, "AssumeRole", &[("RoleArn", "garbage"), ("RoleSessionName", "x1")])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "ValidationError");
    t.sts_as(
        &bob,
        "AssumeRole",
        &[
            ("RoleArn", &role_arn),
            ("RoleSessionName", "x1"),
            ("DurationSeconds", "7200"),
        ],
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "ValidationError");
    t.sts_as(
        &bob,
        "AssumeRole",
        &[
            ("RoleArn", &role_arn),
            ("RoleSessionName", "x1"),
            ("DurationSeconds", "60"),
        ],
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "ValidationError");
}

#[tokio::test]
async fn cross_account_assume_role_needs_both_sides() {
    let t = setup().await;
    // A user in the other account, made by that account's root.
    let other = other_root();
    let r = t.iam_as(&other, "CreateUser", &[("UserName", "ext")]).await;
    assert_ok(&r, "CreateUser", IAM_NS);
    assert_eq!(r.get("Arn").unwrap(), format!("arn:aws:iam::{OTHER}:user/ext"));
    let k = t.iam_as(&other, "CreateAccessKey", &[("UserName", "ext")]).await;
    let ext = Creds::new(&k.get("AccessKeyId").unwrap(), &k.get("SecretAccessKey").unwrap());
    // Each account sees only its own users.
    let mine = t.iam("ListUsers", &[]).await;
    assert!(all(&mine.body, "UserName").is_empty(), "{}", mine.body);
    t.iam_as(&root(), "GetUser", &[("UserName", "ext")])
        .await
        .assert_error(StatusCode::NOT_FOUND, "NoSuchEntity");

    let role_arn = role(&t, "shared", &format!("arn:aws:iam::{OTHER}:user/ext")).await;
    // The trust policy allows, but ext's account grants nothing yet.
    t.sts_as(
        &ext,
        "AssumeRole",
        &[("RoleArn", &role_arn), ("RoleSessionName", "visit")],
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "AccessDenied");
    let put = t
        .iam_as(
            &other,
            "PutUserPolicy",
            &[
                ("UserName", "ext"),
                ("PolicyName", "assume"),
                (
                    "PolicyDocument",
                    &format!(
                        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"{role_arn}"}}]}}"#
                    ),
                ),
            ],
        )
        .await;
    assert_ok(&put, "PutUserPolicy", IAM_NS);
    let r = t
        .sts_as(
            &ext,
            "AssumeRole",
            &[("RoleArn", &role_arn), ("RoleSessionName", "visit")],
        )
        .await;
    assert_ok(&r, "AssumeRole", STS_NS);
    let session = session_creds(&r);
    let who = t.sts_as(&session, "GetCallerIdentity", &[]).await;
    assert_eq!(
        who.get("Arn").unwrap(),
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/shared/visit")
    );
    assert_eq!(who.get("Account").unwrap(), ACCOUNT);

    // The other account's root, not named by the trust policy, is refused.
    t.sts_as(
        &other,
        "AssumeRole",
        &[("RoleArn", &role_arn), ("RoleSessionName", "root")],
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "AccessDenied");
}

#[tokio::test]
async fn session_lifetime_is_capped_by_the_operator_and_expires() {
    let t = setup_with(Some(1)).await;
    let alice = t.user_with_key("alice").await;
    let role_arn = role(&t, "short", &format!("arn:aws:iam::{ACCOUNT}:user/alice")).await;
    let r = t
        .sts_as(
            &alice,
            "AssumeRole",
            &[("RoleArn", &role_arn), ("RoleSessionName", "brief")],
        )
        .await;
    assert_ok(&r, "AssumeRole", STS_NS);
    let session = session_creds(&r);
    let exp = kura_iam::parse_date(&r.get("Expiration").unwrap()).unwrap() / 1000;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(exp - now <= 1, "the operator ceiling of 1 s applies");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    t.sts_as(&session, "GetCallerIdentity", &[])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "ExpiredTokenException");
    t.iam_as(&session, "ListUsers", &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "ExpiredToken");
}
