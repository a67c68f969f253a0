//! Version comparison per ecosystem.

use std::cmp::Ordering;

/// A version ordering scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Debian `dpkg --compare-versions`.
    Dpkg,
    /// Alpine apk-tools.
    Apk,
    /// rpmvercmp with epoch and release.
    Rpm,
    /// Python PEP 440.
    Pep440,
    /// Semantic versioning 2.0 (npm, crates.io; Go with an optional leading `v`).
    Semver,
    /// Maven ComparableVersion.
    Maven,
}

/// Compare two versions under `scheme`; `None` when either does not parse under it.
pub fn compare(_scheme: Scheme, _a: &str, _b: &str) -> Option<Ordering> {
    todo!("version comparison lands in the version helper's branch")
}
