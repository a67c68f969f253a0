//! Streaming one layer's tar into a [`LayerIndex`].

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use super::path::{file_name, join, normalize, parent};
use super::{binary, rpm, InventoryError, Limits};
use crate::types::Package;

/// What a layer holds at one path, as far as the catalogers care.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file the catalogers care about.
    File {
        /// Text content of a catalog file (`None` when over the size cap or not a text file).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// Packages found while streaming (executables, jars, rpm database); their `path` is
        /// filled in by [`super::catalog`].
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        packages: Vec<Package>,
    },
    /// A symbolic link.
    Symlink {
        /// The target as written in the tar (absolute or relative to the link's directory).
        target: String,
    },
    /// A hard link to a file of a lower layer (links within the layer are copied when indexing).
    HardLink {
        /// The normalised path of the link target.
        target: String,
    },
}

/// Counters about what indexing saw and skipped.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar entries read.
    pub entries: u64,
    /// Entries skipped because their path (or hard-link target) escapes the root or is unusable.
    pub skipped_bad_paths: u64,
    /// Catalog files or binaries skipped because they exceed the size caps.
    pub skipped_large_files: u64,
    /// Executables, jars and databases that were parsed for packages.
    pub binaries_parsed: u64,
}

/// The part of one layer the catalogers need; small and serialisable (cache it by layer digest).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerIndex {
    /// Kept entries by normalised path (no leading `/`).
    pub nodes: BTreeMap<String, Node>,
    /// Paths deleted from lower layers (`.wh.<name>` entries).
    pub whiteouts: BTreeSet<String>,
    /// Directories whose lower-layer contents are hidden (`.wh..wh..opq` entries).
    pub opaque_dirs: BTreeSet<String>,
    /// What was seen and skipped.
    pub stats: LayerStats,
}

/// How a regular file is treated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FileClass {
    /// Keep the text.
    Text,
    /// The rpm SQLite database: parse it now.
    Rpmdb,
    /// A Java archive: parse it now.
    Jar,
    /// Anything else: parse it if it is an executable.
    Other,
}

fn classify(path: &str) -> FileClass {
    let name = file_name(path);
    let dir = parent(path);
    // Matched by suffix or name rather than the exact path: the catalogers look these up
    // through symlinks (e.g. `lib -> usr/lib`, `etc/os-release -> ../usr/lib/os-release`), so the
    // real file may live elsewhere. They are small and few.
    let text = matches!(name, "os-release" | "debian_version" | "alpine-release")
        || path.ends_with("dpkg/status")
        || dir.ends_with("dpkg/status.d")
        || path.ends_with("apk/db/installed")
        || (name == "METADATA" && dir.ends_with(".dist-info"))
        || (name == "PKG-INFO" && dir.ends_with(".egg-info"))
        || name.ends_with(".egg-info")
        || (name == "package.json" && is_node_module_dir(dir))
        || (name == "pom.properties" && is_maven_meta(dir));
    if text {
        FileClass::Text
    } else if name == "rpmdb.sqlite" {
        FileClass::Rpmdb
    } else if name.ends_with(".jar") || name.ends_with(".war") || name.ends_with(".ear") {
        FileClass::Jar
    } else {
        FileClass::Other
    }
}

/// `.../node_modules/<name>` or `.../node_modules/@scope/<name>`: a package root.
pub(crate) fn is_node_module_dir(dir: &str) -> bool {
    let comps: Vec<&str> = dir.split('/').collect();
    let n = comps.len();
    (n >= 2 && comps[n - 2] == "node_modules" && !comps[n - 1].starts_with('@'))
        || (n >= 3 && comps[n - 3] == "node_modules" && comps[n - 2].starts_with('@'))
}

/// `.../META-INF/maven/<group>/<artifact>`.
pub(crate) fn is_maven_meta(dir: &str) -> bool {
    let comps: Vec<&str> = dir.split('/').collect();
    let n = comps.len();
    n >= 4 && comps[n - 4] == "META-INF" && comps[n - 3] == "maven"
}

/// Counts decompressed bytes and fails the stream past the limit.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
    limit: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.count.get() + n as u64;
        self.count.set(total);
        if total > self.limit {
            self.exceeded.set(true);
            return Err(io::Error::other("decompressed size limit exceeded"));
        }
        Ok(n)
    }
}

/// Reads a whole layer (gzip, zstd or plain tar, detected by magic bytes) and keeps what the
/// catalogers need.
pub fn index_layer<R: Read>(reader: R, limits: &Limits) -> Result<LayerIndex, InventoryError> {
    let mut buffered = BufReader::with_capacity(64 * 1024, reader);
    let magic = {
        let head = buffered.fill_buf()?;
        let mut m = [0u8; 4];
        let n = head.len().min(4);
        m[..n].copy_from_slice(&head[..n]);
        m
    };
    let decoded: Box<dyn Read + '_> = if magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else if magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?)
    } else {
        Box::new(buffered)
    };
    let exceeded = Rc::new(Cell::new(false));
    let counting = Counting {
        inner: decoded,
        count: Rc::new(Cell::new(0)),
        limit: limits.max_decompressed_bytes,
        exceeded: exceeded.clone(),
    };
    let mut indexer = Indexer {
        limits,
        index: LayerIndex::default(),
    };
    match indexer.run(counting) {
        Ok(()) => Ok(indexer.index),
        Err(_) if exceeded.get() => Err(InventoryError::DecompressedTooLarge {
            limit: limits.max_decompressed_bytes,
        }),
        Err(e) => Err(e),
    }
}

struct Indexer<'a> {
    limits: &'a Limits,
    index: LayerIndex,
}

impl Indexer<'_> {
    fn run<R: Read>(&mut self, reader: R) -> Result<(), InventoryError> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|e| InventoryError::NotATar(e.to_string()))?;
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if self.index.stats.entries == 0 => return Err(InventoryError::NotATar(e.to_string())),
                Err(e) => return Err(InventoryError::Io(e)),
            };
            self.index.stats.entries += 1;
            if self.index.stats.entries > self.limits.max_entries {
                return Err(InventoryError::TooManyEntries {
                    limit: self.limits.max_entries,
                });
            }
            self.entry(entry)?;
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), InventoryError> {
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(path) = normalize(&raw) else {
            self.index.stats.skipped_bad_paths += 1;
            return Ok(());
        };
        if path.is_empty() {
            return Ok(()); // the root directory itself
        }
        let name = file_name(&path);
        if let Some(hidden) = name.strip_prefix(".wh.") {
            if hidden == ".wh..opq" {
                self.index.opaque_dirs.insert(parent(&path).to_string());
            } else if hidden.starts_with(".wh.") {
                // Other AUFS metadata (`.wh..wh.plnk`, `.wh..wh.aufs`): not part of the image.
            } else if hidden.is_empty() || hidden == "." || hidden == ".." {
                self.index.stats.skipped_bad_paths += 1;
            } else {
                self.index.whiteouts.insert(join(parent(&path), hidden));
            }
            return Ok(());
        }
        let kind = entry.header().entry_type();
        let node = match kind {
            tar::EntryType::Directory => Some(Node::Dir),
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned());
                match target {
                    Some(t) if !t.is_empty() && !t.contains('\0') => Some(Node::Symlink { target: t }),
                    _ => {
                        self.index.stats.skipped_bad_paths += 1;
                        None
                    }
                }
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .and_then(|t| normalize(&String::from_utf8_lossy(&t)));
                match target {
                    Some(t) if !t.is_empty() => match self.index.nodes.get(&t) {
                        Some(n @ Node::File { .. }) => Some(n.clone()),
                        Some(_) => None,
                        // Not kept from this layer: maybe a file kept from a lower layer (rare;
                        // resolved by `merge`).
                        None => Some(Node::HardLink { target: t }),
                    },
                    _ => {
                        self.index.stats.skipped_bad_paths += 1;
                        None
                    }
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => self.regular(&path, &mut entry)?,
            _ => None,
        };
        match node {
            Some(n) => {
                self.index.nodes.insert(path, n);
            }
            None => {
                // A later entry at the same path that we do not keep still replaces an earlier one.
                if let Some(Node::File { .. } | Node::Symlink { .. } | Node::HardLink { .. }) =
                    self.index.nodes.get(&path)
                {
                    if kind != tar::EntryType::Directory {
                        self.index.nodes.remove(&path);
                    }
                }
            }
        }
        Ok(())
    }

    fn regular<R: Read>(&mut self, path: &str, entry: &mut tar::Entry<'_, R>) -> Result<Option<Node>, InventoryError> {
        let size = entry.size();
        let class = classify(path);
        match class {
            FileClass::Text => {
                if size > self.limits.max_file_bytes {
                    self.index.stats.skipped_large_files += 1;
                    return Ok(Some(Node::File {
                        text: None,
                        packages: Vec::new(),
                    }));
                }
                let data = read_capped(entry, self.limits.max_file_bytes)?;
                let text =
                    String::from_utf8(data).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                Ok(Some(Node::File {
                    text: Some(text),
                    packages: Vec::new(),
                }))
            }
            FileClass::Rpmdb | FileClass::Jar | FileClass::Other => {
                if class == FileClass::Other {
                    let mut head = [0u8; 4];
                    let n = read_full(entry, &mut head)?;
                    if !binary::is_executable_magic(&head[..n]) {
                        return Ok(None);
                    }
                    if size > self.limits.max_binary_bytes {
                        self.index.stats.skipped_large_files += 1;
                        return Ok(None);
                    }
                    let mut data = head[..n].to_vec();
                    data.extend(read_capped(entry, self.limits.max_binary_bytes)?);
                    self.index.stats.binaries_parsed += 1;
                    let packages = binary::executable_packages(&data);
                    return Ok((!packages.is_empty()).then_some(Node::File { text: None, packages }));
                }
                if size > self.limits.max_binary_bytes {
                    self.index.stats.skipped_large_files += 1;
                    return Ok(Some(Node::File {
                        text: None,
                        packages: Vec::new(),
                    }));
                }
                let data = read_capped(entry, self.limits.max_binary_bytes)?;
                self.index.stats.binaries_parsed += 1;
                let packages = if class == FileClass::Rpmdb {
                    rpm::packages_from_sqlite(&data)
                } else {
                    binary::jar_packages(&data, self.limits)
                };
                Ok(Some(Node::File { text: None, packages }))
            }
        }
    }
}

/// Reads up to `cap` bytes (the header size was checked already; this guards lying headers).
fn read_capped<R: Read>(reader: &mut R, cap: u64) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    reader.take(cap).read_to_end(&mut data)?;
    Ok(data)
}

/// Fills `buf` as far as the stream allows; returns how many bytes were read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
