//! Manifests, tags and referrers: pushing, reading and deleting manifests
//! (with their tags) and listing what points at them.

use super::*;

/// Why an image is deleted: a request (data plane or API), or lifecycle
/// expiry under a rule (then [`EventKind::LifecycleExpired`] follows the
/// [`EventKind::ImageDeleted`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteCause {
    /// A client asked.
    Request,
    /// A lifecycle rule of this priority expired it.
    LifecycleExpiry {
        /// The rule's priority.
        rule_priority: i64,
    },
}

/// What [`Registry::untag`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Untagged {
    /// The manifest the tag pointed at.
    pub digest: String,
    /// The manifest went too (it had no tag left and `drop_untagged` asked).
    pub image_deleted: bool,
}

impl Registry {
    /// PUT a manifest under a tag or digest, plus extra `tags` (the data
    /// plane's PUT and ECR's `PutImage`). Emits [`EventKind::ImagePushed`]
    /// and a [`EventKind::TagChanged`] for every tag it added or moved.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_manifest(
        &self,
        account: &str,
        name: &RepoName,
        reference: &str,
        extra_tags: &[String],
        content_type: Option<&str>,
        body: Vec<u8>,
        actor: &Actor,
    ) -> RegistryResult<PutManifestOutcome> {
        let reference = parse_reference(reference)?;
        let mut tags = Vec::new();
        for t in extra_tags {
            let tag: Tag = t.parse().map_err(|m: String| RegistryError::invalid(Invalid::Tag, m))?;
            tags.push(tag.to_string());
        }
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(too_large(body.len()));
        }
        let info = manifest::inspect(&body, content_type)
            .map_err(|e| RegistryError::invalid(Invalid::Manifest, e.to_string()))?;
        let digest = match &reference {
            Reference::Digest(d) => {
                let actual = Digest::of(d.algorithm(), &body);
                if &actual != d {
                    return Err(RegistryError::invalid(
                        Invalid::Digest,
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
            Ok(moved) => {
                let pushed = EventKind::ImagePushed {
                    digest: digest.to_string(),
                    media_type: info.media_type.clone(),
                    artifact_type: info.artifact_type.clone(),
                    tags,
                };
                self.emit(account, &repo.name, actor, pushed).await;
                for m in moved {
                    let changed = EventKind::TagChanged {
                        tag: m.tag,
                        old_digest: m.old_digest,
                        new_digest: Some(digest.to_string()),
                    };
                    self.emit(account, &repo.name, actor, changed).await;
                }
                Ok(PutManifestOutcome {
                    digest,
                    subject: info.subject,
                })
            }
            Err(PutManifestError::TagImmutable(tag)) => Err(RegistryError::TagImmutable {
                tag,
                repository: name.to_string(),
            }),
            Err(PutManifestError::MissingReferences { blobs, manifests }) => Err(RegistryError::MissingReferences {
                repository: name.to_string(),
                blobs,
                manifests,
            }),
            Err(PutManifestError::Store(e)) => Err(e.into()),
        }
    }

    /// GET/HEAD a manifest. `pull` (GET, not HEAD; ECR's `BatchGetImage`)
    /// names the reader: the pull time is recorded off the request path, and
    /// [`EventKind::ImagePulled`] goes to the listeners that want pulls.
    pub async fn get_manifest(
        &self,
        account: &str,
        name: &RepoName,
        reference: &str,
        pull: Option<&Actor>,
    ) -> RegistryResult<ManifestRow> {
        // A reference that cannot exist is simply unknown to a reader (404).
        let reference = parse_reference(reference).map_err(|e| match e {
            RegistryError::Invalid {
                what: Invalid::Tag,
                message,
            } => RegistryError::ManifestUnknown {
                reference: reference.to_string(),
                message,
            },
            e => e,
        })?;
        // A pull-through cache repository gets what it misses from its
        // upstream, and checks a cached tag there once per interval.
        let (repo, row) = match self.local_manifest(account, name, &reference).await {
            Ok((repo, row)) => match &reference {
                Reference::Tag(t) if self.ptc.source.get().is_some() => {
                    (repo, self.refresh_tag(account, name, repo, t, row).await)
                }
                Reference::Digest(_) if self.ptc.source.get().is_some() => {
                    self.note_hit(account, name).await;
                    (repo, row)
                }
                _ => (repo, row),
            },
            Err(miss) if self.ptc.source.get().is_some() => self.manifest_miss(account, name, &reference, miss).await?,
            Err(e) => return Err(e),
        };
        // An archived (or restoring) image is listed but not pullable, by
        // tag or by digest, on GET and HEAD alike.
        if row.status != kura_store::meta::ImageStatus::Active {
            return Err(RegistryError::ImageArchived {
                repository: name.to_string(),
                digest: row.digest,
                status: row.status,
            });
        }
        let Some(actor) = pull else {
            return Ok(row);
        };
        // An excluded principal's pull is not recorded, and is asked about
        // before the throttle so it never delays another reader's record.
        let now = kura_store::now_millis();
        if self.records_pull(account, actor).await && self.pulls.due(repo, &row.digest, now) {
            let (meta, digest) = (self.meta.clone(), row.digest.clone());
            tokio::spawn(async move {
                if let Err(e) = meta.manifest_touch_pull(repo, &digest, now).await {
                    tracing::warn!(error = %e, "could not record a pull time");
                }
            });
        }
        if self.wants(EventType::ImagePulled) {
            let tag = match &reference {
                Reference::Tag(t) => Some(t.to_string()),
                Reference::Digest(_) => None,
            };
            let pulled = EventKind::ImagePulled {
                digest: row.digest.clone(),
                tag,
            };
            self.emit(account, name.as_str(), actor, pulled).await;
        }
        Ok(row)
    }

    /// The data plane's DELETE of a manifest: by digest, the image with its
    /// tags ([`Registry::delete_image`]); by tag, the tag only, keeping the
    /// manifest ([`Registry::untag`]).
    pub async fn delete_manifest(
        &self,
        account: &str,
        name: &RepoName,
        reference: &str,
        actor: &Actor,
    ) -> RegistryResult<()> {
        match parse_reference(reference)? {
            Reference::Tag(t) => self.untag(account, name, t.as_str(), false, actor).await.map(|_| ()),
            Reference::Digest(d) => self
                .delete_image(account, name, d.as_str(), DeleteCause::Request, actor)
                .await
                .map(|_| ()),
        }
    }

    /// Delete an image (a manifest and every tag on it): the one deletion
    /// path of the data plane, the ECR API and lifecycle expiry. Refused
    /// while an index in the repository lists it. Emits
    /// [`EventKind::ImageDeleted`] with the tags that went (and, for
    /// expiry, [`EventKind::LifecycleExpired`]); returns those tags.
    pub async fn delete_image(
        &self,
        account: &str,
        name: &RepoName,
        digest: &str,
        cause: DeleteCause,
        actor: &Actor,
    ) -> RegistryResult<Vec<String>> {
        let digest = digest_param(digest)?;
        let repo = self.repo(account, name).await?;
        match self.meta.manifest_delete(repo, digest.as_str()).await? {
            DeleteManifest::Deleted(tags) => {
                self.deleted(account, name, digest.as_str(), tags.clone(), cause, actor)
                    .await;
                Ok(tags)
            }
            DeleteManifest::Unknown => Err(manifest_unknown(digest.as_str(), name)),
            DeleteManifest::ReferencedBy(parents) => Err(RegistryError::ReferencedBy {
                digest: digest.to_string(),
                parents,
            }),
        }
    }

    async fn deleted(
        &self,
        account: &str,
        name: &RepoName,
        digest: &str,
        tags: Vec<String>,
        cause: DeleteCause,
        actor: &Actor,
    ) {
        let expired = match cause {
            DeleteCause::LifecycleExpiry { rule_priority } => Some(EventKind::LifecycleExpired {
                digest: digest.to_string(),
                tags: tags.clone(),
                rule_priority,
            }),
            DeleteCause::Request => None,
        };
        let gone = EventKind::ImageDeleted {
            digest: digest.to_string(),
            tags,
        };
        self.emit(account, name.as_str(), actor, gone).await;
        if let Some(e) = expired {
            self.emit(account, name.as_str(), actor, e).await;
        }
    }

    /// Remove a tag. With `drop_untagged` (ECR's `BatchDeleteImage` by tag)
    /// the image goes too when that was its last tag and no index lists it:
    /// then [`EventKind::ImageDeleted`] names the tag; otherwise
    /// [`EventKind::TagChanged`] says the tag was removed.
    pub async fn untag(
        &self,
        account: &str,
        name: &RepoName,
        tag: &str,
        drop_untagged: bool,
        actor: &Actor,
    ) -> RegistryResult<Untagged> {
        let repo = self.repo(account, name).await?;
        let Some(digest) = self.meta.tag_delete(repo, tag).await? else {
            return Err(RegistryError::ManifestUnknown {
                reference: tag.to_string(),
                message: format!("tag {tag} is not in repository {name}"),
            });
        };
        if drop_untagged {
            let left = self.meta.image_get(repo, &digest).await?.map(|i| i.tags.len());
            if left == Some(0) {
                if let DeleteManifest::Deleted(mut tags) = self.meta.manifest_delete(repo, &digest).await? {
                    // A tag pushed in between went with the image: name it too.
                    tags.insert(0, tag.to_string());
                    self.deleted(account, name, &digest, tags, DeleteCause::Request, actor)
                        .await;
                    return Ok(Untagged {
                        digest,
                        image_deleted: true,
                    });
                }
                // Still listed by an index (or already gone): only the tag went.
            }
        }
        let removed = EventKind::TagChanged {
            tag: tag.to_string(),
            old_digest: Some(digest.clone()),
            new_digest: None,
        };
        self.emit(account, name.as_str(), actor, removed).await;
        Ok(Untagged {
            digest,
            image_deleted: false,
        })
    }

    /// Tell the listeners a scan of `digest` finished (the scanner calls
    /// this; `actor` is [`Actor::scanner`] for scans on push or re-scans,
    /// the caller for `StartImageScan`).
    pub async fn scan_completed(
        &self,
        account: &str,
        name: &str,
        digest: &str,
        status: &str,
        finding_severity_counts: std::collections::BTreeMap<String, u64>,
        actor: &Actor,
    ) {
        if !self.wants(EventType::ScanCompleted) {
            return;
        }
        let tags = match self.meta.repo_get(account, name).await {
            Ok(Some(r)) => match self.meta.image_get(r.id, digest).await {
                Ok(img) => img.map(|i| i.tags).unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read an image's tags for its scan event");
                    Vec::new()
                }
            },
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "could not read a repository for a scan event");
                Vec::new()
            }
        };
        let done = EventKind::ScanCompleted {
            digest: digest.to_string(),
            tags,
            status: status.to_string(),
            finding_severity_counts,
        };
        self.emit(account, name, actor, done).await;
    }

    // ----- listings ----------------------------------------------------------

    /// Tags of a repository: up to `n` after `last`; the bool says whether more follow.
    pub async fn list_tags(
        &self,
        account: &str,
        name: &RepoName,
        n: Option<u32>,
        last: Option<&str>,
    ) -> RegistryResult<(Vec<String>, bool)> {
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
    ) -> RegistryResult<Vec<Referrer>> {
        let digest = digest_param(digest)?;
        match self.meta.repo_get(account, name.as_str()).await? {
            Some(repo) => Ok(self.meta.referrers(repo.id, digest.as_str(), artifact_type).await?),
            None => Ok(Vec::new()),
        }
    }
}

pub(super) fn manifest_unknown(reference: &str, name: &RepoName) -> RegistryError {
    RegistryError::ManifestUnknown {
        reference: reference.to_string(),
        message: format!("manifest {reference} is not in repository {name}"),
    }
}

fn parse_reference(s: &str) -> RegistryResult<Reference> {
    Reference::parse(s).map_err(|e| match e {
        kura_oci::name::ReferenceError::Digest(d) => {
            RegistryError::invalid(Invalid::Digest, format!("invalid digest {s:?}: {d}"))
        }
        kura_oci::name::ReferenceError::Tag(m) => RegistryError::invalid(Invalid::Tag, m),
    })
}
