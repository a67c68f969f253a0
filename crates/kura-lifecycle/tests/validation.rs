//! `parse`: a table of policies ECR accepts and refuses, with the reason.

use kura_lifecycle::{parse, Action, CountType, TagStatus, ERROR_PREFIX, MAX_POLICY_CHARS};

/// A policy with one rule whose `selection` is `sel`.
fn one(sel: &str) -> String {
    format!(r#"{{"rules":[{{"rulePriority":1,"selection":{sel},"action":{{"type":"expire"}}}}]}}"#)
}

/// A policy with one rule: `rule` is the rule's inner fields.
fn one_rule(rule: &str) -> String {
    format!(r#"{{"rules":[{{{rule}}}]}}"#)
}

/// A rule (full object) with this priority and selection.
fn r(priority: i64, sel: &str) -> String {
    format!(r#"{{"rulePriority":{priority},"selection":{sel},"action":{{"type":"expire"}}}}"#)
}

fn rules(rules: &[String]) -> String {
    format!(r#"{{"rules":[{}]}}"#, rules.join(","))
}

const UNTAGGED_KEEP_1: &str = r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#;
const ANY_KEEP_1: &str = r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1}"#;

fn tagged_prefix(list: &str) -> String {
    format!(r#"{{"tagStatus":"tagged","tagPrefixList":{list},"countType":"imageCountMoreThan","countNumber":1}}"#)
}

fn tagged_pattern(list: &str) -> String {
    format!(r#"{{"tagStatus":"tagged","tagPatternList":{list},"countType":"imageCountMoreThan","countNumber":1}}"#)
}

// The policies from AWS's "Examples of lifecycle policies" page.
const AWS_IMAGE_AGE: &str = r#"{
    "rules": [
        {
            "rulePriority": 1,
            "description": "Expire images older than 14 days",
            "selection": {
                "tagStatus": "tagged",
                "tagPatternList": ["prod*"],
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 14
            },
            "action": {
                "type": "expire"
            }
        }
    ]
}"#;

const AWS_IMAGE_COUNT: &str = r#"{
    "rules": [
        {
            "rulePriority": 1,
            "description": "Keep only one untagged image, expire all others",
            "selection": {
                "tagStatus": "untagged",
                "countType": "imageCountMoreThan",
                "countNumber": 1
            },
            "action": {
                "type": "expire"
            }
        }
    ]
}"#;

const AWS_ALL_RULE_TYPES: &str = r#"{
    "rules": [
        {"rulePriority": 1, "description": "Rule 1",
         "selection": {"tagStatus": "tagged", "tagPatternList": ["alpha*"], "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "expire"}},
        {"rulePriority": 2, "description": "Rule 2",
         "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1},
         "action": {"type": "expire"}},
        {"rulePriority": 3, "description": "Rule 3",
         "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "expire"}}
    ]
}"#;

#[test]
fn valid_policies() {
    let many_rules: Vec<String> = (1..=50)
        .map(|i| r(i, &tagged_prefix(&format!(r#"["p{i}-"]"#))))
        .collect();
    let cases: Vec<(&str, String)> = vec![
        ("AWS: filtering on image age", AWS_IMAGE_AGE.into()),
        ("AWS: filtering on image count", AWS_IMAGE_COUNT.into()),
        ("AWS: all rule types in one policy", AWS_ALL_RULE_TYPES.into()),
        (
            "AWS: multiple tag prefixes, sinceImagePushed",
            one(
                r#"{"tagStatus":"tagged","tagPrefixList":["alpha","beta"],"countType":"sinceImagePushed","countNumber":5,"countUnit":"days"}"#,
            ),
        ),
        (
            "AWS: four wildcards per pattern",
            one(&tagged_pattern(r#"["*test*1*2*3","test*1*2*3*"]"#)),
        ),
        (
            "non-sequential priorities, any last",
            rules(&[
                r(10, &tagged_prefix(r#"["latest"]"#)),
                r(20, &tagged_prefix(r#"["master"]"#)),
                r(
                    990,
                    r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7}"#,
                ),
                r(
                    1000,
                    r#"{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":15}"#,
                ),
            ]),
        ),
        (
            "rules listed out of priority order",
            rules(&[r(2, ANY_KEEP_1), r(1, UNTAGGED_KEEP_1)]),
        ),
        (
            "sinceImagePulled with expire",
            one(r#"{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":90}"#),
        ),
        (
            "storageClass standard",
            one(r#"{"tagStatus":"any","storageClass":"standard","countType":"imageCountMoreThan","countNumber":3}"#),
        ),
        (
            "prefix and pattern rules side by side",
            rules(&[r(1, &tagged_prefix(r#"["v"]"#)), r(2, &tagged_pattern(r#"["v*"]"#))]),
        ),
        (
            "different prefix sets sharing a prefix",
            rules(&[r(1, &tagged_prefix(r#"["a","b"]"#)), r(2, &tagged_prefix(r#"["a"]"#))]),
        ),
        (
            "tag characters in a prefix",
            one(&tagged_prefix(r#"["Release_1.2-rc"]"#)),
        ),
        ("a bare wildcard", one(&tagged_pattern(r#"["*"]"#))),
        (
            "largest rulePriority and countNumber",
            one_rule(
                r#""rulePriority":2147483647,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":2147483647},"action":{"type":"expire"}"#,
            ),
        ),
        ("50 rules", rules(&many_rules)),
        ("no description", one(ANY_KEEP_1)),
    ];
    for (name, text) in cases {
        if let Err(e) = parse(&text) {
            panic!("{name}: refused: {e}\n{text}");
        }
    }
}

#[test]
fn invalid_policies() {
    let long = format!("{}{}", one(ANY_KEEP_1), " ".repeat(MAX_POLICY_CHARS));
    let fifty_one: Vec<String> = (1..=51)
        .map(|i| r(i, &tagged_prefix(&format!(r#"["p{i}-"]"#))))
        .collect();
    let since = |unit: &str| {
        one(&format!(
            r#"{{"tagStatus":"any","countType":"sinceImagePushed",{unit}"countNumber":3}}"#
        ))
    };
    let count_number = |n: &str| {
        one(&format!(
            r#"{{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":{n}}}"#
        ))
    };
    let priority = |p: &str| {
        one_rule(&format!(
            r#""rulePriority":{p},"selection":{ANY_KEEP_1},"action":{{"type":"expire"}}"#
        ))
    };
    let act = |a: &str| one_rule(&format!(r#""rulePriority":1,"selection":{ANY_KEEP_1},"action":{a}"#));
    let cases: Vec<(&str, String, &str)> = vec![
        // The document.
        ("too long", long, "at most 30720 are allowed"),
        ("not JSON", "{\"rules\": [".into(), "not valid JSON"),
        ("empty text", "".into(), "not valid JSON"),
        ("top level is a list", "[]".into(), "the policy must be a JSON object"),
        ("no rules", "{}".into(), "has no \"rules\""),
        ("rules is empty", r#"{"rules":[]}"#.into(), "\"rules\" is empty"),
        (
            "rules is an object",
            r#"{"rules":{}}"#.into(),
            "\"rules\" must be a list",
        ),
        ("51 rules", rules(&fifty_one), "51 rules; at most 50"),
        (
            "unknown top-level field",
            r#"{"rules":[],"version":1}"#.into(),
            "unknown field \"version\" in the policy",
        ),
        (
            "rule is not an object",
            r#"{"rules":[1]}"#.into(),
            "rules[0] must be a JSON object",
        ),
        // Unknown fields.
        (
            "unknown rule field",
            one_rule(&format!(
                r#""rulePriority":1,"name":"x","selection":{ANY_KEEP_1},"action":{{"type":"expire"}}"#
            )),
            "unknown field \"name\" in rules[0]",
        ),
        (
            "unknown selection field",
            one(r#"{"tagStatus":"any","tagList":["a"],"countType":"imageCountMoreThan","countNumber":1}"#),
            "unknown field \"tagList\" in rules[0].selection",
        ),
        (
            "unknown action field",
            act(r#"{"type":"expire","when":"now"}"#),
            "unknown field \"when\" in rules[0].action",
        ),
        // rulePriority.
        (
            "rulePriority missing",
            one_rule(&format!(r#""selection":{ANY_KEEP_1},"action":{{"type":"expire"}}"#)),
            "rules[0].rulePriority is required",
        ),
        (
            "rulePriority 0",
            priority("0"),
            "rulePriority must be a positive integer (got 0)",
        ),
        (
            "rulePriority negative",
            priority("-1"),
            "rulePriority must be a positive integer (got -1)",
        ),
        (
            "rulePriority fraction",
            priority("1.5"),
            "rulePriority must be a positive integer",
        ),
        (
            "rulePriority string",
            priority("\"1\""),
            "rulePriority must be a positive integer",
        ),
        (
            "rulePriority null",
            priority("null"),
            "rulePriority must be a positive integer",
        ),
        (
            "rulePriority too large",
            priority("2147483648"),
            "rulePriority must be at most 2147483647",
        ),
        (
            "duplicate rulePriority",
            rules(&[r(1, &tagged_prefix(r#"["a"]"#)), r(1, &tagged_prefix(r#"["b"]"#))]),
            "rulePriority 1 is used by more than one rule",
        ),
        // description.
        (
            "description not a string",
            one_rule(&format!(
                r#""rulePriority":1,"description":7,"selection":{ANY_KEEP_1},"action":{{"type":"expire"}}"#
            )),
            "rules[0].description must be a string",
        ),
        // selection and tagStatus.
        (
            "selection missing",
            one_rule(r#""rulePriority":1,"action":{"type":"expire"}"#),
            "rules[0].selection is required",
        ),
        (
            "selection not an object",
            one("[]"),
            "rules[0].selection must be a JSON object",
        ),
        (
            "tagStatus missing",
            one(r#"{"countType":"imageCountMoreThan","countNumber":1}"#),
            "tagStatus is required",
        ),
        (
            "tagStatus unknown",
            one(r#"{"tagStatus":"some","countType":"imageCountMoreThan","countNumber":1}"#),
            "tagStatus must be one of \"tagged\", \"untagged\", \"any\" (got \"some\")",
        ),
        (
            "tagStatus upper case",
            one(r#"{"tagStatus":"TAGGED","tagPrefixList":["a"],"countType":"imageCountMoreThan","countNumber":1}"#),
            "tagStatus must be one of",
        ),
        // Tag lists.
        (
            "tagged without a list",
            one(r#"{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":1}"#),
            "\"tagged\" requires a tagPrefixList or a tagPatternList",
        ),
        (
            "tagged with both lists",
            one(
                r#"{"tagStatus":"tagged","tagPrefixList":["a"],"tagPatternList":["a*"],"countType":"imageCountMoreThan","countNumber":1}"#,
            ),
            "has both tagPrefixList and tagPatternList",
        ),
        (
            "empty prefix list",
            one(&tagged_prefix("[]")),
            "tagPrefixList must not be empty",
        ),
        (
            "empty pattern list",
            one(&tagged_pattern("[]")),
            "tagPatternList must not be empty",
        ),
        (
            "prefix list null",
            one(&tagged_prefix("null")),
            "tagPrefixList must be a list of strings",
        ),
        (
            "prefix list a string",
            one(&tagged_prefix("\"prod\"")),
            "tagPrefixList must be a list of strings",
        ),
        (
            "prefix entry not a string",
            one(&tagged_prefix("[1]")),
            "tagPrefixList[0] must be a string",
        ),
        (
            "prefix entry empty",
            one(&tagged_prefix(r#"["a",""]"#)),
            "tagPrefixList[1] must not be empty",
        ),
        (
            "prefix with a wildcard",
            one(&tagged_prefix(r#"["prod*"]"#)),
            "tagPrefixList[0] \"prod*\" contains '*'",
        ),
        (
            "prefix with a space",
            one(&tagged_prefix(r#"["git hash"]"#)),
            "contains ' '",
        ),
        (
            "prefix too long",
            one(&tagged_prefix(&format!(r#"["{}"]"#, "a".repeat(129)))),
            "129 characters; at most 128",
        ),
        (
            "AWS: too many wildcards",
            one(&tagged_pattern(r#"["test*1*2*3*4*5*6"]"#)),
            "has 6 wildcards; at most 4",
        ),
        (
            "five wildcards",
            one(&tagged_pattern(r#"["ok","*a*b*c*d*"]"#)),
            "tagPatternList[1] \"*a*b*c*d*\" has 5 wildcards",
        ),
        (
            "pattern with a slash",
            one(&tagged_pattern(r#"["prod/*"]"#)),
            "contains '/'",
        ),
        (
            "pattern with a question mark",
            one(&tagged_pattern(r#"["prod?"]"#)),
            "contains '?'",
        ),
        (
            "pattern with a regex",
            one(&tagged_pattern(r#"["^v[0-9]+$"]"#)),
            "contains '^'",
        ),
        (
            "untagged with a prefix list",
            one(r#"{"tagStatus":"untagged","tagPrefixList":["a"],"countType":"imageCountMoreThan","countNumber":1}"#),
            "tagPrefixList is only allowed with tagStatus \"tagged\"",
        ),
        (
            "any with a pattern list",
            one(r#"{"tagStatus":"any","tagPatternList":["a*"],"countType":"imageCountMoreThan","countNumber":1}"#),
            "tagPatternList is only allowed with tagStatus \"tagged\" (this rule has \"any\")",
        ),
        (
            "untagged with an empty list",
            one(r#"{"tagStatus":"untagged","tagPatternList":[],"countType":"imageCountMoreThan","countNumber":1}"#),
            "only allowed with tagStatus \"tagged\"",
        ),
        // Across rules.
        (
            "any is not last",
            rules(&[r(1, ANY_KEEP_1), r(2, UNTAGGED_KEEP_1)]),
            "\"any\" must have the highest rulePriority",
        ),
        (
            "two any rules",
            rules(&[r(1, &tagged_prefix(r#"["a"]"#)), r(2, ANY_KEEP_1), r(3, ANY_KEEP_1)]),
            "only one rule may have tagStatus \"any\"",
        ),
        (
            "two untagged rules",
            rules(&[
                r(1, UNTAGGED_KEEP_1),
                r(
                    2,
                    r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":1}"#,
                ),
            ]),
            "only one rule may select untagged images",
        ),
        (
            "same prefix set twice",
            rules(&[
                r(1, &tagged_prefix(r#"["a","b"]"#)),
                r(2, &tagged_prefix(r#"["b","a"]"#)),
            ]),
            "rulePriority 1 and 2 have the same tagPrefixList",
        ),
        (
            "same pattern set twice",
            rules(&[r(3, &tagged_pattern(r#"["v*"]"#)), r(7, &tagged_pattern(r#"["v*"]"#))]),
            "rulePriority 3 and 7 have the same tagPatternList",
        ),
        // countType, countUnit, countNumber.
        (
            "countType missing",
            one(r#"{"tagStatus":"any","countNumber":1}"#),
            "countType is required",
        ),
        (
            "countType unknown",
            one(r#"{"tagStatus":"any","countType":"imagecountmorethan","countNumber":1}"#),
            "countType must be one of",
        ),
        (
            "countType sinceImageTransitioned alone",
            one(r#"{"tagStatus":"any","countType":"sinceImageTransitioned","countUnit":"days","countNumber":1}"#),
            "it needs storageClass \"archive\"",
        ),
        (
            "countUnit missing",
            since(""),
            "countUnit is required with countType \"sinceImagePushed\"",
        ),
        (
            "countUnit missing for pulled",
            one(r#"{"tagStatus":"any","countType":"sinceImagePulled","countNumber":1}"#),
            "countUnit is required with countType \"sinceImagePulled\"",
        ),
        (
            "countUnit hours",
            since(r#""countUnit":"hours","#),
            "countUnit must be \"days\" (got \"hours\")",
        ),
        (
            "countUnit with a count",
            one(r#"{"tagStatus":"any","countType":"imageCountMoreThan","countUnit":"days","countNumber":1}"#),
            "countUnit is not allowed with countType \"imageCountMoreThan\"",
        ),
        (
            "countNumber missing",
            one(r#"{"tagStatus":"any","countType":"imageCountMoreThan"}"#),
            "countNumber is required",
        ),
        (
            "countNumber 0",
            count_number("0"),
            "countNumber must be a positive integer (got 0)",
        ),
        (
            "countNumber negative",
            count_number("-3"),
            "countNumber must be a positive integer (got -3)",
        ),
        (
            "countNumber fraction",
            count_number("2.5"),
            "countNumber must be a positive integer (got 2.5)",
        ),
        (
            "countNumber string",
            count_number("\"5\""),
            "countNumber must be a positive integer (got \"5\")",
        ),
        (
            "countNumber too large",
            count_number("4294967296"),
            "countNumber must be at most 2147483647",
        ),
        // storageClass.
        (
            "storageClass glacier",
            one(r#"{"tagStatus":"any","storageClass":"glacier","countType":"imageCountMoreThan","countNumber":1}"#),
            "storageClass must be \"standard\" or \"archive\" (got \"glacier\")",
        ),
        (
            "storageClass ARCHIVE",
            one(r#"{"tagStatus":"any","storageClass":"ARCHIVE","countType":"imageCountMoreThan","countNumber":1}"#),
            "storageClass must be \"standard\" or \"archive\"",
        ),
        (
            "sinceImageTransitioned on standard",
            one(r#"{"tagStatus":"any","countType":"sinceImageTransitioned","countUnit":"days","countNumber":1}"#),
            "sinceImageTransitioned\" counts days in the archive; it needs storageClass \"archive\"",
        ),
        (
            "sinceImageTransitioned without unit",
            one(r#"{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countNumber":1}"#),
            "countUnit is required with countType \"sinceImageTransitioned\"",
        ),
        // action.
        (
            "action missing",
            one_rule(&format!(r#""rulePriority":1,"selection":{ANY_KEEP_1}"#)),
            "rules[0].action is required",
        ),
        (
            "action not an object",
            act("\"expire\""),
            "rules[0].action must be a JSON object",
        ),
        ("action type missing", act("{}"), "rules[0].action.type is required"),
        (
            "action type delete",
            act(r#"{"type":"delete"}"#),
            "action.type must be \"expire\" or \"transition\" (got \"delete\")",
        ),
        (
            "action type EXPIRE",
            act(r#"{"type":"EXPIRE"}"#),
            "action.type must be \"expire\" or \"transition\"",
        ),
        (
            "expire with a target",
            act(r#"{"type":"expire","targetStorageClass":"archive"}"#),
            "targetStorageClass is only allowed with type \"transition\"",
        ),
        (
            "transition alone",
            act(r#"{"type":"transition"}"#),
            "targetStorageClass is required with type \"transition\"",
        ),
        (
            "transition to standard",
            act(r#"{"type":"transition","targetStorageClass":"standard"}"#),
            "targetStorageClass must be \"archive\" (got \"standard\")",
        ),
        (
            "transition to ARCHIVE",
            act(r#"{"type":"transition","targetStorageClass":"ARCHIVE"}"#),
            "targetStorageClass must be \"archive\"",
        ),
        (
            "action unknown field",
            act(r#"{"type":"expire","days":3}"#),
            "unknown field \"days\"",
        ),
        (
            "transition of archived images",
            one_rule(
                r#""rulePriority":1,"selection":{"tagStatus":"any","storageClass":"archive","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"transition","targetStorageClass":"archive"}"#,
            ),
            "its selection.storageClass must be \"standard\" (got \"archive\")",
        ),
        // Cross-rule checks hold within a storage class.
        (
            "two any rules of the archive",
            rules(&[
                r(
                    1,
                    r#"{"tagStatus":"any","storageClass":"archive","countType":"imageCountMoreThan","countNumber":1}"#,
                ),
                r(
                    2,
                    r#"{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":1}"#,
                ),
            ]),
            "only one rule may have tagStatus \"any\"",
        ),
        // The first bad rule is reported, by its index.
        (
            "second rule bad",
            rules(&[
                r(1, UNTAGGED_KEEP_1),
                r(
                    2,
                    r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":0}"#,
                ),
            ]),
            "rules[1].selection.countNumber",
        ),
    ];
    let mut failures = Vec::new();
    for (name, text, want) in &cases {
        match parse(text) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(e) => {
                if !e.message.starts_with(ERROR_PREFIX) {
                    failures.push(format!("{name}: message lacks the prefix: {}", e.message));
                }
                if !e.reason().contains(want) {
                    failures.push(format!("{name}: reason {:?} lacks {want:?}", e.reason()));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn error_message_reads_like_ecr() {
    let e = parse(&one(
        r#"{"tagStatus":"nope","countType":"imageCountMoreThan","countNumber":1}"#,
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Lifecycle policy validation failure: rules[0].selection.tagStatus must be one of \"tagged\", \"untagged\", \"any\" (got \"nope\")"
    );
    assert_eq!(e.message, e.to_string());
}

#[test]
fn parsed_fields() {
    let p = parse(AWS_ALL_RULE_TYPES).unwrap();
    assert_eq!(p.rules.iter().map(|r| r.rule_priority).collect::<Vec<_>>(), [1, 2, 3]);
    let r1 = &p.rules[0];
    assert_eq!(r1.description.as_deref(), Some("Rule 1"));
    assert_eq!(r1.selection.tag_status, TagStatus::Tagged);
    assert_eq!(r1.selection.tag_pattern_list, ["alpha*"]);
    assert!(r1.selection.tag_prefix_list.is_empty());
    assert_eq!(r1.selection.count_type, CountType::ImageCountMoreThan);
    assert_eq!(r1.selection.count_unit, None);
    assert_eq!(r1.selection.count_number, 1);
    assert_eq!(r1.action, Action::Expire);
    let r2 = &p.rules[1];
    assert_eq!(r2.selection.tag_status, TagStatus::Untagged);
    assert_eq!(r2.selection.count_type, CountType::SinceImagePushed);
    assert_eq!(r2.selection.count_unit.as_deref(), Some("days"));
    assert_eq!(p.rules[2].selection.tag_status, TagStatus::Any);

    // Rules come back in priority order whatever the text's order.
    let p = parse(&rules(&[
        r(30, ANY_KEEP_1),
        r(5, UNTAGGED_KEEP_1),
        r(7, &tagged_prefix(r#"["a","b"]"#)),
    ]))
    .unwrap();
    assert_eq!(p.rules.iter().map(|r| r.rule_priority).collect::<Vec<_>>(), [5, 7, 30]);
    assert_eq!(p.rules[1].selection.tag_prefix_list, ["a", "b"]);
    assert_eq!(p.rules[1].description, None);
}

#[test]
fn length_limit_counts_characters() {
    // Exactly at the limit (multi-byte characters count once) is fine.
    let base = one_rule(&format!(
        r#""rulePriority":1,"description":"","selection":{ANY_KEEP_1},"action":{{"type":"expire"}}"#
    ));
    let pad = MAX_POLICY_CHARS - base.chars().count();
    let text = base.replacen(
        r#""description":"""#,
        &format!(r#""description":"{}""#, "é".repeat(pad)),
        1,
    );
    assert_eq!(text.chars().count(), MAX_POLICY_CHARS);
    parse(&text).unwrap();
    let over = text.replacen('é', "éé", 1);
    assert!(parse(&over).unwrap_err().reason().contains("30721 characters"));
}
