//! Secrets Manager for Kura: the API subset a pull-through cache rule takes its upstream
//! credentials from (`CreateSecret`, `GetSecretValue`, `PutSecretValue`, `DescribeSecret`,
//! `ListSecrets`, `DeleteSecret`, `RestoreSecret`, `UpdateSecret`, `TagResource`, `UntagResource`,
//! `ListSecretVersionIds`), AWS JSON 1.1 with
//! `X-Amz-Target: secretsmanager.<Op>` and SigV4 service `secretsmanager`.
//!
//! * [`Secrets`] runs one operation for one caller on input the model already validated
//!   ([`ops`]: the operations, [`tags`]: tags and the version list, [`stages`]: how staging labels move, [`list`]: `ListSecrets`'
//!   filters and paging, [`resolve`]: a `SecretId` — name, full or partial ARN — to a secret).
//! * [`service::SecretsService`] is the [`kura_aws::AwsService`] on the shared pipeline.
//! * [`purge::PurgeJob`] removes secrets whose recovery window has passed.
//! * [`SecretReader`] reads a secret's current string for Kura itself (the pull-through
//!   cache), without IAM, in one account only.
//!
//! Values are sealed with the master key before they reach the store, bound to the secret's
//! ARN, the version id and the value's kind, so a sealed value copied to another row does
//! not open. Every call is authorized as `secretsmanager:<Op>` on the secret's ARN (as
//! stored, with its random suffix) in the account that owns it; another account's secret is
//! denied (Kura has no secret resource policies, so cross-account access is never granted).

pub mod list;
pub mod ops;
pub mod purge;
pub mod reader;
pub mod resolve;
pub mod service;
pub mod stages;
pub mod tags;

use std::net::IpAddr;
use std::sync::Arc;

use kura_auth::seal::MasterKey;
use kura_authz::{Access, Authz};
use kura_aws::{AwsError, AwsResult, Caller};
use kura_store::SecretsStore;

pub use reader::{SecretReadError, SecretReader};

/// The operations Kura serves (the rest of the model answers "not supported").
pub const OPERATIONS: &[&str] = &[
    "CreateSecret",
    "GetSecretValue",
    "PutSecretValue",
    "DescribeSecret",
    "ListSecrets",
    "DeleteSecret",
    "RestoreSecret",
    "UpdateSecret",
    "TagResource",
    "UntagResource",
    "ListSecretVersionIds",
];

/// Most live secrets per account (Secrets Manager's quota is 500,000; Kura keeps an
/// account's list in memory when it filters and sorts, so it allows fewer).
pub const DEFAULT_MAX_SECRETS: i64 = 10_000;
/// Most versions a secret keeps: beyond it the oldest versions without a label go.
pub const MAX_VERSIONS: usize = 100;
/// Most tags on a secret.
pub const MAX_TAGS: usize = 50;
/// The default recovery window of `DeleteSecret`, in days.
pub const DEFAULT_RECOVERY_DAYS: i64 = 30;
/// The label of the current version.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The label of the version before the current one.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// Who calls: the caller's account, and (through the pipeline) the IAM check to apply.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// The caller's account.
    pub account: &'a str,
    /// The caller and the authorizer; `None` for trusted in-process calls (tests), which
    /// may still act in their own account only.
    pub iam: Option<(&'a Authz, &'a Caller, Option<IpAddr>)>,
}

impl<'a> Ctx<'a> {
    /// A trusted call in `account` (no IAM).
    pub fn trusted(account: &'a str) -> Ctx<'a> {
        Ctx { account, iam: None }
    }

    /// Authorize `action` on `arn`, a resource of `owner`.
    pub(crate) async fn allow(&self, action: &str, arn: &str, owner: &str, tags: &[(String, String)]) -> AwsResult<()> {
        match self.iam {
            Some((authz, caller, ip)) => {
                authz
                    .authorize(
                        caller,
                        &Access::resource(action, arn, owner).with_request_tags(tags),
                        ip,
                    )
                    .await
            }
            None if owner == self.account => Ok(()),
            None => Err(access_denied(action, arn)),
        }
    }
}

pub(crate) fn access_denied(action: &str, arn: &str) -> AwsError {
    AwsError::new(
        "AccessDeniedException",
        format!("You are not authorized to perform {action} on resource {arn}"),
    )
    .with_status(http::StatusCode::FORBIDDEN)
}

/// Secrets Manager over the store.
#[derive(Clone)]
pub struct Secrets {
    pub(crate) store: Arc<dyn SecretsStore>,
    pub(crate) master: MasterKey,
    pub(crate) region: String,
    pub(crate) max_secrets: i64,
}

impl Secrets {
    /// The API for a deployment in `region`, sealing values with `master`.
    pub fn new(store: Arc<dyn SecretsStore>, master: MasterKey, region: impl Into<String>) -> Secrets {
        Secrets {
            store,
            master,
            region: region.into(),
            max_secrets: DEFAULT_MAX_SECRETS,
        }
    }

    /// The same API with another per-account quota of secrets.
    pub fn with_max_secrets(mut self, max: i64) -> Secrets {
        self.max_secrets = max;
        self
    }

    /// The deployment's region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// A reader of current secret strings for Kura itself (see [`SecretReader`]).
    pub fn reader(&self) -> SecretReader {
        SecretReader::new(self.clone())
    }

    /// Run operation `op` for `ctx` on validated `input`.
    pub async fn call(&self, ctx: Ctx<'_>, op: &str, input: &serde_json::Value) -> AwsResult<serde_json::Value> {
        match op {
            "CreateSecret" => self.create_secret(ctx, input).await,
            "GetSecretValue" => self.get_secret_value(ctx, input).await,
            "PutSecretValue" => self.put_secret_value(ctx, input).await,
            "DescribeSecret" => self.describe_secret(ctx, input).await,
            "ListSecrets" => self.list_secrets(ctx, input).await,
            "DeleteSecret" => self.delete_secret(ctx, input).await,
            "RestoreSecret" => self.restore_secret(ctx, input).await,
            "UpdateSecret" => self.update_secret(ctx, input).await,
            "TagResource" => self.tag_resource(ctx, input).await,
            "UntagResource" => self.untag_resource(ctx, input).await,
            "ListSecretVersionIds" => self.list_secret_version_ids(ctx, input).await,
            other => Err(AwsError::new(
                "UnsupportedOperationException",
                format!("Kura does not support {other} (not in Kura's Secrets Manager subset)"),
            )),
        }
    }

    /// The sealing context of a value: bound to the secret, the version and the kind.
    pub(crate) fn context(arn: &str, version_id: &str, kind: &str) -> Vec<u8> {
        format!("secretsmanager:{arn}:{version_id}:{kind}").into_bytes()
    }
}

/// `ResourceNotFoundException` in Secrets Manager's words.
pub(crate) fn not_found() -> AwsError {
    AwsError::new(
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret.",
    )
}

/// `InvalidRequestException`.
pub(crate) fn invalid_request(message: impl Into<String>) -> AwsError {
    AwsError::new("InvalidRequestException", message)
}

/// The refusal for a secret scheduled for deletion.
pub(crate) fn marked_for_deletion() -> AwsError {
    invalid_request("You can't perform this operation on the secret because it was marked for deletion.")
}
