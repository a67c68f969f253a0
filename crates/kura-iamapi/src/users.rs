//! IAM users, their access keys and their tags.

use kura_store::control::AccessKeyRow;
use kura_store::iam::{kind, rel, IamEntity};
use serde_json::{json, Value};

use super::{body_of, check_name, check_path, err, iso, no_such, tags_of, tags_xml, unique_id, Ctx, Input, Out, Xml};
use kura_authz::Access;
use kura_aws::sigv4::{generate_key_pair, seal_secret};
use kura_aws::{AwsError, AwsResult};

/// The most access keys one user (or the root) may have.
const KEYS_PER_USER: usize = 2;

pub(super) async fn dispatch(ctx: &Ctx<'_>, action: &str, input: &Input) -> Option<Out> {
    Some(match action {
        "CreateUser" => create_user(ctx, input).await,
        "GetUser" => get_user(ctx, input).await,
        "ListUsers" => list_users(ctx, input).await,
        "DeleteUser" => delete_user(ctx, input).await,
        "TagUser" => tag_user(ctx, input).await,
        "UntagUser" => untag_user(ctx, input).await,
        "ListUserTags" => list_user_tags(ctx, input).await,
        "CreateAccessKey" => create_access_key(ctx, input).await,
        "ListAccessKeys" => list_access_keys(ctx, input).await,
        "UpdateAccessKey" => update_access_key(ctx, input).await,
        "DeleteAccessKey" => delete_access_key(ctx, input).await,
        _ => return None,
    })
}

/// Every entity of a kind in the account, by name.
pub(super) async fn all_entities(ctx: &Ctx<'_>, k: &str) -> AwsResult<Vec<IamEntity>> {
    let mut out: Vec<IamEntity> = Vec::new();
    loop {
        let after = out.last().map(|e| e.name.clone());
        let page = ctx
            .api
            .iam
            .iam_entity_list(&ctx.account, k, after.as_deref(), 1000)
            .await?;
        let done = page.len() < 1000;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// `<User>` fields.
pub(super) fn user_xml(e: &IamEntity, with_tags: bool) -> String {
    let mut x = Xml::new();
    x.text("Path", &e.path)
        .text("UserName", &e.name)
        .text("UserId", &e.id)
        .text("Arn", &e.arn)
        .text("CreateDate", iso(e.created_at));
    if with_tags {
        tags_xml(&mut x, &tags_of(&body_of(&e.body)));
    }
    x.done()
}

async fn create_user(ctx: &Ctx<'_>, input: &Input) -> Out {
    let name = input.req("UserName")?;
    check_name("userName", name, 64)?;
    let path = input.opt("Path").unwrap_or("/");
    check_path(path)?;
    let tags = input.tags("Tags")?;
    let arn = ctx.arn("user", path, name);
    ctx.allow_access(Access::resource("iam:CreateUser", &arn, &ctx.account).with_request_tags(&tags))
        .await?;
    let mut body = json!({});
    if !tags.is_empty() {
        body["Tags"] = json!(tags.iter().cloned().collect::<std::collections::BTreeMap<_, _>>());
    }
    let e = IamEntity {
        account: ctx.account.clone(),
        kind: kind::USER.into(),
        name: name.into(),
        id: unique_id("AIDA"),
        path: path.into(),
        arn,
        body: body.to_string(),
        created_at: kura_store::now_millis(),
    };
    if !ctx.api.iam.iam_entity_create(&e).await? {
        return Err(err::already_exists(format!("User with name {name} already exists.")));
    }
    Ok(Some(Xml::new().wrap("User", &user_xml(&e, true)).done()))
}

/// The IAM user a caller is, found by the unique id its access key
/// records (never by its ARN, whose path may hold anything); `None` if the
/// caller is not a user (the root, a role session).
async fn caller_user(ctx: &Ctx<'_>) -> AwsResult<Option<IamEntity>> {
    let id = &ctx.caller.principal_id;
    if is_root(ctx) || id.contains(':') {
        return Ok(None);
    }
    match ctx.api.iam.iam_entity_by_id(&ctx.account, id).await? {
        Some(e) if e.kind == kind::USER => Ok(Some(e)),
        // Deleted since the request was authenticated.
        _ => Err(kura_aws::sigv4::unrecognized()),
    }
}

/// Whether the caller is the account root (its key's owner is the account).
fn is_root(ctx: &Ctx<'_>) -> bool {
    ctx.caller.principal_id == ctx.caller.account
}

fn non_user() -> AwsError {
    err::validation("Must specify userName when calling with non-User credentials")
}

async fn get_user(ctx: &Ctx<'_>, input: &Input) -> Out {
    let name = match input.opt("UserName") {
        Some(n) => n.to_string(),
        None if is_root(ctx) => {
            let arn = ctx.caller.principal_arn.clone();
            ctx.allow("iam:GetUser", &arn).await?;
            let x = Xml::new()
                .text("UserId", &ctx.account)
                .text("Arn", &arn)
                .text("CreateDate", iso(kura_store::now_millis()))
                .done();
            return Ok(Some(Xml::new().wrap("User", &x).done()));
        }
        None => {
            let e = caller_user(ctx).await?.ok_or_else(non_user)?;
            ctx.allow("iam:GetUser", &e.arn).await?;
            return Ok(Some(Xml::new().wrap("User", &user_xml(&e, true)).done()));
        }
    };
    let e = ctx.entity("iam:GetUser", kind::USER, &name, None).await?;
    Ok(Some(Xml::new().wrap("User", &user_xml(&e, true)).done()))
}

async fn list_users(ctx: &Ctx<'_>, input: &Input) -> Out {
    let paging = input.paging()?;
    let prefix = input.opt("PathPrefix").unwrap_or("/");
    ctx.allow("iam:ListUsers", "*").await?;
    let users: Vec<IamEntity> = all_entities(ctx, kind::USER)
        .await?
        .into_iter()
        .filter(|e| e.path.starts_with(prefix))
        .collect();
    let (page, next) = paging.page(users, |e| e.name.to_lowercase());
    Ok(Some(
        Xml::new()
            .members("Users", page.iter().map(|e| user_xml(e, false)))
            .truncation(next)
            .done(),
    ))
}

async fn delete_user(ctx: &Ctx<'_>, input: &Input) -> Out {
    let name = input.req("UserName")?;
    let e = ctx.entity("iam:DeleteUser", kind::USER, name, None).await?;
    let iam = &ctx.api.iam;
    if !iam.access_keys_of(&e.id).await?.is_empty() {
        return Err(err::delete_conflict(
            "Cannot delete entity, must delete access keys first.",
        ));
    }
    if !iam.iam_inline_list(&ctx.account, kind::USER, &e.name).await?.is_empty() {
        return Err(err::delete_conflict(
            "Cannot delete entity, must delete policies first.",
        ));
    }
    if !iam
        .iam_links_from(&ctx.account, rel::ATTACHED, kind::USER, &e.name)
        .await?
        .is_empty()
    {
        return Err(err::delete_conflict(
            "Cannot delete entity, must detach all policies first.",
        ));
    }
    if !iam
        .iam_links_from(&ctx.account, rel::MEMBER, kind::USER, &e.name)
        .await?
        .is_empty()
    {
        return Err(err::delete_conflict(
            "Cannot delete entity, must remove users from group first.",
        ));
    }
    if !iam.iam_entity_delete(&ctx.account, kind::USER, &e.name).await? {
        return Err(no_such(kind::USER, name));
    }
    Ok(None)
}

/// Merge tags into an entity body (at most 50 tags in all).
pub(super) fn add_tags(body: &mut serde_json::Map<String, Value>, tags: &[(String, String)]) -> AwsResult<()> {
    let mut current = tags_of(body);
    for (k, v) in tags {
        // Tag keys are case-insensitive in IAM: a new case replaces the old.
        current.retain(|old, _| !old.eq_ignore_ascii_case(k));
        current.insert(k.clone(), v.clone());
    }
    if current.len() > 50 {
        return Err(err::limit_exceeded(
            "The number of tags has reached the maximum limit (50).",
        ));
    }
    body.insert("Tags".into(), json!(current));
    Ok(())
}

/// Remove tags by key from an entity body.
pub(super) fn remove_tags(body: &mut serde_json::Map<String, Value>, keys: &[String]) {
    let mut current = tags_of(body);
    current.retain(|k, _| !keys.iter().any(|r| r.eq_ignore_ascii_case(k)));
    body.insert("Tags".into(), json!(current));
}

/// `TagUser` / `TagRole`.
pub(super) async fn tag_entity(ctx: &Ctx<'_>, input: &Input, k: &'static str) -> Out {
    let (field, noun) = if k == kind::USER {
        ("UserName", "User")
    } else {
        ("RoleName", "Role")
    };
    let name = input.req(field)?;
    let tags = input.tags("Tags")?;
    if tags.is_empty() {
        return Err(err::validation("At least one tag is required"));
    }
    let e = ctx.entity(&format!("iam:Tag{noun}"), k, name, Some(&tags)).await?;
    ctx.api
        .iam_update_body(&ctx.account, k, &e.name, || no_such(k, name), |b| add_tags(b, &tags))
        .await?;
    Ok(None)
}

/// `UntagUser` / `UntagRole`.
pub(super) async fn untag_entity(ctx: &Ctx<'_>, input: &Input, k: &'static str) -> Out {
    let (field, noun) = if k == kind::USER {
        ("UserName", "User")
    } else {
        ("RoleName", "Role")
    };
    let name = input.req(field)?;
    let keys = input.list("TagKeys");
    let e = ctx.entity(&format!("iam:Untag{noun}"), k, name, None).await?;
    ctx.api
        .iam_update_body(
            &ctx.account,
            k,
            &e.name,
            || no_such(k, name),
            |b| {
                remove_tags(b, &keys);
                Ok(())
            },
        )
        .await?;
    Ok(None)
}

/// `ListUserTags` / `ListRoleTags`.
pub(super) async fn list_entity_tags(ctx: &Ctx<'_>, input: &Input, k: &'static str) -> Out {
    let (field, noun) = if k == kind::USER {
        ("UserName", "User")
    } else {
        ("RoleName", "Role")
    };
    let name = input.req(field)?;
    let paging = input.paging()?;
    let e = ctx.entity(&format!("iam:List{noun}Tags"), k, name, None).await?;
    let tags: Vec<(String, String)> = tags_of(&body_of(&e.body)).into_iter().collect();
    let (page, next) = paging.page(tags, |(k, _)| k.clone());
    Ok(Some(
        Xml::new()
            .members(
                "Tags",
                page.iter()
                    .map(|(k, v)| Xml::new().text("Key", k).text("Value", v).done()),
            )
            .truncation(next)
            .done(),
    ))
}

/// Whose keys a key operation manages: the named user, or the caller (a
/// user, by the id its key records, or the root).
struct KeyOwner {
    /// The owner's unique id (the account id for the root).
    id: String,
    /// Its ARN.
    arn: String,
    /// Its user name, if it is a user.
    user: Option<String>,
}

async fn key_owner(ctx: &Ctx<'_>, input: &Input, action: &str) -> AwsResult<KeyOwner> {
    let user = |e: IamEntity| KeyOwner {
        id: e.id,
        arn: e.arn,
        user: Some(e.name),
    };
    match input.opt("UserName") {
        Some(name) => Ok(user(ctx.entity(action, kind::USER, name, None).await?)),
        None if is_root(ctx) => {
            ctx.allow(action, &ctx.caller.principal_arn).await?;
            Ok(KeyOwner {
                id: ctx.caller.principal_id.clone(),
                arn: ctx.caller.principal_arn.clone(),
                user: None,
            })
        }
        None => {
            let e = caller_user(ctx).await?.ok_or_else(non_user)?;
            ctx.allow(action, &e.arn).await?;
            Ok(user(e))
        }
    }
}

async fn create_access_key(ctx: &Ctx<'_>, input: &Input) -> Out {
    let owner = key_owner(ctx, input, "iam:CreateAccessKey").await?;
    if ctx.api.iam.access_keys_of(&owner.id).await?.len() >= KEYS_PER_USER {
        return Err(err::limit_exceeded(format!(
            "Cannot exceed quota for AccessKeysPerUser: {KEYS_PER_USER}"
        )));
    }
    let (id, secret) = generate_key_pair("AKIA");
    let row = AccessKeyRow {
        access_key_id: id.clone(),
        account: ctx.account.clone(),
        principal_arn: owner.arn,
        principal_id: owner.id.clone(),
        secret_sealed: seal_secret(&ctx.api.master, &id, &secret),
        status: "Active".into(),
        session_token_hash: None,
        expires_at: None,
        created_at: kura_store::now_millis(),
    };
    ctx.api.control.access_key_put(&row).await?;
    // A user deleted meanwhile (DeleteUser saw no keys yet) must not keep
    // one: the key is bound to its id, which nothing has any more.
    if owner.user.is_some() && ctx.api.iam.iam_entity_by_id(&ctx.account, &owner.id).await?.is_none() {
        ctx.api.iam.access_key_delete(&id).await?;
        return Err(no_such(kind::USER, owner.user.as_deref().unwrap_or_default()));
    }
    let key = Xml::new()
        .opt("UserName", owner.user)
        .text("AccessKeyId", &id)
        .text("Status", "Active")
        .text("SecretAccessKey", &secret)
        .text("CreateDate", iso(kura_store::now_millis()))
        .done();
    Ok(Some(Xml::new().wrap("AccessKey", &key).done()))
}

async fn list_access_keys(ctx: &Ctx<'_>, input: &Input) -> Out {
    let paging = input.paging()?;
    let KeyOwner { id: owner, user, .. } = key_owner(ctx, input, "iam:ListAccessKeys").await?;
    let keys = ctx.api.iam.access_keys_of(&owner).await?;
    let (page, next) = paging.page(keys, |k| format!("{:016}/{}", k.created_at, k.access_key_id));
    Ok(Some(
        Xml::new()
            .members(
                "AccessKeyMetadata",
                page.iter().map(|k| {
                    Xml::new()
                        .opt("UserName", user.as_deref())
                        .text("AccessKeyId", &k.access_key_id)
                        .text("Status", &k.status)
                        .text("CreateDate", iso(k.created_at))
                        .done()
                }),
            )
            .truncation(next)
            .done(),
    ))
}

/// The long-term key `id` of the principal with unique id `owner`, or
/// `NoSuchEntity`.
async fn owned_key(ctx: &Ctx<'_>, owner: &str, id: &str) -> AwsResult<AccessKeyRow> {
    match ctx.api.control.access_key_get(id).await? {
        Some(k) if k.principal_id == owner && k.account == ctx.account && k.session_token_hash.is_none() => Ok(k),
        _ => Err(err::no_such_entity(format!(
            "The Access Key with id {id} cannot be found"
        ))),
    }
}

async fn update_access_key(ctx: &Ctx<'_>, input: &Input) -> Out {
    let id = input.req("AccessKeyId")?;
    let status = input.req("Status")?;
    if status != "Active" && status != "Inactive" {
        return Err(err::validation(format!(
            "1 validation error detected: Value '{status}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
        )));
    }
    let owner = key_owner(ctx, input, "iam:UpdateAccessKey").await?;
    owned_key(ctx, &owner.id, id).await?;
    ctx.api.iam.access_key_set_status(id, status).await?;
    Ok(None)
}

async fn delete_access_key(ctx: &Ctx<'_>, input: &Input) -> Out {
    let id = input.req("AccessKeyId")?;
    let owner = key_owner(ctx, input, "iam:DeleteAccessKey").await?;
    owned_key(ctx, &owner.id, id).await?;
    ctx.api.iam.access_key_delete(id).await?;
    Ok(None)
}

async fn tag_user(ctx: &Ctx<'_>, input: &Input) -> Out {
    tag_entity(ctx, input, kind::USER).await
}

async fn untag_user(ctx: &Ctx<'_>, input: &Input) -> Out {
    untag_entity(ctx, input, kind::USER).await
}

async fn list_user_tags(ctx: &Ctx<'_>, input: &Input) -> Out {
    list_entity_tags(ctx, input, kind::USER).await
}
