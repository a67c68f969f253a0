//! The ECR operations. Inputs arrive validated against the model (types,
//! required members, enums, patterns, ranges), so handlers only apply ECR's
//! semantic rules. Timestamps are epoch seconds as JSON numbers.

use base64::Engine;
use kura_oci::RepoName;
use kura_store::meta::{RepoRow, RepoSettings};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::authz::Access;
use crate::error::{EcrError, EcrResult};
use crate::optable::EcrOp;
use crate::templates::{repository_arn, settings_from, tags_from, with_default_kms_key};
use crate::Ecr;

/// The context of one API call.
pub struct Ctx {
    /// Who is calling.
    pub caller: Caller,
    /// The registry (account) the call acts on and is authorized against:
    /// one value, computed once from the validated input by
    /// [`Ctx::registry_of`], so an operation can never be authorized against
    /// one account and act on another.
    pub account: String,
    /// The Host the request was sent to (for URIs handed back).
    pub host: String,
    /// The client's address, if known (`aws:SourceIp`).
    pub source_ip: Option<std::net::IpAddr>,
    /// `https` or `http`: the scheme of URLs handed back (the connection's,
    /// or a trusted proxy's `X-Forwarded-Proto`).
    pub scheme: &'static str,
    /// The client's `User-Agent`, if it sent one (the events' actor).
    pub user_agent: Option<String>,
}

impl Ctx {
    /// The caller as the actor of the image events this call causes.
    pub fn actor(&self) -> kura_registry::Actor {
        kura_registry::Actor {
            account: self.caller.account.clone(),
            principal_arn: self.caller.principal_arn.clone(),
            principal_id: self.caller.principal_id.clone(),
            access_key_id: Some(self.caller.access_key_id.clone()),
            source_ip: self.source_ip,
            user_agent: self.user_agent.clone(),
        }
    }

    /// The registry an operation addresses: its input's `registryId` when
    /// the operation's input shape defines one (default: the caller's
    /// account), else the caller's account. Inputs are validated before, so
    /// a `registryId` the shape does not define has already been refused;
    /// the shape is asked again here so that this stays the only place the
    /// account comes from.
    pub fn registry_of(model: &crate::model::Model, op: &str, input: &Value, caller: &Caller) -> String {
        match input.get("registryId").and_then(Value::as_str) {
            Some(r) if model.input_has(op, "registryId") => r.to_string(),
            _ => caller.account.clone(),
        }
    }
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// An epoch-seconds timestamp as ECR's JSON protocol writes it.
pub(crate) use kura_aws::json::ts;

pub(crate) use kura_images::{decode_token, encode_token};

/// Cut a page fetched with `limit + 1` rows to `limit`; the next token, if more follow.
fn page<T>(rows: &mut Vec<T>, limit: i64, key: impl Fn(&T) -> &str) -> Option<String> {
    if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| encode_token(key(r)))
    } else {
        None
    }
}

fn with_next(out: &mut Value, next: Option<String>) {
    if let Some(t) = next {
        out["nextToken"] = json!(t);
    }
}

fn max_results(v: &Value, default: i64) -> i64 {
    v.get("maxResults").and_then(Value::as_i64).unwrap_or(default)
}

fn repo_name(v: &Value) -> EcrResult<RepoName> {
    let n = s(v, "repositoryName").unwrap_or_default();
    n.parse().map_err(|m: String| {
        EcrError::invalid_parameter(format!(
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: '{m}'"
        ))
    })
}

impl Ecr {
    fn registry_host(&self, ctx: &Ctx, account: &str) -> String {
        let host = ctx.host.clone();
        if account == self.config.default_account || host.starts_with(&format!("{account}.dkr.")) {
            host
        } else {
            format!("{account}.dkr.{host}")
        }
    }

    /// The registry, repository name and repository an input addresses.
    pub(crate) async fn target(&self, ctx: &Ctx, v: &Value) -> EcrResult<(String, RepoName, RepoRow)> {
        let account = ctx.account.clone();
        let name = repo_name(v)?;
        let repo = self.require_repo(&account, &name).await?;
        Ok((account, name, repo))
    }

    async fn require_repo(&self, account: &str, name: &RepoName) -> EcrResult<RepoRow> {
        self.meta
            .repo_get(account, name.as_str())
            .await?
            .ok_or_else(|| EcrError::repository_not_found(name.as_str(), account))
    }

    fn repo_json(&self, ctx: &Ctx, r: &RepoRow) -> Value {
        let mut v = json!({
            "repositoryArn": repository_arn(&self.config.region, &r.account, &r.name),
            "registryId": r.account,
            "repositoryName": r.name,
            "repositoryUri": format!("{}/{}", self.registry_host(ctx, &r.account), r.name),
            "createdAt": ts(r.created_at),
            "imageTagMutability": r.settings.image_tag_mutability,
            "imageScanningConfiguration": {"scanOnPush": r.settings.scan_on_push},
            "encryptionConfiguration": encryption_json(&r.settings),
        });
        if !r.settings.mutability_exclusion_filters.is_empty() {
            v["imageTagMutabilityExclusionFilters"] = exclusion_json(&r.settings);
        }
        v
    }
}

fn encryption_json(s: &RepoSettings) -> Value {
    let mut e = json!({"encryptionType": s.encryption_type});
    if let Some(k) = &s.kms_key {
        e["kmsKey"] = json!(k);
    }
    e
}

fn exclusion_json(s: &RepoSettings) -> Value {
    Value::Array(
        s.mutability_exclusion_filters
            .iter()
            .map(|f| json!({"filterType": "WILDCARD", "filter": f}))
            .collect(),
    )
}

/// ECR's rules for mutability with exclusion filters.
fn check_mutability(v: &Value) -> EcrResult<()> {
    let m = s(v, "imageTagMutability").unwrap_or("MUTABLE");
    let filters = v.get("imageTagMutabilityExclusionFilters").and_then(Value::as_array);
    let with_exclusion = m.ends_with("_WITH_EXCLUSION");
    match (with_exclusion, filters.is_some_and(|f| !f.is_empty())) {
        (true, false) => Err(EcrError::invalid_parameter(format!(
            "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy constraint: 'exclusion filters are required when imageTagMutability is {m}'"
        ))),
        (false, true) => Err(EcrError::invalid_parameter(format!(
            "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy constraint: 'exclusion filters are only allowed when imageTagMutability is IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION, not {m}'"
        ))),
        _ => Ok(()),
    }
}

fn check_encryption(v: &Value) -> EcrResult<()> {
    if let Some(enc) = v.get("encryptionConfiguration") {
        let t = s(enc, "encryptionType").unwrap_or("AES256");
        if t == "AES256" && enc.get("kmsKey").is_some() {
            return Err(EcrError::invalid_parameter(
                "Invalid parameter at 'encryptionConfiguration' failed to satisfy constraint: 'kmsKey can only be specified when encryptionType is KMS or KMS_DSSE'",
            ));
        }
    }
    Ok(())
}

fn check_tags(tags: &[(String, String)]) -> EcrResult<()> {
    if tags.len() > 50 {
        return Err(EcrError::new(
            "TooManyTagsException",
            "A resource may have at most 50 tags",
        ));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(EcrError::new(
                "InvalidTagParameterException",
                format!("Invalid tag {k:?}: keys are 1-128 characters, values up to 256"),
            ));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(EcrError::new(
                "InvalidTagParameterException",
                format!("Tag keys starting with 'aws:' are reserved: {k:?}"),
            ));
        }
    }
    Ok(())
}

pub(crate) use kura_images::{
    image_detail, image_failure, image_id, image_not_found, map_registry_error, render_image_id, tag_status,
};

/// Run one operation (authorized before, by the pipeline).
pub async fn dispatch(ecr: &Ecr, ctx: &Ctx, op: EcrOp, v: Value) -> EcrResult<Value> {
    // The table says which operations are not built yet; they answer from one place.
    if !op.spec().built {
        return crate::ops::later::answer(ecr, ctx, op, &v).await;
    }
    match op {
        EcrOp::CreateRepository => ecr.create_repository(ctx, &v).await,
        EcrOp::DescribeRepositories => ecr.describe_repositories(ctx, &v).await,
        EcrOp::DeleteRepository => ecr.delete_repository(ctx, &v).await,
        EcrOp::ListImages => ecr.list_images(ctx, &v).await,
        EcrOp::DescribeImages => ecr.describe_images(ctx, &v).await,
        EcrOp::BatchGetImage => ecr.batch_get_image(ctx, &v).await,
        EcrOp::PutImage => ecr.put_image(ctx, &v).await,
        EcrOp::BatchDeleteImage => ecr.batch_delete_image(ctx, &v).await,
        EcrOp::BatchCheckLayerAvailability => ecr.batch_check_layer_availability(ctx, &v).await,
        EcrOp::InitiateLayerUpload => ecr.initiate_layer_upload(ctx, &v).await,
        EcrOp::UploadLayerPart => ecr.upload_layer_part(ctx, &v).await,
        EcrOp::CompleteLayerUpload => ecr.complete_layer_upload(ctx, &v).await,
        EcrOp::GetDownloadUrlForLayer => ecr.get_download_url_for_layer(ctx, &v).await,
        EcrOp::GetAuthorizationToken => ecr.get_authorization_token(ctx, &v).await,
        EcrOp::PutImageTagMutability => ecr.put_image_tag_mutability(ctx, &v).await,
        EcrOp::PutImageScanningConfiguration => ecr.put_image_scanning_configuration(ctx, &v).await,
        EcrOp::StartImageScan => ecr.start_image_scan(ctx, &v).await,
        EcrOp::DescribeImageScanFindings => ecr.describe_image_scan_findings(ctx, &v).await,
        EcrOp::PutRegistryScanningConfiguration => ecr.put_registry_scanning_configuration(ctx, &v).await,
        EcrOp::GetRegistryScanningConfiguration => ecr.get_registry_scanning_configuration(ctx).await,
        EcrOp::BatchGetRepositoryScanningConfiguration => {
            ecr.batch_get_repository_scanning_configuration(ctx, &v).await
        }
        EcrOp::TagResource => ecr.tag_resource(&v, true).await,
        EcrOp::UntagResource => ecr.tag_resource(&v, false).await,
        EcrOp::ListTagsForResource => ecr.list_tags_for_resource(&v).await,
        EcrOp::DescribeRegistry => ecr.describe_registry(ctx).await,
        EcrOp::PutReplicationConfiguration => ecr.put_replication_configuration(ctx, &v).await,
        EcrOp::DescribeImageReplicationStatus => ecr.describe_image_replication_status(ctx, &v).await,
        EcrOp::StartReplicationBackfill => ecr.start_replication_backfill(ctx, &v).await,
        EcrOp::StopReplicationBackfill => ecr.stop_replication_backfill(ctx, &v).await,
        EcrOp::DescribeReplicationBackfillResults => ecr.describe_replication_backfill_results(ctx, &v).await,
        EcrOp::ListReplicationBackfills => ecr.list_replication_backfills(ctx, &v).await,
        EcrOp::SetRepositoryPolicy => ecr.set_repository_policy(ctx, &v).await,
        EcrOp::GetRepositoryPolicy => ecr.get_repository_policy(ctx, &v, false).await,
        EcrOp::DeleteRepositoryPolicy => ecr.get_repository_policy(ctx, &v, true).await,
        EcrOp::PutRegistryPolicy => ecr.put_registry_policy(ctx, &v).await,
        EcrOp::GetRegistryPolicy => ecr.get_registry_policy(ctx, false).await,
        EcrOp::DeleteRegistryPolicy => ecr.get_registry_policy(ctx, true).await,
        EcrOp::CreateRepositoryCreationTemplate => ecr.put_template(ctx, &v, true).await,
        EcrOp::UpdateRepositoryCreationTemplate => ecr.put_template(ctx, &v, false).await,
        EcrOp::DescribeRepositoryCreationTemplates => ecr.describe_templates(ctx, &v).await,
        EcrOp::DeleteRepositoryCreationTemplate => ecr.delete_template(ctx, &v).await,
        EcrOp::GetAccountSetting => ecr.account_setting(ctx, &v, false).await,
        EcrOp::PutAccountSetting => ecr.account_setting(ctx, &v, true).await,
        EcrOp::ListImageReferrers => ecr.list_image_referrers(ctx, &v).await,
        EcrOp::PutLifecyclePolicy => ecr.put_lifecycle_policy(ctx, &v).await,
        EcrOp::GetLifecyclePolicy => ecr.get_lifecycle_policy(ctx, &v, false).await,
        EcrOp::DeleteLifecyclePolicy => ecr.get_lifecycle_policy(ctx, &v, true).await,
        EcrOp::StartLifecyclePolicyPreview => ecr.start_lifecycle_preview(ctx, &v).await,
        EcrOp::GetLifecyclePolicyPreview => ecr.get_lifecycle_preview(ctx, &v).await,
        EcrOp::RegisterPullTimeUpdateExclusion => ecr.register_pull_time_update_exclusion(ctx, &v).await,
        EcrOp::DeregisterPullTimeUpdateExclusion => ecr.deregister_pull_time_update_exclusion(ctx, &v).await,
        EcrOp::ListPullTimeUpdateExclusions => ecr.list_pull_time_update_exclusions(ctx, &v).await,
        EcrOp::PutSigningConfiguration => ecr.put_signing_configuration(ctx, &v).await,
        EcrOp::GetSigningConfiguration => ecr.get_signing_configuration(ctx, false).await,
        EcrOp::DeleteSigningConfiguration => ecr.get_signing_configuration(ctx, true).await,
        EcrOp::DescribeImageSigningStatus => ecr.describe_image_signing_status(ctx, &v).await,
        EcrOp::CreatePullThroughCacheRule => ecr.create_pull_through_cache_rule(ctx, &v).await,
        EcrOp::DescribePullThroughCacheRules => ecr.describe_pull_through_cache_rules(ctx, &v).await,
        EcrOp::UpdatePullThroughCacheRule => ecr.update_pull_through_cache_rule(ctx, &v).await,
        EcrOp::DeletePullThroughCacheRule => ecr.delete_pull_through_cache_rule(ctx, &v).await,
        EcrOp::ValidatePullThroughCacheRule => ecr.validate_pull_through_cache_rule(ctx, &v).await,
        EcrOp::UpdateImageStorageClass => ecr.update_image_storage_class(ctx, &v).await,
    }
}

impl Ecr {
    async fn create_repository(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let name = repo_name(v)?;
        check_mutability(v)?;
        check_encryption(v)?;
        let tags = tags_from(v.get("tags"));
        check_tags(&tags)?;
        let settings = with_default_kms_key(settings_from(v), &self.config.region, &account);
        let row = self
            .meta
            .repo_create(&account, name.as_str(), &settings)
            .await?
            .ok_or_else(|| {
                EcrError::new(
                    "RepositoryAlreadyExistsException",
                    format!("The repository with name '{name}' already exists in the registry with id '{account}'"),
                )
            })?;
        if !tags.is_empty() {
            self.control
                .resource_tags_put(&repository_arn(&self.config.region, &account, name.as_str()), &tags)
                .await?;
        }
        Ok(json!({"repository": self.repo_json(ctx, &row)}))
    }

    async fn describe_repositories(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        if let Some(names) = v.get("repositoryNames").and_then(Value::as_array) {
            if v.get("nextToken").is_some() || v.get("maxResults").is_some() {
                return Err(EcrError::invalid_parameter(
                    "maxResults and nextToken cannot be used together with repositoryNames",
                ));
            }
            let mut out = Vec::new();
            for n in names {
                let n = n.as_str().unwrap_or_default();
                let row = self
                    .meta
                    .repo_get(&account, n)
                    .await?
                    .ok_or_else(|| EcrError::repository_not_found(n, &account))?;
                out.push(self.repo_json(ctx, &row));
            }
            return Ok(json!({"repositories": out}));
        }
        let limit = max_results(v, 100);
        let after = decode_token(v)?;
        let mut rows = self.meta.repo_list_rows(&account, after.as_deref(), limit + 1).await?;
        let next = page(&mut rows, limit, |x| &x.name);
        // Listing shows the repositories the caller may describe.
        let decider = self.caller_decider(&ctx.caller, ctx.source_ip).await?;
        let mut visible = Vec::with_capacity(rows.len());
        for r in rows {
            let access = Access::repository("ecr:DescribeRepositories", &self.config.region, &account, &r.name);
            if decider.check(&access).await?.is_ok() {
                visible.push(r);
            }
        }
        let rows = visible;
        let mut out = json!({"repositories": rows.iter().map(|r| self.repo_json(ctx, r)).collect::<Vec<_>>()});
        with_next(&mut out, next);
        Ok(out)
    }

    async fn delete_repository(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let name = repo_name(v)?;
        let row = self.require_repo(&account, &name).await?;
        let force = v.get("force").and_then(Value::as_bool).unwrap_or(false);
        match self.meta.repo_delete(row.id, force).await? {
            kura_store::meta::DeleteRepo::NotEmpty => Err(EcrError::new(
                "RepositoryNotEmptyException",
                format!("The repository with name '{name}' in registry with id '{account}' cannot be deleted because it still contains images"),
            )),
            kura_store::meta::DeleteRepo::Deleted => {
                let arn = repository_arn(&self.config.region, &account, name.as_str());
                let keys: Vec<String> = self.control.resource_tags(&arn).await?.into_iter().map(|(k, _)| k).collect();
                self.control.resource_tags_remove(&arn, &keys).await?;
                self.iam.resource_policy_delete(&arn).await?;
                Ok(json!({"repository": self.repo_json(ctx, &row)}))
            }
        }
    }

    async fn list_images(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (_, _, repo) = self.target(ctx, v).await?;
        let status = tag_status(v.pointer("/filter/tagStatus").and_then(Value::as_str));
        let image_status = kura_images::image_status_filter(v.pointer("/filter/imageStatus").and_then(Value::as_str));
        let limit = max_results(v, 100) as usize;
        // maxResults counts image ids (one per tag), so a page may end inside
        // an image's tags: the token is "<digest>\n<last tag>" then.
        let (mut after, resume_tag) = match decode_token(v)? {
            Some(t) => match t.split_once('\n') {
                Some((d, tag)) => (Some(d.to_string()), Some(tag.to_string())),
                None => (Some(t), None),
            },
            None => (None, None),
        };
        let mut ids: Vec<(String, Option<String>)> = Vec::new();
        if let (Some(d), Some(tag)) = (&after, &resume_tag) {
            if let Some(img) = self.meta.image_get(repo.id, d).await? {
                ids.extend(
                    img.tags
                        .iter()
                        .filter(|t| *t > tag)
                        .map(|t| (img.digest.clone(), Some(t.clone()))),
                );
            }
        }
        // Fetch images until the page overflows or the repository ends.
        while ids.len() <= limit {
            let batch = self
                .meta
                .image_list_in(repo.id, status, image_status, after.as_deref(), limit as i64 + 1)
                .await?;
            for img in &batch {
                if img.tags.is_empty() {
                    ids.push((img.digest.clone(), None));
                }
                ids.extend(img.tags.iter().map(|t| (img.digest.clone(), Some(t.clone()))));
            }
            match batch.last() {
                Some(l) if batch.len() == limit + 1 => after = Some(l.digest.clone()),
                _ => break,
            }
        }
        let next = if ids.len() > limit {
            ids.truncate(limit);
            ids.last().map(|(d, t)| {
                encode_token(&match t {
                    Some(t) => format!("{d}\n{t}"),
                    None => d.clone(),
                })
            })
        } else {
            None
        };
        let ids: Vec<Value> = ids.iter().map(|(d, t)| image_id(Some(d), t.as_deref())).collect();
        let mut out = json!({"imageIds": ids});
        with_next(&mut out, next);
        Ok(out)
    }

    /// Resolve an `ImageIdentifier` to a digest, or the failure ECR reports.
    async fn resolve(&self, repo: i64, id: &Value) -> EcrResult<Result<String, (&'static str, String)>> {
        kura_images::resolve(self.meta.as_ref(), repo, id).await
    }

    /// The shared image and layer operations' view of a repository.
    fn image_target<'a>(
        &'a self,
        account: &'a str,
        name: &'a RepoName,
        repo: &'a RepoRow,
        actor: &'a kura_registry::Actor,
    ) -> kura_images::Target<'a> {
        kura_images::Target {
            registry: &self.registry,
            account,
            name,
            repo,
            actor,
        }
    }

    async fn describe_images(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let actor = ctx.actor();
        let (imgs, next) = self
            .image_target(&account, &name, &repo, &actor)
            .describe_images(v)
            .await?;
        let mut details: Vec<Value> = imgs.iter().map(|i| image_detail(&account, name.as_str(), i)).collect();
        self.attach_scan_status(repo.id, &mut details).await?;
        let mut out = json!({ "imageDetails": details });
        with_next(&mut out, next);
        Ok(out)
    }

    async fn batch_get_image(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let accepted: Option<Vec<&str>> = v
            .get("acceptedMediaTypes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect());
        let mut images = Vec::new();
        let mut failures = Vec::new();
        for id in v["imageIds"].as_array().into_iter().flatten() {
            let digest = match self.resolve(repo.id, id).await? {
                Ok(d) => d,
                Err((code, reason)) => {
                    failures.push(image_failure(id, code, reason));
                    continue;
                }
            };
            let m = match self
                .registry
                .get_manifest(&account, &name, &digest, Some(&ctx.actor()))
                .await
            {
                Ok(m) => m,
                Err(kura_registry::error::RegistryError::ImageArchived { status, .. }) => {
                    failures.push(kura_images::archived_failure(id, status));
                    continue;
                }
                Err(e) => return Err(map_registry_error(e, &account, name.as_str())),
            };
            if let Some(acc) = &accepted {
                if !acc.contains(&m.media_type.as_str()) {
                    failures.push(image_failure(
                        id,
                        "ImageNotFound",
                        format!(
                            "The image's media type {} is not among the accepted media types",
                            m.media_type
                        ),
                    ));
                    continue;
                }
            }
            let manifest = String::from_utf8(m.body).map_err(|_| EcrError::server())?;
            images.push(json!({
                "registryId": account,
                "repositoryName": name.as_str(),
                "imageId": image_id(Some(&m.digest), s(id, "imageTag")),
                "imageManifest": manifest,
                "imageManifestMediaType": m.media_type,
            }));
        }
        Ok(json!({"images": images, "failures": failures}))
    }

    async fn put_image(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let actor = ctx.actor();
        self.image_target(&account, &name, &repo, &actor).put_image(v).await
    }

    async fn batch_delete_image(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let actor = ctx.actor();
        self.image_target(&account, &name, &repo, &actor)
            .batch_delete_image(v)
            .await
    }

    async fn get_authorization_token(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let ids: Vec<String> = match v.get("registryIds").and_then(Value::as_array) {
            Some(a) => a.iter().filter_map(Value::as_str).map(String::from).collect(),
            None => vec![ctx.account.clone()],
        };
        let mut data = Vec::new();
        for account in ids {
            let (token, expires) = self.issue_token(&ctx.caller, &account);
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{token}"));
            data.push(json!({
                "authorizationToken": encoded,
                "expiresAt": expires as f64,
                "proxyEndpoint": format!("{}://{}", ctx.scheme, self.registry_host(ctx, &account)),
            }));
        }
        Ok(json!({"authorizationData": data}))
    }

    async fn put_image_tag_mutability(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let name = repo_name(v)?;
        check_mutability(v)?;
        let repo = self.require_repo(&account, &name).await?;
        let mut settings = repo.settings.clone();
        let fresh = settings_from(v);
        settings.image_tag_mutability = fresh.image_tag_mutability;
        settings.mutability_exclusion_filters = fresh.mutability_exclusion_filters;
        self.meta.repo_update_settings(repo.id, &settings).await?;
        let mut out = json!({"registryId": account, "repositoryName": name.as_str(), "imageTagMutability": settings.image_tag_mutability});
        if !settings.mutability_exclusion_filters.is_empty() {
            out["imageTagMutabilityExclusionFilters"] = exclusion_json(&settings);
        }
        Ok(out)
    }

    async fn put_image_scanning_configuration(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let mut settings = repo.settings.clone();
        settings.scan_on_push = v
            .pointer("/imageScanningConfiguration/scanOnPush")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.meta.repo_update_settings(repo.id, &settings).await?;
        Ok(
            json!({"registryId": account, "repositoryName": name.as_str(), "imageScanningConfiguration": {"scanOnPush": settings.scan_on_push}}),
        )
    }

    /// The repository an ARN names, which must exist in the caller's account.
    async fn repo_for_arn(&self, arn: &str) -> EcrResult<(String, String)> {
        let bad = || {
            EcrError::invalid_parameter(
                "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN'",
            )
        };
        let (account, name) = policy::parse_repository_arn(&self.config.region, arn).ok_or_else(bad)?;
        let (account, name) = (account.as_str(), name.as_str());
        self.meta
            .repo_get(account, name)
            .await?
            .ok_or_else(|| EcrError::repository_not_found(name, account))?;
        Ok((account.to_string(), name.to_string()))
    }

    async fn tag_resource(&self, v: &Value, add: bool) -> EcrResult<Value> {
        let arn = s(v, "resourceArn").unwrap_or_default();
        self.repo_for_arn(arn).await?;
        if add {
            let tags = tags_from(v.get("tags"));
            let existing = self.control.resource_tags(arn).await?;
            let mut keys: Vec<&String> = existing.iter().map(|(k, _)| k).collect();
            keys.extend(tags.iter().map(|(k, _)| k));
            keys.sort();
            keys.dedup();
            check_tags(&tags)?;
            if keys.len() > 50 {
                return Err(EcrError::new(
                    "TooManyTagsException",
                    "A resource may have at most 50 tags",
                ));
            }
            self.control.resource_tags_put(arn, &tags).await?;
        } else {
            let keys: Vec<String> = v["tagKeys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect();
            self.control.resource_tags_remove(arn, &keys).await?;
        }
        Ok(json!({}))
    }

    async fn list_tags_for_resource(&self, v: &Value) -> EcrResult<Value> {
        let arn = s(v, "resourceArn").unwrap_or_default();
        self.repo_for_arn(arn).await?;
        let tags = self.control.resource_tags(arn).await?;
        Ok(json!({"tags": tags.into_iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>()}))
    }

    fn template_json(&self, row: &kura_store::control::TemplateRow) -> Value {
        let mut t: Value = serde_json::from_str(&row.body).unwrap_or_else(|_| json!({}));
        t["prefix"] = json!(row.prefix);
        t["createdAt"] = ts(row.created_at);
        t["updatedAt"] = ts(row.updated_at);
        t
    }

    async fn list_image_referrers(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (_, _, repo) = self.target(ctx, v).await?;
        let subject = v
            .pointer("/subjectId/imageDigest")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let types: Option<Vec<String>> = v
            .pointer("/filter/artifactTypes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect());
        let mut refs = self.meta.referrers(repo.id, subject, None).await?;
        if let Some(t) = &types {
            refs.retain(|r| r.artifact_type.as_ref().is_some_and(|a| t.contains(a)));
        }
        let after = decode_token(v)?;
        if let Some(a) = &after {
            refs.retain(|r| &r.digest > a);
        }
        let limit = max_results(v, 50) as usize;
        let more = refs.len() > limit;
        refs.truncate(limit);
        let list: Vec<Value> = refs
            .iter()
            .map(|r| {
                let mut d =
                    json!({"digest": r.digest, "mediaType": r.media_type, "size": r.size, "artifactStatus": "ACTIVE"});
                if let Some(a) = &r.artifact_type {
                    d["artifactType"] = json!(a);
                }
                if let Some(a) = r
                    .annotations
                    .as_deref()
                    .and_then(|a| serde_json::from_str::<Value>(a).ok())
                {
                    d["annotations"] = a;
                }
                d
            })
            .collect();
        let mut out = json!({"referrers": list});
        if more {
            out["nextToken"] = json!(encode_token(&refs.last().unwrap().digest));
        }
        Ok(out)
    }
}

pub mod exclusions;
pub mod later;
mod layers;
mod lifecycle;
pub mod policy;
mod pullthrough;
mod replication;
pub mod scan;
pub mod signing;
mod templates;
