//! ECR's image and layer operations on one repository, shared by the ECR
//! API (`kura-ecr`) and ECR Public's (`kura-public`): availability checks,
//! layer uploads in parts, `PutImage`, `BatchDeleteImage`, the image
//! selection of `DescribeImages`, and the mapping of the registry service's
//! errors to ECR's. Both APIs resolve and authorize the repository first
//! (each its own way), then call these with a [`Target`]; the answers are in
//! the members both models share.

use base64::Engine;
use futures::stream;
use kura_aws::{AwsError, AwsResult};
use kura_oci::{Digest, RepoName};
use kura_registry::error::{Invalid, RegistryError};
use kura_registry::service::{DeleteCause, StartOutcome};
use kura_registry::{Actor, Registry};
use kura_store::meta::{ImageRow, ImageStatus, RepoRow, TagStatus};
use kura_store::MetaStore;
use serde_json::{json, Map, Value};

/// The part size `InitiateLayerUpload` suggests (as ECR: 10 MiB).
pub const PART_SIZE: u64 = 10 * 1024 * 1024;

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// A page token for the key a listing resumes after.
pub fn encode_token(last: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last.as_bytes())
}

/// The key an input's `nextToken` resumes after, or ECR's error for a bad token.
pub fn decode_token(v: &Value) -> AwsResult<Option<String>> {
    match s(v, "nextToken") {
        None => Ok(None),
        Some(t) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(|| {
                AwsError::invalid_parameter(
                    "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid NextToken'",
                )
            }),
    }
}

/// An image id as ECR echoes it.
pub fn image_id(digest: Option<&str>, tag: Option<&str>) -> Value {
    let mut m = Map::new();
    if let Some(d) = digest {
        m.insert("imageDigest".into(), json!(d));
    }
    if let Some(t) = tag {
        m.insert("imageTag".into(), json!(t));
    }
    Value::Object(m)
}

/// One failure of a batch image operation.
pub fn image_failure(id: &Value, code: &str, reason: impl Into<String>) -> Value {
    json!({"imageId": id, "failureCode": code, "failureReason": reason.into()})
}

/// `ImageNotFoundException` for an image id.
pub fn image_not_found(id: &Value, repo: &str, account: &str) -> AwsError {
    AwsError::new(
        "ImageNotFoundException",
        format!(
            "The image with imageId {} does not exist within the repository with name '{repo}' in the registry with id '{account}'",
            render_image_id(id)
        ),
    )
}

/// An image id as ECR's messages render it: both members, quoted, a missing
/// one as `'null'` (`{imageDigest:'null', imageTag:'latest'}`).
pub fn render_image_id(id: &Value) -> String {
    let part = |k: &str| id.get(k).and_then(Value::as_str).unwrap_or("null").to_string();
    format!(
        "{{imageDigest:'{}', imageTag:'{}'}}",
        part("imageDigest"),
        part("imageTag")
    )
}

/// ECR's `ImageDetail` of an image (ECR Public's is a subset of its members).
pub fn image_detail(account: &str, repo: &str, img: &ImageRow) -> Value {
    let mut d = json!({
        "registryId": account,
        "repositoryName": repo,
        "imageDigest": img.digest,
        "imageSizeInBytes": img.size,
        "imagePushedAt": kura_aws::json::ts(img.pushed_at),
        "imageManifestMediaType": img.media_type,
        "imageStatus": img.status.as_str(),
    });
    if let Some(a) = img.archived_at {
        d["lastArchivedAt"] = kura_aws::json::ts(a);
    }
    if let Some(a) = img.activated_at {
        d["lastActivatedAt"] = kura_aws::json::ts(a);
    }
    if !img.tags.is_empty() {
        d["imageTags"] = json!(img.tags);
    }
    if let Some(a) = &img.artifact_type {
        d["artifactMediaType"] = json!(a);
    }
    if let Some(p) = img.last_pulled_at {
        d["lastRecordedPullTime"] = kura_aws::json::ts(p);
    }
    if let Some(sub) = &img.subject {
        d["subjectManifestDigest"] = json!(sub);
    }
    d
}

/// The listing filter of a `filter.tagStatus`.
pub fn tag_status(s: Option<&str>) -> TagStatus {
    match s {
        Some("TAGGED") => TagStatus::Tagged,
        Some("UNTAGGED") => TagStatus::Untagged,
        _ => TagStatus::Any,
    }
}

/// The storage status a listing's `filter.imageStatus` wants: ACTIVE when
/// absent (ECR lists only active images unless asked), none for `ANY`.
pub fn image_status_filter(s: Option<&str>) -> Option<ImageStatus> {
    match s {
        Some("ANY") => None,
        Some(other) => Some(ImageStatus::parse(other).unwrap_or(ImageStatus::Active)),
        None => Some(ImageStatus::Active),
    }
}

/// The failure a pull of a non-active image reports in a batch (as
/// `BatchGetImage`'s `failures`): ECR's `ImageInaccessible`.
pub fn archived_failure(id: &Value, status: ImageStatus) -> Value {
    let reason = match status {
        ImageStatus::Activating => "The image is being restored from the archive storage class and cannot be pulled until the restore completes",
        _ => "The image is archived and cannot be pulled; restore it with UpdateImageStorageClass (targetStorageClass STANDARD) first",
    };
    image_failure(id, "ImageInaccessible", reason)
}

/// Resolve an `ImageIdentifier` to a digest in a repository, or the failure
/// (code, reason) ECR reports for it.
pub async fn resolve(meta: &dyn MetaStore, repo: i64, id: &Value) -> AwsResult<Result<String, (&'static str, String)>> {
    let digest = s(id, "imageDigest");
    let tag = s(id, "imageTag");
    if let Some(d) = digest {
        if d.parse::<Digest>().is_err() {
            return Ok(Err((
                "InvalidImageDigest",
                "Invalid request parameters: image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'"
                    .into(),
            )));
        }
    }
    match (digest, tag) {
        (None, None) => Ok(Err((
            "MissingDigestAndTag",
            "Invalid request parameters: both tag and digest cannot be null".into(),
        ))),
        (Some(d), None) => Ok(match meta.image_get(repo, d).await? {
            Some(_) => Ok(d.to_string()),
            None => Err(("ImageNotFound", "Requested image not found".into())),
        }),
        (_, Some(t)) => {
            let found = meta.tag_get(repo, t).await?;
            Ok(match (found, digest) {
                (None, _) => Err(("ImageNotFound", "Requested image not found".into())),
                (Some(f), Some(d)) if f != d => Err((
                    "ImageTagDoesNotMatchDigest",
                    format!("Invalid request parameters: given tag '{t}' does not match the given digest"),
                )),
                (Some(f), _) => Ok(f),
            })
        }
    }
}

/// ECR's error for a registry service error met by an API operation.
pub fn map_registry_error(e: RegistryError, account: &str, repo: &str) -> AwsError {
    let message = e.to_string();
    match e {
        RegistryError::RepositoryUnknown { .. } => AwsError::repository_not_found(repo, account),
        RegistryError::UploadUnknown { .. } => AwsError::new(
            "UploadNotFoundException",
            format!("The upload could not be found in the repository with name '{repo}' in the registry with id '{account}'"),
        ),
        RegistryError::UploadOffset { .. }
        | RegistryError::RangeUnsatisfiable { .. }
        | RegistryError::Invalid {
            what: Invalid::Size | Invalid::BlobUpload,
            ..
        } => AwsError::new("InvalidLayerPartException", message),
        RegistryError::DigestMismatch { .. }
        | RegistryError::Invalid {
            what: Invalid::Digest, ..
        } => AwsError::new("InvalidLayerException", message),
        RegistryError::ManifestUnknown { .. } => AwsError::new("ImageNotFoundException", message),
        RegistryError::LimitExceeded { .. } => AwsError::new("LimitExceededException", message),
        RegistryError::ImageArchived { .. } => AwsError::new("ImageArchivedException", message),
        RegistryError::Store(e) => AwsError::from(e),
        // Storage full: ServerException with 503, which the AWS SDKs retry.
        RegistryError::Unavailable => {
            AwsError::new("ServerException", message).with_status(http::StatusCode::SERVICE_UNAVAILABLE)
        }
        // A pull-through cache repository whose upstream failed.
        RegistryError::Upstream { .. } => AwsError::new("UnableToGetUpstreamImageException", message),
        RegistryError::BlobUnknown { .. }
        | RegistryError::TagImmutable { .. }
        | RegistryError::ReferencedBy { .. }
        | RegistryError::MissingReferences { .. }
        | RegistryError::ManifestTooLarge { .. }
        | RegistryError::Invalid { .. } => AwsError::invalid_parameter(message),
    }
}

/// ECR's error for a failed `PutImage`.
pub fn map_put_error(e: RegistryError, account: &str, repo: &str) -> AwsError {
    match e {
        RegistryError::TagImmutable { tag, .. } => AwsError::new(
            "ImageTagAlreadyExistsException",
            format!(
                "The image tag '{tag}' already exists in the '{repo}' repository and cannot be overwritten because the repository is immutable."
            ),
        ),
        RegistryError::MissingReferences { blobs, .. } if !blobs.is_empty() => AwsError::new(
            "LayersNotFoundException",
            format!("Layers with digests '{blobs:?}' required for pushing image into repository with name '{repo}' in the registry with id '{account}' do not exist"),
        ),
        e @ RegistryError::MissingReferences { .. } => {
            AwsError::new("ReferencedImagesNotFoundException", e.to_string())
        }
        e @ RegistryError::Invalid {
            what: Invalid::Manifest | Invalid::Tag | Invalid::Digest,
            ..
        } => AwsError::invalid_parameter(format!(
            "Invalid parameter at 'imageManifest' failed to satisfy constraint: '{e}'"
        )),
        RegistryError::ManifestTooLarge { .. } => AwsError::invalid_parameter("Invalid parameter at 'imageManifest' failed to satisfy constraint: 'Member must have length less than or equal to 4194304'"),
        e => map_registry_error(e, account, repo),
    }
}

/// One existing repository an operation acts on, resolved and authorized
/// by the API that calls, and who acts.
pub struct Target<'a> {
    /// The registry service.
    pub registry: &'a Registry,
    /// The registry (account) of the repository.
    pub account: &'a str,
    /// Its name.
    pub name: &'a RepoName,
    /// Its row.
    pub repo: &'a RepoRow,
    /// Who acts (the image events' actor).
    pub actor: &'a Actor,
}

impl Target<'_> {
    fn meta(&self) -> &dyn MetaStore {
        self.registry.meta().as_ref()
    }

    fn registry_error(&self, e: RegistryError) -> AwsError {
        map_registry_error(e, self.account, self.name.as_str())
    }

    /// Resolve an image id in this repository (see [`resolve`]).
    pub async fn resolve(&self, id: &Value) -> AwsResult<Result<String, (&'static str, String)>> {
        resolve(self.meta(), self.repo.id, id).await
    }

    /// `BatchCheckLayerAvailability`.
    pub async fn batch_check_layer_availability(&self, v: &Value) -> AwsResult<Value> {
        let mut layers = Vec::new();
        let mut failures = Vec::new();
        for d in v["layerDigests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if d.parse::<Digest>().is_err() {
                failures.push(json!({"layerDigest": d, "failureCode": "InvalidLayerDigest", "failureReason": "Invalid layer digest"}));
                continue;
            }
            match self.meta().blob_get(self.repo.id, d).await? {
                Some(b) => {
                    // Like a HEAD: the caller may now reference it without uploading.
                    self.meta().blob_touch(self.repo.id, d, kura_store::now_millis()).await?;
                    layers.push(json!({"layerDigest": d, "layerAvailability": "AVAILABLE", "layerSize": b.size}))
                }
                None => failures.push(json!({"layerDigest": d, "failureCode": "MissingLayerDigest", "failureReason": "Could not find layer with digest"})),
            }
        }
        Ok(json!({"layers": layers, "failures": failures}))
    }

    /// `InitiateLayerUpload`.
    pub async fn initiate_layer_upload(&self) -> AwsResult<Value> {
        let out = self
            .registry
            .start_upload(
                self.account,
                self.name,
                None,
                None,
                self.actor,
                Box::pin(stream::empty()),
            )
            .await
            .map_err(|e| self.registry_error(e))?;
        match out {
            StartOutcome::Started(st) => Ok(json!({"uploadId": st.id, "partSize": PART_SIZE})),
            StartOutcome::Created(_) => Err(AwsError::server()),
        }
    }

    /// `UploadLayerPart`: the part must be where the upload stands
    /// (`partFirstByte` its offset) and as long as its byte range says.
    pub async fn upload_layer_part(&self, v: &Value) -> AwsResult<Value> {
        let id = s(v, "uploadId").unwrap_or_default();
        let first = v["partFirstByte"].as_i64().unwrap_or(0) as u64;
        let last = v["partLastByte"].as_i64().unwrap_or(0) as u64;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(s(v, "layerPartBlob").unwrap_or_default())
            .map_err(|_| AwsError::serialization("layerPartBlob is not base64"))?;
        if last < first || (last - first + 1) as usize != blob.len() {
            return Err(AwsError::new(
                "InvalidLayerPartException",
                format!(
                    "The part is {} bytes but partFirstByte {first} and partLastByte {last} describe {} bytes",
                    blob.len(),
                    (last + 1).saturating_sub(first)
                ),
            ));
        }
        let body = Box::pin(stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(blob))]));
        let st = self
            .registry
            .patch_upload(self.account, self.name, id, Some((first, last)), None, body)
            .await
            .map_err(|e| self.registry_error(e))?;
        Ok(json!({
            "registryId": self.account,
            "repositoryName": self.name.as_str(),
            "uploadId": id,
            "lastByteReceived": st.offset.saturating_sub(1),
        }))
    }

    /// `CompleteLayerUpload` (one digest: the layer's).
    pub async fn complete_layer_upload(&self, v: &Value) -> AwsResult<Value> {
        let (account, name) = (self.account, self.name);
        let id = s(v, "uploadId").unwrap_or_default();
        let digest = v["layerDigests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .next()
            .unwrap_or_default();
        let status = self
            .registry
            .upload_status(account, name, id)
            .await
            .map_err(|e| self.registry_error(e))?;
        if status.offset == 0 {
            return Err(AwsError::new(
                "EmptyUploadException",
                format!("The upload with id '{id}' does not contain any layer parts"),
            ));
        }
        if self.meta().blob_get(self.repo.id, digest).await?.is_some() {
            let _ = self.registry.cancel_upload(account, name, id).await;
            return Err(AwsError::new(
                "LayerAlreadyExistsException",
                format!("The layer with digest '{digest}' already exists in the repository with name '{name}' in registry with id '{account}'"),
            ));
        }
        let d = self
            .registry
            .finish_upload(account, name, id, digest, None, None)
            .await
            .map_err(|e| self.registry_error(e))?;
        Ok(json!({"registryId": account, "repositoryName": name.as_str(), "uploadId": id, "layerDigest": d.as_str()}))
    }

    /// `PutImage`.
    pub async fn put_image(&self, v: &Value) -> AwsResult<Value> {
        let (account, name) = (self.account, self.name);
        let manifest = s(v, "imageManifest").unwrap_or_default().as_bytes().to_vec();
        let tag = s(v, "imageTag");
        let computed = match s(v, "imageDigest") {
            Some(d) => {
                let want: Digest = d.parse().map_err(|_| {
                    AwsError::invalid_parameter(format!(
                        "Invalid parameter at 'imageDigest' failed to satisfy constraint: '{d} is not a valid digest'"
                    ))
                })?;
                let actual = Digest::of(want.algorithm(), &manifest);
                if actual != want {
                    return Err(AwsError::new(
                        "ImageDigestDoesNotMatchException",
                        format!("Provided digest {want} does not match the digest of the manifest: {actual}"),
                    ));
                }
                actual
            }
            None => Digest::sha256(&manifest),
        };
        let exists = self.meta().image_get(self.repo.id, computed.as_str()).await?.is_some();
        let already = match tag {
            Some(t) => self.meta().tag_get(self.repo.id, t).await?.as_deref() == Some(computed.as_str()),
            None => exists,
        };
        if already {
            return Err(AwsError::new(
                "ImageAlreadyExistsException",
                format!(
                    "Image with digest '{computed}'{} already exists in the repository with name '{name}' in registry with id '{account}'",
                    tag.map(|t| format!(" and tag '{t}'")).unwrap_or_default()
                ),
            ));
        }
        let reference = tag.map(String::from).unwrap_or_else(|| computed.to_string());
        let out = self
            .registry
            .put_manifest(
                account,
                name,
                &reference,
                &[],
                s(v, "imageManifestMediaType"),
                manifest.clone(),
                self.actor,
            )
            .await
            .map_err(|e| map_put_error(e, account, name.as_str()))?;
        let media = self
            .meta()
            .image_get(self.repo.id, out.digest.as_str())
            .await?
            .map(|i| i.media_type)
            .unwrap_or_default();
        Ok(json!({"image": {
            "registryId": account,
            "repositoryName": name.as_str(),
            "imageId": image_id(Some(out.digest.as_str()), tag),
            "imageManifest": String::from_utf8_lossy(&manifest),
            "imageManifestMediaType": media,
        }}))
    }

    /// `BatchDeleteImage`: an id with only a tag untags (the image goes with
    /// its last tag); an id with a digest deletes the image and its tags.
    pub async fn batch_delete_image(&self, v: &Value) -> AwsResult<Value> {
        let (account, name) = (self.account, self.name);
        let mut deleted = Vec::new();
        let mut failures = Vec::new();
        for id in v["imageIds"].as_array().into_iter().flatten() {
            let digest = match self.resolve(id).await? {
                Ok(d) => d,
                Err((code, reason)) => {
                    failures.push(image_failure(id, code, reason));
                    continue;
                }
            };
            match s(id, "imageTag") {
                Some(t) if s(id, "imageDigest").is_none() => {
                    match self.registry.untag(account, name, t, true, self.actor).await {
                        Ok(_) => deleted.push(image_id(Some(&digest), Some(t))),
                        // Untagged in between: as if resolved to nothing.
                        Err(RegistryError::ManifestUnknown { .. }) => {
                            failures.push(image_failure(id, "ImageNotFound", "Requested image not found"))
                        }
                        Err(e) => return Err(self.registry_error(e)),
                    }
                }
                _ => match self
                    .registry
                    .delete_image(account, name, &digest, DeleteCause::Request, self.actor)
                    .await
                {
                    Ok(tags) => {
                        if tags.is_empty() {
                            deleted.push(image_id(Some(&digest), None));
                        }
                        for t in &tags {
                            deleted.push(image_id(Some(&digest), Some(t)));
                        }
                    }
                    Err(RegistryError::ManifestUnknown { .. }) => {
                        failures.push(image_failure(id, "ImageNotFound", "Requested image not found"))
                    }
                    Err(RegistryError::ReferencedBy { parents, .. }) => failures.push(image_failure(
                        id,
                        "ImageReferencedByManifestList",
                        format!("Requested image is referenced by manifest list {}", parents.join(", ")),
                    )),
                    Err(e) => return Err(self.registry_error(e)),
                },
            }
        }
        Ok(json!({"imageIds": deleted, "failures": failures}))
    }

    /// The images `DescribeImages` answers: those its `imageIds` name (each
    /// once; `ImageNotFoundException` for one that is not there), else a page
    /// of the repository's (`filter.tagStatus`, `filter.imageStatus` — only
    /// ACTIVE images unless it says otherwise —, `maxResults`, `nextToken`),
    /// with the next page's token. Images named by id are answered whatever
    /// their storage status, so a restore can be watched by tag or digest.
    pub async fn describe_images(&self, v: &Value) -> AwsResult<(Vec<ImageRow>, Option<String>)> {
        let (account, name) = (self.account, self.name.as_str());
        if let Some(ids) = v.get("imageIds").and_then(Value::as_array) {
            let mut out: Vec<ImageRow> = Vec::new();
            for id in ids {
                match self.resolve(id).await? {
                    Ok(d) => {
                        if let Some(img) = self.meta().image_get(self.repo.id, &d).await? {
                            if !out.iter().any(|o| o.digest == img.digest) {
                                out.push(img);
                            }
                        }
                    }
                    Err(("ImageNotFound", _)) => return Err(image_not_found(id, name, account)),
                    Err((_, reason)) => return Err(AwsError::invalid_parameter(reason)),
                }
            }
            return Ok((out, None));
        }
        let status = tag_status(v.pointer("/filter/tagStatus").and_then(Value::as_str));
        let image_status = image_status_filter(v.pointer("/filter/imageStatus").and_then(Value::as_str));
        let limit = v.get("maxResults").and_then(Value::as_i64).unwrap_or(100);
        let after = decode_token(v)?;
        let mut imgs = self
            .meta()
            .image_list_in(self.repo.id, status, image_status, after.as_deref(), limit + 1)
            .await?;
        let mut next = None;
        if imgs.len() as i64 > limit {
            imgs.truncate(limit as usize);
            next = imgs.last().map(|i| encode_token(&i.digest));
        }
        Ok((imgs, next))
    }
}
