//! Image scanning, offline.
//!
//! The scanner is split so that new vulnerability data means re-matching only:
//! - [`inventory`] reads an image's layers as streams (never extracting to disk), keeps a small
//!   per-layer [`inventory::LayerIndex`] (cacheable by layer digest), merges the indexes into one
//!   filesystem view (whiteouts, opaque directories, symlinks) and runs the package catalogers;
//! - [`version`] compares versions per ecosystem (dpkg, apk, rpm, PEP 440, semver, ...);
//! - [`vulndb`] parses vulnerability data (OSV, Debian security tracker, Alpine secdb) and
//!   [`matcher`] turns an inventory plus vulnerability records into findings.
//!
//! Nothing here does network or database I/O: callers feed bytes in and store what comes out.

pub mod inventory;
pub mod matcher;
pub mod types;
pub mod version;
pub mod vulndb;

pub use types::{Distro, Inventory, Package, PackageKind};
