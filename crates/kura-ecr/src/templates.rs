//! Repository creation templates: how a push may create a repository.
//!
//! ECR creates a repository on push only when a template whose `appliedFor`
//! includes `CREATE_ON_PUSH` covers the name: the longest matching prefix
//! wins, `ROOT` covers every name. The new repository takes the template's
//! tag mutability (with exclusion filters), encryption and resource tags.

use std::sync::Arc;

use async_trait::async_trait;
use kura_registry::service::{Purpose, RepoProvisioner};
use kura_store::meta::{RepoRow, RepoSettings};
use kura_store::{ControlStore, MetaStore, StoreError};
use serde_json::Value;

/// Whether a template prefix covers a repository name.
pub fn prefix_covers(prefix: &str, name: &str) -> bool {
    if prefix == "ROOT" {
        return true;
    }
    let p = prefix.trim_end_matches('/');
    name == p || name.strip_prefix(p).is_some_and(|rest| rest.starts_with('/'))
}

/// Repository settings taken from a template (or a CreateRepository input).
pub fn settings_from(v: &Value) -> RepoSettings {
    let mut s = RepoSettings::default();
    if let Some(m) = v.get("imageTagMutability").and_then(Value::as_str) {
        s.image_tag_mutability = m.to_string();
    }
    if let Some(f) = v.get("imageTagMutabilityExclusionFilters").and_then(Value::as_array) {
        s.mutability_exclusion_filters = f
            .iter()
            .filter_map(|x| x.get("filter").and_then(Value::as_str).map(String::from))
            .collect();
    }
    if let Some(scan) = v
        .pointer("/imageScanningConfiguration/scanOnPush")
        .and_then(Value::as_bool)
    {
        s.scan_on_push = scan;
    }
    if let Some(enc) = v.get("encryptionConfiguration") {
        if let Some(t) = enc.get("encryptionType").and_then(Value::as_str) {
            s.encryption_type = t.to_string();
        }
        s.kms_key = enc.get("kmsKey").and_then(Value::as_str).map(String::from);
    }
    s
}

/// The ARN of the AWS-managed key (`aws/ecr`) of `account` in `region`, which
/// ECR names as a repository's `kmsKey` when `KMS` or `KMS_DSSE` encryption
/// is asked for without a key. Kura has no KMS: the key id is a UUID derived
/// from the region and account, so it is the same on every node, for every
/// repository of the account, forever.
pub fn aws_managed_kms_key(region: &str, account: &str) -> String {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(format!("kura aws/ecr managed key\n{region}\n{account}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    let id = uuid::Builder::from_random_bytes(b).into_uuid();
    format!("arn:aws:kms:{region}:{account}:key/{id}")
}

/// `settings` with ECR's default key filled in for KMS encryption without one.
pub fn with_default_kms_key(mut settings: RepoSettings, region: &str, account: &str) -> RepoSettings {
    if settings.encryption_type.starts_with("KMS") && settings.kms_key.is_none() {
        settings.kms_key = Some(aws_managed_kms_key(region, account));
    }
    settings
}

pub use kura_authz::repository_arn;
pub use kura_aws::json::tags_from;

/// Creates repositories on push when a `CREATE_ON_PUSH` template allows it.
pub struct TemplateProvisioner {
    /// Metadata store.
    pub meta: Arc<dyn MetaStore>,
    /// Control store (templates, tags).
    pub control: Arc<dyn ControlStore>,
    /// Region, for ARNs.
    pub region: String,
}

#[async_trait]
impl RepoProvisioner for TemplateProvisioner {
    async fn provision(&self, account: &str, name: &str) -> Result<Option<RepoRow>, StoreError> {
        self.provision_for(account, name, Purpose::CreateOnPush).await
    }

    /// The longest-prefix template whose `appliedFor` names `purpose`.
    async fn provision_for(&self, account: &str, name: &str, purpose: Purpose) -> Result<Option<RepoRow>, StoreError> {
        let applied_for = purpose.applied_for();
        let mut best: Option<(usize, Value)> = None;
        let mut after: Option<String> = None;
        loop {
            let page = self.control.template_list(account, after.as_deref(), 500).await?;
            for t in &page {
                let body: Value = serde_json::from_str(&t.body).unwrap_or(Value::Null);
                let on_push = body
                    .get("appliedFor")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|x| x == applied_for));
                if on_push && prefix_covers(&t.prefix, name) {
                    let weight = if t.prefix == "ROOT" { 0 } else { t.prefix.len() + 1 };
                    if best.as_ref().is_none_or(|(w, _)| weight > *w) {
                        best = Some((weight, body));
                    }
                }
            }
            match page.last() {
                Some(last) if page.len() == 500 => after = Some(last.prefix.clone()),
                _ => break,
            }
        }
        let Some((_, template)) = best else { return Ok(None) };
        let settings = with_default_kms_key(settings_from(&template), &self.region, account);
        let created = self.meta.repo_create(account, name, &settings).await?;
        let row = match created {
            Some(r) => {
                let tags = tags_from(template.get("resourceTags"));
                if !tags.is_empty() {
                    self.control
                        .resource_tags_put(&repository_arn(&self.region, account, name), &tags)
                        .await?;
                }
                tracing::info!(
                    account,
                    repository = name,
                    applied_for,
                    "created repository from a creation template"
                );
                r
            }
            // A concurrent push created it first.
            None => self
                .meta
                .repo_get(account, name)
                .await?
                .ok_or_else(|| StoreError::Corrupt("repository vanished".into()))?,
        };
        Ok(Some(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(prefix_covers("ROOT", "anything/at/all"));
        assert!(prefix_covers("prod", "prod/app"));
        assert!(prefix_covers("prod/", "prod/app"));
        assert!(prefix_covers("prod", "prod"));
        assert!(!prefix_covers("prod", "production/app"));
        assert!(!prefix_covers("prod/app", "prod"));
    }

    #[test]
    fn settings_and_tags() {
        let v = serde_json::json!({
            "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
            "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "latest*"}],
            "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": "arn:aws:kms:us-east-1:123456789012:key/abc"},
            "resourceTags": [{"Key": "team", "Value": "a"}]
        });
        let s = settings_from(&v);
        assert!(s.tag_is_immutable("v1"));
        assert!(!s.tag_is_immutable("latest-dev"));
        assert_eq!(s.encryption_type, "KMS");
        // A given key stays; without one, the account's AWS-managed key.
        assert_eq!(
            with_default_kms_key(s.clone(), "us-east-1", "123456789012")
                .kms_key
                .as_deref(),
            Some("arn:aws:kms:us-east-1:123456789012:key/abc")
        );
        let kms = settings_from(&serde_json::json!({"encryptionConfiguration": {"encryptionType": "KMS_DSSE"}}));
        let a = with_default_kms_key(kms.clone(), "us-east-1", "123456789012")
            .kms_key
            .unwrap();
        assert_eq!(a, aws_managed_kms_key("us-east-1", "123456789012"));
        let id = a.strip_prefix("arn:aws:kms:us-east-1:123456789012:key/").unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{a}");
        assert_ne!(a, aws_managed_kms_key("us-east-1", "210987654321"));
        let aes = settings_from(&serde_json::json!({}));
        assert_eq!(with_default_kms_key(aes, "us-east-1", "123456789012").kms_key, None);
        assert_eq!(
            tags_from(v.get("resourceTags")),
            vec![("team".to_string(), "a".to_string())]
        );
    }
}
