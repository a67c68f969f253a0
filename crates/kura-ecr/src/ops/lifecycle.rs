//! Lifecycle policies and their previews.

use super::*;

impl Ecr {
    pub(super) async fn put_lifecycle_policy(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let text = s(v, "lifecyclePolicyText").unwrap_or_default();
        parse_policy(text)?;
        self.maint.lifecycle_put(repo.id, text).await?;
        Ok(json!({"registryId": account, "repositoryName": name.as_str(), "lifecyclePolicyText": text}))
    }

    pub(super) async fn get_lifecycle_policy(&self, ctx: &Ctx, v: &Value, delete: bool) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let row = if delete {
            self.maint.lifecycle_delete(repo.id).await?
        } else {
            self.maint.lifecycle_get(repo.id).await?
        };
        let row = row.ok_or_else(|| lifecycle_not_found(name.as_str(), &account))?;
        let mut out =
            json!({"registryId": account, "repositoryName": name.as_str(), "lifecyclePolicyText": row.policy});
        // ECR answers epoch 0 until the policy's first evaluation.
        out["lastEvaluatedAt"] = ts(row.last_evaluated_at.unwrap_or(0));
        Ok(out)
    }

    pub(super) async fn start_lifecycle_preview(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let text = match s(v, "lifecyclePolicyText") {
            Some(t) => t.to_string(),
            None => {
                self.maint
                    .lifecycle_get(repo.id)
                    .await?
                    .ok_or_else(|| lifecycle_not_found(name.as_str(), &account))?
                    .policy
            }
        };
        parse_policy(&text)?;
        if !self.maint.preview_start(repo.id, &text).await? {
            return Err(EcrError::new(
                "LifecyclePolicyPreviewInProgressException",
                format!("A lifecycle policy preview is already in progress for the repository with name '{name}'"),
            ));
        }
        if let Err(e) = crate::lifecycle::enqueue_preview(&self.jobs, repo.id, &text).await {
            // Not left IN_PROGRESS with no job to finish it.
            let _ = self.maint.preview_finish(repo.id, "FAILED", None).await;
            return Err(e.into());
        }
        Ok(
            json!({"registryId": account, "repositoryName": name.as_str(), "lifecyclePolicyText": text, "status": "IN_PROGRESS"}),
        )
    }

    pub(super) async fn get_lifecycle_preview(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let row = self.maint.preview_get(repo.id).await?.ok_or_else(|| {
            EcrError::new(
                "LifecyclePolicyPreviewNotFoundException",
                format!("There is no lifecycle policy preview for the repository with name '{name}' in the registry with id '{account}'"),
            )
        })?;
        let mut out = json!({"registryId": account, "repositoryName": name.as_str(), "lifecyclePolicyText": row.policy, "status": row.status});
        if row.status != "COMPLETE" {
            return Ok(out);
        }
        let mut results: Vec<Value> = row
            .results
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or_default();
        let transitioning = results
            .iter()
            .filter(|r| r.pointer("/action/type").and_then(Value::as_str) == Some("TRANSITION"))
            .count();
        out["summary"] = json!({"expiringImageTotalCount": results.len() - transitioning});
        if transitioning > 0 {
            // Present only when something transitions (the model's note).
            out["summary"]["transitioningImageTotalCounts"] =
                json!([{"targetStorageClass": "ARCHIVE", "imageTotalCount": transitioning}]);
        }
        match v.pointer("/filter/tagStatus").and_then(Value::as_str) {
            Some("TAGGED") => results.retain(|r| r["imageTags"].as_array().is_some_and(|t| !t.is_empty())),
            Some("UNTAGGED") => results.retain(|r| r["imageTags"].as_array().is_none_or(|t| t.is_empty())),
            _ => {}
        }
        if let Some(ids) = v.get("imageIds").and_then(Value::as_array) {
            results.retain(|r| {
                ids.iter().any(|id| {
                    s(id, "imageDigest").is_some_and(|d| r["imageDigest"] == json!(d))
                        || s(id, "imageTag")
                            .is_some_and(|t| r["imageTags"].as_array().is_some_and(|ts| ts.contains(&json!(t))))
                })
            });
        }
        results.sort_by(|a, b| a["imageDigest"].as_str().cmp(&b["imageDigest"].as_str()));
        if let Some(after) = decode_token(v)? {
            results.retain(|r| r["imageDigest"].as_str().is_some_and(|d| d > after.as_str()));
        }
        let limit = max_results(v, 100);
        let next = page(&mut results, limit, |r| r["imageDigest"].as_str().unwrap_or_default());
        out["previewResults"] = Value::Array(results);
        with_next(&mut out, next);
        Ok(out)
    }
}

fn parse_policy(text: &str) -> EcrResult<kura_lifecycle::Policy> {
    kura_lifecycle::parse(text).map_err(|e| {
        EcrError::invalid_parameter(format!(
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: '{e}'"
        ))
    })
}

fn lifecycle_not_found(name: &str, account: &str) -> EcrError {
    EcrError::new(
        "LifecyclePolicyNotFoundException",
        format!(
            "Lifecycle policy does not exist for the repository with name '{name}' in the registry with id '{account}'"
        ),
    )
}
