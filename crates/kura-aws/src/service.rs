//! The seam every AWS API plugs into: [`AwsService`], the description of
//! its operations ([`OpSpec`]), and the context of one call ([`Call`]).

use std::net::IpAddr;

use async_trait::async_trait;
use serde_json::Value;

use crate::caller::Caller;
use crate::error::AwsError;

/// The wire protocol of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// AWS JSON 1.1: `POST /` with `X-Amz-Target: <target_prefix>.<Operation>`
    /// and a JSON object body; answers are JSON, errors `{"__type","message"}`.
    Json11 {
        /// e.g. `AmazonEC2ContainerRegistry_V20150921`, `AWSEvents`,
        /// `com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101`.
        target_prefix: &'static str,
    },
    /// AWS Query: a form body with `Action=<Operation>`; answers are
    /// `<ActionResponse xmlns=namespace>` XML, errors `<ErrorResponse>`.
    Query {
        /// The XML namespace of answers, e.g. `https://iam.amazonaws.com/doc/2010-05-08/`.
        namespace: &'static str,
    },
}

/// What an operation's IAM action is authorized against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A repository (its ARN; the repository policy applies).
    Repository,
    /// The registry (account) as a whole: the resource is `*`, guarded by the
    /// registry policy.
    Registry,
    /// No resource (`*`), no resource policy.
    None,
    /// The operation decides (e.g. a resource ARN in its input, or entities
    /// the handler resolves).
    Other,
}

/// One operation of a service, as the pipeline and the audit trail see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpSpec {
    /// The operation name (`PutImage`): the `X-Amz-Target` suffix or the
    /// Query `Action`, and CloudTrail's `eventName`.
    pub name: &'static str,
    /// The IAM action that authorizes it (`ecr:PutImage`).
    pub action: &'static str,
    /// What the action is authorized against.
    pub scope: Scope,
    /// Whether it only reads (CloudTrail's `readOnly`).
    pub read_only: bool,
    /// Whether Kura implements it; `false` answers the service's "not built
    /// yet" reply.
    pub built: bool,
}

/// One authenticated call, as the service's [`AwsService::authorize`] and
/// [`AwsService::run`] see it.
#[derive(Clone, Debug)]
pub struct Call {
    /// Who is calling.
    pub caller: Caller,
    /// The operation's name.
    pub operation: &'static str,
    /// This call's request id (`x-amzn-RequestId`).
    pub request_id: String,
    /// The `Host` the request was sent to (for URIs handed back).
    pub host: String,
    /// The client's address, if known (`aws:SourceIp`).
    pub source_ip: Option<IpAddr>,
    /// `https` or `http`: the scheme of URLs handed back to this client.
    pub scheme: &'static str,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// This deployment's region.
    pub region: String,
}

/// An AWS API served on `POST /`. A new API is one implementation of this
/// trait, registered with [`crate::Api::register`]; the pipeline does the
/// rest: it picks the service (by `X-Amz-Target` prefix, or by Query
/// `Action`), authenticates the SigV4 signature for
/// [`AwsService::signing_name`], reads the body within the byte budget,
/// parses it (JSON object, or the form's fields as a JSON object of
/// strings), validates it, authorizes, runs, renders the answer or the
/// error in the protocol's format, and hands a [`crate::CallRecord`] to the
/// recorder.
#[async_trait]
pub trait AwsService: Send + Sync + 'static {
    /// The protocol (and so how calls are routed to this service).
    fn protocol(&self) -> Protocol;
    /// The SigV4 signing name (`ecr`, `ecr-public`, `iam`, `sts`, `events`).
    fn signing_name(&self) -> &'static str;
    /// Whether the service is global (requests may be signed for any
    /// region, as IAM, STS and ECR Public); regional services must be signed
    /// for this deployment's region.
    fn global(&self) -> bool {
        false
    }
    /// CloudTrail's `eventSource` (`ecr.amazonaws.com`).
    fn event_source(&self) -> &'static str;
    /// The operation called `name`, if the service has it.
    fn operation(&self, name: &str) -> Option<OpSpec>;
    /// The error for an operation the service does not have (`name` is the
    /// `X-Amz-Target` as sent, `(no X-Amz-Target header)`, or the Query
    /// `Action`, empty when missing).
    fn unknown_operation(&self, name: &str) -> AwsError {
        AwsError::unknown_operation(name)
    }
    /// Check the input against the operation's model (shapes, required
    /// members, ranges, patterns) before anything else sees it.
    fn validate(&self, _op: &OpSpec, _input: &Value) -> Result<(), AwsError> {
        Ok(())
    }
    /// Authorize the call (the operation's IAM action on its resource).
    async fn authorize(&self, call: &Call, op: &OpSpec, input: &Value) -> Result<(), AwsError>;
    /// Do it. JSON services answer the output object; Query services the
    /// inner XML of `<ActionResult>` as a JSON string (or `null` for an
    /// answer with only `ResponseMetadata`).
    async fn run(&self, call: &Call, op: &OpSpec, input: Value) -> Result<Value, AwsError>;
    /// Translate an error (of any stage: authentication, body, the
    /// operation) into the service's own codes before it is rendered and
    /// recorded (IAM's `InvalidClientTokenId` for `UnrecognizedClientException`, …).
    fn map_error(&self, e: AwsError) -> AwsError {
        e
    }
}

/// Whether an operation only reads, by AWS's naming convention (what
/// CloudTrail marks `readOnly`): `Describe*`, `Get*`, `List*`, `BatchGet*`,
/// `BatchCheck*`, `Lookup*`, `Test*`, `Validate*`.
pub fn read_only_by_name(name: &str) -> bool {
    [
        "Describe",
        "Get",
        "List",
        "BatchGet",
        "BatchCheck",
        "Lookup",
        "Test",
        "Validate",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// A service's operations by name, for services whose table is built at
/// start-up from a list (the action strings are made once and live for the
/// process).
#[derive(Debug, Default)]
pub struct OpTable {
    ops: std::collections::HashMap<&'static str, OpSpec>,
}

impl OpTable {
    /// A table of `(name, scope, built)` for the IAM service prefix
    /// `service` (`iam`: actions are `iam:<name>`); `read_only` by
    /// [`read_only_by_name`].
    pub fn build(service: &str, entries: impl IntoIterator<Item = (&'static str, Scope, bool)>) -> Self {
        let ops = entries
            .into_iter()
            .map(|(name, scope, built)| {
                let action: &'static str = Box::leak(format!("{service}:{name}").into_boxed_str());
                let spec = OpSpec {
                    name,
                    action,
                    scope,
                    read_only: read_only_by_name(name),
                    built,
                };
                (name, spec)
            })
            .collect();
        OpTable { ops }
    }

    /// The operation called `name`.
    pub fn get(&self, name: &str) -> Option<OpSpec> {
        self.ops.get(name).copied()
    }

    /// Every operation.
    pub fn iter(&self) -> impl Iterator<Item = &OpSpec> {
        self.ops.values()
    }
}
