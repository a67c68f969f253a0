//! Inline policies of users, groups and roles; managed policies (AWS's ECR
//! policies and customer managed ones, with versions); attachments.
//!
//! A customer managed policy's entity body keeps its versions in the shape
//! [`kura_authz::default_version_document`] reads:
//! `{"DefaultVersionId": "v1", "Versions": [{"VersionId": "v1", "Document":
//! "...", "CreateDate": ms}], "NextVersion": 2, "Description": "...",
//! "UpdateDate": ms, "Tags": {...}}`.

use kura_iam::{
    ParseOptions, Policy, PolicyKind, SizeCount, SizeLimit, IAM_INLINE_GROUP_POLICY_MAX_CHARS,
    IAM_INLINE_ROLE_POLICY_MAX_CHARS, IAM_INLINE_USER_POLICY_MAX_CHARS,
};
use kura_store::iam::{kind, rel, IamEntity};
use serde_json::{json, Value};
use sha2::Digest as _;

use super::users::all_entities;
use super::{body_of, check_name, err, iso, tags_of, tags_xml, unique_id, url_encode, Ctx, Input, Out, Xml};
use kura_authz::Access;
use kura_aws::{AwsError, AwsResult};

/// The most managed policies attached to one user, group or role.
const ATTACHED_PER_HOLDER: usize = 10;
/// The most versions one managed policy keeps.
const VERSIONS_PER_POLICY: usize = 5;
/// The creation date shown for AWS managed policies (Kura ships them).
const AWS_POLICY_CREATED_MS: i64 = 1_450_000_000_000;

/// A user, group or role as the holder of policies.
struct Holder {
    kind: &'static str,
    /// `User`, `Group`, `Role`: part of the action names.
    noun: &'static str,
    /// The input and output member naming the holder.
    field: &'static str,
    /// The most non-whitespace characters of all its inline policies.
    inline_max: usize,
}

const USER: Holder = Holder {
    kind: kind::USER,
    noun: "User",
    field: "UserName",
    inline_max: IAM_INLINE_USER_POLICY_MAX_CHARS,
};
const GROUP: Holder = Holder {
    kind: kind::GROUP,
    noun: "Group",
    field: "GroupName",
    inline_max: IAM_INLINE_GROUP_POLICY_MAX_CHARS,
};
const ROLE: Holder = Holder {
    kind: kind::ROLE,
    noun: "Role",
    field: "RoleName",
    inline_max: IAM_INLINE_ROLE_POLICY_MAX_CHARS,
};

pub(super) async fn dispatch(ctx: &Ctx<'_>, action: &str, input: &Input) -> Option<Out> {
    for h in [&USER, &GROUP, &ROLE] {
        let n = h.noun;
        let r = if action == format!("Put{n}Policy") {
            put_inline(ctx, h, input).await
        } else if action == format!("Get{n}Policy") {
            get_inline(ctx, h, input).await
        } else if action == format!("Delete{n}Policy") {
            delete_inline(ctx, h, input).await
        } else if action == format!("List{n}Policies") {
            list_inline(ctx, h, input).await
        } else if action == format!("Attach{n}Policy") {
            attach(ctx, h, input).await
        } else if action == format!("Detach{n}Policy") {
            detach(ctx, h, input).await
        } else if action == format!("ListAttached{n}Policies") {
            list_attached(ctx, h, input).await
        } else {
            continue;
        };
        return Some(r);
    }
    Some(match action {
        "CreatePolicy" => create_policy(ctx, input).await,
        "GetPolicy" => get_policy(ctx, input).await,
        "ListPolicies" => list_policies(ctx, input).await,
        "DeletePolicy" => delete_policy(ctx, input).await,
        "CreatePolicyVersion" => create_version(ctx, input).await,
        "GetPolicyVersion" => get_version(ctx, input).await,
        "ListPolicyVersions" => list_versions(ctx, input).await,
        "DeletePolicyVersion" => delete_version(ctx, input).await,
        "SetDefaultPolicyVersion" => set_default_version(ctx, input).await,
        "ListEntitiesForPolicy" => entities_for_policy(ctx, input).await,
        _ => return None,
    })
}

/// Authorize `action` on the holder the input names, then require it to exist.
async fn holder_for(ctx: &Ctx<'_>, h: &Holder, action: &str, input: &Input) -> AwsResult<IamEntity> {
    ctx.entity(action, h.kind, input.req(h.field)?, None).await
}

fn non_whitespace_len(s: &str) -> usize {
    s.chars().filter(|c| !c.is_whitespace()).count()
}

/// Validate an identity policy document; `MalformedPolicyDocument` with the
/// parser's reason.
fn parse_identity(text: &str, max: usize) -> AwsResult<Policy> {
    let options = ParseOptions {
        kind: Some(PolicyKind::Identity),
        max_size: Some(SizeLimit {
            max,
            count: SizeCount::NonWhitespaceChars,
        }),
        duplicate_sids: false,
    };
    Policy::parse_with(text, &options).map_err(|e| err::malformed(e.message))
}

async fn put_inline(ctx: &Ctx<'_>, h: &Holder, input: &Input) -> Out {
    let policy_name = input.req("PolicyName")?;
    check_name("policyName", policy_name, 128)?;
    let doc = input.req("PolicyDocument")?;
    let e = holder_for(ctx, h, &format!("iam:Put{}Policy", h.noun), input).await?;
    parse_identity(doc, h.inline_max)?;
    let others: usize = ctx
        .api
        .iam
        .iam_inline_list(&ctx.account, h.kind, &e.name)
        .await?
        .iter()
        .filter(|(n, _)| n != policy_name)
        .map(|(_, d)| non_whitespace_len(d))
        .sum();
    if others + non_whitespace_len(doc) > h.inline_max {
        return Err(err::limit_exceeded(format!(
            "Maximum policy size of {} bytes exceeded for {} {}",
            h.inline_max, h.kind, e.name
        )));
    }
    ctx.api
        .iam
        .iam_inline_put(&ctx.account, h.kind, &e.name, policy_name, doc)
        .await?;
    Ok(None)
}

fn no_such_inline(h: &Holder, name: &str) -> AwsError {
    err::no_such_entity(format!("The {} policy with name {name} cannot be found.", h.kind))
}

async fn get_inline(ctx: &Ctx<'_>, h: &Holder, input: &Input) -> Out {
    let policy_name = input.req("PolicyName")?;
    let e = holder_for(ctx, h, &format!("iam:Get{}Policy", h.noun), input).await?;
    let doc = ctx
        .api
        .iam
        .iam_inline_get(&ctx.account, h.kind, &e.name, policy_name)
        .await?
        .ok_or_else(|| no_such_inline(h, policy_name))?;
    Ok(Some(
        Xml::new()
            .text(h.field, &e.name)
            .text("PolicyName", policy_name)
            .text("PolicyDocument", url_encode(&doc))
            .done(),
    ))
}

async fn delete_inline(ctx: &Ctx<'_>, h: &Holder, input: &Input) -> Out {
    let policy_name = input.req("PolicyName")?;
    let e = holder_for(ctx, h, &format!("iam:Delete{}Policy", h.noun), input).await?;
    if !ctx
        .api
        .iam
        .iam_inline_delete(&ctx.account, h.kind, &e.name, policy_name)
        .await?
    {
        return Err(no_such_inline(h, policy_name));
    }
    Ok(None)
}

async fn list_inline(ctx: &Ctx<'_>, h: &Holder, input: &Input) -> Out {
    let paging = input.paging()?;
    let e = holder_for(ctx, h, &format!("iam:List{}Policies", h.noun), input).await?;
    let names: Vec<String> = ctx
        .api
        .iam
        .iam_inline_list(&ctx.account, h.kind, &e.name)
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let (page, next) = paging.page(names, Clone::clone);
    Ok(Some(
        Xml::new()
            .members("PolicyNames", page.iter().map(|n| super::xml_escape(n)))
            .truncation(next)
            .done(),
    ))
}

/// A managed policy: one of AWS's (built in), or a customer managed policy
/// of the caller's account.
enum Managed {
    Aws { arn: String, text: String },
    Local(IamEntity),
}

impl Managed {
    fn arn(&self) -> &str {
        match self {
            Managed::Aws { arn, .. } => arn,
            Managed::Local(e) => &e.arn,
        }
    }
}

fn no_such_policy(arn: &str) -> AwsError {
    err::no_such_entity(format!("Policy {arn} does not exist or is not attachable."))
}

/// The managed policy an ARN names, if it exists for the caller.
async fn find_policy(ctx: &Ctx<'_>, arn: &str) -> AwsResult<Option<Managed>> {
    if let Some(text) = kura_iam::managed_policy_text(arn) {
        return Ok(Some(Managed::Aws {
            arn: arn.to_string(),
            text,
        }));
    }
    let parsed = kura_iam::Arn::parse(arn)
        .ok()
        .filter(|a| a.service == "iam" && a.region.is_empty())
        .ok_or_else(|| err::invalid_input(format!("ARN {arn} is not valid.")))?;
    let Some((_, name)) = parsed.iam_path_name("policy").filter(|_| parsed.account == ctx.account) else {
        return Ok(None);
    };
    Ok(ctx
        .api
        .iam
        .iam_entity_get(&ctx.account, kind::POLICY, name)
        .await?
        .filter(|e| e.arn == arn)
        .map(Managed::Local))
}

/// Authorize `action` on a managed policy, then require it to exist.
async fn policy_for(ctx: &Ctx<'_>, action: &str, arn: &str) -> AwsResult<Managed> {
    let found = find_policy(ctx, arn).await?;
    ctx.allow(action, arn).await?;
    found.ok_or_else(|| no_such_policy(arn))
}

/// A customer managed policy (AWS's cannot be changed).
async fn local_policy_for(ctx: &Ctx<'_>, action: &str, arn: &str) -> AwsResult<IamEntity> {
    match policy_for(ctx, action, arn).await? {
        Managed::Local(e) => Ok(e),
        Managed::Aws { .. } => Err(err::invalid_input(format!(
            "Policy {arn} is an AWS managed policy and cannot be changed."
        ))),
    }
}

/// The name in a policy ARN (its last segment) and its path.
fn arn_name_path(arn: &str) -> (&str, String) {
    kura_iam::Arn::parse(arn)
        .ok()
        .and_then(|a| a.iam_path_name("policy"))
        .map_or(("", "/".to_string()), |(path, name)| (name, path.to_string()))
}

async fn attach(ctx: &Ctx<'_>, h: &Holder, input: &Input) -> Out {
    let arn = input.req("PolicyArn")?;
    let e = holder_for(ctx, h, &format!("iam:Attach{}Policy", h.noun), input).await?;
    find_policy(ctx, arn).await?.ok_or_else(|| no_such_policy(arn))?;
    let current = ctx
        .api
        .iam
        .iam_links_from(&ctx.account, rel::ATTACHED, h.kind, &e.name)
        .await?;
    if current.iter().any(|a| a == arn) {
        return Ok(None);
    }
    if current.len() >= ATTACHED_PER_HOLDER {
        return Err(err::limit_exceeded(format!(
            "Cannot exceed quota for PoliciesPer{}: {ATTACHED_PER_HOLDER}",
            h.noun
        )));
    }
    ctx.api
        .iam
        .iam_link_add(&ctx.account, rel::ATTACHED, h.kind, &e.name, arn)
        .await?;
    Ok(None)
}

async fn detach(ctx: &Ctx<'_>, h: &Holder, input: &Input) -> Out {
    let arn = input.req("PolicyArn")?;
    let e = holder_for(ctx, h, &format!("iam:Detach{}Policy", h.noun), input).await?;
    if !ctx
        .api
        .iam
        .iam_link_remove(&ctx.account, rel::ATTACHED, h.kind, &e.name, arn)
        .await?
    {
        return Err(err::no_such_entity(format!("Policy {arn} was not found.")));
    }
    Ok(None)
}

async fn list_attached(ctx: &Ctx<'_>, h: &Holder, input: &Input) -> Out {
    let paging = input.paging()?;
    let prefix = input.opt("PathPrefix").unwrap_or("/").to_string();
    let e = holder_for(ctx, h, &format!("iam:ListAttached{}Policies", h.noun), input).await?;
    let arns: Vec<String> = ctx
        .api
        .iam
        .iam_links_from(&ctx.account, rel::ATTACHED, h.kind, &e.name)
        .await?
        .into_iter()
        .filter(|a| arn_name_path(a).1.starts_with(&prefix))
        .collect();
    let (page, next) = paging.page(arns, Clone::clone);
    Ok(Some(
        Xml::new()
            .members(
                "AttachedPolicies",
                page.iter().map(|a| {
                    Xml::new()
                        .text("PolicyName", arn_name_path(a).0)
                        .text("PolicyArn", a)
                        .done()
                }),
            )
            .truncation(next)
            .done(),
    ))
}

/// The stable id shown for an AWS managed policy.
fn aws_policy_id(arn: &str) -> String {
    let h = hex::encode(sha2::Sha256::digest(arn.as_bytes())).to_uppercase();
    format!("ANPA{}", &h[..16])
}

/// `<Policy>` fields; `detail` adds the description and tags (GetPolicy).
async fn policy_xml(ctx: &Ctx<'_>, p: &Managed, detail: bool) -> AwsResult<String> {
    let attachments = ctx
        .api
        .iam
        .iam_links_to(&ctx.account, rel::ATTACHED, p.arn())
        .await?
        .len();
    let mut x = Xml::new();
    match p {
        Managed::Aws { arn, .. } => {
            let (name, path) = arn_name_path(arn);
            x.text("PolicyName", name)
                .text("PolicyId", aws_policy_id(arn))
                .text("Arn", arn)
                .text("Path", path)
                .text("DefaultVersionId", "v1")
                .text("AttachmentCount", attachments)
                .text("PermissionsBoundaryUsageCount", 0)
                .text("IsAttachable", true);
            if detail {
                x.text(
                    "Description",
                    "An AWS managed policy for Amazon ECR, as Kura implements it.",
                );
            }
            x.text("CreateDate", iso(AWS_POLICY_CREATED_MS))
                .text("UpdateDate", iso(AWS_POLICY_CREATED_MS));
        }
        Managed::Local(e) => {
            let body = body_of(&e.body);
            x.text("PolicyName", &e.name)
                .text("PolicyId", &e.id)
                .text("Arn", &e.arn)
                .text("Path", &e.path)
                .opt("DefaultVersionId", body.get("DefaultVersionId").and_then(Value::as_str))
                .text("AttachmentCount", attachments)
                .text("PermissionsBoundaryUsageCount", 0)
                .text("IsAttachable", true);
            if detail {
                x.opt("Description", body.get("Description").and_then(Value::as_str));
            }
            x.text("CreateDate", iso(e.created_at)).text(
                "UpdateDate",
                iso(body.get("UpdateDate").and_then(Value::as_i64).unwrap_or(e.created_at)),
            );
            if detail {
                tags_xml(&mut x, &tags_of(&body));
            }
        }
    }
    Ok(x.done())
}

fn check_policy_path(path: &str) -> AwsResult<()> {
    let ok = path.len() <= 512
        && path.starts_with('/')
        && path.ends_with('/')
        && path
            .split('/')
            .filter(|s| !s.is_empty())
            .all(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || ".,+@=_-".contains(c)))
        && !path.contains("//");
    if ok {
        Ok(())
    } else {
        Err(err::validation(format!(
            "1 validation error detected: Value '{path}' at 'path' failed to satisfy constraint: Member must satisfy regular expression pattern: ((/[A-Za-z0-9\\.,\\+@=_-]+)*)/"
        )))
    }
}

async fn create_policy(ctx: &Ctx<'_>, input: &Input) -> Out {
    let name = input.req("PolicyName")?;
    check_name("policyName", name, 128)?;
    let path = input.opt("Path").unwrap_or("/");
    check_policy_path(path)?;
    let doc = input.req("PolicyDocument")?;
    let description = input.opt("Description");
    if description.is_some_and(|d| d.chars().count() > 1000) {
        return Err(err::validation(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 1000",
        ));
    }
    let tags = input.tags("Tags")?;
    let arn = ctx.arn("policy", path, name);
    ctx.allow_access(Access::resource("iam:CreatePolicy", &arn, &ctx.account).with_request_tags(&tags))
        .await?;
    parse_identity(doc, kura_iam::IAM_MANAGED_POLICY_MAX_CHARS)?;
    let now = kura_store::now_millis();
    let mut body = json!({
        "DefaultVersionId": "v1",
        "Versions": [{"VersionId": "v1", "Document": doc, "CreateDate": now}],
        "NextVersion": 2,
        "UpdateDate": now,
    });
    if let Some(d) = description {
        body["Description"] = json!(d);
    }
    if !tags.is_empty() {
        body["Tags"] = json!(tags.iter().cloned().collect::<std::collections::BTreeMap<_, _>>());
    }
    let e = IamEntity {
        account: ctx.account.clone(),
        kind: kind::POLICY.into(),
        name: name.into(),
        id: unique_id("ANPA"),
        path: path.into(),
        arn,
        body: body.to_string(),
        created_at: now,
    };
    if !ctx.api.iam.iam_entity_create(&e).await? {
        return Err(err::already_exists(format!(
            "A policy called {name} already exists. Duplicate names are not allowed."
        )));
    }
    let x = policy_xml(ctx, &Managed::Local(e), true).await?;
    Ok(Some(Xml::new().wrap("Policy", &x).done()))
}

async fn get_policy(ctx: &Ctx<'_>, input: &Input) -> Out {
    let arn = input.req("PolicyArn")?;
    let p = policy_for(ctx, "iam:GetPolicy", arn).await?;
    let x = policy_xml(ctx, &p, true).await?;
    Ok(Some(Xml::new().wrap("Policy", &x).done()))
}

async fn list_policies(ctx: &Ctx<'_>, input: &Input) -> Out {
    let paging = input.paging()?;
    let scope = input.opt("Scope").unwrap_or("All");
    if !matches!(scope, "All" | "AWS" | "Local") {
        return Err(err::validation(format!(
            "1 validation error detected: Value '{scope}' at 'scope' failed to satisfy constraint: Member must satisfy enum value set: [All, AWS, Local]"
        )));
    }
    let only_attached = input.bool("OnlyAttached")?.unwrap_or(false);
    let prefix = input.opt("PathPrefix").unwrap_or("/");
    ctx.allow("iam:ListPolicies", "*").await?;
    // AWS's policies sort first ("aws/..."), then the account's ("local/...").
    let mut all: Vec<(String, Managed)> = Vec::new();
    if scope != "Local" {
        let mut names: Vec<&str> = kura_iam::managed_policy_names().to_vec();
        names.sort_unstable();
        for arn in names {
            if let Some(text) = kura_iam::managed_policy_text(arn) {
                all.push((
                    format!("aws/{arn}"),
                    Managed::Aws {
                        arn: arn.to_string(),
                        text,
                    },
                ));
            }
        }
    }
    if scope != "AWS" {
        for e in all_entities(ctx, kind::POLICY).await? {
            all.push((format!("local/{}", e.name.to_lowercase()), Managed::Local(e)));
        }
    }
    let mut kept = Vec::with_capacity(all.len());
    for (key, p) in all {
        if !arn_name_path(p.arn()).1.starts_with(prefix) {
            continue;
        }
        if only_attached
            && ctx
                .api
                .iam
                .iam_links_to(&ctx.account, rel::ATTACHED, p.arn())
                .await?
                .is_empty()
        {
            continue;
        }
        kept.push((key, p));
    }
    let (page, next) = paging.page(kept, |(k, _)| k.clone());
    let mut members = Vec::with_capacity(page.len());
    for (_, p) in &page {
        members.push(policy_xml(ctx, p, false).await?);
    }
    Ok(Some(Xml::new().members("Policies", members).truncation(next).done()))
}

async fn delete_policy(ctx: &Ctx<'_>, input: &Input) -> Out {
    let arn = input.req("PolicyArn")?;
    let e = local_policy_for(ctx, "iam:DeletePolicy", arn).await?;
    if !ctx
        .api
        .iam
        .iam_links_to(&ctx.account, rel::ATTACHED, arn)
        .await?
        .is_empty()
    {
        return Err(err::delete_conflict("Cannot delete a policy attached to entities."));
    }
    if versions(&body_of(&e.body)).len() > 1 {
        return Err(err::delete_conflict(
            "This policy has more than one version. Before you delete a policy, you must delete the policy's versions. The default version is deleted with the policy.",
        ));
    }
    if !ctx
        .api
        .iam
        .iam_entity_delete(&ctx.account, kind::POLICY, &e.name)
        .await?
    {
        return Err(no_such_policy(arn));
    }
    Ok(None)
}

/// The versions kept in a policy body.
fn versions(body: &serde_json::Map<String, Value>) -> Vec<Value> {
    body.get("Versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn version_id(v: &Value) -> &str {
    v.get("VersionId").and_then(Value::as_str).unwrap_or_default()
}

fn no_such_version(arn: &str, v: &str) -> AwsError {
    err::no_such_entity(format!("Policy {arn} version {v} does not exist or is not attachable."))
}

fn version_xml(v: &Value, default: &str, with_document: bool) -> String {
    let id = version_id(v);
    let mut x = Xml::new();
    if with_document {
        x.opt("Document", v.get("Document").and_then(Value::as_str).map(url_encode));
    }
    x.text("VersionId", id)
        .text("IsDefaultVersion", id == default)
        .text(
            "CreateDate",
            iso(v.get("CreateDate").and_then(Value::as_i64).unwrap_or_default()),
        )
        .done()
}

async fn create_version(ctx: &Ctx<'_>, input: &Input) -> Out {
    let arn = input.req("PolicyArn")?;
    let doc = input.req("PolicyDocument")?.to_string();
    let set_default = input.bool("SetAsDefault")?.unwrap_or(false);
    let e = local_policy_for(ctx, "iam:CreatePolicyVersion", arn).await?;
    parse_identity(&doc, kura_iam::IAM_MANAGED_POLICY_MAX_CHARS)?;
    let now = kura_store::now_millis();
    let body = ctx
        .api
        .iam_update_body(
            &ctx.account,
            kind::POLICY,
            &e.name,
            || no_such_policy(arn),
            |b| {
                let mut vs = versions(b);
                if vs.len() >= VERSIONS_PER_POLICY {
                    return Err(err::limit_exceeded(format!(
                        "A managed policy can have up to {VERSIONS_PER_POLICY} versions. Before you create a new version, you must delete an existing version."
                    )));
                }
                let n = b.get("NextVersion").and_then(Value::as_i64).unwrap_or(vs.len() as i64 + 1);
                let id = format!("v{n}");
                vs.push(json!({"VersionId": id, "Document": doc, "CreateDate": now}));
                b.insert("Versions".into(), Value::Array(vs));
                b.insert("NextVersion".into(), json!(n + 1));
                b.insert("UpdateDate".into(), json!(now));
                if set_default {
                    b.insert("DefaultVersionId".into(), json!(id));
                }
                Ok(())
            },
        )
        .await?;
    let default = body.get("DefaultVersionId").and_then(Value::as_str).unwrap_or_default();
    let vs = versions(&body);
    let last = vs.last().cloned().unwrap_or_default();
    Ok(Some(
        Xml::new()
            .wrap("PolicyVersion", &version_xml(&last, default, false))
            .done(),
    ))
}

async fn get_version(ctx: &Ctx<'_>, input: &Input) -> Out {
    let arn = input.req("PolicyArn")?;
    let vid = input.req("VersionId")?;
    let x = match policy_for(ctx, "iam:GetPolicyVersion", arn).await? {
        Managed::Aws { text, .. } => {
            if vid != "v1" {
                return Err(no_such_version(arn, vid));
            }
            let v = json!({"VersionId": "v1", "Document": text, "CreateDate": AWS_POLICY_CREATED_MS});
            version_xml(&v, "v1", true)
        }
        Managed::Local(e) => {
            let body = body_of(&e.body);
            let default = body.get("DefaultVersionId").and_then(Value::as_str).unwrap_or_default();
            let v = versions(&body)
                .into_iter()
                .find(|v| version_id(v) == vid)
                .ok_or_else(|| no_such_version(arn, vid))?;
            version_xml(&v, default, true)
        }
    };
    Ok(Some(Xml::new().wrap("PolicyVersion", &x).done()))
}

async fn list_versions(ctx: &Ctx<'_>, input: &Input) -> Out {
    let arn = input.req("PolicyArn")?;
    let paging = input.paging()?;
    let (vs, default) = match policy_for(ctx, "iam:ListPolicyVersions", arn).await? {
        Managed::Aws { .. } => (
            vec![json!({"VersionId": "v1", "CreateDate": AWS_POLICY_CREATED_MS})],
            "v1".to_string(),
        ),
        Managed::Local(e) => {
            let body = body_of(&e.body);
            let default = body
                .get("DefaultVersionId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            (versions(&body), default)
        }
    };
    // Newest first, as IAM lists them; the marker is the version number.
    let mut vs = vs;
    let num = |v: &Value| version_id(v).trim_start_matches('v').parse::<i64>().unwrap_or(0);
    vs.sort_by_key(|v| std::cmp::Reverse(num(v)));
    let (page, next) = paging.page(vs, |v| format!("{:010}", i64::MAX / 4 - num(v)));
    Ok(Some(
        Xml::new()
            .members("Versions", page.iter().map(|v| version_xml(v, &default, false)))
            .truncation(next)
            .done(),
    ))
}

async fn delete_version(ctx: &Ctx<'_>, input: &Input) -> Out {
    let arn = input.req("PolicyArn")?;
    let vid = input.req("VersionId")?.to_string();
    let e = local_policy_for(ctx, "iam:DeletePolicyVersion", arn).await?;
    ctx.api
        .iam_update_body(
            &ctx.account,
            kind::POLICY,
            &e.name,
            || no_such_policy(arn),
            |b| {
                if b.get("DefaultVersionId").and_then(Value::as_str) == Some(vid.as_str()) {
                    return Err(err::delete_conflict("Cannot delete the default version of a policy."));
                }
                let mut vs = versions(b);
                let before = vs.len();
                vs.retain(|v| version_id(v) != vid);
                if vs.len() == before {
                    return Err(no_such_version(arn, &vid));
                }
                b.insert("Versions".into(), Value::Array(vs));
                Ok(())
            },
        )
        .await?;
    Ok(None)
}

async fn set_default_version(ctx: &Ctx<'_>, input: &Input) -> Out {
    let arn = input.req("PolicyArn")?;
    let vid = input.req("VersionId")?.to_string();
    let e = local_policy_for(ctx, "iam:SetDefaultPolicyVersion", arn).await?;
    let now = kura_store::now_millis();
    ctx.api
        .iam_update_body(
            &ctx.account,
            kind::POLICY,
            &e.name,
            || no_such_policy(arn),
            |b| {
                if !versions(b).iter().any(|v| version_id(v) == vid) {
                    return Err(no_such_version(arn, &vid));
                }
                b.insert("DefaultVersionId".into(), json!(vid));
                b.insert("UpdateDate".into(), json!(now));
                Ok(())
            },
        )
        .await?;
    Ok(None)
}

async fn entities_for_policy(ctx: &Ctx<'_>, input: &Input) -> Out {
    let arn = input.req("PolicyArn")?;
    let p = policy_for(ctx, "iam:ListEntitiesForPolicy", arn).await?;
    let mut groups = Vec::new();
    let mut users = Vec::new();
    let mut roles = Vec::new();
    for (k, name) in ctx.api.iam.iam_links_to(&ctx.account, rel::ATTACHED, p.arn()).await? {
        let Some(e) = ctx.api.iam.iam_entity_get(&ctx.account, &k, &name).await? else {
            continue;
        };
        let (list, name_tag, id_tag) = match k.as_str() {
            kind::USER => (&mut users, "UserName", "UserId"),
            kind::GROUP => (&mut groups, "GroupName", "GroupId"),
            kind::ROLE => (&mut roles, "RoleName", "RoleId"),
            _ => continue,
        };
        list.push(Xml::new().text(name_tag, &e.name).text(id_tag, &e.id).done());
    }
    Ok(Some(
        Xml::new()
            .members("PolicyGroups", groups)
            .members("PolicyUsers", users)
            .members("PolicyRoles", roles)
            .truncation(None)
            .done(),
    ))
}
