//! `evaluate`: a table of policies and requests with the decision IAM makes.

use kura_iam::{
    evaluate, managed_policy, Decision, ParseOptions, Policy, PolicyKind, PolicySource, Principal, RequestContext,
    RequestEnv, AMAZON_EC2_CONTAINER_REGISTRY_FULL_ACCESS, AMAZON_EC2_CONTAINER_REGISTRY_POWER_USER,
    AMAZON_EC2_CONTAINER_REGISTRY_READ_ONLY,
};

use Decision::{Allow, ExplicitDeny as Deny, ImplicitDeny as Implicit};

const A: &str = "111122223333";
const B: &str = "444455556666";
const C: &str = "777788889999";
const REPO: &str = "arn:aws:ecr:us-east-1:111122223333:repository/app";
const OTHER_REPO: &str = "arn:aws:ecr:us-east-1:111122223333:repository/other";
const ALICE: &str = "arn:aws:iam::111122223333:user/alice";
const CAROL: &str = "arn:aws:iam::111122223333:user/carol";
const BOB: &str = "arn:aws:iam::444455556666:user/bob";
const GET: &str = "ecr:BatchGetImage";
const PUT: &str = "ecr:PutImage";
/// 2023-11-14T22:13:20Z.
const NOW: i64 = 1_700_000_000;

struct Case {
    name: &'static str,
    identity: Vec<String>,
    resource: Option<String>,
    ctx: RequestContext,
    want: Decision,
}

/// A 2012-10-17 policy with these statements.
fn pol(statements: &[&str]) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{}]}}"#, statements.join(","))
}

/// An identity policy allowing `action` on `resource`.
fn allow(action: &str, resource: &str) -> String {
    pol(&[&stmt("Allow", action, resource)])
}

/// An identity statement.
fn stmt(effect: &str, action: &str, resource: &str) -> String {
    format!(r#"{{"Effect":"{effect}","Action":"{action}","Resource":"{resource}"}}"#)
}

/// An identity statement allowing `ecr:*` on everything with a condition.
fn allow_if(condition: &str) -> String {
    pol(&[&format!(
        r#"{{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{condition}}}"#
    )])
}

/// A resource policy statement (no Resource, as ECR repository policies).
fn rstmt(effect: &str, principal: &str, action: &str) -> String {
    format!(r#"{{"Effect":"{effect}","Principal":{principal},"Action":"{action}"}}"#)
}

/// A resource policy with one statement.
fn rpol(effect: &str, principal: &str, action: &str) -> Option<String> {
    Some(pol(&[&rstmt(effect, principal, action)]))
}

fn aws(p: &str) -> String {
    format!(r#"{{"AWS":"{p}"}}"#)
}

fn alice() -> Principal {
    Principal::user(A, "alice")
}

/// A request on `resource` in account A, standard keys filled at [`NOW`].
fn req(p: Principal, action: &str, resource: &str) -> RequestContext {
    let mut ctx = RequestContext::new(p, action, resource, A);
    ctx.fill_standard_keys(&RequestEnv {
        current_time: Some(NOW),
        ..RequestEnv::default()
    });
    ctx
}

fn get(p: Principal) -> RequestContext {
    req(p, GET, REPO)
}

fn case(
    name: &'static str,
    identity: &[String],
    resource: Option<String>,
    ctx: RequestContext,
    want: Decision,
) -> Case {
    Case {
        name,
        identity: identity.to_vec(),
        resource,
        ctx,
        want,
    }
}

fn cases() -> Vec<Case> {
    let all = || allow("*", "*");
    let mut v = Vec::new();

    // --- Basics, actions and resources -------------------------------------
    v.push(case("no policy at all", &[], None, get(alice()), Implicit));
    v.push(case("exact allow", &[allow(GET, REPO)], None, get(alice()), Allow));
    v.push(case("ecr:* allows", &[allow("ecr:*", REPO)], None, get(alice()), Allow));
    v.push(case("* action, * resource", &[all()], None, get(alice()), Allow));
    v.push(case("other action", &[allow(PUT, REPO)], None, get(alice()), Implicit));
    v.push(case(
        "action case-insensitive",
        &[allow("ECR:batchgetIMAGE", REPO)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "action prefix *",
        &[allow("ecr:Batch*", REPO)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "action suffix *",
        &[allow("ecr:*Image", REPO)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "action ? one char",
        &[allow("ecr:BatchGetImag?", REPO)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "action ? too short",
        &[allow("ecr:BatchGet?", REPO)],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "action lowercase wildcard",
        &[allow("ecr:batch*", REPO)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "other service",
        &[allow("s3:*", "*")],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "resource case-sensitive",
        &[allow(GET, "arn:aws:ecr:us-east-1:111122223333:repository/APP")],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "resource wildcard region and name",
        &[allow(GET, "arn:aws:ecr:*:111122223333:repository/*")],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "resource ? matches one char",
        &[allow(GET, "arn:aws:ecr:us-east-1:111122223333:repository/ap?")],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "resource ? needs exactly one char",
        &[allow(GET, "arn:aws:ecr:us-east-1:111122223333:repository/app?")],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "resource of another account",
        &[allow(GET, "arn:aws:ecr:*:444455556666:repository/*")],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "resource list, second matches",
        &[pol(&[&format!(
            r#"{{"Effect":"Allow","Action":["ecr:PutImage","ecr:BatchGetImage"],"Resource":["{OTHER_REPO}","{REPO}"]}}"#
        )])],
        None,
        get(alice()),
        Allow,
    ));

    // --- Deny overrides allow ----------------------------------------------
    v.push(case(
        "deny in the same identity policy",
        &[pol(&[&stmt("Allow", "ecr:*", "*"), &stmt("Deny", GET, REPO)])],
        None,
        get(alice()),
        Deny,
    ));
    v.push(case(
        "deny in another identity policy",
        &[all(), pol(&[&stmt("Deny", "ecr:Batch*", "*")])],
        None,
        get(alice()),
        Deny,
    ));
    v.push(case(
        "deny in the resource policy beats identity allow",
        &[all()],
        rpol("Deny", &aws(ALICE), GET),
        get(alice()),
        Deny,
    ));
    v.push(case(
        "resource deny * beats resource allow",
        &[],
        Some(pol(&[
            &rstmt("Allow", &aws(ALICE), "ecr:*"),
            &rstmt("Deny", "\"*\"", GET),
        ])),
        get(alice()),
        Deny,
    ));
    v.push(case(
        "deny of another action does not apply",
        &[pol(&[&stmt("Allow", "ecr:*", "*"), &stmt("Deny", PUT, "*")])],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "resource deny naming the account covers its users",
        &[all()],
        rpol("Deny", &aws(A), "ecr:*"),
        get(alice()),
        Deny,
    ));

    // --- NotAction / NotResource / NotPrincipal ----------------------------
    let not_action =
        |effect: &str, na: &str| pol(&[&format!(r#"{{"Effect":"{effect}","NotAction":"{na}","Resource":"*"}}"#)]);
    v.push(case(
        "NotAction allows others",
        &[not_action("Allow", "ecr:Delete*")],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "NotAction excludes listed",
        &[not_action("Allow", "ecr:Delete*")],
        None,
        req(alice(), "ecr:DeleteRepository", REPO),
        Implicit,
    ));
    v.push(case(
        "Deny NotAction spares the listed action",
        &[all(), not_action("Deny", GET)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "Deny NotAction denies others",
        &[all(), not_action("Deny", GET)],
        None,
        req(alice(), PUT, REPO),
        Deny,
    ));
    let not_resource =
        |effect: &str, nr: &str| pol(&[&format!(r#"{{"Effect":"{effect}","Action":"*","NotResource":"{nr}"}}"#)]);
    v.push(case(
        "NotResource allows others",
        &[not_resource("Allow", OTHER_REPO)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "NotResource excludes listed",
        &[not_resource("Allow", REPO)],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "Deny NotResource spares listed",
        &[all(), not_resource("Deny", REPO)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "Deny NotResource denies others",
        &[all(), not_resource("Deny", REPO)],
        None,
        req(alice(), GET, OTHER_REPO),
        Deny,
    ));
    let not_principal = |effect: &str, who: &str| {
        Some(pol(&[&format!(
            r#"{{"Effect":"{effect}","NotPrincipal":{{"AWS":"{who}"}},"Action":"ecr:*"}}"#
        )]))
    };
    v.push(case(
        "Deny NotPrincipal spares the named user",
        &[all()],
        not_principal("Deny", ALICE),
        get(alice()),
        Allow,
    ));
    v.push(case(
        "Deny NotPrincipal denies everyone else",
        &[all()],
        not_principal("Deny", ALICE),
        get(Principal::user(A, "carol")),
        Deny,
    ));
    v.push(case(
        "Allow NotPrincipal grants the others",
        &[],
        not_principal("Allow", CAROL),
        get(alice()),
        Allow,
    ));
    v.push(case(
        "Allow NotPrincipal excludes the named one",
        &[],
        not_principal("Allow", CAROL),
        get(Principal::user(A, "carol")),
        Implicit,
    ));
    v.push(case(
        "Deny NotPrincipal role spares its sessions",
        &[all()],
        not_principal("Deny", "arn:aws:iam::111122223333:role/ci"),
        get(Principal::assumed_role(A, "ci", "build-1")),
        Allow,
    ));

    // --- Principal forms, same account -------------------------------------
    v.push(case(
        "resource policy names the user",
        &[],
        rpol("Allow", &aws(ALICE), GET),
        get(alice()),
        Allow,
    ));
    v.push(case(
        "resource policy names the user, other action",
        &[],
        rpol("Allow", &aws(ALICE), PUT),
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "resource policy names only the account: delegation",
        &[],
        rpol("Allow", &aws(A), "ecr:*"),
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "account root ARN is a delegation too",
        &[],
        rpol("Allow", &aws("arn:aws:iam::111122223333:root"), "ecr:*"),
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "resource names account, identity allows",
        &[allow(GET, REPO)],
        rpol("Allow", &aws(A), "ecr:*"),
        get(alice()),
        Allow,
    ));
    v.push(case(
        "role ARN covers its session",
        &[],
        rpol("Allow", &aws("arn:aws:iam::111122223333:role/ci"), GET),
        get(Principal::assumed_role(A, "ci", "build-1")),
        Allow,
    ));
    v.push(case(
        "role ARN with a path covers its session",
        &[],
        rpol("Allow", &aws("arn:aws:iam::111122223333:role/team/ci"), GET),
        get(Principal::assumed_role(A, "ci", "build-1")),
        Allow,
    ));
    v.push(case(
        "role ARN does not cover another role",
        &[],
        rpol("Allow", &aws("arn:aws:iam::111122223333:role/ci"), GET),
        get(Principal::assumed_role(A, "deploy", "x")),
        Implicit,
    ));
    v.push(case(
        "session ARN covers that session",
        &[],
        rpol("Allow", &aws("arn:aws:sts::111122223333:assumed-role/ci/build-1"), GET),
        get(Principal::assumed_role(A, "ci", "build-1")),
        Allow,
    ));
    v.push(case(
        "session ARN does not cover another session",
        &[],
        rpol("Allow", &aws("arn:aws:sts::111122223333:assumed-role/ci/build-1"), GET),
        get(Principal::assumed_role(A, "ci", "build-2")),
        Implicit,
    ));
    v.push(case(
        "Service principal never names a user",
        &[],
        rpol("Allow", r#"{"Service":"ecs.amazonaws.com"}"#, GET),
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "AWS * names everyone",
        &[],
        rpol("Allow", &aws("*"), GET),
        get(alice()),
        Allow,
    ));
    v.push(case(
        "principal list, second entry",
        &[],
        rpol("Allow", &format!(r#"{{"AWS":["{BOB}","{ALICE}"]}}"#), GET),
        get(alice()),
        Allow,
    ));
    v.push(case(
        "same account: identity allows, resource policy silent",
        &[allow(GET, "*")],
        rpol("Allow", &aws(CAROL), PUT),
        get(alice()),
        Allow,
    ));

    // --- Cross account -----------------------------------------------------
    let bob = || Principal::user(B, "bob");
    v.push(case("cross: identity only", &[all()], None, get(bob()), Implicit));
    v.push(case(
        "cross: resource only",
        &[],
        rpol("Allow", &aws(BOB), GET),
        get(bob()),
        Implicit,
    ));
    v.push(case(
        "cross: both, resource names account",
        &[all()],
        rpol("Allow", &aws(B), GET),
        get(bob()),
        Allow,
    ));
    v.push(case(
        "cross: both, resource names user",
        &[all()],
        rpol("Allow", &aws(BOB), GET),
        get(bob()),
        Allow,
    ));
    v.push(case(
        "cross: both, resource names *",
        &[all()],
        rpol("Allow", "\"*\"", GET),
        get(bob()),
        Allow,
    ));
    v.push(case(
        "cross: resource names another account",
        &[all()],
        rpol("Allow", &aws(C), GET),
        get(bob()),
        Implicit,
    ));
    v.push(case(
        "cross: identity allows another action",
        &[allow(PUT, "*")],
        rpol("Allow", &aws(B), GET),
        get(bob()),
        Implicit,
    ));
    v.push(case(
        "cross: resource deny wins",
        &[all()],
        Some(pol(&[
            &rstmt("Allow", &aws(B), "ecr:*"),
            &rstmt("Deny", &aws(BOB), GET),
        ])),
        get(bob()),
        Deny,
    ));
    v.push(case(
        "cross: identity deny wins",
        &[pol(&[&stmt("Allow", "*", "*"), &stmt("Deny", GET, "*")])],
        rpol("Allow", &aws(B), GET),
        get(bob()),
        Deny,
    ));
    v.push(case(
        "cross: role session, resource names the role",
        &[all()],
        rpol("Allow", &aws("arn:aws:iam::444455556666:role/ci"), GET),
        get(Principal::assumed_role(B, "ci", "s")),
        Allow,
    ));
    v.push(case(
        "cross: root of the other account, resource names it",
        &[],
        rpol("Allow", &aws(B), GET),
        get(Principal::root(B)),
        Allow,
    ));
    v.push(case(
        "cross: root, no resource policy",
        &[],
        None,
        get(Principal::root(B)),
        Implicit,
    ));

    // --- Root ---------------------------------------------------------------
    v.push(case(
        "root of the resource account",
        &[],
        None,
        get(Principal::root(A)),
        Allow,
    ));
    v.push(case(
        "root, resource policy denies *",
        &[],
        rpol("Deny", "\"*\"", GET),
        get(Principal::root(A)),
        Deny,
    ));
    v.push(case(
        "root, resource policy denies the account",
        &[],
        rpol("Deny", &aws(A), "ecr:*"),
        get(Principal::root(A)),
        Deny,
    ));
    v.push(case(
        "root, resource deny of another user",
        &[],
        rpol("Deny", &aws(CAROL), "ecr:*"),
        get(Principal::root(A)),
        Allow,
    ));

    // --- Anonymous -----------------------------------------------------------
    let anon = Principal::anonymous;
    v.push(case(
        "anonymous, Principal *",
        &[],
        rpol("Allow", "\"*\"", GET),
        get(anon()),
        Allow,
    ));
    v.push(case(
        "anonymous, AWS *",
        &[],
        rpol("Allow", &aws("*"), GET),
        get(anon()),
        Allow,
    ));
    v.push(case(
        "anonymous, account principal",
        &[],
        rpol("Allow", &aws(A), GET),
        get(anon()),
        Implicit,
    ));
    v.push(case(
        "anonymous, identity policies ignored",
        &[all()],
        None,
        get(anon()),
        Implicit,
    ));
    v.push(case(
        "anonymous, public read but deny over plain HTTP",
        &[],
        Some(pol(&[
            &rstmt("Allow", "\"*\"", GET),
            r#"{"Effect":"Deny","Principal":"*","Action":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}"#,
        ])),
        get(anon()).with_key("aws:SecureTransport", "false"),
        Deny,
    ));

    // --- String conditions ---------------------------------------------------
    let c1 = |op: &str, key: &str, val: &str| allow_if(&format!(r#"{{"{op}":{{"{key}":{val}}}}}"#));
    v.push(case(
        "StringEquals username",
        &[c1("StringEquals", "aws:username", r#""alice""#)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "StringEquals mismatch",
        &[c1("StringEquals", "aws:username", r#""bob""#)],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "StringEquals missing key",
        &[c1("StringEquals", "kura:Missing", r#""x""#)],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "StringEquals values ORed",
        &[c1("StringEquals", "aws:username", r#"["bob","alice"]"#)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "key names case-insensitive",
        &[c1("StringEquals", "AWS:USERNAME", r#""alice""#)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "StringNotEquals other",
        &[c1("StringNotEquals", "aws:username", r#""bob""#)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "StringNotEquals same",
        &[c1("StringNotEquals", "aws:username", r#""alice""#)],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "StringNotEquals values NORed",
        &[c1("StringNotEquals", "aws:username", r#"["bob","alice"]"#)],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "StringNotEquals missing key is false",
        &[c1("StringNotEquals", "kura:Missing", r#""x""#)],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "StringNotEqualsIfExists missing key is true",
        &[c1("StringNotEqualsIfExists", "kura:Missing", r#""x""#)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "StringEqualsIfExists present, mismatch",
        &[c1("StringEqualsIfExists", "aws:username", r#""bob""#)],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "StringEqualsIgnoreCase",
        &[c1("StringEqualsIgnoreCase", "aws:username", r#""ALICE""#)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "StringNotEqualsIgnoreCase",
        &[c1("StringNotEqualsIgnoreCase", "aws:username", r#""ALICE""#)],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "StringEquals is case-sensitive",
        &[c1("StringEquals", "aws:username", r#""ALICE""#)],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "StringLike *",
        &[c1("StringLike", "aws:username", r#""ali*""#)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "StringLike ?",
        &[c1("StringLike", "aws:username", r#""al?ce""#)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "StringNotLike",
        &[c1("StringNotLike", "aws:username", r#""bo*""#)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "StringNotLike matching",
        &[c1("StringNotLike", "aws:username", r#""a*""#)],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "keys in one operator ANDed",
        &[allow_if(
            r#"{"StringEquals":{"aws:username":"alice","aws:PrincipalAccount":"444455556666"}}"#,
        )],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "operators ANDed",
        &[allow_if(
            r#"{"StringEquals":{"aws:username":"alice"},"StringLike":{"aws:PrincipalArn":"*:user/*"}}"#,
        )],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "multi-valued key without qualifier: any value",
        &[c1("StringEquals", "kura:Groups", r#""dev""#)],
        None,
        get(alice()).with_key_values("kura:Groups", &["ops", "dev"]),
        Allow,
    ));

    // --- ARN conditions --------------------------------------------------------
    v.push(case(
        "ArnLike principal",
        &[c1("ArnLike", "aws:PrincipalArn", r#""arn:aws:iam::*:user/ali*""#)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "ArnEquals",
        &[c1("ArnEquals", "aws:PrincipalArn", &format!("\"{ALICE}\""))],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "ArnNotEquals same",
        &[c1("ArnNotEquals", "aws:PrincipalArn", &format!("\"{ALICE}\""))],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "ArnNotLike missing key is false",
        &[c1("ArnNotLike", "aws:SourceArn", r#""arn:aws:*:*:*:*""#)],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "ArnLike wildcard does not span components",
        &[c1("ArnLike", "aws:PrincipalArn", r#""arn:aws:*:user/alice""#)],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "role session's PrincipalArn is the role",
        &[c1(
            "ArnEquals",
            "aws:PrincipalArn",
            r#""arn:aws:iam::111122223333:role/ci""#,
        )],
        None,
        get(Principal::assumed_role(A, "ci", "s")),
        Allow,
    ));

    // --- Numeric conditions ------------------------------------------------------
    let count = || get(alice()).with_key("kura:Count", "10");
    for (op, val, want) in [
        ("NumericEquals", "10", Allow),
        ("NumericEquals", "10.0", Allow),
        ("NumericNotEquals", "10", Implicit),
        ("NumericLessThan", "11", Allow),
        ("NumericLessThan", "10", Implicit),
        ("NumericLessThanEquals", "10", Allow),
        ("NumericGreaterThan", "9.5", Allow),
        ("NumericGreaterThan", "10", Implicit),
        ("NumericGreaterThanEquals", "10", Allow),
    ] {
        v.push(case(
            "numeric operator",
            &[c1(op, "kura:Count", &format!("\"{val}\""))],
            None,
            count(),
            want,
        ));
    }
    v.push(case(
        "numeric JSON number value",
        &[c1("NumericEquals", "kura:Count", "10")],
        None,
        count(),
        Allow,
    ));
    v.push(case(
        "NumericLessThan missing key",
        &[c1("NumericLessThan", "kura:Count", "5")],
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "NumericLessThanIfExists missing key",
        &[c1("NumericLessThanIfExists", "kura:Count", "5")],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "NumericNotEquals missing key is false",
        &[c1("NumericNotEquals", "kura:Count", "5")],
        None,
        get(alice()),
        Implicit,
    ));

    // --- Date conditions -----------------------------------------------------------
    for (op, key, val, want) in [
        ("DateLessThan", "aws:CurrentTime", "2024-01-01T00:00:00Z", Allow),
        ("DateGreaterThan", "aws:CurrentTime", "2024-01-01T00:00:00Z", Implicit),
        ("DateEquals", "aws:CurrentTime", "1700000000", Allow),
        ("DateNotEquals", "aws:CurrentTime", "2023-11-14T22:13:20Z", Implicit),
        (
            "DateLessThanEquals",
            "aws:CurrentTime",
            "2023-11-14T23:13:20+01:00",
            Allow,
        ),
        ("DateGreaterThanEquals", "aws:CurrentTime", "2023-11-14", Allow),
        ("DateGreaterThan", "aws:EpochTime", "2020-01-01", Allow),
        ("DateLessThanIfExists", "kura:Expiry", "2020-01-01", Allow),
        ("DateLessThan", "kura:Expiry", "2020-01-01", Implicit),
    ] {
        v.push(case(
            "date operator",
            &[c1(op, key, &format!("\"{val}\""))],
            None,
            get(alice()),
            want,
        ));
    }

    // --- Bool, Binary, IP, Null -------------------------------------------------------
    let tls = |on: &str| get(alice()).with_key("aws:SecureTransport", on);
    v.push(case(
        "Bool true",
        &[c1("Bool", "aws:SecureTransport", r#""true""#)],
        None,
        tls("true"),
        Allow,
    ));
    v.push(case(
        "Bool JSON true",
        &[c1("Bool", "aws:SecureTransport", "true")],
        None,
        tls("true"),
        Allow,
    ));
    v.push(case(
        "Bool mismatch",
        &[c1("Bool", "aws:SecureTransport", r#""true""#)],
        None,
        tls("false"),
        Implicit,
    ));
    let deny_http = pol(&[
        &stmt("Allow", "*", "*"),
        r#"{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}"#,
    ]);
    v.push(case(
        "deny over HTTP applies",
        std::slice::from_ref(&deny_http),
        None,
        tls("false"),
        Deny,
    ));
    v.push(case(
        "deny over HTTP, key missing",
        std::slice::from_ref(&deny_http),
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "BinaryEquals",
        &[c1("BinaryEquals", "kura:Blob", r#""QmluYXJ5""#)],
        None,
        get(alice()).with_key("kura:Blob", "QmluYXJ5"),
        Allow,
    ));
    let from = |ip: &str| get(alice()).with_key("aws:SourceIp", ip);
    v.push(case(
        "IpAddress in",
        &[c1("IpAddress", "aws:SourceIp", r#""203.0.113.0/24""#)],
        None,
        from("203.0.113.7"),
        Allow,
    ));
    v.push(case(
        "IpAddress out",
        &[c1("IpAddress", "aws:SourceIp", r#""203.0.113.0/24""#)],
        None,
        from("198.51.100.7"),
        Implicit,
    ));
    v.push(case(
        "IpAddress list",
        &[c1("IpAddress", "aws:SourceIp", r#"["10.0.0.0/8","203.0.113.7"]"#)],
        None,
        from("203.0.113.7"),
        Allow,
    ));
    v.push(case(
        "IpAddress IPv6",
        &[c1("IpAddress", "aws:SourceIp", r#""2001:db8::/32""#)],
        None,
        from("2001:db8:5::1"),
        Allow,
    ));
    v.push(case(
        "IPv4 block vs IPv6 caller",
        &[c1("IpAddress", "aws:SourceIp", r#""0.0.0.0/0""#)],
        None,
        from("2001:db8::1"),
        Implicit,
    ));
    v.push(case(
        "NotIpAddress inside",
        &[c1("NotIpAddress", "aws:SourceIp", r#""203.0.113.0/24""#)],
        None,
        from("203.0.113.7"),
        Implicit,
    ));
    v.push(case(
        "NotIpAddress outside",
        &[c1("NotIpAddress", "aws:SourceIp", r#""203.0.113.0/24""#)],
        None,
        from("198.51.100.7"),
        Allow,
    ));
    v.push(case(
        "NotIpAddress missing key is false",
        &[c1("NotIpAddress", "aws:SourceIp", r#""203.0.113.0/24""#)],
        None,
        get(alice()),
        Implicit,
    ));
    let deny_outside = pol(&[
        &stmt("Allow", "*", "*"),
        r#"{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}}"#,
    ]);
    v.push(case(
        "deny outside the office",
        std::slice::from_ref(&deny_outside),
        None,
        from("198.51.100.1"),
        Deny,
    ));
    v.push(case(
        "deny outside, inside",
        std::slice::from_ref(&deny_outside),
        None,
        from("203.0.113.1"),
        Allow,
    ));
    v.push(case(
        "Null true, absent",
        &[c1("Null", "aws:SourceIp", r#""true""#)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "Null true, present",
        &[c1("Null", "aws:SourceIp", r#""true""#)],
        None,
        from("10.0.0.1"),
        Implicit,
    ));
    v.push(case(
        "Null false, present",
        &[c1("Null", "aws:SourceIp", "false")],
        None,
        from("10.0.0.1"),
        Allow,
    ));
    v.push(case(
        "Null false, empty list",
        &[c1("Null", "kura:L", "false")],
        None,
        get(alice()).with_key_values("kura:L", &[]),
        Implicit,
    ));

    // --- Set qualifiers ----------------------------------------------------------------
    let tag_keys = |keys: &[&str]| get(alice()).with_key_values("aws:TagKeys", keys);
    let all_of = c1("ForAllValues:StringEquals", "aws:TagKeys", r#"["team","env"]"#);
    v.push(case(
        "ForAllValues subset",
        std::slice::from_ref(&all_of),
        None,
        tag_keys(&["team"]),
        Allow,
    ));
    v.push(case(
        "ForAllValues extra value",
        std::slice::from_ref(&all_of),
        None,
        tag_keys(&["team", "cost"]),
        Implicit,
    ));
    v.push(case(
        "ForAllValues missing key",
        std::slice::from_ref(&all_of),
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "ForAllValues empty set",
        std::slice::from_ref(&all_of),
        None,
        tag_keys(&[]),
        Allow,
    ));
    let any_of = c1("ForAnyValue:StringEquals", "aws:TagKeys", r#"["team"]"#);
    v.push(case(
        "ForAnyValue one hits",
        std::slice::from_ref(&any_of),
        None,
        tag_keys(&["cost", "team"]),
        Allow,
    ));
    v.push(case(
        "ForAnyValue none hits",
        std::slice::from_ref(&any_of),
        None,
        tag_keys(&["cost"]),
        Implicit,
    ));
    v.push(case(
        "ForAnyValue missing key",
        std::slice::from_ref(&any_of),
        None,
        get(alice()),
        Implicit,
    ));
    v.push(case(
        "ForAnyValue empty set",
        std::slice::from_ref(&any_of),
        None,
        tag_keys(&[]),
        Implicit,
    ));
    let all_not = c1("ForAllValues:StringNotEquals", "aws:TagKeys", r#""secret""#);
    v.push(case(
        "ForAllValues:StringNotEquals clean",
        std::slice::from_ref(&all_not),
        None,
        tag_keys(&["team", "env"]),
        Allow,
    ));
    v.push(case(
        "ForAllValues:StringNotEquals hit",
        std::slice::from_ref(&all_not),
        None,
        tag_keys(&["team", "secret"]),
        Implicit,
    ));
    let any_not = c1("ForAnyValue:StringNotEquals", "aws:TagKeys", r#""team""#);
    v.push(case(
        "ForAnyValue:StringNotEquals only team",
        std::slice::from_ref(&any_not),
        None,
        tag_keys(&["team"]),
        Implicit,
    ));
    v.push(case(
        "ForAnyValue:StringNotEquals other",
        std::slice::from_ref(&any_not),
        None,
        tag_keys(&["team", "x"]),
        Allow,
    ));
    v.push(case(
        "ForAnyValue:StringLikeIfExists missing key",
        &[c1("ForAnyValue:StringLikeIfExists", "aws:TagKeys", r#""t*""#)],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "ForAllValues:StringLike",
        &[c1("ForAllValues:StringLike", "aws:TagKeys", r#""team-*""#)],
        None,
        tag_keys(&["team-a", "team-b"]),
        Allow,
    ));

    // --- Policy variables -----------------------------------------------------------------
    let home = "arn:aws:ecr:us-east-1:111122223333:repository/${aws:username}/*";
    let alice_repo = "arn:aws:ecr:us-east-1:111122223333:repository/alice/app";
    let bob_repo = "arn:aws:ecr:us-east-1:111122223333:repository/bob/app";
    v.push(case(
        "${aws:username} own repo",
        &[allow(GET, home)],
        None,
        req(alice(), GET, alice_repo),
        Allow,
    ));
    v.push(case(
        "${aws:username} other repo",
        &[allow(GET, home)],
        None,
        req(alice(), GET, bob_repo),
        Implicit,
    ));
    v.push(case(
        "${aws:username} absent for a role session",
        &[allow(GET, home)],
        None,
        req(Principal::assumed_role(A, "ci", "s"), GET, alice_repo),
        Implicit,
    ));
    v.push(case(
        "${aws:username, 'shared'} default",
        &[allow(
            GET,
            "arn:aws:ecr:us-east-1:111122223333:repository/${aws:username, 'shared'}/*",
        )],
        None,
        req(
            Principal::assumed_role(A, "ci", "s"),
            GET,
            "arn:aws:ecr:us-east-1:111122223333:repository/shared/app",
        ),
        Allow,
    ));
    v.push(case(
        "${aws:PrincipalAccount} in Resource",
        &[allow(GET, "arn:aws:ecr:*:${aws:PrincipalAccount}:repository/*")],
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "${aws:userid} in a condition",
        &[c1("StringEquals", "kura:Owner", r#""${aws:userid}""#)],
        None,
        get(alice()).with_key("kura:Owner", "alice"),
        Allow,
    ));
    v.push(case(
        "variable in StringLike",
        &[c1("StringLike", "kura:Tag", r#""${aws:username}-*""#)],
        None,
        get(alice()).with_key("kura:Tag", "alice-v1"),
        Allow,
    ));
    v.push(case(
        "${*} is a literal star",
        &[c1("StringLike", "kura:Tag", r#""${*}""#)],
        None,
        get(alice()).with_key("kura:Tag", "x"),
        Implicit,
    ));
    v.push(case(
        "${*} matches a star",
        &[c1("StringLike", "kura:Tag", r#""a${*}${?}${$}""#)],
        None,
        get(alice()).with_key("kura:Tag", "a*?$"),
        Allow,
    ));
    v.push(case(
        "2008-10-17 has no variables",
        &[format!(
            r#"{{"Version":"2008-10-17","Statement":[{}]}}"#,
            stmt("Allow", GET, home)
        )],
        None,
        req(alice(), GET, alice_repo),
        Implicit,
    ));
    v.push(case(
        "a username with * stays literal",
        &[allow(GET, home)],
        None,
        req(Principal::user(A, "*"), GET, alice_repo),
        Implicit,
    ));

    // --- Tag-based access ------------------------------------------------------------------
    let team_policy = c1("StringEquals", "aws:ResourceTag/team", r#""${aws:PrincipalTag/team}""#);
    let tagged = |p: Principal, team: &str| {
        let mut ctx = RequestContext::new(p, GET, REPO, A);
        ctx.fill_standard_keys(&RequestEnv {
            resource_tags: [("team".to_string(), team.to_string())].into(),
            ..RequestEnv::default()
        });
        ctx
    };
    v.push(case(
        "tags match",
        std::slice::from_ref(&team_policy),
        None,
        tagged(alice().with_tag("team", "blue"), "blue"),
        Allow,
    ));
    v.push(case(
        "tags differ",
        std::slice::from_ref(&team_policy),
        None,
        tagged(alice().with_tag("team", "red"), "blue"),
        Implicit,
    ));
    v.push(case(
        "principal untagged",
        std::slice::from_ref(&team_policy),
        None,
        tagged(alice(), "blue"),
        Implicit,
    ));
    v.push(case(
        "ecr:ResourceTag key",
        &[c1(
            "StringEquals",
            "ecr:ResourceTag/team",
            r#""${aws:PrincipalTag/team}""#,
        )],
        None,
        tagged(alice().with_tag("team", "blue"), "blue"),
        Allow,
    ));
    v.push(case(
        "principal tag default",
        &[c1(
            "StringEquals",
            "aws:ResourceTag/team",
            r#""${aws:PrincipalTag/team, 'blue'}""#,
        )],
        None,
        tagged(alice(), "blue"),
        Allow,
    ));
    v.push(case(
        "tag-based deny on mismatch",
        &[pol(&[
            &stmt("Allow", "*", "*"),
            r#"{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringNotEquals":{"aws:ResourceTag/team":"${aws:PrincipalTag/team}"}}}"#,
        ])],
        None,
        tagged(alice().with_tag("team", "red"), "blue"),
        Deny,
    ));

    // --- Managed policies -------------------------------------------------------------------
    let managed = |arn: &str| {
        let p = managed_policy(arn).unwrap();
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":{},"Resource":"*"}}]}}"#,
            match &p.statements[0].action {
                kura_iam::ActionSpec::Action(list) => serde_json::to_string(list).unwrap(),
                kura_iam::ActionSpec::NotAction(_) => unreachable!(),
            }
        )
    };
    let ro = managed(AMAZON_EC2_CONTAINER_REGISTRY_READ_ONLY);
    let pu = managed(AMAZON_EC2_CONTAINER_REGISTRY_POWER_USER);
    let fa = managed(AMAZON_EC2_CONTAINER_REGISTRY_FULL_ACCESS);
    v.push(case(
        "ReadOnly pulls",
        std::slice::from_ref(&ro),
        None,
        get(alice()),
        Allow,
    ));
    v.push(case(
        "ReadOnly cannot push",
        std::slice::from_ref(&ro),
        None,
        req(alice(), PUT, REPO),
        Implicit,
    ));
    v.push(case(
        "ReadOnly gets a token",
        std::slice::from_ref(&ro),
        None,
        req(alice(), "ecr:GetAuthorizationToken", "*"),
        Allow,
    ));
    v.push(case(
        "PowerUser pushes",
        std::slice::from_ref(&pu),
        None,
        req(alice(), PUT, REPO),
        Allow,
    ));
    v.push(case(
        "PowerUser cannot delete",
        std::slice::from_ref(&pu),
        None,
        req(alice(), "ecr:DeleteRepository", REPO),
        Implicit,
    ));
    v.push(case(
        "FullAccess deletes",
        std::slice::from_ref(&fa),
        None,
        req(alice(), "ecr:DeleteRepository", REPO),
        Allow,
    ));

    v
}

#[test]
fn decision_table() {
    let cases = cases();
    assert!(cases.len() >= 80, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let identity: Vec<Policy> = c
            .identity
            .iter()
            .map(|t| {
                Policy::parse_with(t, &ParseOptions::kind(PolicyKind::Identity))
                    .unwrap_or_else(|e| panic!("case {i} {:?}: identity policy: {e}\n{t}", c.name))
            })
            .collect();
        let resource = c.resource.as_ref().map(|t| {
            Policy::parse_with(t, &ParseOptions::ecr_repository_policy())
                .unwrap_or_else(|e| panic!("case {i} {:?}: resource policy: {e}\n{t}", c.name))
        });
        let refs: Vec<&Policy> = identity.iter().collect();
        let got = evaluate(&c.ctx, &refs, resource.as_ref());
        if got.decision != c.want {
            failures.push(format!(
                "case {i} {:?}: want {:?}, got {:?} ({})",
                c.name, c.want, got.decision, got.reason
            ));
        }
    }
    println!("{} cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn deciding_statement_is_reported() {
    let identity = Policy::parse(&pol(&[
        r#"{"Sid":"All","Effect":"Allow","Action":"*","Resource":"*"}"#,
        r#"{"Sid":"NoPush","Effect":"Deny","Action":"ecr:PutImage","Resource":"*"}"#,
    ]))
    .unwrap();
    let got = evaluate(&req(alice(), PUT, REPO), &[&identity], None);
    assert_eq!(got.decision, Deny);
    let at = got.statement.unwrap();
    assert_eq!(
        (at.source, at.index, at.sid.as_deref()),
        (PolicySource::Identity(0), 1, Some("NoPush"))
    );
    assert!(got.reason.contains("NoPush"), "{}", got.reason);

    let got = evaluate(&get(alice()), &[&identity], None);
    assert!(got.is_allowed());
    assert_eq!(got.statement.unwrap().sid.as_deref(), Some("All"));

    let resource = Policy::parse(&pol(&[
        r#"{"Sid":"Pull","Effect":"Allow","Principal":{"AWS":"444455556666"},"Action":"ecr:BatchGetImage"}"#,
    ]))
    .unwrap();
    let got = evaluate(&get(Principal::user(B, "bob")), &[], Some(&resource));
    assert_eq!(got.decision, Implicit);
    assert!(got.statement.is_none());
    assert!(got.reason.contains("identity"), "{}", got.reason);
    let got = evaluate(&get(Principal::user(B, "bob")), &[&identity], Some(&resource));
    assert_eq!(got.decision, Allow);
    let at = got.statement.unwrap();
    assert_eq!((at.source, at.sid.as_deref()), (PolicySource::Resource, Some("Pull")));
}

#[test]
fn standard_keys() {
    let mut ctx = RequestContext::new(
        Principal::assumed_role(A, "ci", "s1").with_tag("team", "blue"),
        GET,
        REPO,
        A,
    );
    ctx.fill_standard_keys(&RequestEnv {
        current_time: Some(NOW),
        source_ip: Some("203.0.113.9".parse().unwrap()),
        secure_transport: Some(true),
        resource_tags: [("env".to_string(), "prod".to_string())].into(),
        request_tags: [("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())].into(),
        token_issue_time: Some(NOW * 1000 - 60_500),
    });
    let one = |k: &str| ctx.key_values(k).map(|v| v.join(","));
    assert_eq!(one("aws:TokenIssueTime").as_deref(), Some("2023-11-14T22:12:19.500Z"));
    assert_eq!(one("aws:CurrentTime").as_deref(), Some("2023-11-14T22:13:20Z"));
    assert_eq!(one("aws:epochtime").as_deref(), Some("1700000000"));
    assert_eq!(one("aws:SourceIp").as_deref(), Some("203.0.113.9"));
    assert_eq!(one("aws:SecureTransport").as_deref(), Some("true"));
    assert_eq!(
        one("aws:PrincipalArn").as_deref(),
        Some("arn:aws:iam::111122223333:role/ci")
    );
    assert_eq!(one("aws:PrincipalType").as_deref(), Some("AssumedRole"));
    assert_eq!(one("aws:PrincipalAccount").as_deref(), Some(A));
    assert_eq!(one("aws:PrincipalTag/TEAM").as_deref(), Some("blue"));
    assert_eq!(one("aws:userid").as_deref(), Some("ci:s1"));
    assert_eq!(one("aws:username"), None);
    assert_eq!(one("aws:ResourceTag/env").as_deref(), Some("prod"));
    assert_eq!(one("ecr:ResourceTag/env").as_deref(), Some("prod"));
    assert_eq!(one("aws:RequestTag/a").as_deref(), Some("1"));
    assert_eq!(one("aws:TagKeys").as_deref(), Some("a,b"));
    assert_eq!(one("aws:ResourceAccount").as_deref(), Some(A));
}
