//! Parsing and validating policy text, as `PutLifecyclePolicy` does.

use std::collections::{BTreeSet, HashSet};

use serde_json::{Map, Value};

use crate::{Action, CountType, Policy, PolicyError, Rule, Selection, StorageClass, TagStatus};

/// The longest policy text ECR stores (`LifecyclePolicyText`, 30,720 characters).
pub const MAX_POLICY_CHARS: usize = 30_720;
/// At most this many rules in one policy (ECR's quota of rules per policy).
pub const MAX_RULES: usize = 50;
/// The largest `rulePriority` (ECR's integers are 32-bit signed).
pub const MAX_RULE_PRIORITY: u32 = i32::MAX as u32;
/// The largest `countNumber` (ECR's integers are 32-bit signed).
pub const MAX_COUNT_NUMBER: u64 = i32::MAX as u64;
/// At most four `*` wildcards in each `tagPatternList` entry.
pub const MAX_WILDCARDS: usize = 4;
/// The longest `tagPrefixList` or `tagPatternList` entry: an image tag has at
/// most 128 characters, and so do ECR's wildcard tag filters.
pub const MAX_TAG_FILTER_LEN: usize = 128;

const POLICY_FIELDS: &[&str] = &["rules"];
const RULE_FIELDS: &[&str] = &["rulePriority", "description", "selection", "action"];
const SELECTION_FIELDS: &[&str] = &[
    "tagStatus",
    "tagPrefixList",
    "tagPatternList",
    "storageClass",
    "countType",
    "countUnit",
    "countNumber",
];
const ACTION_FIELDS: &[&str] = &["type", "targetStorageClass"];

/// Parse and validate lifecycle policy text the way ECR's `PutLifecyclePolicy`
/// does, returning the rules in `rulePriority` order.
///
/// What is checked, after AWS's "Lifecycle policy properties" and
/// "Lifecycle policy evaluation rules" pages:
///
/// - The text has at most [`MAX_POLICY_CHARS`] characters and is a JSON object
///   whose only field is `rules`, a list of 1 to [`MAX_RULES`] rules.
/// - No object has a field the policy grammar does not define.
/// - `rulePriority` is required, a positive integer, and unique in the policy
///   (the values need not be consecutive).
/// - `description` is optional and a string.
/// - `selection.tagStatus` is required: `tagged`, `untagged` or `any`.
/// - `tagged` needs exactly one of `tagPrefixList` and `tagPatternList`, not
///   empty; `untagged` and `any` take neither (AWS: the lists may only be used
///   with `tagged`, and a rule may use one list or the other, never both).
/// - Each `tagPrefixList` entry uses only the characters of an image tag
///   (letters, digits, `_`, `.`, `-`; AWS: prefixes accept what Docker tags
///   accept, no expressions), each `tagPatternList` entry those plus `*`, at
///   most [`MAX_WILDCARDS`] of them; entries are 1 to [`MAX_TAG_FILTER_LEN`]
///   characters.
/// - Among the rules of one storage class: at most one has tagStatus `any`,
///   and it has the highest `rulePriority` of them (AWS: it must be evaluated
///   last); at most one has tagStatus `untagged` (AWS: only one rule may
///   select untagged images); no two select the same set of tag prefixes,
///   nor the same set of tag patterns (AWS: the rules must contain a unique
///   set of prefixes).
/// - `countType` is required: `imageCountMoreThan`, `sinceImagePushed`,
///   `sinceImagePulled` or `sinceImageTransitioned` (the last only with
///   `storageClass: "archive"`). `countUnit` is required and must be `days`
///   with the `since*` types, and is refused with `imageCountMoreThan`.
/// - `countNumber` is required, a positive integer (0 is refused).
/// - `selection.storageClass`, if present, is `standard` (the default) or
///   `archive`.
/// - `action.type` is required: `expire`, or `transition`, which needs
///   `targetStorageClass: "archive"` and a `standard` selection (only
///   standard images move to the archive); `expire` takes no
///   `targetStorageClass`.
pub fn parse(text: &str) -> Result<Policy, PolicyError> {
    let chars = text.chars().count();
    if chars > MAX_POLICY_CHARS {
        return Err(PolicyError::new(format!(
            "the policy text has {chars} characters; at most {MAX_POLICY_CHARS} are allowed"
        )));
    }
    let doc: Value =
        serde_json::from_str(text).map_err(|e| PolicyError::new(format!("the policy text is not valid JSON: {e}")))?;
    let top = object(&doc, "the policy")?;
    check_fields(top, POLICY_FIELDS, "the policy")?;
    let rules = match top.get("rules") {
        None => {
            return Err(PolicyError::new(
                "the policy has no \"rules\"; a policy needs at least one rule",
            ))
        }
        Some(Value::Array(rules)) => rules,
        Some(_) => return Err(PolicyError::new("\"rules\" must be a list of rules")),
    };
    if rules.is_empty() {
        return Err(PolicyError::new("\"rules\" is empty; a policy needs at least one rule"));
    }
    if rules.len() > MAX_RULES {
        return Err(PolicyError::new(format!(
            "the policy has {} rules; at most {MAX_RULES} are allowed",
            rules.len()
        )));
    }
    let mut parsed = rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule(r, &format!("rules[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    check_across_rules(&parsed)?;
    parsed.sort_by_key(|r| r.rule_priority);
    Ok(Policy { rules: parsed })
}

fn rule(v: &Value, path: &str) -> Result<Rule, PolicyError> {
    let obj = object(v, path)?;
    check_fields(obj, RULE_FIELDS, path)?;
    let rule_priority = match obj.get("rulePriority") {
        None => return Err(PolicyError::new(format!("{path}.rulePriority is required"))),
        Some(v) => positive_integer(v, &format!("{path}.rulePriority"), u64::from(MAX_RULE_PRIORITY))? as u32,
    };
    let description = match obj.get("description") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(PolicyError::new(format!("{path}.description must be a string"))),
    };
    let selection = match obj.get("selection") {
        None => return Err(PolicyError::new(format!("{path}.selection is required"))),
        Some(v) => selection(v, &format!("{path}.selection"))?,
    };
    let action = match obj.get("action") {
        None => return Err(PolicyError::new(format!("{path}.action is required"))),
        Some(v) => action(v, &format!("{path}.action"))?,
    };
    if action == Action::Transition && selection.storage_class != StorageClass::Standard {
        return Err(PolicyError::new(format!(
            "{path}.action \"transition\" moves standard images to the archive; its selection.storageClass must be \"standard\" (got \"{}\")",
            selection.storage_class.as_str()
        )));
    }
    Ok(Rule {
        rule_priority,
        description,
        selection,
        action,
    })
}

fn selection(v: &Value, path: &str) -> Result<Selection, PolicyError> {
    let obj = object(v, path)?;
    check_fields(obj, SELECTION_FIELDS, path)?;

    let tag_status = match obj.get("tagStatus") {
        None => return Err(PolicyError::new(format!("{path}.tagStatus is required"))),
        Some(Value::String(s)) if s == "tagged" => TagStatus::Tagged,
        Some(Value::String(s)) if s == "untagged" => TagStatus::Untagged,
        Some(Value::String(s)) if s == "any" => TagStatus::Any,
        Some(other) => {
            return Err(PolicyError::new(format!(
                "{path}.tagStatus must be one of \"tagged\", \"untagged\", \"any\" (got {other})"
            )))
        }
    };

    let prefixes = obj.get("tagPrefixList");
    let patterns = obj.get("tagPatternList");
    let (mut tag_prefix_list, mut tag_pattern_list) = (Vec::new(), Vec::new());
    match tag_status {
        TagStatus::Tagged => match (prefixes, patterns) {
            (Some(_), Some(_)) => {
                return Err(PolicyError::new(format!(
                    "{path} has both tagPrefixList and tagPatternList; a rule may use only one of them"
                )))
            }
            (None, None) => {
                return Err(PolicyError::new(format!(
                    "{path}.tagStatus \"tagged\" requires a tagPrefixList or a tagPatternList"
                )))
            }
            (Some(list), None) => tag_prefix_list = tag_filters(list, &format!("{path}.tagPrefixList"), false)?,
            (None, Some(list)) => tag_pattern_list = tag_filters(list, &format!("{path}.tagPatternList"), true)?,
        },
        TagStatus::Untagged | TagStatus::Any => {
            for (name, present) in [
                ("tagPrefixList", prefixes.is_some()),
                ("tagPatternList", patterns.is_some()),
            ] {
                if present {
                    return Err(PolicyError::new(format!(
                        "{path}.{name} is only allowed with tagStatus \"tagged\" (this rule has \"{}\")",
                        tag_status.as_str()
                    )));
                }
            }
        }
    }

    let storage_class = match obj.get("storageClass") {
        None => StorageClass::Standard,
        Some(Value::String(s)) if s == "standard" => StorageClass::Standard,
        Some(Value::String(s)) if s == "archive" => StorageClass::Archive,
        Some(other) => {
            return Err(PolicyError::new(format!(
                "{path}.storageClass must be \"standard\" or \"archive\" (got {other})"
            )))
        }
    };

    let count_type = match obj.get("countType") {
        None => return Err(PolicyError::new(format!("{path}.countType is required"))),
        Some(Value::String(s)) if s == "imageCountMoreThan" => CountType::ImageCountMoreThan,
        Some(Value::String(s)) if s == "sinceImagePushed" => CountType::SinceImagePushed,
        Some(Value::String(s)) if s == "sinceImagePulled" => CountType::SinceImagePulled,
        Some(Value::String(s)) if s == "sinceImageTransitioned" => CountType::SinceImageTransitioned,
        Some(other) => {
            return Err(PolicyError::new(format!(
                "{path}.countType must be one of \"imageCountMoreThan\", \"sinceImagePushed\", \"sinceImagePulled\", \"sinceImageTransitioned\" (got {other})"
            )))
        }
    };
    if count_type == CountType::SinceImageTransitioned && storage_class != StorageClass::Archive {
        return Err(PolicyError::new(format!(
            "{path}.countType \"sinceImageTransitioned\" counts days in the archive; it needs storageClass \"archive\""
        )));
    }

    let count_unit = match (count_type, obj.get("countUnit")) {
        (CountType::ImageCountMoreThan, None) => None,
        (CountType::ImageCountMoreThan, Some(_)) => {
            return Err(PolicyError::new(format!(
                "{path}.countUnit is not allowed with countType \"imageCountMoreThan\""
            )))
        }
        (_, None) => {
            return Err(PolicyError::new(format!(
                "{path}.countUnit is required with countType \"{}\"; it must be \"days\"",
                count_type.as_str()
            )))
        }
        (_, Some(Value::String(s))) if s == "days" => Some(s.clone()),
        (_, Some(other)) => {
            return Err(PolicyError::new(format!(
                "{path}.countUnit must be \"days\" (got {other})"
            )))
        }
    };

    let count_number = match obj.get("countNumber") {
        None => return Err(PolicyError::new(format!("{path}.countNumber is required"))),
        Some(v) => positive_integer(v, &format!("{path}.countNumber"), MAX_COUNT_NUMBER)?,
    };

    Ok(Selection {
        tag_status,
        tag_prefix_list,
        tag_pattern_list,
        count_type,
        count_unit,
        count_number,
        storage_class,
    })
}

fn action(v: &Value, path: &str) -> Result<Action, PolicyError> {
    let obj = object(v, path)?;
    check_fields(obj, ACTION_FIELDS, path)?;
    let action = match obj.get("type") {
        None => return Err(PolicyError::new(format!("{path}.type is required"))),
        Some(Value::String(s)) if s == "expire" => Action::Expire,
        Some(Value::String(s)) if s == "transition" => Action::Transition,
        Some(other) => {
            return Err(PolicyError::new(format!(
                "{path}.type must be \"expire\" or \"transition\" (got {other})"
            )))
        }
    };
    match (action, obj.get("targetStorageClass")) {
        (Action::Expire, None) => Ok(action),
        (Action::Expire, Some(_)) => Err(PolicyError::new(format!(
            "{path}.targetStorageClass is only allowed with type \"transition\""
        ))),
        (Action::Transition, Some(Value::String(s))) if s == "archive" => Ok(action),
        (Action::Transition, None) => Err(PolicyError::new(format!(
            "{path}.targetStorageClass is required with type \"transition\"; it must be \"archive\""
        ))),
        (Action::Transition, Some(other)) => Err(PolicyError::new(format!(
            "{path}.targetStorageClass must be \"archive\" (got {other})"
        ))),
    }
}

/// A `tagPrefixList` (`wildcards == false`) or `tagPatternList`.
fn tag_filters(v: &Value, path: &str, wildcards: bool) -> Result<Vec<String>, PolicyError> {
    let Value::Array(items) = v else {
        return Err(PolicyError::new(format!("{path} must be a list of strings")));
    };
    if items.is_empty() {
        return Err(PolicyError::new(format!("{path} must not be empty")));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::String(s) = item else {
            return Err(PolicyError::new(format!("{path}[{i}] must be a string (got {item})")));
        };
        if s.is_empty() {
            return Err(PolicyError::new(format!("{path}[{i}] must not be empty")));
        }
        let len = s.chars().count();
        if len > MAX_TAG_FILTER_LEN {
            return Err(PolicyError::new(format!(
                "{path}[{i}] has {len} characters; at most {MAX_TAG_FILTER_LEN} are allowed"
            )));
        }
        if let Some(bad) = s
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') || (wildcards && c == '*')))
        {
            let allowed = if wildcards {
                "letters, digits, '_', '.', '-' and the wildcard '*'"
            } else {
                "letters, digits, '_', '.' and '-' (prefixes take no wildcards)"
            };
            return Err(PolicyError::new(format!(
                "{path}[{i}] {s:?} contains {bad:?}; only {allowed} are allowed"
            )));
        }
        let stars = s.matches('*').count();
        if stars > MAX_WILDCARDS {
            return Err(PolicyError::new(format!(
                "{path}[{i}] {s:?} has {stars} wildcards; at most {MAX_WILDCARDS} '*' are allowed in each pattern"
            )));
        }
        out.push(s.clone());
    }
    Ok(out)
}

fn check_across_rules(rules: &[Rule]) -> Result<(), PolicyError> {
    let mut seen = HashSet::new();
    for r in rules {
        if !seen.insert(r.rule_priority) {
            return Err(PolicyError::new(format!(
                "rulePriority {} is used by more than one rule; each rule needs a unique rulePriority",
                r.rule_priority
            )));
        }
    }
    // The rules of each storage class see only that class's images.
    for class in [StorageClass::Standard, StorageClass::Archive] {
        let of_class: Vec<Rule> = rules
            .iter()
            .filter(|r| r.selection.storage_class == class)
            .cloned()
            .collect();
        check_class_rules(&of_class)?;
    }
    Ok(())
}

fn check_class_rules(rules: &[Rule]) -> Result<(), PolicyError> {
    let mut any = rules
        .iter()
        .filter(|r| r.selection.tag_status == TagStatus::Any)
        .map(|r| r.rule_priority);
    if let Some(first) = any.next() {
        if let Some(second) = any.next() {
            return Err(PolicyError::new(format!(
                "only one rule may have tagStatus \"any\" (rulePriority {first} and {second} both do)"
            )));
        }
        if let Some(max) = rules.iter().map(|r| r.rule_priority).max().filter(|&m| m > first) {
            return Err(PolicyError::new(format!(
                "the rule with tagStatus \"any\" must have the highest rulePriority so that it is applied last \
                 (it has {first}, another rule has {max})"
            )));
        }
    }

    let mut untagged = rules
        .iter()
        .filter(|r| r.selection.tag_status == TagStatus::Untagged)
        .map(|r| r.rule_priority);
    if let (Some(first), Some(second)) = (untagged.next(), untagged.next()) {
        return Err(PolicyError::new(format!(
            "only one rule may select untagged images (rulePriority {first} and {second} both have tagStatus \"untagged\")"
        )));
    }

    unique_tag_sets(rules, "tagPrefixList", |s| &s.tag_prefix_list)?;
    unique_tag_sets(rules, "tagPatternList", |s| &s.tag_pattern_list)?;
    Ok(())
}

/// No two rules may use the same set of prefixes (or of patterns).
fn unique_tag_sets(rules: &[Rule], name: &str, list: fn(&Selection) -> &Vec<String>) -> Result<(), PolicyError> {
    let mut sets: Vec<(BTreeSet<&str>, u32)> = Vec::new();
    for r in rules {
        let l = list(&r.selection);
        if l.is_empty() {
            continue;
        }
        let set: BTreeSet<&str> = l.iter().map(String::as_str).collect();
        if let Some((_, other)) = sets.iter().find(|(s, _)| *s == set) {
            return Err(PolicyError::new(format!(
                "the rules with rulePriority {other} and {} have the same {name}; \
                 each rule must select a unique set of tags",
                r.rule_priority
            )));
        }
        sets.push((set, r.rule_priority));
    }
    Ok(())
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, PolicyError> {
    v.as_object()
        .ok_or_else(|| PolicyError::new(format!("{what} must be a JSON object")))
}

fn check_fields(obj: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), PolicyError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(PolicyError::new(format!(
            "unknown field {k:?} in {path}; the allowed fields are {}",
            allowed.join(", ")
        ))),
    }
}

fn positive_integer(v: &Value, path: &str, max: u64) -> Result<u64, PolicyError> {
    match v.as_u64() {
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) if n > max => Err(PolicyError::new(format!("{path} must be at most {max} (got {n})"))),
        _ => Err(PolicyError::new(format!("{path} must be a positive integer (got {v})"))),
    }
}
