//! Amazon ECR Public on Kura (`X-Amz-Target: SpencerFrontendService.*`,
//! signing name `ecr-public`), and anonymous pulls of public repositories.
//!
//! Storage model: a public repository is an ordinary repository of the
//! account's registry (created with `MetaStore::repo_create`, so pushes,
//! pulls, GC, lifecycle policies and scanning treat it like any other, and
//! the data plane serves it at the same `/v2/<name>/...`) plus a *public
//! mark* in the control store (`public_repositories`, migration 0004) that
//! holds its catalog data. Deleting the repository through either API
//! deletes the mark with it. The private ECR API keeps seeing public
//! repositories as repositories of the registry (DescribeRepositories lists
//! them); ECR Public only sees the marked ones.
//!
//! Every call is SigV4-signed for `ecr-public` (any region: the service is
//! global) and validated against ECR Public's model ([`model::public_model`])
//! before an operation runs; each operation is authorized as
//! `ecr-public:<Operation>` on `arn:aws:ecr-public::<account>:repository/<name>`
//! (or the registry ARN, or `*`). Operations of the model that Kura leaves
//! to the registry API (image and layer calls, repository policies, tags)
//! answer `UnsupportedCommandException`.
//!
//! Anyone may read a public repository: [`anonymous_read_allowed`] lets a
//! request without credentials through the data-plane guard for GET and
//! HEAD of its manifests, blobs, tags and referrers. Pushing still needs a
//! registry token (from either API's GetAuthorizationToken).

use base64::Engine;
use http::HeaderMap;
use kura_oci::RepoName;
use kura_registry::endpoint::Endpoint;
use kura_registry::DataRequest;
use kura_store::control::PublicRepoRow;
use kura_store::meta::{DeleteRepo, RepoSettings};
use serde_json::{json, Map, Value};

use crate::authz::Access;
use crate::error::{EcrError, EcrResult};
use crate::model;
use crate::ops::Ctx;
use crate::Ecr;

/// The JSON target prefix of ECR Public.
pub const TARGET_PREFIX: &str = "SpencerFrontendService";

/// The account setting that keeps the registry's catalog display name (not
/// one of the names ECR's account-setting API accepts, so never shown there).
const DISPLAY_NAME_SETTING: &str = "ecr-public:displayName";

/// The catalog data members a repository keeps (the input shape's).
const CATALOG_INPUT: [&str; 6] = [
    "description",
    "architectures",
    "operatingSystems",
    "logoImageBlob",
    "aboutText",
    "usageText",
];

/// The catalog data members answered (the output shape's, less `logoUrl`:
/// Kura keeps a logo but does not host it).
const CATALOG_OUTPUT: [&str; 5] = [
    "description",
    "architectures",
    "operatingSystems",
    "aboutText",
    "usageText",
];

/// The ARN of a public repository.
pub fn repository_arn(account: &str, name: &str) -> String {
    format!("arn:aws:ecr-public::{account}:repository/{name}")
}

/// The ARN of an account's public registry.
pub fn registry_arn(account: &str) -> String {
    format!("arn:aws:ecr-public::{account}:registry/{account}")
}

/// Answer one ECR Public call: the headers authenticate, then the body is
/// read and the signature checked over it (as for ECR, [`crate::api`]).
pub async fn handle(
    ecr: &Ecr,
    parts: &http::request::Parts,
    target: &str,
    body: &mut crate::body::RequestBody,
    info: &mut crate::calls::CallInfo,
) -> EcrResult<Value> {
    let m = model::public_model();
    let op = target
        .strip_prefix(m.target_prefix.as_str())
        .and_then(|s| s.strip_prefix('.'))
        .filter(|op| m.operations.contains_key(*op))
        .ok_or_else(|| EcrError::unknown_operation(target))?
        .to_string();
    info.name = op.clone();
    crate::body::declared_length(parts)?;
    let signed = ecr.authenticate_headers(parts, &["ecr-public"]).await?;
    info.claimed = Some(signed.claimed().clone());
    let body = ecr.read_body(parts, body).await?;
    let caller = ecr.authenticate_body(parts, signed, &body.sha256, "ecr-public")?;
    info.caller = Some(caller.clone());
    let input = crate::json_input(&body.bytes)?;
    info.capture(ecr, &input);
    m.validate(&op, &input)?;
    // One account for authorization and action, as for ECR; ECR Public
    // registries are managed by their own account only.
    let account = Ctx::registry_of(m, &op, &input, &caller);
    if account != caller.account {
        return Err(EcrError::new(
            "AccessDeniedException",
            format!(
                "User: {} is not authorized to access registry {account}",
                caller.principal_arn
            ),
        )
        .with_status(http::StatusCode::FORBIDDEN));
    }
    let ctx = Ctx {
        account,
        caller,
        host: crate::request_host(parts),
        source_ip: crate::source_ip(parts),
    };
    tracing::info!(operation = %op, principal = %ctx.caller.principal_arn, "ECR Public API call");
    let result = run(ecr, &ctx, &op, &input).await;
    drop(body);
    result
}

async fn run(ecr: &Ecr, ctx: &Ctx, op: &str, input: &Value) -> EcrResult<Value> {
    match op {
        "CreateRepository" => ecr.public_create_repository(ctx, input).await,
        "DescribeRepositories" => ecr.public_describe_repositories(ctx, input).await,
        "DeleteRepository" => ecr.public_delete_repository(ctx, input).await,
        "PutRepositoryCatalogData" => ecr.public_put_catalog_data(ctx, input).await,
        "GetRepositoryCatalogData" => ecr.public_get_catalog_data(ctx, input).await,
        "GetAuthorizationToken" => ecr.public_get_authorization_token(ctx).await,
        "DescribeRegistries" => ecr.public_describe_registries(ctx).await,
        "GetRegistryCatalogData" => ecr.public_registry_catalog_data(ctx, None).await,
        "PutRegistryCatalogData" => {
            let name = input.get("displayName").and_then(Value::as_str).unwrap_or_default();
            ecr.public_registry_catalog_data(ctx, Some(name)).await
        }
        other => Err(EcrError::new(
            "UnsupportedCommandException",
            format!("Kura does not implement the ECR Public operation {other}; use the registry API (/v2/) for images"),
        )),
    }
}

fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn repo_name(v: &Value) -> EcrResult<RepoName> {
    str_of(v, "repositoryName")
        .unwrap_or_default()
        .parse()
        .map_err(|m: String| {
            EcrError::invalid_parameter(format!(
                "Invalid parameter at 'repositoryName' failed to satisfy constraint: '{m}'"
            ))
        })
}

fn not_found(name: &str, account: &str) -> EcrError {
    EcrError::new(
        "RepositoryNotFoundException",
        format!("The repository with name '{name}' does not exist in the registry with id '{account}'"),
    )
}

/// The catalog data to keep: the input's known members.
fn catalog_input(v: Option<&Value>) -> Value {
    let mut out = Map::new();
    if let Some(obj) = v.and_then(Value::as_object) {
        for k in CATALOG_INPUT {
            if let Some(x) = obj.get(k).filter(|x| !x.is_null()) {
                out.insert(k.to_string(), x.clone());
            }
        }
    }
    Value::Object(out)
}

/// Kept catalog data as the API answers it.
fn catalog_output(stored: &str) -> Value {
    let v: Value = serde_json::from_str(stored).unwrap_or_else(|_| json!({}));
    let mut out = Map::new();
    for k in CATALOG_OUTPUT {
        if let Some(x) = v.get(k) {
            out.insert(k.to_string(), x.clone());
        }
    }
    out.insert("marketplaceCertified".into(), json!(false));
    Value::Object(out)
}

/// ECR Public's tag rules beyond the model's lengths.
fn check_tags(tags: &[(String, String)]) -> EcrResult<()> {
    if tags.len() > 50 {
        return Err(EcrError::new(
            "TooManyTagsException",
            "A repository may have at most 50 tags",
        ));
    }
    if let Some((k, _)) = tags.iter().find(|(k, _)| k.to_ascii_lowercase().starts_with("aws:")) {
        return Err(EcrError::new(
            "InvalidTagParameterException",
            format!("Tag keys starting with 'aws:' are reserved: {k:?}"),
        ));
    }
    Ok(())
}

fn encode_token(last: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last.as_bytes())
}

fn decode_token(v: &Value) -> EcrResult<Option<String>> {
    let Some(t) = str_of(v, "nextToken") else {
        return Ok(None);
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(Some)
        .ok_or_else(|| {
            EcrError::invalid_parameter(
                "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid NextToken'",
            )
        })
}

impl Ecr {
    /// The host a registry's images are addressed by (as private ECR's URIs).
    fn public_host(&self, ctx: &Ctx, account: &str) -> String {
        if account == self.config.default_account || ctx.host.starts_with(&format!("{account}.dkr.")) {
            ctx.host.clone()
        } else {
            format!("{account}.dkr.{}", ctx.host)
        }
    }

    fn public_repo_json(&self, ctx: &Ctx, row: &PublicRepoRow) -> Value {
        json!({
            "repositoryArn": repository_arn(&row.account, &row.name),
            "registryId": row.account,
            "repositoryName": row.name,
            "repositoryUri": format!("{}/{}", self.public_host(ctx, &row.account), row.name),
            "createdAt": crate::ops::ts(row.created_at),
        })
    }

    async fn authorize_public(&self, ctx: &Ctx, action: &str, arn: &str, account: &str) -> EcrResult<()> {
        let access = Access::resource(&format!("ecr-public:{action}"), arn, account);
        self.authorize(&ctx.caller, &access, ctx.source_ip).await
    }

    /// The public mark of a repository, or `RepositoryNotFoundException`.
    async fn require_public(&self, account: &str, name: &RepoName) -> EcrResult<PublicRepoRow> {
        self.control
            .public_repo_get(account, name.as_str())
            .await?
            .ok_or_else(|| not_found(name.as_str(), account))
    }

    async fn public_create_repository(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let name = repo_name(v)?;
        let tags = crate::templates::tags_from(v.get("tags"));
        check_tags(&tags)?;
        let arn = repository_arn(&account, name.as_str());
        let access = Access::resource("ecr-public:CreateRepository", &arn, &account).with_request_tags(&tags);
        self.authorize(&ctx.caller, &access, ctx.source_ip).await?;
        let catalog = catalog_input(v.get("catalogData"));
        let repo = self
            .meta
            .repo_create(&account, name.as_str(), &RepoSettings::default())
            .await?
            .ok_or_else(|| {
                EcrError::new(
                    "RepositoryAlreadyExistsException",
                    format!("The repository with name '{name}' already exists in the registry with id '{account}'"),
                )
            })?;
        // Tags left by an earlier repository of this name go first.
        let stale: Vec<String> = self
            .control
            .resource_tags(&arn)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        if !stale.is_empty() {
            self.control.resource_tags_remove(&arn, &stale).await?;
        }
        if !tags.is_empty() {
            self.control.resource_tags_put(&arn, &tags).await?;
        }
        if !self.control.public_repo_put(repo.id, &catalog.to_string()).await? {
            // Deleted between the two writes.
            return Err(not_found(name.as_str(), &account));
        }
        let row = self.require_public(&account, &name).await?;
        Ok(json!({
            "repository": self.public_repo_json(ctx, &row),
            "catalogData": catalog_output(&row.catalog_data),
        }))
    }

    async fn public_describe_repositories(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        if let Some(names) = v.get("repositoryNames").and_then(Value::as_array) {
            if v.get("nextToken").is_some() || v.get("maxResults").is_some() {
                return Err(EcrError::invalid_parameter(
                    "maxResults and nextToken cannot be used together with repositoryNames",
                ));
            }
            let mut out = Vec::new();
            for n in names.iter().filter_map(Value::as_str) {
                self.authorize_public(ctx, "DescribeRepositories", &repository_arn(&account, n), &account)
                    .await?;
                let row = self
                    .control
                    .public_repo_get(&account, n)
                    .await?
                    .ok_or_else(|| not_found(n, &account))?;
                out.push(self.public_repo_json(ctx, &row));
            }
            return Ok(json!({ "repositories": out }));
        }
        self.authorize_public(ctx, "DescribeRepositories", &repository_arn(&account, "*"), &account)
            .await?;
        let limit = v.get("maxResults").and_then(Value::as_i64).unwrap_or(100);
        let after = decode_token(v)?;
        let mut rows = self
            .control
            .public_repo_list(&account, after.as_deref(), limit + 1)
            .await?;
        let mut out = json!({});
        if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            if let Some(last) = rows.last() {
                out["nextToken"] = json!(encode_token(&last.name));
            }
        }
        out["repositories"] = rows.iter().map(|r| self.public_repo_json(ctx, r)).collect();
        Ok(out)
    }

    async fn public_delete_repository(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let name = repo_name(v)?;
        let arn = repository_arn(&account, name.as_str());
        self.authorize_public(ctx, "DeleteRepository", &arn, &account).await?;
        let row = self.require_public(&account, &name).await?;
        let force = v.get("force").and_then(Value::as_bool).unwrap_or(false);
        match self.meta.repo_delete(row.repo_id, force).await? {
            DeleteRepo::NotEmpty => Err(EcrError::new(
                "RepositoryNotEmptyException",
                format!("The repository with name '{name}' in registry with id '{account}' cannot be deleted because it still contains images"),
            )),
            DeleteRepo::Deleted => {
                // The mark went with the repository (foreign key); the tags are ours to drop.
                let keys: Vec<String> = self.control.resource_tags(&arn).await?.into_iter().map(|(k, _)| k).collect();
                self.control.resource_tags_remove(&arn, &keys).await?;
                Ok(json!({"repository": self.public_repo_json(ctx, &row)}))
            }
        }
    }

    async fn public_put_catalog_data(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let name = repo_name(v)?;
        let arn = repository_arn(&account, name.as_str());
        self.authorize_public(ctx, "PutRepositoryCatalogData", &arn, &account)
            .await?;
        let row = self.require_public(&account, &name).await?;
        let catalog = catalog_input(v.get("catalogData"));
        if !self.control.public_repo_put(row.repo_id, &catalog.to_string()).await? {
            return Err(not_found(name.as_str(), &account));
        }
        Ok(json!({"catalogData": catalog_output(&catalog.to_string())}))
    }

    async fn public_get_catalog_data(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let name = repo_name(v)?;
        let arn = repository_arn(&account, name.as_str());
        self.authorize_public(ctx, "GetRepositoryCatalogData", &arn, &account)
            .await?;
        let row = self.require_public(&account, &name).await?;
        Ok(json!({"catalogData": catalog_output(&row.catalog_data)}))
    }

    async fn public_get_authorization_token(&self, ctx: &Ctx) -> EcrResult<Value> {
        let account = ctx.account.clone();
        self.authorize_public(ctx, "GetAuthorizationToken", "*", &account)
            .await?;
        // As on AWS, the token is a service bearer token: STS must allow it too.
        let sts = Access::resource("sts:GetServiceBearerToken", "*", &account);
        self.authorize(&ctx.caller, &sts, ctx.source_ip).await?;
        let (token, expires) = self.issue_token(&ctx.caller, &account);
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{token}"));
        Ok(json!({"authorizationData": {"authorizationToken": encoded, "expiresAt": expires as f64}}))
    }

    async fn public_describe_registries(&self, ctx: &Ctx) -> EcrResult<Value> {
        let account = ctx.account.clone();
        self.authorize_public(ctx, "DescribeRegistries", "*", &account).await?;
        Ok(json!({"registries": [{
            "registryId": account,
            "registryArn": registry_arn(&account),
            "registryUri": self.public_host(ctx, &account),
            "verified": false,
            "aliases": [],
        }]}))
    }

    /// GetRegistryCatalogData (`put` None) or PutRegistryCatalogData.
    async fn public_registry_catalog_data(&self, ctx: &Ctx, put: Option<&str>) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let action = if put.is_some() {
            "PutRegistryCatalogData"
        } else {
            "GetRegistryCatalogData"
        };
        self.authorize_public(ctx, action, &registry_arn(&account), &account)
            .await?;
        let name = match put {
            Some(n) => {
                self.control.setting_put(&account, DISPLAY_NAME_SETTING, n).await?;
                n.to_string()
            }
            None => self
                .control
                .setting_get(&account, DISPLAY_NAME_SETTING)
                .await?
                .unwrap_or_default(),
        };
        Ok(json!({"registryCatalogData": {"displayName": name}}))
    }
}

/// Whether a data-plane request carries no credentials: no `Authorization`
/// header, the token service's anonymous bearer token, or Basic with an
/// empty user name and password (what podman and skopeo send when they have
/// no credentials for a registry that asks for Basic).
pub fn anonymous(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get("authorization") else {
        return true;
    };
    let value = value.to_str().unwrap_or_default();
    if let Some(t) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
        return t.trim() == crate::auth::ANONYMOUS_TOKEN;
    }
    let Some(b64) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
        return false;
    };
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
        .as_deref()
        == Some(b":")
}

/// Whether a request without credentials may go through: GET or HEAD of a
/// manifest, blob, tag list or referrers list of a public repository of
/// `account`. Nothing else is anonymous (uploads, deletes, `/v2/` itself,
/// the catalog, private repositories).
pub async fn anonymous_read_allowed(ecr: &Ecr, account: &str, data: &DataRequest) -> bool {
    let name = match &data.endpoint {
        Endpoint::Manifest(n, _) | Endpoint::Blob(n, _) | Endpoint::Tags(n) | Endpoint::Referrers(n, _)
            if data.is_read() =>
        {
            n
        }
        _ => return false,
    };
    match ecr.control.public_repo_get(account, name.as_str()).await {
        Ok(mark) => mark.is_some(),
        Err(e) => {
            tracing::error!(error = %e, "cannot tell whether a repository is public; refusing anonymous access");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_headers() {
        let mut h = HeaderMap::new();
        assert!(anonymous(&h));
        h.insert("authorization", "Basic Og==".parse().unwrap());
        assert!(anonymous(&h), "empty Basic credentials are no credentials");
        h.insert("authorization", "Basic QVdTOng=".parse().unwrap());
        assert!(!anonymous(&h), "AWS:x is a credential");
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert!(!anonymous(&h));
    }

    #[test]
    fn catalog_data_round_trip() {
        let input = json!({"description": "d", "logoImageBlob": "AAAA", "usageText": null, "other": 1});
        let kept = catalog_input(Some(&input));
        assert_eq!(kept, json!({"description": "d", "logoImageBlob": "AAAA"}));
        assert_eq!(
            catalog_output(&kept.to_string()),
            json!({"description": "d", "marketplaceCertified": false})
        );
    }
}
