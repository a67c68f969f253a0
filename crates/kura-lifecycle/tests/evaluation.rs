//! `evaluate`: a table of repositories and policies with the images that
//! survive, including every worked example on AWS's "Examples of lifecycle
//! policies" page.

use std::collections::BTreeSet;

use kura_lifecycle::{
    evaluate, parse, Action, CountType, Decision, Image, Policy, Rule, Selection, StorageClass, TagStatus, DAY_MS,
};

const NOW: i64 = 1_750_000_000_000;
const HOUR_MS: i64 = 3_600_000;

/// An image: digest, tags, pushed `pushed_h` hours ago, pulled `pulled_h`
/// hours ago (or never).
struct Img {
    digest: &'static str,
    tags: &'static [&'static str],
    pushed_h: i64,
    pulled_h: Option<i64>,
}

const fn img(digest: &'static str, tags: &'static [&'static str], pushed_days: i64) -> Img {
    Img {
        digest,
        tags,
        pushed_h: pushed_days * 24,
        pulled_h: None,
    }
}

const fn pulled(digest: &'static str, tags: &'static [&'static str], pushed_days: i64, pulled_days: i64) -> Img {
    Img {
        digest,
        tags,
        pushed_h: pushed_days * 24,
        pulled_h: Some(pulled_days * 24),
    }
}

impl Img {
    fn image(&self) -> Image {
        Image {
            digest: self.digest.to_string(),
            tags: self.tags.iter().map(|t| t.to_string()).collect(),
            pushed_at_ms: NOW - self.pushed_h * HOUR_MS,
            last_pulled_at_ms: self.pulled_h.map(|h| NOW - h * HOUR_MS),
            storage_class: Some(StorageClass::Standard),
            transitioned_at_ms: None,
        }
    }
}

struct Case {
    name: &'static str,
    /// Rule selections and priorities; each becomes an `expire` rule.
    rules: &'static [(u32, &'static str)],
    images: &'static [Img],
    /// The digests that survive.
    survivors: &'static [&'static str],
    /// For each expired digest, the rule that expires it (checked when not empty).
    expired_by: &'static [(&'static str, u32)],
}

fn policy_text(rules: &[(u32, &str)]) -> String {
    let rules: Vec<String> = rules
        .iter()
        .map(|(p, sel)| format!(r#"{{"rulePriority":{p},"selection":{sel},"action":{{"type":"expire"}}}}"#))
        .collect();
    format!(r#"{{"rules":[{}]}}"#, rules.join(","))
}

const PROD_KEEP_1: &str =
    r#"{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"imageCountMoreThan","countNumber":1}"#;
const BETA_KEEP_1: &str =
    r#"{"tagStatus":"tagged","tagPatternList":["beta*"],"countType":"imageCountMoreThan","countNumber":1}"#;
const AWS_MULTI_RULE_REPO: &[Img] = &[
    img("A", &["beta-1", "prod-1"], 10),
    img("B", &["beta-2", "prod-2"], 9),
    img("C", &["beta-3"], 8),
];
const AWS_MULTI_TAG_REPO_A: &[Img] = &[
    img("A", &["alpha-1"], 12),
    img("B", &["beta-1"], 11),
    img("C", &["alpha-2", "beta-2"], 10),
    img("D", &["alpha-3"], 4),
    img("E", &["beta-3"], 3),
    img("F", &["alpha-4", "beta-4"], 2),
];
const AWS_MULTI_TAG_REPO_B: &[Img] = &[
    img("A", &["alpha-1", "beta-1", "gamma-1"], 10),
    img("B", &["alpha-2", "beta-2"], 9),
    img("C", &["alpha-3", "beta-3", "gamma-2"], 8),
];

const CASES: &[Case] = &[
    // ---- AWS's worked examples -------------------------------------------------------------
    Case {
        name: "AWS: filtering on image age (prod* older than 14 days)",
        rules: &[(
            1,
            r#"{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":14}"#,
        )],
        images: &[
            img("old-prod", &["prod"], 20),
            img("old-production", &["production-team1"], 15),
            img("new-prod", &["prod1"], 10),
            img("old-dev", &["dev-1"], 30),
            img("old-untagged", &[], 40),
        ],
        survivors: &["new-prod", "old-dev", "old-untagged"],
        expired_by: &[("old-prod", 1), ("old-production", 1)],
    },
    Case {
        name: "AWS: filtering on image count (keep one untagged image)",
        rules: &[(
            1,
            r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#,
        )],
        images: &[
            img("U1", &[], 3),
            img("U2", &[], 2),
            img("U3", &[], 1),
            img("T", &["v1"], 5),
        ],
        survivors: &["U3", "T"],
        expired_by: &[],
    },
    Case {
        name: "AWS: multiple rules, example A (prod* first, then beta*)",
        rules: &[(1, PROD_KEEP_1), (2, BETA_KEEP_1)],
        images: AWS_MULTI_RULE_REPO,
        // Rule 2 marks A and B, but both meet rule 1's tagging requirements.
        survivors: &["B", "C"],
        expired_by: &[("A", 1)],
    },
    Case {
        name: "AWS: multiple rules, example B (beta* first, then prod*)",
        rules: &[(1, BETA_KEEP_1), (2, PROD_KEEP_1)],
        images: AWS_MULTI_RULE_REPO,
        survivors: &["C"],
        expired_by: &[("A", 1), ("B", 1)],
    },
    Case {
        name: "AWS: multiple tag patterns in one rule, example A (sinceImagePushed)",
        rules: &[(
            1,
            r#"{"tagStatus":"tagged","tagPatternList":["alpha*","beta*"],"countType":"sinceImagePushed","countNumber":5,"countUnit":"days"}"#,
        )],
        images: AWS_MULTI_TAG_REPO_A,
        // Only C and F carry both; only C is older than five days.
        survivors: &["A", "B", "D", "E", "F"],
        expired_by: &[("C", 1)],
    },
    Case {
        name: "AWS: multiple tag prefixes in one rule (the guide's earlier tagPrefixList version)",
        rules: &[(
            1,
            r#"{"tagStatus":"tagged","tagPrefixList":["alpha","beta"],"countType":"sinceImagePushed","countNumber":5,"countUnit":"days"}"#,
        )],
        images: AWS_MULTI_TAG_REPO_A,
        survivors: &["A", "B", "D", "E", "F"],
        expired_by: &[("C", 1)],
    },
    Case {
        name: "AWS: multiple tag patterns in one rule, example B (tags are not exclusive)",
        rules: &[(
            1,
            r#"{"tagStatus":"tagged","tagPatternList":["alpha*","beta*"],"countType":"imageCountMoreThan","countNumber":1}"#,
        )],
        images: AWS_MULTI_TAG_REPO_B,
        survivors: &["C"],
        expired_by: &[("A", 1), ("B", 1)],
    },
    Case {
        name: "AWS: multiple tag prefixes in one rule, example B (tagPrefixList)",
        rules: &[(
            1,
            r#"{"tagStatus":"tagged","tagPrefixList":["alpha","beta"],"countType":"imageCountMoreThan","countNumber":1}"#,
        )],
        images: AWS_MULTI_TAG_REPO_B,
        survivors: &["C"],
        expired_by: &[],
    },
    Case {
        name: "AWS: all images, example A (any, keep one)",
        rules: &[(
            1,
            r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1}"#,
        )],
        images: &[
            img("A", &["alpha-1"], 4),
            img("B", &["beta-1"], 3),
            img("C", &[], 2),
            img("D", &["alpha-2"], 1),
        ],
        survivors: &["D"],
        expired_by: &[("A", 1), ("B", 1), ("C", 1)],
    },
    Case {
        name: "AWS: all images, example B (every rule type in one policy)",
        rules: &[
            (
                1,
                r#"{"tagStatus":"tagged","tagPatternList":["alpha*"],"countType":"imageCountMoreThan","countNumber":1}"#,
            ),
            (
                2,
                r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":1}"#,
            ),
            (
                3,
                r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1}"#,
            ),
        ],
        // D and E were pushed the same day; E, the greater digest, counts as
        // the newer, which is the outcome the guide describes.
        images: &[
            img("A", &["alpha-1", "beta-1"], 4),
            img("B", &[], 3),
            img("C", &["alpha-2"], 2),
            img("D", &["git-hash"], 1),
            img("E", &[], 1),
        ],
        survivors: &["C", "E"],
        expired_by: &[("A", 1), ("B", 2), ("D", 3)],
    },
    // ---- Tag matching --------------------------------------------------------------------
    Case {
        name: "multi-tag image: one tag per prefix is enough, prefixes anchor at the start",
        rules: &[(
            1,
            r#"{"tagStatus":"tagged","tagPrefixList":["release","v"],"countType":"sinceImagePushed","countUnit":"days","countNumber":1}"#,
        )],
        images: &[
            img("both-one-tag", &["release-v1"], 5), // "release-v1" has prefix release, not v
            img("both-two-tags", &["release-2", "v2.0"], 5),
            img("three-tags", &["latest", "v3", "release"], 5),
            img("only-v", &["v4"], 5),
            img("infix", &["my-release", "xv5"], 5),
            img("untagged", &[], 5),
        ],
        survivors: &["both-one-tag", "only-v", "infix", "untagged"],
        expired_by: &[("both-two-tags", 1), ("three-tags", 1)],
    },
    Case {
        name: "tagPatternList wildcards match whole tags",
        rules: &[(
            1,
            r#"{"tagStatus":"tagged","tagPatternList":["*-rc*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":1}"#,
        )],
        images: &[
            img("rc", &["1.0-rc1"], 5),
            img("rc-bare", &["2.0-rc"], 5),
            img("no-dash", &["3.0rc1"], 5),
            img("multi", &["latest", "4.0-rc2"], 5),
            img("plain", &["5.0"], 5),
        ],
        survivors: &["no-dash", "plain"],
        expired_by: &[],
    },
    Case {
        name: "a pattern without wildcards is an exact tag",
        rules: &[(
            1,
            r#"{"tagStatus":"tagged","tagPatternList":["latest"],"countType":"sinceImagePushed","countUnit":"days","countNumber":1}"#,
        )],
        images: &[
            img("exact", &["latest"], 5),
            img("longer", &["latest-1"], 5),
            img("case", &["Latest"], 5),
        ],
        survivors: &["longer", "case"],
        expired_by: &[],
    },
    Case {
        name: "several wildcards in one pattern, two patterns on one image",
        rules: &[(
            1,
            r#"{"tagStatus":"tagged","tagPatternList":["v*.*.*","*linux*amd64*"],"countType":"imageCountMoreThan","countNumber":1}"#,
        )],
        images: &[
            img("old", &["v1.2.3", "linux-amd64"], 9),
            img("mid", &["v1.2.4", "os-linux_amd64-slim"], 8),
            img("new", &["v1.3.0", "linux-amd64"], 7),
            img("arm", &["v1.2.5", "linux-arm64"], 6),
            img("short", &["v1.2", "linux-amd64"], 5),
        ],
        survivors: &["new", "arm", "short"],
        expired_by: &[("old", 1), ("mid", 1)],
    },
    Case {
        name: "untagged selects only images without tags",
        rules: &[(
            1,
            r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":2}"#,
        )],
        images: &[img("u-old", &[], 3), img("u-new", &[], 1), img("t-old", &["x"], 30)],
        survivors: &["u-new", "t-old"],
        expired_by: &[("u-old", 1)],
    },
    Case {
        name: "any selects tagged and untagged images alike",
        rules: &[(
            1,
            r#"{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":2}"#,
        )],
        images: &[
            img("u-old", &[], 3),
            img("u-new", &[], 1),
            img("t-old", &["x"], 30),
            img("t-new", &["y"], 0),
        ],
        survivors: &["u-new", "t-new"],
        expired_by: &[],
    },
    // ---- Counting ------------------------------------------------------------------------
    Case {
        name: "imageCountMoreThan keeps the N most recently pushed, whatever the input order",
        rules: &[(
            1,
            r#"{"tagStatus":"tagged","tagPrefixList":["build-"],"countType":"imageCountMoreThan","countNumber":2}"#,
        )],
        images: &[
            img("b3", &["build-3"], 3),
            img("b1", &["build-1"], 5),
            img("b5", &["build-5"], 1),
            img("b2", &["build-2"], 4),
            img("b4", &["build-4"], 2),
            img("other", &["main"], 9),
        ],
        survivors: &["b5", "b4", "other"],
        expired_by: &[("b1", 1), ("b2", 1), ("b3", 1)],
    },
    Case {
        name: "imageCountMoreThan with fewer images than N expires nothing",
        rules: &[(
            1,
            r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":5}"#,
        )],
        images: &[img("a", &[], 300), img("b", &["x"], 200)],
        survivors: &["a", "b"],
        expired_by: &[],
    },
    Case {
        name: "equal push times are ordered by digest (greater digest is newer)",
        rules: &[(
            1,
            r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1}"#,
        )],
        images: &[
            img("sha256:bb", &["b"], 2),
            img("sha256:cc", &["c"], 2),
            img("sha256:aa", &["a"], 2),
        ],
        survivors: &["sha256:cc"],
        expired_by: &[],
    },
    Case {
        name: "sinceImagePushed expires only images older than N whole days",
        rules: &[(
            1,
            r#"{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":7}"#,
        )],
        images: &[
            Img {
                digest: "exactly-7d",
                tags: &[],
                pushed_h: 7 * 24,
                pulled_h: None,
            },
            Img {
                digest: "7d-1h",
                tags: &[],
                pushed_h: 7 * 24 - 1,
                pulled_h: None,
            },
            Img {
                digest: "7d+1h",
                tags: &[],
                pushed_h: 7 * 24 + 1,
                pulled_h: Some(0),
            },
            Img {
                digest: "future",
                tags: &[],
                pushed_h: -5,
                pulled_h: None,
            },
        ],
        // A recent pull does not matter to sinceImagePushed.
        survivors: &["exactly-7d", "7d-1h", "future"],
        expired_by: &[("7d+1h", 1)],
    },
    Case {
        name: "sinceImagePulled uses the last pull, or the push when never pulled",
        rules: &[(
            1,
            r#"{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":30}"#,
        )],
        images: &[
            pulled("old-push-recent-pull", &["a"], 100, 2),
            pulled("old-push-old-pull", &["b"], 100, 45),
            img("never-pulled-old", &["c"], 31),
            img("never-pulled-new", &[], 29),
            pulled("pulled-exactly-30d", &[], 90, 30),
        ],
        survivors: &["old-push-recent-pull", "never-pulled-new", "pulled-exactly-30d"],
        expired_by: &[("old-push-old-pull", 1), ("never-pulled-old", 1)],
    },
    // ---- Priority and claiming -----------------------------------------------------------
    Case {
        name: "a higher rule that expires nothing still protects what it selects",
        rules: &[
            (
                1,
                r#"{"tagStatus":"tagged","tagPatternList":["prod-*"],"countType":"imageCountMoreThan","countNumber":9999}"#,
            ),
            (
                2,
                r#"{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":7}"#,
            ),
        ],
        images: &[
            img("prod-old", &["prod-1"], 400),
            img("prod-multi", &["sha-abc", "prod-2"], 300),
            img("dev-old", &["dev-1"], 30),
            img("untagged-old", &[], 30),
            img("dev-new", &["dev-2"], 1),
        ],
        survivors: &["prod-old", "prod-multi", "dev-new"],
        expired_by: &[("dev-old", 2), ("untagged-old", 2)],
    },
    Case {
        name: "lower rules count images claimed by higher rules",
        rules: &[
            (
                1,
                r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#,
            ),
            (
                2,
                r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":2}"#,
            ),
        ],
        // Rule 2 keeps the two newest of all four (U1, T1), so T2 goes even
        // though only one tagged image remains; U2 goes by rule 1.
        images: &[
            img("U1", &[], 1),
            img("T1", &["t1"], 2),
            img("U2", &[], 3),
            img("T2", &["t2"], 4),
        ],
        survivors: &["U1", "T1"],
        expired_by: &[("U2", 1), ("T2", 2)],
    },
    Case {
        name: "a lower rule's count can be used up by claimed images",
        rules: &[
            (
                1,
                r#"{"tagStatus":"tagged","tagPrefixList":["keep"],"countType":"imageCountMoreThan","countNumber":100}"#,
            ),
            (
                2,
                r#"{"tagStatus":"tagged","tagPrefixList":["app"],"countType":"imageCountMoreThan","countNumber":2}"#,
            ),
        ],
        // Rule 2 sees app-1..app-4 and keeps the newest two (both also tagged
        // keep-*); it marks app-1 and app-2, which it may expire.
        images: &[
            img("app-1", &["app-1"], 4),
            img("app-2", &["app-2"], 3),
            img("app-3", &["app-3", "keep-3"], 2),
            img("app-4", &["app-4", "keep-4"], 1),
        ],
        survivors: &["app-3", "app-4"],
        expired_by: &[("app-1", 2), ("app-2", 2)],
    },
    Case {
        name: "an image expired by a higher rule is expired once, by that rule",
        rules: &[
            (
                5,
                r#"{"tagStatus":"tagged","tagPatternList":["*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":10}"#,
            ),
            (
                9,
                r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1}"#,
            ),
        ],
        images: &[img("t-old", &["a"], 20), img("t-new", &["b"], 2), img("u", &[], 1)],
        // Rule 9 keeps u and marks both tagged images, which rule 5 selected.
        survivors: &["t-new", "u"],
        expired_by: &[("t-old", 5)],
    },
    Case {
        name: "rules apply by priority, not by their order in the text",
        rules: &[
            (
                20,
                r#"{"tagStatus":"tagged","tagPatternList":["beta*"],"countType":"imageCountMoreThan","countNumber":1}"#,
            ),
            (
                10,
                r#"{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"imageCountMoreThan","countNumber":1}"#,
            ),
        ],
        images: AWS_MULTI_RULE_REPO,
        survivors: &["B", "C"],
        expired_by: &[("A", 10)],
    },
    Case {
        name: "an empty repository",
        rules: &[(
            1,
            r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1}"#,
        )],
        images: &[],
        survivors: &[],
        expired_by: &[],
    },
];

#[test]
fn evaluation_table() {
    let mut failures = Vec::new();
    for case in CASES {
        let text = policy_text(case.rules);
        let policy = parse(&text).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let images: Vec<Image> = case.images.iter().map(Img::image).collect();
        let decisions = evaluate(&policy, &images, NOW);

        let expired: BTreeSet<&str> = decisions.iter().map(|d| d.digest.as_str()).collect();
        let survivors: BTreeSet<&str> = case
            .images
            .iter()
            .map(|i| i.digest)
            .filter(|d| !expired.contains(d))
            .collect();
        let want: BTreeSet<&str> = case.survivors.iter().copied().collect();
        if survivors != want {
            failures.push(format!("{}: survivors {survivors:?}, want {want:?}", case.name));
        }
        if expired.len() != decisions.len() {
            failures.push(format!("{}: an image was expired twice: {decisions:?}", case.name));
        }
        for (digest, priority) in case.expired_by {
            match decisions.iter().find(|d| d.digest == *digest) {
                Some(d) if d.applied_rule_priority == *priority => {}
                other => failures.push(format!(
                    "{}: {digest} expired by {other:?}, want rule {priority}",
                    case.name
                )),
            }
        }
        // The same answer whatever the order of the images.
        let mut reversed = images.clone();
        reversed.reverse();
        if evaluate(&policy, &reversed, NOW) != decisions {
            failures.push(format!("{}: the result depends on the order of the images", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn decisions_are_oldest_first_and_complete() {
    let policy = parse(&policy_text(&[(
        3,
        r#"{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":1}"#,
    )]))
    .unwrap();
    let images = [
        img("b", &["x", "y"], 5).image(),
        img("c", &[], 9).image(),
        img("a", &[], 5).image(),
        img("new", &[], 0).image(),
    ];
    let decisions = evaluate(&policy, &images, NOW);
    assert_eq!(
        decisions,
        [
            Decision {
                digest: "c".into(),
                tags: vec![],
                pushed_at_ms: NOW - 9 * DAY_MS,
                applied_rule_priority: 3,
                action: Action::Expire,
                storage_class: StorageClass::Standard,
            },
            Decision {
                digest: "a".into(),
                tags: vec![],
                pushed_at_ms: NOW - 5 * DAY_MS,
                applied_rule_priority: 3,
                action: Action::Expire,
                storage_class: StorageClass::Standard,
            },
            Decision {
                digest: "b".into(),
                tags: vec!["x".into(), "y".into()],
                pushed_at_ms: NOW - 5 * DAY_MS,
                applied_rule_priority: 3,
                action: Action::Expire,
                storage_class: StorageClass::Standard,
            },
        ]
    );
}

#[test]
fn hand_built_policies_are_applied_in_priority_order() {
    // A Policy built in code, rules stored highest priority number first.
    let sel = |tag_status, pattern: &str, count_type, count_unit: Option<&str>, count_number| Selection {
        tag_status,
        tag_prefix_list: vec![],
        tag_pattern_list: if pattern.is_empty() {
            vec![]
        } else {
            vec![pattern.to_string()]
        },
        count_type,
        count_unit: count_unit.map(String::from),
        count_number,
        storage_class: StorageClass::Standard,
    };
    let policy = Policy {
        rules: vec![
            Rule {
                rule_priority: 2,
                description: None,
                selection: sel(TagStatus::Any, "", CountType::ImageCountMoreThan, None, 1),
                action: Action::Expire,
            },
            Rule {
                rule_priority: 1,
                description: Some("protect releases".into()),
                selection: sel(
                    TagStatus::Tagged,
                    "v*",
                    CountType::SinceImagePushed,
                    Some("days"),
                    u64::MAX,
                ),
                action: Action::Expire,
            },
        ],
    };
    let images = [
        img("rel", &["v1"], 50).image(),
        img("dev", &["dev"], 40).image(),
        img("head", &[], 1).image(),
    ];
    let expired: Vec<String> = evaluate(&policy, &images, NOW).into_iter().map(|d| d.digest).collect();
    assert_eq!(expired, ["dev"]);
}
