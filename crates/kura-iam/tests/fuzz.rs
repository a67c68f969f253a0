//! Fuzz target `iam-policy`: the parser and the evaluator never panic,
//! whatever the input (arbitrary text, arbitrary JSON, policies from the
//! grammar).
//!
//! `cargo test --release -p kura-iam --test fuzz` runs the quick CI cases;
//! `KURA_FUZZ_SECS=600` runs each target for that many seconds.

#[path = "../../kura-oci/tests/support/fuzz_runner.rs"]
mod fuzz_runner;

use fuzz_runner::fuzz;

use kura_iam::{
    evaluate, parse_date, wildcard_match, ParseOptions, Policy, PolicyKind, Principal, RequestContext, RequestEnv,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Words that policies and contexts use, so generated trees hit the parser's
/// interesting paths rather than failing on the first unknown field.
const WORDS: &[&str] = &[
    "Version",
    "2012-10-17",
    "2008-10-17",
    "Id",
    "Statement",
    "Sid",
    "Effect",
    "Allow",
    "Deny",
    "Principal",
    "NotPrincipal",
    "AWS",
    "Service",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
    "*",
    "?",
    "ecr:*",
    "ecr:Get*",
    "ecr:BatchGetImage",
    "111122223333",
    "444455556666",
    "arn:aws:iam::111122223333:root",
    "arn:aws:iam::111122223333:user/alice",
    "arn:aws:iam::111122223333:role/ci",
    "arn:aws:sts::111122223333:assumed-role/ci/s",
    "arn:aws:ecr:us-east-1:111122223333:repository/app",
    "arn:aws:ecr:*:111122223333:repository/${aws:username}/*",
    "${aws:username, 'x'}",
    "${*}${?}${$}${",
    "StringEquals",
    "StringNotLikeIfExists",
    "ForAnyValue:StringLike",
    "ForAllValues:StringNotEquals",
    "ArnLike",
    "NumericLessThan",
    "DateGreaterThanIfExists",
    "Bool",
    "BinaryEquals",
    "IpAddress",
    "NotIpAddress",
    "Null",
    "aws:username",
    "aws:SourceIp",
    "aws:CurrentTime",
    "aws:TagKeys",
    "aws:ResourceTag/team",
    "${aws:PrincipalTag/team}",
    "10.0.0.0/8",
    "2001:db8::/32",
    "2023-11-14T22:13:20Z",
    "1700000000",
    "true",
    "false",
    "5",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

fn json_tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((word(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Mostly a word from `pool`, sometimes any short string.
fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        12 => proptest::sample::select(pool).prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

const ACTIONS: &[&str] = &["*", "ecr:*", "ecr:Get*", "ECR:batchgetimage", "ecr:?utImage", "s3:*"];
const RESOURCES: &[&str] = &[
    "*",
    "arn:aws:ecr:us-east-1:111122223333:repository/app",
    "arn:aws:ecr:*:111122223333:repository/${aws:username}/*",
    "arn:aws:ecr:*:${aws:PrincipalAccount}:repository/${aws:username, 'x'}",
    "arn:aws:ecr:*:*:repository/${*}${?}${$}${",
];
const PRINCIPALS: &[&str] = &[
    "*",
    "111122223333",
    "444455556666",
    "arn:aws:iam::111122223333:root",
    "arn:aws:iam::111122223333:user/alice",
    "arn:aws:iam::111122223333:role/ci",
    "arn:aws:sts::111122223333:assumed-role/ci/s",
];
const OPERATORS: &[&str] = &[
    "StringEquals",
    "StringNotLikeIfExists",
    "ForAnyValue:StringLike",
    "ForAllValues:StringNotEquals",
    "ArnLike",
    "ArnNotEqualsIfExists",
    "StringEqualsIgnoreCase",
    "BinaryEquals",
    "Null",
];
const KEYS: &[&str] = &[
    "aws:username",
    "aws:SourceIp",
    "aws:TagKeys",
    "aws:ResourceTag/team",
    "kura:Missing",
];
const VALUES: &[&str] = &[
    "alice",
    "${aws:PrincipalTag/team}",
    "true",
    "*",
    "team?",
    "${aws:username, 'x'}",
];

/// One statement built from the grammar with random pieces: usually valid.
fn statement() -> impl Strategy<Value = Value> {
    (
        proptest::sample::select(&["Allow", "Deny"][..]),
        any::<bool>(),
        proptest::collection::vec(pick(ACTIONS), 1..3),
        proptest::option::of(proptest::collection::vec(pick(RESOURCES), 1..3)),
        proptest::option::of(proptest::collection::vec(pick(PRINCIPALS), 1..3)),
        proptest::option::of((
            pick(OPERATORS),
            pick(KEYS),
            proptest::collection::vec(pick(VALUES), 1..3),
        )),
    )
        .prop_map(|(effect, not, actions, resources, principals, cond)| {
            let mut m = Map::new();
            m.insert("Effect".into(), effect.into());
            m.insert(if not { "NotAction" } else { "Action" }.into(), actions.into());
            if let Some(r) = resources {
                m.insert(if not { "NotResource" } else { "Resource" }.into(), r.into());
            }
            if let Some(p) = principals {
                let mut aws = Map::new();
                aws.insert("AWS".into(), p.into());
                m.insert(
                    if not { "NotPrincipal" } else { "Principal" }.into(),
                    Value::Object(aws),
                );
            }
            if let Some((op, key, values)) = cond {
                let mut keys = Map::new();
                keys.insert(key, values.into());
                let mut ops = Map::new();
                ops.insert(op, Value::Object(keys));
                m.insert("Condition".into(), Value::Object(ops));
            }
            Value::Object(m)
        })
}

fn policy_doc() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(&["2012-10-17", "2008-10-17"][..]),
        proptest::collection::vec(statement(), 1..4),
    )
        .prop_map(|(version, statements)| serde_json::json!({"Version": version, "Statement": statements}).to_string())
}

fn principal() -> impl Strategy<Value = Principal> {
    (0..5u8, word(), word(), word()).prop_map(|(k, a, b, c)| match k {
        0 => Principal::root(&a),
        1 => Principal::user(&a, &b),
        2 => Principal::role(&a, &b),
        3 => Principal::assumed_role(&a, &b, &c).with_tag("team", &c),
        _ => Principal::anonymous(),
    })
}

fn context() -> impl Strategy<Value = RequestContext> {
    (
        principal(),
        word(),
        word(),
        prop_oneof![Just("111122223333".to_string()), word()],
        proptest::collection::vec((word(), proptest::collection::vec(word(), 0..3)), 0..5),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<[u8; 4]>()),
    )
        .prop_map(|(p, action, resource, account, keys, time, ip)| {
            let mut ctx = RequestContext::new(p, &action, &resource, &account);
            // Keep the time within what a date can spell.
            let time = time.map(|t| t % 250_000_000_000);
            ctx.fill_standard_keys(&RequestEnv {
                current_time: time,
                source_ip: ip.map(std::net::IpAddr::from),
                secure_transport: Some(true),
                resource_tags: [("team".to_string(), "blue".to_string())].into(),
                request_tags: Default::default(),
                token_issue_time: time.map(|t| t * 1000 - 1),
            });
            for (k, v) in keys {
                ctx.set_key(&k, v);
            }
            ctx
        })
}

fn all_kinds(text: &str) -> Vec<Policy> {
    let mut out = Vec::new();
    for options in [
        ParseOptions::default(),
        ParseOptions::kind(PolicyKind::Identity),
        ParseOptions::ecr_repository_policy(),
        ParseOptions::iam_inline_user_policy(),
    ] {
        if let Ok(p) = Policy::parse_with(text, &options) {
            out.push(p);
        }
    }
    out
}

#[test]
fn arbitrary_strings_never_panic() {
    fuzz("iam-policy/strings", 256, ".{0,200}", |text| {
        let _ = all_kinds(&text);
        let _ = parse_date(&text);
        let _ = wildcard_match(&text, &text, true);
        let _ = wildcard_match(&text, "arn:aws:ecr:us-east-1:111122223333:repository/app", false);
        Ok(())
    });
}

#[test]
fn arbitrary_json_never_panics() {
    fuzz("iam-policy/json", 256, (json_tree(), context()), |(tree, ctx)| {
        let text = tree.to_string();
        for p in all_kinds(&text) {
            let _ = evaluate(&ctx, &[&p], Some(&p));
        }
        // Wrapped as a statement list too, to get past the top level.
        let wrapped = serde_json::json!({"Version": "2012-10-17", "Statement": tree}).to_string();
        for p in all_kinds(&wrapped) {
            let _ = evaluate(&ctx, &[&p], Some(&p));
        }
        Ok(())
    });
}

#[test]
fn grammar_policies_never_panic() {
    fuzz(
        "iam-policy/grammar",
        256,
        (policy_doc(), policy_doc(), context()),
        |(doc, other, ctx)| {
            let mine = all_kinds(&doc);
            let theirs = all_kinds(&other);
            for p in &mine {
                let identity: Vec<&Policy> = theirs.iter().chain(std::iter::once(p)).collect();
                let e = evaluate(&ctx, &identity, Some(p));
                // An explicit deny always names its statement.
                if e.decision == kura_iam::Decision::ExplicitDeny {
                    prop_assert!(e.statement.is_some());
                }
            }
            Ok(())
        },
    );
}

#[test]
fn wildcards_never_panic() {
    fuzz(
        "iam-policy/wildcards",
        256,
        ("[a-c*?]{0,16}", "[a-c]{0,24}"),
        |(p, t)| {
            let m = wildcard_match(&p, &t, false);
            // `*` alone matches everything; a pattern without wildcards only itself.
            if p == "*" {
                prop_assert!(m);
            }
            if !p.contains(['*', '?']) {
                prop_assert_eq!(m, p == t);
            }
            Ok(())
        },
    );
}

#[test]
fn grammar_policies_are_often_valid() {
    // The structured generator must mostly produce parseable policies, or the
    // property above tests little of the evaluator.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = policy_doc();
    let valid = (0..200)
        .filter(|_| {
            let doc = strategy.new_tree(&mut runner).unwrap().current();
            Policy::parse(&doc).is_ok()
        })
        .count();
    assert!(valid >= 10, "only {valid} of 200 generated policies parse");
}
