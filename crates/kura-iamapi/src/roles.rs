//! IAM roles: trust policies, session limits, tags.

use kura_iam::{ParseOptions, Policy, PolicyKind, SizeCount, SizeLimit};
use kura_store::iam::{kind, rel, IamEntity};
use serde_json::{json, Value};

use super::users::{all_entities, list_entity_tags, tag_entity, untag_entity};
use super::{
    body_of, check_name, check_path, err, iso, no_such, tags_of, tags_xml, unique_id, url_encode, Ctx, Input, Out, Xml,
};
use kura_authz::Access;
use kura_aws::AwsResult;

/// A role's session limit when none is set.
pub(super) const DEFAULT_MAX_SESSION: i64 = 3600;
/// The longest session limit a role may set (12 hours).
const MAX_MAX_SESSION: i64 = 43_200;
/// The longest trust policy, in non-whitespace characters.
const TRUST_POLICY_MAX_CHARS: usize = 2048;

pub(super) async fn dispatch(ctx: &Ctx<'_>, action: &str, input: &Input) -> Option<Out> {
    Some(match action {
        "CreateRole" => create_role(ctx, input).await,
        "GetRole" => get_role(ctx, input).await,
        "ListRoles" => list_roles(ctx, input).await,
        "DeleteRole" => delete_role(ctx, input).await,
        "UpdateRole" => update_role(ctx, input).await,
        "UpdateAssumeRolePolicy" => update_trust(ctx, input).await,
        "TagRole" => tag_entity(ctx, input, kind::ROLE).await,
        "UntagRole" => untag_entity(ctx, input, kind::ROLE).await,
        "ListRoleTags" => list_entity_tags(ctx, input, kind::ROLE).await,
        _ => return None,
    })
}

/// Validate a trust policy: a resource-based policy (a `Principal` in every
/// statement) of at most 2048 non-whitespace characters.
pub(super) fn parse_trust(text: &str) -> AwsResult<Policy> {
    let options = ParseOptions {
        kind: Some(PolicyKind::Resource),
        max_size: Some(SizeLimit {
            max: TRUST_POLICY_MAX_CHARS,
            count: SizeCount::NonWhitespaceChars,
        }),
        duplicate_sids: false,
    };
    Policy::parse_with(text, &options).map_err(|e| err::malformed(e.message))
}

/// A role's session limit from its body.
pub(super) fn max_session(body: &serde_json::Map<String, Value>) -> i64 {
    body.get("MaxSessionDuration")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_MAX_SESSION)
}

fn check_max_session(v: i64) -> AwsResult<()> {
    if (DEFAULT_MAX_SESSION..=MAX_MAX_SESSION).contains(&v) {
        Ok(())
    } else {
        Err(err::validation(format!(
            "1 validation error detected: Value '{v}' at 'maxSessionDuration' failed to satisfy constraint: Member must have value between {DEFAULT_MAX_SESSION} and {MAX_MAX_SESSION}"
        )))
    }
}

fn check_description(d: &str) -> AwsResult<()> {
    if d.chars().count() > 1000 {
        return Err(err::validation(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 1000",
        ));
    }
    Ok(())
}

fn role_xml(e: &IamEntity, with_tags: bool) -> String {
    let body = body_of(&e.body);
    let mut x = Xml::new();
    x.text("Path", &e.path)
        .text("RoleName", &e.name)
        .text("RoleId", &e.id)
        .text("Arn", &e.arn)
        .text("CreateDate", iso(e.created_at))
        .opt(
            "AssumeRolePolicyDocument",
            body.get("AssumeRolePolicyDocument")
                .and_then(Value::as_str)
                .map(url_encode),
        )
        .opt("Description", body.get("Description").and_then(Value::as_str))
        .text("MaxSessionDuration", max_session(&body));
    if with_tags {
        tags_xml(&mut x, &tags_of(&body));
    }
    x.done()
}

async fn create_role(ctx: &Ctx<'_>, input: &Input) -> Out {
    let name = input.req("RoleName")?;
    check_name("roleName", name, 64)?;
    let path = input.opt("Path").unwrap_or("/");
    check_path(path)?;
    let trust = input.req("AssumeRolePolicyDocument")?;
    let max = input.int("MaxSessionDuration")?.unwrap_or(DEFAULT_MAX_SESSION);
    check_max_session(max)?;
    let description = input.opt("Description");
    if let Some(d) = description {
        check_description(d)?;
    }
    let tags = input.tags("Tags")?;
    let arn = ctx.arn("role", path, name);
    ctx.allow_access(Access::resource("iam:CreateRole", &arn, &ctx.account).with_request_tags(&tags))
        .await?;
    parse_trust(trust)?;
    let mut body = json!({"AssumeRolePolicyDocument": trust, "MaxSessionDuration": max});
    if let Some(d) = description {
        body["Description"] = json!(d);
    }
    if !tags.is_empty() {
        body["Tags"] = json!(tags.iter().cloned().collect::<std::collections::BTreeMap<_, _>>());
    }
    let e = IamEntity {
        account: ctx.account.clone(),
        kind: kind::ROLE.into(),
        name: name.into(),
        id: unique_id("AROA"),
        path: path.into(),
        arn,
        body: body.to_string(),
        created_at: kura_store::now_millis(),
    };
    if !ctx.api.iam.iam_entity_create(&e).await? {
        return Err(err::already_exists(format!("Role with name {name} already exists.")));
    }
    Ok(Some(Xml::new().wrap("Role", &role_xml(&e, true)).done()))
}

async fn get_role(ctx: &Ctx<'_>, input: &Input) -> Out {
    let name = input.req("RoleName")?;
    let e = ctx.entity("iam:GetRole", kind::ROLE, name, None).await?;
    Ok(Some(Xml::new().wrap("Role", &role_xml(&e, true)).done()))
}

async fn list_roles(ctx: &Ctx<'_>, input: &Input) -> Out {
    let paging = input.paging()?;
    let prefix = input.opt("PathPrefix").unwrap_or("/");
    ctx.allow("iam:ListRoles", "*").await?;
    let roles: Vec<IamEntity> = all_entities(ctx, kind::ROLE)
        .await?
        .into_iter()
        .filter(|e| e.path.starts_with(prefix))
        .collect();
    let (page, next) = paging.page(roles, |e| e.name.to_lowercase());
    Ok(Some(
        Xml::new()
            .members("Roles", page.iter().map(|e| role_xml(e, false)))
            .truncation(next)
            .done(),
    ))
}

async fn delete_role(ctx: &Ctx<'_>, input: &Input) -> Out {
    let name = input.req("RoleName")?;
    let e = ctx.entity("iam:DeleteRole", kind::ROLE, name, None).await?;
    let iam = &ctx.api.iam;
    if !iam.iam_inline_list(&ctx.account, kind::ROLE, &e.name).await?.is_empty() {
        return Err(err::delete_conflict(
            "Cannot delete entity, must delete policies first.",
        ));
    }
    if !iam
        .iam_links_from(&ctx.account, rel::ATTACHED, kind::ROLE, &e.name)
        .await?
        .is_empty()
    {
        return Err(err::delete_conflict(
            "Cannot delete entity, must detach all policies first.",
        ));
    }
    if !iam.iam_entity_delete(&ctx.account, kind::ROLE, &e.name).await? {
        return Err(no_such(kind::ROLE, name));
    }
    // Its sessions end with it: their keys (and so the registry tokens and
    // download URLs issued with them) are gone. Keys are bound to the role's
    // id, so even one that escaped this would resolve to nobody.
    let ended = iam.access_keys_delete_sessions(&e.id).await?;
    if ended > 0 {
        tracing::info!(role = %e.arn, sessions = ended, "role deleted; its sessions ended");
    }
    Ok(None)
}

async fn update_role(ctx: &Ctx<'_>, input: &Input) -> Out {
    let name = input.req("RoleName")?;
    let max = input.int("MaxSessionDuration")?;
    if let Some(m) = max {
        check_max_session(m)?;
    }
    let description = input.opt("Description").map(str::to_string);
    if let Some(d) = &description {
        check_description(d)?;
    }
    let e = ctx.entity("iam:UpdateRole", kind::ROLE, name, None).await?;
    ctx.api
        .iam_update_body(
            &ctx.account,
            kind::ROLE,
            &e.name,
            || no_such(kind::ROLE, name),
            |b| {
                if let Some(m) = max {
                    b.insert("MaxSessionDuration".into(), json!(m));
                }
                if let Some(d) = &description {
                    b.insert("Description".into(), json!(d));
                }
                Ok(())
            },
        )
        .await?;
    Ok(Some(String::new()))
}

async fn update_trust(ctx: &Ctx<'_>, input: &Input) -> Out {
    let name = input.req("RoleName")?;
    let doc = input.req("PolicyDocument")?.to_string();
    let e = ctx.entity("iam:UpdateAssumeRolePolicy", kind::ROLE, name, None).await?;
    parse_trust(&doc)?;
    ctx.api
        .iam_update_body(
            &ctx.account,
            kind::ROLE,
            &e.name,
            || no_such(kind::ROLE, name),
            |b| {
                b.insert("AssumeRolePolicyDocument".into(), json!(doc));
                Ok(())
            },
        )
        .await?;
    Ok(None)
}
