//! ECR Public's image, layer, repository-policy and tag operations. Each
//! acts on a repository ECR Public sees (one with the public mark) of the
//! caller's own registry: the image and layer operations are private ECR's
//! ([`kura_images`]) on it; a repository's policy is kept under its
//! `ecr-public` ARN (where [`Public::authorize_public`] looks for it), its
//! tags too.

use kura_images::Target;

use super::*;

/// `(account, name)` of an ECR Public repository ARN
/// (`arn:aws:ecr-public::<account>:repository/<name>`).
pub(crate) fn parse_repository_arn(arn: &str) -> Option<(String, RepoName)> {
    let rest = arn.strip_prefix("arn:aws:ecr-public::")?;
    let (account, resource) = rest.split_once(':')?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let name = resource.strip_prefix("repository/")?.parse().ok()?;
    Some((account.to_string(), name))
}

/// The account a tag operation's `resourceArn` belongs to, when it is an
/// ECR Public repository ARN (the account the call acts on); `None` for
/// other operations and other ARNs.
pub(crate) fn arn_account(op: &str, v: &Value) -> Option<String> {
    if !matches!(op, "TagResource" | "UntagResource" | "ListTagsForResource") {
        return None;
    }
    parse_repository_arn(str_of(v, "resourceArn")?).map(|(a, _)| a)
}

fn invalid_arn() -> AwsError {
    AwsError::invalid_parameter("Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN'")
}

/// ECR Public's `ImageDetail` (a subset of ECR's members).
fn public_image_detail(account: &str, name: &str, img: &kura_store::meta::ImageRow) -> Value {
    let full = kura_images::image_detail(account, name, img);
    let mut out = Map::new();
    for k in [
        "registryId",
        "repositoryName",
        "imageDigest",
        "imageTags",
        "imageSizeInBytes",
        "imagePushedAt",
        "imageManifestMediaType",
        "artifactMediaType",
    ] {
        if let Some(x) = full.get(k) {
            out.insert(k.to_string(), x.clone());
        }
    }
    Value::Object(out)
}

/// Run one of the operations of this module.
pub(crate) async fn run(p: &Public, ctx: &Ctx, op: &str, v: &Value) -> AwsResult<Value> {
    match op {
        "TagResource" | "UntagResource" | "ListTagsForResource" => return p.public_tags(ctx, op, v).await,
        "SetRepositoryPolicy" | "GetRepositoryPolicy" | "DeleteRepositoryPolicy" => {
            return p.public_repository_policy(ctx, op, v).await
        }
        _ => {}
    }
    let account = ctx.account.clone();
    let name = repo_name(v)?;
    p.authorize_public(ctx, op, &repository_arn(&account, name.as_str()), &account)
        .await?;
    p.require_public(&account, &name).await?;
    let repo = p
        .meta
        .repo_get(&account, name.as_str())
        .await?
        .ok_or_else(|| not_found(name.as_str(), &account))?;
    let actor = ctx.actor();
    let t = Target {
        registry: &p.registry,
        account: &account,
        name: &name,
        repo: &repo,
        actor: &actor,
    };
    match op {
        "BatchCheckLayerAvailability" => t.batch_check_layer_availability(v).await,
        "InitiateLayerUpload" => t.initiate_layer_upload().await,
        "UploadLayerPart" => t.upload_layer_part(v).await,
        "CompleteLayerUpload" => t.complete_layer_upload(v).await,
        "PutImage" => t.put_image(v).await,
        "BatchDeleteImage" => t.batch_delete_image(v).await,
        "DescribeImages" => {
            let (imgs, next) = t.describe_images(v).await?;
            let details: Vec<Value> = imgs
                .iter()
                .map(|i| public_image_detail(&account, name.as_str(), i))
                .collect();
            let mut out = json!({ "imageDetails": details });
            if let Some(n) = next {
                out["nextToken"] = json!(n);
            }
            Ok(out)
        }
        "DescribeImageTags" => p.describe_image_tags(&t, v).await,
        other => Err(AwsError::unknown_operation(other)),
    }
}

impl Public {
    /// `DescribeImageTags`: the repository's tags in byte order, each with
    /// the image it points at. A tag's `createdAt` is its image's push time.
    async fn describe_image_tags(&self, t: &Target<'_>, v: &Value) -> AwsResult<Value> {
        let limit = v.get("maxResults").and_then(Value::as_i64).unwrap_or(100);
        let after = kura_images::decode_token(v)?;
        let mut tags = self.meta.tag_list(t.repo.id, after.as_deref(), limit + 1).await?;
        let mut next = None;
        if tags.len() as i64 > limit {
            tags.truncate(limit as usize);
            next = tags.last().map(|l| kura_images::encode_token(l));
        }
        let mut details = Vec::with_capacity(tags.len());
        for tag in tags {
            // A tag removed since the listing is skipped.
            let Some(digest) = self.meta.tag_get(t.repo.id, &tag).await? else {
                continue;
            };
            let Some(img) = self.meta.image_get(t.repo.id, &digest).await? else {
                continue;
            };
            let mut detail = json!({
                "imageDigest": img.digest,
                "imageSizeInBytes": img.size,
                "imagePushedAt": kura_aws::json::ts(img.pushed_at),
                "imageManifestMediaType": img.media_type,
            });
            if let Some(a) = &img.artifact_type {
                detail["artifactMediaType"] = json!(a);
            }
            details.push(json!({
                "imageTag": tag,
                "createdAt": kura_aws::json::ts(img.pushed_at),
                "imageDetail": detail,
            }));
        }
        let mut out = json!({ "imageTagDetails": details });
        if let Some(n) = next {
            out["nextToken"] = json!(n);
        }
        Ok(out)
    }

    /// `SetRepositoryPolicy`, `GetRepositoryPolicy`, `DeleteRepositoryPolicy`.
    async fn public_repository_policy(&self, ctx: &Ctx, op: &str, v: &Value) -> AwsResult<Value> {
        let account = ctx.account.clone();
        let name = repo_name(v)?;
        let arn = repository_arn(&account, name.as_str());
        self.authorize_public(ctx, op, &arn, &account).await?;
        self.require_public(&account, &name).await?;
        let text = match op {
            "SetRepositoryPolicy" => {
                let text = str_of(v, "policyText").unwrap_or_default();
                kura_authz::check_repository_policy(text, "repository")?;
                self.iam.resource_policy_put(&arn, text).await?;
                Some(text.to_string())
            }
            "GetRepositoryPolicy" => self.iam.resource_policy_get(&arn).await?.map(|r| r.policy),
            _ => self.iam.resource_policy_delete(&arn).await?.map(|r| r.policy),
        };
        let text = text.ok_or_else(|| {
            AwsError::new(
                "RepositoryPolicyNotFoundException",
                format!("Repository policy does not exist for the repository with name '{name}' in the registry with id '{account}'"),
            )
        })?;
        Ok(json!({"registryId": account, "repositoryName": name.as_str(), "policyText": text}))
    }

    /// `TagResource`, `UntagResource`, `ListTagsForResource` on a public
    /// repository's ARN (the pipeline has checked that its account is the
    /// caller's).
    async fn public_tags(&self, ctx: &Ctx, op: &str, v: &Value) -> AwsResult<Value> {
        let arn = str_of(v, "resourceArn").unwrap_or_default();
        let (account, name) = parse_repository_arn(arn).ok_or_else(invalid_arn)?;
        let tags = kura_aws::json::tags_from(v.get("tags"));
        let mut access = Access::resource(&format!("ecr-public:{op}"), arn, &account);
        access.policy_arn = Some(arn.to_string());
        access.tags_arn = Some(arn.to_string());
        if op == "TagResource" {
            access = access.with_request_tags(&tags);
        }
        self.authorize(&ctx.caller, &access, ctx.source_ip).await?;
        self.require_public(&account, &name).await?;
        match op {
            "TagResource" => {
                check_tags(&tags)?;
                let mut keys: Vec<String> = self
                    .control
                    .resource_tags(arn)
                    .await?
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                keys.extend(tags.iter().map(|(k, _)| k.clone()));
                keys.sort();
                keys.dedup();
                check_tags(&keys.into_iter().map(|k| (k, String::new())).collect::<Vec<_>>())?;
                self.control.resource_tags_put(arn, &tags).await?;
                Ok(json!({}))
            }
            "UntagResource" => {
                let keys: Vec<String> = v["tagKeys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect();
                self.control.resource_tags_remove(arn, &keys).await?;
                Ok(json!({}))
            }
            _ => {
                let tags = self.control.resource_tags(arn).await?;
                Ok(json!({"tags": tags.into_iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>()}))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_arns() {
        let (a, n) = parse_repository_arn("arn:aws:ecr-public::123456789012:repository/team/app").unwrap();
        assert_eq!((a.as_str(), n.as_str()), ("123456789012", "team/app"));
        for bad in [
            "arn:aws:ecr:us-east-1:123456789012:repository/app",
            "arn:aws:ecr-public:us-east-1:123456789012:repository/app",
            "arn:aws:ecr-public::12345678901:repository/app",
            "arn:aws:ecr-public::123456789012:registry/123456789012",
            "arn:aws:ecr-public::123456789012:repository/Bad",
            "not an arn",
        ] {
            assert!(parse_repository_arn(bad).is_none(), "{bad}");
        }
        assert_eq!(
            arn_account(
                "TagResource",
                &json!({"resourceArn": "arn:aws:ecr-public::210987654321:repository/x1"})
            ),
            Some("210987654321".to_string())
        );
        assert_eq!(
            arn_account(
                "PutImage",
                &json!({"resourceArn": "arn:aws:ecr-public::210987654321:repository/x1"})
            ),
            None
        );
    }
}
