//! SigV4 verification of real requests signed by botocore (the AWS CLI's
//! signer), recorded in `tests/fixtures/*.json` by `tests/gen_fixtures.py`,
//! and of altered copies of them.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use kura_auth::sigv4::{self, ParsedAuth, RequestParts, SigV4Error};
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Deserialize)]
struct Fixture {
    name: String,
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body: String,
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    region: String,
    service: String,
    timestamp: String,
    presigned_expires: Option<u64>,
}

impl Fixture {
    fn load(name: &str) -> Fixture {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(format!("{name}.json"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn all() -> Vec<Fixture> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter_map(|n| n.strip_suffix(".json").map(String::from))
            .collect();
        names.sort();
        names.iter().map(|n| Fixture::load(n)).collect()
    }

    fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// The signing time.
    fn signed_at(&self) -> SystemTime {
        let t = &self.timestamp;
        let num = |r: std::ops::Range<usize>| t[r].parse::<u64>().unwrap();
        let (y, m, d) = (num(0..4), num(4..6), num(6..8));
        // Days since the epoch (valid for 1970–2099, where every fourth year
        // is a leap year).
        let month_days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let mut days = (y - 1970) * 365 + (y - 1969) / 4;
        days += month_days[..(m - 1) as usize].iter().sum::<u64>();
        if m > 2 && y % 4 == 0 {
            days += 1;
        }
        days += d - 1;
        let secs = days * 86_400 + num(9..11) * 3600 + num(11..13) * 60 + num(13..15);
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn payload_sha256(&self) -> String {
        hex::encode(Sha256::digest(self.body.as_bytes()))
    }
}

/// Parses and verifies `f` as sent, at `now`, against the expected region
/// and service.
fn check_with(
    f: &Fixture,
    headers: &HeaderMap,
    secret: &str,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<ParsedAuth, SigV4Error> {
    let payload = f.payload_sha256();
    let req = RequestParts {
        method: &f.method,
        path: &f.path,
        query: f.query.as_deref(),
        headers,
        payload_sha256: &payload,
    };
    let auth = sigv4::parse(&req)?;
    sigv4::verify(&req, &auth, secret, region, service, now)?;
    Ok(auth)
}

fn check(f: &Fixture, now: SystemTime) -> Result<ParsedAuth, SigV4Error> {
    check_with(f, &f.header_map(), &f.secret_access_key, &f.region, &f.service, now)
}

fn mins(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

#[test]
fn every_fixture_verifies() {
    let fixtures = Fixture::all();
    assert_eq!(fixtures.len(), 7, "fixtures missing");
    for f in &fixtures {
        let auth = check(f, f.signed_at()).unwrap_or_else(|e| panic!("{}: {e:?}", f.name));
        assert_eq!(auth.access_key_id, f.access_key_id, "{}", f.name);
        assert_eq!(auth.session_token, f.session_token, "{}", f.name);
        assert_eq!(auth.presigned_expires, f.presigned_expires, "{}", f.name);
        assert_eq!(auth.amz_date, f.timestamp, "{}", f.name);
        assert_eq!(auth.date, f.timestamp[..8], "{}", f.name);
        assert_eq!(auth.region, f.region, "{}", f.name);
        assert_eq!(auth.service, f.service, "{}", f.name);
        assert!(auth.signed_headers.contains(&"host".to_owned()));
    }
}

#[test]
fn sign_matches_botocore() {
    for f in Fixture::all().iter().filter(|f| f.presigned_expires.is_none()) {
        let mut headers = f.header_map();
        let expected = headers.remove("authorization").unwrap();
        // Added by the HTTP client after signing.
        headers.remove("content-length");
        headers.remove("user-agent");
        let payload = f.payload_sha256();
        let req = RequestParts {
            method: &f.method,
            path: &f.path,
            query: f.query.as_deref(),
            headers: &headers,
            payload_sha256: &payload,
        };
        let signed = sigv4::sign(&req, &f.access_key_id, &f.secret_access_key, &f.region, &f.service).unwrap();
        assert_eq!(signed, expected.to_str().unwrap(), "{}", f.name);
    }
}

#[test]
fn tampered_body_is_refused() {
    for name in [
        "ecr-describe-repositories",
        "ecr-get-authorization-token-session-token",
        "sts-get-caller-identity",
    ] {
        let mut f = Fixture::load(name);
        f.body = f.body.replacen('1', "2", 1).replacen("{}", "{ }", 1);
        assert_eq!(
            check(&f, f.signed_at()).unwrap_err(),
            SigV4Error::SignatureDoesNotMatch,
            "{name}"
        );
    }
}

#[test]
fn tampered_headers_path_or_query_are_refused() {
    let f = Fixture::load("ecr-describe-repositories");
    let mut headers = f.header_map();
    headers.insert(
        "x-amz-target",
        HeaderValue::from_static("AmazonEC2ContainerRegistry_V20150921.DeleteRepository"),
    );
    let err = check_with(&f, &headers, &f.secret_access_key, "us-east-1", "ecr", f.signed_at());
    assert_eq!(err.unwrap_err(), SigV4Error::SignatureDoesNotMatch);
    // Unsigned headers may change freely.
    let mut headers = f.header_map();
    headers.insert("user-agent", HeaderValue::from_static("something else"));
    headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
    assert!(check_with(&f, &headers, &f.secret_access_key, "us-east-1", "ecr", f.signed_at()).is_ok());

    for name in [
        "get-encoded-path-query",
        "presigned-get-encoded-path-query-session-token",
    ] {
        let f = Fixture::load(name);
        let mut g = f.clone();
        g.query = Some(f.query.as_deref().unwrap().replacen("n=10", "n=11", 1));
        assert_eq!(check(&g, f.signed_at()).unwrap_err(), SigV4Error::SignatureDoesNotMatch);
        let mut g = f.clone();
        g.query = Some(format!("{}&extra=1", f.query.as_deref().unwrap()));
        assert_eq!(check(&g, f.signed_at()).unwrap_err(), SigV4Error::SignatureDoesNotMatch);
        let mut g = f.clone();
        g.path = "/v2/a%3Ab/y".into();
        assert_eq!(check(&g, f.signed_at()).unwrap_err(), SigV4Error::SignatureDoesNotMatch);
        // The path is double-encoded: the decoded form is another path.
        let mut g = f.clone();
        g.path = "/v2/a:b/x".into();
        assert_eq!(check(&g, f.signed_at()).unwrap_err(), SigV4Error::SignatureDoesNotMatch);
        let mut g = f.clone();
        g.method = "HEAD".into();
        assert_eq!(check(&g, f.signed_at()).unwrap_err(), SigV4Error::SignatureDoesNotMatch);
    }
}

#[test]
fn tampered_session_token_is_refused() {
    let f = Fixture::load("presigned-get-encoded-path-query-session-token");
    let mut g = f.clone();
    g.query = Some(f.query.as_deref().unwrap().replacen("FwoGZX", "FwoGZY", 1));
    assert_eq!(check(&g, f.signed_at()).unwrap_err(), SigV4Error::SignatureDoesNotMatch);

    let f = Fixture::load("ecr-get-authorization-token-session-token");
    let mut headers = f.header_map();
    headers.insert("x-amz-security-token", HeaderValue::from_static("other"));
    let err = check_with(&f, &headers, &f.secret_access_key, "us-east-1", "ecr", f.signed_at());
    assert_eq!(err.unwrap_err(), SigV4Error::SignatureDoesNotMatch);
}

#[test]
fn wrong_secret_is_refused() {
    for f in Fixture::all() {
        let secret = format!("{}x", f.secret_access_key);
        let err = check_with(&f, &f.header_map(), &secret, &f.region, &f.service, f.signed_at());
        assert_eq!(err.unwrap_err(), SigV4Error::SignatureDoesNotMatch, "{}", f.name);
    }
    let err = SigV4Error::SignatureDoesNotMatch;
    assert_eq!(err.aws_error_type(), "InvalidSignatureException");
    assert_eq!(err.http_status(), 400);
    assert!(err.message().starts_with(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method."
    ));
    assert_eq!(err.query_error_code(), "SignatureDoesNotMatch");
    assert_eq!(err.query_http_status(), 403);
}

#[test]
fn wrong_region_or_service_is_refused() {
    let f = Fixture::load("ecr-describe-repositories");
    let err = check_with(
        &f,
        &f.header_map(),
        &f.secret_access_key,
        "eu-west-1",
        "ecr",
        f.signed_at(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        SigV4Error::WrongRegion {
            expected: "eu-west-1".into(),
            found: "us-east-1".into()
        }
    );
    assert_eq!(err.aws_error_type(), "InvalidSignatureException");
    assert_eq!(err.message(), "Credential should be scoped to a valid region.");
    assert_eq!(err.http_status(), 400);

    let err = check_with(
        &f,
        &f.header_map(),
        &f.secret_access_key,
        "us-east-1",
        "sts",
        f.signed_at(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        SigV4Error::WrongService {
            expected: "sts".into(),
            found: "ecr".into()
        }
    );
    assert_eq!(err.aws_error_type(), "InvalidSignatureException");
    assert_eq!(err.message(), "Credential should be scoped to correct service: 'sts'.");

    let f = Fixture::load("sts-get-caller-identity");
    let err = check_with(
        &f,
        &f.header_map(),
        &f.secret_access_key,
        "us-east-1",
        "ecr",
        f.signed_at(),
    )
    .unwrap_err();
    assert_eq!(err.message(), "Credential should be scoped to correct service: 'ecr'.");
    assert_eq!(err.query_error_code(), "SignatureDoesNotMatch");
}

#[test]
fn clock_skew_of_more_than_15_minutes_is_refused() {
    for name in [
        "ecr-describe-repositories",
        "get-encoded-path-query",
        "sts-get-caller-identity",
    ] {
        let f = Fixture::load(name);
        let t = f.signed_at();
        assert!(check(&f, t + mins(15)).is_ok(), "{name}");
        assert!(check(&f, t - mins(15)).is_ok(), "{name}");
        let err = check(&f, t + mins(16)).unwrap_err();
        assert_eq!(
            err,
            SigV4Error::SignatureExpired(
                "Signature expired: 20260115T102030Z is now earlier than 20260115T102130Z \
                 (20260115T103630Z - 15 min.)"
                    .into()
            ),
            "{name}"
        );
        assert_eq!(err.aws_error_type(), "InvalidSignatureException");
        assert_eq!(err.http_status(), 400);
        let err = check(&f, t - mins(16)).unwrap_err();
        assert_eq!(
            err,
            SigV4Error::SignatureExpired(
                "Signature not yet current: 20260115T102030Z is still later than \
                 20260115T101930Z (20260115T100430Z + 15 min.)"
                    .into()
            ),
            "{name}"
        );
    }
}

#[test]
fn presigned_requests_expire() {
    let f = Fixture::load("presigned-get-encoded-path-query-session-token");
    assert_eq!(f.presigned_expires, Some(300));
    let t = f.signed_at();
    assert!(check(&f, t + Duration::from_secs(300)).is_ok());
    assert!(check(&f, t - mins(15)).is_ok());
    let err = check(&f, t + Duration::from_secs(301)).unwrap_err();
    assert!(
        matches!(&err, SigV4Error::SignatureExpired(m) if m.starts_with("Signature expired: 20260115T102030Z")),
        "{err:?}"
    );
    assert_eq!(err.aws_error_type(), "InvalidSignatureException");
    assert!(matches!(
        check(&f, t - mins(16)).unwrap_err(),
        SigV4Error::SignatureExpired(_)
    ));

    // X-Amz-Expires is at most seven days.
    let payload = f.payload_sha256();
    let headers = f.header_map();
    let req = RequestParts {
        method: &f.method,
        path: &f.path,
        query: f.query.as_deref(),
        headers: &headers,
        payload_sha256: &payload,
    };
    let mut auth = sigv4::parse(&req).unwrap();
    auth.presigned_expires = Some(604_801);
    let err = sigv4::verify(&req, &auth, &f.secret_access_key, "us-east-1", "ecr", t).unwrap_err();
    assert!(matches!(err, SigV4Error::IncompleteSignature(_)), "{err:?}");
}

#[test]
fn presigned_payload_is_the_body_hash_or_unsigned() {
    // botocore signs the body's hash (of the empty body here: it moves a
    // POST's JSON body into the query) for presigned requests to services
    // other than S3, so a body added on the way is detected.
    let f = Fixture::load("presigned-post-ecr");
    assert_eq!(f.body, "");
    assert!(check(&f, f.signed_at()).is_ok());
    let mut g = f.clone();
    g.body = r#"{"repositoryNames":["other"]}"#.into();
    assert_eq!(check(&g, f.signed_at()).unwrap_err(), SigV4Error::SignatureDoesNotMatch);

    // A signer may instead sign UNSIGNED-PAYLOAD, which leaves the body
    // uncovered: any body verifies.
    let f = Fixture::load("presigned-unsigned-payload");
    assert!(f.query.as_deref().unwrap().contains("X-Amz-Expires=3600"));
    assert!(check(&f, f.signed_at()).is_ok());
    let mut g = f.clone();
    g.body = "anything".into();
    assert!(check(&g, f.signed_at()).is_ok());
}

#[test]
fn host_must_be_signed() {
    let f = Fixture::load("ecr-describe-repositories");
    let mut headers = f.header_map();
    let auth = headers["authorization"].to_str().unwrap().replace("host;", "");
    assert!(!auth.contains("host"));
    headers.insert("authorization", HeaderValue::from_str(&auth).unwrap());
    let err = check_with(&f, &headers, &f.secret_access_key, "us-east-1", "ecr", f.signed_at()).unwrap_err();
    assert_eq!(err, SigV4Error::HostNotSigned);
    assert_eq!(err.aws_error_type(), "InvalidSignatureException");

    let f = Fixture::load("presigned-get-encoded-path-query-session-token");
    let mut g = f.clone();
    g.query = Some(
        f.query
            .as_deref()
            .unwrap()
            .replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=user-agent"),
    );
    assert_eq!(check(&g, f.signed_at()).unwrap_err(), SigV4Error::HostNotSigned);
}

#[test]
fn missing_authentication_is_reported() {
    let f = Fixture::load("ecr-describe-repositories");
    let mut headers = f.header_map();
    headers.remove("authorization");
    let err = check_with(&f, &headers, &f.secret_access_key, "us-east-1", "ecr", f.signed_at()).unwrap_err();
    assert_eq!(err, SigV4Error::MissingAuthenticationToken);
    assert_eq!(err.aws_error_type(), "MissingAuthenticationTokenException");
    assert_eq!(err.message(), "Missing Authentication Token");
    assert_eq!(err.http_status(), 400);
    assert_eq!(err.query_error_code(), "MissingAuthenticationToken");
    assert_eq!(err.query_http_status(), 403);

    // A query that merely mentions other X-Amz parameters is not presigned.
    let mut g = f.clone();
    g.query = Some("X-Amz-Date=20260115T102030Z".into());
    assert_eq!(
        check_with(&g, &headers, &f.secret_access_key, "us-east-1", "ecr", f.signed_at()).unwrap_err(),
        SigV4Error::MissingAuthenticationToken
    );
}

#[test]
fn unrecognized_client_is_the_callers_answer() {
    let err = SigV4Error::UnrecognizedClient;
    assert_eq!(err.aws_error_type(), "UnrecognizedClientException");
    assert_eq!(err.message(), "The security token included in the request is invalid.");
    assert_eq!(err.http_status(), 400);
    assert_eq!(err.query_error_code(), "InvalidClientTokenId");
    assert_eq!(err.query_http_status(), 403);
}

fn parse_with_authorization(value: &str) -> Result<ParsedAuth, SigV4Error> {
    let f = Fixture::load("ecr-describe-repositories");
    let mut headers = f.header_map();
    headers.insert("authorization", HeaderValue::from_str(value).unwrap());
    let payload = f.payload_sha256();
    sigv4::parse(&RequestParts {
        method: &f.method,
        path: &f.path,
        query: None,
        headers: &headers,
        payload_sha256: &payload,
    })
}

#[test]
fn malformed_authorization_is_incomplete() {
    for bad in [
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=AKIA/20260115/us-east-1/ecr/aws4_request, SignedHeaders=host;x-amz-date",
        "AWS4-HMAC-SHA256 Credential=AKIA/20260115/us-east-1/ecr/aws4_request, Signature=00",
        "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKIA/20260115/us-east-1/ecr, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=/20260115/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKIA/20260115/us-east-1/ecr/aws4_request, SignedHeaders=host;;x, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKIA/20260115/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature=",
        "AWS4-HMAC-SHA256 Credential=A/20260115/us-east-1/ecr/aws4_request, Credential=B/20260115/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential",
        "AWS4-HMAC-SHA1 Credential=AKIA/20260115/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature=00",
        "Basic QVdTOnBhc3N3b3Jk",
        "Bearer abc",
    ] {
        let err = parse_with_authorization(bad).unwrap_err();
        assert!(matches!(err, SigV4Error::IncompleteSignature(_)), "{bad}: {err:?}");
        assert_eq!(err.aws_error_type(), "IncompleteSignatureException");
        assert_eq!(err.http_status(), 400);
        assert_eq!(err.query_http_status(), 400);
    }
    let err = parse_with_authorization(
        "AWS4-HMAC-SHA256 Credential=AKIA/20260115/us-east-1/ecr/aws4_requests, SignedHeaders=host, Signature=00",
    )
    .unwrap_err();
    assert!(matches!(err, SigV4Error::InvalidScope(_)), "{err:?}");
    // No date at all.
    let f = Fixture::load("ecr-describe-repositories");
    let mut headers = f.header_map();
    headers.remove("x-amz-date");
    let err = check_with(&f, &headers, &f.secret_access_key, "us-east-1", "ecr", f.signed_at()).unwrap_err();
    assert!(
        matches!(&err, SigV4Error::IncompleteSignature(m) if m.contains("'X-Amz-Date' or a 'Date' header")),
        "{err:?}"
    );
}

#[test]
fn credential_date_must_match_the_request_date() {
    let f = Fixture::load("ecr-describe-repositories");
    let mut headers = f.header_map();
    let auth = headers["authorization"]
        .to_str()
        .unwrap()
        .replace("/20260115/", "/20260114/");
    headers.insert("authorization", HeaderValue::from_str(&auth).unwrap());
    let err = check_with(&f, &headers, &f.secret_access_key, "us-east-1", "ecr", f.signed_at()).unwrap_err();
    assert!(matches!(err, SigV4Error::InvalidScope(_)), "{err:?}");
    assert_eq!(err.aws_error_type(), "InvalidSignatureException");
}

#[test]
fn header_and_query_auth_together_are_refused() {
    let f = Fixture::load("presigned-get-encoded-path-query-session-token");
    let mut headers = f.header_map();
    let h = Fixture::load("get-encoded-path-query");
    headers.insert("authorization", h.header_map()["authorization"].clone());
    let err = check_with(&f, &headers, &f.secret_access_key, "us-east-1", "ecr", f.signed_at()).unwrap_err();
    assert!(matches!(err, SigV4Error::IncompleteSignature(_)), "{err:?}");
}

#[test]
fn presigned_parameters_are_required() {
    let f = Fixture::load("presigned-get-encoded-path-query-session-token");
    let query = f.query.clone().unwrap();
    for param in [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    ] {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|p| !p.starts_with(&format!("{param}=")))
            .collect();
        let mut g = f.clone();
        g.query = Some(kept.join("&"));
        let err = check(&g, f.signed_at()).unwrap_err();
        assert!(
            matches!(&err, SigV4Error::IncompleteSignature(m) if m.contains(param)),
            "{param}: {err:?}"
        );
    }
    let mut g = f.clone();
    g.query = Some(query.replace("X-Amz-Expires=300", "X-Amz-Expires=soon"));
    assert!(matches!(
        check(&g, f.signed_at()).unwrap_err(),
        SigV4Error::IncompleteSignature(_)
    ));
}

#[test]
fn date_header_is_used_without_x_amz_date() {
    let f = Fixture::load("ecr-describe-repositories");
    let mut headers = f.header_map();
    headers.remove("authorization");
    headers.remove("x-amz-date");
    headers.insert("date", HeaderValue::from_static("Thu, 15 Jan 2026 10:20:30 GMT"));
    let payload = f.payload_sha256();
    let req = RequestParts {
        method: &f.method,
        path: &f.path,
        query: None,
        headers: &headers,
        payload_sha256: &payload,
    };
    let signed = sigv4::sign(&req, &f.access_key_id, &f.secret_access_key, "us-east-1", "ecr").unwrap();
    assert!(signed.contains("SignedHeaders=content-length;content-type;date;host;x-amz-target,"));
    headers.insert("authorization", HeaderValue::from_str(&signed).unwrap());
    let auth = check_with(&f, &headers, &f.secret_access_key, "us-east-1", "ecr", f.signed_at()).unwrap();
    assert_eq!(auth.amz_date, "20260115T102030Z");
    let err = check_with(
        &f,
        &headers,
        &f.secret_access_key,
        "us-east-1",
        "ecr",
        f.signed_at() + mins(16),
    )
    .unwrap_err();
    assert!(matches!(err, SigV4Error::SignatureExpired(_)));
}
