//! The catalogers: distribution detection and package databases read from the merged view.

use super::layer::{is_maven_meta, is_node_module_dir, Node};
use super::package::{maven_from_properties, pkg};
use super::path::{file_name, parent};
use super::view::FsView;
use crate::types::{Distro, Inventory, Package, PackageKind};

/// Detects the distribution and lists all packages (OS and language) visible in the view,
/// sorted and deduplicated.
pub fn catalog(view: &FsView) -> Inventory {
    let mut packages = Vec::new();
    dpkg(view, &mut packages);
    apk(view, &mut packages);
    for (path, node) in view.nodes() {
        let Node::File { text, packages: found } = node else {
            continue;
        };
        // Packages parsed while streaming (executables, jars, rpm database).
        packages.extend(found.iter().cloned().map(|mut p| {
            p.path = path.to_string();
            p
        }));
        if let Some(text) = text {
            language_file(path, text, &mut packages);
        }
    }
    packages.sort();
    packages.dedup();
    Inventory {
        distro: distro(view),
        packages,
    }
}

// ---------------------------------------------------------------------------------------------
// Distribution

/// `KEY=value` lines with optional single or double quotes (and backslash escapes in double).
pub(crate) fn parse_os_release(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            let mut s = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        s.push(n);
                    }
                } else {
                    s.push(c);
                }
            }
            s
        } else if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            inner.to_string()
        } else {
            value.to_string()
        };
        out.push((key.trim().to_string(), value));
    }
    out
}

fn debian_codename(major: &str) -> Option<&'static str> {
    Some(match major {
        "8" => "jessie",
        "9" => "stretch",
        "10" => "buster",
        "11" => "bullseye",
        "12" => "bookworm",
        "13" => "trixie",
        "14" => "forky",
        _ => return None,
    })
}

fn distro(view: &FsView) -> Option<Distro> {
    let os_release = view
        .read_text("etc/os-release")
        .or_else(|| view.read_text("usr/lib/os-release"));
    let debian_version = view.read_text("etc/debian_version").map(str::trim);
    let mut distro = None;
    if let Some(text) = os_release {
        let fields = parse_os_release(text);
        let get = |k: &str| {
            fields
                .iter()
                .rev()
                .find(|(key, v)| key == k && !v.is_empty())
                .map(|(_, v)| v.clone())
        };
        if let Some(id) = get("ID") {
            distro = Some(Distro {
                id,
                version_id: get("VERSION_ID"),
                codename: get("VERSION_CODENAME"),
                pretty_name: get("PRETTY_NAME"),
            });
        }
    }
    if distro.is_none() {
        if let Some(v) = debian_version.filter(|v| !v.is_empty()) {
            let major = v.split('.').next().unwrap_or("");
            let numeric = !major.is_empty() && major.chars().all(|c| c.is_ascii_digit());
            distro = Some(Distro {
                id: "debian".into(),
                version_id: numeric.then(|| major.to_string()),
                codename: None,
                pretty_name: None,
            });
        } else if let Some(v) = view
            .read_text("etc/alpine-release")
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            distro = Some(Distro {
                id: "alpine".into(),
                version_id: Some(v.to_string()),
                codename: None,
                pretty_name: None,
            });
        }
    }
    if let Some(d) = distro.as_mut() {
        if d.id == "debian" && d.codename.is_none() {
            let major = d
                .version_id
                .clone()
                .or_else(|| debian_version.map(|v| v.split('.').next().unwrap_or("").to_string()));
            if let Some(name) = major.as_deref().and_then(debian_codename) {
                d.codename = Some(name.to_string());
            } else if let Some(v) = debian_version {
                // Testing/unstable write e.g. `trixie/sid`.
                if let Some((name, _)) = v.split_once('/') {
                    d.codename = Some(name.to_string());
                }
            }
        }
    }
    distro
}

// ---------------------------------------------------------------------------------------------
// Debian-style control stanzas (dpkg status, apk installed use a similar shape)

/// Splits a control file into stanzas of (field, first-line value); continuation lines (starting
/// with space or tab) are ignored.
pub(crate) fn control_stanzas(text: &str) -> Vec<Vec<(&str, &str)>> {
    let mut stanzas = Vec::new();
    let mut current = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                stanzas.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) || line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            current.push((k.trim(), v.trim()));
        }
    }
    if !current.is_empty() {
        stanzas.push(current);
    }
    stanzas
}

fn field<'a>(stanza: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    stanza
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
        .filter(|v| !v.is_empty())
}

/// Packages from one dpkg status file; `require_installed` for the main status database.
pub(crate) fn dpkg_packages(text: &str, path: &str, require_installed: bool) -> Vec<Package> {
    let mut out = Vec::new();
    for stanza in control_stanzas(text) {
        let (Some(name), Some(version)) = (field(&stanza, "Package"), field(&stanza, "Version")) else {
            continue;
        };
        match field(&stanza, "Status") {
            Some(s) if s.split_whitespace().collect::<Vec<_>>() != ["install", "ok", "installed"] => continue,
            None if require_installed => continue,
            _ => {}
        }
        let mut p = pkg(PackageKind::Dpkg, name, version, path);
        p.arch = field(&stanza, "Architecture").map(String::from);
        if let Some(source) = field(&stanza, "Source") {
            match source.split_once('(') {
                Some((n, v)) => {
                    p.source_name = Some(n.trim().to_string());
                    p.source_version = Some(v.trim_end_matches(')').trim().to_string());
                }
                None => p.source_name = Some(source.to_string()),
            }
        }
        out.push(p);
    }
    out
}

fn dpkg(view: &FsView, out: &mut Vec<Package>) {
    if let Some((path, Node::File { text: Some(text), .. })) = view.get("var/lib/dpkg/status") {
        out.extend(dpkg_packages(text, &path, true));
    }
    for (path, node) in view.list_dir("var/lib/dpkg/status.d") {
        if let Node::File { text: Some(text), .. } = node {
            if !path.ends_with(".md5sums") {
                out.extend(dpkg_packages(text, path, false));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Alpine

/// Packages from `lib/apk/db/installed` (`P:` name, `V:` version, `A:` arch, `o:` origin).
pub(crate) fn apk_packages(text: &str, path: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let mut fields: Vec<(&str, &str)> = Vec::new();
    let mut flush = |fields: &mut Vec<(&str, &str)>| {
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| *v)
                .filter(|v| !v.is_empty())
        };
        if let (Some(name), Some(version)) = (get("P"), get("V")) {
            let mut p = pkg(PackageKind::Apk, name, version, path);
            p.arch = get("A").map(String::from);
            p.source_name = get("o").map(String::from);
            out.push(p);
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut fields);
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k, v.trim()));
        }
    }
    flush(&mut fields);
    out
}

fn apk(view: &FsView, out: &mut Vec<Package>) {
    if let Some((path, Node::File { text: Some(text), .. })) = view.get("lib/apk/db/installed") {
        out.extend(apk_packages(text, &path));
    }
}

// ---------------------------------------------------------------------------------------------
// Language packages

/// PEP 503 name normalisation: lowercase, runs of `-`, `_`, `.` become one `-`.
pub(crate) fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
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

/// `Name:` and `Version:` from the header block of a core-metadata file.
pub(crate) fn python_package(text: &str, path: &str) -> Option<Package> {
    let (mut name, mut version) = (None, None);
    for line in text.lines() {
        if line.trim().is_empty() {
            break; // end of headers; the body (long description) follows
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "name" if name.is_none() => name = Some(v.trim()),
                "version" if version.is_none() => version = Some(v.trim()),
                _ => {}
            }
        }
    }
    let (name, version) = (name.filter(|n| !n.is_empty())?, version.filter(|v| !v.is_empty())?);
    Some(pkg(PackageKind::Python, &pep503(name), version, path))
}

/// `name` and `version` from a `package.json`.
pub(crate) fn npm_package(text: &str, path: &str) -> Option<Package> {
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    let name = json.get("name")?.as_str().filter(|s| !s.is_empty())?;
    let version = json.get("version")?.as_str().filter(|s| !s.is_empty())?;
    Some(pkg(PackageKind::Npm, name, version, path))
}

fn language_file(path: &str, text: &str, out: &mut Vec<Package>) {
    let name = file_name(path);
    let dir = parent(path);
    let found = if (name == "METADATA" && dir.ends_with(".dist-info"))
        || (name == "PKG-INFO" && dir.ends_with(".egg-info"))
        || name.ends_with(".egg-info")
    {
        python_package(text, path)
    } else if name == "package.json" && is_node_module_dir(dir) {
        npm_package(text, path)
    } else if name == "pom.properties" && is_maven_meta(dir) {
        maven_from_properties(text, path)
    } else {
        None
    };
    out.extend(found);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep503_names() {
        assert_eq!(pep503("Foo.Bar__baz"), "foo-bar-baz");
        assert_eq!(pep503("requests"), "requests");
    }

    #[test]
    fn os_release_quotes() {
        let f =
            parse_os_release("ID=debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nX='a b'\n# c\nY=\"q\\\"x\"");
        assert_eq!(f[1].1, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(f[2].1, "a b");
        assert_eq!(f[3].1, "q\"x");
    }

    #[test]
    fn dpkg_multiline_and_status() {
        let text = "Package: a\nStatus: install ok installed\nVersion: 1.0\nDescription: x\n Package: fake\n .\n Version: 9\n\n\
                    Package: b\nStatus: deinstall ok config-files\nVersion: 2\n\n\
                    Package: c\nStatus: install ok installed\nSource: csrc (1:3-1)\nVersion: 3-1+b1\nArchitecture: amd64\n";
        let p = dpkg_packages(text, "var/lib/dpkg/status", true);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].name.as_str(), p[0].version.as_str()), ("a", "1.0"));
        assert_eq!(p[1].source_name.as_deref(), Some("csrc"));
        assert_eq!(p[1].source_version.as_deref(), Some("1:3-1"));
        assert_eq!(p[1].arch.as_deref(), Some("amd64"));
    }
}
