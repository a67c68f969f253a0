//! The pull-through cache rule suite ([`kura_store::PullThroughRuleStore`],
//! schema 16), on SQLite and, when `KURA_TEST_DATABASE_URL` names a server,
//! PostgreSQL.

use kura_store::ptc_rules::{PtcCreate, PtcRuleRow};
use kura_store::{PullThroughRuleStore, SqliteMetaStore};

const A: &str = "111111111111";
const B: &str = "222222222222";

fn row(account: &str, prefix: &str) -> PtcRuleRow {
    PtcRuleRow {
        account: account.into(),
        prefix: prefix.into(),
        upstream_url: "quay.io".into(),
        upstream_registry: Some("quay".into()),
        credential_arn: None,
        custom_role_arn: None,
        upstream_prefix: Some("mirror".into()),
        created_at: 10,
        updated_at: 10,
    }
}

async fn rules(s: &dyn PullThroughRuleStore) {
    assert_eq!(s.ptc_rule_create(&row(A, "hub"), 3).await.unwrap(), PtcCreate::Created);
    assert_eq!(s.ptc_rule_create(&row(A, "hub"), 3).await.unwrap(), PtcCreate::Exists);
    assert_eq!(s.ptc_rule_create(&row(A, "ROOT"), 3).await.unwrap(), PtcCreate::Created);
    assert_eq!(s.ptc_rule_create(&row(A, "gh"), 3).await.unwrap(), PtcCreate::Created);
    assert_eq!(
        s.ptc_rule_create(&row(A, "more"), 3).await.unwrap(),
        PtcCreate::LimitExceeded
    );
    // The same prefix in another account is another rule, with its own quota.
    assert_eq!(s.ptc_rule_create(&row(B, "hub"), 3).await.unwrap(), PtcCreate::Created);

    let all: Vec<String> = s
        .ptc_rule_list(A, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.prefix)
        .collect();
    assert_eq!(all, ["ROOT", "gh", "hub"]);
    let after: Vec<String> = s
        .ptc_rule_list(A, Some("ROOT"), 1)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.prefix)
        .collect();
    assert_eq!(after, ["gh"]);
    assert_eq!(s.ptc_rule_get(A, "hub").await.unwrap().unwrap(), row(A, "hub"));
    assert!(s.ptc_rule_get(A, "nope").await.unwrap().is_none());

    // Update sets what is given and keeps the rest.
    let arn = "arn:aws:secretsmanager:us-east-1:111111111111:secret:ecr-pullthroughcache/x";
    let u = s.ptc_rule_update(A, "hub", Some(arn), None).await.unwrap().unwrap();
    assert_eq!(u.credential_arn.as_deref(), Some(arn));
    assert_eq!(u.upstream_prefix.as_deref(), Some("mirror"));
    assert!(u.updated_at > u.created_at);
    let u = s
        .ptc_rule_update(A, "hub", None, Some("arn:aws:iam::111111111111:role/r"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.credential_arn.as_deref(), Some(arn));
    assert_eq!(u.custom_role_arn.as_deref(), Some("arn:aws:iam::111111111111:role/r"));
    assert!(s.ptc_rule_update(A, "nope", Some(arn), None).await.unwrap().is_none());
    // B's rule of the same prefix is untouched.
    assert_eq!(s.ptc_rule_get(B, "hub").await.unwrap().unwrap(), row(B, "hub"));

    let d = s.ptc_rule_delete(A, "hub").await.unwrap().unwrap();
    assert_eq!(d.credential_arn.as_deref(), Some(arn));
    assert!(s.ptc_rule_delete(A, "hub").await.unwrap().is_none());
    assert!(s.ptc_rule_get(B, "hub").await.unwrap().is_some());
    // Room again under the quota.
    assert_eq!(s.ptc_rule_create(&row(A, "more"), 3).await.unwrap(), PtcCreate::Created);
}

#[tokio::test]
async fn sqlite_rules() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteMetaStore::open(dir.path().join("meta.db")).await.unwrap();
    rules(&s).await;
}

#[tokio::test]
async fn postgres_rules() {
    if let Some(s) = kura_store::testdb::postgres("postgres_ptc_rules").await {
        rules(&s).await;
    }
}
