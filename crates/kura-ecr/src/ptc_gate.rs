//! What a pull answered from a pull-through cache's upstream needs besides
//! `ecr:BatchGetImage`, as in ECR: `ecr:BatchImportUpstreamImage` to bring
//! the image (or a blob of it) in, and `ecr:CreateRepository` when the first
//! pull creates the repository. A pull of content already cached needs
//! neither, so a reader of cached images cannot make Kura import anything.
//!
//! Asked by the data-plane guard after the request's own action is allowed,
//! on the same parsed request; the store reads happen only for names a rule
//! of the addressed account covers.

use std::net::IpAddr;

use axum::http::Method;
use kura_aws::Caller;
use kura_registry::endpoint::Endpoint;
use kura_registry::DataRequest;
use kura_store::meta::ManifestKey;

use crate::authz::{Access, Denial};
use crate::error::EcrResult;
use crate::Ecr;

/// The import action (ECR's name).
pub const IMPORT: &str = "ecr:BatchImportUpstreamImage";

/// `Some(denial)` when `data` would import from an upstream and the caller
/// may not; `None` otherwise.
pub(crate) async fn import_denial(
    ecr: &Ecr,
    caller: &Caller,
    account: &str,
    data: &DataRequest,
    source_ip: Option<IpAddr>,
) -> EcrResult<Option<Denial>> {
    if data.method != Method::GET && data.method != Method::HEAD {
        return Ok(None);
    }
    let (name, reference) = match &data.endpoint {
        Endpoint::Manifest(name, reference) => (name, Some(reference.as_str())),
        Endpoint::Blob(name, _) => (name, None),
        _ => return Ok(None),
    };
    let rules = ecr.pull_through().rules(account).await?;
    if kura_pullthrough::rules::longest(rules.iter().map(|r| r.prefix.as_str()), name.as_str()).is_none() {
        return Ok(None);
    }
    let meta = ecr.registry.meta();
    let needs: &[&str] = match meta.repo_get(account, name.as_str()).await? {
        None => &[IMPORT, "ecr:CreateRepository"],
        Some(repo) => {
            let present = match (&data.endpoint, reference) {
                (_, Some(r)) if r.contains(':') => meta.manifest_get(repo.id, ManifestKey::Digest(r)).await?.is_some(),
                (_, Some(tag)) => meta.manifest_get(repo.id, ManifestKey::Tag(tag)).await?.is_some(),
                (Endpoint::Blob(_, digest), None) => meta.blob_get(repo.id, digest).await?.is_some(),
                _ => true,
            };
            if present {
                return Ok(None);
            }
            &[IMPORT]
        }
    };
    let decider = ecr.caller_decider(caller, source_ip).await?;
    let region = &ecr.config.region;
    for action in needs {
        let on_repo = Access::repository(action, region, account, name.as_str());
        // ECR takes these from the registry's policy too (its "pull through cache" statements):
        // the same access with the registry policy as the resource policy.
        let on_registry = Access {
            policy_arn: Some(crate::authz::registry_arn(region, account)),
            ..on_repo.clone()
        };
        let denial = if *action == IMPORT {
            // Identity, repository or registry policy; an explicit deny anywhere stands.
            match decider.check(&on_repo).await? {
                Ok(()) => None,
                Err(d) if d.message.contains("explicitly denied") => Some(d),
                Err(d) => decider.check(&on_registry).await?.err().map(|_| d),
            }
        } else {
            // The repository does not exist yet: identity or registry policy.
            decider.check(&on_registry).await?.err()
        };
        if denial.is_some() {
            return Ok(denial);
        }
    }
    Ok(None)
}
