//! Replication: the registry's configuration (`PutReplicationConfiguration`,
//! echoed by `DescribeRegistry`), each image's status per destination
//! (`DescribeImageReplicationStatus`), and backfills of the images that were
//! there before the configuration. The copying itself is `kura-replication`'s.

use kura_replication::backfill;
use kura_replication::{Destination, ReplicationConfiguration};
use kura_store::replication::{backfill_status as bs, BackfillRow};

use super::*;

/// ECR's message for a rule that names the source registry itself.
const SELF_DESTINATION: &str = "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: \
     'Replication destination cannot be the same as the source registry'";

fn backfill_not_found(id: &str, account: &str) -> EcrError {
    EcrError::new(
        "ReplicationBackfillNotFoundException",
        format!("The replication backfill with id '{id}' does not exist in the registry with id '{account}'"),
    )
}

fn destination_json(b: &BackfillRow) -> Value {
    json!({"region": b.region, "registryId": b.registry_id})
}

impl Ecr {
    pub(super) async fn put_replication_configuration(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let raw = v.get("replicationConfiguration").cloned().unwrap_or(json!({}));
        let config: ReplicationConfiguration = serde_json::from_value(raw).map_err(|e| {
            EcrError::invalid_parameter(format!(
                "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: '{e}'"
            ))
        })?;
        let own = (self.config.region.as_str(), account.as_str());
        if config
            .rules
            .iter()
            .flat_map(|r| &r.destinations)
            .any(|d| (d.region.as_str(), d.registry_id.as_str()) == own)
        {
            return Err(EcrError::invalid_parameter(SELF_DESTINATION));
        }
        config
            .validate(&self.config.region, &account)
            .map_err(EcrError::invalid_parameter)?;
        config.store(self.control.as_ref(), &account).await?;
        Ok(json!({"replicationConfiguration": config}))
    }

    pub(super) async fn describe_registry(&self, ctx: &Ctx) -> EcrResult<Value> {
        let config = ReplicationConfiguration::load(self.control.as_ref(), &ctx.account).await?;
        Ok(json!({"registryId": ctx.account, "replicationConfiguration": config}))
    }

    pub(super) async fn describe_image_replication_status(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let id = v.get("imageId").cloned().unwrap_or(json!({}));
        let digest = match self.resolve(repo.id, &id).await? {
            Ok(d) => d,
            Err(("ImageNotFound", _)) => return Err(image_not_found(&id, name.as_str(), &account)),
            Err((_, reason)) => return Err(EcrError::invalid_parameter(reason)),
        };
        let statuses: Vec<Value> = self
            .replication
            .repl_status_list(repo.id, &digest)
            .await?
            .into_iter()
            .map(|r| {
                let mut st = json!({"region": r.region, "registryId": r.registry_id, "status": r.status});
                if let Some(code) = r.failure_code {
                    st["failureCode"] = json!(code);
                }
                st
            })
            .collect();
        Ok(json!({
            "repositoryName": name.as_str(),
            "imageId": image_id(Some(&digest), s(&id, "imageTag")),
            "replicationStatuses": statuses,
        }))
    }

    pub(super) async fn start_replication_backfill(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let dest = Destination {
            region: v
                .pointer("/destination/region")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            registry_id: v
                .pointer("/destination/registryId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
        };
        let config = ReplicationConfiguration::load(self.control.as_ref(), &account).await?;
        if !config.all_destinations().contains(&dest) {
            return Err(EcrError::invalid_parameter(format!(
                "Invalid parameter at 'destination' failed to satisfy constraint: 'The destination with region \
                 '{}' and registry id '{}' is not in the replication configuration of the registry with id '{account}''",
                dest.region, dest.registry_id
            )));
        }
        let row = backfill::start(&self.jobs, self.replication.as_ref(), &account, &dest)
            .await?
            .ok_or_else(|| {
                EcrError::new(
                    "ReplicationBackfillInProgressException",
                    format!(
                        "A replication backfill to the destination with region '{}' and registry id '{}' is already \
                         in progress in the registry with id '{account}'",
                        dest.region, dest.registry_id
                    ),
                )
            })?;
        Ok(json!({
            "registryId": account,
            "replicationBackfillId": row.id,
            "destination": destination_json(&row),
            "status": row.status,
            "startedAt": ts(row.started_at),
        }))
    }

    pub(super) async fn stop_replication_backfill(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let id = s(v, "replicationBackfillId").unwrap_or_default();
        self.replication.repl_backfill_settle(&account).await?;
        // A few tries: the job may move the backfill between read and write.
        for _ in 0..3 {
            let row = self
                .replication
                .repl_backfill_get(&account, id)
                .await?
                .ok_or_else(|| backfill_not_found(id, &account))?;
            // Preparing: its job stops before its next page. Queued already:
            // nothing more will be queued (what is queued still replicates).
            let to = match row.status.as_str() {
                bs::PREPARING => bs::STOPPING,
                bs::IN_PROGRESS => bs::STOPPED,
                bs::STOPPING => return Ok(self.backfill_brief(&account, &row)),
                other => {
                    return Err(EcrError::new(
                        "ReplicationBackfillInvalidStatusException",
                        format!("The replication backfill with id '{id}' cannot be stopped: its status is {other}"),
                    ))
                }
            };
            if self
                .replication
                .repl_backfill_transition(&account, id, &[row.status.as_str()], to, None)
                .await?
            {
                let row = self
                    .replication
                    .repl_backfill_get(&account, id)
                    .await?
                    .ok_or_else(|| backfill_not_found(id, &account))?;
                return Ok(self.backfill_brief(&account, &row));
            }
        }
        Err(EcrError::server())
    }

    fn backfill_brief(&self, account: &str, row: &BackfillRow) -> Value {
        json!({
            "registryId": account,
            "replicationBackfillId": row.id,
            "destination": destination_json(row),
            "status": row.status,
            "startedAt": ts(row.started_at),
        })
    }

    /// A backfill as `ListReplicationBackfills` and the results describe it.
    async fn backfill_summary(&self, row: &BackfillRow) -> EcrResult<Value> {
        let p = self.replication.repl_backfill_progress(&row.id).await?;
        let mut out = json!({
            "replicationBackfillId": row.id,
            "destination": destination_json(row),
            "status": row.status,
            "startedAt": ts(row.started_at),
            "progress": {
                "totalReplicationCount": p.total,
                "completedReplicationCount": p.completed,
                "failedReplicationCount": p.failed,
                "failureCodes": p.failure_codes,
            },
        });
        if let Some(e) = row.ended_at {
            out["endedAt"] = ts(e);
        }
        if let Some(f) = &row.failure_code {
            out["failureCode"] = json!(f);
        }
        Ok(out)
    }

    pub(super) async fn describe_replication_backfill_results(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let id = s(v, "replicationBackfillId").unwrap_or_default();
        self.replication.repl_backfill_settle(&account).await?;
        let row = self
            .replication
            .repl_backfill_get(&account, id)
            .await?
            .ok_or_else(|| backfill_not_found(id, &account))?;
        let token = decode_token(v)?;
        let after = match &token {
            Some(t) => Some(t.split_once('\n').ok_or_else(|| {
                EcrError::invalid_parameter(
                    "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid NextToken'",
                )
            })?),
            None => None,
        };
        let limit = max_results(v, 100);
        let mut results = self
            .replication
            .repl_backfill_results(id, s(v, "resultStatusFilter"), after, limit + 1)
            .await?;
        let next = if results.len() as i64 > limit {
            results.truncate(limit as usize);
            results
                .last()
                .map(|r| encode_token(&format!("{}\n{}", r.repository, r.digest)))
        } else {
            None
        };
        let mut out = self.backfill_summary(&row).await?;
        out["registryId"] = json!(account);
        out["results"] = Value::Array(
            results
                .iter()
                .map(|r| {
                    let mut x = json!({
                        "repositoryName": r.repository,
                        "imageId": image_id(Some(&r.digest), r.tag.as_deref()),
                        "status": r.status,
                    });
                    if let Some(f) = &r.failure_code {
                        x["failureCode"] = json!(f);
                    }
                    x
                })
                .collect(),
        );
        with_next(&mut out, next);
        Ok(out)
    }

    pub(super) async fn list_replication_backfills(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        self.replication.repl_backfill_settle(&account).await?;
        let after = match decode_token(v)? {
            Some(t) => Some(t.parse::<i64>().map_err(|_| {
                EcrError::invalid_parameter(
                    "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid NextToken'",
                )
            })?),
            None => None,
        };
        let limit = max_results(v, 50);
        let mut rows = self.replication.repl_backfill_list(&account, after, limit + 1).await?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|r| encode_token(&r.seq.to_string()))
        } else {
            None
        };
        let mut backfills = Vec::new();
        for r in &rows {
            backfills.push(self.backfill_summary(r).await?);
        }
        let mut out = json!({"registryId": account, "backfills": backfills});
        with_next(&mut out, next);
        Ok(out)
    }
}
