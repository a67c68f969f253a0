//! The ECR scanning operations: StartImageScan, DescribeImageScanFindings, the registry
//! scanning configuration, and each repository's effective scanning configuration.

use kura_scan::matcher::Finding;
use kura_store::meta::ManifestKey;
use kura_store::scan::ScanStart;
use serde_json::{json, Value};

use super::{decode_token, encode_token, image_id, image_not_found, max_results, render_image_id, s, Ctx};
use crate::error::{EcrError, EcrResult};
use crate::scanning::{self, ImageContext, MANUAL_SCAN_QUOTA_MS, REGISTRY_SCANNING_SETTING};
use crate::templates::repository_arn;
use crate::Ecr;

fn scan_not_found(id: &Value, repo: &str, account: &str) -> EcrError {
    EcrError::new(
        "ScanNotFoundException",
        format!(
            "Image scan does not exist for the image with '{}' in the repository with name '{repo}' in the registry with id '{account}'",
            render_image_id(id)
        ),
    )
}

impl Ecr {
    /// Resolve `imageId` or answer ECR's error for it.
    async fn scan_target(&self, ctx: &Ctx, v: &Value) -> EcrResult<(String, String, i64, String, Value)> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let id = v.get("imageId").cloned().unwrap_or(json!({}));
        let digest = match self.resolve(repo.id, &id).await? {
            Ok(d) => d,
            Err(("ImageNotFound", _)) => return Err(image_not_found(&id, name.as_str(), &account)),
            Err((_, reason)) => return Err(EcrError::invalid_parameter(reason)),
        };
        Ok((account, name.to_string(), repo.id, digest, id))
    }

    pub(super) async fn start_image_scan(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo_id, digest, id) = self.scan_target(ctx, v).await?;
        let repo = self
            .meta
            .repo_by_id(repo_id)
            .await?
            .ok_or_else(|| EcrError::repository_not_found(&name, &account))?;
        let m = self
            .meta
            .manifest_get(repo_id, ManifestKey::Digest(&digest))
            .await?
            .ok_or_else(|| image_not_found(&id, &name, &account))?;
        if m.status != kura_store::meta::ImageStatus::Active {
            return Err(EcrError::new(
                "ImageArchivedException",
                format!(
                    "The image with digest '{digest}' in the repository with name '{name}' is {}: it cannot be scanned until it is restored",
                    m.status.as_str()
                ),
            ));
        }
        if !scanning::scannable(&m.media_type, &m.body) {
            return Err(EcrError::new(
                "UnsupportedImageTypeException",
                format!(
                    "The image type is not supported: {} manifests cannot be scanned; scan each image of an index",
                    m.media_type
                ),
            ));
        }
        let config = scanning::registry_config(self.control.as_ref(), &account).await?;
        let eff = scanning::effective(&config, &repo);
        let now = kura_store::now_millis();
        match self
            .scanner
            .store()
            .scan_start(repo_id, &digest, &eff.scan_type, now, Some(MANUAL_SCAN_QUOTA_MS))
            .await?
        {
            ScanStart::Started => {
                self.scanner.queue_scan(repo_id, &digest, &eff.scan_type).await?;
            }
            ScanStart::QuotaExceeded => {
                return Err(EcrError::new(
                    "LimitExceededException",
                    "The scan quota per image has been exceeded. Wait and then try again.",
                ))
            }
        }
        Ok(json!({
            "registryId": account,
            "repositoryName": name,
            "imageId": image_id(Some(&digest), s(&id, "imageTag")),
            "imageScanStatus": {"status": "IN_PROGRESS", "description": "The scan is in progress."},
        }))
    }

    pub(super) async fn describe_image_scan_findings(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo_id, digest, id) = self.scan_target(ctx, v).await?;
        let row = self
            .scanner
            .store()
            .scan_get(repo_id, &digest)
            .await?
            .ok_or_else(|| scan_not_found(&id, &name, &account))?;
        let mut out = json!({
            "registryId": account,
            "repositoryName": name,
            "imageId": image_id(Some(&digest), s(&id, "imageTag")),
            "imageScanStatus": scanning::status_json(&row),
        });
        let Some(mut findings_json) = scanning::summary_json(&row) else {
            return Ok(out);
        };
        if row.status == "COMPLETE" {
            let findings: Vec<Finding> = row
                .findings
                .as_deref()
                .and_then(|f| serde_json::from_str(f).ok())
                .unwrap_or_default();
            let limit = max_results(v, 100) as usize;
            let start = match decode_token(v)? {
                Some(t) => t
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n <= findings.len())
                    .ok_or_else(|| {
                        EcrError::invalid_parameter(
                            "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid NextToken'",
                        )
                    })?,
                None => 0,
            };
            let end = (start + limit).min(findings.len());
            let page = &findings[start..end];
            if row.scan_type == "ENHANCED" {
                let img = self.meta.image_get(repo_id, &digest).await?;
                let tags = img.as_ref().map(|i| i.tags.clone()).unwrap_or_default();
                let ctx_img = ImageContext {
                    region: &self.config.region,
                    account: &account,
                    repo: &name,
                    digest: &digest,
                    tags: &tags,
                    pushed_at: img.as_ref().map(|i| i.pushed_at).unwrap_or(0),
                    observed_at: row.completed_at.unwrap_or(0),
                };
                findings_json["enhancedFindings"] = json!(page
                    .iter()
                    .map(|f| scanning::enhanced_finding(f, &ctx_img))
                    .collect::<Vec<_>>());
            } else {
                findings_json["findings"] = json!(page.iter().map(scanning::basic_finding).collect::<Vec<_>>());
            }
            if end < findings.len() {
                out["nextToken"] = json!(encode_token(&end.to_string()));
            }
        }
        out["imageScanFindings"] = findings_json;
        Ok(out)
    }

    pub(super) async fn put_registry_scanning_configuration(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let scan_type = s(v, "scanType").unwrap_or("BASIC");
        let rules = v.get("rules").cloned().unwrap_or(json!([]));
        for (i, rule) in rules.as_array().into_iter().flatten().enumerate() {
            let freq = rule["scanFrequency"].as_str().unwrap_or("");
            if scan_type == "BASIC" && freq == "CONTINUOUS_SCAN" {
                return Err(EcrError::new(
                    "ValidationException",
                    format!("rules[{i}]: scanFrequency CONTINUOUS_SCAN requires scanType ENHANCED; BASIC scanning supports SCAN_ON_PUSH and MANUAL"),
                ));
            }
            let filters = rule["repositoryFilters"].as_array().map(Vec::len).unwrap_or(0);
            if filters == 0 {
                return Err(EcrError::new(
                    "ValidationException",
                    format!("rules[{i}]: at least one repository filter is required"),
                ));
            }
        }
        let config = json!({"scanType": scan_type, "rules": rules});
        self.control
            .setting_put(&account, REGISTRY_SCANNING_SETTING, &config.to_string())
            .await?;
        Ok(json!({"registryScanningConfiguration": config}))
    }

    pub(super) async fn get_registry_scanning_configuration(&self, ctx: &Ctx) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let config = scanning::registry_config(self.control.as_ref(), &account).await?;
        Ok(json!({"registryId": account, "scanningConfiguration": config}))
    }

    pub(super) async fn batch_get_repository_scanning_configuration(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let config = scanning::registry_config(self.control.as_ref(), &account).await?;
        let mut configs = Vec::new();
        let mut failures = Vec::new();
        for n in v["repositoryNames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            match self.meta.repo_get(&account, n).await? {
                Some(r) => {
                    let eff = scanning::effective(&config, &r);
                    configs.push(json!({
                        "repositoryArn": repository_arn(&self.config.region, &account, n),
                        "repositoryName": n,
                        // The repository's own flag, as ECR reports it (the
                        // rule's effect is in scanFrequency).
                        "scanOnPush": r.settings.scan_on_push,
                        "scanFrequency": eff.frequency,
                        "appliedScanFilters": eff.filters,
                    }))
                }
                None => failures.push(json!({"repositoryName": n, "failureCode": "REPOSITORY_NOT_FOUND", "failureReason": "REPOSITORY_NOT_FOUND"})),
            }
        }
        Ok(json!({"scanningConfigurations": configs, "failures": failures}))
    }

    /// Add `imageScanStatus` / `imageScanFindingsSummary` to image details of one repository.
    pub(super) async fn attach_scan_status(&self, repo: i64, details: &mut [Value]) -> EcrResult<()> {
        let digests: Vec<String> = details
            .iter()
            .filter_map(|d| d["imageDigest"].as_str().map(String::from))
            .collect();
        if digests.is_empty() {
            return Ok(());
        }
        let rows = self.scanner.store().scan_summaries(repo, &digests).await?;
        for row in rows {
            if let Some(d) = details.iter_mut().find(|d| d["imageDigest"] == json!(row.digest)) {
                d["imageScanStatus"] = scanning::status_json(&row);
                if let Some(sm) = scanning::summary_json(&row) {
                    d["imageScanFindingsSummary"] = sm;
                }
            }
        }
        Ok(())
    }
}
