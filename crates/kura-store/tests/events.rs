//! The EventsStore suite, on SQLite and (with `KURA_TEST_DATABASE_URL`) PostgreSQL: name
//! uniqueness per account, paging with a name prefix, the refusal to delete a rule with
//! targets, the target limit, enabled rules with their targets, and the generation bump
//! that keeps delivery's rule cache fresh.

use kura_store::events::{EventResourceRow, RuleDelete, RuleRow, TargetRow, TargetsPut};
use kura_store::{EventsStore, SqlMetaStore};

fn rule(account: &str, name: &str, state: &str) -> RuleRow {
    RuleRow {
        account: account.into(),
        name: name.into(),
        pattern: r#"{"source":["aws.ecr"]}"#.into(),
        state: state.into(),
        description: None,
        created_at: 1,
        updated_at: 1,
    }
}

fn target(id: &str) -> TargetRow {
    TargetRow {
        id: id.into(),
        arn: format!("arn:aws:events:us-east-1:111111111111:api-destination/d/{id}"),
        body: "{}".into(),
    }
}

async fn suite(s: &dyn EventsStore) {
    let g0 = s.events_generation().await.unwrap();
    let a = "111111111111";
    let b = "222222222222";
    for n in ["prod-1", "prod-2", "dev-1"] {
        s.rule_put(&rule(a, n, "ENABLED")).await.unwrap();
    }
    s.rule_put(&rule(b, "prod-1", "ENABLED")).await.unwrap();
    assert!(s.events_generation().await.unwrap() > g0);

    // Update keeps the creation time.
    let mut r = rule(a, "prod-1", "DISABLED");
    r.created_at = 99;
    r.updated_at = 5;
    r.description = Some("d".into());
    let stored = s.rule_put(&r).await.unwrap();
    assert_eq!((stored.created_at, stored.updated_at), (1, 5));
    assert_eq!(stored.description.as_deref(), Some("d"));

    // Prefix and paging, per account.
    let page = s.rules_list(a, "prod", None, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].name, "prod-1");
    let page = s.rules_list(a, "prod", Some("prod-1"), 10).await.unwrap();
    assert_eq!(page.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["prod-2"]);
    assert_eq!(s.rules_list(a, "", None, 10).await.unwrap().len(), 3);
    assert_eq!(s.rules_list(b, "", None, 10).await.unwrap().len(), 1);
    assert!(s.rule_get(b, "dev-1").await.unwrap().is_none());

    // Targets: the rule must exist; the limit holds; delete is refused while targets remain.
    assert_eq!(
        s.targets_put(a, "nope", &[target("t1")], 5).await.unwrap(),
        TargetsPut::NoRule
    );
    assert_eq!(
        s.targets_put(a, "prod-2", &[target("t1"), target("t2")], 5)
            .await
            .unwrap(),
        TargetsPut::Done
    );
    assert_eq!(
        s.targets_put(
            a,
            "prod-2",
            &[target("t3"), target("t4"), target("t5"), target("t6")],
            5
        )
        .await
        .unwrap(),
        TargetsPut::TooMany
    );
    assert_eq!(
        s.targets_list(a, "prod-2").await.unwrap().len(),
        2,
        "a refused put stores nothing"
    );
    assert_eq!(s.rule_delete(a, "prod-2").await.unwrap(), RuleDelete::HasTargets);
    assert_eq!(s.rule_delete(a, "missing").await.unwrap(), RuleDelete::NotFound);

    // Enabled rules with targets only.
    s.targets_put(a, "prod-1", &[target("x")], 5).await.unwrap();
    let enabled = s.rules_enabled(a).await.unwrap();
    assert_eq!(enabled.len(), 1, "prod-1 is disabled, dev-1 has no targets");
    assert_eq!(enabled[0].0.name, "prod-2");
    assert_eq!(enabled[0].1.len(), 2);
    let g1 = s.events_generation().await.unwrap();
    assert!(s.rule_set_state(a, "prod-1", "ENABLED", 7).await.unwrap());
    assert!(s.events_generation().await.unwrap() > g1);
    assert!(!s.rule_set_state(a, "missing", "ENABLED", 7).await.unwrap());
    assert_eq!(s.rules_enabled(a).await.unwrap().len(), 2);
    assert!(s.rules_enabled(b).await.unwrap().is_empty());

    let removed = s
        .targets_remove(a, "prod-2", &["t1".into(), "t2".into(), "zz".into()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(removed, ["t1", "t2"]);
    assert!(s.targets_remove(a, "missing", &["t1".into()]).await.unwrap().is_none());
    assert_eq!(s.rule_delete(a, "prod-2").await.unwrap(), RuleDelete::Deleted);

    // Connections and API destinations.
    let res = |name: &str, kind: &str| EventResourceRow {
        account: a.into(),
        kind: kind.into(),
        name: name.into(),
        uuid: "u-1".into(),
        body: "{}".into(),
        secret: Some(vec![0, 1, 2, 255]),
        created_at: 1,
        updated_at: 1,
    };
    assert!(s.event_resource_create(&res("c1", "connection")).await.unwrap());
    assert!(!s.event_resource_create(&res("c1", "connection")).await.unwrap());
    assert!(s.event_resource_create(&res("c1", "api-destination")).await.unwrap());
    assert!(s.event_resource_create(&res("c2", "connection")).await.unwrap());
    let got = s.event_resource_get(a, "connection", "c1").await.unwrap().unwrap();
    assert_eq!(got.secret.as_deref(), Some(&[0u8, 1, 2, 255][..]));
    assert!(s.event_resource_get(b, "connection", "c1").await.unwrap().is_none());
    let list = s
        .event_resources_list(a, "connection", "c", Some("c1"), 10)
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert!(s.event_resource_delete(a, "connection", "c1").await.unwrap());
    assert!(!s.event_resource_delete(a, "connection", "c1").await.unwrap());
    assert!(s
        .event_resource_get(a, "api-destination", "c1")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn sqlite_events_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqlMetaStore::open(dir.path().join("meta.db")).await.unwrap();
    suite(&s).await;
}

#[tokio::test]
async fn postgres_events_store_conforms() {
    if let Some(s) = kura_store::testdb::postgres("postgres_events_store_conforms").await {
        suite(&s).await;
    }
}
