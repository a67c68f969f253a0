//! Amazon ECR lifecycle policies: parsing, validation and evaluation.
//!
//! This crate is pure: no I/O, no storage, no clock. The caller passes the
//! policy text, the repository's images and the current time; [`parse`]
//! answers what `PutLifecyclePolicy` would accept, and [`evaluate`] answers
//! which images the policy expires now.
//!
//! It follows three pages of the Amazon ECR User Guide (paraphrased in the
//! doc comments here, never quoted):
//!
//! - "Lifecycle policy evaluation rules", in *Automate the cleanup of images
//!   by using lifecycle policies*:
//!   <https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html#lp_evaluation_rules>
//! - "Lifecycle policy properties":
//!   <https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html>
//! - "Examples of lifecycle policies":
//!   <https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_examples.html>
//!
//! # The rules in brief
//!
//! A policy is a list of rules. Each rule *selects* images by their tags
//! ([`TagStatus`] plus an optional prefix or pattern list) and *marks* some of
//! the selected images by count or age ([`CountType`]). Every rule looks at
//! the whole repository at once; the marks are then applied in `rulePriority`
//! order, lowest number first, and an image whose tags a higher-priority rule
//! selected can never be expired by a lower-priority one, whether or not that
//! higher rule expired it. Lower rules still count such images (a rule
//! "keeping the newest 1" may decide to keep an image that a higher rule
//! claimed, and so expire nothing). See [`evaluate`].
//!
//! # Storage classes
//!
//! An image is in the standard storage class or in the archive (ECR's archive
//! storage class; an image being restored is in neither, and no rule touches
//! it). Every rule looks at the images of one class, its
//! `selection.storageClass` (`standard`, the default, or `archive`): a rule's
//! counts, tag requirements and priority claims concern that class alone.
//! Two actions exist: `expire` deletes, `transition` (with
//! `targetStorageClass: "archive"`, on standard images only) archives.
//! `sinceImageTransitioned` counts days since the image was archived and so
//! applies to `archive` rules only. AWS's guide allows `sinceImagePulled`
//! only with `transition`; Kura, which accepted it with `expire` before it
//! had an archive, still does (same age rule: the last pull, or the push if
//! the image was never pulled). The cross-rule checks (one `any` rule,
//! applied last; one `untagged` rule; unique tag sets) hold per storage
//! class, so a policy may transition `prod*` images and later expire the
//! archived `prod*` images.
//!
//! AWS also says an image that a manifest list references cannot be expired
//! before the list itself. [`Image`] carries no references, so that guard
//! belongs to the caller that deletes what [`evaluate`] returns.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod eval;
mod parse;
mod pattern;

pub use eval::{evaluate, Decision, Image, DAY_MS};

/// A storage class a rule looks at (`selection.storageClass`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum StorageClass {
    /// `standard` (the default): images that can be pulled.
    #[default]
    Standard,
    /// `archive`: archived images.
    Archive,
}

impl StorageClass {
    /// The policy JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageClass::Standard => "standard",
            StorageClass::Archive => "archive",
        }
    }
}
pub use parse::{
    parse, MAX_COUNT_NUMBER, MAX_POLICY_CHARS, MAX_RULES, MAX_RULE_PRIORITY, MAX_TAG_FILTER_LEN, MAX_WILDCARDS,
};
pub use pattern::wildcard_match;

/// A parsed and validated lifecycle policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The rules, in `rulePriority` order (lowest number, applied first, first).
    pub rules: Vec<Rule>,
}

/// One rule of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `rulePriority`: the order rules are applied in, lowest first. Unique
    /// within a policy; values need not be consecutive.
    pub rule_priority: u32,
    /// `description`: free text, optional.
    pub description: Option<String>,
    /// `selection`: which images the rule looks at and which it marks.
    pub selection: Selection,
    /// `action`: what happens to marked images.
    pub action: Action,
}

/// A rule's `selection` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// `tagStatus`.
    pub tag_status: TagStatus,
    /// `tagPrefixList` (only with [`TagStatus::Tagged`]; empty when absent).
    pub tag_prefix_list: Vec<String>,
    /// `tagPatternList` (only with [`TagStatus::Tagged`]; empty when absent).
    pub tag_pattern_list: Vec<String>,
    /// `countType`.
    pub count_type: CountType,
    /// `countUnit`: `Some("days")` for the `since*` count types, else `None`.
    pub count_unit: Option<String>,
    /// `countNumber`: images to keep, or days.
    pub count_number: u64,
    /// `storageClass`: the class of images the rule looks at.
    pub storage_class: StorageClass,
}

/// `tagStatus`: which images a rule considers at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TagStatus {
    /// `tagged`: images with at least one tag that satisfies the rule's
    /// prefix or pattern list (one of the two is required).
    Tagged,
    /// `untagged`: images without any tag.
    Untagged,
    /// `any`: every image, tagged or not.
    Any,
}

impl TagStatus {
    /// The policy JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TagStatus::Tagged => "tagged",
            TagStatus::Untagged => "untagged",
            TagStatus::Any => "any",
        }
    }
}

/// `countType`: how a rule decides which of its selected images to mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CountType {
    /// `imageCountMoreThan`: keep the `countNumber` most recently pushed
    /// images of the selection, mark the rest.
    ImageCountMoreThan,
    /// `sinceImagePushed`: mark images pushed more than `countNumber` days ago.
    SinceImagePushed,
    /// `sinceImagePulled`: mark images last pulled more than `countNumber`
    /// days ago; an image never pulled counts from its push.
    SinceImagePulled,
    /// `sinceImageTransitioned` (archive rules only): mark images archived
    /// more than `countNumber` days ago.
    SinceImageTransitioned,
}

impl CountType {
    /// The policy JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CountType::ImageCountMoreThan => "imageCountMoreThan",
            CountType::SinceImagePushed => "sinceImagePushed",
            CountType::SinceImagePulled => "sinceImagePulled",
            CountType::SinceImageTransitioned => "sinceImageTransitioned",
        }
    }
}

/// `action.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `expire`: delete the marked images.
    Expire,
    /// `transition` with `targetStorageClass: "archive"`: archive the marked
    /// (standard) images.
    Transition,
}

impl Action {
    /// The policy JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Expire => "expire",
            Action::Transition => "transition",
        }
    }
}

/// Why a policy text was refused.
///
/// `message` reads like ECR's: `Lifecycle policy validation failure: <reason>`.
/// The ECR API wraps it in an `InvalidParameterException`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    /// The whole message, prefix included.
    pub message: String,
}

/// The prefix of every [`PolicyError`] message.
pub const ERROR_PREFIX: &str = "Lifecycle policy validation failure: ";

impl PolicyError {
    pub(crate) fn new(reason: impl std::fmt::Display) -> Self {
        PolicyError {
            message: format!("{ERROR_PREFIX}{reason}"),
        }
    }

    /// The reason alone, without the common prefix.
    pub fn reason(&self) -> &str {
        self.message.strip_prefix(ERROR_PREFIX).unwrap_or(&self.message)
    }
}

impl Selection {
    /// Whether an image with these tags meets the selection's tagging
    /// requirements (AWS: "matches the tagging requirements of a rule").
    ///
    /// - `untagged` selects images with no tag, `any` selects every image.
    /// - `tagged` with a `tagPrefixList`: every listed prefix must begin at
    ///   least one of the image's tags. The tags that satisfy different
    ///   prefixes may differ, so `["alpha", "beta"]` selects an image tagged
    ///   `alpha-1` and `beta-1`, but not one tagged only `alpha-1`.
    /// - `tagged` with a `tagPatternList`: likewise, every listed pattern must
    ///   match at least one tag in full, `*` standing for any run of characters
    ///   (see [`wildcard_match`]).
    /// - `tagged` with neither list (not valid policy text) selects every
    ///   tagged image.
    pub fn selects(&self, tags: &[String]) -> bool {
        match self.tag_status {
            TagStatus::Any => true,
            TagStatus::Untagged => tags.is_empty(),
            TagStatus::Tagged => {
                !tags.is_empty()
                    && self
                        .tag_prefix_list
                        .iter()
                        .all(|p| tags.iter().any(|t| t.starts_with(p.as_str())))
                    && self
                        .tag_pattern_list
                        .iter()
                        .all(|p| tags.iter().any(|t| wildcard_match(p, t)))
            }
        }
    }
}
