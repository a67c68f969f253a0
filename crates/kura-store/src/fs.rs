//! The local filesystem blob store.
//!
//! Layout under the root: `uploads/<id>` holds unfinished uploads;
//! `blobs/<alg>/<2 hex>/<hex>` holds finished blobs. A blob file appears only
//! as a hard link to a complete, fsynced upload file (then the directory is
//! fsynced), so a reader never sees a partial blob, even after a crash. The
//! upload file is removed by `abort` once the metadata commit is done.
//!
//! File I/O runs on tokio's blocking pool with `std::fs`, written by hand
//! rather than through `tokio::fs::File`: that type copies every buffer once
//! more into its own and makes one pool round trip per call. Here the
//! request's own `Bytes` are written with one vectored `write` per batch, a
//! blob is read into buffers that go straight into the response (from the
//! page cache without leaving the async thread, via `RWF_NOWAIT`), each step
//! (open + write + fdatasync; stat + link + directory fsync) is one pool task,
//! and one write or read runs ahead while the network side carries on.
//! (Measured in BENCHMARKS.md: the extra copy and the hand-offs were a fifth
//! of the server's CPU per GiB pushed.)

use std::fs::{self as stdfs, File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use kura_oci::Digest;
use tokio::task::JoinHandle;

use crate::blob::{BlobStore, BodyStream, ByteStream, StoredKind, StoredObject, StoredStream};
use crate::error::{Result, StoreError};
use crate::space::DiskReserve;

/// Request bytes gathered before one (vectored) write: large enough to keep
/// syscalls and pool hand-offs rare, small enough to bound memory per upload
/// (one batch being written, one being gathered).
const WRITE_BATCH: usize = 1 << 20;
/// At most this many request buffers in one vectored write (IOV_MAX is 1024).
const WRITE_MAX_BUFS: usize = 512;
/// Bytes per read when streaming a blob out (one read runs ahead of the one
/// being sent).
const READ_CHUNK: usize = 512 << 10;

/// Run blocking file work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    join(tokio::task::spawn_blocking(work)).await
}

/// Wait for a blocking-pool task; a task that panicked is an I/O error.
async fn join<T, E: From<io::Error>>(task: JoinHandle<std::result::Result<T, E>>) -> std::result::Result<T, E> {
    task.await
        .map_err(|e| io::Error::other(format!("file task failed: {e}")))?
}

/// Write every byte of `bufs`, in order, with vectored writes.
fn write_all_bufs(file: &mut File, bufs: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    IoSlice::advance_slices(&mut rest, 0);
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read up to `n` bytes at `pos` (blocking).
fn read_at(file: &File, pos: u64, n: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; n];
    let got = file.read_at(&mut buf, pos)?;
    buf.truncate(got);
    Ok(Bytes::from(buf))
}

/// Read up to `n` bytes at `pos` only if they are already in the page cache,
/// without blocking (`preadv2` with `RWF_NOWAIT`): `Ok(None)` when the read
/// would have to wait for the disk, or the kernel cannot tell.
#[cfg(target_os = "linux")]
fn read_cached(file: &File, pos: u64, n: usize) -> io::Result<Option<Bytes>> {
    use rustix::io::{preadv2, Errno, ReadWriteFlags};
    let mut buf = vec![0u8; n];
    match preadv2(file, &mut [io::IoSliceMut::new(&mut buf)], pos, ReadWriteFlags::NOWAIT) {
        Ok(got) => {
            buf.truncate(got);
            Ok(Some(Bytes::from(buf)))
        }
        Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn read_cached(_file: &File, _pos: u64, _n: usize) -> io::Result<Option<Bytes>> {
    Ok(None)
}

/// A blob being streamed out: where the next read starts and what is left.
struct Reading {
    file: Arc<File>,
    pos: u64,
    left: u64,
    /// A read had to wait for the disk: read on the blocking pool from now
    /// on, one chunk ahead.
    disk: bool,
    /// The read of the next chunk, already running (disk mode).
    ahead: Option<JoinHandle<io::Result<Bytes>>>,
}

impl Reading {
    fn chunk_len(&self) -> usize {
        READ_CHUNK.min(self.left.min(usize::MAX as u64) as usize)
    }

    fn spawn_read(&self) -> JoinHandle<io::Result<Bytes>> {
        let (file, pos, n) = (self.file.clone(), self.pos, self.chunk_len());
        tokio::task::spawn_blocking(move || read_at(&file, pos, n))
    }

    async fn next_chunk(&mut self) -> io::Result<Bytes> {
        if let Some(task) = self.ahead.take() {
            return join(task).await;
        }
        if !self.disk {
            if let Some(chunk) = read_cached(&self.file, self.pos, self.chunk_len())? {
                return Ok(chunk);
            }
            self.disk = true;
        }
        join(self.spawn_read()).await
    }
}

/// Stream `len` bytes of `file` from `start`. While the blob is in the page
/// cache (a hot blob) each chunk is copied straight into its buffer on the
/// async thread, with no hand-off; once a read would wait for the disk, reads
/// move to the blocking pool, the next chunk read ahead while this one is
/// sent.
fn read_stream(file: File, start: u64, len: u64) -> ByteStream {
    read_stream_in(file, start, len, false)
}

/// [`read_stream`], optionally starting on the blocking pool (`disk`).
fn read_stream_in(file: File, start: u64, len: u64, disk: bool) -> ByteStream {
    let state = Reading {
        file: Arc::new(file),
        pos: start,
        left: len,
        disk,
        ahead: None,
    };
    futures::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        if st.left == 0 {
            return None;
        }
        let chunk = match st.next_chunk().await {
            Ok(c) if c.is_empty() => {
                let left = st.left;
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("blob file ended {left} bytes early"),
                );
                return Some((Err(e), None));
            }
            Ok(c) => c,
            Err(e) => return Some((Err(e), None)),
        };
        st.pos += chunk.len() as u64;
        st.left -= chunk.len() as u64;
        if st.disk && st.left > 0 {
            st.ahead = Some(st.spawn_read());
        }
        Some((Ok(chunk), Some(st)))
    })
    .boxed()
}

/// Open an upload file for writing at `offset`, discarding anything past it
/// (left by a failed write).
fn open_upload_at(path: &Path, offset: u64) -> io::Result<File> {
    let mut file = private(OpenOptions::new().write(true).create(true).truncate(false)).open(path)?;
    file.set_len(offset)?;
    file.seek(SeekFrom::Start(offset))?;
    Ok(file)
}

/// Files Kura creates are readable by its own user only (0600).
fn private(opts: &mut OpenOptions) -> &mut OpenOptions {
    std::os::unix::fs::OpenOptionsExt::mode(opts, 0o600)
}

/// Create `dir` and its missing parents with mode 0700.
fn create_private_dirs(dir: &Path) -> io::Result<()> {
    std::os::unix::fs::DirBuilderExt::mode(stdfs::DirBuilder::new().recursive(true), 0o700).create(dir)
}

/// The error of a write refused because the disk is full (the space reserve
/// is released and cannot be allocated again yet).
fn disk_full() -> io::Error {
    io::Error::new(
        io::ErrorKind::StorageFull,
        "the disk is full: uploads wait until garbage collection frees space",
    )
}

/// fsync a directory, so the names in it are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Blobs on a local filesystem.
#[derive(Clone, Debug)]
pub struct FsBlobStore {
    root: PathBuf,
    /// fsync files and directories before acknowledging (on by default).
    sync: bool,
    /// New upload bytes are refused while this reserve is released (see
    /// [`crate::space`]).
    reserve: Option<Arc<DiskReserve>>,
}

impl FsBlobStore {
    /// Open (creating directories as needed) a store rooted at `root`.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let r = root.clone();
        blocking(move || {
            create_private_dirs(&r.join("uploads"))?;
            create_private_dirs(&r.join("blobs"))
        })
        .await?;
        Ok(FsBlobStore {
            root,
            sync: true,
            reserve: None,
        })
    }

    /// Refuse new upload bytes (a full-disk error) while `reserve` is
    /// released and cannot be allocated again.
    pub fn with_reserve(mut self, reserve: Arc<DiskReserve>) -> Self {
        self.reserve = Some(reserve);
        self
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
        if !Self::valid_key(key) {
            return Err(StoreError::Invalid(format!("bad storage key {key:?}")));
        }
        Ok(self.root.join("blobs").join(key))
    }

    fn valid_key(key: &str) -> bool {
        // `<alg>/<2 hex>/<hex>/<upload handle>`: one file per upload, so a
        // delete of one copy can never hit a newer upload of the same content.
        let parts: Vec<&str> = key.split('/').collect();
        let hexish = |h: &str| h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        parts.len() == 4
            && matches!(parts[0], "sha256" | "sha512")
            && parts[1].len() == 2
            && hexish(parts[1])
            && parts[2].len() >= 64
            && hexish(parts[2])
            && parts[2].starts_with(parts[1])
            && Self::valid_handle(parts[3])
    }

    fn valid_handle(handle: &str) -> bool {
        !handle.is_empty() && handle.len() <= 64 && handle.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }

    /// The storage key an upload's bytes take as the blob `digest`.
    pub fn key_for(digest: &Digest, handle: &str) -> String {
        let hex = digest.hex();
        format!("{}/{}/{}/{}", digest.algorithm().as_str(), &hex[..2], hex, handle)
    }
}

/// The blocking part of [`BlobStore::commit`] for the filesystem.
fn commit_file(src: &Path, dst: &Path, handle: &str, size: u64, sync: bool) -> Result<()> {
    if size == 0 {
        // An empty blob may have had no write at all.
        private(OpenOptions::new().write(true).create(true).truncate(false)).open(src)?;
    }
    let len = stdfs::metadata(src)?.len();
    if len < size {
        return Err(StoreError::Corrupt(format!(
            "upload {handle} has {len} bytes, expected {size}"
        )));
    }
    if len > size {
        let f = OpenOptions::new().write(true).open(src)?;
        f.set_len(size)?;
        if sync {
            f.sync_data()?;
        }
    }
    let dir = dst.parent().expect("blob path has a parent");
    create_private_dirs(dir)?;
    // Link rather than rename: the upload file stays until the caller has
    // committed the metadata and calls `abort`, so a crash in between
    // leaves a session that can still be finished. Same digest, same
    // bytes: an existing blob file is already the right content.
    match stdfs::hard_link(src, dst) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(_) => {
            // No hard links here (or another device): copy then rename.
            let tmp = dir.join(format!(".{handle}.tmp"));
            stdfs::copy(src, &tmp)?;
            stdfs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            if sync {
                File::open(&tmp)?.sync_all()?;
            }
            stdfs::rename(&tmp, dst)?;
        }
    }
    if sync {
        sync_dir(dir)?;
    }
    Ok(())
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
        if let Some(r) = self.reserve.clone() {
            if !blocking(move || Ok(r.ensure())).await? {
                return Err(disk_full().into());
            }
        }
        let sync = self.sync;
        // The file travels into each write task and back; at most one write
        // is in flight while the next batch is gathered from the body.
        let mut file: Option<File> = None;
        let mut in_flight: Option<JoinHandle<io::Result<File>>> = None;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batch_len = 0usize;
        let mut written = 0u64;
        let outcome: io::Result<()> = async {
            loop {
                let end = match data.next().await {
                    Some(chunk) => {
                        let chunk = chunk?;
                        if !chunk.is_empty() {
                            batch_len += chunk.len();
                            written += chunk.len() as u64;
                            batch.push(chunk);
                        }
                        false
                    }
                    None => true,
                };
                if !end && batch_len < WRITE_BATCH && batch.len() < WRITE_MAX_BUFS {
                    continue;
                }
                let open = match in_flight.take() {
                    Some(task) => Some(join(task).await?),
                    None => file.take(),
                };
                let bufs = std::mem::take(&mut batch);
                batch_len = 0;
                let path = path.clone();
                let task = tokio::task::spawn_blocking(move || {
                    let mut f = match open {
                        Some(f) => f,
                        None => open_upload_at(&path, offset)?,
                    };
                    write_all_bufs(&mut f, &bufs)?;
                    if end && sync {
                        f.sync_data()?;
                    }
                    Ok(f)
                });
                if end {
                    join(task).await?;
                    return Ok(());
                }
                in_flight = Some(task);
            }
        }
        .await;
        if let Err(e) = outcome {
            // Let a running write finish before the lease is given back, so
            // it cannot land after the next request's truncate.
            if let Some(task) = in_flight {
                let _ = join(task).await;
            }
            return Err(e.into());
        }
        Ok((handle.to_string(), offset + written))
    }

    async fn read_upload(&self, handle: &str, len: u64) -> Result<ByteStream> {
        let path = self.upload_path(handle)?;
        match blocking(move || File::open(&path)).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound && len == 0 => Ok(futures::stream::empty().boxed()),
            Err(e) => Err(e.into()),
            Ok(file) => Ok(read_stream(file, 0, len)),
        }
    }

    async fn commit(&self, handle: &str, size: u64, digest: &Digest) -> Result<String> {
        let src = self.upload_path(handle)?;
        let key = Self::key_for(digest, handle);
        let dst = self.blob_path(&key)?;
        let (handle_owned, sync) = (handle.to_string(), self.sync);
        join(tokio::task::spawn_blocking(move || {
            commit_file(&src, &dst, &handle_owned, size, sync)
        }))
        .await?;
        Ok(key)
    }

    async fn abort(&self, handle: &str) -> Result<()> {
        let path = self.upload_path(handle)?;
        match blocking(move || stdfs::remove_file(path)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn read(&self, key: &str, range: Option<(u64, u64)>) -> Result<ByteStream> {
        let path = self.blob_path(key)?;
        let (file, start, len) = blocking(move || {
            let file = File::open(&path)?;
            Ok(match range {
                None => {
                    let len = file.metadata()?.len();
                    (file, 0, len)
                }
                Some((start, end)) => (file, start, end.saturating_sub(start) + 1),
            })
        })
        .await?;
        Ok(read_stream(file, start, len))
    }

    async fn stat(&self, key: &str) -> Result<Option<u64>> {
        let path = self.blob_path(key)?;
        match blocking(move || stdfs::metadata(path)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn list_stored(&self, kind: StoredKind) -> StoredStream<'_> {
        let root = self.root.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<StoredObject>>(256);
        tokio::task::spawn_blocking(move || {
            let sent = match kind {
                StoredKind::Upload => list_uploads(&root, &tx),
                StoredKind::Blob => list_blobs(&root, &tx),
            };
            if let Err(e) = sent {
                let _ = tx.blocking_send(Err(e.into()));
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) }).boxed()
    }

    async fn delete_stored(&self, object: &StoredObject) -> Result<()> {
        match object.kind {
            StoredKind::Blob => self.delete(&object.key).await,
            StoredKind::Upload => self.abort(&object.key).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.blob_path(key)?;
        blocking(move || {
            match stdfs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            // Drop the digest's directory once its last copy is gone (best
            // effort: a concurrent upload may just have put a new copy there).
            if let Some(dir) = path.parent() {
                let _ = stdfs::remove_dir(dir);
            }
            Ok(())
        })
        .await?;
        Ok(())
    }
}

type ListSender = tokio::sync::mpsc::Sender<Result<StoredObject>>;

/// A listed file: its modification time (ms) and size; `None` if it is gone
/// or not a plain file.
fn file_info(path: &Path) -> Option<(i64, u64)> {
    let m = stdfs::symlink_metadata(path).ok().filter(|m| m.is_file())?;
    let modified = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Some((modified, m.len()))
}

/// The names in `dir` (none if it is gone: a concurrent delete).
fn names(dir: &Path) -> io::Result<Vec<String>> {
    match stdfs::read_dir(dir) {
        Ok(it) => Ok(it
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn send(tx: &ListSender, o: StoredObject) -> io::Result<()> {
    // The reader went away: stop walking.
    tx.blocking_send(Ok(o))
        .map_err(|_| io::Error::other("listing abandoned"))
}

/// `uploads/<id>`: the key is the handle (the upload id).
fn list_uploads(root: &Path, tx: &ListSender) -> io::Result<()> {
    for id in names(&root.join("uploads"))? {
        if !FsBlobStore::valid_handle(&id) {
            continue;
        }
        if let Some((modified_ms, size)) = file_info(&root.join("uploads").join(&id)) {
            let o = StoredObject {
                kind: StoredKind::Upload,
                upload_id: id.clone(),
                key: id,
                modified_ms,
                size,
            };
            if send(tx, o).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// `blobs/<alg>/<2 hex>/<hex>/<upload id>`: the key is the path under `blobs/`.
fn list_blobs(root: &Path, tx: &ListSender) -> io::Result<()> {
    let blobs = root.join("blobs");
    for alg in names(&blobs)? {
        for pre in names(&blobs.join(&alg))? {
            for hex in names(&blobs.join(&alg).join(&pre))? {
                let dir = blobs.join(&alg).join(&pre).join(&hex);
                for upload in names(&dir)? {
                    let key = format!("{alg}/{pre}/{hex}/{upload}");
                    let valid = FsBlobStore::valid_key(&key);
                    let Some((modified_ms, size)) = file_info(&dir.join(&upload)).filter(|_| valid) else {
                        continue;
                    };
                    let o = StoredObject {
                        kind: StoredKind::Blob,
                        upload_id: upload,
                        key,
                        modified_ms,
                        size,
                    };
                    if send(tx, o).is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    async fn collect(stream: ByteStream) -> io::Result<Vec<u8>> {
        let chunks: Vec<Bytes> = stream.try_collect().await?;
        Ok(chunks.concat())
    }

    /// Both read paths (page cache on the async thread; blocking pool with
    /// read-ahead) return exactly the asked bytes across chunk boundaries,
    /// for whole files and ranges, and fail on a file shorter than expected.
    #[tokio::test]
    async fn read_paths_return_exact_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data: Vec<u8> = (0..(READ_CHUNK * 3 + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let len = data.len() as u64;
        for disk in [false, true] {
            for (start, n) in [
                (0, len),
                (1, len - 1),
                (READ_CHUNK as u64 - 3, READ_CHUNK as u64 + 7),
                (len - 1, 1),
            ] {
                let got = collect(read_stream_in(File::open(&path).unwrap(), start, n, disk))
                    .await
                    .unwrap();
                assert_eq!(
                    got,
                    &data[start as usize..(start + n) as usize],
                    "disk={disk} start={start} n={n}"
                );
            }
            let err = collect(read_stream_in(File::open(&path).unwrap(), 10, len, disk))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "disk={disk}");
        }
    }
}
