//! What authorization costs per request, over the real SQLite store:
//!
//! - `evaluate`: one decision (`Ecr::evaluate`) for the account root, and for
//!   a user whose policies come from an inline policy, an AWS managed policy
//!   and two groups (each with an inline and a managed policy), against a
//!   repository with a repository policy, with and without a tag condition
//!   (which makes the decision read the repository's tags);
//! - `data plane`: a whole `HEAD /v2/<name>/blobs/<digest>` through the app
//!   (token check, authorization, the registry's lookup) for each caller.
//!
//! Prints the median and p99 in microseconds. Run with
//! `cargo bench -p kura-ecr --bench authz`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Method, Request};
use base64::Engine;
use kura_auth::token::{self, TokenClaims};
use kura_ecr::authz::{repository_arn, Access};
use kura_store::control::AccessKeyRow;
use kura_store::iam::{kind, rel, IamEntity};
use kura_store::{ControlStore, IamStore, MetaStore};
use tower::ServiceExt;

#[path = "../tests/common/mod.rs"]
mod common;

use common::{ACCOUNT, REGION};

const ITERS: usize = 2000;

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(v[v.len() / 2]), us(v[v.len() * 99 / 100]))
}

async fn entity(s: &common::Server, k: &str, name: &str) {
    s.store
        .iam_entity_create(&IamEntity {
            account: ACCOUNT.into(),
            kind: k.into(),
            name: name.into(),
            id: format!("AIDA{}", name.to_uppercase()),
            path: "/".into(),
            arn: format!("arn:aws:iam::{ACCOUNT}:{k}/{name}"),
            body: "{}".into(),
            created_at: 0,
        })
        .await
        .unwrap();
}

#[tokio::main]
async fn main() {
    let s = common::server().await;
    s.store
        .repo_create(ACCOUNT, "team/app", &Default::default())
        .await
        .unwrap();
    let repo_arn = repository_arn(REGION, ACCOUNT, "team/app");
    s.store
        .resource_policy_put(
            &repo_arn,
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::210987654321:root"},"Action":"ecr:BatchGetImage"}]}"#,
        )
        .await
        .unwrap();
    s.store
        .resource_tags_put(&repo_arn, &[("env".into(), "dev".into())])
        .await
        .unwrap();
    entity(&s, kind::USER, "dev").await;
    let pull = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:BatchGetImage","ecr:BatchCheckLayerAvailability","ecr:GetDownloadUrlForLayer"],"Resource":"arn:aws:ecr:*:*:repository/team/*"}]}"#;
    s.store
        .iam_inline_put(ACCOUNT, kind::USER, "dev", "pull", pull)
        .await
        .unwrap();
    s.store
        .iam_link_add(
            ACCOUNT,
            rel::ATTACHED,
            kind::USER,
            "dev",
            kura_iam::AMAZON_EC2_CONTAINER_REGISTRY_READ_ONLY,
        )
        .await
        .unwrap();
    for g in ["g1", "g2"] {
        entity(&s, kind::GROUP, g).await;
        s.store
            .iam_inline_put(ACCOUNT, kind::GROUP, g, "pull", pull)
            .await
            .unwrap();
        s.store
            .iam_link_add(
                ACCOUNT,
                rel::ATTACHED,
                kind::GROUP,
                g,
                kura_iam::AMAZON_EC2_CONTAINER_REGISTRY_POWER_USER,
            )
            .await
            .unwrap();
        s.store
            .iam_link_add(ACCOUNT, rel::MEMBER, kind::USER, "dev", g)
            .await
            .unwrap();
    }
    let user_arn = format!("arn:aws:iam::{ACCOUNT}:user/dev");
    s.store
        .access_key_put(&AccessKeyRow {
            access_key_id: "AKIABENCHDEV".into(),
            account: ACCOUNT.into(),
            principal_arn: user_arn.clone(),
            principal_id: "AIDADEV".into(),
            secret_sealed: vec![0],
            status: "Active".into(),
            session_token_hash: None,
            expires_at: None,
            created_at: 0,
        })
        .await
        .unwrap();
    let root = s.ecr.principal_by_id(ACCOUNT, ACCOUNT).await.unwrap();
    let user = s.ecr.principal_by_id(ACCOUNT, "AIDADEV").await.unwrap();

    println!("authorization cost, {ITERS} iterations each (median / p99, microseconds)");
    let access = Access::repository("ecr:BatchGetImage", REGION, ACCOUNT, "team/app");
    for (label, p) in [("root", &root), ("user: 6 policies, 2 groups", &user)] {
        let mut t = Vec::with_capacity(ITERS);
        for _ in 0..ITERS {
            let start = Instant::now();
            let e = s.ecr.evaluate(p, &access, None).await.unwrap();
            t.push(start.elapsed());
            assert!(e.is_allowed());
        }
        let (med, p99) = stats(t);
        println!("  evaluate, {label:<28} {med:>8.1} / {p99:>8.1}");
    }
    // A tag condition makes the decision read the repository's tags.
    let deny_prod = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"ecr:PutImage","Resource":"*","Condition":{"StringEquals":{"ecr:ResourceTag/env":"prod"}}}]}"#;
    s.store
        .iam_inline_put(ACCOUNT, kind::USER, "dev", "deny-prod", deny_prod)
        .await
        .unwrap();
    let mut t = Vec::with_capacity(ITERS);
    for _ in 0..ITERS {
        let start = Instant::now();
        let e = s.ecr.evaluate(&user, &access, None).await.unwrap();
        t.push(start.elapsed());
        assert!(e.is_allowed());
    }
    let (med, p99) = stats(t);
    println!("  evaluate, {:<28} {med:>8.1} / {p99:>8.1}", "user + tag condition");

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    for (label, arn, key) in [
        (
            "root",
            format!("arn:aws:iam::{ACCOUNT}:root"),
            common::KEY_ID.to_string(),
        ),
        ("user + tag condition", user_arn.clone(), "AKIABENCHDEV".to_string()),
    ] {
        let claims = TokenClaims {
            account: ACCOUNT.into(),
            principal_arn: arn,
            access_key_id: key,
            issued_at: now,
            expires_at: now + 3600,
        };
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", token::issue(&s.token_key, &claims)))
        );
        let mut t = Vec::with_capacity(ITERS);
        for _ in 0..ITERS {
            let req = Request::builder()
                .method(Method::HEAD)
                .uri(format!("/v2/team/app/blobs/sha256:{}", "0".repeat(64)))
                .header("host", "localhost")
                .header("authorization", &auth)
                .body(Body::empty())
                .unwrap();
            let start = Instant::now();
            let resp = s.app.clone().oneshot(req).await.unwrap();
            t.push(start.elapsed());
            assert_eq!(resp.status(), 404);
        }
        let (med, p99) = stats(t);
        println!("  data plane HEAD blob, {label:<18} {med:>8.1} / {p99:>8.1}");
    }
}
