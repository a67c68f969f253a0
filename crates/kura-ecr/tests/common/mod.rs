//! The application as `kura serve` assembles it (crates/kura/src/main.rs),
//! over SQLite and the filesystem in a temp dir, with a known root key.

use std::sync::Arc;

use kura_auth::seal::MasterKey;
use kura_ecr::auth::{bootstrap, BootstrapEnv};
use kura_ecr::templates::TemplateProvisioner;
use kura_ecr::{Ecr, EcrConfig};
use kura_registry::{Registry, RegistryConfig};
use kura_store::{FsBlobStore, SqlMetaStore};

pub const ACCOUNT: &str = "123456789012";
pub const KEY_ID: &str = "AKIAKURATESTROOTKEY1";
pub const SECRET: &str = "kuraTestSecretKey/0123456789abcdefghijKLM";
pub const REGION: &str = "us-east-1";

/// A running-ready application and what the tests need to know of it.
pub struct Server {
    #[allow(dead_code)] // tests that assemble the app themselves leave it
    pub app: axum::Router,
    /// The key that signs registry tokens and download URLs.
    #[allow(dead_code)] // each test crate compiles this module; not all read it
    pub token_key: Vec<u8>,
    #[allow(dead_code)] // kept alive for the server's lifetime
    pub dir: tempfile::TempDir,
    /// The service, for tests that call it directly.
    #[allow(dead_code)]
    pub ecr: Arc<Ecr>,
    /// The store behind it.
    #[allow(dead_code)]
    pub store: Arc<SqlMetaStore>,
    /// The data-plane service (for tests that assemble the app themselves).
    #[allow(dead_code)]
    pub registry: Arc<Registry>,
}

/// `X-Amz-Date` (`YYYYMMDD'T'HHMMSS'Z'`, UTC) for a time.
#[allow(dead_code)]
pub fn amz_date(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    kura_iam::format_rfc3339(secs).replace(['-', ':'], "")
}

/// Sign a `POST /` with SigV4 at time `at`: sets `x-amz-date` and
/// `authorization` in `headers` (which must hold `host`).
#[allow(dead_code)]
pub fn sign_post(
    headers: &mut http::HeaderMap,
    body: &[u8],
    (key_id, secret): (&str, &str),
    region: &str,
    service: &str,
    at: std::time::SystemTime,
) {
    use sha2::Digest as _;
    headers.insert("x-amz-date", amz_date(at).parse().unwrap());
    let payload = hex::encode(sha2::Sha256::digest(body));
    let auth = kura_auth::sigv4::sign(
        &kura_auth::sigv4::RequestParts {
            method: "POST",
            path: "/",
            query: None,
            headers,
            payload_sha256: &payload,
        },
        key_id,
        secret,
        region,
        service,
    )
    .unwrap();
    headers.insert("authorization", auth.parse().unwrap());
}

#[allow(dead_code)]
pub async fn server() -> Server {
    server_with(|_| {}).await
}

/// The server with its ECR configuration adjusted first.
pub async fn server_with(configure: impl FnOnce(&mut EcrConfig)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let meta = kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await;
    meta.clear_upload_leases().await.unwrap();
    let blobs = FsBlobStore::open(dir.path().join("blobs")).await.unwrap();
    let meta = Arc::new(meta);
    let master = MasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
    let env = BootstrapEnv {
        account_id: Some(ACCOUNT.into()),
        root_access_key_id: Some(KEY_ID.into()),
        root_secret_access_key: Some(SECRET.into()),
    };
    let boot = bootstrap(meta.as_ref(), &master, &env).await.unwrap();
    assert_eq!(boot.default_account, ACCOUNT);
    assert!(boot.created_root_key.is_none(), "a supplied key is not 'created'");
    let provisioner = Arc::new(TemplateProvisioner {
        meta: meta.clone(),
        control: meta.clone(),
        region: REGION.into(),
    });
    let config = RegistryConfig {
        default_account: boot.default_account.clone(),
        create_on_push: false,
        ..RegistryConfig::default()
    };
    let registry = Arc::new(Registry::new(meta.clone(), Arc::new(blobs), config).with_provisioner(provisioner));
    let token_key = boot.token_key.clone();
    let mut config = EcrConfig::new(REGION, &boot.default_account);
    configure(&mut config);
    let ecr = Arc::new(Ecr::new(
        kura_ecr::Stores::all(meta.clone()),
        registry.clone(),
        master,
        boot.token_key,
        config,
        kura_ecr::scanning::ScanSettings::default(),
    ));
    Server {
        app: kura_ecr::app(ecr.clone(), registry.clone()),
        registry,
        token_key,
        dir,
        ecr,
        store: meta,
    }
}
