//! IAM groups and their members.

use kura_store::iam::{kind, rel, IamEntity};

use super::no_such;
use super::users::{all_entities, user_xml};
use super::{check_name, check_path, err, iso, unique_id, Ctx, Input, Out, Xml};
use kura_aws::AwsResult;

/// The most groups one user may be in.
const GROUPS_PER_USER: usize = 10;

pub(super) async fn dispatch(ctx: &Ctx<'_>, action: &str, input: &Input) -> Option<Out> {
    Some(match action {
        "CreateGroup" => create_group(ctx, input).await,
        "GetGroup" => get_group(ctx, input).await,
        "ListGroups" => list_groups(ctx, input).await,
        "DeleteGroup" => delete_group(ctx, input).await,
        "AddUserToGroup" => add_user(ctx, input).await,
        "RemoveUserFromGroup" => remove_user(ctx, input).await,
        "ListGroupsForUser" => groups_for_user(ctx, input).await,
        _ => return None,
    })
}

fn group_xml(e: &IamEntity) -> String {
    Xml::new()
        .text("Path", &e.path)
        .text("GroupName", &e.name)
        .text("GroupId", &e.id)
        .text("Arn", &e.arn)
        .text("CreateDate", iso(e.created_at))
        .done()
}

async fn create_group(ctx: &Ctx<'_>, input: &Input) -> Out {
    let name = input.req("GroupName")?;
    check_name("groupName", name, 128)?;
    let path = input.opt("Path").unwrap_or("/");
    check_path(path)?;
    let arn = ctx.arn("group", path, name);
    ctx.allow("iam:CreateGroup", &arn).await?;
    let e = IamEntity {
        account: ctx.account.clone(),
        kind: kind::GROUP.into(),
        name: name.into(),
        id: unique_id("AGPA"),
        path: path.into(),
        arn,
        body: "{}".into(),
        created_at: kura_store::now_millis(),
    };
    if !ctx.api.iam.iam_entity_create(&e).await? {
        return Err(err::already_exists(format!("Group with name {name} already exists.")));
    }
    Ok(Some(Xml::new().wrap("Group", &group_xml(&e)).done()))
}

/// The user entities that are members of a group, by name.
async fn members(ctx: &Ctx<'_>, group: &str) -> AwsResult<Vec<IamEntity>> {
    let mut out = Vec::new();
    for (k, user) in ctx.api.iam.iam_links_to(&ctx.account, rel::MEMBER, group).await? {
        if k != kind::USER {
            continue;
        }
        if let Some(e) = ctx.api.iam.iam_entity_get(&ctx.account, kind::USER, &user).await? {
            out.push(e);
        }
    }
    Ok(out)
}

async fn get_group(ctx: &Ctx<'_>, input: &Input) -> Out {
    let name = input.req("GroupName")?;
    let paging = input.paging()?;
    let g = ctx.entity("iam:GetGroup", kind::GROUP, name, None).await?;
    let users = members(ctx, &g.name).await?;
    let (page, next) = paging.page(users, |e| e.name.to_lowercase());
    Ok(Some(
        Xml::new()
            .wrap("Group", &group_xml(&g))
            .members("Users", page.iter().map(|e| user_xml(e, false)))
            .truncation(next)
            .done(),
    ))
}

async fn list_groups(ctx: &Ctx<'_>, input: &Input) -> Out {
    let paging = input.paging()?;
    let prefix = input.opt("PathPrefix").unwrap_or("/");
    ctx.allow("iam:ListGroups", "*").await?;
    let groups: Vec<IamEntity> = all_entities(ctx, kind::GROUP)
        .await?
        .into_iter()
        .filter(|e| e.path.starts_with(prefix))
        .collect();
    let (page, next) = paging.page(groups, |e| e.name.to_lowercase());
    Ok(Some(
        Xml::new()
            .members("Groups", page.iter().map(group_xml))
            .truncation(next)
            .done(),
    ))
}

async fn delete_group(ctx: &Ctx<'_>, input: &Input) -> Out {
    let name = input.req("GroupName")?;
    let g = ctx.entity("iam:DeleteGroup", kind::GROUP, name, None).await?;
    let iam = &ctx.api.iam;
    if !iam.iam_links_to(&ctx.account, rel::MEMBER, &g.name).await?.is_empty() {
        return Err(err::delete_conflict(
            "Cannot delete entity, must remove users from group first.",
        ));
    }
    if !iam
        .iam_inline_list(&ctx.account, kind::GROUP, &g.name)
        .await?
        .is_empty()
    {
        return Err(err::delete_conflict(
            "Cannot delete entity, must delete policies first.",
        ));
    }
    if !iam
        .iam_links_from(&ctx.account, rel::ATTACHED, kind::GROUP, &g.name)
        .await?
        .is_empty()
    {
        return Err(err::delete_conflict(
            "Cannot delete entity, must detach all policies first.",
        ));
    }
    if !iam.iam_entity_delete(&ctx.account, kind::GROUP, &g.name).await? {
        return Err(no_such(kind::GROUP, name));
    }
    Ok(None)
}

async fn add_user(ctx: &Ctx<'_>, input: &Input) -> Out {
    let group = input.req("GroupName")?;
    let user = input.req("UserName")?;
    let g = ctx.entity("iam:AddUserToGroup", kind::GROUP, group, None).await?;
    let u = ctx
        .api
        .iam
        .iam_entity_get(&ctx.account, kind::USER, user)
        .await?
        .ok_or_else(|| no_such(kind::USER, user))?;
    let current = ctx
        .api
        .iam
        .iam_links_from(&ctx.account, rel::MEMBER, kind::USER, &u.name)
        .await?;
    if current.contains(&g.name) {
        return Ok(None);
    }
    if current.len() >= GROUPS_PER_USER {
        return Err(err::limit_exceeded(format!(
            "Cannot exceed quota for GroupsPerUser: {GROUPS_PER_USER}"
        )));
    }
    ctx.api
        .iam
        .iam_link_add(&ctx.account, rel::MEMBER, kind::USER, &u.name, &g.name)
        .await?;
    Ok(None)
}

async fn remove_user(ctx: &Ctx<'_>, input: &Input) -> Out {
    let group = input.req("GroupName")?;
    let user = input.req("UserName")?;
    let g = ctx.entity("iam:RemoveUserFromGroup", kind::GROUP, group, None).await?;
    let u = ctx
        .api
        .iam
        .iam_entity_get(&ctx.account, kind::USER, user)
        .await?
        .ok_or_else(|| no_such(kind::USER, user))?;
    if !ctx
        .api
        .iam
        .iam_link_remove(&ctx.account, rel::MEMBER, kind::USER, &u.name, &g.name)
        .await?
    {
        return Err(err::no_such_entity(format!(
            "The user with name {user} is not in group {group}."
        )));
    }
    Ok(None)
}

async fn groups_for_user(ctx: &Ctx<'_>, input: &Input) -> Out {
    let user = input.req("UserName")?;
    let paging = input.paging()?;
    let u = ctx.entity("iam:ListGroupsForUser", kind::USER, user, None).await?;
    let mut groups = Vec::new();
    for g in ctx
        .api
        .iam
        .iam_links_from(&ctx.account, rel::MEMBER, kind::USER, &u.name)
        .await?
    {
        if let Some(e) = ctx.api.iam.iam_entity_get(&ctx.account, kind::GROUP, &g).await? {
            groups.push(e);
        }
    }
    groups.sort_by_key(|e| e.name.to_lowercase());
    let (page, next) = paging.page(groups, |e| e.name.to_lowercase());
    Ok(Some(
        Xml::new()
            .members("Groups", page.iter().map(group_xml))
            .truncation(next)
            .done(),
    ))
}
