//! STS: who am I, and temporary credentials for roles.
//!
//! `AssumeRole` is decided by the policy engine with the role's trust policy
//! as the resource policy, after IAM's rules for roles: the trust policy must
//! always allow the caller; when it names the caller itself (its user ARN,
//! role session, unique id) that suffices in the role's account; when it
//! names only the caller's account, or the caller is in another account, an
//! identity policy of the caller must allow `sts:AssumeRole` on the role too.

use base64::Engine;
use kura_iam::{evaluate, Policy, PrincipalKind, RequestContext, RequestEnv};
use kura_store::control::AccessKeyRow;
use kura_store::iam::kind;
use serde_json::Value;

use super::roles::{max_session, parse_trust};
use super::{body_of, check_name, err, iso, Ctx, Input, Out, Xml};
use kura_aws::sigv4::{generate_key_pair, seal_secret, session_token_hash};
use kura_aws::{AwsError, AwsResult};

/// The actions of STS (the rest of the Query actions are IAM's).
pub(super) const ACTIONS: &[&str] = &[
    "GetCallerIdentity",
    "AssumeRole",
    "AssumeRoleWithSAML",
    "AssumeRoleWithWebIdentity",
    "AssumeRoot",
    "DecodeAuthorizationMessage",
    "GetAccessKeyInfo",
    "GetDelegatedAccessToken",
    "GetFederationToken",
    "GetSessionToken",
    "GetWebIdentityToken",
];

/// The shortest session STS hands out, unless the operator's ceiling is lower.
const MIN_SESSION_SECS: i64 = 900;
/// The longest session a role may grant.
const MAX_SESSION_SECS: i64 = 43_200;
/// A role session started from a role session lasts at most an hour.
const CHAINED_MAX_SECS: i64 = 3600;

pub(super) async fn dispatch(ctx: &Ctx<'_>, action: &str, input: &Input) -> Out {
    match action {
        "GetCallerIdentity" => caller_identity(ctx).await,
        "AssumeRole" => assume_role(ctx, input).await,
        _ => Err(err::invalid_action(&format!(
            "Kura does not implement the STS action {action}"
        ))),
    }
}

async fn caller_identity(ctx: &Ctx<'_>) -> Out {
    let p = ctx.api.principal_of(&ctx.caller).await?;
    Ok(Some(
        Xml::new()
            .text("UserId", &p.userid)
            .text("Account", &ctx.account)
            .text("Arn", &p.arn)
            .done(),
    ))
}

/// `arn:aws:iam::ACCT:role/PATH/NAME` → (account, name).
fn parse_role_arn(arn: &str) -> AwsResult<(String, String)> {
    let invalid = || err::validation(format!("{arn} is invalid"));
    let a = kura_iam::Arn::parse(arn).map_err(|_| invalid())?;
    if a.service != "iam" || !a.region.is_empty() || !a.has_account_id() {
        return Err(invalid());
    }
    let (_, name) = a.iam_path_name("role").ok_or_else(invalid)?;
    Ok((a.account.to_string(), name.to_string()))
}

fn denied(who: &str, role_arn: &str) -> AwsError {
    err::access_denied(format!(
        "User: {who} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
    ))
}

/// Whether the trust policy allows the caller at all (and denies nothing):
/// the engine's cross-account rule with an identity side that allows
/// everything asks exactly that of the resource side.
fn trust_allows(ctx: &RequestContext, trust: &Policy) -> bool {
    let mut foreign = ctx.clone();
    foreign.resource_account = if ctx.principal.account == "000000000000" {
        "000000000001".into()
    } else {
        "000000000000".into()
    };
    let everything =
        Policy::parse(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
            .expect("a valid policy");
    evaluate(&foreign, &[&everything], Some(trust)).is_allowed()
}

fn random_token() -> String {
    let mut bytes = [0u8; 96];
    getrandom::fill(&mut bytes).expect("the OS random generator works");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn assume_role(ctx: &Ctx<'_>, input: &Input) -> Out {
    let role_arn = input.req("RoleArn")?;
    let session = input.req("RoleSessionName")?;
    if session.len() < 2 {
        return Err(err::validation(format!(
            "1 validation error detected: Value '{session}' at 'roleSessionName' failed to satisfy constraint: Member must have length greater than or equal to 2"
        )));
    }
    check_name("roleSessionName", session, 64)?;
    let requested = input.int("DurationSeconds")?;
    if let Some(d) = requested {
        if !(MIN_SESSION_SECS..=MAX_SESSION_SECS).contains(&d) {
            return Err(err::validation(format!(
                "1 validation error detected: Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value between {MIN_SESSION_SECS} and {MAX_SESSION_SECS}"
            )));
        }
    }
    let (role_account, role_name) = parse_role_arn(role_arn)?;
    let decider = ctx.api.caller_decider(&ctx.caller, ctx.source_ip).await?;
    let principal = decider.principal();
    let role = ctx
        .api
        .iam
        .iam_entity_get(&role_account, kind::ROLE, &role_name)
        .await?
        .filter(|e| e.arn == role_arn)
        .ok_or_else(|| denied(&principal.arn, role_arn))?;
    let body = body_of(&role.body);
    let trust_text = body
        .get("AssumeRolePolicyDocument")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let trust = match parse_trust(trust_text) {
        Ok(p) => p,
        Err(_) => {
            tracing::warn!(role = %role.arn, "a stored trust policy does not parse; nobody may assume the role");
            return Err(denied(&principal.arn, role_arn));
        }
    };
    let identity = decider.identity_policies();
    let mut rctx = RequestContext::new(principal.clone(), "sts:AssumeRole", role_arn, &role_account);
    rctx.fill_standard_keys(&RequestEnv {
        current_time: Some(kura_store::now_millis() / 1000),
        source_ip: ctx.source_ip,
        secure_transport: Some(false),
        token_issue_time: decider.token_issue_time(),
        ..Default::default()
    });
    rctx.set_key("sts:RoleSessionName", vec![session.to_string()]);
    if let Some(id) = input.opt("ExternalId") {
        rctx.set_key("sts:ExternalId", vec![id.to_string()]);
    }
    let refs: Vec<&Policy> = identity.iter().collect();
    let eval = evaluate(&rctx, &refs, Some(&trust));
    if !eval.is_allowed() || !trust_allows(&rctx, &trust) {
        tracing::info!(principal = %principal.arn, role = %role_arn, reason = %eval.reason, "AssumeRole denied");
        return Err(denied(&principal.arn, role_arn));
    }

    let role_max = max_session(&body);
    let chained = principal.kind == PrincipalKind::AssumedRole;
    let limit = if chained {
        role_max.min(CHAINED_MAX_SECS)
    } else {
        role_max
    };
    let duration = match requested {
        Some(d) if d > limit => {
            return Err(err::validation(format!(
                "The requested DurationSeconds exceeds the {} set for this role.",
                if chained {
                    "1 hour session limit for roles assumed by role chaining"
                } else {
                    "MaxSessionDuration"
                }
            )))
        }
        Some(d) => d,
        None => CHAINED_MAX_SECS.min(limit),
    };
    // The operator's ceiling wins, even below STS's own minimum.
    let ceiling = i64::try_from(ctx.api.config.max_session_secs).unwrap_or(i64::MAX);
    let duration = duration.min(ceiling);

    let now = kura_store::now_millis();
    let expires_at = now + duration * 1000;
    let (id, secret) = generate_key_pair("ASIA");
    let token = random_token();
    let arn = format!("arn:aws:sts::{role_account}:assumed-role/{}/{session}", role.name);
    // The session is bound to the role's unique id: deleting the role ends
    // it, and a role re-created under the same name is another role.
    let row = AccessKeyRow {
        access_key_id: id.clone(),
        account: role_account.clone(),
        principal_arn: arn.clone(),
        principal_id: format!("{}:{session}", role.id),
        secret_sealed: seal_secret(&ctx.api.master, &id, &secret),
        status: "Active".into(),
        session_token_hash: Some(session_token_hash(&token)),
        expires_at: Some(expires_at),
        created_at: now,
    };
    ctx.api.control.access_key_put(&row).await?;
    // DeleteRole deletes the role, then its sessions' keys: a role deleted
    // meanwhile either took this key along or is seen gone here.
    if ctx.api.iam.iam_entity_by_id(&role_account, &role.id).await?.is_none() {
        ctx.api.iam.access_key_delete(&id).await?;
        return Err(denied(&principal.arn, role_arn));
    }
    // Forget sessions that ended more than a day ago.
    if let Err(e) = ctx.api.iam.access_keys_purge_expired(now - 86_400_000).await {
        tracing::warn!(error = %e, "cannot purge expired temporary credentials");
    }
    tracing::info!(principal = %principal.arn, session = %arn, seconds = duration, "role assumed");
    let credentials = Xml::new()
        .text("AccessKeyId", &id)
        .text("SecretAccessKey", &secret)
        .text("SessionToken", &token)
        .text("Expiration", iso(expires_at))
        .done();
    let user = Xml::new()
        .text("AssumedRoleId", format!("{}:{session}", role.id))
        .text("Arn", &arn)
        .done();
    Ok(Some(
        Xml::new()
            .wrap("Credentials", &credentials)
            .wrap("AssumedRoleUser", &user)
            .done(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        assert_eq!(
            parse_role_arn("arn:aws:iam::123456789012:role/team/deploy").unwrap(),
            ("123456789012".to_string(), "deploy".to_string())
        );
        assert!(parse_role_arn("arn:aws:iam::123456789012:user/x").is_err());
        assert!(parse_role_arn("arn:aws:iam::1234:role/x").is_err());
        assert!(parse_role_arn("nonsense").is_err());
        // A path may hold `:`; the name is its last segment.
        assert_eq!(
            parse_role_arn("arn:aws:iam::123456789012:role/a:b/deploy").unwrap(),
            ("123456789012".to_string(), "deploy".to_string())
        );
        assert!(parse_role_arn("arn:aws:iam::123456789012:role/team/").is_err());
        assert!(parse_role_arn("arn:aws:sts::123456789012:role/x").is_err());
    }
}
