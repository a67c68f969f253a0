//! Fresh, incompressible test data made by the harness itself: a fast
//! non-cryptographic generator (wyrand), seeded anew for every image, so no
//! registry or client can dedupe, mount or compress its way out of a push.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use oci_client::client::{Config, ImageLayer};
use oci_client::manifest::OciImageManifest;

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A seed no earlier call in this process (or an earlier run) has used.
    pub fn fresh() -> Rng {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0) as u64;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Rng::new(nanos ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((std::process::id() as u64) << 32))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) ^ t) as u64
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }

    pub fn bytes(&mut self, len: usize) -> Bytes {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        Bytes::from(v)
    }
}

/// An OCI image ready to push: its layers, config and manifest (digests
/// computed here, before any clock starts).
pub struct Image {
    pub layers: Vec<ImageLayer>,
    pub config: Config,
    pub manifest: OciImageManifest,
    /// Bytes of all layers and the config.
    pub bytes: u64,
}

pub fn image(layer_sizes: &[usize]) -> Image {
    let mut rng = Rng::fresh();
    let layers: Vec<ImageLayer> = layer_sizes
        .iter()
        .map(|&n| ImageLayer::oci_v1(rng.bytes(n), None))
        .collect();
    let config_json = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"kura.bench.nonce": format!("{:016x}", rng.next_u64())}},
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    let config = Config::oci_v1(serde_json::to_vec(&config_json).expect("json"), None);
    let mut annotations = BTreeMap::new();
    annotations.insert("org.opencontainers.image.title".to_string(), "kura-bench".to_string());
    let manifest = OciImageManifest::build(&layers, &config, Some(annotations));
    let bytes = layers.iter().map(|l| l.data.len() as u64).sum::<u64>() + config.data.len() as u64;
    Image {
        layers,
        config,
        manifest,
        bytes,
    }
}

/// `count` layer sizes drawn from `lo..hi` bytes.
pub fn small_sizes(count: usize, lo: usize, hi: usize) -> Vec<usize> {
    let mut rng = Rng::fresh();
    (0..count).map(|_| rng.range(lo as u64, hi as u64) as usize).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_every_byte_and_differs_per_seed() {
        let mut a = Rng::new(1);
        let mut b = Rng::new(2);
        let (mut x, mut y) = (vec![0u8; 1003], vec![0u8; 1003]);
        a.fill(&mut x);
        b.fill(&mut y);
        assert_ne!(x, y);
        assert!(x[1000..].iter().any(|&v| v != 0));
    }

    #[test]
    fn fresh_images_differ() {
        let a = image(&[1000, 2000]);
        let b = image(&[1000, 2000]);
        assert_ne!(a.manifest.layers[0].digest, b.manifest.layers[0].digest);
        assert_ne!(a.manifest.config.digest, b.manifest.config.digest);
        assert_eq!(a.bytes, 3000 + a.config.data.len() as u64);
    }
}
