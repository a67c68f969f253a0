//! A call becomes CloudTrail's record.
//!
//! The record follows CloudTrail's record contents: `eventVersion`,
//! `userIdentity` (`Root`, `IAMUser` or `AssumedRole` with its
//! `sessionContext`; `Unknown` when authentication failed before anyone was
//! identified), `eventTime`, `eventSource`, `eventName`, `awsRegion`,
//! `sourceIPAddress`, `userAgent`, `errorCode`/`errorMessage`,
//! `requestParameters` (secrets redacted, policy-sized blobs trimmed:
//! [`crate::redact`]), `responseElements` (writes only, small, secrets
//! redacted), `requestID`, `eventID`, `readOnly`, `resources`, `eventType`,
//! `managementEvent`, `recipientAccountId`, `eventCategory`.

use kura_store::audit::TrailRow;
use serde_json::{json, Map, Value};

use crate::redact;

/// CloudTrail's record format version.
pub const EVENT_VERSION: &str = "1.08";

pub use kura_aws::{CallRecord, Caller};

/// The kind of principal an ARN names (display only: authorization never
/// parses ARNs).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Principal<'a> {
    Root,
    User { name: &'a str },
    Session { role: &'a str, session: &'a str },
    Other,
}

fn principal_of(arn: &str) -> Principal<'_> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 {
        return Principal::Other;
    }
    let resource = parts[5];
    if resource == "root" {
        return Principal::Root;
    }
    if let Some(rest) = resource.strip_prefix("user/") {
        return Principal::User {
            name: rest.rsplit('/').next().unwrap_or(rest),
        };
    }
    if let Some(rest) = resource.strip_prefix("assumed-role/") {
        if let Some((role, session)) = rest.rsplit_once('/') {
            return Principal::Session {
                role: role.rsplit('/').next().unwrap_or(role),
                session,
            };
        }
    }
    Principal::Other
}

/// CloudTrail's `eventTime` for ms since the epoch.
pub fn event_time(ms: i64) -> String {
    kura_store::audit::rfc3339_secs(ms.div_euclid(1000))
}

/// The `userIdentity` element, and the name LookupEvents' `Username` matches
/// (`root` for the root, the user's name, the role session's name). Nobody
/// identified (authentication failed) is `Unknown`, with the access key the
/// request claimed when it named one.
pub fn user_identity(caller: Option<&Caller>, claimed_key: Option<&str>) -> (Value, Option<String>) {
    let Some(c) = caller else {
        let mut id = json!({"type": "Unknown"});
        if let Some(key) = claimed_key {
            id["accessKeyId"] = json!(redact::clip(key, 128));
        }
        return (id, None);
    };
    let mut id = Map::new();
    let (kind, username) = match principal_of(&c.principal_arn) {
        Principal::Root => ("Root", Some("root".to_string())),
        Principal::User { name } => {
            id.insert("userName".into(), json!(name));
            ("IAMUser", Some(name.to_string()))
        }
        Principal::Session { role, session } => {
            let role_id = c.principal_id.split(':').next().unwrap_or_default();
            let mut attributes = json!({"mfaAuthenticated": "false"});
            if let Some(at) = c.token_issued_at {
                attributes["creationDate"] = json!(event_time(at));
            }
            id.insert(
                "sessionContext".into(),
                json!({
                    "sessionIssuer": {
                        "type": "Role",
                        "principalId": role_id,
                        "arn": format!("arn:aws:iam::{}:role/{role}", c.account),
                        "accountId": c.account,
                        "userName": role,
                    },
                    "attributes": attributes,
                }),
            );
            ("AssumedRole", Some(session.to_string()))
        }
        Principal::Other => ("Unknown", None),
    };
    id.insert("type".into(), json!(kind));
    id.insert("principalId".into(), json!(c.principal_id));
    id.insert("arn".into(), json!(c.principal_arn));
    id.insert("accountId".into(), json!(c.account));
    id.insert("accessKeyId".into(), json!(c.access_key_id));
    (Value::Object(id), username)
}

/// The resources a call names, from its input: (CloudTrail resource type,
/// name).
pub fn resources(source: &str, name: &str, params: Option<&Value>) -> Vec<(String, String)> {
    let Some(p) = params.and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut add = |kind: &str, key: &str| {
        if let Some(v) = p.get(key).and_then(Value::as_str) {
            if !v.is_empty() {
                out.push((kind.to_string(), v.to_string()));
            }
        }
    };
    match source {
        "ecr.amazonaws.com" => add("AWS::ECR::Repository", "repositoryName"),
        "ecr-public.amazonaws.com" => add("AWS::ECR::PublicRepository", "repositoryName"),
        "iam.amazonaws.com" | "sts.amazonaws.com" => {
            add("AWS::IAM::User", "userName");
            add("AWS::IAM::User", "UserName");
            add("AWS::IAM::Role", "roleName");
            add("AWS::IAM::Role", "RoleName");
            add("AWS::IAM::Role", "roleArn");
            add("AWS::IAM::Role", "RoleArn");
            add("AWS::IAM::Group", "groupName");
            add("AWS::IAM::Group", "GroupName");
            add("AWS::IAM::Policy", "policyArn");
            add("AWS::IAM::Policy", "PolicyArn");
            add("AWS::IAM::AccessKey", "accessKeyId");
            add("AWS::IAM::AccessKey", "AccessKeyId");
        }
        "secretsmanager.amazonaws.com" => {
            // `SecretId` (a name or ARN), or the `Name` of a secret being created.
            add("AWS::SecretsManager::Secret", "SecretId");
            add("AWS::SecretsManager::Secret", "Name");
        }
        "events.amazonaws.com" => {
            // `Name` names what the operation is about.
            let named = if name.contains("Connection") {
                "AWS::Events::Connection"
            } else if name.contains("ApiDestination") {
                "AWS::Events::ApiDestination"
            } else {
                "AWS::Events::Rule"
            };
            add(named, "Name");
            add("AWS::Events::Rule", "Rule");
            add("AWS::Events::Connection", "ConnectionArn");
        }
        _ => {}
    }
    out.sort();
    out.dedup();
    out
}

/// The account whose trail holds a call: the caller's, else (authentication
/// failed) `fallback`.
pub fn recipient(call: &CallRecord, fallback: &str) -> String {
    call.caller
        .as_ref()
        .map_or_else(|| fallback.to_string(), |c| c.account.clone())
}

/// CloudTrail's record of `call` and the row that stores it: a management
/// event, or a data event (`eventCategory: Data`, e.g. a pull) when
/// `data_event`.
pub fn build(call: &CallRecord, data_event: bool, fallback_account: &str) -> TrailRow {
    let account = recipient(call, fallback_account);
    let claimed_key = call.claimed_access_key_id.as_deref();
    let (identity, username) = user_identity(call.caller.as_ref(), claimed_key);
    let event_id = uuid::Uuid::new_v4().to_string();
    let resources = resources(&call.event_source, &call.event_name, call.request_parameters.as_ref());
    let request_parameters = call
        .request_parameters
        .as_ref()
        .map(redact::request_parameters)
        .unwrap_or(Value::Null);
    // Read-only calls' answers are not recorded (CloudTrail leaves them
    // null too); a write's only when small.
    let response_elements = match (&call.response_elements, call.read_only) {
        (Some(v), false) => redact::response_elements(v),
        _ => Value::Null,
    };
    let mut r = Map::new();
    r.insert("eventVersion".into(), json!(EVENT_VERSION));
    r.insert("userIdentity".into(), identity);
    r.insert("eventTime".into(), json!(event_time(call.time_ms)));
    r.insert("eventSource".into(), json!(call.event_source));
    r.insert("eventName".into(), json!(call.event_name));
    r.insert("awsRegion".into(), json!(call.aws_region));
    r.insert(
        "sourceIPAddress".into(),
        json!(call
            .source_ip
            .map_or_else(|| "unknown".to_string(), |ip| ip.to_string())),
    );
    r.insert(
        "userAgent".into(),
        json!(redact::clip(call.user_agent.as_deref().unwrap_or(""), 1024)),
    );
    if let Some(code) = &call.error_code {
        r.insert("errorCode".into(), json!(code));
        r.insert(
            "errorMessage".into(),
            json!(redact::clip(call.error_message.as_deref().unwrap_or(""), 1024)),
        );
    }
    r.insert("requestParameters".into(), request_parameters);
    r.insert("responseElements".into(), response_elements);
    r.insert("requestID".into(), json!(call.request_id));
    r.insert("eventID".into(), json!(event_id));
    r.insert("readOnly".into(), json!(call.read_only));
    if !resources.is_empty() {
        let list: Vec<Value> = resources
            .iter()
            .map(|(kind, name)| json!({"accountId": account, "type": kind, "ARN": resource_arn(call, &account, kind, name)}))
            .collect();
        r.insert("resources".into(), Value::Array(list));
    }
    r.insert("eventType".into(), json!("AwsApiCall"));
    r.insert("managementEvent".into(), json!(!data_event));
    r.insert("recipientAccountId".into(), json!(account));
    r.insert(
        "eventCategory".into(),
        json!(if data_event { "Data" } else { "Management" }),
    );
    TrailRow {
        event_id,
        account,
        event_time: call.time_ms,
        event_name: call.event_name.clone(),
        event_source: call.event_source.clone(),
        username,
        access_key_id: call
            .caller
            .as_ref()
            .map(|c| c.access_key_id.clone())
            .or_else(|| claimed_key.map(|k| redact::clip(k, 128))),
        read_only: call.read_only,
        resources,
        record: Value::Object(r).to_string(),
    }
}

/// The ARN of a resource a record names.
fn resource_arn(call: &CallRecord, account: &str, kind: &str, name: &str) -> String {
    if name.starts_with("arn:") {
        return name.to_string();
    }
    let region = &call.aws_region;
    match kind {
        "AWS::ECR::Repository" => format!("arn:aws:ecr:{region}:{account}:repository/{name}"),
        "AWS::ECR::PublicRepository" => format!("arn:aws:ecr-public::{account}:repository/{name}"),
        "AWS::IAM::User" => format!("arn:aws:iam::{account}:user/{name}"),
        "AWS::IAM::Role" => format!("arn:aws:iam::{account}:role/{name}"),
        "AWS::IAM::Group" => format!("arn:aws:iam::{account}:group/{name}"),
        "AWS::SecretsManager::Secret" => format!("arn:aws:secretsmanager:{region}:{account}:secret:{name}"),
        "AWS::Events::Rule" => format!("arn:aws:events:{region}:{account}:rule/{name}"),
        "AWS::Events::Connection" => format!("arn:aws:events:{region}:{account}:connection/{name}"),
        "AWS::Events::ApiDestination" => format!("arn:aws:events:{region}:{account}:api-destination/{name}"),
        _ => name.to_string(),
    }
}
