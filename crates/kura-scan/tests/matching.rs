//! Vulnerability data parsing and matching: OSV range semantics, the Debian tracker and
//! Alpine secdb shapes, severity rules, and the real bookworm fixture (14 findings).

use std::collections::BTreeMap;
use std::io::Write;

use kura_scan::matcher::{self, is_affected, match_inventory, queries, Severity};
use kura_scan::vulndb::{self, import_path, Advisory, ImportSummary};
use kura_scan::{Distro, Inventory, Package, PackageKind};
use serde_json::json;

fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn parse(v: serde_json::Value) -> Vec<Advisory> {
    let mut out = Vec::new();
    let mut summary = ImportSummary::default();
    vulndb::import_json("test.json", v.to_string().as_bytes(), &mut summary, &mut |a| {
        out.push(a);
        Ok(())
    })
    .unwrap();
    out
}

fn osv(eco: &str, name: &str, ranges: serde_json::Value, versions: serde_json::Value) -> Advisory {
    let rec = json!({
        "id": "OSV-TEST-1", "modified": "2024-01-01T00:00:00Z", "aliases": ["CVE-2024-0001"],
        "affected": [{"package": {"ecosystem": eco, "name": name}, "ranges": ranges, "versions": versions}],
    });
    let mut a = parse(rec);
    assert_eq!(a.len(), 1);
    a.remove(0)
}

fn pkg(kind: PackageKind, name: &str, version: &str) -> Package {
    Package {
        kind,
        name: name.into(),
        version: version.into(),
        source_name: None,
        source_version: None,
        arch: None,
        path: "x".into(),
    }
}

#[test]
fn osv_ecosystem_ranges() {
    let a = osv(
        "PyPI",
        "requests",
        json!([{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.20.0"}]}]),
        json!([]),
    );
    assert_eq!(a.name, "CVE-2024-0001", "the CVE alias names the finding");
    assert_eq!(a.id, "OSV-TEST-1");
    for (v, want) in [
        ("2.19.1", true),
        ("2.20.0rc1", true),
        ("2.20.0", false),
        ("2.31.0", false),
        ("1.0", true),
    ] {
        assert_eq!(is_affected(&a, v), want, "requests {v}");
    }
}

#[test]
fn osv_multiple_intervals_last_affected_and_limit() {
    let a = osv(
        "npm",
        "lodash",
        json!([
            {"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"fixed": "1.2.3"}, {"introduced": "2.0.0"}, {"last_affected": "2.1.0"}]},
        ]),
        json!([]),
    );
    for (v, want) in [
        ("0.9.0", false),
        ("1.0.0", true),
        ("1.2.2", true),
        ("1.2.3", false),
        ("1.9.9", false),
        ("2.0.0", true),
        ("2.1.0", true),
        ("2.1.1", false),
    ] {
        assert_eq!(is_affected(&a, v), want, "lodash {v}");
    }
    let limited = osv(
        "Go",
        "golang.org/x/net",
        json!([{"type": "SEMVER", "events": [{"introduced": "0"}, {"limit": "0.17.0"}]}]),
        json!([]),
    );
    assert!(is_affected(&limited, "v0.16.0"));
    assert!(!is_affected(&limited, "v0.17.0"));
}

#[test]
fn osv_explicit_versions_and_git_ranges() {
    let a = osv(
        "crates.io",
        "smallvec",
        json!([{"type": "GIT", "repo": "https://example.invalid/x", "events": [{"introduced": "abc"}]}]),
        json!(["1.6.0", "1.6.1"]),
    );
    assert!(a.ranges.is_empty(), "GIT ranges are dropped");
    assert!(is_affected(&a, "1.6.1"));
    assert!(!is_affected(&a, "1.6.2"));
}

#[test]
fn osv_withdrawn_and_unknown_records() {
    let rec = json!({"id": "X-1", "modified": "2024-01-01T00:00:00Z", "withdrawn": "2024-02-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "a"}, "versions": ["1"]}]});
    assert!(parse(rec).is_empty());
    let mut summary = ImportSummary::default();
    let err = vulndb::import_json("bad.json", b"{\"hello\": 1}", &mut summary, &mut |_| Ok(())).unwrap_err();
    assert!(err.to_string().contains("not OSV"), "{err}");
}

#[test]
fn severity_rules() {
    // The distribution's rating first.
    let mut a = osv(
        "PyPI",
        "x",
        json!([{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]),
        json!([]),
    );
    a.vendor_severity = Some("MODERATE".into());
    assert_eq!(matcher::severity_of(&a), Severity::Medium);
    a.vendor_severity = Some("unimportant".into());
    assert_eq!(matcher::severity_of(&a), Severity::Informational);
    // Else CVSS.
    a.vendor_severity = None;
    assert_eq!(matcher::severity_of(&a), Severity::Undefined);
    let rec = json!({"id": "CVE-2021-44228", "modified": "2024-01-01T00:00:00Z",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}],
        "affected": [{"package": {"ecosystem": "Maven", "name": "org.apache.logging.log4j:log4j-core"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.0-beta9"}, {"fixed": "2.15.0"}]}]}]});
    let log4j = parse(rec).remove(0);
    assert_eq!(log4j.cvss[0].score, 10.0);
    assert_eq!(matcher::severity_of(&log4j), Severity::Critical);
    for (score, want) in [
        (9.0, Severity::Critical),
        (8.9, Severity::High),
        (7.0, Severity::High),
        (6.9, Severity::Medium),
        (4.0, Severity::Medium),
        (3.9, Severity::Low),
        (0.1, Severity::Low),
        (0.0, Severity::Informational),
    ] {
        assert_eq!(Severity::from_score(score), want, "{score}");
    }
}

#[test]
fn debian_tracker_shapes() {
    let advisories = parse(json!({
        "openssl": {
            "CVE-2023-0001": {"description": "d1", "releases": {
                "bookworm": {"status": "resolved", "fixed_version": "3.0.11-1~deb12u2", "urgency": "medium"},
                "bullseye": {"status": "resolved", "fixed_version": "0", "urgency": "unimportant"},
                "trixie": {"status": "open", "urgency": "low**"}}},
            "TEMP-0000000-ABCDEF": {"releases": {"bookworm": {"status": "undetermined"}}}
        }
    }));
    let bookworm: Vec<_> = advisories.iter().filter(|a| a.ecosystem == "Debian:12").collect();
    assert_eq!(bookworm.len(), 2);
    let a = bookworm.iter().find(|a| a.name == "CVE-2023-0001").unwrap();
    assert_eq!(a.uri, "https://security-tracker.debian.org/tracker/CVE-2023-0001");
    assert_eq!(matcher::severity_of(a), Severity::Medium);
    assert!(is_affected(a, "3.0.11-1~deb12u1"));
    assert!(!is_affected(a, "3.0.11-1~deb12u2"));
    assert!(!is_affected(a, "3.0.15-1~deb12u1"));
    assert!(
        !advisories.iter().any(|a| a.ecosystem == "Debian:11"),
        "fixed_version 0: never affected"
    );
    let trixie = advisories.iter().find(|a| a.ecosystem == "Debian:13").unwrap();
    assert!(is_affected(trixie, "9.9.9-1"), "open: every version");
    assert_eq!(matcher::severity_of(trixie), Severity::Low);
}

#[test]
fn alpine_secdb() {
    let advisories = parse(json!({
        "apkurl": "{{urlprefix}}/{{distroversion}}/{{reponame}}/{{arch}}/{{pkg.name}}-{{pkg.ver}}.apk",
        "archs": ["x86_64"], "reponame": "main", "urlprefix": "https://dl-cdn.alpinelinux.org/alpine",
        "distroversion": "v3.19",
        "packages": [{"pkg": {"name": "openssl", "secfixes": {
            "3.1.4-r1": ["CVE-2023-5678"], "3.1.4-r5": ["CVE-2024-0727 CVE-2023-6237"], "0": ["CVE-2022-1234"]}}}]
    }));
    let names: Vec<_> = advisories.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(advisories.iter().all(|a| a.ecosystem == "Alpine:v3.19"));
    let a = advisories.iter().find(|a| a.name == "CVE-2023-5678").unwrap();
    assert!(is_affected(a, "3.1.4-r0"));
    assert!(!is_affected(a, "3.1.4-r1"));
    assert!(!is_affected(a, "3.2.0-r0"));
}

#[test]
fn matching_uses_source_packages_and_scope() {
    let inv = Inventory {
        distro: Some(Distro {
            id: "debian".into(),
            version_id: Some("12".into()),
            codename: Some("bookworm".into()),
            pretty_name: None,
        }),
        packages: vec![
            Package {
                source_name: Some("openssl".into()),
                ..pkg(PackageKind::Dpkg, "libssl3", "3.0.11-1~deb12u1")
            },
            pkg(PackageKind::Python, "Requests", "2.19.0"),
        ],
    };
    let q = queries(&inv, false);
    assert_eq!(
        q.into_iter().collect::<Vec<_>>(),
        vec![("Debian:12".to_string(), "openssl".to_string())]
    );
    let q = queries(&inv, true);
    assert!(
        q.contains(&("PyPI".to_string(), "requests".to_string())),
        "PEP 503 names"
    );
    let mut found = BTreeMap::new();
    found.insert(
        ("Debian:12".to_string(), "openssl".to_string()),
        parse(json!({"openssl": {"CVE-2023-0001": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "3.0.11-1~deb12u2"}}}}})),
    );
    found.insert(
        ("PyPI".to_string(), "requests".to_string()),
        vec![osv(
            "PyPI",
            "requests",
            json!([{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.20.0"}]}]),
            json!([]),
        )],
    );
    let basic = match_inventory(&inv, false, &found);
    assert_eq!(basic.len(), 1);
    assert_eq!(basic[0].package.name, "libssl3");
    assert_eq!(basic[0].matched_version, "3.0.11-1~deb12u1");
    let enhanced = match_inventory(&inv, true, &found);
    assert_eq!(enhanced.len(), 2);
}

#[test]
fn import_osv_directory_and_zip() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |id: &str| {
        json!({"id": id, "modified": "2024-01-01T00:00:00Z",
               "affected": [{"package": {"ecosystem": "PyPI", "name": "pkg"}, "versions": ["1.0"]}]})
    };
    std::fs::create_dir_all(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("a.json"), rec("PYSEC-1").to_string()).unwrap();
    std::fs::write(dir.path().join("sub/b.json"), rec("PYSEC-2").to_string()).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let mut n = 0;
    let s = import_path(dir.path(), &mut |_| {
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!((n, s.records), (2, 2));

    let zpath = dir.path().join("all.zip");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&zpath).unwrap());
    for id in ["GHSA-1", "GHSA-2", "GHSA-3"] {
        z.start_file(format!("{id}.json"), zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(rec(id).to_string().as_bytes()).unwrap();
    }
    z.finish().unwrap();
    let mut ids = Vec::new();
    let s = import_path(&zpath, &mut |a| {
        ids.push(a.id);
        Ok(())
    })
    .unwrap();
    assert_eq!(ids, ["GHSA-1", "GHSA-2", "GHSA-3"]);
    assert_eq!(s.kinds, [vulndb::SourceKind::Osv]);
    assert!(s.ecosystems.contains("PyPI"));

    // Progress counts the input's JSON documents: the directory's two files
    // (notes.txt and the zip are not JSON), the zip's three members.
    let mut seen = Vec::new();
    vulndb::import_path_with_progress(dir.path(), &mut |_| Ok(()), &mut |d, t| seen.push((d, t))).unwrap();
    assert_eq!(seen, [(0, 2), (1, 2), (2, 2)]);
    seen.clear();
    vulndb::import_path_with_progress(&zpath, &mut |_| Ok(()), &mut |d, t| seen.push((d, t))).unwrap();
    assert_eq!(seen, [(0, 3), (1, 3), (2, 3), (3, 3)]);
    seen.clear();
    vulndb::import_path_with_progress(&dir.path().join("a.json"), &mut |_| Ok(()), &mut |d, t| {
        seen.push((d, t))
    })
    .unwrap();
    assert_eq!(seen, [(0, 1), (1, 1)]);
}

/// The real data: a bookworm minbase dpkg status against the tracker subset gives 14
/// findings (13 in perl via perl-base, 1 in pcre2 via libpcre2-8-0).
#[test]
fn bookworm_fixture_gives_fourteen_findings() {
    let status = std::fs::read(data("dpkg-status-bookworm-12.15-minbase")).unwrap();
    let os_release = b"ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n".to_vec();
    let layer = {
        let mut b = tar::Builder::new(Vec::new());
        for (path, body) in [("etc/os-release", &os_release), ("var/lib/dpkg/status", &status)] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, body.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    };
    let index = kura_scan::inventory::index_layer(layer.as_slice(), &Default::default()).unwrap();
    let inv = kura_scan::inventory::catalog(&kura_scan::inventory::merge(&[index]));
    assert_eq!(inv.distro.as_ref().map(|d| d.id.as_str()), Some("debian"));
    assert_eq!(inv.packages.len(), 88);

    let mut advisories: Vec<Advisory> = Vec::new();
    import_path(&data("debian-tracker-subset-bookworm.json"), &mut |a| {
        advisories.push(a);
        Ok(())
    })
    .unwrap();
    let mut found: BTreeMap<(String, String), Vec<Advisory>> = BTreeMap::new();
    for a in advisories {
        found
            .entry((a.ecosystem.clone(), a.package.clone()))
            .or_default()
            .push(a);
    }
    let findings = match_inventory(&inv, false, &found);
    let mut per_pkg: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &findings {
        *per_pkg.entry(f.package.name.as_str()).or_default() += 1;
        assert!(f.advisory.name.starts_with("CVE-"));
    }
    assert_eq!(findings.len(), 14, "{per_pkg:?}");
    assert_eq!(per_pkg.get("perl-base"), Some(&13));
    assert_eq!(per_pkg.get("libpcre2-8-0"), Some(&1));
}
