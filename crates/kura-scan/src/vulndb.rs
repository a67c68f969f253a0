//! Vulnerability data: OSV records, the Debian security tracker's JSON and Alpine's secdb,
//! all turned into one shape, [`Advisory`]: one vulnerability affecting one package in one
//! ecosystem, with OSV-style ranges.
//!
//! Ecosystem names follow OSV (`Debian:12`, `Alpine:v3.20`, `PyPI`, `npm`, `Go`, `crates.io`,
//! `Maven`); the Debian tracker's release code names are mapped onto `Debian:<major>`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::version::Scheme;

/// Which kind of data an import held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceKind {
    /// OSV records (a JSON file, a directory of them, or an ecosystem export zip).
    Osv,
    /// The Debian security tracker's JSON (`/tracker/data/json`).
    DebianTracker,
    /// Alpine's secdb (`main.json`, `community.json`).
    AlpineSecdb,
}

impl SourceKind {
    /// A short label (`OSV`, `DEBIAN_SECURITY_TRACKER`, `ALPINE_SECDB`).
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::Osv => "OSV",
            SourceKind::DebianTracker => "DEBIAN_SECURITY_TRACKER",
            SourceKind::AlpineSecdb => "ALPINE_SECDB",
        }
    }
}

/// An event of an OSV range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Versions from this one on are affected (`0` = from the beginning).
    Introduced(String),
    /// This version and later are not affected.
    Fixed(String),
    /// This is the last affected version.
    LastAffected(String),
    /// An upper limit of the range (exclusive).
    Limit(String),
}

/// An affected range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// `ECOSYSTEM` or `SEMVER` (`GIT` ranges are dropped on import: images carry no commits).
    pub semver: bool,
    /// The events in the order the data gave them.
    pub events: Vec<Event>,
}

/// A CVSS vector and its base score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cvss {
    /// `2.0`, `3.0`, `3.1` or `4.0`.
    pub version: String,
    /// The vector string.
    pub vector: String,
    /// The base score (0.0 - 10.0).
    pub score: f64,
}

/// One vulnerability affecting one package of one ecosystem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// The name findings carry: the CVE id when the record has one, else the record's id.
    pub name: String,
    /// The record's own id (`CVE-…`, `GHSA-…`, `PYSEC-…`, `DSA-…`).
    pub id: String,
    /// Other ids of the same vulnerability.
    pub aliases: Vec<String>,
    /// OSV ecosystem (`Debian:12`, `PyPI`, …).
    pub ecosystem: String,
    /// Package name (the source package for distributions).
    pub package: String,
    /// Affected ranges.
    pub ranges: Vec<Range>,
    /// Explicitly affected versions.
    pub versions: Vec<String>,
    /// The distribution's or the database's own rating (`high`, `MODERATE`, `unimportant`, …).
    pub vendor_severity: Option<String>,
    /// CVSS vectors with their scores.
    pub cvss: Vec<Cvss>,
    /// One-line summary.
    pub title: String,
    /// Longer description.
    pub description: String,
    /// Where to read about it.
    pub uri: String,
    /// Further reference URLs.
    pub references: Vec<String>,
    /// RFC 3339 publication time, if known.
    pub published: Option<String>,
    /// RFC 3339 modification time, if known.
    pub modified: Option<String>,
}

impl Advisory {
    /// The lowest fixed version named by the ranges, for display.
    pub fn fixed_version(&self) -> Option<&str> {
        self.ranges.iter().flat_map(|r| r.events.iter()).find_map(|e| match e {
            Event::Fixed(v) => Some(v.as_str()),
            _ => None,
        })
    }
}

/// Why vulnerability data could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VulnDbError {
    /// The file could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not JSON, or not a shape this importer knows.
    #[error("{path}: {reason}")]
    Format {
        /// The file (or zip member).
        path: String,
        /// What was wrong.
        reason: String,
    },
}

fn format_err(path: &str, reason: impl Into<String>) -> VulnDbError {
    VulnDbError::Format {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// What one import read.
#[derive(Clone, Debug, Default)]
pub struct ImportSummary {
    /// The kinds of data seen.
    pub kinds: Vec<SourceKind>,
    /// Records (files / tracker entries) read.
    pub records: u64,
    /// Advisories produced (one per affected package).
    pub advisories: u64,
    /// Ecosystems covered.
    pub ecosystems: std::collections::BTreeSet<String>,
}

/// Largest single JSON document read (the full Debian tracker is ~100 MB).
pub const MAX_JSON_BYTES: u64 = 1 << 30;

/// Read vulnerability data from `path` — an OSV JSON file, a directory of OSV JSON files
/// (recursively), an OSV export zip (`all.zip`), the Debian tracker JSON, or an Alpine secdb
/// file — and hand each advisory to `sink`.
pub fn import_path(
    path: &Path,
    sink: &mut dyn FnMut(Advisory) -> Result<(), VulnDbError>,
) -> Result<ImportSummary, VulnDbError> {
    import_path_with_progress(path, sink, &mut |_, _| {})
}

/// [`import_path`], telling `progress(done, total)` how many of the input's
/// JSON documents (files of a directory, members of a zip; a plain file is
/// one) are imported, once the total is known and after each document.
pub fn import_path_with_progress(
    path: &Path,
    sink: &mut dyn FnMut(Advisory) -> Result<(), VulnDbError>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ImportSummary, VulnDbError> {
    let mut summary = ImportSummary::default();
    if path.is_dir() {
        let mut stack = vec![path.to_path_buf()];
        let mut files = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let p = entry?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "json") {
                    files.push(p);
                }
            }
        }
        files.sort();
        let total = files.len() as u64;
        progress(0, total);
        for (i, f) in files.iter().enumerate() {
            let bytes = read_capped(std::fs::File::open(f)?, MAX_JSON_BYTES, &f.display().to_string())?;
            import_json(&f.display().to_string(), &bytes, &mut summary, sink)?;
            progress(i as u64 + 1, total);
        }
        return Ok(summary);
    }
    let name = path.display().to_string();
    let mut file = std::fs::File::open(path)?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic)?;
    drop(file);
    if n == 4 && magic == *b"PK\x03\x04" {
        let mut zip = zip::ZipArchive::new(std::fs::File::open(path)?).map_err(|e| format_err(&name, e.to_string()))?;
        let total = zip.file_names().filter(|n| n.ends_with(".json")).count() as u64;
        let mut done = 0;
        progress(0, total);
        for i in 0..zip.len() {
            let member = zip.by_index(i).map_err(|e| format_err(&name, e.to_string()))?;
            if member.is_dir() || !member.name().ends_with(".json") {
                continue;
            }
            let mname = format!("{name}:{}", member.name());
            let bytes = read_capped(member, MAX_JSON_BYTES, &mname)?;
            import_json(&mname, &bytes, &mut summary, sink)?;
            done += 1;
            progress(done, total);
        }
        return Ok(summary);
    }
    progress(0, 1);
    let bytes = read_capped(std::fs::File::open(path)?, MAX_JSON_BYTES, &name)?;
    import_json(&name, &bytes, &mut summary, sink)?;
    progress(1, 1);
    Ok(summary)
}

fn read_capped(r: impl Read, cap: u64, name: &str) -> Result<Vec<u8>, VulnDbError> {
    let mut buf = Vec::new();
    r.take(cap + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(format_err(name, format!("larger than {cap} bytes")));
    }
    Ok(buf)
}

fn note(summary: &mut ImportSummary, kind: SourceKind) {
    if !summary.kinds.contains(&kind) {
        summary.kinds.push(kind);
    }
}

/// Parse one JSON document of any supported kind.
pub fn import_json(
    name: &str,
    bytes: &[u8],
    summary: &mut ImportSummary,
    sink: &mut dyn FnMut(Advisory) -> Result<(), VulnDbError>,
) -> Result<(), VulnDbError> {
    let mut emit = |a: Advisory, summary: &mut ImportSummary| {
        summary.advisories += 1;
        summary.ecosystems.insert(a.ecosystem.clone());
        sink(a)
    };
    // Sniff the shape from the first keys without a full untyped parse of huge files.
    let head = std::str::from_utf8(&bytes[..bytes.len().min(4096)]).unwrap_or("");
    let trimmed = head.trim_start();
    if trimmed.starts_with('[') {
        // A JSON array of OSV records.
        let records: Vec<Value> = serde_json::from_slice(bytes).map_err(|e| format_err(name, e.to_string()))?;
        note(summary, SourceKind::Osv);
        for r in records {
            summary.records += 1;
            for a in osv_advisories(name, &r)? {
                emit(a, summary)?;
            }
        }
        return Ok(());
    }
    if head.contains("\"distroversion\"") || head.contains("\"secfixes\"") {
        let db: AlpineSecdb = serde_json::from_slice(bytes).map_err(|e| format_err(name, e.to_string()))?;
        note(summary, SourceKind::AlpineSecdb);
        for a in alpine_advisories(&db) {
            summary.records += 1;
            emit(a, summary)?;
        }
        return Ok(());
    }
    if head.contains("\"affected\"") || head.contains("\"schema_version\"") || head.contains("\"modified\"") {
        let record: Value = serde_json::from_slice(bytes).map_err(|e| format_err(name, e.to_string()))?;
        if record.get("id").is_some() && (record.get("affected").is_some() || record.get("modified").is_some()) {
            note(summary, SourceKind::Osv);
            summary.records += 1;
            for a in osv_advisories(name, &record)? {
                emit(a, summary)?;
            }
            return Ok(());
        }
    }
    // The Debian tracker: {source package: {CVE: {releases: {codename: {...}}}}}.
    let tracker: BTreeMap<String, BTreeMap<String, TrackerIssue>> = serde_json::from_slice(bytes).map_err(|e| {
        format_err(
            name,
            format!("not OSV, Debian security tracker or Alpine secdb JSON ({e})"),
        )
    })?;
    note(summary, SourceKind::DebianTracker);
    for (package, issues) in &tracker {
        for (cve, issue) in issues {
            summary.records += 1;
            for a in debian_advisories(package, cve, issue) {
                emit(a, summary)?;
            }
        }
    }
    Ok(())
}

// ----- Debian security tracker ----------------------------------------------------------------

#[derive(Deserialize)]
struct TrackerIssue {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    releases: BTreeMap<String, TrackerRelease>,
}

#[derive(Deserialize)]
struct TrackerRelease {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    fixed_version: Option<String>,
    #[serde(default)]
    urgency: Option<String>,
}

/// Debian release code names and their major versions.
pub const DEBIAN_RELEASES: &[(&str, &str)] = &[
    ("jessie", "8"),
    ("stretch", "9"),
    ("buster", "10"),
    ("bullseye", "11"),
    ("bookworm", "12"),
    ("trixie", "13"),
    ("forky", "14"),
    ("duke", "15"),
];

/// The OSV ecosystem of a Debian release given by code name or number.
pub fn debian_ecosystem(release: &str) -> String {
    let major = DEBIAN_RELEASES
        .iter()
        .find(|(c, _)| *c == release)
        .map(|(_, n)| *n)
        .unwrap_or(release);
    format!("Debian:{major}")
}

fn debian_advisories(package: &str, cve: &str, issue: &TrackerIssue) -> Vec<Advisory> {
    let mut out = Vec::new();
    if !cve.starts_with("CVE-") && !cve.starts_with("TEMP-") {
        return out;
    }
    for (release, rel) in &issue.releases {
        let status = rel.status.as_deref().unwrap_or("");
        let events = match rel.fixed_version.as_deref() {
            Some("0") => continue, // never affected in this release
            Some(v) if !v.is_empty() => vec![Event::Introduced("0".into()), Event::Fixed(v.into())],
            _ if status == "open" || status == "undetermined" => vec![Event::Introduced("0".into())],
            _ => continue,
        };
        let urgency = rel
            .urgency
            .as_deref()
            .map(|u| u.trim_end_matches('*').to_string())
            .filter(|u| !u.is_empty() && u != "not yet assigned" && u != "end-of-life");
        out.push(Advisory {
            name: cve.to_string(),
            id: cve.to_string(),
            aliases: Vec::new(),
            ecosystem: debian_ecosystem(release),
            package: package.to_string(),
            ranges: vec![Range { semver: false, events }],
            versions: Vec::new(),
            vendor_severity: urgency,
            cvss: Vec::new(),
            title: cve.to_string(),
            description: issue.description.clone().unwrap_or_default(),
            uri: format!("https://security-tracker.debian.org/tracker/{cve}"),
            references: Vec::new(),
            published: None,
            modified: None,
        });
    }
    out
}

// ----- Alpine secdb ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct AlpineSecdb {
    #[serde(default)]
    distroversion: String,
    #[serde(default)]
    packages: Vec<AlpinePackage>,
}

#[derive(Deserialize)]
struct AlpinePackage {
    pkg: AlpinePkg,
}

#[derive(Deserialize)]
struct AlpinePkg {
    name: String,
    #[serde(default)]
    secfixes: BTreeMap<String, Option<Vec<String>>>,
}

fn alpine_advisories(db: &AlpineSecdb) -> Vec<Advisory> {
    let release = db.distroversion.trim();
    let release = if release.starts_with('v') {
        release.to_string()
    } else {
        format!("v{release}")
    };
    let mut out = Vec::new();
    for p in &db.packages {
        for (fixed, ids) in &p.pkg.secfixes {
            if fixed == "0" {
                continue; // "0": the package was never affected
            }
            for raw in ids.iter().flatten() {
                // Entries may read "CVE-2021-1234 CVE-2021-5678" or carry notes.
                for cve in raw
                    .split_whitespace()
                    .filter(|s| s.starts_with("CVE-") || s.starts_with("GHSA-"))
                {
                    out.push(Advisory {
                        name: cve.to_string(),
                        id: cve.to_string(),
                        aliases: Vec::new(),
                        ecosystem: format!("Alpine:{release}"),
                        package: p.pkg.name.clone(),
                        ranges: vec![Range {
                            semver: false,
                            events: vec![Event::Introduced("0".into()), Event::Fixed(fixed.clone())],
                        }],
                        versions: Vec::new(),
                        vendor_severity: None,
                        cvss: Vec::new(),
                        title: cve.to_string(),
                        description: String::new(),
                        uri: format!("https://security.alpinelinux.org/vuln/{cve}"),
                        references: Vec::new(),
                        published: None,
                        modified: None,
                    });
                }
            }
        }
    }
    out
}

// ----- OSV ------------------------------------------------------------------------------------

/// The OSV ecosystem name Kura keys on: release suffixes such as Ubuntu's `:LTS` dropped.
pub fn normalize_ecosystem(eco: &str) -> String {
    let mut parts = eco.split(':');
    let base = parts.next().unwrap_or("");
    match parts.next() {
        Some(release) if !release.is_empty() => format!("{base}:{release}"),
        _ => base.to_string(),
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn cvss_of(kind: &str, vector: &str) -> Option<Cvss> {
    use std::str::FromStr;
    match kind {
        "CVSS_V3" => {
            let base = cvss::v3::Vector::from_str(vector).ok()?;
            let version = if vector.starts_with("CVSS:3.0") { "3.0" } else { "3.1" };
            Some(Cvss {
                version: version.into(),
                vector: vector.into(),
                score: base.score().value(),
            })
        }
        "CVSS_V2" => {
            let base = cvss::v2::Vector::from_str(vector).ok()?;
            Some(Cvss {
                version: "2.0".into(),
                vector: vector.into(),
                score: base.score().value(),
            })
        }
        _ => None,
    }
}

/// Turn one OSV record into advisories, one per `affected` entry with a package.
pub fn osv_advisories(name: &str, record: &Value) -> Result<Vec<Advisory>, VulnDbError> {
    let id = str_of(record, "id").ok_or_else(|| format_err(name, "OSV record without an id"))?;
    if record.get("withdrawn").is_some_and(|w| !w.is_null()) {
        return Ok(Vec::new());
    }
    let aliases: Vec<String> = record
        .get("aliases")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default();
    let display = if id.starts_with("CVE-") {
        id.to_string()
    } else {
        aliases
            .iter()
            .find(|a| a.starts_with("CVE-"))
            .cloned()
            .unwrap_or_else(|| id.to_string())
    };
    let mut cvss = Vec::new();
    for s in record.get("severity").and_then(Value::as_array).into_iter().flatten() {
        if let (Some(kind), Some(score)) = (str_of(s, "type"), str_of(s, "score")) {
            cvss.extend(cvss_of(kind, score));
        }
    }
    let references: Vec<String> = record
        .get("references")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| str_of(r, "url").map(String::from))
        .collect();
    let advisory_ref = record
        .get("references")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|r| str_of(r, "type") == Some("ADVISORY"))
        .and_then(|r| str_of(r, "url"));
    let uri = advisory_ref
        .map(String::from)
        .unwrap_or_else(|| format!("https://osv.dev/vulnerability/{id}"));
    let record_severity = record
        .pointer("/database_specific/severity")
        .and_then(Value::as_str)
        .map(String::from);
    let summary = str_of(record, "summary").unwrap_or("").to_string();
    let details = str_of(record, "details").unwrap_or("").to_string();
    let mut out = Vec::new();
    for affected in record.get("affected").and_then(Value::as_array).into_iter().flatten() {
        let Some(pkg) = affected.get("package") else { continue };
        let (Some(eco), Some(pname)) = (str_of(pkg, "ecosystem"), str_of(pkg, "name")) else {
            continue;
        };
        let mut ranges = Vec::new();
        for r in affected.get("ranges").and_then(Value::as_array).into_iter().flatten() {
            let semver = match str_of(r, "type") {
                Some("SEMVER") => true,
                Some("ECOSYSTEM") => false,
                _ => continue,
            };
            let mut events = Vec::new();
            for e in r.get("events").and_then(Value::as_array).into_iter().flatten() {
                let ev = if let Some(v) = str_of(e, "introduced") {
                    Event::Introduced(v.into())
                } else if let Some(v) = str_of(e, "fixed") {
                    Event::Fixed(v.into())
                } else if let Some(v) = str_of(e, "last_affected") {
                    Event::LastAffected(v.into())
                } else if let Some(v) = str_of(e, "limit") {
                    Event::Limit(v.into())
                } else {
                    continue;
                };
                events.push(ev);
            }
            if !events.is_empty() {
                ranges.push(Range { semver, events });
            }
        }
        let versions: Vec<String> = affected
            .get("versions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default();
        if ranges.is_empty() && versions.is_empty() {
            continue;
        }
        let vendor = affected
            .pointer("/ecosystem_specific/severity")
            .or_else(|| affected.pointer("/ecosystem_specific/urgency"))
            .or_else(|| affected.pointer("/database_specific/severity"))
            .and_then(Value::as_str)
            .map(String::from)
            .or_else(|| record_severity.clone());
        out.push(Advisory {
            name: display.clone(),
            id: id.to_string(),
            aliases: aliases.clone(),
            ecosystem: normalize_ecosystem(eco),
            package: pname.to_string(),
            ranges,
            versions,
            vendor_severity: vendor,
            cvss: cvss.clone(),
            title: if summary.is_empty() {
                display.clone()
            } else {
                summary.clone()
            },
            description: if details.is_empty() {
                summary.clone()
            } else {
                details.clone()
            },
            uri: uri.clone(),
            references: references.clone(),
            published: str_of(record, "published").map(String::from),
            modified: str_of(record, "modified").map(String::from),
        });
    }
    Ok(out)
}

/// The version scheme of an OSV ecosystem, if Kura can compare its versions.
pub fn scheme_of(ecosystem: &str) -> Option<Scheme> {
    let base = ecosystem.split(':').next().unwrap_or("");
    Some(match base {
        "Debian" | "Ubuntu" => Scheme::Dpkg,
        "Alpine" | "Wolfi" | "Chainguard" => Scheme::Apk,
        "Red Hat" | "Rocky Linux" | "AlmaLinux" | "openSUSE" | "SUSE" | "Mageia" | "Photon OS" | "openEuler" => {
            Scheme::Rpm
        }
        "PyPI" => Scheme::Pep440,
        "npm" | "crates.io" | "Go" | "NuGet" | "Packagist" | "Hex" | "Pub" => Scheme::Semver,
        "Maven" => Scheme::Maven,
        _ => return None,
    })
}
