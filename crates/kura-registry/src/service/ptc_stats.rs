//! The pull-through cache's counters (read by the metrics issue's exporter).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the pull-through cache (for metrics).
#[derive(Debug, Default)]
pub struct PullThroughStats {
    /// Manifests and blobs of covered repositories served from the cache.
    pub hits: AtomicU64,
    /// Requests for content a covered repository did not hold.
    pub misses: AtomicU64,
    /// Requests that joined a fetch already under way on this node.
    pub joined: AtomicU64,
    /// Fetches this node waited for while another node held their lease.
    pub remote_waits: AtomicU64,
    /// Manifest and blob fetches from upstreams.
    pub upstream_fetches: AtomicU64,
    /// Blob bytes read from upstreams.
    pub upstream_bytes: AtomicU64,
    /// Fetches and refreshes that failed (upstream or verification).
    pub errors: AtomicU64,
    /// Tag checks against the upstream (HEADs).
    pub refreshes: AtomicU64,
    /// Cached tags served because their refresh failed.
    pub stale_served: AtomicU64,
}

impl PullThroughStats {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}
