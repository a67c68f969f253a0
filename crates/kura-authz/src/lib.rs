//! Who may do what: every request of both planes, decided by the IAM policy
//! language ([`kura_iam`]).
//!
//! A request becomes an [`Access`]: an action (`ecr:PutImage`), the target
//! resource's ARN and account, the resource-based policy that guards it (a
//! repository policy, or for registry-level actions the registry policy),
//! and the tags the request sets. [`Authz::authorize`] resolves the caller to a
//! [`Principal`], gathers its identity-based policies (a user's inline and
//! attached policies and those of its groups; an assumed role's inline and
//! attached policies), and asks [`kura_iam::evaluate`] for the decision:
//! explicit deny wins; in one account an allow on either side suffices;
//! across accounts both sides must allow.
//!
//! What decisions read (principals with their parsed policies, resource
//! policies, tags) is cached in memory per *access-control generation*, a
//! counter the store bumps after every change to any of it. Each decision
//! reads the generation first (one small query) and drops whatever was
//! cached under an older one, so a policy change takes effect on the next
//! request, on every node.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use kura_iam::{Decision, Evaluation, Policy, PolicySource, Principal, PrincipalKind, RequestContext, RequestEnv};
use kura_store::iam::{kind, rel};

use http::Method;
use kura_oci::RepoName;
use kura_registry::endpoint::Endpoint;
use kura_registry::error::ApiResult;
use kura_registry::service::RepoFilter;
use kura_registry::DataRequest;

use kura_aws::{AwsError, AwsResult, Caller};
use kura_store::{ControlStore, IamStore};

/// Authorization: the stores decisions read, the region ARNs are made in,
/// and the cache of what decisions read. One per process, shared by every
/// service and the data-plane guard.
pub struct Authz {
    iam: Arc<dyn IamStore>,
    control: Arc<dyn ControlStore>,
    cache: AuthzCache,
    region: String,
}

impl Authz {
    /// Decisions over `iam`'s principals and policies and `control`'s
    /// resource tags, for resources in `region`.
    pub fn new(iam: Arc<dyn IamStore>, control: Arc<dyn ControlStore>, region: &str) -> Self {
        Authz {
            iam,
            control,
            cache: AuthzCache::default(),
            region: region.to_string(),
        }
    }

    /// The region ARNs are made in.
    pub fn region(&self) -> &str {
        &self.region
    }
}

/// The ARN of a repository.
pub fn repository_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:ecr:{region}:{account}:repository/{name}")
}

/// One request to authorize.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// `service:Action`, e.g. `ecr:BatchGetImage`.
    pub action: String,
    /// The target resource's ARN, or `*`.
    pub resource: String,
    /// The account that owns the resource.
    pub resource_account: String,
    /// The ARN the resource-based policy guarding the request is stored under
    /// (the repository's ARN, or the registry's), if any.
    pub policy_arn: Option<String>,
    /// The ARN whose tags are the resource's tags (`aws:ResourceTag/*`).
    pub tags_arn: Option<String>,
    /// Tags the request sets (`aws:RequestTag/*`, `aws:TagKeys`).
    pub request_tags: BTreeMap<String, String>,
}

impl Access {
    /// An action on a repository.
    pub fn repository(action: &str, region: &str, account: &str, name: &str) -> Self {
        let arn = repository_arn(region, account, name);
        Access {
            action: action.to_string(),
            resource: arn.clone(),
            resource_account: account.to_string(),
            policy_arn: Some(arn.clone()),
            tags_arn: Some(arn),
            request_tags: BTreeMap::new(),
        }
    }

    /// A registry-level action (no resource-level permissions: resource `*`),
    /// guarded by the registry policy.
    pub fn registry(action: &str, region: &str, account: &str) -> Self {
        Access {
            action: action.to_string(),
            resource: "*".to_string(),
            resource_account: account.to_string(),
            policy_arn: Some(registry_arn(region, account)),
            tags_arn: None,
            request_tags: BTreeMap::new(),
        }
    }

    /// An action on any other resource, without a resource policy.
    pub fn resource(action: &str, arn: &str, account: &str) -> Self {
        Access {
            action: action.to_string(),
            resource: arn.to_string(),
            resource_account: account.to_string(),
            policy_arn: None,
            tags_arn: None,
            request_tags: BTreeMap::new(),
        }
    }

    /// The same access with tags the request sets.
    pub fn with_request_tags(mut self, tags: &[(String, String)]) -> Self {
        self.request_tags = tags.iter().cloned().collect();
        self
    }
}

/// Validate an ECR repository or registry policy (`what`) the way ECR does
/// when it is put (ECR and ECR Public alike): `InvalidParameterException`
/// with the reason.
pub fn check_repository_policy(text: &str, what: &str) -> AwsResult<kura_iam::Policy> {
    kura_iam::Policy::parse_with(text, &kura_iam::ParseOptions::ecr_repository_policy()).map_err(|e| {
        AwsError::invalid_parameter(format!(
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid {what} policy provided'. {}",
            e.reason()
        ))
    })
}

/// The ARN a registry policy is stored under.
pub fn registry_arn(region: &str, account: &str) -> String {
    format!("arn:aws:ecr:{region}:{account}:registry")
}

/// A denial, in words like AWS's.
#[derive(Clone, Debug)]
pub struct Denial {
    /// The sentence: `User: <arn> is not authorized to perform: <action> on
    /// resource: <arn> because ...`.
    pub message: String,
}

impl Denial {
    fn new(principal: &Principal, access: &Access, eval: &Evaluation) -> Self {
        let who = if principal.kind == PrincipalKind::Anonymous {
            "anonymous".to_string()
        } else {
            principal.arn.clone()
        };
        let why = match (eval.decision, eval.statement.as_ref().map(|s| s.source)) {
            (Decision::ExplicitDeny, Some(PolicySource::Resource)) => {
                "with an explicit deny in a resource-based policy".to_string()
            }
            (Decision::ExplicitDeny, _) => "with an explicit deny in an identity-based policy".to_string(),
            _ if principal.account != access.resource_account && principal.kind != PrincipalKind::Anonymous => {
                format!("because {}", eval.reason)
            }
            _ => format!("because no identity-based policy allows the {} action", access.action),
        };
        Denial {
            message: format!(
                "User: {who} is not authorized to perform: {} on resource: {} {why}",
                access.action, access.resource
            ),
        }
    }
}

impl Authz {
    /// The principal a caller authenticated as, with its unique id and tags.
    pub async fn principal_of(&self, caller: &Caller) -> AwsResult<Principal> {
        Ok(self.caller_decider(caller, None).await?.principal().clone())
    }

    /// The principal with unique id `principal_id` (its `aws:userid`: the
    /// account id for the root, `AIDA…` for a user, `AROA…:session` for a
    /// role session) in `account` (cached while the access-control
    /// generation is unchanged).
    pub async fn principal_by_id(&self, account: &str, principal_id: &str) -> AwsResult<Principal> {
        Ok(self.decider(account, principal_id, None).await?.principal().clone())
    }

    /// The decisions of an authenticated caller: its principal is the owner
    /// recorded on its access key (by unique id, never by its ARN), and for
    /// temporary credentials `aws:TokenIssueTime` is when they were issued.
    pub async fn caller_decider(&self, caller: &Caller, source_ip: Option<IpAddr>) -> AwsResult<Decider<'_>> {
        let mut d = self.decider(&caller.account, &caller.principal_id, source_ip).await?;
        d.token_issue_time = caller.token_issued_at;
        Ok(d)
    }

    /// The decisions of the principal `principal_id` (see
    /// [`Authz::principal_by_id`]) of `account`: reads the access-control
    /// generation once and loads the principal and its identity policies
    /// once, however many accesses are then decided. A principal that no
    /// longer exists (a deleted user or role, or one re-created under the
    /// same name, which has a new id) is `UnrecognizedClientException`, as
    /// an unknown access key is.
    pub async fn decider(
        &self,
        account: &str,
        principal_id: &str,
        source_ip: Option<IpAddr>,
    ) -> AwsResult<Decider<'_>> {
        // The generation is read before anything it covers.
        let gen = self.iam.iam_generation().await?;
        let snap = self.principal_snapshot(gen, account, principal_id).await?;
        Ok(Decider {
            authz: self,
            gen,
            snap,
            source_ip,
            token_issue_time: None,
        })
    }

    /// A principal and its parsed identity policies, from the cache or the
    /// store; keyed by account and unique id.
    async fn principal_snapshot(
        &self,
        gen: i64,
        account: &str,
        principal_id: &str,
    ) -> AwsResult<Arc<PrincipalSnapshot>> {
        let key = format!("{account}|{principal_id}");
        if let Some(hit) = self.cache.get(gen, |c| c.principals.get(&key).cloned()) {
            return Ok(hit);
        }
        let Some(principal) = self.load_principal(account, principal_id).await? else {
            tracing::info!(account = %account, principal_id = %principal_id, "credentials of a principal that no longer exists");
            return Err(kura_aws::sigv4::unrecognized());
        };
        let texts = self.identity_policy_texts(&principal).await?;
        let snap = Arc::new(PrincipalSnapshot {
            wants_tags: texts.iter().any(|t| mentions_resource_tags(t)),
            identity: parse_all(texts),
            principal,
        });
        self.cache.put(gen, |c| c.principals.insert(key, snap.clone()));
        Ok(snap)
    }

    /// A resource policy, parsed, from the cache or the store.
    async fn resource_snapshot(&self, gen: i64, arn: &str) -> AwsResult<Arc<ResourceSnapshot>> {
        if let Some(hit) = self.cache.get(gen, |c| c.resources.get(arn).cloned()) {
            return Ok(hit);
        }
        let text = self.iam.resource_policy_get(arn).await?.map(|r| r.policy);
        let snap = Arc::new(ResourceSnapshot {
            wants_tags: text.as_deref().is_some_and(mentions_resource_tags),
            policy: text.and_then(|t| parse_all(vec![t]).pop()),
        });
        self.cache
            .put(gen, |c| c.resources.insert(arn.to_string(), snap.clone()));
        Ok(snap)
    }

    /// A resource's tags, from the cache or the store.
    async fn tags_snapshot(&self, gen: i64, arn: &str) -> AwsResult<Arc<BTreeMap<String, String>>> {
        if let Some(hit) = self.cache.get(gen, |c| c.tags.get(arn).cloned()) {
            return Ok(hit);
        }
        let tags: Arc<BTreeMap<String, String>> =
            Arc::new(self.control.resource_tags(arn).await?.into_iter().collect());
        self.cache.put(gen, |c| c.tags.insert(arn.to_string(), tags.clone()));
        Ok(tags)
    }

    /// The principal a unique id names in `account`, from the IAM entity
    /// with that id (so its name, path, ARN and tags are the entity's own),
    /// or `None` if there is none: the account id is the root; `AIDA…` a
    /// user; `AROA…:<session>` a session of a role.
    async fn load_principal(&self, account: &str, principal_id: &str) -> AwsResult<Option<Principal>> {
        if principal_id == account && kura_iam::is_account_id(account) {
            return Ok(Some(Principal::root(account)));
        }
        let (entity_id, session) = match principal_id.split_once(':') {
            Some((id, session)) => (id, Some(session)),
            None => (principal_id, None),
        };
        if entity_id.is_empty() {
            return Ok(None);
        }
        let Some(e) = self.iam.iam_entity_by_id(account, entity_id).await? else {
            return Ok(None);
        };
        let mut p = match (e.kind.as_str(), session) {
            (kind::USER, None) => Principal {
                arn: e.arn.clone(),
                userid: e.id.clone(),
                ..Principal::user(account, &e.name)
            },
            (kind::ROLE, Some(session)) if !session.is_empty() && !session.contains('/') => Principal {
                userid: principal_id.to_string(),
                ..Principal::assumed_role(account, &e.name, session)
            },
            _ => return Ok(None),
        };
        p.tags = entity_tags(&e.body);
        Ok(Some(p))
    }

    /// The identity-based policies of a principal, as stored: for a user
    /// its inline and attached policies and those of its groups; for a role
    /// (or a session of one) the role's. The root has none (it needs none in
    /// its account).
    async fn identity_policy_texts(&self, p: &Principal) -> AwsResult<Vec<String>> {
        let account = p.account.as_str();
        let mut holders: Vec<(&str, String)> = Vec::new();
        match p.kind {
            PrincipalKind::User => {
                let name = p.username.clone().unwrap_or_default();
                for g in self.iam.iam_links_from(account, rel::MEMBER, kind::USER, &name).await? {
                    holders.push((kind::GROUP, g));
                }
                holders.push((kind::USER, name));
            }
            PrincipalKind::Role | PrincipalKind::AssumedRole => {
                holders.push((kind::ROLE, p.role_name().unwrap_or_default().to_string()));
            }
            PrincipalKind::Root | PrincipalKind::Anonymous => return Ok(Vec::new()),
        }
        let mut texts = Vec::new();
        for (k, name) in &holders {
            for (_, doc) in self.iam.iam_inline_list(account, k, name).await? {
                texts.push(doc);
            }
            for arn in self.iam.iam_links_from(account, rel::ATTACHED, k, name).await? {
                if let Some(doc) = self.managed_policy_document(&arn).await? {
                    texts.push(doc);
                }
            }
        }
        Ok(texts)
    }

    /// The default version's document of a managed policy (AWS's by name, or
    /// a customer managed policy of its account).
    pub async fn managed_policy_document(&self, arn: &str) -> AwsResult<Option<String>> {
        if arn.starts_with("arn:aws:iam::aws:policy/") {
            return Ok(kura_iam::managed_policy_text(arn));
        }
        let Some((account, name)) = kura_iam::Arn::parse(arn)
            .ok()
            .filter(|a| a.service == "iam" && a.has_account_id())
            .and_then(|a| Some((a.account, a.iam_path_name("policy")?.1)))
        else {
            return Ok(None);
        };
        let Some(e) = self.iam.iam_entity_get(account, kind::POLICY, name).await? else {
            return Ok(None);
        };
        if e.arn != arn {
            return Ok(None);
        }
        Ok(default_version_document(&e.body))
    }

    /// Evaluate one request for a principal.
    pub async fn evaluate(
        &self,
        principal: &Principal,
        access: &Access,
        source_ip: Option<IpAddr>,
    ) -> AwsResult<Evaluation> {
        self.decider(&principal.account, &principal.userid, source_ip)
            .await?
            .evaluate(access)
            .await
    }

    /// Authorize a data-plane request, parsed once into `data` (already
    /// authenticated by its registry token, whose caller is the owner of the
    /// token's access key), against the registry `account`
    /// its host names. A cross-repository mount also reads its source, so
    /// the caller needs `ecr:GetDownloadUrlForLayer` there too; a denied
    /// mount is not refused: it is removed from `data`, which then starts an
    /// ordinary upload. The catalog is filtered per repository when listed
    /// (see [`DataCatalogFilter`]), so it needs no permission here.
    pub async fn authorize_data(
        &self,
        caller: &Caller,
        account: &str,
        data: &mut DataRequest,
        source_ip: Option<IpAddr>,
    ) -> AwsResult<Result<(), Denial>> {
        // The caller's owner is resolved first, so a token whose owner is
        // gone is refused even where no action is needed (`/v2/`).
        let decider = self.caller_decider(caller, source_ip).await?;
        let Some((action, repo)) = data_action(&data.endpoint, &data.method) else {
            // `/v2/` and the catalog.
            return Ok(Ok(()));
        };
        let region = &self.region;
        if let Err(d) = decider
            .check(&Access::repository(action, region, account, repo.as_str()))
            .await?
        {
            return Ok(Err(d));
        }
        // A mount also reads the source repository.
        if let Some(m) = &data.params.mount {
            let src = Access::repository("ecr:GetDownloadUrlForLayer", region, account, m.from.as_str());
            if decider.check(&src).await?.is_err() {
                data.params.mount = None;
            }
        }
        Ok(Ok(()))
    }

    /// Decide a request: `Ok` if allowed, else `Err` with the denial.
    pub async fn check(
        &self,
        principal: &Principal,
        access: &Access,
        source_ip: Option<IpAddr>,
    ) -> AwsResult<Result<(), Denial>> {
        self.decider(&principal.account, &principal.userid, source_ip)
            .await?
            .check(access)
            .await
    }

    /// Authorize an API caller: `AccessDeniedException` (403) when the policies do not allow the request.
    pub async fn authorize(&self, caller: &Caller, access: &Access, source_ip: Option<IpAddr>) -> AwsResult<()> {
        let decider = self.caller_decider(caller, source_ip).await?;
        match decider.check(access).await? {
            Ok(()) => Ok(()),
            Err(d) => Err(AwsError::new("AccessDeniedException", d.message).with_status(http::StatusCode::FORBIDDEN)),
        }
    }
}

/// One principal's decisions at one access-control generation (see
/// [`Authz::decider`]).
pub struct Decider<'a> {
    authz: &'a Authz,
    gen: i64,
    snap: Arc<PrincipalSnapshot>,
    source_ip: Option<IpAddr>,
    /// When the caller's temporary credentials were issued (ms).
    token_issue_time: Option<i64>,
}

impl Decider<'_> {
    /// The principal, with its unique id and tags.
    pub fn principal(&self) -> &Principal {
        &self.snap.principal
    }

    /// When the caller's temporary credentials were issued (ms), if they are.
    pub fn token_issue_time(&self) -> Option<i64> {
        self.token_issue_time
    }

    /// The principal's identity-based policies.
    pub fn identity_policies(&self) -> &[Policy] {
        &self.snap.identity
    }

    /// Evaluate one access.
    pub async fn evaluate(&self, access: &Access) -> AwsResult<Evaluation> {
        let (ecr, gen, snap) = (self.authz, self.gen, &self.snap);
        let resource = match &access.policy_arn {
            Some(arn) => Some(ecr.resource_snapshot(gen, arn).await?),
            None => None,
        };
        // Tags are read only when some policy can ask about them.
        let wants_tags = snap.wants_tags || resource.as_ref().is_some_and(|r| r.wants_tags);
        let mut env = RequestEnv {
            current_time: Some(kura_store::now_millis() / 1000),
            source_ip: self.source_ip,
            secure_transport: Some(false),
            request_tags: access.request_tags.clone(),
            token_issue_time: self.token_issue_time,
            ..Default::default()
        };
        if let (Some(arn), true) = (&access.tags_arn, wants_tags) {
            env.resource_tags = (*ecr.tags_snapshot(gen, arn).await?).clone();
        }
        let mut ctx = RequestContext::new(
            snap.principal.clone(),
            &access.action,
            &access.resource,
            &access.resource_account,
        );
        ctx.fill_standard_keys(&env);
        let refs: Vec<&Policy> = snap.identity.iter().collect();
        Ok(kura_iam::evaluate(
            &ctx,
            &refs,
            resource.as_ref().and_then(|r| r.policy.as_ref()),
        ))
    }

    /// Decide one access: `Ok` if allowed, else `Err` with the denial.
    pub async fn check(&self, access: &Access) -> AwsResult<Result<(), Denial>> {
        let eval = self.evaluate(access).await?;
        if eval.is_allowed() {
            return Ok(Ok(()));
        }
        let p = self.principal();
        tracing::info!(principal = %p.arn, action = %access.action, resource = %access.resource, reason = %eval.reason, "access denied");
        Ok(Err(Denial::new(p, access, &eval)))
    }
}

/// The `ecr:` action a data-plane request performs, and the repository it
/// addresses. `None` for `/v2/` and the catalog (filtered per repository).
/// `method` is one the endpoint supports ([`DataRequest::parse`] checks).
pub fn data_action<'a>(endpoint: &'a Endpoint, method: &Method) -> Option<(&'static str, &'a RepoName)> {
    Some(match (endpoint, method) {
        (Endpoint::Base | Endpoint::Catalog, _) => return None,
        (Endpoint::Tags(n), _) => ("ecr:ListImages", n),
        (Endpoint::Manifest(n, _), &Method::PUT) => ("ecr:PutImage", n),
        (Endpoint::Manifest(n, _), &Method::DELETE) => ("ecr:BatchDeleteImage", n),
        (Endpoint::Manifest(n, _), _) => ("ecr:BatchGetImage", n),
        (Endpoint::Referrers(n, _), _) => ("ecr:BatchGetImage", n),
        (Endpoint::Blob(n, _), &Method::HEAD) => ("ecr:BatchCheckLayerAvailability", n),
        (Endpoint::Blob(n, _), &Method::DELETE) => ("ecr:BatchDeleteImage", n),
        (Endpoint::Blob(n, _), _) => ("ecr:GetDownloadUrlForLayer", n),
        (Endpoint::UploadStart(n), _) => ("ecr:InitiateLayerUpload", n),
        (Endpoint::Upload(n, _), &Method::PUT) => ("ecr:CompleteLayerUpload", n),
        (Endpoint::Upload(n, _), _) => ("ecr:UploadLayerPart", n),
    })
}

/// The catalog filter of a data-plane caller: a repository is listed when
/// the caller may `ecr:DescribeRepositories` it (identity and repository
/// policies, as `DescribeRepositories` decides on the API).
pub struct DataCatalogFilter {
    /// The service.
    pub authz: Arc<Authz>,
    /// The caller (the owner of its registry token's access key).
    pub caller: Caller,
    /// The caller's address.
    pub source_ip: Option<IpAddr>,
}

#[async_trait::async_trait]
impl RepoFilter for DataCatalogFilter {
    async fn visible(&self, account: &str, names: &[String]) -> ApiResult<Vec<bool>> {
        let internal = |e: AwsError| {
            tracing::error!(error = %e, "catalog authorization failed");
            kura_registry::ApiError::new(kura_oci::ErrorCode::Internal, "authorization could not be decided")
        };
        let decider = self
            .authz
            .caller_decider(&self.caller, self.source_ip)
            .await
            .map_err(internal)?;
        let region = &self.authz.region;
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let access = Access::repository("ecr:DescribeRepositories", region, account, n);
            out.push(decider.evaluate(&access).await.map_err(internal)?.is_allowed());
        }
        Ok(out)
    }
}

fn parse_all(texts: Vec<String>) -> Vec<Policy> {
    texts
        .into_iter()
        .filter_map(|t| match Policy::parse(&t) {
            Ok(p) => Some(p),
            // Stored documents were validated when put; one that no longer
            // parses grants nothing.
            Err(e) => {
                tracing::warn!(error = %e, "a stored policy does not parse; ignored");
                None
            }
        })
        .collect()
}

fn mentions_resource_tags(text: &str) -> bool {
    text.to_ascii_lowercase().contains("resourcetag")
}

/// A principal with its parsed identity policies.
pub(crate) struct PrincipalSnapshot {
    principal: Principal,
    identity: Vec<Policy>,
    wants_tags: bool,
}

/// A resource policy, parsed.
pub(crate) struct ResourceSnapshot {
    policy: Option<Policy>,
    wants_tags: bool,
}

/// What decisions read, kept in memory per access-control generation: the
/// store's generation is read on every decision (one small query), and
/// everything cached under an older generation is dropped, so a change made
/// on any node applies to the next request.
#[derive(Default)]
pub(crate) struct AuthzCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
pub(crate) struct CacheInner {
    gen: i64,
    principals: HashMap<String, Arc<PrincipalSnapshot>>,
    resources: HashMap<String, Arc<ResourceSnapshot>>,
    tags: HashMap<String, Arc<BTreeMap<String, String>>>,
}

/// Entries per map before the cache starts over.
const CACHE_LIMIT: usize = 10_000;

impl AuthzCache {
    /// Look up under generation `gen` (moving the cache forward to it).
    fn get<T>(&self, gen: i64, f: impl FnOnce(&CacheInner) -> Option<T>) -> Option<T> {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if gen > c.gen {
            *c = CacheInner {
                gen,
                ..Default::default()
            };
        }
        if gen == c.gen {
            f(&c)
        } else {
            None
        }
    }

    /// Keep something loaded after reading generation `gen` (unless the cache
    /// has moved past it).
    fn put<T>(&self, gen: i64, f: impl FnOnce(&mut CacheInner) -> T) {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if gen != c.gen {
            return;
        }
        if c.principals.len() >= CACHE_LIMIT || c.resources.len() >= CACHE_LIMIT || c.tags.len() >= CACHE_LIMIT {
            *c = CacheInner {
                gen,
                ..Default::default()
            };
        }
        f(&mut c);
    }
}

/// Tags kept in an entity's body (`{"Tags": {"k": "v"}}`).
fn entity_tags(body: &str) -> BTreeMap<String, String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("Tags").cloned())
        .and_then(|t| serde_json::from_value(t).ok())
        .unwrap_or_default()
}

/// The document of a managed policy's default version, from its entity body
/// (`{"DefaultVersionId": "v1", "Versions": [{"VersionId": "v1", "Document": "..."}]}`).
pub fn default_version_document(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let default = v.get("DefaultVersionId")?.as_str()?;
    v.get("Versions")?
        .as_array()?
        .iter()
        .find(|x| x.get("VersionId").and_then(|i| i.as_str()) == Some(default))?
        .get("Document")?
        .as_str()
        .map(str::to_string)
}
