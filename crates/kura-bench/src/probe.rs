//! What the machine itself allows, to read the registries' figures against:
//! writing and fsyncing a file on the disk the data directories are on,
//! SHA-256 on one core, and TCP over loopback.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::gen::Rng;

pub struct FsyncProbe {
    pub bytes: u64,
    /// Seconds to write the file into the page cache.
    pub write_secs: f64,
    /// Seconds the one fsync of it took.
    pub fsync_secs: f64,
    /// Median milliseconds of a 4 KiB write + fsync (a small blob, a manifest, a commit).
    pub small_fsync_ms: f64,
}

impl FsyncProbe {
    /// MiB/s of write + fsync together: what a durable blob store can sustain.
    pub fn durable_mib_s(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / (self.write_secs + self.fsync_secs)
    }
    pub fn buffered_mib_s(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / self.write_secs
    }
}

/// Writes `bytes` of random data in 1 MiB writes, then fsyncs once; then
/// times 50 small write + fsync pairs. In `dir`, removed afterwards.
pub fn fsync(dir: &Path, bytes: u64) -> anyhow::Result<FsyncProbe> {
    let path = dir.join(format!("kura-bench-fsync-{}", std::process::id()));
    let mut rng = Rng::fresh();
    let mut buf = vec![0u8; 1 << 20];
    let mut f = std::fs::File::create(&path)?;
    let t0 = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    let write_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    f.sync_all()?;
    let fsync_secs = t1.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;

    let mut small = Vec::new();
    let mut f = std::fs::File::create(&path)?;
    for _ in 0..50 {
        rng.fill(&mut buf[..4096]);
        let t = Instant::now();
        f.write_all(&buf[..4096])?;
        f.sync_all()?;
        small.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(f);
    std::fs::remove_file(&path)?;
    small.sort_by(f64::total_cmp);
    Ok(FsyncProbe {
        bytes,
        write_secs,
        fsync_secs,
        small_fsync_ms: small[small.len() / 2],
    })
}

/// SHA-256 throughput of one core, MiB/s (what both registries and the client
/// spend per byte to verify content).
pub fn sha256_mib_s() -> f64 {
    let mut rng = Rng::fresh();
    let buf = rng.bytes(1 << 20);
    let mut h = Sha256::new();
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < 1.0 {
        h.update(&buf);
        n += buf.len() as u64;
    }
    std::hint::black_box(h.finalize());
    n as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64()
}

/// One TCP stream over 127.0.0.1, 1 GiB through it (1 MiB writes, reader in
/// another thread): MiB/s.
pub fn loopback_mib_s() -> anyhow::Result<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let total: u64 = 1 << 30;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let r = s.read(&mut buf)?;
            if r == 0 {
                return Ok(n);
            }
            n += r as u64;
        }
    });
    let mut s = std::net::TcpStream::connect(addr)?;
    let buf = Rng::fresh().bytes(1 << 20);
    let t = Instant::now();
    let mut sent = 0;
    while sent < total {
        s.write_all(&buf)?;
        sent += buf.len() as u64;
    }
    drop(s);
    let got = reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(got == total, "loopback: {got} of {total} bytes");
    Ok(total as f64 / (1 << 20) as f64 / secs)
}
