//! `Policy::parse`: documents IAM refuses, each with its reason, and some it
//! accepts.

use kura_iam::{
    ActionSpec, Condition, Effect, Operator, ParseOptions, Policy, PolicyKind, PrincipalSpec, ResourceSpec,
    SetQualifier, SizeCount, SizeLimit, Version, ECR_REPOSITORY_POLICY_MAX_CHARS, ERROR_PREFIX,
    IAM_INLINE_USER_POLICY_MAX_CHARS, IAM_MANAGED_POLICY_MAX_CHARS,
};

/// A 2012-10-17 document with one statement whose fields are `fields`.
fn one(fields: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{{{fields}}}]}}"#)
}

const OK: &str = r#""Effect":"Allow","Action":"ecr:*","Resource":"*""#;

#[test]
fn refused_with_reason() {
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "not valid JSON"),
        ("[]".into(), "must be a JSON object"),
        (r#"{"Version":"2012-10-17"}"#.into(), "Statement is required"),
        (
            r#"{"Version":"2012-10-17","Statement":[]}"#.into(),
            "Statement must not be empty",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":"x"}"#.into(),
            "Statement must be an object",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":["x"]}"#.into(),
            "Statement[0] must be an object",
        ),
        (
            format!(r#"{{"Version":"2020-01-01","Statement":{{{OK}}}}}"#),
            "Version must be",
        ),
        (format!(r#"{{"Version":2012,"Statement":{{{OK}}}}}"#), "Version must be"),
        (
            format!(r#"{{"Version":"2012-10-17","Id":5,"Statement":{{{OK}}}}}"#),
            "Id must be a string",
        ),
        (
            format!(r#"{{"Version":"2012-10-17","Extra":1,"Statement":{{{OK}}}}}"#),
            "unknown field \"Extra\"",
        ),
        (
            format!(r#"{{"version":"2012-10-17","Statement":{{{OK}}}}}"#),
            "unknown field \"version\"",
        ),
        (
            one(&format!(r#"{OK},"Bogus":1"#)),
            "Statement[0] has an unknown field \"Bogus\"",
        ),
        (
            one(r#""Action":"ecr:*","Resource":"*""#),
            "Statement[0]: Effect is required",
        ),
        (
            one(r#""Effect":"allow","Action":"ecr:*","Resource":"*""#),
            "Effect must be \"Allow\" or \"Deny\"",
        ),
        (
            one(r#""Effect":"Allow","Resource":"*""#),
            "Action or NotAction is required",
        ),
        (
            one(r#""Effect":"Allow","Action":"ecr:*","NotAction":"ecr:Put*","Resource":"*""#),
            "Statement[0]: Action and NotAction are mutually exclusive",
        ),
        (
            one(r#""Effect":"Allow","Action":"*","Resource":"*","NotResource":"*""#),
            "Resource and NotResource are mutually exclusive",
        ),
        (
            one(r#""Effect":"Allow","Action":"*","Principal":"*","NotPrincipal":"*""#),
            "Principal and NotPrincipal are mutually exclusive",
        ),
        (
            one(r#""Effect":"Allow","Action":[],"Resource":"*""#),
            "Action must not be empty",
        ),
        (
            one(r#""Effect":"Allow","Action":["ecr:*",3],"Resource":"*""#),
            "entries must be strings",
        ),
        (
            one(r#""Effect":"Allow","Action":{"a":1},"Resource":"*""#),
            "must be a string or a list",
        ),
        (
            one(r#""Effect":"Allow","Action":"GetImage","Resource":"*""#),
            "must be \"*\" or service:action",
        ),
        (
            one(r#""Effect":"Allow","Action":"ecr:","Resource":"*""#),
            "empty action name",
        ),
        (
            one(r#""Effect":"Allow","Action":":Get","Resource":"*""#),
            "invalid service prefix",
        ),
        (
            one(r#""Effect":"Allow","Action":"e*:Get","Resource":"*""#),
            "invalid service prefix",
        ),
        (
            one(r#""Effect":"Allow","Action":"ecr:Get Image","Resource":"*""#),
            "invalid action name",
        ),
        (
            one(r#""Effect":"Allow","Action":"ecr:Get:Image","Resource":"*""#),
            "invalid action name",
        ),
        (
            one(r#""Effect":"Allow","Action":"*","Resource":"repo/x""#),
            "must be \"*\" or an ARN",
        ),
        (
            one(r#""Effect":"Allow","Action":"*","Resource":"arn:aws:ecr""#),
            "must be \"*\" or an ARN",
        ),
        (
            one(r#""Effect":"Allow","Action":"*","Resource":[]"#),
            "Resource must not be empty",
        ),
        (
            one(r#""Sid":5,"Effect":"Allow","Action":"*","Resource":"*""#),
            "Sid must be a string",
        ),
        (
            format!(r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"A",{OK}}},{{"Sid":"A",{OK}}}]}}"#),
            "Statement[1]: Sid \"A\" is used twice",
        ),
        (
            one(r#""Effect":"Allow","Action":"*","Principal":"someone""#),
            "Principal must be \"*\" or an object",
        ),
        (
            one(r#""Effect":"Allow","Action":"*","Principal":{}"#),
            "must name at least one principal",
        ),
        (
            one(r#""Effect":"Allow","Action":"*","Principal":{"Users":"x"}"#),
            "unknown field \"Users\"",
        ),
        (
            one(r#""Effect":"Allow","Action":"*","Principal":{"AWS":"alice"}"#),
            "invalid principal \"alice\"",
        ),
        (
            one(r#""Effect":"Allow","Action":"*","Principal":{"AWS":"arn:aws:iam::111122223333:user/*"}"#),
            "invalid principal",
        ),
        (
            one(r#""Effect":"Allow","Action":"*","Principal":{"AWS":"1111"}"#),
            "invalid principal",
        ),
        (
            one(
                r#""Effect":"Allow","Action":"*","Principal":{"AWS":"arn:aws:ecr:us-east-1:111122223333:repository/x"}"#,
            ),
            "invalid principal",
        ),
        (
            one(&format!(
                r#"{OK},"Condition":{{"StringSortOf":{{"aws:username":"a"}}}}"#
            )),
            "unknown condition operator \"StringSortOf\"",
        ),
        (
            one(&format!(
                r#"{OK},"Condition":{{"NullIfExists":{{"aws:username":"true"}}}}"#
            )),
            "unknown condition operator \"NullIfExists\"",
        ),
        (
            one(&format!(
                r#"{OK},"Condition":{{"ForSomeValues:StringEquals":{{"k":"a"}}}}"#
            )),
            "unknown condition operator",
        ),
        (one(&format!(r#"{OK},"Condition":"x""#)), "Condition must be an object"),
        (
            one(&format!(r#"{OK},"Condition":{{"StringEquals":"x"}}"#)),
            "must be an object of condition keys",
        ),
        (
            one(&format!(r#"{OK},"Condition":{{"StringEquals":{{}}}}"#)),
            "at least one condition key",
        ),
        (
            one(&format!(r#"{OK},"Condition":{{"StringEquals":{{"k":[]}}}}"#)),
            "must not be empty",
        ),
        (
            one(&format!(r#"{OK},"Condition":{{"StringEquals":{{"k":{{"a":1}}}}}}"#)),
            "must be a string, number",
        ),
        (
            one(&format!(r#"{OK},"Condition":{{"StringEquals":{{"k":[null]}}}}"#)),
            "values must be strings",
        ),
        (
            one(&format!(r#"{OK},"Condition":{{"NumericLessThan":{{"k":"ten"}}}}"#)),
            "NumericLessThan value \"ten\" is not a number",
        ),
        (
            one(&format!(
                r#"{OK},"Condition":{{"DateGreaterThan":{{"aws:CurrentTime":"tomorrow"}}}}"#
            )),
            "is not an ISO 8601 date or epoch seconds",
        ),
        (
            one(&format!(
                r#"{OK},"Condition":{{"Bool":{{"aws:SecureTransport":"yes"}}}}"#
            )),
            "is not true or false",
        ),
        (
            one(&format!(r#"{OK},"Condition":{{"Null":{{"k":"maybe"}}}}"#)),
            "is not true or false",
        ),
        (
            one(&format!(
                r#"{OK},"Condition":{{"IpAddress":{{"aws:SourceIp":"10.0.0.0/33"}}}}"#
            )),
            "is not an IP address or CIDR block",
        ),
        (
            one(&format!(
                r#"{OK},"Condition":{{"NotIpAddress":{{"aws:SourceIp":"office"}}}}"#
            )),
            "is not an IP address or CIDR block",
        ),
        (
            one(&format!(r#"{OK},"Condition":{{"StringEquals":{{"":"a"}}}}"#)),
            "invalid condition key",
        ),
    ];
    for (text, want) in &cases {
        match Policy::parse(text) {
            Ok(p) => panic!("accepted {text}\n{p:?}"),
            Err(e) => {
                assert!(e.message.starts_with(ERROR_PREFIX), "{e}");
                assert!(e.reason().contains(want), "{text}\nwant {want:?} in {:?}", e.reason());
            }
        }
    }
    assert!(cases.len() >= 50);
}

#[test]
fn kind_rules() {
    let identity = ParseOptions::kind(PolicyKind::Identity);
    let resource = ParseOptions::kind(PolicyKind::Resource);
    let with_principal = one(r#""Effect":"Allow","Principal":"*","Action":"ecr:*""#);
    let e = Policy::parse_with(&with_principal, &identity).unwrap_err();
    assert!(
        e.reason()
            .contains("Statement[0]: Principal and NotPrincipal are not allowed"),
        "{e}"
    );
    let no_resource = one(r#""Effect":"Allow","Action":"ecr:*""#);
    let e = Policy::parse_with(&no_resource, &identity).unwrap_err();
    assert!(
        e.reason().contains("Statement[0]: Resource or NotResource is required"),
        "{e}"
    );
    let with_both = one(r#""Effect":"Allow","Principal":"*","Action":"ecr:*","Resource":"*""#);
    let e = Policy::parse_with(&with_both, &identity).unwrap_err();
    assert!(e.reason().contains("not allowed in an identity policy"), "{e}");
    let no_principal = one(OK);
    let e = Policy::parse_with(&no_principal, &resource).unwrap_err();
    assert!(e.reason().contains("Principal or NotPrincipal is required"), "{e}");
    // ECR repository policies need no Resource.
    Policy::parse_with(&with_principal, &resource).unwrap();
    Policy::parse_with(&with_principal, &ParseOptions::ecr_repository_policy()).unwrap();
    Policy::parse_with(&no_principal, &identity).unwrap();
    // Kind-free parse accepts both; validate_kind checks afterwards.
    let p = Policy::parse(&with_principal).unwrap();
    assert!(p.validate_kind(PolicyKind::Resource).is_ok());
    assert!(p.validate_kind(PolicyKind::Identity).is_err());
}

#[test]
fn size_limits() {
    let pad = |n: usize| {
        format!(
            r#"{{"Version":"2012-10-17","Id":"{}","Statement":{{{OK}}}}}"#,
            "x".repeat(n)
        )
    };
    let base = pad(0).chars().count();
    let at_limit = pad(ECR_REPOSITORY_POLICY_MAX_CHARS - base);
    let r = ParseOptions::ecr_repository_policy();
    // A resource policy needs a principal, so test the size with a bare limit.
    let chars = ParseOptions {
        kind: None,
        max_size: r.max_size,
        duplicate_sids: false,
    };
    Policy::parse_with(&at_limit, &chars).unwrap();
    let over = pad(ECR_REPOSITORY_POLICY_MAX_CHARS - base + 1);
    let e = Policy::parse_with(&over, &chars).unwrap_err();
    assert!(e.reason().contains("at most 10240 are allowed"), "{e}");

    // IAM counts only non-whitespace characters.
    let spaced = format!("{}{}", " ".repeat(10_000), pad(IAM_MANAGED_POLICY_MAX_CHARS - base));
    Policy::parse_with(&spaced, &ParseOptions::iam_managed_policy()).unwrap();
    let e = Policy::parse_with(&pad(IAM_MANAGED_POLICY_MAX_CHARS), &ParseOptions::iam_managed_policy()).unwrap_err();
    assert!(e.reason().contains("non-whitespace characters"), "{e}");
    let e = Policy::parse_with(
        &pad(IAM_INLINE_USER_POLICY_MAX_CHARS - base + 1),
        &ParseOptions::iam_inline_user_policy(),
    )
    .unwrap_err();
    assert!(e.reason().contains("at most 2048"), "{e}");

    // Bytes: a multi-byte character counts more than once.
    let bytes = ParseOptions {
        kind: None,
        max_size: Some(SizeLimit {
            max: base + 2,
            count: SizeCount::Bytes,
        }),
        duplicate_sids: false,
    };
    let text = format!(r#"{{"Version":"2012-10-17","Id":"é","Statement":{{{OK}}}}}"#);
    Policy::parse_with(&text, &bytes).unwrap();
    let text = format!(r#"{{"Version":"2012-10-17","Id":"éé","Statement":{{{OK}}}}}"#);
    assert!(Policy::parse_with(&text, &bytes).is_err());
}

#[test]
fn accepted_shapes() {
    let p = Policy::parse(
        r#"{
        "Version": "2012-10-17",
        "Id": "repo-policy",
        "Statement": {
            "Sid": "CrossAccountPull",
            "Effect": "Allow",
            "Principal": {"AWS": ["444455556666", "arn:aws:iam::777788889999:root",
                                  "arn:aws:iam::777788889999:role/ci",
                                  "arn:aws:sts::777788889999:assumed-role/ci/build"],
                          "Service": "codebuild.amazonaws.com"},
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Condition": {
                "ForAnyValue:StringLikeIfExists": {"aws:TagKeys": ["team*", "env"]},
                "NumericLessThan": {"kura:Count": 5},
                "Bool": {"aws:SecureTransport": true},
                "DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"},
                "IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:db8::/32"]}
            }
        }
    }"#,
    )
    .unwrap();
    assert_eq!(p.version, Version::V2012_10_17);
    assert_eq!(p.id.as_deref(), Some("repo-policy"));
    let st = &p.statements[0];
    assert_eq!(st.sid.as_deref(), Some("CrossAccountPull"));
    assert_eq!(st.effect, Effect::Allow);
    assert!(st.resource.is_none());
    let Some(PrincipalSpec::Principal(pr)) = &st.principal else {
        panic!("{st:?}")
    };
    assert_eq!(pr.aws.len(), 4);
    assert_eq!(pr.service, ["codebuild.amazonaws.com"]);
    assert_eq!(
        st.action,
        ActionSpec::Action(vec!["ecr:BatchGetImage".into(), "ecr:GetDownloadUrlForLayer".into()])
    );
    assert_eq!(st.conditions.len(), 5);
    let tag: &Condition = st.conditions.iter().find(|c| c.key == "aws:TagKeys").unwrap();
    assert_eq!(tag.operator.qualifier, Some(SetQualifier::ForAnyValue));
    assert_eq!(tag.operator.operator, Operator::StringLike);
    assert!(tag.operator.if_exists);
    let n = st.conditions.iter().find(|c| c.key == "kura:Count").unwrap();
    assert_eq!(n.values, ["5"]);
    let b = st.conditions.iter().find(|c| c.key == "aws:SecureTransport").unwrap();
    assert_eq!(b.values, ["true"]);

    // No Version: 2008-10-17. NotResource, NotAction, Deny.
    let p =
        Policy::parse(r#"{"Statement":[{"Effect":"Deny","NotAction":"iam:*","NotResource":["arn:aws:ecr:*:*:*"]}]}"#)
            .unwrap();
    assert_eq!(p.version, Version::V2008_10_17);
    assert_eq!(p.statements[0].effect, Effect::Deny);
    assert!(matches!(p.statements[0].action, ActionSpec::NotAction(_)));
    assert!(matches!(p.statements[0].resource, Some(ResourceSpec::NotResource(_))));

    // Every operator, with and without IfExists and qualifiers, parses.
    for op in Operator::all() {
        let value = match op.positive() {
            Operator::NumericEquals
            | Operator::NumericLessThan
            | Operator::NumericLessThanEquals
            | Operator::NumericGreaterThan
            | Operator::NumericGreaterThanEquals => "1",
            Operator::DateEquals
            | Operator::DateLessThan
            | Operator::DateLessThanEquals
            | Operator::DateGreaterThan
            | Operator::DateGreaterThanEquals => "2020-01-01",
            Operator::Bool | Operator::Null => "true",
            Operator::IpAddress => "10.0.0.0/8",
            _ => "arn:aws:ecr:*:*:repository/x",
        };
        let suffixes: &[&str] = if *op == Operator::Null {
            &[""]
        } else {
            &["", "IfExists"]
        };
        for prefix in ["", "ForAnyValue:", "ForAllValues:"] {
            for suffix in suffixes {
                let name = format!("{prefix}{}{suffix}", op.name());
                let text = one(&format!(r#"{OK},"Condition":{{"{name}":{{"k":"{value}"}}}}"#));
                Policy::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }
}

#[test]
fn managed_policies() {
    for arn in kura_iam::managed_policy_names() {
        let p = kura_iam::managed_policy(arn).unwrap();
        p.validate_kind(PolicyKind::Identity).unwrap();
    }
    assert!(kura_iam::managed_policy("arn:aws:iam::aws:policy/AdministratorAccess").is_none());
}

/// ECR accepts two statements with one `Sid` in repository and registry
/// policies; IAM refuses them in identity and trust policies.
#[test]
fn ecr_policies_may_repeat_a_sid_and_iam_policies_may_not() {
    let st = r#"{"Sid":"A","Effect":"Allow","Principal":"*","Action":"ecr:*"}"#;
    let resource = format!(r#"{{"Version":"2012-10-17","Statement":[{st},{st}]}}"#);
    let p = Policy::parse_with(&resource, &ParseOptions::ecr_repository_policy()).unwrap();
    assert_eq!(p.statements.len(), 2);
    let e = Policy::parse_with(&resource, &ParseOptions::kind(PolicyKind::Resource)).unwrap_err();
    assert!(e.reason().contains("used twice"), "{e}");
    let st = r#"{"Sid":"A","Effect":"Allow","Action":"ecr:*","Resource":"*"}"#;
    let identity = format!(r#"{{"Version":"2012-10-17","Statement":[{st},{st}]}}"#);
    for options in [
        ParseOptions::iam_managed_policy(),
        ParseOptions::iam_inline_user_policy(),
    ] {
        let e = Policy::parse_with(&identity, &options).unwrap_err();
        assert!(e.reason().contains("used twice"), "{e}");
    }
}
