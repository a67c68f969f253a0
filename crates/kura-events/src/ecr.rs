//! ECR's events in the shapes EventBridge delivers them (pure).
//!
//! Every event has `version "0"`, an `id`, `detail-type`, `source "aws.ecr"`, `account`,
//! `time` (RFC 3339, seconds, `Z`), `region`, `resources` and `detail`:
//!
//! * `ECR Image Action` (a push or a delete): `result`, `repository-name`, `image-digest`,
//!   `action-type` (`PUSH`/`DELETE`), `image-tag` (when the image had one); `resources` is
//!   empty, as ECR sends it.
//! * `ECR Image Scan`: `scan-status`, `repository-name`, `finding-severity-counts`,
//!   `image-digest`, `image-tags`; `resources` holds the repository ARN.
//! * `ECR Lifecycle Policy Action`: `result`, `repository-name`, `image-digest`,
//!   `action-type` (`EXPIRE`), `image-tags`; `resources` holds the repository ARN.
//!
//! * `ECR Pull Through Cache Action`: `sync-status` (`SUCCESS`/`FAILED`), `ecr-repository-prefix`,
//!   `repository-name`, `upstream-registry-url`, `image-tag`, `image-digest` (when known),
//!   `failure-code` and `failure-reason` (when it failed); `resources` holds the repository ARN.
//!
//! Pulls, tag-only changes and blob mounts produce no EventBridge event (ECR sends none).

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

/// What ECR reports about one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EcrDetail {
    /// An image pushed, under its first tag (none: pushed by digest).
    Push { digest: String, tag: Option<String> },
    /// An image deleted, with one of the tags it had.
    Delete { digest: String, tag: Option<String> },
    /// A scan finished.
    Scan {
        digest: String,
        tags: Vec<String>,
        status: String,
        counts: BTreeMap<String, u64>,
    },
    /// Lifecycle expiry deleted an image.
    Expire { digest: String, tags: Vec<String> },
    /// Replication of an image to one destination finished.
    Replication {
        digest: String,
        tags: Vec<String>,
        destination_region: String,
        destination_registry: String,
        /// `SUCCESS` or `FAILURE`.
        result: String,
        failure_code: Option<String>,
    },
    /// The pull-through cache synced (or failed to sync) an image from its upstream.
    PullThroughCache {
        digest: Option<String>,
        tag: Option<String>,
        ecr_repository_prefix: String,
        upstream_registry_url: String,
        /// `SUCCESS` or `FAILED`.
        sync_status: String,
        failure_code: Option<String>,
        failure_reason: Option<String>,
    },
}

/// One ECR event, ready to render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcrEvent {
    /// The event id (the source event's UUID).
    pub id: String,
    /// When it happened (ms since the epoch).
    pub time_ms: i64,
    /// The registry's account.
    pub account: String,
    /// The deployment's region.
    pub region: String,
    /// The repository.
    pub repository: String,
    /// What happened.
    pub detail: EcrDetail,
}

impl EcrDetail {
    /// The event's `detail-type`.
    pub fn detail_type(&self) -> &'static str {
        match self {
            EcrDetail::Push { .. } | EcrDetail::Delete { .. } => "ECR Image Action",
            EcrDetail::Scan { .. } => "ECR Image Scan",
            EcrDetail::Expire { .. } => "ECR Lifecycle Policy Action",
            EcrDetail::Replication { .. } => "ECR Replication Action",
            EcrDetail::PullThroughCache { .. } => "ECR Pull Through Cache Action",
        }
    }
}

/// `2019-11-16T01:54:34Z` for a time in ms.
pub fn rfc3339_seconds(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

impl EcrEvent {
    /// The repository's ARN.
    pub fn repository_arn(&self) -> String {
        format!(
            "arn:aws:ecr:{}:{}:repository/{}",
            self.region, self.account, self.repository
        )
    }

    /// The event as EventBridge delivers it.
    pub fn to_json(&self) -> Value {
        let repo = self.repository.as_str();
        let (detail, resources) = match &self.detail {
            EcrDetail::Push { digest, tag } | EcrDetail::Delete { digest, tag } => {
                let action = if matches!(self.detail, EcrDetail::Push { .. }) {
                    "PUSH"
                } else {
                    "DELETE"
                };
                let mut d = json!({
                    "result": "SUCCESS",
                    "repository-name": repo,
                    "image-digest": digest,
                    "action-type": action,
                });
                if let Some(tag) = tag {
                    d["image-tag"] = json!(tag);
                }
                (d, json!([]))
            }
            EcrDetail::Scan {
                digest,
                tags,
                status,
                counts,
            } => (
                json!({
                    "scan-status": status,
                    "repository-name": repo,
                    "finding-severity-counts": counts,
                    "image-digest": digest,
                    "image-tags": tags,
                }),
                json!([self.repository_arn()]),
            ),
            EcrDetail::Expire { digest, tags } => (
                json!({
                    "result": "SUCCESS",
                    "repository-name": repo,
                    "image-digest": digest,
                    "action-type": "EXPIRE",
                    "image-tags": tags,
                }),
                json!([self.repository_arn()]),
            ),
            EcrDetail::Replication {
                digest,
                tags,
                destination_region,
                destination_registry,
                result,
                failure_code,
            } => {
                let mut d = json!({
                    "result": result,
                    "repository-name": repo,
                    "image-digest": digest,
                    "image-tags": tags,
                    "action-type": "REPLICATE",
                    "destination-region": destination_region,
                    "destination-registry-id": destination_registry,
                });
                if let Some(code) = failure_code {
                    d["failure-code"] = json!(code);
                }
                (d, json!([self.repository_arn()]))
            }
            EcrDetail::PullThroughCache {
                digest,
                tag,
                ecr_repository_prefix,
                upstream_registry_url,
                sync_status,
                failure_code,
                failure_reason,
            } => {
                let mut d = json!({
                    "rule-version": "1",
                    "sync-status": sync_status,
                    "ecr-repository-prefix": ecr_repository_prefix,
                    "repository-name": repo,
                    "upstream-registry-url": upstream_registry_url,
                });
                if let Some(tag) = tag {
                    d["image-tag"] = json!(tag);
                }
                if let Some(digest) = digest {
                    d["image-digest"] = json!(digest);
                }
                if let Some(code) = failure_code {
                    d["failure-code"] = json!(code);
                }
                if let Some(reason) = failure_reason {
                    d["failure-reason"] = json!(reason);
                }
                (d, json!([self.repository_arn()]))
            }
        };
        json!({
            "version": "0",
            "id": self.id,
            "detail-type": self.detail.detail_type(),
            "source": "aws.ecr",
            "account": self.account,
            "time": rfc3339_seconds(self.time_ms),
            "region": self.region,
            "resources": resources,
            "detail": detail,
        })
    }

    /// The event as a CloudEvents 1.0 JSON envelope (webhook targets): the EventBridge
    /// event is the `data`.
    pub fn to_cloudevent(&self) -> Value {
        cloudevent(&self.to_json())
    }
}

/// Wrap an EventBridge-shaped event in a CloudEvents 1.0 JSON envelope.
pub fn cloudevent(event: &Value) -> Value {
    let subject = event["detail"]["repository-name"].clone();
    json!({
        "specversion": "1.0",
        "id": event["id"],
        "source": event["source"],
        "type": event["detail-type"],
        "time": event["time"],
        "subject": subject,
        "datacontenttype": "application/json",
        "data": event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_rfc3339_seconds_utc() {
        assert_eq!(rfc3339_seconds(1_573_869_274_123), "2019-11-16T01:54:34Z");
    }
}
