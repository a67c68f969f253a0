//! Amazon ECR Public on Kura (`X-Amz-Target: SpencerFrontendService.*`,
//! signing name `ecr-public`).

use serde_json::Value;

use crate::error::{EcrError, EcrResult};
use crate::Ecr;

/// The JSON target prefix of ECR Public.
pub const TARGET_PREFIX: &str = "SpencerFrontendService";

/// Answer one ECR Public call.
pub async fn handle(_ecr: &Ecr, _parts: &http::request::Parts, target: &str, _body: &[u8]) -> EcrResult<Value> {
    Err(EcrError::unknown_operation(target))
}
