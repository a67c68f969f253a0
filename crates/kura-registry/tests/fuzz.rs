//! Fuzz targets `endpoint` and `query`: the data plane's path parser
//! (`endpoint::parse`) and its query parsing, which see every `/v2/`
//! request.
//!
//! Properties: `endpoint::parse` never panics, and whatever it accepts names
//! a valid repository; a path built from the grammar parses to the endpoint
//! it was built as, and percent-encoding any of its characters (other than
//! the `/` separators) does not change the result, since the grammar is over
//! decoded segments. Through the router (`app()` over real stores), an
//! arbitrary query on any endpoint never gets a 5xx or a non-OCI error body,
//! and spelling the same query with percent-encoded keys and values gets the
//! same status: one decoding, whatever the spelling.
//!
//! `cargo test --release -p kura-registry --test fuzz` runs the quick CI
//! cases; `KURA_FUZZ_SECS=600` runs each target for ten minutes.

#[path = "../../kura-oci/tests/support/fuzz_runner.rs"]
mod fuzz_runner;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use fuzz_runner::fuzz;
use http_body_util::BodyExt;
use kura_oci::{Digest, RepoName};
use kura_registry::endpoint::{self, Endpoint};
use kura_registry::{app, Registry, RegistryConfig};
use kura_store::FsBlobStore;
use proptest::prelude::*;
use tower::ServiceExt;

const WORDS: &[&str] = &[
    "v2",
    "blobs",
    "uploads",
    "manifests",
    "tags",
    "list",
    "referrers",
    "_catalog",
    "..",
    ".",
    "",
    "%2F",
    "%2f",
    "%2e",
    "%2E%2E",
    "%00",
    "%",
    "%zz",
    "a",
    "b-c",
    "x.y",
    "sha256:",
    "%3A",
    "latest",
    "\u{e9}",
    "A",
];

fn arbitrary_path() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,120}",
        "/v2/[ -~]{0,120}",
        proptest::collection::vec(proptest::sample::select(WORDS), 0..10).prop_map(|w| format!("/v2/{}", w.join("/"))),
    ]
}

/// A repository name by the spec's grammar.
fn repo_name() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z0-9]{1,6}(([._]|__|-{1,2})[a-z0-9]{1,4})?", 1..4).prop_map(|c| c.join("/"))
}

fn digest() -> impl Strategy<Value = String> {
    "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}"))
}

/// A valid endpoint and its path.
fn valid() -> impl Strategy<Value = (Endpoint, String)> {
    (
        repo_name(),
        0u8..7,
        "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}",
        digest(),
        "[A-Za-z0-9-]{1,30}",
    )
        .prop_map(|(name, kind, tag, digest, id)| {
            let n: RepoName = name.parse().expect("generated names are valid");
            match kind {
                0 => (Endpoint::Tags(n), format!("/v2/{name}/tags/list")),
                1 => (
                    Endpoint::Manifest(n, tag.clone()),
                    format!("/v2/{name}/manifests/{tag}"),
                ),
                2 => (
                    Endpoint::Manifest(n, digest.clone()),
                    format!("/v2/{name}/manifests/{digest}"),
                ),
                3 => (Endpoint::Blob(n, digest.clone()), format!("/v2/{name}/blobs/{digest}")),
                4 => (Endpoint::UploadStart(n), format!("/v2/{name}/blobs/uploads/")),
                5 => (
                    Endpoint::Upload(n, id.clone()),
                    format!("/v2/{name}/blobs/uploads/{id}"),
                ),
                _ => (
                    Endpoint::Referrers(n, digest.clone()),
                    format!("/v2/{name}/referrers/{digest}"),
                ),
            }
        })
}

/// Percent-encode the characters `mask` picks (never a `/`), in upper- or
/// lowercase hex.
fn encode_some(path: &str, mask: &[bool], lower: bool) -> String {
    let mut out = String::new();
    for (i, c) in path.chars().enumerate() {
        if c != '/' && mask.get(i % mask.len().max(1)).copied().unwrap_or(false) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                if lower {
                    out.push_str(&format!("%{b:02x}"));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn endpoint_name(e: &Endpoint) -> Option<&RepoName> {
    match e {
        Endpoint::Base | Endpoint::Catalog => None,
        Endpoint::Tags(n)
        | Endpoint::Manifest(n, _)
        | Endpoint::Blob(n, _)
        | Endpoint::UploadStart(n)
        | Endpoint::Upload(n, _)
        | Endpoint::Referrers(n, _) => Some(n),
    }
}

#[test]
fn endpoint_arbitrary_paths_never_panic() {
    fuzz("endpoint/arbitrary", 1000, arbitrary_path(), |path| {
        if let Ok(e) = endpoint::parse(&path) {
            if let Some(n) = endpoint_name(&e) {
                prop_assert!(n.as_str().parse::<RepoName>().is_ok(), "{path} gave the name {n:?}");
            }
        }
        Ok(())
    });
}

#[test]
fn endpoint_encoded_paths_parse_like_decoded() {
    fuzz(
        "endpoint/encoded",
        1000,
        (valid(), proptest::collection::vec(any::<bool>(), 1..16), any::<bool>()),
        |((expected, path), mask, lower)| {
            let parsed = endpoint::parse(&path).map_err(|e| TestCaseError::fail(format!("{path}: {e:?}")))?;
            prop_assert_eq!(&parsed, &expected);
            let encoded = encode_some(&path["/v2/".len()..], &mask, lower);
            let encoded = format!("/v2/{encoded}");
            let again = endpoint::parse(&encoded).map_err(|e| TestCaseError::fail(format!("{encoded}: {e:?}")))?;
            prop_assert_eq!(again, expected, "{} vs {}", encoded, path);
            Ok(())
        },
    );
}

/// A registry over real stores with one repository holding one blob.
struct Fixture {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    blob: String,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let app = rt.block_on(async {
            let meta = kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await;
            let blobs = FsBlobStore::open(dir.path().join("blobs"))
                .await
                .unwrap()
                .without_fsync();
            app(Arc::new(Registry::new(
                Arc::new(meta),
                Arc::new(blobs),
                // A long run opens far more upload sessions than the default
                // cap; the cap is not what this target checks.
                RegistryConfig {
                    max_uploads_per_repo: 0,
                    max_uploads_per_principal: 0,
                    ..RegistryConfig::default()
                },
            )))
        });
        let mut f = Fixture {
            rt,
            app,
            blob: String::new(),
            _dir: dir,
        };
        let data = b"fuzz blob";
        let d = Digest::sha256(data).to_string();
        let (s, h, _) = f.call(Method::POST, "/v2/repo/blobs/uploads/", Vec::new());
        assert_eq!(s, StatusCode::ACCEPTED);
        let (s, _, _) = f.call(Method::PUT, &format!("{}?digest={d}", h.unwrap()), data.to_vec());
        assert_eq!(s, StatusCode::CREATED);
        f.blob = d;
        f
    }

    fn call(&self, method: Method, uri: &str, body: Vec<u8>) -> (StatusCode, Option<String>, Vec<u8>) {
        self.rt.block_on(async {
            let req = Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::from(body))
                .unwrap();
            let resp = self.app.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
            (status, location, body)
        })
    }
}

/// One query parameter, as words the handlers read or arbitrary text.
fn param() -> impl Strategy<Value = (String, String)> {
    let key = prop_oneof![
        4 => proptest::sample::select(vec!["n", "last", "mount", "from", "digest", "artifactType", "tag", "N", ""]).prop_map(str::to_string),
        1 => "[ -~]{0,8}",
    ];
    let value = prop_oneof![
        Just("BLOB".to_string()),
        Just("repo".to_string()),
        Just("other".to_string()),
        "[0-9]{0,12}",
        "-?[0-9]{1,25}",
        "[ -~]{0,16}",
        ".{0,8}",
    ];
    (key, value)
}

/// Encode a key or value for a query string: `mask` picks characters to
/// percent-encode even when they need not be.
fn query_part(s: &str, mask: &[bool]) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        let must = !(c.is_ascii_alphanumeric() || "-._~:".contains(c));
        if must || mask.get(i % mask.len().max(1)).copied().unwrap_or(false) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn query_router_never_fails_and_decodes_once() {
    let f = Fixture::new();
    fuzz(
        "query",
        300,
        (
            0u8..6,
            proptest::collection::vec(param(), 0..5),
            proptest::collection::vec(any::<bool>(), 1..8),
            proptest::option::of("[ -~]{0,40}"),
        ),
        |(kind, params, mask, raw)| {
            let (method, path) = match kind {
                0 => (Method::GET, "/v2/repo/tags/list".to_string()),
                1 => (Method::GET, "/v2/_catalog".to_string()),
                2 => (Method::POST, "/v2/repo/blobs/uploads/".to_string()),
                3 => (Method::GET, format!("/v2/repo/referrers/{}", f.blob)),
                4 => (Method::PUT, "/v2/repo/blobs/uploads/no-such-upload".to_string()),
                _ => (Method::GET, "/v2/repo/manifests/latest".to_string()),
            };
            let params: Vec<(String, String)> = params
                .into_iter()
                .map(|(k, v)| (k, if v == "BLOB" { f.blob.clone() } else { v }))
                .collect();
            let plain: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{}={}", query_part(k, &[false]), query_part(v, &[false])))
                .collect();
            let spelled: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{}={}", query_part(k, &mask), query_part(v, &mask)))
                .collect();
            let mut statuses = Vec::new();
            for q in [plain.join("&"), spelled.join("&"), raw.unwrap_or_default()] {
                let uri = format!("{path}?{q}");
                if uri.parse::<http::Uri>().is_err() {
                    continue;
                }
                let (status, _, body) = f.call(method.clone(), &uri, Vec::new());
                prop_assert!(
                    !status.is_server_error(),
                    "{method} {uri}: {status} {}",
                    String::from_utf8_lossy(&body)
                );
                if status.is_client_error() {
                    let v: serde_json::Value = serde_json::from_slice(&body)
                        .map_err(|_| TestCaseError::fail(format!("{method} {uri}: not JSON: {body:?}")))?;
                    prop_assert!(v["errors"][0]["code"].is_string(), "{method} {uri}: {v}");
                }
                statuses.push(status);
            }
            if statuses.len() >= 2 {
                prop_assert_eq!(statuses[0], statuses[1], "{} {:?} {:?}", method, plain, spelled);
            }
            Ok(())
        },
    );
}
