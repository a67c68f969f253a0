//! Manifests, tags and referrers: pushing, reading and deleting manifests
//! (with their tags) and listing what points at them.

use super::*;

impl Registry {
    /// PUT a manifest under a tag or digest, plus extra `tags`.
    pub async fn put_manifest(
        &self,
        account: &str,
        name: &RepoName,
        reference: &str,
        extra_tags: &[String],
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> ApiResult<PutManifestOutcome> {
        let reference = parse_reference(reference)?;
        let mut tags = Vec::new();
        for t in extra_tags {
            let tag: Tag = t.parse().map_err(|m: String| ApiError::new(ErrorCode::TagInvalid, m))?;
            tags.push(tag.to_string());
        }
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(too_large(body.len()));
        }
        let info = manifest::inspect(&body, content_type)
            .map_err(|e| ApiError::new(ErrorCode::ManifestInvalid, e.to_string()))?;
        let digest = match &reference {
            Reference::Digest(d) => {
                let actual = Digest::of(d.algorithm(), &body);
                if &actual != d {
                    return Err(ApiError::new(
                        ErrorCode::DigestInvalid,
                        format!("manifest body has digest {actual}, not {d}"),
                    ));
                }
                actual
            }
            Reference::Tag(t) => {
                tags.insert(0, t.to_string());
                Digest::sha256(&body)
            }
        };
        tags.dedup();
        let repo = self.repo_for_push(account, name).await?;
        let new = NewManifest {
            digest: digest.to_string(),
            media_type: info.media_type.clone(),
            artifact_type: info.artifact_type.clone(),
            subject: info.subject.as_ref().map(|s| s.to_string()),
            annotations: info.annotations.as_ref().and_then(|a| serde_json::to_string(a).ok()),
            body,
            blobs: info.blobs.iter().map(|d| d.to_string()).collect(),
            children: info.children.iter().map(|d| d.to_string()).collect(),
        };
        let writes: Vec<TagWrite> = tags
            .iter()
            .map(|t| TagWrite {
                name: t.clone(),
                immutable: repo.settings.tag_is_immutable(t),
            })
            .collect();
        match self.meta.manifest_put(repo.id, &new, &writes).await {
            Ok(()) => {
                if let Some(o) = self.observer.get() {
                    o.manifest_pushed(&repo, digest.as_str(), &info.media_type);
                }
                Ok(PutManifestOutcome {
                    digest,
                    subject: info.subject,
                })
            }
            Err(PutManifestError::TagImmutable(tag)) => Err(ApiError::new(
                ErrorCode::TagInvalid,
                format!(
                    "The image tag '{tag}' already exists in the '{name}' repository and cannot be overwritten because the repository is immutable."
                ),
            )
            .detail(serde_json::json!({ "immutableTag": tag }))),
            Err(PutManifestError::MissingReferences { blobs, manifests }) => {
                let first = blobs
                    .first()
                    .or(manifests.first())
                    .cloned()
                    .unwrap_or_default();
                Err(ApiError::new(
                    ErrorCode::ManifestBlobUnknown,
                    format!("manifest references {first}, which is not in repository {name}"),
                )
                .detail(serde_json::json!({ "blobs": blobs, "manifests": manifests })))
            }
            Err(PutManifestError::Store(e)) => Err(e.into()),
        }
    }

    /// GET/HEAD a manifest.
    /// `pull` records the pull time (GET, not HEAD), off the request path.
    pub async fn get_manifest(
        &self,
        account: &str,
        name: &RepoName,
        reference: &str,
        pull: bool,
    ) -> ApiResult<ManifestRow> {
        // A reference that cannot exist is simply unknown to a reader (404).
        let reference = parse_reference(reference).map_err(|e| {
            if e.error.code == ErrorCode::TagInvalid {
                ApiError::new(ErrorCode::ManifestUnknown, e.error.message)
            } else {
                e
            }
        })?;
        let repo = self.repo(account, name).await?;
        let key = match &reference {
            Reference::Tag(t) => ManifestKey::Tag(t.as_str()),
            Reference::Digest(d) => ManifestKey::Digest(d.as_str()),
        };
        let row = self.meta.manifest_get(repo, key).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::ManifestUnknown,
                format!("manifest {reference} is not in repository {name}"),
            )
        })?;
        if pull && self.pulls.due(repo, &row.digest, kura_store::now_millis()) {
            let (meta, digest) = (self.meta.clone(), row.digest.clone());
            tokio::spawn(async move {
                if let Err(e) = meta.manifest_touch_pull(repo, &digest, kura_store::now_millis()).await {
                    tracing::warn!(error = %e, "could not record a pull time");
                }
            });
        }
        Ok(row)
    }

    /// DELETE a manifest by digest (with its tags) or a tag (keeping the manifest).
    pub async fn delete_manifest(&self, account: &str, name: &RepoName, reference: &str) -> ApiResult<()> {
        let reference = parse_reference(reference)?;
        let repo = self.repo(account, name).await?;
        match reference {
            Reference::Tag(t) => {
                if self.meta.tag_delete(repo, t.as_str()).await? {
                    Ok(())
                } else {
                    Err(ApiError::new(
                        ErrorCode::ManifestUnknown,
                        format!("tag {t} is not in repository {name}"),
                    ))
                }
            }
            Reference::Digest(d) => match self.meta.manifest_delete(repo, d.as_str()).await? {
                DeleteManifest::Deleted => Ok(()),
                DeleteManifest::Unknown => Err(ApiError::new(
                    ErrorCode::ManifestUnknown,
                    format!("manifest {d} is not in repository {name}"),
                )),
                DeleteManifest::ReferencedBy(parents) => Err(ApiError::new(
                    ErrorCode::Denied,
                    format!(
                        "manifest {d} is referenced by manifest list {}; delete that first",
                        parents[0]
                    ),
                )
                .detail(serde_json::json!({ "referencedBy": parents }))
                .status(http::StatusCode::CONFLICT)),
            },
        }
    }

    // ----- listings ----------------------------------------------------------

    /// Tags of a repository: up to `n` after `last`; the bool says whether more follow.
    pub async fn list_tags(
        &self,
        account: &str,
        name: &RepoName,
        n: Option<u32>,
        last: Option<&str>,
    ) -> ApiResult<(Vec<String>, bool)> {
        let repo = self.repo(account, name).await?;
        let limit = n.map(|n| n as i64).unwrap_or(i64::MAX - 1);
        if limit == 0 {
            return Ok((Vec::new(), false));
        }
        let mut tags = self.meta.tag_list(repo, last, limit + 1).await?;
        let more = tags.len() as i64 > limit;
        tags.truncate(limit as usize);
        Ok((tags, more))
    }

    /// Manifests whose subject is `digest`, optionally filtered by artifact type.
    pub async fn referrers(
        &self,
        account: &str,
        name: &RepoName,
        digest: &str,
        artifact_type: Option<&str>,
    ) -> ApiResult<Vec<Referrer>> {
        let digest = digest_param(digest)?;
        match self.meta.repo_get(account, name.as_str()).await? {
            Some(repo) => Ok(self.meta.referrers(repo.id, digest.as_str(), artifact_type).await?),
            None => Ok(Vec::new()),
        }
    }
}

fn parse_reference(s: &str) -> ApiResult<Reference> {
    Reference::parse(s).map_err(|e| match e {
        kura_oci::name::ReferenceError::Digest(d) => {
            ApiError::new(ErrorCode::DigestInvalid, format!("invalid digest {s:?}: {d}"))
        }
        kura_oci::name::ReferenceError::Tag(m) => ApiError::new(ErrorCode::TagInvalid, m),
    })
}
