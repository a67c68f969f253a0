//! Rules and their targets on the default event bus.

use kura_store::events::{RuleDelete, RuleRow, TargetRow, TargetsPut};
use kura_store::now_millis;
use serde_json::{json, Map, Value};

use super::{after, check_bus, limit, next_token, req, s, Events, EventsError, EventsResult, MAX_RETRY_ATTEMPTS};
use super::{MAX_RULES, MAX_TARGETS};
use crate::pattern::Pattern;
use crate::target::TargetKind;

/// Target members Kura honours; any other is refused rather than silently ignored.
const TARGET_MEMBERS: &[&str] = &["Id", "Arn", "HttpParameters", "RetryPolicy", "RoleArn"];

impl Events {
    fn rule_json(&self, r: &RuleRow) -> Value {
        let mut out = json!({
            "Name": r.name,
            "Arn": self.rule_arn(&r.account, &r.name),
            "EventPattern": r.pattern,
            "State": r.state,
            "EventBusName": "default",
        });
        if let Some(d) = &r.description {
            out["Description"] = json!(d);
        }
        out
    }

    fn not_found_rule(name: &str) -> EventsError {
        EventsError::not_found(format!("Rule {name} does not exist on EventBus default."))
    }

    pub(super) async fn put_rule(&self, account: &str, input: &Value) -> EventsResult<Value> {
        check_bus(input, &self.region, account)?;
        let name = req(input, "Name")?;
        if input.get("ScheduleExpression").is_some() {
            return Err(EventsError::validation(
                "ScheduleExpression is not supported by Kura: rules match events only.",
            ));
        }
        if input.get("Tags").is_some() {
            return Err(EventsError::validation("Tags on rules are not supported by Kura."));
        }
        let Some(pattern) = s(input, "EventPattern") else {
            return Err(EventsError::validation(
                "Parameter(s) EventPattern or ScheduleExpression must be specified.",
            ));
        };
        Pattern::parse(pattern).map_err(|e| EventsError::pattern(e.to_string()))?;
        let state = s(input, "State").unwrap_or("ENABLED");
        if state != "ENABLED" && state != "DISABLED" {
            return Err(EventsError::validation(format!(
                "State {state} is not supported by Kura (ENABLED or DISABLED)."
            )));
        }
        let existing = self.store.rule_get(account, name).await?;
        if existing.is_none() {
            let count = self.store.rules_list(account, "", None, MAX_RULES).await?.len() as i64;
            if count >= MAX_RULES {
                return Err(EventsError::limit(format!(
                    "The requested resource exceeds the maximum number allowed ({MAX_RULES} rules)."
                )));
            }
        }
        let now = now_millis();
        let row = RuleRow {
            account: account.to_string(),
            name: name.to_string(),
            pattern: pattern.to_string(),
            state: state.to_string(),
            description: s(input, "Description").map(str::to_string),
            created_at: now,
            updated_at: now,
        };
        self.store.rule_put(&row).await?;
        Ok(json!({"RuleArn": self.rule_arn(account, name)}))
    }

    pub(super) async fn describe_rule(&self, account: &str, input: &Value) -> EventsResult<Value> {
        check_bus(input, &self.region, account)?;
        let name = req(input, "Name")?;
        let rule = self
            .store
            .rule_get(account, name)
            .await?
            .ok_or_else(|| Self::not_found_rule(name))?;
        let mut out = self.rule_json(&rule);
        out["CreatedBy"] = json!(account);
        Ok(out)
    }

    pub(super) async fn list_rules(&self, account: &str, input: &Value) -> EventsResult<Value> {
        check_bus(input, &self.region, account)?;
        let n = limit(input);
        let mut rows = self
            .store
            .rules_list(
                account,
                s(input, "NamePrefix").unwrap_or(""),
                after(input)?.as_deref(),
                n + 1,
            )
            .await?;
        let more = rows.len() as i64 > n;
        rows.truncate(n as usize);
        let mut out = json!({"Rules": rows.iter().map(|r| self.rule_json(r)).collect::<Vec<_>>()});
        if let (true, Some(last)) = (more, rows.last()) {
            out["NextToken"] = json!(next_token(&last.name));
        }
        Ok(out)
    }

    pub(super) async fn delete_rule(&self, account: &str, input: &Value) -> EventsResult<Value> {
        check_bus(input, &self.region, account)?;
        match self.store.rule_delete(account, req(input, "Name")?).await? {
            // Deleting a rule that does not exist succeeds, as in EventBridge.
            RuleDelete::Deleted | RuleDelete::NotFound => Ok(json!({})),
            RuleDelete::HasTargets => Err(EventsError::validation("Rule can't be deleted since it has targets.")),
        }
    }

    pub(super) async fn set_rule_state(&self, account: &str, input: &Value, state: &str) -> EventsResult<Value> {
        check_bus(input, &self.region, account)?;
        let name = req(input, "Name")?;
        if !self.store.rule_set_state(account, name, state, now_millis()).await? {
            return Err(Self::not_found_rule(name));
        }
        Ok(json!({}))
    }

    pub(super) async fn put_targets(&self, account: &str, input: &Value) -> EventsResult<Value> {
        check_bus(input, &self.region, account)?;
        let rule = req(input, "Rule")?;
        let targets = input
            .get("Targets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut rows = Vec::new();
        for t in &targets {
            let obj = t
                .as_object()
                .ok_or_else(|| EventsError::validation("Each target must be an object."))?;
            if let Some(other) = obj.keys().find(|k| !TARGET_MEMBERS.contains(&k.as_str())) {
                return Err(EventsError::validation(format!(
                    "Target member {other} is not supported by Kura (supported: {}).",
                    TARGET_MEMBERS.join(", ")
                )));
            }
            let id = req(t, "Id")?;
            let arn = req(t, "Arn")?;
            let kind = TargetKind::parse(arn, &self.region, account)?;
            self.destination_for(account, &kind).await?;
            check_retry_policy(obj)?;
            if rows.iter().any(|r: &TargetRow| r.id == id) {
                return Err(EventsError::validation(format!(
                    "Target id {id} appears more than once."
                )));
            }
            rows.push(TargetRow {
                id: id.to_string(),
                arn: arn.to_string(),
                body: Value::Object(obj.clone()).to_string(),
            });
        }
        match self.store.targets_put(account, rule, &rows, MAX_TARGETS).await? {
            TargetsPut::Done => Ok(json!({"FailedEntryCount": 0, "FailedEntries": []})),
            TargetsPut::NoRule => Err(Self::not_found_rule(rule)),
            TargetsPut::TooMany => Err(EventsError::limit(format!(
                "The requested resource exceeds the maximum number allowed ({MAX_TARGETS} targets per rule)."
            ))),
        }
    }

    pub(super) async fn remove_targets(&self, account: &str, input: &Value) -> EventsResult<Value> {
        check_bus(input, &self.region, account)?;
        let rule = req(input, "Rule")?;
        let ids: Vec<String> = input
            .get("Ids")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        self.store
            .targets_remove(account, rule, &ids)
            .await?
            .ok_or_else(|| Self::not_found_rule(rule))?;
        Ok(json!({"FailedEntryCount": 0, "FailedEntries": []}))
    }

    pub(super) async fn list_targets(&self, account: &str, input: &Value) -> EventsResult<Value> {
        check_bus(input, &self.region, account)?;
        let rule = req(input, "Rule")?;
        if self.store.rule_get(account, rule).await?.is_none() {
            return Err(Self::not_found_rule(rule));
        }
        let n = limit(input) as usize;
        let from = after(input)?;
        let all = self.store.targets_list(account, rule).await?;
        let rest: Vec<_> = all
            .iter()
            .filter(|t| from.as_deref().is_none_or(|a| t.id.as_str() > a))
            .collect();
        let page: Vec<Value> = rest
            .iter()
            .take(n)
            .map(|t| serde_json::from_str(&t.body).unwrap_or_else(|_| json!({"Id": t.id, "Arn": t.arn})))
            .collect();
        let mut out = json!({"Targets": page});
        if rest.len() > n {
            out["NextToken"] = json!(next_token(&rest[n - 1].id));
        }
        Ok(out)
    }
}

fn check_retry_policy(target: &Map<String, Value>) -> EventsResult<()> {
    let Some(p) = target.get("RetryPolicy") else {
        return Ok(());
    };
    if let Some(age) = p.get("MaximumEventAgeInSeconds").and_then(Value::as_i64) {
        if !(60..=86_400).contains(&age) {
            return Err(EventsError::validation(
                "RetryPolicy.MaximumEventAgeInSeconds must be between 60 and 86400.",
            ));
        }
    }
    if let Some(n) = p.get("MaximumRetryAttempts").and_then(Value::as_i64) {
        if !(0..=MAX_RETRY_ATTEMPTS).contains(&n) {
            return Err(EventsError::validation(
                "RetryPolicy.MaximumRetryAttempts must be between 0 and 185.",
            ));
        }
    }
    Ok(())
}
