//! Operations whose features later issues build (the pull-through cache).
//! Reads answer truthfully for a registry where nothing of the kind is
//! configured (an empty list, or the "not found" error
//! ECR itself returns); writes answer `UnsupportedOperationException` (400),
//! so no client is told a setting took effect when it did not.

use serde_json::{json, Value};

use super::{repo_name, s, Ctx};
use crate::error::{EcrError, EcrResult};
use crate::optable::EcrOp;
use crate::Ecr;

fn not_found(kind: &'static str, what: &str) -> EcrError {
    EcrError::new(kind, what.to_string())
}

/// Each operation handled here (the table's operations that are not built)
/// and what it answers (for the README table).
pub fn status() -> Vec<(&'static str, &'static str)> {
    EcrOp::ALL
        .iter()
        .filter_map(|op| Some((op.name(), op.later()?)))
        .collect()
}

/// Answer an operation of a later feature.
pub async fn answer(ecr: &Ecr, ctx: &Ctx, op: EcrOp, v: &Value) -> EcrResult<Value> {
    let account = ctx.account.clone();
    // Repository-scoped operations first check the repository exists.
    if v.get("repositoryName").is_some() {
        let name = repo_name(v)?;
        ecr.require_repo(&account, &name).await?;
    }
    match op {
        EcrOp::DescribePullThroughCacheRules => {
            if v.get("ecrRepositoryPrefixes")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
            {
                return Err(not_found(
                    "PullThroughCacheRuleNotFoundException",
                    &format!("The pull through cache rule does not exist in the registry with id '{account}'"),
                ));
            }
            Ok(json!({"pullThroughCacheRules": []}))
        }
        EcrOp::UpdatePullThroughCacheRule | EcrOp::DeletePullThroughCacheRule | EcrOp::ValidatePullThroughCacheRule => {
            Err(not_found(
                "PullThroughCacheRuleNotFoundException",
                &format!(
                    "The pull through cache rule with prefix '{}' does not exist in the registry with id '{account}'",
                    s(v, "ecrRepositoryPrefix").unwrap_or_default()
                ),
            ))
        }
        _ => {
            let feature = op.later().unwrap_or("this operation");
            Err(EcrError::unsupported(
                op.name(),
                feature
                    .trim_start_matches("unsupported until ")
                    .trim_end_matches(" lands"),
            ))
        }
    }
}
