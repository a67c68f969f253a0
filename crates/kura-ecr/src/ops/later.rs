//! Operations whose features later issues build: today none of ECR's
//! operations is left here, but the op table keeps the mechanism. Writes
//! answer `UnsupportedOperationException` (400), so no client is told a
//! setting took effect when it did not; reads should answer truthfully for a
//! registry where nothing of the kind is configured.

use serde_json::Value;

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
    // Repository-scoped operations first check the repository exists.
    if v.get("repositoryName").is_some() {
        let name = repo_name(v)?;
        ecr.require_repo(&ctx.account, &name).await?;
    }
    let feature = op.later().unwrap_or("this operation");
    Err(EcrError::unsupported(
        op.name(),
        feature
            .trim_start_matches("unsupported until ")
            .trim_end_matches(" lands"),
    ))
}
