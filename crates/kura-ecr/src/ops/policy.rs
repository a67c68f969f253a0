//! Repository and registry policies (resource-based policies), and the
//! authorization of every ECR operation.

use serde_json::{json, Value};

use kura_aws::Scope;

use super::{repo_name, s, Ctx};
use crate::authz::{registry_arn, repository_arn, Access};
use crate::error::{EcrError, EcrResult};
use crate::optable::EcrOp;
use crate::Ecr;

/// Operations that act on the registry as a whole (no resource-level
/// permissions: the resource is `*`, guarded by the registry policy): the
/// table's [`Scope::Registry`] operations.
pub use crate::optable::REGISTRY_OPS;

fn tags_of(v: &Value) -> Vec<(String, String)> {
    v.get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| Some((s(t, "Key")?.to_string(), s(t, "Value").unwrap_or_default().to_string())))
        .collect()
}

impl Ecr {
    /// Authorize one ECR operation as its `ecr:` action: on the repository
    /// it names, or on the registry. The account is `ctx.account`, the one
    /// the operation then acts on (see [`Ctx::registry_of`]); only the tag
    /// operations take theirs from the repository ARN they name, which the
    /// operation parses the same way. `DescribeRepositories` without names
    /// is authorized per repository when it lists them.
    pub(crate) async fn authorize_op(&self, ctx: &Ctx, op: EcrOp, v: &Value) -> EcrResult<()> {
        let spec = op.spec();
        let action = spec.action;
        let region = &self.config.region;
        let account = ctx.account.as_str();
        let access = if op == EcrOp::DescribeRepositories && v.get("repositoryNames").is_none() {
            // Listing is filtered per repository; listing another account's
            // registry needs a grant on all of its repositories.
            if account == ctx.caller.account {
                return Ok(());
            }
            let mut access = Access::repository(action, region, account, "*");
            access.policy_arn = Some(registry_arn(region, account));
            access.tags_arn = None;
            access
        } else if op == EcrOp::DescribeRepositories {
            for n in v["repositoryNames"].as_array().into_iter().flatten() {
                let access = Access::repository(action, region, account, n.as_str().unwrap_or_default());
                self.authorize(&ctx.caller, &access, ctx.source_ip).await?;
            }
            return Ok(());
        } else if matches!(
            op,
            EcrOp::TagResource | EcrOp::UntagResource | EcrOp::ListTagsForResource
        ) {
            let arn = s(v, "resourceArn").unwrap_or_default();
            let Some((account, _)) = parse_repository_arn(region, arn) else {
                // Not a repository ARN of this registry: the operation
                // answers InvalidParameterException without acting.
                return Ok(());
            };
            let mut access = Access::resource(action, arn, &account);
            access.policy_arn = Some(arn.to_string());
            access.tags_arn = Some(arn.to_string());
            if op == EcrOp::TagResource {
                access = access.with_request_tags(&tags_of(v));
            }
            access
        } else if spec.scope == Scope::Registry {
            Access::registry(action, region, account)
        } else if let Some(name) = s(v, "repositoryName") {
            let mut access = Access::repository(action, region, account, name);
            if op == EcrOp::CreateRepository {
                // The repository does not exist yet: the registry policy
                // guards its creation (as for replication and pull-through).
                access.policy_arn = Some(registry_arn(region, account));
                access.tags_arn = None;
                access = access.with_request_tags(&tags_of(v));
            }
            access
        } else {
            Access::registry(action, region, account)
        };
        self.authorize(&ctx.caller, &access, ctx.source_ip).await
    }

    /// `SetRepositoryPolicy`.
    pub(crate) async fn set_repository_policy(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let name = repo_name(v)?;
        self.require_repo(&account, &name).await?;
        let text = s(v, "policyText").unwrap_or_default();
        kura_authz::check_repository_policy(text, "repository")?;
        let arn = repository_arn(&self.config.region, &account, name.as_str());
        self.iam.resource_policy_put(&arn, text).await?;
        Ok(json!({"registryId": account, "repositoryName": name.as_str(), "policyText": text}))
    }

    /// `GetRepositoryPolicy` and `DeleteRepositoryPolicy`.
    pub(crate) async fn get_repository_policy(&self, ctx: &Ctx, v: &Value, delete: bool) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let name = repo_name(v)?;
        self.require_repo(&account, &name).await?;
        let arn = repository_arn(&self.config.region, &account, name.as_str());
        let row = if delete {
            self.iam.resource_policy_delete(&arn).await?
        } else {
            self.iam.resource_policy_get(&arn).await?
        };
        let row = row.ok_or_else(|| {
            EcrError::new(
                "RepositoryPolicyNotFoundException",
                format!("Repository policy does not exist for the repository with name '{name}' in the registry with id '{account}'"),
            )
        })?;
        Ok(json!({"registryId": account, "repositoryName": name.as_str(), "policyText": row.policy}))
    }

    /// `PutRegistryPolicy`.
    pub(crate) async fn put_registry_policy(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let text = s(v, "policyText").unwrap_or_default();
        kura_authz::check_repository_policy(text, "registry")?;
        self.iam
            .resource_policy_put(&registry_arn(&self.config.region, &account), text)
            .await?;
        Ok(json!({"registryId": account, "policyText": text}))
    }

    /// `GetRegistryPolicy` and `DeleteRegistryPolicy`.
    pub(crate) async fn get_registry_policy(&self, ctx: &Ctx, delete: bool) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let arn = registry_arn(&self.config.region, &account);
        let row = if delete {
            self.iam.resource_policy_delete(&arn).await?
        } else {
            self.iam.resource_policy_get(&arn).await?
        };
        let row = row.ok_or_else(|| {
            EcrError::new(
                "RegistryPolicyNotFoundException",
                format!("Registry policy does not exist in the registry with id '{account}'"),
            )
        })?;
        Ok(json!({"registryId": account, "policyText": row.policy}))
    }
}

/// `(account, name)` of a repository ARN in `region`.
pub(crate) fn parse_repository_arn(region: &str, arn: &str) -> Option<(String, String)> {
    let a = kura_iam::Arn::parse(arn).ok()?;
    let name = a.resource.strip_prefix("repository/")?;
    (a.partition == "aws" && a.service == "ecr" && a.region == region && a.has_account_id())
        .then(|| (a.account.to_string(), name.to_string()))
}
