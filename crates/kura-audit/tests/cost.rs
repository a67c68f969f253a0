//! What recording costs (not run by default; prints figures):
//! `cargo test --release -p kura-audit --test cost -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use kura_audit::{AuditRecorder, CallRecord, Caller, RecorderOptions};
use kura_store::SqlMetaStore;
use serde_json::json;

fn call(i: usize) -> CallRecord {
    CallRecord {
        time_ms: kura_store::now_millis(),
        event_source: "ecr.amazonaws.com".into(),
        event_name: "CompleteLayerUpload".into(),
        aws_region: "us-east-1".into(),
        caller: Some(Caller {
            account: "123456789012".into(),
            principal_arn: "arn:aws:iam::123456789012:root".into(),
            principal_id: "123456789012".into(),
            access_key_id: "AKIAROOT".into(),
            token_issued_at: None,
        }),
        source_ip: Some(std::net::IpAddr::from([127, 0, 0, 1])),
        user_agent: Some("containers/5.0 (github.com/containers/image)".into()),
        request_parameters: Some(
            json!({"repositoryName": "bench/app", "registryId": "123456789012", "uploadId": format!("u-{i}")}),
        ),
        request_id: uuid_like(i),
        claimed_access_key_id: None,
        response_elements: None,
        error_code: None,
        error_message: None,
        read_only: false,
        status: 200,
    }
}

fn uuid_like(i: usize) -> String {
    format!("00000000-0000-0000-0000-{i:012}")
}

/// Figures: one caller at a time (every record its own transaction: the
/// worst case), then 32 callers at once (group commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn record_cost() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqlMetaStore::open(dir.path().join("meta.db")).await.unwrap());
    let rec = Arc::new(AuditRecorder::start(
        store.clone(),
        RecorderOptions::new("123456789012"),
    ));
    let n = 2000;
    let t = Instant::now();
    for i in 0..n {
        rec.record(&call(i)).await;
    }
    let serial = t.elapsed();
    let before = rec.stats().batches.load(std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let rec = rec.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..n / 32 {
                rec.record(&call(n + w * 1000 + i)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let concurrent = t.elapsed();
    let batches = rec.stats().batches.load(std::sync::atomic::Ordering::Relaxed) - before;
    println!(
        "serial: {n} records in {:?} ({:.1} µs each); 32 concurrent callers: {} records in {:?} ({:.1} µs each, {batches} transactions)",
        serial,
        serial.as_micros() as f64 / n as f64,
        n / 32 * 32,
        concurrent,
        concurrent.as_micros() as f64 / (n / 32 * 32) as f64,
    );
}
