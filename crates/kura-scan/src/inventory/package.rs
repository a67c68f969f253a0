//! Building [`Package`] values, shared by the file catalogers and the binary
//! (jar) readers: a leaf module, so neither imports the other.

use crate::types::{Package, PackageKind};

/// A package of `kind` found at `path`, with no source package or arch.
pub(crate) fn pkg(kind: PackageKind, name: &str, version: &str, path: &str) -> Package {
    Package {
        kind,
        name: name.to_string(),
        version: version.to_string(),
        source_name: None,
        source_version: None,
        arch: None,
        path: path.to_string(),
    }
}

/// `groupId`, `artifactId`, `version` from a `pom.properties` (Java properties syntax).
pub(crate) fn maven_from_properties(text: &str, path: &str) -> Option<Package> {
    let (mut group, mut artifact, mut version) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some(i) = line.find(['=', ':']) else {
            continue;
        };
        let (k, v) = (line[..i].trim(), line[i + 1..].trim());
        match k {
            "groupId" => group = Some(v),
            "artifactId" => artifact = Some(v),
            "version" => version = Some(v),
            _ => {}
        }
    }
    let (g, a, v) = (
        group.filter(|s| !s.is_empty())?,
        artifact.filter(|s| !s.is_empty())?,
        version.filter(|s| !s.is_empty())?,
    );
    Some(pkg(PackageKind::Maven, &format!("{g}:{a}"), v, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maven_props() {
        let p = maven_from_properties("#x\ngroupId=org.a\nartifactId=b\nversion=1.2\n", "p").unwrap();
        assert_eq!((p.name.as_str(), p.version.as_str()), ("org.a:b", "1.2"));
    }
}
