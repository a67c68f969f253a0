//! The event pattern language against vectors modelled on the cases EventBridge's user guide
//! ("Content filtering in Amazon EventBridge event patterns", "Event patterns", and the
//! `test-event-pattern` examples) documents, with our own data: each vector is
//! (pattern, event, expected). Guards acceptance point 1 (the pattern language as EventBridge
//! documents it) and the `TestEventPattern` operation built on it.

use kura_events::pattern::Pattern;
use serde_json::{json, Value};

fn check(pattern: Value, event: Value, expected: bool) {
    let p = Pattern::from_value(&pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    assert_eq!(p.matches(&event), expected, "pattern {pattern} on event {event}");
}

fn refused(pattern: &str) -> String {
    match Pattern::parse(pattern) {
        Ok(_) => panic!("accepted: {pattern}"),
        Err(e) => e.to_string(),
    }
}

/// An EC2-style state change event, the guide's running example (our own values).
fn instance_event() -> Value {
    json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "111122223333",
        "time": "2017-12-22T18:43:48Z",
        "region": "us-west-1",
        "resources": ["arn:aws:ec2:us-west-1:111122223333:instance/i-1234567890abcdef0"],
        "detail": {
            "instance-id": "i-1234567890abcdef0",
            "state": "terminated",
            "c-count": 5,
            "d-count": 3,
            "x-limit": 301.8,
            "source-ip": "10.0.0.123",
            "location": null,
            "empty": "",
            "enabled": true,
            "tags": ["prod", "web"]
        }
    })
}

#[test]
fn exact_match_on_strings_and_or_within_arrays() {
    let e = instance_event();
    check(json!({"source": ["aws.ec2"]}), e.clone(), true);
    check(json!({"source": ["aws.s3", "aws.ec2"]}), e.clone(), true);
    check(json!({"source": ["aws.s3"]}), e.clone(), false);
    // Case matters.
    check(json!({"source": ["AWS.EC2"]}), e.clone(), false);
    // All keys must match (AND).
    check(
        json!({"source": ["aws.ec2"], "detail-type": ["Other"]}),
        e.clone(),
        false,
    );
    // Nested object.
    check(json!({"detail": {"state": ["running", "terminated"]}}), e.clone(), true);
    check(json!({"detail": {"state": ["running"]}}), e, false);
}

#[test]
fn exact_match_on_numbers_null_booleans_and_empty_strings() {
    let e = instance_event();
    check(json!({"detail": {"c-count": [5]}}), e.clone(), true);
    check(json!({"detail": {"c-count": [5.0]}}), e.clone(), true);
    check(json!({"detail": {"c-count": ["5"]}}), e.clone(), false);
    check(json!({"detail": {"location": [null]}}), e.clone(), true);
    // null does not match an absent field, nor "" a null.
    check(json!({"detail": {"missing": [null]}}), e.clone(), false);
    check(json!({"detail": {"location": [""]}}), e.clone(), false);
    check(json!({"detail": {"empty": [""]}}), e.clone(), true);
    check(json!({"detail": {"enabled": [true]}}), e.clone(), true);
    check(json!({"detail": {"enabled": [false]}}), e, false);
}

#[test]
fn arrays_in_events_match_when_any_element_does() {
    let e = instance_event();
    check(json!({"detail": {"tags": ["web"]}}), e.clone(), true);
    check(json!({"detail": {"tags": ["db", "prod"]}}), e.clone(), true);
    check(json!({"detail": {"tags": ["db"]}}), e.clone(), false);
    // resources is an array of ARNs.
    check(
        json!({"resources": [{"prefix": "arn:aws:ec2:us-west-1:111122223333:instance/"}]}),
        e,
        true,
    );
    // An object pattern against an array of objects: one element must match it all.
    let ev = json!({"detail": {"items": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}});
    check(json!({"detail": {"items": {"a": [2], "b": ["y"]}}}), ev.clone(), true);
    check(json!({"detail": {"items": {"a": [1], "b": ["y"]}}}), ev, false);
}

#[test]
fn prefix_suffix_and_equals_ignore_case() {
    let e = instance_event();
    check(json!({"time": [{"prefix": "2017-12-22"}]}), e.clone(), true);
    check(json!({"time": [{"prefix": "2018"}]}), e.clone(), false);
    check(
        json!({"detail": {"instance-id": [{"suffix": "def0"}]}}),
        e.clone(),
        true,
    );
    check(
        json!({"detail": {"instance-id": [{"suffix": "DEF0"}]}}),
        e.clone(),
        false,
    );
    check(
        json!({"detail": {"instance-id": [{"suffix": {"equals-ignore-case": "DEF0"}}]}}),
        e.clone(),
        true,
    );
    check(
        json!({"detail-type": [{"prefix": {"equals-ignore-case": "ec2 instance"}}]}),
        e.clone(),
        true,
    );
    check(
        json!({"detail": {"state": [{"equals-ignore-case": "TERMINATED"}]}}),
        e.clone(),
        true,
    );
    // Content filters match strings only.
    check(json!({"detail": {"c-count": [{"prefix": "5"}]}}), e, false);
}

#[test]
fn anything_but_value_list_prefix_suffix() {
    let e = instance_event();
    check(
        json!({"detail": {"state": [{"anything-but": "initializing"}]}}),
        e.clone(),
        true,
    );
    check(
        json!({"detail": {"state": [{"anything-but": ["stopped", "terminated"]}]}}),
        e.clone(),
        false,
    );
    check(
        json!({"detail": {"c-count": [{"anything-but": [1, 2, 3]}]}}),
        e.clone(),
        true,
    );
    check(json!({"detail": {"c-count": [{"anything-but": 5}]}}), e.clone(), false);
    check(
        json!({"detail": {"state": [{"anything-but": {"prefix": "term"}}]}}),
        e.clone(),
        false,
    );
    check(
        json!({"detail": {"state": [{"anything-but": {"prefix": "run"}}]}}),
        e.clone(),
        true,
    );
    check(
        json!({"detail": {"instance-id": [{"anything-but": {"suffix": "def0"}}]}}),
        e.clone(),
        false,
    );
    check(
        json!({"detail": {"state": [{"anything-but": {"equals-ignore-case": ["Stopped", "TERMINATED"]}}]}}),
        e.clone(),
        false,
    );
    check(
        json!({"detail": {"state": [{"anything-but": {"wildcard": "*nated"}}]}}),
        e.clone(),
        false,
    );
    // anything-but never matches an absent field.
    check(json!({"detail": {"missing": [{"anything-but": "x"}]}}), e, false);
}

#[test]
fn numeric_comparisons_and_ranges() {
    let e = instance_event();
    check(
        json!({"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}}),
        e.clone(),
        true,
    );
    check(
        json!({"detail": {"c-count": [{"numeric": [">", 0, "<", 5]}]}}),
        e.clone(),
        false,
    );
    check(
        json!({"detail": {"d-count": [{"numeric": ["<", 10]}]}}),
        e.clone(),
        true,
    );
    check(
        json!({"detail": {"x-limit": [{"numeric": ["=", 301.8]}]}}),
        e.clone(),
        true,
    );
    check(
        json!({"detail": {"x-limit": [{"numeric": [">=", 300, "<", 301.5]}]}}),
        e.clone(),
        false,
    );
    // Numeric filters match numbers only.
    check(json!({"detail": {"state": [{"numeric": [">", 0]}]}}), e, false);
}

#[test]
fn exists_true_and_false() {
    let e = instance_event();
    check(json!({"detail": {"c-count": [{"exists": true}]}}), e.clone(), true);
    check(json!({"detail": {"nope": [{"exists": true}]}}), e.clone(), false);
    check(json!({"detail": {"nope": [{"exists": false}]}}), e.clone(), true);
    check(json!({"detail": {"c-count": [{"exists": false}]}}), e.clone(), false);
    // exists:false under an object the event lacks altogether.
    check(json!({"other": {"x": [{"exists": false}]}}), e.clone(), true);
    // A null value exists.
    check(json!({"detail": {"location": [{"exists": true}]}}), e.clone(), true);
    // Intermediate objects are not leaves.
    check(json!({"detail": [{"exists": true}]}), e, false);
}

#[test]
fn wildcard() {
    let e = json!({"detail": {"key": "dir/subdir/image.png", "plain": "a*b"}});
    check(json!({"detail": {"key": [{"wildcard": "dir/*.png"}]}}), e.clone(), true);
    check(
        json!({"detail": {"key": [{"wildcard": "dir/*/image.*"}]}}),
        e.clone(),
        true,
    );
    check(json!({"detail": {"key": [{"wildcard": "*.jpg"}]}}), e.clone(), false);
    check(json!({"detail": {"plain": [{"wildcard": "a\\*b"}]}}), e.clone(), true);
    check(
        json!({"detail": {"key": [{"wildcard": "dir/subdir/image.png"}]}}),
        e,
        true,
    );
}

#[test]
fn cidr() {
    let e = instance_event();
    check(
        json!({"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}}),
        e.clone(),
        true,
    );
    check(json!({"detail": {"source-ip": [{"cidr": "10.0.1.0/24"}]}}), e, false);
}

#[test]
fn or_across_fields() {
    let e = instance_event();
    check(
        json!({"source": ["aws.ec2"], "$or": [
            {"detail": {"c-count": [{"numeric": [">", 10]}]}},
            {"detail": {"d-count": [{"numeric": ["<", 5]}]}}
        ]}),
        e.clone(),
        true,
    );
    check(
        json!({"$or": [
            {"detail": {"c-count": [{"numeric": [">", 10]}]}},
            {"detail": {"d-count": [{"numeric": [">", 5]}]}}
        ]}),
        e.clone(),
        false,
    );
    // $or nested inside an object.
    check(
        json!({"detail": {"$or": [{"state": ["terminated"]}, {"x-limit": [0]}]}}),
        e,
        true,
    );
}

/// The ECR pattern of the e2e test: a push to a prod/ repository.
#[test]
fn ecr_push_pattern() {
    let p = json!({"source": ["aws.ecr"], "detail-type": ["ECR Image Action"],
        "detail": {"action-type": ["PUSH"], "repository-name": [{"prefix": "prod/"}]}});
    let ev = |repo: &str, action: &str| {
        json!({"version": "0", "id": "x", "detail-type": "ECR Image Action", "source": "aws.ecr",
            "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
            "resources": [], "detail": {"result": "SUCCESS", "repository-name": repo,
            "image-digest": "sha256:00", "action-type": action, "image-tag": "v1"}})
    };
    check(p.clone(), ev("prod/x", "PUSH"), true);
    check(p.clone(), ev("dev/x", "PUSH"), false);
    check(p, ev("prod/x", "DELETE"), false);
}

#[test]
fn invalid_patterns_are_refused_with_a_reason() {
    for (text, needle) in [
        ("not json", "not valid JSON"),
        ("[]", "not an object"),
        ("{}", "Empty objects"),
        (r#"{"source": "aws.ec2"}"#, "must be an array"),
        (r#"{"source": []}"#, "Empty arrays"),
        (r#"{"source": [["a"]]}"#, "Match value must be"),
        (r#"{"source": [{"prefix": 1}]}"#, "prefix match pattern"),
        (r#"{"source": [{"bogus": "x"}]}"#, "Unrecognized match type bogus"),
        (r#"{"source": [{"prefix": "a", "suffix": "b"}]}"#, "exactly one key"),
        (r#"{"n": [{"numeric": [">", "x"]}]}"#, "must be a number"),
        (
            r#"{"n": [{"numeric": ["!", 1]}]}"#,
            "Unrecognized numeric range operator",
        ),
        (r#"{"n": [{"numeric": ["<", 1, ">", 0]}]}"#, "first operator"),
        (r#"{"n": [{"numeric": [">", 5, "<", 1]}]}"#, "bottom must be less"),
        (r#"{"n": [{"numeric": [">", 0, "<", 5, "<", 6]}]}"#, "Too many"),
        (r#"{"n": [{"numeric": [">", 1e12]}]}"#, "between"),
        (r#"{"n": [{"exists": "yes"}]}"#, "true or false"),
        (r#"{"n": [{"anything-but": [1, "a"]}]}"#, "all values must be"),
        (r#"{"n": [{"anything-but": null}]}"#, "only strings and numbers"),
        (
            r#"{"n": [{"anything-but": {"numeric": [">", 1]}}]}"#,
            "Unsupported anything-but",
        ),
        (r#"{"n": [{"wildcard": "a**"}]}"#, "Consecutive wildcard"),
        (r#"{"n": [{"cidr": "10.0.0.0/99"}]}"#, "CIDR"),
        (r#"{"$or": [{"a": ["b"]}]}"#, "at least two"),
        (r#"{"$or": {"a": ["b"]}}"#, "array of objects"),
    ] {
        let msg = refused(text);
        assert!(msg.starts_with("Event pattern is not valid. Reason: "), "{text}: {msg}");
        assert!(msg.contains(needle), "{text}: {msg} (wanted {needle})");
    }
}

/// Deep nesting is refused, never a stack overflow.
#[test]
fn deep_nesting_is_refused() {
    let mut text = String::new();
    for _ in 0..100 {
        text.push_str("{\"a\":");
    }
    text.push_str("[1]");
    for _ in 0..100 {
        text.push('}');
    }
    let msg = refused(&text);
    assert!(msg.contains("deeper"), "{msg}");
}

#[test]
fn required_values_lets_rules_be_skipped() {
    let p = Pattern::parse(r#"{"source": ["aws.ecr", "aws.s3"], "detail": {"x": [1]}}"#).unwrap();
    assert_eq!(p.required_values("source"), Some(vec!["aws.ecr", "aws.s3"]));
    assert_eq!(p.required_values("detail-type"), None);
    let p = Pattern::parse(r#"{"source": [{"prefix": "aws."}]}"#).unwrap();
    assert_eq!(p.required_values("source"), None);
}
