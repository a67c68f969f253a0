//! The shared vocabulary of the scanner: packages, distributions, inventories.

use serde::{Deserialize, Serialize};

/// Where a package came from: its package manager or language ecosystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PackageKind {
    /// Debian/Ubuntu (`var/lib/dpkg/status`, `var/lib/dpkg/status.d/*`).
    Dpkg,
    /// Alpine (`lib/apk/db/installed`).
    Apk,
    /// RPM-based distributions (rpmdb).
    Rpm,
    /// Python distributions (`*.dist-info/METADATA`, `*.egg-info/PKG-INFO`).
    Python,
    /// npm packages (`node_modules/**/package.json`).
    Npm,
    /// Go modules from a Go binary's build info.
    Go,
    /// Rust crates from a binary built with cargo-auditable.
    Cargo,
    /// Java artifacts (`META-INF/maven/**/pom.properties`, also inside jars).
    Maven,
}

impl PackageKind {
    /// OS packages are what basic scanning covers; the rest need enhanced scanning.
    pub fn is_os(self) -> bool {
        matches!(self, PackageKind::Dpkg | PackageKind::Apk | PackageKind::Rpm)
    }

    /// The OSV ecosystem name for language packages (`None` for OS packages, whose OSV
    /// ecosystem depends on the distribution release).
    pub fn osv_ecosystem(self) -> Option<&'static str> {
        match self {
            PackageKind::Python => Some("PyPI"),
            PackageKind::Npm => Some("npm"),
            PackageKind::Go => Some("Go"),
            PackageKind::Cargo => Some("crates.io"),
            PackageKind::Maven => Some("Maven"),
            _ => None,
        }
    }
}

/// One installed package.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    /// Package manager / ecosystem.
    pub kind: PackageKind,
    /// Binary package name (dpkg `Package:`, apk `P:`, rpm NAME, Python/npm/crate/module name;
    /// Maven as `groupId:artifactId`).
    pub name: String,
    /// Installed version as the package manager writes it (dpkg with epoch, rpm as
    /// `[epoch:]version-release`, apk `V:`).
    pub version: String,
    /// Source package (dpkg `Source:`, apk origin `o:`, rpm source RPM name), if different
    /// information is known.
    pub source_name: Option<String>,
    /// Version of the source package (dpkg `Source: name (version)`), if it differs.
    pub source_version: Option<String>,
    /// Architecture, if recorded.
    pub arch: Option<String>,
    /// Path inside the image of the file the package was read from (no leading `/`).
    pub path: String,
}

/// The distribution an image is built on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distro {
    /// `ID` from os-release (`debian`, `alpine`, `ubuntu`, `rhel`, ...).
    pub id: String,
    /// `VERSION_ID` (e.g. `12`, `3.20.3`).
    pub version_id: Option<String>,
    /// `VERSION_CODENAME` (e.g. `bookworm`), derived from `etc/debian_version` when missing.
    pub codename: Option<String>,
    /// `PRETTY_NAME`.
    pub pretty_name: Option<String>,
}

/// Everything the catalogers found in an image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The detected distribution, if any.
    pub distro: Option<Distro>,
    /// Packages, sorted and deduplicated.
    pub packages: Vec<Package>,
}
