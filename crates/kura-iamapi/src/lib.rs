//! IAM and STS on Kura: the AWS Query protocol (form-encoded `Action=...`,
//! XML answers).
//!
//! A request is a form (`Action`, `Version`, the operation's parameters;
//! lists as `Name.member.N`, tags as `Tags.member.N.Key`/`.Value`). The
//! action picks the service: STS actions are signed for `sts`, the rest for
//! `iam`. Every IAM call is authorized like an ECR call, with the action
//! `iam:<Action>` on the ARN of the user, group, role or policy it touches
//! (`*` for account-wide lists); the account root may do anything in its
//! account. Answers are `<ActionResponse><ActionResult>…` documents in the
//! service's namespace; errors are `<ErrorResponse>` with IAM's codes.
//!
//! Entities live in the [`kura_store::IamStore`]: one row per user, group,
//! role or customer managed policy (with kind-specific fields such as tags, a
//! role's trust policy or a policy's versions in its JSON body), inline
//! policies by owner, and links for group membership and attachments.
//! Access keys are rows of the [`kura_store::ControlStore`].
//!
//! The submodules hold the operations: [`users`] (users, access keys, tags),
//! [`groups`], [`roles`], [`policies`] (inline and managed policies,
//! attachments) and [`sts`].

mod groups;
mod policies;
mod roles;
mod sts;
mod users;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use axum::http::StatusCode;
use kura_aws::service::OpTable;
use kura_aws::{AwsService, Call, OpSpec, Protocol, Scope};
use kura_store::iam::{kind, IamEntity};
use serde_json::Value;

pub use kura_aws::query::xml_escape;

use kura_auth::seal::MasterKey;
use kura_authz::{Access, Authz};
use kura_aws::{AwsError, AwsResult, Caller};
use kura_iam::Principal;
use kura_store::{ControlStore, IamStore};

/// IAM and STS over Kura's stores: what their actions read and write.
pub struct IamApi {
    /// Principals, policies and their links.
    pub(crate) iam: Arc<dyn IamStore>,
    /// Access keys.
    pub(crate) control: Arc<dyn ControlStore>,
    /// Seals the secrets of the keys it creates.
    pub(crate) master: MasterKey,
    authz: Arc<Authz>,
    pub(crate) config: IamConfig,
}

/// Settings of IAM and STS.
#[derive(Clone, Debug)]
pub struct IamConfig {
    /// The longest session STS hands out, in seconds (`KURA_STS_MAX_SESSION`).
    pub max_session_secs: u64,
}

impl IamApi {
    /// IAM and STS over these stores.
    pub fn new(
        iam: Arc<dyn IamStore>,
        control: Arc<dyn ControlStore>,
        master: MasterKey,
        authz: Arc<Authz>,
        config: IamConfig,
    ) -> Self {
        IamApi {
            iam,
            control,
            master,
            authz,
            config,
        }
    }

    async fn authorize(&self, caller: &Caller, access: &Access, source_ip: Option<std::net::IpAddr>) -> AwsResult<()> {
        self.authz.authorize(caller, access, source_ip).await
    }

    async fn principal_of(&self, caller: &Caller) -> AwsResult<Principal> {
        self.authz.principal_of(caller).await
    }

    async fn caller_decider(
        &self,
        caller: &Caller,
        source_ip: Option<std::net::IpAddr>,
    ) -> AwsResult<kura_authz::Decider<'_>> {
        self.authz.caller_decider(caller, source_ip).await
    }
}

/// IAM's XML namespace.
pub const IAM_NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
/// STS's XML namespace.
pub const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// IAM's actions Kura implements (the dispatchers of the submodules
/// answer them); an action nobody has answers `InvalidAction`.
const IAM_ACTIONS: &[&str] = &[
    "CreateUser",
    "GetUser",
    "ListUsers",
    "DeleteUser",
    "TagUser",
    "UntagUser",
    "ListUserTags",
    "CreateAccessKey",
    "ListAccessKeys",
    "UpdateAccessKey",
    "DeleteAccessKey",
    "CreateGroup",
    "GetGroup",
    "ListGroups",
    "DeleteGroup",
    "AddUserToGroup",
    "RemoveUserFromGroup",
    "ListGroupsForUser",
    "CreateRole",
    "GetRole",
    "ListRoles",
    "DeleteRole",
    "UpdateRole",
    "UpdateAssumeRolePolicy",
    "TagRole",
    "UntagRole",
    "ListRoleTags",
    "CreatePolicy",
    "GetPolicy",
    "ListPolicies",
    "DeletePolicy",
    "CreatePolicyVersion",
    "GetPolicyVersion",
    "ListPolicyVersions",
    "DeletePolicyVersion",
    "SetDefaultPolicyVersion",
    "ListEntitiesForPolicy",
    "PutUserPolicy",
    "GetUserPolicy",
    "DeleteUserPolicy",
    "ListUserPolicies",
    "AttachUserPolicy",
    "DetachUserPolicy",
    "ListAttachedUserPolicies",
    "PutGroupPolicy",
    "GetGroupPolicy",
    "DeleteGroupPolicy",
    "ListGroupPolicies",
    "AttachGroupPolicy",
    "DetachGroupPolicy",
    "ListAttachedGroupPolicies",
    "PutRolePolicy",
    "GetRolePolicy",
    "DeleteRolePolicy",
    "ListRolePolicies",
    "AttachRolePolicy",
    "DetachRolePolicy",
    "ListAttachedRolePolicies",
];

/// The STS actions Kura implements (the others of [`sts::ACTIONS`] answer
/// that they are not implemented).
const STS_BUILT: &[&str] = &["GetCallerIdentity", "AssumeRole"];

/// IAM's operations. Each authorizes itself (`iam:<Action>` on the entity
/// it resolves, or `*`).
pub fn iam_operations() -> &'static OpTable {
    static T: OnceLock<OpTable> = OnceLock::new();
    T.get_or_init(|| OpTable::build("iam", IAM_ACTIONS.iter().map(|a| (*a, Scope::Other, true))))
}

/// STS's operations.
pub fn sts_operations() -> &'static OpTable {
    static T: OnceLock<OpTable> = OnceLock::new();
    T.get_or_init(|| {
        OpTable::build(
            "sts",
            sts::ACTIONS.iter().map(|a| (*a, Scope::Other, STS_BUILT.contains(a))),
        )
    })
}

/// Which service a Query action belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    Iam,
    Sts,
}

/// IAM on the AWS pipeline (Query protocol, signing name `iam`, global).
pub struct IamService {
    api: Arc<IamApi>,
}

impl IamService {
    /// IAM over `api`.
    pub fn new(api: Arc<IamApi>) -> Self {
        IamService { api }
    }
}

/// STS on the AWS pipeline (Query protocol, signing name `sts`, global).
pub struct StsService {
    api: Arc<IamApi>,
}

impl StsService {
    /// STS over `api`.
    pub fn new(api: Arc<IamApi>) -> Self {
        StsService { api }
    }
}

/// Run one authenticated IAM or STS call as its XML result.
async fn run(api: &IamApi, call: &Call, input: &Value, service: Service) -> AwsResult<Value> {
    let input = Input::from_value(input);
    let ctx = Ctx {
        api,
        account: call.caller.account.clone(),
        caller: call.caller.clone(),
        source_ip: call.source_ip,
    };
    let result = match service {
        Service::Sts => sts::dispatch(&ctx, call.operation, &input).await,
        Service::Iam => dispatch_iam(&ctx, call.operation, &input).await,
    };
    Ok(result?.map_or(Value::Null, Value::String))
}

#[async_trait]
impl AwsService for IamService {
    fn protocol(&self) -> Protocol {
        Protocol::Query { namespace: IAM_NS }
    }

    fn signing_name(&self) -> &'static str {
        "iam"
    }

    fn global(&self) -> bool {
        true
    }

    fn event_source(&self) -> &'static str {
        "iam.amazonaws.com"
    }

    fn operation(&self, name: &str) -> Option<OpSpec> {
        iam_operations().get(name)
    }

    fn unknown_operation(&self, name: &str) -> AwsError {
        if name.is_empty() {
            err::invalid_action("The request must name an Action")
        } else {
            err::invalid_action(&format!("Could not find operation {name} for version 2010-05-08"))
        }
    }

    async fn authorize(&self, _call: &Call, _op: &OpSpec, _input: &Value) -> AwsResult<()> {
        Ok(())
    }

    async fn run(&self, call: &Call, _op: &OpSpec, input: Value) -> AwsResult<Value> {
        run(&self.api, call, &input, Service::Iam).await
    }

    fn map_error(&self, e: AwsError) -> AwsError {
        auth_error(e, Service::Iam)
    }
}

#[async_trait]
impl AwsService for StsService {
    fn protocol(&self) -> Protocol {
        Protocol::Query { namespace: STS_NS }
    }

    fn signing_name(&self) -> &'static str {
        "sts"
    }

    fn global(&self) -> bool {
        true
    }

    fn event_source(&self) -> &'static str {
        "sts.amazonaws.com"
    }

    fn operation(&self, name: &str) -> Option<OpSpec> {
        sts_operations().get(name)
    }

    async fn authorize(&self, _call: &Call, _op: &OpSpec, _input: &Value) -> AwsResult<()> {
        Ok(())
    }

    async fn run(&self, call: &Call, _op: &OpSpec, input: Value) -> AwsResult<Value> {
        run(&self.api, call, &input, Service::Sts).await
    }

    fn map_error(&self, e: AwsError) -> AwsError {
        auth_error(e, Service::Sts)
    }
}

async fn dispatch_iam(ctx: &Ctx<'_>, action: &str, input: &Input) -> AwsResult<Option<String>> {
    if let Some(r) = users::dispatch(ctx, action, input).await {
        return r;
    }
    if let Some(r) = groups::dispatch(ctx, action, input).await {
        return r;
    }
    if let Some(r) = roles::dispatch(ctx, action, input).await {
        return r;
    }
    if let Some(r) = policies::dispatch(ctx, action, input).await {
        return r;
    }
    Err(err::invalid_action(&format!(
        "Could not find operation {action} for version 2010-05-08"
    )))
}

/// Authentication failures with the Query protocol's codes.
fn auth_error(e: AwsError, service: Service) -> AwsError {
    let (kind, status) = match e.kind {
        "MissingAuthenticationTokenException" => ("MissingAuthenticationToken", StatusCode::FORBIDDEN),
        "IncompleteSignatureException" => ("IncompleteSignature", StatusCode::BAD_REQUEST),
        "InvalidSignatureException" => ("SignatureDoesNotMatch", StatusCode::FORBIDDEN),
        "UnrecognizedClientException" => ("InvalidClientTokenId", StatusCode::FORBIDDEN),
        "ExpiredTokenException" if service == Service::Sts => ("ExpiredTokenException", StatusCode::BAD_REQUEST),
        "ExpiredTokenException" => ("ExpiredToken", StatusCode::FORBIDDEN),
        _ => return e,
    };
    AwsError {
        kind,
        message: e.message,
        status,
    }
}

/// The context of one IAM or STS call.
pub(crate) struct Ctx<'a> {
    api: &'a IamApi,
    caller: Caller,
    /// The caller's account: every entity the call touches lives here.
    account: String,
    source_ip: Option<std::net::IpAddr>,
}

impl Ctx<'_> {
    /// Authorize `action` on `resource` (an ARN in the caller's account, or `*`).
    async fn allow(&self, action: &str, resource: &str) -> AwsResult<()> {
        self.allow_access(Access::resource(action, resource, &self.account))
            .await
    }

    /// Authorize an access, with IAM's `AccessDenied` (403) on refusal.
    async fn allow_access(&self, access: Access) -> AwsResult<()> {
        self.api
            .authorize(&self.caller, &access, self.source_ip)
            .await
            .map_err(|e| {
                if e.kind == "AccessDeniedException" {
                    err::access_denied(e.message)
                } else {
                    e
                }
            })
    }

    /// An IAM ARN in the caller's account: `arn:aws:iam::ACCT:<kind><path><name>`.
    fn arn(&self, kind: &str, path: &str, name: &str) -> String {
        format!("arn:aws:iam::{}:{kind}{path}{name}", self.account)
    }

    /// A user, group or role of the caller's account (its name checked
    /// first), and the ARN to authorize against: its own, or the path-less
    /// ARN it would have.
    pub(crate) async fn find(&self, k: &str, name: &str) -> AwsResult<(Option<IamEntity>, String)> {
        let (field, max) = match k {
            kind::USER => ("userName", 128),
            kind::GROUP => ("groupName", 128),
            _ => ("roleName", 64),
        };
        check_name(field, name, max)?;
        let e = self.api.iam.iam_entity_get(&self.account, k, name).await?;
        let arn = e.as_ref().map_or_else(|| self.arn(k, "/", name), |e| e.arn.clone());
        Ok((e, arn))
    }

    /// Authorize `action` on a user, group or role (with the tags the request
    /// sets, if any), then require it to exist (`NoSuchEntity`).
    pub(crate) async fn entity(
        &self,
        action: &str,
        k: &str,
        name: &str,
        tags: Option<&[(String, String)]>,
    ) -> AwsResult<IamEntity> {
        let (e, arn) = self.find(k, name).await?;
        let mut access = Access::resource(action, &arn, &self.account);
        if let Some(t) = tags {
            access = access.with_request_tags(t);
        }
        self.allow_access(access).await?;
        e.ok_or_else(|| no_such(k, name))
    }
}

/// `NoSuchEntity` for a user, group or role.
pub(crate) fn no_such(k: &str, name: &str) -> AwsError {
    err::no_such_entity(format!("The {k} with name {name} cannot be found."))
}

/// The Query protocol's error codes, as [`AwsError`]s.
pub(crate) mod err {
    use axum::http::StatusCode;

    use kura_aws::AwsError;

    /// `NoSuchEntity` (404).
    pub fn no_such_entity(message: impl Into<String>) -> AwsError {
        AwsError::new("NoSuchEntity", message).with_status(StatusCode::NOT_FOUND)
    }

    /// `EntityAlreadyExists` (409).
    pub fn already_exists(message: impl Into<String>) -> AwsError {
        AwsError::new("EntityAlreadyExists", message).with_status(StatusCode::CONFLICT)
    }

    /// `MalformedPolicyDocument` (400).
    pub fn malformed(message: impl Into<String>) -> AwsError {
        AwsError::new("MalformedPolicyDocument", message)
    }

    /// `DeleteConflict` (409).
    pub fn delete_conflict(message: impl Into<String>) -> AwsError {
        AwsError::new("DeleteConflict", message).with_status(StatusCode::CONFLICT)
    }

    /// `LimitExceeded` (409).
    pub fn limit_exceeded(message: impl Into<String>) -> AwsError {
        AwsError::new("LimitExceeded", message).with_status(StatusCode::CONFLICT)
    }

    /// `ValidationError` (400).
    pub fn validation(message: impl Into<String>) -> AwsError {
        AwsError::new("ValidationError", message)
    }

    /// `InvalidInput` (400).
    pub fn invalid_input(message: impl Into<String>) -> AwsError {
        AwsError::new("InvalidInput", message)
    }

    /// `AccessDenied` (403).
    pub fn access_denied(message: impl Into<String>) -> AwsError {
        AwsError::new("AccessDenied", message).with_status(StatusCode::FORBIDDEN)
    }

    /// `InvalidAction` (400): no such operation.
    pub fn invalid_action(message: &str) -> AwsError {
        AwsError::new("InvalidAction", message.to_string())
    }
}

/// The parameters of a Query request, decoded.
#[derive(Clone, Debug, Default)]
pub(crate) struct Input {
    fields: BTreeMap<String, String>,
}

impl Input {
    /// Decode a form body (`a=b&c=d`, `+` is a space, `%XX` escapes).
    #[cfg(test)]
    pub fn parse(body: &[u8]) -> Input {
        Input::from_value(&kura_aws::query::form_input(body))
    }

    /// The fields of a form as the pipeline parsed it (a JSON object of strings).
    pub fn from_value(v: &Value) -> Input {
        Input {
            fields: v
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect(),
        }
    }

    /// A parameter, if present.
    pub fn opt(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// A required parameter: `ValidationError` when it is missing.
    pub fn req(&self, name: &str) -> AwsResult<&str> {
        self.opt(name).ok_or_else(|| {
            err::validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                lower_first(name)
            ))
        })
    }

    /// An integer parameter.
    pub fn int(&self, name: &str) -> AwsResult<Option<i64>> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| err::validation(format!("Value '{v}' at '{}' is not an integer", lower_first(name)))),
        }
    }

    /// A boolean parameter.
    pub fn bool(&self, name: &str) -> AwsResult<Option<bool>> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(err::validation(format!(
                "Value '{v}' at '{}' is not a boolean",
                lower_first(name)
            ))),
        }
    }

    /// A list parameter (`Name.member.1`, `Name.member.2`, …), in index order.
    pub fn list(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}.member.");
        let mut items: Vec<(u32, String)> = self
            .fields
            .iter()
            .filter_map(|(k, v)| {
                let n = k.strip_prefix(&prefix)?.parse().ok()?;
                Some((n, v.clone()))
            })
            .collect();
        items.sort_by_key(|(n, _)| *n);
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// A tag list (`Tags.member.N.Key` / `.Value`), in index order.
    pub fn tags(&self, name: &str) -> AwsResult<Vec<(String, String)>> {
        let prefix = format!("{name}.member.");
        let mut by_index: BTreeMap<u32, (Option<String>, Option<String>)> = BTreeMap::new();
        for (k, v) in &self.fields {
            let Some(rest) = k.strip_prefix(&prefix) else { continue };
            let Some((n, field)) = rest.split_once('.') else {
                continue;
            };
            let Ok(n) = n.parse::<u32>() else { continue };
            let slot = by_index.entry(n).or_default();
            match field {
                "Key" => slot.0 = Some(v.clone()),
                "Value" => slot.1 = Some(v.clone()),
                _ => {}
            }
        }
        let mut out = Vec::with_capacity(by_index.len());
        for (_, (k, v)) in by_index {
            let k = k.ok_or_else(|| err::validation("A tag must have a Key"))?;
            if k.is_empty() || k.chars().count() > 128 {
                return Err(err::validation(format!(
                    "1 validation error detected: Value '{k}' at 'tags.key' failed to satisfy constraint: Member must have length between 1 and 128"
                )));
            }
            let v = v.unwrap_or_default();
            if v.chars().count() > 256 {
                return Err(err::validation(
                    "1 validation error detected: a tag value must have length at most 256",
                ));
            }
            out.push((k, v));
        }
        if out.len() > 50 {
            return Err(err::limit_exceeded(
                "The number of tags has reached the maximum limit (50).",
            ));
        }
        Ok(out)
    }

    /// `Marker` and `MaxItems` (1..=1000, default 100).
    pub fn paging(&self) -> AwsResult<Paging> {
        let max = self.int("MaxItems")?.unwrap_or(100);
        if !(1..=1000).contains(&max) {
            return Err(err::validation(format!(
                "1 validation error detected: Value '{max}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 1000"
            )));
        }
        Ok(Paging {
            marker: self.opt("Marker").map(str::to_string),
            max: max as usize,
        })
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Where a list call starts and how much it returns.
#[derive(Clone, Debug)]
pub(crate) struct Paging {
    /// The `Marker` of the previous page: the sort key of its last item.
    pub marker: Option<String>,
    /// `MaxItems`.
    pub max: usize,
}

impl Paging {
    /// One page of `items` (sorted by `key`): the items after the marker, at
    /// most `max`, and the next marker if more follow.
    pub fn page<T>(&self, items: Vec<T>, key: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
        let mut rest: Vec<T> = match &self.marker {
            Some(m) => items.into_iter().filter(|i| key(i).as_str() > m.as_str()).collect(),
            None => items,
        };
        if rest.len() > self.max {
            rest.truncate(self.max);
            let next = rest.last().map(&key);
            (rest, next)
        } else {
            (rest, None)
        }
    }
}

/// A small XML writer for answers.
#[derive(Default)]
pub(crate) struct Xml(String);

impl Xml {
    /// A new, empty fragment.
    pub fn new() -> Self {
        Xml(String::new())
    }

    /// `<tag>text</tag>`, the text escaped.
    pub fn text(&mut self, tag: &str, text: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.0, "<{tag}>{}</{tag}>", xml_escape(&text.to_string()));
        self
    }

    /// `<tag>text</tag>` if there is a text.
    pub fn opt(&mut self, tag: &str, text: Option<impl std::fmt::Display>) -> &mut Self {
        if let Some(t) = text {
            self.text(tag, t);
        }
        self
    }

    /// `<tag>` + the fragment `inner` + `</tag>`.
    pub fn wrap(&mut self, tag: &str, inner: &str) -> &mut Self {
        let _ = write!(self.0, "<{tag}>{inner}</{tag}>");
        self
    }

    /// A list: `<tag><member>…</member>…</tag>`.
    pub fn members(&mut self, tag: &str, members: impl IntoIterator<Item = String>) -> &mut Self {
        let _ = write!(self.0, "<{tag}>");
        for m in members {
            let _ = write!(self.0, "<member>{m}</member>");
        }
        let _ = write!(self.0, "</{tag}>");
        self
    }

    /// `IsTruncated` and, if there is more, `Marker`.
    pub fn truncation(&mut self, next: Option<String>) -> &mut Self {
        self.text("IsTruncated", next.is_some());
        self.opt("Marker", next)
    }

    /// The fragment.
    pub fn done(&mut self) -> String {
        std::mem::take(&mut self.0)
    }
}

/// A stored timestamp (ms) in ISO 8601 UTC, as IAM writes them.
pub(crate) fn iso(ms: i64) -> String {
    kura_iam::format_rfc3339(ms.div_euclid(1000))
}

/// A policy document as IAM answers it: URL-encoded (RFC 3986).
pub(crate) fn url_encode(text: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, KEEP).to_string()
}

/// A new unique id: `prefix` and 16 characters of `[A-Z0-9]`.
pub(crate) fn unique_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random generator works");
    let tail: String = bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{tail}")
}

/// Check an entity or policy name: `[\w+=,.@-]+`, at most `max` characters.
pub(crate) fn check_name(field: &str, value: &str, max: usize) -> AwsResult<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
    if value.is_empty() || value.chars().count() > max {
        return Err(err::validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must have length less than or equal to {max}"
        )));
    }
    if !value.chars().all(ok_char) {
        return Err(err::validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+"
        )));
    }
    Ok(())
}

/// Check an IAM path: `/` or `/a/b/`, printable ASCII, at most 512 characters.
pub(crate) fn check_path(value: &str) -> AwsResult<()> {
    let ok = value.len() <= 512
        && value.starts_with('/')
        && value.ends_with('/')
        && value.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(err::validation(format!(
            "1 validation error detected: Value '{value}' at 'path' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)"
        )))
    }
}

/// An entity's JSON body as an object (empty if it does not parse).
pub(crate) fn body_of(text: &str) -> serde_json::Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

/// The tags kept in an entity body.
pub(crate) fn tags_of(body: &serde_json::Map<String, Value>) -> BTreeMap<String, String> {
    body.get("Tags")
        .and_then(|t| serde_json::from_value(t.clone()).ok())
        .unwrap_or_default()
}

/// `<Tags><member><Key>…</Key><Value>…</Value></member>…</Tags>`, if any.
pub(crate) fn tags_xml(x: &mut Xml, tags: &BTreeMap<String, String>) {
    if !tags.is_empty() {
        x.members(
            "Tags",
            tags.iter()
                .map(|(k, v)| Xml::new().text("Key", k).text("Value", v).done()),
        );
    }
}

impl IamApi {
    /// Change an entity's JSON body (compare and swap, retried); `NoSuchEntity`
    /// with `missing` when it does not exist.
    pub(crate) async fn iam_update_body(
        &self,
        account: &str,
        kind: &str,
        name: &str,
        missing: impl Fn() -> AwsError,
        change: impl Fn(&mut serde_json::Map<String, Value>) -> AwsResult<()>,
    ) -> AwsResult<serde_json::Map<String, Value>> {
        for _ in 0..16 {
            let e = self
                .iam
                .iam_entity_get(account, kind, name)
                .await?
                .ok_or_else(&missing)?;
            let mut body = body_of(&e.body);
            change(&mut body)?;
            let text = Value::Object(body.clone()).to_string();
            if self
                .iam
                .iam_entity_update(account, kind, &e.name, &e.body, &text)
                .await?
            {
                return Ok(body);
            }
        }
        Err(AwsError::new(
            "ConcurrentModification",
            "The entity was modified concurrently; try again",
        )
        .with_status(StatusCode::CONFLICT))
    }
}

/// Results of the handlers: the inner XML of `<ActionResult>`, or `None` for
/// operations that answer only `ResponseMetadata`.
pub(crate) type Out = AwsResult<Option<String>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_lists_and_tags() {
        let i = Input::parse(
            b"Action=TagUser&UserName=a%2Bb&Tags.member.2.Key=k2&Tags.member.2.Value=v+2&Tags.member.1.Key=k1&Tags.member.1.Value=v1&TagKeys.member.10=z&TagKeys.member.2=y",
        );
        assert_eq!(i.opt("UserName"), Some("a+b"));
        assert_eq!(
            i.tags("Tags").unwrap(),
            vec![("k1".into(), "v1".into()), ("k2".into(), "v 2".into())]
        );
        assert_eq!(i.list("TagKeys"), vec!["y", "z"]);
        assert!(i.req("Missing").is_err());
    }

    #[test]
    fn paging_cuts_and_resumes() {
        let p = Paging { marker: None, max: 2 };
        let (items, next) = p.page(vec!["a", "b", "c"], |s| s.to_string());
        assert_eq!(items, vec!["a", "b"]);
        assert_eq!(next.as_deref(), Some("b"));
        let p = Paging { marker: next, max: 2 };
        let (items, next) = p.page(vec!["a", "b", "c"], |s| s.to_string());
        assert_eq!(items, vec!["c"]);
        assert_eq!(next, None);
    }

    #[test]
    fn names_paths_and_encoding() {
        assert!(check_name("userName", "alice.b@x-1", 64).is_ok());
        assert!(check_name("userName", "a b", 64).is_err());
        assert!(check_name("userName", &"a".repeat(65), 64).is_err());
        assert!(check_path("/").is_ok());
        assert!(check_path("/team/a/").is_ok());
        assert!(check_path("team/").is_err());
        assert_eq!(url_encode("{\"a\": 1}"), "%7B%22a%22%3A%201%7D");
        let id = unique_id("AIDA");
        assert_eq!(id.len(), 20);
        assert!(id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        assert_eq!(iso(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }
}
