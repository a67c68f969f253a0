//! Semantic versions (SemVer 2.0 precedence) as used by npm, crates.io and Go modules.
//!
//! Accepted beyond strict SemVer: surrounding whitespace, a leading `v`, `V` or `=` (Go writes
//! `v1.2.3`), a missing minor or patch component (`1.2` is `1.2.0`, `v2` is `v2.0.0`) and
//! leading zeros in numbers. Build metadata (`+build`, Go's `+incompatible`) is ignored for
//! ordering, as SemVer requires; Go pseudo-versions are ordinary pre-releases and so sort
//! correctly. Four numeric components, wildcards and empty identifiers are rejected.

use std::cmp::Ordering;

/// A parsed semantic version, borrowing from its source text.
#[derive(Debug, Clone)]
pub(crate) struct Version<'a> {
    core: [&'a str; 3],
    pre: Vec<&'a str>,
}

fn is_num(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

fn identifiers(s: &str) -> Option<Vec<&str>> {
    let ids: Vec<&str> = s.split('.').collect();
    let ok = |id: &&str| !id.is_empty() && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
    ids.iter().all(ok).then_some(ids)
}

/// Parse a (leniently written) semantic version.
pub(crate) fn parse(v: &str) -> Option<Version<'_>> {
    let v = v.trim();
    let v = v.strip_prefix(['v', 'V', '=']).unwrap_or(v);
    let (v, build) = match v.split_once('+') {
        Some((v, b)) => (v, Some(b)),
        None => (v, None),
    };
    if let Some(b) = build {
        identifiers(b)?;
    }
    // The core ends at the first '-' (pre-release identifiers may contain more '-').
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, identifiers(p)?),
        None => (v, Vec::new()),
    };
    let mut parts = core.split('.');
    let mut nums = ["0"; 3];
    for (i, slot) in nums.iter_mut().enumerate() {
        match parts.next() {
            Some(p) if is_num(p) => *slot = p,
            None if i > 0 => break,
            _ => return None,
        }
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Version { core: nums, pre })
}

fn cmp_identifier(a: &str, b: &str) -> Ordering {
    match (is_num(a), is_num(b)) {
        (true, true) => super::cmp_digits(a, b),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

/// Compare two semantic versions by SemVer precedence; `None` if either is invalid.
pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a)?, parse(b)?);
    let core = (0..3)
        .map(|i| super::cmp_digits(a.core[i], b.core[i]))
        .find(|o| o.is_ne());
    if let Some(o) = core {
        return Some(o);
    }
    Some(match (a.pre.is_empty(), b.pre.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a
            .pre
            .iter()
            .zip(&b.pre)
            .map(|(x, y)| cmp_identifier(x, y))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| a.pre.len().cmp(&b.pre.len())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics() {
        let lt = |a, b| assert_eq!(compare(a, b), Some(Ordering::Less), "{a} < {b}");
        let eq = |a, b| assert_eq!(compare(a, b), Some(Ordering::Equal), "{a} = {b}");
        lt("1.0.0-alpha", "1.0.0-alpha.1");
        lt("1.0.0-alpha.1", "1.0.0-alpha.beta");
        lt("1.0.0-beta.2", "1.0.0-beta.11");
        lt("1.0.0-rc.1", "1.0.0");
        lt("v0.0.0-20210101000000-abcdef123456", "v0.0.1");
        lt(
            "v0.0.0-20210101000000-abcdef123456",
            "v0.0.0-20210102000000-000000000000",
        );
        eq("v2.0.0+incompatible", "2.0.0");
        eq("1.2", "1.2.0");
        eq("v2", "2.0.0");
        assert!(parse("1.2.3.4").is_none());
        assert!(parse("1.x").is_none());
        assert!(parse("1.2.3-").is_none());
        assert!(parse("").is_none());
    }
}
