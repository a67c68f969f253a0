//! Matching an inventory against advisories: which installed packages are affected, and how
//! severe each finding is (ECR's rules: the distribution's rating where given, else CVSS,
//! else `UNDEFINED`).
//!
//! Two steps so the caller can fetch advisories from wherever it keeps them:
//! [`queries`] lists the `(ecosystem, package)` pairs to look up, [`match_inventory`] takes
//! what was found.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::types::{Distro, Inventory, Package, PackageKind};
use crate::version::{compare, is_valid, Scheme};
use crate::vulndb::{debian_ecosystem, scheme_of, Advisory, Cvss, Event};

/// ECR's finding severities, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    /// No rating available.
    Undefined,
    /// Informational only.
    Informational,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// The ECR spelling (`CRITICAL`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Undefined => "UNDEFINED",
            Severity::Informational => "INFORMATIONAL",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    /// From a CVSS base score: CRITICAL ≥ 9, HIGH ≥ 7, MEDIUM ≥ 4, LOW > 0, else INFORMATIONAL.
    pub fn from_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::Informational
        }
    }

    /// From a distribution's or database's own rating, if it is one we know.
    pub fn from_vendor(rating: &str) -> Option<Severity> {
        Some(match rating.trim().to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" | "important" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" | "negligible" => Severity::Low,
            "unimportant" | "informational" | "none" => Severity::Informational,
            _ => return None,
        })
    }
}

/// The severity of an advisory by ECR's rule.
pub fn severity_of(advisory: &Advisory) -> Severity {
    if let Some(s) = advisory.vendor_severity.as_deref().and_then(Severity::from_vendor) {
        return s;
    }
    best_cvss(&advisory.cvss)
        .map(|c| Severity::from_score(c.score))
        .unwrap_or(Severity::Undefined)
}

/// The CVSS entry to report: the newest version, highest score.
pub fn best_cvss(cvss: &[Cvss]) -> Option<&Cvss> {
    cvss.iter().max_by(|a, b| {
        a.version
            .cmp(&b.version)
            .then(a.score.partial_cmp(&b.score).unwrap_or(Ordering::Equal))
    })
}

/// One affected package.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The vulnerability's advisory.
    pub advisory: Advisory,
    /// The affected installed package.
    pub package: Package,
    /// The version that was compared (the source version for distribution packages).
    pub matched_version: String,
    /// The severity by ECR's rule.
    pub severity: Severity,
}

/// The OSV ecosystem of a distribution, e.g. `Debian:12`, `Alpine:v3.20`.
pub fn distro_ecosystem(distro: &Distro) -> Option<String> {
    let version = distro.version_id.as_deref().unwrap_or("");
    match distro.id.as_str() {
        "debian" => {
            if let Some(major) = version.split('.').next().filter(|m| !m.is_empty()) {
                Some(format!("Debian:{major}"))
            } else {
                distro.codename.as_deref().map(debian_ecosystem)
            }
        }
        "ubuntu" => (!version.is_empty()).then(|| format!("Ubuntu:{version}")),
        "alpine" => {
            let mut parts = version.split('.');
            match (parts.next(), parts.next()) {
                (Some(a), Some(b)) => Some(format!("Alpine:v{a}.{b}")),
                _ => None,
            }
        }
        "rhel" => major_of(version).map(|m| format!("Red Hat:{m}")),
        "rocky" => major_of(version).map(|m| format!("Rocky Linux:{m}")),
        "almalinux" => major_of(version).map(|m| format!("AlmaLinux:{m}")),
        _ => None,
    }
}

fn major_of(v: &str) -> Option<&str> {
    v.split('.').next().filter(|m| !m.is_empty())
}

/// The `(ecosystem, name, version)` under which a package is looked up, if it can be.
/// Distribution packages are looked up by source package and source version.
pub fn lookup_key(distro: Option<&Distro>, pkg: &Package) -> Option<(String, String, String)> {
    if pkg.kind.is_os() {
        let eco = distro.and_then(distro_ecosystem)?;
        let name = pkg.source_name.clone().unwrap_or_else(|| pkg.name.clone());
        let version = pkg.source_version.clone().unwrap_or_else(|| pkg.version.clone());
        Some((eco, name, version))
    } else {
        let eco = pkg.kind.osv_ecosystem()?;
        let name = match pkg.kind {
            PackageKind::Python => normalize_pypi(&pkg.name),
            _ => pkg.name.clone(),
        };
        Some((eco.to_string(), name, pkg.version.clone()))
    }
}

/// PEP 503 name normalisation (lower case, runs of `-_.` → `-`).
pub fn normalize_pypi(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if c == '-' || c == '_' || c == '.' {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Which packages a scan covers: OS packages always; language packages with enhanced scanning.
pub fn in_scope(pkg: &Package, enhanced: bool) -> bool {
    pkg.kind.is_os() || enhanced
}

/// The `(ecosystem, package)` pairs whose advisories the matcher needs.
pub fn queries(inv: &Inventory, enhanced: bool) -> BTreeSet<(String, String)> {
    inv.packages
        .iter()
        .filter(|p| in_scope(p, enhanced))
        .filter_map(|p| lookup_key(inv.distro.as_ref(), p))
        .map(|(e, n, _)| (e, n))
        .collect()
}

/// Is `version` inside the advisory's affected ranges or versions?
pub fn is_affected(advisory: &Advisory, version: &str) -> bool {
    if advisory.versions.iter().any(|v| v == version) {
        return true;
    }
    let eco_scheme = scheme_of(&advisory.ecosystem);
    advisory.ranges.iter().any(|r| {
        let scheme = if r.semver { Some(Scheme::Semver) } else { eco_scheme };
        match scheme {
            Some(s) => in_range(s, &r.events, version),
            None => false,
        }
    })
}

fn event_version(e: &Event) -> &str {
    match e {
        Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
    }
}

/// OSV range evaluation: sort the events by version; the version is affected when the last
/// event at or below it is an introduction (a `last_affected` event still covers itself).
fn in_range(scheme: Scheme, events: &[Event], version: &str) -> bool {
    if !is_valid(scheme, version) {
        return false;
    }
    let mut sorted: Vec<&Event> = events
        .iter()
        .filter(|e| event_version(e) == "0" || is_valid(scheme, event_version(e)))
        .collect();
    sorted.sort_by(|a, b| {
        let (va, vb) = (event_version(a), event_version(b));
        match (va == "0", vb == "0") {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            _ => compare(scheme, va, vb).unwrap_or(Ordering::Equal),
        }
    });
    let mut affected = false;
    for e in sorted {
        let v = event_version(e);
        let cmp = if v == "0" {
            Ordering::Greater
        } else {
            compare(scheme, version, v).unwrap_or(Ordering::Less)
        };
        match e {
            Event::Introduced(_) if cmp != Ordering::Less => affected = true,
            Event::Fixed(_) | Event::Limit(_) if cmp != Ordering::Less => affected = false,
            Event::LastAffected(_) if cmp == Ordering::Greater => affected = false,
            _ => {}
        }
    }
    affected
}

/// Match an inventory against the advisories found for [`queries`]. One finding per
/// vulnerability name and installed package; sorted by severity (highest first), then name.
pub fn match_inventory(
    inv: &Inventory,
    enhanced: bool,
    advisories: &BTreeMap<(String, String), Vec<Advisory>>,
) -> Vec<Finding> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for pkg in inv.packages.iter().filter(|p| in_scope(p, enhanced)) {
        let Some((eco, name, version)) = lookup_key(inv.distro.as_ref(), pkg) else {
            continue;
        };
        let Some(list) = advisories.get(&(eco, name)) else {
            continue;
        };
        for adv in list {
            if !is_affected(adv, &version) {
                continue;
            }
            if !seen.insert((adv.name.clone(), pkg.kind, pkg.name.clone(), pkg.version.clone())) {
                continue;
            }
            out.push(Finding {
                severity: severity_of(adv),
                advisory: adv.clone(),
                package: pkg.clone(),
                matched_version: version.clone(),
            });
        }
    }
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.advisory.name.cmp(&b.advisory.name))
            .then_with(|| a.package.name.cmp(&b.package.name))
    });
    out
}
