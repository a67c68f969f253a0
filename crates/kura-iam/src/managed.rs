//! AWS managed policies for ECR, by ARN.
//!
//! The action lists are Kura's own summary of what each AWS policy grants on
//! ECR; other services those policies mention are left out.

use crate::{Policy, Version};

/// ARN of the read-only ECR policy (pull, describe, list).
pub const AMAZON_EC2_CONTAINER_REGISTRY_READ_ONLY: &str = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly";
/// ARN of the power-user ECR policy (read-only plus push).
pub const AMAZON_EC2_CONTAINER_REGISTRY_POWER_USER: &str =
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser";
/// ARN of the full-access ECR policy (`ecr:*`).
pub const AMAZON_EC2_CONTAINER_REGISTRY_FULL_ACCESS: &str =
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryFullAccess";

const READ_ONLY_ACTIONS: &[&str] = &[
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:GetRepositoryPolicy",
    "ecr:DescribeRepositories",
    "ecr:ListImages",
    "ecr:DescribeImages",
    "ecr:BatchGetImage",
    "ecr:GetLifecyclePolicy",
    "ecr:GetLifecyclePolicyPreview",
    "ecr:ListTagsForResource",
    "ecr:DescribeImageScanFindings",
];

const PUSH_ACTIONS: &[&str] = &[
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
];

fn allow_all_resources(actions: Vec<&str>) -> String {
    serde_json::json!({
        "Version": Version::V2012_10_17.as_str(),
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    })
    .to_string()
}

/// The names (ARNs) of the managed policies [`managed_policy`] knows.
pub fn managed_policy_names() -> &'static [&'static str] {
    &[
        AMAZON_EC2_CONTAINER_REGISTRY_READ_ONLY,
        AMAZON_EC2_CONTAINER_REGISTRY_POWER_USER,
        AMAZON_EC2_CONTAINER_REGISTRY_FULL_ACCESS,
    ]
}

/// The AWS managed policy with this ARN, if Kura knows it:
///
/// - `AmazonEC2ContainerRegistryReadOnly`: get an authorization token, pull
///   (layer availability, download URLs, image manifests), describe and list
///   repositories and images, read repository and lifecycle policies, tags
///   and scan findings.
/// - `AmazonEC2ContainerRegistryPowerUser`: all of that plus push (layer
///   uploads and `PutImage`).
/// - `AmazonEC2ContainerRegistryFullAccess`: `ecr:*`.
///
/// Each allows on every resource (`"Resource": "*"`).
pub fn managed_policy(arn: &str) -> Option<Policy> {
    managed_policy_text(arn).map(|t| Policy::parse(&t).expect("built-in managed policy is valid"))
}

/// The policy document of the AWS managed policy with this ARN (see
/// [`managed_policy`]), as JSON text.
pub fn managed_policy_text(arn: &str) -> Option<String> {
    match arn {
        AMAZON_EC2_CONTAINER_REGISTRY_READ_ONLY => Some(allow_all_resources(READ_ONLY_ACTIONS.to_vec())),
        AMAZON_EC2_CONTAINER_REGISTRY_POWER_USER => Some(allow_all_resources(
            READ_ONLY_ACTIONS.iter().chain(PUSH_ACTIONS).copied().collect(),
        )),
        AMAZON_EC2_CONTAINER_REGISTRY_FULL_ACCESS => Some(allow_all_resources(vec!["ecr:*"])),
        _ => None,
    }
}
