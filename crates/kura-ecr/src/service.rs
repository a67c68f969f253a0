//! ECR as one [`AwsService`] of the AWS pipeline: its operation table, the
//! model its inputs are validated against, the authorization of each
//! operation, and the dispatch to [`crate::ops`].

use std::sync::Arc;

use async_trait::async_trait;
use kura_aws::{AwsError, AwsService, Call, OpSpec, Protocol};
use serde_json::Value;

use crate::model::model;
use crate::ops::{self, Ctx};
use crate::optable::EcrOp;
use crate::Ecr;

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

/// The table's operation of a spec this service handed out.
fn ecr_op(op: &OpSpec) -> Result<EcrOp, AwsError> {
    EcrOp::from_name(op.name).ok_or_else(|| AwsError::unknown_operation(op.name))
}

/// The context of one ECR call: the caller, and the one account it acts on
/// and is authorized against ([`Ctx::registry_of`]).
fn ctx(call: &Call, op: &OpSpec, input: &Value) -> Ctx {
    Ctx {
        account: Ctx::registry_of(model(), op.name, input, &call.caller),
        caller: call.caller.clone(),
        host: call.host.clone(),
        source_ip: call.source_ip,
        scheme: call.scheme,
        user_agent: call.user_agent.clone(),
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
        EcrOp::from_name(name).map(EcrOp::spec)
    }

    fn validate(&self, op: &OpSpec, input: &Value) -> Result<(), AwsError> {
        model().validate(op.name, input)
    }

    async fn authorize(&self, call: &Call, op: &OpSpec, input: &Value) -> Result<(), AwsError> {
        self.ecr.authorize_op(&ctx(call, op, input), ecr_op(op)?, input).await
    }

    async fn run(&self, call: &Call, op: &OpSpec, input: Value) -> Result<Value, AwsError> {
        let ctx = ctx(call, op, &input);
        tracing::debug!(operation = op.name, registry = %ctx.account, "ECR API call");
        ops::dispatch(&self.ecr, &ctx, ecr_op(op)?, input).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kura_aws::Scope;
    use serde_json::Value;

    use super::*;

    /// Guards: the generated operation table (src/optable.rs) is the model's
    /// and the overlay's: one variant per operation of the model, each with
    /// its `ecr:` action, the overlay's scope and built flag, and the
    /// registry operations in the overlay's order. Regenerate with
    /// `scripts/gen-ecr-model.py --optable` when this fails.
    #[test]
    fn the_operation_table_matches_the_model_and_overlay() {
        let overlay: Value = serde_json::from_str(include_str!("../model/ecr-ops.json")).unwrap();
        let names: Vec<&str> = EcrOp::ALL.iter().map(|o| o.name()).collect();
        let mut model_names: Vec<&str> = model().operations.keys().map(String::as_str).collect();
        model_names.sort();
        assert_eq!(names, model_names);
        let mut scope = BTreeMap::new();
        for (kind, list) in overlay["scope"].as_object().unwrap() {
            for n in list.as_array().unwrap() {
                scope.insert(n.as_str().unwrap(), kind.as_str());
            }
        }
        for op in EcrOp::ALL {
            let spec = op.spec();
            assert_eq!(EcrOp::from_name(spec.name), Some(op));
            assert_eq!(spec.action, format!("ecr:{}", spec.name));
            let want = match scope.get(spec.name).copied().unwrap_or("repository") {
                "registry" => Scope::Registry,
                "other" => Scope::Other,
                "none" => Scope::None,
                _ => Scope::Repository,
            };
            assert_eq!(spec.scope, want, "{}", spec.name);
            let later = overlay["not_built"].get(spec.name).and_then(Value::as_str);
            assert_eq!(spec.built, later.is_none(), "{}", spec.name);
            assert_eq!(op.later(), later, "{}", spec.name);
            assert_eq!(
                spec.read_only,
                kura_aws::service::read_only_by_name(spec.name),
                "{}",
                spec.name
            );
        }
        let registry: Vec<&str> = overlay["scope"]["registry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(crate::optable::REGISTRY_OPS, registry.as_slice());
        assert_eq!(EcrOp::from_name("NoSuchOperation"), None);
    }
}
