//! Repository creation templates and account settings.

use super::*;

impl Ecr {
    pub(super) async fn put_template(&self, ctx: &Ctx, v: &Value, create: bool) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let prefix = s(v, "prefix").unwrap_or_default();
        check_mutability(v)?;
        let tags = tags_from(v.get("resourceTags"));
        check_tags(&tags)?;
        if let Some(p) = s(v, "repositoryPolicy") {
            serde_json::from_str::<Value>(p).map_err(|_| EcrError::invalid_parameter("Invalid parameter at 'repositoryPolicy' failed to satisfy constraint: 'Invalid repository policy provided'"))?;
        }
        if let Some(p) = s(v, "lifecyclePolicy") {
            serde_json::from_str::<Value>(p).map_err(|_| EcrError::invalid_parameter("Invalid parameter at 'lifecyclePolicy' failed to satisfy constraint: 'Lifecycle policy validation failure'"))?;
        }
        let keys = [
            "description",
            "encryptionConfiguration",
            "resourceTags",
            "imageTagMutability",
            "imageTagMutabilityExclusionFilters",
            "repositoryPolicy",
            "lifecyclePolicy",
            "appliedFor",
            "customRoleArn",
        ];
        let mut body = if create {
            json!({"imageTagMutability": "MUTABLE", "encryptionConfiguration": {"encryptionType": "AES256"}, "resourceTags": []})
        } else {
            let row = self
                .control
                .template_get(&account, prefix)
                .await?
                .ok_or_else(|| template_not_found(prefix, &account))?;
            serde_json::from_str(&row.body).unwrap_or_else(|_| json!({}))
        };
        for k in keys {
            if let Some(x) = v.get(k) {
                body[k] = x.clone();
            }
        }
        let text = serde_json::to_string(&body).map_err(|_| EcrError::server())?;
        if !self.control.template_put(&account, prefix, &text, create).await? {
            return Err(if create {
                EcrError::new("TemplateAlreadyExistsException", format!("The repository creation template with prefix '{prefix}' already exists in the registry with id '{account}'"))
            } else {
                template_not_found(prefix, &account)
            });
        }
        let row = self
            .control
            .template_get(&account, prefix)
            .await?
            .ok_or_else(EcrError::server)?;
        Ok(json!({"registryId": account, "repositoryCreationTemplate": self.template_json(&row)}))
    }

    pub(super) async fn describe_templates(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        if let Some(prefixes) = v.get("prefixes").and_then(Value::as_array) {
            let mut out = Vec::new();
            for p in prefixes.iter().filter_map(Value::as_str) {
                if let Some(row) = self.control.template_get(&account, p).await? {
                    out.push(self.template_json(&row));
                }
            }
            return Ok(json!({"registryId": account, "repositoryCreationTemplates": out}));
        }
        let limit = max_results(v, 100);
        let after = decode_token(v)?;
        let mut rows = self
            .control
            .template_list(&account, after.as_deref(), limit + 1)
            .await?;
        let next = page(&mut rows, limit, |x| &x.prefix);
        let mut out = json!({"registryId": account, "repositoryCreationTemplates": rows.iter().map(|r| self.template_json(r)).collect::<Vec<_>>()});
        with_next(&mut out, next);
        Ok(out)
    }

    pub(super) async fn delete_template(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let prefix = s(v, "prefix").unwrap_or_default();
        let row = self
            .control
            .template_delete(&account, prefix)
            .await?
            .ok_or_else(|| template_not_found(prefix, &account))?;
        Ok(json!({"registryId": account, "repositoryCreationTemplate": self.template_json(&row)}))
    }

    pub(super) async fn account_setting(&self, ctx: &Ctx, v: &Value, put: bool) -> EcrResult<Value> {
        let name = s(v, "name").unwrap_or_default();
        let (default, allowed): (&str, &[&str]) = match name {
            "BASIC_SCAN_TYPE_VERSION" => ("AWS_NATIVE", &["AWS_NATIVE", "CLAIR"]),
            "REGISTRY_POLICY_SCOPE" => ("V2", &["V1", "V2"]),
            "BLOB_MOUNTING" => ("ENABLED", &["ENABLED", "DISABLED"]),
            _ => {
                return Err(EcrError::new(
                    "ValidationException",
                    format!("Invalid account setting name '{name}': expected BASIC_SCAN_TYPE_VERSION, REGISTRY_POLICY_SCOPE or BLOB_MOUNTING"),
                ))
            }
        };
        let account = &ctx.account;
        if put {
            let value = s(v, "value").unwrap_or_default();
            if !allowed.contains(&value) {
                return Err(EcrError::new(
                    "ValidationException",
                    format!(
                        "Invalid value '{value}' for {name}: expected one of {}",
                        allowed.join(", ")
                    ),
                ));
            }
            self.control.setting_put(account, name, value).await?;
            return Ok(json!({"name": name, "value": value}));
        }
        let value = self
            .control
            .setting_get(account, name)
            .await?
            .unwrap_or_else(|| default.to_string());
        Ok(json!({"name": name, "value": value}))
    }
}

fn template_not_found(prefix: &str, account: &str) -> EcrError {
    EcrError::new(
        "TemplateNotFoundException",
        format!("The repository creation template with prefix '{prefix}' does not exist in the registry with id '{account}'"),
    )
}
