//! Parse a `/v2/...` path into an [`Endpoint`]. Repository names have any
//! number of components, so routing is done from the end of the path rather
//! than by fixed-depth route patterns.

use kura_oci::{ErrorCode, RepoName};
use percent_encoding::percent_decode_str;

use crate::error::{ApiError, ApiResult};

/// What a data-plane request addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`: the API version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags(RepoName),
    /// `/v2/<name>/manifests/<reference>`.
    Manifest(RepoName, String),
    /// `/v2/<name>/blobs/<digest>`.
    Blob(RepoName, String),
    /// `/v2/<name>/blobs/uploads/`.
    UploadStart(RepoName),
    /// `/v2/<name>/blobs/uploads/<id>`.
    Upload(RepoName, String),
    /// `/v2/<name>/referrers/<digest>`.
    Referrers(RepoName, String),
}

fn name(segs: &[String]) -> ApiResult<RepoName> {
    let joined = segs.join("/");
    joined
        .parse()
        .map_err(|msg: String| ApiError::new(ErrorCode::NameInvalid, msg).detail(serde_json::json!({ "name": joined })))
}

/// Parse the path (which must start with `/v2`).
pub fn parse(path: &str) -> ApiResult<Endpoint> {
    let rest = path.strip_prefix("/v2").ok_or_else(|| {
        ApiError::new(ErrorCode::Unsupported, "not a registry path").status(http::StatusCode::NOT_FOUND)
    })?;
    if rest.is_empty() || rest == "/" {
        return Ok(Endpoint::Base);
    }
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest == "_catalog" {
        return Ok(Endpoint::Catalog);
    }
    let segs: Vec<String> = rest
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let n = segs.len();
    let not_found = || {
        ApiError::new(ErrorCode::Unsupported, format!("no registry endpoint at {path}"))
            .status(http::StatusCode::NOT_FOUND)
    };
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Ok(Endpoint::Tags(name(&segs[..n - 2])?));
    }
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let repo = name(&segs[..n - 3])?;
        return Ok(if segs[n - 1].is_empty() {
            Endpoint::UploadStart(repo)
        } else {
            Endpoint::Upload(repo, segs[n - 1].clone())
        });
    }
    if n >= 2 {
        let last = segs[n - 1].clone();
        match segs[n - 2].as_str() {
            "manifests" if !last.is_empty() => return Ok(Endpoint::Manifest(name(&segs[..n - 2])?, last)),
            "referrers" if !last.is_empty() => return Ok(Endpoint::Referrers(name(&segs[..n - 2])?, last)),
            "blobs" if last == "uploads" => return Ok(Endpoint::UploadStart(name(&segs[..n - 2])?)),
            "blobs" if !last.is_empty() => return Ok(Endpoint::Blob(name(&segs[..n - 2])?, last)),
            _ => {}
        }
    }
    Err(not_found())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rn(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn routes_any_depth() {
        assert_eq!(parse("/v2/").unwrap(), Endpoint::Base);
        assert_eq!(parse("/v2").unwrap(), Endpoint::Base);
        assert_eq!(parse("/v2/_catalog").unwrap(), Endpoint::Catalog);
        assert_eq!(
            parse("/v2/a/b/c/d/e/f/g/h/tags/list").unwrap(),
            Endpoint::Tags(rn("a/b/c/d/e/f/g/h"))
        );
        assert_eq!(
            parse("/v2/x/manifests/latest").unwrap(),
            Endpoint::Manifest(rn("x"), "latest".into())
        );
        assert_eq!(parse("/v2/x/blobs/uploads/").unwrap(), Endpoint::UploadStart(rn("x")));
        assert_eq!(parse("/v2/x/blobs/uploads").unwrap(), Endpoint::UploadStart(rn("x")));
        assert_eq!(
            parse("/v2/x/blobs/uploads/abc").unwrap(),
            Endpoint::Upload(rn("x"), "abc".into())
        );
        assert_eq!(
            parse("/v2/blobs/blobs/sha256%3Aab").unwrap(),
            Endpoint::Blob(rn("blobs"), "sha256:ab".into())
        );
        assert_eq!(
            parse("/v2/r/referrers/sha256:ab").unwrap(),
            Endpoint::Referrers(rn("r"), "sha256:ab".into())
        );
        // A repository may be called "manifests" or "tags".
        assert_eq!(
            parse("/v2/manifests/manifests/v1").unwrap(),
            Endpoint::Manifest(rn("manifests"), "v1".into())
        );
    }

    #[test]
    fn rejects_bad_names_and_paths() {
        for p in [
            "/v2/../x/tags/list",
            "/v2/A/tags/list",
            "/v2/a//b/manifests/x",
            "/v2/%2e%2e/x/blobs/sha256:a",
        ] {
            let e = parse(p).unwrap_err();
            assert_eq!(e.error.code, ErrorCode::NameInvalid, "{p}");
        }
        assert_eq!(
            parse("/v2/x/unknown").unwrap_err().error.status(),
            http::StatusCode::NOT_FOUND
        );
        assert_eq!(
            parse("/v2/x/manifests/").unwrap_err().error.status(),
            http::StatusCode::NOT_FOUND
        );
    }
}
