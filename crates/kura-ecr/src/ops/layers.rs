//! The layer operations: availability checks, uploads in parts, download URLs.

use super::*;

impl Ecr {
    pub(super) async fn batch_check_layer_availability(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (_, _, repo) = self.target(ctx, v).await?;
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
            match self.meta.blob_get(repo.id, d).await? {
                Some(b) => {
                    // Like a HEAD: the caller may now reference it without uploading.
                    self.meta.blob_touch(repo.id, d, kura_store::now_millis()).await?;
                    layers.push(json!({"layerDigest": d, "layerAvailability": "AVAILABLE", "layerSize": b.size}))
                }
                None => failures.push(json!({"layerDigest": d, "failureCode": "MissingLayerDigest", "failureReason": "Could not find layer with digest"})),
            }
        }
        Ok(json!({"layers": layers, "failures": failures}))
    }

    pub(super) async fn initiate_layer_upload(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, _) = self.target(ctx, v).await?;
        let out = self
            .registry
            .start_upload(&account, &name, None, None, &ctx.actor(), Box::pin(stream::empty()))
            .await
            .map_err(|e| map_registry_error(e, &account, name.as_str()))?;
        match out {
            kura_registry::service::StartOutcome::Started(st) => {
                Ok(json!({"uploadId": st.id, "partSize": 10 * 1024 * 1024}))
            }
            kura_registry::service::StartOutcome::Created(_) => Err(EcrError::server()),
        }
    }

    pub(super) async fn upload_layer_part(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, _) = self.target(ctx, v).await?;
        let id = s(v, "uploadId").unwrap_or_default();
        let first = v["partFirstByte"].as_i64().unwrap_or(0) as u64;
        let last = v["partLastByte"].as_i64().unwrap_or(0) as u64;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(s(v, "layerPartBlob").unwrap_or_default())
            .map_err(|_| EcrError::serialization("layerPartBlob is not base64"))?;
        if last < first || (last - first + 1) as usize != blob.len() {
            return Err(EcrError::new(
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
            .patch_upload(&account, &name, id, Some((first, last)), None, body)
            .await
            .map_err(|e| map_registry_error(e, &account, name.as_str()))?;
        Ok(
            json!({"registryId": account, "repositoryName": name.as_str(), "uploadId": id, "lastByteReceived": st.offset.saturating_sub(1)}),
        )
    }

    pub(super) async fn complete_layer_upload(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let id = s(v, "uploadId").unwrap_or_default();
        let digests: Vec<&str> = v["layerDigests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let digest = digests.first().copied().unwrap_or_default();
        let status = self
            .registry
            .upload_status(&account, &name, id)
            .await
            .map_err(|e| map_registry_error(e, &account, name.as_str()))?;
        if status.offset == 0 {
            return Err(EcrError::new(
                "EmptyUploadException",
                format!("The upload with id '{id}' does not contain any layer parts"),
            ));
        }
        if self.meta.blob_get(repo.id, digest).await?.is_some() {
            let _ = self.registry.cancel_upload(&account, &name, id).await;
            return Err(EcrError::new(
                "LayerAlreadyExistsException",
                format!("The layer with digest '{digest}' already exists in the repository with name '{name}' in registry with id '{account}'"),
            ));
        }
        let d = self
            .registry
            .finish_upload(&account, &name, id, digest, None, None)
            .await
            .map_err(|e| map_registry_error(e, &account, name.as_str()))?;
        Ok(json!({"registryId": account, "repositoryName": name.as_str(), "uploadId": id, "layerDigest": d.as_str()}))
    }

    pub(super) async fn get_download_url_for_layer(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let digest = s(v, "layerDigest").unwrap_or_default();
        let Some(blob) = self.meta.blob_get(repo.id, digest).await? else {
            return Err(EcrError::new(
                "LayersNotFoundException",
                format!("The layer with digest '{digest}' does not exist in the repository with name '{name}' in the registry with id '{account}'"),
            ));
        };
        // With redirects on, hand out the blob store's own URL (S3 presigned),
        // as ECR does; otherwise a URL Kura serves, signed with its token key.
        if self.registry.config().blob_redirect.is_some() {
            let ttl = std::time::Duration::from_secs(crate::auth::DOWNLOAD_URL_SECS);
            if let Some(url) = self.registry.blobs().presign_get(&blob.storage_key, ttl).await? {
                return Ok(json!({"downloadUrl": url, "layerDigest": digest}));
            }
        }
        let q = self.sign_download(&ctx.caller, &account, name.as_str(), digest);
        let url = format!(
            "http://{}/v2/{name}/blobs/{digest}?{q}",
            self.registry_host(ctx, &account)
        );
        Ok(json!({"downloadUrl": url, "layerDigest": digest}))
    }
}
