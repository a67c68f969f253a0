//! Deployments of Kura in one test process: each has its own store, blob
//! store and region, serves the federation routes on a loopback port, and
//! runs the replicate job in its own job runner.

#![allow(dead_code)] // each test crate uses part of it
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kura_authz::Authz;
use kura_registry::service::Body;
use kura_registry::{Actor, Registry, RegistryConfig};
use kura_replication::federation::FederationKey;
use kura_replication::job::Replicator;
use kura_replication::peer::Peers;
use kura_replication::server::FederationServer;
use kura_replication::ReplicationConfiguration;
use kura_store::replication::ReplStatusRow;
use kura_store::{ControlStore, FsBlobStore, IamStore, MetaStore, ReplicationStore, SqlMetaStore};

pub const A: &str = "111111111111";
pub const B: &str = "222222222222";

pub fn key(byte: u8) -> FederationKey {
    FederationKey::from_bytes(&[byte; 48]).unwrap()
}

pub struct Deployment {
    pub region: String,
    pub store: Arc<SqlMetaStore>,
    pub registry: Arc<Registry>,
    pub replicator: Arc<Replicator>,
    pub url: String,
    /// Bytes the federation routes received in upload PATCH bodies.
    pub patched: Arc<AtomicU64>,
    /// Upload PATCH requests the federation routes received.
    pub patches: Arc<AtomicU64>,
    /// Every image event the registry emitted.
    pub seen: Arc<Seen>,
    runner: Option<kura_jobs::RunnerHandle>,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Deployment {
    /// A deployment of `region` with accounts A and B, a federation `key`, and `peers`.
    pub async fn start(region: &str, key: Option<FederationKey>, peers: BTreeMap<String, String>) -> Deployment {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Deployment::start_on(region, key, peers, listener).await
    }

    pub async fn start_on(
        region: &str,
        key: Option<FederationKey>,
        peers: BTreeMap<String, String>,
        listener: tokio::net::TcpListener,
    ) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await);
        store.account_ensure(A).await.unwrap();
        store.account_ensure(B).await.unwrap();
        let blobs = blob_store(dir.path()).await;
        let config = RegistryConfig {
            default_account: A.into(),
            create_on_push: true,
            ..RegistryConfig::default()
        };
        let registry = Arc::new(Registry::new(store.clone(), blobs, config));
        let authz = Arc::new(Authz::new(store.clone(), store.clone(), region));
        let queue = kura_jobs::Queue::new(store.clone());
        let peers = Peers::new(region, peers, key.clone(), Duration::from_secs(5));
        let replicator = Replicator::new(
            registry.clone(),
            authz.clone(),
            store.clone(),
            store.clone(),
            queue.clone(),
            peers,
            Duration::from_millis(50),
        );
        registry.subscribe(replicator.clone());
        replicator.record_to(store.clone());
        let seen = Arc::new(Seen::default());
        registry.subscribe(seen.clone());
        let server = FederationServer::new(registry.clone(), authz, store.clone(), key);
        server.record_to(store.clone());
        let patched = Arc::new(AtomicU64::new(0));
        let counter = patched.clone();
        let patches = Arc::new(AtomicU64::new(0));
        let requests0 = patches.clone();
        let app = kura_replication::server::router(server).layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let counter = counter.clone();
                let requests = requests0.clone();
                async move {
                    if req.method() == http::Method::PATCH {
                        let n: u64 = req
                            .headers()
                            .get("content-length")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        counter.fetch_add(n, Ordering::SeqCst);
                        requests.fetch_add(1, Ordering::SeqCst);
                    }
                    next.run(req).await
                }
            },
        ));
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let mut runner = kura_jobs::Runner::new(
            queue,
            kura_jobs::RunnerConfig {
                poll: Duration::from_millis(50),
                ..Default::default()
            },
        );
        runner.register(replicator.clone());
        Deployment {
            region: region.into(),
            store,
            registry,
            replicator,
            url,
            patched,
            patches,
            seen,
            runner: Some(runner.start()),
            server,
            _dir: dir,
        }
    }

    /// Stop serving (the port closes) and stop the runner.
    pub async fn stop(mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
        if let Some(r) = self.runner.take() {
            r.shutdown().await;
        }
    }

    pub async fn configure(&self, account: &str, json: &str) {
        let c: ReplicationConfiguration = serde_json::from_str(json).unwrap();
        c.validate(&self.region, account).unwrap();
        c.store(self.store.as_ref(), account).await.unwrap();
    }

    pub async fn allow_replication_from(&self, account: &str, source: &str) {
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "replication",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{source}:root")},
                "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
                "Resource": format!("arn:aws:ecr:{}:{account}:repository/*", self.region),
            }]
        });
        self.store
            .resource_policy_put(&kura_authz::registry_arn(&self.region, account), &policy.to_string())
            .await
            .unwrap();
    }

    pub async fn push_blob(&self, account: &str, repo: &str, data: &[u8]) -> String {
        let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data)));
        let name = repo.parse().unwrap();
        let bytes = bytes::Bytes::copy_from_slice(data);
        let body: Body = futures::stream::once(async move { Ok::<_, std::io::Error>(bytes) }).boxed();
        self.registry
            .start_upload(
                account,
                &name,
                None,
                Some(&digest),
                &Actor::service(account, "test"),
                body,
            )
            .await
            .unwrap();
        digest
    }

    /// Push an image (config + layers) under `tag`; its manifest digest and bytes.
    pub async fn push_image(&self, account: &str, repo: &str, tag: &str, layers: &[&[u8]]) -> (String, Vec<u8>) {
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"tag\":\"{tag}\",\"n\":{}}}",
            layers.len()
        );
        let cd = self.push_blob(account, repo, config.as_bytes()).await;
        let mut ls = Vec::new();
        for l in layers {
            let d = self.push_blob(account, repo, l).await;
            ls.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": l.len()}));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": ls,
        });
        // Pretty-printed: byte-exact replication keeps the whitespace.
        let body = serde_json::to_vec_pretty(&manifest).unwrap();
        let d = self
            .put_manifest(account, repo, tag, &body, "application/vnd.oci.image.manifest.v1+json")
            .await;
        (d, body)
    }

    pub async fn put_manifest(
        &self,
        account: &str,
        repo: &str,
        reference: &str,
        body: &[u8],
        media_type: &str,
    ) -> String {
        let name = repo.parse().unwrap();
        let out = self
            .registry
            .put_manifest(
                account,
                &name,
                reference,
                &[],
                Some(media_type),
                body.to_vec(),
                &Actor::service(account, "test"),
            )
            .await
            .unwrap();
        out.digest.to_string()
    }

    pub async fn repo_id(&self, account: &str, repo: &str) -> Option<i64> {
        self.store.repo_get(account, repo).await.unwrap().map(|r| r.id)
    }

    /// The manifest bytes stored under `reference` (tag or digest).
    pub async fn manifest(&self, account: &str, repo: &str, reference: &str) -> Option<Vec<u8>> {
        let id = self.repo_id(account, repo).await?;
        let key = if reference.contains(':') {
            kura_store::meta::ManifestKey::Digest(reference)
        } else {
            kura_store::meta::ManifestKey::Tag(reference)
        };
        self.store.manifest_get(id, key).await.unwrap().map(|m| m.body)
    }

    /// Wait until the image's status for `(region, registry)` is not IN_PROGRESS without a failure code… or `want`.
    pub async fn wait_status(
        &self,
        account: &str,
        repo: &str,
        digest: &str,
        region: &str,
        registry: &str,
        want: &str,
    ) -> ReplStatusRow {
        let id = self.repo_id(account, repo).await.unwrap();
        let mut last = None;
        for _ in 0..400 {
            let rows = self.store.repl_status_list(id, digest).await.unwrap();
            if let Some(r) = rows
                .into_iter()
                .find(|r| r.region == region && r.registry_id == registry)
            {
                if r.status == want {
                    return r;
                }
                last = Some(r);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("status never became {want}; last: {last:?}");
    }
}

/// The S3 store (a fresh prefix) when `KURA_TEST_S3_ENDPOINT` names a
/// server (`scripts/with-postgres-s3` sets it), else the filesystem.
async fn blob_store(dir: &std::path::Path) -> Arc<dyn kura_store::BlobStore> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match var("KURA_TEST_S3_ENDPOINT") {
        Some(endpoint) => Arc::new(
            kura_store::S3BlobStore::new(&kura_store::S3Config {
                bucket: var("KURA_TEST_S3_BUCKET").expect("KURA_TEST_S3_BUCKET"),
                prefix: format!("repl-{}", uuid::Uuid::new_v4().simple()),
                endpoint: Some(endpoint),
                region: "us-east-1".into(),
                access_key_id: var("KURA_TEST_S3_ACCESS_KEY_ID"),
                secret_access_key: var("KURA_TEST_S3_SECRET_ACCESS_KEY"),
                virtual_hosted: None,
                buffer_budget: 64 << 20,
            })
            .unwrap(),
        ),
        None => {
            if var("KURA_REQUIRE_S3").as_deref() == Some("1") {
                panic!("KURA_REQUIRE_S3=1 but KURA_TEST_S3_ENDPOINT is not set");
            }
            Arc::new(FsBlobStore::open(dir.join("blobs")).await.unwrap())
        }
    }
}

/// Records the registry's events.
#[derive(Default)]
pub struct Seen(pub std::sync::Mutex<Vec<kura_registry::ImageEvent>>);

#[async_trait::async_trait]
impl kura_registry::EventListener for Seen {
    async fn on_event(&self, e: &kura_registry::ImageEvent) {
        self.0.lock().unwrap().push(e.clone());
    }
}

impl Deployment {
    /// The audit trail's `ReplicateImage` records of `account` (their JSON).
    pub async fn replication_records(&self, account: &str) -> Vec<serde_json::Value> {
        use kura_store::audit::{AuditStore, TrailFilter, TrailQuery};
        let q = TrailQuery {
            account: account.into(),
            filter: TrailFilter::EventName("ReplicateImage".into()),
            start_ms: 0,
            end_ms: i64::MAX,
            before: None,
            limit: 100,
        };
        self.store
            .trail_lookup(&q)
            .await
            .unwrap()
            .into_iter()
            .map(|e| serde_json::from_str(&e.row.record).unwrap())
            .collect()
    }
}

pub fn peers(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter().map(|(r, u)| (r.to_string(), u.to_string())).collect()
}

pub fn random(n: usize, seed: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(x as u8);
    }
    v
}
