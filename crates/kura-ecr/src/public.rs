//! ECR Public ([`kura_public`]) as the data-plane guard asks it: may a
//! request without credentials read this repository?

use kura_registry::DataRequest;

pub use kura_public::{anonymous, Public, PublicService, TARGET_PREFIX};

use crate::Ecr;

/// Whether a request without credentials may go through (see
/// [`kura_public::anonymous_read_allowed`]).
pub async fn anonymous_read_allowed(ecr: &Ecr, account: &str, data: &DataRequest) -> bool {
    kura_public::anonymous_read_allowed(ecr.control.as_ref(), account, data).await
}
