//! `TagResource`, `UntagResource` and `ListSecretVersionIds`.

use kura_aws::{AwsError, AwsResult};
use kura_store::now_millis;
use serde_json::{json, Value};

use crate::list::tags;
use crate::ops::{epoch, invalid, labels, plain, tags_json, tags_of};
use crate::{marked_for_deletion, Ctx, Secrets, MAX_TAGS};

/// Most versions of one `ListSecretVersionIds` page.
const PAGE_MAX: usize = 100;

impl Secrets {
    pub(crate) async fn tag_resource(&self, ctx: Ctx<'_>, input: &Value) -> AwsResult<Value> {
        let new = tags_of(input)?;
        let secret = self
            .target_tagged(ctx, input, "secretsmanager:TagResource", &new)
            .await?;
        if secret.deleted_at.is_some() {
            return Err(marked_for_deletion());
        }
        self.commit_with(secret, |secret, _| {
            let mut all = tags(secret);
            for (k, v) in &new {
                match all.iter_mut().find(|(key, _)| key == k) {
                    Some(t) => t.1 = v.clone(),
                    None => all.push((k.clone(), v.clone())),
                }
            }
            if all.len() > MAX_TAGS {
                return Err(invalid(format!("A secret can have at most {MAX_TAGS} tags.")));
            }
            let mut row = secret.clone();
            row.tags = tags_json(&all);
            row.changed_at = now_millis();
            Ok((Some(plain(row)), ()))
        })
        .await?;
        Ok(json!({}))
    }

    pub(crate) async fn untag_resource(&self, ctx: Ctx<'_>, input: &Value) -> AwsResult<Value> {
        let keys: Vec<String> = input
            .get("TagKeys")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        let secret = self.target(ctx, input, "secretsmanager:UntagResource").await?;
        if secret.deleted_at.is_some() {
            return Err(marked_for_deletion());
        }
        self.commit_with(secret, |secret, _| {
            let mut all = tags(secret);
            let before = all.len();
            all.retain(|(k, _)| !keys.contains(k));
            if all.len() == before {
                return Ok((None, ()));
            }
            let mut row = secret.clone();
            row.tags = tags_json(&all);
            row.changed_at = now_millis();
            Ok((Some(plain(row)), ()))
        })
        .await?;
        Ok(json!({}))
    }

    pub(crate) async fn list_secret_version_ids(&self, ctx: Ctx<'_>, input: &Value) -> AwsResult<Value> {
        let secret = self.target(ctx, input, "secretsmanager:ListSecretVersionIds").await?;
        let deprecated = input.get("IncludeDeprecated").and_then(Value::as_bool).unwrap_or(false);
        let page = input
            .get("MaxResults")
            .and_then(Value::as_u64)
            .map_or(PAGE_MAX, |n| (n as usize).clamp(1, PAGE_MAX));
        let bad = || AwsError::new("InvalidNextTokenException", "The NextToken value is invalid.");
        let offset = match input.get("NextToken").and_then(Value::as_str) {
            None => 0,
            Some(t) => hex::decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.strip_prefix("versions|").and_then(|n| n.parse::<usize>().ok()))
                .ok_or_else(bad)?,
        };
        let mut versions = self.store.secret_versions(&secret.arn).await?;
        versions.retain(|v| deprecated || !labels(v).is_empty());
        // Newest first.
        versions.reverse();
        let list: Vec<Value> = versions
            .iter()
            .skip(offset)
            .take(page)
            .map(|v| json!({"VersionId": v.version_id, "VersionStages": labels(v), "CreatedDate": epoch(v.created_at)}))
            .collect();
        let mut out = json!({"ARN": secret.arn, "Name": secret.name, "Versions": list});
        if offset + page < versions.len() {
            out["NextToken"] = json!(hex::encode(format!("versions|{}", offset + page)));
        }
        Ok(out)
    }
}
