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
//! global) and validated against ECR Public's model ([`public_model`])
//! before an operation runs; each operation is authorized as
//! `ecr-public:<Operation>` on `arn:aws:ecr-public::<account>:repository/<name>`
//! (or the registry ARN, or `*`); a repository's own policy (`SetRepositoryPolicy`,
//! kept under its `ecr-public` ARN) and tags take part in that decision.
//! Every operation of the model is built: the image and layer operations
//! are private ECR's ([`kura_images`]) on the marked repository, so a
//! repository ECR Public does not see (a private one) is
//! `RepositoryNotFoundException` to all of them.
//!
//! Anyone may read a public repository: [`anonymous_read_allowed`] lets a
//! request without credentials through the data-plane guard for GET and
//! HEAD of its manifests, blobs, tags and referrers. Pushing still needs a
//! registry token (from either API's GetAuthorizationToken).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use base64::Engine;
use http::HeaderMap;
use kura_aws::service::OpTable;
use kura_aws::{AwsService, Call, OpSpec, Protocol, Scope};
use kura_oci::RepoName;
use kura_registry::endpoint::Endpoint;
use kura_registry::{DataRequest, Registry};
use kura_store::control::PublicRepoRow;
use kura_store::meta::{DeleteRepo, RepoSettings};
use serde_json::{json, Map, Value};

use kura_authz::{Access, Authz};
use kura_aws::model::Model;
use kura_aws::{AwsError, AwsResult, Caller};
use kura_store::{ControlStore, IamStore, MetaStore};

mod images;

const ECR_PUBLIC_MODEL_JSON: &str = include_str!("../model/ecr-public-shapes.json");

/// ECR Public's model, parsed once.
pub fn public_model() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| Model::from_json(ECR_PUBLIC_MODEL_JSON).expect("the embedded ECR Public model is valid"))
}

/// ECR Public over Kura's stores: what its operations read and write.
pub struct Public {
    meta: Arc<dyn MetaStore>,
    control: Arc<dyn ControlStore>,
    iam: Arc<dyn IamStore>,
    registry: Arc<Registry>,
    authz: Arc<Authz>,
    token_key: Vec<u8>,
    default_account: String,
}

impl Public {
    /// ECR Public over these stores; `token_key` signs the registry tokens
    /// `GetAuthorizationToken` hands out; `default_account` is the account
    /// of host names without one. Images go through `registry` (its
    /// metadata store is `meta`'s); repository policies are kept in `iam`.
    pub fn new(
        registry: Arc<Registry>,
        control: Arc<dyn ControlStore>,
        iam: Arc<dyn IamStore>,
        authz: Arc<Authz>,
        token_key: Vec<u8>,
        default_account: &str,
    ) -> Self {
        Public {
            meta: registry.meta().clone(),
            control,
            iam,
            registry,
            authz,
            token_key,
            default_account: default_account.to_string(),
        }
    }

    async fn authorize(&self, caller: &Caller, access: &Access, source_ip: Option<std::net::IpAddr>) -> AwsResult<()> {
        self.authz.authorize(caller, access, source_ip).await
    }

    fn issue_token(&self, caller: &Caller, account: &str) -> (String, u64) {
        caller.registry_token(&self.token_key, account)
    }
}

/// The context of one ECR Public call.
struct Ctx {
    /// Who is calling.
    caller: Caller,
    /// The registry (account) the call acts on and is authorized against:
    /// its input's `registryId` when the operation's input shape defines
    /// one, else the caller's account.
    account: String,
    /// The Host the request was sent to (for URIs handed back).
    host: String,
    /// The client's address, if known (`aws:SourceIp`).
    source_ip: Option<std::net::IpAddr>,
    /// The client's `User-Agent`, if it sent one (the image events' actor).
    user_agent: Option<String>,
}

impl Ctx {
    /// The caller as the actor of the image events this call causes.
    fn actor(&self) -> kura_registry::Actor {
        kura_registry::Actor {
            account: self.caller.account.clone(),
            principal_arn: self.caller.principal_arn.clone(),
            principal_id: self.caller.principal_id.clone(),
            access_key_id: Some(self.caller.access_key_id.clone()),
            source_ip: self.source_ip,
            user_agent: self.user_agent.clone(),
        }
    }
}

/// The `Bearer` token that stands for "no credentials" (what the token
/// service hands an anonymous client, for public repositories).
pub const ANONYMOUS_TOKEN: &str = "anonymous";

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

/// ECR Public's operations (every operation of its model, all built). Each
/// operation authorizes itself (`ecr-public:<Operation>` on the repository
/// or registry ARN it resolves, or `*`).
pub fn operations() -> &'static OpTable {
    static T: OnceLock<OpTable> = OnceLock::new();
    T.get_or_init(|| {
        OpTable::build(
            "ecr-public",
            public_model()
                .operations
                .keys()
                .map(|name| (name.as_str(), Scope::Other, true)),
        )
    })
}

/// ECR Public on the AWS pipeline: SigV4-signed for `ecr-public` (any
/// region), validated against its model.
pub struct PublicService {
    public: Arc<Public>,
}

impl PublicService {
    /// The service over `public`.
    pub fn new(public: Arc<Public>) -> Self {
        PublicService { public }
    }
}

/// The context of one call: one account for authorization and action, as
/// for ECR.
fn ctx(call: &Call, op: &OpSpec, input: &Value) -> Ctx {
    let account = match input.get("registryId").and_then(Value::as_str) {
        Some(r) if public_model().input_has(op.name, "registryId") => r.to_string(),
        _ => call.caller.account.clone(),
    };
    Ctx {
        account,
        caller: call.caller.clone(),
        host: call.host.clone(),
        source_ip: call.source_ip,
        user_agent: call.user_agent.clone(),
    }
}

#[async_trait]
impl AwsService for PublicService {
    fn protocol(&self) -> Protocol {
        Protocol::Json11 {
            target_prefix: TARGET_PREFIX,
        }
    }

    fn signing_name(&self) -> &'static str {
        "ecr-public"
    }

    fn global(&self) -> bool {
        true
    }

    fn event_source(&self) -> &'static str {
        "ecr-public.amazonaws.com"
    }

    fn operation(&self, name: &str) -> Option<OpSpec> {
        operations().get(name)
    }

    fn validate(&self, op: &OpSpec, input: &Value) -> Result<(), AwsError> {
        public_model().validate(op.name, input)
    }

    /// ECR Public registries are managed by their own account only (the
    /// `registryId` of the input, or the account of the repository ARN a tag
    /// operation names); each operation then authorizes its `ecr-public:`
    /// action itself.
    async fn authorize(&self, call: &Call, op: &OpSpec, input: &Value) -> Result<(), AwsError> {
        let account = match images::arn_account(op.name, input) {
            Some(a) => a,
            None => ctx(call, op, input).account,
        };
        if account != call.caller.account {
            return Err(AwsError::new(
                "AccessDeniedException",
                format!(
                    "User: {} is not authorized to access registry {account}",
                    call.caller.principal_arn
                ),
            )
            .with_status(http::StatusCode::FORBIDDEN));
        }
        Ok(())
    }

    async fn run(&self, call: &Call, op: &OpSpec, input: Value) -> Result<Value, AwsError> {
        run(&self.public, &ctx(call, op, &input), op.name, &input).await
    }
}

async fn run(ecr: &Public, ctx: &Ctx, op: &str, input: &Value) -> AwsResult<Value> {
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
        other => images::run(ecr, ctx, other, input).await,
    }
}

fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn repo_name(v: &Value) -> AwsResult<RepoName> {
    str_of(v, "repositoryName")
        .unwrap_or_default()
        .parse()
        .map_err(|m: String| {
            AwsError::invalid_parameter(format!(
                "Invalid parameter at 'repositoryName' failed to satisfy constraint: '{m}'"
            ))
        })
}

fn not_found(name: &str, account: &str) -> AwsError {
    AwsError::new(
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
fn check_tags(tags: &[(String, String)]) -> AwsResult<()> {
    if tags.len() > 50 {
        return Err(AwsError::new(
            "TooManyTagsException",
            "A repository may have at most 50 tags",
        ));
    }
    if let Some((k, _)) = tags.iter().find(|(k, _)| k.to_ascii_lowercase().starts_with("aws:")) {
        return Err(AwsError::new(
            "InvalidTagParameterException",
            format!("Tag keys starting with 'aws:' are reserved: {k:?}"),
        ));
    }
    Ok(())
}

use kura_images::{decode_token, encode_token};

impl Public {
    /// The host a registry's images are addressed by (as private ECR's URIs).
    fn public_host(&self, ctx: &Ctx, account: &str) -> String {
        if account == self.default_account || ctx.host.starts_with(&format!("{account}.dkr.")) {
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
            "createdAt": kura_aws::json::ts(row.created_at),
        })
    }

    async fn authorize_public(&self, ctx: &Ctx, action: &str, arn: &str, account: &str) -> AwsResult<()> {
        let mut access = Access::resource(&format!("ecr-public:{action}"), arn, account);
        if arn.contains(":repository/") && !arn.ends_with('*') {
            // A repository's own policy and tags take part.
            access.policy_arn = Some(arn.to_string());
            access.tags_arn = Some(arn.to_string());
        }
        self.authorize(&ctx.caller, &access, ctx.source_ip).await
    }

    /// The public mark of a repository, or `RepositoryNotFoundException`.
    async fn require_public(&self, account: &str, name: &RepoName) -> AwsResult<PublicRepoRow> {
        self.control
            .public_repo_get(account, name.as_str())
            .await?
            .ok_or_else(|| not_found(name.as_str(), account))
    }

    async fn public_create_repository(&self, ctx: &Ctx, v: &Value) -> AwsResult<Value> {
        let account = ctx.account.clone();
        let name = repo_name(v)?;
        let tags = kura_aws::json::tags_from(v.get("tags"));
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
                AwsError::new(
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
        // So does its policy.
        self.iam.resource_policy_delete(&arn).await?;
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

    async fn public_describe_repositories(&self, ctx: &Ctx, v: &Value) -> AwsResult<Value> {
        let account = ctx.account.clone();
        if let Some(names) = v.get("repositoryNames").and_then(Value::as_array) {
            if v.get("nextToken").is_some() || v.get("maxResults").is_some() {
                return Err(AwsError::invalid_parameter(
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

    async fn public_delete_repository(&self, ctx: &Ctx, v: &Value) -> AwsResult<Value> {
        let account = ctx.account.clone();
        let name = repo_name(v)?;
        let arn = repository_arn(&account, name.as_str());
        self.authorize_public(ctx, "DeleteRepository", &arn, &account).await?;
        let row = self.require_public(&account, &name).await?;
        let force = v.get("force").and_then(Value::as_bool).unwrap_or(false);
        match self.meta.repo_delete(row.repo_id, force).await? {
            DeleteRepo::NotEmpty => Err(AwsError::new(
                "RepositoryNotEmptyException",
                format!("The repository with name '{name}' in registry with id '{account}' cannot be deleted because it still contains images"),
            )),
            DeleteRepo::Deleted => {
                // The mark went with the repository (foreign key); the tags are ours to drop.
                let keys: Vec<String> = self.control.resource_tags(&arn).await?.into_iter().map(|(k, _)| k).collect();
                self.control.resource_tags_remove(&arn, &keys).await?;
                self.iam.resource_policy_delete(&arn).await?;
                Ok(json!({"repository": self.public_repo_json(ctx, &row)}))
            }
        }
    }

    async fn public_put_catalog_data(&self, ctx: &Ctx, v: &Value) -> AwsResult<Value> {
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

    async fn public_get_catalog_data(&self, ctx: &Ctx, v: &Value) -> AwsResult<Value> {
        let account = ctx.account.clone();
        let name = repo_name(v)?;
        let arn = repository_arn(&account, name.as_str());
        self.authorize_public(ctx, "GetRepositoryCatalogData", &arn, &account)
            .await?;
        let row = self.require_public(&account, &name).await?;
        Ok(json!({"catalogData": catalog_output(&row.catalog_data)}))
    }

    async fn public_get_authorization_token(&self, ctx: &Ctx) -> AwsResult<Value> {
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

    async fn public_describe_registries(&self, ctx: &Ctx) -> AwsResult<Value> {
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
    async fn public_registry_catalog_data(&self, ctx: &Ctx, put: Option<&str>) -> AwsResult<Value> {
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
        return t.trim() == ANONYMOUS_TOKEN;
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
pub async fn anonymous_read_allowed(control: &dyn ControlStore, account: &str, data: &DataRequest) -> bool {
    let name = match &data.endpoint {
        Endpoint::Manifest(n, _) | Endpoint::Blob(n, _) | Endpoint::Tags(n) | Endpoint::Referrers(n, _)
            if data.is_read() =>
        {
            n
        }
        _ => return false,
    };
    match control.public_repo_get(account, name.as_str()).await {
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

    fn code(r: Result<(), AwsError>) -> String {
        r.err().map(|e| e.kind.to_string()).unwrap_or_default()
    }

    #[test]
    fn public_model_loads() {
        let m = public_model();
        assert_eq!(m.target_prefix, "SpencerFrontendService");
        for op in [
            "CreateRepository",
            "DescribeRepositories",
            "DeleteRepository",
            "PutRepositoryCatalogData",
            "GetRepositoryCatalogData",
            "GetAuthorizationToken",
            "DescribeRegistries",
            "GetRegistryCatalogData",
        ] {
            assert!(m.operations.contains_key(op), "{op}");
        }
    }

    #[test]
    fn validates_like_ecr_public() {
        let m = public_model();
        let catalog = json!({"description": "d", "architectures": ["x86-64"], "operatingSystems": ["Linux"]});
        assert!(m
            .validate(
                "CreateRepository",
                &json!({"repositoryName": "team/app", "catalogData": catalog})
            )
            .is_ok());
        assert_eq!(
            code(m.validate("CreateRepository", &json!({"catalogData": {}}))),
            "InvalidParameterException"
        );
        assert_eq!(
            code(m.validate(
                "CreateRepository",
                &json!({"repositoryName": "ok", "catalogData": {"description": "x".repeat(1025)}})
            )),
            "InvalidParameterException"
        );
        assert_eq!(
            code(m.validate(
                "CreateRepository",
                &json!({"repositoryName": "ok", "catalogData": {"architectures": [""]}})
            )),
            "InvalidParameterException"
        );
        assert_eq!(
            code(m.validate(
                "CreateRepository",
                &json!({"repositoryName": "ok", "catalogData": {"architectures": "x86-64"}})
            )),
            "SerializationException"
        );
        use base64::Engine;
        let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 512_001]);
        assert_eq!(
            code(m.validate(
                "PutRepositoryCatalogData",
                &json!({"repositoryName": "ok", "catalogData": {"logoImageBlob": big}})
            )),
            "InvalidParameterException"
        );
        assert_eq!(
            code(m.validate("PutRepositoryCatalogData", &json!({"repositoryName": "ok"}))),
            "InvalidParameterException"
        );
        assert_eq!(
            code(m.validate("DescribeRepositories", &json!({"maxResults": 1001}))),
            "InvalidParameterException"
        );
        assert!(m.validate("GetAuthorizationToken", &json!({})).is_ok());
    }

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
