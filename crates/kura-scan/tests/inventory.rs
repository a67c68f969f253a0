//! Layer indexing, merging and cataloging on layers built in memory.

use std::io::Write;

use kura_scan::inventory::{catalog, index_layer, merge, FsView, InventoryError, LayerIndex, Limits};
use kura_scan::{Inventory, Package, PackageKind};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

enum E<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn file<'a>(path: &'a str, data: &'a [u8]) -> E<'a> {
    E::File(path, data, 0o644)
}

/// A tar written with raw names (so hostile paths like `../x` can be expressed).
fn tar_bytes(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (path, data, kind, mode, link): (&str, &[u8], tar::EntryType, u32, Option<&str>) = match e {
            E::File(p, d, m) => (p, d, tar::EntryType::Regular, *m, None),
            E::Dir(p) => (p, b"", tar::EntryType::Directory, 0o755, None),
            E::Symlink(p, t) => (p, b"", tar::EntryType::Symlink, 0o777, Some(t)),
            E::Hardlink(p, t) => (p, b"", tar::EntryType::Link, 0o644, Some(t)),
        };
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(t) = link {
            gnu.linkname[..t.len()].copy_from_slice(t.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn zst(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

fn index(bytes: &[u8]) -> LayerIndex {
    index_layer(bytes, &Limits::default()).unwrap()
}

fn names(inv: &Inventory, kind: PackageKind) -> Vec<(String, String)> {
    inv.packages
        .iter()
        .filter(|p| p.kind == kind)
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect()
}

fn pair(n: &str, v: &str) -> (String, String) {
    (n.to_string(), v.to_string())
}

fn find<'a>(inv: &'a Inventory, kind: PackageKind, name: &str) -> &'a Package {
    inv.packages
        .iter()
        .find(|p| p.kind == kind && p.name == name)
        .unwrap_or_else(|| panic!("{name} not found"))
}

const BOOKWORM_OS_RELEASE: &[u8] = b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";

#[test]
fn real_bookworm_status_with_symlinked_os_release() {
    let status = std::fs::read(format!("{DATA}/dpkg-status-bookworm-12.15-minbase")).unwrap();
    let layer = gz(&tar_bytes(&[
        E::Dir("./"),
        E::Dir("./etc/"),
        E::Symlink("./etc/os-release", "../usr/lib/os-release"),
        file("./etc/debian_version", b"12.15\n"),
        E::Dir("./usr/lib/"),
        file("./usr/lib/os-release", BOOKWORM_OS_RELEASE),
        file("./var/lib/dpkg/status", &status),
        file("./var/lib/dpkg/status-old", &status),
    ]));
    let inv = catalog(&merge(&[index(&layer)]));
    let distro = inv.distro.clone().unwrap();
    assert_eq!(distro.id, "debian");
    assert_eq!(distro.version_id.as_deref(), Some("12"));
    assert_eq!(distro.codename.as_deref(), Some("bookworm"));
    assert_eq!(distro.pretty_name.as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
    assert_eq!(names(&inv, PackageKind::Dpkg).len(), 88);
    assert_eq!(inv.packages.len(), 88);
    let perl = find(&inv, PackageKind::Dpkg, "perl-base");
    assert_eq!(perl.source_name.as_deref(), Some("perl"));
    assert_eq!(perl.path, "var/lib/dpkg/status");
    assert_eq!(perl.arch.as_deref(), Some("amd64"));
    assert_eq!(
        find(&inv, PackageKind::Dpkg, "libpcre2-8-0").source_name.as_deref(),
        Some("pcre2")
    );
}

#[test]
fn debian_codename_derived_and_fallbacks() {
    let layer = tar_bytes(&[
        file("etc/os-release", b"ID=debian\nVERSION_ID=\"11\"\n"),
        file("etc/debian_version", b"11.9\n"),
    ]);
    let d = catalog(&merge(&[index(&layer)])).distro.unwrap();
    assert_eq!((d.id.as_str(), d.codename.as_deref()), ("debian", Some("bullseye")));

    let layer = tar_bytes(&[file("etc/debian_version", b"10.13\n")]);
    let d = catalog(&merge(&[index(&layer)])).distro.unwrap();
    assert_eq!(
        (d.version_id.as_deref(), d.codename.as_deref()),
        (Some("10"), Some("buster"))
    );

    let layer = tar_bytes(&[file("usr/lib/os-release", b"ID='alpine'\nVERSION_ID=3.20.3\n")]);
    let d = catalog(&merge(&[index(&layer)])).distro.unwrap();
    assert_eq!((d.id.as_str(), d.version_id.as_deref()), ("alpine", Some("3.20.3")));

    let layer = tar_bytes(&[file("etc/alpine-release", b"3.19.1\n")]);
    let d = catalog(&merge(&[index(&layer)])).distro.unwrap();
    assert_eq!((d.id.as_str(), d.version_id.as_deref()), ("alpine", Some("3.19.1")));

    assert_eq!(catalog(&merge(&[])).distro, None);
}

const APK_TWO: &[u8] = b"C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\no:musl\nT:the musl c library\n\n\
C:Q1def=\nP:libcrypto3\nV:3.3.2-r0\nA:x86_64\no:openssl\n\n";
const APK_ONE: &[u8] = b"P:musl\nV:1.2.5-r1\nA:x86_64\no:musl\n";

fn dist_info(name: &str, version: &str) -> Vec<u8> {
    format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: x\n\nName: body-not-header\n")
        .into_bytes()
}

#[test]
fn whiteouts_and_opaque_dirs_across_three_layers() {
    let sp = "usr/lib/python3/site-packages";
    let req = dist_info("Requests", "2.31.0");
    let six = dist_info("six", "1.16.0");
    let zope = dist_info("Zope.Interface", "6.0");
    let npm_x = br#"{"name":"x","version":"1.0.0"}"#;
    let npm_y = br#"{"name":"@s/y","version":"2.0.0"}"#;
    let l1 = gz(&tar_bytes(&[
        file("etc/alpine-release", b"3.20.3\n"),
        file("lib/apk/db/installed", APK_TWO),
        file(&format!("{sp}/requests-2.31.0.dist-info/METADATA"), &req),
        file(&format!("{sp}/six-1.16.0.dist-info/METADATA"), &six),
        file("app/node_modules/x/package.json", npm_x),
        file("app/node_modules/@s/y/package.json", npm_y),
        file(
            "app/node_modules/x/lib/package.json",
            br#"{"name":"not-a-root","version":"0"}"#,
        ),
        file("app/node_modules/z/package.json", br#"{"name":"noversion"}"#),
        file(
            "opt/m/META-INF/maven/org.a/b/pom.properties",
            b"groupId=org.a\nartifactId=b\nversion=1.0\n",
        ),
    ]));
    // Layer 2: delete an npm package dir, make site-packages opaque with one new package.
    let l2 = tar_bytes(&[
        file("app/node_modules/.wh.x", b""),
        E::Dir(sp),
        file(&format!("{sp}/.wh..wh..opq"), b""),
        file(&format!("{sp}/zope.interface-6.0.dist-info/METADATA"), &zope),
    ]);
    // Layer 3 (zstd): replace the apk db, delete the maven metadata.
    let l3 = zst(&tar_bytes(&[
        file("lib/apk/db/installed", APK_ONE),
        file("opt/.wh.m", b""),
    ]));

    let layers = [index(&l1), index(&l2), index(&l3)];
    let first = catalog(&merge(&layers[..1]));
    assert_eq!(
        names(&first, PackageKind::Apk),
        [pair("libcrypto3", "3.3.2-r0"), pair("musl", "1.2.5-r0")]
    );
    assert_eq!(
        names(&first, PackageKind::Python),
        [pair("requests", "2.31.0"), pair("six", "1.16.0")]
    );
    assert_eq!(
        names(&first, PackageKind::Npm),
        [pair("@s/y", "2.0.0"), pair("x", "1.0.0")]
    );
    assert_eq!(names(&first, PackageKind::Maven), [pair("org.a:b", "1.0")]);
    assert_eq!(
        find(&first, PackageKind::Apk, "libcrypto3").source_name.as_deref(),
        Some("openssl")
    );

    let inv = catalog(&merge(&layers));
    assert_eq!(inv.distro.as_ref().unwrap().id, "alpine");
    assert_eq!(names(&inv, PackageKind::Apk), [pair("musl", "1.2.5-r1")]);
    assert_eq!(names(&inv, PackageKind::Python), [pair("zope-interface", "6.0")]);
    assert_eq!(names(&inv, PackageKind::Npm), [pair("@s/y", "2.0.0")]);
    assert!(names(&inv, PackageKind::Maven).is_empty());
    let musl = find(&inv, PackageKind::Apk, "musl");
    assert_eq!(
        (musl.arch.as_deref(), musl.path.as_str()),
        (Some("x86_64"), "lib/apk/db/installed")
    );

    // Deleting the whole db in a fourth layer.
    let l4 = tar_bytes(&[file("lib/apk/db/.wh.installed", b"")]);
    let mut all = layers.to_vec();
    all.push(index(&l4));
    assert!(names(&catalog(&merge(&all)), PackageKind::Apk).is_empty());
}

#[test]
fn file_replacing_directory_and_symlink_dirs() {
    let l1 = tar_bytes(&[
        E::Dir("usr/lib"),
        file("usr/lib/apk/db/installed", APK_ONE),
        E::Symlink("lib", "usr/lib"),
        file("srv/node_modules/q/package.json", br#"{"name":"q","version":"1.0.0"}"#),
    ]);
    let v = merge(&[index(&l1)]);
    // The db is reached through the `lib` symlink; its path is where it really lives.
    let inv = catalog(&v);
    assert_eq!(names(&inv, PackageKind::Apk), [pair("musl", "1.2.5-r1")]);
    assert_eq!(find(&inv, PackageKind::Apk, "musl").path, "usr/lib/apk/db/installed");
    // A symlink (or kept file) replacing the directory hides what was below it. (Regular files the
    // catalogers do not read are not recorded, so those do not; see the module docs.)
    let l2 = tar_bytes(&[E::Symlink("srv/node_modules", "/nowhere")]);
    let inv = catalog(&merge(&[index(&l1), index(&l2)]));
    assert!(names(&inv, PackageKind::Npm).is_empty());
}

#[test]
fn distroless_status_d() {
    let base = b"Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\nMaintainer: x\n\
Description: Debian base system miscellaneous files\n This package contains the basic filesystem hierarchy.\n";
    let ssl =
        b"Package: libssl3\nSource: openssl (3.0.13-1~deb12u1)\nVersion: 3.0.13-1~deb12u1+b1\nArchitecture: amd64\n\n\
Package: openssl\nSource: openssl\nVersion: 3.0.13-1~deb12u1\nArchitecture: amd64\n";
    let layer = tar_bytes(&[
        file(
            "etc/os-release",
            b"PRETTY_NAME=\"Distroless\"\nID=debian\nVERSION_ID=\"12\"\n",
        ),
        file("var/lib/dpkg/status.d/base-files", base),
        file("var/lib/dpkg/status.d/libssl3", ssl),
        file(
            "var/lib/dpkg/status.d/libssl3.md5sums",
            b"d41d8cd98f00b204e9800998ecf8427e  usr/lib/x\n",
        ),
    ]);
    let inv = catalog(&merge(&[index(&layer)]));
    assert_eq!(inv.distro.as_ref().unwrap().codename.as_deref(), Some("bookworm"));
    assert_eq!(
        names(&inv, PackageKind::Dpkg),
        [
            pair("base-files", "12.4+deb12u5"),
            pair("libssl3", "3.0.13-1~deb12u1+b1"),
            pair("openssl", "3.0.13-1~deb12u1")
        ]
    );
    let ssl = find(&inv, PackageKind::Dpkg, "libssl3");
    assert_eq!(ssl.source_name.as_deref(), Some("openssl"));
    assert_eq!(ssl.source_version.as_deref(), Some("3.0.13-1~deb12u1"));
    assert_eq!(ssl.path, "var/lib/dpkg/status.d/libssl3");
}

#[test]
fn hostile_paths_do_not_escape() {
    let evil_status = b"Package: evil\nStatus: install ok installed\nVersion: 6.6.6\n";
    let layer = tar_bytes(&[
        file("../../etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        file("foo/../../var/lib/dpkg/status", evil_status),
        file("/etc/os-release", b"ID=alpine\nVERSION_ID=3.20.0\n"),
        E::Symlink("lib", "../../../../usr/lib"),
        file("usr/lib/apk/db/installed", APK_ONE),
        E::Hardlink("lib/apk/db/x", "../../../../etc/shadow"),
        file("a/b/.wh...", b""),
        E::Symlink("loop1", "loop2"),
        E::Symlink("loop2", "/loop1"),
        E::Symlink("var/lib/dpkg/status", "/loop1"),
    ]);
    let idx = index(&layer);
    assert_eq!(idx.stats.skipped_bad_paths, 4, "{:?}", idx.stats);
    assert!(idx.nodes.keys().all(|k| !k.contains("..") && !k.starts_with('/')));
    let view = merge(&[idx]);
    assert_eq!(
        view.resolve("lib/apk/db/installed").as_deref(),
        Some("usr/lib/apk/db/installed")
    );
    assert_eq!(view.resolve("loop1"), None);
    let inv = catalog(&view);
    assert_eq!(inv.distro.as_ref().unwrap().id, "alpine"); // the absolute path is fine
    assert_eq!(names(&inv, PackageKind::Apk), [pair("musl", "1.2.5-r1")]);
    assert!(names(&inv, PackageKind::Dpkg).is_empty());
}

#[test]
fn limits_are_enforced() {
    let layer = tar_bytes(&[
        file("a", b"1"),
        file("b", b"2"),
        file("c", b"3"),
        file("lib/apk/db/installed", APK_TWO),
    ]);
    let few = Limits {
        max_entries: 3,
        ..Limits::default()
    };
    let err = index_layer(&layer[..], &few).unwrap_err();
    assert!(matches!(err, InventoryError::TooManyEntries { limit: 3 }), "{err}");
    assert!(err.to_string().contains("entries"));

    let small = Limits {
        max_decompressed_bytes: 2048,
        ..Limits::default()
    };
    let err = index_layer(&gz(&layer)[..], &small).unwrap_err();
    assert!(
        matches!(err, InventoryError::DecompressedTooLarge { limit: 2048 }),
        "{err}"
    );
    let err = index_layer(&zst(&layer)[..], &small).unwrap_err();
    assert!(matches!(err, InventoryError::DecompressedTooLarge { .. }), "{err}");

    let tiny_files = Limits {
        max_file_bytes: 16,
        ..Limits::default()
    };
    let idx = index_layer(&layer[..], &tiny_files).unwrap();
    assert_eq!(idx.stats.skipped_large_files, 1);
    assert!(catalog(&merge(&[idx])).packages.is_empty());
}

#[test]
fn not_a_tar() {
    let junk = vec![0x42u8; 4096];
    assert!(matches!(
        index_layer(&junk[..], &Limits::default()),
        Err(InventoryError::NotATar(_))
    ));
    assert!(matches!(
        index_layer(&gz(&junk)[..], &Limits::default()),
        Err(InventoryError::NotATar(_))
    ));
    let mut corrupt = gz(&tar_bytes(&[file("a", &[7u8; 5000])]));
    let n = corrupt.len();
    corrupt.truncate(n / 2);
    assert!(index_layer(&corrupt[..], &Limits::default()).is_err());
    // An empty layer is a valid, empty tar.
    let empty = tar_bytes(&[]);
    assert_eq!(index(&empty).nodes.len(), 0);
}

#[test]
fn zstd_layer_and_serde_round_trip() {
    let layer = zst(&tar_bytes(&[
        file("etc/os-release", BOOKWORM_OS_RELEASE),
        file(
            "var/lib/dpkg/status",
            b"Package: tzdata\nStatus: install ok installed\nVersion: 2024a-0+deb12u1\n",
        ),
        file(
            "usr/lib/python3/dist-packages/PyYAML-6.0.egg-info",
            b"Metadata-Version: 1.1\nName: PyYAML\nVersion: 6.0\n",
        ),
        file("app/x.egg-info/PKG-INFO", b"Name: x_y\nVersion: 0.1\n"),
        E::Symlink("etc/alternatives/foo", "/usr/bin/foo"),
        file("etc/.wh.gone", b""),
        file("opt/.wh..wh..opq", b""),
    ]));
    let idx = index(&layer);
    let json = serde_json::to_string(&idx).unwrap();
    let back: LayerIndex = serde_json::from_str(&json).unwrap();
    assert_eq!(back, idx);
    let a = catalog(&merge(&[idx]));
    let b = catalog(&merge(&[back]));
    assert_eq!(a, b);
    assert_eq!(names(&a, PackageKind::Dpkg), [pair("tzdata", "2024a-0+deb12u1")]);
    assert_eq!(
        names(&a, PackageKind::Python),
        [pair("pyyaml", "6.0"), pair("x-y", "0.1")]
    );
}

#[test]
fn hard_links_within_and_across_layers() {
    let l1 = tar_bytes(&[
        file(
            "var/lib/dpkg/status",
            b"Package: a\nStatus: install ok installed\nVersion: 1\n",
        ),
        E::Hardlink("var/lib/dpkg/status.d/copy", "var/lib/dpkg/status"),
    ]);
    let l2 = tar_bytes(&[E::Hardlink("var/lib/dpkg/status.d/other", "var/lib/dpkg/status")]);
    let inv = catalog(&merge(&[index(&l1), index(&l2)]));
    let paths: Vec<&str> = inv.packages.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "var/lib/dpkg/status",
            "var/lib/dpkg/status.d/copy",
            "var/lib/dpkg/status.d/other"
        ]
    );
}

#[test]
fn go_binary_build_info() {
    let bin = std::fs::read(format!("{DATA}/inventory/hello-go")).unwrap();
    let layer = gz(&tar_bytes(&[E::File("usr/local/bin/hello", &bin, 0o755)]));
    let idx = index(&layer);
    assert_eq!(idx.stats.binaries_parsed, 1);
    let inv = catalog(&merge(&[idx]));
    assert_eq!(
        names(&inv, PackageKind::Go),
        [
            pair("example.com/greet", "v1.2.3"),
            pair("example.com/hello", "(devel)"),
            pair("stdlib", "1.27.3")
        ]
    );
    assert!(inv.packages.iter().all(|p| p.path == "usr/local/bin/hello"));
}

#[test]
fn cargo_auditable_section() {
    use object::write::{Object, StandardSection};
    use object::{Architecture, BinaryFormat, Endianness, SectionKind};
    let json = br#"{"packages":[
        {"name":"myapp","version":"0.1.0","source":"local","dependencies":[1,2],"root":true},
        {"name":"serde","version":"1.0.210","source":"crates.io"},
        {"name":"cc","version":"1.1.0","source":"crates.io","kind":"build"}]}"#;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(json).unwrap();
    let compressed = z.finish().unwrap();
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let text = obj.section_id(StandardSection::Text);
    obj.append_section_data(text, &[0xc3], 1);
    let dep = obj.add_section(Vec::new(), b".dep-v0".to_vec(), SectionKind::ReadOnlyData);
    obj.append_section_data(dep, &compressed, 1);
    let elf = obj.write().unwrap();

    let layer = tar_bytes(&[
        E::File("usr/bin/myapp", &elf, 0o755),
        E::File("usr/bin/plain", b"#!/bin/sh\n", 0o755),
    ]);
    let inv = catalog(&merge(&[index(&layer)]));
    assert_eq!(
        names(&inv, PackageKind::Cargo),
        [pair("myapp", "0.1.0"), pair("serde", "1.0.210")]
    );
}

#[test]
fn real_cargo_auditable_binary() {
    let bin = std::fs::read(format!("{DATA}/inventory/hello-auditable")).unwrap();
    let layer = gz(&tar_bytes(&[E::File("usr/local/bin/hello", &bin, 0o755)]));
    let inv = catalog(&merge(&[index(&layer)]));
    assert_eq!(
        names(&inv, PackageKind::Cargo),
        [pair("hello-auditable", "0.1.0"), pair("itoa", "1.0.11")]
    );
    assert!(names(&inv, PackageKind::Go).is_empty());
}

fn zip_bytes(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn jars_with_nested_jars() {
    let inner = zip_bytes(&[(
        "META-INF/maven/com.fasterxml.jackson.core/jackson-databind/pom.properties",
        b"#Generated\nversion=2.15.2\ngroupId=com.fasterxml.jackson.core\nartifactId=jackson-databind\n",
    )]);
    let deeper = zip_bytes(&[("x.jar", &inner)]);
    let outer = zip_bytes(&[
        ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n"),
        (
            "META-INF/maven/com.example/app/pom.properties",
            b"groupId=com.example\nartifactId=app\nversion=1.0.0\n",
        ),
        ("BOOT-INF/lib/jackson-databind-2.15.2.jar", &inner),
        ("BOOT-INF/lib/deeper.jar", &deeper), // two levels down: not read
    ]);
    let layer = tar_bytes(&[
        file("app/app.jar", &outer),
        file("app/broken.war", b"PK\x03\x04 not a zip"),
    ]);
    let inv = catalog(&merge(&[index(&layer)]));
    assert_eq!(
        names(&inv, PackageKind::Maven),
        [
            pair("com.example:app", "1.0.0"),
            pair("com.fasterxml.jackson.core:jackson-databind", "2.15.2")
        ]
    );
    assert!(inv.packages.iter().all(|p| p.path == "app/app.jar"));
}

/// Builds an rpm header blob (index entries + data store) with string tags.
fn rpm_header(strings: &[(i32, &str)]) -> Vec<u8> {
    let (mut index, mut store) = (Vec::new(), Vec::new());
    for (tag, s) in strings {
        index.extend(tag.to_be_bytes());
        index.extend(6u32.to_be_bytes());
        index.extend((store.len() as u32).to_be_bytes());
        index.extend(1u32.to_be_bytes());
        store.extend(s.as_bytes());
        store.push(0);
    }
    let mut blob = (strings.len() as u32).to_be_bytes().to_vec();
    blob.extend((store.len() as u32).to_be_bytes());
    blob.extend(index);
    blob.extend(store);
    blob
}

#[test]
fn rpm_sqlite_database() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);")
        .unwrap();
    for h in [
        rpm_header(&[
            (1000, "bash"),
            (1001, "5.1.8"),
            (1002, "9.el9"),
            (1022, "x86_64"),
            (1044, "bash-5.1.8-9.el9.src.rpm"),
        ]),
        rpm_header(&[
            (1000, "openssl-libs"),
            (1001, "3.0.7"),
            (1002, "27.el9"),
            (1022, "x86_64"),
            (1044, "openssl-3.0.7-27.el9.src.rpm"),
        ]),
        rpm_header(&[(1000, "gpg-pubkey"), (1001, "fd431d51"), (1002, "4ae0493b")]),
    ] {
        conn.execute("INSERT INTO Packages (blob) VALUES (?1)", [h]).unwrap();
    }
    let db = conn.serialize(rusqlite::DatabaseName::Main).unwrap().to_vec();
    let layer = gz(&tar_bytes(&[
        file(
            "etc/os-release",
            b"NAME=\"Rocky Linux\"\nID=\"rocky\"\nVERSION_ID=\"9.3\"\n",
        ),
        file("usr/lib/sysimage/rpm/rpmdb.sqlite", &db),
        E::Symlink("var/lib/rpm", "../../usr/lib/sysimage/rpm"),
    ]));
    let inv = catalog(&merge(&[index(&layer)]));
    assert_eq!(inv.distro.as_ref().unwrap().id, "rocky");
    assert_eq!(
        names(&inv, PackageKind::Rpm),
        [pair("bash", "5.1.8-9.el9"), pair("openssl-libs", "3.0.7-27.el9")]
    );
    let ssl = find(&inv, PackageKind::Rpm, "openssl-libs");
    assert_eq!(ssl.source_name.as_deref(), Some("openssl"));
    assert_eq!(ssl.path, "usr/lib/sysimage/rpm/rpmdb.sqlite");
}

#[test]
fn view_resolves_chains_and_relative_links() {
    let layer = tar_bytes(&[
        E::Symlink("a", "b/c"),
        E::Symlink("b", "/d"),
        E::Symlink("d/c", "../e/./f"),
        file("e/f/os-release", b"ID=chain\n"),
    ]);
    let view: FsView = merge(&[index(&layer)]);
    assert_eq!(view.resolve("/a/os-release").as_deref(), Some("e/f/os-release"));
    assert_eq!(view.read_text("a/os-release"), Some("ID=chain\n"));
}

/// Opt-in: `KURA_TEST_DEBOOTSTRAP_DIR` names a `debootstrap --variant=minbase bookworm` root.
/// The directory is streamed as a tar through a pipe (never all in memory) and the dpkg packages
/// found are compared with `dpkg-query --admindir=DIR/var/lib/dpkg`.
#[test]
fn debootstrap_root_matches_dpkg_query() {
    let Ok(dir) = std::env::var("KURA_TEST_DEBOOTSTRAP_DIR") else {
        eprintln!("skipped: KURA_TEST_DEBOOTSTRAP_DIR is not set");
        return;
    };
    let (reader, writer) = std::io::pipe().unwrap();
    let root = dir.clone();
    let producer = std::thread::spawn(move || {
        let mut b = tar::Builder::new(writer);
        b.follow_symlinks(false);
        b.mode(tar::HeaderMode::Complete);
        b.append_dir_all(".", &root).unwrap();
        b.finish().unwrap();
    });
    let idx = index_layer(reader, &Limits::default()).unwrap();
    producer.join().unwrap();
    let json_len = serde_json::to_vec(&idx).unwrap().len();
    eprintln!("debootstrap root: {:?}, index {json_len} bytes as JSON", idx.stats);
    let inv = catalog(&merge(&[idx]));
    let out = std::process::Command::new("dpkg-query")
        .arg(format!("--admindir={dir}/var/lib/dpkg"))
        .args(["-W", "-f", "${Package} ${Version}\n"])
        .output()
        .expect("dpkg-query");
    let mut expected: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    expected.sort();
    let mut got: Vec<String> = inv
        .packages
        .iter()
        .filter(|p| p.kind == PackageKind::Dpkg)
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    got.sort();
    assert_eq!(got, expected);
    let d = inv.distro.unwrap();
    assert_eq!((d.id.as_str(), d.codename.as_deref()), ("debian", Some("bookworm")));
    eprintln!("debootstrap root: {} dpkg packages match dpkg-query", got.len());
}
