//! The real AWS SDK for Rust (`aws-sdk-ecr`, with a real hyper HTTP client)
//! against Kura served on a loopback socket: SigV4 as the SDK signs it, the
//! AWS JSON 1.1 protocol as the SDK parses it (epoch-second timestamps,
//! blobs, typed errors), and a push and pull through the layer API.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_ecr::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_sdk_ecr::primitives::{Blob, DateTime};
use aws_sdk_ecr::types::{ImageFailureCode, ImageIdentifier, LayerAvailability};
use aws_sdk_ecr::Client;
use base64::Engine;
use kura_oci::Digest;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

use common::{KEY_ID, REGION, SECRET};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Serve the app on 127.0.0.1:0; returns its address (the server task ends
/// with the test's runtime).
async fn serve() -> (std::net::SocketAddr, tempfile::TempDir) {
    let s = common::server().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, s.app).await.unwrap();
    });
    (addr, s.dir)
}

fn client(addr: std::net::SocketAddr, secret: &str) -> Client {
    // Plain HTTP over hyper: no TLS stack is compiled in.
    let http = aws_smithy_http_client::Builder::new().build_http();
    let conf = aws_sdk_ecr::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(KEY_ID, secret, None, None, "kura-test"))
        .endpoint_url(format!("http://{addr}"))
        .http_client(http)
        .build();
    Client::from_conf(conf)
}

fn secs(t: &DateTime) -> i64 {
    t.secs()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn assert_recent(t: Option<&DateTime>, what: &str) {
    let t = t.unwrap_or_else(|| panic!("{what} is missing"));
    assert!((now() - secs(t)).abs() < 120, "{what} = {t} is not now");
}

/// A raw HTTP/1.1 request over the socket (one connection, closed after);
/// returns the status and the head of the response.
async fn raw(addr: std::net::SocketAddr, method: &str, path: &str, auth: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    let head = text.split("\r\n\r\n").next().unwrap_or_default().to_string();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head)
}

async fn raw_get(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> u16 {
    raw(addr, "GET", path, auth, b"").await.0
}

/// Push one blob over the data plane (POST, then PUT with the bytes).
async fn push_blob(addr: std::net::SocketAddr, auth: &str, repo: &str, data: &[u8]) -> String {
    let digest = Digest::sha256(data).to_string();
    let (status, head) = raw(addr, "POST", &format!("/v2/{repo}/blobs/uploads/"), Some(auth), b"").await;
    assert_eq!(status, 202, "{head}");
    let location = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("location")))
        .map(|(_, v)| v.trim().to_string())
        .unwrap();
    let sep = if location.contains('?') { '&' } else { '?' };
    let (status, head) = raw(
        addr,
        "PUT",
        &format!("{location}{sep}digest={digest}"),
        Some(auth),
        data,
    )
    .await;
    assert_eq!(status, 201, "{head}");
    digest
}

fn image_manifest(config: &[u8], config_digest: &str, layer: &[u8], layer_digest: &str) -> String {
    serde_json::to_string(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap()
}

fn config_and_layer() -> (Vec<u8>, Vec<u8>) {
    let config = serde_json::to_vec(
        &json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}),
    )
    .unwrap();
    let layer: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    (config, layer)
}

/// Upload one blob through Initiate/UploadLayerPart/Complete, in parts of
/// `part` bytes; returns its digest.
async fn upload(ecr: &Client, repo: &str, data: &[u8], part: usize) -> String {
    let digest = Digest::sha256(data).to_string();
    let init = ecr.initiate_layer_upload().repository_name(repo).send().await.unwrap();
    let id = init.upload_id().unwrap().to_string();
    assert!(init.part_size().unwrap_or(0) > 0);
    for (i, chunk) in data.chunks(part).enumerate() {
        let first = (i * part) as i64;
        let last = first + chunk.len() as i64 - 1;
        let out = ecr
            .upload_layer_part()
            .repository_name(repo)
            .upload_id(&id)
            .part_first_byte(first)
            .part_last_byte(last)
            .layer_part_blob(Blob::new(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        assert_eq!(out.last_byte_received(), Some(last));
        assert_eq!(out.upload_id(), Some(id.as_str()));
    }
    let done = ecr
        .complete_layer_upload()
        .repository_name(repo)
        .upload_id(&id)
        .layer_digests(&digest)
        .send()
        .await
        .unwrap();
    assert_eq!(done.layer_digest(), Some(digest.as_str()));
    assert_eq!(done.repository_name(), Some(repo));
    digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_sdk_drives_the_ecr_api() {
    let (addr, _dir) = serve().await;
    let ecr = client(addr, SECRET);
    let repo = "sdk/app";

    // Repositories, with timestamps parsed by the SDK.
    let created = ecr.create_repository().repository_name(repo).send().await.unwrap();
    let r = created.repository().unwrap();
    assert_eq!(r.repository_name(), Some(repo));
    assert_eq!(r.registry_id(), Some(common::ACCOUNT));
    assert_recent(r.created_at(), "createdAt");
    let described = ecr.describe_repositories().send().await.unwrap();
    let repos = described.repositories();
    assert_eq!(repos.len(), 1);
    assert_eq!(repos[0].repository_name(), Some(repo));
    assert_eq!(repos[0].created_at(), r.created_at());
    assert_recent(repos[0].created_at(), "createdAt (describe)");

    // The registry login.
    let auth = ecr.get_authorization_token().send().await.unwrap();
    let data = &auth.authorization_data()[0];
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data.authorization_token().unwrap())
        .unwrap();
    let decoded = String::from_utf8(decoded).unwrap();
    let (user, password) = decoded.split_once(':').unwrap();
    assert_eq!(user, "AWS");
    assert!(!password.is_empty());
    let expires = secs(data.expires_at().expect("expiresAt parsed"));
    assert!(
        (expires - now() - 12 * 3600).abs() < 120,
        "expiresAt {expires} is 12 hours away"
    );
    assert_eq!(data.proxy_endpoint(), Some(format!("http://{addr}").as_str()));
    // The token opens the data plane on the same socket.
    let basic = format!("Basic {}", data.authorization_token().unwrap());
    assert_eq!(raw_get(addr, "/v2/", Some(&basic)).await, 200);
    assert_eq!(raw_get(addr, "/v2/", None).await, 401);

    // Push the blobs over the data plane (the layer API has its own test).
    let (config, layer) = config_and_layer();
    let config_digest = push_blob(addr, &basic, repo, &config).await;
    let layer_digest = push_blob(addr, &basic, repo, &layer).await;
    let avail = ecr
        .batch_check_layer_availability()
        .repository_name(repo)
        .layer_digests(&layer_digest)
        .layer_digests(Digest::sha256(b"absent").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(avail.layers().len(), 1);
    assert_eq!(
        avail.layers()[0].layer_availability(),
        Some(&LayerAvailability::Available)
    );
    assert_eq!(avail.layers()[0].layer_size(), Some(layer.len() as i64));
    assert_eq!(avail.failures().len(), 1);

    let manifest = image_manifest(&config, &config_digest, &layer, &layer_digest);
    let manifest_digest = Digest::sha256(manifest.as_bytes()).to_string();
    let put = ecr
        .put_image()
        .repository_name(repo)
        .image_manifest(&manifest)
        .image_manifest_media_type(MANIFEST_TYPE)
        .image_tag("v1")
        .send()
        .await
        .unwrap();
    let image = put.image().unwrap();
    assert_eq!(
        image.image_id().and_then(|i| i.image_digest()),
        Some(manifest_digest.as_str())
    );
    assert_eq!(image.image_id().and_then(|i| i.image_tag()), Some("v1"));
    // The same push again is refused with ECR's error.
    let again = ecr
        .put_image()
        .repository_name(repo)
        .image_manifest(&manifest)
        .image_tag("v1")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(again.is_image_already_exists_exception(), "{again:?}");

    // Describe, list, get.
    let images = ecr.describe_images().repository_name(repo).send().await.unwrap();
    let details = images.image_details();
    assert_eq!(details.len(), 1);
    let d = &details[0];
    assert_eq!(d.image_digest(), Some(manifest_digest.as_str()));
    assert_eq!(d.image_tags(), ["v1".to_string()]);
    assert_eq!(d.image_size_in_bytes(), Some((config.len() + layer.len()) as i64));
    assert_eq!(d.image_manifest_media_type(), Some(MANIFEST_TYPE));
    assert_recent(d.image_pushed_at(), "imagePushedAt");

    let listed = ecr.list_images().repository_name(repo).send().await.unwrap();
    let ids = listed.image_ids();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].image_digest(), Some(manifest_digest.as_str()));
    assert_eq!(ids[0].image_tag(), Some("v1"));

    let by_tag = ImageIdentifier::builder().image_tag("v1").build();
    let got = ecr
        .batch_get_image()
        .repository_name(repo)
        .image_ids(by_tag.clone())
        .image_ids(ImageIdentifier::builder().image_tag("missing").build())
        .accepted_media_types(MANIFEST_TYPE)
        .send()
        .await
        .unwrap();
    assert_eq!(got.images().len(), 1);
    assert_eq!(got.images()[0].image_manifest(), Some(manifest.as_str()));
    assert_eq!(
        got.images()[0].image_id().and_then(|i| i.image_digest()),
        Some(manifest_digest.as_str())
    );
    assert_eq!(got.failures().len(), 1);
    assert_eq!(got.failures()[0].failure_code(), Some(&ImageFailureCode::ImageNotFound));

    // The layer is downloadable through its URL, without credentials.
    let url = ecr
        .get_download_url_for_layer()
        .repository_name(repo)
        .layer_digest(&layer_digest)
        .send()
        .await
        .unwrap();
    let url = url.download_url().unwrap();
    let path = url.strip_prefix(&format!("http://{addr}")).unwrap();
    assert_eq!(raw_get(addr, path, None).await, 200);

    // Delete by tag: the image goes with its last tag.
    let deleted = ecr
        .batch_delete_image()
        .repository_name(repo)
        .image_ids(by_tag.clone())
        .image_ids(ImageIdentifier::builder().image_tag("missing").build())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.image_ids().len(), 1);
    assert_eq!(deleted.image_ids()[0].image_digest(), Some(manifest_digest.as_str()));
    assert_eq!(deleted.failures().len(), 1);
    assert_eq!(
        deleted.failures()[0].failure_code(),
        Some(&ImageFailureCode::ImageNotFound)
    );
    let images = ecr.describe_images().repository_name(repo).send().await.unwrap();
    assert!(images.image_details().is_empty());

    // Typed errors.
    let err = ecr
        .describe_repositories()
        .repository_names("does-not-exist")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_repository_not_found_exception(), "{err:?}");
    assert!(err.message().unwrap_or_default().contains("does-not-exist"));
    let err = ecr
        .create_repository()
        .repository_name(repo)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_repository_already_exists_exception(), "{err:?}");
    let err = ecr
        .create_repository()
        .repository_name("Not Valid")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameter_exception(), "{err:?}");
    let err = client(addr, "wrong secret")
        .describe_repositories()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");

    // A repository with an image needs force.
    ecr.put_image()
        .repository_name(repo)
        .image_manifest(&manifest)
        .image_tag("v2")
        .send()
        .await
        .unwrap();
    let err = ecr
        .delete_repository()
        .repository_name(repo)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_repository_not_empty_exception(), "{err:?}");
    let gone = ecr
        .delete_repository()
        .repository_name(repo)
        .force(true)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.repository().and_then(|r| r.repository_name()), Some(repo));
    assert_recent(gone.repository().and_then(|r| r.created_at()), "createdAt (delete)");
    assert!(ecr
        .describe_repositories()
        .send()
        .await
        .unwrap()
        .repositories()
        .is_empty());
    let err = ecr
        .list_images()
        .repository_name(repo)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_repository_not_found_exception(), "{err:?}");
}

/// InitiateLayerUpload / UploadLayerPart / CompleteLayerUpload, in one part
/// and in several, then PutImage of what was uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_sdk_pushes_through_the_layer_api() {
    let (addr, _dir) = serve().await;
    let ecr = client(addr, SECRET);
    let repo = "sdk/layers";
    ecr.create_repository().repository_name(repo).send().await.unwrap();
    let (config, layer) = config_and_layer();
    let config_digest = upload(&ecr, repo, &config, 1 << 20).await;
    let layer_digest = upload(&ecr, repo, &layer, 100_000).await;

    // A finished layer cannot be uploaded again.
    let init = ecr.initiate_layer_upload().repository_name(repo).send().await.unwrap();
    let id = init.upload_id().unwrap();
    ecr.upload_layer_part()
        .repository_name(repo)
        .upload_id(id)
        .part_first_byte(0)
        .part_last_byte(config.len() as i64 - 1)
        .layer_part_blob(Blob::new(config.clone()))
        .send()
        .await
        .unwrap();
    let err = ecr
        .complete_layer_upload()
        .repository_name(repo)
        .upload_id(id)
        .layer_digests(&config_digest)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_layer_already_exists_exception(), "{err:?}");

    // A part that does not start where the upload ends.
    let init = ecr.initiate_layer_upload().repository_name(repo).send().await.unwrap();
    let err = ecr
        .upload_layer_part()
        .repository_name(repo)
        .upload_id(init.upload_id().unwrap())
        .part_first_byte(10)
        .part_last_byte(19)
        .layer_part_blob(Blob::new(vec![0u8; 10]))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_layer_part_exception(), "{err:?}");

    let manifest = image_manifest(&config, &config_digest, &layer, &layer_digest);
    ecr.put_image()
        .repository_name(repo)
        .image_manifest(&manifest)
        .image_tag("v1")
        .send()
        .await
        .unwrap();
    let images = ecr.describe_images().repository_name(repo).send().await.unwrap();
    let d = &images.image_details()[0];
    assert_eq!(d.image_size_in_bytes(), Some((config.len() + layer.len()) as i64));
    assert_recent(d.image_pushed_at(), "imagePushedAt");
}

/// The operations built for issue 24 as the SDK parses them: pull-time update
/// exclusions (timestamps, typed errors, pagination), the signing
/// configuration (nested rules echoed, the not-found error typed), the
/// signing status of an image, and `lastEvaluatedAt` of a never-evaluated
/// lifecycle policy (epoch 0 parsed as a timestamp).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_sdk_parses_exclusions_and_signing() {
    use aws_sdk_ecr::types::{SigningConfiguration, SigningRepositoryFilter, SigningRepositoryFilterType, SigningRule};
    let (addr, _dir) = serve().await;
    let ecr = client(addr, SECRET);
    let acct = common::ACCOUNT;

    let role = format!("arn:aws:iam::{acct}:role/scanner");
    let reg = ecr
        .register_pull_time_update_exclusion()
        .principal_arn(&role)
        .send()
        .await
        .unwrap();
    assert_eq!(reg.principal_arn(), Some(role.as_str()));
    assert_recent(reg.created_at(), "createdAt");
    let err = ecr
        .register_pull_time_update_exclusion()
        .principal_arn(&role)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_exclusion_already_exists_exception(), "{err:?}");
    let user = format!("arn:aws:iam::{acct}:user/trivy");
    ecr.register_pull_time_update_exclusion()
        .principal_arn(&user)
        .send()
        .await
        .unwrap();
    let page = ecr
        .list_pull_time_update_exclusions()
        .max_results(1)
        .send()
        .await
        .unwrap();
    assert_eq!(page.pull_time_update_exclusions(), std::slice::from_ref(&role));
    let next = ecr
        .list_pull_time_update_exclusions()
        .max_results(1)
        .next_token(page.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(next.pull_time_update_exclusions(), std::slice::from_ref(&user));
    assert_eq!(next.next_token(), None);
    ecr.deregister_pull_time_update_exclusion()
        .principal_arn(&role)
        .send()
        .await
        .unwrap();
    let err = ecr
        .deregister_pull_time_update_exclusion()
        .principal_arn(&role)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_exclusion_not_found_exception(), "{err:?}");

    let err = ecr
        .get_signing_configuration()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_signing_configuration_not_found_exception(), "{err:?}");
    let profile = format!("arn:aws:signer:{REGION}:{acct}:/signing-profiles/kura_profile");
    let rule = SigningRule::builder()
        .signing_profile_arn(&profile)
        .repository_filters(
            SigningRepositoryFilter::builder()
                .filter("sdk/*")
                .filter_type(SigningRepositoryFilterType::WildcardMatch)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let config = SigningConfiguration::builder().rules(rule).build().unwrap();
    let put = ecr
        .put_signing_configuration()
        .signing_configuration(config.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.signing_configuration(), Some(&config));
    let got = ecr.get_signing_configuration().send().await.unwrap();
    assert_eq!(got.registry_id(), Some(acct));
    assert_eq!(got.signing_configuration(), Some(&config));

    // An image pushed after the configuration: a FAILED status, typed.
    ecr.create_repository()
        .repository_name("sdk/signed")
        .send()
        .await
        .unwrap();
    let token = ecr.get_authorization_token().send().await.unwrap();
    let basic = format!("Basic {}", token.authorization_data()[0].authorization_token().unwrap());
    let (cfg, layer) = config_and_layer();
    let cfg_digest = push_blob(addr, &basic, "sdk/signed", &cfg).await;
    let layer_digest = push_blob(addr, &basic, "sdk/signed", &layer).await;
    let manifest = image_manifest(&cfg, &cfg_digest, &layer, &layer_digest);
    ecr.put_image()
        .repository_name("sdk/signed")
        .image_manifest(&manifest)
        .image_tag("v1")
        .send()
        .await
        .unwrap();
    let st = ecr
        .describe_image_signing_status()
        .repository_name("sdk/signed")
        .image_id(ImageIdentifier::builder().image_tag("v1").build())
        .send()
        .await
        .unwrap();
    let statuses = st.signing_statuses();
    assert_eq!(statuses.len(), 1, "{st:?}");
    assert_eq!(statuses[0].signing_profile_arn(), Some(profile.as_str()));
    assert_eq!(statuses[0].status(), Some(&aws_sdk_ecr::types::SigningStatus::Failed));
    assert_eq!(statuses[0].failure_code(), Some("SIGNING_NOT_SUPPORTED"));
    let deleted = ecr.delete_signing_configuration().send().await.unwrap();
    assert_eq!(deleted.signing_configuration(), Some(&config));

    // A lifecycle policy never evaluated: lastEvaluatedAt is epoch 0.
    let policy = json!({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "untagged",
        "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1}, "action": {"type": "expire"}}]});
    ecr.put_lifecycle_policy()
        .repository_name("sdk/signed")
        .lifecycle_policy_text(policy.to_string())
        .send()
        .await
        .unwrap();
    let lp = ecr
        .get_lifecycle_policy()
        .repository_name("sdk/signed")
        .send()
        .await
        .unwrap();
    assert_eq!(lp.last_evaluated_at().map(secs), Some(0));
}
