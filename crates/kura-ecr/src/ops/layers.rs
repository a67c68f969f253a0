//! The layer operations: availability checks, uploads in parts, download URLs.

use super::*;

impl Ecr {
    pub(super) async fn batch_check_layer_availability(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let actor = ctx.actor();
        self.image_target(&account, &name, &repo, &actor)
            .batch_check_layer_availability(v)
            .await
    }

    pub(super) async fn initiate_layer_upload(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let actor = ctx.actor();
        self.image_target(&account, &name, &repo, &actor)
            .initiate_layer_upload()
            .await
    }

    pub(super) async fn upload_layer_part(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let actor = ctx.actor();
        self.image_target(&account, &name, &repo, &actor)
            .upload_layer_part(v)
            .await
    }

    pub(super) async fn complete_layer_upload(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let actor = ctx.actor();
        self.image_target(&account, &name, &repo, &actor)
            .complete_layer_upload(v)
            .await
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
            "{}://{}/v2/{name}/blobs/{digest}?{q}",
            ctx.scheme,
            self.registry_host(ctx, &account)
        );
        Ok(json!({"downloadUrl": url, "layerDigest": digest}))
    }
}
