//! The operations, on input the model validated (types, lengths, enums). Each resolves its
//! `SecretId`, authorizes `secretsmanager:<Op>` on the secret's ARN in its owner's account,
//! then acts. Nothing here logs or echoes a secret's value: errors name the secret, never
//! what it holds.

use base64::Engine as _;
use kura_aws::{AwsError, AwsResult};
use kura_store::now_millis;
use kura_store::secrets::{SecretCommit, SecretCreate, SecretRow, SecretVersionRow};
use serde_json::{json, Map, Value};

use crate::resolve::{valid_name, Resolved};
use crate::stages::add_version;
use crate::{
    invalid_request, marked_for_deletion, not_found, Ctx, Secrets, AWSCURRENT, DEFAULT_RECOVERY_DAYS, MAX_TAGS,
};

const DAY_MS: i64 = 86_400_000;
/// How often a change retries when another writer changed the secret meanwhile.
const COMMIT_ATTEMPTS: usize = 32;

/// A value to store: its kind (`string` or `binary`) and bytes.
pub(crate) struct NewValue {
    kind: &'static str,
    bytes: Vec<u8>,
}

fn s<'a>(input: &'a Value, key: &str) -> Option<&'a str> {
    input.get(key).and_then(Value::as_str)
}

pub(crate) fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::invalid_parameter(message)
}

/// The value a request carries, if any (at most one of `SecretString`, `SecretBinary`).
fn value_of(input: &Value) -> AwsResult<Option<NewValue>> {
    match (s(input, "SecretString"), s(input, "SecretBinary")) {
        (Some(_), Some(_)) => Err(invalid(
            "You can't specify both a binary secret value and a string secret value in the same secret.",
        )),
        (Some(text), None) => Ok(Some(NewValue {
            kind: "string",
            bytes: text.as_bytes().to_vec(),
        })),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(|bytes| Some(NewValue { kind: "binary", bytes }))
            .map_err(|_| AwsError::serialization("Invalid base64 at 'SecretBinary'")),
        (None, None) => Ok(None),
    }
}

/// Only Kura's own sealing exists: a KMS key other than Secrets Manager's default is refused
/// rather than silently not used.
fn check_kms(input: &Value) -> AwsResult<Option<String>> {
    match s(input, "KmsKeyId") {
        None | Some("") => Ok(None),
        Some(k @ ("alias/aws/secretsmanager" | "aws/secretsmanager")) => Ok(Some(k.to_string())),
        Some(_) => Err(invalid(
            "Kura seals secret values with its master key; KmsKeyId may only name alias/aws/secretsmanager.",
        )),
    }
}

fn check_unsupported(input: &Value) -> AwsResult<()> {
    if s(input, "Type").is_some_and(|t| !t.is_empty()) {
        return Err(invalid(
            "Kura does not support secret types managed by another service (Type).",
        ));
    }
    if input.get("AddReplicaRegions").is_some_and(|v| !v.is_null()) {
        return Err(invalid_request("Kura does not replicate secrets to other regions."));
    }
    Ok(())
}

pub(crate) fn tags_of(input: &Value) -> AwsResult<Vec<(String, String)>> {
    let Some(list) = input.get("Tags").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    if list.len() > MAX_TAGS {
        return Err(invalid(format!("A secret can have at most {MAX_TAGS} tags.")));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for t in list {
        let key = s(t, "Key").ok_or_else(|| invalid("Every tag needs a Key."))?;
        let value = s(t, "Value").unwrap_or("");
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid("Tag keys starting with aws: are reserved."));
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(invalid(format!("The tag key {key} appears more than once.")));
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

pub(crate) fn tags_json(tags: &[(String, String)]) -> String {
    Value::Array(tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect()).to_string()
}

/// A timestamp as JSON 1.1 sends it: seconds since the epoch.
pub(crate) fn epoch(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// A version's labels.
pub(crate) fn labels(v: &SecretVersionRow) -> Vec<String> {
    serde_json::from_str(&v.stages).unwrap_or_default()
}

fn labels_json(l: &[String]) -> String {
    serde_json::to_string(l).unwrap_or_else(|_| "[]".into())
}

/// A random ARN suffix: six letters and digits.
fn suffix() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = [0u8; 6];
    getrandom::fill(&mut raw).expect("the OS random number generator failed");
    raw.iter().map(|b| CHARS[*b as usize % CHARS.len()] as char).collect()
}

fn version_id(input: &Value) -> String {
    s(input, "ClientRequestToken")
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

impl Secrets {
    fn seal(&self, arn: &str, id: &str, v: &NewValue) -> Vec<u8> {
        self.master.seal(&v.bytes, &Secrets::context(arn, id, v.kind))
    }

    /// Open a stored value. A value that does not open is `DecryptionFailure`, logged with
    /// the secret's ARN and version only.
    pub(crate) fn open(&self, arn: &str, v: &SecretVersionRow) -> AwsResult<Vec<u8>> {
        self.master
            .open(&v.sealed, &Secrets::context(arn, &v.version_id, &v.kind))
            .map_err(|e| {
                tracing::error!(secret = %arn, version = %v.version_id, error = %e, "secretsmanager: a stored value does not open with the master key");
                AwsError::new(
                    "DecryptionFailure",
                    "Secrets Manager can't decrypt the protected secret text using the provided key.",
                )
            })
    }

    /// Resolve `SecretId` and authorize `action` on it; the secret, if it exists.
    pub(crate) async fn target(&self, ctx: Ctx<'_>, input: &Value, action: &str) -> AwsResult<SecretRow> {
        self.target_tagged(ctx, input, action, &[]).await
    }

    /// [`Self::target`] for a request that sets `tags` (`aws:RequestTag/*`).
    pub(crate) async fn target_tagged(
        &self,
        ctx: Ctx<'_>,
        input: &Value,
        action: &str,
        tags: &[(String, String)],
    ) -> AwsResult<SecretRow> {
        let id = s(input, "SecretId").ok_or_else(|| invalid("SecretId is required."))?;
        let Resolved { owner, arn, secret } = self.resolve(ctx.account, id, now_millis()).await?;
        ctx.allow(action, &arn, &owner, tags).await?;
        secret.ok_or_else(not_found)
    }

    /// Apply a change computed from the secret and its versions, again when another writer
    /// changed the secret meanwhile. `change` answers `Ok(None)` when there is nothing to do.
    pub(crate) async fn commit_with<T>(
        &self,
        mut secret: SecretRow,
        mut change: impl FnMut(&SecretRow, &[SecretVersionRow]) -> AwsResult<(Option<SecretCommit>, T)>,
    ) -> AwsResult<(SecretRow, T)> {
        for _ in 0..COMMIT_ATTEMPTS {
            let versions = self.store.secret_versions(&secret.arn).await?;
            let (commit, out) = change(&secret, &versions)?;
            let Some(commit) = commit else {
                return Ok((secret, out));
            };
            if self.store.secret_commit(&commit).await? {
                return Ok((commit.row, out));
            }
            secret = self
                .store
                .secret_by_arn(&secret.arn, now_millis())
                .await?
                .ok_or_else(not_found)?;
        }
        Err(invalid_request("The secret changed while this request ran; retry it."))
    }

    /// Add version `id` holding `value` with `new_labels`, and apply `meta` to the secret.
    /// The same id with the same value again changes nothing; with another value it is
    /// `ResourceExistsException`. Answers the secret and the version's labels.
    async fn put_version(
        &self,
        secret: SecretRow,
        id: &str,
        value: &NewValue,
        new_labels: Vec<String>,
        meta: impl Fn(&mut SecretRow),
    ) -> AwsResult<(SecretRow, Vec<String>)> {
        let now = now_millis();
        self.commit_with(secret, |secret, versions| {
            if let Some(v) = versions.iter().find(|v| v.version_id == id) {
                let same = v.kind == value.kind && self.open(&secret.arn, v)? == value.bytes;
                if !same {
                    return Err(AwsError::new(
                        "ResourceExistsException",
                        "You can't modify an existing version, you can only create a new version.",
                    ));
                }
                return Ok((None, labels(v)));
            }
            let existing: Vec<(String, Vec<String>)> =
                versions.iter().map(|v| (v.version_id.clone(), labels(v))).collect();
            let moves = add_version(&existing, id, &new_labels);
            let mut row = secret.clone();
            meta(&mut row);
            row.changed_at = now;
            let commit = SecretCommit {
                insert: Some(SecretVersionRow {
                    version_id: id.to_string(),
                    kind: value.kind.to_string(),
                    sealed: self.seal(&secret.arn, id, value),
                    stages: labels_json(&new_labels),
                    created_at: now,
                }),
                relabel: moves.relabel.iter().map(|(i, l)| (i.clone(), labels_json(l))).collect(),
                remove: moves.remove,
                row,
            };
            Ok((Some(commit), new_labels.clone()))
        })
        .await
    }

    pub(crate) async fn create_secret(&self, ctx: Ctx<'_>, input: &Value) -> AwsResult<Value> {
        let name = s(input, "Name").ok_or_else(|| invalid("Name is required."))?;
        if !valid_name(name) {
            return Err(invalid(
                "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!",
            ));
        }
        check_unsupported(input)?;
        let kms = check_kms(input)?;
        let tags = tags_of(input)?;
        let value = value_of(input)?;
        let arn = format!("{}-{}", self.arn_base(ctx.account, name), suffix());
        ctx.allow("secretsmanager:CreateSecret", &arn, ctx.account, &tags)
            .await?;
        if !tags.is_empty() {
            ctx.allow("secretsmanager:TagResource", &arn, ctx.account, &tags)
                .await?;
        }
        let now = now_millis();
        let id = version_id(input);
        let row = SecretRow {
            account: ctx.account.to_string(),
            name: name.to_string(),
            arn: arn.clone(),
            description: s(input, "Description").map(str::to_string),
            kms_key_id: kms,
            tags: tags_json(&tags),
            created_at: now,
            changed_at: now,
            accessed_at: None,
            deleted_at: None,
            purge_at: None,
            revision: 0,
        };
        let first = value.as_ref().map(|v| SecretVersionRow {
            version_id: id.clone(),
            kind: v.kind.to_string(),
            sealed: self.seal(&arn, &id, v),
            stages: labels_json(&[AWSCURRENT.to_string()]),
            created_at: now,
        });
        match self.store.secret_create(&row, first.as_ref(), self.max_secrets).await? {
            SecretCreate::Created => {
                let mut out = json!({"ARN": arn, "Name": name, "ReplicationStatus": []});
                if first.is_some() {
                    out["VersionId"] = json!(id);
                }
                Ok(out)
            }
            SecretCreate::Exists => self.create_again(ctx, name, &id, input, value.as_ref()).await,
            SecretCreate::ScheduledForDeletion => Err(invalid_request(
                "You can't create this secret because a secret with this name is already scheduled for deletion.",
            )),
            SecretCreate::TooMany => Err(AwsError::new(
                "LimitExceededException",
                format!(
                    "The account has reached its quota of {} secrets; delete some first.",
                    self.max_secrets
                ),
            )),
        }
    }

    /// A create whose name is taken: the same request again (its token names a version of
    /// the secret holding the same value) answers as the first did; anything else is
    /// `ResourceExistsException`.
    async fn create_again(
        &self,
        ctx: Ctx<'_>,
        name: &str,
        id: &str,
        input: &Value,
        value: Option<&NewValue>,
    ) -> AwsResult<Value> {
        let exists = || {
            AwsError::new(
                "ResourceExistsException",
                format!("The operation failed because the secret {name} already exists."),
            )
        };
        let (Some(value), Some(_)) = (value, s(input, "ClientRequestToken")) else {
            return Err(exists());
        };
        let Some(secret) = self.store.secret_by_name(ctx.account, name, now_millis()).await? else {
            return Err(exists());
        };
        let versions = self.store.secret_versions(&secret.arn).await?;
        match versions.iter().find(|v| v.version_id == id) {
            Some(v) if v.kind == value.kind && self.open(&secret.arn, v)? == value.bytes => {
                Ok(json!({"ARN": secret.arn, "Name": name, "VersionId": id, "ReplicationStatus": []}))
            }
            _ => Err(exists()),
        }
    }

    pub(crate) async fn get_secret_value(&self, ctx: Ctx<'_>, input: &Value) -> AwsResult<Value> {
        let secret = self.target(ctx, input, "secretsmanager:GetSecretValue").await?;
        if secret.deleted_at.is_some() {
            return Err(marked_for_deletion());
        }
        let versions = self.store.secret_versions(&secret.arn).await?;
        let v = pick_version(&versions, s(input, "VersionId"), s(input, "VersionStage"))?;
        let bytes = self.open(&secret.arn, v)?;
        self.touch(&secret).await;
        let mut out = json!({
            "ARN": secret.arn,
            "Name": secret.name,
            "VersionId": v.version_id,
            "VersionStages": labels(v),
            "CreatedDate": epoch(v.created_at),
        });
        if v.kind == "binary" {
            out["SecretBinary"] = json!(base64::engine::general_purpose::STANDARD.encode(&bytes));
        } else {
            out["SecretString"] = json!(String::from_utf8_lossy(&bytes));
        }
        Ok(out)
    }

    /// Record today as the secret's last access (once a day).
    pub(crate) async fn touch(&self, secret: &SecretRow) {
        let day = now_millis() / DAY_MS * DAY_MS;
        if secret.accessed_at != Some(day) {
            if let Err(e) = self.store.secret_touch(&secret.arn, day).await {
                tracing::warn!(secret = %secret.arn, error = %e, "secretsmanager: could not record the last access");
            }
        }
    }

    pub(crate) async fn put_secret_value(&self, ctx: Ctx<'_>, input: &Value) -> AwsResult<Value> {
        let secret = self.target(ctx, input, "secretsmanager:PutSecretValue").await?;
        if secret.deleted_at.is_some() {
            return Err(marked_for_deletion());
        }
        let value = value_of(input)?.ok_or_else(|| invalid("You must provide either SecretString or SecretBinary."))?;
        let new_labels: Vec<String> = match input.get("VersionStages").and_then(Value::as_array) {
            Some(l) => {
                let mut out: Vec<String> = Vec::new();
                for x in l.iter().filter_map(Value::as_str) {
                    if !out.iter().any(|o| o == x) {
                        out.push(x.to_string());
                    }
                }
                out
            }
            None => vec![AWSCURRENT.to_string()],
        };
        let id = version_id(input);
        let (secret, l) = self.put_version(secret, &id, &value, new_labels, |_| {}).await?;
        Ok(json!({"ARN": secret.arn, "Name": secret.name, "VersionId": id, "VersionStages": l}))
    }

    pub(crate) async fn describe_secret(&self, ctx: Ctx<'_>, input: &Value) -> AwsResult<Value> {
        let secret = self.target(ctx, input, "secretsmanager:DescribeSecret").await?;
        let versions = self.store.secret_versions(&secret.arn).await?;
        Ok(describe(&secret, &versions, "VersionIdsToStages"))
    }

    pub(crate) async fn delete_secret(&self, ctx: Ctx<'_>, input: &Value) -> AwsResult<Value> {
        let force = input
            .get("ForceDeleteWithoutRecovery")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let window = input.get("RecoveryWindowInDays").and_then(Value::as_i64);
        if force && window.is_some() {
            return Err(invalid(
                "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
            ));
        }
        let days = window.unwrap_or(DEFAULT_RECOVERY_DAYS);
        if !(7..=30).contains(&days) {
            return Err(invalid(
                "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).",
            ));
        }
        let secret = self.target(ctx, input, "secretsmanager:DeleteSecret").await?;
        let now = now_millis();
        if force {
            self.store.secret_remove(&secret.arn).await?;
            return Ok(json!({"ARN": secret.arn, "Name": secret.name, "DeletionDate": epoch(now)}));
        }
        if secret.deleted_at.is_some() {
            return Err(marked_for_deletion());
        }
        let purge = now + days * DAY_MS;
        let (secret, ()) = self
            .commit_with(secret, |secret, _| {
                if secret.deleted_at.is_some() {
                    return Err(marked_for_deletion());
                }
                let mut row = secret.clone();
                row.deleted_at = Some(now);
                row.purge_at = Some(purge);
                Ok((Some(plain(row)), ()))
            })
            .await?;
        Ok(json!({"ARN": secret.arn, "Name": secret.name, "DeletionDate": epoch(purge)}))
    }

    pub(crate) async fn restore_secret(&self, ctx: Ctx<'_>, input: &Value) -> AwsResult<Value> {
        let secret = self.target(ctx, input, "secretsmanager:RestoreSecret").await?;
        let (secret, ()) = self
            .commit_with(secret, |secret, _| {
                if secret.deleted_at.is_none() {
                    return Ok((None, ()));
                }
                let mut row = secret.clone();
                row.deleted_at = None;
                row.purge_at = None;
                row.changed_at = now_millis();
                Ok((Some(plain(row)), ()))
            })
            .await?;
        Ok(json!({"ARN": secret.arn, "Name": secret.name}))
    }

    pub(crate) async fn update_secret(&self, ctx: Ctx<'_>, input: &Value) -> AwsResult<Value> {
        check_unsupported(input)?;
        let kms = check_kms(input)?;
        let value = value_of(input)?;
        let secret = self.target(ctx, input, "secretsmanager:UpdateSecret").await?;
        if secret.deleted_at.is_some() {
            return Err(marked_for_deletion());
        }
        let description = s(input, "Description").map(str::to_string);
        let kms_given = input.get("KmsKeyId").is_some_and(|v| !v.is_null());
        let meta = |row: &mut SecretRow| {
            if let Some(d) = &description {
                row.description = Some(d.clone());
            }
            if kms_given {
                row.kms_key_id = kms.clone();
            }
        };
        if let Some(value) = value {
            let id = version_id(input);
            let (secret, _) = self
                .put_version(secret, &id, &value, vec![AWSCURRENT.to_string()], meta)
                .await?;
            return Ok(json!({"ARN": secret.arn, "Name": secret.name, "VersionId": id}));
        }
        let (secret, ()) = self
            .commit_with(secret, |secret, _| {
                let mut row = secret.clone();
                meta(&mut row);
                row.changed_at = now_millis();
                Ok((Some(plain(row)), ()))
            })
            .await?;
        Ok(json!({"ARN": secret.arn, "Name": secret.name}))
    }
}

/// A change of the secret's metadata only.
pub(crate) fn plain(row: SecretRow) -> SecretCommit {
    SecretCommit {
        row,
        insert: None,
        relabel: Vec::new(),
        remove: Vec::new(),
    }
}

/// The version a read asks for: by id, by label (`AWSCURRENT` when neither is given), or
/// both (they must name the same version).
pub(crate) fn pick_version<'a>(
    versions: &'a [SecretVersionRow],
    id: Option<&str>,
    stage: Option<&str>,
) -> AwsResult<&'a SecretVersionRow> {
    let stage = stage.or(if id.is_none() { Some(AWSCURRENT) } else { None });
    let found = versions
        .iter()
        .find(|v| id.is_none_or(|i| v.version_id == i) && stage.is_none_or(|st| labels(v).iter().any(|l| l == st)));
    found.ok_or_else(|| {
        let what = match (id, stage) {
            (Some(i), _) => format!("VersionId: {i}"),
            (None, Some(st)) => format!("staging label: {st}"),
            (None, None) => String::new(),
        };
        AwsError::new(
            "ResourceNotFoundException",
            format!("Secrets Manager can't find the specified secret value for {what}"),
        )
    })
}

/// A secret as `DescribeSecret` (`stages_key` = `VersionIdsToStages`) or a `ListSecrets`
/// entry (`SecretVersionsToStages`) shows it: only versions with labels are listed.
pub(crate) fn describe(secret: &SecretRow, versions: &[SecretVersionRow], stages_key: &str) -> Value {
    let mut out = Map::new();
    out.insert("ARN".into(), json!(secret.arn));
    out.insert("Name".into(), json!(secret.name));
    if let Some(d) = &secret.description {
        out.insert("Description".into(), json!(d));
    }
    if let Some(k) = &secret.kms_key_id {
        out.insert("KmsKeyId".into(), json!(k));
    }
    out.insert("LastChangedDate".into(), epoch(secret.changed_at));
    if let Some(a) = secret.accessed_at {
        out.insert("LastAccessedDate".into(), epoch(a));
    }
    if let Some(d) = secret.deleted_at {
        out.insert("DeletedDate".into(), epoch(d));
    }
    let tags: Value = serde_json::from_str(&secret.tags).unwrap_or_else(|_| json!([]));
    if tags.as_array().is_some_and(|t| !t.is_empty()) {
        out.insert("Tags".into(), tags);
    }
    let stages: Map<String, Value> = versions
        .iter()
        .filter_map(|v| {
            let l = labels(v);
            (!l.is_empty()).then(|| (v.version_id.clone(), json!(l)))
        })
        .collect();
    out.insert(stages_key.into(), Value::Object(stages));
    out.insert("CreatedDate".into(), epoch(secret.created_at));
    Value::Object(out)
}
