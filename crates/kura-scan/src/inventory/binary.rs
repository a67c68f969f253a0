//! Packages embedded in executables (Go build info, cargo-auditable) and Java archives.

use std::io::{Cursor, Read};

use object::{Object, ObjectSection};

use super::package::maven_from_properties;
use super::Limits;
use crate::types::{Package, PackageKind};

/// ELF, Mach-O (32/64-bit, both byte orders, fat) or PE (`MZ`) magic.
pub(crate) fn is_executable_magic(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
        || head.starts_with(b"MZ")
        || matches!(
            head,
            [0xfe, 0xed, 0xfa, 0xce | 0xcf] | [0xce | 0xcf, 0xfa, 0xed, 0xfe] | [0xca, 0xfe, 0xba, 0xbe]
        )
}

/// Go modules and Rust crates recorded in an executable.
pub(crate) fn executable_packages(data: &[u8]) -> Vec<Package> {
    let file = object::File::parse(data).ok();
    let mut out = Vec::new();
    if let Some(file) = &file {
        if let Some(section) = [".dep-v0", "__dep_v0"].iter().find_map(|n| file.section_by_name(n)) {
            if let Ok(bytes) = section.data() {
                out.extend(cargo_auditable_packages(bytes));
            }
        }
    }
    out.extend(go_packages(data, file.as_ref()));
    out
}

// ---------------------------------------------------------------------------------------------
// Go build info

const GO_MAGIC: &[u8] = b"\xff Go buildinf:";

/// Locates the build info blob: the `.go.buildinfo` / `__go_buildinfo` section, else a scan of
/// the file for the magic at 16-byte alignment (PE puts it in `.data`; also stripped headers).
fn go_packages(data: &[u8], file: Option<&object::File<'_>>) -> Vec<Package> {
    let mut blob: Option<&[u8]> = None;
    if let Some(file) = file {
        for name in [".go.buildinfo", "__go_buildinfo"] {
            if let Some(d) = file.section_by_name(name).and_then(|s| s.data().ok()) {
                if d.starts_with(GO_MAGIC) {
                    blob = Some(d);
                }
            }
        }
    }
    let blob = match blob {
        Some(b) => b,
        None => match (0..data.len()).step_by(16).find(|&i| data[i..].starts_with(GO_MAGIC)) {
            Some(i) => &data[i..],
            None => return Vec::new(),
        },
    };
    let read_va = |addr: u64, len: u64| -> Option<&[u8]> {
        let file = file?;
        for section in file.sections() {
            let (start, size) = (section.address(), section.size());
            if start != 0 && addr >= start && addr.checked_add(len)? <= start + size {
                let d = section.data().ok()?;
                let off = usize::try_from(addr - start).ok()?;
                return d.get(off..off.checked_add(usize::try_from(len).ok()?)?);
            }
        }
        None
    };
    match parse_go_buildinfo(blob, read_va) {
        Some((version, modinfo)) => go_modules(&version, &modinfo),
        None => Vec::new(),
    }
}

/// Decodes the build info header: Go 1.18+ inline strings (flag 0x2), or the older format of
/// pointers to Go string headers, read through `read_va` (virtual address, length → bytes).
pub(crate) fn parse_go_buildinfo<'a>(
    blob: &[u8],
    read_va: impl Fn(u64, u64) -> Option<&'a [u8]>,
) -> Option<(String, String)> {
    if blob.len() < 32 || !blob.starts_with(GO_MAGIC) {
        return None;
    }
    let ptr_size = blob[14] as usize;
    let flags = blob[15];
    let big_endian = flags & 1 != 0;
    if flags & 2 != 0 {
        let mut rest = &blob[32..];
        let version = read_varint_string(&mut rest)?;
        let modinfo = read_varint_string(&mut rest)?;
        return Some((version, strip_modinfo_sentinels(&modinfo)));
    }
    if ptr_size != 4 && ptr_size != 8 {
        return None;
    }
    let word = |b: &[u8]| -> Option<u64> {
        let b = b.get(..ptr_size)?;
        let mut v = 0u64;
        for i in 0..ptr_size {
            let byte = if big_endian { b[i] } else { b[ptr_size - 1 - i] };
            v = (v << 8) | byte as u64;
        }
        Some(v)
    };
    let go_string = |addr: u64| -> Option<String> {
        let header = read_va(addr, 2 * ptr_size as u64)?;
        let data_ptr = word(header)?;
        let len = word(&header[ptr_size..])?;
        if len > 1 << 20 {
            return None;
        }
        let bytes = read_va(data_ptr, len)?;
        Some(String::from_utf8_lossy(bytes).into_owned())
    };
    let version = go_string(word(&blob[16..])?)?;
    let modinfo = go_string(word(&blob[16 + ptr_size..])?).unwrap_or_default();
    Some((version, strip_modinfo_sentinels(&modinfo)))
}

fn read_varint_string(rest: &mut &[u8]) -> Option<String> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let (&b, tail) = rest.split_first()?;
        *rest = tail;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let len = usize::try_from(len).ok()?;
    let s = rest.get(..len)?;
    *rest = &rest[len..];
    Some(String::from_utf8_lossy(s).into_owned())
}

/// The module info string is wrapped in 16-byte sentinels.
fn strip_modinfo_sentinels(s: &str) -> String {
    let b = s.as_bytes();
    if b.len() >= 33 && b[b.len() - 17] == b'\n' {
        String::from_utf8_lossy(&b[16..b.len() - 16]).into_owned()
    } else {
        s.to_string()
    }
}

/// Main module, dependencies (module replacements win) and the standard library.
pub(crate) fn go_modules(go_version: &str, modinfo: &str) -> Vec<Package> {
    let go = |name: &str, version: &str| Package {
        kind: PackageKind::Go,
        name: name.to_string(),
        version: version.to_string(),
        source_name: None,
        source_version: None,
        arch: None,
        path: String::new(),
    };
    let mut out: Vec<Package> = Vec::new();
    for line in modinfo.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["mod", path, version, ..] | ["dep", path, version, ..] => out.push(go(path, version)),
            // A replacement by another module version wins; local directory replacements
            // (`./dir`, `/abs`, version `(devel)`) keep the required module and version.
            ["=>", path, version, ..] if !version.is_empty() && !path.starts_with(['.', '/']) => {
                if let Some(last) = out.last_mut() {
                    *last = go(path, version);
                }
            }
            _ => {}
        }
    }
    let v = go_version.split_whitespace().next().unwrap_or("");
    if !v.is_empty() {
        out.push(go("stdlib", v.strip_prefix("go").unwrap_or(v)));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// cargo-auditable

#[derive(serde::Deserialize)]
struct AuditInfo {
    packages: Vec<AuditPackage>,
}

#[derive(serde::Deserialize)]
struct AuditPackage {
    name: String,
    version: String,
    #[serde(default)]
    kind: Option<String>,
}

/// The `.dep-v0` section: zlib-compressed JSON of the dependency tree (build-only crates left out).
pub(crate) fn cargo_auditable_packages(section: &[u8]) -> Vec<Package> {
    let mut json = Vec::new();
    if flate2::read::ZlibDecoder::new(section)
        .take(8 << 20)
        .read_to_end(&mut json)
        .is_err()
    {
        return Vec::new();
    }
    let Ok(info) = serde_json::from_slice::<AuditInfo>(&json) else {
        return Vec::new();
    };
    info.packages
        .into_iter()
        .filter(|p| p.kind.as_deref() != Some("build"))
        .map(|p| Package {
            kind: PackageKind::Cargo,
            name: p.name,
            version: p.version,
            source_name: None,
            source_version: None,
            arch: None,
            path: String::new(),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Java archives

/// `META-INF/maven/**/pom.properties` inside a jar/war/ear, and inside jars nested one level.
pub(crate) fn jar_packages(data: &[u8], limits: &Limits) -> Vec<Package> {
    let mut budget = limits.max_binary_bytes;
    let mut out = Vec::new();
    zip_poms(data, limits, &mut budget, true, &mut out);
    out
}

fn zip_poms(data: &[u8], limits: &Limits, budget: &mut u64, nested: bool, out: &mut Vec<Package>) {
    let Ok(mut archive) = zip::ZipArchive::new(Cursor::new(data)) else {
        return;
    };
    for i in 0..archive.len() {
        let Ok(mut file) = archive.by_index(i) else {
            continue;
        };
        let name = file.name().to_string();
        let is_pom = name.ends_with("/pom.properties") && {
            let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
            let comps: Vec<&str> = dir.split('/').collect();
            comps.len() >= 4 && comps[comps.len() - 4] == "META-INF" && comps[comps.len() - 3] == "maven"
        };
        let is_jar = nested && (name.ends_with(".jar") || name.ends_with(".war"));
        if !is_pom && !is_jar {
            continue;
        }
        let cap = if is_pom {
            limits.max_file_bytes.min(*budget)
        } else {
            *budget
        };
        if file.size() > cap {
            continue;
        }
        let mut bytes = Vec::new();
        if (&mut file).take(cap).read_to_end(&mut bytes).is_err() {
            continue;
        }
        *budget = budget.saturating_sub(bytes.len() as u64);
        if is_pom {
            out.extend(maven_from_properties(&String::from_utf8_lossy(&bytes), ""));
        } else {
            zip_poms(&bytes, limits, budget, false, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_modinfo_lines() {
        let modinfo = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgolang.org/x/text\tv0.3.0\th1:x\n\
                       dep\texample.com/local\tv1.0.0\t\n=>\t./local\t(devel)\t\n\
                       dep\tgithub.com/a/b\tv1.0.0\t\n=>\tgithub.com/c/b\tv1.2.0\th1:y\nbuild\t-trimpath=true\n";
        let pkgs = go_modules("go1.22.5 X:boringcrypto", modinfo);
        let got: Vec<(&str, &str)> = pkgs.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
        assert_eq!(
            got,
            [
                ("example.com/app", "(devel)"),
                ("golang.org/x/text", "v0.3.0"),
                ("example.com/local", "v1.0.0"),
                ("github.com/c/b", "v1.2.0"),
                ("stdlib", "1.22.5")
            ]
        );
    }

    #[test]
    fn go_pointer_format() {
        // Header with 8-byte little-endian pointers to two Go string headers.
        let mut blob = GO_MAGIC.to_vec();
        blob.extend([8u8, 0]);
        blob.extend(0x1000u64.to_le_bytes());
        blob.extend(0x1010u64.to_le_bytes());
        let version = b"go1.16.15".to_vec();
        let modinfo = format!(
            "{}path\tx\nmod\texample.com/old\tv1.2.3\t\n{}",
            "0".repeat(16),
            "1".repeat(16)
        );
        let mut mem = vec![0u8; 0x100];
        mem[..8].copy_from_slice(&0x1040u64.to_le_bytes());
        mem[8..16].copy_from_slice(&(version.len() as u64).to_le_bytes());
        mem[16..24].copy_from_slice(&0x1080u64.to_le_bytes());
        mem[24..32].copy_from_slice(&(modinfo.len() as u64).to_le_bytes());
        mem[0x40..0x40 + version.len()].copy_from_slice(&version);
        mem[0x80..0x80 + modinfo.len()].copy_from_slice(modinfo.as_bytes());
        let mem = mem;
        let (v, m) = parse_go_buildinfo(&blob, |addr, len| {
            let off = usize::try_from(addr.checked_sub(0x1000)?).ok()?;
            mem.get(off..off + len as usize)
        })
        .unwrap();
        assert_eq!(v, "go1.16.15");
        assert_eq!(m, "path\tx\nmod\texample.com/old\tv1.2.3\t\n");
        let pkgs = go_modules(&v, &m);
        assert_eq!(pkgs[0].name, "example.com/old");
        assert_eq!(pkgs[1].version, "1.16.15");
    }
}
