//! Fuzz target `secrets-ops`: any operation with any input the model lets through, on a
//! store that keeps its state across cases, never panics, never answers a 5xx, and never
//! leaves a secret with two `AWSCURRENT` versions. Inputs are drawn from the members and
//! values the operations read (names, full/partial/foreign ARNs, labels, tokens, values,
//! filters), so cases reach the handlers rather than the validator.
//!
//! `cargo test --release -p kura-secrets --test fuzz` runs the quick CI cases;
//! `KURA_FUZZ_SECS=600` runs it for that many seconds.

#[path = "../../kura-oci/tests/support/fuzz_runner.rs"]
mod fuzz_runner;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use fuzz_runner::fuzz;
use kura_auth::seal::MasterKey;
use kura_secrets::{Ctx, Secrets, OPERATIONS};
use kura_store::{SecretsStore, SqlMetaStore};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const A: &str = "111111111111";
const B: &str = "222222222222";

fn ids() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("s")),
        Just(json!("ecr-pullthroughcache/hub")),
        Just(json!("arn:aws:secretsmanager:us-east-1:111111111111:secret:s")),
        Just(json!("arn:aws:secretsmanager:us-east-1:222222222222:secret:s")),
        Just(json!("arn:aws:secretsmanager:eu-west-1:111111111111:secret:s")),
        Just(json!("arn:aws:secretsmanager:us-east-1:111111111111:secret:s-AbCdEf")),
        Just(json!("arn:aws:secretsmanager:x")),
        Just(json!("arn:")),
        "[a-z/_+=.@-]{1,12}".prop_map(Value::from),
        ".{1,20}".prop_map(Value::from),
    ]
}

fn tokens() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("11111111-1111-4111-8111-111111111111")),
        Just(json!("22222222-2222-4222-8222-222222222222")),
        "[0-9a-f]{32}".prop_map(Value::from),
    ]
}

fn labels() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("AWSCURRENT")),
        Just(json!("AWSPREVIOUS")),
        Just(json!("blue")),
        "[A-Za-z]{1,8}".prop_map(Value::from),
    ]
}

fn tags() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        ("[a-z:]{1,6}", "[a-z]{0,4}").prop_map(|(k, v)| json!({"Key": k, "Value": v})),
        0..4,
    )
    .prop_map(Value::from)
}

fn member() -> impl Strategy<Value = (String, Value)> {
    prop_oneof![
        ids().prop_map(|v| ("SecretId".to_string(), v)),
        ids().prop_map(|v| ("Name".to_string(), v)),
        ".{1,40}".prop_map(|v| ("SecretString".to_string(), Value::from(v))),
        prop_oneof![Just("AAEC"), Just("=="), Just("not base64")].prop_map(|v| ("SecretBinary".to_string(), json!(v))),
        tokens().prop_map(|v| ("ClientRequestToken".to_string(), v)),
        tokens().prop_map(|v| ("VersionId".to_string(), v)),
        labels().prop_map(|v| ("VersionStage".to_string(), v)),
        prop::collection::vec(labels(), 1..3).prop_map(|v| ("VersionStages".to_string(), Value::from(v))),
        (0i64..40).prop_map(|v| ("RecoveryWindowInDays".to_string(), json!(v))),
        any::<bool>().prop_map(|v| ("ForceDeleteWithoutRecovery".to_string(), json!(v))),
        any::<bool>().prop_map(|v| ("IncludePlannedDeletion".to_string(), json!(v))),
        any::<bool>().prop_map(|v| ("IncludeDeprecated".to_string(), json!(v))),
        ".{0,20}".prop_map(|v| ("Description".to_string(), Value::from(v))),
        prop_oneof![Just(""), Just("alias/aws/secretsmanager"), Just("k")]
            .prop_map(|v| ("KmsKeyId".to_string(), json!(v))),
        tags().prop_map(|v| ("Tags".to_string(), v)),
        prop::collection::vec("[a-z:]{1,6}", 1..3).prop_map(|v| ("TagKeys".to_string(), Value::from(v))),
        (1i64..5).prop_map(|v| ("MaxResults".to_string(), json!(v))),
        "[0-9a-f|]{0,20}".prop_map(|v| ("NextToken".to_string(), Value::from(v))),
        (
            prop_oneof![
                Just("name"),
                Just("description"),
                Just("tag-key"),
                Just("tag-value"),
                Just("all")
            ],
            prop::collection::vec("!?[a-z/ ]{0,6}", 1..3)
        )
            .prop_map(|(k, v)| ("Filters".to_string(), json!([{"Key": k, "Values": v}]))),
        prop_oneof![Just("name"), Just("created-date"), Just("last-changed-date")]
            .prop_map(|v| ("SortBy".to_string(), json!(v))),
        prop_oneof![Just("asc"), Just("desc")].prop_map(|v| ("SortOrder".to_string(), json!(v))),
    ]
}

#[test]
fn any_operation_on_any_input() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<SqlMetaStore> = Arc::new(rt.block_on(SqlMetaStore::open(dir.path().join("meta.db"))).unwrap());
    let sm = Secrets::new(store.clone(), MasterKey::generate(), "us-east-1");
    let model = kura_secrets::service::model();
    let strategy = (
        prop::sample::select(OPERATIONS.to_vec()),
        prop::collection::vec(member(), 0..12),
        any::<bool>(),
    );
    let (ran, succeeded) = (AtomicUsize::new(0), AtomicUsize::new(0));
    fuzz("secrets-ops", 512, strategy, |(op, members, as_b)| {
        // Only members the operation's shape defines (others are refused before any handler).
        let input = Value::Object(
            members
                .into_iter()
                .filter(|(k, _)| model.input_has(op, k))
                .collect::<Map<String, Value>>(),
        );
        if model.validate(op, &input).is_err() {
            return Ok(());
        }
        ran.fetch_add(1, Ordering::Relaxed);
        let account = if as_b { B } else { A };
        let out = rt.block_on(sm.call(Ctx::trusted(account), op, &input));
        match &out {
            Ok(_) => {
                succeeded.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => prop_assert!(e.status.as_u16() < 500, "{op} {input}: {e}"),
        }
        for acct in [A, B] {
            for s in rt.block_on(store.secrets_of(acct, 0)).unwrap() {
                let versions = rt.block_on(store.secret_versions(&s.arn)).unwrap();
                let current = versions.iter().filter(|v| v.stages.contains("\"AWSCURRENT\"")).count();
                prop_assert!(
                    current <= 1,
                    "{} has {current} AWSCURRENT versions after {op} {input}",
                    s.arn
                );
                prop_assert_eq!(&s.account, acct);
            }
        }
        Ok(())
    });
    let (ran, succeeded) = (ran.into_inner(), succeeded.into_inner());
    eprintln!("secrets-ops: {ran} cases reached an operation, {succeeded} succeeded");
    // The generator must reach the handlers, and some calls must succeed.
    assert!(ran >= 50 && succeeded >= 10, "{ran} {succeeded}");
}
