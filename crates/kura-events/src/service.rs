//! EventBridge as one [`AwsService`] of the AWS pipeline: JSON 1.1 with
//! `X-Amz-Target: AWSEvents.<Op>`, SigV4 service `events`, inputs validated against the shapes
//! derived from botocore's `events` model, each call authorized as `events:<Op>` on its
//! resource (see [`Events::resource`]) in the caller's account, then run.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use http::StatusCode;
use kura_authz::{Access, Authz};
use kura_aws::model::Model;
use kura_aws::service::OpTable;
use kura_aws::{AwsError, AwsService, Call, OpSpec, Protocol, Scope};
use serde_json::Value;

use crate::api::{Events, EventsError, OPERATIONS};

/// The EventBridge model (shapes from botocore).
pub fn model() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| Model::from_json(include_str!("../model/events-shapes.json")).expect("the events model loads"))
}

/// Every operation of the model; those outside Kura's subset are not built.
pub fn operations() -> &'static OpTable {
    static T: OnceLock<OpTable> = OnceLock::new();
    T.get_or_init(|| {
        OpTable::build(
            "events",
            model().operations.keys().map(|name| {
                let name: &'static str = name.as_str();
                (name, Scope::Other, OPERATIONS.contains(&name))
            }),
        )
    })
}

/// The EventBridge API on the pipeline.
pub struct EventsService {
    events: Events,
    authz: Arc<Authz>,
}

impl EventsService {
    /// EventBridge over `events`, authorized by `authz`.
    pub fn new(events: Events, authz: Arc<Authz>) -> EventsService {
        EventsService { events, authz }
    }
}

fn to_aws(e: EventsError) -> AwsError {
    AwsError::new(e.kind, e.message).with_status(StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST))
}

#[async_trait]
impl AwsService for EventsService {
    fn protocol(&self) -> Protocol {
        Protocol::Json11 {
            target_prefix: "AWSEvents",
        }
    }

    fn signing_name(&self) -> &'static str {
        "events"
    }

    fn event_source(&self) -> &'static str {
        "events.amazonaws.com"
    }

    fn operation(&self, name: &str) -> Option<OpSpec> {
        operations().get(name)
    }

    fn validate(&self, op: &OpSpec, input: &Value) -> Result<(), AwsError> {
        model().validate(op.name, input)
    }

    async fn authorize(&self, call: &Call, op: &OpSpec, input: &Value) -> Result<(), AwsError> {
        let account = &call.caller.account;
        let arn = self.events.resource(op.name, account, input);
        self.authz
            .authorize(
                &call.caller,
                &Access::resource(op.action, &arn, account),
                call.source_ip,
            )
            .await
    }

    async fn run(&self, call: &Call, op: &OpSpec, input: Value) -> Result<Value, AwsError> {
        self.events
            .call(op.name, &call.caller.account, &input)
            .await
            .map_err(to_aws)
    }
}
