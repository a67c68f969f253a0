//! The CloudTrail API subset on `POST /` (AWS JSON 1.1,
//! `X-Amz-Target: com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.*`,
//! SigV4 service `cloudtrail`): `LookupEvents` over the caller's own
//! account's trail, authorized as `cloudtrail:LookupEvents` on `*`.

use kura_audit::lookup::{self, TARGET_PREFIX};
use serde_json::Value;

use crate::authz::Access;
use crate::calls::CallInfo;
use crate::{Ecr, EcrError, EcrResult};

/// Answer one CloudTrail call.
pub async fn handle(
    ecr: &Ecr,
    parts: &http::request::Parts,
    target: &str,
    body: &mut crate::body::RequestBody,
    info: &mut CallInfo,
) -> EcrResult<Value> {
    let op = target
        .strip_prefix(TARGET_PREFIX)
        .and_then(|s| s.strip_prefix('.'))
        .filter(|op| *op == "LookupEvents")
        .ok_or_else(|| EcrError::unknown_operation(target))?
        .to_string();
    info.name = op.clone();
    crate::body::declared_length(parts)?;
    let signed = ecr.authenticate_headers(parts, &["cloudtrail"]).await?;
    info.claimed = Some(signed.claimed().clone());
    let body = ecr.read_body(parts, body).await?;
    let caller = ecr.authenticate_body(parts, signed, &body.sha256, "cloudtrail")?;
    info.caller = Some(caller.clone());
    let input = crate::json_input(&body.bytes)?;
    info.capture(ecr, &input);
    drop(body);
    let source_ip = crate::source_ip(parts);
    let access = Access {
        action: format!("cloudtrail:{op}"),
        resource: "*".into(),
        resource_account: caller.account.clone(),
        ..Default::default()
    };
    ecr.authorize(&caller, &access, source_ip).await?;
    let Some(hook) = ecr.audit() else {
        return Err(EcrError::new(
            "OperationNotPermittedException",
            "The audit trail is not enabled on this deployment.",
        ));
    };
    let now = kura_store::now_millis();
    // Only the caller's own account's records: the account is never taken
    // from the input or the token.
    match lookup::lookup_events(hook.store.as_ref(), &caller.account, &ecr.config.region, &input, now).await? {
        Ok(v) => Ok(v),
        Err(e) => Err(EcrError::new(e.kind, e.message)),
    }
}
