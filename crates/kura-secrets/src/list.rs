//! `ListSecrets`: the caller's secrets (those scheduled for deletion only with
//! `IncludePlannedDeletion`), filtered, sorted and paged.
//!
//! Filters as Secrets Manager documents them: `name`, `tag-key`, `tag-value` match a prefix,
//! case-sensitive; `description` a prefix, not case-sensitive; `all` matches any word of the
//! value against the start of the name, description, tag keys or values, not case-sensitive;
//! a value starting with `!` negates. Values of one filter are alternatives; filters all
//! apply. `primary-region` and `owning-service` match nothing here (no secret has them), and
//! negated, everything. The `NextToken` is opaque: the sort and the offset of the next page.

use kura_aws::{AwsError, AwsResult};
use kura_store::now_millis;
use kura_store::secrets::SecretRow;
use serde_json::{json, Value};

use crate::ops::describe;
use crate::{Ctx, Secrets};

/// Most entries of one page (the model's bound).
const PAGE_MAX: usize = 100;

pub(crate) fn tags(secret: &SecretRow) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(&secret.tags).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    let f = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    (f("Key"), f("Value"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn prefix_ci(s: &str, p: &str) -> bool {
    s.to_lowercase().starts_with(&p.to_lowercase())
}

/// Whether `secret` matches one filter value (already without its `!`).
fn matches(key: &str, value: &str, secret: &SecretRow) -> bool {
    let desc = secret.description.as_deref().unwrap_or("");
    let t = tags(secret);
    match key {
        "name" => secret.name.starts_with(value),
        "description" => prefix_ci(desc, value),
        "tag-key" => t.iter().any(|(k, _)| k.starts_with(value)),
        "tag-value" => t.iter().any(|(_, v)| v.starts_with(value)),
        "all" => value.split_whitespace().any(|w| {
            prefix_ci(&secret.name, w)
                || desc.split_whitespace().any(|d| prefix_ci(d, w))
                || t.iter().any(|(k, v)| prefix_ci(k, w) || prefix_ci(v, w))
        }),
        _ => false,
    }
}

/// Whether `secret` passes every filter.
fn passes(filters: &[(String, Vec<String>)], secret: &SecretRow) -> bool {
    filters.iter().all(|(key, values)| {
        values.iter().any(|v| match v.strip_prefix('!') {
            Some(neg) => !matches(key, neg, secret),
            None => matches(key, v, secret),
        })
    })
}

fn filters_of(input: &Value) -> AwsResult<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    for f in input.get("Filters").and_then(Value::as_array).into_iter().flatten() {
        let key = f
            .get("Key")
            .and_then(Value::as_str)
            .ok_or_else(|| AwsError::invalid_parameter("Invalid filter: every filter needs a Key."))?;
        let values: Vec<String> = f
            .get("Values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        if values.is_empty() {
            return Err(AwsError::invalid_parameter(format!(
                "Invalid filter values for key {key}: at least one value is required."
            )));
        }
        out.push((key.to_string(), values));
    }
    Ok(out)
}

fn bad_token() -> AwsError {
    AwsError::new("InvalidNextTokenException", "The NextToken value is invalid.")
}

impl Secrets {
    pub(crate) async fn list_secrets(&self, ctx: Ctx<'_>, input: &Value) -> AwsResult<Value> {
        ctx.allow("secretsmanager:ListSecrets", "*", ctx.account, &[]).await?;
        let filters = filters_of(input)?;
        let include_deleted = input
            .get("IncludePlannedDeletion")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let sort_by = input.get("SortBy").and_then(Value::as_str).unwrap_or("created-date");
        let order = input.get("SortOrder").and_then(Value::as_str).unwrap_or("asc");
        let page = input
            .get("MaxResults")
            .and_then(Value::as_u64)
            .map_or(PAGE_MAX, |n| (n as usize).clamp(1, PAGE_MAX));
        let sort = format!("{sort_by}|{order}|");
        let offset = match input.get("NextToken").and_then(Value::as_str) {
            None => 0,
            Some(t) => {
                let text = hex::decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(bad_token)?;
                text.strip_prefix(&sort)
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(bad_token)?
            }
        };
        let mut all: Vec<SecretRow> = self
            .store
            .secrets_of(ctx.account, now_millis())
            .await?
            .into_iter()
            .filter(|s| include_deleted || s.deleted_at.is_none())
            .filter(|s| passes(&filters, s))
            .collect();
        // Rows come in name order, so equal keys stay in name order.
        match sort_by {
            "name" => {}
            "last-changed-date" => all.sort_by_key(|s| s.changed_at),
            "last-accessed-date" => all.sort_by_key(|s| s.accessed_at.unwrap_or(0)),
            _ => all.sort_by_key(|s| s.created_at),
        }
        if order == "desc" {
            all.reverse();
        }
        let mut list = Vec::new();
        for secret in all.iter().skip(offset).take(page) {
            let versions = self.store.secret_versions(&secret.arn).await?;
            list.push(describe(secret, &versions, "SecretVersionsToStages"));
        }
        let mut out = json!({"SecretList": list});
        if offset + page < all.len() {
            out["NextToken"] = json!(hex::encode(format!("{sort}{}", offset + page)));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, desc: &str, tags: &str) -> SecretRow {
        SecretRow {
            account: "a".into(),
            name: name.into(),
            arn: format!("arn:{name}"),
            description: Some(desc.into()),
            kms_key_id: None,
            tags: tags.into(),
            created_at: 0,
            changed_at: 0,
            accessed_at: None,
            deleted_at: None,
            purge_at: None,
            revision: 0,
        }
    }

    #[test]
    fn filters() {
        let s = secret(
            "ecr-pullthroughcache/hub",
            "Docker Hub token",
            r#"[{"Key":"team","Value":"platform"}]"#,
        );
        let f = |k: &str, v: &[&str]| vec![(k.to_string(), v.iter().map(|x| x.to_string()).collect())];
        assert!(passes(&f("name", &["ecr-pull"]), &s));
        assert!(!passes(&f("name", &["ECR-pull"]), &s));
        assert!(!passes(&f("name", &["!ecr-"]), &s));
        assert!(passes(&f("name", &["x", "ecr"]), &s));
        assert!(passes(&f("description", &["docker hub"]), &s));
        assert!(passes(&f("tag-key", &["te"]), &s));
        assert!(passes(&f("tag-value", &["plat"]), &s));
        assert!(!passes(&f("tag-value", &["Plat"]), &s));
        assert!(passes(&f("all", &["TOKEN"]), &s));
        assert!(!passes(&f("all", &["nothing"]), &s));
        assert!(!passes(&f("primary-region", &["us"]), &s));
        assert!(passes(&f("primary-region", &["!us"]), &s));
        let mut both = f("name", &["ecr"]);
        both.extend(f("tag-key", &["nope"]));
        assert!(!passes(&both, &s));
    }
}
