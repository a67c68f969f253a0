//! A data-plane request, parsed once: method and path into an [`Endpoint`],
//! the query into typed parameters, and the headers the handlers read.
//!
//! Authorization (the ECR guard) and the handler must see the same request.
//! So the guard parses it with [`DataRequest::parse`], decides on the typed
//! value (possibly adjusting it: a mount the caller may not read from is
//! dropped), and hands that value to the handler in the request's
//! extensions; the handler parses the request itself only when no guard ran.
//! Nothing after the parse looks at the raw URI again.
//!
//! Query parameters are decoded once, with `application/x-www-form-urlencoded`
//! rules (`%6F` is `o`, `+` is a space). Unknown parameters are ignored. A
//! parameter that may appear once and appears more often never widens what
//! the request does: a repeated `mount` or `from` makes a mount an ordinary
//! upload, and any other repeated single-valued parameter is refused.

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use kura_oci::{ErrorCode, RepoName};

use crate::endpoint::{self, Endpoint};
use crate::error::{ApiError, ApiResult};

/// The query parameter that carries a presigned download token.
pub const DOWNLOAD_PARAM: &str = "X-Kura-Download";

/// A cross-repository mount: `?mount=<digest>&from=<repository>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The digest to mount (validated by the service).
    pub digest: String,
    /// The repository (of the same registry) to mount from.
    pub from: RepoName,
}

/// The query parameters the data plane understands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    /// `mount` and `from` of an upload start, when both appear exactly once
    /// and `from` is a valid repository name.
    pub mount: Option<Mount>,
    /// `digest`: a monolithic upload's or an upload's final digest.
    pub digest: Option<String>,
    /// `tag` (any number): extra tags of a manifest pushed by digest.
    pub tags: Vec<String>,
    /// `n`: the page size of a listing.
    pub n: Option<u32>,
    /// `last`: where a listing page starts after.
    pub last: Option<String>,
    /// `artifactType`: the referrers filter.
    pub artifact_type: Option<String>,
    /// `X-Kura-Download`: a presigned download token.
    pub download: Option<String>,
}

/// The headers the handlers read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Length`.
    pub content_length: Option<u64>,
    /// `Content-Range` of an upload chunk: inclusive `(start, end)`.
    pub content_range: Option<(u64, u64)>,
    /// `Range` of a blob read (checked against the blob's size later).
    pub range: Option<String>,
}

/// One data-plane request, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataRequest {
    /// The method (always one the endpoint supports).
    pub method: Method,
    /// What the path addresses.
    pub endpoint: Endpoint,
    /// The query.
    pub params: Params,
    /// The headers the handlers read.
    pub headers: Headers,
}

impl DataRequest {
    /// Parse a request's method, path, query and headers. Fails with the
    /// error the client gets: a bad name or path, a method the endpoint does
    /// not support (405), a repeated single-valued parameter, a malformed
    /// `n` or `Content-Range`.
    pub fn parse(method: &Method, uri: &Uri, headers: &HeaderMap) -> ApiResult<DataRequest> {
        let endpoint = endpoint::parse(uri.path())?;
        if !supports(&endpoint, method) {
            return Err(
                ApiError::new(ErrorCode::Unsupported, format!("method {method} is not supported here"))
                    .status(StatusCode::METHOD_NOT_ALLOWED),
            );
        }
        Ok(DataRequest {
            method: method.clone(),
            params: Params::parse(uri.query())?,
            headers: Headers::parse(headers)?,
            endpoint,
        })
    }

    /// The repository the request addresses (`None` for `/v2/` and the catalog).
    pub fn repository(&self) -> Option<&RepoName> {
        match &self.endpoint {
            Endpoint::Base | Endpoint::Catalog => None,
            Endpoint::Tags(n)
            | Endpoint::Manifest(n, _)
            | Endpoint::Blob(n, _)
            | Endpoint::UploadStart(n)
            | Endpoint::Upload(n, _)
            | Endpoint::Referrers(n, _) => Some(n),
        }
    }

    /// Whether the request only reads (GET or HEAD).
    pub fn is_read(&self) -> bool {
        self.method == Method::GET || self.method == Method::HEAD
    }
}

/// The methods each endpoint serves.
fn supports(ep: &Endpoint, m: &Method) -> bool {
    let read = *m == Method::GET || *m == Method::HEAD;
    match ep {
        Endpoint::Base => read,
        Endpoint::Catalog | Endpoint::Tags(_) | Endpoint::Referrers(..) => *m == Method::GET,
        Endpoint::Manifest(..) => read || *m == Method::PUT || *m == Method::DELETE,
        Endpoint::Blob(..) => read || *m == Method::DELETE,
        Endpoint::UploadStart(_) => *m == Method::POST,
        Endpoint::Upload(..) => *m == Method::GET || *m == Method::PATCH || *m == Method::PUT || *m == Method::DELETE,
    }
}

fn repeated(name: &str) -> ApiError {
    let code = if name == "digest" {
        ErrorCode::DigestInvalid
    } else {
        ErrorCode::Unsupported
    };
    ApiError::new(code, format!("the query parameter {name} may appear only once")).status(StatusCode::BAD_REQUEST)
}

/// A parameter that may appear at most once.
fn once(pairs: &[(String, String)], name: &'static str) -> Result<Option<String>, &'static str> {
    let mut it = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone());
    let first = it.next();
    match it.next() {
        Some(_) => Err(name),
        None => Ok(first),
    }
}

impl Params {
    /// Decode a query string (`None`: no query).
    pub fn parse(query: Option<&str>) -> ApiResult<Params> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        let single = |name| once(&pairs, name).map_err(repeated);
        // A mount needs exactly one digest and one source; anything else is
        // an ordinary upload.
        let mount = match (once(&pairs, "mount"), once(&pairs, "from")) {
            (Ok(Some(digest)), Ok(Some(from))) => from.parse::<RepoName>().ok().map(|from| Mount { digest, from }),
            _ => None,
        };
        let n = match single("n")?.as_deref() {
            None | Some("") => None,
            Some(v) => Some(v.parse::<u32>().map_err(|_| {
                ApiError::new(
                    ErrorCode::Unsupported,
                    format!("n must be a non-negative integer, not {v:?}"),
                )
                .status(StatusCode::BAD_REQUEST)
            })?),
        };
        Ok(Params {
            mount,
            digest: single("digest")?,
            tags: pairs
                .iter()
                .filter(|(k, _)| k == "tag")
                .map(|(_, v)| v.clone())
                .collect(),
            n,
            // Names and tags never hold a NUL, so every name after `a\0…`
            // is a name after `a`: cutting `last` there lists the same page
            // on every engine (PostgreSQL cannot take a NUL in a text value).
            last: single("last")?.map(|l| match l.find('\0') {
                Some(i) => l[..i].to_string(),
                None => l,
            }),
            artifact_type: single("artifactType")?,
            download: single(DOWNLOAD_PARAM)?,
        })
    }
}

/// Whether a query parameter carries bearer material: a presigned download
/// token, or a SigV4 presigned URL's signature, credential or session token.
fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == DOWNLOAD_PARAM.to_ascii_lowercase()
        || n.starts_with("x-amz-")
        || n.contains("token")
        || n.contains("signature")
        || n.contains("credential")
        || n.contains("password")
}

/// A query string fit for logs: the value of every parameter that carries
/// bearer material is replaced by `REDACTED` (names are compared after
/// percent-decoding, so an encoded name is redacted too).
pub fn redact_query(query: Option<&str>) -> String {
    let Some(q) = query else {
        return String::new();
    };
    q.split('&')
        .map(|pair| {
            let key = pair.split_once('=').map_or(pair, |(k, _)| k);
            let decoded: String = form_urlencoded::parse(key.as_bytes())
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default();
            if is_secret_param(&decoded) {
                format!("{key}=REDACTED")
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

impl Headers {
    /// Read the headers the handlers use.
    pub fn parse(h: &HeaderMap) -> ApiResult<Headers> {
        Ok(Headers {
            content_type: header(h, "content-type").map(str::to_string),
            content_length: header(h, "content-length").and_then(|v| v.trim().parse().ok()),
            content_range: parse_content_range(header(h, "content-range"))?,
            range: header(h, "range").map(str::to_string),
        })
    }
}

/// Parse `Content-Range: <start>-<end>` (a `bytes ` prefix and `/total` suffix are tolerated).
fn parse_content_range(v: Option<&str>) -> ApiResult<Option<(u64, u64)>> {
    let Some(v) = v else {
        return Ok(None);
    };
    let bad = || ApiError::new(ErrorCode::RangeInvalid, format!("invalid Content-Range {v:?}"));
    let s = v.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u64, u64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::parse(Some(q)).unwrap()
    }

    #[test]
    fn query_is_decoded_once_like_the_handler_reads_it() {
        let d = "sha256:aa";
        let m = params(&format!("mount={d}&from=src/app")).mount.unwrap();
        assert_eq!((m.digest.as_str(), m.from.as_str()), (d, "src/app"));
        // Percent-encoded names are the same parameters.
        let m = params(&format!("m%6Funt={d}&fr%6Fm=secret")).mount.unwrap();
        assert_eq!(m.from.as_str(), "secret");
        assert_eq!(params("from=a%2Fb&mount=x").mount.unwrap().from.as_str(), "a/b");
    }

    #[test]
    fn repeated_mount_or_from_is_no_mount() {
        for q in [
            "mount=x&from=a&from=b",
            "mount=x&%66rom=secret&from=mine",
            "mount=x&mount=y&from=a",
            "mount=x",
            "from=a",
            "mount=x&from=NOT..valid",
        ] {
            assert_eq!(params(q).mount, None, "{q}");
        }
    }

    #[test]
    fn repeated_single_parameters_are_refused() {
        for q in [
            "digest=a&digest=b",
            "n=1&n=2",
            "last=a&l%61st=b",
            "X-Kura-Download=a&X-Kura-Download=b",
        ] {
            let e = Params::parse(Some(q)).unwrap_err();
            assert_eq!(e.error.status(), StatusCode::BAD_REQUEST, "{q}");
        }
        assert_eq!(params("tag=a&tag=b&unknown=1&unknown=2").tags, vec!["a", "b"]);
        assert!(Params::parse(Some("n=x")).is_err());
    }

    #[test]
    fn logged_queries_hold_no_bearer_material() {
        assert_eq!(redact_query(None), "");
        assert_eq!(
            redact_query(Some("n=2&X-Kura-Download=abc.def&last=x")),
            "n=2&X-Kura-Download=REDACTED&last=x"
        );
        assert_eq!(
            redact_query(Some("X%2DKura%2DDownload=abc")),
            "X%2DKura%2DDownload=REDACTED"
        );
        assert_eq!(
            redact_query(Some("X-Amz-Signature=s&X-Amz-Credential=c&digest=sha256:a")),
            "X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&digest=sha256:a"
        );
    }

    #[test]
    fn methods_are_checked_at_parse() {
        let h = HeaderMap::new();
        let p = |m: Method, u: &str| DataRequest::parse(&m, &u.parse().unwrap(), &h);
        assert!(p(Method::GET, "/v2/a/tags/list").is_ok());
        assert_eq!(
            p(Method::POST, "/v2/a/tags/list").unwrap_err().error.status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert!(p(Method::GET, "/v2/a/blobs/uploads/").is_err());
        assert!(p(Method::PATCH, "/v2/a/blobs/uploads/x").is_ok());
        assert!(p(Method::PATCH, "/v2/a/manifests/x").is_err());
    }
}
