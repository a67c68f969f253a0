//! Fuzz targets `sigv4` and `token`: the SigV4 parser (`sigv4::parse`, the
//! `Authorization` header and the presigned query) with the verifier behind
//! it, and registry-token decoding (`token::verify_raw`, `token::verify`).
//! These read every API request and every data-plane request before
//! anything else does.
//!
//! Properties: nothing panics on arbitrary or mutated input; a header or a
//! presigned query built from known fields parses back to exactly those
//! fields, in any parameter order and spacing; a request `sign`ed by Kura
//! verifies (canonicalisation agrees with itself on arbitrary paths, queries
//! and headers); a token decodes to what was issued, and a token that
//! decodes re-encodes to the same text (no second spelling of a token is
//! accepted).
//!
//! `cargo test --release -p kura-auth --test fuzz` runs the quick CI cases;
//! `KURA_FUZZ_SECS=600` runs each target for ten minutes.

#[path = "../../kura-oci/tests/support/fuzz_runner.rs"]
mod fuzz_runner;

use std::time::{Duration, UNIX_EPOCH};

use fuzz_runner::fuzz;
use http::{HeaderMap, HeaderName, HeaderValue};
use kura_auth::sigv4::{self, ParsedAuth, RequestParts};
use kura_auth::token::{self, TokenClaims};
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;
use sha2::{Digest, Sha256};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn header_map(headers: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            map.append(n, v);
        }
    }
    map
}

/// Parse, and verify whatever parsed: neither may panic.
fn parse_and_verify(method: &str, path: &str, query: Option<&str>, headers: &HeaderMap) -> Option<ParsedAuth> {
    let req = RequestParts {
        method,
        path,
        query,
        headers,
        payload_sha256: EMPTY_SHA256,
    };
    let parsed = sigv4::parse(&req).ok()?;
    let _ = sigv4::verify(
        &req,
        &parsed,
        SECRET,
        "us-east-1",
        "ecr",
        UNIX_EPOCH + Duration::from_secs(1_440_938_160),
    );
    Some(parsed)
}

/// A real calendar time as `YYYYMMDDTHHMMSSZ`.
fn amz_date() -> impl Strategy<Value = String> {
    (1970u32..2200, 1u32..=12, 1u32..=28, 0u32..24, 0u32..60, 0u32..60)
        .prop_map(|(y, mo, d, h, mi, s)| format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z"))
}

/// The fields of a well-formed credential and signature.
#[derive(Debug, Clone)]
struct Fields {
    akid: String,
    amz_date: String,
    region: String,
    service: String,
    signed: Vec<String>,
    signature: String,
    token: Option<String>,
    expires: u64,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        "[A-Z0-9]{4,24}",
        amz_date(),
        "[a-z0-9-]{1,16}",
        "[a-z0-9-]{1,12}",
        proptest::collection::vec("[a-z0-9-]{1,16}", 1..6),
        "[0-9a-f]{64}",
        proptest::option::of("[A-Za-z0-9+/=]{1,80}"),
        0u64..1_000_000,
    )
        .prop_map(
            |(akid, amz_date, region, service, signed, signature, token, expires)| Fields {
                akid,
                amz_date,
                region,
                service,
                signed,
                signature,
                token,
                expires,
            },
        )
}

impl Fields {
    fn credential(&self) -> String {
        format!(
            "{}/{}/{}/{}/aws4_request",
            self.akid,
            &self.amz_date[..8],
            self.region,
            self.service
        )
    }

    fn check(&self, p: &ParsedAuth, presigned: bool) -> TestCaseResult {
        prop_assert_eq!(&p.access_key_id, &self.akid);
        prop_assert_eq!(&p.date, &self.amz_date[..8]);
        prop_assert_eq!(&p.region, &self.region);
        prop_assert_eq!(&p.service, &self.service);
        prop_assert_eq!(&p.signed_headers, &self.signed);
        prop_assert_eq!(&p.signature, &self.signature);
        prop_assert_eq!(&p.amz_date, &self.amz_date);
        prop_assert_eq!(&p.session_token, &self.token);
        prop_assert_eq!(p.presigned_expires, presigned.then_some(self.expires));
        Ok(())
    }
}

/// Small text edits: replace, insert or delete one character, or cut.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, char),
    Insert(usize, char),
    Delete(usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let ch = prop_oneof![
        4 => proptest::sample::select(vec![',', '=', '/', ' ', '\t', ';', '&', '%', '+', '.', 'A', '0', '\u{e9}', '\0']),
        1 => any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Edit::Replace(i, c)),
        (any::<usize>(), ch).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let n = chars.len().max(1);
        match *e {
            Edit::Replace(i, c) if !chars.is_empty() => chars[i % n] = c,
            Edit::Insert(i, c) => chars.insert(i % (chars.len() + 1), c),
            Edit::Delete(i) if !chars.is_empty() => {
                chars.remove(i % n);
            }
            Edit::Truncate(i) => chars.truncate(i % (chars.len() + 1)),
            _ => {}
        }
    }
    chars.into_iter().collect()
}

fn header_text(f: &Fields, order: &[usize], sep: &str) -> String {
    let parts = [
        format!("Credential={}", f.credential()),
        format!("SignedHeaders={}", f.signed.join(";")),
        format!("Signature={}", f.signature),
    ];
    let ordered: Vec<&str> = order.iter().map(|&i| parts[i].as_str()).collect();
    format!("AWS4-HMAC-SHA256 {}", ordered.join(sep))
}

fn header_request(f: &Fields, authorization: &str) -> Vec<(String, String)> {
    let mut h = vec![
        ("host".to_string(), "localhost:5000".to_string()),
        ("x-amz-date".to_string(), f.amz_date.clone()),
        ("authorization".to_string(), authorization.to_string()),
    ];
    if let Some(t) = &f.token {
        h.push(("x-amz-security-token".to_string(), t.clone()));
    }
    h
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn query_text(f: &Fields, order: &[usize]) -> String {
    let mut params = vec![
        format!("X-Amz-Algorithm={}", "AWS4-HMAC-SHA256"),
        format!("X-Amz-Credential={}", enc(&f.credential())),
        format!("X-Amz-Date={}", f.amz_date),
        format!("X-Amz-Expires={}", f.expires),
        format!("X-Amz-SignedHeaders={}", enc(&f.signed.join(";"))),
        format!("X-Amz-Signature={}", f.signature),
        "Action=ListUsers".to_string(),
    ];
    if let Some(t) = &f.token {
        params.push(format!("X-Amz-Security-Token={}", enc(t)));
    }
    let mut out = Vec::new();
    for &i in order {
        if i < params.len() && !out.contains(&params[i]) {
            out.push(params[i].clone());
        }
    }
    for p in params {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out.join("&")
}

#[test]
fn sigv4_arbitrary_input_never_panics() {
    fuzz(
        "sigv4/arbitrary",
        1000,
        (
            prop_oneof![".{0,200}", "AWS4-HMAC-SHA256 [ -~]{0,200}"],
            proptest::option::of(prop_oneof![".{0,200}", "(X-Amz-[A-Za-z]{0,12}=[ -~]{0,30}&?){0,8}"]),
            "(/[ -~]{0,10}){0,6}",
            proptest::option::of(prop_oneof![amz_date(), ".{0,20}"]),
            proptest::option::of(".{0,40}"),
        ),
        |(authorization, query, path, date, http_date)| {
            let mut h = vec![
                ("host".to_string(), "h".to_string()),
                ("authorization".to_string(), authorization),
            ];
            if let Some(d) = date {
                h.push(("x-amz-date".to_string(), d));
            }
            if let Some(d) = http_date {
                h.push(("date".to_string(), d));
            }
            let headers = header_map(&h);
            let _ = parse_and_verify("POST", &path, query.as_deref(), &headers);
            // The same query as a presigned request (no Authorization header).
            let mut headers = headers;
            headers.remove("authorization");
            let _ = parse_and_verify("GET", &path, query.as_deref(), &headers);
            Ok(())
        },
    );
}

#[test]
fn sigv4_header_parses_to_its_fields() {
    fuzz(
        "sigv4/header",
        1000,
        (
            fields(),
            Just(vec![0usize, 1, 2]).prop_shuffle(),
            proptest::sample::select(vec![", ", ",", " , ", ",\t"]),
        ),
        |(f, order, sep)| {
            let text = header_text(&f, &order, sep);
            let headers = header_map(&header_request(&f, &text));
            let parsed = parse_and_verify("POST", "/", None, &headers)
                .ok_or_else(|| TestCaseError::fail(format!("did not parse: {text}")))?;
            f.check(&parsed, false)
        },
    );
}

#[test]
fn sigv4_query_parses_to_its_fields() {
    fuzz(
        "sigv4/query",
        1000,
        (fields(), Just((0..8).collect::<Vec<usize>>()).prop_shuffle()),
        |(f, order)| {
            let query = query_text(&f, &order);
            let headers = header_map(&[("host".to_string(), "localhost".to_string())]);
            let parsed = parse_and_verify("GET", "/", Some(&query), &headers)
                .ok_or_else(|| TestCaseError::fail(format!("did not parse: {query}")))?;
            f.check(&parsed, true)
        },
    );
}

#[test]
fn sigv4_mutations_never_panic() {
    fuzz(
        "sigv4/mutated",
        1000,
        (fields(), proptest::collection::vec(edit(), 1..5), any::<bool>()),
        |(f, edits, presigned)| {
            if presigned {
                let query = apply(&query_text(&f, &[]), &edits);
                let headers = header_map(&[("host".to_string(), "localhost".to_string())]);
                let _ = parse_and_verify("GET", "/", Some(&query), &headers);
            } else {
                let text = apply(&header_text(&f, &[0, 1, 2], ", "), &edits);
                let headers = header_map(&header_request(&f, &text));
                let _ = parse_and_verify("POST", "/", None, &headers);
            }
            Ok(())
        },
    );
}

#[test]
fn sigv4_signed_requests_verify() {
    fuzz(
        "sigv4/sign-verify",
        500,
        (
            amz_date(),
            proptest::sample::select(vec!["GET", "POST", "PUT", "HEAD", "DELETE"]),
            "(/([a-zA-Z0-9._~-]|%[0-9A-F]{2}){0,8}){0,5}",
            proptest::option::of("([a-zA-Z0-9._~+-]|%[0-9A-F]{2}){0,8}(=([a-zA-Z0-9._~+-]|%[0-9A-F]{2}){0,8})?(&([a-z]|%[0-9A-F]{2}){1,6}=[a-z0-9+]{0,6}){0,4}"),
            proptest::collection::vec(("x-[a-z]{1,8}", "[ -~]{0,20}"), 0..4),
            proptest::collection::vec(any::<u8>(), 0..64),
        ),
        |(date, method, path, query, extra, body)| {
            let path = if path.is_empty() { "/".to_string() } else { path };
            let mut h = vec![
                ("host".to_string(), "localhost:5000".to_string()),
                ("x-amz-date".to_string(), date.clone()),
            ];
            h.extend(extra);
            let mut headers = header_map(&h);
            let payload = hex::encode(Sha256::digest(&body));
            let req = RequestParts {
                method,
                path: &path,
                query: query.as_deref(),
                headers: &headers,
                payload_sha256: &payload,
            };
            let authorization = sigv4::sign(&req, "AKIDEXAMPLE", SECRET, "us-east-1", "ecr")
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            headers.insert("authorization", HeaderValue::from_str(&authorization).unwrap());
            let req = RequestParts {
                method,
                path: &path,
                query: query.as_deref(),
                headers: &headers,
                payload_sha256: &payload,
            };
            let parsed = sigv4::parse(&req).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let signed_at = UNIX_EPOCH
                + Duration::from_secs(
                    httpdate_secs(&date).ok_or_else(|| TestCaseError::fail("bad generated date"))?,
                );
            sigv4::verify(&req, &parsed, SECRET, "us-east-1", "ecr", signed_at)
                .map_err(|e| TestCaseError::fail(format!("{e}: {method} {path}?{query:?} {authorization}")))?;
            Ok(())
        },
    );
}

/// Seconds since the epoch of a generated `YYYYMMDDTHHMMSSZ` (days 1–28).
fn httpdate_secs(s: &str) -> Option<u64> {
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(9..11)? * 3600 + n(11..13)? * 60 + n(13..15)?;
    u64::try_from(secs).ok()
}

fn claims() -> impl Strategy<Value = TokenClaims> {
    ("[0-9]{12}", ".{0,60}", "[A-Z0-9]{0,24}", any::<u32>(), any::<u32>()).prop_map(
        |(account, principal_arn, access_key_id, a, b)| TokenClaims {
            account,
            principal_arn,
            access_key_id,
            issued_at: u64::from(a),
            expires_at: u64::from(a) + u64::from(b) + 1,
        },
    )
}

#[test]
fn token_arbitrary_text_never_panics() {
    fuzz(
        "token/arbitrary",
        1000,
        prop_oneof![".{0,200}", "[A-Za-z0-9_.=+/-]{0,120}"],
        |text| {
            let _ = token::verify(KEY, &text, 0);
            let _ = token::verify_raw(KEY, &text);
            Ok(())
        },
    );
}

#[test]
fn token_round_trips_and_has_one_spelling() {
    fuzz(
        "token/roundtrip",
        1000,
        (
            claims(),
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::collection::vec(edit(), 0..3),
            proptest::sample::select(vec!['A', 'B', 'Q', 'g', 'w', '-', '_', '=', '+', '/', '.']),
        ),
        |(c, payload, edits, last)| {
            // Claims come back as issued.
            let t = token::issue(KEY, &c);
            prop_assert_eq!(token::verify(KEY, &t, c.issued_at), Ok(c.clone()));
            prop_assert!(token::verify(KEY, &t, c.expires_at).is_err());
            // Raw payloads too; and a token that decodes re-encodes to itself.
            let raw = token::issue_raw(KEY, &payload);
            prop_assert_eq!(token::verify_raw(KEY, &raw), Ok(payload));
            let mut variants = vec![apply(&raw, &edits), apply(&t, &edits)];
            // Another last character: other trailing bits of the same tag.
            for base in [&raw, &t] {
                let mut v = base.clone();
                v.pop();
                v.push(last);
                variants.push(v);
            }
            for v in variants {
                if let Ok(p) = token::verify_raw(KEY, &v) {
                    prop_assert_eq!(token::issue_raw(KEY, &p), v.clone(), "a second spelling was accepted");
                }
                let _ = token::verify(KEY, &v, c.issued_at);
            }
            Ok(())
        },
    );
}
