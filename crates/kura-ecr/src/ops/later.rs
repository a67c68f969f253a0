//! Operations whose features later issues build (storage classes). Reads answer truthfully for a registry where
//! nothing of the kind is configured (an empty list, or the "not found" error
//! ECR itself returns); writes answer `UnsupportedOperationException` (400),
//! so no client is told a setting took effect when it did not.

use serde_json::{json, Value};

use super::{repo_name, Ctx};
use crate::error::{EcrError, EcrResult};
use crate::optable::EcrOp;
use crate::Ecr;

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
    let repo = if v.get("repositoryName").is_some() {
        let name = repo_name(v)?;
        Some(ecr.require_repo(&account, &name).await?)
    } else {
        None
    };
    let repo_name_str = repo.as_ref().map(|r| r.name.clone()).unwrap_or_default();
    match op {
        EcrOp::UpdateImageStorageClass => {
            let id = v.get("imageId").cloned().unwrap_or(json!({}));
            ensure_image(
                ecr,
                repo.as_ref().map(|r| r.id).unwrap_or_default(),
                &id,
                &repo_name_str,
                &account,
            )
            .await?;
            Err(EcrError::new(
                "ImageStorageClassUpdateNotSupportedException",
                "Kura keeps every image in the standard storage class; archiving is not supported yet",
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

async fn ensure_image(ecr: &Ecr, repo: i64, id: &Value, name: &str, account: &str) -> EcrResult<String> {
    match ecr.resolve(repo, id).await? {
        Ok(d) => Ok(d),
        Err(("ImageNotFound", _)) => Err(super::image_not_found(id, name, account)),
        Err((_, reason)) => Err(EcrError::invalid_parameter(reason)),
    }
}
