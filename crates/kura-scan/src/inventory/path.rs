//! Path normalisation for tar entry names and symlink targets.

/// Normalises a tar entry path: strips leading `/` and `./`, drops empty and `.` components,
/// applies `..` lexically. Returns `None` when a `..` would climb above the root (a hostile
/// entry), or for NUL bytes. The root itself normalises to `Some("")`.
pub(crate) fn normalize(raw: &str) -> Option<String> {
    if raw.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for comp in raw.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// The parent directory of a normalised path (`""` for top-level names).
pub(crate) fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// The last component of a normalised path.
pub(crate) fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, n)| n)
}

/// Joins a normalised directory and a name.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(normalize("./etc/os-release").as_deref(), Some("etc/os-release"));
        assert_eq!(normalize("/usr//lib/./x/").as_deref(), Some("usr/lib/x"));
        assert_eq!(normalize("a/b/../c").as_deref(), Some("a/c"));
        assert_eq!(normalize("./").as_deref(), Some(""));
        assert_eq!(normalize("../../etc/passwd"), None);
        assert_eq!(normalize("a/../../etc"), None);
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("a"), "");
        assert_eq!(file_name("a/b/c"), "c");
        assert_eq!(join("", "x"), "x");
    }
}
