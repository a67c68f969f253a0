//! Router tests without a socket: every endpoint and error path of the data
//! plane, through `app()` and `oneshot`, over real SQLite and filesystem stores
//! in a temp dir.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use kura_oci::{Algorithm, Digest};
use kura_registry::{app, Registry, RegistryConfig};
use kura_store::FsBlobStore;
use serde_json::{json, Value};
use tower::ServiceExt;

struct T {
    app: Router,
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }
    /// Assert an OCI error body with this code and status.
    fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "body: {}", String::from_utf8_lossy(&self.body));
        let v = self.json();
        let e = &v["errors"][0];
        assert_eq!(e["code"], code, "{v}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(e.get("detail").is_some(), "{v}");
        assert_eq!(self.h("content-type"), Some("application/json"));
    }
}

async fn setup() -> T {
    let dir = tempfile::tempdir().unwrap();
    let meta = kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await;
    let blobs = FsBlobStore::open(dir.path().join("blobs"))
        .await
        .unwrap()
        .without_fsync();
    let reg = Registry::new(Arc::new(meta), Arc::new(blobs), RegistryConfig::default());
    T {
        app: app(Arc::new(reg)),
        dir: dir.path().to_path_buf(),
        _dir: dir,
    }
}

impl T {
    async fn req(&self, method: Method, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = self.app.clone().oneshot(b.body(body.into()).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        assert_eq!(headers.get("docker-distribution-api-version").unwrap(), "registry/2.0");
        Resp { status, headers, body }
    }

    async fn get(&self, uri: &str) -> Resp {
        self.req(Method::GET, uri, &[], Body::empty()).await
    }

    /// Push a blob with POST + PUT; returns its digest.
    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = Digest::sha256(data).to_string();
        let r = self
            .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"), &[], Body::empty())
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        let loc = r.h("location").unwrap().to_string();
        let r = self
            .req(Method::PUT, &format!("{loc}?digest={d}"), &[], data.to_vec())
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
        d
    }

    /// Push a config + one layer and an OCI manifest under `tag`; returns the manifest digest and body.
    async fn push_image(&self, repo: &str, tag: &str, seed: &str) -> (String, Vec<u8>) {
        let cfg = format!("{{\"seed\":\"{seed}\"}}");
        let layer = format!("layer-{seed}").repeat(100);
        let c = self.push_blob(repo, cfg.as_bytes()).await;
        let l = self.push_blob(repo, layer.as_bytes()).await;
        let m = manifest(&c, cfg.len(), &[(&l, layer.len())], None);
        let r = self
            .put_manifest(repo, tag, &m, "application/vnd.oci.image.manifest.v1+json")
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
        (r.h("docker-content-digest").unwrap().to_string(), m)
    }

    async fn put_manifest(&self, repo: &str, reference: &str, body: &[u8], ct: &str) -> Resp {
        self.req(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", ct)],
            body.to_vec(),
        )
        .await
    }
}

fn manifest(config: &str, config_size: usize, layers: &[(&str, usize)], subject: Option<(&str, usize)>) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": layers.iter().map(|(d, s)| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s})).collect::<Vec<_>>(),
    });
    if let Some((d, s)) = subject {
        m["subject"] = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": s});
    }
    serde_json::to_vec(&m).unwrap()
}

#[tokio::test]
async fn base_and_unknown_paths() {
    let t = setup().await;
    let r = t.get("/v2/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({}));
    assert_eq!(
        t.req(Method::HEAD, "/v2/", &[], Body::empty()).await.status,
        StatusCode::OK
    );
    t.get("/v2/foo/bar")
        .await
        .assert_error(StatusCode::NOT_FOUND, "UNSUPPORTED");
    t.get("/other").await.assert_error(StatusCode::NOT_FOUND, "UNSUPPORTED");
    t.req(Method::POST, "/v2/foo/tags/list", &[], Body::empty())
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
    assert_eq!(t.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn monolithic_push_and_pull_with_ranges() {
    let t = setup().await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let d = t.push_blob("team/app/api", &data).await;
    let r = t.get(&format!("/v2/team/app/api/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, data);
    assert_eq!(r.h("docker-content-digest"), Some(d.as_str()));
    assert_eq!(r.h("content-length"), Some("100000"));
    assert_eq!(r.h("content-type"), Some("application/octet-stream"));

    let r = t
        .req(Method::HEAD, &format!("/v2/team/app/api/blobs/{d}"), &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    assert_eq!(r.h("content-length"), Some("100000"));

    let r = t
        .req(
            Method::GET,
            &format!("/v2/team/app/api/blobs/{d}"),
            &[("range", "bytes=10-19")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, &data[10..20]);
    assert_eq!(r.h("content-range"), Some("bytes 10-19/100000"));
    let r = t
        .req(
            Method::GET,
            &format!("/v2/team/app/api/blobs/{d}"),
            &[("range", "bytes=-5")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.body, &data[99_995..]);
    let r = t
        .req(
            Method::GET,
            &format!("/v2/team/app/api/blobs/{d}"),
            &[("range", "bytes=200000-")],
            Body::empty(),
        )
        .await;
    r.assert_error(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID");
    assert_eq!(r.h("content-range"), Some("bytes */100000"));

    // Not visible in another repository without a mount.
    t.push_blob("other", b"x").await;
    t.get(&format!("/v2/other/blobs/{d}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
    t.get(&format!("/v2/nosuchrepo/blobs/{d}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    t.get("/v2/other/blobs/sha256:abc")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
}

#[tokio::test]
async fn single_post_and_sha512() {
    let t = setup().await;
    let d = Digest::sha256(b"hello").to_string();
    let r = t
        .req(
            Method::POST,
            &format!("/v2/r/blobs/uploads/?digest={d}"),
            &[],
            &b"hello"[..],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.h("location"), Some(format!("/v2/r/blobs/{d}").as_str()));
    assert_eq!(t.get(&format!("/v2/r/blobs/{d}")).await.body, b"hello");

    let d512 = Digest::of(Algorithm::Sha512, b"five-twelve").to_string();
    let r = t
        .req(
            Method::POST,
            &format!("/v2/r/blobs/uploads/?digest={d512}"),
            &[],
            &b"five-twelve"[..],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(t.get(&format!("/v2/r/blobs/{d512}")).await.body, b"five-twelve");

    // sha512 after a chunked upload that streamed as sha256.
    let body = b"chunked-then-sha512";
    let d512 = Digest::of(Algorithm::Sha512, body).to_string();
    let r = t.req(Method::POST, "/v2/r/blobs/uploads/", &[], Body::empty()).await;
    let loc = r.h("location").unwrap().to_string();
    let r = t
        .req(Method::PATCH, &loc, &[("content-range", "0-6")], &body[..7])
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = t
        .req(Method::PUT, &format!("{loc}?digest={d512}"), &[], &body[7..])
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(t.get(&format!("/v2/r/blobs/{d512}")).await.body, body);
}

#[tokio::test]
async fn chunked_upload_status_order_and_cancel() {
    let t = setup().await;
    let data = b"0123456789abcdefghij".to_vec();
    let d = Digest::sha256(&data).to_string();
    let r = t.req(Method::POST, "/v2/c/blobs/uploads/", &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.h("range"), Some("0-0"));
    let loc = r.h("location").unwrap().to_string();
    let id = r.h("docker-upload-uuid").unwrap().to_string();
    assert!(loc.ends_with(&id));

    let r = t
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "0-9"), ("content-length", "10")],
            data[..10].to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.h("range"), Some("0-9"));

    // Out of order: 416 with the current range, nothing written.
    let r = t
        .req(Method::PATCH, &loc, &[("content-range", "15-19")], data[15..].to_vec())
        .await;
    r.assert_error(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID");
    assert_eq!(r.h("range"), Some("0-9"));
    // A repeated chunk is out of order too.
    let r = t
        .req(Method::PATCH, &loc, &[("content-range", "0-9")], data[..10].to_vec())
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    // Length mismatch.
    let r = t
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "10-14"), ("content-length", "4")],
            data[10..14].to_vec(),
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "SIZE_INVALID");
    let r = t
        .req(
            Method::PATCH,
            &loc,
            &[("content-range", "garbage")],
            data[10..14].to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);

    let r = t.get(&loc).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.h("range"), Some("0-9"));

    // A streamed PATCH without Content-Range appends.
    let r = t.req(Method::PATCH, &loc, &[], data[10..15].to_vec()).await;
    assert_eq!(r.h("range"), Some("0-14"));
    let r = t
        .req(
            Method::PUT,
            &format!("{loc}?digest={d}"),
            &[("content-range", "15-19")],
            data[15..].to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(t.get(&format!("/v2/c/blobs/{d}")).await.body, data);
    // The finished upload is gone.
    t.get(&loc)
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");

    // Cancel.
    let r = t.req(Method::POST, "/v2/c/blobs/uploads/", &[], Body::empty()).await;
    let loc = r.h("location").unwrap().to_string();
    t.req(Method::PATCH, &loc, &[], &b"abc"[..]).await;
    assert_eq!(
        t.req(Method::DELETE, &loc, &[], Body::empty()).await.status,
        StatusCode::NO_CONTENT
    );
    t.get(&loc)
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    t.req(Method::PATCH, &loc, &[], &b"abc"[..])
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    t.req(
        Method::PUT,
        "/v2/c/blobs/uploads/nosuchid?digest=sha256:0000000000000000000000000000000000000000000000000000000000000000",
        &[],
        Body::empty(),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    // An upload id used under another repository is unknown there.
    let r = t.req(Method::POST, "/v2/c/blobs/uploads/", &[], Body::empty()).await;
    let id = r.h("docker-upload-uuid").unwrap().to_string();
    t.push_blob("d", b"q").await;
    t.get(&format!("/v2/d/blobs/uploads/{id}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    t.req(Method::PATCH, &format!("/v2/d/blobs/uploads/{id}"), &[], &b"zz"[..])
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    // Path tricks in the upload id cannot reach the filesystem.
    let r = t
        .req(Method::PATCH, "/v2/c/blobs/uploads/..%2F..%2Fmeta.db", &[], &b"zz"[..])
        .await;
    r.assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn wrong_digest_and_missing_digest_store_nothing() {
    let t = setup().await;
    let wrong = Digest::sha256(b"something else").to_string();
    let r = t.req(Method::POST, "/v2/w/blobs/uploads/", &[], Body::empty()).await;
    let loc = r.h("location").unwrap().to_string();
    let r = t
        .req(Method::PUT, &format!("{loc}?digest={wrong}"), &[], &b"actual"[..])
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    t.get(&format!("/v2/w/blobs/{wrong}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
    let actual = Digest::sha256(b"actual").to_string();
    t.get(&format!("/v2/w/blobs/{actual}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
    // The session is over and its bytes gone.
    t.get(&loc)
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    let uploads: Vec<_> = std::fs::read_dir(t.dir.join("blobs/uploads")).unwrap().collect();
    assert!(uploads.is_empty(), "leftover upload files: {uploads:?}");

    let r = t
        .req(
            Method::POST,
            &format!("/v2/w/blobs/uploads/?digest={wrong}"),
            &[],
            &b"single"[..],
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    let r = t
        .req(
            Method::POST,
            "/v2/w/blobs/uploads/?digest=sha256:nothex",
            &[],
            &b"x"[..],
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");

    let r = t.req(Method::POST, "/v2/w/blobs/uploads/", &[], Body::empty()).await;
    let loc = r.h("location").unwrap().to_string();
    t.req(Method::PUT, &loc, &[], &b"x"[..])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
}

#[tokio::test]
async fn bad_names_are_refused() {
    let t = setup().await;
    let long = "a".repeat(300);
    for name in ["../x", "A", long.as_str(), "a/../b", "x/-y"] {
        for (m, suffix) in [
            (Method::POST, "blobs/uploads/"),
            (Method::GET, "tags/list"),
            (Method::PUT, "manifests/v1"),
        ] {
            let r = t.req(m.clone(), &format!("/v2/{name}/{suffix}"), &[], &b"{}"[..]).await;
            r.assert_error(StatusCode::BAD_REQUEST, "NAME_INVALID");
        }
    }
    // Nothing was created.
    assert_eq!(t.get("/v2/_catalog").await.json()["repositories"], json!([]));
}

#[tokio::test]
async fn mount_across_repositories() {
    let t = setup().await;
    let d = t.push_blob("src/repo", b"shared layer").await;
    let r = t
        .req(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src/repo"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.h("location"), Some(format!("/v2/dst/blobs/{d}").as_str()));
    assert_eq!(t.get(&format!("/v2/dst/blobs/{d}")).await.body, b"shared layer");
    // Unknown source, unknown blob, no from: a normal upload session.
    for q in [
        format!("mount={d}&from=nowhere"),
        format!("mount={}&from=src/repo", Digest::sha256(b"nope")),
        format!("mount={d}"),
    ] {
        let r = t
            .req(
                Method::POST,
                &format!("/v2/dst2/blobs/uploads/?{q}"),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{q}");
        assert!(r.h("location").unwrap().starts_with("/v2/dst2/blobs/uploads/"));
    }
}

#[tokio::test]
async fn manifests_push_pull_tags_and_deletes() {
    let t = setup().await;
    let (md, body) = t.push_image("app", "v1", "one").await;
    assert_eq!(md, Digest::sha256(&body).to_string());
    for reference in ["v1", md.as_str()] {
        let r = t.get(&format!("/v2/app/manifests/{reference}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, body, "byte-exact");
        assert_eq!(r.h("content-type"), Some("application/vnd.oci.image.manifest.v1+json"));
        assert_eq!(r.h("docker-content-digest"), Some(md.as_str()));
        let r = t
            .req(
                Method::HEAD,
                &format!("/v2/app/manifests/{reference}"),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.h("content-length"), Some(body.len().to_string().as_str()));
        assert!(r.body.is_empty());
    }
    // Same manifest pushed by digest, and with extra tags (?tag=).
    let r = t
        .put_manifest(
            "app",
            &format!("{md}?tag=a&tag=b"),
            &body,
            "application/vnd.oci.image.manifest.v1+json",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = t.get("/v2/app/tags/list").await;
    assert_eq!(r.json(), json!({"name": "app", "tags": ["a", "b", "v1"]}));

    // Delete a tag: manifest stays.
    assert_eq!(
        t.req(Method::DELETE, "/v2/app/manifests/a", &[], Body::empty())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    t.get("/v2/app/manifests/a")
        .await
        .assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    assert_eq!(t.get(&format!("/v2/app/manifests/{md}")).await.status, StatusCode::OK);
    t.req(Method::DELETE, "/v2/app/manifests/a", &[], Body::empty())
        .await
        .assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");

    // Delete by digest removes its tags.
    assert_eq!(
        t.req(Method::DELETE, &format!("/v2/app/manifests/{md}"), &[], Body::empty())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    t.get("/v2/app/manifests/v1")
        .await
        .assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    assert_eq!(t.get("/v2/app/tags/list").await.json()["tags"], json!([]));
    t.req(Method::DELETE, &format!("/v2/app/manifests/{md}"), &[], Body::empty())
        .await
        .assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");

    // Unknowns.
    t.get("/v2/app/manifests/nope")
        .await
        .assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    t.get("/v2/app/manifests/.INVALID")
        .await
        .assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    t.get("/v2/nosuch/manifests/v1")
        .await
        .assert_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    t.get("/v2/nosuch/tags/list")
        .await
        .assert_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");

    // Delete a blob from a repository.
    let d = t.push_blob("app", b"deletable").await;
    assert_eq!(
        t.req(Method::DELETE, &format!("/v2/app/blobs/{d}"), &[], Body::empty())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    t.get(&format!("/v2/app/blobs/{d}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
    t.req(Method::DELETE, &format!("/v2/app/blobs/{d}"), &[], Body::empty())
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn manifest_errors() {
    let t = setup().await;
    let c = t.push_blob("m", b"{}").await;
    let missing = Digest::sha256(b"never pushed").to_string();
    let body = manifest(&c, 2, &[(&missing, 12)], None);
    let r = t
        .put_manifest("m", "v1", &body, "application/vnd.oci.image.manifest.v1+json")
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(r.json()["errors"][0]["detail"]["blobs"][0], json!(missing));
    t.get("/v2/m/manifests/v1")
        .await
        .assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");

    for bad in [
        &b"{not json"[..],
        b"[1,2]",
        b"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"}",
        b"",
    ] {
        t.put_manifest("m", "v1", bad, "application/vnd.oci.image.manifest.v1+json")
            .await
            .assert_error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID");
    }
    let v1 = br#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws","name":"m","tag":"x","fsLayers":[]}"#;
    t.put_manifest(
        "m",
        "v1",
        v1,
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID");

    // Digest in the URL must match the body.
    let good = manifest(&c, 2, &[], None);
    t.put_manifest("m", &missing, &good, "application/vnd.oci.image.manifest.v1+json")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    t.put_manifest("m", "sha256:xyz", &good, "application/vnd.oci.image.manifest.v1+json")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    t.put_manifest("m", ".badtag", &good, "application/vnd.oci.image.manifest.v1+json")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "TAG_INVALID");
    t.put_manifest("m", "v1?tag=-bad", &good, "application/vnd.oci.image.manifest.v1+json")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "TAG_INVALID");

    // Over 4 MiB: 413, by Content-Length and by streamed size.
    let mut big = good.clone();
    big.truncate(big.len() - 1);
    big.extend_from_slice(b",\"annotations\":{\"pad\":\"");
    big.extend(std::iter::repeat_n(b'x', 4 * 1024 * 1024));
    big.extend_from_slice(b"\"}}");
    let r = t
        .put_manifest("m", "big", &big, "application/vnd.oci.image.manifest.v1+json")
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let stream = futures::stream::iter(
        big.chunks(65536)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let r = t
        .req(
            Method::PUT,
            "/v2/m/manifests/big",
            &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
            Body::from_stream(stream),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    t.get("/v2/m/manifests/big")
        .await
        .assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn helm_style_manifest_takes_media_type_from_content_type() {
    let t = setup().await;
    let cfg = t.push_blob("charts/demo", b"{\"name\":\"demo\"}").await;
    let chart = t.push_blob("charts/demo", b"chart-bytes").await;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": cfg, "size": 15},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "digest": chart, "size": 11}]
    }))
    .unwrap();
    let r = t
        .put_manifest(
            "charts/demo",
            "0.1.0",
            &body,
            "application/vnd.oci.image.manifest.v1+json",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = t.get("/v2/charts/demo/manifests/0.1.0").await;
    assert_eq!(r.h("content-type"), Some("application/vnd.oci.image.manifest.v1+json"));
    assert_eq!(r.body, body);
}

#[tokio::test]
async fn index_children_must_exist_and_stay() {
    let t = setup().await;
    let (a, abody) = t.push_image("multi", "amd64", "a").await;
    let (b, bbody) = t.push_image("multi", "arm64", "b").await;
    let idx = |children: &[(&str, usize, &str)]| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": children.iter().map(|(d, s, arch)| json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": s, "platform": {"architecture": arch, "os": "linux"}})).collect::<Vec<_>>()
        }))
        .unwrap()
    };
    let missing = Digest::sha256(b"no such manifest").to_string();
    let r = t
        .put_manifest(
            "multi",
            "latest",
            &idx(&[(&a, abody.len(), "amd64"), (&missing, 10, "arm64")]),
            "application/vnd.oci.image.index.v1+json",
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
    let body = idx(&[(&a, abody.len(), "amd64"), (&b, bbody.len(), "arm64")]);
    let r = t
        .put_manifest("multi", "latest", &body, "application/vnd.oci.image.index.v1+json")
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.h("docker-content-digest").unwrap().to_string();
    let r = t.get("/v2/multi/manifests/latest").await;
    assert_eq!(r.body, body);
    assert_eq!(r.h("content-type"), Some("application/vnd.oci.image.index.v1+json"));
    // A child of an index cannot be deleted out from under it.
    let r = t
        .req(Method::DELETE, &format!("/v2/multi/manifests/{a}"), &[], Body::empty())
        .await;
    r.assert_error(StatusCode::CONFLICT, "DENIED");
    assert_eq!(
        t.req(Method::DELETE, &format!("/v2/multi/manifests/{id}"), &[], Body::empty())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        t.req(Method::DELETE, &format!("/v2/multi/manifests/{a}"), &[], Body::empty())
            .await
            .status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn referrers_with_filter() {
    let t = setup().await;
    let (subject, sbody) = t.push_image("ref", "v1", "s").await;
    let cfg = t.push_blob("ref", b"{}").await;
    let sig = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg, "size": 2}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": sbody.len()},
        "annotations": {"org.example.kind": "sig"}
    }))
    .unwrap();
    let sig_digest = Digest::sha256(&sig).to_string();
    let r = t
        .put_manifest("ref", &sig_digest, &sig, "application/vnd.oci.image.manifest.v1+json")
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.h("oci-subject"), Some(subject.as_str()));
    let sbom_cfg = t.push_blob("ref", b"{\"sbom\":1}").await;
    let sbom = manifest(&sbom_cfg, 10, &[], Some((&subject, sbody.len())));
    let r = t
        .put_manifest("ref", "sbom", &sbom, "application/vnd.oci.image.manifest.v1+json")
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    let r = t.get(&format!("/v2/ref/referrers/{subject}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.h("content-type"), Some("application/vnd.oci.image.index.v1+json"));
    assert!(r.h("oci-filters-applied").is_none());
    let v = r.json();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
    let r = t
        .get(&format!(
            "/v2/ref/referrers/{subject}?artifactType=application/vnd.example.signature"
        ))
        .await;
    assert_eq!(r.h("oci-filters-applied"), Some("artifactType"));
    let v = r.json();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(v["manifests"][0]["digest"], json!(sig_digest));
    assert_eq!(v["manifests"][0]["artifactType"], "application/vnd.example.signature");
    assert_eq!(v["manifests"][0]["annotations"]["org.example.kind"], "sig");
    assert_eq!(v["manifests"][0]["size"], json!(sig.len()));
    // A subject with no referrers, and an unknown repository: an empty index.
    let none = Digest::sha256(b"lonely").to_string();
    assert_eq!(
        t.get(&format!("/v2/ref/referrers/{none}")).await.json()["manifests"],
        json!([])
    );
    assert_eq!(
        t.get(&format!("/v2/zzz/referrers/{none}")).await.json()["manifests"],
        json!([])
    );
    t.get("/v2/ref/referrers/notadigest")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
}

#[tokio::test]
async fn tag_and_catalog_pagination() {
    let t = setup().await;
    let (md, body) = t.push_image("p", "t0", "p").await;
    let tags = ["t1", "t2", "t3", "t4"]
        .iter()
        .map(|t| format!("tag={t}"))
        .collect::<Vec<_>>()
        .join("&");
    assert_eq!(
        t.put_manifest(
            "p",
            &format!("{md}?{tags}"),
            &body,
            "application/vnd.oci.image.manifest.v1+json"
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let r = t.get("/v2/p/tags/list?n=2").await;
    assert_eq!(r.json()["tags"], json!(["t0", "t1"]));
    assert_eq!(r.h("link"), Some("</v2/p/tags/list?n=2&last=t1>; rel=\"next\""));
    let r = t.get("/v2/p/tags/list?n=2&last=t1").await;
    assert_eq!(r.json()["tags"], json!(["t2", "t3"]));
    let r = t.get("/v2/p/tags/list?n=2&last=t3").await;
    assert_eq!(r.json()["tags"], json!(["t4"]));
    assert!(r.h("link").is_none());
    assert_eq!(t.get("/v2/p/tags/list?n=0").await.json()["tags"], json!([]));
    assert_eq!(
        t.get("/v2/p/tags/list?last=t2").await.json()["tags"],
        json!(["t3", "t4"])
    );
    assert_eq!(t.get("/v2/p/tags/list?n=x").await.status, StatusCode::BAD_REQUEST);

    for r in ["a/b", "c", "b"] {
        t.push_blob(r, b"x").await;
    }
    let r = t.get("/v2/_catalog?n=2").await;
    assert_eq!(r.json()["repositories"], json!(["a/b", "b"]));
    assert_eq!(r.h("link"), Some("</v2/_catalog?n=2&last=b>; rel=\"next\""));
    let r = t.get("/v2/_catalog?n=2&last=b").await;
    assert_eq!(r.json()["repositories"], json!(["c", "p"]));
    // A NUL in `last` (found by fuzzing: PostgreSQL refused the value and
    // the registry answered 500) pages as if `last` ended there, on every
    // engine: no name or tag holds a NUL.
    assert_eq!(
        t.get("/v2/p/tags/list?last=t2%00zz").await.json()["tags"],
        json!(["t3", "t4"])
    );
    assert_eq!(
        t.get("/v2/p/tags/list?last=%00").await.json()["tags"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    let r = t.get("/v2/_catalog?last=b%00").await;
    assert_eq!(r.json()["repositories"], json!(["c", "p"]));
}

#[tokio::test]
async fn docker_schema2_and_manifest_list() {
    let t = setup().await;
    let cfg = t.push_blob("d/img", b"{\"architecture\":\"amd64\"}").await;
    let layer = t.push_blob("d/img", b"gzip-ish").await;
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cfg, "size": 24},
        "layers": [
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer, "size": 8},
            {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": Digest::sha256(b"foreign").to_string(), "size": 7, "urls": ["https://example.invalid/layer"]}
        ]
    }))
    .unwrap();
    let r = t
        .put_manifest(
            "d/img",
            "v1",
            &m,
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "foreign layers need not be pushed: {}",
        String::from_utf8_lossy(&r.body)
    );
    let md = r.h("docker-content-digest").unwrap().to_string();
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": md, "size": m.len(), "platform": {"architecture": "amd64", "os": "linux"}}]
    }))
    .unwrap();
    let r = t
        .put_manifest(
            "d/img",
            "list",
            &list,
            "application/vnd.docker.distribution.manifest.list.v2+json",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = t.get("/v2/d/img/manifests/list").await;
    assert_eq!(
        r.h("content-type"),
        Some("application/vnd.docker.distribution.manifest.list.v2+json")
    );
    assert_eq!(r.body, list);
}

#[tokio::test]
async fn concurrent_pushes_of_one_tag_leave_one_complete_winner() {
    let t = setup().await;
    let mut bodies = Vec::new();
    let c = t.push_blob("race", b"{}").await;
    for i in 0..8 {
        let l = t.push_blob("race", format!("layer {i}").as_bytes()).await;
        bodies.push(manifest(&c, 2, &[(&l, format!("layer {i}").len())], None));
    }
    let mut tasks = Vec::new();
    for b in bodies.clone() {
        let app = t.app.clone();
        tasks.push(tokio::spawn(async move {
            let req = Request::put("/v2/race/manifests/latest")
                .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .body(Body::from(b))
                .unwrap();
            app.oneshot(req).await.unwrap().status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::CREATED);
    }
    let r = t.get("/v2/race/manifests/latest").await;
    assert!(
        bodies.contains(&r.body),
        "the tag points at one of the pushed manifests, byte-exact"
    );
    assert_eq!(
        r.h("docker-content-digest").unwrap(),
        Digest::sha256(&r.body).to_string()
    );
}

/// A filesystem store that presigns like S3 and, like S3 past one part,
/// cannot read back an unfinished upload.
struct Presigning(FsBlobStore);

#[async_trait::async_trait]
impl kura_store::BlobStore for Presigning {
    async fn begin(&self, id: &str) -> kura_store::error::Result<String> {
        self.0.begin(id).await
    }
    async fn append(
        &self,
        h: &str,
        offset: u64,
        data: kura_store::blob::BodyStream<'_>,
    ) -> kura_store::error::Result<(String, u64)> {
        self.0.append(h, offset, data).await
    }
    async fn read_upload(&self, _h: &str, _len: u64) -> kura_store::error::Result<kura_store::ByteStream> {
        Err(kura_store::StoreError::Unsupported("cannot read back parts".into()))
    }
    async fn commit(&self, h: &str, size: u64, d: &Digest) -> kura_store::error::Result<String> {
        self.0.commit(h, size, d).await
    }
    async fn abort(&self, h: &str) -> kura_store::error::Result<()> {
        self.0.abort(h).await
    }
    async fn read(&self, key: &str, range: Option<(u64, u64)>) -> kura_store::error::Result<kura_store::ByteStream> {
        self.0.read(key, range).await
    }
    async fn stat(&self, key: &str) -> kura_store::error::Result<Option<u64>> {
        self.0.stat(key).await
    }
    async fn delete(&self, key: &str) -> kura_store::error::Result<()> {
        self.0.delete(key).await
    }
    fn list_stored(&self, kind: kura_store::StoredKind) -> kura_store::blob::StoredStream<'_> {
        self.0.list_stored(kind)
    }
    async fn delete_stored(&self, o: &kura_store::StoredObject) -> kura_store::error::Result<()> {
        self.0.delete_stored(o).await
    }
    async fn presign_get(&self, key: &str, expires: std::time::Duration) -> kura_store::error::Result<Option<String>> {
        Ok(Some(format!(
            "https://blobs.example/{key}?expires={}",
            expires.as_secs()
        )))
    }
}

async fn setup_presigning(redirect: bool) -> T {
    let dir = tempfile::tempdir().unwrap();
    let meta = kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await;
    let fs = FsBlobStore::open(dir.path().join("blobs"))
        .await
        .unwrap()
        .without_fsync();
    let config = RegistryConfig {
        blob_redirect: redirect.then_some(std::time::Duration::from_secs(90)),
        ..RegistryConfig::default()
    };
    let reg = Registry::new(Arc::new(meta), Arc::new(Presigning(fs)), config);
    T {
        app: app(Arc::new(reg)),
        dir: dir.path().to_path_buf(),
        _dir: dir,
    }
}

#[tokio::test]
async fn blob_gets_redirect_to_presigned_urls_when_enabled() {
    let t = setup_presigning(true).await;
    let d = t.push_blob("r/app", b"redirected bytes").await;
    let r = t.get(&format!("/v2/r/app/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
    let loc = r.h("location").unwrap();
    assert!(
        loc.starts_with("https://blobs.example/") && loc.ends_with("?expires=90"),
        "{loc}"
    );
    assert_eq!(r.h("docker-content-digest"), Some(d.as_str()));
    // With a range too: the Range header travels to the store.
    let r = t
        .req(
            Method::GET,
            &format!("/v2/r/app/blobs/{d}"),
            &[("range", "bytes=0-3")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
    // HEAD is answered here; unknown blobs are still 404.
    let r = t
        .req(Method::HEAD, &format!("/v2/r/app/blobs/{d}"), &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.h("content-length"), Some("16"));
    let absent = Digest::sha256(b"absent");
    t.get(&format!("/v2/r/app/blobs/{absent}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");

    // Without the setting, Kura serves the bytes even if the store could presign.
    let t = setup_presigning(false).await;
    let d = t.push_blob("r/app", b"served bytes").await;
    let r = t.get(&format!("/v2/r/app/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, b"served bytes");
}

#[tokio::test]
async fn a_store_that_cannot_reread_an_upload_answers_unsupported() {
    let t = setup_presigning(false).await;
    let data = b"chunked, then sha512 at the end";
    let r = t
        .req(Method::POST, "/v2/r/app/blobs/uploads/", &[], Body::empty())
        .await;
    let loc = r.h("location").unwrap().to_string();
    let r = t.req(Method::PATCH, &loc, &[], data.to_vec()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let loc = r.h("location").unwrap().to_string();
    let d = Digest::of(Algorithm::Sha512, data);
    let r = t
        .req(Method::PUT, &format!("{loc}?digest={d}"), &[], Body::empty())
        .await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
    assert!(r.json()["errors"][0]["message"].as_str().unwrap().contains("sha256"));
    // The same content named as sha256 still finishes.
    let d = Digest::sha256(data);
    let r = t
        .req(Method::PUT, &format!("{loc}?digest={d}"), &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
}
