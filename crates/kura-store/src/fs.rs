//! The local filesystem blob store.
//!
//! Layout under the root: `uploads/<id>` holds unfinished uploads;
//! `blobs/<alg>/<2 hex>/<hex>` holds finished blobs. A blob file appears only
//! as a hard link to a complete, fsynced upload file (then the directory is
//! fsynced), so a reader never sees a partial blob, even after a crash. The
//! upload file is removed by `abort` once the metadata commit is done.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
use kura_oci::Digest;
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};
use tokio_util::io::ReaderStream;

use crate::blob::{BlobStore, BodyStream, ByteStream};
use crate::error::{Result, StoreError};

/// Buffer size for writes and reads: large enough to keep syscalls rare.
const IO_BUF: usize = 1 << 20;

/// Blobs on a local filesystem.
#[derive(Clone, Debug)]
pub struct FsBlobStore {
    root: PathBuf,
    /// fsync files and directories before acknowledging (on by default).
    sync: bool,
}

impl FsBlobStore {
    /// Open (creating directories as needed) a store rooted at `root`.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(root.join("uploads")).await?;
        fs::create_dir_all(root.join("blobs")).await?;
        Ok(FsBlobStore { root, sync: true })
    }

    /// Turn fsync off (tests and benchmarks that measure without durability).
    pub fn without_fsync(mut self) -> Self {
        self.sync = false;
        self
    }

    fn upload_path(&self, handle: &str) -> Result<PathBuf> {
        // Handles are ids Kura made; refuse anything that could name another path.
        if !Self::valid_handle(handle) {
            return Err(StoreError::Invalid(format!("bad upload handle {handle:?}")));
        }
        Ok(self.root.join("uploads").join(handle))
    }

    fn blob_path(&self, key: &str) -> Result<PathBuf> {
        // `<alg>/<2 hex>/<hex>/<upload handle>`: one file per upload, so a
        // delete of one copy can never hit a newer upload of the same content.
        let parts: Vec<&str> = key.split('/').collect();
        let hexish = |h: &str| h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let ok = parts.len() == 4
            && matches!(parts[0], "sha256" | "sha512")
            && parts[1].len() == 2
            && hexish(parts[1])
            && parts[2].len() >= 64
            && hexish(parts[2])
            && parts[2].starts_with(parts[1])
            && Self::valid_handle(parts[3]);
        if !ok {
            return Err(StoreError::Invalid(format!("bad storage key {key:?}")));
        }
        Ok(self.root.join("blobs").join(key))
    }

    fn valid_handle(handle: &str) -> bool {
        !handle.is_empty() && handle.len() <= 64 && handle.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }

    /// The storage key an upload's bytes take as the blob `digest`.
    pub fn key_for(digest: &Digest, handle: &str) -> String {
        let hex = digest.hex();
        format!("{}/{}/{}/{}", digest.algorithm().as_str(), &hex[..2], hex, handle)
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.sync {
            let d = File::open(dir).await?;
            d.sync_all().await?;
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn begin(&self, upload_id: &str) -> Result<String> {
        // Nothing on disk yet: the file appears with the first write, so a
        // crash before the upload row exists leaves nothing behind.
        self.upload_path(upload_id)?;
        Ok(upload_id.to_string())
    }

    async fn append(&self, handle: &str, offset: u64, mut data: BodyStream<'_>) -> Result<(String, u64)> {
        let path = self.upload_path(handle)?;
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .await?;
        // Discard anything past the accepted offset (left by a failed write).
        file.set_len(offset).await?;
        let mut file = file;
        file.seek(SeekFrom::Start(offset)).await?;
        let mut w = BufWriter::with_capacity(IO_BUF, file);
        let mut written = 0u64;
        while let Some(chunk) = data.next().await {
            let chunk = chunk?;
            w.write_all(&chunk).await?;
            written += chunk.len() as u64;
        }
        w.flush().await?;
        let file = w.into_inner();
        if self.sync {
            file.sync_data().await?;
        }
        Ok((handle.to_string(), offset + written))
    }

    async fn read_upload(&self, handle: &str, len: u64) -> Result<ByteStream> {
        let path = self.upload_path(handle)?;
        let file = match File::open(&path).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound && len == 0 => return Ok(futures::stream::empty().boxed()),
            other => other?,
        };
        Ok(ReaderStream::with_capacity(file.take(len), IO_BUF).boxed())
    }

    async fn commit(&self, handle: &str, size: u64, digest: &Digest) -> Result<String> {
        let src = self.upload_path(handle)?;
        if size == 0 {
            // An empty blob may have had no write at all.
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&src)
                .await?;
        }
        let meta = fs::metadata(&src).await?;
        if meta.len() < size {
            return Err(StoreError::Corrupt(format!(
                "upload {handle} has {} bytes, expected {size}",
                meta.len()
            )));
        }
        if meta.len() > size {
            let f = OpenOptions::new().write(true).open(&src).await?;
            f.set_len(size).await?;
            if self.sync {
                f.sync_data().await?;
            }
        }
        let key = Self::key_for(digest, handle);
        let dst = self.blob_path(&key)?;
        let dir = dst.parent().expect("blob path has a parent").to_path_buf();
        fs::create_dir_all(&dir).await?;
        // Link rather than rename: the upload file stays until the caller has
        // committed the metadata and calls `abort`, so a crash in between
        // leaves a session that can still be finished. Same digest, same
        // bytes: an existing blob file is already the right content.
        match fs::hard_link(&src, &dst).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) => {
                // No hard links here (or another device): copy then rename.
                let tmp = dir.join(format!(".{handle}.tmp"));
                fs::copy(&src, &tmp).await?;
                if self.sync {
                    File::open(&tmp).await?.sync_all().await?;
                }
                fs::rename(&tmp, &dst).await?;
            }
        }
        self.sync_dir(&dir).await?;
        Ok(key)
    }

    async fn abort(&self, handle: &str) -> Result<()> {
        match fs::remove_file(self.upload_path(handle)?).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn read(&self, key: &str, range: Option<(u64, u64)>) -> Result<ByteStream> {
        let mut file = File::open(self.blob_path(key)?).await?;
        match range {
            None => Ok(ReaderStream::with_capacity(file, IO_BUF).boxed()),
            Some((start, end)) => {
                file.seek(SeekFrom::Start(start)).await?;
                let len = end.saturating_sub(start) + 1;
                Ok(ReaderStream::with_capacity(file.take(len), IO_BUF).boxed())
            }
        }
    }

    async fn stat(&self, key: &str) -> Result<Option<u64>> {
        match fs::metadata(self.blob_path(key)?).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.blob_path(key)?;
        match fs::remove_file(&path).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        // Drop the digest's directory once its last copy is gone (best effort:
        // a concurrent upload may just have put a new copy there).
        if let Some(dir) = path.parent() {
            let _ = fs::remove_dir(dir).await;
        }
        Ok(())
    }
}
