//! The archive storage class in lifecycle policies: `transition` actions,
//! `storageClass: "archive"` rules and `sinceImageTransitioned`, parsed and
//! evaluated per storage class.

use kura_lifecycle::{evaluate, parse, Action, CountType, Image, StorageClass, DAY_MS};

const NOW: i64 = 1_800_000_000_000;

fn image(
    digest: &str,
    tags: &[&str],
    pushed_days: i64,
    class: Option<StorageClass>,
    archived_days: Option<i64>,
) -> Image {
    Image {
        digest: digest.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        pushed_at_ms: NOW - pushed_days * DAY_MS,
        last_pulled_at_ms: None,
        storage_class: class,
        transitioned_at_ms: archived_days.map(|d| NOW - d * DAY_MS),
    }
}

const STD: Option<StorageClass> = Some(StorageClass::Standard);
const ARC: Option<StorageClass> = Some(StorageClass::Archive);

/// AWS's typical archive policy: archive images not pulled for 30 days,
/// delete archived images after a year in the archive.
const TIERED: &str = r#"{"rules":[
  {"rulePriority":1,"description":"archive cold images","selection":{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":30},"action":{"type":"transition","targetStorageClass":"archive"}},
  {"rulePriority":2,"description":"drop old archives","selection":{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":365},"action":{"type":"expire"}}
]}"#;

#[test]
fn a_tiered_policy_parses_with_its_classes_and_actions() {
    let p = parse(TIERED).unwrap();
    assert_eq!(p.rules[0].action, Action::Transition);
    assert_eq!(p.rules[0].selection.storage_class, StorageClass::Standard);
    assert_eq!(p.rules[0].selection.count_type, CountType::SinceImagePulled);
    assert_eq!(p.rules[1].action, Action::Expire);
    assert_eq!(p.rules[1].selection.storage_class, StorageClass::Archive);
    assert_eq!(p.rules[1].selection.count_type, CountType::SinceImageTransitioned);
    assert_eq!(p.rules[1].selection.count_unit.as_deref(), Some("days"));
}

#[test]
fn cross_rule_checks_hold_per_storage_class() {
    // The same prefix set, and an `any` rule in each class (each the last
    // of its class, though not of the policy), are fine across classes.
    let text = r#"{"rules":[
      {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["prod"],"countType":"sinceImagePushed","countUnit":"days","countNumber":90},"action":{"type":"transition","targetStorageClass":"archive"}},
      {"rulePriority":2,"selection":{"tagStatus":"any","storageClass":"archive","countType":"imageCountMoreThan","countNumber":50},"action":{"type":"expire"}},
      {"rulePriority":3,"selection":{"tagStatus":"tagged","tagPrefixList":["prod"],"storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":400},"action":{"type":"expire"}},
      {"rulePriority":4,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":100},"action":{"type":"expire"}}
    ]}"#;
    // Rule 2 (`any`, archive) is not the last archive rule (3 is): refused.
    let e = parse(text).unwrap_err();
    assert!(
        e.reason()
            .contains("tagStatus \"any\" must have the highest rulePriority"),
        "{e}"
    );
    let fixed = text.replace("\"rulePriority\":2,", "\"rulePriority\":5,");
    let p = parse(&fixed).unwrap();
    assert_eq!(p.rules.len(), 4);
    // Two tagged rules with the same prefixes in one class are still refused.
    let dup = fixed.replace(
        r#""tagPrefixList":["prod"],"storageClass":"archive""#,
        r#""tagPrefixList":["prod"]"#,
    );
    let dup = dup.replace(
        r#""countType":"sinceImageTransitioned""#,
        r#""countType":"sinceImagePushed""#,
    );
    let e = parse(&dup).unwrap_err();
    assert!(e.reason().contains("same tagPrefixList"), "{e}");
}

#[test]
fn transition_rules_move_standard_images_only() {
    let p = parse(TIERED).unwrap();
    let images = [
        image("cold", &["a"], 40, STD, None),
        image("warm", &["b"], 10, STD, None),
        // Archived 40 days ago: already in the archive, not "transitioned" again,
        // and not old enough in the archive to expire.
        image("arch", &["c"], 400, ARC, Some(40)),
        // Archived 400 days ago: expired by the archive rule.
        image("ancient", &[], 800, ARC, Some(400)),
        // Being restored: no rule touches it.
        image("restoring", &[], 900, None, Some(500)),
    ];
    let d = evaluate(&p, &images, NOW);
    let got: Vec<(&str, Action, StorageClass, u32)> = d
        .iter()
        .map(|d| (d.digest.as_str(), d.action, d.storage_class, d.applied_rule_priority))
        .collect();
    assert_eq!(
        got,
        [
            ("ancient", Action::Expire, StorageClass::Archive, 2),
            ("cold", Action::Transition, StorageClass::Standard, 1),
        ]
    );
}

#[test]
fn counts_are_per_storage_class() {
    // Keep the newest 1 standard image; archive the rest. Archived images do
    // not count toward the standard class's "keep 1".
    let text = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"transition","targetStorageClass":"archive"}}]}"#;
    let p = parse(text).unwrap();
    let images = [
        image("newest-archived", &[], 0, ARC, Some(0)),
        image("new", &[], 1, STD, None),
        image("old", &[], 2, STD, None),
    ];
    let d: Vec<String> = evaluate(&p, &images, NOW).into_iter().map(|d| d.digest).collect();
    assert_eq!(d, ["old"]);
}

#[test]
fn since_image_transitioned_is_strictly_more_than_n_days() {
    let text = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":7},"action":{"type":"expire"}}]}"#;
    let p = parse(text).unwrap();
    let mut exactly = image("exactly", &[], 100, ARC, Some(7));
    exactly.transitioned_at_ms = Some(NOW - 7 * DAY_MS);
    let mut over = image("over", &[], 100, ARC, None);
    over.transitioned_at_ms = Some(NOW - 7 * DAY_MS - 1);
    // An archived image without an archive time is never old enough.
    let unknown = image("unknown", &[], 100, ARC, None);
    let d: Vec<String> = evaluate(&p, &[exactly, over, unknown], NOW)
        .into_iter()
        .map(|d| d.digest)
        .collect();
    assert_eq!(d, ["over"]);
}
