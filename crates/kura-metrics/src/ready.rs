//! Readiness: `/readyz` answers 200 when the metadata database answers and
//! is at this build's schema version and the blob store answers, else 503
//! with a JSON body naming what is wrong. (`/healthz` only says the process
//! serves HTTP.) Each probe gives up after a few seconds.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kura_oci::Digest;
use kura_store::{BlobStore, SqlMetaStore};
use serde_json::json;

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What `/readyz` checks (give it the blob store before
/// [`crate::blobs::timed`]: probes are not traffic, and on S3 the probe's
/// first key form is refused as invalid).
#[derive(Clone)]
pub struct Probes {
    pub meta: Arc<SqlMetaStore>,
    pub blobs: Arc<dyn BlobStore>,
}

/// The outcome of one round of probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub database: Result<i64, String>,
    pub migrated: bool,
    pub blob_store: Result<(), String>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.database.is_ok() && self.migrated && self.blob_store.is_ok()
    }

    /// Why it is not ready, for people.
    pub fn reason(&self) -> Option<String> {
        let mut why = Vec::new();
        if let Err(e) = &self.database {
            why.push(format!("the metadata database is unreachable: {e}"));
        } else if !self.migrated {
            why.push(format!(
                "the metadata database is at schema version {}, this Kura needs {}",
                self.database.as_ref().copied().unwrap_or_default(),
                SqlMetaStore::expected_schema_version()
            ));
        }
        if let Err(e) = &self.blob_store {
            why.push(format!("the blob store is unreachable: {e}"));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

/// A storage key no blob has (the all-zero digest) in the filesystem
/// store's form: a `stat` of it is one round trip to the store that
/// answers "absent" when the store is fine.
fn fs_probe_key() -> String {
    let zero = Digest::from_str(&format!("sha256:{}", "0".repeat(64))).expect("a valid digest");
    kura_store::FsBlobStore::key_for(&zero, "readyz-probe")
}

/// The same in the S3 store's form (`blobs/<id>`).
const S3_PROBE_KEY: &str = "blobs/kura-readyz-probe";

/// `stat` a key no blob has, in whichever key form the store takes.
async fn probe_blobs(blobs: &dyn BlobStore) -> kura_store::error::Result<()> {
    match blobs.stat(&fs_probe_key()).await {
        Err(kura_store::StoreError::Invalid(_)) => blobs.stat(S3_PROBE_KEY).await.map(|_| ()),
        r => r.map(|_| ()),
    }
}

impl Probes {
    /// Run the probes now.
    pub async fn check(&self) -> Readiness {
        let (db, blob) = tokio::join!(
            tokio::time::timeout(PROBE_TIMEOUT, self.meta.schema_version()),
            tokio::time::timeout(PROBE_TIMEOUT, probe_blobs(self.blobs.as_ref())),
        );
        let database = match db {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
        };
        let migrated = matches!(database, Ok(v) if v == SqlMetaStore::expected_schema_version());
        let blob_store = match blob {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
        };
        Readiness {
            database,
            migrated,
            blob_store,
        }
    }
}

/// `GET /readyz`.
pub async fn readyz(State(p): State<Probes>) -> Response {
    let r = p.check().await;
    let check = |ok: bool| if ok { "ok" } else { "failed" };
    let mut body = json!({
        "status": if r.ready() { "ready" } else { "unavailable" },
        "checks": {
            "database": check(r.database.is_ok()),
            "migrations": check(r.migrated),
            "blobStore": check(r.blob_store.is_ok()),
        },
        "schemaVersion": r.database.as_ref().ok(),
        "expectedSchemaVersion": SqlMetaStore::expected_schema_version(),
    });
    let status = if let Some(reason) = r.reason() {
        tracing::warn!(%reason, "not ready");
        body["reason"] = json!(reason);
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}
