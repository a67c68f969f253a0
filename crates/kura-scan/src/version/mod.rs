//! Version comparison per ecosystem.
//!
//! Every scheme is implemented here from the ecosystem's documented rules and checked against the
//! ecosystem's own tool (see `tests/data/versions/README.md`). [`compare`] returns `None` when
//! either version is not valid under the scheme, so callers never get an ordering made up from
//! garbage.

use std::cmp::Ordering;

mod apk;
mod dpkg;
mod maven;
mod pep440;
mod rpm;
mod semver;

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

impl Scheme {
    /// Every scheme, in declaration order.
    pub const ALL: [Scheme; 6] = [
        Scheme::Dpkg,
        Scheme::Apk,
        Scheme::Rpm,
        Scheme::Pep440,
        Scheme::Semver,
        Scheme::Maven,
    ];
}

/// Compare two versions under `scheme`; `None` when either does not parse under it.
pub fn compare(scheme: Scheme, a: &str, b: &str) -> Option<Ordering> {
    match scheme {
        Scheme::Dpkg => dpkg::compare(a, b),
        Scheme::Apk => apk::compare(a, b),
        Scheme::Rpm => rpm::compare(a, b),
        Scheme::Pep440 => pep440::compare(a, b),
        Scheme::Semver => semver::compare(a, b),
        Scheme::Maven => maven::compare(a, b),
    }
}

/// Whether `v` is a valid version under `scheme` (exactly when [`compare`] accepts it).
pub fn is_valid(scheme: Scheme, v: &str) -> bool {
    match scheme {
        Scheme::Dpkg => dpkg::parse(v).is_some(),
        Scheme::Apk => apk::is_valid(v),
        Scheme::Rpm => rpm::parse(v).is_some(),
        Scheme::Pep440 => pep440::parse(v).is_some(),
        Scheme::Semver => semver::parse(v).is_some(),
        Scheme::Maven => maven::is_valid(v),
    }
}

/// Compare two runs of ASCII digits by numeric value, without overflow (any length).
pub(crate) fn cmp_digits(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Split `s` at the end of its leading run of bytes matching `pred`.
pub(crate) fn split_run(s: &str, pred: impl Fn(u8) -> bool) -> (&str, &str) {
    let n = s.bytes().take_while(|&c| pred(c)).count();
    s.split_at(n)
}
