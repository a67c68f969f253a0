//! ECR as one [`AwsService`] of the AWS pipeline: its operation table, the
//! model its inputs are validated against, the authorization of each
//! operation, and the dispatch to [`crate::ops`].

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use kura_aws::service::OpTable;
use kura_aws::{AwsError, AwsService, Call, OpSpec, Protocol, Scope};
use serde_json::Value;

use crate::model::model;
use crate::ops::{self, Ctx};
use crate::Ecr;

/// ECR's operations (every operation of the model).
pub fn operations() -> &'static OpTable {
    static T: OnceLock<OpTable> = OnceLock::new();
    T.get_or_init(|| {
        let m = model();
        OpTable::build(
            "ecr",
            m.operations.keys().map(|name| {
                let name: &'static str = name.as_str();
                let scope = if ops::policy::REGISTRY_OPS.contains(&name) {
                    Scope::Registry
                } else if matches!(name, "TagResource" | "UntagResource" | "ListTagsForResource") {
                    Scope::Other
                } else {
                    Scope::Repository
                };
                let built = !ops::later::STATUS.iter().any(|(n, _)| *n == name);
                (name, scope, built)
            }),
        )
    })
}

/// The ECR API on the pipeline.
pub struct EcrService {
    ecr: Arc<Ecr>,
}

impl EcrService {
    /// ECR over `ecr`.
    pub fn new(ecr: Arc<Ecr>) -> Self {
        EcrService { ecr }
    }
}

/// The context of one ECR call: the caller, and the one account it acts on
/// and is authorized against ([`Ctx::registry_of`]).
fn ctx(call: &Call, op: &OpSpec, input: &Value) -> Ctx {
    Ctx {
        account: Ctx::registry_of(model(), op.name, input, &call.caller),
        caller: call.caller.clone(),
        host: call.host.clone(),
        source_ip: call.source_ip,
    }
}

#[async_trait]
impl AwsService for EcrService {
    fn protocol(&self) -> Protocol {
        Protocol::Json11 {
            target_prefix: "AmazonEC2ContainerRegistry_V20150921",
        }
    }

    fn signing_name(&self) -> &'static str {
        "ecr"
    }

    fn event_source(&self) -> &'static str {
        "ecr.amazonaws.com"
    }

    fn operation(&self, name: &str) -> Option<OpSpec> {
        operations().get(name)
    }

    fn validate(&self, op: &OpSpec, input: &Value) -> Result<(), AwsError> {
        model().validate(op.name, input)
    }

    async fn authorize(&self, call: &Call, op: &OpSpec, input: &Value) -> Result<(), AwsError> {
        self.ecr.authorize_op(&ctx(call, op, input), op.name, input).await
    }

    async fn run(&self, call: &Call, op: &OpSpec, input: Value) -> Result<Value, AwsError> {
        let ctx = ctx(call, op, &input);
        tracing::debug!(operation = op.name, registry = %ctx.account, "ECR API call");
        ops::dispatch(&self.ecr, &ctx, op.name, input).await
    }
}
