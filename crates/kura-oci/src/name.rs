//! Repository names, tags and manifest references, validated with the
//! distribution spec's grammar.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use regex::Regex;

use crate::digest::Digest;

/// Longest repository name accepted (ECR's limit).
pub const MAX_NAME_LEN: usize = 256;

fn name_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$").unwrap())
}

fn tag_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").unwrap())
}

/// A repository name such as `team/app/api` (any number of components).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RepoName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < 2 && !s.is_empty() {
            // The spec's regex allows one character; ECR requires two. One
            // character names are harmless, so accept them as the spec does.
        }
        if s.len() > MAX_NAME_LEN {
            return Err(format!(
                "repository name is {} characters; the limit is {MAX_NAME_LEN}",
                s.len()
            ));
        }
        if !name_re().is_match(s) {
            return Err(format!("invalid repository name {s:?}: must match the OCI name grammar (lowercase components separated by '/')"));
        }
        Ok(RepoName(s.to_string()))
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag such as `v1.0`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if tag_re().is_match(s) {
            Ok(Tag(s.to_string()))
        } else {
            Err(format!(
                "invalid tag {s:?}: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}"
            ))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest URL names: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// By tag.
    Tag(Tag),
    /// By digest.
    Digest(Digest),
}

impl Reference {
    /// Parse: a string containing `:` must be a digest, else it must be a tag.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.contains(':') {
            s.parse().map(Reference::Digest).map_err(ReferenceError::Digest)
        } else {
            s.parse().map(Reference::Tag).map_err(ReferenceError::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// Why a reference was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// It looked like a digest but was not a valid one.
    #[error("{0}")]
    Digest(crate::digest::DigestError),
    /// It was not a valid tag.
    #[error("{0}")]
    Tag(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "ab",
            "team/app/api",
            "a/b/c/d/e/f/g/h/i/j",
            "my-app",
            "my__app",
            "a.b",
            "x--y",
        ] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "../x", "a/../b", "/a", "a/", "a//b", "a_", "-a", "a/.b", "app:1", "a b",
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad}");
        }
        assert!("a".repeat(256).parse::<RepoName>().is_ok());
        assert!("a".repeat(300).parse::<RepoName>().is_err());
    }

    #[test]
    fn tags_and_refs() {
        assert!("v1.0".parse::<Tag>().is_ok());
        assert!("_x".parse::<Tag>().is_ok());
        assert!(".x".parse::<Tag>().is_err());
        assert!("a".repeat(129).parse::<Tag>().is_err());
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        assert!(matches!(Reference::parse("sha256:zz"), Err(ReferenceError::Digest(_))));
    }
}
