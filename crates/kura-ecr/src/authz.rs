//! Authorization ([`kura_authz`]) as the ECR code calls it: the decisions
//! of the service's [`Authz`].

use std::net::IpAddr;

use kura_iam::{Evaluation, Principal};
use kura_registry::DataRequest;

pub use kura_authz::{
    data_action, default_version_document, registry_arn, repository_arn, Access, Authz, DataCatalogFilter, Decider,
    Denial,
};

use crate::error::EcrResult;
use crate::Ecr;
use kura_aws::Caller;

impl Ecr {
    /// The authorization of this service.
    pub fn authz(&self) -> &std::sync::Arc<Authz> {
        &self.authz
    }

    /// See [`Authz::principal_of`].
    pub async fn principal_of(&self, caller: &Caller) -> EcrResult<Principal> {
        self.authz.principal_of(caller).await
    }

    /// See [`Authz::principal_by_id`].
    pub async fn principal_by_id(&self, account: &str, principal_id: &str) -> EcrResult<Principal> {
        self.authz.principal_by_id(account, principal_id).await
    }

    /// See [`Authz::caller_decider`].
    pub async fn caller_decider(&self, caller: &Caller, source_ip: Option<IpAddr>) -> EcrResult<Decider<'_>> {
        self.authz.caller_decider(caller, source_ip).await
    }

    /// See [`Authz::decider`].
    pub async fn decider(
        &self,
        account: &str,
        principal_id: &str,
        source_ip: Option<IpAddr>,
    ) -> EcrResult<Decider<'_>> {
        self.authz.decider(account, principal_id, source_ip).await
    }

    /// See [`Authz::managed_policy_document`].
    pub async fn managed_policy_document(&self, arn: &str) -> EcrResult<Option<String>> {
        self.authz.managed_policy_document(arn).await
    }

    /// See [`Authz::evaluate`].
    pub async fn evaluate(
        &self,
        principal: &Principal,
        access: &Access,
        source_ip: Option<IpAddr>,
    ) -> EcrResult<Evaluation> {
        self.authz.evaluate(principal, access, source_ip).await
    }

    /// See [`Authz::authorize_data`].
    pub async fn authorize_data(
        &self,
        caller: &Caller,
        account: &str,
        data: &mut DataRequest,
        source_ip: Option<IpAddr>,
    ) -> EcrResult<Result<(), Denial>> {
        self.authz.authorize_data(caller, account, data, source_ip).await
    }

    /// See [`Authz::authorize`].
    pub async fn authorize(&self, caller: &Caller, access: &Access, source_ip: Option<IpAddr>) -> EcrResult<()> {
        self.authz.authorize(caller, access, source_ip).await
    }
}
