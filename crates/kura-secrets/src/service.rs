//! Secrets Manager as one [`AwsService`] of the AWS pipeline: JSON 1.1 with
//! `X-Amz-Target: secretsmanager.<Op>`, SigV4 service `secretsmanager`, inputs validated
//! against the shapes derived from botocore's `secretsmanager` model. Authorization needs
//! the secret's stored ARN, so it happens in [`Secrets::call`] once the `SecretId` is
//! resolved (`secretsmanager:<Op>` on that ARN, in its owner's account), before anything is
//! read or changed.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use kura_authz::Authz;
use kura_aws::model::Model;
use kura_aws::service::OpTable;
use kura_aws::{AwsError, AwsService, Call, OpSpec, Protocol, Scope};
use serde_json::Value;

use crate::{Ctx, Secrets, OPERATIONS};

/// The Secrets Manager model (shapes from botocore).
pub fn model() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| {
        Model::from_json(include_str!("../model/secretsmanager-shapes.json")).expect("the secretsmanager model loads")
    })
}

/// Every operation of the model; those outside Kura's subset are not built.
pub fn operations() -> &'static OpTable {
    static T: OnceLock<OpTable> = OnceLock::new();
    T.get_or_init(|| {
        OpTable::build(
            "secretsmanager",
            model().operations.keys().map(|name| {
                let name: &'static str = name.as_str();
                (name, Scope::Other, OPERATIONS.contains(&name))
            }),
        )
    })
}

/// Secrets Manager on the pipeline.
pub struct SecretsService {
    secrets: Secrets,
    authz: Arc<Authz>,
}

impl SecretsService {
    /// Secrets Manager over `secrets`, authorized by `authz`.
    pub fn new(secrets: Secrets, authz: Arc<Authz>) -> SecretsService {
        SecretsService { secrets, authz }
    }
}

#[async_trait]
impl AwsService for SecretsService {
    fn protocol(&self) -> Protocol {
        Protocol::Json11 {
            target_prefix: "secretsmanager",
        }
    }

    fn signing_name(&self) -> &'static str {
        "secretsmanager"
    }

    fn event_source(&self) -> &'static str {
        "secretsmanager.amazonaws.com"
    }

    fn operation(&self, name: &str) -> Option<OpSpec> {
        operations().get(name)
    }

    fn validate(&self, op: &OpSpec, input: &Value) -> Result<(), AwsError> {
        model().validate(op.name, input)
    }

    async fn authorize(&self, _call: &Call, _op: &OpSpec, _input: &Value) -> Result<(), AwsError> {
        // In `run`: the resource is the secret's stored ARN, known once it is resolved.
        Ok(())
    }

    async fn run(&self, call: &Call, op: &OpSpec, input: Value) -> Result<Value, AwsError> {
        if !op.built {
            return Err(AwsError::new(
                "UnsupportedOperationException",
                format!(
                    "Kura does not support {} (not in Kura's Secrets Manager subset)",
                    op.name
                ),
            ));
        }
        let ctx = Ctx {
            account: &call.caller.account,
            iam: Some((&self.authz, &call.caller, call.source_ip)),
        };
        self.secrets.call(ctx, op.name, &input).await
    }

    fn map_error(&self, e: AwsError) -> AwsError {
        match e.kind {
            // Secrets Manager's name for a server fault.
            "ServerException" => AwsError {
                kind: "InternalServiceError",
                ..e
            },
            _ => e,
        }
    }
}
