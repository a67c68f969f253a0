//! CloudTrail's API on `POST /`, as a [`kura_aws::AwsService`]: AWS JSON 1.1,
//! `X-Amz-Target: com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.*`,
//! SigV4 signing name `cloudtrail`. Only `LookupEvents` is served: over the
//! caller's own account's trail, authorized as `cloudtrail:LookupEvents` on
//! `*`. Other CloudTrail operations answer `UnknownOperationException`.

use std::sync::Arc;

use async_trait::async_trait;
use kura_authz::{Access, Authz};
use kura_aws::{AwsError, AwsService, Call, OpSpec, Protocol, Scope};
use kura_store::AuditStore;
use serde_json::Value;

use crate::lookup::{self, TARGET_PREFIX};

/// The one operation served.
const LOOKUP_EVENTS: OpSpec = OpSpec {
    name: "LookupEvents",
    action: "cloudtrail:LookupEvents",
    scope: Scope::None,
    read_only: true,
    built: true,
};

/// CloudTrail's `LookupEvents` over the audit trail.
pub struct CloudTrail {
    store: Arc<dyn AuditStore>,
    authz: Arc<Authz>,
    region: String,
}

impl CloudTrail {
    /// The service over `store`'s trail, authorizing through `authz`,
    /// answering for `region`.
    pub fn new(store: Arc<dyn AuditStore>, authz: Arc<Authz>, region: &str) -> Self {
        CloudTrail {
            store,
            authz,
            region: region.to_string(),
        }
    }
}

#[async_trait]
impl AwsService for CloudTrail {
    fn protocol(&self) -> Protocol {
        Protocol::Json11 {
            target_prefix: TARGET_PREFIX,
        }
    }

    fn signing_name(&self) -> &'static str {
        "cloudtrail"
    }

    fn event_source(&self) -> &'static str {
        "cloudtrail.amazonaws.com"
    }

    fn operation(&self, name: &str) -> Option<OpSpec> {
        (name == LOOKUP_EVENTS.name).then_some(LOOKUP_EVENTS)
    }

    async fn authorize(&self, call: &Call, op: &OpSpec, _input: &Value) -> Result<(), AwsError> {
        let account = &call.caller.account;
        self.authz
            .authorize(&call.caller, &Access::resource(op.action, "*", account), call.source_ip)
            .await
    }

    async fn run(&self, call: &Call, _op: &OpSpec, input: Value) -> Result<Value, AwsError> {
        // Only the caller's own account's records: the account is never
        // taken from the input or the token.
        let now = kura_store::now_millis();
        lookup::lookup_events(self.store.as_ref(), &call.caller.account, &self.region, &input, now)
            .await?
            .map_err(|e| AwsError::new(e.kind, e.message))
    }
}
