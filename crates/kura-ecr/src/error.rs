//! ECR API errors: the one error type of every AWS API ([`kura_aws::AwsError`]),
//! under the names the ECR code has always used.

pub use kura_aws::error::{AwsError as EcrError, AwsResult as EcrResult};
