-- Pull-through cache fetch leases (schema 17). A node that fetches content of
-- a cached repository from its upstream (a blob, a manifest) holds the lease
-- `key` (e.g. `blob:<repo id>:<digest>`) until it is stored; other nodes wait
-- for the content to appear, or take the lease over once it expired (the
-- holder renews it while it streams). A tag's refresh window is a lease that
-- is never released: `refresh:<repo id>:<tag>` expires when the tag may be
-- checked against the upstream again.
CREATE TABLE IF NOT EXISTS fetch_leases (
    lease_key   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    holder      TEXT COLLATE "C" NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS fetch_leases_expiry ON fetch_leases(expires_at);
-- References of manifests a pull-through cache stored before the content
-- they name (blobs, and an index's child manifests, are fetched when pulled):
-- moved into manifest_blobs / manifest_children once the content is stored.
CREATE TABLE IF NOT EXISTS cache_pending_refs (
    repo_id          BIGINT NOT NULL,
    manifest_digest  TEXT COLLATE "C" NOT NULL,
    ref_digest       TEXT COLLATE "C" NOT NULL,
    is_child         BIGINT NOT NULL,
    PRIMARY KEY (repo_id, ref_digest, manifest_digest, is_child),
    FOREIGN KEY (repo_id, manifest_digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
);
