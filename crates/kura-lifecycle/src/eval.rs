//! Evaluating a policy against a repository's images.

use std::cmp::Ordering;

use crate::{Action, CountType, Policy, Rule, StorageClass};

/// One day in milliseconds: the unit of `countUnit: "days"`.
pub const DAY_MS: i64 = 86_400_000;

/// An image of the repository, as the evaluator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The manifest digest; identifies the image (expected unique).
    pub digest: String,
    /// Its tags; empty for an untagged image.
    pub tags: Vec<String>,
    /// When it was pushed (ms since the epoch): AWS's `pushed_at_time`.
    pub pushed_at_ms: i64,
    /// When it was last pulled (ms since the epoch), if ever: AWS's
    /// `last_recorded_pulltime`.
    pub last_pulled_at_ms: Option<i64>,
    /// Its storage class; `None` while it is being restored from the archive
    /// (no rule touches it then).
    pub storage_class: Option<StorageClass>,
    /// When it was last archived (ms), for `sinceImageTransitioned`.
    pub transitioned_at_ms: Option<i64>,
}

/// An image the policy expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The image's digest.
    pub digest: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// When it was pushed (ms).
    pub pushed_at_ms: i64,
    /// The `rulePriority` of the one rule that acts on it.
    pub applied_rule_priority: u32,
    /// What that rule does to it.
    pub action: Action,
    /// The storage class it is in now.
    pub storage_class: StorageClass,
}

/// Which images `policy` expires or transitions at `now_ms`, oldest first.
///
/// The procedure is AWS's "Lifecycle policy evaluation rules":
///
/// 1. Every rule is evaluated on its own against the repository's images of
///    its storage class, as if no other rule existed. It *selects* the images
///    that meet its tagging requirements ([`crate::Selection::selects`]) and
///    *marks* some of them:
///    - `imageCountMoreThan` N: the selection is ordered from newest to oldest
///      push, the first N are kept and every image past them is marked;
///    - `sinceImagePushed` N: images pushed more than N days before `now_ms`;
///    - `sinceImagePulled` N: images whose last pull was more than N days
///      before `now_ms`, the push time standing in for the last pull of an
///      image that was never pulled;
///    - `sinceImageTransitioned` N: archived images archived more than N days
///      before `now_ms`.
/// 2. The rules are then applied in `rulePriority` order, lowest first. A rule
///    expires the images it marked except those that a rule of higher priority
///    (lower number) *selected*, whether that rule marked them or not: an
///    image that meets a rule's tagging requirements cannot be expired by a
///    rule of lower priority. Those images still count in step 1, so a lower
///    rule can spend its "keep N" on them and expire fewer images.
/// 3. Hence every image is acted on by one rule or by none.
///
/// Time is in milliseconds; "more than N days" is strictly more than
/// `N * DAY_MS`. Images with the same push time are ordered by digest (the
/// greater digest counts as the newer), so the result never depends on the
/// order of `images`. Decisions come out oldest first (by push time, then
/// digest), the order in which AWS says expiration happens.
///
/// The policy need not come from [`crate::parse`]: its rules are applied in
/// `rulePriority` order whatever order they are stored in.
pub fn evaluate(policy: &Policy, images: &[Image], now_ms: i64) -> Vec<Decision> {
    let mut rules: Vec<&Rule> = policy.rules.iter().collect();
    rules.sort_by_key(|r| r.rule_priority);

    // Oldest first; ties by digest.
    let mut order: Vec<&Image> = images.iter().collect();
    order.sort_by(|a, b| oldest_first(a, b));

    // claimed[i]: a rule applied earlier selected image i.
    let mut claimed = vec![false; order.len()];
    let mut expired_by: Vec<Option<(u32, Action)>> = vec![None; order.len()];
    for rule in rules {
        let class = rule.selection.storage_class;
        let selected: Vec<usize> = (0..order.len())
            .filter(|&i| order[i].storage_class == Some(class) && rule.selection.selects(&order[i].tags))
            .collect();
        for i in marked(rule, &selected, &order, now_ms) {
            if !claimed[i] {
                expired_by[i] = Some((rule.rule_priority, rule.action));
            }
        }
        for i in selected {
            claimed[i] = true;
        }
    }

    order
        .iter()
        .zip(expired_by)
        .filter_map(|(image, by)| {
            by.map(|(applied_rule_priority, action)| Decision {
                digest: image.digest.clone(),
                tags: image.tags.clone(),
                pushed_at_ms: image.pushed_at_ms,
                applied_rule_priority,
                action,
                storage_class: image.storage_class.unwrap_or_default(),
            })
        })
        .collect()
}

fn oldest_first(a: &Image, b: &Image) -> Ordering {
    a.pushed_at_ms
        .cmp(&b.pushed_at_ms)
        .then_with(|| a.digest.cmp(&b.digest))
}

/// The images (indices into `order`) that `rule` alone would expire;
/// `selected` lists the rule's selection, oldest first.
fn marked(rule: &Rule, selected: &[usize], order: &[&Image], now_ms: i64) -> Vec<usize> {
    let n = rule.selection.count_number;
    match rule.selection.count_type {
        CountType::ImageCountMoreThan => {
            let keep = usize::try_from(n).unwrap_or(usize::MAX);
            let expire = selected.len().saturating_sub(keep);
            selected[..expire].to_vec()
        }
        CountType::SinceImagePushed => older_than(selected, n, now_ms, |image| image.pushed_at_ms, order),
        CountType::SinceImagePulled => older_than(
            selected,
            n,
            now_ms,
            |image| image.last_pulled_at_ms.unwrap_or(image.pushed_at_ms),
            order,
        ),
        // An archived image always has its archive time; without one it is
        // never old enough.
        CountType::SinceImageTransitioned => older_than(
            selected,
            n,
            now_ms,
            |image| image.transitioned_at_ms.unwrap_or(i64::MAX),
            order,
        ),
    }
}

fn older_than(selected: &[usize], days: u64, now_ms: i64, at: impl Fn(&Image) -> i64, order: &[&Image]) -> Vec<usize> {
    let limit = i128::from(days) * i128::from(DAY_MS);
    selected
        .iter()
        .copied()
        .filter(|&i| i128::from(now_ms) - i128::from(at(order[i])) > limit)
        .collect()
}
