//! Layer reading, the merged filesystem view and the package catalogers.
//!
//! The flow is: [`index_layer`] streams one layer's tar (gzip, zstd or plain) and keeps only what
//! the catalogers need in a small, serialisable [`LayerIndex`] (cacheable by layer digest);
//! [`merge`] stacks the indexes of an image's layers, lowest first, into an [`FsView`] (whiteouts,
//! opaque directories, symlinks); [`catalog`] runs the catalogers over that view.
//!
//! Nothing is extracted to disk: text files the catalogers read are kept in memory (bounded by
//! [`Limits::max_file_bytes`]); executables, jars and the rpm database are parsed while streaming
//! (bounded by [`Limits::max_binary_bytes`]) and only the packages found are kept.
//!
//! Hostile entries (paths or hard-link targets climbing above the root with `..`) are skipped
//! and counted in [`LayerStats`]; symlink targets are resolved inside the view only (`..` stops
//! at the root, at most 40 hops).
//!
//! Known limits: regular files the catalogers do not read are not recorded, so such a file
//! replacing a directory in an upper layer (without a whiteout) does not hide what the lower
//! layers had below it; rpm reads only the SQLite database (not Berkeley DB `Packages` or SUSE's
//! `Packages.db`, and not an un-checkpointed `-wal`); jars without `pom.properties` give nothing.

mod binary;
mod catalogers;
mod layer;
mod package;
mod path;
mod rpm;
mod view;

pub use catalogers::catalog;
pub use layer::{index_layer, LayerIndex, LayerStats, Node};
pub use view::{merge, FsView};

/// Resource caps for reading one layer (hostile or accidental huge images).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of decompressed tar stream per layer; exceeding it is an error.
    pub max_decompressed_bytes: u64,
    /// Tar entries per layer; exceeding it is an error.
    pub max_entries: u64,
    /// Largest catalog text file kept (os-release, dpkg status, METADATA, package.json, ...);
    /// larger ones are recorded without content.
    pub max_file_bytes: u64,
    /// Largest executable, jar or rpm database parsed; larger ones are skipped.
    pub max_binary_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decompressed_bytes: 8 << 30,
            max_entries: 1_000_000,
            max_file_bytes: 16 << 20,
            max_binary_bytes: 256 << 20,
        }
    }
}

/// Why a layer could not be indexed.
#[derive(thiserror::Error, Debug)]
pub enum InventoryError {
    /// The decompressed stream is larger than [`Limits::max_decompressed_bytes`].
    #[error("layer exceeds the decompressed size limit of {limit} bytes")]
    DecompressedTooLarge {
        /// The limit in force.
        limit: u64,
    },
    /// The layer has more entries than [`Limits::max_entries`].
    #[error("layer exceeds the limit of {limit} tar entries")]
    TooManyEntries {
        /// The limit in force.
        limit: u64,
    },
    /// The (decompressed) stream is not a tar archive.
    #[error("layer is not a tar archive: {0}")]
    NotATar(String),
    /// An entry path could not be used (only for paths the caller asked about; hostile entries
    /// inside a layer are skipped and counted instead).
    #[error("bad path in layer: {0}")]
    BadPath(String),
    /// Reading or decompressing failed.
    #[error("reading layer: {0}")]
    Io(#[from] std::io::Error),
}
