//! The meaning of a pull-through cache rule: ECR's prefix grammar, which
//! names a rule covers, the upstream registry a URL names, and the upstream
//! repository a cached repository's name maps to.

/// The prefix that covers every repository name.
pub const ROOT: &str = "ROOT";

/// ECR's default quota of pull-through cache rules per registry.
pub const MAX_RULES: i64 = 50;

/// A rule's prefix as stored: `ROOT`, or the given prefix without the
/// trailing `/` ECR always assumes.
pub fn normalize_prefix(prefix: &str) -> String {
    if prefix == ROOT {
        return ROOT.to_string();
    }
    prefix.trim_end_matches('/').to_string()
}

/// The rest of `name` after `prefix` when the rule's prefix covers it:
/// `ROOT` covers every name (the rest is the whole name); `hub` covers
/// `hub/x` (rest `x`) but neither `hub` itself nor `hubx/y`.
pub fn covers<'a>(prefix: &str, name: &'a str) -> Option<&'a str> {
    if prefix == ROOT {
        return Some(name);
    }
    let rest = name.strip_prefix(prefix)?.strip_prefix('/')?;
    (!rest.is_empty()).then_some(rest)
}

/// The upstream repository for `rest` (what follows the ECR prefix):
/// the upstream repository prefix (if any) joined with it, and on Docker Hub
/// a one-segment name under `library/`.
pub fn upstream_name(upstream_prefix: Option<&str>, rest: &str, docker_hub: bool) -> String {
    let name = match upstream_prefix.map(normalize_prefix) {
        Some(p) if p != ROOT && !p.is_empty() => format!("{p}/{rest}"),
        _ => rest.to_string(),
    };
    if docker_hub && !name.contains('/') {
        format!("library/{name}")
    } else {
        name
    }
}

/// An upstream registry URL, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// `https` unless the URL says `http://`.
    pub scheme: &'static str,
    /// `host[:port]`, lower-cased.
    pub authority: String,
    /// The host alone.
    pub host: String,
}

impl UpstreamUrl {
    /// `scheme://authority` of the registry's API (Docker Hub's names map to
    /// `registry-1.docker.io`).
    pub fn base(&self) -> String {
        let authority = if is_docker_hub_host(&self.host) {
            "registry-1.docker.io"
        } else {
            &self.authority
        };
        format!("{}://{authority}", self.scheme)
    }
}

/// Parse ECR's `upstreamRegistryUrl`: a host name with an optional port,
/// optionally with `https://` or (Kura: private upstreams on trusted
/// networks) `http://`; no user, path, query or fragment.
pub fn parse_url(url: &str) -> Result<UpstreamUrl, String> {
    let bad = |why: &str| format!("Invalid upstream registry URL '{url}': {why}");
    if url.is_empty() || url.len() > 512 {
        return Err(bad("it must be 1 to 512 characters"));
    }
    let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
        ("https", r)
    } else if let Some(r) = url.strip_prefix("http://") {
        ("http", r)
    } else if url.contains("://") {
        return Err(bad("the scheme must be https:// or http://"));
    } else {
        ("https", url)
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest).to_ascii_lowercase();
    if authority.is_empty() {
        return Err(bad("it names no host"));
    }
    if !authority
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    {
        return Err(bad("it must be a host name with an optional port, without a path"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address needs its closing ]"))?;
        (format!("[{h}]"), after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.clone(), None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad("the port must be a number"));
        }
    }
    if host.is_empty() || host.starts_with('.') || host.starts_with('-') || host.contains("..") {
        return Err(bad("it names no valid host"));
    }
    Ok(UpstreamUrl {
        scheme,
        authority,
        host,
    })
}

/// Whether `host` is Docker Hub's registry.
pub fn is_docker_hub_host(host: &str) -> bool {
    matches!(host, "registry-1.docker.io" | "docker.io" | "index.docker.io")
}

/// ECR's `upstreamRegistry` for a host it knows; None for any other OCI registry.
pub fn registry_for_host(host: &str) -> Option<&'static str> {
    if is_docker_hub_host(host) {
        return Some("docker-hub");
    }
    match host {
        "public.ecr.aws" => return Some("ecr-public"),
        "ecr-premium.aws.com" => return Some("ecr-public-premium"),
        "quay.io" => return Some("quay"),
        "registry.k8s.io" => return Some("k8s"),
        "ghcr.io" => return Some("github-container-registry"),
        "registry.gitlab.com" => return Some("gitlab-container-registry"),
        "cgr.dev" => return Some("chainguard"),
        _ => {}
    }
    if host.ends_with(".azurecr.io") && host.len() > ".azurecr.io".len() {
        return Some("azure-container-registry");
    }
    ecr_region(host).map(|_| "ecr")
}

/// The region of an ECR private registry host
/// (`<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`).
pub fn ecr_region(host: &str) -> Option<String> {
    let host = host.strip_suffix(".cn").unwrap_or(host);
    let rest = host.strip_suffix(".amazonaws.com")?;
    let mut parts = rest.split('.');
    let (account, dkr, ecr, region) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let ok = account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && dkr == "dkr"
        && (ecr == "ecr" || ecr == "ecr-fips")
        && !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && parts.next().is_none();
    ok.then(|| region.to_string())
}

/// How a rule's upstream registry takes credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialNeed {
    /// A credential secret is required.
    Required,
    /// A credential secret may be given.
    Optional,
    /// No credential secret may be given.
    Refused,
}

/// What ECR requires of the credentials for each upstream registry (Kura
/// takes an access key secret for `ecr`, where ECR assumes a role).
pub fn credential_need(registry: Option<&str>) -> CredentialNeed {
    match registry {
        Some("docker-hub" | "github-container-registry" | "azure-container-registry" | "gitlab-container-registry") => {
            CredentialNeed::Required
        }
        Some("ecr") => CredentialNeed::Required,
        Some("ecr-public-premium") => CredentialNeed::Refused,
        Some("ecr-public" | "quay" | "k8s") => CredentialNeed::Refused,
        _ => CredentialNeed::Optional,
    }
}

/// The registry (account) an ARN names (`arn:<partition>:<service>:<region>:<account>:…`).
pub fn arn_account(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let _ = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    parts.next()
}

/// The longest prefix among `prefixes` that covers `name` (a named prefix
/// before `ROOT`), with the rest of the name.
pub fn longest<'a, 'n>(prefixes: impl Iterator<Item = &'a str>, name: &'n str) -> Option<(&'a str, &'n str)> {
    let mut best: Option<(&'a str, &'n str)> = None;
    for p in prefixes {
        if let Some(rest) = covers(p, name) {
            let better = match best {
                None => true,
                Some((b, _)) => b == ROOT || (p != ROOT && p.len() > b.len()),
            };
            if better {
                best = Some((p, rest));
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_cover_whole_segments_only() {
        assert_eq!(covers("hub", "hub/library/nginx"), Some("library/nginx"));
        assert_eq!(covers("hub", "hub"), None);
        assert_eq!(covers("hub", "hubx/nginx"), None);
        assert_eq!(covers("hub", "hub/"), None);
        assert_eq!(covers("a/b", "a/b/c"), Some("c"));
        assert_eq!(covers("a/b", "a/bc/d"), None);
        assert_eq!(covers(ROOT, "nginx"), Some("nginx"));
        assert_eq!(normalize_prefix("ecr-public/"), "ecr-public");
        assert_eq!(normalize_prefix("ROOT"), "ROOT");
    }

    #[test]
    fn the_longest_prefix_wins_and_root_comes_last() {
        let rules = ["ROOT", "hub", "hub/team", "quay"];
        assert_eq!(
            longest(rules.iter().copied(), "hub/team/app"),
            Some(("hub/team", "app"))
        );
        assert_eq!(longest(rules.iter().copied(), "hub/app"), Some(("hub", "app")));
        assert_eq!(longest(rules.iter().copied(), "other/app"), Some(("ROOT", "other/app")));
        assert_eq!(longest(["hub"].iter().copied(), "hubx/app"), None);
    }

    #[test]
    fn docker_hub_names_go_under_library() {
        assert_eq!(upstream_name(None, "nginx", true), "library/nginx");
        assert_eq!(upstream_name(None, "bitnami/redis", true), "bitnami/redis");
        assert_eq!(upstream_name(None, "nginx", false), "nginx");
        assert_eq!(upstream_name(Some("team/"), "app", false), "team/app");
        assert_eq!(upstream_name(Some("ROOT"), "app", false), "app");
    }

    #[test]
    fn urls_and_registries() {
        let u = parse_url("registry-1.docker.io").unwrap();
        assert_eq!((u.scheme, u.base().as_str()), ("https", "https://registry-1.docker.io"));
        assert_eq!(parse_url("docker.io").unwrap().base(), "https://registry-1.docker.io");
        let u = parse_url("http://127.0.0.1:5000/").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.base().as_str()),
            ("http", "127.0.0.1", "http://127.0.0.1:5000")
        );
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("host/path").is_err());
        assert!(parse_url("user@host").is_err());
        assert!(parse_url("host:port").is_err());
        assert!(parse_url("").is_err());
        assert_eq!(registry_for_host("ghcr.io"), Some("github-container-registry"));
        assert_eq!(registry_for_host("me.azurecr.io"), Some("azure-container-registry"));
        assert_eq!(
            registry_for_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            Some("ecr")
        );
        assert_eq!(
            ecr_region("123456789012.dkr.ecr.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(registry_for_host("12345.dkr.ecr.eu-west-1.amazonaws.com"), None);
        assert_eq!(registry_for_host("localhost"), None);
        assert_eq!(
            arn_account("arn:aws:secretsmanager:us-east-1:123456789012:secret:x"),
            Some("123456789012")
        );
    }
}
