//! The authorization decision.

use crate::context::{PrincipalKind, RequestContext};
use crate::pattern::{match_tokens, Tok};
use crate::principal::{names, Naming};
use crate::vars::expand;
use crate::{ActionSpec, Effect, Policy, PrincipalSpec, ResourceSpec, Statement};

/// The outcome of [`evaluate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Some policy allows the request and none denies it.
    Allow,
    /// A `Deny` statement applies.
    ExplicitDeny,
    /// Nothing allows the request (the default).
    ImplicitDeny,
}

/// Which policy a statement came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicySource {
    /// The identity policy at this index of the `identity_policies` argument.
    Identity(usize),
    /// The resource policy.
    Resource,
}

/// A statement that decided (or helped decide) a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementRef {
    /// The policy it belongs to.
    pub source: PolicySource,
    /// Its index in that policy's `Statement` list.
    pub index: usize,
    /// Its `Sid`, if any.
    pub sid: Option<String>,
}

impl std::fmt::Display for StatementRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.source {
            PolicySource::Identity(i) => write!(f, "identity policy {i}, ")?,
            PolicySource::Resource => write!(f, "resource policy, ")?,
        }
        write!(f, "Statement[{}]", self.index)?;
        if let Some(sid) = &self.sid {
            write!(f, " (Sid {sid:?})")?;
        }
        Ok(())
    }
}

/// The decision, the statement behind it, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// The decision.
    pub decision: Decision,
    /// The deny statement that applied, or the allow statement that granted
    /// (the identity side first). `None` for an implicit deny, or for an
    /// account root acting in its own account without any allow statement.
    pub statement: Option<StatementRef>,
    /// A short explanation, for logs and error messages.
    pub reason: String,
}

impl Evaluation {
    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        self.decision == Decision::Allow
    }
}

/// What one statement says about the request, if it applies.
fn applies(st: &Statement, ctx: &RequestContext, variables: bool, resource_policy: bool) -> Option<Naming> {
    let naming = if resource_policy {
        match &st.principal {
            Some(PrincipalSpec::Principal(p)) => names(p, &ctx.principal)?,
            // NotPrincipal covers everyone it does not name, directly.
            Some(PrincipalSpec::NotPrincipal(p)) => match names(p, &ctx.principal) {
                Some(_) => return None,
                None => Naming::Direct,
            },
            // A resource policy statement without a principal grants nobody.
            None => return None,
        }
    } else {
        Naming::Direct
    };
    let action_hit = |list: &[String]| {
        let action: Vec<char> = ctx.action.chars().collect();
        list.iter()
            .any(|a| match_tokens(&crate::pattern::plain_tokens(a), &action, true))
    };
    let action_ok = match &st.action {
        ActionSpec::Action(list) => action_hit(list),
        ActionSpec::NotAction(list) => !action_hit(list),
    };
    if !action_ok {
        return None;
    }
    let resource_hit = |list: &[String]| {
        let resource: Vec<char> = ctx.resource.chars().collect();
        list.iter()
            .any(|r| expand(r, variables, ctx).is_some_and(|toks: Vec<Tok>| match_tokens(&toks, &resource, false)))
    };
    let resource_ok = match &st.resource {
        None => true,
        Some(ResourceSpec::Resource(list)) => resource_hit(list),
        Some(ResourceSpec::NotResource(list)) => !resource_hit(list),
    };
    if !resource_ok {
        return None;
    }
    st.conditions
        .iter()
        .all(|c| c.matches(ctx, variables))
        .then_some(naming)
}

#[derive(Default)]
struct Found {
    deny: Option<StatementRef>,
    allow: Option<(StatementRef, Naming)>,
}

fn scan(policy: &Policy, source: PolicySource, ctx: &RequestContext, found: &mut Found) {
    let resource_policy = source == PolicySource::Resource;
    for (index, st) in policy.statements.iter().enumerate() {
        if st.effect == Effect::Deny && found.deny.is_some() {
            continue;
        }
        let Some(naming) = applies(st, ctx, policy.version.has_variables(), resource_policy) else {
            continue;
        };
        let at = StatementRef {
            source,
            index,
            sid: st.sid.clone(),
        };
        match st.effect {
            Effect::Deny => found.deny = Some(at),
            Effect::Allow => {
                if found.allow.as_ref().is_none_or(|(_, n)| naming > *n) {
                    found.allow = Some((at, naming));
                }
            }
        }
    }
}

/// Decide a request the way IAM does, from the caller's identity policies
/// and the resource's policy.
///
/// The rules, after IAM's "Policy evaluation logic":
///
/// 1. Every request starts denied.
/// 2. A `Deny` statement that applies, in any policy, decides: explicit deny.
///    In a resource policy, naming the caller's account in a `Deny` covers
///    every principal of that account.
/// 3. An anonymous caller is allowed only by a resource policy statement
///    that allows `"*"` (its identity policies, if any were passed, are
///    ignored).
/// 4. The root of the resource's account is allowed.
/// 5. Same account (principal account = resource account): an `Allow` in an
///    identity policy, or an `Allow` in the resource policy that names the
///    caller itself (`*`, its ARN, its role for a role session, its unique
///    id), suffices. Naming only the account is a delegation to the
///    account's identity policies and grants nothing on its own.
/// 6. Cross account: the resource policy must allow the caller (naming it or
///    its account or `*`) *and* an identity policy must allow the request; the
///    root of the other account needs only the resource policy.
///
/// A statement applies when its principal (resource policy only), action,
/// resource and every condition match. A resource policy statement without
/// `Resource` covers any resource (the one the policy is attached to).
pub fn evaluate(ctx: &RequestContext, identity_policies: &[&Policy], resource_policy: Option<&Policy>) -> Evaluation {
    let anonymous = ctx.principal.kind == PrincipalKind::Anonymous;
    let mut identity = Found::default();
    if !anonymous {
        for (i, p) in identity_policies.iter().enumerate() {
            scan(p, PolicySource::Identity(i), ctx, &mut identity);
        }
    }
    let mut resource = Found::default();
    if let Some(p) = resource_policy {
        scan(p, PolicySource::Resource, ctx, &mut resource);
    }
    if let Some(at) = identity.deny.or(resource.deny) {
        return Evaluation {
            decision: Decision::ExplicitDeny,
            reason: format!("explicitly denied by {at}"),
            statement: Some(at),
        };
    }
    let allow = |at: StatementRef, reason: &str| Evaluation {
        decision: Decision::Allow,
        reason: format!("{reason} by {at}"),
        statement: Some(at),
    };
    let deny = |reason: &str| Evaluation {
        decision: Decision::ImplicitDeny,
        statement: None,
        reason: reason.to_string(),
    };
    let id_allow = identity.allow.map(|(at, _)| at);
    let res_allow = resource.allow;
    if anonymous {
        return match res_allow {
            Some((at, _)) => allow(at, "allowed for anonymous callers"),
            None => deny("anonymous callers need a resource policy statement allowing \"*\""),
        };
    }
    let root = ctx.principal.kind == PrincipalKind::Root;
    let same_account = ctx.principal.account == ctx.resource_account;
    if same_account {
        if let Some(at) = id_allow {
            return allow(at, "allowed");
        }
        if let Some((at, Naming::Direct)) = res_allow {
            return allow(at, "allowed");
        }
        if root {
            return Evaluation {
                decision: Decision::Allow,
                statement: res_allow.map(|(at, _)| at),
                reason: "allowed: the account root acts in its own account".to_string(),
            };
        }
        return deny("no identity policy or resource policy statement allows this request");
    }
    match (res_allow, id_allow) {
        (Some((at, _)), Some(_)) => allow(at, "cross-account access allowed"),
        (Some((at, _)), None) if root => allow(at, "cross-account access allowed for the account root"),
        (Some(_), None) => deny("cross-account access: the resource policy allows, but no identity policy does"),
        (None, Some(_)) => deny("cross-account access: an identity policy allows, but the resource policy does not"),
        (None, None) => deny("cross-account access needs an allow in both an identity policy and the resource policy"),
    }
}
