//! The rpm database (`rpmdb.sqlite`, table `Packages(hnum, blob)`) and rpm header blobs.

use std::ptr::NonNull;

use rusqlite::serialize::OwnedData;
use rusqlite::{Connection, DatabaseName};

use crate::types::{Package, PackageKind};

const TAG_NAME: i32 = 1000;
const TAG_VERSION: i32 = 1001;
const TAG_RELEASE: i32 = 1002;
const TAG_EPOCH: i32 = 1003;
const TAG_ARCH: i32 = 1022;
const TAG_SOURCERPM: i32 = 1044;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_I18NSTRING: u32 = 9;

/// Packages listed in an rpm SQLite database given as bytes (opened in memory, read-only).
pub(crate) fn packages_from_sqlite(db: &[u8]) -> Vec<Package> {
    blobs_from_sqlite(db)
        .unwrap_or_default()
        .iter()
        .filter_map(|b| package_from_header(b))
        .filter(|p| p.name != "gpg-pubkey")
        .collect()
}

fn blobs_from_sqlite(db: &[u8]) -> Option<Vec<Vec<u8>>> {
    if db.len() < 100 || !db.starts_with(b"SQLite format 3\0") {
        return None;
    }
    let mut conn = Connection::open_in_memory().ok()?;
    let len = db.len();
    // SAFETY: sqlite3_malloc64 returns a buffer of `len` bytes (or null, checked) that SQLite
    // owns once handed over through `deserialize` (it frees it with sqlite3_free).
    let data = unsafe {
        let ptr = rusqlite::ffi::sqlite3_malloc64(len as u64) as *mut u8;
        let ptr = NonNull::new(ptr)?;
        std::ptr::copy_nonoverlapping(db.as_ptr(), ptr.as_ptr(), len);
        // A WAL-mode file (format bytes 18/19 = 2) cannot be opened from memory: mark it as a
        // rollback-journal database; the image has no use for its WAL anyway.
        *ptr.as_ptr().add(18) = 1;
        *ptr.as_ptr().add(19) = 1;
        OwnedData::from_raw_nonnull(ptr, len)
    };
    conn.deserialize(DatabaseName::Main, data, true).ok()?;
    let mut stmt = conn.prepare("SELECT blob FROM Packages").ok()?;
    let rows = stmt.query_map([], |row| row.get::<_, Vec<u8>>(0)).ok()?;
    Some(rows.filter_map(Result::ok).collect())
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// Parses an rpm header blob: `il` index entries (tag, type, offset, count; 16 bytes each,
/// big-endian) followed by a `dl`-byte data store.
pub(crate) fn package_from_header(blob: &[u8]) -> Option<Package> {
    let il = be_u32(blob, 0)? as usize;
    let dl = be_u32(blob, 4)? as usize;
    if il > 100_000 || dl > blob.len() {
        return None;
    }
    let index_end = 8usize.checked_add(il.checked_mul(16)?)?;
    let store = blob.get(index_end..index_end.checked_add(dl)?)?;
    let (mut name, mut version, mut release, mut epoch, mut arch, mut source) = (None, None, None, None, None, None);
    for i in 0..il {
        let e = 8 + i * 16;
        let tag = be_u32(blob, e)? as i32;
        let ty = be_u32(blob, e + 4)?;
        let offset = be_u32(blob, e + 8)? as usize;
        let count = be_u32(blob, e + 12)?;
        let string = || -> Option<String> {
            if ty != TYPE_STRING && ty != TYPE_I18NSTRING {
                return None;
            }
            let rest = store.get(offset..)?;
            let end = rest.iter().position(|&b| b == 0)?;
            Some(String::from_utf8_lossy(&rest[..end]).into_owned())
        };
        match tag {
            TAG_NAME => name = string(),
            TAG_VERSION => version = string(),
            TAG_RELEASE => release = string(),
            TAG_ARCH => arch = string(),
            TAG_SOURCERPM => source = string(),
            TAG_EPOCH if ty == TYPE_INT32 && count >= 1 => epoch = be_u32(store, offset),
            _ => {}
        }
    }
    let (name, version) = (name.filter(|n| !n.is_empty())?, version.filter(|v| !v.is_empty())?);
    let mut full = match &release {
        Some(r) if !r.is_empty() => format!("{version}-{r}"),
        _ => version.clone(),
    };
    if let Some(e) = epoch {
        full = format!("{e}:{full}");
    }
    let source_name = source
        .as_deref()
        .and_then(|s| source_rpm_name(s, &version, release.as_deref()));
    Some(Package {
        kind: PackageKind::Rpm,
        name,
        version: full,
        source_name,
        source_version: None,
        arch: arch.filter(|a| !a.is_empty()),
        path: String::new(),
    })
}

/// `bash-5.1.8-9.el9.src.rpm` → `bash`: strip `.src.rpm`/`.nosrc.rpm`, then the last two
/// `-`-separated fields (version and release).
fn source_rpm_name(srpm: &str, _version: &str, _release: Option<&str>) -> Option<String> {
    let base = srpm
        .strip_suffix(".src.rpm")
        .or_else(|| srpm.strip_suffix(".nosrc.rpm"))?;
    let (rest, _release) = base.rsplit_once('-')?;
    let (name, _version) = rest.rsplit_once('-')?;
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a header blob with string tags and an optional epoch.
    pub(crate) fn header(strings: &[(i32, &str)], epoch: Option<u32>) -> Vec<u8> {
        let mut index = Vec::new();
        let mut store = Vec::new();
        let mut count = 0u32;
        if let Some(e) = epoch {
            index.extend(TAG_EPOCH.to_be_bytes());
            index.extend(TYPE_INT32.to_be_bytes());
            index.extend((store.len() as u32).to_be_bytes());
            index.extend(1u32.to_be_bytes());
            store.extend(e.to_be_bytes());
            count += 1;
        }
        for (tag, s) in strings {
            index.extend(tag.to_be_bytes());
            index.extend(TYPE_STRING.to_be_bytes());
            index.extend((store.len() as u32).to_be_bytes());
            index.extend(1u32.to_be_bytes());
            store.extend(s.as_bytes());
            store.push(0);
            count += 1;
        }
        let mut blob = count.to_be_bytes().to_vec();
        blob.extend((store.len() as u32).to_be_bytes());
        blob.extend(index);
        blob.extend(store);
        blob
    }

    #[test]
    fn header_blob() {
        let blob = header(
            &[
                (TAG_NAME, "bash"),
                (TAG_VERSION, "5.1.8"),
                (TAG_RELEASE, "9.el9"),
                (TAG_ARCH, "x86_64"),
                (TAG_SOURCERPM, "bash-5.1.8-9.el9.src.rpm"),
            ],
            Some(1),
        );
        let p = package_from_header(&blob).unwrap();
        assert_eq!(p.name, "bash");
        assert_eq!(p.version, "1:5.1.8-9.el9");
        assert_eq!(p.source_name.as_deref(), Some("bash"));
        assert_eq!(p.arch.as_deref(), Some("x86_64"));
        assert!(package_from_header(&blob[..20]).is_none());
        assert!(package_from_header(&[0xff; 64]).is_none());
    }

    #[test]
    fn sqlite_in_memory() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
            .unwrap();
        let blob = header(
            &[(TAG_NAME, "zlib"), (TAG_VERSION, "1.2.11"), (TAG_RELEASE, "40.el9")],
            None,
        );
        conn.execute("INSERT INTO Packages (blob) VALUES (?1)", [&blob])
            .unwrap();
        let bytes = conn.serialize(DatabaseName::Main).unwrap().to_vec();
        let pkgs = packages_from_sqlite(&bytes);
        assert_eq!(pkgs.len(), 1);
        assert_eq!(pkgs[0].version, "1.2.11-40.el9");
    }
}
