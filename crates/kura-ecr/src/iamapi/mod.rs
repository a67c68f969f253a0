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

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kura_store::iam::{kind, IamEntity};
use serde_json::Value;

use crate::auth::{Caller, SignedRequest};
use crate::authz::Access;
use crate::body::RequestBody;
use crate::error::{EcrError, EcrResult};
use crate::Ecr;

/// IAM's XML namespace.
pub const IAM_NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
/// STS's XML namespace.
pub const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// Which service a Query action belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    Iam,
    Sts,
}

impl Service {
    fn of(action: &str) -> Service {
        if sts::ACTIONS.contains(&action) {
            Service::Sts
        } else {
            Service::Iam
        }
    }

    fn of_signing_name(name: &str) -> Service {
        if name == "sts" {
            Service::Sts
        } else {
            Service::Iam
        }
    }

    fn signing_name(self) -> &'static str {
        match self {
            Service::Iam => "iam",
            Service::Sts => "sts",
        }
    }

    /// CloudTrail's `eventSource`.
    fn event_source(self) -> &'static str {
        match self {
            Service::Iam => "iam.amazonaws.com",
            Service::Sts => "sts.amazonaws.com",
        }
    }

    fn namespace(self) -> &'static str {
        match self {
            Service::Iam => IAM_NS,
            Service::Sts => STS_NS,
        }
    }
}

/// Answer one IAM or STS Query call: the headers authenticate first (for
/// `iam` or `sts`), then the form is read and the signature checked over it
/// for the service its `Action` belongs to.
pub async fn handle(
    ecr: &Ecr,
    parts: &http::request::Parts,
    body: &mut RequestBody,
    rid: &str,
    info: &mut crate::calls::CallInfo,
) -> Response {
    info.source = "iam.amazonaws.com";
    let signed = match ecr.authenticate_headers(parts, &["iam", "sts"]).await {
        Ok(s) => s,
        Err(e) => {
            let service = claimed_service(parts);
            info.source = service.event_source();
            let e = auth_error(e, service);
            info.error = Some((e.kind.to_string(), e.message.clone()));
            return error_in(service.namespace(), &e, rid);
        }
    };
    let claimed = Service::of_signing_name(signed.service());
    info.source = claimed.event_source();
    info.claimed = Some(signed.claimed().clone());
    let body = match ecr.read_body(parts, body).await {
        Ok(b) => b,
        Err(e) => {
            let e = query_error(e);
            info.error = Some((e.kind.to_string(), e.message.clone()));
            return error_in(claimed.namespace(), &e, rid);
        }
    };
    let input = Input::parse(&body.bytes);
    let action = input.opt("Action").unwrap_or_default().to_string();
    let service = Service::of(&action);
    info.source = service.event_source();
    info.name = action.clone();
    if ecr.audit().is_some() {
        info.params = Some(input.audit_params());
    }
    let result = run(ecr, parts, signed, &body.sha256, &input, &action, info).await;
    drop(body);
    match result {
        Ok(result) => success_response(service, &action, result.as_deref(), rid),
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(request_id = %rid, error = %e, "IAM/STS API failure");
            }
            info.error = Some((e.kind.to_string(), e.message.clone()));
            error_in(service.namespace(), &e, rid)
        }
    }
}

/// The service a request's credential scope names, for answering a
/// refusal before its `Action` is known (IAM unless it says `sts`).
fn claimed_service(parts: &http::request::Parts) -> Service {
    let req = kura_auth::sigv4::RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        payload_sha256: "",
    };
    kura_auth::sigv4::parse(&req)
        .map(|p| Service::of_signing_name(&p.service))
        .unwrap_or(Service::Iam)
}

/// Body read failures with the Query protocol's codes.
fn query_error(e: EcrError) -> EcrError {
    match e.kind {
        "ServiceUnavailableException" => EcrError {
            kind: "ServiceUnavailable",
            ..e
        },
        _ => e,
    }
}

async fn run(
    ecr: &Ecr,
    parts: &http::request::Parts,
    signed: SignedRequest,
    payload_sha256: &str,
    input: &Input,
    action: &str,
    info: &mut crate::calls::CallInfo,
) -> EcrResult<Option<String>> {
    let service = Service::of(action);
    let caller = ecr
        .authenticate_body(parts, signed, payload_sha256, service.signing_name())
        .map_err(|e| auth_error(e, service))?;
    info.caller = Some(caller.clone());
    if action.is_empty() {
        return Err(err::invalid_action("The request must name an Action"));
    }
    let ctx = Ctx {
        ecr,
        account: caller.account.clone(),
        caller,
        source_ip: crate::source_ip(parts),
    };
    tracing::info!(action = %action, principal = %ctx.caller.principal_arn, "IAM/STS API call");
    let result = match service {
        Service::Sts => sts::dispatch(&ctx, action, input).await,
        Service::Iam => dispatch_iam(&ctx, action, input).await,
    };
    // Credentials whose owner is gone (a deleted user or role) are found
    // out when the operation resolves the caller: the same answer as an
    // unknown key.
    result.map_err(|e| auth_error(e, service))
}

async fn dispatch_iam(ctx: &Ctx<'_>, action: &str, input: &Input) -> EcrResult<Option<String>> {
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
fn auth_error(e: EcrError, service: Service) -> EcrError {
    let (kind, status) = match e.kind {
        "MissingAuthenticationTokenException" => ("MissingAuthenticationToken", StatusCode::FORBIDDEN),
        "IncompleteSignatureException" => ("IncompleteSignature", StatusCode::BAD_REQUEST),
        "InvalidSignatureException" => ("SignatureDoesNotMatch", StatusCode::FORBIDDEN),
        "UnrecognizedClientException" => ("InvalidClientTokenId", StatusCode::FORBIDDEN),
        "ExpiredTokenException" if service == Service::Sts => ("ExpiredTokenException", StatusCode::BAD_REQUEST),
        "ExpiredTokenException" => ("ExpiredToken", StatusCode::FORBIDDEN),
        _ => return e,
    };
    EcrError {
        kind,
        message: e.message,
        status,
    }
}

/// The context of one IAM or STS call.
pub(crate) struct Ctx<'a> {
    ecr: &'a Ecr,
    caller: Caller,
    /// The caller's account: every entity the call touches lives here.
    account: String,
    source_ip: Option<std::net::IpAddr>,
}

impl Ctx<'_> {
    /// Authorize `action` on `resource` (an ARN in the caller's account, or `*`).
    async fn allow(&self, action: &str, resource: &str) -> EcrResult<()> {
        self.allow_access(Access::resource(action, resource, &self.account))
            .await
    }

    /// Authorize an access, with IAM's `AccessDenied` (403) on refusal.
    async fn allow_access(&self, access: Access) -> EcrResult<()> {
        self.ecr
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
    pub(super) async fn find(&self, k: &str, name: &str) -> EcrResult<(Option<IamEntity>, String)> {
        let (field, max) = match k {
            kind::USER => ("userName", 128),
            kind::GROUP => ("groupName", 128),
            _ => ("roleName", 64),
        };
        check_name(field, name, max)?;
        let e = self.ecr.iam.iam_entity_get(&self.account, k, name).await?;
        let arn = e.as_ref().map_or_else(|| self.arn(k, "/", name), |e| e.arn.clone());
        Ok((e, arn))
    }

    /// Authorize `action` on a user, group or role (with the tags the request
    /// sets, if any), then require it to exist (`NoSuchEntity`).
    pub(super) async fn entity(
        &self,
        action: &str,
        k: &str,
        name: &str,
        tags: Option<&[(String, String)]>,
    ) -> EcrResult<IamEntity> {
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
pub(super) fn no_such(k: &str, name: &str) -> EcrError {
    err::no_such_entity(format!("The {k} with name {name} cannot be found."))
}

/// The Query protocol's error codes, as [`EcrError`]s.
pub(crate) mod err {
    use axum::http::StatusCode;

    use crate::error::EcrError;

    /// `NoSuchEntity` (404).
    pub fn no_such_entity(message: impl Into<String>) -> EcrError {
        EcrError::new("NoSuchEntity", message).with_status(StatusCode::NOT_FOUND)
    }

    /// `EntityAlreadyExists` (409).
    pub fn already_exists(message: impl Into<String>) -> EcrError {
        EcrError::new("EntityAlreadyExists", message).with_status(StatusCode::CONFLICT)
    }

    /// `MalformedPolicyDocument` (400).
    pub fn malformed(message: impl Into<String>) -> EcrError {
        EcrError::new("MalformedPolicyDocument", message)
    }

    /// `DeleteConflict` (409).
    pub fn delete_conflict(message: impl Into<String>) -> EcrError {
        EcrError::new("DeleteConflict", message).with_status(StatusCode::CONFLICT)
    }

    /// `LimitExceeded` (409).
    pub fn limit_exceeded(message: impl Into<String>) -> EcrError {
        EcrError::new("LimitExceeded", message).with_status(StatusCode::CONFLICT)
    }

    /// `ValidationError` (400).
    pub fn validation(message: impl Into<String>) -> EcrError {
        EcrError::new("ValidationError", message)
    }

    /// `InvalidInput` (400).
    pub fn invalid_input(message: impl Into<String>) -> EcrError {
        EcrError::new("InvalidInput", message)
    }

    /// `AccessDenied` (403).
    pub fn access_denied(message: impl Into<String>) -> EcrError {
        EcrError::new("AccessDenied", message).with_status(StatusCode::FORBIDDEN)
    }

    /// `InvalidAction` (400): no such operation.
    pub fn invalid_action(message: &str) -> EcrError {
        EcrError::new("InvalidAction", message.to_string())
    }
}

/// The parameters of a Query request, decoded.
#[derive(Clone, Debug, Default)]
pub(crate) struct Input {
    fields: BTreeMap<String, String>,
}

impl Input {
    /// Decode a form body (`a=b&c=d`, `+` is a space, `%XX` escapes).
    pub fn parse(body: &[u8]) -> Input {
        Input {
            fields: form_urlencoded::parse(body).into_owned().collect(),
        }
    }

    /// The parameters as the audit trail records them (all but `Action`
    /// and `Version`; secrets are redacted by the trail).
    pub fn audit_params(&self) -> serde_json::Value {
        self.fields
            .iter()
            .filter(|(k, _)| k.as_str() != "Action" && k.as_str() != "Version")
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// A parameter, if present.
    pub fn opt(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// A required parameter: `ValidationError` when it is missing.
    pub fn req(&self, name: &str) -> EcrResult<&str> {
        self.opt(name).ok_or_else(|| {
            err::validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                lower_first(name)
            ))
        })
    }

    /// An integer parameter.
    pub fn int(&self, name: &str) -> EcrResult<Option<i64>> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| err::validation(format!("Value '{v}' at '{}' is not an integer", lower_first(name)))),
        }
    }

    /// A boolean parameter.
    pub fn bool(&self, name: &str) -> EcrResult<Option<bool>> {
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
    pub fn tags(&self, name: &str) -> EcrResult<Vec<(String, String)>> {
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
    pub fn paging(&self) -> EcrResult<Paging> {
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
pub(crate) fn check_name(field: &str, value: &str, max: usize) -> EcrResult<()> {
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
pub(crate) fn check_path(value: &str) -> EcrResult<()> {
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

impl Ecr {
    /// Change an entity's JSON body (compare and swap, retried); `NoSuchEntity`
    /// with `missing` when it does not exist.
    pub(crate) async fn iam_update_body(
        &self,
        account: &str,
        kind: &str,
        name: &str,
        missing: impl Fn() -> EcrError,
        change: impl Fn(&mut serde_json::Map<String, Value>) -> EcrResult<()>,
    ) -> EcrResult<serde_json::Map<String, Value>> {
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
        Err(EcrError::new(
            "ConcurrentModification",
            "The entity was modified concurrently; try again",
        )
        .with_status(StatusCode::CONFLICT))
    }
}

fn success_response(service: Service, action: &str, result: Option<&str>, rid: &str) -> Response {
    let mut body = format!("<{action}Response xmlns=\"{}\">", service.namespace());
    if let Some(r) = result {
        let _ = write!(body, "<{action}Result>{r}</{action}Result>");
    }
    let _ = write!(
        body,
        "<ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        xml_escape(rid)
    );
    xml_response(StatusCode::OK, body)
}

fn xml_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/xml"));
    r
}

fn error_in(namespace: &str, e: &EcrError, rid: &str) -> Response {
    let kind = if e.status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let code = if e.kind == "ServerException" {
        "ServiceFailure"
    } else {
        e.kind
    };
    let body = format!(
        "<ErrorResponse xmlns=\"{namespace}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        xml_escape(code),
        xml_escape(&e.message),
        xml_escape(rid)
    );
    xml_response(e.status, body)
}

/// An error in the Query protocol's XML form.
pub fn error_response(e: &EcrError, rid: &str) -> Response {
    error_in(IAM_NS, e, rid)
}

/// Escape text for an XML element.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Results of the handlers: the inner XML of `<ActionResult>`, or `None` for
/// operations that answer only `ResponseMetadata`.
pub(crate) type Out = EcrResult<Option<String>>;

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
